//! Rendering for the outside world: Prometheus families and their text writer (`prometheus`),
//! Prometheus rules generated from the configuration ([`prometheus_rules`]), and the JSON
//! objects the HTTP routes serve (`json`). Imports `core`, `pipeline`, `read` and
//! `ops`; knows nothing of HTTP.

pub(crate) mod json;
pub(crate) mod prometheus;
pub(crate) mod rules;

pub use json::metrics_json;
pub use prometheus::Format;
pub use rules::{prometheus_rules, RuleSource};
