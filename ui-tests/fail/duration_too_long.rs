use perfmon_runtime::track_api;

#[track_api(slow = "2000m")]
fn handler() {}

fn main() {}
