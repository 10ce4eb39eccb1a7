use perfmon_runtime::track_batch;

#[track_batch("weekly", name = "monthly")]
fn run() {}

fn main() {}
