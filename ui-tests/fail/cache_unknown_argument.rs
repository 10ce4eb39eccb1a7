use perfmon_runtime::track_cache;

#[track_cache(key = "k", ttl = "5s")]
fn lookup() -> Option<u8> { None }

fn main() {}
