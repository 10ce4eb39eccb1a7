use perfmon_runtime::measure;

#[measure("calc", slow = "1s")]
fn calc() {}

fn main() {}
