//! Per-thread event rings: the hot path's only write.
//!
//! Each recording thread owns one single-producer ring of [`RING_CAPACITY`] events, allocated on
//! its first recorded event and registered with the global state. The consumer is whoever holds
//! its aggregator shard's lock (the background worker, a stats query, or, when the ring is full, the
//! producing thread itself), so there is exactly one consumer at a time and no event is ever
//! overwritten or dropped: a full ring is drained inline by its owner before the push.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::aggregator::Aggregator;

/// Events a ring holds before its owner drains it itself (24 bytes each: 24 KiB per thread, small enough to stay in L1).
pub const RING_CAPACITY: usize = 1024;
const MASK: usize = RING_CAPACITY - 1;

/// `a` = start tick, `b` = end tick.
pub(crate) const FLAG_TICKS: u16 = 1;
/// `a` = duration in ns, `b` = Unix time in ns.
pub(crate) const FLAG_NANOS: u16 = 2;
/// `a` = `f64` bits of a value, `b` = tick of the recording.
pub(crate) const FLAG_VALUE: u16 = 4;
/// The call was over its series' slow threshold.
pub(crate) const FLAG_SLOW: u16 = 8;

/// One recorded event, as raw as possible; the aggregator interprets it.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct Event {
    pub series: u32,
    pub status: u16,
    pub flags: u16,
    pub a: u64,
    pub b: u64,
}

/// Aligned to two cache lines so that rings of different threads, allocated side by side, never
/// share a line (the producer writes `head` on every event).
#[repr(align(128))]
pub(crate) struct Ring {
    head: AtomicUsize,
    tail: AtomicUsize,
    /// The producer's last view of `tail`; only the producer touches it.
    cached_tail: AtomicUsize,
    owner_alive: AtomicBool,
    shard: usize,
    buf: Box<[UnsafeCell<MaybeUninit<Event>>]>,
}

// SAFETY: slots are written only by the single producer (the owning thread) at indices the
// consumer has released (`head - tail < capacity`), and read only by the single consumer (holder
// of the aggregator lock) at indices the producer has published with a Release store of `head`.
unsafe impl Sync for Ring {}
// SAFETY: as above; the ring owns plain `Copy` data.
unsafe impl Send for Ring {}

impl Ring {
    fn new() -> Ring {
        let buf = (0..RING_CAPACITY)
            .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
            .collect();
        Ring {
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
            cached_tail: AtomicUsize::new(0),
            owner_alive: AtomicBool::new(true),
            shard: crate::state::next_shard(),
            buf,
        }
    }

    /// Producer side. Only ever called by the owning thread.
    #[inline(always)]
    fn push(&self, ev: Event) {
        let h = self.head.load(Ordering::Relaxed);
        if h.wrapping_sub(self.cached_tail.load(Ordering::Relaxed)) >= RING_CAPACITY {
            self.make_room(h);
        }
        // SAFETY: `h - tail < capacity`, so the consumer is done with this slot; the index is
        // masked into bounds.
        unsafe { (*self.buf.get_unchecked(h & MASK).get()).write(ev) };
        self.head.store(h.wrapping_add(1), Ordering::Release);
    }

    #[cold]
    #[inline(never)]
    fn make_room(&self, h: usize) {
        let t = self.tail.load(Ordering::Acquire);
        self.cached_tail.store(t, Ordering::Relaxed);
        if h.wrapping_sub(t) >= RING_CAPACITY {
            crate::state::drain_full_ring(self);
            self.cached_tail
                .store(self.tail.load(Ordering::Acquire), Ordering::Relaxed);
        }
    }

    /// Consumer side: feeds every published event to the aggregator. The `&mut Aggregator`
    /// proves the caller holds the aggregator lock, hence is the only consumer.
    pub(crate) fn drain_into(&self, agg: &mut Aggregator) -> usize {
        let t = self.tail.load(Ordering::Relaxed);
        let h = self.head.load(Ordering::Acquire);
        let n = h.wrapping_sub(t);
        for i in 0..n {
            // SAFETY: slots in `tail..head` were fully written before `head` was published.
            let ev = unsafe { (*self.buf[(t.wrapping_add(i)) & MASK].get()).assume_init() };
            agg.process(ev);
        }
        self.tail.store(h, Ordering::Release);
        n
    }

    /// The aggregator shard this ring feeds.
    pub(crate) fn shard(&self) -> usize {
        self.shard
    }

    pub(crate) fn is_orphan_and_empty(&self) -> bool {
        !self.owner_alive.load(Ordering::Acquire)
            && self.head.load(Ordering::Acquire) == self.tail.load(Ordering::Acquire)
    }
}

struct Local {
    ring: UnsafeCell<Option<Arc<Ring>>>,
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(r) = self.ring.get_mut() {
            r.owner_alive.store(false, Ordering::Release);
        }
    }
}

thread_local! {
    static LOCAL: Local = const { Local { ring: UnsafeCell::new(None) } };
}

/// Appends an event to the calling thread's ring. Never blocks on another thread except when the
/// ring is full (then it drains it under the aggregator lock), never allocates after the thread's
/// first event, never loses an event.
#[inline(always)]
pub(crate) fn push(ev: Event) {
    let pushed = LOCAL.try_with(|l| {
        // SAFETY: `LOCAL` is this thread's own; nothing else borrows `ring` while we use it
        // (the ring never calls back into `push`).
        let slot = unsafe { &mut *l.ring.get() };
        match slot {
            Some(r) => r.push(ev),
            None => first_push(slot, ev),
        }
    });
    if pushed.is_err() {
        // Thread-local storage is being torn down (an event from another TLS destructor).
        crate::state::process_directly(ev);
    }
}

#[cold]
#[inline(never)]
fn first_push(slot: &mut Option<Arc<Ring>>, ev: Event) {
    let ring = Arc::new(Ring::new());
    crate::state::register_ring(ring.clone());
    ring.push(ev);
    *slot = Some(ring);
}
