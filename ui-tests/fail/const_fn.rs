use perfmon_runtime::measure;

#[measure("calc")]
const fn calc() -> u32 { 1 }

fn main() {}
