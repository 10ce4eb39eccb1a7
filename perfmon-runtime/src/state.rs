//! The process-wide state: series registry, the list of thread rings, and the aggregator.
//!
//! Lock order, everywhere: aggregator, then rings, then registry (read). Recording threads take
//! none of them on the hot path.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

use crate::aggregator::Aggregator;
use crate::config::Limits;
use crate::registry::Registry;
use crate::ring::{Event, Ring};

pub(crate) struct State {
    pub registry: RwLock<Registry>,
    rings: Mutex<Vec<Arc<Ring>>>,
    agg: Mutex<Aggregator>,
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

pub(crate) fn state() -> &'static State {
    STATE.get_or_init(|| State {
        registry: RwLock::new(Registry::new(Limits::default())),
        rings: Mutex::new(Vec::new()),
        agg: Mutex::new(Aggregator::new()),
        inline_drains: AtomicU64::new(0),
        api_slow_ns: AtomicU64::new(5_000_000_000),
        query_slow_ns: AtomicU64::new(100_000_000),
        cache_key_segments: AtomicUsize::new(2),
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn register_ring(ring: Arc<Ring>) {
    lock(&state().rings).push(ring);
}

/// Called by a producer whose ring is full: drains that ring under the aggregator lock.
pub(crate) fn drain_full_ring(ring: &Ring) {
    let s = state();
    let mut agg = lock(&s.agg);
    agg.begin();
    ring.drain_into(&mut agg);
    s.inline_drains.fetch_add(1, Ordering::Relaxed);
}

/// An event recorded while the thread's ring is unavailable (thread-local teardown).
pub(crate) fn process_directly(ev: Event) {
    let mut agg = lock(&state().agg);
    agg.begin();
    agg.process(ev);
}

/// Drains every ring and returns the aggregator, still locked, for a consistent read.
pub(crate) fn drained() -> MutexGuard<'static, Aggregator> {
    let s = state();
    let mut agg = lock(&s.agg);
    agg.begin();
    let mut rings = lock(&s.rings);
    for r in rings.iter() {
        r.drain_into(&mut agg);
    }
    // Rings of threads that have exited are dropped once empty.
    rings.retain(|r| !r.is_orphan_and_empty());
    agg.set_ring_count(rings.len());
    drop(rings);
    agg
}
