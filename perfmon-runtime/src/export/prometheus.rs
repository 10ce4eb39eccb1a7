//! Prometheus text exposition (format 0.0.4) of everything perfmon counts since the process
//! started, plus the standard `process_*` metrics.
//!
//! Rendering has two steps: [`families`] builds a model — metric families, each with its type,
//! help and samples — from one drained view of the collector, the alert board and `/proc`; a
//! writer turns the model into text a chunk at a time ([`TextChunks`]), which `GET /metrics`
//! streams. Names follow Prometheus' rules: base units (`_seconds`, `_bytes`), `_total` on counters, histograms as cumulative `_bucket{le}` / `_sum`
//! / `_count`. Histogram buckets are folded from the HDR bins, so each bucket count is exact up
//! to the bin width (0.1%). Counters are monotonic: closed minutes are folded into per-series
//! totals when they leave the window.

use std::fmt::Write;
use std::sync::Arc;

use crate::core::hist::{bounds_of, Exemplar, HistogramKind};
use crate::core::kind::{Kind, CACHE_ERROR, FAILED, HIT, MISS, OK};
use crate::core::process::proc_stats;
use crate::core::trace::TraceId;
use crate::ops::alerts::{alerts, Severity};
use crate::pipeline::aggregator::{class_of, Totals, STATUS_CLASSES};
use crate::pipeline::registry::SeriesInfo;
use crate::read::collector::{recorder_stats, Collector};
use crate::read::snapshot::Snapshot;

/// A metric family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// A sample's value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    /// A counter or gauge.
    Number(f64),
    /// Cumulative bucket counts at `bounds` (nanoseconds), then the sum (seconds) and count;
    /// each bucket's exemplar (`bounds.len() + 1` of them, `+Inf` last).
    Histogram {
        bounds: Arc<[u64]>,
        cumulative: Vec<u64>,
        sum_seconds: f64,
        count: u64,
        exemplars: Vec<Option<Exemplar>>,
    },
}

/// One sample: its labels, value and (for a counter, in OpenMetrics) its exemplar.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: Value,
    pub exemplar: Option<Exemplar>,
}

/// The exposition format a scraper asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4 (the default): no exemplars.
    Text,
    /// OpenMetrics 1.0: counters' families named without `_total`, exemplars on histogram
    /// buckets and counters, `# EOF` at the end.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header prefers: of the media ranges it lists with their `q`
    /// (default 1), the highest-q one perfmon serves — `application/openmetrics-text` for
    /// OpenMetrics; `text/plain`, `text/*` or `*/*` for the 0.0.4 text — the first listed on a
    /// tie. The 0.0.4 text without a header or when nothing listed is served.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let mut best: Option<(f64, Format)> = None;
        for range in accept.unwrap_or_default().split(',') {
            let mut params = range.split(';').map(str::trim);
            let media = params.next().unwrap_or_default().to_ascii_lowercase();
            let format = match media.as_str() {
                "application/openmetrics-text" => Format::OpenMetrics,
                "text/plain" | "text/*" | "*/*" => Format::Text,
                _ => continue,
            };
            let q = params
                .find_map(|p| p.strip_prefix("q="))
                .map_or(Some(1.0), |q| q.trim().parse::<f64>().ok())
                .unwrap_or(0.0);
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, format));
            }
        }
        best.map_or(Format::Text, |(_, f)| f)
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// One metric family.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Family {
    pub name: &'static str,
    pub kind: MetricType,
    pub help: &'static str,
    pub samples: Vec<Sample>,
}

impl Family {
    pub(crate) fn new(name: &'static str, kind: MetricType, help: &'static str) -> Family {
        Family {
            name,
            kind,
            help,
            samples: Vec::new(),
        }
    }

    pub(crate) fn number(
        mut self,
        labels: Vec<(&'static str, String)>,
        v: impl Into<f64>,
    ) -> Family {
        self.push(labels, v);
        self
    }

    pub(crate) fn push(&mut self, labels: Vec<(&'static str, String)>, v: impl Into<f64>) {
        self.samples.push(Sample {
            labels,
            value: Value::Number(v.into()),
            exemplar: None,
        });
    }

    /// A counter's sample with the newest traced call of the series that `keep` accepts as its
    /// exemplar.
    fn push_counted(
        &mut self,
        labels: Vec<(&'static str, String)>,
        v: u64,
        t: &Totals,
        keep: impl Fn(&Exemplar) -> bool,
    ) {
        self.samples.push(Sample {
            labels,
            value: Value::Number(v as f64),
            exemplar: t.hist.exemplars.newest_in(0, u64::MAX, keep),
        });
    }

    fn histogram(&mut self, labels: Vec<(&'static str, String)>, t: &Totals, bounds: &Arc<[u64]>) {
        let (cumulative, count) = t.hist.cumulative(bounds);
        // each bucket's exemplar lies in its own range (above the bucket below)
        let mut exemplars = Vec::with_capacity(bounds.len() + 1);
        let mut above = 0;
        for &le in bounds.iter().chain([u64::MAX].iter()) {
            exemplars.push(t.hist.exemplars.newest_in(above, le, |_| true));
            above = le;
        }
        self.samples.push(Sample {
            labels,
            value: Value::Histogram {
                bounds: bounds.clone(),
                cumulative,
                sum_seconds: t.hist.sum_ns as f64 / 1e9,
                count,
                exemplars,
            },
            exemplar: None,
        });
    }
}

fn route(info: &SeriesInfo) -> Vec<(&'static str, String)> {
    vec![
        ("method", info.method.to_string()),
        ("route", info.name.to_string()),
    ]
}

fn query(info: &SeriesInfo) -> Vec<(&'static str, String)> {
    vec![
        ("table", info.table.to_string()),
        ("operation", info.name.to_string()),
        (
            "kind",
            (if info.write { "write" } else { "read" }).to_string(),
        ),
    ]
}

fn name(info: &SeriesInfo) -> Vec<(&'static str, String)> {
    vec![("name", info.name.to_string())]
}

fn with(
    mut labels: Vec<(&'static str, String)>,
    k: &'static str,
    v: &str,
) -> Vec<(&'static str, String)> {
    labels.push((k, v.to_string()));
    labels
}

type Series = Vec<(Arc<SeriesInfo>, Totals)>;

fn of(all: &Series, kinds: &[Kind]) -> Vec<(Arc<SeriesInfo>, Totals)> {
    all.iter()
        .filter(|(i, _)| kinds.contains(&i.kind))
        .cloned()
        .collect()
}

/// API series' duration buckets by status class (`Arc::as_ptr` of the labels → 1xx … 5xx).
type ByClass = std::collections::BTreeMap<usize, [crate::core::hist::Buckets; 5]>;

fn api_families(all: &Series, classes: &ByClass, out: &mut Vec<Family>) {
    use MetricType::*;
    let api = of(all, &[Kind::Api]);
    let mut duration = Family::new(
        "perfmon_http_request_duration_seconds",
        Histogram,
        "Duration of API requests by method and route.",
    );
    let mut requests = Family::new(
        "perfmon_http_requests_total",
        Counter,
        "API requests by method, route and status code.",
    );
    let mut slow = Family::new(
        "perfmon_http_slow_requests_total",
        Counter,
        "API requests over their route's slow threshold.",
    );
    let bounds = bounds_of(HistogramKind::Api);
    for (info, t) in &api {
        match classes.get(&(Arc::as_ptr(info) as usize)) {
            // `status_class_label`: one histogram per status class the route answered with
            Some(by_class) => {
                for (i, (class, b)) in STATUS_CLASSES.iter().zip(by_class.iter()).enumerate() {
                    let mut of_class = Totals {
                        hist: b.clone(),
                        ..Totals::default()
                    };
                    of_class.hist.exemplars =
                        t.hist.exemplars.of_group(i, |e| class_of(e.status) == i);
                    if of_class.hist.cumulative(&bounds).1 > 0 {
                        duration.histogram(
                            with(route(info), "status_class", class),
                            &of_class,
                            &bounds,
                        );
                    }
                }
            }
            None => duration.histogram(route(info), t, &bounds),
        }
        for &(code, n) in &t.statuses {
            requests.push_counted(with(route(info), "status", &code.to_string()), n, t, |e| {
                e.status == code
            });
        }
        slow.push(route(info), t.slow as f64);
    }
    out.extend([duration, requests, slow]);
}

fn db_families(all: &Series, out: &mut Vec<Family>) {
    use MetricType::*;
    let mut duration = Family::new(
        "perfmon_db_query_duration_seconds",
        Histogram,
        "Duration of database queries by table, operation and kind.",
    );
    let mut queries = Family::new(
        "perfmon_db_queries_total",
        Counter,
        "Database queries by table, operation, kind and result.",
    );
    let mut slow = Family::new(
        "perfmon_db_slow_queries_total",
        Counter,
        "Database queries over their slow threshold.",
    );
    let bounds = bounds_of(HistogramKind::Query);
    for (info, t) in &of(all, &[Kind::Query]) {
        duration.histogram(query(info), t, &bounds);
        for (result, i) in [("ok", OK), ("error", FAILED)] {
            queries.push_counted(
                with(query(info), "result", result),
                t.outcomes[usize::from(i)],
                t,
                |e| e.status.min(FAILED) == i,
            );
        }
        slow.push(query(info), t.slow as f64);
    }
    let mut cache = Family::new(
        "perfmon_cache_operations_total",
        Counter,
        "Cache operations by key group and result.",
    );
    for (info, t) in &of(all, &[Kind::Cache]) {
        for (result, i) in [("hit", HIT), ("miss", MISS), ("error", CACHE_ERROR)] {
            cache.push(
                vec![("key", info.name.to_string()), ("result", result.into())],
                t.outcomes[usize::from(i)] as f64,
            );
        }
    }
    out.extend([duration, queries, slow, cache]);
}

fn batch_families(all: &Series, window: &Snapshot, out: &mut Vec<Family>) {
    use MetricType::*;
    let mut duration = Family::new(
        "perfmon_batch_duration_seconds",
        Histogram,
        "Duration of batch runs by name.",
    );
    let mut runs = Family::new(
        "perfmon_batch_runs_total",
        Counter,
        "Batch runs by name and result.",
    );
    let bounds = bounds_of(HistogramKind::Batch);
    for (info, t) in &of(all, &[Kind::Batch]) {
        duration.histogram(name(info), t, &bounds);
        for (result, i) in [("success", OK), ("failure", FAILED)] {
            runs.push_counted(
                with(name(info), "result", result),
                t.outcomes[usize::from(i)],
                t,
                |e| e.status.min(FAILED) == i,
            );
        }
    }
    let mut last_ok = Family::new(
        "perfmon_batch_last_success_timestamp_seconds",
        Gauge,
        "Unix time of the last successful run.",
    );
    let mut last_fail = Family::new(
        "perfmon_batch_last_failure_timestamp_seconds",
        Gauge,
        "Unix time of the last failed run.",
    );
    let secs = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    for (n, b) in window.batch_stats().batches {
        let labels = vec![("name", n)];
        if let Some(t) = b.last_success {
            last_ok.push(labels.clone(), secs(t));
        }
        if let Some(t) = b.last_failure {
            last_fail.push(labels, secs(t));
        }
    }
    out.extend([duration, runs, last_ok, last_fail]);
}

fn function_and_business_families(all: &Series, out: &mut Vec<Family>) {
    use MetricType::*;
    let mut duration = Family::new(
        "perfmon_function_duration_seconds",
        Histogram,
        "Duration of #[measure]d functions by name.",
    );
    let mut slow = Family::new(
        "perfmon_function_slow_calls_total",
        Counter,
        "Calls over the function's threshold.",
    );
    let bounds = bounds_of(HistogramKind::Function);
    for (info, t) in &of(all, &[Kind::Measure]) {
        duration.histogram(name(info), t, &bounds);
        slow.push(name(info), t.slow as f64);
    }
    let mut events = Family::new(
        "perfmon_business_events_total",
        Counter,
        "Business events by metric name.",
    );
    let mut value = Family::new(
        "perfmon_business_value",
        Gauge,
        "Sum of the values recorded per business metric since start.",
    );
    let mut tags = Family::new(
        "perfmon_business_tag_events_total",
        Counter,
        "Business events by metric name, tag and tag value.",
    );
    for (info, t) in &of(all, &[Kind::Business]) {
        events.push(name(info), t.events as f64);
        value.push(name(info), t.value_sum);
    }
    for (info, t) in &of(all, &[Kind::BusinessTag]) {
        tags.push(
            vec![
                ("name", info.name.to_string()),
                ("tag", info.table.to_string()),
                ("value", info.tag_value.to_string()),
            ],
            t.events as f64,
        );
    }
    out.extend([duration, slow, events, value, tags]);
}

fn recorder_families(r: &crate::read::stats::RecorderStats, out: &mut Vec<Family>) {
    use MetricType::*;
    let one = |name, kind, help, v: u64| Family::new(name, kind, help).number(vec![], v as f64);
    out.extend([
        one(
            "perfmon_recorder_events_total",
            Counter,
            "Events aggregated since start.",
            r.events_processed,
        ),
        one(
            "perfmon_recorder_late_events_total",
            Counter,
            "Hand-recorded events older than the window when recorded (kept in the totals only).",
            r.late_events,
        ),
        one(
            "perfmon_recorder_inline_drains_total",
            Counter,
            "Times a thread found its ring full and drained it itself.",
            r.inline_drains,
        ),
        one(
            "perfmon_tier_flushes_total",
            Counter,
            "Successful writes to the retention tiers.",
            r.tier_flushes,
        ),
        one(
            "perfmon_tier_flush_failures_total",
            Counter,
            "Failed writes to the retention tiers.",
            r.tier_failures,
        ),
        one(
            "perfmon_tier_redis_writes_total",
            Counter,
            "Successful writes to the Redis tier.",
            r.tier_redis_writes,
        ),
        one(
            "perfmon_tier_postgres_writes_total",
            Counter,
            "Successful writes to the PostgreSQL tier.",
            r.tier_postgres_writes,
        ),
        one(
            "perfmon_tier_pending",
            Gauge,
            "Aggregates waiting for the retention tiers.",
            r.tier_pending,
        ),
        one(
            "perfmon_tier_dropped_total",
            Counter,
            "Values dropped because a tier stayed away past its pending limit.",
            r.tier_dropped,
        ),
        one(
            "perfmon_tier_encode_failures_total",
            Counter,
            "Aggregates that could not be encoded for a tier.",
            r.tier_encode_failures,
        ),
        one(
            "perfmon_tier_set_aside_total",
            Counter,
            "Rows PostgreSQL rejected for what they hold, set aside instead of retried.",
            r.tier_set_aside,
        ),
        one(
            "perfmon_recorder_memory_bytes",
            Gauge,
            "Bytes held by perfmon's histograms and lists.",
            r.memory_bytes,
        ),
    ]);
}

fn sla_and_alert_families(window: &Snapshot, out: &mut Vec<Family>) {
    use MetricType::*;
    let sla = window.sla_report();
    // one unit per metric: durations in seconds, rates as 0–1 ratios
    let mut target_s = Family::new(
        "perfmon_sla_target_seconds",
        Gauge,
        "SLA target of each duration objective, in seconds.",
    );
    let mut current_s = Family::new(
        "perfmon_sla_current_seconds",
        Gauge,
        "Current value of each duration objective over the last 5 minutes, in seconds.",
    );
    let mut target_r = Family::new(
        "perfmon_sla_target_ratio",
        Gauge,
        "SLA target of each rate objective, as a ratio from 0 to 1.",
    );
    let mut current_r = Family::new(
        "perfmon_sla_current_ratio",
        Gauge,
        "Current value of each rate objective over the last 5 minutes, as a ratio from 0 to 1.",
    );
    let mut met = Family::new(
        "perfmon_sla_met",
        Gauge,
        "1 when the objective is met, 0 when not, absent without data.",
    );
    for ob in &sla.objectives {
        let labels = vec![("objective", ob.name.to_string())];
        match ob.unit {
            "ms" => {
                target_s.push(labels.clone(), ob.target / 1e3);
                current_s.push(labels.clone(), ob.current / 1e3);
            }
            _ => {
                target_r.push(labels.clone(), ob.target / 100.0);
                current_r.push(labels.clone(), ob.current / 100.0);
            }
        }
        if let Some(m) = ob.met {
            met.push(labels, u8::from(m));
        }
    }
    let active = alerts().active;
    let mut firing = Family::new(
        "perfmon_alerts_firing",
        Gauge,
        "Alerts firing now, by severity.",
    );
    for (sev, label) in [
        (Severity::Critical, "critical"),
        (Severity::Warning, "warning"),
    ] {
        let n = active.iter().filter(|a| a.severity == sev).count();
        firing.push(vec![("severity", label.to_string())], n as f64);
    }
    let mut deliveries = Family::new(
        "perfmon_alert_deliveries_total",
        Counter,
        "Alert notifications by sink and result: sent, failed after their last try, dropped with the sink's queue full.",
    );
    let mut retries = Family::new(
        "perfmon_alert_delivery_retries_total",
        Counter,
        "Delivery attempts retried after a connection error, a timeout or a non-2xx answer, by sink.",
    );
    let mut queue = Family::new(
        "perfmon_alert_delivery_queue",
        Gauge,
        "Alert notifications waiting for their sink's delivery thread.",
    );
    for sink in ["webhook", "alertmanager"] {
        let d = crate::ops::notify::sink_stats(sink);
        for (result, n) in [
            ("sent", d.sent),
            ("failed", d.failed),
            ("dropped", d.dropped),
        ] {
            deliveries.push(
                vec![("sink", sink.to_string()), ("result", result.to_string())],
                n as f64,
            );
        }
        retries.push(vec![("sink", sink.to_string())], d.retries as f64);
        queue.push(vec![("sink", sink.to_string())], d.queued as f64);
    }
    out.extend([
        target_s, current_s, target_r, current_r, met, firing, deliveries, retries, queue,
    ]);
}

fn apdex_families(window: &Snapshot, out: &mut Vec<Family>) {
    let mut score = Family::new(
        "perfmon_http_apdex",
        MetricType::Gauge,
        "Apdex of each route over the last 5 minutes, from 0 to 1 (satisfied at or under T, tolerating at or under 4T).",
    );
    let mut threshold = Family::new(
        "perfmon_http_apdex_threshold_seconds",
        MetricType::Gauge,
        "The Apdex threshold T of each route, in seconds.",
    );
    for r in window.api_routes() {
        let labels = vec![("method", r.method), ("route", r.path)];
        if let Some(a) = r.stats.apdex {
            score.push(labels.clone(), a);
        }
        threshold.push(labels, r.stats.apdex_threshold.as_secs_f64());
    }
    out.extend([score, threshold]);
}

fn process_families(out: &mut Vec<Family>) {
    use MetricType::*;
    let p = proc_stats();
    out.push(
        Family::new(
            "process_cpu_seconds_total",
            Counter,
            "Total user and system CPU time spent in seconds.",
        )
        .number(vec![], p.cpu_seconds),
    );
    out.push(
        Family::new(
            "process_resident_memory_bytes",
            Gauge,
            "Resident memory size in bytes.",
        )
        .number(vec![], p.rss_bytes as f64),
    );
    out.push(
        Family::new(
            "process_virtual_memory_bytes",
            Gauge,
            "Virtual memory size in bytes.",
        )
        .number(vec![], p.virtual_bytes as f64),
    );
    out.push(
        Family::new(
            "process_open_fds",
            Gauge,
            "Number of open file descriptors.",
        )
        .number(vec![], p.open_fds as f64),
    );
    if let Some(max) = p.max_fds {
        out.push(
            Family::new(
                "process_max_fds",
                Gauge,
                "Maximum number of open file descriptors.",
            )
            .number(vec![], max as f64),
        );
    }
    out.push(
        Family::new(
            "process_threads",
            Gauge,
            "Number of OS threads in the process.",
        )
        .number(vec![], p.threads as f64),
    );
    if let Some(start) = p.start_time_seconds {
        out.push(
            Family::new(
                "process_start_time_seconds",
                Gauge,
                "Start time of the process since unix epoch in seconds.",
            )
            .number(vec![], start),
        );
    }
}

/// Every metric family of `collector`, from one drained view of it.
pub(crate) fn families(collector: &Collector) -> Vec<Family> {
    let (all, classes, window, recorder) = {
        let d = collector.state.drained();
        (
            d.totals(&Kind::ALL),
            d.class_totals(),
            Snapshot::memory(
                &d,
                &[Kind::Api, Kind::Cache, Kind::Query, Kind::Batch],
                false,
            ),
            recorder_stats(&d),
        )
    };
    let mut out = Vec::with_capacity(40);
    api_families(&all, &classes, &mut out);
    db_families(&all, &mut out);
    batch_families(&all, &window, &mut out);
    function_and_business_families(&all, &mut out);
    recorder_families(&recorder, &mut out);
    apdex_families(&window, &mut out);
    sla_and_alert_families(&window, &mut out);
    process_families(&mut out);
    out.push(
        Family::new(
            "perfmon_build_info",
            MetricType::Gauge,
            "Always 1; the labels name perfmon's version.",
        )
        .number(
            vec![("version", env!("CARGO_PKG_VERSION").to_string())],
            1.0,
        ),
    );
    out
}

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

fn label_set(labels: &[(&'static str, String)], extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", esc(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// Writes an exemplar after a sample's value (OpenMetrics only): trace id, value in seconds,
/// Unix time in seconds.
fn write_exemplar(o: &mut String, e: Option<&Exemplar>) {
    if let Some(e) = e {
        if let Some(id) = TraceId::from_raw(e.trace_raw()) {
            let _ = write!(
                o,
                " # {{trace_id=\"{id}\"}} {} {}",
                e.value_ns as f64 / 1e9,
                e.unix_ns as f64 / 1e9
            );
        }
    }
}

/// Writes one sample's lines.
fn write_sample(o: &mut String, name: &str, s: &Sample, format: Format) {
    let om = format == Format::OpenMetrics;
    match &s.value {
        Value::Number(v) => {
            let _ = write!(o, "{name}{} {v}", label_set(&s.labels, None));
            if om {
                write_exemplar(o, s.exemplar.as_ref());
            }
            o.push('\n');
        }
        Value::Histogram {
            bounds,
            cumulative,
            sum_seconds,
            count,
            exemplars,
        } => {
            // OpenMetrics asks for the canonical float (`1.0`, not `1`); the 0.0.4 text keeps
            // the short form its scrapers have stored
            let les = bounds.iter().map(|le| {
                let v = *le as f64 / 1e9;
                if om {
                    format!("{v:?}")
                } else {
                    v.to_string()
                }
            });
            let counts = cumulative.iter().chain([count]);
            for (i, (le, n)) in les.chain(["+Inf".to_string()]).zip(counts).enumerate() {
                let _ = write!(
                    o,
                    "{name}_bucket{} {n}",
                    label_set(&s.labels, Some(("le", &le)))
                );
                if om {
                    write_exemplar(o, exemplars.get(i).and_then(Option::as_ref));
                }
                o.push('\n');
            }
            let _ = writeln!(o, "{name}_sum{} {sum_seconds}", label_set(&s.labels, None));
            let _ = writeln!(o, "{name}_count{} {count}", label_set(&s.labels, None));
        }
    }
}

/// The size a chunk of [`TextChunks`] grows to before it is handed out (one sample's lines may
/// take it past).
pub(crate) const CHUNK_BYTES: usize = 32 * 1024;

/// The exposition, rendered a chunk at a time: what a response streams, so that the text is
/// never held whole (only the families, which are several times smaller).
pub(crate) struct TextChunks {
    families: std::vec::IntoIter<Family>,
    current: Option<(Family, usize)>,
    format: Format,
    ended: bool,
}

impl TextChunks {
    pub(crate) fn new(families: Vec<Family>, format: Format) -> TextChunks {
        TextChunks {
            families: families.into_iter(),
            current: None,
            format,
            ended: false,
        }
    }
}

impl Iterator for TextChunks {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let mut o = String::with_capacity(CHUNK_BYTES + 1024);
        while o.len() < CHUNK_BYTES {
            let (f, next) = match &mut self.current {
                Some(c) => c,
                None => match self.families.next() {
                    Some(f) => self
                        .current
                        .insert((f.write_header(&mut o, self.format), 0)),
                    None => {
                        if self.format == Format::OpenMetrics && !self.ended {
                            self.ended = true;
                            o.push_str("# EOF\n");
                        }
                        break;
                    }
                },
            };
            match f.samples.get(*next) {
                Some(sample) => {
                    write_sample(&mut o, f.name, sample, self.format);
                    *next += 1;
                }
                None => self.current = None,
            }
        }
        (!o.is_empty()).then_some(o)
    }
}

impl Family {
    /// Writes the family's `HELP` and `TYPE` lines; returns it. In OpenMetrics a counter's
    /// family is named without the `_total` its samples carry.
    fn write_header(self, o: &mut String, format: Format) -> Family {
        let name = match (format, self.kind) {
            (Format::OpenMetrics, MetricType::Counter) => {
                self.name.strip_suffix("_total").unwrap_or(self.name)
            }
            _ => self.name,
        };
        let _ = writeln!(o, "# HELP {name} {}", self.help);
        let _ = writeln!(o, "# TYPE {name} {}", self.kind.as_str());
        self
    }
}

/// The exposition, whole.
pub(crate) fn write_text(families: Vec<Family>, format: Format) -> String {
    TextChunks::new(families, format).collect()
}

impl Collector {
    /// Everything counted since start, as Prometheus text exposition (format 0.0.4), with the
    /// standard `process_*` metrics. Counters are monotonic; histograms use buckets from 100 µs to
    /// 60 s. One read of the collector serves every family.
    pub fn prometheus_text(&self) -> String {
        write_text(families(self), Format::Text)
    }

    /// The same as OpenMetrics 1.0 text: counters' families without `_total`, each histogram
    /// bucket and counter with the exemplar of a recent traced call in it (`# {trace_id="…"}
    /// value timestamp`), `# EOF` at the end. What `GET /metrics` answers to
    /// `Accept: application/openmetrics-text`.
    pub fn openmetrics_text(&self) -> String {
        write_text(families(self), Format::OpenMetrics)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn openmetrics_is_chosen_only_when_asked_for() {
        let om = Format::OpenMetrics;
        for accept in [
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            "application/openmetrics-text",
            "text/plain;q=0.5, Application/OpenMetrics-Text; version=1.0.0",
        ] {
            assert_eq!(Format::negotiate(Some(accept)), om, "{accept}");
        }
        for accept in [
            None,
            Some("text/plain;version=0.0.4"),
            Some("*/*"),
            Some("application/openmetrics-text;q=0"),
            Some("application/json"),
            // Prometheus 2.49+ with the 0.0.4 text put first in `scrape_protocols`
            Some("text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,*/*;q=0.1"),
            Some("text/plain, application/openmetrics-text"),
        ] {
            assert_eq!(Format::negotiate(accept), Format::Text, "{accept:?}");
        }
    }

    #[test]
    fn openmetrics_names_counters_without_total_carries_exemplars_and_ends_with_eof() {
        let mut t = Totals::default();
        t.hist.add_value(2_000_000);
        t.statuses.push((200, 1));
        t.hist.exemplars.record(
            Exemplar {
                trace: [0x4bf9_2f35_77b3_4da6, 0xa3ce_929d_0e0e_4736],
                value_ns: 2_000_000,
                unix_ns: 1_700_000_000_500_000_000,
                status: 200,
            },
            1,
            &crate::core::hist::grid(),
        );
        let mut h = Family::new("t_seconds", MetricType::Histogram, "A histogram.");
        h.histogram(vec![], &t, &Arc::from(&[1_000_000u64, 5_000_000][..]));
        let mut c = Family::new("t_total", MetricType::Counter, "A counter.");
        c.push_counted(vec![("status", "200".into())], 1, &t, |e| e.status == 200);
        c.push_counted(vec![("status", "500".into())], 0, &t, |e| e.status == 500);
        let ex = r#" # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736"} 0.002 1700000000.5"#;
        let om = write_text(vec![c.clone(), h.clone()], Format::OpenMetrics);
        assert_eq!(
            om,
            format!(
                "# HELP t A counter.\n# TYPE t counter\nt_total{{status=\"200\"}} 1{ex}\n\
                 t_total{{status=\"500\"}} 0\n\
                 # HELP t_seconds A histogram.\n# TYPE t_seconds histogram\n\
                 t_seconds_bucket{{le=\"0.001\"}} 0\nt_seconds_bucket{{le=\"0.005\"}} 1{ex}\n\
                 t_seconds_bucket{{le=\"+Inf\"}} 1\nt_seconds_sum 0.002\nt_seconds_count 1\n# EOF\n"
            )
        );
        let text = write_text(vec![c, h], Format::Text);
        assert!(!text.contains('#') || !text.contains("trace_id"), "{text}");
        assert!(text.contains("# TYPE t_total counter\nt_total{status=\"200\"} 1\n"));
        assert!(!text.contains("EOF"));
    }
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(esc(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(esc("x\ny"), "x\\ny");
    }

    #[test]
    fn the_writer_renders_each_type() {
        let mut h = Family::new("t_seconds", MetricType::Histogram, "A histogram.");
        let mut t = Totals::default();
        t.hist.add_value(2_000_000);
        h.histogram(
            vec![("route", "/a\"".into())],
            &t,
            &bounds_of(HistogramKind::Api),
        );
        let c = Family::new("t_total", MetricType::Counter, "A counter.").number(vec![], 3.0);
        let text = write_text(vec![c, h], Format::Text);
        assert!(
            text.starts_with("# HELP t_total A counter.\n# TYPE t_total counter\nt_total 3\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{route=\"/a\\\"\",le=\"0.001\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{route=\"/a\\\"\",le=\"+Inf\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_count{route=\"/a\\\"\"} 1\n"),
            "{text}"
        );
    }
}
