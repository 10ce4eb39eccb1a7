//! Built with the feature `off`: every macro on every fn shape leaves the fn unchanged — same
//! signatures, same results, `?`, early returns, panics and trait impls as written — and nothing
//! is recorded.
use perfmon_runtime::{
    collector, measure, record_api_metric, track_api, track_batch, track_cache, track_query,
    ApiMetric,
};
use std::fmt::Display;

#[track_api]
fn plain() -> u32 {
    7
}

#[track_api(slow = "3s", method = "POST", path = "/api/schedule/assign", apdex = "300ms")]
fn with_question_mark(input: &str) -> Result<u32, std::num::ParseIntError> {
    let n: u32 = input.parse()?;
    Ok(n * 2)
}

#[track_api(path = "/early")]
fn early_return(flag: bool) -> &'static str {
    if flag {
        return "early";
    }
    "late"
}

#[track_query(table = "Staff", kind = "read")]
fn generic<T: Clone + Default, const N: usize>(items: [T; N]) -> Vec<T>
where
    T: std::fmt::Debug,
{
    items.to_vec()
}

#[measure("impl-trait")]
fn impl_trait(x: impl Display) -> impl Display {
    format!("<{x}>")
}

#[track_cache(key = "fairness:stats")]
fn cached(hit: bool) -> Option<f64> {
    hit.then_some(0.93)
}

#[track_cache(key = "fairness:stats")]
fn cached_result(fail: bool) -> Result<Option<u8>, String> {
    if fail {
        Err("down".into())
    } else {
        Ok(None)
    }
}

#[track_batch("weekly-assignment")]
fn batch(fail: bool) -> Result<(), String> {
    if fail {
        Err("no staff".into())
    } else {
        Ok(())
    }
}

#[track_batch("panicking")]
fn panics() {
    panic!("boom");
}

struct Service {
    calls: u32,
}

impl Service {
    #[track_api(path = "/by-ref")]
    fn by_ref(&self) -> u32 {
        self.calls
    }

    #[track_api(path = "/by-mut")]
    fn by_mut(&mut self) -> u32 {
        self.calls += 1;
        self.calls
    }

    #[track_api(path = "/by-value")]
    fn by_value(self) -> u32 {
        self.calls
    }

    #[track_api(path = "/boxed")]
    fn boxed(self: Box<Self>) -> u32 {
        self.calls
    }

    #[track_query(table = "Staff", kind = "write", op = "save")]
    async fn save(&self, n: u32) -> Result<u32, String> {
        tokio::task::yield_now().await;
        Ok(self.calls + n)
    }
}

trait Handler {
    fn handle(&self) -> u32;
    async fn handle_async(&self) -> u32;
}

impl Handler for Service {
    #[track_api(path = "/trait")]
    fn handle(&self) -> u32 {
        self.calls * 10
    }

    #[track_api(path = "/trait/async")]
    async fn handle_async(&self) -> u32 {
        self.calls * 100
    }
}

#[async_trait::async_trait]
trait Job {
    async fn run(&self) -> u32;
}

#[async_trait::async_trait]
impl Job for Service {
    #[track_batch("async-trait-job")]
    async fn run(&self) -> u32 {
        self.calls + 1000
    }
}

#[track_api(path = "/async")]
async fn async_fn(x: u32) -> Result<u32, String> {
    tokio::task::yield_now().await;
    if x == 0 {
        return Err("zero".into());
    }
    Ok(x + 1)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(plain(), 7);
    assert_eq!(with_question_mark("21"), Ok(42));
    assert!(with_question_mark("x").is_err());
    assert_eq!(early_return(true), "early");
    assert_eq!(early_return(false), "late");
    assert_eq!(generic([1, 2, 3]), vec![1, 2, 3]);
    assert_eq!(impl_trait(5).to_string(), "<5>");
    assert_eq!(cached(true), Some(0.93));
    assert_eq!(cached_result(true), Err("down".to_string()));
    assert_eq!(batch(true), Err("no staff".to_string()));
    assert!(std::panic::catch_unwind(panics).is_err());
    let mut s = Service { calls: 1 };
    assert_eq!(s.by_ref(), 1);
    assert_eq!(s.by_mut(), 2);
    assert_eq!(s.save(3).await, Ok(5));
    assert_eq!(s.handle(), 20);
    assert_eq!(s.handle_async().await, 200);
    assert_eq!(s.run().await, 1002);
    assert_eq!(Box::new(Service { calls: 4 }).boxed(), 4);
    assert_eq!(s.by_value(), 2);
    assert_eq!(async_fn(0).await, Err("zero".to_string()));
    assert_eq!(async_fn(1).await, Ok(2));
    record_api_metric(ApiMetric {
        method: "GET",
        path: "/by-hand",
        status_code: 200,
        duration: std::time::Duration::from_millis(5),
        timestamp: std::time::SystemTime::now(),
    });

    // nothing was recorded, by the macros or by hand
    let c = collector();
    assert_eq!(c.recorder_stats().events_processed, 0);
    assert_eq!(c.api_stats().total_requests, 0);
    assert!(c.batch_stats().batches.is_empty());
    assert!(c.function_stats().functions.is_empty());
}
