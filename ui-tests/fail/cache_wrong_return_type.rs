use perfmon_runtime::track_cache;

#[track_cache(key = "count")]
fn count() -> u32 { 3 }

fn main() {}
