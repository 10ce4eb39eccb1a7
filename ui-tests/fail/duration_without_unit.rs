use perfmon_runtime::track_query;

#[track_query(table = "T", kind = "read", slow = "300")]
fn q() {}

fn main() {}
