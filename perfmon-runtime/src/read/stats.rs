//! The statistics types. All implement `serde::Serialize` with the seed's field names
//! (`avgDuration`, `p95Duration`, `totalRequests`, `errorRate`, ...): durations in milliseconds,
//! rates in percent (0–100), times as RFC 3339 UTC.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};

use crate::core::hist::Merged;

/// Serializes a `Duration` as milliseconds (with microsecond precision).
pub(crate) fn ser_ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_nanos() as f64 / 1e3).round() / 1e3)
}

fn ser_opt_ms<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_ms(d, s),
        None => s.serialize_none(),
    }
}

/// Serializes a `SystemTime` as RFC 3339 UTC.
pub(crate) fn ser_time<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::core::clock::rfc3339(*t))
}

fn ser_opt_time<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => ser_time(t, s),
        None => s.serialize_none(),
    }
}

fn ser_rate<S: Serializer>(r: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((r * 1000.0).round() / 1000.0)
}

/// `part` as a percentage of `whole` (0 when `whole` is 0).
pub(crate) fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// API requests over the window (`collector().api_stats()`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ApiStats {
    /// Mean duration (exact).
    #[serde(serialize_with = "ser_ms")]
    pub avg_duration: Duration,
    /// Median.
    #[serde(serialize_with = "ser_ms")]
    pub p50_duration: Duration,
    /// 95th percentile.
    #[serde(serialize_with = "ser_ms")]
    pub p95_duration: Duration,
    /// 99th percentile.
    #[serde(serialize_with = "ser_ms")]
    pub p99_duration: Duration,
    /// Longest request (exact).
    #[serde(serialize_with = "ser_ms")]
    pub max_duration: Duration,
    /// Requests counted.
    pub total_requests: u64,
    /// 4xx and 5xx responses, percent.
    #[serde(serialize_with = "ser_rate")]
    pub error_rate: f64,
    /// 4xx responses, percent.
    #[serde(serialize_with = "ser_rate")]
    pub client_error_rate: f64,
    /// 5xx responses, percent.
    #[serde(serialize_with = "ser_rate")]
    pub server_error_rate: f64,
    /// Status code → requests.
    pub status_codes: BTreeMap<u16, u64>,
    /// Apdex over the window, 0–1 to three decimals: (satisfied + tolerating / 2) / requests,
    /// satisfied at or under T, tolerating at or under 4T, from the histogram (each route with
    /// its own T); `None` (JSON `null`) without requests.
    #[serde(serialize_with = "ser_apdex")]
    pub apdex: Option<f64>,
    /// The Apdex threshold T (`apdexThreshold`, ms): the route's, or the configured default for
    /// several routes together.
    #[serde(serialize_with = "ser_ms")]
    pub apdex_threshold: Duration,
}

pub(crate) fn ser_apdex<S: Serializer>(a: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match a {
        Some(v) => s.serialize_f64((v * 1000.0).round() / 1000.0),
        None => s.serialize_none(),
    }
}

/// Requests at or under T and between T and 4T, and T itself, summed over routes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ApdexCounts {
    pub satisfied: u64,
    pub tolerating: u64,
    pub threshold_ns: u64,
}

impl ApdexCounts {
    /// The counts of one route's histogram with threshold `t_ns`.
    pub(crate) fn of(h: &Merged, t_ns: u64) -> ApdexCounts {
        let satisfied = h.count_at_most(t_ns);
        ApdexCounts {
            satisfied,
            tolerating: h.count_at_most(t_ns.saturating_mul(4)) - satisfied,
            threshold_ns: t_ns,
        }
    }

    /// Adds another route's counts.
    pub(crate) fn add(&mut self, o: ApdexCounts) {
        self.satisfied += o.satisfied;
        self.tolerating += o.tolerating;
    }

    /// The Apdex score of `total` requests.
    pub(crate) fn score(&self, total: u64) -> Option<f64> {
        (total > 0).then(|| (self.satisfied as f64 + self.tolerating as f64 / 2.0) / total as f64)
    }
}

impl ApiStats {
    pub(crate) fn from_parts(
        h: &Merged,
        statuses: &BTreeMap<u16, u64>,
        apdex: ApdexCounts,
    ) -> ApiStats {
        let total = h.count();
        let client: u64 = statuses.range(400..500).map(|(_, n)| n).sum();
        let server: u64 = statuses.range(500..600).map(|(_, n)| n).sum();
        ApiStats {
            avg_duration: h.mean(),
            p50_duration: h.quantile(0.50),
            p95_duration: h.quantile(0.95),
            p99_duration: h.quantile(0.99),
            max_duration: h.max(),
            total_requests: total,
            error_rate: percent(client + server, total),
            client_error_rate: percent(client, total),
            server_error_rate: percent(server, total),
            status_codes: statuses.clone(),
            apdex: apdex.score(total),
            apdex_threshold: Duration::from_nanos(apdex.threshold_ns),
        }
    }
}

/// One route's statistics (`collector().api_routes()`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RouteStats {
    /// HTTP method, or `ANY`.
    pub method: String,
    /// Route template.
    pub path: String,
    /// Its statistics.
    #[serde(flatten)]
    pub stats: ApiStats,
}

/// One request of the slow list or of the last-requests list.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SlowRequest {
    /// HTTP method, or `ANY`.
    pub method: String,
    /// Route template.
    pub path: String,
    /// Response status.
    pub status_code: u16,
    /// How long it took.
    #[serde(serialize_with = "ser_ms")]
    pub duration: Duration,
    /// When it finished.
    #[serde(serialize_with = "ser_time")]
    pub timestamp: SystemTime,
    /// The W3C trace it belongs to (`traceId`, 32 hex digits; absent when untraced).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<crate::core::trace::TraceId>,
}

/// Cache counters of one key group or of all of them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CacheKeyStats {
    /// Hits, percent of operations.
    #[serde(serialize_with = "ser_rate")]
    pub hit_rate: f64,
    /// Misses, percent of operations.
    #[serde(serialize_with = "ser_rate")]
    pub miss_rate: f64,
    /// Errors, percent of operations.
    #[serde(serialize_with = "ser_rate")]
    pub error_rate: f64,
    /// Operations counted.
    pub total_operations: u64,
    /// Hits.
    pub hits: u64,
    /// Misses.
    pub misses: u64,
    /// Errors.
    pub errors: u64,
}

impl CacheKeyStats {
    pub(crate) fn from_counts(hits: u64, misses: u64, errors: u64) -> CacheKeyStats {
        let total = hits + misses + errors;
        CacheKeyStats {
            hit_rate: percent(hits, total),
            miss_rate: percent(misses, total),
            error_rate: percent(errors, total),
            total_operations: total,
            hits,
            misses,
            errors,
        }
    }
}

/// Cache statistics over the window (`collector().cache_stats()`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CacheStats {
    /// Hits, percent of operations.
    #[serde(serialize_with = "ser_rate")]
    pub hit_rate: f64,
    /// Misses, percent of operations.
    #[serde(serialize_with = "ser_rate")]
    pub miss_rate: f64,
    /// Errors, percent of operations.
    #[serde(serialize_with = "ser_rate")]
    pub error_rate: f64,
    /// Operations counted.
    pub total_operations: u64,
    /// The same per key group.
    pub keys: BTreeMap<String, CacheKeyStats>,
}

/// Query statistics of one table or one operation.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct QueryStats {
    /// Read queries.
    pub reads: u64,
    /// Write queries.
    pub writes: u64,
    /// Failed queries (an `Err` return or a panic).
    pub errors: u64,
    /// Mean duration.
    #[serde(serialize_with = "ser_ms")]
    pub avg_duration: Duration,
    /// 95th percentile.
    #[serde(serialize_with = "ser_ms")]
    pub p95_duration: Duration,
    /// 99th percentile.
    #[serde(serialize_with = "ser_ms")]
    pub p99_duration: Duration,
    /// Longest query.
    #[serde(serialize_with = "ser_ms")]
    pub max_duration: Duration,
    /// Queries over their slow threshold (100 ms unless set).
    pub slow_queries: u64,
}

impl QueryStats {
    pub(crate) fn from_parts(
        h: &Merged,
        reads: u64,
        writes: u64,
        errors: u64,
        slow: u64,
    ) -> QueryStats {
        QueryStats {
            reads,
            writes,
            errors,
            avg_duration: h.mean(),
            p95_duration: h.quantile(0.95),
            p99_duration: h.quantile(0.99),
            max_duration: h.max(),
            slow_queries: slow,
        }
    }
}

/// One table: its totals and its operations.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TableStats {
    /// Totals over the table's operations (percentiles from the merged histograms).
    #[serde(flatten)]
    pub totals: QueryStats,
    /// Operation → its statistics.
    pub operations: BTreeMap<String, QueryStats>,
}

/// Database statistics over the window (`collector().database_stats()`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DatabaseStats {
    /// All queries.
    pub total_queries: u64,
    /// Totals over every table.
    #[serde(flatten)]
    pub totals: QueryStats,
    /// Table → its statistics.
    pub tables: BTreeMap<String, TableStats>,
}

/// One batch job.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BatchJobStats {
    /// Runs in the window.
    pub runs: u64,
    /// Successful runs.
    pub successes: u64,
    /// Failed runs (an `Err` return or a panic).
    pub failures: u64,
    /// Successes, percent of runs.
    #[serde(serialize_with = "ser_rate")]
    pub success_rate: f64,
    /// Mean duration.
    #[serde(serialize_with = "ser_ms")]
    pub avg_duration: Duration,
    /// 95th percentile.
    #[serde(serialize_with = "ser_ms")]
    pub p95_duration: Duration,
    /// Longest run.
    #[serde(serialize_with = "ser_ms")]
    pub max_duration: Duration,
    /// End of the last successful run since start, even outside the window.
    #[serde(serialize_with = "ser_opt_time")]
    pub last_success: Option<SystemTime>,
    /// End of the last failed run since start, even outside the window.
    #[serde(serialize_with = "ser_opt_time")]
    pub last_failure: Option<SystemTime>,
    /// The trace the last failed run belonged to (`lastFailureTraceId`; absent when untraced).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure_trace_id: Option<crate::core::trace::TraceId>,
}

/// Batch statistics (`collector().batch_stats()`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BatchStats {
    /// Batch name → its statistics.
    pub batches: BTreeMap<String, BatchJobStats>,
}

/// Count and sum of a business metric or of one tag value.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ValueStats {
    /// Events.
    pub count: u64,
    /// Sum of their values.
    pub sum: f64,
}

/// One business metric.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BusinessMetricStats {
    /// Events.
    pub count: u64,
    /// Sum of their values.
    pub sum: f64,
    /// Tag key → tag value → count and sum.
    pub tags: BTreeMap<String, BTreeMap<String, ValueStats>>,
}

/// Business metrics (`collector().business_metrics()`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BusinessMetrics {
    /// Metric name → its statistics.
    pub metrics: BTreeMap<String, BusinessMetricStats>,
}

/// One `#[measure]`d function.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FnStats {
    /// Calls in the window.
    pub calls: u64,
    /// Mean duration.
    #[serde(serialize_with = "ser_ms")]
    pub avg_duration: Duration,
    /// Median.
    #[serde(serialize_with = "ser_ms")]
    pub p50_duration: Duration,
    /// 95th percentile.
    #[serde(serialize_with = "ser_ms")]
    pub p95_duration: Duration,
    /// 99th percentile.
    #[serde(serialize_with = "ser_ms")]
    pub p99_duration: Duration,
    /// Longest call.
    #[serde(serialize_with = "ser_ms")]
    pub max_duration: Duration,
    /// Calls over the threshold.
    pub slow_calls: u64,
    /// The threshold, if one was set.
    #[serde(serialize_with = "ser_opt_ms")]
    pub threshold: Option<Duration>,
}

/// `#[measure]` statistics (`collector().function_stats()`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FunctionStats {
    /// Name → its statistics.
    pub functions: BTreeMap<String, FnStats>,
}

/// The recorder's own health: how much it has seen, held and had to set aside.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RecorderStats {
    /// Events aggregated since start.
    pub events_processed: u64,
    /// Events whose timestamp was already outside the window when recorded by hand: counted
    /// here, not filed.
    pub late_events: u64,
    /// Times a thread found its ring full and drained it itself.
    pub inline_drains: u64,
    /// Series registered.
    pub series: u64,
    /// Threads with a ring.
    pub threads: u64,
    /// Bytes held by histograms, lists and the series' labels (estimate).
    pub memory_bytes: u64,
    /// Successful writes to the retention tiers (each tier counts its own writes).
    pub tier_flushes: u64,
    /// Failed writes (a tier away or slow); what they held stays pending.
    pub tier_failures: u64,
    /// Successful writes to the Redis tier (each tier writes, and backs off, on its own).
    pub tier_redis_writes: u64,
    /// Successful writes to the PostgreSQL tier.
    pub tier_postgres_writes: u64,
    /// Values waiting to be written, over every tier.
    pub tier_pending: u64,
    /// Values dropped because a tier stayed away past its pending limit (series-minutes and
    /// buckets for Redis, folded hours and days for PostgreSQL, queued event-log entries).
    pub tier_dropped: u64,
    /// Aggregates that could not be encoded for a tier (never expected; counted, not written).
    pub tier_encode_failures: u64,
    /// Rows PostgreSQL rejected for what they hold (a constraint or trigger, a value out of
    /// range, text it cannot store): each isolated from the rest of its flush, whose other rows
    /// are written, then set aside — not retried — and logged once.
    pub tier_set_aside: u64,
}

/// One minute of the window, for trend charts (`collector().timeline()`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TimelinePoint {
    /// Start of the minute.
    #[serde(serialize_with = "ser_time")]
    pub minute: SystemTime,
    /// API requests in the minute.
    pub total_requests: u64,
    /// Mean API duration.
    #[serde(serialize_with = "ser_ms")]
    pub avg_duration: Duration,
    /// Median.
    #[serde(serialize_with = "ser_ms")]
    pub p50_duration: Duration,
    /// 95th percentile.
    #[serde(serialize_with = "ser_ms")]
    pub p95_duration: Duration,
    /// 99th percentile.
    #[serde(serialize_with = "ser_ms")]
    pub p99_duration: Duration,
    /// 4xx and 5xx, percent.
    #[serde(serialize_with = "ser_rate")]
    pub error_rate: f64,
    /// Cache operations in the minute.
    pub cache_operations: u64,
    /// Cache hits, percent.
    #[serde(serialize_with = "ser_rate")]
    pub cache_hit_rate: f64,
}
