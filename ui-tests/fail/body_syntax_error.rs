use perfmon_runtime::{measure, track_api, track_cache, track_query};

#[track_api]
fn handler() -> u32 {
    let x = 1 +;
    x
}

#[measure("calc")]
async fn calc() -> u32 {
    let y = 2 3;
    y
}

#[track_query(table = "Staff", kind = "read")]
async fn find_staff(id: u32) -> Result<Option<u32>, String> {
    #![allow(unused_variables)]
    let found = Some(id)
    Ok(found)
}

#[track_cache(key = "stats")]
fn stats() -> Option<u32> {
    let s = match 1 { 1 => };
    s
}

fn main() {}
