//! A panic inside a tracked batch is recorded as a failure and still propagates; a panicking
//! handler counts as a 500, a panicking query as failed, a panicking cache lookup as an error.
use perfmon_runtime::{collector, track_api, track_batch, track_cache, track_query};
use std::panic::catch_unwind;

#[track_batch("exploding")]
fn exploding(explode: bool) {
    if explode {
        panic!("batch failed");
    }
}

#[track_api(path = "/panics")]
fn handler() -> u32 {
    panic!("handler failed")
}

#[track_query(table = "T", kind = "read")]
fn query() -> u32 {
    panic!("query failed")
}

#[track_cache(key = "panicky")]
fn cache() -> Option<u32> {
    panic!("cache failed")
}

fn main() {
    std::panic::set_hook(Box::new(|_| {}));
    let payload = catch_unwind(|| exploding(true)).expect_err("the panic propagates");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"batch failed"));
    exploding(false);
    assert!(catch_unwind(handler).is_err());
    assert!(catch_unwind(query).is_err());
    assert!(catch_unwind(cache).is_err());

    let b = &collector().batch_stats().batches["exploding"];
    assert_eq!((b.runs, b.successes, b.failures), (2, 1, 1));
    assert!(b.last_failure.is_some() && b.last_success.is_some());
    assert_eq!(collector().api_stats_for("/panics").status_codes.get(&500), Some(&1));
    assert_eq!(collector().database_stats().tables["T"].totals.errors, 1);
    assert_eq!(collector().cache_stats().keys["panicky"].errors, 1);
}
