//! A small clinic-scheduling service instrumented with all five perfmon macros and
//! `record_business_metric`. It drives its own mixed traffic for a few seconds (staff queries,
//! schedule assignments, fairness statistics behind a cache, leave applications, logins, a weekly
//! batch; some slow calls, some errors, cache hits and misses), then prints what perfmon saw.
//!
//! ```text
//! cargo run --release -p perfmon-examples --example clinic
//! PERFMON_EXAMPLE_SECONDS=10 cargo run --release -p perfmon-examples --example clinic
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use perfmon_runtime::{
    collector, measure, record_business_metric, track_api, track_batch, track_cache, track_query,
    HttpStatus,
};
use tokio::time::sleep;

/// Errors of the service, each with its HTTP status.
#[derive(Debug)]
enum ApiError {
    Validation(&'static str),
    Conflict(&'static str),
    Database(&'static str),
}

impl HttpStatus for ApiError {
    fn http_status(&self) -> u16 {
        match self {
            ApiError::Validation(_) => 422,
            ApiError::Conflict(_) => 409,
            ApiError::Database(_) => 500,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Validation(m) | ApiError::Conflict(m) | ApiError::Database(m) => {
                f.write_str(m)
            }
        }
    }
}

/// A deterministic generator, so every run drives the same traffic mix.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

#[derive(Clone, Debug)]
struct Staff {
    id: u32,
    clinic: u32,
    shifts: u32,
}

/// The data layer: an in-memory table standing in for PostgreSQL, with realistic latencies.
struct Db {
    staff: Mutex<Vec<Staff>>,
    rng: Mutex<Rng>,
}

impl Db {
    fn latency(&self, lo: u64, hi: u64) -> Duration {
        self.rng
            .lock()
            .map(|mut r| r.millis(lo, hi))
            .unwrap_or(Duration::from_millis(lo))
    }

    #[track_query(table = "Staff", kind = "read", op = "findMany")]
    async fn find_staff(&self, clinic: u32) -> Result<Vec<Staff>, ApiError> {
        sleep(self.latency(2, 12)).await;
        let staff = self
            .staff
            .lock()
            .map_err(|_| ApiError::Database("staff table poisoned"))?;
        Ok(staff
            .iter()
            .filter(|s| s.clinic == clinic)
            .cloned()
            .collect())
    }

    #[track_query(table = "Schedule", kind = "write", op = "createMany")]
    async fn save_assignments(&self, ids: &[u32], week: u32) -> Result<usize, ApiError> {
        // week 40 hits a lock timeout, and two weeks' writes are slow (over 100 ms)
        let slow = week % 25 == 0;
        sleep(if slow {
            self.latency(110, 180)
        } else {
            self.latency(5, 25)
        })
        .await;
        if week % 40 == 0 {
            return Err(ApiError::Database("lock timeout on Schedule"));
        }
        let mut staff = self
            .staff
            .lock()
            .map_err(|_| ApiError::Database("staff table poisoned"))?;
        for s in staff.iter_mut().filter(|s| ids.contains(&s.id)) {
            s.shifts += 1;
        }
        Ok(ids.len())
    }

    #[track_query(table = "LeaveRequest", kind = "write", op = "create")]
    async fn insert_leave(&self, staff_id: u32) -> Result<u64, ApiError> {
        sleep(self.latency(3, 9)).await;
        Ok(u64::from(staff_id) * 1000)
    }
}

/// Fairness statistics behind a cache (Redis in production, a map here).
struct FairnessCache {
    entries: Mutex<HashMap<(u32, u32), f64>>,
}

impl FairnessCache {
    #[track_cache(key = "fairness:stats")]
    fn get(&self, clinic: u32, month: u32) -> Result<Option<f64>, ApiError> {
        if month == 13 {
            return Err(ApiError::Database("cache connection reset"));
        }
        let entries = self
            .entries
            .lock()
            .map_err(|_| ApiError::Database("cache poisoned"))?;
        Ok(entries.get(&(clinic, month)).copied())
    }

    fn put(&self, clinic: u32, month: u32, value: f64) {
        if let Ok(mut e) = self.entries.lock() {
            e.insert((clinic, month), value);
        }
    }
}

struct App {
    db: Db,
    cache: FairnessCache,
}

/// How evenly shifts are spread: 1.0 is perfectly fair.
#[measure("calculate-fairness", threshold = "50ms")]
async fn calculate_fairness(staff: &[Staff], heavy: bool) -> f64 {
    // a heavy month is a slow computation, over the threshold
    sleep(if heavy {
        Duration::from_millis(60)
    } else {
        Duration::from_millis(4)
    })
    .await;
    if staff.is_empty() {
        return 1.0;
    }
    let mean = staff.iter().map(|s| f64::from(s.shifts)).sum::<f64>() / staff.len() as f64;
    let var = staff
        .iter()
        .map(|s| (f64::from(s.shifts) - mean).powi(2))
        .sum::<f64>()
        / staff.len() as f64;
    1.0 / (1.0 + var.sqrt())
}

impl App {
    #[track_api(method = "GET", path = "/api/staff")]
    async fn list_staff(&self, clinic: u32) -> Result<Vec<Staff>, ApiError> {
        if clinic == 0 {
            return Err(ApiError::Validation("clinicId is required"));
        }
        self.db.find_staff(clinic).await
    }

    #[track_api(method = "POST", path = "/api/schedule/assign", slow = "3s")]
    async fn assign(&self, clinic: u32, week: u32, rebuild: bool) -> Result<usize, ApiError> {
        let staff = self.db.find_staff(clinic).await?;
        if staff.len() < 2 {
            return Err(ApiError::Conflict("not enough staff for a week"));
        }
        if rebuild {
            // a full rebuild of the month: the slow path the SLA table worries about
            sleep(Duration::from_millis(3100)).await;
        }
        let ids: Vec<u32> = staff.iter().take(3).map(|s| s.id).collect();
        self.db.save_assignments(&ids, week).await
    }

    #[track_api(method = "GET", path = "/api/stats/fairness", slow = "1s")]
    async fn fairness(&self, clinic: u32, month: u32) -> Result<f64, ApiError> {
        if let Some(v) = self.cache.get(clinic, month)? {
            return Ok(v);
        }
        let staff = self.db.find_staff(clinic).await?;
        let v = calculate_fairness(&staff, month == 12).await;
        self.cache.put(clinic, month, v);
        Ok(v)
    }

    #[track_api(method = "POST", path = "/api/leave")]
    async fn apply_leave(&self, clinic: u32, staff_id: u32, annual: bool) -> Result<u64, ApiError> {
        if staff_id == 0 {
            return Err(ApiError::Validation("staffId is required"));
        }
        let id = self.db.insert_leave(staff_id).await?;
        let clinic = format!("c{clinic}");
        record_business_metric(
            "leave-application",
            1.0,
            &[
                ("clinicId", &clinic),
                ("type", if annual { "ANNUAL" } else { "SICK" }),
            ],
        );
        Ok(id)
    }

    #[track_api(method = "POST", path = "/api/auth/login")]
    fn login(&self, clinic: u32, admin: bool) -> Result<(), ApiError> {
        let clinic = format!("c{clinic}");
        record_business_metric(
            "user-login",
            1.0,
            &[
                ("clinicId", &clinic),
                ("role", if admin { "ADMIN" } else { "STAFF" }),
            ],
        );
        Ok(())
    }
}

/// The weekly assignment batch: fails when a week cannot be saved.
#[track_batch("weekly-assignment")]
async fn weekly_assignment(app: &App, week: u32) -> Result<usize, ApiError> {
    let mut total = 0;
    for clinic in 1..=3 {
        total += app.assign(clinic, week, false).await?;
    }
    Ok(total)
}

async fn traffic(app: Arc<App>, worker: u64, until: Instant) -> u64 {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (worker + 1).wrapping_mul(0xA24B_AED4_963E_E407));
    let mut calls = 0;
    while Instant::now() < until {
        let clinic = 1 + rng.below(4) as u32;
        let _ = match rng.below(100) {
            0..=29 => app
                .list_staff(if rng.below(50) == 0 { 0 } else { clinic })
                .await
                .map(|_| ()),
            30..=49 => {
                let week = 1 + rng.below(52) as u32;
                // one request in 150 rebuilds the month, which is slow
                app.assign(clinic, week, rng.below(150) == 0)
                    .await
                    .map(|_| ())
            }
            50..=79 => {
                let month = match rng.below(100) {
                    0 => 13, // a cache error
                    1..=3 => 12,
                    _ => 1 + rng.below(11) as u32,
                };
                app.fairness(clinic, month).await.map(|_| ())
            }
            80..=89 => app
                .apply_leave(clinic, rng.below(30) as u32, rng.below(3) > 0)
                .await
                .map(|_| ()),
            _ => app.login(clinic, rng.below(5) == 0),
        };
        calls += 1;
    }
    calls
}

fn ms(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{}µs", d.as_micros())
    } else {
        format!("{:.1}ms", d.as_secs_f64() * 1000.0)
    }
}

fn report(elapsed: Duration, calls: u64) {
    let c = collector();
    println!(
        "\nperfmon report — {calls} requests driven in {:.1}s (window: the last {} minutes)\n",
        elapsed.as_secs_f64(),
        perfmon_runtime::WINDOW_MINUTES
    );

    let api = c.api_stats();
    println!("API overall: {} requests, avg {}, p50 {}, p95 {}, p99 {}, max {}, errors {:.2}% (4xx {:.2}%, 5xx {:.2}%)",
        api.total_requests, ms(api.avg_duration), ms(api.p50_duration), ms(api.p95_duration), ms(api.p99_duration),
        ms(api.max_duration), api.error_rate, api.client_error_rate, api.server_error_rate);
    println!(
        "\n{:<7} {:<24} {:>8} {:>10} {:>10} {:>10} {:>8}",
        "method", "route", "requests", "avg", "p95", "p99", "errors"
    );
    for r in c.api_routes() {
        let s = &r.stats;
        println!(
            "{:<7} {:<24} {:>8} {:>10} {:>10} {:>10} {:>7.2}%",
            r.method,
            r.path,
            s.total_requests,
            ms(s.avg_duration),
            ms(s.p95_duration),
            ms(s.p99_duration),
            s.error_rate
        );
    }

    println!("\nSlow requests, top 5:");
    for (i, r) in c.slow_requests(5).iter().enumerate() {
        println!(
            "  {}. {} {} - {:.1}s ({}) at {}",
            i + 1,
            r.method,
            r.path,
            r.duration.as_secs_f64(),
            r.status_code,
            perfmon_runtime::rfc3339(r.timestamp)
        );
    }

    let db = c.database_stats();
    println!(
        "\nDatabase: {} queries, avg {}, p95 {}, {} slow, {} errors",
        db.total_queries,
        ms(db.totals.avg_duration),
        ms(db.totals.p95_duration),
        db.totals.slow_queries,
        db.totals.errors
    );
    for (table, t) in &db.tables {
        let ops: Vec<&str> = t.operations.keys().map(String::as_str).collect();
        println!("  {table:<13} reads {:>5}  writes {:>5}  avg {:>8}  p95 {:>8}  p99 {:>8}  slow {:>3}  errors {:>3}  ({})",
            t.totals.reads, t.totals.writes, ms(t.totals.avg_duration), ms(t.totals.p95_duration), ms(t.totals.p99_duration), t.totals.slow_queries, t.totals.errors, ops.join(", "));
    }

    let cache = c.cache_stats();
    println!(
        "\nCache: hit rate {:.1}%, miss rate {:.1}%, error rate {:.1}% over {} operations",
        cache.hit_rate, cache.miss_rate, cache.error_rate, cache.total_operations
    );

    for (name, b) in c.batch_stats().batches {
        println!("\nBatch {name}: {} runs, {} succeeded, {} failed ({:.1}% success), avg {}, last failure {}",
            b.runs, b.successes, b.failures, b.success_rate, ms(b.avg_duration), b.last_failure.map_or("none".into(), perfmon_runtime::rfc3339));
    }

    for (name, f) in c.function_stats().functions {
        println!(
            "Function {name}: {} calls, p50 {}, p99 {}, {} over the threshold",
            f.calls,
            ms(f.p50_duration),
            ms(f.p99_duration),
            f.slow_calls
        );
    }

    for (name, m) in c.business_metrics().metrics {
        let tags: Vec<String> = m
            .tags
            .iter()
            .map(|(k, vs)| {
                let vs: Vec<String> = vs.iter().map(|(v, s)| format!("{v}={}", s.count)).collect();
                format!("{k}: {}", vs.join(" "))
            })
            .collect();
        println!("Business {name}: {} events ({})", m.count, tags.join("; "));
    }
    let r = c.recorder_stats();
    let res = perfmon_runtime::resource_usage();
    println!(
        "\nRecorder: {} events aggregated, {} threads, {:.1} MB held; process RSS {:.1} MB, pid {}",
        r.events_processed,
        r.threads,
        r.memory_bytes as f64 / 1048576.0,
        res.memory.rss,
        res.pid
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_target(false).init();
    let perfmon = perfmon_runtime::init(perfmon_runtime::Config::from_env()?).await?;

    let seconds: u64 = std::env::var("PERFMON_EXAMPLE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let staff = (1..=40)
        .map(|id| Staff {
            id,
            clinic: 1 + id % 4,
            shifts: id % 3,
        })
        .collect();
    let app = Arc::new(App {
        db: Db {
            staff: Mutex::new(staff),
            rng: Mutex::new(Rng(42)),
        },
        cache: FairnessCache {
            entries: Mutex::new(HashMap::new()),
        },
    });

    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..16)
        .map(|w| tokio::spawn(traffic(app.clone(), w, until)))
        .collect();
    // the weekly batch runs beside the traffic; week 40 fails
    let batch = {
        let app = app.clone();
        tokio::spawn(async move {
            for week in 36..=41 {
                if let Err(e) = weekly_assignment(&app, week).await {
                    tracing::error!(week, error = %e, "weekly assignment failed");
                }
                sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let mut calls = 0;
    for w in workers {
        calls += w.await?;
    }
    batch.await?;
    report(start.elapsed(), calls);
    perfmon.shutdown().await?;
    Ok(())
}
