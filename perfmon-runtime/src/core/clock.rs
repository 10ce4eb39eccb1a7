//! The clock: raw TSC ticks on the hot path (through `quanta`, which falls back to the OS
//! monotonic clock where the TSC is not invariant), converted to nanoseconds and to wall-clock
//! time only in the aggregator.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The calibrated clock, whether its raw ticks are the x86 TSC (then the hot path reads the TSC
/// inline instead of calling into `quanta`, which saves a call per read), and the tick-to-ns
/// factor as a 32.32 fixed-point multiplier taken from `quanta`'s own calibration (so the
/// aggregator converts with one inline multiplication).
struct Calibrated {
    clock: quanta::Clock,
    tsc: bool,
    ns_per_tick_q32: u64,
}

static CLOCK: OnceLock<Calibrated> = OnceLock::new();

const PROBE: u64 = 1 << 32;

fn init_clock() -> Calibrated {
    let clock = quanta::Clock::new();
    let tsc = raw_is_tsc(&clock);
    let ns_per_tick_q32 = clock.delta_as_nanos(0, PROBE).max(1);
    Calibrated {
        clock,
        tsc,
        ns_per_tick_q32,
    }
}

/// Whether `quanta` chose the TSC as its source: its raw reading then falls between two TSC
/// readings taken around it (a nanosecond count from the OS clock never does).
#[cfg(target_arch = "x86_64")]
fn raw_is_tsc(clock: &quanta::Clock) -> bool {
    (0..3).all(|_| {
        // SAFETY: `rdtsc` is available on every x86_64 processor.
        let before = unsafe { core::arch::x86_64::_rdtsc() };
        let raw = clock.raw();
        // SAFETY: as above.
        let after = unsafe { core::arch::x86_64::_rdtsc() };
        before <= raw && raw <= after
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn raw_is_tsc(_: &quanta::Clock) -> bool {
    false
}

#[inline(always)]
fn calibrated() -> &'static Calibrated {
    CLOCK.get_or_init(init_clock)
}

/// Set once the clock is calibrated and its raw ticks are the TSC: the hot path then tests this
/// one flag instead of the `OnceLock`'s state and the calibration's `tsc` field.
#[cfg(target_arch = "x86_64")]
static TSC_READY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Reads the raw tick counter: the TSC, inline, where `quanta` found it invariant; else
/// `quanta`'s own source. No syscall where the TSC is usable.
#[inline(always)]
pub(crate) fn now_ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    if TSC_READY.load(std::sync::atomic::Ordering::Relaxed) {
        // SAFETY: `rdtsc` is available on every x86_64 processor.
        return unsafe { core::arch::x86_64::_rdtsc() };
    }
    now_ticks_slow()
}

/// `now_ticks` before the flag is set (the first reads), or where the TSC is not used. Out of
/// line to keep the hot path small, but not `#[cold]`: where the TSC is not used, every read
/// comes here.
#[inline(never)]
fn now_ticks_slow() -> u64 {
    let c = calibrated();
    #[cfg(target_arch = "x86_64")]
    if c.tsc {
        TSC_READY.store(true, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: `rdtsc` is available on every x86_64 processor.
        return unsafe { core::arch::x86_64::_rdtsc() };
    }
    c.clock.raw()
}

/// The tick-to-ns factor, 32.32 fixed point.
pub(crate) fn ns_per_tick_q32() -> u64 {
    calibrated().ns_per_tick_q32
}

/// Nanoseconds between two tick readings (0 if `end` is not after `start`).
#[inline]
pub(crate) fn ticks_between_ns(start: u64, end: u64) -> u64 {
    scale_ticks(start, end, calibrated().ns_per_tick_q32)
}

#[inline(always)]
pub(crate) fn scale_ticks(start: u64, end: u64, ns_per_tick_q32: u64) -> u64 {
    let ticks = end.saturating_sub(start);
    let ns = (ticks as u128 * ns_per_tick_q32 as u128) >> 32;
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// Converts a threshold in nanoseconds into ticks, for comparisons on the hot path.
pub(crate) fn ns_to_ticks(ns: u64) -> u64 {
    if ns == u64::MAX {
        return u64::MAX;
    }
    let ticks = ((ns as u128) << 32) / calibrated().ns_per_tick_q32 as u128;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// Nanoseconds since the Unix epoch of a `SystemTime` (0 before the epoch).
pub(crate) fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `SystemTime` from nanoseconds since the Unix epoch.
pub(crate) fn system_time(unix_ns: u64) -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_nanos(unix_ns)
}

/// Pairs a tick reading with the wall clock, to turn tick stamps into wall-clock times.
/// Re-taken every minute by the aggregator so that drift between the two clocks stays small.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Anchor {
    tick: u64,
    unix_ns: u64,
    /// The calibration, copied so that the aggregator converts each event without going
    /// through the clock's `OnceLock`.
    ns_per_tick_q32: u64,
}

impl Anchor {
    pub(crate) fn now() -> Anchor {
        let tick = now_ticks();
        let unix_ns = unix_ns(SystemTime::now());
        Anchor {
            tick,
            unix_ns,
            ns_per_tick_q32: calibrated().ns_per_tick_q32,
        }
    }

    /// Nanoseconds between two tick readings, as [`ticks_between_ns`].
    #[inline(always)]
    pub(crate) fn between_ns(self, start: u64, end: u64) -> u64 {
        scale_ticks(start, end, self.ns_per_tick_q32)
    }

    /// Wall-clock nanoseconds of a tick stamp.
    #[inline(always)]
    pub(crate) fn to_unix_ns(self, tick: u64) -> u64 {
        if tick >= self.tick {
            self.unix_ns
                .saturating_add(self.between_ns(self.tick, tick))
        } else {
            self.unix_ns
                .saturating_sub(self.between_ns(tick, self.tick))
        }
    }

    pub(crate) fn unix_ns(self) -> u64 {
        self.unix_ns
    }

    /// The Unix minute of a tick stamp, and the first tick whose wall-clock time is past that
    /// minute (as [`to_unix_ns`](Anchor::to_unix_ns) converts, so a tick before it falls in
    /// the minute and a tick from it on does not).
    pub(crate) fn minute_span(self, tick: u64, ns_per_minute: u64) -> (u64, u64) {
        let minute = self.to_unix_ns(tick) / ns_per_minute;
        let boundary = (minute + 1).saturating_mul(ns_per_minute);
        if boundary <= self.unix_ns {
            // a minute that ended before the anchor (an event read just before `begin` re-took
            // the anchor at a minute's start): no tick past this one is in it
            return (minute, tick.saturating_add(1));
        }
        // the least `x` with `(x * q) >> 32 >= boundary - unix_ns`
        let need = u128::from(boundary - self.unix_ns) << 32;
        let q = u128::from(self.ns_per_tick_q32);
        let x = u64::try_from(need.div_ceil(q)).unwrap_or(u64::MAX);
        (
            minute,
            self.tick.saturating_add(x).max(tick.saturating_add(1)),
        )
    }
}

/// Formats a time as RFC 3339 UTC with millisecond precision, e.g. `2025-10-28T14:30:00.000Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let ns = unix_ns(t);
    let secs = ns / 1_000_000_000;
    let millis = (ns / 1_000_000) % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// (year, month, day) to days since 1970-01-01 in the proleptic Gregorian calendar
/// (H. Hinnant's algorithm).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn civil_dates_round_trip() {
        for z in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(days_from_civil(2026, 11, 26), 20_783);
    }

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2025-10-28T14:30:00Z, the seed's example
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_761_661_800)),
            "2025-10-28T14:30:00.000Z"
        );
        // a leap day
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(951_782_400_123)),
            "2000-02-29T00:00:00.123Z"
        );
    }

    #[test]
    fn conversion_matches_quanta() {
        let c = calibrated();
        for ticks in [0u64, 1, 1_000, 3_000_000, 1 << 40] {
            let ours = ticks_between_ns(0, ticks);
            let theirs = c.clock.delta_as_nanos(0, ticks);
            assert!(
                ours.abs_diff(theirs) <= 1 + theirs / 1_000_000,
                "{ticks}: {ours} vs {theirs}"
            );
        }
    }

    #[test]
    fn a_minute_span_ends_where_the_conversion_says() {
        let anchor = Anchor::now();
        for ahead in [0u64, 1, 999, 123_456_789, 59_000_000_000, 200_000_000_000] {
            let tick = anchor.tick + ns_to_ticks(ahead);
            let (minute, end) = anchor.minute_span(tick, 60_000_000_000);
            assert_eq!(anchor.to_unix_ns(tick) / 60_000_000_000, minute);
            assert!(end > tick);
            assert_eq!(anchor.to_unix_ns(end) / 60_000_000_000, minute + 1);
            assert_eq!(
                anchor.to_unix_ns(end - 1) / 60_000_000_000,
                minute,
                "{ahead}"
            );
        }
        // just before the anchor: the same end as the anchor's own tick, unless the anchor is a
        // minute's first tick
        let before = anchor.minute_span(anchor.tick - 1, 60_000_000_000);
        let at = anchor.minute_span(anchor.tick, 60_000_000_000);
        if before.0 == at.0 {
            assert_eq!(before.1, at.1);
        } else {
            assert_eq!(before.1, anchor.tick);
        }
    }

    #[test]
    fn ticks_convert_both_ways() {
        let t = ns_to_ticks(1_000_000_000);
        let back = ticks_between_ns(0, t);
        assert!(back.abs_diff(1_000_000_000) < 1_000, "{back}");
    }
}
