//! The retention tiers (feature `redis` for now; PostgreSQL follows).
//!
//! # Restart- and retry-safety
//!
//! Every instance writes under its own name *and* its process run (a random id per `init`), and
//! every write *replaces* a whole value: one series' whole minute (merged across the aggregator
//! shards) or whole 5-minute bucket as of the flush. A flush retried after a timeout writes the
//! same or newer values, never adds twice; a process restarted within the same minute writes
//! under a new run and leaves the previous run's values as they were. Readers merge every
//! instance and run.
//!
//! # Redis key layout (prefix `PERFMON_KEY_PREFIX`, default `perfmon`)
//!
//! | key | type | holds | TTL |
//! | --- | --- | --- | --- |
//! | `{prefix}:m1:{unix minute}` | hash | field `{instance}␞{run}␞{series}` → that minute of the series (counters, status codes, exact sum/min/max, HDR V2+DEFLATE histogram; [`codec`]) — the 1-minute aggregates, error counters included | 24 h after the minute ends |
//! | `{prefix}:m5:{unix minute / 5}` | hash | the same per 5-minute bucket — the 5-minute aggregates and, for query series, the per-table statistics | 7 days after the bucket ends |
//! | `{prefix}:rt:{instance}:recent` | list | the last 100 API requests (JSON), newest first | 5 minutes |
//! | `{prefix}:rt:{instance}:times` | list | the last 100 response times in ms, newest first | 5 minutes |
//! | `{prefix}:rt:{instance}:counters` | hash | live counters since the process started | 5 minutes |
//! | `{prefix}:slow` | sorted set | the slowest requests of every instance (score: ms), trimmed to 50 | 24 hours |
//!
//! `{series}` is the series' labels joined by `␟` (U+001F): kind, method, name, table, tag
//! value, write flag.

pub(crate) mod codec;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "redis")]
pub(crate) mod redis;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::aggregator::Minute;
use crate::hist::Merged;
use crate::registry::{Kind, SeriesInfo};

/// Counters of the tiers, for the recorder's stats.
pub(crate) static FLUSHES: AtomicU64 = AtomicU64::new(0);
pub(crate) static FAILURES: AtomicU64 = AtomicU64::new(0);
pub(crate) static PENDING: AtomicU64 = AtomicU64::new(0);
pub(crate) static DROPPED: AtomicU64 = AtomicU64::new(0);

/// What a successful flush wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Series-minutes written to the Redis 1-minute tier.
    pub minutes: usize,
    /// Series-buckets written to the Redis 5-minute tier.
    pub buckets: usize,
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
#[derive(Default)]
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

fn request_json(r: crate::aggregator::RawRequest, i: &SeriesInfo) -> String {
    serde_json::json!({
        "method": i.method,
        "path": &*i.name,
        "statusCode": r.status,
        "duration": r.dur_ns as f64 / 1e6,
        "timestamp": crate::clock::rfc3339(crate::clock::system_time(r.unix_ns)),
    })
    .to_string()
}

/// Takes what changed since the last flush from the aggregator.
fn prepare(instance: &str) -> Prepared {
    let mut agg = crate::state::drained();
    let snap = agg.take_dirty();
    let mut prep = Prepared::default();
    {
        let reg = crate::state::state()
            .registry
            .read()
            .unwrap_or_else(|e| e.into_inner());
        for (series, minute, m) in snap.minutes {
            if let Some(i) = reg.info(series) {
                prep.minutes.push((minute, series_key(i), m));
            }
        }
        for (series, bucket, m) in snap.buckets {
            if let Some(i) = reg.info(series) {
                prep.buckets.push((bucket, series_key(i), m));
            }
        }
    }
    let recent = agg.recent_requests();
    let api = agg.totals(&[Kind::Api]);
    let total: u64 = api.iter().map(|(_, t)| t.events).sum();
    let errors: u64 = api
        .iter()
        .flat_map(|(_, t)| t.statuses.iter())
        .filter(|(c, _)| *c >= 400)
        .map(|(_, n)| n)
        .sum();
    prep.realtime = Realtime {
        recent: recent.iter().map(|(r, i)| request_json(*r, i)).collect(),
        times: recent
            .iter()
            .map(|(r, _)| format!("{:.3}", r.dur_ns as f64 / 1e6))
            .collect(),
        slow: agg
            .slow_requests(crate::SLOW_LIST_SIZE)
            .into_iter()
            .map(|(r, i)| (r.dur_ns as f64 / 1e6, request_json(r, i)))
            .collect(),
        counters: vec![
            ("totalRequests", total),
            ("errorRequests", errors),
            ("eventsProcessed", agg.processed()),
        ],
        instance_json: instance.to_string(),
        alerts: crate::alerts::alerts()
            .0
            .iter()
            .map(|n| {
                (
                    format!("{}\u{1e}{}", n.rule, n.key),
                    serde_json::to_string(n).unwrap_or_default(),
                )
            })
            .collect(),
    };
    prep
}

/// This process's run: one id per process, so that a restarted process (which starts with
/// empty memory) never replaces what the previous one wrote, while `init` called again in the
/// same process (whose memory still holds everything) replaces its own values.
fn run_id() -> String {
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!(
            "{:x}",
            (nanos as u64) ^ (u64::from(std::process::id()) << 40)
        )
    })
    .clone()
}

/// Writes to every configured tier from one snapshot per flush.
pub(crate) struct Flusher {
    pub(crate) prefix: String,
    pub(crate) instance: String,
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<redis::Writer>,
    #[cfg(feature = "postgres")]
    pub(crate) pg: Option<postgres::Writer>,
}

impl Flusher {
    /// A flusher for the backends `init` connected; `None` without any.
    pub(crate) fn for_backends(prefix: &str, instance: &str) -> Option<Flusher> {
        let run = run_id();
        let f = Flusher {
            prefix: prefix.to_string(),
            instance: instance.to_string(),
            #[cfg(feature = "redis")]
            redis: crate::backends::redis_connection()
                .map(|c| redis::Writer::new(c, prefix, instance, &run)),
            #[cfg(feature = "postgres")]
            pg: crate::backends::pg_pool()
                .map(|p| postgres::Writer::new(p, prefix, instance, &run)),
        };
        #[allow(unused_mut)]
        let mut any = false;
        #[cfg(feature = "redis")]
        {
            any |= f.redis.is_some();
        }
        #[cfg(feature = "postgres")]
        {
            any |= f.pg.is_some();
        }
        any.then_some(f)
    }

    /// One flush: a snapshot, then every tier. Each tier keeps what it could not write.
    pub(crate) async fn flush(&mut self) -> Result<FlushReport, String> {
        let prep = prepare(&self.instance);
        #[allow(unused_mut)]
        let mut report = FlushReport::default();
        #[allow(unused_mut)]
        let mut errors: Vec<String> = Vec::new();
        #[cfg(feature = "redis")]
        if let Some(r) = &mut self.redis {
            match r.write(&prep).await {
                Ok(rep) => {
                    report = FlushReport {
                        rows: report.rows,
                        ..rep
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        #[cfg(feature = "postgres")]
        if let Some(p) = &mut self.pg {
            match p.write(&prep).await {
                Ok(rows) => report.rows = rows,
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            FLUSHES.fetch_add(1, Ordering::Relaxed);
            Ok(report)
        } else {
            FAILURES.fetch_add(1, Ordering::Relaxed);
            Err(errors.join("; "))
        }
    }
}

/// Reads `window` for `scope` from the tier that covers it: the Redis 1-minute aggregates up to
/// 24 hours and the 5-minute ones for 7 days, else (or without Redis) the PostgreSQL hourly rows,
/// and the daily rows for a year. Flushes this instance first (read your writes).
pub(crate) async fn load(
    window: crate::Window,
    scope: crate::Scope,
) -> Result<Vec<(SeriesInfo, Minute<Merged>)>, crate::QueryError> {
    let unavailable = |tier: &'static str, why: &'static str| crate::QueryError::TierUnavailable {
        window: window.as_str(),
        scope: scope.as_str(),
        tier,
        why,
    };
    let flusher = running().ok_or(unavailable(
        "Redis or PostgreSQL",
        "none is configured: set PERFMON_REDIS_URL or PERFMON_DATABASE_URL and call init",
    ))?;
    let (prefix, instance) = {
        let mut f = flusher.lock().await;
        if let Err(e) = f.flush().await {
            tracing::debug!(target: "perfmon", error = %e, "flush before a query");
        }
        (f.prefix.clone(), f.instance.clone())
    };
    let long = matches!(window, crate::Window::Days90 | crate::Window::Year1);
    #[cfg(feature = "redis")]
    if !long {
        if let Some(conn) = crate::backends::redis_connection() {
            return redis::load(conn, &prefix, &instance, window, scope).await;
        }
    }
    #[cfg(feature = "postgres")]
    if window != crate::Window::Minutes5 {
        if let Some(pool) = crate::backends::pg_pool() {
            return postgres::load(&pool, &prefix, &instance, window, scope).await;
        }
    }
    let _ = (&prefix, &instance);
    Err(if long {
        unavailable(
            "PostgreSQL",
            "set PERFMON_DATABASE_URL (feature `postgres`) for 90-day and 1-year windows",
        )
    } else {
        unavailable(
            "Redis",
            "set PERFMON_REDIS_URL (feature `redis`) for the 5-minute cluster window",
        )
    })
}

/// The running flusher, for queries that flush before they read.
static FLUSHER: std::sync::RwLock<Option<Arc<tokio::sync::Mutex<Flusher>>>> =
    std::sync::RwLock::new(None);

pub(crate) fn running() -> Option<Arc<tokio::sync::Mutex<Flusher>>> {
    FLUSHER.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The flush worker: flushes every `interval` (backing off while a tier fails), and once more
/// when stopped.
pub(crate) struct Worker {
    pub flusher: Arc<tokio::sync::Mutex<Flusher>>,
    stop: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Worker {
    pub(crate) fn start(flusher: Flusher, interval: Duration) -> Worker {
        let flusher = Arc::new(tokio::sync::Mutex::new(flusher));
        *FLUSHER.write().unwrap_or_else(|e| e.into_inner()) = Some(flusher.clone());
        let stop = Arc::new(tokio::sync::Notify::new());
        let (f, s) = (flusher.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut wait = interval;
            let mut failing = false;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = s.notified() => return,
                }
                match f.lock().await.flush().await {
                    Ok(_) => {
                        if failing {
                            tracing::info!(target: "perfmon", "flushes to the retention tiers resumed");
                        }
                        failing = false;
                        wait = interval;
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(target: "perfmon", error = %e, "flush failed; retrying with backoff, aggregates kept");
                        }
                        failing = true;
                        wait = (wait * 2).min(Duration::from_secs(60));
                    }
                }
            }
        });
        Worker {
            flusher,
            stop,
            task,
        }
    }

    /// Stops the periodic flushes and flushes once more.
    pub(crate) async fn stop(self) -> Result<FlushReport, String> {
        *FLUSHER.write().unwrap_or_else(|e| e.into_inner()) = None;
        self.stop.notify_one();
        let _ = self.task.await;
        let mut f = self.flusher.lock().await;
        f.flush().await
    }
}

/// Minutes in a bucket of the medium tier.
pub(crate) const BUCKET_MINUTES: u64 = 5;

/// What one flush takes from the aggregator.
#[derive(Default)]
pub(crate) struct Snapshot {
    /// (series, unix minute, the whole minute).
    pub minutes: Vec<(u32, u64, Minute<Merged>)>,
    /// (series, bucket = unix minute / 5, the whole bucket so far).
    pub buckets: Vec<(u32, u64, Minute<Merged>)>,
}

const SEP: char = '\u{1f}';

fn kind_code(k: Kind) -> &'static str {
    match k {
        Kind::Api => "api",
        Kind::Query => "query",
        Kind::Batch => "batch",
        Kind::Cache => "cache",
        Kind::Measure => "fn",
        Kind::Business => "biz",
        Kind::BusinessTag => "tag",
    }
}

/// The series' labels as one string, the field name part that identifies it across instances.
pub(crate) fn series_key(i: &SeriesInfo) -> String {
    let mut key = String::with_capacity(i.name.len() + i.table.len() + 24);
    for (n, part) in [
        kind_code(i.kind),
        i.method,
        &i.name,
        &i.table,
        &i.tag_value,
        if i.write { "w" } else { "r" },
    ]
    .into_iter()
    .enumerate()
    {
        if n > 0 {
            key.push(SEP);
        }
        // the separators never occur in labels; drop them if a label carries one
        key.extend(part.chars().filter(|c| *c != SEP && *c != '\u{1e}'));
    }
    key
}

/// The labels of a series key written by [`series_key`].
pub(crate) fn parse_series_key(key: &str) -> Option<SeriesInfo> {
    let parts: Vec<&str> = key.split(SEP).collect();
    let [kind, method, name, table, tag_value, write] = parts.as_slice() else {
        return None;
    };
    let kind = [
        Kind::Api,
        Kind::Query,
        Kind::Batch,
        Kind::Cache,
        Kind::Measure,
        Kind::Business,
        Kind::BusinessTag,
    ]
    .into_iter()
    .find(|k| kind_code(*k) == *kind)?;
    let method = crate::registry::METHODS
        .iter()
        .copied()
        .find(|m| m == method)
        .unwrap_or(crate::registry::METHODS[0]);
    Some(SeriesInfo {
        kind,
        method,
        name: (*name).into(),
        table: (*table).into(),
        tag_value: (*tag_value).into(),
        write: *write == "w",
        slow_ns: u64::MAX,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_keys_are_distinct_per_label_set() {
        let info = |kind, name: &str, table: &str, write| SeriesInfo {
            kind,
            method: "GET",
            name: name.into(),
            table: table.into(),
            tag_value: "".into(),
            write,
            slow_ns: 1,
        };
        let a = series_key(&info(Kind::Query, "findMany", "Staff", false));
        let b = series_key(&info(Kind::Query, "findMany", "Staff", true));
        let c = series_key(&info(Kind::Api, "findMany", "Staff", false));
        assert!(a != b && a != c && b != c);
        let back = parse_series_key(&b).expect("parses");
        assert_eq!(
            (back.kind, &*back.name, &*back.table, back.write),
            (Kind::Query, "findMany", "Staff", true)
        );
        assert_eq!(
            series_key(&info(Kind::Api, "/a\u{1f}b", "", false)),
            series_key(&info(Kind::Api, "/ab", "", false))
        );
    }
}
