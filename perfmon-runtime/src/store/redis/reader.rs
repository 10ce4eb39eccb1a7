//! The Redis reader: a window of the series a query wants, from the coarsest buckets that cover
//! it exactly, merged across this instance's runs (instance scope) or across every instance
//! (cluster scope: the compactor's value of each closed bucket, every instance's values of the
//! open ones). Reads go chunk by chunk and merge as they go, so a read holds its merged series
//! and one chunk of raw values, never the whole window.

use std::collections::BTreeMap;

use redis::{from_redis_value, Cmd};

use crate::core::hist::{Accum, Merged};
use crate::core::window::{Scope, Window};
use crate::pipeline::aggregator::Minute;
use crate::pipeline::registry::SeriesInfo;
use crate::read::query::SeriesFilter;
use crate::store::codec::{self, parse_series_key, series_key};
use crate::store::error::TierError;
use crate::store::redis::io::{merge_fields, timed, Batch, Conn};
use crate::store::redis::layout::{
    field, is_instance_field, plan, plan_within, sid, window_minutes, Keys, Tier, CLUSTER,
    CLUSTER_VERSION, WRITES,
};
use crate::store::rollup::finish;

/// Buckets whose series are listed per round trip.
const BUCKETS_PER_STEP: usize = 64;
/// Series merged at a time: a read holds this many merges in progress (and the finished ones).
const SERIES_PER_STEP: usize = 32;
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

/// A series the read wants: its key and the plan's buckets that hold it (by position).
struct Wanted {
    key: String,
    buckets: Vec<u32>,
}

/// Reads a window: finds the series it wants (named by the filter, or listed by each bucket's
/// index), then reads them a few at a time, all of a series' buckets together (one slot in a
/// Redis Cluster), merging each into its series as it arrives.
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
    let Some(fields) = run_fields(conn, spec, first, &mut stats).await? else {
        return Ok((Vec::new(), stats));
    };
    let wanted: BTreeMap<String, Wanted> = match spec.filter.exact() {
        Some(infos) => infos
            .iter()
            .map(|i| {
                let key = series_key(i);
                let all = (0..buckets.len() as u32).collect();
                (sid(&key), Wanted { key, buckets: all })
            })
            .collect(),
        None => indexed_series(conn, spec, &buckets, &mut stats).await?,
    };
    let wanted: Vec<Wanted> = wanted.into_values().collect();
    let mut rows = Vec::new();
    for step in wanted.chunks(SERIES_PER_STEP) {
        let mut targets = Vec::new();
        for (n, w) in step.iter().enumerate() {
            let id = sid(&w.key);
            for &b in &w.buckets {
                let (tier, bucket) = buckets[b as usize];
                targets.push((n, target(spec, tier, bucket, &id)));
            }
        }
        stats.hashes += targets.len();
        let mut acc: Vec<Minute<Accum>> = step.iter().map(|_| Minute::default()).collect();
        fetch_all(conn, &targets, &fields, &mut acc, &mut stats).await?;
        for (w, m) in step.iter().zip(acc) {
            let m = finish(m);
            if m.events == 0 && m.hist.count() == 0 {
                continue;
            }
            if let Some(info) = parse_series_key(&w.key) {
                rows.push((info, m));
            }
        }
    }
    Ok((rows, stats))
}

/// A route's trend over a window: its series (the filter's exact ones), bucket by bucket of the
/// read's plan, merged into `points` equal slices of the window (and across the route's
/// methods); each slice's start (Unix seconds) with its merge, slices without events left out.
pub(crate) async fn load_trend(
    conn: &mut Conn,
    spec: &ReadSpec<'_>,
    points: usize,
) -> Result<Vec<(u64, Minute<Merged>)>, TierError> {
    let (first, last) = window_minutes(spec.window, spec.now_secs / 60);
    let slice = slice_minutes(last - first + 1, points);
    let buckets = plan_within(first, last, slice);
    let mut stats = ReadStats::default();
    let Some(infos) = spec.filter.exact() else {
        return Ok(Vec::new());
    };
    let Some(fields) = run_fields(conn, spec, first, &mut stats).await? else {
        return Ok(Vec::new());
    };
    // slices aligned to multiples of their length, each holding whole buckets
    let first_slice = first / slice;
    let points = (last / slice - first_slice + 1) as usize;
    let slot_of = |minute: u64| (minute / slice - first_slice) as usize;
    let mut targets = Vec::new();
    for info in &infos {
        let id = sid(&series_key(info));
        for &(tier, bucket) in &buckets {
            let slot = slot_of(bucket * tier.minutes());
            targets.push((slot, target(spec, tier, bucket, &id)));
        }
    }
    let mut acc: Vec<Minute<Accum>> = (0..points).map(|_| Minute::default()).collect();
    fetch_all(conn, &targets, &fields, &mut acc, &mut stats).await?;
    Ok(acc
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            (
                ((first_slice + i as u64) * slice).max(first) * 60,
                finish(m),
            )
        })
        .filter(|(_, m)| m.events > 0)
        .collect())
}

/// The fields of this instance's runs since minute `first` (instance scope; `None` when it has
/// none there), or none to name (cluster scope).
async fn run_fields(
    conn: &mut Conn,
    spec: &ReadSpec<'_>,
    first: u64,
    stats: &mut ReadStats,
) -> Result<Option<Vec<String>>, TierError> {
    match spec.scope {
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
            Ok((!runs.is_empty()).then(|| runs.iter().map(|r| field(spec.instance, r)).collect()))
        }
        Scope::Cluster => Ok(Some(Vec::new())),
    }
}

/// How one (bucket, series) hash is read for the spec's scope.
fn target(spec: &ReadSpec<'_>, tier: Tier, bucket: u64, series_id: &str) -> Target {
    let fetch = match spec.scope {
        Scope::Instance => Fetch::Runs,
        // a bucket no instance changes any more has (or will have) a cluster value
        Scope::Cluster if tier.final_at(bucket) <= spec.now_secs => Fetch::Cluster,
        Scope::Cluster => Fetch::All,
    };
    Target {
        key: spec.keys.data(tier, bucket, series_id),
        fetch,
    }
}

/// Reads `targets` a chunk at a time into `acc` (each target's merge named by its index), and
/// the cluster reads that found no valid cluster value once more, whole.
async fn fetch_all(
    conn: &mut Conn,
    targets: &[(usize, Target)],
    fields: &[String],
    acc: &mut [Minute<Accum>],
    stats: &mut ReadStats,
) -> Result<(), TierError> {
    for chunk in targets.chunks(CHUNK) {
        let missing = fetch_chunk(conn, chunk, fields, acc, stats).await?;
        for chunk in missing.chunks(CHUNK) {
            let again = fetch_chunk(conn, chunk, fields, acc, stats).await?;
            debug_assert!(again.is_empty());
        }
    }
    Ok(())
}

/// The length of a trend's slices: at least the window over `points`, rounded up to a whole
/// number of the coarsest bucket that fits (an hour, 5 minutes or a minute).
pub(crate) fn slice_minutes(span: u64, points: usize) -> u64 {
    let raw = span.div_ceil(points.max(1) as u64).max(1);
    let unit = match raw {
        60.. => 60,
        5.. => 5,
        _ => 1,
    };
    raw.div_ceil(unit) * unit
}

/// The series the buckets' indexes list and the filter wants, with the buckets holding each.
async fn indexed_series(
    conn: &mut Conn,
    spec: &ReadSpec<'_>,
    buckets: &[(Tier, u64)],
    stats: &mut ReadStats,
) -> Result<BTreeMap<String, Wanted>, TierError> {
    let mut wanted: BTreeMap<String, Wanted> = BTreeMap::new();
    for (n, step) in buckets.chunks(BUCKETS_PER_STEP).enumerate() {
        let mut batch = Batch::default();
        for &(tier, bucket) in step {
            let index = spec.keys.index(tier, bucket);
            batch.add(&index, Cmd::hgetall(&index));
        }
        let lists = batch.send(conn).await?;
        stats.round_trips += 1;
        for (k, list) in lists.iter().enumerate() {
            let position = (n * BUCKETS_PER_STEP + k) as u32;
            for (id, key) in from_redis_value::<Vec<(String, String)>>(list)? {
                match wanted.get_mut(&id) {
                    Some(w) => w.buckets.push(position),
                    None if parse_series_key(&key).is_some_and(|i| spec.filter.matches(&i)) => {
                        wanted.insert(
                            id,
                            Wanted {
                                key,
                                buckets: vec![position],
                            },
                        );
                    }
                    None => {}
                }
            }
        }
    }
    Ok(wanted)
}

/// `HMGET key fields…` (always an array answer, even for one field).
fn hmget(key: &str, fields: impl redis::ToRedisArgs) -> Cmd {
    let mut c = redis::cmd("HMGET");
    c.arg(key).arg(fields);
    c
}

/// Reads one chunk of hashes and merges what it finds into the series' merges in progress;
/// returns the cluster reads that found no valid cluster value, to be read whole.
async fn fetch_chunk(
    conn: &mut Conn,
    chunk: &[(usize, Target)],
    fields: &[String],
    acc: &mut [Minute<Accum>],
    stats: &mut ReadStats,
) -> Result<Vec<(usize, Target)>, TierError> {
    let mut batch = Batch::default();
    for (_, t) in chunk {
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
    for ((n, t), v) in chunk.iter().zip(&values) {
        let into = &mut acc[*n];
        match t.fetch {
            Fetch::Runs => {
                let blobs: Vec<Option<Vec<u8>>> = from_redis_value(v)?;
                let present: Vec<(&str, &[u8])> = blobs
                    .iter()
                    .flatten()
                    .map(|b| (t.key.as_str(), b.as_slice()))
                    .collect();
                stats.instance_values += present.len();
                merge_fields(present.into_iter(), into);
            }
            Fetch::Cluster => {
                let [value, merged, writes]: [Option<Vec<u8>>; 3] = from_redis_value::<Vec<_>>(v)?
                    .try_into()
                    .map_err(|_| TierError::from(codec::CodecError::from("HMGET of 3 fields")))?;
                match (value, writes) {
                    (Some(blob), Some(w)) if merged.as_ref() == Some(&w) => {
                        stats.cluster_values += 1;
                        merge_fields(std::iter::once((t.key.as_str(), blob.as_slice())), into);
                    }
                    (_, Some(_)) => missing.push((
                        *n,
                        Target {
                            key: t.key.clone(),
                            fetch: Fetch::All,
                        },
                    )),
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
                stats.instance_values += present.len();
                merge_fields(present.into_iter(), into);
            }
        }
    }
    Ok(missing)
}
