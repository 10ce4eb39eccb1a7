use perfmon_runtime::track_api;

#[track_api(path = "api/schedule")]
fn handler() {}

fn main() {}
