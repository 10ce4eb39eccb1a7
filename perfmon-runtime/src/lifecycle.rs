//! Start-up and shutdown: `init` applies the configuration and starts the background worker
//! that drains the threads' rings; `shutdown` (or dropping the handle) stops it after a last
//! drain.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::{Config, ConfigError};
use crate::state::state;

/// Why `init` failed. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The configuration is not valid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A backend is configured but this build cannot talk to it.
    #[error("{backend} is configured ({var} is set) but perfmon-runtime was built without its `{feature}` feature: enable the feature or unset {var}")]
    BackendUnsupported {
        /// `Redis` or `PostgreSQL`.
        backend: &'static str,
        /// The variable or builder setting that configures it.
        var: &'static str,
        /// The cargo feature that supports it.
        feature: &'static str,
    },
    /// The PostgreSQL schema could not be created or migrated.
    #[error("PostgreSQL at {target}: applying perfmon's migrations failed: {reason}; check that the user may create schemas and tables")]
    Migration {
        /// Its URL, password redacted.
        target: String,
        /// What failed.
        reason: String,
    },
    /// A configured backend could not be reached at start.
    #[error("{backend} at {target} is unreachable: {reason}; check that it runs and that the URL is right")]
    Unreachable {
        /// `Redis` or `PostgreSQL`.
        backend: &'static str,
        /// Its URL, password redacted.
        target: String,
        /// What failed.
        reason: String,
    },
    /// `init` was already called in this process and its handle is still alive.
    #[error("perfmon is already initialized in this process; keep the first handle, or shut it down before calling init again")]
    AlreadyInitialized,
    /// The background worker thread could not be started.
    #[error("could not start the perfmon worker thread: {0}")]
    Worker(#[source] std::io::Error),
}

/// Why `shutdown` or `flush` failed.
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    /// The last flush to the retention tiers failed; what it held stays unwritten.
    #[error("{0}")]
    Flush(String),
    /// The worker thread panicked.
    #[error("the perfmon worker thread panicked; statistics up to its last drain are kept")]
    WorkerPanicked,
}

struct Signal {
    stop: Mutex<bool>,
    cv: Condvar,
}

static RUNNING: OnceLock<Mutex<bool>> = OnceLock::new();

fn running() -> &'static Mutex<bool> {
    RUNNING.get_or_init(|| Mutex::new(false))
}

/// The running perfmon: keep it for the life of the program. Dropping it stops the worker after
/// a last drain (a bounded wait: one drain); [`Perfmon::shutdown`] does the same and reports
/// errors.
#[must_use = "dropping the handle stops perfmon's background worker"]
pub struct Perfmon {
    alerts: Option<crate::alerts::Runner>,
    signal: Arc<Signal>,
    worker: Option<JoinHandle<()>>,
    config: Config,
    #[cfg(any(feature = "redis", feature = "postgres"))]
    tier: Option<crate::tier::Worker>,
}

impl std::fmt::Debug for Perfmon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Perfmon")
            .field("instance", &self.config.instance)
            .finish_non_exhaustive()
    }
}

/// Starts perfmon with `config`: validates it, connects the configured backends (an unreachable
/// one is an error that names it) and registers their health checks, applies limits and
/// thresholds, and starts the background worker. Statistics recorded before `init` are kept.
///
/// ```
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let perfmon = perfmon_runtime::init(perfmon_runtime::Config::from_env()?).await?;
/// // ... serve ...
/// perfmon.shutdown().await?;
/// # Ok(()) }
/// ```
pub async fn init(config: Config) -> Result<Perfmon, InitError> {
    config.validate()?;
    if *running().lock().unwrap_or_else(|e| e.into_inner()) {
        return Err(InitError::AlreadyInitialized);
    }
    crate::backends::connect(&config).await?;
    #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
    let mut perfmon = start(config)?;
    #[cfg(any(feature = "redis", feature = "postgres"))]
    {
        let c = &perfmon.config;
        if let Some(flusher) = crate::tier::Flusher::for_backends(&c.key_prefix, &c.instance) {
            perfmon.tier = Some(crate::tier::Worker::start(flusher, c.flush_interval));
        }
    }
    Ok(perfmon)
}

/// [`init`] for programs without an async runtime; it cannot connect backends, so a configured
/// Redis or PostgreSQL URL is an error here (use [`init`]).
pub fn init_blocking(config: Config) -> Result<Perfmon, InitError> {
    config.validate()?;
    if config.redis_url.is_some() || config.database_url.is_some() {
        return Err(InitError::Config(ConfigError::Invalid {
            what: "init_blocking",
            message: "backends are connected asynchronously: call `init(config).await` when a Redis or PostgreSQL URL is set".into(),
        }));
    }
    start(config)
}

fn start(config: Config) -> Result<Perfmon, InitError> {
    let mut is_running = running().lock().unwrap_or_else(|e| e.into_inner());
    if *is_running {
        return Err(InitError::AlreadyInitialized);
    }
    let s = state();
    s.registry
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .set_limits(config.limits);
    s.api_slow_ns
        .store(nanos(config.api_slow), Ordering::Relaxed);
    s.query_slow_ns
        .store(nanos(config.query_slow), Ordering::Relaxed);
    s.cache_key_segments
        .store(config.cache_key_segments, Ordering::Relaxed);
    crate::health::set_cache_ttl(config.health_cache_ttl);

    let signal = Arc::new(Signal {
        stop: Mutex::new(false),
        cv: Condvar::new(),
    });
    let interval = config.drain_interval;
    let sig = signal.clone();
    let worker = std::thread::Builder::new()
        .name("perfmon-worker".into())
        .spawn(move || worker_loop(&sig, interval))
        .map_err(InitError::Worker)?;
    *is_running = true;
    tracing::debug!(target: "perfmon", instance = %config.instance, "perfmon started (in-memory)");
    crate::sla::set_targets(config.sla);
    let alerts = match &config.alerts {
        Some(a) => Some(
            crate::alerts::Runner::start(a.clone(), config.alert_sinks.clone())
                .map_err(InitError::Worker)?,
        ),
        None => None,
    };
    Ok(Perfmon {
        alerts,
        signal,
        worker: Some(worker),
        config,
        #[cfg(any(feature = "redis", feature = "postgres"))]
        tier: None,
    })
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn worker_loop(sig: &Signal, interval: Duration) {
    let mut stop = sig.stop.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        crate::state::drain_incrementally();
        if *stop {
            return;
        }
        stop = match sig.cv.wait_timeout(stop, interval) {
            Ok((g, _)) => g,
            Err(e) => e.into_inner().0,
        };
    }
}

impl Perfmon {
    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Drains every thread's events, stops the worker and closes the backends' connections.
    pub async fn shutdown(mut self) -> Result<(), ShutdownError> {
        let stopped = self.stop();
        #[cfg(any(feature = "redis", feature = "postgres"))]
        let flushed = match self.tier.take() {
            Some(tier) => tier.stop().await.map(|_| ()).map_err(ShutdownError::Flush),
            None => Ok(()),
        };
        #[cfg(not(any(feature = "redis", feature = "postgres")))]
        let flushed: Result<(), ShutdownError> = Ok(());
        crate::backends::disconnect().await;
        stopped.and(flushed)
    }

    /// Writes what changed since the last flush to the retention tiers now (the worker does it
    /// every `flush_interval`). Without a tier configured there is nothing to write.
    #[cfg(feature = "redis")]
    pub async fn flush(&self) -> Result<crate::FlushReport, ShutdownError> {
        match &self.tier {
            Some(tier) => tier
                .flusher
                .lock()
                .await
                .flush()
                .await
                .map_err(ShutdownError::Flush),
            None => Ok(crate::FlushReport::default()),
        }
    }

    /// Runs the PostgreSQL retention job as of `now`: deletes hourly rows older than 90 days,
    /// daily rows and events older than a year, in bounded batches. The flush worker runs it
    /// once an hour; this is for tests and operators.
    #[cfg(feature = "postgres")]
    pub async fn prune(
        &self,
        now: std::time::SystemTime,
    ) -> Result<crate::PruneReport, ShutdownError> {
        let pool = crate::backends::pg_pool()
            .ok_or_else(|| ShutdownError::Flush("no PostgreSQL is configured".into()))?;
        crate::tier::postgres::prune(
            &pool,
            &crate::tier::postgres::schema(&self.config.key_prefix),
            now,
        )
        .await
        .map_err(ShutdownError::Flush)
    }

    fn stop(&mut self) -> Result<(), ShutdownError> {
        if let Some(mut a) = self.alerts.take() {
            a.stop();
        }
        let Some(worker) = self.worker.take() else {
            return Ok(());
        };
        *self.signal.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.signal.cv.notify_all();
        let joined = worker.join();
        drop(crate::state::drained());
        *running().lock().unwrap_or_else(|e| e.into_inner()) = false;
        joined.map_err(|_| ShutdownError::WorkerPanicked)
    }
}

impl Drop for Perfmon {
    fn drop(&mut self) {
        // Dropped without `shutdown().await`: stop the flush worker and flush once more in the
        // background, bounded by the flush timeout.
        #[cfg(any(feature = "redis", feature = "postgres"))]
        if let Some(tier) = self.tier.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = tier.stop().await {
                        tracing::warn!(target: "perfmon", error = %e, "final flush on drop");
                    }
                });
            }
        }
        crate::backends::disconnect_now();
        if let Err(e) = self.stop() {
            tracing::error!(target: "perfmon", error = %e, "perfmon shutdown");
        }
    }
}
