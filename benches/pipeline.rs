//! The whole pipeline with both backends on: events recorded per second while flushing, the
//! flush's CPU share while recording 100,000 events per second, and Redis commands and bytes
//! per flush.
//!
//! Needs Redis and PostgreSQL on localhost (`bash .ci/test` starts them), or
//! `PERFMON_BENCH_REDIS_URL` / `PERFMON_BENCH_DATABASE_URL`. Writes under a fresh key prefix and
//! schema, and drops the schema at the end.
//!
//! `cargo bench -p perfmon-benches --bench pipeline`

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use perfmon_runtime::{
    collector, measure, record_api_metric, track_api, ApiMetric, Config, FlushReport,
};

#[track_api(path = "/bench/pipeline")]
#[inline(never)]
fn handler(x: u64) -> u64 {
    black_box(x).wrapping_mul(31)
}

#[measure("pipeline-fn")]
#[inline(never)]
fn work(x: u64) -> u64 {
    black_box(x) ^ 0x5555
}

/// CPU seconds this thread has used (Linux; 10 ms resolution).
fn thread_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let redis = std::env::var("PERFMON_BENCH_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let database = std::env::var("PERFMON_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_nanos();
    let prefix = format!("perfmon-bench-{nanos}");
    let quick = std::env::args().any(|a| a == "--quick");
    let secs = if quick { 3 } else { 10 };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let config = Config::builder()
        .redis_url(&redis)
        .database_url(&database)
        .key_prefix(&prefix)
        .instance("bench")
        .flush_interval(Duration::from_secs(3600)) // this benchmark flushes itself, every second
        .build();
    let pm = rt.block_on(perfmon_runtime::init(config))?;
    // a realistic spread of series: 200 routes
    let now = SystemTime::now();
    for r in 0..200 {
        record_api_metric(ApiMetric {
            method: "GET",
            path: &format!("/bench/route/{r}"),
            status_code: 200,
            duration: Duration::from_micros(100 + r),
            timestamp: now,
        });
    }

    // 1. recording at full speed on two threads while this thread flushes every second
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (events, reports) = std::thread::scope(|s| {
        let recorders: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        black_box(handler(n));
                        black_box(work(n));
                        n += 2;
                    }
                    n
                })
            })
            .collect();
        let mut reports = Vec::new();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(secs) {
            std::thread::sleep(Duration::from_secs(1));
            reports.push(rt.block_on(pm.flush()));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let events: u64 = recorders.into_iter().map(|h| h.join().unwrap_or(0)).sum();
        (events as f64 / start.elapsed().as_secs_f64(), reports)
    });
    let ok: Vec<FlushReport> = reports
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    println!(
        "full speed, 2 recording threads, flushing every second: {:.1} M events/s recorded",
        events / 1e6
    );
    println!(
        "flushes: {} ok, {} failed",
        ok.len(),
        reports.len() - ok.len()
    );

    // 2. 100,000 events per second over 100 routes, paced, while flushing every 10 s (the
    // default interval): the flush's CPU share
    let target = 100_000u64;
    let (interval, paced_secs) = if quick {
        (Duration::from_secs(1), 3)
    } else {
        (Duration::from_secs(10), 30)
    };
    let routes: Vec<String> = (0..100).map(|r| format!("/bench/route/{r}")).collect();
    let (cpu, wall, per_flush) = std::thread::scope(|s| {
        let pacer = s.spawn(|| {
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < Duration::from_secs(paced_secs) {
                let due = (start.elapsed().as_secs_f64() * target as f64) as u64;
                while n < due {
                    let path = &routes[(n % 100) as usize];
                    let duration = Duration::from_micros(50 + n % 5000);
                    record_api_metric(ApiMetric {
                        method: "GET",
                        path,
                        status_code: 200,
                        duration,
                        timestamp: SystemTime::now(),
                    });
                    n += 1;
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            n
        });
        let cpu0 = thread_cpu();
        let start = Instant::now();
        let mut per_flush = Vec::new();
        while start.elapsed() < Duration::from_secs(paced_secs) {
            std::thread::sleep(interval);
            if let Ok(r) = rt.block_on(pm.flush()) {
                per_flush.push(r);
            }
        }
        let _ = pacer.join();
        (
            thread_cpu() - cpu0,
            start.elapsed().as_secs_f64(),
            per_flush,
        )
    });
    println!("\n100,000 events/s over 100 routes on one thread, flushing every {interval:?} on another, for {paced_secs} s:");
    println!(
        "  flush thread CPU: {:.3} s over {:.1} s = {:.2}% of one core",
        cpu,
        wall,
        cpu / wall * 100.0
    );
    let n = per_flush.len().max(1);
    let avg = |f: fn(&FlushReport) -> usize| per_flush.iter().map(f).sum::<usize>() / n;
    println!(
        "  per flush: {} Redis commands, {} bytes of aggregates, {} series-minutes, {} buckets, {} PostgreSQL rows",
        avg(|r| r.commands),
        avg(|r| r.bytes),
        avg(|r| r.minutes),
        avg(|r| r.buckets),
        avg(|r| r.rows)
    );
    let r = collector().recorder_stats();
    println!(
        "  recorder: {} events, {} flushes, {} failed, {} pending, {} dropped",
        r.events_processed, r.tier_flushes, r.tier_failures, r.tier_pending, r.tier_dropped
    );

    rt.block_on(pm.shutdown())?;
    rt.block_on(async {
        let pool = sqlx::PgPool::connect(&database).await?;
        sqlx::raw_sql(&format!("DROP SCHEMA \"{prefix}\" CASCADE"))
            .execute(&pool)
            .await?;
        Ok::<_, sqlx::Error>(())
    })?;
    Ok(())
}
