//! No request amplification (issue 10, item 6): long-window requests of the monitoring endpoint,
//! however many, cost the application's async workers next to nothing; their work runs on
//! perfmon's read pool. Measured in CPU time per thread (`/proc/self/task`), which the work
//! done decides, not wall-clock latency, which a shared machine's noise decides: the latency
//! figures are the `attack` benchmark's.
//!
//! Real Redis with a few thousand stored series, real HTTP over TCP. Its own test binary: it
//! reads the CPU time of the process' threads.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use perfmon_runtime::__tiers::{Aggregates, RedisTier};
use perfmon_runtime::http::heavy_read_stats;
use perfmon_runtime::*;
use perfmon_tests::{cpu_by_thread, http, redis_url, serve_ping_and_monitoring, unique_prefix};

const QUERIES: [&str; 4] = [
    "/api/monitoring/metrics?window=24h&scope=cluster",
    "/api/monitoring/metrics?type=api&window=24h&scope=cluster",
    "/api/monitoring/metrics?type=sla&window=24h&scope=cluster",
    "/api/monitoring/metrics?type=api&window=7d&scope=cluster",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_window_requests_cost_the_applications_workers_next_to_nothing() {
    // 10 instances × 200 routes, 6 minutes each over the last day
    let url = redis_url();
    let prefix = unique_prefix("attack");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    for i in 0..10 {
        let mut agg = Aggregates::default();
        let mut tier = RedisTier::connect(&url, &prefix, &format!("node-{i}"), "run")
            .await
            .expect("Redis");
        for m in 0..6u64 {
            for r in 0..200u64 {
                let values: Vec<u64> = (0..20).map(|k| 1_000_000 + (k * 7919 + r) * 1000).collect();
                agg.api(
                    now / 60 - 5 - m * 180,
                    "GET",
                    &format!("/api/a/{r}"),
                    200,
                    &values,
                );
            }
        }
        tier.write(&agg.take_flush(now), now).await.expect("write");
    }

    let perf = init(
        Config::builder()
            .redis_url(&url)
            .key_prefix(&prefix)
            .max_heavy_reads(QUERIES.len())
            .heavy_read_cache_ttl(Duration::ZERO)
            .flush_interval(Duration::from_secs(3600))
            .no_alerts()
            .build(),
    )
    .await
    .expect("init");
    let addr = serve_ping_and_monitoring().await;

    // rounds of the four long reads at once, from client threads, until the read pool has done
    // a measurable amount of work
    let before = cpu_by_thread();
    let loads = heavy_read_stats().loads;
    let mut rounds = 0;
    let spent = |now: &BTreeMap<String, f64>, name: &str| {
        now.get(name).unwrap_or(&0.0) - before.get(name).unwrap_or(&0.0)
    };
    while rounds < 40 && spent(&cpu_by_thread(), "perfmon-read") < 1.0 {
        let addr = addr.clone();
        let statuses = tokio::task::spawn_blocking(move || {
            let clients: Vec<_> = QUERIES
                .iter()
                .map(|q| {
                    let addr = addr.clone();
                    std::thread::spawn(move || http(&addr, "GET", q).0)
                })
                .collect();
            clients
                .into_iter()
                .map(|c| c.join().expect("client"))
                .collect::<Vec<_>>()
        })
        .await
        .expect("clients");
        assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
        rounds += 1;
    }
    let after = cpu_by_thread();
    let (pool, workers) = (
        spent(&after, "perfmon-read"),
        spent(&after, "tokio-rt-worker"),
    );
    println!(
        "{rounds} rounds, {} loads: read pool {pool:.2} s of CPU, the application's async workers {workers:.2} s",
        heavy_read_stats().loads - loads
    );
    assert!(pool >= 1.0, "the loads ran on the read pool: {after:?}");
    // the workers accept the connections and write the answers; the reads' work is elsewhere
    // (before: every load ran on them, so they spent at least what the pool spends now)
    assert!(
        workers < pool / 5.0,
        "the workers spent {workers:.2} s against the pool's {pool:.2} s"
    );
    perf.shutdown().await.expect("shutdown");
}
