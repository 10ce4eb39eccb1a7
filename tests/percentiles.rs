//! Percentiles over 100,000 recorded durations equal the exact values within HDR precision, for
//! one route, for the union of routes (a merge of histograms, not an average of percentiles),
//! and for database tables.

use perfmon_runtime::{
    collector, record_api_metric, record_database_metric, ApiMetric, DatabaseMetric, QueryType,
};
use perfmon_tests::{assert_within_hdr, exact_quantile, Rng};
use std::time::{Duration, SystemTime};

fn check(
    what: &str,
    mut values: Vec<Duration>,
    avg: Duration,
    p50: Option<Duration>,
    p95: Duration,
    p99: Duration,
    max: Duration,
) {
    values.sort_unstable();
    let n = values.len() as u128;
    let exact_avg =
        Duration::from_nanos((values.iter().map(|d| d.as_nanos()).sum::<u128>() / n) as u64);
    assert_eq!(avg, exact_avg, "{what}: the mean is exact");
    assert_eq!(
        max,
        *values.last().expect("values"),
        "{what}: the max is exact"
    );
    if let Some(p50) = p50 {
        assert_within_hdr(&format!("{what} p50"), p50, exact_quantile(&values, 0.50));
    }
    assert_within_hdr(&format!("{what} p95"), p95, exact_quantile(&values, 0.95));
    assert_within_hdr(&format!("{what} p99"), p99, exact_quantile(&values, 0.99));
}

#[test]
fn api_percentiles_per_route_and_over_the_union() {
    let mut rng = Rng::new(42);
    let now = SystemTime::now();
    let (mut fast, mut slow) = (Vec::new(), Vec::new());
    for i in 0..100_000 {
        // two routes with very different distributions: averaging their percentiles would be wrong
        let (path, d) = if i % 4 == 0 {
            (
                "/pct/slow",
                rng.log_uniform(Duration::from_millis(200), Duration::from_secs(8)),
            )
        } else {
            (
                "/pct/fast",
                rng.log_uniform(Duration::from_micros(100), Duration::from_millis(40)),
            )
        };
        record_api_metric(ApiMetric {
            method: "GET",
            path,
            status_code: 200,
            duration: d,
            timestamp: now,
        });
        if path == "/pct/fast" {
            fast.push(d)
        } else {
            slow.push(d)
        }
    }
    for (path, values) in [("/pct/fast", &fast), ("/pct/slow", &slow)] {
        let s = collector().api_stats_for(path);
        assert_eq!(s.total_requests, values.len() as u64);
        check(
            path,
            values.clone(),
            s.avg_duration,
            Some(s.p50_duration),
            s.p95_duration,
            s.p99_duration,
            s.max_duration,
        );
    }
    let all = collector().api_stats();
    assert_eq!(all.total_requests, 100_000);
    let union: Vec<Duration> = fast.iter().chain(&slow).copied().collect();
    check(
        "union",
        union,
        all.avg_duration,
        Some(all.p50_duration),
        all.p95_duration,
        all.p99_duration,
        all.max_duration,
    );
}

#[test]
fn database_percentiles_per_operation_and_per_table() {
    let mut rng = Rng::new(7);
    let now = SystemTime::now();
    let (mut reads, mut all) = (Vec::new(), Vec::new());
    for i in 0..20_000 {
        let write = i % 3 == 0;
        let d = rng.log_uniform(Duration::from_micros(300), Duration::from_millis(400));
        record_database_metric(DatabaseMetric {
            operation: if write { "update" } else { "findMany" },
            table: "PctStaff",
            duration: d,
            timestamp: now,
            query_type: if write {
                QueryType::Write
            } else {
                QueryType::Read
            },
        });
        if !write {
            reads.push(d);
        }
        all.push(d);
    }
    let db = collector().database_stats();
    let table = &db.tables["PctStaff"];
    let op = &table.operations["findMany"];
    assert_eq!((op.reads, op.writes), (reads.len() as u64, 0));
    check(
        "findMany",
        reads.clone(),
        op.avg_duration,
        None,
        op.p95_duration,
        op.p99_duration,
        op.max_duration,
    );
    assert_eq!(
        (table.totals.reads, table.totals.writes),
        (reads.len() as u64, (all.len() - reads.len()) as u64)
    );
    check(
        "table",
        all.clone(),
        table.totals.avg_duration,
        None,
        table.totals.p95_duration,
        table.totals.p99_duration,
        table.totals.max_duration,
    );
    let over_100ms = all
        .iter()
        .filter(|d| **d > Duration::from_millis(100))
        .count() as u64;
    assert_eq!(
        table.totals.slow_queries, over_100ms,
        "slow = over the 100 ms default"
    );
}
