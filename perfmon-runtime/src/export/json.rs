//! The JSON objects of the monitoring endpoints, in the seed's shapes: what
//! `GET /api/monitoring/metrics` puts under `data`, built from one snapshot of the window.

use serde_json::{json, Value};

use crate::core::kind::Kind;
use crate::core::window::{Scope, Window, SLOW_LIST_SIZE};
use crate::ops::alerts::alerts;
use crate::ops::health::system_health;
use crate::read::collector::collector;
use crate::read::query::QueryError;

/// `type=` values, in the order the `data` object lists them.
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
pub(crate) const TYPES: [&str; 8] = [
    "all", "api", "database", "cache", "batch", "business", "system", "sla",
];

/// A route's latency distribution over the window, from its histogram's bins: the requests in
/// each bucket of the API bounds (`le` in ms, `null` for the last, above every bound), not
/// cumulative.
fn distribution(snap: &crate::read::snapshot::Snapshot, path: &str) -> Value {
    let h = snap.api_histogram_for(path);
    let bounds = crate::core::hist::bounds_of(crate::core::hist::HistogramKind::Api);
    let mut below = 0;
    let mut out = Vec::with_capacity(bounds.len() + 1);
    for &le in bounds.iter() {
        let at_most = h.count_at_most(le);
        out.push(json!({ "le": le as f64 / 1e6, "count": at_most - below }));
        below = at_most;
    }
    out.push(json!({ "le": null, "count": h.count() - below }));
    Value::Array(out)
}

/// Slices of a route's trend over a window read from the tiers.
const TREND_POINTS: usize = 48;

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The `data` object of `GET /api/monitoring/metrics` for `type=kind` (one of `all`, `api`,
/// `database`, `cache`, `batch`, `business`, `system`, `sla`), an optional route template, a
/// window and a scope: one snapshot of the window serves every section; the in-memory window
/// adds the slow list and the minute-by-minute timeline; a route (`type=api`) adds its latency
/// `distribution`. What `perfmon report --json` prints without `--url`.
pub async fn metrics_json(
    kind: &str,
    path: Option<&str>,
    window: Window,
    scope: Scope,
) -> Result<Value, QueryError> {
    let all = kind == "all";
    let mut data = serde_json::Map::new();
    if kind != "system" {
        // read only the series the sections shown need (one route's, for `type=api&path=`)
        // as of this instance's last flush: a reader of the endpoint never makes the
        // application's runtime flush (and compact) on its behalf
        let query = collector().query(window, scope).read_last_flushed();
        let query = match (kind, path) {
            ("all", _) => query,
            ("api", Some(path)) => query.path(path),
            ("api", None) => query.only(&[Kind::Api]),
            ("database", _) => query.only(&[Kind::Query]),
            ("cache", _) => query.only(&[Kind::Cache]),
            ("batch", _) => query.only(&[Kind::Batch]),
            ("business", _) => query.only(&[Kind::Business, Kind::BusinessTag, Kind::Measure]),
            _ => query.only(&[Kind::Api, Kind::Cache, Kind::Query]),
        };
        let snap = query.snapshot().await?;
        if all || kind == "api" {
            let api = match path {
                Some(path) => snap.api_stats_for(path),
                None => snap.api_stats(),
            };
            data.insert("api".into(), to_value(&api));
            let mut routes = snap.api_routes();
            if let Some(path) = path {
                routes.retain(|r| r.path == path);
            }
            data.insert("routes".into(), to_value(&routes));
            if let Some(path) = path {
                data.insert("distribution".into(), distribution(&snap, path));
                // the route's trend: minute by minute in memory, else slice by slice from the
                // tier that holds the window
                // (a trend that cannot be read is `null`; the route's figures still answer)
                let trend = collector()
                    .query(window, scope)
                    .read_last_flushed()
                    .path(path)
                    .trend(TREND_POINTS)
                    .await;
                data.insert("trend".into(), trend.map_or(Value::Null, |t| to_value(&t)));
            }
            if window == Window::Minutes5 && scope == Scope::Instance {
                let mut slow = snap.slow_requests(SLOW_LIST_SIZE);
                match path {
                    Some(path) => slow.retain(|r| r.path == path),
                    None => {
                        data.insert("timeline".into(), to_value(&snap.timeline()));
                    }
                }
                data.insert("slowRequests".into(), to_value(&slow));
            }
        }
        if all || kind == "database" {
            data.insert("database".into(), to_value(&snap.database_stats()));
        }
        if all || kind == "cache" {
            data.insert("cache".into(), to_value(&snap.cache_stats()));
        }
        if all || kind == "batch" {
            data.insert("batch".into(), to_value(&snap.batch_stats()));
        }
        if all || kind == "business" {
            data.insert("business".into(), to_value(&snap.business_metrics()));
            data.insert("functions".into(), to_value(&snap.function_stats()));
        }
        if all || kind == "sla" {
            data.insert("sla".into(), to_value(&snap.sla_report()));
        }
    }
    if all {
        data.insert("alerts".into(), to_value(&alerts().active));
        let windows: Vec<&str> = crate::read::query::answerable_windows()
            .into_iter()
            .map(Window::as_str)
            .collect();
        data.insert("windows".into(), to_value(&windows));
    }
    if all || kind == "system" {
        let health = to_value(&system_health().await);
        data.insert(
            "system".into(),
            json!({ "health": { "status": health["status"], "checks": health["checks"] }, "resources": health["resources"] }),
        );
    }
    Ok(Value::Object(data))
}
