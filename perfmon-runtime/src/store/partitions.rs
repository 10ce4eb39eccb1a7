//! Declarative partitions of the PostgreSQL hourly and daily tables: one partition per UTC month
//! (`hourly_p202611`, …) plus a default one, so that retention drops whole months and a read of
//! a period scans that period's partitions only.
//!
//! Migration 3 turns the 0.1 tables into partitioned ones (partitions for every month holding
//! rows, then the rows moved over). The writer creates the partition of each month it writes
//! before writing (once per month and process, serialized across instances by an advisory
//! lock); a row whose partition could not be created lands in the default partition, which the
//! retention job also prunes.

use std::collections::BTreeSet;

use sqlx::PgPool;

use crate::core::clock::{civil_from_days, days_from_civil};
use crate::store::error::TierError;

/// The partitioned tables.
pub(crate) const TABLES: [&str; 2] = ["hourly", "daily"];

/// The UTC (year, month) holding a Unix second.
pub(crate) fn month_of(unix_secs: u64) -> (i64, u32) {
    let (y, m, _) = civil_from_days((unix_secs / 86_400) as i64);
    (y, m)
}

/// The Unix seconds a month starts and ends at.
pub(crate) fn month_bounds((y, m): (i64, u32)) -> (i64, i64) {
    let start = days_from_civil(y, m, 1) * 86_400;
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (start, days_from_civil(ny, nm, 1) * 86_400)
}

/// A month's partition of `table`.
pub(crate) fn partition_name(table: &str, (y, m): (i64, u32)) -> String {
    format!("{table}_p{y:04}{m:02}")
}

/// The month of a partition name written by [`partition_name`].
pub(crate) fn parse_partition(table: &str, name: &str) -> Option<(i64, u32)> {
    let digits = name.strip_prefix(table)?.strip_prefix("_p")?;
    if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (y, m) = (digits[..4].parse().ok()?, digits[4..].parse().ok()?);
    (1..=12).contains(&m).then_some((y, m))
}

/// A Unix second as a timestamp literal (UTC).
fn literal(unix_secs: i64) -> String {
    let (y, m, d) = civil_from_days(unix_secs.div_euclid(86_400));
    format!("'{y:04}-{m:02}-{d:02} 00:00:00+00'")
}

/// The partitions this process knows exist.
#[derive(Default)]
pub(crate) struct Partitions {
    known: BTreeSet<(&'static str, (i64, u32))>,
}

impl Partitions {
    /// Makes sure `table` (schema `s`, as a quoted identifier) has a partition for each month in
    /// `months`. A month whose partition cannot be created is logged and left to the default
    /// partition.
    pub(crate) async fn ensure(
        &mut self,
        pool: &PgPool,
        s: &str,
        table: &'static str,
        months: Vec<(i64, u32)>,
    ) -> Result<(), TierError> {
        let missing: Vec<(i64, u32)> = months
            .into_iter()
            .filter(|m| !self.known.contains(&(table, *m)))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("{s}.{table} partitions"))
            .execute(&mut *tx)
            .await?;
        for month in missing {
            let (from, to) = month_bounds(month);
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {s}.{name} PARTITION OF {s}.{table} FOR VALUES FROM ({}) TO ({})",
                literal(from),
                literal(to),
                name = partition_name(table, month)
            );
            // a savepoint, so that one month that cannot be created leaves the others
            sqlx::query("SAVEPOINT partition").execute(&mut *tx).await?;
            match sqlx::query(&sql).execute(&mut *tx).await {
                Ok(_) => {
                    sqlx::query("RELEASE SAVEPOINT partition")
                        .execute(&mut *tx)
                        .await?;
                    self.known.insert((table, month));
                }
                Err(e) => {
                    // tried again with the next write of that month; meanwhile its rows go to
                    // the default partition
                    sqlx::query("ROLLBACK TO SAVEPOINT partition")
                        .execute(&mut *tx)
                        .await?;
                    tracing::warn!(target: "perfmon", table, error = %e, "a month's partition could not be created; its rows go to the default partition");
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Drops the month partitions of `table` that end at or before `cutoff_secs`; returns the rows
/// they held.
pub(crate) async fn drop_before(
    pool: &PgPool,
    prefix: &str,
    s: &str,
    table: &str,
    cutoff_secs: i64,
) -> Result<u64, TierError> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i
         JOIN pg_class c ON c.oid = i.inhrelid
         JOIN pg_class p ON p.oid = i.inhparent
         JOIN pg_namespace n ON n.oid = p.relnamespace
         WHERE n.nspname = $1 AND p.relname = $2",
    )
    .bind(prefix)
    .bind(table)
    .fetch_all(pool)
    .await?;
    let mut rows = 0;
    for name in names {
        let Some(month) = parse_partition(table, &name) else {
            continue;
        };
        if month_bounds(month).1 > cutoff_secs {
            continue;
        }
        match drop_one(pool, s, &name).await {
            Ok(n) => rows += n,
            // another instance's prune may be dropping it now: its rows are gone either way
            Err(e) => {
                tracing::debug!(target: "perfmon", partition = name, error = %e, "dropping a partition")
            }
        }
    }
    Ok(rows)
}

/// Counts and drops one partition in one transaction; 0 if it is gone already.
async fn drop_one(pool: &PgPool, s: &str, name: &str) -> Result<u64, TierError> {
    let mut tx = pool.begin().await?;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("{s}.\"{name}\""))
        .fetch_one(&mut *tx)
        .await?;
    if !exists {
        return Ok(0);
    }
    sqlx::query(&format!(
        "LOCK TABLE {s}.\"{name}\" IN ACCESS EXCLUSIVE MODE"
    ))
    .execute(&mut *tx)
    .await?;
    let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {s}.\"{name}\""))
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query(&format!("DROP TABLE {s}.\"{name}\""))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(n as u64)
}

/// Migration 3: the 0.1 hourly and daily tables become partitioned ones, with a partition for
/// every month holding rows, and the rows moved over.
pub(crate) fn migration(s: &str) -> String {
    let mut sql = String::new();
    for table in TABLES {
        sql.push_str(&format!(
            "ALTER TABLE {s}.{table} RENAME TO {table}_unpartitioned;
             ALTER TABLE {s}.{table}_unpartitioned RENAME CONSTRAINT {table}_pkey TO {table}_unpartitioned_pkey;
             ALTER INDEX {s}.{table}_series_bucket RENAME TO {table}_unpartitioned_series_bucket;
             CREATE TABLE {s}.{table} (LIKE {s}.{table}_unpartitioned INCLUDING DEFAULTS)
                 PARTITION BY RANGE (bucket_start);
             ALTER TABLE {s}.{table} ADD PRIMARY KEY (bucket_start, instance, run, series);
             CREATE INDEX {table}_series_bucket ON {s}.{table} (series, bucket_start);
             CREATE TABLE {s}.{table}_default PARTITION OF {s}.{table} DEFAULT;
             DO $migrate$
             DECLARE m timestamp;
             BEGIN
                 FOR m IN SELECT DISTINCT date_trunc('month', bucket_start AT TIME ZONE 'UTC')
                          FROM {s}.{table}_unpartitioned LOOP
                     EXECUTE format('CREATE TABLE {s}.%I PARTITION OF {s}.{table} FOR VALUES FROM (%L) TO (%L)',
                         '{table}_p' || to_char(m, 'YYYYMM'),
                         m AT TIME ZONE 'UTC',
                         (m + interval '1 month') AT TIME ZONE 'UTC');
                 END LOOP;
             END
             $migrate$;
             INSERT INTO {s}.{table} SELECT * FROM {s}.{table}_unpartitioned;
             DROP TABLE {s}.{table}_unpartitioned;
            "
        ));
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_names() {
        // 2026-11-26 12:00 UTC
        let t = 1_795_694_400;
        assert_eq!(month_of(t), (2026, 11));
        let (a, b) = month_bounds((2026, 11));
        assert!(a as u64 <= t && t < b as u64);
        assert_eq!(b - a, 30 * 86_400);
        assert_eq!(month_bounds((2026, 12)).1, month_bounds((2027, 1)).0);
        assert_eq!(partition_name("hourly", (2026, 11)), "hourly_p202611");
        assert_eq!(
            parse_partition("hourly", "hourly_p202611"),
            Some((2026, 11))
        );
        assert_eq!(parse_partition("hourly", "hourly_default"), None);
        assert_eq!(parse_partition("hourly", "daily_p202611"), None);
        assert_eq!(parse_partition("hourly", "hourly_p202613"), None);
        assert_eq!(literal(a), "'2026-11-01 00:00:00+00'");
    }
}
