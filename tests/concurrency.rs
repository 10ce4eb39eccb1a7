//! Eight threads recording at full speed lose no event: counts are exact, also while another
//! thread keeps reading statistics (which drains the rings concurrently).

use perfmon_runtime::{collector, measure, record_api_metric, track_api, ApiMetric};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[measure("concurrent-fn")]
fn work(x: u64) -> u64 {
    x.wrapping_mul(31) ^ 7
}

#[track_api(path = "/concurrent")]
fn handler(i: u64) -> Result<u64, String> {
    if i % 10 == 0 {
        Err("every tenth fails".into())
    } else {
        Ok(i)
    }
}

const THREADS: u64 = 8;
const CALLS: u64 = 100_000;

#[test]
fn eight_threads_lose_nothing() {
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = collector().function_stats();
                reads += 1;
            }
            reads
        })
    };
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                let mut acc = 0u64;
                for i in 0..CALLS {
                    acc = acc.wrapping_add(work(i));
                    let _ = handler(i);
                    if i % 1000 == 0 {
                        record_api_metric(ApiMetric {
                            method: "GET",
                            path: "/concurrent-hand",
                            status_code: 200,
                            duration: Duration::from_micros(t * 100 + 1),
                            timestamp: SystemTime::now(),
                        });
                    }
                }
                acc
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().expect("reader") > 0);

    let f = &collector().function_stats().functions["concurrent-fn"];
    assert_eq!(f.calls, THREADS * CALLS);
    let api = collector().api_stats_for("/concurrent");
    assert_eq!(api.total_requests, THREADS * CALLS);
    assert_eq!(api.status_codes[&500], THREADS * CALLS / 10);
    assert_eq!(api.status_codes[&200], THREADS * CALLS * 9 / 10);
    assert_eq!(
        collector().api_stats_for("/concurrent-hand").total_requests,
        THREADS * CALLS / 1000
    );
    let r = collector().recorder_stats();
    assert_eq!(r.late_events, 0);
}
