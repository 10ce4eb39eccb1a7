//! Connections to the configured backends, opened by `init`, and their built-in health checks:
//! PostgreSQL (`SELECT 1`, pool counts; critical by default) and Redis (`PING`; not critical by
//! default). The retention tiers will write through these same connections.

#[cfg(any(feature = "postgres", feature = "redis"))]
use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::lifecycle::InitError;

/// Connections of the PostgreSQL pool, as the seed's health response shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolStats {
    /// Connections open (in use or idle).
    pub active_connections: u32,
    /// Connections open and idle.
    pub idle_connections: u32,
}

/// How long `init` waits for a backend before giving up on it.
#[cfg(any(feature = "postgres", feature = "redis"))]
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A URL with its password replaced, for messages.
#[cfg_attr(not(any(feature = "postgres", feature = "redis")), allow(dead_code))]
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(feature = "postgres")]
static PG: std::sync::RwLock<Option<sqlx::PgPool>> = std::sync::RwLock::new(None);

#[cfg(feature = "redis")]
static REDIS: std::sync::RwLock<Option<redis::aio::ConnectionManager>> =
    std::sync::RwLock::new(None);

/// The Redis connection opened by `init`, for the tier's writer.
#[cfg(feature = "redis")]
pub(crate) fn redis_connection() -> Option<redis::aio::ConnectionManager> {
    REDIS.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The pool opened by `init`, for the tier's writer.
#[cfg(feature = "postgres")]
pub(crate) fn pg_pool() -> Option<sqlx::PgPool> {
    PG.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The pool's counts, if PostgreSQL is configured.
pub(crate) fn pool_stats() -> Option<PoolStats> {
    #[cfg(feature = "postgres")]
    {
        let pool = PG.read().unwrap_or_else(|e| e.into_inner()).clone()?;
        Some(PoolStats {
            active_connections: pool.size(),
            idle_connections: pool.num_idle() as u32,
        })
    }
    #[cfg(not(feature = "postgres"))]
    None
}

/// Connects every configured backend and registers its health check. Unreachable backends are
/// errors that name them.
pub(crate) async fn connect(config: &Config) -> Result<(), InitError> {
    if let Some(url) = config.database_url.as_deref() {
        connect_postgres(url, config).await?;
    }
    if let Some(url) = config.redis_url.as_deref() {
        connect_redis(url, config).await?;
    }
    Ok(())
}

/// Removes the backends' checks and drops their connections without waiting (for `Drop`).
pub(crate) fn disconnect_now() {
    #[cfg(feature = "postgres")]
    if PG
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .is_some()
    {
        crate::health::unregister_health_check("database");
    }
    #[cfg(feature = "redis")]
    if REDIS
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .is_some()
    {
        crate::health::unregister_health_check("redis");
    }
}

/// Closes the connections and removes their checks.
pub(crate) async fn disconnect() {
    #[cfg(feature = "postgres")]
    let pool = pg_pool();
    disconnect_now();
    #[cfg(feature = "postgres")]
    if let Some(pool) = pool {
        pool.close().await;
    }
}

#[cfg(feature = "postgres")]
async fn connect_postgres(url: &str, config: &Config) -> Result<(), InitError> {
    let unreachable = |reason: String| InitError::Unreachable {
        backend: "PostgreSQL",
        target: redact(url),
        reason,
    };
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .min_connections(1)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect(url)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    sqlx::query("SELECT 1")
        .execute(&pool)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    crate::tier::postgres::migrate(&pool, &config.key_prefix)
        .await
        .map_err(|reason| InitError::Migration {
            target: redact(url),
            reason,
        })?;
    *PG.write().unwrap_or_else(|e| e.into_inner()) = Some(pool.clone());
    let check = crate::health::HealthCheck::new("database", move || {
        let pool = pool.clone();
        async move {
            sqlx::query("SELECT 1")
                .execute(&pool)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "SELECT 1 ok; pool {} open, {} idle",
                pool.size(),
                pool.num_idle()
            ))
        }
    })
    .critical(config.critical("database", true))
    .timeout(config.health_check_timeout);
    crate::health::register_health_check(check);
    tracing::info!(target: "perfmon", target = %redact(url), "PostgreSQL reachable and migrated: health checks and the PostgreSQL tier");
    Ok(())
}

#[cfg(not(feature = "postgres"))]
async fn connect_postgres(_url: &str, _config: &Config) -> Result<(), InitError> {
    Err(InitError::BackendUnsupported {
        backend: "PostgreSQL",
        var: "PERFMON_DATABASE_URL",
        feature: "postgres",
    })
}

#[cfg(feature = "redis")]
async fn connect_redis(url: &str, config: &Config) -> Result<(), InitError> {
    let unreachable = |reason: String| InitError::Unreachable {
        backend: "Redis",
        target: redact(url),
        reason,
    };
    let client = redis::Client::open(url).map_err(|e| unreachable(e.to_string()))?;
    let manager_config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(config.health_check_timeout)
        .set_number_of_retries(1);
    let connect = redis::aio::ConnectionManager::new_with_config(client, manager_config);
    let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| unreachable(format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| unreachable(e.to_string()))?;
    let _: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    *REDIS.write().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
    let check = crate::health::HealthCheck::new("redis", move || {
        let mut conn = conn.clone();
        async move {
            let pong: String = redis::cmd("PING")
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("PING answered {pong}"))
        }
    })
    .critical(config.critical("redis", false))
    .timeout(config.health_check_timeout);
    crate::health::register_health_check(check);
    tracing::info!(target: "perfmon", target = %redact(url), "Redis reachable: health checks and the Redis tier");
    Ok(())
}

#[cfg(not(feature = "redis"))]
async fn connect_redis(_url: &str, _config: &Config) -> Result<(), InitError> {
    Err(InitError::BackendUnsupported {
        backend: "Redis",
        var: "PERFMON_REDIS_URL",
        feature: "redis",
    })
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
        assert_eq!(redact("redis://:pw@host/0"), "redis://:***@host/0");
    }
}
