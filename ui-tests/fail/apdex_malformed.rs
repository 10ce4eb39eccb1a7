use perfmon_runtime::{track_api, track_query};

#[track_api(path = "/api/staff", apdex = "fast")]
fn handler() {}

#[track_query(table = "Staff", apdex = "300ms")]
fn query() {}

fn main() {}
