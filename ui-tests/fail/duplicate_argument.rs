use perfmon_runtime::track_api;

#[track_api(slow = "1s", slow = "2s")]
fn handler() {}

fn main() {}
