//! Histogram buckets configurable per kind (issue 11, item 3): the API histogram on bounds of
//! its own, the others on the defaults (100 µs to 60 s), each bucket exact; invalid bounds are a
//! named error at `init`; the generated rules measure latency objectives on the API bounds.
//! Its own test binary: the bounds are process-wide.

use std::time::{Duration, SystemTime};

use perfmon_runtime::export::prometheus_rules;
use perfmon_runtime::*;
use perfmon_tests::sample_value;

#[test]
fn api_buckets_of_their_own() {
    let ms = Duration::from_millis;
    let bad = init_blocking(
        Config::builder()
            .histogram_buckets(HistogramKind::Api, &[ms(7), ms(1)])
            .build(),
    )
    .unwrap_err();
    assert!(bad.to_string().contains("histogram_buckets"), "{bad}");

    let config = Config::builder()
        .histogram_buckets(HistogramKind::Api, &[ms(1), ms(7), ms(20)])
        .no_alerts()
        .build();
    let rules = prometheus_rules(&config);
    let perf = init_blocking(config).expect("init");
    let now = SystemTime::now();
    for us in [500, 5_000, 10_000, 30_000] {
        record_api_metric(ApiMetric {
            method: "GET",
            path: "/buckets",
            status_code: 200,
            duration: Duration::from_micros(us),
            timestamp: now,
        });
    }
    record_database_metric(DatabaseMetric {
        table: "BucketStaff",
        operation: "findMany",
        query_type: QueryType::Read,
        duration: Duration::from_micros(200),
        timestamp: now,
    });
    let text = collector().prometheus_text();
    let api = r#"perfmon_http_request_duration_seconds_bucket{method="GET",route="/buckets","#;
    for (le, n) in [("0.001", 1.0), ("0.007", 2.0), ("0.02", 3.0), ("+Inf", 4.0)] {
        assert_eq!(
            sample_value(&text, &format!("{api}le=\"{le}\"}}")),
            n,
            "le={le}"
        );
    }
    let lines = text.lines().filter(|l| l.starts_with(api)).count();
    assert_eq!(lines, 4, "three bounds and +Inf");
    // the other kinds keep the defaults, from 100 µs
    let db = r#"perfmon_db_query_duration_seconds_bucket{table="BucketStaff",operation="findMany",kind="read","#;
    assert_eq!(sample_value(&text, &format!("{db}le=\"0.0001\"}}")), 0.0);
    assert_eq!(sample_value(&text, &format!("{db}le=\"0.00025\"}}")), 1.0);
    // latency objectives measured on the API's own bounds, and said so
    assert!(rules.contains("le=\"0.02\""), "{rules}");
    assert!(
        rules.contains("# p95 under 1 s is measured at the bucket bound le=\"0.02\""),
        "{rules}"
    );
    drop(perf);
}
