use perfmon_runtime::track_api;

#[track_api(slow = 3)]
fn handler() {}

fn main() {}
