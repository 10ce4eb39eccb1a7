//! The process-wide state: series registry, the list of thread rings, and the aggregator shards.
//!
//! Each ring belongs to one aggregator shard (assigned round-robin when its thread first
//! records), so threads that drain their own full rings do not contend with each other. A read
//! locks every shard (always in index order), drains every ring into its shard, and merges the
//! shards' histograms, which is exact.
//!
//! Lock order, everywhere: shards in index order, then rings, then registry (read). Recording
//! threads take none of them on the hot path; a thread whose ring is full takes its own shard
//! only.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

use crate::aggregator::{Aggregator, RawRequest, Totals, View, RECENT_REQUESTS, SLOW_LIST_SIZE};
use crate::config::Limits;
use crate::registry::{Kind, Registry, SeriesInfo};
use crate::ring::{Event, Ring};

pub(crate) struct State {
    pub registry: RwLock<Registry>,
    rings: Mutex<Vec<Arc<Ring>>>,
    shards: Box<[Shard]>,
    next_shard: AtomicUsize,
    /// Times a recording thread found its ring full and drained it itself.
    pub inline_drains: AtomicU64,
    /// Slow threshold of hand-recorded API requests, ns.
    pub api_slow_ns: AtomicU64,
    /// Slow threshold of hand-recorded queries, ns.
    pub query_slow_ns: AtomicU64,
    /// `:`-separated segments of a hand-recorded cache key that form its group.
    pub cache_key_segments: AtomicUsize,
}

static STATE: OnceLock<State> = OnceLock::new();

/// One aggregator shard, aligned so that two shards never share a cache line.
#[repr(align(128))]
struct Shard(Mutex<Aggregator>);

pub(crate) fn state() -> &'static State {
    STATE.get_or_init(|| {
        let n = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 8);
        State {
            registry: RwLock::new(Registry::new(Limits::default())),
            rings: Mutex::new(Vec::new()),
            shards: (0..n)
                .map(|_| Shard(Mutex::new(Aggregator::new())))
                .collect(),
            next_shard: AtomicUsize::new(0),
            inline_drains: AtomicU64::new(0),
            api_slow_ns: AtomicU64::new(5_000_000_000),
            query_slow_ns: AtomicU64::new(100_000_000),
            cache_key_segments: AtomicUsize::new(2),
        }
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The shard a new ring feeds.
pub(crate) fn next_shard() -> usize {
    let s = state();
    s.next_shard.fetch_add(1, Ordering::Relaxed) % s.shards.len()
}

pub(crate) fn register_ring(ring: Arc<Ring>) {
    lock(&state().rings).push(ring);
}

/// Called by a producer whose ring is full: drains that ring under its shard's lock.
pub(crate) fn drain_full_ring(ring: &Ring) {
    let s = state();
    let mut agg = lock(&s.shards[ring.shard()].0);
    agg.begin();
    ring.drain_into(&mut agg);
    s.inline_drains.fetch_add(1, Ordering::Relaxed);
}

/// An event recorded while the thread's ring is unavailable (thread-local teardown).
pub(crate) fn process_directly(ev: Event) {
    let mut agg = lock(&state().shards[0].0);
    agg.begin();
    agg.process(ev);
}

/// The background worker's drain: one shard at a time, so recording threads that need their
/// own shard wait for at most one shard's work.
pub(crate) fn drain_incrementally() {
    let s = state();
    let rings: Vec<Arc<Ring>> = lock(&s.rings).clone();
    for (i, shard) in s.shards.iter().enumerate() {
        let mut agg = lock(&shard.0);
        agg.begin();
        for r in rings.iter().filter(|r| r.shard() == i) {
            r.drain_into(&mut agg);
        }
    }
    lock(&s.rings).retain(|r| !r.is_orphan_and_empty());
}

/// Every shard, locked, with every ring drained: a consistent view for a read.
pub(crate) struct Drained {
    shards: Vec<MutexGuard<'static, Aggregator>>,
    rings: usize,
}

/// Drains every ring and returns the shards, still locked.
pub(crate) fn drained() -> Drained {
    let s = state();
    let mut shards: Vec<_> = s.shards.iter().map(|sh| lock(&sh.0)).collect();
    for agg in shards.iter_mut() {
        agg.begin();
    }
    let mut rings = lock(&s.rings);
    for r in rings.iter() {
        r.drain_into(&mut shards[r.shard()]);
    }
    // Rings of threads that have exited are dropped once empty.
    rings.retain(|r| !r.is_orphan_and_empty());
    let n = rings.len();
    drop(rings);
    Drained { shards, rings: n }
}

impl Drained {
    /// Every (series, minute) changed since the last call, as whole minutes merged across
    /// shards, with the 5-minute bucket each belongs to (also whole, merged): what the retention
    /// tiers write, replacing what they wrote before.
    #[cfg(any(feature = "redis", feature = "postgres"))]
    pub(crate) fn take_dirty(&mut self) -> crate::tier::Snapshot {
        use crate::aggregator::Minute;
        use crate::hist::Merged;
        let mut keys = std::collections::BTreeSet::new();
        for agg in self.shards.iter_mut() {
            agg.take_dirty(&mut keys);
        }
        let mut snap = crate::tier::Snapshot::default();
        let mut buckets = std::collections::BTreeSet::new();
        for &(series, minute) in &keys {
            let mut m = Minute::<Merged>::default();
            for agg in &self.shards {
                agg.add_minutes(series, minute, minute, &mut m);
            }
            snap.minutes.push((series, minute, m));
            buckets.insert((series, minute / crate::tier::BUCKET_MINUTES));
        }
        for (series, bucket) in buckets {
            let first = bucket * crate::tier::BUCKET_MINUTES;
            let mut m = Minute::<Merged>::default();
            for agg in &self.shards {
                agg.add_minutes(
                    series,
                    first,
                    first + crate::tier::BUCKET_MINUTES - 1,
                    &mut m,
                );
            }
            snap.buckets.push((series, bucket, m));
        }
        snap
    }

    /// The minute containing "now".
    pub(crate) fn now_minute(&self) -> u64 {
        self.shards.first().map_or(0, |a| a.now_minute())
    }

    /// Every series of the given kinds active in the window, merged across shards.
    pub(crate) fn views(&self, kinds: &[Kind]) -> Vec<View<'_>> {
        let now = self.now_minute();
        self.views_in(kinds, now.saturating_sub(crate::WINDOW_MINUTES - 1), now)
    }

    /// Every series of the given kinds active in minutes `first..=last`, merged across shards.
    pub(crate) fn views_in(&self, kinds: &[Kind], first: u64, last: u64) -> Vec<View<'_>> {
        let mut by_id: BTreeMap<u32, View<'_>> = BTreeMap::new();
        for agg in &self.shards {
            for v in agg.views_in(kinds, first, last) {
                match by_id.entry(v.id) {
                    std::collections::btree_map::Entry::Vacant(e) => {
                        e.insert(v);
                    }
                    std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge(v),
                }
            }
        }
        by_id.into_values().collect()
    }

    /// Every series of the given kinds with its totals since start, merged across shards.
    pub(crate) fn totals(&self, kinds: &[Kind]) -> Vec<(&SeriesInfo, Totals)> {
        let mut by_id: BTreeMap<u32, (&SeriesInfo, Totals)> = BTreeMap::new();
        for agg in &self.shards {
            for (id, info, t) in agg.totals(kinds) {
                match by_id.entry(id) {
                    std::collections::btree_map::Entry::Vacant(e) => {
                        e.insert((info, t));
                    }
                    std::collections::btree_map::Entry::Occupied(mut e) => {
                        e.get_mut().1.fold(&t, |b, h| b.add(h));
                        e.get_mut().1.statuses.sort_unstable();
                    }
                }
            }
        }
        by_id.into_values().collect()
    }

    /// Slow requests of the window across shards, slowest first.
    pub(crate) fn slow_requests(&self, n: usize) -> Vec<(RawRequest, &SeriesInfo)> {
        let mut all: Vec<_> = self
            .shards
            .iter()
            .flat_map(|a| a.slow_requests(SLOW_LIST_SIZE))
            .collect();
        all.sort_unstable_by(|a, b| {
            b.0.dur_ns
                .cmp(&a.0.dur_ns)
                .then(b.0.unix_ns.cmp(&a.0.unix_ns))
        });
        all.truncate(n.min(SLOW_LIST_SIZE));
        all
    }

    /// The last requests across shards, newest first.
    pub(crate) fn recent_requests(&self) -> Vec<(RawRequest, &SeriesInfo)> {
        let mut all: Vec<_> = self
            .shards
            .iter()
            .flat_map(|a| a.recent_requests())
            .collect();
        all.sort_by_key(|r| std::cmp::Reverse(r.0.unix_ns));
        all.truncate(RECENT_REQUESTS);
        all
    }

    pub(crate) fn processed(&self) -> u64 {
        self.shards.iter().map(|a| a.processed).sum()
    }

    pub(crate) fn late(&self) -> u64 {
        self.shards.iter().map(|a| a.late).sum()
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.shards.iter().map(|a| a.heap_bytes()).sum()
    }

    pub(crate) fn rings(&self) -> usize {
        self.rings
    }
}
