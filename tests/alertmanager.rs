//! Alerts go to a real Alertmanager (issue 11, item 4): a burst of errors fires the error-rate
//! rules and Alertmanager's API shows them active, with perfmon's labels and `startsAt`; clean
//! traffic resolves them, perfmon sends `endsAt`, and Alertmanager no longer lists them as
//! active. `.ci/test` installs Debian's `prometheus-alertmanager` and starts it on
//! 127.0.0.1:9193. Its own test binary: `init` is process-wide.

use std::time::{Duration, Instant};

use perfmon_runtime::alerts::AlertConfig;
use perfmon_runtime::*;
use perfmon_tests::{api_burst, http, unique_prefix};
use serde_json::Value;

fn alertmanager() -> String {
    std::env::var("PERFMON_TEST_ALERTMANAGER_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:9193".into())
}

/// Alertmanager's alerts for `instance` (`GET /api/v2/alerts`, active ones by default).
fn alerts_of(instance: &str) -> Vec<Value> {
    let path = format!("/api/v2/alerts?filter=instance%3D%22{instance}%22");
    let (code, body) = http(&alertmanager(), "GET", &path);
    assert_eq!(code, 200, "{body}");
    // chunked or not: the JSON array is between the first '[' and the last ']'
    let (Some(a), Some(b)) = (body.find('['), body.rfind(']')) else {
        panic!("no JSON array in {body}");
    };
    serde_json::from_str::<Vec<Value>>(&body[a..=b])
        .unwrap_or_else(|e| panic!("{e}: {body}"))
        .into_iter()
        .filter(|a| a["status"]["state"] == "active")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_active_in_alertmanager_then_resolved() {
    let instance = unique_prefix("am").replace(':', "-");
    let perf = init(
        Config::builder()
            .instance(&instance)
            .alerts(AlertConfig {
                tick: Duration::from_millis(100),
                window: Duration::from_secs(2),
                pending: Duration::from_millis(300),
                ..AlertConfig::default()
            })
            .alertmanager(alertmanager())
            .build(),
    )
    .await
    .expect("init");

    api_burst("/alertmanager/burst", 200, 80);
    api_burst("/alertmanager/burst", 500, 20); // 20% errors
    let deadline = Instant::now() + Duration::from_secs(30);
    let firing = loop {
        let a = alerts_of(&instance);
        if a.iter()
            .any(|a| a["labels"]["alertname"] == "api-error-rate-critical")
            || Instant::now() > deadline
        {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let critical = firing
        .iter()
        .find(|a| a["labels"]["alertname"] == "api-error-rate-critical")
        .unwrap_or_else(|| panic!("active in Alertmanager: {firing:?}"));
    assert_eq!(critical["labels"]["severity"], "critical");
    assert_eq!(critical["labels"]["instance"], instance.as_str());
    assert!(
        critical["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{critical}"
    );
    assert!(
        critical["startsAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{critical}"
    );
    let started = critical["startsAt"].clone();
    let updated = critical["updatedAt"].clone();

    // while firing it is sent again and again (Alertmanager's updatedAt moves), as the same
    // incident (startsAt stays)
    let deadline = Instant::now() + Duration::from_secs(30);
    let again = loop {
        api_burst("/alertmanager/burst", 500, 5);
        let a = alerts_of(&instance);
        let c = a
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "api-error-rate-critical");
        match c {
            Some(c) if c["updatedAt"] != updated => break c,
            _ if Instant::now() > deadline => panic!("never sent again while firing"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert_eq!(again["startsAt"], started, "the same incident");

    // clean traffic past the window: resolved, sent with endsAt; no longer active
    let deadline = Instant::now() + Duration::from_secs(30);
    let still = loop {
        api_burst("/alertmanager/burst", 200, 50);
        let a = alerts_of(&instance);
        if !a
            .iter()
            .any(|a| a["labels"]["alertname"] == "api-error-rate-critical")
            || Instant::now() > deadline
        {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        !still
            .iter()
            .any(|a| a["labels"]["alertname"] == "api-error-rate-critical"),
        "resolved in Alertmanager: {still:?}"
    );
    perf.shutdown().await.expect("shutdown");
}
