//! Prometheus rules generated from perfmon's configuration, over perfmon's own metric names: the
//! alert rules (the seed's thresholds, or the configured ones) as Prometheus alerts, and the SLA
//! objectives as multi-window, multi-burn-rate alerts (the Google SRE workbook's: 1 h and 5 m
//! windows at 14.4× the error budget's rate, 6 h and 30 m at 6×), with the recording rules they
//! use. [`prometheus_rules`] writes them as one rule file for `rule_files:` in `prometheus.yml`.

use std::fmt::Write;
use std::time::Duration;

use crate::core::hist::{default_bounds, HistogramKind};
use crate::ops::alerts::{AlertConfig, Condition, Rule, Severity};
use crate::read::sla::SlaTargets;

/// What the rules are generated from: the alert rules (`None`: no alerts) and the SLA targets.
/// `perfmon_runtime::Config` is one.
pub trait RuleSource {
    /// The alert rules and their window and pending duration, if alerts are on.
    fn alert_config(&self) -> Option<&AlertConfig>;
    /// The SLA targets.
    fn sla_targets(&self) -> SlaTargets;
    /// The Prometheus bucket bounds of `kind` (default: perfmon's defaults).
    fn histogram_buckets(&self, kind: HistogramKind) -> Vec<Duration> {
        let _ = kind;
        default_bounds()
    }
}

/// The labels every expression groups by: one alert per scraped instance, as perfmon's own
/// engine evaluates each instance.
const BY: &str = "by (job, instance)";

/// The burn-rate windows: (long, short, factor of the budget's rate, severity).
const BURNS: [(&str, &str, f64, &str); 2] = [
    ("1h", "5m", 14.4, "critical"),
    ("6h", "30m", 6.0, "warning"),
];

/// Prometheus' form of a duration (whole seconds, minutes or hours when exact).
fn prom_duration(d: Duration) -> String {
    let s = d.as_secs().max(1);
    if s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// A number as PromQL and YAML take it.
fn num(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// `api-error-rate-critical` → `PerfmonApiErrorRateCritical`.
fn alert_name(rule: &str) -> String {
    let mut out = String::from("Perfmon");
    for part in rule.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    out
}

/// A YAML double-quoted string.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One alert of the rule file.
struct Alert {
    name: String,
    expr: String,
    for_: String,
    severity: &'static str,
    labels: Vec<(&'static str, String)>,
    summary: String,
}

impl Alert {
    fn write(&self, o: &mut String) {
        let _ = writeln!(o, "      - alert: {}", self.name);
        let _ = writeln!(o, "        expr: |");
        for line in self.expr.lines() {
            let _ = writeln!(o, "          {line}");
        }
        let _ = writeln!(o, "        for: {}", self.for_);
        let _ = writeln!(o, "        labels:");
        let _ = writeln!(o, "          severity: {}", self.severity);
        for (k, v) in &self.labels {
            let _ = writeln!(o, "          {k}: {}", quoted(v));
        }
        let _ = writeln!(o, "        annotations:");
        let _ = writeln!(o, "          summary: {}", quoted(&self.summary));
    }
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
    }
}

/// The Prometheus alert for one of perfmon's rules, or why it has none.
fn alert_for(rule: &Rule, a: &AlertConfig) -> Result<Alert, &'static str> {
    let w = prom_duration(a.window);
    let min = a.min_requests;
    let requests = format!("sum {BY} (increase(perfmon_http_requests_total[{w}])) >= {min}");
    let (expr, summary) = match &rule.condition {
        Condition::ErrorRateAbove(p) => (
            format!(
                "100 * sum {BY} (rate(perfmon_http_requests_total{{status=~\"[45]..\"}}[{w}]))\n  / sum {BY} (rate(perfmon_http_requests_total[{w}])) > {}\nand {requests}",
                num(*p)
            ),
            format!("API error rate (4xx and 5xx) above {}% over {w}", num(*p)),
        ),
        Condition::AvgDurationAbove(d) => (
            format!(
                "sum {BY} (rate(perfmon_http_request_duration_seconds_sum[{w}]))\n  / sum {BY} (rate(perfmon_http_request_duration_seconds_count[{w}])) > {}",
                num(d.as_secs_f64())
            ),
            format!("mean API response time above {} s over {w}", num(d.as_secs_f64())),
        ),
        Condition::CacheHitRateBelow(p) => (
            format!(
                "100 * sum {BY} (rate(perfmon_cache_operations_total{{result=\"hit\"}}[{w}]))\n  / sum {BY} (rate(perfmon_cache_operations_total{{result=~\"hit|miss\"}}[{w}])) < {}\nand sum {BY} (increase(perfmon_cache_operations_total{{result=~\"hit|miss\"}}[{w}])) >= {min}",
                num(*p)
            ),
            format!("cache hit rate below {}% over {w}", num(*p)),
        ),
        Condition::BatchFailed => (
            format!("sum by (job, instance, name) (increase(perfmon_batch_runs_total{{result=\"failure\"}}[{w}])) > 0"),
            format!("a batch run failed in the last {w}"),
        ),
        Condition::SlowQueriesRising { factor, min_count } => (
            format!(
                "sum {BY} (increase(perfmon_db_slow_queries_total[{w}]))\n  >= {} * sum {BY} (increase(perfmon_db_slow_queries_total[1h] offset {w})) * {}\nand sum {BY} (increase(perfmon_db_slow_queries_total[{w}])) >= {min_count}",
                num(*factor),
                num(a.window.as_secs_f64() / 3600.0)
            ),
            format!(
                "slow queries over {w} at least {}× the hour before's rate",
                num(*factor)
            ),
        ),
        Condition::Unhealthy => {
            return Err("health checks are not exported: perfmon evaluates this rule itself")
        }
        Condition::Custom(_) => {
            return Err("a custom rule is code: perfmon evaluates it itself")
        }
    };
    Ok(Alert {
        name: alert_name(&rule.name),
        expr,
        for_: prom_duration(rule.pending.unwrap_or(a.pending)),
        severity: severity(rule.severity),
        labels: vec![("perfmon_rule", rule.name.clone())],
        summary,
    })
}

/// The largest Prometheus bucket bound at or under `d` (the latency objectives are measured
/// against it: exact when `d` is a bound, stricter otherwise), in seconds.
fn bucket_at_or_under(d: Duration, bounds: &[Duration]) -> Option<f64> {
    bounds
        .iter()
        .rev()
        .find(|&&b| b <= d)
        .map(|b| b.as_secs_f64())
}

/// One ratio objective: the recording rules of its bad ratio over every window, and its two
/// burn-rate alerts.
struct Objective {
    /// `perfmon:<name>:ratio_rate<window>`.
    name: &'static str,
    /// The bad ratio's expression over `{w}` (a placeholder).
    bad_ratio: String,
    /// The error budget, 0–1.
    budget: f64,
    summary: String,
    objective: String,
}

impl Objective {
    fn record(&self, o: &mut String) {
        let mut windows: Vec<&str> = BURNS.iter().flat_map(|b| [b.0, b.1]).collect();
        windows.sort_unstable();
        windows.dedup();
        for w in windows {
            let _ = writeln!(o, "      - record: perfmon:{}:ratio_rate{w}", self.name);
            let _ = writeln!(o, "        expr: |");
            for line in self.bad_ratio.replace("{w}", w).lines() {
                let _ = writeln!(o, "          {line}");
            }
        }
    }

    fn alerts(&self, o: &mut String) {
        for (long, short, factor, severity) in BURNS {
            let threshold = num(factor * self.budget);
            Alert {
                name: format!(
                    "{}ErrorBudgetBurn{}",
                    alert_name(self.name),
                    if severity == "critical" { "Fast" } else { "Slow" }
                ),
                expr: format!(
                    "perfmon:{n}:ratio_rate{long} > {threshold}\nand perfmon:{n}:ratio_rate{short} > {threshold}",
                    n = self.name
                ),
                for_: "2m".into(),
                severity,
                labels: vec![
                    ("perfmon_objective", self.objective.clone()),
                    ("burn_rate", num(factor)),
                ],
                summary: format!(
                    "{}: the error budget burns {}× too fast over {long} and {short}",
                    self.summary,
                    num(factor)
                ),
            }
            .write(o);
        }
    }
}

fn objectives(t: &SlaTargets, api_bounds: &[Duration]) -> (Vec<Objective>, Vec<String>) {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    out.push(Objective {
        name: "http_errors",
        bad_ratio: format!(
            "sum {BY} (rate(perfmon_http_requests_total{{status=~\"[45]..\"}}[{{w}}]))\n  / sum {BY} (rate(perfmon_http_requests_total[{{w}}]))"
        ),
        budget: t.api_error_rate / 100.0,
        summary: format!("API error rate objective (under {}%)", num(t.api_error_rate)),
        objective: format!("api error rate < {}%", num(t.api_error_rate)),
    });
    for (q, d) in [(95.0, t.api_p95), (99.0, t.api_p99)] {
        let Some(le) = bucket_at_or_under(d, api_bounds) else {
            notes.push(format!(
                "p{q} under {} s: no bucket bound at or under it; not generated",
                num(d.as_secs_f64())
            ));
            continue;
        };
        if (le - d.as_secs_f64()).abs() > 1e-9 {
            notes.push(format!(
                "p{q} under {} s is measured at the bucket bound le=\"{}\" (stricter): no bound is {} s",
                num(d.as_secs_f64()),
                num(le),
                num(d.as_secs_f64())
            ));
        }
        out.push(Objective {
            name: if q == 95.0 { "http_latency_p95" } else { "http_latency_p99" },
            bad_ratio: format!(
                "1 - sum {BY} (rate(perfmon_http_request_duration_seconds_bucket{{le=\"{}\"}}[{{w}}]))\n  / sum {BY} (rate(perfmon_http_request_duration_seconds_count[{{w}}]))",
                num(le)
            ),
            budget: 1.0 - q / 100.0,
            summary: format!("API p{q} objective (under {} s)", num(d.as_secs_f64())),
            objective: format!("api p{q} < {} s", num(d.as_secs_f64())),
        });
    }
    out.push(Objective {
        name: "cache_misses",
        bad_ratio: format!(
            "sum {BY} (rate(perfmon_cache_operations_total{{result=\"miss\"}}[{{w}}]))\n  / sum {BY} (rate(perfmon_cache_operations_total{{result=~\"hit|miss\"}}[{{w}}]))"
        ),
        budget: 1.0 - t.cache_hit_rate / 100.0,
        summary: format!("cache hit rate objective (over {}%)", num(t.cache_hit_rate)),
        objective: format!("cache hit rate > {}%", num(t.cache_hit_rate)),
    });
    (out, notes)
}

/// The rule file: perfmon's alert rules as Prometheus alerts (group `perfmon-alerts`) and the SLA
/// objectives as burn-rate alerts with their recording rules (group `perfmon-slo`), over
/// perfmon's metric names, grouped by `job` and `instance`. Rules that Prometheus cannot
/// evaluate from the exposition (health, custom rules) are listed in a comment. Checked by
/// `promtool check rules` and `promtool test rules` in the tests.
pub fn prometheus_rules(source: &impl RuleSource) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Prometheus rules generated by perfmon {} from its configuration.",
        env!("CARGO_PKG_VERSION")
    );
    let t = source.sla_targets();
    let (objectives, notes) = objectives(&t, &source.histogram_buckets(HistogramKind::Api));
    let mut skipped = Vec::new();
    let mut alerts = Vec::new();
    if let Some(a) = source.alert_config() {
        for rule in &a.rules {
            match alert_for(rule, a) {
                Ok(alert) => alerts.push(alert),
                Err(why) => skipped.push(format!("{}: {why}", rule.name)),
            }
        }
    }
    for line in skipped.iter().chain(&notes) {
        let _ = writeln!(o, "# {}", line.replace('\n', " "));
    }
    let _ = writeln!(o, "groups:");
    if !alerts.is_empty() {
        let _ = writeln!(o, "  - name: perfmon-alerts");
        let _ = writeln!(o, "    rules:");
        for a in &alerts {
            a.write(&mut o);
        }
    }
    let _ = writeln!(o, "  - name: perfmon-slo");
    let _ = writeln!(o, "    rules:");
    for obj in &objectives {
        obj.record(&mut o);
    }
    for obj in &objectives {
        obj.alerts(&mut o);
    }
    // the database objective is a mean, not a ratio of good events: a threshold over an hour
    Alert {
        name: "PerfmonDbMeanQueryTimeObjective".into(),
        expr: format!(
            "sum {BY} (rate(perfmon_db_query_duration_seconds_sum[1h]))\n  / sum {BY} (rate(perfmon_db_query_duration_seconds_count[1h])) > {}",
            num(t.db_avg.as_secs_f64())
        ),
        for_: "5m".into(),
        severity: "warning",
        labels: vec![(
            "perfmon_objective",
            format!("db mean query time < {} s", num(t.db_avg.as_secs_f64())),
        )],
        summary: format!(
            "mean database query time over the last hour above the objective ({} s)",
            num(t.db_avg.as_secs_f64())
        ),
    }
    .write(&mut o);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_durations() {
        assert_eq!(
            alert_name("api-error-rate-critical"),
            "PerfmonApiErrorRateCritical"
        );
        assert_eq!(alert_name("http_latency_p95"), "PerfmonHttpLatencyP95");
        assert_eq!(num(5.0), "5");
        assert_eq!(num(0.144), "0.144");
        assert_eq!(num(0.05 * 14.4), "0.72");
        assert_eq!(prom_duration(Duration::from_secs(300)), "5m");
        assert_eq!(prom_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(prom_duration(Duration::from_secs(90)), "90s");
        let b = default_bounds();
        assert_eq!(bucket_at_or_under(Duration::from_secs(1), &b), Some(1.0));
        assert_eq!(bucket_at_or_under(Duration::from_secs(3), &b), Some(3.0));
        assert_eq!(
            bucket_at_or_under(Duration::from_millis(2700), &b),
            Some(2.5)
        );
        assert_eq!(bucket_at_or_under(Duration::from_micros(10), &b), None);
        assert_eq!(quoted("a \"b\"\nc"), "\"a \\\"b\\\"\\nc\"");
    }
}
