use perfmon_runtime::track_batch;

#[track_batch("")]
fn run() {}

fn main() {}
