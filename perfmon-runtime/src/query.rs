//! Windows and scopes: `collector().query(Window::Hours24, Scope::Cluster)`.
//!
//! | window | instance scope | cluster scope |
//! | --- | --- | --- |
//! | 5 m | memory | Redis 1-minute aggregates |
//! | 1 h, 24 h | Redis 1-minute aggregates | the same, every instance |
//! | 7 d | Redis 5-minute aggregates | the same, every instance |
//! | 90 d, 1 y | PostgreSQL (not in this release: an error says so) | |
//!
//! Reading from Redis first flushes this instance's pending aggregates, so a query sees every
//! call recorded before it. Percentiles are merges of the stored HDR histograms, never averages.

use std::time::Duration;

use crate::aggregator::View;
use crate::collector::*;
use crate::registry::{Kind, SeriesInfo};
use crate::stats::*;

/// How far back a query reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Window {
    /// The last 5 minutes (`5m`).
    Minutes5,
    /// The last hour (`1h`).
    Hour1,
    /// The last 24 hours (`24h`).
    Hours24,
    /// The last 7 days (`7d`).
    Days7,
    /// The last 90 days (`90d`).
    Days90,
    /// The last year (`1y`).
    Year1,
}

impl Window {
    /// The HTTP parameter value: `5m`, `1h`, `24h`, `7d`, `90d`, `1y`.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Minutes5 => "5m",
            Window::Hour1 => "1h",
            Window::Hours24 => "24h",
            Window::Days7 => "7d",
            Window::Days90 => "90d",
            Window::Year1 => "1y",
        }
    }

    /// Parses the HTTP parameter value.
    pub fn parse(s: &str) -> Option<Window> {
        [
            Window::Minutes5,
            Window::Hour1,
            Window::Hours24,
            Window::Days7,
            Window::Days90,
            Window::Year1,
        ]
        .into_iter()
        .find(|w| w.as_str() == s)
    }

    /// Its length.
    pub fn duration(self) -> Duration {
        let minutes = match self {
            Window::Minutes5 => 5,
            Window::Hour1 => 60,
            Window::Hours24 => 1440,
            Window::Days7 => 7 * 1440,
            Window::Days90 => 90 * 1440,
            Window::Year1 => 365 * 1440,
        };
        Duration::from_secs(minutes * 60)
    }
}

/// Whose statistics a query reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// This instance only (`instance`).
    Instance,
    /// Every instance writing to the same stores (`cluster`).
    Cluster,
}

impl Scope {
    /// The HTTP parameter value: `instance`, `cluster`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Instance => "instance",
            Scope::Cluster => "cluster",
        }
    }

    /// Parses the HTTP parameter value.
    pub fn parse(s: &str) -> Option<Scope> {
        [Scope::Instance, Scope::Cluster]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

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

/// A windowed, scoped view of the statistics, with the collector's getters, async.
#[derive(Clone, Copy, Debug)]
pub struct Query {
    window: Window,
    scope: Scope,
}

impl crate::Collector {
    /// Statistics over `window` for `scope`, read from the tier that covers them.
    pub fn query(&self, window: Window, scope: Scope) -> Query {
        Query { window, scope }
    }
}

/// The series of a window, owned: labels and merged data.
struct Loaded {
    series: Vec<(SeriesInfo, crate::aggregator::Minute<crate::hist::Merged>)>,
}

impl Loaded {
    fn views(&self, kinds: &[Kind]) -> Vec<View<'_>> {
        self.series
            .iter()
            .enumerate()
            .filter(|(_, (i, _))| kinds.contains(&i.kind))
            .map(|(id, (info, m))| View {
                id: id as u32,
                info,
                data: m.clone(),
                last_success_ns: (m.last_ok_ns > 0).then_some(m.last_ok_ns),
                last_failure_ns: (m.last_fail_ns > 0).then_some(m.last_fail_ns),
            })
            .collect()
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

    fn in_memory(&self) -> bool {
        self.window == Window::Minutes5 && self.scope == Scope::Instance
    }

    #[cfg_attr(any(feature = "redis", feature = "postgres"), allow(dead_code))]
    fn unavailable(&self, tier: &'static str, why: &'static str) -> QueryError {
        QueryError::TierUnavailable {
            window: self.window.as_str(),
            scope: self.scope.as_str(),
            tier,
            why,
        }
    }

    async fn load(&self) -> Result<Loaded, QueryError> {
        #[cfg(any(feature = "redis", feature = "postgres"))]
        {
            crate::tier::load(self.window, self.scope)
                .await
                .map(|series| Loaded { series })
        }
        #[cfg(not(any(feature = "redis", feature = "postgres")))]
        {
            Err(self.unavailable(
                "Redis or PostgreSQL",
                "perfmon-runtime was built without the `redis` and `postgres` features",
            ))
        }
    }

    async fn with<T>(
        &self,
        kinds: &[Kind],
        memory: impl FnOnce() -> T,
        from: impl FnOnce(&[View<'_>]) -> T,
    ) -> Result<T, QueryError> {
        if self.in_memory() {
            return Ok(memory());
        }
        let loaded = self.load().await?;
        Ok(from(&loaded.views(kinds)))
    }

    /// API statistics over every route.
    pub async fn api_stats(&self) -> Result<ApiStats, QueryError> {
        self.with(
            &[Kind::Api],
            || crate::collector().api_stats(),
            api_stats_from,
        )
        .await
    }

    /// API statistics of one route template.
    pub async fn api_stats_for(&self, path: &str) -> Result<ApiStats, QueryError> {
        self.with(
            &[Kind::Api],
            || crate::collector().api_stats_for(path),
            |v| api_stats_for_from(v, path),
        )
        .await
    }

    /// Statistics per route and method, busiest first.
    pub async fn api_routes(&self) -> Result<Vec<RouteStats>, QueryError> {
        self.with(
            &[Kind::Api],
            || crate::collector().api_routes(),
            api_routes_from,
        )
        .await
    }

    /// Cache rates, overall and per key group.
    pub async fn cache_stats(&self) -> Result<CacheStats, QueryError> {
        self.with(
            &[Kind::Cache],
            || crate::collector().cache_stats(),
            cache_stats_from,
        )
        .await
    }

    /// Query statistics per table and operation.
    pub async fn database_stats(&self) -> Result<DatabaseStats, QueryError> {
        self.with(
            &[Kind::Query],
            || crate::collector().database_stats(),
            database_stats_from,
        )
        .await
    }

    /// Batch runs per name.
    pub async fn batch_stats(&self) -> Result<BatchStats, QueryError> {
        self.with(
            &[Kind::Batch],
            || crate::collector().batch_stats(),
            batch_stats_from,
        )
        .await
    }

    /// Business metrics per name and tag value.
    pub async fn business_metrics(&self) -> Result<BusinessMetrics, QueryError> {
        self.with(
            &[Kind::Business, Kind::BusinessTag],
            || crate::collector().business_metrics(),
            business_from,
        )
        .await
    }

    /// `#[measure]` statistics per name.
    pub async fn function_stats(&self) -> Result<FunctionStats, QueryError> {
        self.with(
            &[Kind::Measure],
            || crate::collector().function_stats(),
            function_stats_from,
        )
        .await
    }
}
