//! The Redis writer: this instance's 1-minute, 5-minute and hourly aggregates and its realtime
//! keys, one pipeline per flush, kept and retried while Redis is away.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::Cmd;

use crate::core::window::SLOW_LIST_SIZE;
use crate::pipeline::state::global;
use crate::store::codec;
use crate::store::error::TierError;
use crate::store::prepared::{FlushReport, Prepared, Realtime};
use crate::store::redis::compact::Compactor;
use crate::store::redis::io::{timed, Batch, Conn};
use crate::store::redis::layout::{field, queue_member, sid, Keys, Tier, WRITES};
use crate::store::rollup::{KeptRollup, Rollup};

/// Whole values kept while Redis is away, at most (the oldest go first, counted).
pub const PENDING_LIMIT: usize = 100_000;
const DAY: u64 = 86_400;
/// How long the instance's run list is kept after its last flush.
const RUNS_TTL: Duration = Duration::from_secs(8 * 86_400);

pub(crate) struct Writer {
    conn: Conn,
    keys: Keys,
    instance: String,
    field: String,
    run: String,
    /// The hours of this process's series, rolled up from its minutes.
    hours: KeptRollup,
    /// Encoded values not yet written, by (tier, bucket, series key): a newer value of the same
    /// key replaces the older one, so the bound is on distinct keys, not on events.
    pending: BTreeMap<(Tier, u64, String), Vec<u8>>,
    /// Written buckets whose queueing for the compactor failed, queued with the next flush.
    unqueued: Vec<(u64, String)>,
    /// The latest realtime values (replaced whole by each flush).
    realtime: Option<Realtime>,
    compactor: Compactor,
}

impl Writer {
    pub(crate) fn new(conn: Conn, prefix: &str, instance: &str, run: &str) -> Writer {
        let keys = Keys {
            prefix: prefix.to_string(),
        };
        Writer {
            compactor: Compactor::new(keys.clone(), field(instance, run)),
            conn,
            keys,
            instance: instance.to_string(),
            field: field(instance, run),
            run: run.to_string(),
            hours: Rollup::kept("redis", prefix, instance, run, &[Tier::H1.minutes()]),
            pending: BTreeMap::new(),
            unqueued: Vec::new(),
            realtime: None,
        }
    }

    /// Adds what changed to what is pending and writes it all in one pipeline, then queues the
    /// written buckets for the compactor and runs a compaction pass if this instance holds the
    /// lease. On failure everything stays pending for the next flush.
    pub(crate) async fn write(
        &mut self,
        prep: &Prepared,
        now_secs: u64,
    ) -> Result<FlushReport, TierError> {
        self.absorb(prep, now_secs);
        self.send(now_secs).await
    }

    /// Takes what a flush carries into what is pending (cheap; no I/O).
    pub(crate) fn absorb(&mut self, prep: &Prepared, now_secs: u64) {
        self.take(prep, now_secs / 60);
        self.realtime = Some(prep.realtime.clone());
    }

    /// Writes what is pending (and the latest realtime values) in one batch, then queues the
    /// written buckets for the compactor and runs a compaction pass if this instance holds the
    /// lease. On failure everything stays pending.
    pub(crate) async fn send(&mut self, now_secs: u64) -> Result<FlushReport, TierError> {
        let mut batch = Batch::default();
        let mut report = FlushReport::default();
        let mut indexes: BTreeMap<String, u64> = BTreeMap::new();
        let mut queued = Vec::with_capacity(self.pending.len());
        for ((tier, bucket, series), blob) in &self.pending {
            let id = sid(series);
            let key = self.keys.data(*tier, *bucket, &id);
            let at = tier.expire_at(*bucket) as i64;
            batch
                .add(&key, Cmd::hset(&key, &self.field, blob.as_slice()))
                .add(&key, Cmd::hincr(&key, WRITES, 1))
                .add(&key, Cmd::expire_at(&key, at));
            let index = self.keys.index(*tier, *bucket);
            batch.add(&index, Cmd::hset(&index, &id, series));
            indexes.insert(index, at as u64);
            // late (an instance that was away): compact at once; else once the bucket is final
            let score = tier.final_at(*bucket).max(now_secs);
            queued.push((score, queue_member(*tier, *bucket, &id)));
            match tier {
                Tier::M1 => report.minutes += 1,
                Tier::M5 => report.buckets += 1,
                Tier::H1 => report.hours += 1,
            }
            report.bytes += blob.len();
        }
        for (key, at) in &indexes {
            batch.add(key, Cmd::expire_at(key, *at as i64));
        }
        let runs = self.keys.runs(&self.instance);
        let forgotten = (now_secs.saturating_sub(RUNS_TTL.as_secs()) / 60) as i64;
        batch
            .add(&runs, Cmd::zadd(&runs, &self.run, now_secs / 60))
            .add(&runs, Cmd::zrembyscore(&runs, "-inf", forgotten))
            .add(&runs, Cmd::expire(&runs, RUNS_TTL.as_secs() as i64));
        if let Some(realtime) = &self.realtime {
            realtime.add_to(&mut batch, &self.keys.prefix, &self.instance, now_secs);
        }
        report.commands = batch.len();
        if let Err(e) = batch.send(&mut self.conn).await {
            return Err(TierError::kept("Redis", self.pending(), e));
        }
        self.pending.clear();
        // Queued after the values are written (a second round trip), so that the compactor never
        // takes a queue entry whose write it cannot see yet. Failing here only leaves buckets
        // uncompacted: reads of them merge every instance instead.
        queued.append(&mut self.unqueued);
        if !queued.is_empty() {
            let queue = Cmd::zadd_multiple(self.keys.compact_queue(), &queued);
            if let Err(e) = timed(queue.query_async::<()>(&mut self.conn)).await {
                tracing::debug!(target: "perfmon", error = %e, "queueing buckets for the compactor; kept for the next flush");
                // bounded like the values themselves
                queued.truncate(PENDING_LIMIT);
                self.unqueued = queued;
            }
        }
        match self.compactor.pass(&mut self.conn, now_secs).await {
            Ok(n) => report.compacted = n,
            Err(e) => tracing::debug!(target: "perfmon", error = %e, "compaction pass"),
        }
        Ok(report)
    }

    /// Values waiting to be written.
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Encodes the changed minutes, 5-minute buckets and the hours they change into the pending
    /// values, within the bound.
    fn take(&mut self, prep: &Prepared, now_minute: u64) {
        for (minute, key, m) in &prep.minutes {
            self.hours.add_minute(*minute, key, m);
            if let Some(blob) = codec::encode_counted(key, m) {
                self.pending.insert((Tier::M1, *minute, key.clone()), blob);
            }
        }
        for (bucket, key, m) in &prep.buckets {
            if let Some(blob) = codec::encode_counted(key, m) {
                self.pending.insert((Tier::M5, *bucket, key.clone()), blob);
            }
        }
        self.hours.finalize(now_minute);
        for (hour, key) in self.hours.dirty(0) {
            let m = self.hours.value(0, *hour, key);
            if let Some(blob) = codec::encode_counted(key, &m) {
                self.pending.insert((Tier::H1, *hour, key.clone()), blob);
            }
        }
        self.hours.clear_dirty();
        self.hours.trim(now_minute);
        // bounded while Redis is away: the oldest go first, counted
        while self.pending.len() > PENDING_LIMIT {
            let oldest = Tier::COARSEST_FIRST
                .into_iter()
                .filter_map(|t| {
                    let (k, _) = self.pending.range((t, 0, String::new())..).next()?;
                    (k.0 == t).then(|| k.clone())
                })
                .min_by_key(|(t, b, _)| b * t.minutes());
            let Some(k) = oldest else { break };
            self.pending.remove(&k);
            if global().outbox.tiers.drop_one() {
                tracing::warn!(target: "perfmon", limit = PENDING_LIMIT, "Redis has been away long enough to fill the pending buffer: the oldest aggregates are being dropped (counted in recorder_stats().tier_dropped)");
            }
        }
    }
}

impl Realtime {
    /// Adds the realtime keys' commands to `batch`.
    pub(crate) fn add_to(&self, batch: &mut Batch, prefix: &str, instance: &str, now_secs: u64) {
        let recent = format!("{prefix}:rt:{instance}:recent");
        let times = format!("{prefix}:rt:{instance}:times");
        let counters = format!("{prefix}:rt:{instance}:counters");
        let slow = format!("{prefix}:slow");
        let alerts = format!("{prefix}:alerts:{instance}");
        for key in [&recent, &times, &alerts] {
            batch.add(key, Cmd::del(key));
        }
        if !self.alerts.is_empty() {
            batch
                .add(&alerts, Cmd::hset_multiple(&alerts, &self.alerts))
                .add(&alerts, Cmd::expire(&alerts, 300));
        }
        if !self.recent.is_empty() {
            batch
                .add(&recent, Cmd::rpush(&recent, &self.recent))
                .add(&recent, Cmd::expire(&recent, 300))
                .add(&times, Cmd::rpush(&times, &self.times))
                .add(&times, Cmd::expire(&times, 300));
        }
        let mut items: Vec<(&str, u64)> = self.counters.clone();
        items.push(("updatedAt", now_secs));
        batch
            .add(&counters, Cmd::hset_multiple(&counters, &items))
            .add(&counters, Cmd::expire(&counters, 300));
        if !self.slow.is_empty() {
            let members: Vec<(f64, String)> = self
                .slow
                .iter()
                .map(|(score, json)| (*score, format!("{}\u{1e}{json}", self.instance_json)))
                .collect();
            batch
                .add(&slow, Cmd::zadd_multiple(&slow, &members))
                .add(
                    &slow,
                    Cmd::zremrangebyrank(&slow, 0, -(SLOW_LIST_SIZE as isize) - 1),
                )
                .add(&slow, Cmd::expire(&slow, DAY as i64));
        }
    }
}
