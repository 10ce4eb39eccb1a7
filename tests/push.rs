//! A batch program pushes its metrics to a Pushgateway (issue 11, item 6): every push interval
//! while it runs, and once more at `shutdown()`, grouped by job and instance, with the right
//! values. Tested against a real `prometheus-pushgateway` (`.ci/test` installs and starts one on
//! 127.0.0.1:9191). Its own test binary: `init` is process-wide.

use std::time::Duration;

use perfmon_runtime::*;
use perfmon_tests::{http, unique_prefix};

fn pushgateway() -> String {
    std::env::var("PERFMON_TEST_PUSHGATEWAY_URL").unwrap_or_else(|_| "http://127.0.0.1:9191".into())
}

/// The value of the sample of `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

#[track_batch("nightly-push")]
fn nightly(fail: bool) -> Result<u32, String> {
    if fail {
        Err("the clinic list was empty".into())
    } else {
        Ok(40)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_program_pushes_its_metrics_while_it_runs_and_at_shutdown() {
    // perfmon's own warnings (a rejected push says why, from the push worker's thread) on
    // stderr, in the CI log
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .finish(),
    );
    // groups a crashed earlier run left: the Pushgateway refuses a push whose families are
    // inconsistent with what it holds (a HELP text changed since, say)
    let (_, groups) = http(&pushgateway(), "GET", "/api/v1/metrics");
    let groups: serde_json::Value = serde_json::from_str(&groups).unwrap_or_default();
    for g in groups["data"].as_array().into_iter().flatten() {
        let (job, instance) = (&g["labels"]["job"], &g["labels"]["instance"]);
        if let (Some(j), Some(i)) = (job.as_str(), instance.as_str()) {
            if j.starts_with("perfmon-test-push-") {
                http(
                    &pushgateway(),
                    "DELETE",
                    &format!("/metrics/job/{j}/instance/{i}"),
                );
            }
        }
    }
    let job = unique_prefix("push").replace(':', "-");
    let job_label = format!("job=\"{job}\"");
    let perf = init(
        Config::builder()
            .pushgateway(pushgateway(), &job)
            .push_interval(Duration::from_millis(200))
            .instance("push-a")
            .no_alerts()
            .build(),
    )
    .await
    .expect("init");

    // while it runs: the first run is pushed at a tick
    let _ = nightly(false);
    let runs = |text: &str, result: &str| {
        sample(
            text,
            "perfmon_batch_runs_total",
            &[
                &job_label,
                "instance=\"push-a\"",
                "name=\"nightly-push\"",
                &format!("result=\"{result}\""),
            ],
        )
    };
    let mut seen = None;
    for _ in 0..1200 {
        let (code, text) = http(&pushgateway(), "GET", "/metrics");
        assert_eq!(code, 200);
        if let Some(v) = runs(&text, "success") {
            seen = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, Some(1.0), "a tick pushed the first run");

    // the last runs just before shutdown: the last push carries them
    let _ = nightly(false);
    let _ = nightly(true);
    perf.shutdown().await.expect("shutdown, with the last push");
    let (_, text) = http(&pushgateway(), "GET", "/metrics");
    assert_eq!(runs(&text, "success"), Some(2.0), "{text}");
    assert_eq!(runs(&text, "failure"), Some(1.0));
    // the pushgateway stamps the group's last push
    assert!(sample(
        &text,
        "push_time_seconds",
        &[&job_label, "instance=\"push-a\""]
    )
    .is_some_and(|t| t > 0.0));

    let (code, _) = http(
        &pushgateway(),
        "DELETE",
        &format!("/metrics/job/{job}/instance/push-a"),
    );
    assert_eq!(code, 202, "the test's group removed");
}
