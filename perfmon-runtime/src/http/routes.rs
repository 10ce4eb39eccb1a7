//! The monitoring router: JSON metrics and health (the seed's shapes), liveness, readiness,
//! Prometheus text and the dashboard.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;

use axum::extract::Request;
use axum::http::HeaderMap;
use axum::middleware::{self, Next};

use super::access::{access, locked, Access, Challenge};
use super::heavy::{self, Answer};
use crate::core::process::proc_stats;
use crate::core::window::{Scope, Window};
use crate::export::json::metrics_json;
use crate::export::prometheus::{families, Format, TextChunks};
use crate::ops::alerts::alerts as alert_board;
use crate::ops::health::{system_health, HealthStatus};
use crate::read::collector::collector;
use crate::read::query::QueryError;

/// Values of `type=`.
pub const TYPES: [&str; 8] = crate::export::json::TYPES;
/// Values of `window=`.
pub const WINDOWS: [&str; 6] = ["5m", "1h", "24h", "7d", "90d", "1y"];
/// Values of `scope=`.
pub const SCOPES: [&str; 2] = ["instance", "cluster"];
/// Parameters of `GET /api/monitoring/metrics`.
pub const PARAMS: [&str; 4] = ["type", "path", "window", "scope"];

/// The monitoring routes, to merge into the application's router:
///
/// | route | answers |
/// | --- | --- |
/// | `GET /api/monitoring/metrics?type=&path=&window=&scope=` | `{"success": true, "data": {...}}` |
/// | `GET /api/monitoring/health` | health and resources; 200 healthy or degraded, 503 unhealthy |
/// | `GET /api/monitoring/live` | 200 while the process serves; depends on nothing external |
/// | `GET /api/monitoring/ready` | 200 unless a critical check fails, else 503 |
/// | `GET /api/monitoring/alerts` | the alerts firing now and the recent notifications |
/// | `GET /metrics` | Prometheus text exposition |
/// | `GET /api/monitoring/dashboard` | the HTML dashboard |
///
/// A bad parameter is answered 400 with `{"success": false, "error": "..."}` naming what is
/// allowed.
///
/// With a monitoring token set (`PERFMON_MONITORING_TOKEN` or `ConfigBuilder::monitoring_token`)
/// every route needs `Authorization: Bearer <token>` (401 with `{"success": false, "error":
/// "..."}` without it), except `live`, `ready` and `health`, which answer their status and code to
/// anyone and their details (checks' messages, resources, the failing checks) only with the
/// token. The dashboard accepts the token as the password of HTTP Basic authentication, which a
/// browser asks for.
///
/// To keep the monitoring routes off the application's port, serve this router on a listener
/// of its own (`axum::serve(monitoring_listener, perfmon_runtime::http::router())`).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    // the token, when set, guards these as one: programs are asked for a bearer token...
    let locked = Router::new()
        .route("/api/monitoring/metrics", get(metrics))
        .route("/api/monitoring/alerts", get(alerts))
        .route("/metrics", get(prometheus))
        .route_layer(middleware::from_fn(|req: Request, next: Next| {
            guard(req, next, Challenge::Bearer)
        }));
    // ...and browsers, on the page, for a password
    let page = Router::new()
        .route("/api/monitoring/dashboard", get(super::dashboard::page))
        .route_layer(middleware::from_fn(|req: Request, next: Next| {
            guard(req, next, Challenge::Browser)
        }));
    // the probes answer anyone, their details only with the token
    Router::new()
        .route("/api/monitoring/health", get(health))
        .route("/api/monitoring/live", get(live))
        .route("/api/monitoring/ready", get(ready))
        .merge(locked)
        .merge(page)
}

/// Lets a request through to a locked route only with the token (when one is set).
async fn guard(req: Request, next: Next, challenge: Challenge) -> Response {
    match locked(req.headers(), challenge) {
        Some(denied) => denied,
        None => next.run(req).await,
    }
}

/// A user-supplied value, made safe to quote in a message: at most 64 printable characters,
/// with anything that could be markup replaced.
fn quote(v: &str) -> String {
    let mut out: String = v
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, '<' | '>' | '&' | '"' | '\'' | '\\') || c == ' '
            {
                c
            } else {
                '?'
            }
        })
        .collect();
    if v.chars().count() > 64 {
        out.push('…');
    }
    out
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "success": false, "error": message })),
    )
        .into_response()
}

/// The parsed parameters of the metrics endpoint.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Params {
    pub kind: &'static str,
    pub path: Option<String>,
    pub window: &'static str,
    pub scope: &'static str,
}

fn one_of(name: &str, value: &str, allowed: &[&'static str]) -> Result<&'static str, String> {
    allowed
        .iter()
        .copied()
        .find(|a| *a == value)
        .ok_or_else(|| {
            format!(
                "{name}={} is not allowed; {name} must be one of: {}",
                quote(value),
                allowed.join(", ")
            )
        })
}

pub(crate) fn parse(query: Option<&str>) -> Result<Params, String> {
    let mut p = Params {
        kind: "all",
        path: None,
        window: "5m",
        scope: "instance",
    };
    let mut seen: Vec<String> = Vec::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if !PARAMS.contains(&&*k) {
            return Err(format!(
                "unknown parameter {}; the parameters are: {}",
                quote(&k),
                PARAMS.join(", ")
            ));
        }
        if seen.iter().any(|s| *s == k) {
            return Err(format!("{k} is given more than once; give it once"));
        }
        seen.push(k.to_string());
        match &*k {
            "type" => p.kind = one_of("type", &v, &TYPES)?,
            "window" => p.window = one_of("window", &v, &WINDOWS)?,
            "scope" => p.scope = one_of("scope", &v, &SCOPES)?,
            _ => {
                if !v.starts_with('/') || v.len() > 512 {
                    return Err(format!("path={} is not allowed; path must be a route template starting with /, such as /api/schedule/assign", quote(&v)));
                }
                p.path = Some(v.into_owned());
            }
        }
    }
    if p.path.is_some() && p.kind != "api" {
        // a path narrows what is read only for type=api; elsewhere it would only make every
        // request a new long-window load
        return Err(format!(
            "path= selects one route and goes with type=api only; type={} does not take it",
            p.kind
        ));
    }
    Ok(p)
}

async fn metrics(axum::extract::RawQuery(query): axum::extract::RawQuery) -> Response {
    let p = match parse(query.as_deref()) {
        Ok(p) => p,
        Err(e) => return bad_request(e),
    };
    if p.window == "5m" && p.scope == "instance" {
        // from memory: cheap
        return load(p).await.into_response();
    }
    let key = format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{}",
        p.kind,
        p.window,
        p.scope,
        p.path.as_deref().unwrap_or("")
    );
    heavy::answer(key, move || load(p)).await.into_response()
}

/// The answer of the metrics endpoint to valid parameters, as JSON bytes.
async fn load(p: Params) -> Answer {
    let window = Window::parse(p.window).unwrap_or(Window::Minutes5);
    let scope = Scope::parse(p.scope).unwrap_or(Scope::Instance);
    match metrics_json(p.kind, p.path.as_deref(), window, scope).await {
        Ok(data) => Answer::json(
            StatusCode::OK,
            &json!({ "success": true, "window": p.window, "scope": p.scope, "data": data }),
        ),
        Err(e @ QueryError::TierUnavailable { .. }) => Answer::json(
            StatusCode::BAD_REQUEST,
            &json!({ "success": false, "error": e.to_string() }),
        ),
        Err(e) => Answer::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "success": false, "error": e.to_string() }),
        ),
    }
}

fn health_code(status: HealthStatus) -> StatusCode {
    match status {
        HealthStatus::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    }
}

async fn health(headers: HeaderMap) -> Response {
    let h = system_health().await;
    let code = health_code(h.status);
    match access(&headers) {
        Access::Full => (code, axum::Json(h)).into_response(),
        Access::Public => (code, axum::Json(json!({ "status": h.status }))).into_response(),
    }
}

async fn alerts() -> Response {
    let board = alert_board();
    axum::Json(
        json!({ "success": true, "data": { "active": board.active, "history": board.history } }),
    )
    .into_response()
}

async fn live(headers: HeaderMap) -> Response {
    match access(&headers) {
        Access::Full => {
            axum::Json(json!({ "status": "alive", "uptime": proc_stats().uptime.as_secs() }))
                .into_response()
        }
        Access::Public => axum::Json(json!({ "status": "alive" })).into_response(),
    }
}

async fn ready(headers: HeaderMap) -> Response {
    let h = system_health().await;
    let failing: Vec<&String> = h
        .checks
        .iter()
        .filter(|(_, c)| !c.ok && c.critical)
        .map(|(n, _)| n)
        .collect();
    let status = if failing.is_empty() {
        "ready"
    } else {
        "not ready"
    };
    let body = match access(&headers) {
        Access::Full => json!({ "status": status, "failing": failing }),
        Access::Public => json!({ "status": status }),
    };
    (health_code(h.status), axum::Json(body)).into_response()
}

async fn prometheus(headers: HeaderMap) -> Response {
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    // streamed: rendered a chunk at a time as the client takes it, never held whole
    let mut families = families(&collector());
    families.extend(heavy::families());
    let chunks = TextChunks::new(families, format).map(Ok::<_, std::convert::Infallible>);
    (
        [(header::CONTENT_TYPE, format.content_type())],
        axum::body::Body::from_stream(futures_util::stream::iter(chunks)),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters() {
        assert_eq!(parse(None).map(|p| p.kind), Ok("all"));
        let p = parse(Some("type=api&path=%2Fapi%2Fschedule%2Fassign")).expect("valid");
        assert_eq!(
            (p.kind, p.path.as_deref()),
            ("api", Some("/api/schedule/assign"))
        );
        let e = parse(Some("type=apis")).unwrap_err();
        assert_eq!(e, "type=apis is not allowed; type must be one of: all, api, database, cache, batch, business, system, sla");
        assert!(parse(Some("window=2h"))
            .unwrap_err()
            .contains("5m, 1h, 24h, 7d, 90d, 1y"));
        assert_eq!(
            parse(Some("window=1h&scope=cluster")).map(|p| (p.window, p.scope)),
            Ok(("1h", "cluster"))
        );
        assert!(parse(Some("color=red"))
            .unwrap_err()
            .starts_with("unknown parameter color"));
        assert!(parse(Some("type=api&type=cache"))
            .unwrap_err()
            .contains("more than once"));
        assert!(parse(Some("type=api&path=nope"))
            .unwrap_err()
            .contains("starting with /"));
        assert_eq!(
            parse(Some("type=database&path=%2Fx")).unwrap_err(),
            "path= selects one route and goes with type=api only; type=database does not take it"
        );
        assert!(parse(Some("path=%2Fx")).unwrap_err().contains("type=all"));
    }

    #[test]
    fn user_values_are_not_echoed_raw() {
        let e = parse(Some("type=%3Cscript%3Ealert(1)%3C%2Fscript%3E")).unwrap_err();
        assert!(!e.contains('<') && !e.contains('>'), "{e}");
        let long = "x".repeat(1000);
        assert!(parse(Some(&format!("type={long}"))).unwrap_err().len() < 200);
    }
}
