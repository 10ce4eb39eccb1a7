//! System health and resource usage (the seed's `getSystemHealth` and `getResourceUsage`).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::stats::{ser_time, RecorderStats};

/// Overall status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Every check passes.
    Healthy,
    /// A non-critical check fails.
    Degraded,
    /// A critical check fails.
    Unhealthy,
}

/// One check's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// Whether it passed.
    pub ok: bool,
    /// Whether its failure makes the system unhealthy (else degraded).
    pub critical: bool,
    /// What was found (the check's own message, its error, or that it timed out).
    pub message: String,
    /// How long the check took.
    #[serde(serialize_with = "crate::stats::ser_ms", rename = "latencyMs")]
    pub latency: Duration,
}

/// Memory of this process, in MB.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryUsage {
    /// Resident set size.
    pub rss: f64,
    /// Virtual memory size.
    #[serde(rename = "virtual")]
    pub virtual_size: f64,
    /// Memory held by perfmon's own histograms and lists.
    pub perfmon: f64,
}

/// Resources of this process (`resource_usage()`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceUsage {
    /// Memory, MB.
    pub memory: MemoryUsage,
    /// User and system CPU time since start, seconds.
    pub cpu_seconds: f64,
    /// OS threads.
    pub threads: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// Seconds since the process started.
    pub uptime: u64,
    /// Process id.
    pub pid: u32,
}

/// Health (`system_health().await`). Serialized in the seed's shape: `checks` maps each check to
/// `true`/`false`, and `details` gives each check's message, criticality and latency.
#[derive(Clone, Debug, PartialEq)]
pub struct SystemHealth {
    /// Overall status.
    pub status: HealthStatus,
    /// Check name → result.
    pub checks: BTreeMap<String, CheckResult>,
    /// Resources at the time of the check.
    pub resources: ResourceUsage,
    /// The recorder's counters.
    pub recorder: RecorderStats,
    /// The PostgreSQL pool, if PostgreSQL is configured (the seed's `database.activeConnections`).
    pub database: Option<crate::PoolStats>,
    /// When the checks ran.
    pub timestamp: SystemTime,
}

impl Serialize for SystemHealth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Time(SystemTime);
        impl Serialize for Time {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                ser_time(&self.0, s)
            }
        }
        let oks: BTreeMap<&str, bool> = self
            .checks
            .iter()
            .map(|(k, v)| (k.as_str(), v.ok))
            .collect();
        let mut m = s.serialize_map(Some(7))?;
        m.serialize_entry("status", &self.status)?;
        m.serialize_entry("checks", &oks)?;
        m.serialize_entry("details", &self.checks)?;
        m.serialize_entry("resources", &self.resources)?;
        m.serialize_entry("recorder", &self.recorder)?;
        if let Some(db) = &self.database {
            m.serialize_entry("database", db)?;
        }
        m.serialize_entry("timestamp", &Time(self.timestamp))?;
        m.end()
    }
}

/// What `/proc` says about this process (zeros and `None` where it is not available).
#[derive(Clone, Debug, Default)]
pub(crate) struct ProcStats {
    pub rss_bytes: u64,
    pub virtual_bytes: u64,
    pub cpu_seconds: f64,
    pub threads: u64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    pub start_time_seconds: Option<f64>,
    pub uptime: Duration,
}

/// Linux reports `/proc/<pid>/stat` times in USER_HZ, which is 100 on every architecture.
const USER_HZ: f64 = 100.0;

pub(crate) fn proc_stats() -> ProcStats {
    let mut p = ProcStats::default();
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        };
        p.rss_bytes = field("VmRSS:").unwrap_or(0) * 1024;
        p.virtual_bytes = field("VmSize:").unwrap_or(0) * 1024;
        p.threads = field("Threads:").unwrap_or(0);
    }
    // Fields after the command name (which may contain spaces) of /proc/self/stat:
    // 14 utime, 15 stime, 22 starttime (1-based in proc(5); 11, 12, 19 after the name).
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let fields: Vec<&str> = stat
        .as_deref()
        .and_then(|s| s.rsplit_once(')'))
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let num = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    if let (Some(u), Some(s)) = (num(11), num(12)) {
        p.cpu_seconds = (u + s) / USER_HZ;
    }
    let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("btime "))?
            .split_whitespace()
            .nth(1)?
            .parse::<f64>()
            .ok()
    });
    let since_boot = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok());
    if let Some(start) = num(19) {
        let start = start / USER_HZ;
        p.start_time_seconds = boot_time.map(|b| b + start);
        if let Some(up) = since_boot {
            p.uptime = Duration::from_secs_f64((up - start).max(0.0));
        }
    }
    p.open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    p.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse().ok()
        });
    p
}

fn mb(bytes: u64) -> f64 {
    (bytes as f64 / 1048576.0 * 10.0).round() / 10.0
}

/// Memory, CPU, threads, file descriptors, uptime and pid of this process, read from `/proc`
/// (zeros elsewhere); no I/O to any backend.
pub fn resource_usage() -> ResourceUsage {
    let perfmon = crate::collector().recorder_stats().memory_bytes;
    let p = proc_stats();
    ResourceUsage {
        memory: MemoryUsage {
            rss: mb(p.rss_bytes),
            virtual_size: mb(p.virtual_bytes),
            perfmon: mb(perfmon),
        },
        cpu_seconds: (p.cpu_seconds * 100.0).round() / 100.0,
        threads: p.threads,
        open_fds: p.open_fds,
        uptime: p.uptime.as_secs(),
        pid: std::process::id(),
    }
}

type CheckFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;
type CheckFn = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

/// A health check of your own, run by [`system_health`] beside the built-in ones.
///
/// ```
/// use perfmon_runtime::{register_health_check, HealthCheck};
/// use std::time::Duration;
///
/// register_health_check(
///     HealthCheck::new("payments-api", || async { Ok("reachable".to_string()) })
///         .critical(true)
///         .timeout(Duration::from_millis(500)),
/// );
/// ```
#[derive(Clone)]
pub struct HealthCheck {
    name: String,
    critical: bool,
    timeout: Duration,
    check: CheckFn,
}

impl std::fmt::Debug for HealthCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthCheck")
            .field("name", &self.name)
            .field("critical", &self.critical)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HealthCheck {
    /// A check: `Ok(message)` passes, `Err(message)` fails. Not critical, 2 s timeout.
    pub fn new<F, Fut>(name: impl Into<String>, check: F) -> HealthCheck
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        HealthCheck {
            name: name.into(),
            critical: false,
            timeout: Duration::from_secs(2),
            check: Arc::new(move || Box::pin(check()) as CheckFuture),
        }
    }

    /// Whether a failure makes the system `unhealthy` (else `degraded`).
    pub fn critical(mut self, critical: bool) -> HealthCheck {
        self.critical = critical;
        self
    }

    /// How long the check may take before it counts as failed.
    pub fn timeout(mut self, timeout: Duration) -> HealthCheck {
        self.timeout = timeout;
        self
    }
}

static CHECKS: RwLock<Vec<HealthCheck>> = RwLock::new(Vec::new());
static CACHE: Mutex<Option<(Instant, SystemHealth)>> = Mutex::new(None);
static CACHE_TTL_MS: AtomicU64 = AtomicU64::new(1000);

/// Registers a check (replacing any check of the same name). It runs on the next
/// [`system_health`] that is not answered from the cache.
pub fn register_health_check(check: HealthCheck) {
    let mut checks = CHECKS.write().unwrap_or_else(|e| e.into_inner());
    checks.retain(|c| c.name != check.name);
    checks.push(check);
    drop(checks);
    *CACHE.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Removes a check registered under `name`; true if there was one.
pub fn unregister_health_check(name: &str) -> bool {
    let mut checks = CHECKS.write().unwrap_or_else(|e| e.into_inner());
    let before = checks.len();
    checks.retain(|c| c.name != name);
    let removed = checks.len() != before;
    drop(checks);
    *CACHE.lock().unwrap_or_else(|e| e.into_inner()) = None;
    removed
}

/// How long a health result is reused, so that polling under load does not hammer the
/// backends (default 1 s; zero disables the cache).
pub(crate) fn set_cache_ttl(ttl: Duration) {
    CACHE_TTL_MS.store(
        u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    *CACHE.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// A future that fails with `Err("timed out after ..")` when `inner` takes longer than
/// `timeout`. Works under any executor: a helper thread wakes the task at the deadline.
struct Timeout {
    inner: CheckFuture,
    timeout: Duration,
    deadline: Option<Instant>,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl Future for Timeout {
    type Output = Result<String, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(r) = self.inner.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        match self.deadline {
            None => {
                let deadline = Instant::now() + self.timeout;
                self.deadline = Some(deadline);
                let waker = self.waker.clone();
                let spawned = std::thread::Builder::new()
                    .name("perfmon-health-timer".into())
                    .spawn(move || {
                        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                        if let Some(w) = waker.lock().unwrap_or_else(|e| e.into_inner()).take() {
                            w.wake();
                        }
                    });
                if spawned.is_err() {
                    return Poll::Ready(Err("could not start the check's timer thread".into()));
                }
                Poll::Pending
            }
            Some(d) if Instant::now() >= d => {
                Poll::Ready(Err(format!("timed out after {:?}", self.timeout)))
            }
            Some(_) => Poll::Pending,
        }
    }
}

/// Runs futures concurrently to completion, keeping their order.
struct JoinAll {
    futures: Vec<(Instant, Option<Timeout>)>,
    results: Vec<Option<(Result<String, String>, Duration)>>,
}

impl Future for JoinAll {
    type Output = Vec<(Result<String, String>, Duration)>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        for (i, (started, slot)) in this.futures.iter_mut().enumerate() {
            if let Some(f) = slot {
                if let Poll::Ready(r) = Pin::new(f).poll(cx) {
                    this.results[i] = Some((r, started.elapsed()));
                    *slot = None;
                }
            }
        }
        if this.results.iter().all(Option::is_some) {
            Poll::Ready(this.results.iter_mut().filter_map(Option::take).collect())
        } else {
            Poll::Pending
        }
    }
}

/// Runs the health checks — the recorder's own and every registered one, concurrently, each
/// under its timeout — or returns the result of the last run if it is younger than the cache
/// TTL (1 s by default). Status: `unhealthy` if a critical check fails, `degraded` if another
/// fails, else `healthy`.
pub async fn system_health() -> SystemHealth {
    let ttl = Duration::from_millis(CACHE_TTL_MS.load(Ordering::Relaxed));
    if let Some((at, h)) = &*CACHE.lock().unwrap_or_else(|e| e.into_inner()) {
        if at.elapsed() < ttl {
            return h.clone();
        }
    }
    let registered: Vec<HealthCheck> = CHECKS.read().unwrap_or_else(|e| e.into_inner()).clone();
    let now = Instant::now();
    let join = JoinAll {
        futures: registered
            .iter()
            .map(|c| {
                let t = Timeout {
                    inner: (c.check)(),
                    timeout: c.timeout,
                    deadline: None,
                    waker: Arc::new(Mutex::new(None)),
                };
                (now, Some(t))
            })
            .collect(),
        results: vec![None; registered.len()],
    };
    let outcomes = join.await;

    let recorder = crate::collector().recorder_stats();
    let mut checks = BTreeMap::new();
    let ok = recorder.late_events == 0;
    checks.insert(
        "recorder".to_string(),
        CheckResult {
            ok,
            critical: false,
            message: if ok {
                format!(
                    "{} events aggregated, none set aside",
                    recorder.events_processed
                )
            } else {
                format!(
                    "{} hand-recorded events arrived after their window and were not filed",
                    recorder.late_events
                )
            },
            latency: Duration::ZERO,
        },
    );
    for (c, (r, latency)) in registered.iter().zip(outcomes) {
        let (ok, message) = match r {
            Ok(m) => (true, m),
            Err(m) => (false, m),
        };
        checks.insert(
            c.name.clone(),
            CheckResult {
                ok,
                critical: c.critical,
                message,
                latency,
            },
        );
    }
    let status = if checks.values().any(|c| !c.ok && c.critical) {
        HealthStatus::Unhealthy
    } else if checks.values().any(|c| !c.ok) {
        HealthStatus::Degraded
    } else {
        HealthStatus::Healthy
    };
    let health = SystemHealth {
        status,
        checks,
        resources: resource_usage(),
        recorder,
        database: crate::backends::pool_stats(),
        timestamp: SystemTime::now(),
    };
    log_change(&health);
    *CACHE.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), health.clone()));
    health
}

/// A change of overall status goes to the event log (with PostgreSQL configured).
fn log_change(h: &SystemHealth) {
    static LAST: Mutex<Option<HealthStatus>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    let changed = last.is_some_and(|l| l != h.status);
    *last = Some(h.status);
    if !changed {
        return;
    }
    let failing: Vec<&str> = h
        .checks
        .iter()
        .filter(|(_, c)| !c.ok)
        .map(|(n, _)| n.as_str())
        .collect();
    tracing::info!(target: "perfmon", status = ?h.status, ?failing, "health changed");
    #[cfg(feature = "postgres")]
    crate::tier::postgres::log_event(
        crate::clock::unix_ns(h.timestamp),
        "health_change",
        format!("{:?}", h.status).to_lowercase(),
        failing.join(","),
    );
}
