//! Apdex per route (issue 12, item 3): exact from the histogram against the same inputs, each
//! route with its own T — from `route_apdex`, `#[track_api(apdex)]` or the default — in the
//! stats, the JSON, the Prometheus exposition and the SLA report. Its own test binary: the
//! thresholds are process-wide.

use std::time::{Duration, SystemTime};

use perfmon_runtime::*;
use perfmon_tests::{sample_value, Rng};

#[track_api(path = "/apdex/macro", method = "GET", apdex = "300ms")]
fn macro_route() -> u32 {
    7
}

/// Durations from 1 ms to 4 s, none within 0.2% of `t` or `4t` (where a histogram bin could
/// straddle the threshold), recorded for `route`; returns them.
fn record(route: &str, t: Duration, rng: &mut Rng, n: usize) -> Vec<Duration> {
    let near = |d: Duration, x: Duration| (d.as_secs_f64() / x.as_secs_f64() - 1.0).abs() < 0.002;
    let mut out = Vec::new();
    while out.len() < n {
        let d = rng.log_uniform(Duration::from_millis(1), Duration::from_secs(4));
        if near(d, t) || near(d, 4 * t) {
            continue;
        }
        record_api_metric(ApiMetric {
            method: "GET",
            path: route,
            status_code: 200,
            duration: d,
            timestamp: SystemTime::now(),
        });
        out.push(d);
    }
    out
}

fn counts(ds: &[Duration], t: Duration) -> (u64, u64) {
    let sat = ds.iter().filter(|&&d| d <= t).count() as u64;
    let tol = ds.iter().filter(|&&d| d > t && d <= 4 * t).count() as u64;
    (sat, tol)
}

fn score((sat, tol): (u64, u64), n: usize) -> f64 {
    (sat as f64 + tol as f64 / 2.0) / n as f64
}

#[test]
fn apdex_is_exact_per_route_with_each_routes_threshold() {
    let zero = init_blocking(Config::builder().apdex_threshold(Duration::ZERO).build())
        .expect_err("a zero T is refused");
    assert!(zero.to_string().contains("apdex_threshold"), "{zero}");
    let _perf = init_blocking(
        Config::builder()
            .apdex_threshold(Duration::from_millis(200))
            .route_apdex("/apdex/config", Duration::from_millis(100))
            .no_alerts()
            .build(),
    )
    .expect("init");
    let mut rng = Rng::new(7);
    let ms = Duration::from_millis;
    // the macro's call itself is far under its 300 ms: satisfied
    assert_eq!(macro_route(), 7);
    let macro_calls = record("/apdex/macro", ms(300), &mut rng, 400);
    let config_calls = record("/apdex/config", ms(100), &mut rng, 500);
    let default_calls = record("/apdex/default", ms(200), &mut rng, 300);

    let (s, t) = counts(&macro_calls, ms(300));
    let cases = [
        ("/apdex/macro", ms(300), score((s + 1, t), 401)),
        (
            "/apdex/config",
            ms(100),
            score(counts(&config_calls, ms(100)), 500),
        ),
        (
            "/apdex/default",
            ms(200),
            score(counts(&default_calls, ms(200)), 300),
        ),
    ];
    let text = collector().prometheus_text();
    for (route, t, want) in cases {
        let stats = collector().api_stats_for(route);
        assert_eq!(stats.apdex_threshold, t, "{route}");
        let got = stats.apdex.expect("requests");
        assert!((got - want).abs() < 1e-12, "{route}: {got} vs {want}");
        let json = serde_json::to_value(&stats).expect("JSON");
        assert_eq!(
            json["apdex"].as_f64(),
            Some((want * 1000.0).round() / 1000.0),
            "{route}: three decimals"
        );
        assert_eq!(json["apdexThreshold"].as_f64(), Some(t.as_secs_f64() * 1e3));
        let gauge = sample_value(
            &text,
            &format!("perfmon_http_apdex{{method=\"GET\",route=\"{route}\"}}"),
        );
        assert!((gauge - want).abs() < 1e-12, "{route}: {gauge}");
        assert_eq!(
            sample_value(
                &text,
                &format!(
                    "perfmon_http_apdex_threshold_seconds{{method=\"GET\",route=\"{route}\"}}"
                ),
            ),
            t.as_secs_f64()
        );
    }
    // over every route: each counted with its own T
    let (c, d) = (
        counts(&config_calls, ms(100)),
        counts(&default_calls, ms(200)),
    );
    let all = score((s + 1 + c.0 + d.0, t + c.1 + d.1), 401 + 500 + 300);
    let overall = collector().api_stats();
    assert!((overall.apdex.expect("requests") - all).abs() < 1e-12);
    assert_eq!(overall.apdex_threshold, ms(200), "the default T");
    let sla = collector().sla_report();
    assert_eq!(sla.apdex, overall.apdex);
    // a route without requests has no score
    assert_eq!(collector().api_stats_for("/apdex/none").apdex, None);
}
