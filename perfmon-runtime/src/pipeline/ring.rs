//! The per-thread event ring: a single-producer, single-consumer queue of [`RING_CAPACITY`]
//! events, the hot path's only write.
//!
//! The producer is the owning thread ([`Ring::try_push`]); the consumer is whoever holds the lock
//! of the aggregator shard the ring feeds ([`Ring::drain`]; `state` arranges that), so there is
//! exactly one consumer at a time. A full ring refuses the push instead of overwriting: its
//! owner then drains it itself and pushes again, so no event is ever lost.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::pipeline::event::Event;
use crate::pipeline::tally::Tally;

/// Events a ring holds before its owner drains it itself (24 bytes each: 24 KiB per thread, small enough to stay in L1).
pub const RING_CAPACITY: usize = 1024;
const MASK: usize = RING_CAPACITY - 1;

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
    /// The thread's tallies, the hot path's fast lane (drained with the ring).
    pub(crate) tally: Tally,
}

// SAFETY: slots are written only by the single producer (the owning thread) at indices the
// consumer has released (`head - tail < capacity`), and read only by the single consumer (holder
// of the aggregator lock) at indices the producer has published with a Release store of `head`.
unsafe impl Sync for Ring {}
// SAFETY: as above; the ring owns plain `Copy` data.
unsafe impl Send for Ring {}

impl Ring {
    /// An empty ring feeding aggregator shard `shard`.
    pub(crate) fn new(shard: usize) -> Ring {
        let buf = (0..RING_CAPACITY)
            .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
            .collect();
        Ring {
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
            cached_tail: AtomicUsize::new(0),
            owner_alive: AtomicBool::new(true),
            shard,
            buf,
            tally: Tally::new(crate::core::clock::ns_per_tick_q32()),
        }
    }

    /// Producer side, only ever called by the owning thread: appends `ev`, or returns `false`
    /// (and changes nothing) when the ring is full.
    #[inline(always)]
    pub(crate) fn try_push(&self, ev: Event) -> bool {
        let h = self.head.load(Ordering::Relaxed);
        if h.wrapping_sub(self.cached_tail.load(Ordering::Relaxed)) >= RING_CAPACITY
            && !self.refresh_tail(h)
        {
            return false;
        }
        // SAFETY: `h - tail < capacity`, so the consumer is done with this slot; the index is
        // masked into bounds.
        unsafe { (*self.buf.get_unchecked(h & MASK).get()).write(ev) };
        self.head.store(h.wrapping_add(1), Ordering::Release);
        true
    }

    /// Producer side: appends `first` and `second` and publishes them together, so the
    /// consumer sees both or neither; `false` (and nothing changed) without room for both.
    #[inline]
    pub(crate) fn try_push_pair(&self, first: Event, second: Event) -> bool {
        let h = self.head.load(Ordering::Relaxed);
        if h.wrapping_sub(self.cached_tail.load(Ordering::Relaxed)) >= RING_CAPACITY - 1
            && !self.refresh_tail(h.wrapping_add(1))
        {
            return false;
        }
        // SAFETY: `h + 1 - tail < capacity`, so the consumer is done with both slots; the
        // indices are masked into bounds.
        unsafe {
            (*self.buf.get_unchecked(h & MASK).get()).write(first);
            (*self.buf.get_unchecked(h.wrapping_add(1) & MASK).get()).write(second);
        }
        self.head.store(h.wrapping_add(2), Ordering::Release);
        true
    }

    /// Re-reads the consumer's position; true if slot `h` is free now.
    #[cold]
    #[inline(never)]
    fn refresh_tail(&self, h: usize) -> bool {
        let t = self.tail.load(Ordering::Acquire);
        self.cached_tail.store(t, Ordering::Relaxed);
        h.wrapping_sub(t) < RING_CAPACITY
    }

    /// Consumer side: feeds every published event to `sink`.
    ///
    /// # Safety
    ///
    /// The caller must be the ring's only consumer for the duration of the call (it holds the
    /// lock of the shard this ring feeds).
    pub(crate) unsafe fn drain(&self, mut sink: impl FnMut(Event)) -> usize {
        let t = self.tail.load(Ordering::Relaxed);
        let h = self.head.load(Ordering::Acquire);
        let n = h.wrapping_sub(t);
        for i in 0..n {
            // SAFETY: slots in `tail..head` were fully written before `head` was published.
            let ev = unsafe { (*self.buf[(t.wrapping_add(i)) & MASK].get()).assume_init() };
            sink(ev);
        }
        self.tail.store(h, Ordering::Release);
        n
    }

    /// The aggregator shard this ring feeds.
    pub(crate) fn shard(&self) -> usize {
        self.shard
    }

    /// Marks the ring as abandoned by its producer (its thread exited, or a local scope ended).
    pub(crate) fn abandon(&self) {
        self.owner_alive.store(false, Ordering::Release);
    }

    /// Abandoned and fully drained (its tallies harvested): it can be forgotten.
    pub(crate) fn is_orphan_and_empty(&self) -> bool {
        !self.owner_alive.load(Ordering::Acquire)
            && self.head.load(Ordering::Acquire) == self.tail.load(Ordering::Acquire)
            && self.tally.is_harvested()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: u64) -> Event {
        Event {
            series: 1,
            status: 0,
            flags: 0,
            a: n,
            b: 0,
        }
    }

    fn drained(r: &Ring) -> Vec<u64> {
        let mut out = Vec::new();
        // SAFETY: the test is the only consumer.
        unsafe { r.drain(|e| out.push(e.a)) };
        out
    }

    #[test]
    fn a_pair_is_published_whole_or_not_at_all() {
        let r = Ring::new(0);
        for n in 0..(RING_CAPACITY - 1) as u64 {
            assert!(r.try_push(ev(n)));
        }
        // one slot left: the pair does not fit, and nothing of it is written
        assert!(!r.try_push_pair(ev(100_000), ev(100_001)));
        assert_eq!(drained(&r).len(), RING_CAPACITY - 1);
        // across the wrap-around, both or neither
        assert!(r.try_push_pair(ev(7), ev(8)));
        assert_eq!(drained(&r), vec![7, 8]);
        for round in 0..(3 * RING_CAPACITY as u64) {
            assert!(r.try_push_pair(ev(round), ev(round + 1)));
            assert_eq!(drained(&r), vec![round, round + 1]);
        }
    }
}
