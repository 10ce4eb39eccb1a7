//! A counting allocator proves that a tracked call allocates nothing after warm-up: the hot
//! path is a store into the thread's tally (or its ring, for a slow or traced call). Draining
//! and harvesting (here by the recording thread itself, when its ring fills or it claims a tally
//! entry) may allocate histogram pages for values in new ranges; that is bounded by the value
//! range, not by the number of calls.

use perfmon_runtime::{collector, measure, track_api, track_query, RING_CAPACITY};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[track_api(path = "/alloc")]
fn handler(x: u64) -> Result<u64, String> {
    if x == u64::MAX {
        Err(String::new())
    } else {
        Ok(x + 1)
    }
}

#[track_query(table = "Alloc", kind = "read")]
fn query(x: u64) -> u64 {
    x ^ 0x55
}

#[measure("alloc-fn")]
async fn measured(x: u64) -> u64 {
    x * 3
}

fn counted<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCATIONS.load(Ordering::Relaxed) - before)
}

fn poll_ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => unreachable!("never pending"),
    }
}

#[test]
fn tracked_calls_do_not_allocate_after_warm_up() {
    // warm-up: registers the series, creates this thread's ring, touches the histogram pages
    for i in 0..20_000 {
        let _ = handler(i);
        query(i);
        poll_ready(measured(i));
    }
    let _ = collector().api_stats();

    // fewer events than the ring holds: nothing but the hot path runs
    let per_kind = (RING_CAPACITY / 3 - 1) as u64;
    let (_, n) = counted(|| {
        for i in 0..per_kind {
            let _ = handler(i);
            query(i);
            poll_ready(measured(i));
        }
    });
    assert_eq!(n, 0, "{n} allocations in {} tracked calls", per_kind * 3);

    // a million calls, with the thread draining its own ring hundreds of times
    let _ = collector().api_stats();
    let (_, n) = counted(|| {
        for i in 0..1_000_000u64 {
            let _ = handler(i);
        }
    });
    assert!(
        n <= 64,
        "{n} allocations in 1,000,000 calls: must not grow with the number of calls"
    );
    assert_eq!(
        collector().api_stats_for("/alloc").total_requests,
        20_000 + per_kind + 1_000_000
    );
}
