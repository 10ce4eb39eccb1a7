//! Per-thread tallies: the fast lane of the hot path.
//!
//! A call of a fn tracked by `#[measure]`, `#[track_query]` or `#[track_api]` that is not slow
//! and not in a trace is counted in a small histogram owned by the calling thread instead of
//! being written to the thread's event ring and aggregated later, event by event (~190
//! instructions each, wherever the ring is drained).
//!
//! A thread has [`SLOTS`] entries. An entry counts one (series, status) pair for one minute,
//! in [`BINS`] bins around the duration of the call that claimed it: one bin per clock tick for
//! short calls (under [`LINEAR_TICKS`]), HDR bins of nanoseconds otherwise. The hot path only
//! checks that the call's tick count is in the entry's range and appends it to the entry's
//! buffer of [`BUF`] durations — a store whose address does not depend on the clock read, which
//! is what keeps the call at the cost of its two clock reads (an increment of a bin chosen by
//! the duration cost ~8 ns more on this project's machine). Every [`BUF`] calls the owner bins
//! the buffer. Anything an entry cannot take — another series, a duration outside its range,
//! the next minute — goes to the ring as before, or, when the entry is free or its minute is
//! over, claims it (under the lock of the thread's aggregator shard, once per entry per minute).
//!
//! Whoever drains the thread's ring (the holder of its shard's lock) also *harvests* the
//! entries: it reads each one under its sequence number (a seqlock the owner makes odd while
//! it bins its buffer, so a reader never sees a buffer half-binned) — bins, sum, extremes and
//! the buffer's published part — and files what changed since its last harvest into the
//! aggregator as a bulk of events, exactly as the ring's events would have been filed (each
//! tick count converts to nanoseconds as the aggregator converts an event's). The owner writes
//! with plain loads and stores (relaxed atomics: no locked instruction, no fence on x86).
//! Nothing is ever lost: what a harvest misses (a duration being appended) the next one takes,
//! and an entry is reset only by its owner, under the shard lock, right after a harvest.
//!
//! `#[track_api]` also keeps the recent-requests list: each request counted here is written
//! into a per-thread log of the last [`LOG`] requests, which a harvest copies (an overwriting
//! log: only the newest requests are ever shown).
//!
//! Memory: each recording thread holds its tallies (2.6 KiB per entry, 44 KiB in all with the
//! request log) beside its ring, allocated once with the ring.

use std::cell::UnsafeCell;
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::core::clock::scale_ticks;
use crate::core::hist::index_of;

/// Entries per thread: two candidate slots per series (see [`Tally::slots_of`]).
pub(crate) const SLOTS: usize = 16;
/// Bins per entry: the 256 bins centred on the duration that claimed it.
pub(crate) const BINS: usize = 256;
/// Durations an entry buffers before its owner bins them (under 256: see `bin_linear`).
pub(crate) const BUF: usize = 32;
const _: () = assert!(BUF < 256);
/// Calls outside an entry's range after which it is centred again on the next one.
pub(crate) const RECENTRE_AFTER: u32 = 32;
/// Distinct durations a linear buffer is counted by at once (see `Tally::bin_linear`).
const DISTINCT_AT_ONCE: usize = 6;
/// Calls shorter than this many ticks get linear entries (one bin per tick).
pub(crate) const LINEAR_TICKS: u64 = 2048;
/// Requests kept in the per-thread recent log (more than the 100 shown).
pub(crate) const LOG: usize = 128;

/// A free entry's key.
const FREE: u64 = 0;

/// An entry's key: a (series, status) pair, never [`FREE`].
#[inline(always)]
fn key(series: u32, status: u16) -> u64 {
    1 << 63 | u64::from(series) << 16 | u64::from(status)
}

/// One entry. `pending` and `buf` are written by the owner on the hot path; the bins, sum,
/// extremes and `binned` by the owner when it bins the buffer (under `seq`); the rest only under
/// the shard lock.
#[repr(C, align(64))]
struct Entry {
    // the first cache line: what the hot path reads, written only when the entry is claimed
    /// [`key`] of what the entry counts, or [`FREE`].
    key: AtomicU64,
    /// The first tick past the entry's minute (0: closed, see [`Tally::bin_buffer`]).
    minute_end: AtomicU64,
    /// The tick counts the entry takes: `lo..lo + span`.
    lo: AtomicU64,
    span: AtomicU64,
    /// Linear: `bins[i]` counts calls of exactly `base + i` ticks. Otherwise `bins[i]` counts
    /// calls in HDR bin `base + i` of their duration in ns.
    base: AtomicU32,
    linear: AtomicBool,
    /// What the hot path writes, on a line of its own: a store there whose value waits for the
    /// clock read must not look, to the processor, like a store the next call's reads above
    /// depend on.
    w: Written,
    /// Odd while the owner bins its buffer (or claims the entry).
    seq: AtomicU64,
    /// The entry's Unix minute.
    minute: AtomicU64,
    /// Durations binned since the entry was claimed.
    binned: AtomicU64,
    /// Sum (ns), minimum and maximum of the binned durations.
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
    /// Calls of the entry's pair that fell outside its range since it was claimed (owner only).
    misses: AtomicU32,
    buf: [AtomicU64; BUF],
    bins: [AtomicU32; BINS],
    /// What the harvests took so far; only the holder of the shard lock touches it.
    seen: UnsafeCell<Seen>,
    /// `seen.seq` and `seen.pending`, readable without the shard lock (to tell whether an
    /// abandoned tally still holds anything).
    seen_seq: AtomicU64,
    seen_pending: AtomicU32,
}

/// An entry's lines the hot path writes: the count on one (its value never waits for the
/// clock), the bytes on the next.
#[repr(C, align(64))]
struct Written {
    /// Durations in the buffer not binned yet.
    pending: Line<AtomicU32>,
    /// The buffered durations of a linear entry: `ticks - base`, one byte each (`buf` holds
    /// an HDR entry's ticks).
    buf8: [AtomicU8; BUF],
}

/// A value alone on its cache line.
#[repr(C, align(64))]
struct Line<T>(T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The totals the harvests have taken: the bins and the buffer's durations counted together.
struct Seen {
    seq: u64,
    pending: u32,
    sum: u64,
    bins: [u32; BINS],
}

/// What changed in one entry since the last harvest: `count` events of `series` with `status`,
/// in Unix minute `minute`, with `bins[i]` of them in HDR bin `base + i` (of their duration in
/// ns).
pub(crate) struct Bulk {
    pub series: u32,
    pub status: u16,
    pub minute: u64,
    pub count: u64,
    pub sum_ns: u64,
    /// The minimum and maximum of the entry's minute so far (merging them again is harmless).
    pub min_ns: u64,
    pub max_ns: u64,
    pub base: u32,
    pub bins: [u32; BINS],
}

/// One request of the recent log: (series, status, end tick, duration in ns).
pub(crate) type Logged = (u32, u16, u64, u64);

/// A thread's tallies and its recent-request log.
pub(crate) struct Tally {
    /// Arrays, not slices: the hot path indexes them with masked indices and no bounds check.
    entries: Box<[Entry; SLOTS]>,
    /// The clock's tick-to-ns factor (as `Anchor::between_ns`, so durations come out the same
    /// as the ring's events would).
    ns_per_tick_q32: u64,
    log: Box<[[AtomicU64; 3]; LOG]>,
    /// Requests written to the log so far.
    log_head: AtomicU64,
    /// `log_head` at the last harvest; only the holder of the shard lock touches it.
    log_seen: UnsafeCell<u64>,
}

// SAFETY: the `UnsafeCell`s (`seen`, `log_seen`) are touched only by the holder of the lock of
// the aggregator shard the owning ring feeds (the `state` module arranges that), one at a time;
// everything else is atomic.
unsafe impl Sync for Tally {}

impl Entry {
    /// The bin of a duration the entry took (`lo <= ticks < lo + span`).
    #[inline]
    fn bin_of(&self, ticks: u64, q32: u64) -> usize {
        let base = u64::from(self.base.load(Ordering::Relaxed));
        let at = if self.linear.load(Ordering::Relaxed) {
            ticks
        } else {
            u64::from(index_of(scale_ticks(0, ticks, q32)))
        };
        // in range by construction (see `Tally::claim`); clamped all the same, never a panic
        (at.saturating_sub(base) as usize).min(BINS - 1)
    }
}

impl Tally {
    pub(crate) fn new(ns_per_tick_q32: u64) -> Tally {
        let entries = (0..SLOTS)
            .map(|_| Entry {
                w: Written {
                    pending: Line(AtomicU32::new(0)),
                    buf8: std::array::from_fn(|_| AtomicU8::new(0)),
                },
                seq: AtomicU64::new(0),
                key: AtomicU64::new(FREE),
                minute_end: AtomicU64::new(0),
                lo: AtomicU64::new(0),
                span: AtomicU64::new(0),
                linear: AtomicBool::new(false),
                base: AtomicU32::new(0),
                minute: AtomicU64::new(0),
                binned: AtomicU64::new(0),
                sum: AtomicU64::new(0),
                min: AtomicU64::new(u64::MAX),
                max: AtomicU64::new(0),
                misses: AtomicU32::new(0),
                buf: std::array::from_fn(|_| AtomicU64::new(0)),
                bins: std::array::from_fn(|_| AtomicU32::new(0)),
                seen: UnsafeCell::new(Seen {
                    seq: 0,
                    pending: 0,
                    sum: 0,
                    bins: [0; BINS],
                }),
                seen_seq: AtomicU64::new(0),
                seen_pending: AtomicU32::new(0),
            })
            .collect::<Box<[Entry]>>();
        let log = (0..LOG)
            .map(|_| Default::default())
            .collect::<Box<[[AtomicU64; 3]]>>();
        Tally {
            entries: entries
                .try_into()
                .unwrap_or_else(|_| unreachable!("SLOTS entries")),
            ns_per_tick_q32,
            log: log.try_into().unwrap_or_else(|_| unreachable!("LOG slots")),
            log_head: AtomicU64::new(0),
            log_seen: UnsafeCell::new(0),
        }
    }

    /// The two entries a series may use.
    #[inline(always)]
    fn slots_of(series: u32) -> [usize; 2] {
        let first = series as usize & (SLOTS - 1);
        [first, first ^ (SLOTS / 2)]
    }

    /// Counts a call in its entry if one holds (series, status) for the minute of `end` and
    /// takes its duration. False (nothing changed) otherwise.
    ///
    /// # Safety
    ///
    /// Only the owning thread (the thread whose ring this is) calls it: the entries' buffers
    /// have one writer, which `bin_buffer` reads without atomics.
    #[inline(always)]
    pub(crate) unsafe fn try_count(&self, series: u32, status: u16, start: u64, end: u64) -> bool {
        let [first, second] = Tally::slots_of(series);
        let k = key(series, status);
        let e = &self.entries[first];
        if e.key.load(Ordering::Relaxed) == k {
            return self.count_in(e, start, end);
        }
        self.try_second(&self.entries[second], k, start, end)
    }

    /// [`try_count`](Tally::try_count), then, with `log` and if it counted, [`log`](Tally::log).
    ///
    /// # Safety
    ///
    /// As [`try_count`](Tally::try_count).
    #[inline(always)]
    pub(crate) unsafe fn try_count_logged(
        &self,
        series: u32,
        status: u16,
        start: u64,
        end: u64,
        log: bool,
    ) -> bool {
        // SAFETY: the caller is the owning thread.
        unsafe {
            let counted = self.try_count(series, status, start, end);
            if counted && log {
                self.log(series, status, start, end);
            }
            counted
        }
    }

    #[inline(never)]
    fn try_second(&self, e: &Entry, k: u64, start: u64, end: u64) -> bool {
        e.key.load(Ordering::Relaxed) == k && self.count_in(e, start, end)
    }

    #[inline(always)]
    fn count_in(&self, e: &Entry, start: u64, end: u64) -> bool {
        let ticks = end.saturating_sub(start);
        let off = ticks.wrapping_sub(e.lo.load(Ordering::Relaxed));
        if end >= e.minute_end.load(Ordering::Relaxed) || off >= e.span.load(Ordering::Relaxed) {
            return false;
        }
        let n = e.w.pending.load(Ordering::Relaxed) as usize;
        if n >= BUF {
            return false;
        }
        if e.linear.load(Ordering::Relaxed) {
            // `off` is the bin (a linear entry's range is `base..base + BINS`, `lo == base`)
            e.w.buf8[n].store(off as u8, Ordering::Relaxed);
        } else {
            e.buf[n].store(ticks, Ordering::Relaxed);
        }
        let n = n as u32;
        e.w.pending.store(n + 1, Ordering::Release);
        if n + 1 == BUF as u32 {
            self.bin_buffer(e);
        }
        true
    }

    /// Owner only: moves the buffered durations into the bins (under the sequence number).
    #[inline(never)]
    fn bin_buffer(&self, e: &Entry) {
        let s = e.seq.load(Ordering::Relaxed);
        e.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        // orders the odd sequence number before the writes below, for a reader that sees any of
        // them (with the reader's acquire fence); no instruction on x86
        fence(Ordering::Release);
        let n = e.w.pending.load(Ordering::Relaxed) as usize;
        if e.linear.load(Ordering::Relaxed) {
            self.bin_linear(e, n);
        } else {
            self.bin_log(e, n);
        }
        let binned = e.binned.load(Ordering::Relaxed) + n as u64;
        e.binned.store(binned, Ordering::Relaxed);
        e.w.pending.store(0, Ordering::Relaxed);
        e.seq.store(s.wrapping_add(2), Ordering::Release);
        if binned >= u64::from(u32::MAX) - BUF as u64 {
            // no bin may overflow: the entry takes no more calls until it is claimed again
            e.minute_end.store(0, Ordering::Relaxed);
        }
    }

    /// A linear entry's buffer: each byte is a bin. Increments of one bin in a row would each
    /// wait for the one before (a store, then a load of the same address), and a buffer holds
    /// only a few distinct durations (this project's machine reads the TSC in steps of ~29
    /// ticks), so the buffer is counted by value, eight bytes at a time: for each distinct byte,
    /// the bytes equal to it are flagged and counted with a few word operations, and its bin is
    /// written once. Past [`DISTINCT_AT_ONCE`] distinct values the rest go one by one. A linear
    /// entry keeps no sum nor extremes: they follow from its bins.
    fn bin_linear(&self, e: &Entry, n: usize) {
        const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
        const ONES: u64 = 0x0101_0101_0101_0101;
        const WORDS: usize = BUF / 8;
        if n < BUF {
            // (never: the owner bins a full buffer) one by one
            for b in &e.w.buf8[..n] {
                let c = &e.bins[usize::from(b.load(Ordering::Relaxed))];
                c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            }
            return;
        }
        // SAFETY: `buf8` is `BUF` bytes (`AtomicU8` has `u8`'s layout), read unaligned as
        // `WORDS` words. Only this thread writes them, before this read; other threads only
        // read them, so nothing races.
        let words: [u64; WORDS] =
            unsafe { std::ptr::read_unaligned(e.w.buf8.as_ptr().cast::<[u64; WORDS]>()) };
        let words = words.map(u64::from_le);
        // byte i of `done[w]` is 0x80 once byte i of `words[w]` is counted (`!LOW7`: the
        // high bit of every byte)
        let mut done = [0u64; WORDS];
        for _ in 0..DISTINCT_AT_ONCE {
            let Some((w, left)) = done
                .iter()
                .enumerate()
                .map(|(w, d)| (w, !d & !LOW7))
                .find(|(_, left)| *left != 0)
            else {
                return;
            };
            let byte = (words[w] >> (left.trailing_zeros() & !7)) as u8;
            let pattern = u64::from(byte) * ONES;
            let mut count = 0;
            for (word, d) in words.iter().zip(done.iter_mut()) {
                let x = word ^ pattern;
                // 0x80 in each byte of `x` that is zero (exact, no borrow between bytes)
                let equal = !(((x & LOW7) + LOW7) | x | LOW7);
                count += (equal >> 7).wrapping_mul(ONES) >> 56;
                *d |= equal;
            }
            let c = &e.bins[usize::from(byte)];
            c.store(c.load(Ordering::Relaxed) + count as u32, Ordering::Relaxed);
        }
        // many distinct values: the rest one by one
        for (word, d) in words.iter().zip(done) {
            for i in 0..8 {
                if d >> (i * 8 + 7) & 1 == 0 {
                    let c = &e.bins[usize::from((word >> (i * 8)) as u8)];
                    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                }
            }
        }
    }

    /// An HDR entry's buffer (calls of a microsecond and more, where a few ns of binning do not
    /// show), with the sum and extremes in ns.
    fn bin_log(&self, e: &Entry, n: usize) {
        let q = self.ns_per_tick_q32;
        let (mut sum, mut min, mut max) = (
            e.sum.load(Ordering::Relaxed),
            e.min.load(Ordering::Relaxed),
            e.max.load(Ordering::Relaxed),
        );
        for v in &e.buf[..n] {
            let ticks = v.load(Ordering::Relaxed);
            let b = &e.bins[e.bin_of(ticks, q)];
            b.store(b.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            let ns = scale_ticks(0, ticks, q);
            sum = sum.wrapping_add(ns);
            min = min.min(ns);
            max = max.max(ns);
        }
        e.sum.store(sum, Ordering::Relaxed);
        e.min.store(min, Ordering::Relaxed);
        e.max.store(max, Ordering::Relaxed);
    }

    /// Writes a request counted by [`try_count`](Tally::try_count) into the recent log.
    ///
    /// # Safety
    ///
    /// As [`try_count`](Tally::try_count): the owning thread only (the log has one writer).
    #[inline(always)]
    pub(crate) unsafe fn log(&self, series: u32, status: u16, start: u64, end: u64) {
        let h = self.log_head.load(Ordering::Relaxed);
        // the last `log_head` store (publishing request `h`) before the stores that overwrite
        // request `h - LOG`, for a reader that sees any of them (with its acquire fence; see
        // `harvest_log`); no instruction on x86
        fence(Ordering::Release);
        let slot = &self.log[h as usize & (LOG - 1)];
        slot[0].store(
            u64::from(series) << 16 | u64::from(status),
            Ordering::Relaxed,
        );
        slot[1].store(end, Ordering::Relaxed);
        slot[2].store(end.saturating_sub(start), Ordering::Relaxed);
        self.log_head.store(h + 1, Ordering::Release);
    }

    /// The entry a call of (series, status) ending at `end` may claim: one of its two that is
    /// free or whose minute is over. An entry that already holds the pair for this minute (the
    /// call fell outside its bins) is claimed again, centred on the new value, once
    /// [`RECENTRE_AFTER`] calls have missed its bins (the first call of a series is often an
    /// outlier: a cold cache); until then the call goes to the ring. Owner only.
    ///
    /// # Safety
    ///
    /// As [`try_count`](Tally::try_count): the owning thread only (it counts the misses).
    pub(crate) unsafe fn claimable(&self, series: u32, status: u16, end: u64) -> Option<usize> {
        let k = key(series, status);
        let slots = Tally::slots_of(series);
        let current = |i: usize| end < self.entries[i].minute_end.load(Ordering::Relaxed);
        let holds = |i: usize| self.entries[i].key.load(Ordering::Relaxed) == k;
        if let Some(i) = slots.into_iter().find(|&i| holds(i) && current(i)) {
            let misses = &self.entries[i].misses;
            let n = misses.load(Ordering::Relaxed) + 1;
            misses.store(n, Ordering::Relaxed);
            return (n >= RECENTRE_AFTER).then_some(i);
        }
        // the pair's own expired entry first, so a pair never holds two
        slots.iter().copied().find(|&i| holds(i)).or_else(|| {
            slots
                .iter()
                .copied()
                .find(|&i| self.entries[i].key.load(Ordering::Relaxed) == FREE || !current(i))
        })
    }

    /// Owner only, holding the shard lock right after a [`harvest`](Tally::harvest): empties
    /// entry `slot` and gives it to (series, status) for Unix minute `minute` (whose first tick
    /// past it is `minute_end`), with its bins centred on a call of `ticks` ticks: linear if that
    /// is under [`LINEAR_TICKS`] (and a tick is at most 1 ns, so that the linear bins fall in at
    /// most [`BINS`] HDR bins), HDR bins of ns otherwise.
    ///
    /// # Safety
    ///
    /// The caller is the owning thread and holds the lock of the shard this tally's ring feeds.
    pub(crate) unsafe fn claim(
        &self,
        slot: usize,
        series: u32,
        status: u16,
        minute: u64,
        minute_end: u64,
        ticks: u64,
    ) {
        let e = &self.entries[slot];
        // SAFETY: we hold the shard lock (the caller's contract).
        let seen = unsafe { &mut *e.seen.get() };
        let s = e.seq.load(Ordering::Relaxed);
        debug_assert!(
            seen.seq == s && seen.pending == e.w.pending.load(Ordering::Relaxed),
            "harvest first"
        );
        // a reader takes the lock first, so none runs now; the sequence number changes all the
        // same, so that a harvest never mistakes the new minute for the old one
        e.w.pending.store(0, Ordering::Relaxed);
        e.binned.store(0, Ordering::Relaxed);
        e.sum.store(0, Ordering::Relaxed);
        e.min.store(u64::MAX, Ordering::Relaxed);
        e.max.store(0, Ordering::Relaxed);
        e.misses.store(0, Ordering::Relaxed);
        for b in &e.bins {
            b.store(0, Ordering::Relaxed);
        }
        let half = BINS as u64 / 2;
        let q = self.ns_per_tick_q32;
        let linear = ticks < LINEAR_TICKS && q <= 1 << 32;
        let (base, lo, hi) = if linear {
            let lo = ticks.saturating_sub(half);
            (lo, lo, lo + BINS as u64)
        } else {
            let centre = u64::from(index_of(scale_ticks(0, ticks, q)));
            let base = centre.saturating_sub(half);
            // the tick counts whose HDR bin is in `base..base + BINS`
            let first_at =
                |idx: u64| first_tick(|t| u64::from(index_of(scale_ticks(0, t, q))) >= idx);
            (base, first_at(base), first_at(base + BINS as u64))
        };
        e.linear.store(linear, Ordering::Relaxed);
        e.base.store(base as u32, Ordering::Relaxed);
        e.lo.store(lo, Ordering::Relaxed);
        e.span.store(hi - lo, Ordering::Relaxed);
        e.minute.store(minute, Ordering::Relaxed);
        e.minute_end.store(minute_end, Ordering::Relaxed);
        e.seq.store(s.wrapping_add(2), Ordering::Relaxed);
        e.key.store(key(series, status), Ordering::Release);
        *seen = Seen {
            seq: s.wrapping_add(2),
            pending: 0,
            sum: 0,
            bins: [0; BINS],
        };
        e.seen_seq.store(seen.seq, Ordering::Relaxed);
        e.seen_pending.store(0, Ordering::Relaxed);
    }

    /// Consumer side: hands what changed in each entry since the last harvest to `sink`.
    ///
    /// # Safety
    ///
    /// The caller holds the lock of the shard this tally's ring feeds.
    pub(crate) unsafe fn harvest(&self, mut sink: impl FnMut(&Bulk)) {
        let q = self.ns_per_tick_q32;
        for e in self.entries.iter() {
            let k = e.key.load(Ordering::Acquire);
            // SAFETY: we hold the shard lock (the caller's contract).
            let seen = unsafe { &mut *e.seen.get() };
            if k == FREE
                || (e.seq.load(Ordering::Acquire) == seen.seq
                    && e.w.pending.load(Ordering::Acquire) == seen.pending)
            {
                continue;
            }
            let now = read(e);
            // everything counted so far, per bin: the bins plus the buffered durations
            let mut total = now.bins;
            let (mut sum, mut min, mut max) = (now.sum, now.min, now.max);
            let linear = e.linear.load(Ordering::Relaxed);
            let base = e.base.load(Ordering::Relaxed);
            for i in 0..now.pending as usize {
                let ticks = if linear {
                    u64::from(base) + u64::from(now.buf8[i])
                } else {
                    now.buf[i]
                };
                total[e.bin_of(ticks, q)] += 1;
                let ns = scale_ticks(0, ticks, q);
                sum = sum.wrapping_add(ns);
                min = min.min(ns);
                max = max.max(ns);
            }
            let mut delta = [0u32; BINS];
            for ((d, t), s) in delta.iter_mut().zip(&total).zip(&seen.bins) {
                *d = t.wrapping_sub(*s);
            }
            let count: u64 = delta.iter().map(|&n| u64::from(n)).sum();
            let mut bulk = Bulk {
                series: (k >> 16) as u32,
                status: k as u16,
                minute: e.minute.load(Ordering::Relaxed),
                count,
                sum_ns: sum.wrapping_sub(seen.sum),
                min_ns: min,
                max_ns: max,
                base,
                bins: [0; BINS],
            };
            if linear {
                // a linear entry keeps no sum nor extremes: they follow from its bins
                self.linear_to_ns(base, &delta, &mut bulk);
                sum = seen.sum.wrapping_add(bulk.sum_ns);
            } else {
                bulk.bins = delta;
            }
            if count > 0 {
                sink(&bulk);
            }
            *seen = Seen {
                seq: now.seq,
                pending: now.pending,
                sum,
                bins: total,
            };
            e.seen_seq.store(now.seq, Ordering::Release);
            e.seen_pending.store(now.pending, Ordering::Release);
        }
    }

    /// Converts the counts of a linear entry (`delta[i]` calls of `base + i` ticks) into HDR
    /// bins of ns, with their sum and extremes: each tick count converts exactly as the
    /// aggregator converts a ring event's.
    fn linear_to_ns(&self, base: u32, delta: &[u32; BINS], bulk: &mut Bulk) {
        let ns_of = |i: usize| scale_ticks(0, u64::from(base) + i as u64, self.ns_per_tick_q32);
        bulk.base = index_of(ns_of(0));
        let (mut sum, mut min, mut max) = (0u64, u64::MAX, 0u64);
        for (i, &n) in delta.iter().enumerate().filter(|(_, n)| **n != 0) {
            let ns = ns_of(i);
            // within `BINS` of `bulk.base`: a tick is at most 1 ns, so `BINS` ticks span at
            // most `BINS` HDR bins
            let at = (index_of(ns) - bulk.base) as usize;
            bulk.bins[at.min(BINS - 1)] += n;
            sum = sum.wrapping_add(ns.wrapping_mul(u64::from(n)));
            min = min.min(ns);
            max = max.max(ns);
        }
        (bulk.sum_ns, bulk.min_ns, bulk.max_ns) = (sum, min, max);
    }

    /// Consumer side: hands the requests logged since the last call (at most the last
    /// `LOG - 1`: the slot the owner writes next may be half-written) to `log`, oldest first.
    ///
    /// # Safety
    ///
    /// As [`harvest`](Tally::harvest).
    pub(crate) unsafe fn harvest_log(&self, mut log: impl FnMut(Logged)) {
        // SAFETY: we hold the shard lock.
        let seen = unsafe { &mut *self.log_seen.get() };
        let head = self.log_head.load(Ordering::Acquire);
        let from = (*seen).max(head.saturating_sub(LOG as u64));
        // copied first (no allocation: a harvest may run on a recording thread)
        let mut got = [[0u64; 3]; LOG];
        for i in from..head {
            let slot = &self.log[i as usize & (LOG - 1)];
            got[i as usize & (LOG - 1)] = std::array::from_fn(|f| slot[f].load(Ordering::Relaxed));
        }
        fence(Ordering::Acquire);
        // the owner may have overwritten the oldest slots while we read them: request `i` is
        // intact if the owner has not started request `i + LOG` (it writes request `h` before
        // publishing `h + 1`)
        let after = self.log_head.load(Ordering::Relaxed);
        for i in from..head {
            if i + LOG as u64 > after {
                let [sk, end, ticks] = got[i as usize & (LOG - 1)];
                log((
                    (sk >> 16) as u32,
                    sk as u16,
                    end,
                    scale_ticks(0, ticks, self.ns_per_tick_q32),
                ));
            }
        }
        *seen = head;
    }

    /// Whether every call counted here has been harvested (for an abandoned ring).
    pub(crate) fn is_harvested(&self) -> bool {
        self.entries.iter().all(|e| {
            e.key.load(Ordering::Acquire) == FREE
                || (e.seq.load(Ordering::Acquire) == e.seen_seq.load(Ordering::Acquire)
                    && e.w.pending.load(Ordering::Acquire)
                        == e.seen_pending.load(Ordering::Acquire))
        })
    }
}

/// The least `t` for which `at_or_past(t)` holds (`at_or_past` is monotonic; `u64::MAX` if
/// none).
fn first_tick(at_or_past: impl Fn(u64) -> bool) -> u64 {
    let (mut lo, mut hi) = (0u64, u64::MAX);
    if !at_or_past(hi) {
        return u64::MAX;
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if at_or_past(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// An entry read under its sequence number.
struct Snapshot {
    seq: u64,
    pending: u32,
    sum: u64,
    min: u64,
    max: u64,
    bins: [u32; BINS],
    buf: [u64; BUF],
    buf8: [u8; BUF],
}

/// Reads an entry under its sequence number: its bins never half-way through the binning of
/// its buffer, and the buffer's published part.
fn read(e: &Entry) -> Snapshot {
    let mut spins = 0u32;
    loop {
        let s1 = e.seq.load(Ordering::Acquire);
        if s1 & 1 == 0 {
            let pending = e.w.pending.load(Ordering::Acquire).min(BUF as u32);
            let snap = Snapshot {
                seq: s1,
                pending,
                sum: e.sum.load(Ordering::Relaxed),
                min: e.min.load(Ordering::Relaxed),
                max: e.max.load(Ordering::Relaxed),
                bins: std::array::from_fn(|i| e.bins[i].load(Ordering::Relaxed)),
                buf: std::array::from_fn(|i| e.buf[i].load(Ordering::Relaxed)),
                buf8: std::array::from_fn(|i| e.w.buf8[i].load(Ordering::Relaxed)),
            };
            fence(Ordering::Acquire);
            // the owner overwrites the buffer only after binning it, which changes `seq`
            if e.seq.load(Ordering::Relaxed) == s1 {
                return snap;
            }
        }
        // the owner is binning its buffer (or was preempted doing so)
        spins += 1;
        if spins < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q32_ONE_NS: u64 = 1 << 32;

    // SAFETY (the three helpers): each test's tally has one writing thread, which calls these.
    fn count(t: &Tally, series: u32, status: u16, start: u64, end: u64) -> bool {
        unsafe { t.try_count(series, status, start, end) }
    }

    fn claimable(t: &Tally, series: u32, status: u16, end: u64) -> Option<usize> {
        unsafe { t.claimable(series, status, end) }
    }

    fn log(t: &Tally, series: u32, status: u16, start: u64, end: u64) {
        unsafe { t.log(series, status, start, end) }
    }

    /// A harvested bulk: (series, status, minute, count, sum, max, non-zero (HDR bin, count)).
    type Harvested = (u32, u16, u64, u64, u64, u64, Vec<(u32, u32)>);

    fn harvested(t: &Tally) -> Vec<Harvested> {
        let mut out = Vec::new();
        // SAFETY: the test is the only consumer.
        unsafe {
            t.harvest(|b| {
                let bins = b
                    .bins
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n != 0)
                    .map(|(i, n)| (b.base + i as u32, *n))
                    .collect();
                out.push((
                    b.series, b.status, b.minute, b.count, b.sum_ns, b.max_ns, bins,
                ));
            })
        };
        out
    }

    #[test]
    fn counts_only_what_its_entry_holds_and_harvests_deltas() {
        let t = Tally::new(Q32_ONE_NS);
        assert!(!count(&t, 3, 200, 0, 50), "no entry yet");
        let slot = claimable(&t, 3, 200, 50).unwrap();
        // SAFETY: single-threaded test: owner and consumer at once.
        unsafe { t.claim(slot, 3, 200, 7, 1_000, 50) };
        assert!(count(&t, 3, 200, 0, 50));
        assert!(count(&t, 3, 200, 10, 70));
        assert!(!count(&t, 3, 500, 0, 50), "another status");
        assert!(!count(&t, 4, 200, 0, 50), "another series");
        assert!(!count(&t, 3, 200, 0, 1_000), "the next minute");
        assert!(!count(&t, 3, 200, 500, 999), "outside the bins");
        let h = harvested(&t);
        assert_eq!(h, vec![(3, 200, 7, 2, 110, 60, vec![(50, 1), (60, 1)])]);
        assert!(harvested(&t).is_empty(), "nothing new");
        assert!(count(&t, 3, 200, 0, 60));
        assert_eq!(harvested(&t), vec![(3, 200, 7, 1, 60, 60, vec![(60, 1)])]);
        assert!(t.is_harvested());
        assert!(count(&t, 3, 200, 0, 61));
        assert!(!t.is_harvested());
    }

    /// Counts every duration exactly, whatever their mix: lanes shared by two bins, bin 0,
    /// runs and alternations, across many bufferings and harvests in between.
    #[test]
    fn every_duration_lands_in_its_bin() {
        let t = Tally::new(Q32_ONE_NS);
        // SAFETY: single-threaded test.
        unsafe { t.claim(0, 0, 0, 1, u64::MAX, 128) };
        let mut expected = std::collections::BTreeMap::new();
        let mut got = std::collections::BTreeMap::new();
        let mut x = 12345u64;
        for i in 0..10_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // bins 0..256: few distinct values some of the time, all of them at other times
            let ticks = match i / 1000 % 4 {
                0 => [0, 8, 16, 29][(x % 4) as usize],
                1 => 100 + x % 3,
                2 => x % 256,
                _ => [7, 15, 255, 0, 58][(x % 5) as usize],
            };
            assert!(count(&t, 0, 0, 1_000, 1_000 + ticks));
            *expected.entry(ticks).or_insert(0u64) += 1;
            if i % 777 == 0 {
                for (_, _, _, _, _, _, bins) in harvested(&t) {
                    for (b, n) in bins {
                        *got.entry(u64::from(b)).or_insert(0u64) += u64::from(n);
                    }
                }
            }
        }
        for (_, _, _, _, _, _, bins) in harvested(&t) {
            for (b, n) in bins {
                *got.entry(u64::from(b)).or_insert(0u64) += u64::from(n);
            }
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn a_long_call_gets_hdr_bins_of_ns() {
        // 2 ns per tick: 1,000,000 ticks are 2 ms
        let t = Tally::new(2 << 32);
        // SAFETY: single-threaded test.
        unsafe { t.claim(0, 0, 0, 1, u64::MAX, 1_000_000) };
        assert!(count(&t, 0, 0, 0, 1_000_000));
        assert!(count(&t, 0, 0, 7, 1_000_407));
        assert!(!count(&t, 0, 0, 0, 2_000_000), "outside the bins");
        let (a, b) = (index_of(2_000_000), index_of(2_000_800));
        let expected = if a == b {
            vec![(a, 2)]
        } else {
            vec![(a, 1), (b, 1)]
        };
        assert_eq!(
            harvested(&t),
            vec![(0, 0, 1, 2, 4_000_800, 2_000_800, expected)]
        );
        // a short call on a slow clock (2 ns per tick) gets HDR bins too: linear bins would
        // span more HDR bins than a bulk holds
        // SAFETY: as above.
        unsafe { t.claim(1, 1, 0, 1, u64::MAX, 10) };
        assert!(count(&t, 1, 0, 0, 10));
        assert_eq!(harvested(&t), vec![(1, 0, 1, 1, 20, 20, vec![(20, 1)])]);
    }

    #[test]
    fn a_thread_holds_what_the_docs_say() {
        let bytes =
            std::mem::size_of::<[Entry; SLOTS]>() + std::mem::size_of::<[[AtomicU64; 3]; LOG]>();
        assert!(bytes <= 44 * 1024, "{bytes} bytes");
    }

    #[test]
    fn a_series_has_a_second_slot() {
        let t = Tally::new(Q32_ONE_NS);
        let other = 3 + SLOTS as u32; // same first slot as series 3
                                      // SAFETY: single-threaded test.
        unsafe {
            t.claim(claimable(&t, 3, 0, 0).unwrap(), 3, 0, 1, 100, 10);
            let second = claimable(&t, other, 0, 0).unwrap();
            assert_eq!(second, 3 ^ (SLOTS / 2));
            t.claim(second, other, 0, 1, 100, 10);
        }
        assert!(count(&t, 3, 0, 0, 10));
        assert!(count(&t, other, 0, 0, 11));
        assert_eq!(
            claimable(&t, 3 + 2 * SLOTS as u32, 0, 0),
            None,
            "both taken"
        );
        assert_eq!(claimable(&t, 3, 0, 0), None, "held for this minute");
        for _ in 2..RECENTRE_AFTER {
            assert_eq!(claimable(&t, 3, 0, 0), None);
        }
        assert_eq!(
            claimable(&t, 3, 0, 0),
            Some(3),
            "centred again after enough misses"
        );
        assert_eq!(
            claimable(&t, 3, 0, 100),
            Some(3),
            "its own entry once the minute is over"
        );
        assert_eq!(harvested(&t).len(), 2);
    }

    #[test]
    fn the_log_keeps_the_newest_requests() {
        let t = Tally::new(Q32_ONE_NS);
        for i in 0..300u64 {
            log(&t, 1, 200, i, i + 5);
        }
        let mut got = Vec::new();
        // SAFETY: single-threaded test.
        unsafe { t.harvest_log(|l| got.push(l)) };
        // the oldest slot may be the one being overwritten next: not taken
        assert_eq!(got.len(), LOG - 1);
        assert_eq!(got.first(), Some(&(1, 200, 301 - LOG as u64 + 5, 5)));
        assert_eq!(got.last(), Some(&(1, 200, 304, 5)));
        log(&t, 2, 404, 0, 9);
        got.clear();
        // SAFETY: as above.
        unsafe { t.harvest_log(|l| got.push(l)) };
        assert_eq!(got, vec![(2, 404, 9, 9)]);
    }

    #[test]
    fn a_reader_never_sees_half_an_event() {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let t = Arc::new(Tally::new(Q32_ONE_NS));
        // SAFETY: set up before the threads start.
        unsafe { t.claim(0, 0, 0, 1, u64::MAX, 100) };
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (t, stop) = (t.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    assert!(count(&t, 0, 0, 0, 90 + n % 20));
                    n += 1;
                }
                n
            })
        };
        let (mut count, mut in_bins, mut sum) = (0u64, 0u64, 0u64);
        for _ in 0..2_000 {
            // SAFETY: the only consumer.
            unsafe {
                t.harvest(|b| {
                    let bins: u64 = b.bins.iter().map(|&n| u64::from(n)).sum();
                    // 1 ns per tick, HDR bins of 1 ns here: the sum follows from the bins, so
                    // a harvest that took half a binning would show
                    let from_bins: u64 = (b.base..)
                        .zip(b.bins.iter())
                        .map(|(v, &n)| u64::from(v) * u64::from(n))
                        .sum();
                    assert_eq!(
                        (bins, from_bins),
                        (b.count, b.sum_ns),
                        "every harvest agrees"
                    );
                    count += b.count;
                    in_bins += bins;
                    sum += b.sum_ns;
                })
            };
        }
        stop.store(true, Ordering::Relaxed);
        let n = writer.join().unwrap();
        // SAFETY: the writer has exited.
        unsafe {
            t.harvest(|b| {
                count += b.count;
                in_bins += b.bins.iter().map(|&n| u64::from(n)).sum::<u64>();
                sum += b.sum_ns;
            })
        };
        assert_eq!((count, in_bins), (n, n));
        let expected: u64 = (0..n).map(|i| 90 + i % 20).sum();
        assert_eq!(sum, expected);
    }
}
