use perfmon_runtime::track_api;

#[track_api(slo = "1s", method = "FETCH", slow = "fast")]
fn handler() {}

fn main() {}
