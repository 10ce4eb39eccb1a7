//! Apdex thresholds: each route's T — from `ConfigBuilder::route_apdex`
//! (`PERFMON_ROUTE_APDEX`), else its `#[track_api(apdex = "…")]`, else
//! `ConfigBuilder::apdex_threshold` (`PERFMON_APDEX_THRESHOLD`, 500 ms by default). Reads resolve
//! a route's T here, also for routes read back from the tiers; a T named in code is known only
//! in a process that served the route, so a reader of other services' routes (`perfmon report`
//! from the tiers, a cluster read) needs them in its configuration.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

/// The default Apdex threshold T.
pub(crate) const DEFAULT_NS: u64 = 500_000_000;

/// Routes whose T a call site named, at most: call sites are `static`s, so this is never reached
/// by anything but a program with that many annotated routes.
const MAX_CODE_ROUTES: usize = 10_000;

#[derive(Default)]
struct Table {
    default_ns: u64,
    config: HashMap<String, u64>,
    code: HashMap<String, u64>,
}

fn table() -> &'static RwLock<Table> {
    static TABLE: OnceLock<RwLock<Table>> = OnceLock::new();
    TABLE.get_or_init(|| {
        RwLock::new(Table {
            default_ns: DEFAULT_NS,
            ..Table::default()
        })
    })
}

/// Applies the configuration: the default T and the routes' own.
pub(crate) fn configure(default_ns: u64, routes: &[(String, u64)]) {
    let mut t = table().write().unwrap_or_else(|e| e.into_inner());
    t.default_ns = default_ns;
    t.config = routes.iter().cloned().collect();
}

/// A call site's `apdex = "…"` for its route (the first one registered wins).
pub(crate) fn set_code(route: &str, ns: u64) {
    let mut t = table().write().unwrap_or_else(|e| e.into_inner());
    if t.code.len() < MAX_CODE_ROUTES && !t.code.contains_key(route) {
        t.code.insert(route.to_string(), ns);
    }
}

/// The route's T, in ns.
pub(crate) fn threshold_ns(route: &str) -> u64 {
    let t = table().read().unwrap_or_else(|e| e.into_inner());
    t.config
        .get(route)
        .or_else(|| t.code.get(route))
        .copied()
        .unwrap_or(t.default_ns)
}

/// The default T, in ns.
pub(crate) fn default_ns() -> u64 {
    table().read().unwrap_or_else(|e| e.into_inner()).default_ns
}
