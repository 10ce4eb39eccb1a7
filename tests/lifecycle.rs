//! Start-up, shutdown, configuration errors, health and resources; the last-requests list.

use perfmon_runtime::*;
use std::time::{Duration, SystemTime};

#[tokio::test]
async fn init_shutdown_and_errors() {
    // recorded before init, kept after it
    record_batch_metric(BatchMetric {
        name: "before-init",
        duration: Duration::from_millis(5),
        success: true,
        timestamp: SystemTime::now(),
    });

    // nothing listens on port 1: an error that names the backend, its URL, and what to do
    let e = init(Config::builder().redis_url("redis://127.0.0.1:1/").build())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            InitError::Unreachable {
                backend: "Redis",
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with("Redis at redis://127.0.0.1:1/ is unreachable"),
        "{e}"
    );
    let e = init(
        Config::builder()
            .database_url("postgres://app:secret@127.0.0.1:1/test")
            .build(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            InitError::Unreachable {
                backend: "PostgreSQL",
                ..
            }
        ),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("postgres://app:***@127.0.0.1:1/test") && !msg.contains("secret"),
        "{msg}"
    );
    let e = init_blocking(
        Config::builder()
            .redis_url("redis://127.0.0.1:6379/")
            .build(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("init(config).await"), "{e}");
    let e = init(Config::builder().key_prefix("has space").build())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            InitError::Config(ConfigError::Invalid {
                what: "key_prefix",
                ..
            })
        ),
        "{e}"
    );

    let pm = init(
        Config::builder()
            .key_prefix("test")
            .instance("web-1")
            .drain_interval(Duration::from_millis(1))
            .build(),
    )
    .await
    .expect("init");
    assert_eq!(pm.config().instance(), "web-1");
    assert!(matches!(
        init(Config::builder().build()).await,
        Err(InitError::AlreadyInitialized)
    ));
    assert_eq!(collector().batch_stats().batches["before-init"].runs, 1);
    pm.shutdown().await.expect("shutdown");

    // after shutdown, init works again; dropping the handle also stops it
    let pm = init(Config::builder().build()).await.expect("second init");
    drop(pm);
    let pm = init_blocking(Config::builder().build()).expect("third init");
    drop(pm);
}

#[tokio::test]
async fn health_and_resources() {
    let h = system_health().await;
    assert_eq!(h.status, HealthStatus::Healthy);
    assert!(h.checks["recorder"].ok);
    assert_eq!(h.resources.pid, std::process::id());
    assert!(h.resources.memory.rss > 0.0);
    let json = serde_json::to_value(&h).expect("serializes");
    assert_eq!(json["status"], "healthy");
    assert!(json["resources"]["memory"]["rss"].as_f64().is_some());
    let r = resource_usage();
    assert!(r.memory.virtual_size >= r.memory.rss);
}

#[test]
fn last_requests_are_the_newest_hundred_newest_first() {
    for i in 0..150u64 {
        record_api_metric(ApiMetric {
            method: "GET",
            path: "/recent",
            status_code: 200,
            duration: Duration::from_millis(1000 + i),
            timestamp: SystemTime::now(),
        });
    }
    let recent: Vec<u64> = collector()
        .recent_requests()
        .iter()
        .map(|r| r.duration.as_millis() as u64)
        .collect();
    assert_eq!(recent.len(), RECENT_REQUESTS);
    assert_eq!(recent, (1050..1150).rev().collect::<Vec<_>>());
}
