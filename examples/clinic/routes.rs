//! The HTTP face of the service: thin axum handlers over [`App`], the service's routes under
//! `PerfmonLayer`, and perfmon's monitoring routes beside them. The `#[track_api]` methods of
//! `App` hand their names and slow thresholds to `PerfmonLayer`, which records each request once
//! with its real status.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use perfmon_runtime::http::PerfmonLayer;
use perfmon_runtime::HttpStatus;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::service::{ApiError, App};

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code =
            StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            code,
            Json(json!({ "success": false, "error": self.to_string() })),
        )
            .into_response()
    }
}

/// The query parameters of every route; a missing one is 0 or false.
#[derive(Deserialize)]
struct ClinicQuery {
    #[serde(rename = "clinicId", default)]
    clinic_id: u32,
    #[serde(default)]
    week: u32,
    #[serde(default)]
    month: u32,
    #[serde(rename = "staffId", default)]
    staff_id: u32,
    #[serde(default)]
    rebuild: bool,
    #[serde(default)]
    annual: bool,
    #[serde(default)]
    admin: bool,
}

type Shared = State<Arc<App>>;

/// A JSON reply with its status, or the error's.
type Reply = Result<(StatusCode, Json<Value>), ApiError>;

async fn staff_handler(State(app): Shared, Query(q): Query<ClinicQuery>) -> Reply {
    let staff = app.list_staff(q.clinic_id).await?;
    Ok((
        StatusCode::OK,
        Json(json!({ "success": true, "count": staff.len() })),
    ))
}

async fn assign_handler(State(app): Shared, Query(q): Query<ClinicQuery>) -> Reply {
    let n = app.assign(q.clinic_id, q.week, q.rebuild).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "success": true, "assigned": n })),
    ))
}

async fn fairness_handler(State(app): Shared, Query(q): Query<ClinicQuery>) -> Reply {
    let v = app.fairness(q.clinic_id, q.month).await?;
    Ok((
        StatusCode::OK,
        Json(json!({ "success": true, "fairness": v })),
    ))
}

async fn leave_handler(State(app): Shared, Query(q): Query<ClinicQuery>) -> Reply {
    let id = app.apply_leave(q.clinic_id, q.staff_id, q.annual).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "success": true, "id": id })),
    ))
}

async fn login_handler(State(app): Shared, Query(q): Query<ClinicQuery>) -> Reply {
    app.login(q.clinic_id, q.admin)?;
    Ok((StatusCode::OK, Json(json!({ "success": true }))))
}

/// A route that does nothing, for the load benchmark.
async fn ping() -> &'static str {
    "pong"
}

/// The service's routes under `PerfmonLayer` (unless `with_layer` is false: the load benchmark's
/// baseline). `main` merges the monitoring routes outside the layer (so that polling the metrics
/// or the dashboard does not count as the service's traffic) or serves them on their own port.
pub(crate) fn router(app: Arc<App>, with_layer: bool) -> Router {
    let routes = Router::new()
        .route("/api/staff", get(staff_handler))
        .route("/api/schedule/assign", post(assign_handler))
        .route("/api/stats/fairness", get(fairness_handler))
        .route("/api/leave", post(leave_handler))
        .route("/api/auth/login", post(login_handler))
        .route("/api/ping", get(ping))
        .with_state(app);
    if with_layer {
        routes.layer(PerfmonLayer::new())
    } else {
        routes
    }
}
