//! Prints the Prometheus rules perfmon generates from its configuration (the `PERFMON_*`
//! variables): the alert rules and the SLA objectives as burn-rate alerts, for `rule_files:` in
//! `prometheus.yml`.
//!
//! ```text
//! cargo run -p perfmon-examples --example prometheus-rules > perfmon-rules.yml
//! promtool check rules perfmon-rules.yml
//! ```

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = perfmon_runtime::Config::from_env()?;
    print!("{}", perfmon_runtime::export::prometheus_rules(&config));
    Ok(())
}
