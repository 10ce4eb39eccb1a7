//! Alerts end to end: the background engine sees a burst of errors, notifies the callback and a
//! webhook on a local server once when the critical alert fires and once when it resolves, and
//! the monitoring routes show it; the SLA report against the seed's targets.

use axum::body::Body;
use axum::http::Request;
use perfmon_runtime::alerts::{AlertConfig, AlertState, Notification, Severity};
use perfmon_runtime::*;
use perfmon_tests::{api_burst, LogBuffer};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tower::ServiceExt;

/// A local HTTP server that answers 200 and hands over every request body.
fn webhook_server() -> (String, std::sync::mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://{}/hooks/perfmon",
        listener.local_addr().expect("addr")
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut len = 0usize;
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_ok() {
                let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
            }
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, rx)
}

/// GET on the monitoring router, in process; the JSON answer.
async fn get_json(uri: &str) -> serde_json::Value {
    let req = Request::builder()
        .uri(uri)
        .body(Body::empty())
        .expect("request");
    let resp = perfmon_runtime::http::router::<()>()
        .oneshot(req)
        .await
        .expect("infallible");
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    serde_json::from_slice(&bytes).expect("JSON")
}

/// Waits (bounded) until `pred` holds over what the callback received.
fn wait_for(seen: &Mutex<Vec<Notification>>, pred: impl Fn(&[Notification]) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if pred(&seen.lock().expect("lock")) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_errors_fires_once_and_resolves_once() {
    let (url, bodies) = webhook_server();
    let seen: Arc<Mutex<Vec<Notification>>> = Arc::default();
    let sink = seen.clone();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let prefix = format!("perfmon-test-alerts-{nanos}");
    let redis_url = std::env::var("PERFMON_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let database_url = std::env::var("PERFMON_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let pm = init(
        Config::builder()
            .redis_url(&redis_url)
            .database_url(&database_url)
            .key_prefix(&prefix)
            .instance("alerts-a")
            .flush_interval(Duration::from_secs(3600))
            .alerts(AlertConfig {
                tick: Duration::from_millis(100),
                window: Duration::from_secs(2),
                pending: Duration::from_millis(300),
                ..AlertConfig::default()
            })
            .alert_webhook(&url)
            .alert_callback(move |n| sink.lock().expect("lock").push(n.clone()))
            .build(),
    )
    .await
    .expect("init");

    api_burst("/alerts/burst", 200, 80);
    api_burst("/alerts/burst", 500, 20); // 20% errors: both error-rate rules breach
    let critical = |ns: &[Notification], state| {
        ns.iter()
            .filter(|n| n.rule == "api-error-rate-critical" && n.state == state)
            .count()
    };
    assert!(
        wait_for(&seen, |ns| critical(ns, AlertState::Firing) == 1),
        "fired: {:?}",
        seen.lock().expect("lock")
    );

    // the webhook got the same JSON
    let body = bodies
        .recv_timeout(Duration::from_secs(10))
        .expect("a webhook call");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert!(
        v["rule"]
            .as_str()
            .is_some_and(|r| r.starts_with("api-error-rate")),
        "{v}"
    );
    assert_eq!(v["state"], "firing");
    assert!(v["at"].as_str().is_some_and(|t| t.ends_with('Z')));

    // shown by the monitoring routes while firing
    let v = get_json("/api/monitoring/alerts").await;
    assert!(
        v["data"]["active"]
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n["rule"] == "api-error-rate-critical")),
        "{v}"
    );
    assert!(collector()
        .prometheus_text()
        .contains("perfmon_alerts_firing{severity=\"critical\"} 1"));

    // clean traffic for longer than the window: resolved, once
    let deadline = Instant::now() + Duration::from_secs(20);
    while critical(&seen.lock().expect("lock"), AlertState::Resolved) == 0
        && Instant::now() < deadline
    {
        api_burst("/alerts/burst", 200, 50);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(wait_for(&seen, |ns| critical(ns, AlertState::Resolved) == 1));
    // a few more ticks: still exactly one of each
    std::thread::sleep(Duration::from_millis(500));
    let ns = seen.lock().expect("lock").clone();
    assert_eq!(
        (
            critical(&ns, AlertState::Firing),
            critical(&ns, AlertState::Resolved)
        ),
        (1, 1),
        "{ns:?}"
    );
    let board = perfmon_runtime::alerts::alerts();
    assert!(board
        .active
        .iter()
        .all(|n| n.rule != "api-error-rate-critical"));
    assert!(board
        .history
        .iter()
        .any(|n| n.rule == "api-error-rate-critical" && n.state == AlertState::Resolved));
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_sla_report_against_the_seeds_targets() {
    // another series than the other test's: this test reads the overall API figures, so it only
    // checks what it controls
    let empty = collector().sla_report();
    assert_eq!(empty.objectives.len(), 5);
    let names: Vec<&str> = empty.objectives.iter().map(|o| o.name).collect();
    assert_eq!(
        names,
        [
            "api-p95",
            "api-p99",
            "api-error-rate",
            "cache-hit-rate",
            "db-avg-query"
        ]
    );
    let now = SystemTime::now();
    for i in 0..100 {
        record_cache_metric(CacheMetric {
            operation: if i < 90 { CacheOp::Hit } else { CacheOp::Miss },
            key: "sla:test",
            timestamp: now,
        });
        record_database_metric(DatabaseMetric {
            operation: "find",
            table: "SlaT",
            duration: Duration::from_millis(30),
            timestamp: now,
            query_type: QueryType::Read,
        });
    }
    let r = collector().sla_report();
    let cache = r
        .objectives
        .iter()
        .find(|o| o.name == "cache-hit-rate")
        .expect("cache");
    assert_eq!(
        (cache.target, cache.current, cache.met),
        (95.0, 90.0, Some(false))
    );
    let db = r
        .objectives
        .iter()
        .find(|o| o.name == "db-avg-query")
        .expect("db");
    assert_eq!((db.target, db.current, db.met), (50.0, 30.0, Some(true)));
    assert!(!r.all_met);

    let v = get_json("/api/monitoring/metrics?type=sla").await;
    assert_eq!(
        v["data"]["sla"]["objectives"].as_array().map(Vec::len),
        Some(5),
        "{v}"
    );
    assert!(v["data"]["api"].is_null(), "type=sla answers the SLA only");
    let text = collector().prometheus_text();
    assert!(
        text.contains("perfmon_sla_met{objective=\"cache-hit-rate\"} 0"),
        "{text}"
    );
    // one unit per metric: seconds for durations, 0–1 ratios for rates
    assert!(
        text.contains("perfmon_sla_target_seconds{objective=\"db-avg-query\"} 0.05\n"),
        "{text}"
    );
    assert!(
        text.contains("perfmon_sla_current_seconds{objective=\"db-avg-query\"} 0.03\n"),
        "{text}"
    );
    assert!(
        text.contains("perfmon_sla_target_ratio{objective=\"cache-hit-rate\"} 0.95\n"),
        "{text}"
    );
    assert!(!text.contains("unit=\""), "no unit label: {text}");
    assert!(
        text.contains(&format!(
            "perfmon_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
}

#[test]
fn a_name_with_a_line_break_cannot_forge_a_log_line() {
    let forged = "nightly\n2026-11-26T00:00:00Z ERROR perfmon: database dropped";
    let n = Notification {
        rule: "batch-failure".into(),
        key: forged.into(),
        severity: Severity::Critical,
        state: AlertState::Firing,
        value: 1.0,
        since: std::time::SystemTime::now(),
        at: std::time::SystemTime::now(),
        message: format!("batch {forged} failed"),
    };
    let out = LogBuffer::default();
    let subscriber = out.subscriber(tracing_subscriber::filter::LevelFilter::INFO);
    tracing::subscriber::with_default(subscriber, || {
        perfmon_runtime::alerts::deliver(&n, &perfmon_runtime::alerts::Sinks::default())
    });
    let text = out.text();
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    assert!(text.contains(r"nightly\n2026"), "escaped: {text}");
}
