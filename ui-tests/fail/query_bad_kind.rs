use perfmon_runtime::track_query;

#[track_query(table = "Staff", kind = "update")]
fn update() {}

fn main() {}
