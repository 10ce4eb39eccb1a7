//! The SLA report: the seed's targets (API p95 under 1 s, p99 under 3 s, error rate under 1%,
//! cache hit rate above 95%, database mean query time under 50 ms), configurable, against the
//! current figures of a window.

use std::sync::RwLock;
use std::time::Duration;

use serde::Serialize;

use crate::read::stats::{ApiStats, CacheStats, DatabaseStats};

/// The targets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlaTargets {
    /// API p95 below this (default 1 s).
    pub api_p95: Duration,
    /// API p99 below this (default 3 s).
    pub api_p99: Duration,
    /// API error rate below this percentage (default 1%).
    pub api_error_rate: f64,
    /// Cache hit rate above this percentage (default 95%).
    pub cache_hit_rate: f64,
    /// Database mean query time below this (default 50 ms).
    pub db_avg: Duration,
}

impl Default for SlaTargets {
    fn default() -> SlaTargets {
        SlaTargets {
            api_p95: Duration::from_secs(1),
            api_p99: Duration::from_secs(3),
            api_error_rate: 1.0,
            cache_hit_rate: 95.0,
            db_avg: Duration::from_millis(50),
        }
    }
}

static TARGETS: RwLock<Option<SlaTargets>> = RwLock::new(None);

pub(crate) fn set_targets(t: SlaTargets) {
    *TARGETS.write().unwrap_or_else(|e| e.into_inner()) = Some(t);
}

pub(crate) fn targets() -> SlaTargets {
    TARGETS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or_default()
}

/// One objective.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SlaObjective {
    /// `api-p95`, `api-p99`, `api-error-rate`, `cache-hit-rate`, `db-avg-query`.
    pub name: &'static str,
    /// What it means.
    pub description: &'static str,
    /// The target (ms or percent, see `unit`).
    pub target: f64,
    /// The window's value.
    pub current: f64,
    /// `ms` or `%`.
    pub unit: &'static str,
    /// Whether the current value meets the target; `None` when the window had nothing to
    /// measure.
    pub met: Option<bool>,
}

/// The report for a window (`collector().sla_report()`, `?type=sla`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SlaReport {
    /// The window, e.g. `5m`.
    pub window: &'static str,
    /// `instance` or `cluster`.
    pub scope: &'static str,
    /// Every objective.
    pub objectives: Vec<SlaObjective>,
    /// Every objective with data is met.
    pub all_met: bool,
    /// The API's Apdex over the window (0–1, three decimals; `null` without requests), each
    /// route with its own threshold.
    #[serde(serialize_with = "crate::read::stats::ser_apdex")]
    pub apdex: Option<f64>,
    /// The default Apdex threshold T (`apdexThreshold`, ms).
    #[serde(serialize_with = "crate::read::stats::ser_ms")]
    pub apdex_threshold: std::time::Duration,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

pub(crate) fn report(
    api: &ApiStats,
    cache: &CacheStats,
    db: &DatabaseStats,
    window: &'static str,
    scope: &'static str,
) -> SlaReport {
    let t = targets();
    let has_api = api.total_requests > 0;
    let below = |cur: f64, target: f64, data: bool| data.then_some(cur < target);
    let objectives = vec![
        SlaObjective {
            name: "api-p95",
            description: "API p95 response time",
            target: ms(t.api_p95),
            current: ms(api.p95_duration),
            unit: "ms",
            met: below(ms(api.p95_duration), ms(t.api_p95), has_api),
        },
        SlaObjective {
            name: "api-p99",
            description: "API p99 response time",
            target: ms(t.api_p99),
            current: ms(api.p99_duration),
            unit: "ms",
            met: below(ms(api.p99_duration), ms(t.api_p99), has_api),
        },
        SlaObjective {
            name: "api-error-rate",
            description: "API error rate (4xx and 5xx)",
            target: t.api_error_rate,
            current: api.error_rate,
            unit: "%",
            met: below(api.error_rate, t.api_error_rate, has_api),
        },
        SlaObjective {
            name: "cache-hit-rate",
            description: "cache hit rate",
            target: t.cache_hit_rate,
            current: cache.hit_rate,
            unit: "%",
            met: (cache.total_operations > 0).then_some(cache.hit_rate > t.cache_hit_rate),
        },
        SlaObjective {
            name: "db-avg-query",
            description: "database mean query time",
            target: ms(t.db_avg),
            current: ms(db.totals.avg_duration),
            unit: "ms",
            met: below(
                ms(db.totals.avg_duration),
                ms(t.db_avg),
                db.total_queries > 0,
            ),
        },
    ];
    let all_met = objectives.iter().all(|o| o.met != Some(false));
    SlaReport {
        window,
        scope,
        objectives,
        all_met,
        apdex: api.apdex,
        apdex_threshold: api.apdex_threshold,
    }
}
