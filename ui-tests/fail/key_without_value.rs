use perfmon_runtime::track_api;

#[track_api(slow)]
fn handler() {}

fn main() {}
