//! Every async fn shape, timed from first poll to completion across every `.await`.
use perfmon_runtime::{collector, measure, track_api, track_batch, track_cache, track_query};
use std::time::Duration;

#[track_api(path = "/async/plain")]
async fn plain() -> u32 {
    tokio::time::sleep(Duration::from_millis(20)).await;
    1
}

#[track_api(path = "/async/q")]
async fn question_mark(s: &str) -> Result<u32, std::num::ParseIntError> {
    tokio::task::yield_now().await;
    let n: u32 = s.parse()?;
    Ok(n)
}

#[track_query(table = "Leave", kind = "write", op = "create")]
async fn early(flag: bool) -> Option<u32> {
    if flag {
        return None;
    }
    tokio::task::yield_now().await;
    Some(1)
}

#[measure("async-generic")]
async fn generic<T: Send + std::fmt::Debug>(t: T) -> String {
    format!("{t:?}")
}

#[measure("async-impl")]
async fn impl_trait(x: impl std::fmt::Display + Send) -> impl std::fmt::Display {
    x.to_string()
}

#[measure("async-borrow")]
async fn borrow(s: &str) -> &str {
    &s[1..]
}

#[track_batch("async-batch")]
async fn batch(fail: bool) -> Result<(), String> {
    tokio::task::yield_now().await;
    if fail {
        Err("boom".into())
    } else {
        Ok(())
    }
}

#[track_cache(key = "async:cache")]
async fn cache(id: u32) -> Result<Option<u32>, std::io::Error> {
    Ok((id > 0).then_some(id))
}

struct Service {
    calls: u32,
}

trait Handler {
    async fn handle(&self, n: u32) -> u32;
}

impl Handler for Service {
    #[track_api(path = "/async/trait")]
    async fn handle(&self, n: u32) -> u32 {
        tokio::task::yield_now().await;
        n + self.calls
    }
}

impl Service {
    #[measure("async-mut")]
    async fn bump(&mut self) -> u32 {
        self.calls += 1;
        self.calls
    }

    #[measure("async-owned")]
    async fn finish(self) -> u32 {
        self.calls
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(plain().await, 1);
    assert_eq!(question_mark("5").await, Ok(5));
    assert!(question_mark("x").await.is_err());
    assert_eq!(early(true).await, None);
    assert_eq!(early(false).await, Some(1));
    assert_eq!(generic(3u8).await, "3");
    assert_eq!(impl_trait(4).await.to_string(), "4");
    assert_eq!(borrow("abc").await, "bc");
    assert!(batch(true).await.is_err());
    assert!(batch(false).await.is_ok());
    assert_eq!(cache(0).await.unwrap(), None);
    let mut s = Service { calls: 0 };
    assert_eq!(s.bump().await, 1);
    assert_eq!(s.handle(1).await, 2);
    assert_eq!(s.finish().await, 1);

    let plain = collector().api_stats_for("/async/plain");
    assert_eq!(plain.total_requests, 1);
    assert!(plain.max_duration >= Duration::from_millis(20), "the awaited sleep is inside the timing: {plain:?}");
    assert_eq!(collector().api_stats_for("/async/q").status_codes.get(&500), Some(&1));
    assert_eq!(collector().api_stats_for("/async/trait").total_requests, 1);
    assert_eq!(collector().database_stats().tables["Leave"].writes(), 2);
    let b = &collector().batch_stats().batches["async-batch"];
    assert_eq!((b.successes, b.failures), (1, 1));
    assert_eq!(collector().cache_stats().keys["async:cache"].misses, 1);
    let f = collector().function_stats().functions;
    for name in ["async-generic", "async-impl", "async-borrow", "async-mut", "async-owned"] {
        assert_eq!(f[name].calls, 1, "{name}");
    }
}

trait Writes {
    fn writes(&self) -> u64;
}
impl Writes for perfmon_runtime::TableStats {
    fn writes(&self) -> u64 {
        self.totals.writes
    }
}
