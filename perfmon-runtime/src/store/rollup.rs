//! Coarse buckets (hours, days) of this process's series, built from the minutes each flush
//! carries: the latest whole value of every minute that may still change, plus the final minutes
//! folded per bucket. A bucket's value is always whole (final minutes + open ones), so writing it
//! replaces what an earlier flush wrote.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::hist::{Accum, Merged};
use crate::core::window::WINDOW_MINUTES;
use crate::pipeline::aggregator::{Minute, EVICTION_GRACE_MINUTES};
use crate::pipeline::state::global;
use crate::store::codec;

/// A minute is final once it is this many minutes old: past the window and the grace during
/// which the aggregator still holds (and may still change) it.
pub(crate) const FINAL_AFTER_MINUTES: u64 = WINDOW_MINUTES + EVICTION_GRACE_MINUTES + 1;

/// (bucket number, series key).
pub(crate) type BucketKey = (u64, String);

pub(crate) fn merge(into: &mut Minute<Merged>, m: &Minute<Merged>) {
    into.add_counters(m);
    into.hist.add(&m.hist);
}

/// Adds a stored aggregate to a read's merge in progress (cost: the aggregate's own bins).
pub(crate) fn accumulate(into: &mut Minute<Accum>, m: &Minute<Merged>) {
    into.add_counters(m);
    into.hist.add(&m.hist);
}

/// Merges stored aggregates that arrive sorted by key (a PostgreSQL stream `ORDER BY` it), one
/// key at a time: a read holds one merge in progress, whatever the number of keys. An
/// undecodable value is skipped with a warning.
#[cfg(feature = "postgres")]
pub(crate) struct MergeRuns<K> {
    current: Option<(K, Minute<Accum>)>,
}

#[cfg(feature = "postgres")]
impl<K: PartialEq> MergeRuns<K> {
    pub(crate) fn new() -> MergeRuns<K> {
        MergeRuns { current: None }
    }

    /// Adds the value stored under `key` (`series` names its series in a warning); returns the
    /// finished merge of the previous key when `key` starts a new run.
    pub(crate) fn push(
        &mut self,
        key: K,
        blob: &[u8],
        series: impl Fn(&K) -> &str,
    ) -> Option<(K, Minute<Merged>)> {
        let m = match codec::decode(blob) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(target: "perfmon", series = series(&key), error = %e, "unreadable aggregate skipped");
                return None;
            }
        };
        if let Some((k, acc)) = &mut self.current {
            if *k == key {
                accumulate(acc, &m);
                return None;
            }
        }
        let mut acc = Minute::<Accum>::default();
        accumulate(&mut acc, &m);
        self.current
            .replace((key, acc))
            .map(|(k, acc)| (k, finish(acc)))
    }

    /// The merge of the last key.
    pub(crate) fn end(self) -> Option<(K, Minute<Merged>)> {
        self.current.map(|(k, acc)| (k, finish(acc)))
    }
}

/// A read's finished merge of one series.
pub(crate) fn finish(acc: Minute<Accum>) -> Minute<Merged> {
    Minute {
        hist: acc.hist.finish(),
        outcomes: acc.outcomes,
        statuses: acc.statuses,
        slow: acc.slow,
        events: acc.events,
        value_sum: acc.value_sum,
        last_ok_ns: acc.last_ok_ns,
        last_fail_ns: acc.last_fail_ns,
        last_fail_trace: acc.last_fail_trace,
        dirty: false,
    }
}

/// One bucket size.
struct Level {
    minutes_per: u64,
    /// The final minutes of each bucket, merged and kept encoded (about 2 bytes per non-zero
    /// bin instead of 16: a busy series' day holds thousands of bins).
    folded: BTreeMap<BucketKey, Vec<u8>>,
    dirty: BTreeSet<BucketKey>,
}

fn decoded(blob: Option<&Vec<u8>>) -> Minute<Merged> {
    blob.and_then(|b| codec::decode(b).ok()).unwrap_or_default()
}

/// Rollups that outlive their writer: `init` again after `shutdown` in the same process (the same
/// run id) must not replace what the earlier writer folded with less.
static KEPT: std::sync::Mutex<BTreeMap<String, Rollup>> = std::sync::Mutex::new(BTreeMap::new());

/// A writer's rollup, left in the process for the next writer of the same owner when dropped
/// (`init` again in one process continues where the earlier runtime stopped).
pub(crate) struct KeptRollup {
    owner: String,
    rollup: Rollup,
}

impl std::ops::Deref for KeptRollup {
    type Target = Rollup;

    fn deref(&self) -> &Rollup {
        &self.rollup
    }
}

impl std::ops::DerefMut for KeptRollup {
    fn deref_mut(&mut self) -> &mut Rollup {
        &mut self.rollup
    }
}

impl Drop for KeptRollup {
    fn drop(&mut self) {
        let rollup = std::mem::replace(&mut self.rollup, Rollup::new(&[]));
        KEPT.lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(std::mem::take(&mut self.owner), rollup);
    }
}

/// Rolls minutes up into buckets of the given sizes.
pub(crate) struct Rollup {
    /// By (series key, minute): a bucket's open minutes are one range of its series.
    open: BTreeMap<(String, u64), Minute<Merged>>,
    levels: Vec<Level>,
}

impl Rollup {
    /// Buckets of `minutes_per` minutes each, e.g. `[60, 1440]` for hours and days.
    pub(crate) fn new(minutes_per: &[u64]) -> Rollup {
        Rollup {
            open: BTreeMap::new(),
            levels: minutes_per
                .iter()
                .map(|&minutes_per| Level {
                    minutes_per,
                    folded: BTreeMap::new(),
                    dirty: BTreeSet::new(),
                })
                .collect(),
        }
    }

    /// The rollup an earlier writer of the same tier, prefix, instance and process run left in
    /// this process, or a new one with buckets of `minutes_per` minutes; it is left again for
    /// the next writer when dropped.
    pub(crate) fn kept(
        tier: &str,
        prefix: &str,
        instance: &str,
        run: &str,
        minutes_per: &[u64],
    ) -> KeptRollup {
        let owner = format!("{tier}\u{1e}{prefix}\u{1e}{instance}\u{1e}{run}");
        let rollup = KEPT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&owner)
            .unwrap_or_else(|| Rollup::new(minutes_per));
        KeptRollup { owner, rollup }
    }

    /// Takes the latest whole value of a minute; the buckets holding it are out of date.
    pub(crate) fn add_minute(&mut self, minute: u64, key: &str, m: &Minute<Merged>) {
        self.open.insert((key.to_string(), minute), m.clone());
        for l in &mut self.levels {
            l.dirty.insert((minute / l.minutes_per, key.to_string()));
        }
    }

    /// Folds the minutes that can no longer change (as of `now_minute`) into their buckets.
    pub(crate) fn finalize(&mut self, now_minute: u64) {
        let finals: Vec<(String, u64)> = self
            .open
            .keys()
            .filter(|(_, m)| m + FINAL_AFTER_MINUTES < now_minute)
            .cloned()
            .collect();
        // each bucket decoded and encoded once per call, whatever the number of its minutes
        let mut by_level: Vec<BTreeMap<BucketKey, Minute<Merged>>> =
            self.levels.iter().map(|_| BTreeMap::new()).collect();
        for k in finals {
            if let Some(m) = self.open.remove(&k) {
                for (l, into) in self.levels.iter().zip(by_level.iter_mut()) {
                    let bucket = (k.1 / l.minutes_per, k.0.clone());
                    let value = into
                        .entry(bucket)
                        .or_insert_with_key(|b| decoded(l.folded.get(b)));
                    merge(value, &m);
                }
            }
        }
        for (l, values) in self.levels.iter_mut().zip(by_level) {
            for (bucket, m) in values {
                match codec::encode(&m) {
                    Ok(blob) => {
                        l.folded.insert(bucket, blob);
                    }
                    Err(e) => {
                        tracing::error!(target: "perfmon", series = bucket.1, error = %e, "a folded bucket could not be kept")
                    }
                }
            }
        }
    }

    /// The whole value of a bucket of level `level`: its final minutes plus its open ones.
    pub(crate) fn value(&self, level: usize, bucket: u64, key: &str) -> Minute<Merged> {
        let l = &self.levels[level];
        let mut m = decoded(l.folded.get(&(bucket, key.to_string())));
        let first = bucket * l.minutes_per;
        for (_, open) in self
            .open
            .range((key.to_string(), first)..(key.to_string(), first + l.minutes_per))
        {
            merge(&mut m, open);
        }
        m
    }

    /// The buckets of level `level` whose stored value is out of date.
    pub(crate) fn dirty(&self, level: usize) -> &BTreeSet<BucketKey> {
        &self.levels[level].dirty
    }

    /// Every stored value is up to date.
    pub(crate) fn clear_dirty(&mut self) {
        for l in &mut self.levels {
            l.dirty.clear();
        }
    }

    /// Marks a bucket of level `level` out of date again (a write that left it pending).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn mark_dirty(&mut self, level: usize, bucket: BucketKey) {
        self.levels[level].dirty.insert(bucket);
    }

    /// Buckets out of date, over every level.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn pending(&self) -> usize {
        self.levels.iter().map(|l| l.dirty.len()).sum()
    }

    /// Keeps at most `limit` folded buckets: the oldest (by start) go first, each leaving its
    /// own level's dirty set, counted in `recorder_stats().tier_dropped` and logged once. Returns
    /// how many went.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn bound(&mut self, limit: usize, tier: &'static str) -> usize {
        let mut dropped = 0;
        while self.levels.iter().map(|l| l.folded.len()).sum::<usize>() > limit {
            let oldest = self
                .levels
                .iter()
                .enumerate()
                .filter_map(|(n, l)| l.folded.keys().next().map(|k| (k.0 * l.minutes_per, n)))
                .min();
            let Some((_, n)) = oldest else { break };
            let l = &mut self.levels[n];
            if let Some((k, _)) = l.folded.pop_first() {
                l.dirty.remove(&k);
            }
            dropped += 1;
            if global().outbox.tiers.drop_one() {
                tracing::warn!(target: "perfmon", tier, limit, "the tier has been away long enough to fill the pending buffer: the oldest hours and days are being dropped (counted in recorder_stats().tier_dropped)");
            }
        }
        dropped
    }

    /// Forgets folded buckets that are over (as of `now_minute`) and written.
    pub(crate) fn trim(&mut self, now_minute: u64) {
        for l in &mut self.levels {
            let now = now_minute / l.minutes_per;
            let dirty = &l.dirty;
            l.folded.retain(|k, _| k.0 + 1 >= now || dirty.contains(k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(events: u64) -> Minute<Merged> {
        Minute {
            events,
            ..Minute::default()
        }
    }

    #[test]
    fn buckets_are_whole_values_of_final_and_open_minutes() {
        let mut r = Rollup::new(&[60, 1440]);
        let start = 1_000 * 1440; // a day boundary
        r.add_minute(start, "s", &minute(3));
        r.add_minute(start + 1, "s", &minute(4));
        r.add_minute(start + 61, "s", &minute(5));
        r.add_minute(start + 1, "t", &minute(100));
        assert_eq!(r.value(0, start / 60, "s").events, 7);
        assert_eq!(r.value(1, start / 1440, "s").events, 12);
        // a newer value of an open minute replaces it
        r.add_minute(start + 1, "s", &minute(6));
        assert_eq!(r.value(0, start / 60, "s").events, 9);
        // final minutes fold; the value stays whole
        r.finalize(start + 200);
        assert_eq!(r.value(0, start / 60, "s").events, 9);
        assert_eq!(r.value(1, start / 1440, "s").events, 14);
        assert_eq!(r.value(0, start / 60, "t").events, 100);
        assert_eq!(r.dirty(0).len(), 3);
        assert_eq!(r.dirty(1).len(), 2);
        r.clear_dirty();
        r.trim(start + 200);
        // hour 0 is over and written: forgotten; the day is not over
        assert_eq!(r.value(0, start / 60, "s").events, 0);
        assert_eq!(r.value(1, start / 1440, "s").events, 14);
    }

    #[test]
    fn the_bound_drops_the_oldest_buckets_from_their_own_dirty_sets() {
        let mut r = Rollup::new(&[60, 1440]);
        for h in 0..5u64 {
            r.add_minute(h * 60, "s", &minute(1));
        }
        r.finalize(10_000);
        // 5 hours + 1 day folded
        assert_eq!(r.bound(4, "test"), 2);
        assert_eq!(r.dirty(0).len(), 4, "hour 0 went first, hours 1..4 stay");
        assert_eq!(
            r.dirty(1).len(),
            0,
            "then the day, which starts before hour 1"
        );
    }
}
