//! What the macro expansions call. Not a public API: names and signatures may change in any
//! release (the runtime pins the macro crate to the same version).

use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::aggregator::{CACHE_ERROR, FAILED};
use crate::clock::now_ticks;
use crate::registry::{lookup_or_register, method_index, Kind};
use crate::ring::{push, Event, FLAG_SLOW, FLAG_TICKS};
use crate::state::state;

pub use crate::status::probe as status;

/// Runs the body of a sync tracked fn; the `FnOnce` bound lets it return captured references.
#[inline(always)]
pub fn call_once<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Compile-time metadata of one tracked fn: a `static` in each expansion.
pub struct Meta {
    kind: Kind,
    method: &'static str,
    name: &'static str,
    table: &'static str,
    write: bool,
    path_explicit: bool,
    slow_ns: u64,
    /// Series id + 1; 0 until the first call registers the series.
    id: AtomicU32,
    slow_ticks: AtomicU64,
}

impl Meta {
    const fn new(
        kind: Kind,
        method: &'static str,
        name: &'static str,
        table: &'static str,
        write: bool,
        slow_ns: u64,
    ) -> Meta {
        Meta {
            kind,
            method,
            name,
            table,
            write,
            path_explicit: false,
            slow_ns,
            id: AtomicU32::new(0),
            slow_ticks: AtomicU64::new(u64::MAX),
        }
    }

    /// `#[track_api]`.
    pub const fn api(
        method: &'static str,
        route: &'static str,
        path_explicit: bool,
        slow_ns: u64,
    ) -> Meta {
        let mut m = Meta::new(Kind::Api, method, route, "", false, slow_ns);
        m.path_explicit = path_explicit;
        m
    }

    /// `#[track_query]`.
    pub const fn query(table: &'static str, op: &'static str, write: bool, slow_ns: u64) -> Meta {
        Meta::new(Kind::Query, "", op, table, write, slow_ns)
    }

    /// `#[track_batch]`.
    pub const fn batch(name: &'static str) -> Meta {
        Meta::new(Kind::Batch, "", name, "", false, u64::MAX)
    }

    /// `#[track_cache]`.
    pub const fn cache(key: &'static str) -> Meta {
        Meta::new(Kind::Cache, "", key, "", false, u64::MAX)
    }

    /// `#[measure]`.
    pub const fn measure(name: &'static str, threshold_ns: u64) -> Meta {
        Meta::new(Kind::Measure, "", name, "", false, threshold_ns)
    }

    /// Whether `track_api` was given an explicit `path`.
    pub fn path_explicit(&self) -> bool {
        self.path_explicit
    }

    #[cfg(feature = "axum")]
    pub(crate) fn route(&self) -> &'static str {
        self.name
    }

    #[cfg(feature = "axum")]
    pub(crate) fn method(&self) -> &'static str {
        self.method
    }

    #[cfg(feature = "axum")]
    pub(crate) fn slow_ns(&self) -> u64 {
        self.slow_ns
    }

    #[inline(always)]
    fn series(&'static self) -> u32 {
        match self.id.load(Ordering::Acquire) {
            0 => self.register(),
            id => id - 1,
        }
    }

    #[cold]
    #[inline(never)]
    fn register(&'static self) -> u32 {
        let reg = &state().registry;
        let id = match self.kind {
            Kind::Api => {
                let m = method_index(self.method);
                lookup_or_register(
                    reg,
                    |r| r.find_api(m, self.name),
                    |r| r.api(m, self.name, self.slow_ns),
                )
            }
            Kind::Query => lookup_or_register(
                reg,
                |r| r.find_query(self.table, self.name, self.write),
                |r| r.query(self.table, self.name, self.write, self.slow_ns),
            ),
            kind => lookup_or_register(
                reg,
                |r| r.find_simple(kind, self.name),
                |r| r.simple(kind, self.name, self.slow_ns),
            ),
        };
        // This call site's own threshold applies to its calls, even when the series is shared.
        self.slow_ticks
            .store(crate::clock::ns_to_ticks(self.slow_ns), Ordering::Relaxed);
        self.id.store(id + 1, Ordering::Release);
        id
    }

    #[cold]
    #[inline(never)]
    fn warn_slow(&self, start: u64, end: u64) {
        let took = std::time::Duration::from_nanos(crate::clock::ticks_between_ns(start, end));
        let threshold = std::time::Duration::from_nanos(self.slow_ns);
        match self.kind {
            Kind::Api => {
                tracing::warn!(target: "perfmon", method = self.method, route = self.name, ?took, ?threshold, "slow request")
            }
            Kind::Query => {
                tracing::warn!(target: "perfmon", table = self.table, op = self.name, ?took, ?threshold, "slow query")
            }
            _ => {
                tracing::warn!(target: "perfmon", name = self.name, ?took, ?threshold, "slow call")
            }
        }
    }

    fn abort_status(&self) -> u16 {
        match self.kind {
            Kind::Api if std::thread::panicking() => 500,
            // The future was dropped before completing (the client went away).
            Kind::Api => 499,
            Kind::Query | Kind::Batch => FAILED,
            Kind::Cache => CACHE_ERROR,
            _ => 0,
        }
    }
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
        let end = now_ticks();
        let this = ManuallyDrop::new(self);
        record(this.meta, this.start, end, status);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let end = now_ticks();
        record(self.meta, self.start, end, self.meta.abort_status());
    }
}

#[inline(always)]
fn record(meta: &'static Meta, start: u64, end: u64, status: u16) {
    // Inside `PerfmonLayer`, the layer records the request once, with this call site's metadata.
    #[cfg(feature = "axum")]
    if matches!(meta.kind, Kind::Api) && crate::http::layer::hand_over(meta) {
        return;
    }
    let series = meta.series();
    let mut flags = FLAG_TICKS;
    if end.saturating_sub(start) > meta.slow_ticks.load(Ordering::Relaxed) {
        flags |= FLAG_SLOW;
        meta.warn_slow(start, end);
    }
    push(Event {
        series,
        status,
        flags,
        a: start,
        b: end,
    });
}
