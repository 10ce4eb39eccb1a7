//! The generated Prometheus rules (issue 11, item 7): `promtool check rules` accepts them, and
//! `promtool test rules` shows each alert firing when its condition holds and staying quiet when
//! it does not (a second instance without errors, a batch that stopped failing, the fast burn
//! under a slow one). Needs Debian's `prometheus` package (`.ci/test` installs it).

use std::process::Command;

use perfmon_runtime::export::prometheus_rules;
use perfmon_runtime::Config;

fn promtool(args: &[&str], dir: &std::path::Path) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs (apt-get install prometheus; .ci/test installs it)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Unit tests of the default rules: instance `a` answers 6 errors in every 66 requests
/// (9.1 %) with a mean of 4 s, its queries take 67 ms on average (the objective: 50 ms), and its
/// weekly batch fails once at minute 10; instance `b` answers without errors and queries in
/// 17 ms.
const UNIT_TESTS: &str = r#"rule_files:
  - rules.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'perfmon_http_requests_total{job="app",instance="a",method="GET",route="/x",status="200"}'
        values: '0+60x70'
      - series: 'perfmon_http_requests_total{job="app",instance="a",method="GET",route="/x",status="500"}'
        values: '0+6x70'
      - series: 'perfmon_http_requests_total{job="app",instance="b",method="GET",route="/x",status="200"}'
        values: '0+60x70'
      - series: 'perfmon_http_request_duration_seconds_sum{job="app",instance="a",method="GET",route="/x"}'
        values: '0+264x70'
      - series: 'perfmon_http_request_duration_seconds_count{job="app",instance="a",method="GET",route="/x"}'
        values: '0+66x70'
      - series: 'perfmon_batch_runs_total{job="app",instance="a",name="weekly-assignment",result="failure"}'
        values: '0x10 1x60'
      - series: 'perfmon_db_query_duration_seconds_sum{job="app",instance="a",table="Staff",operation="findMany",kind="read"}'
        values: '0+4x70'
      - series: 'perfmon_db_query_duration_seconds_count{job="app",instance="a",table="Staff",operation="findMany",kind="read"}'
        values: '0+60x70'
      - series: 'perfmon_db_query_duration_seconds_sum{job="app",instance="b",table="Staff",operation="findMany",kind="read"}'
        values: '0+1x70'
      - series: 'perfmon_db_query_duration_seconds_count{job="app",instance="b",table="Staff",operation="findMany",kind="read"}'
        values: '0+60x70'
    alert_rule_test:
      - eval_time: 15m
        alertname: PerfmonApiErrorRateCritical
        exp_alerts:
          - exp_labels: {severity: critical, perfmon_rule: api-error-rate-critical, job: app, instance: a}
            exp_annotations: {summary: "API error rate (4xx and 5xx) above 5% over 5m"}
      - eval_time: 15m
        alertname: PerfmonApiErrorRateWarning
        exp_alerts:
          - exp_labels: {severity: warning, perfmon_rule: api-error-rate-warning, job: app, instance: a}
            exp_annotations: {summary: "API error rate (4xx and 5xx) above 2% over 5m"}
      - eval_time: 15m
        alertname: PerfmonApiLatencyWarning
        exp_alerts:
          - exp_labels: {severity: warning, perfmon_rule: api-latency-warning, job: app, instance: a}
            exp_annotations: {summary: "mean API response time above 3 s over 5m"}
      - eval_time: 15m
        alertname: PerfmonApiLatencyCritical
        exp_alerts: []
      - eval_time: 12m
        alertname: PerfmonBatchFailure
        exp_alerts:
          - exp_labels: {severity: critical, perfmon_rule: batch-failure, job: app, instance: a, name: weekly-assignment}
            exp_annotations: {summary: "a batch run failed in the last 5m"}
      - eval_time: 30m
        alertname: PerfmonBatchFailure
        exp_alerts: []
      - eval_time: 15m
        alertname: PerfmonCacheHitRateLow
        exp_alerts: []
      - eval_time: 60m
        alertname: PerfmonHttpErrorsErrorBudgetBurnSlow
        exp_alerts:
          - exp_labels: {severity: warning, perfmon_objective: "api error rate < 1%", burn_rate: "6", job: app, instance: a}
            exp_annotations: {summary: "API error rate objective (under 1%): the error budget burns 6× too fast over 6h and 30m"}
      - eval_time: 60m
        alertname: PerfmonHttpErrorsErrorBudgetBurnFast
        exp_alerts: []
      - eval_time: 60m
        alertname: PerfmonDbMeanQueryTimeObjective
        exp_alerts:
          - exp_labels: {severity: warning, perfmon_objective: "db mean query time < 0.05 s", job: app, instance: a}
            exp_annotations: {summary: "mean database query time over the last hour above the objective (0.05 s)"}
"#;

#[test]
fn the_generated_rules_pass_promtool_check_and_their_unit_tests() {
    let rules = prometheus_rules(&Config::builder().build());
    let dir = std::env::temp_dir().join(format!("perfmon-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("rules.yml"), &rules).expect("write the rules");
    std::fs::write(dir.join("tests.yml"), UNIT_TESTS).expect("write the tests");

    let (ok, report) = promtool(&["check", "rules", "rules.yml"], &dir);
    assert!(ok, "promtool check rules:\n{report}\n---\n{rules}");
    let (ok, report) = promtool(&["test", "rules", "tests.yml"], &dir);
    assert!(ok, "promtool test rules:\n{report}\n---\n{rules}");
    let _ = std::fs::remove_dir_all(&dir);

    // the seed's rules that Prometheus cannot evaluate are named, not dropped silently
    assert!(rules.contains("# system-unhealthy: "), "{rules}");
    // the objectives' thresholds are bucket bounds: measured exactly
    assert!(rules.contains("le=\"1\""), "{rules}");
    assert!(rules.contains("le=\"3\""), "{rules}");
    assert!(
        !rules.contains("is measured at the bucket bound"),
        "{rules}"
    );
}

#[test]
fn configured_thresholds_and_no_alerts() {
    use perfmon_runtime::alerts::{AlertConfig, Condition, Rule, Severity};
    let alerts = AlertConfig {
        rules: vec![Rule::new(
            "checkout-errors",
            Severity::Critical,
            Condition::ErrorRateAbove(0.5),
        )],
        ..AlertConfig::default()
    };
    let rules = prometheus_rules(&Config::builder().alerts(alerts).build());
    assert!(rules.contains("alert: PerfmonCheckoutErrors"), "{rules}");
    assert!(rules.contains("> 0.5\n"), "{rules}");
    assert!(!rules.contains("PerfmonApiErrorRateCritical"), "{rules}");
    // a threshold that is not a bucket bound is measured at the bound under it, and said so
    let targets = perfmon_runtime::SlaTargets {
        api_p99: std::time::Duration::from_millis(2700),
        ..perfmon_runtime::SlaTargets::default()
    };
    let stricter = prometheus_rules(&Config::builder().sla(targets).build());
    assert!(stricter.contains("le=\"2.5\""), "{stricter}");
    assert!(
        stricter.contains("# p99 under 2.7 s is measured at the bucket bound le=\"2.5\""),
        "{stricter}"
    );
    let quiet = prometheus_rules(&Config::builder().no_alerts().build());
    assert!(!quiet.contains("perfmon-alerts"), "{quiet}");
    assert!(quiet.contains("name: perfmon-slo"), "{quiet}");
}
