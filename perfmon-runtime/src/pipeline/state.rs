//! A collector's state — the list of thread rings and the aggregator shards — and the hot path's
//! thread-local slot that points each recording thread at its ring.
//!
//! There is one global state (what [`collector()`](crate::collector) reads, installed on first
//! use) and any number of local ones (`Collector::local`, for tests and embedding), which a
//! thread records into while it runs inside `Collector::scope`. All of them share the process'
//! series registry.
//!
//! Each ring belongs to one aggregator shard (assigned round-robin when its thread first
//! records), so threads that drain their own full rings do not contend with each other. A read
//! locks every shard (always in index order), drains every ring into its shard, and merges the
//! shards' histograms, which is exact.
//!
//! Lock order, everywhere: shards in index order, then the ring list, then the registry (read).
//! Recording threads take none of them on the hot path; a thread whose ring is full, or that
//! claims an entry of its tally, takes its own shard only.

use std::cell::UnsafeCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::core::hist::{Buckets, Merged};
use crate::core::kind::Kind;
use crate::core::sync::lock;
use crate::core::window::{BUCKET_MINUTES, RECENT_REQUESTS, SLOW_LIST_SIZE, WINDOW_MINUTES};
use crate::pipeline::aggregator::{Aggregator, Minute, RawRequest, Totals, View};
use crate::pipeline::event::Event;
use crate::pipeline::outbox::Outbox;
use crate::pipeline::registry::SeriesInfo;
use crate::pipeline::ring::Ring;

/// One aggregator shard, aligned so that two shards never share a cache line.
#[repr(align(128))]
struct Shard(Mutex<Aggregator>);

/// A collector's state.
pub(crate) struct State {
    rings: Mutex<Vec<Arc<Ring>>>,
    shards: Box<[Shard]>,
    next_shard: AtomicUsize,
    /// Times a recording thread found its ring full and drained it itself.
    pub inline_drains: AtomicU64,
    /// The event log queue and the tier counters (used on the global state).
    pub outbox: Outbox,
}

/// The global state.
pub(crate) fn global() -> &'static Arc<State> {
    static GLOBAL: OnceLock<Arc<State>> = OnceLock::new();
    GLOBAL.get_or_init(|| Arc::new(State::new()))
}

impl State {
    /// An empty state with one shard per core (at most 8).
    pub(crate) fn new() -> State {
        let n = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 8);
        State {
            rings: Mutex::new(Vec::new()),
            shards: (0..n)
                .map(|_| Shard(Mutex::new(Aggregator::new())))
                .collect(),
            next_shard: AtomicUsize::new(0),
            inline_drains: AtomicU64::new(0),
            outbox: Outbox::default(),
        }
    }

    /// A new ring for a recording thread, registered with this state.
    fn new_ring(&self) -> Arc<Ring> {
        let shard = self.next_shard.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        let ring = Arc::new(Ring::new(shard));
        lock(&self.rings).push(ring.clone());
        ring
    }

    /// Called by a producer whose ring is full: drains that ring under its shard's lock.
    fn drain_full_ring(&self, ring: &Ring) {
        let mut agg = lock(&self.shards[ring.shard()].0);
        agg.begin();
        // SAFETY: we hold the lock of the ring's shard, so we are its only consumer.
        unsafe { drain_into(ring, &mut agg) };
        self.inline_drains.fetch_add(1, Ordering::Relaxed);
    }

    /// An event recorded while the thread's ring is unavailable (thread-local teardown).
    fn process_directly(&self, ev: Event) {
        let mut agg = lock(&self.shards[0].0);
        agg.begin();
        agg.process(ev);
    }

    /// A traced event recorded while the thread's ring is unavailable: both under one lock.
    fn process_pair_directly(&self, carrier: Event, ev: Event) {
        let mut agg = lock(&self.shards[0].0);
        agg.begin();
        agg.process(carrier);
        agg.process(ev);
    }

    /// The background worker's drain: one shard at a time, so recording threads that need their
    /// own shard wait for at most one shard's work.
    pub(crate) fn drain_incrementally(&self) {
        let rings: Vec<Arc<Ring>> = lock(&self.rings).clone();
        for (i, shard) in self.shards.iter().enumerate() {
            let mut agg = lock(&shard.0);
            agg.begin();
            for r in rings.iter().filter(|r| r.shard() == i) {
                // SAFETY: we hold the lock of the ring's shard.
                unsafe { drain_into(r, &mut agg) };
            }
        }
        lock(&self.rings).retain(|r| !r.is_orphan_and_empty());
    }

    /// Drains every ring and returns the shards, still locked: one consistent view for a read.
    pub(crate) fn drained(&self) -> Drained<'_> {
        let mut shards: Vec<_> = self.shards.iter().map(|sh| lock(&sh.0)).collect();
        for agg in shards.iter_mut() {
            agg.begin();
        }
        let mut rings = lock(&self.rings);
        for r in rings.iter() {
            let agg = &mut shards[r.shard()];
            // SAFETY: we hold every shard's lock.
            unsafe { drain_into(r, agg) };
        }
        // Rings of threads that have exited (or scopes that ended) are dropped once empty.
        rings.retain(|r| !r.is_orphan_and_empty());
        let n = rings.len();
        drop(rings);
        Drained {
            shards,
            rings: n,
            inline_drains: self.inline_drains.load(Ordering::Relaxed),
        }
    }
}

/// Drains a ring's events and harvests its tallies into `agg`.
///
/// # Safety
///
/// The caller holds the lock of the ring's shard (`agg`'s), so it is the ring's only consumer.
unsafe fn drain_into(ring: &Ring, agg: &mut Aggregator) {
    // SAFETY: the caller's contract.
    unsafe {
        ring.drain(|ev| agg.process(ev));
        ring.tally.harvest(|b| agg.add_bulk(b));
        ring.tally.harvest_log(|l| agg.add_logged(l));
    }
}

/// What one flush takes from the aggregator: every (series, minute) changed since the last
/// flush, as whole minutes merged across shards, and the 5-minute buckets they belong to (also
/// whole, merged).
#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
#[derive(Default)]
pub(crate) struct Dirty {
    /// (series, unix minute, the whole minute).
    pub minutes: Vec<(Arc<SeriesInfo>, u64, Minute<Merged>)>,
    /// (series, bucket = unix minute / 5, the whole bucket so far).
    pub buckets: Vec<(Arc<SeriesInfo>, u64, Minute<Merged>)>,
}

/// Every shard of a state, locked, with every ring drained.
pub(crate) struct Drained<'a> {
    shards: Vec<MutexGuard<'a, Aggregator>>,
    rings: usize,
    inline_drains: u64,
}

impl Drained<'_> {
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    fn info(&self, id: u32) -> Option<Arc<SeriesInfo>> {
        self.shards.iter().find_map(|a| a.info(id)).cloned()
    }

    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    fn merged(&self, series: u32, first: u64, last: u64) -> Minute<Merged> {
        let mut m = Minute::<Merged>::default();
        for agg in &self.shards {
            agg.add_minutes(series, first, last, &mut m);
        }
        m
    }

    /// Every (series, minute) changed since the last call (clearing the marks), whole.
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    pub(crate) fn take_dirty(&mut self) -> Dirty {
        let mut keys = BTreeSet::new();
        for agg in self.shards.iter_mut() {
            agg.take_dirty(&mut keys);
        }
        let mut out = Dirty::default();
        let mut buckets = BTreeSet::new();
        for &(series, minute) in &keys {
            let Some(info) = self.info(series) else {
                continue;
            };
            out.minutes
                .push((info.clone(), minute, self.merged(series, minute, minute)));
            buckets.insert((series, minute / BUCKET_MINUTES));
        }
        for (series, bucket) in buckets {
            let Some(info) = self.info(series) else {
                continue;
            };
            let first = bucket * BUCKET_MINUTES;
            out.buckets.push((
                info,
                bucket,
                self.merged(series, first, first + BUCKET_MINUTES - 1),
            ));
        }
        out
    }

    /// The minute containing "now".
    pub(crate) fn now_minute(&self) -> u64 {
        self.shards.first().map_or(0, |a| a.now_minute())
    }

    /// The first minute of the in-memory window.
    pub(crate) fn first_minute(&self) -> u64 {
        self.now_minute().saturating_sub(WINDOW_MINUTES - 1)
    }

    /// Every series of the given kinds active in the in-memory window, merged across shards.
    pub(crate) fn views(&self, kinds: &[Kind]) -> Vec<View> {
        self.views_in(kinds, self.first_minute(), self.now_minute())
    }

    /// Every series of the given kinds active in minutes `first..=last`, merged across shards.
    pub(crate) fn views_in(&self, kinds: &[Kind], first: u64, last: u64) -> Vec<View> {
        let mut by_id: BTreeMap<u32, View> = BTreeMap::new();
        for agg in &self.shards {
            for (id, v) in agg.views_in(kinds, first, last) {
                match by_id.entry(id) {
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
    pub(crate) fn totals(&self, kinds: &[Kind]) -> Vec<(Arc<SeriesInfo>, Totals)> {
        let mut by_id: BTreeMap<u32, (Arc<SeriesInfo>, Totals)> = BTreeMap::new();
        for agg in &self.shards {
            for (id, info, t) in agg.totals(kinds) {
                match by_id.entry(id) {
                    std::collections::btree_map::Entry::Vacant(e) => {
                        e.insert((info.clone(), t));
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

    /// API series' duration buckets since start by status class, merged across shards, keyed
    /// by the address of the series' labels (`Arc::as_ptr`, as `totals` returns them).
    pub(crate) fn class_totals(&self) -> BTreeMap<usize, [Buckets; 5]> {
        let mut by_id: BTreeMap<usize, [Buckets; 5]> = BTreeMap::new();
        for agg in &self.shards {
            for (id, classes) in agg.class_totals() {
                let Some(info) = agg.info(id) else { continue };
                let mine = by_id.entry(Arc::as_ptr(info) as usize).or_default();
                for (m, c) in mine.iter_mut().zip(classes.iter()) {
                    m.add(c);
                }
            }
        }
        by_id
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

    /// Events aggregated since start.
    pub(crate) fn processed(&self) -> u64 {
        self.shards.iter().map(|a| a.processed).sum()
    }

    /// Hand-recorded events older than the window when they arrived.
    pub(crate) fn late(&self) -> u64 {
        self.shards.iter().map(|a| a.late).sum()
    }

    /// Bytes held by histograms and lists.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.shards.iter().map(|a| a.heap_bytes()).sum()
    }

    /// Rings (recording threads) alive.
    pub(crate) fn rings(&self) -> usize {
        self.rings
    }

    /// Times a recording thread drained its own full ring.
    pub(crate) fn inline_drains(&self) -> u64 {
        self.inline_drains
    }
}

/// This thread's ring and the state it feeds.
struct Slot {
    ring: Arc<Ring>,
    state: Arc<State>,
    /// Set inside `Collector::scope` (a local collector).
    scoped: bool,
}

struct Local {
    slot: UnsafeCell<Option<Slot>>,
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(s) = self.slot.get_mut() {
            s.ring.abandon();
        }
    }
}

thread_local! {
    static LOCAL: Local = const { Local { slot: UnsafeCell::new(None) } };
}

/// Appends an event to the calling thread's ring. Never blocks on another thread except when the
/// ring is full (then it drains it under its shard's lock), never allocates after the thread's
/// first event, never loses an event.
#[inline(always)]
pub(crate) fn push(ev: Event) {
    let pushed = LOCAL.try_with(|l| {
        // SAFETY: `LOCAL` is this thread's own, and nothing else borrows `slot` while we use it:
        // the code below never calls back into `push` or into the scope functions.
        let slot = unsafe { &mut *l.slot.get() };
        match slot {
            Some(s) => {
                if !s.ring.try_push(ev) {
                    s.push_full(ev);
                }
            }
            None => first_push(slot, ev),
        }
    });
    if pushed.is_err() {
        // Thread-local storage is being torn down (an event from another TLS destructor).
        global().process_directly(ev);
    }
}

/// Counts a tracked call in the thread's tally (see `pipeline::tally`), and writes it to its
/// recent log too with `log`: for a call of a kind the tallies count, not slow, outside a trace.
/// False when it is in a trace or the thread has no ring yet (the caller appends an event with
/// `FLAG_TICKS`); a call no entry takes goes to the ring here. Takes scalars, not an [`Event`]:
/// an event built for this call was stored on the stack on every call, ahead of the fast path.
#[inline(always)]
pub(crate) fn count_call(series: u32, status: u16, start: u64, end: u64, log: bool) -> bool {
    if crate::core::trace::current_raw() != 0 {
        return false;
    }
    // only the slot's address is taken inside the closure, which keeps `try_with` small
    // enough to inline (with the whole fast path inside, it was a call of its own)
    let Ok(slot) = LOCAL.try_with(|l| l.slot.get().cast_const()) else {
        return false;
    };
    // SAFETY: `LOCAL` is this thread's own and outlives this call (it is torn down only when
    // the thread exits); nothing else borrows `slot` mutably while we use it: the code below
    // never calls back into `push` or the scope functions.
    let Some(s) = (unsafe { &*slot }) else {
        return false;
    };
    // SAFETY: the slot is this thread's, so this is the tally's owning thread.
    if !unsafe {
        s.ring
            .tally
            .try_count_logged(series, status, start, end, log)
    } {
        s.count_elsewhere(series, status, start, end, log);
    }
    true
}

/// Appends an event, with the current trace id if the calling code runs in a trace.
#[inline(always)]
pub(crate) fn push_in_trace(ev: Event) {
    let trace = crate::core::trace::current_raw();
    if trace == 0 {
        push(ev);
    } else {
        push_traced(ev, trace);
    }
}

/// Appends an event with the trace id it belongs to (`trace` ≠ 0): two slots, published
/// together (see [`FLAG_TRACE`](crate::pipeline::event::FLAG_TRACE)).
#[inline]
pub(crate) fn push_traced(ev: Event, trace: u128) {
    let carrier = ev.trace_of(trace);
    let pushed = LOCAL.try_with(|l| {
        // SAFETY: as in `push`.
        let slot = unsafe { &mut *l.slot.get() };
        if slot.is_none() {
            first_push_empty(slot);
        }
        if let Some(s) = slot {
            if !s.ring.try_push_pair(carrier, ev) {
                s.state.drain_full_ring(&s.ring);
                if !s.ring.try_push_pair(carrier, ev) {
                    s.state.process_pair_directly(carrier, ev);
                }
            }
        }
    });
    if pushed.is_err() {
        global().process_pair_directly(carrier, ev);
    }
}

impl Slot {
    /// Called by a producer whose call its tally could not count: gives the call a tally entry
    /// for its minute if one of its entries is free or its minute is over (under the shard's
    /// lock, after harvesting the whole tally), and counts it there. False if it could not.
    fn claim_and_count(&self, ev: &Event, log: bool) -> bool {
        let ring = &self.ring;
        let tally = &ring.tally;
        // SAFETY (all the tally calls below): a `Slot` lives in its thread's `LOCAL`, so this is
        // the tally's owning thread.
        let Some(slot) = (unsafe { tally.claimable(ev.series, ev.status, ev.b) }) else {
            return false;
        };
        {
            let mut agg = lock(&self.state.shards[ring.shard()].0);
            agg.begin();
            // SAFETY: we hold the lock of the ring's shard, so we are its only consumer; and
            // we are the tally's owner (above).
            unsafe {
                drain_into(ring, &mut agg);
                let (minute, end) = agg.minute_span(ev.b);
                tally.claim(
                    slot,
                    ev.series,
                    ev.status,
                    minute,
                    end,
                    ev.b.saturating_sub(ev.a),
                );
            }
        }
        // SAFETY: as above.
        unsafe { tally.try_count_logged(ev.series, ev.status, ev.a, ev.b, log) }
    }

    /// A call the tally's entries did not take: claims an entry for it, or appends it to the
    /// ring.
    #[inline(never)]
    fn count_elsewhere(&self, series: u32, status: u16, start: u64, end: u64, log: bool) {
        let ev = Event {
            series,
            status,
            flags: crate::pipeline::event::FLAG_TICKS,
            a: start,
            b: end,
        };
        if !self.claim_and_count(&ev, log) && !self.ring.try_push(ev) {
            self.push_full(ev);
        }
    }

    #[cold]
    #[inline(never)]
    fn push_full(&self, ev: Event) {
        self.state.drain_full_ring(&self.ring);
        if !self.ring.try_push(ev) {
            // Unreachable (the ring was just emptied); never lose the event all the same.
            self.state.process_directly(ev);
        }
    }
}

#[cold]
#[inline(never)]
fn first_push(slot: &mut Option<Slot>, ev: Event) {
    let s = first_push_empty(slot);
    if !s.ring.try_push(ev) {
        s.state.process_directly(ev);
    }
}

/// This thread's first event: gives it a ring.
#[cold]
#[inline(never)]
fn first_push_empty(slot: &mut Option<Slot>) -> &mut Slot {
    let state = global().clone();
    let ring = state.new_ring();
    slot.insert(Slot {
        ring,
        state,
        scoped: false,
    })
}

/// Runs `f` with this thread's events going to `state`; the thread's previous ring (if any) is
/// restored afterwards, also when `f` panics. Events recorded inside stay in the scope's ring
/// until `state` is read.
pub(crate) fn with_state<R>(state: &Arc<State>, f: impl FnOnce() -> R) -> R {
    struct Restore {
        previous: Option<Option<Slot>>,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(previous) = self.previous.take() {
                let _ = LOCAL.try_with(|l| {
                    // SAFETY: as in `push`; nothing else borrows the slot here.
                    let slot = unsafe { &mut *l.slot.get() };
                    if let Some(scoped) = std::mem::replace(slot, previous) {
                        scoped.ring.abandon();
                    }
                });
            }
        }
    }
    let ring = state.new_ring();
    let mine = Slot {
        ring,
        state: state.clone(),
        scoped: true,
    };
    let previous = LOCAL
        .try_with(|l| {
            // SAFETY: as in `push`.
            let slot = unsafe { &mut *l.slot.get() };
            slot.replace(mine)
        })
        .ok();
    let _restore = Restore { previous };
    f()
}

/// The state this thread records into when it is inside a scope.
pub(crate) fn scoped() -> Option<Arc<State>> {
    LOCAL
        .try_with(|l| {
            // SAFETY: as in `push`.
            let slot = unsafe { &*l.slot.get() };
            slot.as_ref().filter(|s| s.scoped).map(|s| s.state.clone())
        })
        .ok()
        .flatten()
}
