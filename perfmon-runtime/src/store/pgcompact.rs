//! Cluster values in PostgreSQL: each closed hour and day of each series merged across every
//! instance once, so a cluster read over months reads one row per series and bucket whatever
//! the number of instances.
//!
//! Every (table, bucket, series) that has instance rows is either *compacted* (its merge is in
//! `cluster_hourly` / `cluster_daily` and up to date) or *queued* (in `compact_queue`). A writer's
//! transaction upserts its rows, queues their (bucket, series) and deletes their cluster rows; the
//! compactor's transaction merges the queued buckets that are closed, upserts their cluster rows
//! and dequeues them. Writers hold an advisory lock shared and the compactor holds it exclusive,
//! so the two never interleave, and a reader's single statement — cluster rows, plus the instance
//! rows of whatever is queued — always sees every instance exactly once. A late flush re-queues
//! its buckets; the next pass recomputes them from every instance's rows (which PostgreSQL keeps
//! for the whole retention).

use std::time::Duration;

use futures_util::TryStreamExt;
use sqlx::PgPool;

use crate::core::hist::Merged;
use crate::pipeline::aggregator::Minute;
use crate::store::codec;
use crate::store::error::TierError;
use crate::store::rollup::{MergeRuns, FINAL_AFTER_MINUTES};

/// Queued buckets merged per batch (one short transaction).
const BATCH: i64 = 100;
/// How long a pass may go on taking batches.
const PASS_BUDGET: Duration = Duration::from_secs(3);
/// How long one batch may take.
const BATCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The advisory lock writers hold shared and the compactor exclusive.
pub(crate) fn rw_lock(s: &str) -> String {
    format!("{s} rows")
}

/// Migration 4: the cluster tables and the queue, with every existing bucket queued.
pub(crate) fn migration(s: &str) -> String {
    let mut sql = format!(
        "CREATE TABLE IF NOT EXISTS {s}.compact_queue (
             tbl text NOT NULL,
             bucket_start timestamptz NOT NULL,
             series text NOT NULL,
             PRIMARY KEY (tbl, bucket_start, series)
         );"
    );
    for table in ["hourly", "daily"] {
        sql.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {s}.cluster_{table} (
                 bucket_start timestamptz NOT NULL,
                 series text NOT NULL,
                 events bigint NOT NULL,
                 data bytea NOT NULL,
                 updated_at timestamptz NOT NULL DEFAULT now(),
                 PRIMARY KEY (bucket_start, series)
             );
             CREATE INDEX IF NOT EXISTS cluster_{table}_series_bucket ON {s}.cluster_{table} (series, bucket_start);
             INSERT INTO {s}.compact_queue SELECT DISTINCT '{table}', bucket_start, series FROM {s}.{table}
             ON CONFLICT DO NOTHING;"
        ));
    }
    sql
}

/// The statements a writer's transaction adds for the rows of `table` it wrote: queue their
/// (bucket, series) and drop their cluster rows. Binds: $1 bucket starts (Unix seconds), $2
/// series.
pub(crate) fn requeue_sql(s: &str, table: &str) -> [String; 2] {
    [
        format!(
            "INSERT INTO {s}.compact_queue (tbl, bucket_start, series)
             SELECT '{table}', to_timestamp(b), x FROM UNNEST($1::float8[], $2::text[]) AS t(b, x)
             ON CONFLICT DO NOTHING"
        ),
        format!(
            "DELETE FROM {s}.cluster_{table} c USING UNNEST($1::float8[], $2::text[]) AS t(b, x)
             WHERE c.bucket_start = to_timestamp(t.b) AND c.series = t.x"
        ),
    ]
}

/// A cluster read of `table` over `[from, to)` (Unix seconds): the cluster rows, and every
/// instance's rows of the buckets still queued. Binds: $1 series (or NULL), $2 kind codes (or
/// NULL).
pub(crate) fn cluster_read_sql(s: &str, table: &str, from: u64, to: u64) -> String {
    let filters = |c: &str| {
        format!(
            "{c}.bucket_start >= to_timestamp({from}) AND {c}.bucket_start < to_timestamp({to})
             AND ($1::text[] IS NULL OR {c}.series = ANY($1))
             AND ($2::text[] IS NULL OR split_part({c}.series, chr(31), 1) = ANY($2))"
        )
    };
    format!(
        "SELECT c.series, c.data, extract(epoch FROM c.bucket_start)::bigint AS t FROM {s}.cluster_{table} c WHERE {fc}
         UNION ALL
         SELECT h.series, h.data, extract(epoch FROM h.bucket_start)::bigint AS t FROM {s}.compact_queue q
         JOIN {s}.{table} h ON h.bucket_start = q.bucket_start AND h.series = q.series
         WHERE q.tbl = '{table}' AND {fq}",
        fc = filters("c"),
        fq = filters("q"),
    )
}

/// One compaction pass at `now_secs`, unless another instance's pass is running: merges the
/// queued buckets that are closed, in small batches (each its own short transaction, so writers
/// wait at most one batch), until none is due or [`PASS_BUDGET`] is spent. Returns how many
/// cluster rows it wrote.
pub(crate) async fn pass(pool: &PgPool, s: &str, now_secs: u64) -> Result<usize, TierError> {
    let started = std::time::Instant::now();
    let mut written = 0;
    while started.elapsed() < PASS_BUDGET {
        let mut any = false;
        for (table, len) in [("hourly", 3600u64), ("daily", 86_400)] {
            // closed: the bucket is over and no instance changes it any more
            let closed_before = now_secs.saturating_sub(len + FINAL_AFTER_MINUTES * 60);
            let one = batch(pool, s, table, closed_before);
            let n = match tokio::time::timeout(BATCH_TIMEOUT, one).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(TierError::Timeout {
                        tier: "PostgreSQL",
                        after: BATCH_TIMEOUT,
                    })
                }
            };
            match n {
                None => return Ok(written), // another instance is compacting
                Some(n) => {
                    written += n;
                    any |= n > 0;
                }
            }
        }
        if !any {
            break;
        }
    }
    Ok(written)
}

/// One batch of `table`: `None` when another instance holds the compactor's lock.
async fn batch(
    pool: &PgPool,
    s: &str,
    table: &str,
    closed_before: u64,
) -> Result<Option<usize>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mine: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext($1))")
        .bind(format!("{s} compactor"))
        .fetch_one(&mut *tx)
        .await?;
    if !mine {
        return Ok(None);
    }
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(rw_lock(s))
        .execute(&mut *tx)
        .await?;
    let due: Vec<(f64, String)> = sqlx::query_as(&format!(
        "SELECT extract(epoch FROM bucket_start)::float8, series FROM {s}.compact_queue
         WHERE tbl = '{table}' AND bucket_start < to_timestamp($1)
         ORDER BY bucket_start, series LIMIT $2"
    ))
    .bind(closed_before as f64)
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    if due.is_empty() {
        return Ok(Some(0));
    }
    let (starts, series): (Vec<f64>, Vec<String>) = due.into_iter().unzip();
    // every instance's rows of the batch, one (bucket, series) after another: one merge in
    // progress at a time
    let (mut b, mut x, mut e, mut d) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    {
        let mut done = |((start, key), m): ((f64, String), Minute<Merged>)| {
            if let Some(blob) = codec::encode_counted(&key, &m) {
                b.push(start);
                x.push(key);
                e.push(m.events as i64);
                d.push(blob);
            }
        };
        let sql = format!(
            "SELECT extract(epoch FROM h.bucket_start)::float8, h.series, h.data
             FROM UNNEST($1::float8[], $2::text[]) AS t(b, x)
             JOIN {s}.{table} h ON h.bucket_start = to_timestamp(t.b) AND h.series = t.x
             ORDER BY h.bucket_start, h.series"
        );
        let mut rows = sqlx::query_as::<_, (f64, String, Vec<u8>)>(&sql)
            .bind(&starts)
            .bind(&series)
            .fetch(&mut *tx);
        let mut runs = MergeRuns::new();
        while let Some((start, key, data)) = rows.try_next().await? {
            if let Some(finished) = runs.push((start, key), &data, |(_, k)| k.as_str()) {
                done(finished);
            }
        }
        if let Some(finished) = runs.end() {
            done(finished);
        }
    }
    sqlx::query(&format!(
        "INSERT INTO {s}.cluster_{table} (bucket_start, series, events, data)
         SELECT to_timestamp(b), x, e, d FROM UNNEST($1::float8[], $2::text[], $3::int8[], $4::bytea[]) AS t(b, x, e, d)
         ON CONFLICT (bucket_start, series)
         DO UPDATE SET events = EXCLUDED.events, data = EXCLUDED.data, updated_at = now()"
    ))
    .bind(&b)
    .bind(&x)
    .bind(&e)
    .bind(&d)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "DELETE FROM {s}.compact_queue q USING UNNEST($1::float8[], $2::text[]) AS t(b, x)
         WHERE q.tbl = '{table}' AND q.bucket_start = to_timestamp(t.b) AND q.series = t.x"
    ))
    .bind(&starts)
    .bind(&series)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(b.len()))
}
