//! Quiet logs under trouble: at most one "slow …" warning per series per interval (10 s by
//! default, `ConfigBuilder::slow_log_interval`), each saying how many slow calls of the series it
//! did not log since the previous one. A database gone slow makes every call slow; the log gets
//! one line per series per interval instead of one per call.
//!
//! Only slow calls come here (the hot path's threshold check is unchanged), and they already
//! took longer than their threshold, so one lock per slow call costs nothing they would notice.
//! The table holds a gate per series that was ever slow: bounded by the series caps.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// The default interval between two warnings of one series.
pub(crate) const DEFAULT_INTERVAL_NS: u64 = 10_000_000_000;

static INTERVAL_NS: AtomicU64 = AtomicU64::new(DEFAULT_INTERVAL_NS);

/// Sets the interval (0: log every slow call).
pub(crate) fn set_interval_ns(ns: u64) {
    INTERVAL_NS.store(ns, Ordering::Relaxed);
}

#[derive(Clone, Copy)]
struct Gate {
    /// When the last warning was logged (ns since the table's start).
    last_ns: u64,
    /// Slow calls not logged since.
    suppressed: u64,
}

struct Table {
    start: Instant,
    gates: Mutex<HashMap<u32, Gate>>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| Table {
        start: Instant::now(),
        gates: Mutex::new(HashMap::new()),
    })
}

/// A slow call of `series` now: `Some(n)` if it is to be logged, `n` being the slow calls of the
/// series not logged since the last warning; `None` to stay quiet (and count it).
pub(crate) fn admit(series: u32) -> Option<u64> {
    let t = table();
    let now = u64::try_from(t.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let mut gates = t.gates.lock().unwrap_or_else(|e| e.into_inner());
    admit_at(&mut gates, series, now, INTERVAL_NS.load(Ordering::Relaxed))
}

/// The words a warning adds for the `n` slow calls it stands for besides its own.
pub(crate) fn more(n: u64) -> String {
    match n {
        0 => String::new(),
        1 => " (and 1 more since the last warning)".into(),
        n => format!(" (and {n} more since the last warning)"),
    }
}

fn admit_at(
    gates: &mut HashMap<u32, Gate>,
    series: u32,
    now_ns: u64,
    interval_ns: u64,
) -> Option<u64> {
    match gates.get_mut(&series) {
        None => {
            gates.insert(
                series,
                Gate {
                    last_ns: now_ns,
                    suppressed: 0,
                },
            );
            Some(0)
        }
        Some(g) if now_ns.saturating_sub(g.last_ns) >= interval_ns => {
            let n = g.suppressed;
            *g = Gate {
                last_ns: now_ns,
                suppressed: 0,
            };
            Some(n)
        }
        Some(g) => {
            g.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_series_per_interval_with_the_count_of_the_quiet_ones() {
        let mut g = HashMap::new();
        let s = 10_000_000_000;
        assert_eq!(admit_at(&mut g, 1, 0, s), Some(0), "the first is logged");
        for t in 1..=999 {
            assert_eq!(admit_at(&mut g, 1, t * 1_000_000, s), None);
        }
        assert_eq!(
            admit_at(&mut g, 2, 5, s),
            Some(0),
            "another series has its own gate"
        );
        assert_eq!(admit_at(&mut g, 1, s - 1, s), None);
        assert_eq!(admit_at(&mut g, 1, s, s), Some(1000), "999 + 1 kept quiet");
        assert_eq!(admit_at(&mut g, 1, s + 1, s), None);
        assert_eq!(admit_at(&mut g, 1, 3 * s, s), Some(1));
        // interval 0: every slow call is logged
        assert_eq!(admit_at(&mut g, 3, 7, 0), Some(0));
        assert_eq!(admit_at(&mut g, 3, 7, 0), Some(0));
    }
}
