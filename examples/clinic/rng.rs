//! A deterministic xorshift generator: the data layer's latencies and the traffic mix come from
//! fixed seeds, so every run drives the same traffic.

use std::time::Duration;

/// A deterministic generator, so every run drives the same traffic mix.
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator starting from `seed` (not 0: xorshift would stay at 0).
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A duration from `lo` to `hi` milliseconds, both included.
    pub(crate) fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}
