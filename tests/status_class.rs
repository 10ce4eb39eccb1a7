//! The optional status-class label on request durations (issue 11, item 3): with
//! `status_class_label(true)`, `perfmon_http_request_duration_seconds` has one histogram per
//! status class a route answered with, each bucket exact, the classes adding up to the route's
//! requests, and a traced request's exemplar only in its own class. Its own test binary: the
//! setting is process-wide.

use std::time::{Duration, SystemTime};

use perfmon_runtime::trace::{with_trace_id, TraceId};
use perfmon_runtime::*;
use perfmon_tests::sample_value;

fn api(path: &str, status_code: u16, ms: u64) {
    record_api_metric(ApiMetric {
        method: "GET",
        path,
        status_code,
        duration: Duration::from_millis(ms),
        timestamp: SystemTime::now(),
    });
}

#[test]
fn request_durations_split_by_status_class() {
    let perf = init_blocking(
        Config::builder()
            .status_class_label(true)
            .no_alerts()
            .build(),
    )
    .expect("init");
    // (status, ms): 2xx fast, 4xx faster, 5xx slow
    let calls = [
        (200, 3),
        (201, 40),
        (204, 40),
        (404, 1),
        (422, 1),
        (500, 2_000),
        (503, 4_000),
        (599, 20),
        (700, 20), // outside 100–599: counted as 5xx
    ];
    for (status, ms) in calls {
        api("/classes", status, ms);
    }
    let trace = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736");
    with_trace_id(trace, || api("/classes", 502, 7_000));

    let text = collector().prometheus_text();
    let bucket = |class: &str, le: &str| {
        sample_value(
            &text,
            &format!(
                r#"perfmon_http_request_duration_seconds_bucket{{method="GET",route="/classes",status_class="{class}",le="{le}"}}"#
            ),
        )
    };
    let count = |class: &str| {
        sample_value(
            &text,
            &format!(
                r#"perfmon_http_request_duration_seconds_count{{method="GET",route="/classes",status_class="{class}"}}"#
            ),
        )
    };
    // exact, from the same inputs
    for (class, lo, hi) in [("2xx", 200, 299), ("4xx", 400, 499), ("5xx", 500, 999)] {
        let mine: Vec<u64> = calls
            .iter()
            .chain([(502, 7_000)].iter())
            .filter(|(s, _)| (lo..=hi).contains(s))
            .map(|&(_, ms)| ms)
            .collect();
        assert_eq!(count(class), mine.len() as f64, "{class}");
        for (le, bound_ms) in [("0.005", 5), ("0.05", 50), ("3", 3_000), ("5", 5_000)] {
            let under = mine.iter().filter(|&&ms| ms <= bound_ms).count();
            assert_eq!(bucket(class, le), under as f64, "{class} le={le}");
        }
    }
    assert_eq!(count("2xx") + count("4xx") + count("5xx"), 10.0);
    assert!(
        !text.contains(r#"status_class="1xx""#) && !text.contains(r#"status_class="3xx""#),
        "no histogram for a class the route never answered with"
    );
    assert!(
        !text.contains(
            r#"perfmon_http_request_duration_seconds_count{method="GET",route="/classes"}"#
        ),
        "no unsplit histogram beside the classes"
    );

    // the traced 502's exemplar is in the 5xx histogram only
    let om = collector().openmetrics_text();
    let with_exemplar: Vec<&str> = om
        .lines()
        .filter(|l| l.contains("4bf92f3577b34da6a3ce929d0e0e4736"))
        .filter(|l| l.starts_with("perfmon_http_request_duration_seconds_bucket"))
        .collect();
    assert_eq!(with_exemplar.len(), 1, "{with_exemplar:?}");
    assert!(
        with_exemplar[0].contains(r#"status_class="5xx",le="10.0""#),
        "{}",
        with_exemplar[0]
    );
    drop(perf);
}
