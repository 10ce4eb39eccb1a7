//! `crate = ".."` for a renamed or re-exported runtime.
mod reexport {
    pub use perfmon_runtime as pm;
}

use perfmon_runtime::{measure, track_api, track_batch, track_cache, track_query};

#[track_api(crate = "reexport::pm", path = "/renamed")]
fn api() {}

#[track_query(crate = "crate::reexport::pm", table = "T", kind = "read")]
fn query() {}

#[track_batch("renamed-batch", crate = "reexport::pm")]
fn batch() {}

#[track_cache(key = "renamed", crate = "::perfmon_runtime")]
fn cache() -> Option<u8> {
    None
}

#[measure("renamed-fn", crate = "reexport::pm")]
fn measured() {}

fn main() {
    api();
    query();
    batch();
    cache();
    measured();
    let c = reexport::pm::collector();
    assert_eq!(c.api_stats_for("/renamed").total_requests, 1);
    assert_eq!(c.function_stats().functions["renamed-fn"].calls, 1);
}
