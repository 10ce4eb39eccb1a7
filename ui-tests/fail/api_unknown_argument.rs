use perfmon_runtime::track_api;

#[track_api(slo = "3s")]
fn handler() {}

fn main() {}
