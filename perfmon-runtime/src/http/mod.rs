//! HTTP (feature `axum`): [`PerfmonLayer`] records every request once; [`router`] serves the
//! monitoring endpoints, Prometheus text and the dashboard.

pub(crate) mod access;
mod dashboard;
pub(crate) mod heavy;
pub(crate) mod layer;
mod routes;

pub use heavy::{heavy_read_stats, HeavyReadStats};
pub use layer::{PerfmonLayer, PerfmonService, ResponseFuture, UNMATCHED};
pub use routes::{router, PARAMS, SCOPES, TYPES, WINDOWS};
