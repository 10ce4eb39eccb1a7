use perfmon_runtime::measure;

#[measure("calc", crate = "not a path")]
fn calc() {}

fn main() {}
