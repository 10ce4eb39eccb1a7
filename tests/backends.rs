//! The configured backends, for real: PostgreSQL and Redis on localhost, and a private
//! `redis-server` that this test starts, kills and restarts.

use perfmon_runtime::*;
use perfmon_tests::{database_url, redis_url};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

/// `init` is once per process at a time: the tests here take turns.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reachable_backends_are_health_checked() {
    let _turn = TURN.lock().await;
    let pm = init(
        Config::builder()
            .database_url(database_url())
            .redis_url(redis_url())
            .key_prefix(format!("perfmon-test-backends-{}", std::process::id()))
            .health_cache_ttl(Duration::ZERO)
            .build(),
    )
    .await
    .expect("PostgreSQL and Redis on localhost (.ci/test starts them)");
    let h = system_health().await;
    assert_eq!(h.status, HealthStatus::Healthy, "{h:?}");
    assert!(h.checks["database"].ok && h.checks["database"].critical);
    assert!(h.checks["redis"].ok && !h.checks["redis"].critical);
    assert!(
        h.checks["database"].message.starts_with("SELECT 1 ok"),
        "{}",
        h.checks["database"].message
    );
    let pool = h.database.expect("pool counts");
    assert!(pool.active_connections >= 1 && pool.idle_connections <= pool.active_connections);
    let json = serde_json::to_value(&h).expect("serializes");
    assert_eq!(json["checks"]["database"], true);
    assert_eq!(json["checks"]["redis"], true);
    assert!(
        json["database"]["activeConnections"].as_u64() >= Some(1),
        "the seed's shape: {json}"
    );
    pm.shutdown().await.expect("shutdown");
    let h = system_health().await;
    assert!(
        !h.checks.contains_key("database") && !h.checks.contains_key("redis"),
        "checks leave with the backends"
    );
}

/// A private `redis-server` on a free port, killed on drop.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start(port: u16) -> PrivateRedis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (.ci/test installs it)");
        let r = PrivateRedis {
            port,
            child: Some(child),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return r;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not listen on {port}");
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls health until `pred` holds, at most `tries` times (health is not cached: TTL 0).
async fn health_until(tries: usize, pred: impl Fn(&SystemHealth) -> bool) -> SystemHealth {
    let mut h = system_health().await;
    for _ in 0..tries {
        if pred(&h) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        h = system_health().await;
    }
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_degrades_health_and_recording_goes_on() {
    let _turn = TURN.lock().await;
    let mut redis = PrivateRedis::start(free_port());
    let url = format!("redis://127.0.0.1:{}/", redis.port);
    let pm = init(
        Config::builder()
            .redis_url(&url)
            .health_cache_ttl(Duration::ZERO)
            .health_check_timeout(Duration::from_millis(500))
            .build(),
    )
    .await
    .expect("the private redis");
    assert_eq!(system_health().await.status, HealthStatus::Healthy);

    redis.kill();
    let h = health_until(50, |h| h.checks.get("redis").is_some_and(|c| !c.ok)).await;
    assert!(!h.checks["redis"].ok, "{h:?}");
    assert_eq!(
        h.status,
        HealthStatus::Degraded,
        "Redis is not critical by default"
    );
    // recording does not depend on the backend
    let now = SystemTime::now();
    for _ in 0..10 {
        record_api_metric(ApiMetric {
            method: "GET",
            path: "/while-redis-is-down",
            status_code: 200,
            duration: Duration::from_millis(2),
            timestamp: now,
        });
    }
    assert_eq!(
        collector()
            .api_stats_for("/while-redis-is-down")
            .total_requests,
        10
    );
    // the tier cannot write: the flush fails, is counted, and keeps what it holds
    assert!(pm.flush().await.is_err());
    let r = collector().recorder_stats();
    assert!(r.tier_failures >= 1 && r.tier_pending >= 1, "{r:?}");

    let redis = PrivateRedis::start(redis.port);
    let h = health_until(100, |h| h.checks.get("redis").is_some_and(|c| c.ok)).await;
    assert!(h.checks["redis"].ok, "reconnected after the restart: {h:?}");
    assert_eq!(h.status, HealthStatus::Healthy);
    // what was recorded while Redis was away arrives now (the restarted server had nothing)
    pm.flush().await.expect("flush after the restart");
    assert_eq!(collector().recorder_stats().tier_pending, 0);
    let hour = collector()
        .query(Window::Hour1, Scope::Instance)
        .api_stats_for("/while-redis-is-down")
        .await
        .expect("1h");
    assert_eq!(hour.total_requests, 10, "the buffered aggregates arrived");
    pm.shutdown().await.expect("shutdown");

    // the same outage with Redis made critical: unhealthy
    let pm = init(
        Config::builder()
            .redis_url(&url)
            .critical_check("redis", true)
            .health_cache_ttl(Duration::ZERO)
            .health_check_timeout(Duration::from_millis(500))
            .build(),
    )
    .await
    .expect("the private redis again");
    drop(redis);
    let h = health_until(50, |h| h.checks.get("redis").is_some_and(|c| !c.ok)).await;
    assert_eq!(h.status, HealthStatus::Unhealthy, "{h:?}");
    // shutting down while Redis is away: the last flush fails, and says so
    assert!(matches!(pm.shutdown().await, Err(ShutdownError::Flush(_))));
}
