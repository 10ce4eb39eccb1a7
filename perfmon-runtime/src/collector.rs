//! Reading statistics: `collector()` and its getters (the seed's `metricsCollector`).
//!
//! Every getter first drains all threads' rings, so it sees every call that finished before it
//! was made ("read your writes"), then answers from the in-memory window: the current minute and
//! the four before it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::aggregator::{View, CACHE_ERROR, FAILED, HIT, MISS, OK};
use crate::clock::system_time;
use crate::hist::Merged;
use crate::registry::Kind;
use crate::stats::*;

/// The collector: a cheap handle to the process-wide statistics.
#[derive(Clone, Copy, Debug, Default)]
pub struct Collector {
    _private: (),
}

/// The process-wide collector. Works before and without [`init`](crate::init).
pub fn collector() -> Collector {
    Collector { _private: () }
}

fn merged<'a>(views: impl Iterator<Item = &'a View<'a>>) -> Merged {
    let mut m = Merged::default();
    for v in views {
        m.add(&v.hist);
    }
    m
}

fn statuses<'a>(views: impl Iterator<Item = &'a View<'a>>) -> BTreeMap<u16, u64> {
    let mut out = BTreeMap::new();
    for v in views {
        for &(code, n) in &v.statuses {
            *out.entry(code).or_insert(0) += n;
        }
    }
    out
}

fn api_stats_of<'a>(views: &[&'a View<'a>]) -> ApiStats {
    ApiStats::from_parts(
        &merged(views.iter().copied()),
        &statuses(views.iter().copied()),
    )
}

fn query_stats_of(views: &[&View<'_>]) -> QueryStats {
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

/// API statistics over `views` (API series).
pub(crate) fn api_stats_from(views: &[View<'_>]) -> ApiStats {
    api_stats_of(&views.iter().collect::<Vec<_>>())
}

/// API statistics of one route template over `views`.
pub(crate) fn api_stats_for_from(views: &[View<'_>], path: &str) -> ApiStats {
    api_stats_of(
        &views
            .iter()
            .filter(|v| &*v.info.name == path)
            .collect::<Vec<_>>(),
    )
}

/// Per route and method, busiest first.
pub(crate) fn api_routes_from(views: &[View<'_>]) -> Vec<RouteStats> {
    let mut out: Vec<RouteStats> = views
        .iter()
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

pub(crate) fn cache_stats_from(views: &[View<'_>]) -> CacheStats {
    let mut keys = BTreeMap::new();
    let (mut h, mut m, mut e) = (0, 0, 0);
    for v in views {
        let [hits, misses, errors] = [HIT, MISS, CACHE_ERROR].map(|i| v.outcomes[usize::from(i)]);
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

pub(crate) fn database_stats_from(views: &[View<'_>]) -> DatabaseStats {
    let mut by_table: BTreeMap<&str, BTreeMap<&str, Vec<&View<'_>>>> = BTreeMap::new();
    for v in views {
        by_table
            .entry(&v.info.table)
            .or_default()
            .entry(&v.info.name)
            .or_default()
            .push(v);
    }
    let mut tables = BTreeMap::new();
    for (table, ops) in by_table {
        let all: Vec<&View<'_>> = ops.values().flatten().copied().collect();
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
    let totals = query_stats_of(&views.iter().collect::<Vec<_>>());
    DatabaseStats {
        total_queries: totals.reads + totals.writes,
        totals,
        tables,
    }
}

pub(crate) fn batch_stats_from(views: &[View<'_>]) -> BatchStats {
    let batches = views
        .iter()
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
            };
            (v.info.name.to_string(), stats)
        })
        .collect();
    BatchStats { batches }
}

pub(crate) fn business_from(views: &[View<'_>]) -> BusinessMetrics {
    let mut metrics: BTreeMap<String, BusinessMetricStats> = BTreeMap::new();
    for v in views {
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

pub(crate) fn function_stats_from(views: &[View<'_>]) -> FunctionStats {
    let functions = views
        .iter()
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

impl Collector {
    /// API statistics over every route.
    pub fn api_stats(&self) -> ApiStats {
        api_stats_from(&crate::state::drained().views(&[Kind::Api]))
    }

    /// API statistics of one route template (all methods), zero if it saw no request.
    pub fn api_stats_for(&self, path: &str) -> ApiStats {
        api_stats_for_from(&crate::state::drained().views(&[Kind::Api]), path)
    }

    /// Statistics per route and method, busiest first.
    pub fn api_routes(&self) -> Vec<RouteStats> {
        api_routes_from(&crate::state::drained().views(&[Kind::Api]))
    }

    /// Up to `n` (at most 50) requests over their slow threshold in the window, slowest first.
    pub fn slow_requests(&self, n: usize) -> Vec<SlowRequest> {
        let agg = crate::state::drained();
        agg.slow_requests(n)
            .into_iter()
            .map(|(r, info)| to_request(r, info))
            .collect()
    }

    /// The last 100 requests, newest first.
    pub fn recent_requests(&self) -> Vec<SlowRequest> {
        let agg = crate::state::drained();
        agg.recent_requests()
            .into_iter()
            .map(|(r, info)| to_request(r, info))
            .collect()
    }

    /// Cache hit, miss and error rates, overall and per key group.
    pub fn cache_stats(&self) -> CacheStats {
        cache_stats_from(&crate::state::drained().views(&[Kind::Cache]))
    }

    /// Query statistics per table and operation, with totals (percentiles from merged
    /// histograms at every level).
    pub fn database_stats(&self) -> DatabaseStats {
        database_stats_from(&crate::state::drained().views(&[Kind::Query]))
    }

    /// Batch runs per name: successes, failures, durations, last success and failure.
    pub fn batch_stats(&self) -> BatchStats {
        batch_stats_from(&crate::state::drained().views(&[Kind::Batch]))
    }

    /// Business metrics: count and sum per name and per tag value.
    pub fn business_metrics(&self) -> BusinessMetrics {
        business_from(&crate::state::drained().views(&[Kind::Business, Kind::BusinessTag]))
    }

    /// `#[measure]` statistics per name.
    pub fn function_stats(&self) -> FunctionStats {
        function_stats_from(&crate::state::drained().views(&[Kind::Measure]))
    }

    /// The window minute by minute, oldest first: API volume, mean, p95, p99 and error rate, and
    /// the cache hit rate, for trend charts. Minutes without any event are included (zeros).
    pub fn timeline(&self) -> Vec<TimelinePoint> {
        let agg = crate::state::drained();
        let now = agg.now_minute();
        let first = now.saturating_sub(crate::WINDOW_MINUTES - 1);
        (first..=now)
            .map(|m| {
                let api = agg.views_in(&[Kind::Api], m, m);
                let s = api_stats_of(&api.iter().collect::<Vec<_>>());
                let (mut hits, mut total) = (0, 0);
                for v in agg.views_in(&[Kind::Cache], m, m) {
                    hits += v.outcomes[usize::from(HIT)];
                    total += v.outcomes.iter().sum::<u64>();
                }
                TimelinePoint {
                    minute: system_time(m * crate::aggregator::NS_PER_MINUTE),
                    total_requests: s.total_requests,
                    avg_duration: s.avg_duration,
                    p95_duration: s.p95_duration,
                    p99_duration: s.p99_duration,
                    error_rate: s.error_rate,
                    cache_operations: total,
                    cache_hit_rate: percent(hits, total),
                }
            })
            .collect()
    }

    /// Everything counted since start, as Prometheus text exposition (format 0.0.4), with the
    /// standard `process_*` metrics. Counters are monotonic; histograms use buckets from 1 ms to
    /// 60 s.
    pub fn prometheus_text(&self) -> String {
        crate::prometheus::render()
    }

    /// The recorder's own counters: events processed, late events, inline drains, memory.
    pub fn recorder_stats(&self) -> RecorderStats {
        let agg = crate::state::drained();
        RecorderStats {
            events_processed: agg.processed(),
            late_events: agg.late(),
            inline_drains: crate::state::state().inline_drains.load(Ordering::Relaxed),
            series: crate::state::state()
                .registry
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .len() as u64,
            threads: agg.rings() as u64,
            memory_bytes: agg.heap_bytes() as u64,
            ..tier_counters()
        }
    }
}

/// The Redis tier's counters (zeros without it).
pub(crate) fn tier_counters() -> RecorderStats {
    #[cfg(any(feature = "redis", feature = "postgres"))]
    {
        use crate::tier::{DROPPED, FAILURES, FLUSHES, PENDING};
        RecorderStats {
            tier_flushes: FLUSHES.load(Ordering::Relaxed),
            tier_failures: FAILURES.load(Ordering::Relaxed),
            tier_pending: PENDING.load(Ordering::Relaxed),
            tier_dropped: DROPPED.load(Ordering::Relaxed),
            ..RecorderStats::default()
        }
    }
    #[cfg(not(any(feature = "redis", feature = "postgres")))]
    RecorderStats::default()
}

fn to_request(r: crate::aggregator::RawRequest, info: &crate::registry::SeriesInfo) -> SlowRequest {
    SlowRequest {
        method: info.method.to_string(),
        path: info.name.to_string(),
        status_code: r.status,
        duration: Duration::from_nanos(r.dur_ns),
        timestamp: system_time(r.unix_ns),
    }
}
