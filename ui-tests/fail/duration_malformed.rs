use perfmon_runtime::track_api;

#[track_api(slow = "1..5s")]
fn handler() {}

fn main() {}
