use perfmon_runtime::track_api;

#[track_api(method = "FETCH", path = "/x")]
fn handler() {}

fn main() {}
