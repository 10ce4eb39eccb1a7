//! The fleet benchmark: writes a fleet's aggregates through perfmon's own writers with an
//! injected clock into the real Redis and PostgreSQL, then times reads of every window and scope,
//! for one route and for every route.
//!
//! Defaults: 20 instances × 100 routes × 100 events per route-minute; every minute of the last
//! 24 h dense; one minute per hour for the 6 days before (Redis 5-minute and hourly tiers); one
//! minute per day for the year before (PostgreSQL hourly and daily rows). Prints write
//! throughput, Redis `used_memory` and PostgreSQL table sizes per aggregate, a projection of Redis
//! memory for 100 instances × 100 routes at the seed's retention, and the p50 of 20 reads (with
//! the peak extra memory of the read) for every window and scope.
//!
//! `cargo bench -p perfmon-benches --bench fleet` (`FLEET_INSTANCES`, `FLEET_ROUTES`,
//! `FLEET_EVENTS`; `PERFMON_BENCH_REDIS_URL`, `PERFMON_BENCH_DATABASE_URL`). Writes under a fresh
//! key prefix and schema and removes both at the end.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use perfmon_runtime::__tiers::{Aggregates, PgTier, RedisTier};
use perfmon_runtime::{Scope, Window};

/// Counts the bytes allocated now and at the peak, so a read's own peak can be measured.
struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = NOW.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: the caller's layout is passed on as it came.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        NOW.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Starts measuring a peak: returns the bytes allocated now.
fn peak_start() -> usize {
    let now = NOW.load(Ordering::Relaxed);
    PEAK.store(now, Ordering::Relaxed);
    now
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }

    /// Log-uniform nanoseconds between 1 ms and 2 s.
    fn duration_ns(&mut self) -> u64 {
        let u = (self.next() as f64) / ((1u64 << 53) as f64);
        (1e6 * 2000f64.powf(u)) as u64
    }
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn redis_info(conn: &mut redis::aio::MultiplexedConnection, field: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Fleet {
    routes: Vec<String>,
    events: usize,
    rng: Lcg,
    aggs: Vec<Aggregates>,
    redis: Vec<RedisTier>,
    pg: Vec<PgTier>,
    /// Flushes PostgreSQL has not been given yet (it is flushed less often in the benchmark).
    pending_pg: Vec<Option<perfmon_runtime::__tiers::Flush>>,
    written: usize,
    redis_time: Duration,
    pg_time: Duration,
    pg_rows: usize,
}

impl Fleet {
    /// Every instance records `minute` of every route, then (if `flush_at` is given) flushes
    /// to the tiers: Redis only for the last 7 days, PostgreSQL always.
    fn record(&mut self, minute: u64) {
        let mut values = vec![0u64; self.events];
        for agg in &mut self.aggs {
            for route in &self.routes {
                for v in values.iter_mut() {
                    *v = self.rng.duration_ns();
                }
                agg.api(minute, "GET", route, 200, &values);
            }
        }
    }

    /// Every instance flushes what changed: to Redis if `redis`; to PostgreSQL if `pg` (what
    /// earlier flushes carried included, as one write), else it is kept for the next.
    async fn flush(&mut self, now_secs: u64, redis: bool, pg: bool) {
        for i in 0..self.aggs.len() {
            let flush = self.aggs[i].take_flush(now_secs);
            self.written += flush.len();
            if redis {
                let t = Instant::now();
                self.redis[i]
                    .write(&flush, now_secs)
                    .await
                    .expect("Redis write");
                self.redis_time += t.elapsed();
            }
            let pending = match self.pending_pg[i].take() {
                Some(mut earlier) => {
                    earlier.absorb(flush);
                    earlier
                }
                None => flush,
            };
            if !pg {
                self.pending_pg[i] = Some(pending);
                continue;
            }
            let t = Instant::now();
            self.pg_rows += self.pg[i]
                .write(&pending, now_secs)
                .await
                .expect("PostgreSQL write");
            self.pg_time += t.elapsed();
        }
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let instances = env_or("FLEET_INSTANCES", 20);
    let routes = env_or("FLEET_ROUTES", 100);
    let events = env_or("FLEET_EVENTS", 100);
    let redis_url = std::env::var("PERFMON_BENCH_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let pg_url = std::env::var("PERFMON_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let prefix = format!("perfmon-fleet-bench-{nanos}");
    let now = (nanos / 1_000_000_000) as u64 / 60 * 60;
    println!(
        "fleet: {instances} instances × {routes} routes × {events} events per route-minute; prefix {prefix}"
    );

    // the stored form of a typical route-minute: 100 events between 1 ms and 2 s
    let mut sizes = Vec::new();
    let (mut decode, mut merge) = (Vec::new(), Vec::new());
    let mut rng = Lcg(42);
    for _ in 0..20 {
        let values: Vec<u64> = (0..100).map(|_| rng.duration_ns()).collect();
        let f = perfmon_runtime::__tiers::codec_figures(&values, 20_000);
        sizes.push(f.bytes);
        decode.push(f.decode_ns);
        merge.push(f.merge_ns);
    }
    sizes.sort_unstable();
    decode.sort_by(f64::total_cmp);
    merge.sort_by(f64::total_cmp);
    println!(
        "codec: a 100-event route-minute is {}–{} bytes (median {}); decode {:.2} µs, merge {:.2} µs (medians of 20 minutes × 20,000 rounds)",
        sizes[0],
        sizes[sizes.len() - 1],
        sizes[sizes.len() / 2],
        decode[decode.len() / 2] / 1e3,
        merge[merge.len() / 2] / 1e3
    );

    let mut admin = redis::Client::open(redis_url.as_str())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis");
    let redis_before = redis_info(&mut admin, "used_memory").await;
    let mut fleet = Fleet {
        routes: (0..routes).map(|r| format!("/api/fleet/{r}")).collect(),
        events,
        rng: Lcg(0xf1ee7),
        aggs: (0..instances).map(|_| Aggregates::default()).collect(),
        redis: Vec::new(),
        pg: Vec::new(),
        pending_pg: (0..instances).map(|_| None).collect(),
        written: 0,
        redis_time: Duration::ZERO,
        pg_time: Duration::ZERO,
        pg_rows: 0,
    };
    for i in 0..instances {
        let (name, run) = (format!("node-{i:02}"), format!("run-{i}"));
        fleet.redis.push(
            RedisTier::connect(&redis_url, &prefix, &name, &run)
                .await
                .expect("Redis"),
        );
        fleet.pg.push(
            PgTier::connect(&pg_url, &prefix, &name, &run)
                .await
                .expect("PostgreSQL"),
        );
    }

    // a year of history: one minute per day, PostgreSQL only (Redis keeps 7 days)
    let started = Instant::now();
    let day_start = now - 365 * 86_400;
    let mut t = day_start;
    while t < now - 7 * 86_400 {
        fleet.record(t / 60 + 600);
        t += 86_400;
        fleet.flush(t, false, true).await;
    }
    println!(
        "  a year of days written in {:.1} s; RSS {} MB",
        started.elapsed().as_secs_f64(),
        status_kb("VmRSS:") / 1024
    );
    // 6 days: one minute per hour, both tiers
    while t < now - 86_400 {
        fleet.record(t / 60 + 17);
        t += 3600;
        fleet.flush(t, true, true).await;
    }
    println!(
        "  6 days of hours written in {:.1} s; RSS {} MB",
        started.elapsed().as_secs_f64(),
        status_kb("VmRSS:") / 1024
    );
    // the last 24 hours, every minute, flushed to Redis every 5 minutes and to PostgreSQL every
    // hour (the same rows a 10-second flush would end with, in fewer round trips)
    while t < now {
        for m in 0..5 {
            fleet.record(t / 60 + m);
        }
        t += 300;
        fleet.flush(t, true, (now - t) % 3600 == 0).await;
        if (now - t) % (4 * 3600) == 0 {
            println!(
                "  dense day: {:.0} h left, {:.1} s; RSS {} MB",
                (now - t) as f64 / 3600.0,
                started.elapsed().as_secs_f64(),
                status_kb("VmRSS:") / 1024
            );
        }
    }
    // a last pass once every bucket is final: the compactor merges what is left
    fleet.flush(now + 900, true, true).await;
    let elapsed = started.elapsed();
    println!(
        "\nwrite: {} aggregates in {:.1} s (Redis {:.1} s, PostgreSQL {:.1} s, recording {:.1} s): Redis {:.0} aggregates/s, PostgreSQL {:.0} rows/s",
        fleet.written,
        elapsed.as_secs_f64(),
        fleet.redis_time.as_secs_f64(),
        fleet.pg_time.as_secs_f64(),
        (elapsed - fleet.redis_time - fleet.pg_time).as_secs_f64(),
        fleet.written as f64 / fleet.redis_time.as_secs_f64().max(1e-9),
        fleet.pg_rows as f64 / fleet.pg_time.as_secs_f64().max(1e-9),
    );

    // Redis memory per aggregate, from used_memory and the live values of each tier
    let redis_after = redis_info(&mut admin, "used_memory").await;
    let series = (instances * routes) as u64;
    let (m1, m5, h1) = (
        series * 1440,
        series * (288 + 6 * 24),
        series * (24 + 6 * 24),
    );
    let cluster = routes as u64 * (1440 + 288 + 6 * 24 + 24 + 6 * 24);
    let live = m1 + m5 + h1 + cluster;
    let per = (redis_after.saturating_sub(redis_before)) as f64 / live as f64;
    let seed = |instances: u64, routes: u64| {
        (instances * routes * (1440 + 2016 + 168) + routes * (1440 + 2016 + 168)) as f64 * per
    };
    println!(
        "Redis: used_memory +{:.1} MB for {live} live values ({m1} 1-minute, {m5} 5-minute, {h1} hourly instance values, {cluster} cluster values): {per:.0} bytes per value",
        (redis_after - redis_before) as f64 / 1e6
    );
    println!(
        "Redis projection at the seed's retention (24 h of minutes, 7 d of 5-minute buckets and hours, dense): {instances} instances × {routes} routes {:.2} GB; 100 instances × 100 routes {:.2} GB",
        seed(instances as u64, routes as u64) / 1e9,
        seed(100, 100) / 1e9
    );
    let pool = sqlx::PgPool::connect(&pg_url).await.expect("PostgreSQL");
    for (table, partitioned) in [
        ("hourly", true),
        ("daily", true),
        ("cluster_hourly", false),
        ("cluster_daily", false),
    ] {
        let size = if partitioned {
            format!(
                "(SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::int8 FROM pg_inherits
                  WHERE inhparent = '\"{prefix}\".{table}'::regclass)"
            )
        } else {
            format!("pg_total_relation_size('\"{prefix}\".{table}')")
        };
        let (rows, bytes): (i64, i64) = sqlx::query_as(&format!(
            "SELECT (SELECT count(*) FROM \"{prefix}\".{table}), {size}"
        ))
        .fetch_one(&pool)
        .await
        .expect("sizes");
        println!(
            "PostgreSQL {table}: {rows} rows, {:.1} MB with indexes, {:.0} bytes per row",
            bytes as f64 / 1e6,
            bytes as f64 / rows.max(1) as f64
        );
    }

    // reads: p50 of 20, for one route and every route, every window, both scopes
    println!(
        "\n| window | scope | one route p50 | every route p50 | peak extra heap (every route) |"
    );
    println!("| --- | --- | --- | --- | --- |");
    let reader_redis = &fleet.redis[0];
    let reader_pg = &fleet.pg[0];
    let route = fleet.routes[routes / 2].clone();
    let at = now + 900;
    for window in Window::ALL {
        for scope in [Scope::Instance, Scope::Cluster] {
            let mut row = Vec::new();
            let mut peak = 0;
            for path in [Some(route.as_str()), None] {
                let n = if path.is_some() { 20 } else { 5 };
                let mut times = Vec::new();
                let mut count = 0;
                for _ in 0..n {
                    let base = peak_start();
                    let t = Instant::now();
                    let snap = if matches!(window, Window::Days90 | Window::Year1) {
                        reader_pg.read(window, scope, path, at).await.expect("read")
                    } else {
                        reader_redis
                            .read(window, scope, path, at)
                            .await
                            .expect("read")
                            .0
                    };
                    count = snap.api_stats().total_requests;
                    times.push(t.elapsed());
                    peak = peak.max(PEAK.load(Ordering::Relaxed) - base);
                }
                times.sort();
                row.push(format!(
                    "{:.1} ms ({count} requests)",
                    ms(times[times.len() / 2])
                ));
            }
            println!(
                "| {} | {} | {} | {} | {:.1} MB |",
                window.as_str(),
                scope.as_str(),
                row[0],
                row[1],
                peak as f64 / 1e6
            );
        }
    }

    // clean up
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut admin)
        .await
        .unwrap_or_default();
    for chunk in keys.chunks(10_000) {
        let _: Result<(), _> = redis::cmd("UNLINK")
            .arg(chunk)
            .query_async(&mut admin)
            .await;
    }
    sqlx::raw_sql(&format!("DROP SCHEMA \"{prefix}\" CASCADE"))
        .execute(&pool)
        .await
        .expect("drop schema");
}
