//! Windows and scopes: `collector().query(Window::Hours24, Scope::Cluster)`.
//!
//! The in-memory window (5 minutes of this instance) is answered from the collector; every other
//! window comes from the source the runtime installs at `init` (the retention tiers), which
//! flushes this instance before it reads (read your writes). Percentiles are merges of the
//! stored HDR histograms, never averages.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use crate::core::kind::{Kind, METHODS};
use crate::core::window::{Scope, Window};
use crate::pipeline::aggregator::View;
use crate::pipeline::registry::SeriesInfo;
use crate::read::collector::Collector;
use crate::read::sla::SlaReport;
use crate::read::snapshot::Snapshot;
use crate::read::stats::{
    ApiStats, BatchStats, BusinessMetrics, CacheStats, DatabaseStats, FunctionStats, RouteStats,
    TimelinePoint,
};

/// Why a windowed query could not be answered.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// The window or scope needs a tier that is not configured or not in this build.
    #[error("window={window} scope={scope} is read from {tier}, which is not available: {why}")]
    TierUnavailable {
        /// The window asked for.
        window: &'static str,
        /// The scope asked for.
        scope: &'static str,
        /// The tier that holds it.
        tier: &'static str,
        /// What to do.
        why: &'static str,
    },
    /// The tier failed to answer.
    #[error("reading the {tier} tier failed: {message}")]
    Backend {
        /// Which tier.
        tier: &'static str,
        /// What failed.
        message: String,
    },
}

/// Which series a read needs: every series, those of some kinds, or one route's. The tiers read
/// only what it names (one route: that route's series, nothing else).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SeriesFilter {
    /// Only these kinds (`None`: every kind).
    pub kinds: Option<Vec<Kind>>,
    /// Only the API series of this route template (any method).
    pub route: Option<String>,
}

impl SeriesFilter {
    /// Every series.
    pub(crate) fn all() -> SeriesFilter {
        SeriesFilter::default()
    }

    /// Whether a series is wanted.
    pub(crate) fn matches(&self, i: &SeriesInfo) -> bool {
        self.kinds.as_ref().is_none_or(|k| k.contains(&i.kind))
            && self
                .route
                .as_deref()
                .is_none_or(|r| i.kind == Kind::Api && &*i.name == r)
    }

    /// The series this filter names one by one (a route: its series for every method), when it
    /// does; `None` when the tiers' index of series must be read.
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    pub(crate) fn exact(&self) -> Option<Vec<SeriesInfo>> {
        let route = self.route.as_deref()?;
        Some(
            METHODS
                .iter()
                .map(|&method| SeriesInfo {
                    kind: Kind::Api,
                    method,
                    name: route.into(),
                    table: "".into(),
                    tag_value: "".into(),
                    write: false,
                    slow_ns: u64::MAX,
                })
                .collect(),
        )
    }
}

/// What loading a window returns.
pub(crate) type LoadFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<View>, QueryError>> + Send + 'a>>;

/// Where windows past the in-memory one come from: the retention tiers, installed by `init`.
pub(crate) trait WindowSource: Send + Sync {
    /// The series of `window` for `scope` that `filter` wants, merged across instances and
    /// runs; after a flush of this instance if `flush_first` (read your writes), else as of its
    /// last flush.
    fn load<'a>(
        &'a self,
        window: Window,
        scope: Scope,
        filter: &'a SeriesFilter,
        flush_first: bool,
    ) -> LoadFuture<'a>;

    /// The windows longer than the in-memory 5 minutes its tiers hold.
    fn windows(&self) -> Vec<Window>;

    /// One route's trend over `window` (the filter names the route): `points` equal slices,
    /// each slice's start (Unix seconds) and its merged view, slices without requests left out.
    fn trend<'a>(
        &'a self,
        window: Window,
        scope: Scope,
        filter: &'a SeriesFilter,
        points: usize,
    ) -> TrendFuture<'a>;
}

/// What [`WindowSource::trend`] returns.
pub(crate) type TrendFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<(u64, View)>, QueryError>> + Send + 'a>>;

/// The windows a read can answer here: the in-memory 5 minutes, and what the configured tiers
/// hold (Redis: up to 7 days; PostgreSQL: up to a year), shortest first.
pub fn answerable_windows() -> Vec<Window> {
    let more = source().map(|s| s.windows()).unwrap_or_default();
    Window::ALL
        .into_iter()
        .filter(|w| *w == Window::Minutes5 || more.contains(w))
        .collect()
}

static SOURCE: RwLock<Option<Arc<dyn WindowSource>>> = RwLock::new(None);

/// Installs (or, with `None`, removes) the source of long windows.
#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
pub(crate) fn install_source(source: Option<Arc<dyn WindowSource>>) {
    *SOURCE.write().unwrap_or_else(|e| e.into_inner()) = source;
}

fn source() -> Option<Arc<dyn WindowSource>> {
    SOURCE.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Runs a load from the tiers: decoding and merging stored histograms costs CPU in proportion
/// to the series read, so on the read pool, never on the caller's async workers.
async fn on_read_pool<T: Send + 'static>(
    load: impl Future<Output = Result<T, QueryError>> + Send + 'static,
) -> Result<T, QueryError> {
    #[cfg(any(feature = "redis", feature = "postgres"))]
    return crate::core::pool::off_workers(load)
        .await
        .unwrap_or_else(|| {
            Err(QueryError::Backend {
                tier: "Redis or PostgreSQL",
                message: "the read panicked; see the log".into(),
            })
        });
    #[cfg(not(any(feature = "redis", feature = "postgres")))]
    load.await
}

/// A windowed, scoped view of the statistics, with the collector's getters, async. Each getter
/// reads the window once; [`Query::snapshot`] reads it once for any number of figures.
#[derive(Clone, Debug)]
pub struct Query {
    collector: Collector,
    window: Window,
    scope: Scope,
    filter: SeriesFilter,
    flush_first: bool,
}

impl Collector {
    /// Statistics over `window` for `scope`, read from the tier that covers them.
    pub fn query(&self, window: Window, scope: Scope) -> Query {
        Query {
            collector: self.clone(),
            window,
            scope,
            filter: SeriesFilter::all(),
            flush_first: true,
        }
    }
}

impl Query {
    /// The window.
    pub fn window(&self) -> Window {
        self.window
    }

    /// The scope.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// The same query restricted to one route template's API series (any method): a tier
    /// reads that route's data only. Its snapshot holds that route and nothing else.
    pub fn path(mut self, path: &str) -> Query {
        self.filter.route = Some(path.to_string());
        self.filter.kinds = Some(vec![Kind::Api]);
        self
    }

    /// The same query restricted to some kinds of series.
    pub(crate) fn only(mut self, kinds: &[Kind]) -> Query {
        self.filter.kinds = Some(kinds.to_vec());
        self
    }

    /// The same query, answered from the tiers as this instance last flushed them (every flush
    /// interval) instead of after a flush of its own: what the monitoring endpoint asks, so that
    /// its readers never make the application's runtime flush.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn read_last_flushed(mut self) -> Query {
        self.flush_first = false;
        self
    }

    fn in_memory(&self) -> bool {
        self.window == Window::Minutes5 && self.scope == Scope::Instance
    }

    fn unavailable(&self, tier: &'static str, why: &'static str) -> QueryError {
        QueryError::TierUnavailable {
            window: self.window.as_str(),
            scope: self.scope.as_str(),
            tier,
            why,
        }
    }

    /// One snapshot of the window: from memory for the last 5 minutes of this instance (with
    /// the slow list, last requests and timeline), else one load from the tier that covers it,
    /// of the series this query names ([`Query::path`]). A load from a tier runs on perfmon's
    /// read pool (threads of its own, at the lowest CPU priority), not on the caller's async
    /// workers; the caller only waits for it.
    pub async fn snapshot(&self) -> Result<Snapshot, QueryError> {
        if self.in_memory() {
            let mut snap = self.collector.snapshot();
            if self.filter != SeriesFilter::all() {
                snap.retain_series(|i| self.filter.matches(i));
            }
            return Ok(snap);
        }
        let Some(source) = source() else {
            return Err(self.unavailable(
                "Redis or PostgreSQL",
                if cfg!(any(feature = "redis", feature = "postgres")) {
                    "none is configured: set PERFMON_REDIS_URL or PERFMON_DATABASE_URL and call init"
                } else {
                    "perfmon-runtime was built without the `redis` and `postgres` features"
                },
            ));
        };
        let (window, scope, filter) = (self.window, self.scope, self.filter.clone());
        let flush_first = self.flush_first;
        let load = async move {
            let views = source.load(window, scope, &filter, flush_first).await?;
            Ok(Snapshot::from_views(window, scope, views))
        };
        on_read_pool(load).await
    }

    /// The route's ([`Query::path`]) trend over the window, minute by minute from memory for
    /// the last 5 minutes of this instance, else in `points` equal slices read bucket by bucket
    /// from the tier that holds the window (the same reads as [`Query::snapshot`], not merged
    /// over time): each slice's start with the route's requests, percentiles and error rate.
    /// Empty without a path.
    pub async fn trend(&self, points: usize) -> Result<Vec<TimelinePoint>, QueryError> {
        let Some(path) = self.filter.route.clone() else {
            return Ok(Vec::new());
        };
        if self.in_memory() {
            return Ok(crate::read::snapshot::route_trend(
                &self.collector.state,
                &path,
            ));
        }
        let Some(source) = source() else {
            return Err(self.unavailable(
                "Redis or PostgreSQL",
                "none is configured: set PERFMON_REDIS_URL or PERFMON_DATABASE_URL and call init",
            ));
        };
        let (window, scope, filter) = (self.window, self.scope, self.filter.clone());
        let load = async move {
            let slices = source.trend(window, scope, &filter, points).await?;
            Ok(slices
                .into_iter()
                .map(|(start, v)| crate::read::snapshot::trend_point(start, &v))
                .collect())
        };
        on_read_pool(load).await
    }

    /// API statistics over every route.
    pub async fn api_stats(&self) -> Result<ApiStats, QueryError> {
        Ok(self
            .clone()
            .only(&[Kind::Api])
            .snapshot()
            .await?
            .api_stats())
    }

    /// API statistics of one route template.
    pub async fn api_stats_for(&self, path: &str) -> Result<ApiStats, QueryError> {
        Ok(self
            .clone()
            .path(path)
            .snapshot()
            .await?
            .api_stats_for(path))
    }

    /// Statistics per route and method, busiest first.
    pub async fn api_routes(&self) -> Result<Vec<RouteStats>, QueryError> {
        Ok(self
            .clone()
            .only(&[Kind::Api])
            .snapshot()
            .await?
            .api_routes())
    }

    /// Cache rates, overall and per key group.
    pub async fn cache_stats(&self) -> Result<CacheStats, QueryError> {
        Ok(self
            .clone()
            .only(&[Kind::Cache])
            .snapshot()
            .await?
            .cache_stats())
    }

    /// Query statistics per table and operation.
    pub async fn database_stats(&self) -> Result<DatabaseStats, QueryError> {
        Ok(self
            .clone()
            .only(&[Kind::Query])
            .snapshot()
            .await?
            .database_stats())
    }

    /// Batch runs per name.
    pub async fn batch_stats(&self) -> Result<BatchStats, QueryError> {
        Ok(self
            .clone()
            .only(&[Kind::Batch])
            .snapshot()
            .await?
            .batch_stats())
    }

    /// Business metrics per name and tag value.
    pub async fn business_metrics(&self) -> Result<BusinessMetrics, QueryError> {
        Ok(self
            .clone()
            .only(&[Kind::Business, Kind::BusinessTag])
            .snapshot()
            .await?
            .business_metrics())
    }

    /// `#[measure]` statistics per name.
    pub async fn function_stats(&self) -> Result<FunctionStats, QueryError> {
        Ok(self
            .clone()
            .only(&[Kind::Measure])
            .snapshot()
            .await?
            .function_stats())
    }

    /// The SLA report over this query's window and scope.
    pub async fn sla_report(&self) -> Result<SlaReport, QueryError> {
        Ok(self
            .clone()
            .only(&[Kind::Api, Kind::Cache, Kind::Query])
            .snapshot()
            .await?
            .sla_report())
    }
}
