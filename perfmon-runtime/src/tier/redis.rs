//! The Redis tier's writer and its flush worker.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{codec, series_key};
use crate::registry::Kind;

/// Whole minutes and buckets kept while Redis is away, at most (the oldest go first, counted).
pub const PENDING_LIMIT: usize = 100_000;
/// How long one flush may take.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
const DAY: u64 = 86_400;

/// Counters of the tier, for the recorder's stats.
pub(crate) static FLUSHES: AtomicU64 = AtomicU64::new(0);
pub(crate) static FAILURES: AtomicU64 = AtomicU64::new(0);
pub(crate) static PENDING: AtomicU64 = AtomicU64::new(0);
pub(crate) static DROPPED: AtomicU64 = AtomicU64::new(0);

/// What a successful flush wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Series-minutes written to the 1-minute tier.
    pub minutes: usize,
    /// Series-buckets written to the 5-minute tier.
    pub buckets: usize,
    /// Redis commands in the pipeline.
    pub commands: usize,
    /// Bytes of aggregates written.
    pub bytes: usize,
}

pub(crate) struct Writer {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    instance: String,
    run: String,
    /// Encoded values not yet written, by (series, minute or bucket): a newer snapshot of the
    /// same key replaces the older one, so the bound is on distinct keys, not on events.
    minutes: BTreeMap<(u64, String), Vec<u8>>,
    buckets: BTreeMap<(u64, String), Vec<u8>>,
}

fn field(instance: &str, run: &str, series: &str) -> String {
    format!("{instance}\u{1e}{run}\u{1e}{series}")
}

impl Writer {
    pub(crate) fn new(conn: redis::aio::ConnectionManager, prefix: &str, instance: &str) -> Writer {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let run = format!(
            "{:x}",
            (nanos as u64) ^ (u64::from(std::process::id()) << 40)
        );
        Writer {
            conn,
            prefix: prefix.to_string(),
            instance: instance.to_string(),
            run,
            minutes: BTreeMap::new(),
            buckets: BTreeMap::new(),
        }
    }

    /// Takes what changed from the aggregator, adds it to what is pending, and writes it all in
    /// one pipeline. On failure everything stays pending for the next flush.
    pub(crate) async fn flush(&mut self) -> Result<FlushReport, String> {
        let realtime = self.take_snapshot();
        let mut pipe = redis::pipe();
        let mut report = FlushReport::default();
        let mut expiries: BTreeMap<String, u64> = BTreeMap::new();
        for ((minute, series), blob) in &self.minutes {
            let key = format!("{}:m1:{minute}", self.prefix);
            pipe.hset(
                &key,
                field(&self.instance, &self.run, series),
                blob.as_slice(),
            )
            .ignore();
            expiries.insert(key, (minute + 1) * 60 + DAY);
            report.minutes += 1;
            report.bytes += blob.len();
        }
        for ((bucket, series), blob) in &self.buckets {
            let key = format!("{}:m5:{bucket}", self.prefix);
            pipe.hset(
                &key,
                field(&self.instance, &self.run, series),
                blob.as_slice(),
            )
            .ignore();
            expiries.insert(key, (bucket + 1) * super::BUCKET_MINUTES * 60 + 7 * DAY);
            report.buckets += 1;
            report.bytes += blob.len();
        }
        for (key, at) in &expiries {
            pipe.expire_at(key, *at as i64).ignore();
        }
        report.commands = report.minutes + report.buckets + expiries.len();
        report.commands += realtime.add_to(&mut pipe, &self.prefix, &self.instance);
        let result =
            tokio::time::timeout(FLUSH_TIMEOUT, pipe.query_async::<()>(&mut self.conn)).await;
        match result {
            Ok(Ok(())) => {
                self.minutes.clear();
                self.buckets.clear();
                PENDING.store(0, Ordering::Relaxed);
                FLUSHES.fetch_add(1, Ordering::Relaxed);
                Ok(report)
            }
            Ok(Err(e)) => Err(self.failed(e.to_string())),
            Err(_) => Err(self.failed(format!("no answer within {FLUSH_TIMEOUT:?}"))),
        }
    }

    fn failed(&self, e: String) -> String {
        FAILURES.fetch_add(1, Ordering::Relaxed);
        format!(
            "Redis flush failed ({} values pending): {e}",
            self.minutes.len() + self.buckets.len()
        )
    }

    /// Encodes the changed minutes and buckets into `pending` and returns the realtime data.
    fn take_snapshot(&mut self) -> Realtime {
        let mut agg = crate::state::drained();
        let snap = agg.take_dirty();
        let reg = crate::state::state()
            .registry
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let key_of = |id: u32| reg.info(id).map(|i| series_key(i));
        for (series, minute, m) in &snap.minutes {
            if let (Some(key), Ok(blob)) = (key_of(*series), codec::encode(m)) {
                self.minutes.insert((*minute, key), blob);
            }
        }
        for (series, bucket, m) in &snap.buckets {
            if let (Some(key), Ok(blob)) = (key_of(*series), codec::encode(m)) {
                self.buckets.insert((*bucket, key), blob);
            }
        }
        drop(reg);
        // bounded while Redis is away: the oldest go first, counted
        while self.minutes.len() + self.buckets.len() > PENDING_LIMIT {
            let oldest_minute = self.minutes.keys().next().map(|(m, _)| *m);
            let oldest_bucket_start = self
                .buckets
                .keys()
                .next()
                .map(|(b, _)| b * super::BUCKET_MINUTES);
            match (oldest_minute, oldest_bucket_start) {
                (Some(m), Some(b)) if b < m => {
                    self.buckets.pop_first();
                }
                (Some(_), _) => {
                    self.minutes.pop_first();
                }
                (None, Some(_)) => {
                    self.buckets.pop_first();
                }
                (None, None) => break,
            }
            if DROPPED.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(target: "perfmon", limit = PENDING_LIMIT, "Redis has been away long enough to fill the pending buffer: the oldest aggregates are being dropped (counted in recorder_stats().tier_dropped)");
            }
        }
        PENDING.store(
            (self.minutes.len() + self.buckets.len()) as u64,
            Ordering::Relaxed,
        );

        let recent = agg
            .recent_requests()
            .into_iter()
            .map(|(r, i)| request_json(r, i))
            .collect();
        let times = agg
            .recent_requests()
            .iter()
            .map(|(r, _)| format!("{:.3}", r.dur_ns as f64 / 1e6))
            .collect();
        let slow = agg
            .slow_requests(crate::SLOW_LIST_SIZE)
            .into_iter()
            .map(|(r, i)| (r.dur_ns as f64 / 1e6, request_json(r, i)))
            .collect();
        let api = agg.totals(&[Kind::Api]);
        let total: u64 = api.iter().map(|(_, t)| t.events).sum();
        let errors: u64 = api
            .iter()
            .flat_map(|(_, t)| t.statuses.iter())
            .filter(|(c, _)| *c >= 400)
            .map(|(_, n)| n)
            .sum();
        Realtime {
            recent,
            times,
            slow,
            counters: vec![
                ("totalRequests", total),
                ("errorRequests", errors),
                ("eventsProcessed", agg.processed()),
            ],
            instance_json: self.instance.clone(),
        }
    }
}

fn request_json(r: crate::aggregator::RawRequest, i: &crate::registry::SeriesInfo) -> String {
    serde_json::json!({
        "method": i.method,
        "path": &*i.name,
        "statusCode": r.status,
        "duration": r.dur_ns as f64 / 1e6,
        "timestamp": crate::clock::rfc3339(crate::clock::system_time(r.unix_ns)),
    })
    .to_string()
}

/// The realtime tier's values (replaced whole on every flush).
struct Realtime {
    recent: Vec<String>,
    times: Vec<String>,
    slow: Vec<(f64, String)>,
    counters: Vec<(&'static str, u64)>,
    instance_json: String,
}

impl Realtime {
    fn add_to(&self, pipe: &mut redis::Pipeline, prefix: &str, instance: &str) -> usize {
        let recent = format!("{prefix}:rt:{instance}:recent");
        let times = format!("{prefix}:rt:{instance}:times");
        let counters = format!("{prefix}:rt:{instance}:counters");
        let slow = format!("{prefix}:slow");
        let mut n = 0;
        pipe.del(&recent).ignore().del(&times).ignore();
        n += 2;
        if !self.recent.is_empty() {
            pipe.rpush(&recent, &self.recent)
                .ignore()
                .expire(&recent, 300)
                .ignore();
            pipe.rpush(&times, &self.times)
                .ignore()
                .expire(&times, 300)
                .ignore();
            n += 4;
        }
        let mut items: Vec<(&str, u64)> = self.counters.clone();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        items.push(("updatedAt", now));
        pipe.hset_multiple(&counters, &items)
            .ignore()
            .expire(&counters, 300)
            .ignore();
        n += 2;
        if !self.slow.is_empty() {
            let members: Vec<(f64, String)> = self
                .slow
                .iter()
                .map(|(score, json)| (*score, format!("{}\u{1e}{json}", self.instance_json)))
                .collect();
            pipe.zadd_multiple(&slow, &members).ignore();
            pipe.zremrangebyrank(&slow, 0, -(crate::SLOW_LIST_SIZE as isize) - 1)
                .ignore();
            pipe.expire(&slow, DAY as i64).ignore();
            n += 3;
        }
        n
    }
}

/// The flush worker: flushes every `interval` (backing off while Redis fails), and once more
/// when stopped.
pub(crate) struct Worker {
    pub writer: Arc<tokio::sync::Mutex<Writer>>,
    pub stop: Arc<tokio::sync::Notify>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Worker {
    pub(crate) fn start(writer: Writer, interval: Duration) -> Worker {
        let writer = Arc::new(tokio::sync::Mutex::new(writer));
        set_writer(Some(writer.clone()));
        let stop = Arc::new(tokio::sync::Notify::new());
        let (w, s) = (writer.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut wait = interval;
            let mut failing = false;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = s.notified() => return,
                }
                match w.lock().await.flush().await {
                    Ok(_) => {
                        if failing {
                            tracing::info!(target: "perfmon", "Redis flushes resumed");
                        }
                        failing = false;
                        wait = interval;
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(target: "perfmon", error = %e, "Redis flush failed; retrying with backoff, aggregates kept");
                        }
                        failing = true;
                        wait = (wait * 2).min(Duration::from_secs(60));
                    }
                }
            }
        });
        Worker { writer, stop, task }
    }

    /// Stops the periodic flushes and flushes once more.
    pub(crate) async fn stop(self) -> Result<FlushReport, String> {
        set_writer(None);
        self.stop.notify_one();
        let _ = self.task.await;
        let mut w = self.writer.lock().await;
        w.flush().await
    }
}

/// The running writer, for queries that flush before they read.
static WRITER: std::sync::RwLock<Option<Arc<tokio::sync::Mutex<Writer>>>> =
    std::sync::RwLock::new(None);

pub(crate) fn set_writer(w: Option<Arc<tokio::sync::Mutex<Writer>>>) {
    *WRITER.write().unwrap_or_else(|e| e.into_inner()) = w;
}

/// Reads a window from the 1-minute (up to 24 h) or 5-minute (7 d) aggregates, merging every
/// run of this instance (`Instance`) or of every instance (`Cluster`).
pub(crate) async fn load(
    window: crate::Window,
    scope: crate::Scope,
) -> Result<
    Vec<(
        crate::registry::SeriesInfo,
        crate::aggregator::Minute<crate::hist::Merged>,
    )>,
    crate::QueryError,
> {
    let unavailable = crate::QueryError::TierUnavailable {
        window: window.as_str(),
        scope: scope.as_str(),
        tier: "Redis",
        why: "no Redis is configured: set PERFMON_REDIS_URL and call init",
    };
    let writer = WRITER
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .ok_or(unavailable)?;
    let (mut conn, prefix, instance) = {
        let mut w = writer.lock().await;
        // read your writes: what this instance recorded so far goes out first
        if let Err(e) = w.flush().await {
            tracing::debug!(target: "perfmon", error = %e, "flush before a query");
        }
        (w.conn.clone(), w.prefix.clone(), w.instance.clone())
    };
    let now_minute = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60);
    let minutes = window.duration().as_secs() / 60;
    let keys: Vec<String> = if minutes > 1440 {
        let last = now_minute / super::BUCKET_MINUTES;
        let n = minutes / super::BUCKET_MINUTES;
        (last + 1 - n..=last)
            .map(|b| format!("{prefix}:m5:{b}"))
            .collect()
    } else {
        (now_minute + 1 - minutes..=now_minute)
            .map(|m| format!("{prefix}:m1:{m}"))
            .collect()
    };
    let mut pipe = redis::pipe();
    for k in &keys {
        pipe.hgetall(k);
    }
    let backend = |message: String| crate::QueryError::Backend {
        tier: "Redis",
        message,
    };
    let maps: Vec<std::collections::HashMap<String, Vec<u8>>> =
        tokio::time::timeout(FLUSH_TIMEOUT, pipe.query_async(&mut conn))
            .await
            .map_err(|_| backend(format!("no answer within {FLUSH_TIMEOUT:?}")))?
            .map_err(|e| backend(e.to_string()))?;
    let mut by_series: BTreeMap<String, crate::aggregator::Minute<crate::hist::Merged>> =
        BTreeMap::new();
    for map in &maps {
        for (field, blob) in map {
            let mut parts = field.splitn(3, '\u{1e}');
            let (Some(inst), Some(_run), Some(series)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if scope == crate::Scope::Instance && inst != instance {
                continue;
            }
            match codec::decode(blob) {
                Ok(m) => {
                    let into = by_series.entry(series.to_string()).or_default();
                    into.add_counters(&m);
                    into.hist.add(&m.hist);
                }
                Err(e) => {
                    tracing::warn!(target: "perfmon", field, error = %e, "unreadable aggregate skipped")
                }
            }
        }
    }
    Ok(by_series
        .into_iter()
        .filter_map(|(k, m)| Some((super::parse_series_key(&k)?, m)))
        .collect())
}
