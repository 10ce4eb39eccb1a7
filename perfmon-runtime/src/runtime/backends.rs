//! The backends `init` connects — PostgreSQL (a sqlx pool, migrated) and Redis (a reconnecting
//! connection) — owned by the running runtime, and their built-in health checks: PostgreSQL
//! (`SELECT 1`, pool counts; critical by default) and Redis (`PING`; not critical by default).
//!
//! Every backend is connected before anything is registered, so an `init` that fails on one
//! backend leaves nothing behind: the connections it opened are closed and no check remains.

#[cfg(any(feature = "postgres", feature = "redis"))]
use std::time::Duration;

#[cfg(any(feature = "postgres", feature = "redis"))]
use crate::core::secret::redact;
use crate::runtime::config::Config;
use crate::runtime::error::InitError;

/// How long `init` waits for a backend before giving up on it.
#[cfg(any(feature = "postgres", feature = "redis"))]
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The connected backends.
#[derive(Default)]
pub(crate) struct Backends {
    #[cfg(feature = "postgres")]
    pub pg: Option<sqlx::PgPool>,
    #[cfg(feature = "redis")]
    pub redis: Option<crate::store::redis::io::Conn>,
}

impl Backends {
    /// Connects every configured backend (PostgreSQL is also migrated). An unreachable backend
    /// is an error that names it; whatever was connected before it is closed again.
    pub(crate) async fn connect(config: &Config) -> Result<Backends, InitError> {
        #[allow(unused_mut)]
        let mut b = Backends::default();
        if let Some(url) = config.database_url.as_deref() {
            #[cfg(feature = "postgres")]
            {
                b.pg = Some(connect_postgres(url, config).await?);
            }
            #[cfg(not(feature = "postgres"))]
            {
                let _ = url;
                return Err(InitError::BackendUnsupported {
                    backend: "PostgreSQL",
                    var: "PERFMON_DATABASE_URL",
                    feature: "postgres",
                });
            }
        }
        if let Some(url) = config.redis_url.as_deref() {
            #[cfg(feature = "redis")]
            match crate::store::redis::io::connect(
                url,
                CONNECT_TIMEOUT,
                config.health_check_timeout,
            )
            .await
            {
                Ok(conn) => b.redis = Some(conn),
                Err(source) => {
                    b.close().await;
                    return Err(InitError::Unreachable {
                        backend: "Redis",
                        target: redact(url),
                        source,
                    });
                }
            }
            #[cfg(not(feature = "redis"))]
            {
                let _ = url;
                b.close().await;
                return Err(InitError::BackendUnsupported {
                    backend: "Redis",
                    var: "PERFMON_REDIS_URL",
                    feature: "redis",
                });
            }
        }
        Ok(b)
    }

    /// Whether any backend is connected.
    pub(crate) fn any(&self) -> bool {
        #[cfg(feature = "postgres")]
        if self.pg.is_some() {
            return true;
        }
        #[cfg(feature = "redis")]
        if self.redis.is_some() {
            return true;
        }
        false
    }

    /// Whether an event log takes the outbox's events (PostgreSQL is connected).
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    pub(crate) fn has_event_log(&self) -> bool {
        #[cfg(feature = "postgres")]
        return self.pg.is_some();
        #[cfg(not(feature = "postgres"))]
        false
    }

    /// Registers the backends' health checks (and the pool counts' source).
    pub(crate) fn register_checks(&self, config: &Config) {
        #[cfg(feature = "postgres")]
        if let Some(pool) = self.pg.clone() {
            use crate::ops::health::{
                register_health_check, set_pool_source, HealthCheck, PoolStats,
            };
            let counts = pool.clone();
            set_pool_source(Some(std::sync::Arc::new(move || {
                PoolStats::new(counts.size(), counts.num_idle() as u32)
            })));
            let check = HealthCheck::new("database", move || {
                let pool = pool.clone();
                async move {
                    crate::store::postgres::select_one(&pool)
                        .await
                        .map_err(|e| e.to_string())?;
                    let mut message = format!(
                        "SELECT 1 ok; pool {} open, {} idle",
                        pool.size(),
                        pool.num_idle()
                    );
                    let set_aside = crate::pipeline::state::global()
                        .outbox
                        .tiers
                        .set_aside
                        .load(std::sync::atomic::Ordering::Relaxed);
                    if set_aside > 0 {
                        message.push_str(&format!(
                            "; {set_aside} rows rejected by PostgreSQL set aside (recorder.tierSetAside)"
                        ));
                    }
                    Ok(message)
                }
            })
            .critical(config.critical("database", true))
            .timeout(config.health_check_timeout);
            register_health_check(check);
        }
        #[cfg(feature = "redis")]
        if let Some(conn) = self.redis.clone() {
            let check = crate::ops::health::HealthCheck::new("redis", move || {
                let mut conn = conn.clone();
                async move {
                    let pong = crate::store::redis::io::ping(&mut conn)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(format!("PING answered {pong}"))
                }
            })
            .critical(config.critical("redis", false))
            .timeout(config.health_check_timeout);
            crate::ops::health::register_health_check(check);
        }
        let _ = config;
    }

    /// Removes the backends' checks.
    pub(crate) fn unregister_checks(&self) {
        #[cfg(feature = "postgres")]
        if self.pg.is_some() {
            crate::ops::health::set_pool_source(None);
            crate::ops::health::unregister_health_check("database");
        }
        #[cfg(feature = "redis")]
        if self.redis.is_some() {
            crate::ops::health::unregister_health_check("redis");
        }
    }

    /// Closes the connections.
    pub(crate) async fn close(self) {
        #[cfg(feature = "postgres")]
        if let Some(pool) = self.pg {
            pool.close().await;
        }
    }
}

#[cfg(feature = "postgres")]
async fn connect_postgres(url: &str, config: &Config) -> Result<sqlx::PgPool, InitError> {
    let pool = crate::store::postgres::connect(url, CONNECT_TIMEOUT)
        .await
        .map_err(|source| InitError::Unreachable {
            backend: "PostgreSQL",
            target: redact(url),
            source,
        })?;
    if let Err(source) = crate::store::postgres::migrate(&pool, &config.key_prefix).await {
        pool.close().await;
        return Err(InitError::Migration {
            target: redact(url),
            source,
        });
    }
    tracing::info!(target: "perfmon", target = %redact(url), "PostgreSQL reachable and migrated: health checks and the PostgreSQL tier");
    Ok(pool)
}
