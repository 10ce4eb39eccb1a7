//! The Prometheus exposition: names, labels, cumulative buckets, counters that include events
//! already out of the window, and `promtool check metrics` on the real output.

use perfmon_runtime::*;
use perfmon_tests::{promtool_check_metrics, sample_value};
use std::time::{Duration, SystemTime};

fn api(path: &str, status_code: u16, ms: u64, timestamp: SystemTime) {
    record_api_metric(ApiMetric {
        method: "GET",
        path,
        status_code,
        duration: Duration::from_millis(ms),
        timestamp,
    });
}

#[test]
fn exposition_counts_everything_since_start() {
    let now = SystemTime::now();
    for ms in [3, 7, 40, 40, 700] {
        api("/prom/items/{id}", 200, ms, now);
    }
    api("/prom/items/{id}", 404, 2, now);
    // ten minutes old: out of the window, still counted since start
    api("/prom/items/{id}", 200, 9, now - Duration::from_secs(600));
    record_cache_metric(CacheMetric {
        operation: CacheOp::Miss,
        key: "prom:cache:1",
        timestamp: now,
    });
    record_batch_metric(BatchMetric {
        name: "prom-batch",
        duration: Duration::from_secs(2),
        success: false,
        timestamp: now,
    });
    record_business_metric("prom-signup", 2.5, &[("plan", "pro \"gold\"")]);
    record_database_metric(DatabaseMetric {
        operation: "findMany",
        table: "PromStaff",
        duration: Duration::from_millis(120),
        timestamp: now,
        query_type: QueryType::Read,
    });

    let text = collector().prometheus_text();
    let l = r#"method="GET",route="/prom/items/{id}""#;
    assert_eq!(
        sample_value(
            &text,
            &format!("perfmon_http_requests_total{{{l},status=\"200\"}}")
        ),
        6.0
    );
    assert_eq!(
        sample_value(
            &text,
            &format!("perfmon_http_requests_total{{{l},status=\"404\"}}")
        ),
        1.0
    );
    assert_eq!(
        sample_value(
            &text,
            &format!("perfmon_http_request_duration_seconds_count{{{l}}}")
        ),
        7.0
    );
    assert_eq!(
        sample_value(
            &text,
            &format!("perfmon_http_request_duration_seconds_bucket{{{l},le=\"0.005\"}}")
        ),
        2.0
    );
    assert_eq!(
        sample_value(
            &text,
            &format!("perfmon_http_request_duration_seconds_bucket{{{l},le=\"0.01\"}}")
        ),
        4.0
    );
    assert_eq!(
        sample_value(
            &text,
            &format!("perfmon_http_request_duration_seconds_bucket{{{l},le=\"0.05\"}}")
        ),
        6.0
    );
    assert_eq!(
        sample_value(
            &text,
            &format!("perfmon_http_request_duration_seconds_bucket{{{l},le=\"+Inf\"}}")
        ),
        7.0
    );
    let sum = sample_value(
        &text,
        &format!("perfmon_http_request_duration_seconds_sum{{{l}}}"),
    );
    assert!((sum - 0.801).abs() < 1e-9, "{sum}");
    assert_eq!(
        collector().api_stats_for("/prom/items/{id}").total_requests,
        6,
        "the window leaves the old one out"
    );

    assert_eq!(
        sample_value(
            &text,
            r#"perfmon_cache_operations_total{key="prom:cache",result="miss"}"#
        ),
        1.0
    );
    assert_eq!(
        sample_value(
            &text,
            r#"perfmon_batch_runs_total{name="prom-batch",result="failure"}"#
        ),
        1.0
    );
    assert!(
        sample_value(
            &text,
            r#"perfmon_batch_last_failure_timestamp_seconds{name="prom-batch"}"#
        ) > 1.7e9
    );
    assert_eq!(
        sample_value(
            &text,
            r#"perfmon_business_tag_events_total{name="prom-signup",tag="plan",value="pro \"gold\""}"#
        ),
        1.0
    );
    assert_eq!(
        sample_value(
            &text,
            r#"perfmon_db_slow_queries_total{table="PromStaff",operation="findMany",kind="read"}"#
        ),
        1.0
    );
    assert!(sample_value(&text, "process_resident_memory_bytes") > 0.0);
    assert!(sample_value(&text, "process_open_fds") > 0.0);
    for line in text.lines().filter(|l| {
        l.starts_with("perfmon_http_request_duration_seconds_bucket{method=\"GET\",route=\"/prom")
    }) {
        assert!(!line.contains("NaN"), "{line}");
    }

    // promtool, from Debian's `prometheus` package (.ci/test installs it), lints the real output
    let (ok, report) = promtool_check_metrics(&text);
    assert!(
        ok && report.trim().is_empty(),
        "promtool check metrics:\n{report}\n---\n{text}"
    );
}

#[test]
fn sub_millisecond_calls_land_in_their_own_buckets() {
    let now = SystemTime::now();
    for us in [50, 200, 400, 800] {
        record_api_metric(ApiMetric {
            method: "GET",
            path: "/prom-fast",
            status_code: 200,
            duration: Duration::from_micros(us),
            timestamp: now,
        });
    }
    let text = collector().prometheus_text();
    let l = r#"method="GET",route="/prom-fast""#;
    // the buckets reach down to 100 µs (they started at 1 ms: all four in le="0.001")
    for (le, n) in [
        ("0.0001", 1.0),
        ("0.00025", 2.0),
        ("0.0005", 3.0),
        ("0.001", 4.0),
    ] {
        assert_eq!(
            sample_value(
                &text,
                &format!("perfmon_http_request_duration_seconds_bucket{{{l},le=\"{le}\"}}")
            ),
            n,
            "le={le}"
        );
    }
}
