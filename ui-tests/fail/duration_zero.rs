use perfmon_runtime::measure;

#[measure("calc", threshold = "0ms")]
fn calc() {}

fn main() {}
