use perfmon_runtime::track_batch;

#[track_batch("weekly", retries = "3")]
fn weekly() {}

fn main() {}
