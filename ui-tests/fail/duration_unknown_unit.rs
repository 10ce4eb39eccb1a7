use perfmon_runtime::track_api;

#[track_api(slow = "3x")]
fn handler() {}

fn main() {}
