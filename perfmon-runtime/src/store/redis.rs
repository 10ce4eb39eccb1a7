//! The Redis tier: its connection, its writer (1-minute, 5-minute and realtime keys) and its
//! reader.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use redis::aio::ConnectionManager;

use crate::core::hist::Merged;
use crate::core::window::{Scope, Window, BUCKET_MINUTES, SLOW_LIST_SIZE};
use crate::pipeline::aggregator::Minute;
use crate::pipeline::registry::SeriesInfo;
use crate::pipeline::state::global;
use crate::store::codec;
use crate::store::error::TierError;
use crate::store::prepared::{FlushReport, Prepared, Realtime};

/// Opens a reconnecting connection and checks it with `PING`, each step under `connect_timeout`.
pub(crate) async fn connect(
    url: &str,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<ConnectionManager, TierError> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(connect_timeout)
        .set_response_timeout(response_timeout)
        .set_number_of_retries(1);
    let connect = ConnectionManager::new_with_config(client, config);
    let mut conn = tokio::time::timeout(connect_timeout, connect)
        .await
        .map_err(|_| TierError::Timeout {
            tier: "Redis",
            after: connect_timeout,
        })??;
    ping(&mut conn).await?;
    Ok(conn)
}

/// `PING`: what the health check runs.
pub(crate) async fn ping(conn: &mut ConnectionManager) -> Result<String, TierError> {
    Ok(redis::cmd("PING").query_async(conn).await?)
}

/// Whole minutes and buckets kept while Redis is away, at most (the oldest go first, counted).
pub const PENDING_LIMIT: usize = 100_000;
/// How long one flush may take.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
const DAY: u64 = 86_400;

pub(crate) struct Writer {
    conn: ConnectionManager,
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
    pub(crate) fn new(conn: ConnectionManager, prefix: &str, instance: &str, run: &str) -> Writer {
        Writer {
            conn,
            prefix: prefix.to_string(),
            instance: instance.to_string(),
            run: run.to_string(),
            minutes: BTreeMap::new(),
            buckets: BTreeMap::new(),
        }
    }

    /// Adds what changed to what is pending and writes it all in one pipeline. On failure
    /// everything stays pending for the next flush.
    pub(crate) async fn write(&mut self, prep: &Prepared) -> Result<FlushReport, TierError> {
        self.take(prep);
        let realtime = &prep.realtime;
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
            expiries.insert(key, (bucket + 1) * BUCKET_MINUTES * 60 + 7 * DAY);
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
                Ok(report)
            }
            Ok(Err(e)) => Err(self.failed(e.into())),
            Err(_) => Err(self.failed(TierError::Timeout {
                tier: "Redis",
                after: FLUSH_TIMEOUT,
            })),
        }
    }

    /// Values waiting to be written.
    pub(crate) fn pending(&self) -> usize {
        self.minutes.len() + self.buckets.len()
    }

    fn failed(&self, e: TierError) -> TierError {
        TierError::kept("Redis", self.pending(), e)
    }

    /// Encodes the changed minutes and buckets into the pending values, within the bound.
    fn take(&mut self, prep: &Prepared) {
        for (minute, key, m) in &prep.minutes {
            if let Some(blob) = codec::encode_counted(key, m) {
                self.minutes.insert((*minute, key.clone()), blob);
            }
        }
        for (bucket, key, m) in &prep.buckets {
            if let Some(blob) = codec::encode_counted(key, m) {
                self.buckets.insert((*bucket, key.clone()), blob);
            }
        }
        // bounded while Redis is away: the oldest go first, counted
        while self.minutes.len() + self.buckets.len() > PENDING_LIMIT {
            let oldest_minute = self.minutes.keys().next().map(|(m, _)| *m);
            let oldest_bucket_start = self.buckets.keys().next().map(|(b, _)| b * BUCKET_MINUTES);
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
            if global().outbox.tiers.drop_one() {
                tracing::warn!(target: "perfmon", limit = PENDING_LIMIT, "Redis has been away long enough to fill the pending buffer: the oldest aggregates are being dropped (counted in recorder_stats().tier_dropped)");
            }
        }
    }
}

impl Realtime {
    pub(crate) fn add_to(&self, pipe: &mut redis::Pipeline, prefix: &str, instance: &str) -> usize {
        let recent = format!("{prefix}:rt:{instance}:recent");
        let times = format!("{prefix}:rt:{instance}:times");
        let counters = format!("{prefix}:rt:{instance}:counters");
        let slow = format!("{prefix}:slow");
        let alerts = format!("{prefix}:alerts:{instance}");
        let mut n = 0;
        pipe.del(&recent)
            .ignore()
            .del(&times)
            .ignore()
            .del(&alerts)
            .ignore();
        n += 3;
        if !self.alerts.is_empty() {
            pipe.hset_multiple(&alerts, &self.alerts)
                .ignore()
                .expire(&alerts, 300)
                .ignore();
            n += 2;
        }
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
            pipe.zremrangebyrank(&slow, 0, -(SLOW_LIST_SIZE as isize) - 1)
                .ignore();
            pipe.expire(&slow, DAY as i64).ignore();
            n += 3;
        }
        n
    }
}

/// Reads a window from the 1-minute (up to 24 h) or 5-minute (7 d) aggregates, merging every
/// run of this instance (`Instance`) or of every instance (`Cluster`).
pub(crate) async fn load(
    mut conn: ConnectionManager,
    prefix: &str,
    instance: &str,
    window: Window,
    scope: Scope,
) -> Result<Vec<(SeriesInfo, Minute<Merged>)>, TierError> {
    let now_minute = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60);
    let minutes = window.duration().as_secs() / 60;
    let keys: Vec<String> = if minutes > 1440 {
        let last = now_minute / BUCKET_MINUTES;
        let n = minutes / BUCKET_MINUTES;
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
    let maps: Vec<std::collections::HashMap<String, Vec<u8>>> =
        tokio::time::timeout(FLUSH_TIMEOUT, pipe.query_async(&mut conn))
            .await
            .map_err(|_| TierError::Timeout {
                tier: "Redis",
                after: FLUSH_TIMEOUT,
            })??;
    let mut by_series: BTreeMap<String, Minute<Merged>> = BTreeMap::new();
    for map in &maps {
        for (field, blob) in map {
            let mut parts = field.splitn(3, '\u{1e}');
            let (Some(inst), Some(_run), Some(series)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if scope == Scope::Instance && inst != instance {
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
        .filter_map(|(k, m)| Some((codec::parse_series_key(&k)?, m)))
        .collect())
}
