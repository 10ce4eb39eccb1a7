//! The flush worker: every `flush_interval` (and on request) it takes what changed from the
//! aggregator in one drain, and writes it to every configured tier; and the tiers as the read
//! layer's source of long windows (flushing this instance before each read).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::core::hist::Merged;
use crate::core::kind::Kind;
use crate::core::sync::oneshot;
use crate::core::window::{Scope, Window, SLOW_LIST_SIZE};
use crate::core::worker::{Msg, WorkerError};
use crate::pipeline::aggregator::{Minute, View};
use crate::pipeline::registry::SeriesInfo;
use crate::pipeline::state::global;
use crate::read::query::{LoadFuture, QueryError, SeriesFilter, WindowSource};
use crate::store::codec::series_key;
use crate::store::error::TierError;
use crate::store::prepared::{request_json, FlushReport, Prepared, Realtime};

/// Takes what changed since the last flush from the global collector, in one drain; the alerts
/// are read after the shards are unlocked (no lock of the alert engine is ever taken while the
/// shards are held).
fn prepare(instance: &str) -> Prepared {
    let mut prep = Prepared::default();
    {
        let mut agg = global().drained();
        let dirty = agg.take_dirty();
        prep.minutes = dirty
            .minutes
            .into_iter()
            .map(|(info, minute, m)| (minute, series_key(&info), m))
            .collect();
        prep.buckets = dirty
            .buckets
            .into_iter()
            .map(|(info, bucket, m)| (bucket, series_key(&info), m))
            .collect();
        let recent = agg.recent_requests();
        let api = agg.totals(&[Kind::Api]);
        let total: u64 = api.iter().map(|(_, t)| t.events).sum();
        let errors: u64 = api
            .iter()
            .flat_map(|(_, t)| t.statuses.iter())
            .filter(|(c, _)| *c >= 400)
            .map(|(_, n)| n)
            .sum();
        prep.realtime = Realtime {
            recent: recent.iter().map(|(r, i)| request_json(*r, i)).collect(),
            times: recent
                .iter()
                .map(|(r, _)| format!("{:.3}", r.dur_ns as f64 / 1e6))
                .collect(),
            slow: agg
                .slow_requests(SLOW_LIST_SIZE)
                .into_iter()
                .map(|(r, i)| (r.dur_ns as f64 / 1e6, request_json(r, i)))
                .collect(),
            counters: vec![
                ("totalRequests", total),
                ("errorRequests", errors),
                ("eventsProcessed", agg.processed()),
            ],
            instance_json: instance.to_string(),
            alerts: Vec::new(),
        };
    }
    prep.realtime.alerts = crate::ops::alerts::alerts()
        .active
        .iter()
        .map(|n| {
            (
                format!("{}\u{1e}{}", n.rule, n.key),
                serde_json::to_string(n).unwrap_or_default(),
            )
        })
        .collect();
    prep
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// This process's run: one id per process, so that a restarted process (which starts with
/// empty memory) never replaces what the previous one wrote, while `init` called again in the
/// same process (whose memory still holds everything) replaces its own values.
pub(crate) fn run_id() -> String {
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!(
            "{:x}",
            (nanos as u64) ^ (u64::from(std::process::id()) << 40)
        )
    })
    .clone()
}

/// Writes to every configured tier from one snapshot per flush.
pub(crate) struct Flusher {
    instance: String,
    #[cfg(feature = "redis")]
    redis: Option<crate::store::redis::writer::Writer>,
    #[cfg(feature = "postgres")]
    pg: Option<crate::store::postgres::Writer>,
}

impl Flusher {
    /// A flusher for the tiers given; `None` without any.
    pub(crate) fn new(
        instance: &str,
        #[cfg(feature = "redis")] redis: Option<crate::store::redis::writer::Writer>,
        #[cfg(feature = "postgres")] pg: Option<crate::store::postgres::Writer>,
    ) -> Option<Flusher> {
        let f = Flusher {
            instance: instance.to_string(),
            #[cfg(feature = "redis")]
            redis,
            #[cfg(feature = "postgres")]
            pg,
        };
        f.has_tier().then_some(f)
    }

    fn has_tier(&self) -> bool {
        #[cfg(feature = "redis")]
        if self.redis.is_some() {
            return true;
        }
        #[cfg(feature = "postgres")]
        if self.pg.is_some() {
            return true;
        }
        false
    }

    /// One flush: one snapshot, then every tier. Each tier keeps what it could not write.
    pub(crate) async fn flush(&mut self) -> Result<FlushReport, TierError> {
        let prep = prepare(&self.instance);
        #[allow(unused_variables)]
        let now_secs = unix_secs();
        #[allow(unused_mut)]
        let mut report = FlushReport::default();
        #[allow(unused_mut)]
        let mut errors: Vec<TierError> = Vec::new();
        #[allow(unused_mut)]
        let mut pending = 0;
        #[cfg(feature = "redis")]
        if let Some(r) = &mut self.redis {
            match r.write(&prep, now_secs).await {
                Ok(rep) => {
                    report = FlushReport {
                        rows: report.rows,
                        ..rep
                    }
                }
                Err(e) => errors.push(e),
            }
            pending += r.pending();
        }
        #[cfg(feature = "postgres")]
        if let Some(p) = &mut self.pg {
            match p.write(&prep, now_secs).await {
                Ok(rows) => report.rows = rows,
                Err(e) => errors.push(e),
            }
            pending += p.pending();
        }
        let tiers = &global().outbox.tiers;
        tiers.pending.store(pending as u64, Ordering::Relaxed);
        match errors.len() {
            0 => {
                tiers.flushes.fetch_add(1, Ordering::Relaxed);
                Ok(report)
            }
            n => {
                tiers.failures.fetch_add(1, Ordering::Relaxed);
                Err(if n == 1 {
                    errors.remove(0)
                } else {
                    TierError::Several(errors)
                })
            }
        }
    }
}

/// How long a caller waits for the flush worker: a flush is bounded by the tiers' own timeouts
/// (5 s Redis, 10 s PostgreSQL), plus a margin.
pub(crate) const FLUSH_WAIT: Duration = Duration::from_secs(20);

type FlushResult = Result<FlushReport, TierError>;

/// The flush worker: a tokio task that owns the [`Flusher`], flushes every `interval` (backing
/// off while a tier fails) and answers [`Msg::Flush`] and [`Msg::Shutdown`].
pub(crate) struct FlushWorker {
    handle: FlushHandle,
}

/// Sends requests to the flush worker.
#[derive(Clone)]
pub(crate) struct FlushHandle(tokio::sync::mpsc::UnboundedSender<Msg<FlushResult>>);

impl FlushWorker {
    /// Starts the worker on the current tokio runtime.
    pub(crate) fn start(mut flusher: Flusher, interval: Duration) -> FlushWorker {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Msg<FlushResult>>();
        tokio::spawn(async move {
            let mut wait = interval;
            let mut failing = false;
            loop {
                let msg = tokio::select! {
                    _ = tokio::time::sleep(wait) => None,
                    msg = rx.recv() => match msg {
                        Some(msg) => Some(msg),
                        // every handle is gone: a last flush, then stop
                        None => {
                            if let Err(e) = flusher.flush().await {
                                tracing::warn!(target: "perfmon", error = %e, "last flush");
                            }
                            return;
                        }
                    },
                };
                match msg {
                    Some(Msg::Flush(reply)) => reply.send(flusher.flush().await),
                    Some(Msg::Shutdown(reply)) => {
                        reply.send(flusher.flush().await);
                        return;
                    }
                    None => match flusher.flush().await {
                        Ok(_) => {
                            if failing {
                                tracing::info!(target: "perfmon", "flushes to the retention tiers resumed");
                            }
                            failing = false;
                            wait = interval;
                        }
                        Err(e) => {
                            if !failing {
                                tracing::warn!(target: "perfmon", error = %e, "flush failed; retrying with backoff, aggregates kept");
                            }
                            failing = true;
                            wait = (wait * 2).min(Duration::from_secs(60));
                        }
                    },
                }
            }
        });
        FlushWorker {
            handle: FlushHandle(tx),
        }
    }

    /// A handle for flush requests.
    pub(crate) fn handle(&self) -> FlushHandle {
        self.handle.clone()
    }

    /// Asks for a last flush and stops the worker, without waiting; the returned receiver
    /// carries the last flush's result.
    pub(crate) fn stop(self) -> Result<crate::core::sync::Receiver<FlushResult>, TierError> {
        let (reply, rx) = oneshot();
        self.handle
            .0
            .send(Msg::Shutdown(reply))
            .map_err(|_| WorkerError::Gone { worker: "flush" })?;
        Ok(rx)
    }
}

impl FlushHandle {
    /// Flushes now and waits (any executor) for the result.
    pub(crate) async fn flush(&self) -> FlushResult {
        let (reply, rx) = oneshot();
        self.0
            .send(Msg::Flush(reply))
            .map_err(|_| WorkerError::Gone { worker: "flush" })?;
        rx.recv(FLUSH_WAIT)
            .await
            .map_err(|e| TierError::Worker(WorkerError::from_recv("flush", e)))?
    }
}

/// The retention tiers as the read layer's source: the Redis 1-minute aggregates up to 24 hours
/// and the 5-minute ones for 7 days, else (or without Redis) the PostgreSQL hourly rows, and the
/// daily rows for a year. Flushes this instance first (read your writes).
pub(crate) struct TierSource {
    pub prefix: String,
    pub instance: String,
    pub flush: FlushHandle,
    #[cfg(feature = "redis")]
    pub redis: Option<crate::store::redis::io::Conn>,
    #[cfg(feature = "postgres")]
    pub pg: Option<sqlx::PgPool>,
}

pub(crate) fn view((info, data): (SeriesInfo, Minute<Merged>)) -> View {
    View {
        info: Arc::new(info),
        last_success_ns: (data.last_ok_ns > 0).then_some(data.last_ok_ns),
        last_failure_ns: (data.last_fail_ns > 0).then_some(data.last_fail_ns),
        data,
    }
}

/// A tier's answer as the read layer takes it.
fn views(
    tier: &'static str,
    rows: Result<Vec<(SeriesInfo, Minute<Merged>)>, TierError>,
) -> Result<Vec<View>, QueryError> {
    rows.map(|rows| rows.into_iter().map(view).collect())
        .map_err(|e| QueryError::Backend {
            tier,
            message: e.to_string(),
        })
}

impl TierSource {
    async fn load_views(
        &self,
        window: Window,
        scope: Scope,
        filter: &SeriesFilter,
    ) -> Result<Vec<View>, QueryError> {
        let unavailable = |tier: &'static str, why: &'static str| QueryError::TierUnavailable {
            window: window.as_str(),
            scope: scope.as_str(),
            tier,
            why,
        };
        if let Err(e) = self.flush.flush().await {
            tracing::debug!(target: "perfmon", error = %e, "flush before a query");
        }
        let long = matches!(window, Window::Days90 | Window::Year1);
        #[cfg(feature = "redis")]
        if !long {
            if let Some(conn) = &self.redis {
                let keys = crate::store::redis::layout::Keys {
                    prefix: self.prefix.clone(),
                };
                let spec = crate::store::redis::reader::ReadSpec {
                    keys: &keys,
                    instance: &self.instance,
                    window,
                    scope,
                    filter,
                    now_secs: unix_secs(),
                };
                let rows = crate::store::redis::reader::load(&mut conn.clone(), &spec).await;
                return views("Redis", rows.map(|(rows, _)| rows));
            }
        }
        #[cfg(feature = "postgres")]
        if window != Window::Minutes5 {
            if let Some(pool) = &self.pg {
                let rows = crate::store::postgres::load(
                    pool,
                    &self.prefix,
                    &self.instance,
                    window,
                    scope,
                    filter,
                    unix_secs(),
                )
                .await;
                return views("PostgreSQL", rows);
            }
        }
        Err(if long {
            unavailable(
                "PostgreSQL",
                "set PERFMON_DATABASE_URL (feature `postgres`) for 90-day and 1-year windows",
            )
        } else {
            unavailable(
                "Redis",
                "set PERFMON_REDIS_URL (feature `redis`) for the 5-minute cluster window",
            )
        })
    }
}

impl WindowSource for TierSource {
    fn load<'a>(
        &'a self,
        window: Window,
        scope: Scope,
        filter: &'a SeriesFilter,
    ) -> LoadFuture<'a> {
        Box::pin(self.load_views(window, scope, filter))
    }
}
