//! What the macro expansions call, re-exported as `perfmon_runtime::__private`. Not a public
//! API: names and signatures may change in any release (the runtime pins the macro crate to the
//! same version).

use std::mem::ManuallyDrop;
use std::sync::atomic::Ordering;

use crate::core::clock::now_ticks;
use crate::core::kind::Kind;
use crate::pipeline::event::{Event, FLAG_SLOW, FLAG_TICKS};
use crate::pipeline::state::{count_call, push_in_trace};

pub use crate::core::status::probe as status;
pub use crate::pipeline::meta::Meta;

/// Runs the body of a sync tracked fn; the `FnOnce` bound lets it return captured references.
#[inline(always)]
pub fn call_once<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Times one call. Finished with the outcome by [`Guard::finish`]; dropped without finishing (a
/// panic unwinding, a future dropped mid-way) it records a failure.
pub struct Guard {
    meta: &'static Meta,
    start: u64,
}

impl Guard {
    /// Reads the clock.
    #[inline(always)]
    pub fn start(meta: &'static Meta) -> Guard {
        Guard {
            meta,
            start: now_ticks(),
        }
    }

    /// Reads the clock again and records the call with its status or outcome.
    #[inline(always)]
    pub fn finish(self, status: u16) {
        let kind = self.meta.kind;
        self.finish_as(kind, status);
    }

    /// [`Guard::finish`] for `#[track_api]`, with the status: the kind written here, not read
    /// from the metadata, folds the checks on it away.
    #[inline(always)]
    pub fn finish_api(self, status: u16) {
        self.finish_as(Kind::Api, status);
    }

    /// [`Guard::finish`] for `#[track_query]`, with the outcome.
    #[inline(always)]
    pub fn finish_query(self, outcome: u16) {
        self.finish_as(Kind::Query, outcome);
    }

    /// [`Guard::finish`] for `#[measure]`.
    #[inline(always)]
    pub fn finish_measure(self) {
        self.finish_as(Kind::Measure, 0);
    }

    #[inline(always)]
    fn finish_as(self, kind: Kind, status: u16) {
        debug_assert_eq!(kind, self.meta.kind);
        let end = now_ticks();
        let this = ManuallyDrop::new(self);
        record(this.meta, kind, this.start, end, status);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let end = now_ticks();
        record(
            self.meta,
            self.meta.kind,
            self.start,
            end,
            self.meta.abort_status(),
        );
    }
}

/// Records a call of `meta`'s site (`kind` is `meta.kind`, passed apart so that a constant one
/// folds the branches on it).
#[inline(always)]
fn record(meta: &'static Meta, kind: Kind, start: u64, end: u64, status: u16) {
    // Inside `PerfmonLayer`, the layer records the request once, with this call site's metadata.
    #[cfg(feature = "axum")]
    if matches!(kind, Kind::Api) && crate::pipeline::handoff::hand_over(meta) {
        return;
    }
    let series = meta.series();
    let mut flags = FLAG_TICKS;
    let slow = end.saturating_sub(start) > meta.slow_ticks.load(Ordering::Relaxed);
    if slow {
        flags |= FLAG_SLOW;
        meta.warn_slow(series, start, end);
    }
    // slow calls (the slow list) and batches, cache lookups (last runs, no duration) go
    // through the ring; the rest is counted in the thread's tally where it can be
    let fast = !slow && matches!(kind, Kind::Api | Kind::Query | Kind::Measure);
    if !(fast && count_call(series, status, start, end, kind == Kind::Api)) {
        push_in_trace(Event {
            series,
            status,
            flags,
            a: start,
            b: end,
        });
    }
}
