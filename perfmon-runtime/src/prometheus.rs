//! Prometheus text exposition (format 0.0.4) of everything perfmon counts since the process
//! started, plus the standard `process_*` metrics.
//!
//! Names follow Prometheus' rules: base units (`_seconds`, `_bytes`), `_total` on counters,
//! histograms as cumulative `_bucket{le}` / `_sum` / `_count`. Histogram buckets are folded from
//! the HDR bins, so each bucket count is exact up to the bin width (0.1%). Counters are
//! monotonic: closed minutes are folded into per-series totals when they leave the window.

use std::fmt::Write;

use crate::aggregator::{Totals, CACHE_ERROR, FAILED, HIT, MISS, OK};
use crate::hist::LE_BOUNDS_NS;
use crate::registry::{Kind, SeriesInfo};

/// Escapes a label value: backslash, double quote and line feed.
fn esc(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", esc(v)))
        .collect();
    inner.join(",")
}

struct Out(String);

impl Out {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
        }
    }

    fn histogram(&mut self, name: &str, labels: &str, t: &Totals) {
        let mut cumulative = 0u64;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, le) in LE_BOUNDS_NS.iter().enumerate() {
            cumulative += t.hist.counts[i];
            let le = *le as f64 / 1e9;
            let _ = writeln!(
                self.0,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let count: u64 = t.hist.counts.iter().sum();
        let _ = writeln!(self.0, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        self.sample(&format!("{name}_sum"), labels, t.hist.sum_ns as f64 / 1e9);
        self.sample(&format!("{name}_count"), labels, count);
    }
}

fn query_kind(info: &SeriesInfo) -> &'static str {
    if info.write {
        "write"
    } else {
        "read"
    }
}

/// Renders every metric as Prometheus text.
pub(crate) fn render() -> String {
    let agg = crate::state::drained();
    let mut o = Out(String::with_capacity(16 * 1024));

    let api = agg.totals(&[Kind::Api]);
    o.header(
        "perfmon_http_request_duration_seconds",
        "histogram",
        "Duration of API requests by method and route.",
    );
    for (info, t) in &api {
        o.histogram(
            "perfmon_http_request_duration_seconds",
            &labels(&[("method", info.method), ("route", &info.name)]),
            t,
        );
    }
    o.header(
        "perfmon_http_requests_total",
        "counter",
        "API requests by method, route and status code.",
    );
    for (info, t) in &api {
        for (code, n) in &t.statuses {
            let code = code.to_string();
            o.sample(
                "perfmon_http_requests_total",
                &labels(&[
                    ("method", info.method),
                    ("route", &info.name),
                    ("status", &code),
                ]),
                n,
            );
        }
    }
    o.header(
        "perfmon_http_slow_requests_total",
        "counter",
        "API requests over their route's slow threshold.",
    );
    for (info, t) in &api {
        o.sample(
            "perfmon_http_slow_requests_total",
            &labels(&[("method", info.method), ("route", &info.name)]),
            t.slow,
        );
    }

    let db = agg.totals(&[Kind::Query]);
    o.header(
        "perfmon_db_query_duration_seconds",
        "histogram",
        "Duration of database queries by table, operation and kind.",
    );
    for (info, t) in &db {
        let l = labels(&[
            ("table", &info.table),
            ("operation", &info.name),
            ("kind", query_kind(info)),
        ]);
        o.histogram("perfmon_db_query_duration_seconds", &l, t);
    }
    o.header(
        "perfmon_db_queries_total",
        "counter",
        "Database queries by table, operation, kind and result.",
    );
    for (info, t) in &db {
        for (result, i) in [("ok", OK), ("error", FAILED)] {
            let l = labels(&[
                ("table", &info.table),
                ("operation", &info.name),
                ("kind", query_kind(info)),
                ("result", result),
            ]);
            o.sample("perfmon_db_queries_total", &l, t.outcomes[usize::from(i)]);
        }
    }
    o.header(
        "perfmon_db_slow_queries_total",
        "counter",
        "Database queries over their slow threshold.",
    );
    for (info, t) in &db {
        let l = labels(&[
            ("table", &info.table),
            ("operation", &info.name),
            ("kind", query_kind(info)),
        ]);
        o.sample("perfmon_db_slow_queries_total", &l, t.slow);
    }

    o.header(
        "perfmon_cache_operations_total",
        "counter",
        "Cache operations by key group and result.",
    );
    for (info, t) in agg.totals(&[Kind::Cache]) {
        for (result, i) in [("hit", HIT), ("miss", MISS), ("error", CACHE_ERROR)] {
            o.sample(
                "perfmon_cache_operations_total",
                &labels(&[("key", &info.name), ("result", result)]),
                t.outcomes[usize::from(i)],
            );
        }
    }

    let batches = agg.totals(&[Kind::Batch]);
    o.header(
        "perfmon_batch_duration_seconds",
        "histogram",
        "Duration of batch runs by name.",
    );
    for (info, t) in &batches {
        o.histogram(
            "perfmon_batch_duration_seconds",
            &labels(&[("name", &info.name)]),
            t,
        );
    }
    o.header(
        "perfmon_batch_runs_total",
        "counter",
        "Batch runs by name and result.",
    );
    for (info, t) in &batches {
        for (result, i) in [("success", OK), ("failure", FAILED)] {
            o.sample(
                "perfmon_batch_runs_total",
                &labels(&[("name", &info.name), ("result", result)]),
                t.outcomes[usize::from(i)],
            );
        }
    }
    let views = agg.views(&[Kind::Batch]);
    o.header(
        "perfmon_batch_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the last successful run.",
    );
    for v in views.iter().filter(|v| v.last_success_ns.is_some()) {
        let t = v.last_success_ns.unwrap_or(0) as f64 / 1e9;
        o.sample(
            "perfmon_batch_last_success_timestamp_seconds",
            &labels(&[("name", &v.info.name)]),
            t,
        );
    }
    o.header(
        "perfmon_batch_last_failure_timestamp_seconds",
        "gauge",
        "Unix time of the last failed run.",
    );
    for v in views.iter().filter(|v| v.last_failure_ns.is_some()) {
        let t = v.last_failure_ns.unwrap_or(0) as f64 / 1e9;
        o.sample(
            "perfmon_batch_last_failure_timestamp_seconds",
            &labels(&[("name", &v.info.name)]),
            t,
        );
    }

    let functions = agg.totals(&[Kind::Measure]);
    o.header(
        "perfmon_function_duration_seconds",
        "histogram",
        "Duration of #[measure]d functions by name.",
    );
    for (info, t) in &functions {
        o.histogram(
            "perfmon_function_duration_seconds",
            &labels(&[("name", &info.name)]),
            t,
        );
    }
    o.header(
        "perfmon_function_slow_calls_total",
        "counter",
        "Calls over the function's threshold.",
    );
    for (info, t) in &functions {
        o.sample(
            "perfmon_function_slow_calls_total",
            &labels(&[("name", &info.name)]),
            t.slow,
        );
    }

    let business = agg.totals(&[Kind::Business, Kind::BusinessTag]);
    o.header(
        "perfmon_business_events_total",
        "counter",
        "Business events by metric name.",
    );
    for (info, t) in business.iter().filter(|(i, _)| i.kind == Kind::Business) {
        o.sample(
            "perfmon_business_events_total",
            &labels(&[("name", &info.name)]),
            t.events,
        );
    }
    o.header(
        "perfmon_business_value",
        "gauge",
        "Sum of the values recorded per business metric since start.",
    );
    for (info, t) in business.iter().filter(|(i, _)| i.kind == Kind::Business) {
        o.sample(
            "perfmon_business_value",
            &labels(&[("name", &info.name)]),
            t.value_sum,
        );
    }
    o.header(
        "perfmon_business_tag_events_total",
        "counter",
        "Business events by metric name, tag and tag value.",
    );
    for (info, t) in business.iter().filter(|(i, _)| i.kind == Kind::BusinessTag) {
        o.sample(
            "perfmon_business_tag_events_total",
            &labels(&[
                ("name", &info.name),
                ("tag", &info.table),
                ("value", &info.tag_value),
            ]),
            t.events,
        );
    }

    o.header(
        "perfmon_recorder_events_total",
        "counter",
        "Events aggregated since start.",
    );
    o.sample("perfmon_recorder_events_total", "", agg.processed());
    o.header(
        "perfmon_recorder_late_events_total",
        "counter",
        "Hand-recorded events older than the window when recorded (kept in the totals only).",
    );
    o.sample("perfmon_recorder_late_events_total", "", agg.late());
    let inline = crate::state::state()
        .inline_drains
        .load(std::sync::atomic::Ordering::Relaxed);
    o.header(
        "perfmon_recorder_inline_drains_total",
        "counter",
        "Times a thread found its ring full and drained it itself.",
    );
    o.sample("perfmon_recorder_inline_drains_total", "", inline);
    let t = crate::collector::tier_counters();
    o.header(
        "perfmon_tier_flushes_total",
        "counter",
        "Successful flushes to the Redis tier.",
    );
    o.sample("perfmon_tier_flushes_total", "", t.tier_flushes);
    o.header(
        "perfmon_tier_flush_failures_total",
        "counter",
        "Failed flushes to the Redis tier.",
    );
    o.sample("perfmon_tier_flush_failures_total", "", t.tier_failures);
    o.header(
        "perfmon_tier_pending",
        "gauge",
        "Aggregates waiting for the Redis tier.",
    );
    o.sample("perfmon_tier_pending", "", t.tier_pending);
    o.header(
        "perfmon_tier_dropped_total",
        "counter",
        "Aggregates dropped because Redis stayed away past the pending limit.",
    );
    o.sample("perfmon_tier_dropped_total", "", t.tier_dropped);
    o.header(
        "perfmon_recorder_memory_bytes",
        "gauge",
        "Bytes held by perfmon's histograms and lists.",
    );
    o.sample("perfmon_recorder_memory_bytes", "", agg.heap_bytes());
    drop(agg);

    let sla = crate::Collector::default().sla_report();
    o.header(
        "perfmon_sla_target",
        "gauge",
        "SLA target per objective (milliseconds or percent, see unit).",
    );
    for ob in &sla.objectives {
        o.sample(
            "perfmon_sla_target",
            &labels(&[("objective", ob.name), ("unit", ob.unit)]),
            ob.target,
        );
    }
    o.header(
        "perfmon_sla_current",
        "gauge",
        "Current value per SLA objective over the last 5 minutes.",
    );
    for ob in &sla.objectives {
        o.sample(
            "perfmon_sla_current",
            &labels(&[("objective", ob.name), ("unit", ob.unit)]),
            ob.current,
        );
    }
    o.header(
        "perfmon_sla_met",
        "gauge",
        "1 when the objective is met, 0 when not, absent without data.",
    );
    for ob in &sla.objectives {
        if let Some(met) = ob.met {
            o.sample(
                "perfmon_sla_met",
                &labels(&[("objective", ob.name)]),
                u8::from(met),
            );
        }
    }
    let (active, _) = crate::alerts::alerts();
    o.header(
        "perfmon_alerts_firing",
        "gauge",
        "Alerts firing now, by severity.",
    );
    for sev in [
        crate::alerts::Severity::Critical,
        crate::alerts::Severity::Warning,
    ] {
        let n = active.iter().filter(|a| a.severity == sev).count();
        let name = if sev == crate::alerts::Severity::Critical {
            "critical"
        } else {
            "warning"
        };
        o.sample("perfmon_alerts_firing", &labels(&[("severity", name)]), n);
    }

    let p = crate::health::proc_stats();
    o.header(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
    );
    o.sample("process_cpu_seconds_total", "", p.cpu_seconds);
    o.header(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
    );
    o.sample("process_resident_memory_bytes", "", p.rss_bytes);
    o.header(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
    );
    o.sample("process_virtual_memory_bytes", "", p.virtual_bytes);
    o.header(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
    );
    o.sample("process_open_fds", "", p.open_fds);
    if let Some(max) = p.max_fds {
        o.header(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
        );
        o.sample("process_max_fds", "", max);
    }
    o.header(
        "process_threads",
        "gauge",
        "Number of OS threads in the process.",
    );
    o.sample("process_threads", "", p.threads);
    if let Some(start) = p.start_time_seconds {
        o.header(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
        );
        o.sample("process_start_time_seconds", "", start);
    }
    o.0
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(esc(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(esc("x\ny"), "x\\ny");
    }
}
