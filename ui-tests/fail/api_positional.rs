use perfmon_runtime::track_api;

#[track_api("/api/schedule")]
fn handler() {}

fn main() {}
