//! Reading statistics: `collector()` and its getters (the seed's `metricsCollector`), and local
//! collectors for tests and embedding.
//!
//! Every getter first drains the rings of the collector it reads, so it sees every call that
//! finished before it was made ("read your writes"), then answers from the in-memory window: the
//! current minute and the four before it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::core::kind::Kind;
use crate::pipeline::state::{self, State};
use crate::read::snapshot::Snapshot;
use crate::read::stats::{
    ApiStats, BatchStats, BusinessMetrics, CacheStats, DatabaseStats, FunctionStats, RecorderStats,
    RouteStats, SlowRequest, TimelinePoint,
};

/// A collector: a cheap handle to recorded statistics.
///
/// [`collector()`] returns the process-wide one (or, inside [`Collector::scope`], the local one
/// being recorded into). [`Collector::local`] makes a private one: run code under
/// [`Collector::scope`] and it records there, invisible to every other collector — so tests can
/// run in parallel and assert exact counts.
///
/// ```
/// use perfmon_runtime::{measure, Collector};
///
/// #[measure("parse")]
/// fn parse() {}
///
/// let local = Collector::local();
/// local.scope(|| parse());
/// assert_eq!(local.function_stats().functions["parse"].calls, 1);
/// ```
#[derive(Clone)]
pub struct Collector {
    pub(crate) state: Arc<State>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("global", &self.is_global())
            .finish_non_exhaustive()
    }
}

impl Default for Collector {
    /// The process-wide collector.
    fn default() -> Collector {
        Collector {
            state: state::global().clone(),
        }
    }
}

/// The collector this thread records into: the process-wide one, or inside
/// [`Collector::scope`] the local one. Works before and without [`init`](crate::init).
pub fn collector() -> Collector {
    match state::scoped() {
        Some(state) => Collector { state },
        None => Collector::default(),
    }
}

impl Collector {
    /// A new, empty collector of its own. Series labels (and their cardinality caps) are shared
    /// with the process; everything recorded is not.
    pub fn local() -> Collector {
        Collector {
            state: Arc::new(State::new()),
        }
    }

    /// Whether this is the process-wide collector.
    pub fn is_global(&self) -> bool {
        Arc::ptr_eq(&self.state, state::global())
    }

    /// Runs `f` with every event recorded on this thread — by the macros, by `record_*` and by
    /// `PerfmonLayer` — going to this collector, and [`collector()`] returning it. Other threads
    /// are not affected (events of threads `f` spawns go where those threads record). Nested
    /// scopes work; the previous target is restored when `f` returns or panics.
    pub fn scope<R>(&self, f: impl FnOnce() -> R) -> R {
        state::with_state(&self.state, f)
    }

    /// One snapshot of the in-memory window (the last 5 minutes of this instance), with the
    /// slow list, the last requests and the timeline: every figure from the same data.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::memory(&self.state.drained(), &Kind::ALL, true)
    }

    fn of(&self, kinds: &[Kind]) -> Snapshot {
        Snapshot::memory(&self.state.drained(), kinds, false)
    }

    /// API statistics over every route.
    pub fn api_stats(&self) -> ApiStats {
        self.of(&[Kind::Api]).api_stats()
    }

    /// API statistics of one route template (all methods), zero if it saw no request.
    pub fn api_stats_for(&self, path: &str) -> ApiStats {
        self.of(&[Kind::Api]).api_stats_for(path)
    }

    /// Statistics per route and method, busiest first.
    pub fn api_routes(&self) -> Vec<RouteStats> {
        self.of(&[Kind::Api]).api_routes()
    }

    /// Up to `n` (at most 50) requests over their slow threshold in the window, slowest first.
    pub fn slow_requests(&self, n: usize) -> Vec<SlowRequest> {
        let d = self.state.drained();
        d.slow_requests(n)
            .into_iter()
            .map(|(r, i)| crate::read::snapshot::to_request(r, i))
            .collect()
    }

    /// The last 100 requests, newest first.
    pub fn recent_requests(&self) -> Vec<SlowRequest> {
        let d = self.state.drained();
        d.recent_requests()
            .into_iter()
            .map(|(r, i)| crate::read::snapshot::to_request(r, i))
            .collect()
    }

    /// Cache hit, miss and error rates, overall and per key group.
    pub fn cache_stats(&self) -> CacheStats {
        self.of(&[Kind::Cache]).cache_stats()
    }

    /// Query statistics per table and operation, with totals (percentiles from merged
    /// histograms at every level).
    pub fn database_stats(&self) -> DatabaseStats {
        self.of(&[Kind::Query]).database_stats()
    }

    /// Batch runs per name: successes, failures, durations, last success and failure.
    pub fn batch_stats(&self) -> BatchStats {
        self.of(&[Kind::Batch]).batch_stats()
    }

    /// Business metrics: count and sum per name and per tag value.
    pub fn business_metrics(&self) -> BusinessMetrics {
        self.of(&[Kind::Business, Kind::BusinessTag])
            .business_metrics()
    }

    /// `#[measure]` statistics per name.
    pub fn function_stats(&self) -> FunctionStats {
        self.of(&[Kind::Measure]).function_stats()
    }

    /// The window minute by minute, oldest first: API volume, mean, p95, p99 and error rate, and
    /// the cache hit rate, for trend charts. Minutes without any event are included (zeros).
    pub fn timeline(&self) -> Vec<TimelinePoint> {
        Snapshot::memory(&self.state.drained(), &[], true).timeline()
    }

    /// The recorder's own counters: events processed, late events, inline drains, memory, and
    /// the retention tiers' counters.
    pub fn recorder_stats(&self) -> RecorderStats {
        recorder_stats(&self.state.drained())
    }
}

/// The recorder's counters from one drained view (the tier counters are the process').
pub(crate) fn recorder_stats(d: &crate::pipeline::state::Drained<'_>) -> RecorderStats {
    let tiers = &state::global().outbox.tiers;
    let (series, label_bytes) = {
        let r = crate::pipeline::registry::read();
        (r.len() as u64, r.label_bytes() as u64)
    };
    RecorderStats {
        events_processed: d.processed(),
        late_events: d.late(),
        inline_drains: d.inline_drains(),
        series,
        threads: d.rings() as u64,
        memory_bytes: d.heap_bytes() as u64 + label_bytes,
        tier_flushes: tiers.flushes.load(Ordering::Relaxed),
        tier_failures: tiers.failures.load(Ordering::Relaxed),
        tier_redis_writes: tiers.redis_writes.load(Ordering::Relaxed),
        tier_postgres_writes: tiers.postgres_writes.load(Ordering::Relaxed),
        tier_pending: tiers.pending.load(Ordering::Relaxed),
        tier_dropped: tiers.dropped.load(Ordering::Relaxed),
        tier_encode_failures: tiers.encode_failures.load(Ordering::Relaxed),
        tier_set_aside: tiers.set_aside.load(Ordering::Relaxed),
    }
}

impl Collector {
    /// The SLA report over the in-memory window (the last 5 minutes of this instance).
    pub fn sla_report(&self) -> crate::read::sla::SlaReport {
        self.of(&[Kind::Api, Kind::Cache, Kind::Query]).sla_report()
    }
}
