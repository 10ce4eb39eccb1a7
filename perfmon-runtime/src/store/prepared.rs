//! What one flush carries to every tier: the changed minutes and 5-minute buckets, labelled, and
//! the realtime values; and what a flush reports.

use crate::core::clock::{rfc3339, system_time};
use crate::core::hist::Merged;
use crate::core::trace::TraceId;
use crate::pipeline::aggregator::{Minute, RawRequest};
use crate::pipeline::registry::SeriesInfo;

/// What a successful flush wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlushReport {
    /// Series-minutes written to the Redis 1-minute tier.
    pub minutes: usize,
    /// Series-buckets written to the Redis 5-minute tier.
    pub buckets: usize,
    /// Series-hours written to the Redis hourly tier.
    pub hours: usize,
    /// Cluster values (one bucket of one series merged across every instance) the Redis
    /// compactor wrote in this flush (0 unless this instance holds the compactor's lease).
    pub compacted: usize,
    /// Redis commands in the pipeline.
    pub commands: usize,
    /// Bytes of aggregates written to Redis.
    pub bytes: usize,
    /// Rows upserted into PostgreSQL (hourly, daily, events).
    pub rows: usize,
}

/// What one flush takes from the aggregator, labelled and ready for every tier.
#[derive(Default)]
pub(crate) struct Prepared {
    /// (unix minute, series key, the whole minute as of now).
    pub minutes: Vec<(u64, String, Minute<Merged>)>,
    /// (bucket = unix minute / 5, series key, the whole bucket so far).
    pub buckets: Vec<(u64, String, Minute<Merged>)>,
    pub realtime: Realtime,
}

/// The realtime tier's values (replaced whole on every flush; Redis only).
#[derive(Clone, Default)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct Realtime {
    pub recent: Vec<String>,
    pub times: Vec<String>,
    pub slow: Vec<(f64, String)>,
    pub counters: Vec<(&'static str, u64)>,
    pub instance_json: String,
    /// The alerts firing now: (rule␞key, notification JSON).
    pub alerts: Vec<(String, String)>,
}

/// A slow-list or recent request as the realtime tier keeps it: the JSON of
/// [`SlowRequest`](crate::SlowRequest), `traceId` included when the request was traced.
pub(crate) fn request_json(r: RawRequest, i: &SeriesInfo) -> String {
    let mut j = serde_json::json!({
        "method": i.method,
        "path": &*i.name,
        "statusCode": r.status,
        "duration": r.dur_ns as f64 / 1e6,
        "timestamp": rfc3339(system_time(r.unix_ns)),
    });
    if let Some(t) = TraceId::from_raw(r.trace) {
        j["traceId"] = t.to_string().into();
    }
    j.to_string()
}
