//! Recording by hand, for what the macros cannot see (a proxy, a job runner, a cache client).
//!
//! Every function here is sync, never blocks on I/O, never panics and is safe from any thread.
//! With the feature `off`, each is an empty inline function.
//! Labels are interned once per distinct value (a read-locked map lookup afterwards) under the
//! cardinality caps of [`Limits`](crate::Limits); the event itself goes to the calling thread's
//! ring like a macro-tracked call.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::core::clock::{now_ticks, unix_ns};
use crate::core::kind::{method_index, Kind, CACHE_ERROR, FAILED, HIT, MISS, OK};
use crate::pipeline::event::{Event, FLAG_NANOS, FLAG_SLOW, FLAG_VALUE};
use crate::pipeline::registry::{self, lookup_or_register, lookup_with_slow};
use crate::pipeline::slowlog;
use crate::pipeline::state::{push, push_in_trace};

/// One API request.
#[derive(Clone, Copy, Debug)]
pub struct ApiMetric<'a> {
    /// HTTP method, such as `"POST"` (case-insensitive; unknown methods count as `OTHER`).
    pub method: &'a str,
    /// Route template, such as `"/api/schedule/assign"`.
    pub path: &'a str,
    /// Response status code.
    pub status_code: u16,
    /// How long the request took.
    pub duration: Duration,
    /// When it finished.
    pub timestamp: SystemTime,
}

/// Read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryType {
    /// A query that reads.
    Read,
    /// A query that writes.
    Write,
}

/// One database query.
#[derive(Clone, Copy, Debug)]
pub struct DatabaseMetric<'a> {
    /// Operation, such as `"findMany"`.
    pub operation: &'a str,
    /// Table, such as `"Staff"`.
    pub table: &'a str,
    /// How long it took.
    pub duration: Duration,
    /// When it finished.
    pub timestamp: SystemTime,
    /// Read or write.
    pub query_type: QueryType,
}

impl DatabaseMetric<'_> {
    /// Marks the query as failed (by default a hand-recorded query succeeded).
    pub fn failed(self) -> FailedQuery<Self> {
        FailedQuery(self)
    }
}

/// A query that failed, for [`record_database_metric`].
#[derive(Clone, Copy, Debug)]
pub struct FailedQuery<T>(T);

/// A cache operation's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheOp {
    /// Found.
    Hit,
    /// Not found.
    Miss,
    /// The cache failed.
    Error,
}

/// One cache operation.
#[derive(Clone, Copy, Debug)]
pub struct CacheMetric<'a> {
    /// Hit, miss or error.
    pub operation: CacheOp,
    /// The full key; its first segments (two by default) form the key group.
    pub key: &'a str,
    /// When it happened.
    pub timestamp: SystemTime,
}

/// One batch run.
#[derive(Clone, Copy, Debug)]
pub struct BatchMetric<'a> {
    /// Batch name, such as `"weekly-assignment"`.
    pub name: &'a str,
    /// How long it ran.
    pub duration: Duration,
    /// Whether it succeeded.
    pub success: bool,
    /// When it finished.
    pub timestamp: SystemTime,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn push_timed(series: u32, status: u16, duration: Duration, timestamp: SystemTime, slow_ns: u64) {
    let dur = nanos(duration);
    let mut flags = FLAG_NANOS;
    if dur > slow_ns {
        flags |= FLAG_SLOW;
    }
    push_in_trace(Event {
        series,
        status,
        flags,
        a: dur,
        b: unix_ns(timestamp),
    });
}

/// Records one API request.
///
/// ```
/// use perfmon_runtime::{record_api_metric, ApiMetric};
/// use std::time::{Duration, SystemTime};
///
/// record_api_metric(ApiMetric {
///     method: "POST",
///     path: "/api/schedule/assign",
///     status_code: 200,
///     duration: Duration::from_millis(1250),
///     timestamp: SystemTime::now(),
/// });
/// ```
#[inline]
pub fn record_api_metric(m: ApiMetric<'_>) {
    // feature `off`: nothing at all
    if cfg!(feature = "off") {
        return;
    }
    let method = method_index(m.method);
    let (id, slow_ns) = lookup_with_slow(
        |r| r.find_api(method, m.path),
        |r, s| r.api(method, m.path, s.api_slow_ns),
    );
    if nanos(m.duration) > slow_ns {
        if let Some(n) = slowlog::admit(id) {
            let more = slowlog::more(n);
            tracing::warn!(target: "perfmon", method = m.method, route = m.path, took = ?m.duration, suppressed = n, "slow request{more}");
        }
    }
    push_timed(id, m.status_code, m.duration, m.timestamp, slow_ns);
}

/// Anything [`record_database_metric`] accepts: a [`DatabaseMetric`], or one marked
/// [`failed`](DatabaseMetric::failed).
pub trait IntoDatabaseMetric<'a> {
    /// The metric and whether the query failed.
    fn into_parts(self) -> (DatabaseMetric<'a>, bool);
}

impl<'a> IntoDatabaseMetric<'a> for DatabaseMetric<'a> {
    fn into_parts(self) -> (DatabaseMetric<'a>, bool) {
        (self, false)
    }
}

impl<'a> IntoDatabaseMetric<'a> for FailedQuery<DatabaseMetric<'a>> {
    fn into_parts(self) -> (DatabaseMetric<'a>, bool) {
        (self.0, true)
    }
}

/// Records one database query (`metric.failed()` for one that failed).
#[inline]
pub fn record_database_metric<'a>(metric: impl IntoDatabaseMetric<'a>) {
    // feature `off`: nothing at all
    if cfg!(feature = "off") {
        return;
    }
    let (m, failed) = metric.into_parts();
    let write = m.query_type == QueryType::Write;
    let (id, slow_ns) = lookup_with_slow(
        |r| r.find_query(m.table, m.operation, write),
        |r, s| r.query(m.table, m.operation, write, s.query_slow_ns),
    );
    if nanos(m.duration) > slow_ns {
        if let Some(n) = slowlog::admit(id) {
            let more = slowlog::more(n);
            tracing::warn!(target: "perfmon", table = m.table, op = m.operation, took = ?m.duration, suppressed = n, "slow query{more}");
        }
    }
    push_timed(
        id,
        if failed { FAILED } else { OK },
        m.duration,
        m.timestamp,
        slow_ns,
    );
}

/// The key group of a cache key: its first `segments` `:`-separated parts.
pub(crate) fn key_group(key: &str, segments: usize) -> &str {
    match key.match_indices(':').nth(segments.saturating_sub(1)) {
        Some((i, _)) => &key[..i],
        None => key,
    }
}

/// Records one cache operation under the key's group.
#[inline]
pub fn record_cache_metric(m: CacheMetric<'_>) {
    // feature `off`: nothing at all
    if cfg!(feature = "off") {
        return;
    }
    let group = key_group(m.key, registry::settings().cache_key_segments);
    let id = lookup_or_register(
        |r| r.find_simple(Kind::Cache, group),
        |r, _| r.simple(Kind::Cache, group, u64::MAX),
    );
    let status = match m.operation {
        CacheOp::Hit => HIT,
        CacheOp::Miss => MISS,
        CacheOp::Error => CACHE_ERROR,
    };
    push_timed(id, status, Duration::ZERO, m.timestamp, u64::MAX);
}

/// Records one batch run.
#[inline]
pub fn record_batch_metric(m: BatchMetric<'_>) {
    // feature `off`: nothing at all
    if cfg!(feature = "off") {
        return;
    }
    let id = lookup_or_register(
        |r| r.find_simple(Kind::Batch, m.name),
        |r, _| r.simple(Kind::Batch, m.name, u64::MAX),
    );
    push_timed(
        id,
        if m.success { OK } else { FAILED },
        m.duration,
        m.timestamp,
        u64::MAX,
    );
}

/// Records a business event: adds `value` to the metric `name`, and to each tag's value.
///
/// ```
/// perfmon_runtime::record_business_metric("user-login", 1.0, &[("clinicId", "c1"), ("role", "ADMIN")]);
/// ```
#[inline]
pub fn record_business_metric(name: &str, value: f64, tags: &[(&str, &str)]) {
    // feature `off`: nothing at all
    if cfg!(feature = "off") {
        return;
    }
    let tick = now_ticks();
    let value = if value.is_finite() { value } else { 0.0 };
    let id = lookup_or_register(|r| r.find_business(name), |r, _| r.business(name));
    push(Event {
        series: id,
        status: 0,
        flags: FLAG_VALUE,
        a: value.to_bits(),
        b: tick,
    });
    for (k, v) in tags {
        let tag = lookup_or_register(
            |r| r.find_business_tag(name, k, v),
            |r, _| r.business_tag(name, k, v),
        );
        push(Event {
            series: tag,
            status: 0,
            flags: FLAG_VALUE,
            a: value.to_bits(),
            b: tick,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::key_group;

    #[test]
    fn key_groups() {
        assert_eq!(
            key_group("fairness:stats:clinic-1:2025:10", 2),
            "fairness:stats"
        );
        assert_eq!(key_group("fairness:stats:clinic-1:2025:10", 1), "fairness");
        assert_eq!(key_group("plain", 2), "plain");
        assert_eq!(key_group("a:b", 2), "a:b");
    }
}
