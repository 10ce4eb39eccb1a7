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

/// When a tier is tried again: at every flush while it succeeds; after a failure at doubling
/// intervals (up to a minute), so that a tier that is away is retried without holding back the
/// others, which go on at every flush.
#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
struct Backoff {
    tier: &'static str,
    next: Option<std::time::Instant>,
    wait: Duration,
}

#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
impl Backoff {
    fn new(tier: &'static str) -> Backoff {
        Backoff {
            tier,
            next: None,
            wait: Duration::ZERO,
        }
    }

    fn due(&self) -> bool {
        self.next.is_none_or(|t| std::time::Instant::now() >= t)
    }

    fn succeeded(&mut self) {
        if self.next.is_some() {
            tracing::info!(target: "perfmon", tier = self.tier, "writes to the tier resumed");
        }
        self.next = None;
        self.wait = Duration::ZERO;
    }

    fn failed(&mut self, e: &TierError, interval: Duration) {
        if self.next.is_none() {
            tracing::warn!(target: "perfmon", tier = self.tier, error = %e, "a write to the tier failed; retrying with backoff, aggregates kept, the other tiers go on");
        }
        // doubling from the flush interval up to a minute (or the interval, if longer)
        self.wait = (self.wait * 2).clamp(interval, interval.max(BACKOFF_MAX));
        self.next = Some(std::time::Instant::now() + self.wait);
    }
}

/// The longest wait between two tries of a failing tier (unless the flush interval is longer).
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// What the flusher needs of a tier's writer: take a flush (cheap), and write what is pending
/// (moved into its own task while it writes).
#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
trait TierWriter: Send + Sized + 'static {
    type Report: Send + 'static;
    fn absorb(&mut self, prep: &Prepared, now_secs: u64);
    fn pending(&self) -> usize;
    fn send(self, now_secs: u64) -> SendFuture<Self>;
    /// Counts one successful write in the tier's own counter.
    fn succeeded(counters: &crate::pipeline::outbox::TierCounters);
}

/// What a tier's write gives back: its writer, and how the write went.
type Sent<W> = (W, Result<<W as TierWriter>::Report, TierError>);

type SendFuture<W> = std::pin::Pin<Box<dyn std::future::Future<Output = Sent<W>> + Send>>;

#[cfg(feature = "redis")]
impl TierWriter for crate::store::redis::writer::Writer {
    type Report = FlushReport;

    fn absorb(&mut self, prep: &Prepared, now_secs: u64) {
        crate::store::redis::writer::Writer::absorb(self, prep, now_secs);
    }

    fn pending(&self) -> usize {
        crate::store::redis::writer::Writer::pending(self)
    }

    fn send(mut self, now_secs: u64) -> SendFuture<Self> {
        Box::pin(async move {
            let r = crate::store::redis::writer::Writer::send(&mut self, now_secs).await;
            (self, r)
        })
    }

    fn succeeded(counters: &crate::pipeline::outbox::TierCounters) {
        counters.redis_writes.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(feature = "postgres")]
impl TierWriter for crate::store::postgres::Writer {
    type Report = usize;

    fn absorb(&mut self, prep: &Prepared, now_secs: u64) {
        crate::store::postgres::Writer::absorb(self, prep, now_secs);
    }

    fn pending(&self) -> usize {
        crate::store::postgres::Writer::pending(self)
    }

    fn send(mut self, now_secs: u64) -> SendFuture<Self> {
        Box::pin(async move {
            let r = crate::store::postgres::Writer::send(&mut self, now_secs).await;
            (self, r)
        })
    }

    fn succeeded(counters: &crate::pipeline::outbox::TierCounters) {
        counters.postgres_writes.fetch_add(1, Ordering::Relaxed);
    }
}

/// One tier: its writer (or the task writing with it), the flushes it has not taken yet, and
/// its backoff.
#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
struct Slot<W: TierWriter> {
    writer: Option<W>,
    writing: Option<tokio::task::JoinHandle<Sent<W>>>,
    backlog: Vec<Arc<Prepared>>,
    backoff: Backoff,
    pending: usize,
}

#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
impl<W: TierWriter> Slot<W> {
    fn new(writer: W, tier: &'static str) -> Slot<W> {
        Slot {
            writer: Some(writer),
            writing: None,
            backlog: Vec::new(),
            backoff: Backoff::new(tier),
            pending: 0,
        }
    }

    fn record(&mut self, r: &Result<W::Report, TierError>, interval: Duration) {
        let counters = &global().outbox.tiers;
        match r {
            Ok(_) => {
                self.backoff.succeeded();
                counters.flushes.fetch_add(1, Ordering::Relaxed);
                W::succeeded(counters);
            }
            Err(e) => {
                self.backoff.failed(e, interval);
                counters.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Takes the writer back from its task once the write has ended (waiting for it if
    /// `wait`); returns that write's result.
    async fn land(
        &mut self,
        wait: bool,
        interval: Duration,
    ) -> Option<Result<W::Report, TierError>> {
        if !wait && !self.writing.as_ref()?.is_finished() {
            return None;
        }
        let r = match self.writing.take()?.await {
            Ok((w, r)) => {
                self.pending = w.pending();
                self.writer = Some(w);
                r
            }
            // the writer is lost with its task: the tier stops here, loudly
            Err(e) => {
                tracing::error!(target: "perfmon", tier = self.backoff.tier, error = %e, "the tier's writer panicked; the tier is stopped");
                Err(TierError::Worker(WorkerError::Gone { worker: "flush" }))
            }
        };
        self.record(&r, interval);
        Some(r)
    }

    /// Gives the writer every flush it has not taken yet.
    fn absorb(&mut self, now_secs: u64) {
        if let Some(w) = &mut self.writer {
            for prep in self.backlog.drain(..) {
                w.absorb(&prep, now_secs);
            }
            self.pending = w.pending();
        }
    }

    /// A tick: takes the flush; starts a write in its own task if the tier is due and not
    /// writing already. Never waits for the tier.
    async fn tick(&mut self, prep: Arc<Prepared>, now_secs: u64, interval: Duration) {
        self.land(false, interval).await;
        self.backlog.push(prep);
        self.absorb(now_secs);
        if self.writer.is_some() && self.backoff.due() {
            if let Some(w) = self.writer.take() {
                self.writing = Some(tokio::spawn(w.send(now_secs)));
            }
        }
    }

    /// A requested flush: waits for a write in progress, then writes everything, now.
    async fn flush(
        &mut self,
        prep: Arc<Prepared>,
        now_secs: u64,
        interval: Duration,
    ) -> Result<W::Report, TierError> {
        self.land(true, interval).await;
        self.backlog.push(prep);
        self.absorb(now_secs);
        let Some(w) = self.writer.take() else {
            return Err(TierError::Worker(WorkerError::Gone { worker: "flush" }));
        };
        let (w, r) = w.send(now_secs).await;
        self.pending = w.pending();
        self.writer = Some(w);
        self.record(&r, interval);
        r
    }
}

/// A requested flush of a tier, if it is configured.
#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
async fn flush_slot<W: TierWriter>(
    slot: Option<&mut Slot<W>>,
    prep: Arc<Prepared>,
    now_secs: u64,
    interval: Duration,
) -> Option<Result<W::Report, TierError>> {
    Some(slot?.flush(prep, now_secs, interval).await)
}

/// Writes to every configured tier from one snapshot per flush. Each tier writes in its own
/// task and backs off on its own: a tier that is slow or away never delays another.
pub(crate) struct Flusher {
    instance: String,
    interval: Duration,
    #[cfg(feature = "redis")]
    redis: Option<Slot<crate::store::redis::writer::Writer>>,
    #[cfg(feature = "postgres")]
    pg: Option<Slot<crate::store::postgres::Writer>>,
}

impl Flusher {
    /// A flusher for the tiers given, flushing every `interval`; `None` without any.
    pub(crate) fn new(
        instance: &str,
        interval: Duration,
        #[cfg(feature = "redis")] redis: Option<crate::store::redis::writer::Writer>,
        #[cfg(feature = "postgres")] pg: Option<crate::store::postgres::Writer>,
    ) -> Option<Flusher> {
        let f = Flusher {
            instance: instance.to_string(),
            interval,
            #[cfg(feature = "redis")]
            redis: redis.map(|w| Slot::new(w, "Redis")),
            #[cfg(feature = "postgres")]
            pg: pg.map(|w| Slot::new(w, "PostgreSQL")),
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

    fn publish_pending(&self) {
        #[allow(unused_mut)]
        let mut pending = 0;
        #[cfg(feature = "redis")]
        if let Some(s) = &self.redis {
            pending += s.pending;
        }
        #[cfg(feature = "postgres")]
        if let Some(s) = &self.pg {
            pending += s.pending;
        }
        global()
            .outbox
            .tiers
            .pending
            .store(pending as u64, Ordering::Relaxed);
    }

    /// A timed flush: one snapshot, taken by every tier; each tier that is due and idle starts
    /// writing in its own task. Waits for no tier.
    pub(crate) async fn tick(&mut self) {
        let prep = Arc::new(prepare(&self.instance));
        #[allow(unused_variables)]
        let (now_secs, interval) = (unix_secs(), self.interval);
        #[cfg(feature = "redis")]
        if let Some(s) = &mut self.redis {
            s.tick(prep.clone(), now_secs, interval).await;
        }
        #[cfg(feature = "postgres")]
        if let Some(s) = &mut self.pg {
            s.tick(prep.clone(), now_secs, interval).await;
        }
        self.publish_pending();
    }

    /// A requested flush: one snapshot; every tier writes everything now (concurrently), and
    /// the result says what each did.
    pub(crate) async fn flush(&mut self) -> Result<FlushReport, TierError> {
        let prep = Arc::new(prepare(&self.instance));
        #[allow(unused_variables)]
        let (now_secs, interval) = (unix_secs(), self.interval);
        #[cfg(feature = "redis")]
        let redis = flush_slot(self.redis.as_mut(), prep.clone(), now_secs, interval);
        #[cfg(not(feature = "redis"))]
        let redis = async { None::<FlushResult> };
        #[cfg(feature = "postgres")]
        let pg = flush_slot(self.pg.as_mut(), prep.clone(), now_secs, interval);
        #[cfg(not(feature = "postgres"))]
        let pg = async { None::<Result<usize, TierError>> };
        let (redis, pg) = tokio::join!(redis, pg);
        self.publish_pending();
        let mut report = FlushReport::default();
        let mut errors: Vec<TierError> = Vec::new();
        match redis {
            Some(Ok(rep)) => report = rep,
            Some(Err(e)) => errors.push(e),
            None => {}
        }
        match pg {
            Some(Ok(rows)) => report.rows = rows,
            Some(Err(e)) => errors.push(e),
            None => {}
        }
        match errors.len() {
            0 => Ok(report),
            1 => Err(errors.remove(0)),
            _ => Err(TierError::Several(errors)),
        }
    }
}

/// How long a caller waits for the flush worker: a flush is bounded by the tiers' own timeouts
/// (5 s Redis, 10 s PostgreSQL), plus a margin.
pub(crate) const FLUSH_WAIT: Duration = Duration::from_secs(20);

type FlushResult = Result<FlushReport, TierError>;

/// The flush worker: a tokio task that owns the [`Flusher`], flushes every `interval` (each
/// tier backing off on its own while it fails) and answers [`Msg::Flush`] and [`Msg::Shutdown`].
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
            loop {
                let msg = tokio::select! {
                    _ = tokio::time::sleep(interval) => None,
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
                    // failures are logged by each tier's backoff
                    None => flusher.tick().await,
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
/// The reads' own Redis connection, and when opening it last failed.
#[cfg(feature = "redis")]
#[derive(Default)]
pub(crate) struct ReadConn {
    conn: Option<crate::store::redis::io::Conn>,
    failed: Option<std::time::Instant>,
}

/// How long reads share the writers' connection after their own could not be opened.
#[cfg(feature = "redis")]
const READ_CONN_RETRY: Duration = Duration::from_secs(30);

pub(crate) struct TierSource {
    pub prefix: String,
    pub instance: String,
    pub flush: FlushHandle,
    #[cfg(feature = "redis")]
    pub redis: Option<crate::store::redis::io::Conn>,
    /// The Redis URL, to open the reads' own connection.
    #[cfg(feature = "redis")]
    pub redis_url: Option<String>,
    /// The reads' own Redis connection, opened by the first read (on the read pool, so that
    /// the parsing of what Redis answers runs there too), with when opening it last failed.
    #[cfg(feature = "redis")]
    pub read_redis: tokio::sync::Mutex<ReadConn>,
    #[cfg(feature = "postgres")]
    pub pg: Option<sqlx::PgPool>,
    /// Reads in progress on the pool, at most `postgres::READ_CONNECTIONS`: however many read
    /// at once, the writer and the health check find a connection.
    #[cfg(feature = "postgres")]
    pub pg_reads: tokio::sync::Semaphore,
}

pub(crate) fn view((info, data): (SeriesInfo, Minute<Merged>)) -> View {
    View {
        info: Arc::new(info),
        last_success_ns: (data.last_ok_ns > 0).then_some(data.last_ok_ns),
        last_failure_ns: (data.last_fail_ns > 0).then_some(data.last_fail_ns),
        last_failure_trace: data.last_fail_trace,
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
    /// The connection reads use: their own, else (while it cannot be opened; tried again
    /// after [`READ_CONN_RETRY`]) the writers'.
    #[cfg(feature = "redis")]
    async fn read_conn(&self) -> Option<crate::store::redis::io::Conn> {
        let shared = self.redis.as_ref()?;
        let mut own = self.read_redis.lock().await;
        if own.conn.is_none() && own.failed.is_none_or(|t| t.elapsed() >= READ_CONN_RETRY) {
            let url = self.redis_url.as_deref()?;
            let timeout = crate::store::redis::io::ROUND_TRIP_TIMEOUT;
            match crate::store::redis::io::connect(url, timeout, timeout).await {
                Ok(c) => own.conn = Some(c),
                Err(e) => {
                    own.failed = Some(std::time::Instant::now());
                    tracing::warn!(target: "perfmon", error = %e, "could not open the reads' own Redis connection; reads share the writers' meanwhile");
                }
            }
        }
        Some(own.conn.as_ref().unwrap_or(shared).clone())
    }

    async fn load_views(
        &self,
        window: Window,
        scope: Scope,
        filter: &SeriesFilter,
        flush_first: bool,
    ) -> Result<Vec<View>, QueryError> {
        if flush_first {
            if let Err(e) = self.flush.flush().await {
                tracing::debug!(target: "perfmon", error = %e, "flush before a query");
            }
        }
        #[cfg(feature = "redis")]
        if redis_holds(window) {
            if let Some(mut conn) = self.read_conn().await {
                let keys = self.keys();
                let spec = self.redis_spec(&keys, window, scope, filter);
                let rows = crate::store::redis::reader::load(&mut conn, &spec).await;
                return views("Redis", rows.map(|(rows, _)| rows));
            }
        }
        #[cfg(feature = "postgres")]
        if postgres_holds(window) {
            if let Some(pool) = &self.pg {
                let _slot = self.pg_reads.acquire().await;
                let rows =
                    crate::store::postgres::load(pool, &self.pg_read(window, scope, filter)).await;
                return views("PostgreSQL", rows);
            }
        }
        Err(unavailable(window, scope))
    }

    /// A route's trend, from the tier that holds the window (as `load_views` picks it).
    async fn load_trend(
        &self,
        window: Window,
        scope: Scope,
        filter: &SeriesFilter,
        points: usize,
    ) -> Result<Vec<(u64, View)>, QueryError> {
        let slices = |tier: &'static str, rows: Result<Vec<(u64, Minute<Merged>)>, TierError>| {
            rows.map(|rows| {
                rows.into_iter()
                    .filter_map(|(t, m)| Some((t, view((filter.exact()?.into_iter().next()?, m)))))
                    .collect()
            })
            .map_err(|e| QueryError::Backend {
                tier,
                message: e.to_string(),
            })
        };
        #[cfg(feature = "redis")]
        if redis_holds(window) {
            if let Some(mut conn) = self.read_conn().await {
                let keys = self.keys();
                let spec = self.redis_spec(&keys, window, scope, filter);
                let rows = crate::store::redis::reader::load_trend(&mut conn, &spec, points).await;
                return slices("Redis", rows);
            }
        }
        #[cfg(feature = "postgres")]
        if postgres_holds(window) {
            if let Some(pool) = &self.pg {
                let _slot = self.pg_reads.acquire().await;
                let read = self.pg_read(window, scope, filter);
                let rows = crate::store::postgres::load_trend(pool, &read, points).await;
                return slices("PostgreSQL", rows);
            }
        }
        Err(unavailable(window, scope))
    }

    #[cfg(feature = "redis")]
    fn keys(&self) -> crate::store::redis::layout::Keys {
        crate::store::redis::layout::Keys {
            prefix: self.prefix.clone(),
        }
    }

    /// What a Redis read of `window` for `scope` names, now.
    #[cfg(feature = "redis")]
    fn redis_spec<'a>(
        &'a self,
        keys: &'a crate::store::redis::layout::Keys,
        window: Window,
        scope: Scope,
        filter: &'a SeriesFilter,
    ) -> crate::store::redis::reader::ReadSpec<'a> {
        crate::store::redis::reader::ReadSpec {
            keys,
            instance: &self.instance,
            window,
            scope,
            filter,
            now_secs: unix_secs(),
        }
    }

    /// What a PostgreSQL read of `window` for `scope` names, now.
    #[cfg(feature = "postgres")]
    fn pg_read<'a>(
        &'a self,
        window: Window,
        scope: Scope,
        filter: &'a SeriesFilter,
    ) -> crate::store::postgres::PgRead<'a> {
        crate::store::postgres::PgRead {
            prefix: &self.prefix,
            instance: &self.instance,
            window,
            scope,
            filter,
            now: unix_secs(),
        }
    }
}

/// Redis holds up to 7 days.
#[cfg(feature = "redis")]
fn redis_holds(window: Window) -> bool {
    !matches!(window, Window::Days90 | Window::Year1)
}

/// PostgreSQL holds every window past the in-memory 5 minutes.
#[cfg(feature = "postgres")]
fn postgres_holds(window: Window) -> bool {
    window != Window::Minutes5
}

/// No configured tier holds `window` for `scope`: which one would, and how to configure it.
fn unavailable(window: Window, scope: Scope) -> QueryError {
    let long = matches!(window, Window::Days90 | Window::Year1);
    QueryError::TierUnavailable {
        window: window.as_str(),
        scope: scope.as_str(),
        tier: if long { "PostgreSQL" } else { "Redis" },
        why: if long {
            "set PERFMON_DATABASE_URL (feature `postgres`) for 90-day and 1-year windows"
        } else {
            "set PERFMON_REDIS_URL (feature `redis`) for the 5-minute cluster window"
        },
    }
}

impl WindowSource for TierSource {
    fn load<'a>(
        &'a self,
        window: Window,
        scope: Scope,
        filter: &'a SeriesFilter,
        flush_first: bool,
    ) -> LoadFuture<'a> {
        Box::pin(self.load_views(window, scope, filter, flush_first))
    }

    fn trend<'a>(
        &'a self,
        window: Window,
        scope: Scope,
        filter: &'a SeriesFilter,
        points: usize,
    ) -> crate::read::query::TrendFuture<'a> {
        Box::pin(self.load_trend(window, scope, filter, points))
    }

    fn windows(&self) -> Vec<Window> {
        let mut out = Vec::new();
        #[cfg(feature = "redis")]
        if self.redis.is_some() {
            out.extend([Window::Hour1, Window::Hours24, Window::Days7]);
        }
        #[cfg(feature = "postgres")]
        if self.pg.is_some() {
            out.extend([
                Window::Hour1,
                Window::Hours24,
                Window::Days7,
                Window::Days90,
                Window::Year1,
            ]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_interval_up_to_a_minute_or_the_interval() {
        let e = TierError::Timeout {
            tier: "Redis",
            after: Duration::from_secs(1),
        };
        let mut b = Backoff::new("Redis");
        let waits: Vec<u64> = (0..8)
            .map(|_| {
                b.failed(&e, Duration::from_secs(10));
                b.wait.as_secs()
            })
            .collect();
        assert_eq!(waits, [10, 20, 40, 60, 60, 60, 60, 60]);
        // a flush interval over a minute used to panic here (clamp with min > max)
        let mut b = Backoff::new("PostgreSQL");
        b.failed(&e, Duration::from_secs(3600));
        b.failed(&e, Duration::from_secs(3600));
        assert_eq!(b.wait, Duration::from_secs(3600));
        b.succeeded();
        assert!(b.due());
    }
}
