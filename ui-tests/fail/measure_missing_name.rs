use perfmon_runtime::measure;

#[measure(threshold = "1s")]
fn calc() {}

fn main() {}
