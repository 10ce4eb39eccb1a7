//! The PostgreSQL tier: hourly aggregates (kept 90 days), daily aggregates (kept a year) and
//! the event log, in the schema named by `PERFMON_KEY_PREFIX`.
//!
//! Rows are keyed by (bucket start, instance, run, series) and upserted with the bucket's whole
//! value as of the flush (`ON CONFLICT … DO UPDATE`), so a repeated or retried flush replaces,
//! never adds. The writer keeps each open minute's latest value and folds a minute into its
//! hour and day once the aggregator can no longer change it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::PgPool;

use crate::core::hist::Merged;
use crate::core::window::{Scope, Window, WINDOW_MINUTES};
use crate::pipeline::aggregator::{Minute, EVICTION_GRACE_MINUTES};
use crate::pipeline::outbox::LoggedEvent;
use crate::pipeline::registry::SeriesInfo;
use crate::pipeline::state::global;
use crate::store::codec;
use crate::store::error::TierError;
use crate::store::prepared::Prepared;

/// How long hourly rows are kept.
pub const HOURLY_RETENTION: Duration = Duration::from_secs(90 * 86_400);
/// How long daily rows and events are kept.
pub const DAILY_RETENTION: Duration = Duration::from_secs(365 * 86_400);
/// Rows deleted per statement by the retention job.
const PRUNE_BATCH: i64 = 10_000;
/// Folded hours and days kept while PostgreSQL is away, at most (the oldest go first, counted in
/// `recorder_stats().tier_dropped`).
pub const PG_PENDING_LIMIT: usize = 100_000;
/// A minute is final once it is this many minutes old: past the window and the grace during
/// which the aggregator still holds (and may still change) it.
const FINAL_AFTER_MINUTES: u64 = WINDOW_MINUTES + EVICTION_GRACE_MINUTES + 1;
const TIMEOUT: Duration = Duration::from_secs(10);

/// The schema, as a quoted identifier.
pub(crate) fn schema(prefix: &str) -> String {
    format!("\"{}\"", prefix.replace('"', "\"\""))
}

/// Opens the pool and checks it with `SELECT 1`, waiting at most `connect_timeout`.
pub(crate) async fn connect(url: &str, connect_timeout: Duration) -> Result<PgPool, TierError> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
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
    vec![(
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
    )]
}

/// Creates the schema and applies the migrations not yet applied. Safe to run concurrently from
/// several instances (an advisory lock serializes them).
pub(crate) async fn migrate(pool: &PgPool, prefix: &str) -> Result<(), TierError> {
    let s = schema(prefix);
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(prefix)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(&format!(
        "CREATE SCHEMA IF NOT EXISTS {s}; CREATE TABLE IF NOT EXISTS {s}.migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());"
    ))
    .execute(&mut *tx)
    .await?;
    let applied: Vec<i32> = sqlx::query_scalar(&format!("SELECT version FROM {s}.migrations"))
        .fetch_all(&mut *tx)
        .await?;
    for (version, sql) in migrations(&s) {
        if applied.contains(&version) {
            continue;
        }
        sqlx::raw_sql(&sql)
            .execute(&mut *tx)
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

fn merge(into: &mut Minute<Merged>, m: &Minute<Merged>) {
    into.add_counters(m);
    into.hist.add(&m.hist);
}

pub(crate) struct Writer {
    pool: PgPool,
    schema: String,
    instance: String,
    run: String,
    /// The latest whole value of each minute that may still change: (minute, series).
    open: BTreeMap<(u64, String), Minute<Merged>>,
    /// Final minutes folded per (hour, series) and (day, series).
    hours: BTreeMap<(u64, String), Minute<Merged>>,
    days: BTreeMap<(u64, String), Minute<Merged>>,
    /// Buckets whose row is out of date.
    dirty_hours: BTreeSet<(u64, String)>,
    dirty_days: BTreeSet<(u64, String)>,
    /// Events not yet in the event log.
    events: BTreeSet<LoggedEvent>,
    last_prune: Option<SystemTime>,
}

impl Writer {
    pub(crate) fn new(pool: PgPool, prefix: &str, instance: &str, run: &str) -> Writer {
        Writer {
            pool,
            schema: schema(prefix),
            instance: instance.to_string(),
            run: run.to_string(),
            open: BTreeMap::new(),
            hours: BTreeMap::new(),
            days: BTreeMap::new(),
            dirty_hours: BTreeSet::new(),
            dirty_days: BTreeSet::new(),
            events: BTreeSet::new(),
            last_prune: None,
        }
    }

    /// The whole value of a bucket (hour or day) of a series: its final minutes plus its open
    /// ones.
    fn bucket(
        &self,
        folded: &BTreeMap<(u64, String), Minute<Merged>>,
        minutes_per: u64,
        bucket: u64,
        key: &str,
    ) -> Minute<Merged> {
        let mut m = folded
            .get(&(bucket, key.to_string()))
            .cloned()
            .unwrap_or_default();
        let first = bucket * minutes_per;
        for ((_, _), open) in self
            .open
            .range((first, key.to_string())..(first + minutes_per, String::new()))
            .filter(|((_, k), _)| k == key)
        {
            merge(&mut m, open);
        }
        m
    }

    /// Takes the changed minutes, upserts the hours and days they touch and the batch failures,
    /// in one transaction; runs the retention job once an hour. Keeps everything on failure.
    pub(crate) async fn write(&mut self, prep: &Prepared) -> Result<usize, TierError> {
        for (minute, key, m) in &prep.minutes {
            self.open.insert((*minute, key.clone()), m.clone());
            self.dirty_hours.insert((minute / 60, key.clone()));
            self.dirty_days.insert((minute / 1440, key.clone()));
            if key.starts_with("batch\u{1f}") && m.last_fail_ns > 0 {
                let name = codec::parse_series_key(key)
                    .map(|i| i.name.to_string())
                    .unwrap_or_default();
                self.events.insert(LoggedEvent {
                    at_ns: m.last_fail_ns,
                    kind: "batch_failure",
                    name,
                    detail: String::new(),
                });
            }
        }
        self.events.extend(global().outbox.take_events());
        // minutes the aggregator can no longer change become final
        let now_minute = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 60);
        let finals: Vec<(u64, String)> = self
            .open
            .keys()
            .filter(|(m, _)| m + FINAL_AFTER_MINUTES < now_minute)
            .cloned()
            .collect();
        for k in finals {
            if let Some(m) = self.open.remove(&k) {
                merge(self.hours.entry((k.0 / 60, k.1.clone())).or_default(), &m);
                merge(self.days.entry((k.0 / 1440, k.1.clone())).or_default(), &m);
            }
        }
        // bounded while PostgreSQL is away: the oldest folded buckets go first, counted
        while self.hours.len() + self.days.len() > PG_PENDING_LIMIT {
            let (h, d) = (
                self.hours.keys().next().map(|k| k.0 * 60),
                self.days.keys().next().map(|k| k.0 * 1440),
            );
            // an hour's index is an hour number, a day's a day number: each leaves its own
            // dirty set only
            let dropped = match (h, d) {
                (Some(h), Some(d)) if d < h => self.days.pop_first().map(|(k, _)| {
                    self.dirty_days.remove(&k);
                }),
                (Some(_), _) => self.hours.pop_first().map(|(k, _)| {
                    self.dirty_hours.remove(&k);
                }),
                (None, Some(_)) => self.days.pop_first().map(|(k, _)| {
                    self.dirty_days.remove(&k);
                }),
                (None, None) => None,
            };
            if dropped.is_none() {
                break;
            }
            if global().outbox.tiers.drop_one() {
                tracing::warn!(target: "perfmon", limit = PG_PENDING_LIMIT, "PostgreSQL has been away long enough to fill the pending buffer: the oldest hours and days are being dropped (counted in recorder_stats().tier_dropped)");
            }
        }
        let rows = self.upsert().await?;
        // folded buckets that are over and written are no longer needed in memory
        let (hour_now, day_now) = (now_minute / 60, now_minute / 1440);
        self.hours.retain(|(h, _), _| h + 1 >= hour_now);
        self.days.retain(|(d, _), _| d + 1 >= day_now);
        if self
            .last_prune
            .is_none_or(|t| t.elapsed().unwrap_or_default() >= Duration::from_secs(3600))
        {
            self.last_prune = Some(SystemTime::now());
            if let Err(e) = prune(&self.pool, &self.schema, SystemTime::now()).await {
                tracing::warn!(target: "perfmon", error = %e, "PostgreSQL retention job");
            }
        }
        Ok(rows)
    }

    /// Rows waiting to be written.
    pub(crate) fn pending(&self) -> usize {
        self.dirty_hours.len() + self.dirty_days.len() + self.events.len()
    }

    async fn upsert(&mut self) -> Result<usize, TierError> {
        let s = self.schema.clone();
        let mut rows: Vec<(&'static str, f64, String, Vec<u8>, i64)> = Vec::new();
        for (hour, key) in &self.dirty_hours {
            let m = self.bucket(&self.hours, 60, *hour, key);
            if let Some(blob) = codec::encode_counted(key, &m) {
                rows.push((
                    "hourly",
                    ts(hour * 3600),
                    key.clone(),
                    blob,
                    m.events as i64,
                ));
            }
        }
        for (day, key) in &self.dirty_days {
            let m = self.bucket(&self.days, 1440, *day, key);
            if let Some(blob) = codec::encode_counted(key, &m) {
                rows.push((
                    "daily",
                    ts(day * 86_400),
                    key.clone(),
                    blob,
                    m.events as i64,
                ));
            }
        }
        let write = async {
            let mut tx = self.pool.begin().await?;
            for (table, start, series, data, events) in &rows {
                sqlx::query(&format!(
                    "INSERT INTO {s}.{table} (bucket_start, instance, run, series, events, data) VALUES (to_timestamp($1), $2, $3, $4, $5, $6)
                     ON CONFLICT (bucket_start, instance, run, series)
                     DO UPDATE SET events = EXCLUDED.events, data = EXCLUDED.data, updated_at = now()"
                ))
                .bind(start)
                .bind(&self.instance)
                .bind(&self.run)
                .bind(series)
                .bind(events)
                .bind(data)
                .execute(&mut *tx)
                .await?;
            }
            for LoggedEvent {
                at_ns,
                kind,
                name,
                detail,
            } in &self.events
            {
                sqlx::query(&format!(
                    "INSERT INTO {s}.events (at, instance, kind, name, detail) VALUES (to_timestamp($1), $2, $3, $4, $5) ON CONFLICT DO NOTHING"
                ))
                .bind(*at_ns as f64 / 1e9)
                .bind(&self.instance)
                .bind(*kind)
                .bind(name)
                .bind(detail)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        };
        match tokio::time::timeout(TIMEOUT, write).await {
            Ok(Ok(())) => {
                let n = rows.len() + self.events.len();
                self.dirty_hours.clear();
                self.dirty_days.clear();
                self.events.clear();
                Ok(n)
            }
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
}

/// Deletes what is past its retention as of `now`, in bounded batches (so the job never holds
/// long locks or a huge transaction).
pub(crate) async fn prune(
    pool: &PgPool,
    s: &str,
    now: SystemTime,
) -> Result<PruneReport, TierError> {
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
    ] {
        let cutoff = now - keep;
        loop {
            let done = sqlx::query(&format!(
                "DELETE FROM {s}.{table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {s}.{table} WHERE {column} < to_timestamp($1) LIMIT $2))"
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
    Ok(report)
}

/// Reads a window from the hourly rows (or the daily ones for a year), merging every run of this
/// instance or of every instance. The instance filter runs in PostgreSQL; a row whose aggregate
/// cannot be decoded is skipped with a warning.
pub(crate) async fn load(
    pool: &PgPool,
    prefix: &str,
    instance: &str,
    window: Window,
    scope: Scope,
) -> Result<Vec<(SeriesInfo, Minute<Merged>)>, TierError> {
    let s = schema(prefix);
    let (table, bucket) = if window == Window::Year1 {
        ("daily", 86_400)
    } else {
        ("hourly", 3600)
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // every bucket that overlaps the window
    let from = ts((now.saturating_sub(window.duration().as_secs()) / bucket) * bucket);
    let only = (scope == Scope::Instance).then_some(instance);
    let rows: Vec<(String, Vec<u8>)> = tokio::time::timeout(
        TIMEOUT,
        sqlx::query_as(&format!(
            "SELECT series, data FROM {s}.{table} WHERE bucket_start >= to_timestamp($1) AND ($2::text IS NULL OR instance = $2)"
        ))
        .bind(from)
        .bind(only)
        .fetch_all(pool),
    )
    .await
    .map_err(|_| TierError::Timeout {
        tier: "PostgreSQL",
        after: TIMEOUT,
    })??;
    let mut by_series: BTreeMap<String, Minute<Merged>> = BTreeMap::new();
    for (series, data) in rows {
        match codec::decode(&data) {
            Ok(m) => merge(by_series.entry(series).or_default(), &m),
            Err(e) => {
                tracing::warn!(target: "perfmon", series, error = %e, "unreadable aggregate skipped")
            }
        }
    }
    Ok(by_series
        .into_iter()
        .filter_map(|(k, m)| Some((codec::parse_series_key(&k)?, m)))
        .collect())
}
