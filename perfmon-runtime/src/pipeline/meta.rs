//! The compile-time metadata of one tracked fn — a `static` in each macro expansion — and the
//! registration of its series on its first call.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::core::kind::{method_index, Kind, CACHE_ERROR, FAILED};
use crate::pipeline::registry::lookup_or_register;

/// Compile-time metadata of one tracked fn: a `static` in each expansion.
pub struct Meta {
    pub(crate) kind: Kind,
    method: &'static str,
    name: &'static str,
    table: &'static str,
    write: bool,
    path_explicit: bool,
    slow_ns: u64,
    /// Series id + 1; 0 until the first call registers the series.
    id: AtomicU32,
    /// The slow threshold in clock ticks, once registered.
    pub(crate) slow_ticks: AtomicU64,
    /// `#[track_api(apdex = "…")]`: the route's Apdex threshold in ns (0: the configured one).
    apdex_ns: u64,
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
            apdex_ns: 0,
        }
    }

    /// The route's Apdex threshold T, in ns (0: the configured one).
    pub const fn with_apdex(mut self, apdex_ns: u64) -> Meta {
        self.apdex_ns = apdex_ns;
        self
    }

    /// The call site's Apdex threshold in ns (0: the configured one).
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn apdex_ns(&self) -> u64 {
        self.apdex_ns
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

    /// The route (`path`, else the fn's path).
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn route(&self) -> &'static str {
        self.name
    }

    /// The method (`ANY` unless given).
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn method(&self) -> &'static str {
        self.method
    }

    /// The slow threshold, ns.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn slow_ns(&self) -> u64 {
        self.slow_ns
    }

    /// This call site's series, registered on the first call.
    #[inline(always)]
    pub(crate) fn series(&'static self) -> u32 {
        match self.id.load(Ordering::Acquire) {
            0 => self.register(),
            id => id - 1,
        }
    }

    #[cold]
    #[inline(never)]
    fn register(&'static self) -> u32 {
        let id = match self.kind {
            Kind::Api => {
                if self.apdex_ns != 0 {
                    crate::pipeline::apdex::set_code(self.name, self.apdex_ns);
                }
                let m = method_index(self.method);
                lookup_or_register(
                    |r| r.find_api(m, self.name),
                    |r, _| r.api(m, self.name, self.slow_ns),
                )
            }
            Kind::Query => lookup_or_register(
                |r| r.find_query(self.table, self.name, self.write),
                |r, _| r.query(self.table, self.name, self.write, self.slow_ns),
            ),
            kind => lookup_or_register(
                |r| r.find_simple(kind, self.name),
                |r, _| r.simple(kind, self.name, self.slow_ns),
            ),
        };
        // This call site's own threshold applies to its calls, even when the series is shared.
        self.slow_ticks.store(
            crate::core::clock::ns_to_ticks(self.slow_ns),
            Ordering::Relaxed,
        );
        self.id.store(id + 1, Ordering::Release);
        id
    }

    /// Logs a call over the threshold: at most one warning per series per interval
    /// (`slowlog`), with the count of those not logged since.
    #[cold]
    #[inline(never)]
    pub(crate) fn warn_slow(&self, series: u32, start: u64, end: u64) {
        let Some(n) = crate::pipeline::slowlog::admit(series) else {
            return;
        };
        let more = crate::pipeline::slowlog::more(n);
        let took =
            std::time::Duration::from_nanos(crate::core::clock::ticks_between_ns(start, end));
        let threshold = std::time::Duration::from_nanos(self.slow_ns);
        match self.kind {
            Kind::Api => {
                tracing::warn!(target: "perfmon", method = self.method, route = self.name, ?took, ?threshold, suppressed = n, "slow request{more}")
            }
            Kind::Query => {
                tracing::warn!(target: "perfmon", table = self.table, op = self.name, ?took, ?threshold, suppressed = n, "slow query{more}")
            }
            _ => {
                tracing::warn!(target: "perfmon", name = self.name, ?took, ?threshold, suppressed = n, "slow call{more}")
            }
        }
    }

    /// The status of a call that did not complete: a panic, or a future dropped mid-way.
    pub(crate) fn abort_status(&self) -> u16 {
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
