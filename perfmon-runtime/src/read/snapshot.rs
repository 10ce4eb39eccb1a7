//! One read: a [`Snapshot`] of a window, taken under one drain of the shards (or one load from a
//! tier), from which every statistic is derived — so a page that shows API, database, cache,
//! batch and business figures reads the data once.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::core::clock::system_time;
use crate::core::hist::Merged;
use crate::core::kind::{Kind, CACHE_ERROR, FAILED, HIT, MISS, OK};
use crate::core::trace::TraceId;
use crate::core::window::{Scope, Window, NS_PER_MINUTE, SLOW_LIST_SIZE};
use crate::pipeline::aggregator::{RawRequest, View};
use crate::pipeline::apdex;
use crate::pipeline::registry::SeriesInfo;
use crate::pipeline::state::Drained;
use crate::read::sla::{self, SlaReport};
use crate::read::stats::ApdexCounts;
use crate::read::stats::{
    percent, ApiStats, BatchJobStats, BatchStats, BusinessMetricStats, BusinessMetrics,
    CacheKeyStats, CacheStats, DatabaseStats, FnStats, FunctionStats, QueryStats, RouteStats,
    SlowRequest, TableStats, TimelinePoint,
};

/// Every series of a window with its merged histogram and counters, read at one moment: the
/// getters of [`Collector`](crate::Collector) and [`Query`](crate::Query) derive their answers
/// from one of these, and [`Collector::snapshot`](crate::Collector::snapshot) /
/// [`Query::snapshot`](crate::Query::snapshot) hand it out, for callers that want several
/// figures from the same data.
///
/// The in-memory window also carries the slow list, the last 100 requests and the
/// minute-by-minute timeline; windows read from a tier carry empty lists.
#[derive(Clone)]
pub struct Snapshot {
    window: Window,
    scope: Scope,
    series: Vec<View>,
    slow: Vec<SlowRequest>,
    recent: Vec<SlowRequest>,
    timeline: Vec<TimelinePoint>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("window", &self.window)
            .field("scope", &self.scope)
            .field("series", &self.series.len())
            .finish_non_exhaustive()
    }
}

pub(crate) fn to_request(r: RawRequest, info: &SeriesInfo) -> SlowRequest {
    SlowRequest {
        method: info.method.to_string(),
        path: info.name.to_string(),
        status_code: r.status,
        duration: Duration::from_nanos(r.dur_ns),
        timestamp: system_time(r.unix_ns),
        trace_id: TraceId::from_raw(r.trace),
    }
}

impl Snapshot {
    /// The in-memory window of `kinds`; with `lists`, also the slow list, the last requests and
    /// the timeline.
    pub(crate) fn memory(d: &Drained<'_>, kinds: &[Kind], lists: bool) -> Snapshot {
        let mut s = Snapshot::from_views(Window::Minutes5, Scope::Instance, d.views(kinds));
        if lists {
            s.slow = d
                .slow_requests(SLOW_LIST_SIZE)
                .into_iter()
                .map(|(r, i)| to_request(r, i))
                .collect();
            s.recent = d
                .recent_requests()
                .into_iter()
                .map(|(r, i)| to_request(r, i))
                .collect();
            s.timeline = timeline(d);
        }
        s
    }

    /// A window read from a tier.
    pub(crate) fn from_views(window: Window, scope: Scope, series: Vec<View>) -> Snapshot {
        Snapshot {
            window,
            scope,
            series,
            slow: Vec::new(),
            recent: Vec::new(),
            timeline: Vec::new(),
        }
    }

    /// Keeps the series `keep` wants (the slow list, last requests and timeline stay whole).
    pub(crate) fn retain_series(&mut self, keep: impl Fn(&SeriesInfo) -> bool) {
        self.series.retain(|v| keep(&v.info));
    }

    fn of(&self, kinds: &[Kind]) -> Vec<&View> {
        self.series
            .iter()
            .filter(|v| kinds.contains(&v.info.kind))
            .collect()
    }

    /// The window.
    pub fn window(&self) -> Window {
        self.window
    }

    /// The scope.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// API statistics over every route.
    pub fn api_stats(&self) -> ApiStats {
        api_stats_of(&self.of(&[Kind::Api]))
    }

    /// API statistics of one route template (all methods), zero if it saw no request.
    pub fn api_stats_for(&self, path: &str) -> ApiStats {
        let mut views = self.of(&[Kind::Api]);
        views.retain(|v| &*v.info.name == path);
        api_stats_of(&views)
    }

    /// The merged histogram of one route template (all methods) over the window.
    pub(crate) fn api_histogram_for(&self, path: &str) -> Merged {
        let mut views = self.of(&[Kind::Api]);
        views.retain(|v| &*v.info.name == path);
        merged(views.into_iter())
    }

    /// Statistics per route and method, busiest first.
    pub fn api_routes(&self) -> Vec<RouteStats> {
        let mut out: Vec<RouteStats> = self
            .of(&[Kind::Api])
            .into_iter()
            .map(|v| RouteStats {
                method: v.info.method.to_string(),
                path: v.info.name.to_string(),
                stats: api_stats_of(&[v]),
            })
            .collect();
        out.sort_by(|a, b| {
            b.stats
                .total_requests
                .cmp(&a.stats.total_requests)
                .then_with(|| a.path.cmp(&b.path))
        });
        out
    }

    /// Up to `n` (at most 50) requests over their slow threshold, slowest first (in-memory
    /// window only).
    pub fn slow_requests(&self, n: usize) -> Vec<SlowRequest> {
        self.slow.iter().take(n).cloned().collect()
    }

    /// The last 100 requests, newest first (in-memory window only).
    pub fn recent_requests(&self) -> Vec<SlowRequest> {
        self.recent.clone()
    }

    /// The window minute by minute, oldest first (in-memory window only).
    pub fn timeline(&self) -> Vec<TimelinePoint> {
        self.timeline.clone()
    }

    /// Cache hit, miss and error rates, overall and per key group.
    pub fn cache_stats(&self) -> CacheStats {
        let mut keys = BTreeMap::new();
        let (mut h, mut m, mut e) = (0, 0, 0);
        for v in self.of(&[Kind::Cache]) {
            let [hits, misses, errors] =
                [HIT, MISS, CACHE_ERROR].map(|i| v.outcomes[usize::from(i)]);
            h += hits;
            m += misses;
            e += errors;
            keys.insert(
                v.info.name.to_string(),
                CacheKeyStats::from_counts(hits, misses, errors),
            );
        }
        let all = CacheKeyStats::from_counts(h, m, e);
        CacheStats {
            hit_rate: all.hit_rate,
            miss_rate: all.miss_rate,
            error_rate: all.error_rate,
            total_operations: all.total_operations,
            keys,
        }
    }

    /// Query statistics per table and operation, with totals (percentiles from merged
    /// histograms at every level).
    pub fn database_stats(&self) -> DatabaseStats {
        let views = self.of(&[Kind::Query]);
        let mut by_table: BTreeMap<&str, BTreeMap<&str, Vec<&View>>> = BTreeMap::new();
        for v in &views {
            by_table
                .entry(&v.info.table)
                .or_default()
                .entry(&v.info.name)
                .or_default()
                .push(v);
        }
        let mut tables = BTreeMap::new();
        for (table, ops) in by_table {
            let all: Vec<&View> = ops.values().flatten().copied().collect();
            let operations = ops
                .iter()
                .map(|(op, vs)| (op.to_string(), query_stats_of(vs)))
                .collect();
            tables.insert(
                table.to_string(),
                TableStats {
                    totals: query_stats_of(&all),
                    operations,
                },
            );
        }
        let totals = query_stats_of(&views);
        DatabaseStats {
            total_queries: totals.reads + totals.writes,
            totals,
            tables,
        }
    }

    /// Batch runs per name: successes, failures, durations, last success and failure.
    pub fn batch_stats(&self) -> BatchStats {
        let batches = self
            .of(&[Kind::Batch])
            .into_iter()
            .map(|v| {
                let (ok, failed) = (v.outcomes[usize::from(OK)], v.outcomes[usize::from(FAILED)]);
                let stats = BatchJobStats {
                    runs: ok + failed,
                    successes: ok,
                    failures: failed,
                    success_rate: percent(ok, ok + failed),
                    avg_duration: v.hist.mean(),
                    p95_duration: v.hist.quantile(0.95),
                    max_duration: v.hist.max(),
                    last_success: v.last_success_ns.map(system_time),
                    last_failure: v.last_failure_ns.map(system_time),
                    last_failure_trace_id: TraceId::from_raw(v.last_failure_trace),
                };
                (v.info.name.to_string(), stats)
            })
            .collect();
        BatchStats { batches }
    }

    /// Business metrics: count and sum per name and per tag value.
    pub fn business_metrics(&self) -> BusinessMetrics {
        let mut metrics: BTreeMap<String, BusinessMetricStats> = BTreeMap::new();
        for v in self.of(&[Kind::Business, Kind::BusinessTag]) {
            let entry = metrics.entry(v.info.name.to_string()).or_default();
            if v.info.kind == Kind::Business {
                entry.count += v.events;
                entry.sum += v.value_sum;
            } else {
                let values = entry.tags.entry(v.info.table.to_string()).or_default();
                let s = values.entry(v.info.tag_value.to_string()).or_default();
                s.count += v.events;
                s.sum += v.value_sum;
            }
        }
        BusinessMetrics { metrics }
    }

    /// `#[measure]` statistics per name.
    pub fn function_stats(&self) -> FunctionStats {
        let functions = self
            .of(&[Kind::Measure])
            .into_iter()
            .map(|v| {
                let h = &v.hist;
                let stats = FnStats {
                    calls: h.count(),
                    avg_duration: h.mean(),
                    p50_duration: h.quantile(0.50),
                    p95_duration: h.quantile(0.95),
                    p99_duration: h.quantile(0.99),
                    max_duration: h.max(),
                    slow_calls: v.slow,
                    threshold: (v.info.slow_ns != u64::MAX)
                        .then(|| Duration::from_nanos(v.info.slow_ns)),
                };
                (v.info.name.to_string(), stats)
            })
            .collect();
        FunctionStats { functions }
    }

    /// The SLA report over this window, against the targets in force.
    pub fn sla_report(&self) -> SlaReport {
        sla::report(
            &self.api_stats(),
            &self.cache_stats(),
            &self.database_stats(),
            self.window.as_str(),
            self.scope.as_str(),
        )
    }
}

fn merged<'a>(views: impl Iterator<Item = &'a View>) -> Merged {
    let mut m = Merged::default();
    for v in views {
        m.add(&v.hist);
    }
    m
}

fn api_stats_of(views: &[&View]) -> ApiStats {
    let mut statuses = BTreeMap::new();
    // one route: its T; several (or none): the configured default, each counted with its own
    let mut apdex = ApdexCounts {
        threshold_ns: apdex::default_ns(),
        ..ApdexCounts::default()
    };
    let mut routes = views.iter().map(|v| &*v.info.name);
    if let (Some(first), true) = (
        routes.next(),
        routes.all(|r| r == views[0].info.name.as_ref()),
    ) {
        apdex.threshold_ns = apdex::threshold_ns(first);
    }
    for v in views {
        for &(code, n) in &v.statuses {
            *statuses.entry(code).or_insert(0) += n;
        }
        apdex.add(ApdexCounts::of(&v.hist, apdex::threshold_ns(&v.info.name)));
    }
    ApiStats::from_parts(&merged(views.iter().copied()), &statuses, apdex)
}

fn query_stats_of(views: &[&View]) -> QueryStats {
    let h = merged(views.iter().copied());
    let (mut reads, mut writes, mut errors, mut slow) = (0, 0, 0, 0);
    for v in views {
        let n = v.outcomes[usize::from(OK)] + v.outcomes[usize::from(FAILED)];
        if v.info.write {
            writes += n;
        } else {
            reads += n;
        }
        errors += v.outcomes[usize::from(FAILED)];
        slow += v.slow;
    }
    QueryStats::from_parts(&h, reads, writes, errors, slow)
}

/// One route's minutes of the in-memory window (its requests, percentiles and error rate; no
/// cache figures).
pub(crate) fn route_trend(state: &crate::pipeline::state::State, path: &str) -> Vec<TimelinePoint> {
    let d = state.drained();
    timeline_of(&d, Some(path))
}

/// A trend point: a slice starting at `start_secs` (Unix seconds) of one route's view.
pub(crate) fn trend_point(start_secs: u64, v: &View) -> TimelinePoint {
    point(
        start_secs.saturating_mul(1_000_000_000),
        &api_stats_of(&[v]),
        0,
        0,
    )
}

/// A point from its start, its API figures and its cache hits of `cache_total` operations.
fn point(start_ns: u64, s: &ApiStats, cache_hits: u64, cache_total: u64) -> TimelinePoint {
    TimelinePoint {
        minute: system_time(start_ns),
        total_requests: s.total_requests,
        avg_duration: s.avg_duration,
        p50_duration: s.p50_duration,
        p95_duration: s.p95_duration,
        p99_duration: s.p99_duration,
        error_rate: s.error_rate,
        cache_operations: cache_total,
        cache_hit_rate: percent(cache_hits, cache_total),
    }
}

/// The in-memory window minute by minute: API volume, mean, p95, p99, error rate, and the cache
/// hit rate. Minutes without any event are included (zeros).
fn timeline(d: &Drained<'_>) -> Vec<TimelinePoint> {
    timeline_of(d, None)
}

/// [`timeline`] of every route, or of one (without the cache figures).
fn timeline_of(d: &Drained<'_>, path: Option<&str>) -> Vec<TimelinePoint> {
    (d.first_minute()..=d.now_minute())
        .map(|m| {
            let mut api = d.views_in(&[Kind::Api], m, m);
            if let Some(p) = path {
                api.retain(|v| &*v.info.name == p);
            }
            let s = api_stats_of(&api.iter().collect::<Vec<_>>());
            let (mut hits, mut total) = (0, 0);
            if path.is_none() {
                for v in d.views_in(&[Kind::Cache], m, m) {
                    hits += v.outcomes[usize::from(HIT)];
                    total += v.outcomes.iter().sum::<u64>();
                }
            }
            point(m * NS_PER_MINUTE, &s, hits, total)
        })
        .collect()
}
