//! Health checks share one flight: a thousand concurrent callers run each check once, and the
//! checks' timeouts take no thread each. (Its own test binary: the health registry is
//! process-wide.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use perfmon_runtime::{register_health_check, system_health, HealthCheck};

static RUNS: AtomicUsize = AtomicUsize::new(0);
const CHECKS: usize = 20;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_callers_share_one_run_of_each_frozen_check() {
    // twenty checks of a dependency that never answers (a frozen Redis)
    for n in 0..CHECKS {
        register_health_check(
            HealthCheck::new(format!("frozen-{n}"), || async {
                RUNS.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<Result<String, String>>().await
            })
            .timeout(Duration::from_millis(800)),
        );
    }
    let before = threads();
    let callers: Vec<_> = (0..1_000).map(|_| tokio::spawn(system_health())).collect();
    // wait until the checks have started (not a timing assertion: a bounded wait for a state)
    let started = Instant::now();
    while RUNS.load(Ordering::SeqCst) < CHECKS && started.elapsed() < Duration::from_secs(10) {
        tokio::task::yield_now().await;
    }
    let during = threads();
    let mut answers = Vec::new();
    for c in callers {
        answers.push(c.await.expect("a caller"));
    }
    assert_eq!(
        RUNS.load(Ordering::SeqCst),
        CHECKS,
        "each check ran once for a thousand callers"
    );
    assert!(
        during <= before + 2,
        "the checks' timeouts took threads: {before} before, {during} while they ran"
    );
    for h in &answers {
        for n in 0..CHECKS {
            let c = &h.checks[&format!("frozen-{n}")];
            assert!(!c.ok, "a frozen check fails by its timeout: {c:?}");
        }
    }
}
