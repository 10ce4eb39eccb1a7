//! System health and resource usage (the seed's `getSystemHealth` and `getResourceUsage`).
//!
//! The process' checks live in one registry: the recorder's own check, those the runtime
//! registers for the backends it connected, and the application's
//! ([`register_health_check`]). [`system_health`] runs them concurrently, each under its
//! timeout, and caches the result briefly.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::core::flight::Flight;
use crate::core::process::proc_stats;
use crate::core::sync::{lock, with_timeout, Timeout};
use crate::pipeline::outbox::LoggedEvent;
use crate::read::stats::{ser_ms, ser_time, RecorderStats};

/// Connections of the PostgreSQL pool, as the seed's health response shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PoolStats {
    /// Connections open (in use or idle).
    pub active_connections: u32,
    /// Connections open and idle.
    pub idle_connections: u32,
}

impl PoolStats {
    /// Pool counts.
    pub fn new(active_connections: u32, idle_connections: u32) -> PoolStats {
        PoolStats {
            active_connections,
            idle_connections,
        }
    }
}

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
#[non_exhaustive]
pub struct CheckResult {
    /// Whether it passed.
    pub ok: bool,
    /// Whether its failure makes the system unhealthy (else degraded).
    pub critical: bool,
    /// What was found (the check's own message, its error, or that it timed out).
    pub message: String,
    /// How long the check took.
    #[serde(serialize_with = "ser_ms", rename = "latencyMs")]
    pub latency: Duration,
}

/// Memory of this process, in MB.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
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
#[non_exhaustive]
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
#[non_exhaustive]
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
    pub database: Option<PoolStats>,
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

fn mb(bytes: u64) -> f64 {
    (bytes as f64 / 1048576.0 * 10.0).round() / 10.0
}

/// Memory, CPU, threads, file descriptors, uptime and pid of this process, read from `/proc`
/// (zeros elsewhere); no I/O to any backend.
pub fn resource_usage() -> ResourceUsage {
    resources(
        crate::read::collector::collector()
            .recorder_stats()
            .memory_bytes,
    )
}

/// The resources, given the bytes perfmon holds (from a read already made).
fn resources(perfmon_bytes: u64) -> ResourceUsage {
    let p = proc_stats();
    ResourceUsage {
        memory: MemoryUsage {
            rss: mb(p.rss_bytes),
            virtual_size: mb(p.virtual_bytes),
            perfmon: mb(perfmon_bytes),
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

/// A source of the PostgreSQL pool's counts.
pub(crate) type PoolFn = Arc<dyn Fn() -> PoolStats + Send + Sync>;

/// The process' checks, the last result (cached) and status, and the pool counts' source.
struct Registry {
    checks: RwLock<Vec<HealthCheck>>,
    cache: Mutex<Option<(Instant, SystemHealth)>>,
    /// The run of the checks in progress, if any: every other caller waits for it (or takes the
    /// last result) instead of running the checks again.
    flight: Mutex<Option<Arc<Flight<SystemHealth>>>>,
    ttl_ms: AtomicU64,
    last: Mutex<Option<HealthStatus>>,
    pool: RwLock<Option<PoolFn>>,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Registry {
        checks: RwLock::new(Vec::new()),
        cache: Mutex::new(None),
        flight: Mutex::new(None),
        ttl_ms: AtomicU64::new(1000),
        last: Mutex::new(None),
        pool: RwLock::new(None),
    })
}

impl Registry {
    fn forget_cached(&self) {
        *lock(&self.cache) = None;
    }
}

/// Registers a check (replacing any check of the same name). It runs on the next
/// [`system_health`] that is not answered from the cache.
pub fn register_health_check(check: HealthCheck) {
    let r = registry();
    let mut checks = r.checks.write().unwrap_or_else(|e| e.into_inner());
    checks.retain(|c| c.name != check.name);
    checks.push(check);
    drop(checks);
    r.forget_cached();
}

/// Removes a check registered under `name`; true if there was one.
pub fn unregister_health_check(name: &str) -> bool {
    let r = registry();
    let mut checks = r.checks.write().unwrap_or_else(|e| e.into_inner());
    let before = checks.len();
    checks.retain(|c| c.name != name);
    let removed = checks.len() != before;
    drop(checks);
    r.forget_cached();
    removed
}

/// How long a health result is reused, so that polling under load does not hammer the
/// backends (default 1 s; zero disables the cache).
pub(crate) fn set_cache_ttl(ttl: Duration) {
    let r = registry();
    r.ttl_ms.store(
        u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    r.forget_cached();
}

/// Sets (or, with `None`, removes) where the PostgreSQL pool's counts come from.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn set_pool_source(pool: Option<PoolFn>) {
    let r = registry();
    *r.pool.write().unwrap_or_else(|e| e.into_inner()) = pool;
    r.forget_cached();
}

/// Runs futures concurrently to completion, keeping their order.
struct JoinAll {
    futures: Vec<(Instant, Option<Timeout<CheckFuture>>)>,
    results: Vec<Option<(Result<String, String>, Duration)>>,
}

impl Future for JoinAll {
    type Output = Vec<(Result<String, String>, Duration)>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        for (i, (started, slot)) in this.futures.iter_mut().enumerate() {
            if let Some(f) = slot {
                if let Poll::Ready(r) = Pin::new(f).poll(cx) {
                    let r = r.unwrap_or_else(|e| Err(e.to_string()));
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

/// Ends a flight when its runner is dropped midway (a cancelled request): the waiting callers
/// then run the checks themselves.
struct Runner<'a> {
    reg: &'a Registry,
    flight: Arc<Flight<SystemHealth>>,
    done: bool,
}

impl Drop for Runner<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.flight.finish(None);
            let mut current = lock(&self.reg.flight);
            if current
                .as_ref()
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            {
                *current = None;
            }
        }
    }
}

/// Runs the health checks — the recorder's own and every registered one, concurrently, each
/// under its timeout — or returns the result of the last run if it is younger than the cache
/// TTL (1 s by default). One run at a time, however many callers: while the checks run, the
/// others get the last result (or, before the first one exists, wait for the run). Status:
/// `unhealthy` if a critical check fails, `degraded` if another fails, else `healthy`.
pub async fn system_health() -> SystemHealth {
    let reg = registry();
    let ttl = Duration::from_millis(reg.ttl_ms.load(Ordering::Relaxed));
    loop {
        // one clone of the last result: returned if fresh, kept for the callers of a flight
        let last = match &*lock(&reg.cache) {
            Some((at, h)) if at.elapsed() < ttl => return h.clone(),
            cached => cached.as_ref().map(|(_, h)| h.clone()),
        };
        // decided under the lock, acted on without it
        let (flight, lead) = {
            let mut current = lock(&reg.flight);
            match (current.clone(), last) {
                (Some(_), Some(last)) => return last,
                (Some(f), None) => (f, false),
                (None, _) => {
                    let f = Flight::start();
                    *current = Some(f.clone());
                    (f, true)
                }
            }
        };
        if !lead {
            if let Some(h) = flight.landing().await {
                return h;
            }
            continue;
        }
        let mut runner = Runner {
            reg,
            flight,
            done: false,
        };
        let health = run_checks(reg).await;
        *lock(&reg.flight) = None;
        runner.flight.finish(Some(health.clone()));
        runner.done = true;
        return health;
    }
}

/// One run of every check; caches and returns the result.
async fn run_checks(reg: &Registry) -> SystemHealth {
    let registered: Vec<HealthCheck> = reg.checks.read().unwrap_or_else(|e| e.into_inner()).clone();
    let now = Instant::now();
    let join = JoinAll {
        futures: registered
            .iter()
            .map(|c| (now, Some(with_timeout(c.timeout, (c.check)()))))
            .collect(),
        results: vec![None; registered.len()],
    };
    let outcomes = join.await;

    // one read of the recorder serves its check and the resources
    let recorder = crate::read::collector::collector().recorder_stats();
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
        resources: resources(recorder.memory_bytes),
        recorder,
        database: reg
            .pool
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|pool| pool()),
        timestamp: SystemTime::now(),
    };
    log_change(&reg.last, &health);
    *lock(&reg.cache) = Some((Instant::now(), health.clone()));
    health
}

/// A change of overall status goes to the event log (with PostgreSQL configured).
fn log_change(last: &Mutex<Option<HealthStatus>>, h: &SystemHealth) {
    let mut last = lock(last);
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
    crate::pipeline::state::global().outbox.log(LoggedEvent {
        at_ns: crate::core::clock::unix_ns(h.timestamp),
        kind: "health_change",
        name: format!("{:?}", h.status).to_lowercase(),
        detail: failing.join(","),
    });
}
