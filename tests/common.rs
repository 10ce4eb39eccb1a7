//! Shared helpers of the integration tests.

use std::time::Duration;

/// A small deterministic generator (xorshift64*), so every run sees the same inputs.
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A duration spread log-uniformly between `lo` and `hi`.
    pub fn log_uniform(&mut self, lo: Duration, hi: Duration) -> Duration {
        let (lo, hi) = ((lo.as_nanos() as f64).ln(), (hi.as_nanos() as f64).ln());
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        Duration::from_nanos((lo + u * (hi - lo)).exp() as u64)
    }
}

/// The exact value at quantile `q` of `sorted` (the smallest value with at least `q` of the
/// values at or below it), the definition HdrHistogram approximates.
pub fn exact_quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

/// Asserts that `reported` is the exact value's HDR bin: never below it, and above it by less
/// than one part in 1,024 (3 significant digits).
pub fn assert_within_hdr(what: &str, reported: Duration, exact: Duration) {
    let (r, e) = (reported.as_nanos(), exact.as_nanos());
    assert!(
        r >= e && r - e <= e / 1024,
        "{what}: reported {reported:?}, exact {exact:?}"
    );
}
