//! Start-up and shutdown: `init` builds the one running runtime — settings applied, backends
//! connected, the drain, alert and flush workers started, the tiers installed as the source of
//! long windows — and returns the [`Perfmon`] handle that owns it; `shutdown` (or dropping the
//! handle) tears it down in order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::core::worker::ThreadWorker;
use crate::ops::alerts::{publish, AlertEngine};
use crate::ops::health::set_cache_ttl;
use crate::pipeline::registry::{self, Settings};
use crate::pipeline::state::global;
use crate::read::sla::set_targets;
use crate::runtime::backends::Backends;
use crate::runtime::config::{Config, ConfigError};
use crate::runtime::error::{InitError, ShutdownError};
use crate::runtime::tiers::{self, Tiers};
use crate::runtime::workers::{Alerting, Drain, Push};

/// How long stopping the drain worker may take (one drain).
const DRAIN_STOP: Duration = Duration::from_secs(5);
/// How long stopping the alert worker may take (it may be waiting for a health check).
const ALERTS_STOP: Duration = Duration::from_secs(15);
/// How long stopping the push worker may take (one push: two tries of 5 s).
const PUSH_STOP: Duration = Duration::from_secs(12);
/// How long `Drop` waits for the alert worker before leaving it to finish on its own.
const ALERTS_STOP_ON_DROP: Duration = Duration::from_secs(1);

/// Whether a runtime is installed: `init` claims it, `shutdown` (or drop) releases it. The
/// runtime itself is owned by the handle; this is the only process-wide value of this layer.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Releases the claim if `init` fails half-way.
struct Claim(bool);

impl Claim {
    fn take() -> Result<Claim, InitError> {
        RUNNING
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| Claim(true))
            .map_err(|_| InitError::AlreadyInitialized)
    }

    fn keep(mut self) {
        self.0 = false;
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.0 {
            RUNNING.store(false, Ordering::Release);
        }
    }
}

/// What `init` started, in the order `shutdown` stops it.
struct Running {
    alerts: Option<ThreadWorker<()>>,
    push: Option<ThreadWorker<Result<(), String>>>,
    tiers: Option<Tiers>,
    drain: ThreadWorker<()>,
    backends: Backends,
}

/// The running perfmon: keep it for the life of the program. [`Perfmon::shutdown`] stops every
/// worker after a last drain and a last flush, and reports what failed; dropping the handle does
/// the same with bounded waits.
#[must_use = "dropping the handle stops perfmon's background workers"]
pub struct Perfmon {
    config: Config,
    running: Option<Running>,
}

impl std::fmt::Debug for Perfmon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Perfmon")
            .field("instance", &self.config.instance)
            .finish_non_exhaustive()
    }
}

/// Starts perfmon with `config`: validates it, connects the configured backends (an unreachable
/// one is an error that names it, and leaves nothing behind) and registers their health checks,
/// applies limits and thresholds, and starts the background workers. Statistics recorded before
/// `init` are kept.
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
    let claim = Claim::take()?;
    let backends = connect_backends(&config).await?;
    let perfmon = start(config, backends)?;
    claim.keep();
    Ok(perfmon)
}

/// Connects the backends on perfmon's I/O runtime, so that their connections' tasks run there
/// and not on the application's workers.
#[cfg(any(feature = "redis", feature = "postgres"))]
async fn connect_backends(config: &Config) -> Result<Backends, InitError> {
    let config = config.clone();
    crate::core::pool::on_io(async move { Backends::connect(&config).await })
        .await
        .unwrap_or_else(|| {
            Err(InitError::Config(ConfigError::Invalid {
                what: "backends",
                message: "connecting the backends panicked; see the log".into(),
            }))
        })
}

#[cfg(not(any(feature = "redis", feature = "postgres")))]
async fn connect_backends(config: &Config) -> Result<Backends, InitError> {
    Backends::connect(config).await
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
    let claim = Claim::take()?;
    let perfmon = start(config, Backends::default())?;
    claim.keep();
    Ok(perfmon)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn start(config: Config, backends: Backends) -> Result<Perfmon, InitError> {
    registry::apply(Settings {
        limits: config.limits,
        api_slow_ns: nanos(config.api_slow),
        query_slow_ns: nanos(config.query_slow),
        cache_key_segments: config.cache_key_segments,
    });
    set_cache_ttl(config.health_cache_ttl);
    crate::core::hist::set_bounds(std::array::from_fn(|i| config.buckets[i].as_deref()));
    crate::pipeline::aggregator::set_status_classes(config.status_class_label);
    crate::pipeline::slowlog::set_interval_ns(nanos(config.slow_log_interval));
    crate::pipeline::apdex::configure(
        nanos(config.apdex_threshold),
        &config
            .route_apdex
            .iter()
            .map(|(r, t)| (r.clone(), nanos(*t)))
            .collect::<Vec<_>>(),
    );
    // validated by `Config::validate`
    crate::ops::notify::set_root_certificates(
        config
            .tls_roots
            .as_deref()
            .and_then(|pem| crate::ops::notify::parse_pem_certificates(pem).ok()),
    );
    #[cfg(feature = "axum")]
    crate::http::access::install_token(config.monitoring_token());
    #[cfg(feature = "axum")]
    crate::http::heavy::configure(crate::http::heavy::Settings {
        max_loads: config.max_heavy_reads,
        cache_ttl: config.heavy_read_cache_ttl,
        timeout: config.heavy_read_timeout,
    });
    #[cfg(any(feature = "axum", feature = "redis", feature = "postgres"))]
    crate::core::pool::set_threads(config.read_threads);
    set_targets(config.sla);
    let drain = ThreadWorker::spawn("drain", config.drain_interval, Drain).map_err(|source| {
        InitError::Worker {
            worker: "drain",
            source,
        }
    })?;
    let alerts = match &config.alerts {
        Some(a) => {
            let mut sinks = config.alert_sinks.clone();
            if let Some(am) = &mut sinks.alertmanager {
                am.instance = config.instance.clone();
            }
            let job = Alerting {
                engine: AlertEngine::new(a.clone()),
                sinks,
                #[cfg(any(feature = "redis", feature = "postgres"))]
                runtime: tokio::runtime::Handle::try_current().ok(),
            };
            publish(Some(job.engine.board()));
            Some(
                ThreadWorker::spawn("alerts", a.tick, job).map_err(|source| InitError::Worker {
                    worker: "alerts",
                    source,
                })?,
            )
        }
        None => None,
    };
    let push = match &config.pushgateway {
        Some((url, job)) => Some(
            ThreadWorker::spawn(
                "push",
                config.push_interval,
                Push::new(url, job, &config.instance),
            )
            .map_err(|source| InitError::Worker {
                worker: "push",
                source,
            })?,
        ),
        None => None,
    };
    backends.register_checks(&config);
    let tiers = tiers::start(&config, &backends);
    tracing::debug!(target: "perfmon", instance = %config.instance, tiers = backends.any(), "perfmon started");
    Ok(Perfmon {
        config,
        running: Some(Running {
            alerts,
            push,
            tiers,
            drain,
            backends,
        }),
    })
}

impl Perfmon {
    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Writes what changed since the last flush to the retention tiers now (the flush worker
    /// does it every `flush_interval`). Without a tier configured there is nothing to write.
    #[cfg(any(feature = "redis", feature = "postgres"))]
    pub async fn flush(
        &self,
    ) -> Result<crate::store::prepared::FlushReport, crate::store::error::TierError> {
        match self.running.as_ref().and_then(|r| r.tiers.as_ref()) {
            Some(t) => t.flush().await,
            None => Ok(Default::default()),
        }
    }

    /// Runs the PostgreSQL retention job as of `now`: drops the month partitions past their
    /// retention whole, then deletes the remaining hourly rows older than 90 days, daily rows and
    /// events older than a year, in bounded batches. The flush worker runs it
    /// once an hour; this is for tests and operators.
    #[cfg(feature = "postgres")]
    pub async fn prune(
        &self,
        now: std::time::SystemTime,
    ) -> Result<crate::store::postgres::PruneReport, crate::store::error::TierError> {
        let pool = self
            .running
            .as_ref()
            .and_then(|r| r.backends.pg.clone())
            .ok_or_else(|| crate::store::error::TierError::NotConfigured { tier: "PostgreSQL" })?;
        crate::store::postgres::prune(&pool, &self.config.key_prefix, now).await
    }

    /// Evaluates the alert rules now, as the alert worker does every tick, and waits (at most
    /// 15 s, any executor) until the notifications are delivered. An error without alerts
    /// configured ([`ConfigBuilder::no_alerts`](crate::ConfigBuilder::no_alerts)).
    pub async fn evaluate_alerts(&self) -> Result<(), crate::core::worker::WorkerError> {
        match self.running.as_ref().and_then(|r| r.alerts.as_ref()) {
            Some(a) => a.flush_async(ALERTS_STOP).await,
            None => Err(crate::core::worker::WorkerError::Gone { worker: "alerts" }),
        }
    }

    /// Stops every worker — the alert engine, then the Pushgateway worker after a last push, then
    /// the flush worker after a last flush, then the
    /// drain worker after a last drain — and closes the backends. Every wait is bounded and
    /// awaited (any executor); the first failure is returned, the rest are logged.
    pub async fn shutdown(mut self) -> Result<(), ShutdownError> {
        let Some(mut r) = self.running.take() else {
            return Ok(());
        };
        let mut errors: Vec<ShutdownError> = Vec::new();
        if let Some(mut a) = r.alerts.take() {
            if let Err(e) = a.shutdown_async(ALERTS_STOP).await {
                errors.push(e.into());
            }
            publish(None);
        }
        if let Some(mut p) = r.push.take() {
            // the last push: everything recorded up to now
            match p.shutdown_async(PUSH_STOP).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(ShutdownError::Push(e)),
                Err(e) => errors.push(e.into()),
            }
        }
        if let Some(t) = r.tiers.take() {
            if let Err(e) = t.stop().await {
                errors.push(ShutdownError::Flush(e));
            }
        }
        if let Err(e) = r.drain.shutdown_async(DRAIN_STOP).await {
            errors.push(e.into());
        }
        r.backends.unregister_checks();
        global().outbox.set_logging(false);
        r.backends.close().await;
        RUNNING.store(false, Ordering::Release);
        tracing::debug!(target: "perfmon", "perfmon stopped");
        let mut errors = errors.into_iter();
        match errors.next() {
            None => Ok(()),
            Some(first) => {
                for e in errors {
                    tracing::warn!(target: "perfmon", error = %e, "perfmon shutdown");
                }
                Err(first)
            }
        }
    }
}

impl Drop for Perfmon {
    /// Dropped without `shutdown().await`: the same teardown with short, blocking waits. The
    /// last flush runs on the runtime `init` ran in; outside any runtime (the handle dropped
    /// after `block_on` returned) this waits for it, and says so if it cannot complete.
    fn drop(&mut self) {
        let Some(mut r) = self.running.take() else {
            return;
        };
        if let Some(mut a) = r.alerts.take() {
            if let Err(e) = a.shutdown(ALERTS_STOP_ON_DROP) {
                tracing::debug!(target: "perfmon", error = %e, "alert worker on drop");
            }
            publish(None);
        }
        if let Some(mut p) = r.push.take() {
            match p.shutdown(PUSH_STOP) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(target: "perfmon", error = %e, "the last push to the Pushgateway on drop failed")
                }
                Err(e) => tracing::warn!(target: "perfmon", error = %e, "push worker on drop"),
            }
        }
        if let Some(t) = r.tiers.take() {
            t.stop_on_drop();
        }
        if let Err(e) = r.drain.shutdown(DRAIN_STOP) {
            tracing::error!(target: "perfmon", error = %e, "perfmon shutdown");
        }
        r.backends.unregister_checks();
        global().outbox.set_logging(false);
        RUNNING.store(false, Ordering::Release);
    }
}
