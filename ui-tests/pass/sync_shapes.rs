//! Every sync fn shape under every macro.
use perfmon_runtime::{collector, measure, track_api, track_batch, track_cache, track_query};
use std::fmt::Display;

#[derive(Debug)]
struct NotFound;

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

#[track_query(table = "Staff", kind = "write", op = "updateMany", slow = "250ms")]
fn impl_trait_arg(name: impl Into<String>) -> impl Display {
    name.into()
}

#[measure("borrowing")]
fn returns_a_borrow<'a>(s: &'a str, _other: &str) -> &'a str {
    &s[..1]
}

#[measure("elided")]
fn elided(s: &str) -> &str {
    s.trim()
}

#[track_batch("unit-batch")]
fn unit_batch() {}

#[track_batch(name = "failing-batch")]
fn failing_batch() -> Result<(), NotFound> {
    Err(NotFound)
}

#[track_cache(key = "staff:by-id")]
fn cache_lookup(id: u32) -> Option<u32> {
    (id % 2 == 0).then_some(id)
}

#[track_cache(key = "staff:remote")]
fn cache_fallible(id: u32) -> Result<Option<u32>, String> {
    if id == 0 {
        return Err("down".into());
    }
    Ok(Some(id))
}

#[measure("unsafe-fn", threshold = "500us")]
unsafe fn raw_read(p: *const u32) -> u32 {
    unsafe { *p }
}

#[measure("never-returns-normally")]
fn diverges_sometimes(x: u32) -> u32 {
    if x > 10 {
        panic!("too big");
    }
    x
}

struct Counter {
    n: u64,
}

trait Store {
    fn get(&self, k: u32) -> Option<u32>;
    fn put(&mut self, k: u32) -> u64;
}

impl Counter {
    #[track_api(path = "/counter/new")]
    fn new() -> Self {
        Counter { n: 0 }
    }

    #[measure("by-ref")]
    fn peek(&self) -> u64 {
        self.n
    }

    #[measure("by-mut")]
    fn bump(&mut self) -> &mut Self {
        self.n += 1;
        self
    }

    #[measure("by-value")]
    fn into_inner(self) -> u64 {
        self.n
    }

    #[measure("self-box")]
    fn boxed(self: Box<Self>) -> u64 {
        self.n
    }

    #[track_query(table = "Counter", kind = "read", op = "generic_method")]
    fn generic_method<T: Display>(&self, t: T) -> String {
        format!("{t}{}", self.n)
    }
}

impl Store for Counter {
    #[track_cache(key = "store")]
    fn get(&self, k: u32) -> Option<u32> {
        (u64::from(k) < self.n).then_some(k)
    }

    #[track_query(table = "Counter", kind = "write")]
    fn put(&mut self, k: u32) -> u64 {
        self.n += u64::from(k);
        self.n
    }
}

fn main() {
    assert_eq!(plain(), 7);
    assert_eq!(with_question_mark("21"), Ok(42));
    assert!(with_question_mark("x").is_err());
    assert_eq!(early_return(true), "early");
    assert_eq!(early_return(false), "late");
    assert_eq!(generic([1u8, 2, 3]), vec![1, 2, 3]);
    assert_eq!(impl_trait_arg("kim").to_string(), "kim");
    assert_eq!(returns_a_borrow("abc", "x"), "a");
    assert_eq!(elided(" a "), "a");
    unit_batch();
    assert!(failing_batch().is_err());
    assert_eq!(cache_lookup(2), Some(2));
    assert_eq!(cache_lookup(3), None);
    assert!(cache_fallible(0).is_err());
    let v = 5u32;
    assert_eq!(unsafe { raw_read(&v) }, 5);
    std::panic::set_hook(Box::new(|_| {}));
    assert_eq!(diverges_sometimes(3), 3);
    assert!(std::panic::catch_unwind(|| diverges_sometimes(11)).is_err());

    let mut c = Counter::new();
    c.bump().bump();
    assert_eq!(c.peek(), 2);
    assert_eq!(c.generic_method("n="), "n=2");
    assert_eq!(Store::get(&c, 1), Some(1));
    assert_eq!(c.put(3), 5);
    assert_eq!(Box::new(Counter { n: 9 }).boxed(), 9);
    assert_eq!(c.into_inner(), 5);

    let api = collector().api_stats();
    assert_eq!(api.total_requests, 6);
    assert_eq!(api.status_codes.get(&500), Some(&1), "{api:?}");
    assert_eq!(collector().api_stats_for("/api/schedule/assign").total_requests, 2);
    let routes = collector().api_routes();
    assert!(routes.iter().any(|r| r.path.ends_with("::plain") && r.method == "ANY"), "{routes:?}");
    let db = collector().database_stats();
    assert_eq!(db.tables["Staff"].totals.reads, 1);
    assert_eq!(db.tables["Staff"].operations["updateMany"].writes, 1);
    assert_eq!(db.tables["Staff"].operations["generic"].reads, 1);
    assert_eq!(db.tables["Counter"].operations["put"].writes, 1);
    let batches = collector().batch_stats().batches;
    assert_eq!((batches["unit-batch"].successes, batches["failing-batch"].failures), (1, 1));
    let cache = collector().cache_stats();
    assert_eq!(cache.keys["staff:by-id"].hits, 1);
    assert_eq!(cache.keys["staff:by-id"].misses, 1);
    assert_eq!(cache.keys["staff:remote"].errors, 1);
    let f = collector().function_stats().functions;
    assert_eq!(f["never-returns-normally"].calls, 2, "a panicking call is still timed");
    assert_eq!(f["by-mut"].calls, 2);
    for name in ["by-ref", "by-value", "self-box", "borrowing", "elided", "unsafe-fn"] {
        assert_eq!(f[name].calls, 1, "{name}");
    }
}
