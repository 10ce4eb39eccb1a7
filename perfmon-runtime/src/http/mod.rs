//! HTTP (feature `axum`): [`PerfmonLayer`] records every request once; [`router`] serves the
//! monitoring endpoints, Prometheus text and the dashboard.

mod dashboard;
pub(crate) mod layer;
mod routes;

pub use layer::{PerfmonLayer, PerfmonService, ResponseFuture, UNMATCHED};
pub use routes::{router, PARAMS, SCOPES, TYPES, WINDOWS};
