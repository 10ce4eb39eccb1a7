//! The PostgreSQL tier: hourly aggregates (kept 90 days), daily aggregates (kept a year) and
//! the event log, in the schema named by `PERFMON_KEY_PREFIX`.
//!
//! Rows are keyed by (bucket start, instance, run, series) and upserted with the bucket's whole
//! value as of the flush (`ON CONFLICT … DO UPDATE`), so a repeated or retried flush replaces,
//! never adds. The writer keeps each open minute's latest value and folds a minute into its
//! hour and day once the aggregator can no longer change it.

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::TryStreamExt;
use sqlx::PgPool;

use crate::core::hist::{Accum, Merged};
use crate::core::trace::TraceId;
use crate::core::window::{Scope, Window};
use crate::pipeline::aggregator::Minute;
use crate::pipeline::outbox::LoggedEvent;
use crate::pipeline::registry::SeriesInfo;
use crate::pipeline::state::global;
use crate::read::query::SeriesFilter;
use crate::store::codec;
use crate::store::error::TierError;
use crate::store::partitions::{self, month_of, Partitions};
use crate::store::pgcompact;
use crate::store::prepared::Prepared;
use crate::store::rollup::{KeptRollup, MergeRuns, Rollup};

/// How long hourly rows are kept.
pub const HOURLY_RETENTION: Duration = Duration::from_secs(90 * 86_400);
/// How long daily rows and events are kept.
pub const DAILY_RETENTION: Duration = Duration::from_secs(365 * 86_400);
/// Rows deleted per statement by the retention job.
const PRUNE_BATCH: i64 = 10_000;
/// Folded hours and days kept while PostgreSQL is away, at most (the oldest go first, counted in
/// `recorder_stats().tier_dropped`).
pub const PG_PENDING_LIMIT: usize = 100_000;
const TIMEOUT: Duration = Duration::from_secs(10);

/// The schema, as a quoted identifier.
pub(crate) fn schema(prefix: &str) -> String {
    format!("\"{}\"", prefix.replace('"', "\"\""))
}

/// Opens the pool and checks it with `SELECT 1`, waiting at most `connect_timeout`.
/// Connections of the pool `init` opens.
pub(crate) const POOL_CONNECTIONS: u32 = 4;
/// Of those, how many reads may hold at once: the writer and the health check always find one.
pub(crate) const READ_CONNECTIONS: usize = POOL_CONNECTIONS as usize / 2;

pub(crate) async fn connect(url: &str, connect_timeout: Duration) -> Result<PgPool, TierError> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(POOL_CONNECTIONS)
        .min_connections(1)
        .acquire_timeout(connect_timeout)
        .connect(url)
        .await?;
    select_one(&pool).await?;
    Ok(pool)
}

/// `SELECT 1`: what the health check runs.
pub(crate) async fn select_one(pool: &PgPool) -> Result<(), TierError> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

/// The embedded migrations, applied in order by `init` (each idempotent, recorded by version).
fn migrations(s: &str) -> Vec<(i32, String)> {
    vec![
        (
            1,
            format!(
                "CREATE TABLE IF NOT EXISTS {s}.hourly (
                    bucket_start timestamptz NOT NULL,
                    instance text NOT NULL,
                    run text NOT NULL,
                    series text NOT NULL,
                    events bigint NOT NULL,
                    data bytea NOT NULL,
                    updated_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (bucket_start, instance, run, series)
                );
                CREATE TABLE IF NOT EXISTS {s}.daily (LIKE {s}.hourly INCLUDING ALL);
                CREATE TABLE IF NOT EXISTS {s}.events (
                    at timestamptz NOT NULL,
                    instance text NOT NULL,
                    kind text NOT NULL,
                    name text NOT NULL,
                    detail text NOT NULL DEFAULT '',
                    PRIMARY KEY (at, instance, kind, name)
                );"
            ),
        ),
        (
            2,
            // "one series over a period" (a route's read) and "every series of a period"
            // (the primary key, which starts with the bucket)
            format!(
            "CREATE INDEX IF NOT EXISTS hourly_series_bucket ON {s}.hourly (series, bucket_start);
             CREATE INDEX IF NOT EXISTS daily_series_bucket ON {s}.daily (series, bucket_start);"
        ),
        ),
        // partitioned by month; retention drops whole partitions
        (3, partitions::migration(s)),
        // cluster values: each closed bucket merged across instances once
        (4, pgcompact::migration(s)),
    ]
}

/// Creates the schema and applies the migrations not yet applied. Safe to run concurrently from
/// several instances (an advisory lock serializes them).
pub(crate) async fn migrate(pool: &PgPool, prefix: &str) -> Result<(), TierError> {
    use sqlx::Executor;
    let s = schema(prefix);
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(prefix)
        .execute(&mut *tx)
        .await?;
    // statements as owned strings run through `Executor::execute`: a `raw_sql` future is not
    // provably `Send` once spawned (sqlx's higher-ranked `Executor` bound)
    let create = format!(
        "CREATE SCHEMA IF NOT EXISTS {s}; CREATE TABLE IF NOT EXISTS {s}.migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());"
    );
    tx.execute(create.as_str()).await?;
    let applied: Vec<i32> = sqlx::query_scalar(&format!("SELECT version FROM {s}.migrations"))
        .fetch_all(&mut *tx)
        .await?;
    for (version, sql) in migrations(&s) {
        if applied.contains(&version) {
            continue;
        }
        tx.execute(sql.as_str())
            .await
            .map_err(|source| TierError::Migration { version, source })?;
        sqlx::query(&format!("INSERT INTO {s}.migrations (version) VALUES ($1)"))
            .bind(version)
            .execute(&mut *tx)
            .await?;
    }
    Ok(tx.commit().await?)
}

/// Seconds since the Unix epoch, as bound to `to_timestamp($n)` (sqlx is built without a date
/// crate; PostgreSQL converts).
fn secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn ts(unix_secs: u64) -> f64 {
    unix_secs as f64
}

pub(crate) struct Writer {
    pool: PgPool,
    prefix: String,
    schema: String,
    partitions: Partitions,
    instance: String,
    run: String,
    /// Hours (level 0) and days (level 1) of this process's series.
    rollup: KeptRollup,
    /// Events not yet in the event log.
    events: BTreeSet<LoggedEvent>,
    last_prune: Option<SystemTime>,
    /// Rows PostgreSQL rejected, by series: their (level, bucket)s are not written (nor counted,
    /// nor logged) again when the series changes in the same hour or day. At most
    /// [`SET_ASIDE_KEPT`] entries.
    set_aside: std::collections::HashMap<String, Vec<(usize, u64)>>,
}

/// Rows set aside that a writer remembers, at most; past it, it forgets them all (a row
/// rejected again is then counted again).
const SET_ASIDE_KEPT: usize = 4096;

impl Writer {
    pub(crate) fn new(pool: PgPool, prefix: &str, instance: &str, run: &str) -> Writer {
        Writer {
            pool,
            prefix: prefix.to_string(),
            schema: schema(prefix),
            partitions: Partitions::default(),
            instance: instance.to_string(),
            run: run.to_string(),
            rollup: Rollup::kept("postgres", prefix, instance, run, &[60, 1440]),
            events: BTreeSet::new(),
            last_prune: None,
            set_aside: std::collections::HashMap::new(),
        }
    }

    /// Takes the changed minutes, upserts the hours and days they touch and the batch failures,
    /// in one transaction; runs the retention job once an hour. Keeps everything on failure.
    pub(crate) async fn write(
        &mut self,
        prep: &Prepared,
        now_secs: u64,
    ) -> Result<usize, TierError> {
        self.absorb(prep, now_secs);
        self.send(now_secs).await
    }

    /// Takes what a flush carries into what is pending (cheap; no I/O).
    pub(crate) fn absorb(&mut self, prep: &Prepared, now_secs: u64) {
        for (minute, key, m) in &prep.minutes {
            self.rollup.add_minute(*minute, key, m);
            if key.starts_with("batch\u{1f}") && m.last_fail_ns > 0 {
                let name = codec::parse_series_key(key)
                    .map(|i| i.name.to_string())
                    .unwrap_or_default();
                // the run's trace id, if it had one: {"traceId": "<32 hex>"}
                let detail = TraceId::from_raw(m.last_fail_trace)
                    .map(|t| serde_json::json!({ "traceId": t.to_string() }).to_string())
                    .unwrap_or_default();
                self.events.insert(LoggedEvent {
                    at_ns: m.last_fail_ns,
                    kind: "batch_failure",
                    name,
                    detail,
                });
            }
        }
        self.events.extend(global().outbox.take_events());
        let now_minute = now_secs / 60;
        self.rollup.finalize(now_minute);
        // bounded while PostgreSQL is away: the oldest folded buckets go first, counted
        self.rollup.bound(PG_PENDING_LIMIT, "PostgreSQL");
    }

    /// Writes what is pending, then runs a compaction pass and, once an hour, the retention
    /// job. On failure everything stays pending.
    pub(crate) async fn send(&mut self, now_secs: u64) -> Result<usize, TierError> {
        let now_minute = now_secs / 60;
        let rows = self.upsert().await?;
        // folded buckets that are over and written are no longer needed in memory
        self.rollup.trim(now_minute);
        if let Err(e) = pgcompact::pass(&self.pool, &self.schema, now_secs).await {
            tracing::debug!(target: "perfmon", error = %e, "PostgreSQL compaction pass");
        }
        if self
            .last_prune
            .is_none_or(|t| t.elapsed().unwrap_or_default() >= Duration::from_secs(3600))
        {
            self.last_prune = Some(SystemTime::now());
            if let Err(e) = prune(&self.pool, &self.prefix, SystemTime::now()).await {
                tracing::warn!(target: "perfmon", error = %e, "PostgreSQL retention job");
            }
        }
        Ok(rows)
    }

    /// Rows waiting to be written.
    pub(crate) fn pending(&self) -> usize {
        self.rollup.pending() + self.events.len()
    }

    /// Upserts every pending hour, day and event in one transaction. A row PostgreSQL rejects
    /// for what it holds is isolated and set aside (see [`isolate`]), and every other row is
    /// written; any other failure keeps everything pending.
    async fn upsert(&mut self) -> Result<usize, TierError> {
        let s = self.schema.clone();
        let mut tables = [BulkRows::new("hourly"), BulkRows::new("daily")];
        for (level, (rows, secs)) in tables.iter_mut().zip([3600, 86_400]).enumerate() {
            for (bucket, key) in self.rollup.dirty(level) {
                if self
                    .set_aside
                    .get(key.as_str())
                    .is_some_and(|b| b.contains(&(level, *bucket)))
                {
                    continue;
                }
                let m = self.rollup.value(level, *bucket, key);
                if let Some(blob) = codec::encode_counted(key, &m) {
                    rows.push(*bucket, ts(bucket * secs), key, m.events as i64, blob);
                }
            }
        }
        for rows in &tables {
            let months = rows.starts.iter().map(|&b| month_of(b as u64)).collect();
            let ensure = self.partitions.ensure(&self.pool, &s, rows.table, months);
            match tokio::time::timeout(TIMEOUT, ensure).await {
                Ok(r) => r.map_err(|e| TierError::kept("PostgreSQL", self.pending(), e))?,
                Err(_) => {
                    let after = TIMEOUT;
                    let e = TierError::Timeout {
                        tier: "PostgreSQL",
                        after,
                    };
                    return Err(TierError::kept("PostgreSQL", self.pending(), e));
                }
            }
        }
        let events = EventRows::new(&self.events);
        let ctx = Ctx {
            s: &s,
            instance: &self.instance,
            run: &self.run,
        };
        let pool = &self.pool;
        // splitting stops halfway through the timeout, so that what a pass wrote is committed
        let split_until = Instant::now() + TIMEOUT / 2;
        // The whole flush at once (nothing more on the way than before); only if PostgreSQL
        // rejects a row, once more, isolating it.
        let write = async {
            match transaction(pool, &ctx, &tables, &events, None).await {
                Err(e) if rejection(&e).is_some() => {
                    transaction(pool, &ctx, &tables, &events, Some(split_until)).await
                }
                r => r,
            }
        };
        match tokio::time::timeout(TIMEOUT, write).await {
            Ok(Ok(fates)) => Ok(self.settle(&tables, fates)),
            Ok(Err(e)) => Err(TierError::kept("PostgreSQL", self.pending(), e.into())),
            Err(_) => Err(TierError::kept(
                "PostgreSQL",
                self.pending(),
                TierError::Timeout {
                    tier: "PostgreSQL",
                    after: TIMEOUT,
                },
            )),
        }
    }

    /// After a committed write: what was written or set aside is no longer pending; each row set
    /// aside is counted and logged once. Returns the rows written.
    fn settle(&mut self, tables: &[BulkRows; 2], [hourly, daily, logged]: [Vec<Fate>; 3]) -> usize {
        let counters = &global().outbox.tiers;
        let mut written = 0;
        let mut left = 0;
        self.rollup.clear_dirty();
        for (level, (rows, fates)) in tables.iter().zip([hourly, daily]).enumerate() {
            for (i, fate) in fates.into_iter().enumerate() {
                let key = &rows.series[i];
                match fate {
                    Fate::Written => written += 1,
                    Fate::Pending => {
                        left += 1;
                        self.rollup
                            .mark_dirty(level, (rows.buckets[i], key.to_string()));
                    }
                    Fate::SetAside(error) => {
                        counters.set_aside.fetch_add(1, Ordering::Relaxed);
                        let kept: usize = self.set_aside.values().map(Vec::len).sum();
                        if kept >= SET_ASIDE_KEPT {
                            self.set_aside.clear();
                        }
                        self.set_aside
                            .entry(key.to_string())
                            .or_default()
                            .push((level, rows.buckets[i]));
                        tracing::warn!(target: "perfmon", table = rows.table, ?key, bucket_start = rows.starts[i], ?error, "PostgreSQL rejected a row: set aside, not retried; the flush's other rows are written (counted in recorder_stats().tier_set_aside)");
                    }
                }
            }
        }
        let events = std::mem::take(&mut self.events);
        for (e, fate) in events.into_iter().zip(logged) {
            match fate {
                Fate::Written => written += 1,
                Fate::Pending => {
                    left += 1;
                    self.events.insert(e);
                }
                Fate::SetAside(error) => {
                    counters.set_aside.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(target: "perfmon", table = "events", kind = e.kind, key = ?e.name, ?error, "PostgreSQL rejected an event: set aside, not retried; the flush's other rows are written (counted in recorder_stats().tier_set_aside)");
                }
            }
        }
        if left > 0 {
            tracing::info!(target: "perfmon", rows = left, budget = ISOLATE_BUDGET, "PostgreSQL rejected more rows than one flush isolates: those not yet told apart are kept for the next flush");
        }
        written
    }
}

/// One transaction writing a flush's rows: every row at once, the first error failing it whole;
/// or, isolating (splitting ranges until `isolating`), each chunk under a savepoint, the rows
/// PostgreSQL rejects isolated and set aside ([`isolate`]). Says what became of each row once
/// committed.
async fn transaction(
    pool: &PgPool,
    ctx: &Ctx<'_>,
    tables: &[BulkRows; 2],
    events: &EventRows<'_>,
    isolating: Option<Instant>,
) -> Result<[Vec<Fate>; 3], sqlx::Error> {
    let mut tx = pool.begin().await?;
    // never interleaved with the compactor's transaction (see `pgcompact`)
    sqlx::query("SELECT pg_advisory_xact_lock_shared(hashtext($1))")
        .bind(pgcompact::rw_lock(ctx.s))
        .execute(&mut *tx)
        .await?;
    if isolating.is_some() {
        // a constraint deferred to the commit would reject the whole flush there, where no row
        // can be told from the others: checked at each statement instead
        sqlx::Executor::execute(&mut *tx, "SET CONSTRAINTS ALL IMMEDIATE").await?;
    }
    let mut iso = Isolation::new(isolating);
    let hourly = isolate(&mut tx, Batch::Bulk(&tables[0]), ctx, &mut iso).await?;
    let daily = isolate(&mut tx, Batch::Bulk(&tables[1]), ctx, &mut iso).await?;
    let logged = isolate(&mut tx, Batch::Events(events), ctx, &mut iso).await?;
    let fates = [hourly, daily, logged];
    // Rejections and no row written is no verdict on the rows (a constraint no row can meet,
    // writes refused by a trigger): the flush fails and keeps everything, as on any error.
    if !fates.iter().flatten().any(|f| *f == Fate::Written) {
        if let Some(e) = iso.first_rejection {
            return Err(e);
        }
    }
    tx.commit().await?;
    Ok(fates)
}

/// Rows per `INSERT … SELECT FROM UNNEST` statement.
const BULK_ROWS: usize = 5_000;

/// Statements one isolating pass may add to tell rejected rows apart, beyond one per chunk.
///
/// The bound: a flush PostgreSQL takes whole costs what it did before (no savepoints). A flush
/// with rejected rows costs its failed first attempt, then an isolating pass, in which a chunk
/// of `n` rows holding `b` rejected ones takes at most `1 + 2·b·⌈log₂ n⌉` statements (each
/// halving level holds at most `b` failing ranges, each tried again as two halves): with
/// `n = 5,000` and one bad row, 27 statements of at most 5 round trips each (`SAVEPOINT`, the
/// insert and the compactor's two, `RELEASE`; a failed one 3: `SAVEPOINT`, the insert,
/// `ROLLBACK TO` + `RELEASE`), where before the flush failed for good. The budget bounds a flush
/// with many bad rows, and so does half the write's timeout on a slow link, whichever comes
/// first: once it is spent, the ranges still failing are kept for the next flush, whose pass
/// goes on with them. A pass writes its good rows and, unless time runs out first, isolates at
/// least `ISOLATE_BUDGET / (2·⌈log₂ n⌉)` bad ones (9 at `n = 5,000`).
const ISOLATE_BUDGET: usize = 256;

/// What became of one row of a write.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Fate {
    /// Not written, not isolated: kept for the next flush.
    Pending,
    Written,
    /// Rejected on its own, with the server's message.
    SetAside(String),
}

/// What every statement of a write binds besides its rows.
struct Ctx<'a> {
    s: &'a str,
    instance: &'a str,
    run: &'a str,
}

/// One write's isolation so far: whether it isolates at all, the budget left (statements, and
/// time: a slow link must not make the pass time out and lose what it wrote), and the first
/// rejection (the flush's error if no row at all is written).
struct Isolation {
    /// Isolating, splitting ranges until then.
    until: Option<Instant>,
    budget: usize,
    first_rejection: Option<sqlx::Error>,
}

impl Isolation {
    fn new(until: Option<Instant>) -> Isolation {
        Isolation {
            until,
            budget: ISOLATE_BUDGET,
            first_rejection: None,
        }
    }

    /// Takes two more statements from the budget, if it has them and time is left.
    fn split(&mut self) -> bool {
        let in_time = self.until.is_some_and(|t| Instant::now() < t);
        let ok = self.budget >= 2 && in_time;
        if ok {
            self.budget -= 2;
        }
        ok
    }
}

/// The SQLSTATEs that reject rows for what they hold, the same rows every time: class 22 (data
/// exception: a value out of range, text PostgreSQL cannot store), class 23 (integrity
/// constraint violation: a `CHECK` or `NOT NULL` a DBA added), `54000` (a program limit: a key
/// too long for an index) and `P0001` (an exception a trigger raised). Not connection, timeout,
/// lock, serialization, resource or permission errors, which fail the flush and keep everything.
fn rejects_rows(sqlstate: &str) -> bool {
    sqlstate.starts_with("22")
        || sqlstate.starts_with("23")
        || matches!(sqlstate, "54000" | "P0001")
}

/// The server's message, if PostgreSQL rejected a statement for what its rows hold.
fn rejection(e: &sqlx::Error) -> Option<String> {
    let db = e.as_database_error()?;
    rejects_rows(&db.code()?).then(|| db.message().to_string())
}

/// Writes `batch` in chunks of [`BULK_ROWS`]. Isolating, each chunk goes under a savepoint, and a
/// chunk PostgreSQL rejects for what its rows hold ([`rejects_rows`]) is rolled back to it and
/// tried again as two halves, each under its own savepoint, down to single rows: a single row
/// rejected is set aside; every other row is written in the same transaction (the cost is
/// bounded at [`ISOLATE_BUDGET`]). Any other error, or any error at all when not isolating,
/// ends the write (and the transaction with it).
async fn isolate(
    conn: &mut sqlx::PgConnection,
    batch: Batch<'_>,
    ctx: &Ctx<'_>,
    iso: &mut Isolation,
) -> Result<Vec<Fate>, sqlx::Error> {
    let n = batch.len();
    let mut fates = vec![Fate::Pending; n];
    // ranges still to try, the first on top
    let mut todo: Vec<Range<usize>> = (0..n)
        .step_by(BULK_ROWS)
        .map(|i| i..(i + BULK_ROWS).min(n))
        .rev()
        .collect();
    while let Some(r) = todo.pop() {
        if iso.until.is_none() {
            batch.insert(conn, ctx, r.clone()).await?;
            fates[r].fill(Fate::Written);
            continue;
        }
        sqlx::Executor::execute(&mut *conn, "SAVEPOINT perfmon_rows").await?;
        let e = match batch.insert(conn, ctx, r.clone()).await {
            Ok(()) => {
                sqlx::Executor::execute(&mut *conn, "RELEASE SAVEPOINT perfmon_rows").await?;
                fates[r].fill(Fate::Written);
                continue;
            }
            Err(e) => e,
        };
        let Some(message) = rejection(&e) else {
            return Err(e);
        };
        sqlx::Executor::execute(
            &mut *conn,
            "ROLLBACK TO SAVEPOINT perfmon_rows; RELEASE SAVEPOINT perfmon_rows",
        )
        .await?;
        iso.first_rejection.get_or_insert(e);
        if r.len() == 1 {
            fates[r.start] = Fate::SetAside(message);
        } else if iso.split() {
            let mid = r.start + r.len() / 2;
            todo.push(mid..r.end);
            todo.push(r.start..mid);
        }
        // else the budget is spent: the range stays pending
    }
    Ok(fates)
}

/// The rows of one kind of statement: an hourly or daily table's, or the event log's.
#[derive(Clone, Copy)]
enum Batch<'a> {
    Bulk(&'a BulkRows),
    Events(&'a EventRows<'a>),
}

impl Batch<'_> {
    fn len(&self) -> usize {
        match self {
            Batch::Bulk(rows) => rows.starts.len(),
            Batch::Events(events) => events.at.len(),
        }
    }

    /// Writes the rows `r` (one round trip per statement, whatever their number).
    async fn insert(
        &self,
        conn: &mut sqlx::PgConnection,
        ctx: &Ctx<'_>,
        r: Range<usize>,
    ) -> Result<(), sqlx::Error> {
        let s = ctx.s;
        match self {
            Batch::Bulk(rows) => {
                let (starts, series) = (&rows.starts[r.clone()], &rows.series[r.clone()]);
                sqlx::query(&format!(
                    "INSERT INTO {s}.{table} (bucket_start, instance, run, series, events, data)
                     SELECT to_timestamp(b), $5, $6, s, e, d
                     FROM UNNEST($1::float8[], $2::text[], $3::int8[], $4::bytea[]) AS t(b, s, e, d)
                     ON CONFLICT (bucket_start, instance, run, series)
                     DO UPDATE SET events = EXCLUDED.events, data = EXCLUDED.data, updated_at = now()",
                    table = rows.table
                ))
                .bind(starts)
                .bind(series)
                .bind(&rows.events[r.clone()])
                .bind(&rows.data[r])
                .bind(ctx.instance)
                .bind(ctx.run)
                .execute(&mut *conn)
                .await?;
                // queued for the compactor; their cluster rows are out of date
                for sql in pgcompact::requeue_sql(s, rows.table) {
                    sqlx::query(&sql)
                        .bind(starts)
                        .bind(series)
                        .execute(&mut *conn)
                        .await?;
                }
            }
            Batch::Events(events) => {
                sqlx::query(&format!(
                    "INSERT INTO {s}.events (at, instance, kind, name, detail)
                     SELECT to_timestamp(a), $5, k, n, d
                     FROM UNNEST($1::float8[], $2::text[], $3::text[], $4::text[]) AS t(a, k, n, d)
                     ON CONFLICT DO NOTHING"
                ))
                .bind(&events.at[r.clone()])
                .bind(&events.kind[r.clone()])
                .bind(&events.name[r.clone()])
                .bind(&events.detail[r])
                .bind(ctx.instance)
                .execute(&mut *conn)
                .await?;
            }
        }
        Ok(())
    }
}

/// One table's rows of a flush, as columns (bound as arrays).
struct BulkRows {
    table: &'static str,
    /// Bucket numbers (hours or days since the epoch), as the rollup keys them.
    buckets: Vec<u64>,
    starts: Vec<f64>,
    series: Vec<String>,
    events: Vec<i64>,
    data: Vec<Vec<u8>>,
}

impl BulkRows {
    fn new(table: &'static str) -> BulkRows {
        BulkRows {
            table,
            buckets: Vec::new(),
            starts: Vec::new(),
            series: Vec::new(),
            events: Vec::new(),
            data: Vec::new(),
        }
    }

    fn push(&mut self, bucket: u64, start: f64, series: &str, events: i64, data: Vec<u8>) {
        self.buckets.push(bucket);
        self.starts.push(start);
        self.series.push(series.to_string());
        self.events.push(events);
        self.data.push(data);
    }
}

/// The event log's rows of a flush, as columns, in the order of the pending set.
struct EventRows<'a> {
    at: Vec<f64>,
    kind: Vec<&'a str>,
    name: Vec<&'a str>,
    detail: Vec<&'a str>,
}

impl EventRows<'_> {
    fn new(events: &BTreeSet<LoggedEvent>) -> EventRows<'_> {
        EventRows {
            at: events.iter().map(|e| e.at_ns as f64 / 1e9).collect(),
            kind: events.iter().map(|e| e.kind).collect(),
            name: events.iter().map(|e| e.name.as_str()).collect(),
            detail: events.iter().map(|e| e.detail.as_str()).collect(),
        }
    }
}

/// What the retention job deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PruneReport {
    /// Hourly rows older than 90 days.
    pub hourly: u64,
    /// Daily rows older than a year.
    pub daily: u64,
    /// Events older than a year.
    pub events: u64,
    /// Cluster hours (the compactor's merges) older than 90 days.
    pub cluster_hourly: u64,
    /// Cluster days older than a year.
    pub cluster_daily: u64,
}

/// Deletes what is past its retention as of `now`: the month partitions that are over whole
/// (`DROP TABLE`), then what is left in bounded batches (so the job never holds long locks or a
/// huge transaction).
pub(crate) async fn prune(
    pool: &PgPool,
    prefix: &str,
    now: SystemTime,
) -> Result<PruneReport, TierError> {
    let s = schema(prefix);
    let mut report = PruneReport::default();
    for (table, column, keep, out) in [
        (
            "hourly",
            "bucket_start",
            HOURLY_RETENTION,
            &mut report.hourly,
        ),
        ("daily", "bucket_start", DAILY_RETENTION, &mut report.daily),
        ("events", "at", DAILY_RETENTION, &mut report.events),
        (
            "cluster_hourly",
            "bucket_start",
            HOURLY_RETENTION,
            &mut report.cluster_hourly,
        ),
        (
            "cluster_daily",
            "bucket_start",
            DAILY_RETENTION,
            &mut report.cluster_daily,
        ),
    ] {
        let cutoff = now - keep;
        if partitions::TABLES.contains(&table) {
            *out += partitions::drop_before(pool, prefix, &s, table, secs(cutoff) as i64).await?;
        }
        loop {
            // (tableoid, ctid) names a row across partitions
            let done = sqlx::query(&format!(
                "DELETE FROM {s}.{table} WHERE (tableoid, ctid) IN (SELECT tableoid, ctid FROM {s}.{table} WHERE {column} < to_timestamp($1) LIMIT $2)"
            ))
            .bind(secs(cutoff))
            .bind(PRUNE_BATCH)
            .execute(pool)
            .await?
            .rows_affected();
            *out += done;
            if done < PRUNE_BATCH as u64 {
                break;
            }
        }
    }
    // queue entries of buckets past their retention have no rows left to merge
    let (hours, days) = (now - HOURLY_RETENTION, now - DAILY_RETENTION);
    sqlx::query(&format!(
        "DELETE FROM {s}.compact_queue WHERE (tbl = 'hourly' AND bucket_start < to_timestamp($1))
         OR (tbl = 'daily' AND bucket_start < to_timestamp($2))"
    ))
    .bind(secs(hours))
    .bind(secs(days))
    .execute(pool)
    .await?;
    Ok(report)
}

/// The hours `[first, last]` a window covers at `now_secs` (hour numbers since the epoch): from
/// the hour holding the window's start to the current one.
pub(crate) fn window_hours(window: Window, now_secs: u64) -> (u64, u64) {
    (
        now_secs.saturating_sub(window.duration().as_secs()) / 3600,
        now_secs / 3600,
    )
}

/// Which rows a read takes, as half-open ranges of Unix seconds of `bucket_start`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PgPlan {
    pub hourly: Vec<(u64, u64)>,
    pub daily: Option<(u64, u64)>,
}

/// Which rows cover the hours `[first, last]` exactly: whole days from the daily table, the
/// ragged edges from the hourly one.
pub(crate) fn pg_plan(first: u64, last: u64) -> PgPlan {
    let first_day = first.div_ceil(24);
    let end_day = (last + 1) / 24; // days [first_day, end_day) lie inside
    if first_day >= end_day {
        return PgPlan {
            hourly: vec![(first * 3600, (last + 1) * 3600)],
            daily: None,
        };
    }
    let mut hourly = Vec::new();
    if first < first_day * 24 {
        hourly.push((first * 3600, first_day * 86_400));
    }
    if end_day * 24 <= last {
        hourly.push((end_day * 86_400, (last + 1) * 3600));
    }
    PgPlan {
        hourly,
        daily: Some((first_day * 86_400, end_day * 86_400)),
    }
}

/// This instance's rows of `table` in `[from, to)` (Unix seconds) that the filter's series
/// (`$1`) and kinds (`$2`) name, with their bucket's start (`t`); `$3` is the instance.
fn instance_read_sql(s: &str, table: &str, from: u64, to: u64) -> String {
    format!(
        "SELECT series, data, extract(epoch FROM bucket_start)::bigint AS t FROM {s}.{table}
         WHERE bucket_start >= to_timestamp({from}) AND bucket_start < to_timestamp({to})
           AND ($1::text[] IS NULL OR series = ANY($1))
           AND ($2::text[] IS NULL OR split_part(series, chr(31), 1) = ANY($2))
           AND instance = $3"
    )
}

/// Reads a window: for a year, the daily rows from the day holding its start; else the hours
/// from the hour holding its start, as whole days from the daily rows and edge hours from the
/// hourly ones. Instance, series and kinds are filtered in PostgreSQL; rows are streamed and
/// merged as they arrive (a read holds its merged series, not the rows); a row whose aggregate
/// cannot be decoded is skipped with a warning.
pub(crate) async fn load(
    pool: &PgPool,
    read: &PgRead<'_>,
) -> Result<Vec<(SeriesInfo, Minute<Merged>)>, TierError> {
    let PgRead {
        prefix,
        instance,
        window,
        scope,
        filter,
        now,
    } = *read;
    let PgPlan { hourly, daily } = if window == Window::Year1 {
        let from = now.saturating_sub(window.duration().as_secs()) / 86_400 * 86_400;
        PgPlan {
            hourly: Vec::new(),
            daily: Some((from, (now / 86_400 + 1) * 86_400)),
        }
    } else {
        let (first, last) = window_hours(window, now);
        pg_plan(first, last)
    };
    let s = schema(prefix);
    let series: Option<Vec<String>> = filter
        .exact()
        .map(|infos| infos.iter().map(codec::series_key).collect());
    let kinds: Option<Vec<&str>> = filter
        .kinds
        .as_ref()
        .map(|k| k.iter().map(|k| k.code()).collect());
    // One statement: every range of the plan, ordered by series, so that each series' merge is
    // finished before the next one starts (a read holds one merge in progress).
    let parts: Vec<String> = hourly
        .iter()
        .map(|r| ("hourly", *r))
        .chain(daily.map(|r| ("daily", r)))
        .map(|(table, (from, to))| match scope {
            // the compacted rows plus every instance's rows of what is still queued
            Scope::Cluster => pgcompact::cluster_read_sql(&s, table, from, to),
            Scope::Instance => instance_read_sql(&s, table, from, to),
        })
        .collect();
    let sql = format!(
        "SELECT series, data FROM ({}) u ORDER BY series",
        parts.join(" UNION ALL ")
    );
    let mut out = Vec::new();
    let read = async {
        let mut q = sqlx::query_as::<_, (String, Vec<u8>)>(&sql)
            .bind(series.as_deref())
            .bind(kinds.as_deref());
        if scope == Scope::Instance {
            q = q.bind(instance);
        }
        let mut rows = q.fetch(pool);
        let mut runs = MergeRuns::new();
        let mut done = |(key, m): (String, Minute<Merged>)| {
            if let Some(info) = codec::parse_series_key(&key) {
                out.push((info, m));
            }
        };
        while let Some((key, data)) = rows.try_next().await? {
            if let Some(finished) = runs.push(key, &data, |k| k.as_str()) {
                done(finished);
            }
        }
        if let Some(finished) = runs.end() {
            done(finished);
        }
        Ok::<(), sqlx::Error>(())
    };
    tokio::time::timeout(TIMEOUT, read)
        .await
        .map_err(|_| TierError::Timeout {
            tier: "PostgreSQL",
            after: TIMEOUT,
        })??;
    Ok(out)
}

/// What a read names: the schema, the instance, the window and scope, the series (the filter)
/// and the time.
#[derive(Clone, Copy)]
pub(crate) struct PgRead<'a> {
    pub prefix: &'a str,
    pub instance: &'a str,
    pub window: Window,
    pub scope: Scope,
    pub filter: &'a SeriesFilter,
    pub now: u64,
}

/// A route's trend over a window: the rows of the filter's exact series, merged into `points`
/// equal slices of the window by their bucket's start; each slice's start (Unix seconds) with
/// its merge, slices without events left out.
pub(crate) async fn load_trend(
    pool: &PgPool,
    read: &PgRead<'_>,
    points: usize,
) -> Result<Vec<(u64, Minute<Merged>)>, TierError> {
    let PgRead {
        prefix,
        instance,
        window,
        scope,
        filter,
        now,
    } = *read;
    let Some(infos) = filter.exact() else {
        return Ok(Vec::new());
    };
    let series: Vec<String> = infos.iter().map(codec::series_key).collect();
    let (from, to) = (now.saturating_sub(window.duration().as_secs()), now);
    let s = schema(prefix);
    // hours for the windows the hourly rows hold (90 days), days for a year
    let table = if window == Window::Year1 {
        "daily"
    } else {
        "hourly"
    };
    let len: u64 = if window == Window::Year1 {
        86_400
    } else {
        3600
    };
    let start = from / len * len;
    // slices of whole rows, aligned to multiples of their length
    let slice = (to - from)
        .div_ceil(points.max(1) as u64)
        .div_ceil(len)
        .max(1)
        * len;
    let first_slice = start / slice;
    let inner = match scope {
        Scope::Cluster => pgcompact::cluster_read_sql(&s, table, start, to + len),
        Scope::Instance => instance_read_sql(&s, table, start, to + len),
    };
    let sql = format!("SELECT t, data FROM ({inner}) u ORDER BY t");
    let points = (to / slice - first_slice + 1) as usize;
    let mut acc: Vec<Minute<Accum>> = (0..points).map(|_| Minute::default()).collect();
    let read = async {
        let mut q = sqlx::query_as::<_, (i64, Vec<u8>)>(&sql)
            .bind(Some(series.as_slice()))
            .bind(None::<Vec<String>>);
        if scope == Scope::Instance {
            q = q.bind(instance);
        }
        let mut rows = q.fetch(pool);
        while let Some((t, data)) = rows.try_next().await? {
            let t = u64::try_from(t).unwrap_or(0).max(start);
            let slot = ((t / slice - first_slice) as usize).min(points - 1);
            match codec::decode(&data) {
                Ok(m) => crate::store::rollup::accumulate(&mut acc[slot], &m),
                Err(e) => {
                    tracing::warn!(target: "perfmon", error = %e, "an aggregate PostgreSQL holds cannot be decoded; skipped")
                }
            }
        }
        Ok::<(), sqlx::Error>(())
    };
    tokio::time::timeout(TIMEOUT, read)
        .await
        .map_err(|_| TierError::Timeout {
            tier: "PostgreSQL",
            after: TIMEOUT,
        })??;
    Ok(acc
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let at = ((first_slice + i as u64) * slice).max(start);
            (at, crate::store::rollup::finish(m))
        })
        .filter(|(_, m)| m.events > 0)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours_of(plan: &PgPlan) -> Vec<u64> {
        plan.hourly
            .iter()
            .chain(plan.daily.iter())
            .flat_map(|&(a, b)| a / 3600..b / 3600)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    #[test]
    fn only_errors_about_what_rows_hold_set_rows_aside() {
        for code in [
            "22001", "22003", "22021", "22P02", "23502", "23505", "23514", "54000", "P0001",
        ] {
            assert!(rejects_rows(code), "{code}");
        }
        // connection, timeout, lock, serialization, resources, permissions, admin: kept
        for code in [
            "08006", "57014", "55P03", "40001", "40P01", "53100", "42501", "42P01", "57P01",
            "XX000", "21000", "25P02",
        ] {
            assert!(!rejects_rows(code), "{code}");
        }
    }

    #[test]
    fn whole_days_from_the_daily_rows_edges_from_the_hourly_ones() {
        for (first, last) in [(5, 5), (0, 23), (1, 23), (23, 48), (30, 2_200), (24, 47)] {
            let p = pg_plan(first, last);
            assert_eq!(
                hours_of(&p),
                (first..=last).collect::<Vec<_>>(),
                "{first}..={last}"
            );
            let ranges: usize = p.hourly.iter().map(|(a, b)| (b - a) / 3600).sum::<u64>() as usize
                + p.daily.map_or(0, |(a, b)| ((b - a) / 3600) as usize);
            assert_eq!(ranges, (last - first + 1) as usize, "no hour twice");
            if let Some((a, b)) = p.daily {
                assert_eq!((a % 86_400, b % 86_400), (0, 0));
            }
            for &(a, b) in &p.hourly {
                assert!(b - a < 86_400, "edges are shorter than a day");
            }
        }
        // 90 days: at most 23 + 23 edge hours
        let (first, last) = window_hours(Window::Days90, 1_800_000_000);
        let p = pg_plan(first, last);
        assert!(p.hourly.iter().map(|(a, b)| (b - a) / 3600).sum::<u64>() <= 46);
    }
}
