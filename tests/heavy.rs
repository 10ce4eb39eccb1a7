//! Heavy reads (issue 10, item 6): long-window requests of `GET /api/monitoring/metrics` run on
//! the `perfmon-read` pool, identical ones share one load and its kept answer, and one that would
//! start a load past `max_heavy_reads` is answered 429 JSON. Real Redis, through a proxy the
//! test freezes so that a load stays in progress for as long as the test needs.
//!
//! One test in this binary: the heavy-read counters are process-wide.

use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use perfmon_runtime::http::{heavy_read_stats, router, HeavyReadStats};
use perfmon_runtime::*;
use perfmon_tests::{thread_names, unique_prefix, Proxy};
use serde_json::Value;
use tower::ServiceExt;

async fn call(app: Router, uri: &'static str) -> (StatusCode, Option<String>, String) {
    let req = Request::builder()
        .uri(uri)
        .body(Body::empty())
        .expect("request");
    let resp = app.oneshot(req).await.expect("infallible");
    let status = resp.status();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    (status, retry, String::from_utf8_lossy(&body).into_owned())
}

/// Waits (up to a minute) until the counters satisfy `done`.
async fn until(what: &str, done: impl Fn(&HeavyReadStats) -> bool) {
    for _ in 0..6000 {
        if done(&heavy_read_stats()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: {:?}", heavy_read_stats());
}

const SAME: &str = "/api/monitoring/metrics?type=api&window=1h";
const OTHER: &str = "/api/monitoring/metrics?type=cache&window=1h";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_long_reads_share_one_load_off_the_workers_and_one_more_is_answered_429() {
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let perf = init(
        Config::builder()
            .redis_url(proxy.url())
            .key_prefix(unique_prefix("heavy"))
            .max_heavy_reads(1)
            .heavy_read_cache_ttl(Duration::from_secs(3600))
            // under the reader's own 5 s per round trip, so that the give-up below is this one
            .heavy_read_timeout(Duration::from_secs(4))
            .no_alerts()
            .build(),
    )
    .await
    .expect("init");
    let now = SystemTime::now();
    for i in 0..25u64 {
        record_api_metric(ApiMetric {
            method: "GET",
            path: "/api/heavy-test",
            status_code: 200,
            duration: Duration::from_millis(1 + i),
            timestamp: now,
        });
    }
    // the endpoint reads the tiers as this instance last flushed them
    perf.flush().await.expect("flush");
    let app = router();
    let base = heavy_read_stats();

    // Redis stops answering: the first long read stays in progress
    proxy.freeze();
    let same: Vec<_> = (0..8)
        .map(|_| tokio::spawn(call(app.clone(), SAME)))
        .collect();
    until("one load, seven callers waiting for it", |s| {
        s.loads == base.loads + 1 && s.shared == base.shared + 7
    })
    .await;
    assert_eq!(heavy_read_stats().in_progress, 1);

    // another long read would be a second load: 429, JSON, Retry-After
    let (status, retry, body) = call(app.clone(), OTHER).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(retry.as_deref(), Some("1"));
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["success"], false);
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("max_heavy_reads")),
        "{v}"
    );
    assert_eq!(heavy_read_stats().rejected, base.rejected + 1);
    // the counters are in the Prometheus text
    let (status, _, text) = call(app.clone(), "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let s = heavy_read_stats();
    for line in [
        format!(
            "perfmon_heavy_read_requests_total{{outcome=\"rejected\"}} {}",
            s.rejected
        ),
        format!(
            "perfmon_heavy_read_requests_total{{outcome=\"shared\"}} {}",
            s.shared
        ),
        format!("perfmon_heavy_reads_in_progress {}", s.in_progress),
    ] {
        assert!(text.contains(&line), "{line}");
    }
    // the in-memory window is not a heavy read: served while the load waits
    let (status, _, body) = call(app.clone(), "/api/monitoring/metrics?type=api").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    proxy.thaw();
    let mut bodies = Vec::new();
    for h in same {
        let (status, _, body) = h.await.expect("joined");
        assert_eq!(status, StatusCode::OK, "{body}");
        bodies.push(body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "one answer");
    let v: Value = serde_json::from_str(&bodies[0]).expect("JSON");
    let route = v["data"]["routes"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["path"] == "/api/heavy-test"))
        .unwrap_or_else(|| panic!("the route is in the 1h window: {v}"));
    assert_eq!(route["totalRequests"], 25);

    let s = heavy_read_stats();
    assert_eq!(
        (s.loads, s.loads_on_pool, s.in_progress),
        (base.loads + 1, base.loads_on_pool + 1, 0),
        "the load ran on the perfmon-read pool"
    );
    // the pool's threads are the process' own, named, apart from the async workers
    let names = thread_names();
    assert!(names.iter().any(|n| n == "perfmon-read"), "{names:?}");

    // the same request again: the kept answer, no new load
    let (status, _, body) = call(app.clone(), SAME).await;
    assert_eq!((status, &body), (StatusCode::OK, &bodies[0]));
    let after = heavy_read_stats();
    assert_eq!(
        (after.loads, after.cached),
        (s.loads, s.cached + 1),
        "answered from the kept answer"
    );
    // the other request now starts its own load
    let (status, _, body) = call(app.clone(), OTHER).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(heavy_read_stats().loads, after.loads + 1);

    // a tier that stops answering cannot hold a load for ever: past the timeout, 503 JSON, and
    // the place under the limit is free again
    proxy.freeze();
    let (status, _, body) = call(
        app.clone(),
        "/api/monitoring/metrics?type=database&window=1h",
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("given up")),
        "{v}"
    );
    assert_eq!(heavy_read_stats().in_progress, 0);
    proxy.thaw();

    perf.shutdown().await.expect("shutdown");
}
