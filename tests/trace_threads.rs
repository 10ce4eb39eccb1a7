//! Trace ids under concurrency (issue 11, item 1): its own test binary, as it fills the global
//! slow list and recent requests that `tests/trace.rs` reads.

use std::time::{Duration, SystemTime};

use perfmon_runtime::trace::{with_trace_id, TraceId};
use perfmon_runtime::*;

/// Many threads, each mixing traced and untraced calls, fill their rings (drained inline) while
/// another thread reads all the time: every event keeps its own trace id — a carrier is never
/// paired with another thread's or another call's event.
#[test]
fn traced_and_untraced_calls_from_many_threads_never_swap_trace_ids() {
    const THREADS: usize = 4;
    const CALLS: usize = 5_000; // several times a ring of 1,024
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = collector().api_stats();
            }
        });
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    let route = format!("/trace/threads/{t}");
                    let mine = TraceId::from_hex(&format!("{:032x}", 0xabc0 + t as u128));
                    for i in 0..CALLS {
                        // traced calls are slow (6 s, over the 5 s default), untraced ones not
                        let traced = i % 3 == 0;
                        let call = || {
                            record_api_metric(ApiMetric {
                                method: "GET",
                                path: &route,
                                status_code: 200,
                                duration: Duration::from_millis(if traced { 6_000 } else { 2 }),
                                timestamp: SystemTime::now(),
                            })
                        };
                        if traced {
                            with_trace_id(mine, call);
                        } else {
                            call();
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().expect("writer");
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    for t in 0..THREADS {
        let route = format!("/trace/threads/{t}");
        let mine = TraceId::from_hex(&format!("{:032x}", 0xabc0 + t as u128));
        assert_eq!(
            collector().api_stats_for(&route).total_requests,
            CALLS as u64
        );
        let slow: Vec<SlowRequest> = collector()
            .slow_requests(SLOW_LIST_SIZE)
            .into_iter()
            .filter(|r| r.path == route)
            .collect();
        assert!(slow.iter().all(|r| r.trace_id == mine), "{slow:?}");
        let recent: Vec<SlowRequest> = collector()
            .recent_requests()
            .into_iter()
            .filter(|r| r.path == route)
            .collect();
        for r in &recent {
            let slow_one = r.duration == Duration::from_secs(6);
            assert_eq!(r.trace_id.is_some(), slow_one, "{r:?}");
            assert!(r.trace_id.is_none() || r.trace_id == mine, "{r:?}");
        }
    }
}
