use perfmon_runtime::track_cache;

#[track_cache]
fn lookup() -> Option<u8> { None }

fn main() {}
