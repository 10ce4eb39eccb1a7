//! Local collectors: code run under `Collector::scope` records into that collector only, so
//! tests (these ones, in parallel) see exact counts of their own calls and nothing of the
//! others', and the process-wide collector sees none of it.

use perfmon_runtime::*;
use std::time::{Duration, SystemTime};

#[track_api(path = "/local/shared")]
fn shared() -> Result<(), std::io::Error> {
    Ok(())
}

#[measure("local-parse", threshold = "1s")]
fn parse(n: u64) -> u64 {
    n + 1
}

#[track_query(table = "LocalStaff", kind = "read")]
fn find_staff() -> Result<Vec<u32>, String> {
    Ok(vec![1, 2])
}

fn by_hand(path: &str, status: u16) {
    record_api_metric(ApiMetric {
        method: "POST",
        path,
        status_code: status,
        duration: Duration::from_millis(7),
        timestamp: SystemTime::now(),
    });
}

/// Records `n` calls of the same route in a collector of its own and checks the exact count;
/// several tests run this at once on other threads, with other counts.
fn exact_in_isolation(n: u64) {
    let local = Collector::local();
    assert!(!local.is_global());
    local.scope(|| {
        for _ in 0..n {
            shared().expect("ok");
        }
        // inside the scope, collector() is the local one
        assert_eq!(collector().api_stats_for("/local/shared").total_requests, n);
    });
    assert_eq!(local.api_stats_for("/local/shared").total_requests, n);
    assert_eq!(
        Collector::default()
            .api_stats_for("/local/shared")
            .total_requests,
        0,
        "the process-wide collector saw none of the scoped calls"
    );
}

#[test]
fn parallel_tests_see_their_own_exact_counts_a() {
    exact_in_isolation(3);
}

#[test]
fn parallel_tests_see_their_own_exact_counts_b() {
    exact_in_isolation(5_000);
}

#[test]
fn parallel_tests_see_their_own_exact_counts_c() {
    exact_in_isolation(17);
}

#[test]
fn every_way_of_recording_lands_in_the_scope() {
    let local = Collector::local();
    local.scope(|| {
        assert_eq!(parse(1), 2);
        find_staff().expect("ok");
        by_hand("/local/by-hand", 201);
        by_hand("/local/by-hand", 503);
        record_business_metric("local-signup", 2.0, &[("plan", "pro")]);
        record_cache_metric(CacheMetric {
            operation: CacheOp::Miss,
            key: "local:cache:1",
            timestamp: SystemTime::now(),
        });
    });
    assert_eq!(local.function_stats().functions["local-parse"].calls, 1);
    assert_eq!(local.database_stats().tables["LocalStaff"].totals.reads, 1);
    let api = local.api_stats_for("/local/by-hand");
    assert_eq!(api.total_requests, 2);
    assert_eq!(api.error_rate, 50.0);
    let biz = &local.business_metrics().metrics["local-signup"];
    assert_eq!((biz.count, biz.sum), (1, 2.0));
    assert_eq!(local.cache_stats().keys["local:cache"].total_operations, 1);
    let snap = local.snapshot();
    assert_eq!(snap.api_stats().total_requests, 2, "one read, every figure");
    assert_eq!(snap.recent_requests().len(), 2);
    // none of it reached the process-wide collector
    let global = Collector::default();
    assert!(!global
        .function_stats()
        .functions
        .contains_key("local-parse"));
    assert_eq!(global.api_stats_for("/local/by-hand").total_requests, 0);
}

#[test]
fn more_events_than_a_ring_holds_are_all_counted() {
    // hand-recorded events always go through the ring (a tracked call is mostly counted in the
    // thread's tally instead, whose claims also drain the ring), so these fill it three times
    let local = Collector::local();
    let n = RING_CAPACITY as u64 * 3 + 7;
    local.scope(|| {
        for _ in 0..n {
            by_hand("/local/many", 200);
        }
        for i in 0..n {
            parse(i);
        }
    });
    assert_eq!(local.api_stats_for("/local/many").total_requests, n);
    assert_eq!(local.function_stats().functions["local-parse"].calls, n);
    assert!(local.recorder_stats().inline_drains >= 3);
}

#[test]
fn scopes_nest_and_a_panic_restores_the_previous_target() {
    let outer = Collector::local();
    let inner = Collector::local();
    outer.scope(|| {
        by_hand("/local/nested", 200);
        inner.scope(|| by_hand("/local/nested", 200));
        by_hand("/local/nested", 200);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            inner.scope(|| {
                by_hand("/local/nested", 200);
                panic!("a test failed inside the scope");
            })
        }));
        assert!(unwound.is_err());
        by_hand("/local/nested", 200);
    });
    assert_eq!(outer.api_stats_for("/local/nested").total_requests, 3);
    assert_eq!(inner.api_stats_for("/local/nested").total_requests, 2);
    assert!(collector().is_global(), "outside every scope again");
}

#[test]
fn threads_spawned_inside_a_scope_record_where_they_record() {
    let local = Collector::local();
    local.scope(|| {
        std::thread::spawn(|| by_hand("/local/other-thread", 200))
            .join()
            .expect("thread");
        by_hand("/local/other-thread", 200);
    });
    assert_eq!(local.api_stats_for("/local/other-thread").total_requests, 1);
    assert_eq!(
        Collector::default()
            .api_stats_for("/local/other-thread")
            .total_requests,
        1
    );
}

/// Labels are memory too: 500 routes of 200-byte labels recorded into a local collector (so the
/// global collector's histograms do not change) raise the global memory figure by at least the
/// labels' bytes, since the series registry is the process'.
#[test]
fn label_bytes_count_in_the_memory_figure() {
    let before = collector().recorder_stats().memory_bytes;
    let local = Collector::local();
    local.scope(|| {
        for i in 0..500 {
            by_hand(&format!("/label-bytes/{i:03}/{}", "x".repeat(186)), 200);
        }
    });
    assert_eq!(local.api_stats().total_requests, 500);
    let after = collector().recorder_stats().memory_bytes;
    assert!(
        after >= before + 500 * 200,
        "memory figure {before} → {after} for 100 KB of labels"
    );
}
