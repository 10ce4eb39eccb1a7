use perfmon_runtime::track_batch;

#[track_batch("nightly")]
fn nightly(days: ) {}

fn main() {}
