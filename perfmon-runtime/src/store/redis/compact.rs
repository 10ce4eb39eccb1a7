//! The compactor: merges each closed bucket of each series across every instance once, into the
//! bucket's cluster value, so a cluster read of closed buckets reads one value per series and
//! bucket whatever the number of instances.
//!
//! One instance at a time holds the lease (`SET NX PX`, renewed by its holder on every pass).
//! Writers queue every bucket they write (score: when it becomes final, or now for a late
//! write). A pass takes the due entries, removes them from the queue, reads each hash whole
//! (`HGETALL`: the instance values and the write counter `#v` in one atomic read), and writes
//! the merge with the counter it merged (`*v`). A write that lands after that read increments
//! `#v` and queues the bucket again, so readers, which take the cluster value only when `*v`
//! equals `#v`, never see a stale merge, and the next pass recomputes it. Two compactors racing
//! (a lease that expired mid-pass) can only leave a merge that readers reject, never a wrong one.

use std::collections::HashMap;
use std::time::Duration;

use redis::Cmd;

use crate::core::hist::Accum;
use crate::pipeline::aggregator::Minute;
use crate::store::codec;
use crate::store::error::TierError;
use crate::store::redis::io::{merge_fields, timed, Batch, Conn};
use crate::store::redis::layout::{
    is_instance_field, parse_queue_member, Keys, CLUSTER, CLUSTER_VERSION, WRITES,
};
use crate::store::rollup::finish;

/// How long the lease lasts without renewal.
const LEASE: Duration = Duration::from_secs(30);
/// How long one pass may go on taking batches.
const PASS_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);
/// Buckets merged per batch (one `HGETALL` round trip, one write round trip).
const CHUNK: usize = 100;

pub(crate) struct Compactor {
    keys: Keys,
    me: String,
}

impl Compactor {
    pub(crate) fn new(keys: Keys, me: String) -> Compactor {
        Compactor { keys, me }
    }

    /// Takes or renews the lease.
    async fn lease(&self, conn: &mut Conn) -> Result<bool, TierError> {
        let lease = self.keys.lease();
        let px = LEASE.as_millis() as u64;
        let mut set = redis::cmd("SET");
        set.arg(&lease).arg(&self.me).arg("NX").arg("PX").arg(px);
        let _: Option<String> = timed(set.query_async(conn)).await?;
        let holder: Option<String> = timed(Cmd::get(&lease).query_async(conn)).await?;
        if holder.as_deref() != Some(self.me.as_str()) {
            return Ok(false);
        }
        let _: () = timed(redis::cmd("PEXPIRE").arg(&lease).arg(px).query_async(conn)).await?;
        Ok(true)
    }

    /// One pass, if this instance holds the lease: merges the buckets due at `now_secs`, batch
    /// after batch until none is due or [`PASS_BUDGET`] is spent (so the backlog drains however
    /// many series are written). Returns how many cluster values it wrote.
    pub(crate) async fn pass(&self, conn: &mut Conn, now_secs: u64) -> Result<usize, TierError> {
        if !self.lease(conn).await? {
            return Ok(0);
        }
        let started = std::time::Instant::now();
        let queue = self.keys.compact_queue();
        let mut written = 0;
        while started.elapsed() < PASS_BUDGET {
            let due: Vec<String> = timed(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&queue)
                    .arg("-inf")
                    .arg(now_secs)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(CHUNK)
                    .query_async(conn),
            )
            .await?;
            if due.is_empty() {
                break;
            }
            // out of the queue before the read (a write after it queues the bucket again), and
            // back in if the merge fails, so no bucket is left unmerged
            let _: () = timed(redis::cmd("ZREM").arg(&queue).arg(&due).query_async(conn)).await?;
            match self.merge_chunk(conn, &due, now_secs).await {
                Ok(n) => written += n,
                Err(e) => {
                    let again: Vec<(u64, &String)> = due.iter().map(|m| (now_secs, m)).collect();
                    let queue = Cmd::zadd_multiple(&queue, &again);
                    let _: Result<(), _> = timed(queue.query_async(conn)).await;
                    return Err(e);
                }
            }
        }
        Ok(written)
    }

    async fn merge_chunk(
        &self,
        conn: &mut Conn,
        members: &[String],
        now_secs: u64,
    ) -> Result<usize, TierError> {
        let targets: Vec<_> = members
            .iter()
            .filter_map(|m| {
                let (tier, bucket, id) = parse_queue_member(m)?;
                Some((m, tier, bucket, self.keys.data(tier, bucket, id)))
            })
            .collect();
        let mut batch = Batch::default();
        for (_, _, _, key) in &targets {
            batch.add(key, Cmd::hgetall(key));
        }
        let hashes = batch
            .send(conn)
            .await?
            .iter()
            .map(redis::from_redis_value::<HashMap<String, Vec<u8>>>)
            .collect::<Result<Vec<_>, _>>()?;
        let mut batch = Batch::default();
        let mut checks = Vec::new();
        for ((member, tier, bucket, key), hash) in targets.iter().zip(&hashes) {
            let version = hash.get(WRITES).cloned().unwrap_or_default();
            if version.is_empty() || hash.get(CLUSTER_VERSION) == Some(&version) {
                continue; // expired, or merged already at this version
            }
            let mut acc = Minute::<Accum>::default();
            merge_fields(
                hash.iter()
                    .filter(|(f, _)| is_instance_field(f))
                    .map(|(f, v)| (f.as_str(), v.as_slice())),
                &mut acc,
            );
            let merged = finish(acc);
            let Some(blob) = codec::encode_counted(key, &merged) else {
                continue;
            };
            let fields = [
                (CLUSTER, blob.as_slice()),
                (CLUSTER_VERSION, version.as_slice()),
            ];
            batch
                .add(key, Cmd::hset_multiple(key, &fields))
                .add(key, Cmd::expire_at(key, tier.expire_at(*bucket) as i64))
                .add(key, Cmd::hget(key, WRITES));
            checks.push((*member, version));
        }
        if checks.is_empty() {
            return Ok(0);
        }
        let answers = batch.send(conn).await?;
        // every third answer: the write counter after the merge was written
        let now = answers
            .iter()
            .skip(2)
            .step_by(3)
            .map(redis::from_redis_value::<Option<Vec<u8>>>)
            .collect::<Result<Vec<_>, _>>()?;
        // a write landed since the read: queue the bucket again
        let again: Vec<(u64, &String)> = checks
            .iter()
            .zip(&now)
            .filter(|((_, merged), current)| current.as_ref() != Some(merged))
            .map(|((member, _), _)| (now_secs, *member))
            .collect();
        if !again.is_empty() {
            let queue = Cmd::zadd_multiple(self.keys.compact_queue(), &again);
            let _: () = timed(queue.query_async(conn)).await?;
        }
        Ok(checks.len())
    }
}
