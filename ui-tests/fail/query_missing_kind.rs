use perfmon_runtime::track_query;

#[track_query(table = "Staff")]
fn find() {}

fn main() {}
