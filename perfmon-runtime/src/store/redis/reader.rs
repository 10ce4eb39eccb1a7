//! The Redis reader: a window of the series a query wants, from the coarsest buckets that cover
//! it exactly, merged across this instance's runs (instance scope) or across every instance
//! (cluster scope: the compactor's value of each closed bucket, every instance's values of the
//! open ones). Reads go chunk by chunk and merge as they go, so a read holds its merged series
//! and one chunk of raw values, never the whole window.

use std::collections::BTreeMap;

use redis::{from_redis_value, Cmd};

use crate::core::hist::Merged;
use crate::core::window::{Scope, Window};
use crate::pipeline::aggregator::Minute;
use crate::pipeline::registry::SeriesInfo;
use crate::read::query::SeriesFilter;
use crate::store::codec::{self, parse_series_key, series_key};
use crate::store::error::TierError;
use crate::store::redis::io::{merge_fields, timed, Batch, Conn};
use crate::store::redis::layout::{
    field, is_instance_field, plan, reads_cluster_value, sid, window_minutes, Keys, Tier, CLUSTER,
    CLUSTER_VERSION, WRITES,
};

/// Buckets whose series are listed per round trip.
const BUCKETS_PER_STEP: usize = 16;
/// Commands per round trip.
const CHUNK: usize = 256;

/// What one read needs.
pub(crate) struct ReadSpec<'a> {
    pub keys: &'a Keys,
    pub instance: &'a str,
    pub window: Window,
    pub scope: Scope,
    pub filter: &'a SeriesFilter,
    pub now_secs: u64,
}

/// How one (bucket, series) hash is read.
enum Fetch {
    /// HMGET of this instance's run fields.
    Runs,
    /// HMGET of the cluster value and its version (closed bucket, cluster scope).
    Cluster,
    /// HGETALL: every instance's value (open bucket, or no valid cluster value).
    All,
}

struct Target {
    key: String,
    series: String,
    fetch: Fetch,
}

/// Counts of what a Redis read did (for the tests and the fleet benchmark).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Buckets in the read's plan.
    pub buckets: usize,
    /// (bucket, series) hashes read.
    pub hashes: usize,
    /// Cluster values (the compactor's merges) taken.
    pub cluster_values: usize,
    /// Instance values taken.
    pub instance_values: usize,
    /// Round trips to Redis.
    pub round_trips: usize,
}

/// Reads a window.
pub(crate) async fn load(
    conn: &mut Conn,
    spec: &ReadSpec<'_>,
) -> Result<(Vec<(SeriesInfo, Minute<Merged>)>, ReadStats), TierError> {
    let (first, last) = window_minutes(spec.window, spec.now_secs / 60);
    let buckets = plan(first, last);
    let mut stats = ReadStats {
        buckets: buckets.len(),
        ..ReadStats::default()
    };
    let fields = match spec.scope {
        Scope::Instance => {
            let runs: Vec<String> = timed(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(spec.keys.runs(spec.instance))
                    .arg(first)
                    .arg("+inf")
                    .query_async(conn),
            )
            .await?;
            stats.round_trips += 1;
            if runs.is_empty() {
                return Ok((Vec::new(), stats));
            }
            runs.iter().map(|r| field(spec.instance, r)).collect()
        }
        Scope::Cluster => Vec::new(),
    };
    let exact: Option<Vec<(String, String)>> = spec.filter.exact().map(|infos| {
        infos
            .iter()
            .map(|i| {
                let k = series_key(i);
                (sid(&k), k)
            })
            .collect()
    });
    let mut acc: BTreeMap<String, Minute<Merged>> = BTreeMap::new();
    for step in buckets.chunks(BUCKETS_PER_STEP) {
        let series = match &exact {
            Some(e) => vec![e.clone(); step.len()],
            None => indexed_series(conn, spec, step, &mut stats).await?,
        };
        let mut targets = Vec::new();
        for (&(tier, bucket), list) in step.iter().zip(series) {
            for (id, key) in list {
                let fetch = match spec.scope {
                    Scope::Instance => Fetch::Runs,
                    Scope::Cluster
                        if reads_cluster_value(spec.scope, tier, bucket, spec.now_secs) =>
                    {
                        Fetch::Cluster
                    }
                    Scope::Cluster => Fetch::All,
                };
                targets.push(Target {
                    key: spec.keys.data(tier, bucket, &id),
                    series: key,
                    fetch,
                });
            }
        }
        stats.hashes += targets.len();
        for chunk in targets.chunks(CHUNK) {
            let missing = fetch_chunk(conn, chunk, &fields, &mut acc, &mut stats).await?;
            for chunk in missing.chunks(CHUNK) {
                let again = fetch_chunk(conn, chunk, &fields, &mut acc, &mut stats).await?;
                debug_assert!(again.is_empty());
            }
        }
    }
    let rows = acc
        .into_iter()
        .filter(|(_, m)| m.events > 0 || m.hist.count() > 0)
        .filter_map(|(k, m)| Some((parse_series_key(&k)?, m)))
        .collect();
    Ok((rows, stats))
}

/// The (sid, series key) pairs each bucket's index lists and the filter wants.
async fn indexed_series(
    conn: &mut Conn,
    spec: &ReadSpec<'_>,
    step: &[(Tier, u64)],
    stats: &mut ReadStats,
) -> Result<Vec<Vec<(String, String)>>, TierError> {
    let mut batch = Batch::default();
    for &(tier, bucket) in step {
        let index = spec.keys.index(tier, bucket);
        batch.add(&index, Cmd::hgetall(&index));
    }
    let lists = batch
        .send(conn)
        .await?
        .iter()
        .map(from_redis_value::<Vec<(String, String)>>)
        .collect::<Result<Vec<_>, _>>()?;
    stats.round_trips += 1;
    Ok(lists
        .into_iter()
        .map(|list| {
            list.into_iter()
                .filter(|(_, key)| parse_series_key(key).is_some_and(|i| spec.filter.matches(&i)))
                .collect()
        })
        .collect())
}

/// `HMGET key fields…` (always an array answer, even for one field).
fn hmget(key: &str, fields: impl redis::ToRedisArgs) -> Cmd {
    let mut c = redis::cmd("HMGET");
    c.arg(key).arg(fields);
    c
}

/// Reads one chunk of hashes and merges what it finds; returns the cluster reads that found no
/// valid cluster value, to be read whole.
async fn fetch_chunk(
    conn: &mut Conn,
    chunk: &[Target],
    fields: &[String],
    acc: &mut BTreeMap<String, Minute<Merged>>,
    stats: &mut ReadStats,
) -> Result<Vec<Target>, TierError> {
    let mut batch = Batch::default();
    for t in chunk {
        let cmd = match t.fetch {
            Fetch::Runs => hmget(&t.key, fields),
            Fetch::Cluster => hmget(&t.key, &[CLUSTER, CLUSTER_VERSION, WRITES][..]),
            Fetch::All => Cmd::hgetall(&t.key),
        };
        batch.add(&t.key, cmd);
    }
    let values = batch.send(conn).await?;
    stats.round_trips += 1;
    let mut missing = Vec::new();
    for (t, v) in chunk.iter().zip(&values) {
        match t.fetch {
            Fetch::Runs => {
                let blobs: Vec<Option<Vec<u8>>> = from_redis_value(v)?;
                let present: Vec<(&str, &[u8])> = blobs
                    .iter()
                    .flatten()
                    .map(|b| (t.key.as_str(), b.as_slice()))
                    .collect();
                if !present.is_empty() {
                    stats.instance_values += present.len();
                    merge_fields(
                        present.into_iter(),
                        acc.entry(t.series.clone()).or_default(),
                    );
                }
            }
            Fetch::Cluster => {
                let [value, merged, writes]: [Option<Vec<u8>>; 3] = from_redis_value::<Vec<_>>(v)?
                    .try_into()
                    .map_err(|_| TierError::from(codec::CodecError::from("HMGET of 3 fields")))?;
                match (value, writes) {
                    (Some(blob), Some(w)) if merged.as_ref() == Some(&w) => {
                        stats.cluster_values += 1;
                        merge_fields(
                            std::iter::once((t.key.as_str(), blob.as_slice())),
                            acc.entry(t.series.clone()).or_default(),
                        );
                    }
                    (_, Some(_)) => missing.push(Target {
                        key: t.key.clone(),
                        series: t.series.clone(),
                        fetch: Fetch::All,
                    }),
                    (_, None) => {} // no such hash
                }
            }
            Fetch::All => {
                let hash: Vec<(String, Vec<u8>)> = from_redis_value(v)?;
                let present: Vec<(&str, &[u8])> = hash
                    .iter()
                    .filter(|(f, _)| is_instance_field(f))
                    .map(|(f, b)| (f.as_str(), b.as_slice()))
                    .collect();
                if !present.is_empty() {
                    stats.instance_values += present.len();
                    merge_fields(
                        present.into_iter(),
                        acc.entry(t.series.clone()).or_default(),
                    );
                }
            }
        }
    }
    Ok(missing)
}
