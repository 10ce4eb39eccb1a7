use perfmon_runtime::measure;

struct S;

#[measure("calc")]
impl S {}

fn main() {}
