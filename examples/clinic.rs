//! A small clinic-scheduling service instrumented with all five perfmon macros and
//! `record_business_metric`, served over HTTP with `PerfmonLayer` and the monitoring router on
//! 127.0.0.1:3000. It drives its own mixed traffic over HTTP for a few seconds (staff queries,
//! schedule assignments, fairness statistics behind a cache, leave applications, logins, a weekly
//! batch; some slow calls, some errors, cache hits and misses), then prints what perfmon saw.
//!
//! ```text
//! cargo run --release -p perfmon-examples --example clinic               # traffic, report, exit
//! cargo run --release -p perfmon-examples --example clinic -- --serve    # ... then keep serving
//! ```
//!
//! Environment: `PERFMON_EXAMPLE_SECONDS` (traffic duration, default 5; 0 for none),
//! `PERFMON_EXAMPLE_ADDR` (default 127.0.0.1:3000; port 0 picks a free one), and perfmon's own
//! `PERFMON_*` variables. Flags: `--serve` keeps serving after the report (until Ctrl-C),
//! `--no-layer` serves without `PerfmonLayer` (for the load benchmark's baseline),
//! `--alert-demo` evaluates alerts every second over 10 s and takes the database away for 4 s
//! one second in: the critical error-rate alert fires, then resolves (18 s of traffic by default).

use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use perfmon_runtime::http::PerfmonLayer;
use perfmon_runtime::{
    collector, measure, record_business_metric, track_api, track_batch, track_cache, track_query,
    HttpStatus,
};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code =
            StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            code,
            axum::Json(serde_json::json!({ "success": false, "error": self.to_string() })),
        )
            .into_response()
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
    /// While set, every query fails: the `--alert-demo` outage.
    outage: std::sync::atomic::AtomicBool,
}

impl Db {
    fn latency(&self, lo: u64, hi: u64) -> Duration {
        self.rng
            .lock()
            .map(|mut r| r.millis(lo, hi))
            .unwrap_or(Duration::from_millis(lo))
    }

    fn check_outage(&self) -> Result<(), ApiError> {
        if self.outage.load(std::sync::atomic::Ordering::Relaxed) {
            Err(ApiError::Database("connection refused"))
        } else {
            Ok(())
        }
    }

    #[track_query(table = "Staff", kind = "read", op = "findMany")]
    async fn find_staff(&self, clinic: u32) -> Result<Vec<Staff>, ApiError> {
        sleep(self.latency(2, 12)).await;
        self.check_outage()?;
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
        self.check_outage()?;
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

// ---- HTTP: thin handlers over `App`; its `#[track_api]` methods hand their names and slow
// thresholds to `PerfmonLayer`, which records each request once with its real status.

#[derive(Deserialize)]
struct ClinicQuery {
    #[serde(rename = "clinicId", default)]
    clinic_id: u32,
    #[serde(default)]
    week: u32,
    #[serde(default)]
    month: u32,
    #[serde(rename = "staffId", default)]
    staff_id: u32,
    #[serde(default)]
    rebuild: bool,
    #[serde(default)]
    annual: bool,
    #[serde(default)]
    admin: bool,
}

type Shared = State<Arc<App>>;

async fn staff_handler(
    State(app): Shared,
    Query(q): Query<ClinicQuery>,
) -> Result<Response, ApiError> {
    let staff = app.list_staff(q.clinic_id).await?;
    Ok(axum::Json(serde_json::json!({ "success": true, "count": staff.len() })).into_response())
}

async fn assign_handler(
    State(app): Shared,
    Query(q): Query<ClinicQuery>,
) -> Result<Response, ApiError> {
    let n = app.assign(q.clinic_id, q.week, q.rebuild).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "success": true, "assigned": n })),
    )
        .into_response())
}

async fn fairness_handler(
    State(app): Shared,
    Query(q): Query<ClinicQuery>,
) -> Result<Response, ApiError> {
    let v = app.fairness(q.clinic_id, q.month).await?;
    Ok(axum::Json(serde_json::json!({ "success": true, "fairness": v })).into_response())
}

async fn leave_handler(
    State(app): Shared,
    Query(q): Query<ClinicQuery>,
) -> Result<Response, ApiError> {
    let id = app.apply_leave(q.clinic_id, q.staff_id, q.annual).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "success": true, "id": id })),
    )
        .into_response())
}

async fn login_handler(
    State(app): Shared,
    Query(q): Query<ClinicQuery>,
) -> Result<Response, ApiError> {
    app.login(q.clinic_id, q.admin)?;
    Ok(axum::Json(serde_json::json!({ "success": true })).into_response())
}

/// A route that does nothing, for the load benchmark.
async fn ping() -> &'static str {
    "pong"
}

/// The service's routes under `PerfmonLayer`, then the monitoring routes outside it, so that
/// polling the metrics or the dashboard does not count as the service's traffic.
fn app_router(app: Arc<App>, with_layer: bool) -> Router {
    let routes = Router::new()
        .route("/api/staff", get(staff_handler))
        .route("/api/schedule/assign", post(assign_handler))
        .route("/api/stats/fairness", get(fairness_handler))
        .route("/api/leave", post(leave_handler))
        .route("/api/auth/login", post(login_handler))
        .route("/api/ping", get(ping))
        .with_state(app);
    let routes = if with_layer {
        routes.layer(PerfmonLayer::new())
    } else {
        routes
    };
    routes.merge(perfmon_runtime::http::router())
}

/// One HTTP/1.1 request over a fresh connection; the status code, or `None` if it failed.
async fn http_call(addr: std::net::SocketAddr, method: &str, target: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.ok()?;
    let head = std::str::from_utf8(buf.get(..12)?).ok()?;
    head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// One traffic worker: a mix of the service's requests until `until`.
async fn traffic(addr: std::net::SocketAddr, worker: u64, until: Instant) -> (u64, u64) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (worker + 1).wrapping_mul(0xA24B_AED4_963E_E407));
    let (mut calls, mut failed) = (0, 0);
    while Instant::now() < until {
        let clinic = 1 + rng.below(4);
        let target = match rng.below(100) {
            0..=29 => (
                "GET",
                format!(
                    "/api/staff?clinicId={}",
                    if rng.below(50) == 0 { 0 } else { clinic }
                ),
            ),
            // one assignment in 150 rebuilds the month, which is slow
            30..=49 => (
                "POST",
                format!(
                    "/api/schedule/assign?clinicId={clinic}&week={}&rebuild={}",
                    1 + rng.below(52),
                    rng.below(150) == 0
                ),
            ),
            50..=79 => {
                let month = match rng.below(100) {
                    0 => 13, // the cache fails
                    1..=3 => 12,
                    _ => 1 + rng.below(11),
                };
                (
                    "GET",
                    format!("/api/stats/fairness?clinicId={clinic}&month={month}"),
                )
            }
            80..=89 => (
                "POST",
                format!(
                    "/api/leave?clinicId={clinic}&staffId={}&annual={}",
                    rng.below(30),
                    rng.below(3) > 0
                ),
            ),
            _ => (
                "POST",
                format!(
                    "/api/auth/login?clinicId={clinic}&admin={}",
                    rng.below(5) == 0
                ),
            ),
        };
        if http_call(addr, target.0, &target.1).await.is_none() {
            failed += 1;
        }
        calls += 1;
    }
    (calls, failed)
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
    tracing_subscriber::fmt()
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    let alert_demo = std::env::args().any(|a| a == "--alert-demo");
    let mut config = perfmon_runtime::Config::from_env()?;
    if alert_demo {
        // evaluate every second over 10 s, so that the outage fires and resolves within the run
        config = config
            .into_builder()
            .alerts(perfmon_runtime::alerts::AlertConfig {
                tick: Duration::from_secs(1),
                window: Duration::from_secs(10),
                pending: Duration::from_secs(2),
                ..Default::default()
            })
            .build();
    }
    let perfmon = perfmon_runtime::init(config).await?;
    let serve = std::env::args().any(|a| a == "--serve");
    let with_layer = !std::env::args().any(|a| a == "--no-layer");
    let seconds: u64 = std::env::var("PERFMON_EXAMPLE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if alert_demo { 18 } else { 5 });
    let addr = std::env::var("PERFMON_EXAMPLE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());

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
            outage: Default::default(),
        },
        cache: FairnessCache {
            entries: Mutex::new(HashMap::new()),
        },
    });
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    println!("listening on http://{local} (dashboard: http://{local}/api/monitoring/dashboard)");
    let server =
        tokio::spawn(axum::serve(listener, app_router(app.clone(), with_layer)).into_future());
    if alert_demo {
        // a 4-second database outage, one second in: a burst of 500s
        let app = app.clone();
        tokio::spawn(async move {
            sleep(Duration::from_secs(1)).await;
            tracing::warn!("alert demo: the database goes away for 4 s");
            app.db
                .outage
                .store(true, std::sync::atomic::Ordering::Relaxed);
            sleep(Duration::from_secs(4)).await;
            app.db
                .outage
                .store(false, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!("alert demo: the database is back");
        });
    }

    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..16)
        .map(|w| tokio::spawn(traffic(local, w, until)))
        .collect();
    // the weekly batch runs beside the traffic; week 40 fails
    let batch_app = Arc::new(App {
        db: Db {
            staff: Mutex::new(
                (1..=12)
                    .map(|id| Staff {
                        id,
                        clinic: 1 + id % 3,
                        shifts: 0,
                    })
                    .collect(),
            ),
            rng: Mutex::new(Rng(7)),
            outage: Default::default(),
        },
        cache: FairnessCache {
            entries: Mutex::new(HashMap::new()),
        },
    });
    let batch = tokio::spawn(async move {
        if seconds == 0 {
            return;
        }
        for week in 36..=41 {
            if let Err(e) = weekly_assignment(&batch_app, week).await {
                tracing::error!(week, error = %e, "weekly assignment failed");
            }
            sleep(Duration::from_millis(200)).await;
        }
    });
    let (mut calls, mut failed) = (0, 0);
    for w in workers {
        let (c, f) = w.await?;
        calls += c;
        failed += f;
    }
    batch.await?;
    if seconds > 0 {
        report(start.elapsed(), calls);
        if failed > 0 {
            println!("({failed} requests of the traffic generator could not reach the server)");
        }
    }
    if serve {
        println!("serving on http://{local} until Ctrl-C");
        tokio::select! {
            r = server => { r??; }
            r = tokio::signal::ctrl_c() => { r?; }
        }
    }
    perfmon.shutdown().await?;
    Ok(())
}
