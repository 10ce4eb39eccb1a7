use perfmon_runtime::track_batch;

#[track_batch]
fn weekly() {}

fn main() {}
