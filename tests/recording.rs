//! What the collector reports from mixed traffic: error rates, the slow list, the last requests,
//! cache rates, batches, business metrics, async timing, late events.

use perfmon_runtime::*;
use std::time::{Duration, SystemTime};

fn api(path: &str, status_code: u16, ms: u64) {
    record_api_metric(ApiMetric {
        method: "POST",
        path,
        status_code,
        duration: Duration::from_millis(ms),
        timestamp: SystemTime::now(),
    });
}

#[test]
fn error_rates_from_mixed_status_codes() {
    // 100 requests: 90 × 2xx, 6 × 4xx, 3 × 5xx, 1 × 3xx
    for i in 0..100u16 {
        let code = match i {
            0..=5 => 400 + i,
            6..=8 => 500 + (i - 6),
            9 => 304,
            _ if i % 2 == 0 => 200,
            _ => 201,
        };
        api("/rates", code, 10);
    }
    let s = collector().api_stats_for("/rates");
    assert_eq!(s.total_requests, 100);
    assert_eq!(s.error_rate, 9.0);
    assert_eq!(s.client_error_rate, 6.0);
    assert_eq!(s.server_error_rate, 3.0);
    assert_eq!(s.status_codes.values().sum::<u64>(), 100);
    assert_eq!(s.status_codes[&200], 45);
    assert_eq!(s.status_codes[&304], 1);
    let json = serde_json::to_value(&s).expect("serializes");
    assert_eq!(json["errorRate"], 9.0);
    assert_eq!(json["totalRequests"], 100);
    assert_eq!(
        json["avgDuration"], 10.0,
        "durations are milliseconds in JSON"
    );
}

#[test]
fn slow_list_keeps_the_slowest_over_the_threshold_in_order() {
    // the hand-recording threshold is 5 s by default: 4,999 ms is not slow, 5,001 ms is
    let mut slow_ms: Vec<u64> = Vec::new();
    for i in 0..80u64 {
        let ms = 5_001 + (i * 7919) % 3000;
        api("/slow-list", 200, ms);
        slow_ms.push(ms);
    }
    api("/slow-list", 200, 4_999);
    slow_ms.sort_unstable_by(|a, b| b.cmp(a));
    let list = collector().slow_requests(100);
    let ours: Vec<u64> = list
        .iter()
        .filter(|r| r.path == "/slow-list")
        .map(|r| r.duration.as_millis() as u64)
        .collect();
    assert_eq!(ours, slow_ms[..50].to_vec(), "the top 50, slowest first");
    assert!(list.len() <= SLOW_LIST_SIZE);
    let top5 = collector().slow_requests(5);
    assert_eq!(top5.len(), 5);
    assert!(top5.windows(2).all(|w| w[0].duration >= w[1].duration));
    assert_eq!(top5[0].method, "POST");
    let json = serde_json::to_value(&top5[0]).expect("serializes");
    let ts = json["timestamp"].as_str().expect("a string");
    assert!(ts.ends_with('Z') && ts.len() == 24, "RFC 3339 UTC: {ts}");
}

#[track_api(path = "/macro-slow", slow = "2ms")]
fn sometimes_slow(sleep: bool) -> u8 {
    if sleep {
        std::thread::sleep(Duration::from_millis(4));
    }
    1
}

#[test]
fn macro_threshold_decides_what_is_slow() {
    sometimes_slow(false);
    sometimes_slow(true);
    let slow: Vec<_> = collector()
        .slow_requests(50)
        .into_iter()
        .filter(|r| r.path == "/macro-slow")
        .collect();
    assert_eq!(slow.len(), 1, "only the call over 2 ms");
    assert!(slow[0].duration >= Duration::from_millis(4));
}

#[track_api(path = "/async-timed")]
async fn awaits(ms: u64) -> Result<(), std::io::Error> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    tokio::task::yield_now().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_durations_include_awaited_time() {
    let handles: Vec<_> = (0..4).map(|_| tokio::spawn(awaits(25))).collect();
    for h in handles {
        h.await.expect("task").expect("ok");
    }
    let s = collector().api_stats_for("/async-timed");
    assert_eq!(s.total_requests, 4);
    assert!(s.p50_duration >= Duration::from_millis(25), "{s:?}");
}

#[test]
fn cache_rates_per_key_group() {
    let now = SystemTime::now();
    for i in 0..200 {
        let operation = match i % 20 {
            0 => CacheOp::Error,
            1..=3 => CacheOp::Miss,
            _ => CacheOp::Hit,
        };
        record_cache_metric(CacheMetric {
            operation,
            key: &format!("rates:stats:clinic-{}:2025:10", i % 7),
            timestamp: now,
        });
    }
    let c = collector().cache_stats();
    let g = &c.keys["rates:stats"];
    assert_eq!(
        (g.hits, g.misses, g.errors, g.total_operations),
        (160, 30, 10, 200)
    );
    assert_eq!((g.hit_rate, g.miss_rate, g.error_rate), (80.0, 15.0, 5.0));
    assert!(
        !c.keys.keys().any(|k| k.contains("clinic")),
        "keys are grouped: {:?}",
        c.keys.keys()
    );
}

#[test]
fn batches_business_and_functions() {
    let t0 = SystemTime::now();
    for (i, success) in [true, true, false, true].into_iter().enumerate() {
        record_batch_metric(BatchMetric {
            name: "nightly",
            duration: Duration::from_secs(10 + i as u64),
            success,
            timestamp: t0,
        });
    }
    let b = &collector().batch_stats().batches["nightly"];
    assert_eq!(
        (b.runs, b.successes, b.failures, b.success_rate),
        (4, 3, 1, 75.0)
    );
    assert_eq!(b.avg_duration, Duration::from_millis(11_500));
    assert!(b.last_failure.is_some());

    record_business_metric(
        "leave-application",
        1.0,
        &[("clinicId", "c1"), ("type", "ANNUAL")],
    );
    record_business_metric(
        "leave-application",
        2.0,
        &[("clinicId", "c2"), ("type", "ANNUAL")],
    );
    record_business_metric("leave-application", f64::NAN, &[]);
    let m = &collector().business_metrics().metrics["leave-application"];
    assert_eq!(
        (m.count, m.sum),
        (3, 3.0),
        "a NaN value counts as an event of value 0"
    );
    assert_eq!(m.tags["type"]["ANNUAL"].count, 2);
    assert_eq!(m.tags["clinicId"]["c2"].sum, 2.0);
}

#[test]
fn hand_recorded_events_outside_the_window_are_counted_not_lost() {
    let before = collector().recorder_stats().late_events;
    let now = SystemTime::now();
    api("/window", 200, 5); // now
    record_api_metric(ApiMetric {
        method: "GET",
        path: "/window",
        status_code: 200,
        duration: Duration::from_millis(5),
        timestamp: now - Duration::from_secs(150),
    });
    record_api_metric(ApiMetric {
        method: "GET",
        path: "/window",
        status_code: 200,
        duration: Duration::from_millis(5),
        timestamp: now - Duration::from_secs(600),
    });
    assert_eq!(
        collector().api_stats_for("/window").total_requests,
        2,
        "now and 2.5 minutes ago are in the window"
    );
    assert_eq!(
        collector().recorder_stats().late_events - before,
        1,
        "10 minutes ago is counted as late"
    );
}

#[test]
fn failed_queries_by_hand() {
    let now = SystemTime::now();
    let q = DatabaseMetric {
        operation: "delete",
        table: "HandTable",
        duration: Duration::from_millis(3),
        timestamp: now,
        query_type: QueryType::Write,
    };
    record_database_metric(q);
    record_database_metric(q.failed());
    let t = &collector().database_stats().tables["HandTable"];
    assert_eq!((t.totals.writes, t.totals.errors), (2, 1));
}
