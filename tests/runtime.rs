//! The owned runtime: what `init` starts and `shutdown` (or drop) stops, against the real Redis
//! and PostgreSQL — custom alert rules may read the collector while flushes run, a failed `init`
//! leaves nothing behind, and a handle dropped outside its runtime still flushes.

use perfmon_runtime::alerts::{AlertConfig, Condition, Reading, Rule, Severity};
use perfmon_runtime::*;
use perfmon_tests::{database_url, redis_url, thread_names, unique_prefix};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// One `init` at a time in this process.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn api(path: &str) {
    record_api_metric(ApiMetric {
        method: "GET",
        path,
        status_code: 200,
        duration: Duration::from_millis(2),
        timestamp: SystemTime::now(),
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_rules_may_read_the_collector_while_flushes_run() {
    let _turn = TURN.lock().await;
    let reads = Arc::new(AtomicU64::new(0));
    let seen = reads.clone();
    // A rule that drains the shards itself. It used to run under the engine's lock while a
    // flush held every shard and waited for that lock: a deadlock.
    let rule = Rule::new(
        "reads-the-collector",
        Severity::Warning,
        Condition::Custom(Arc::new(move |_: &perfmon_runtime::alerts::AlertInputs| {
            let total = collector().api_stats().total_requests;
            seen.fetch_add(1, Ordering::SeqCst);
            vec![Reading {
                key: String::new(),
                value: total as f64,
                breached: false,
                recovered: true,
            }]
        })),
    );
    let pm = init(
        Config::builder()
            .redis_url(redis_url())
            .key_prefix(unique_prefix("rules"))
            .instance("rules-a")
            .flush_interval(Duration::from_millis(1))
            .alerts(AlertConfig {
                tick: Duration::from_millis(1),
                rules: vec![rule],
                ..AlertConfig::default()
            })
            .build(),
    )
    .await
    .expect("init");
    let recorder = std::thread::spawn(|| {
        for _ in 0..100_000 {
            api("/runtime/rules");
        }
    });
    let work = async {
        for _ in 0..100 {
            pm.flush().await.expect("flush");
            pm.evaluate_alerts().await.expect("evaluate");
        }
    };
    // a deadlock would hang here; the bound turns it into a failure
    tokio::time::timeout(Duration::from_secs(120), work)
        .await
        .expect("flushes and rule evaluations never wait for each other");
    recorder.join().expect("recorder");
    assert!(
        reads.load(Ordering::SeqCst) >= 100,
        "the rule ran on every evaluation"
    );
    tokio::time::timeout(Duration::from_secs(60), pm.shutdown())
        .await
        .expect("shutdown is bounded")
        .expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_init_that_fails_on_one_backend_leaves_nothing_behind() {
    let _turn = TURN.lock().await;
    // PostgreSQL connects and migrates; Redis is unreachable
    let e = init(
        Config::builder()
            .database_url(database_url())
            .redis_url("redis://127.0.0.1:1/")
            .key_prefix(unique_prefix("half"))
            .build(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            InitError::Unreachable {
                backend: "Redis",
                ..
            }
        ),
        "{e}"
    );
    let h = system_health().await;
    assert!(
        !h.checks.contains_key("database"),
        "no check of the pool that init closed again: {:?}",
        h.checks.keys().collect::<Vec<_>>()
    );
    assert_eq!(h.database, None);
    // and the claim was released: the next init starts
    let pm = init(Config::builder().no_alerts().build())
        .await
        .expect("init after a failed one");
    pm.shutdown().await.expect("shutdown");
}

#[test]
fn a_handle_dropped_outside_its_runtime_still_flushes() {
    let _turn = TURN.blocking_lock();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let prefix = unique_prefix("dropped");
    let pm = rt
        .block_on(init(
            Config::builder()
                .redis_url(redis_url())
                .key_prefix(&prefix)
                .instance("dropped-a")
                .flush_interval(Duration::from_secs(3600))
                .no_alerts()
                .build(),
        ))
        .expect("init");
    api("/runtime/dropped");
    // No shutdown().await, and no runtime context here: the drop asks the flush worker for a
    // last flush and waits for it.
    drop(pm);
    let fields: Vec<String> = rt.block_on(indexed_series(&prefix));
    assert!(
        fields.iter().any(|f| f.contains("/runtime/dropped")),
        "the last flush wrote the minute: {fields:?}"
    );
}

/// The series named in the minute indexes under `prefix` (each minute's index names the series
/// written in it).
async fn indexed_series(prefix: &str) -> Vec<String> {
    use redis::AsyncCommands;
    let mut r = redis::Client::open(redis_url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let keys: Vec<String> = r.keys(format!("{prefix}:m1:*:ix")).await.expect("keys");
    let mut series = Vec::new();
    for k in keys {
        let s: Vec<String> = r.hvals(&k).await.expect("hvals");
        series.extend(s);
    }
    series
}

#[test]
fn the_tiers_write_while_the_applications_runtime_is_not_driven() {
    let _turn = TURN.blocking_lock();
    // the application's runtime: current-thread, driven only inside `block_on`
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let prefix = unique_prefix("undriven");
    let pm = rt
        .block_on(init(
            Config::builder()
                .redis_url(redis_url())
                .key_prefix(&prefix)
                .flush_interval(Duration::from_millis(100))
                .no_alerts()
                .build(),
        ))
        .expect("init");
    api("/runtime/undriven");
    // This thread now waits without driving its runtime (as a busy or blocked application
    // would); the periodic flush runs on perfmon's own I/O thread and writes the minute.
    let p = prefix.clone();
    let written = std::thread::spawn(move || {
        let other = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        other.block_on(async {
            for _ in 0..600 {
                if indexed_series(&p)
                    .await
                    .iter()
                    .any(|f| f.contains("/runtime/undriven"))
                {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        })
    })
    .join()
    .expect("checker");
    assert!(
        written,
        "the flush ran while the application's runtime was not driven"
    );
    let threads = thread_names();
    assert!(threads.iter().any(|n| n == "perfmon-io"), "{threads:?}");
    rt.block_on(pm.shutdown()).expect("shutdown");
}
