//! Cardinality caps hold under 100,000 distinct values: the excess is counted under
//! `__other__`, nothing is lost, and memory stays bounded.

use perfmon_runtime::{
    collector, record_api_metric, record_business_metric, ApiMetric, Limits, OTHER,
};
use std::time::{Duration, SystemTime};

#[test]
fn routes_past_the_cap_are_counted_under_other() {
    let cap = Limits::default().max_routes;
    let now = SystemTime::now();
    for i in 0..100_000u64 {
        record_api_metric(ApiMetric {
            method: "GET",
            path: &format!("/users/{i}"),
            status_code: 200,
            duration: Duration::from_micros(100 + i % 1000),
            timestamp: now,
        });
    }
    let routes = collector().api_routes();
    let users: Vec<_> = routes
        .iter()
        .filter(|r| r.path.starts_with("/users/"))
        .collect();
    assert_eq!(
        users.len(),
        cap,
        "exactly the first {cap} routes keep their own series"
    );
    let other = routes
        .iter()
        .find(|r| r.path == OTHER)
        .expect("an __other__ route");
    assert_eq!(other.stats.total_requests, 100_000 - cap as u64);
    assert_eq!(
        collector().api_stats().total_requests,
        100_000,
        "nothing is dropped"
    );
    let r = collector().recorder_stats();
    // this binary's other test adds one business metric with up to max_tag_values + 1 tag series
    let bound = cap + 1 + Limits::default().max_tag_values + 2;
    assert!(
        r.series <= bound as u64,
        "{} series, bound {bound}",
        r.series
    );
    assert!(r.memory_bytes < 64 << 20, "{} bytes", r.memory_bytes);
}

#[test]
fn tag_values_past_the_cap_are_counted_under_other() {
    let cap = Limits::default().max_tag_values;
    for i in 0..100_000u64 {
        record_business_metric("login-cap", 1.0, &[("userId", &i.to_string())]);
    }
    let m = &collector().business_metrics().metrics["login-cap"];
    assert_eq!(m.count, 100_000);
    let values = &m.tags["userId"];
    assert_eq!(values.len(), cap + 1);
    assert_eq!(values[OTHER].count, 100_000 - cap as u64);
}
