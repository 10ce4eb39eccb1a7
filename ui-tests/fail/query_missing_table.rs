use perfmon_runtime::track_query;

#[track_query(kind = "read")]
fn find() {}

fn main() {}
