use perfmon_runtime::track_query;

#[track_query(table = "Staff", kind = "read", tabel = "Staff")]
fn find() {}

fn main() {}
