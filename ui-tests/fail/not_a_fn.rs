use perfmon_runtime::track_api;

#[track_api]
struct Handler;

fn main() {}
