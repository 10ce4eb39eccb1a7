//! The Redis connection — a single Redis or a Redis Cluster — opening and checking it, batches of
//! commands (one pipeline, or one per cluster slot), one timeout for every round trip, and the
//! merge of the instance values read from a hash.

use std::future::Future;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Value;

use crate::core::hist::Accum;
use crate::pipeline::aggregator::Minute;
use crate::store::codec;
use crate::store::error::TierError;
use crate::store::rollup::accumulate;

/// How long one round trip (a flush's pipeline, a read's chunk) may take.
pub(crate) const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to a single Redis or to a Redis Cluster.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server (reconnecting).
    Single(ConnectionManager),
    /// A Redis Cluster (routing each command by its key's slot, following the cluster's moves).
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

fn is_node_url(u: &str) -> bool {
    let u = u.trim();
    u.starts_with("redis://") || u.starts_with("rediss://")
}

/// The seed nodes of a Redis Cluster that `url` names, if it names one: a comma-separated list
/// of node URLs (`redis://10.0.0.1:7000,redis://10.0.0.2:7000`), or one URL with the scheme
/// `redis+cluster://` (`rediss+cluster://` with TLS), whose host list may also be
/// comma-separated (`redis+cluster://10.0.0.1:7000,10.0.0.2:7000`).
pub(crate) fn cluster_nodes(url: &str) -> Option<Vec<String>> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("redis+cluster", rest)) => ("redis", rest),
        Some(("rediss+cluster", rest)) => ("rediss", rest),
        // a list of node URLs (a comma inside one URL, as in a password, is not a list)
        _ if url.contains(',') && url.split(',').all(is_node_url) => {
            return Some(url.split(',').map(|u| u.trim().to_string()).collect());
        }
        _ => return None,
    };
    // credentials (before '@') apply to every host
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), rest),
    };
    Some(
        hosts
            .split(',')
            .map(|h| format!("{scheme}://{auth}{}", h.trim()))
            .collect(),
    )
}

/// Opens a connection (a reconnecting one to a single Redis, or a cluster connection when the
/// URL names a cluster, see [`cluster_nodes`]) and checks it with `PING`, each step under
/// `connect_timeout`.
pub(crate) async fn connect(
    url: &str,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<Conn, TierError> {
    let timed_out = || TierError::Timeout {
        tier: "Redis",
        after: connect_timeout,
    };
    let mut conn = match cluster_nodes(url) {
        Some(nodes) => {
            let client = redis::cluster::ClusterClientBuilder::new(nodes)
                .connection_timeout(connect_timeout)
                .response_timeout(response_timeout)
                .retries(1)
                .build()?;
            let connect = client.get_async_connection();
            Conn::Cluster(
                tokio::time::timeout(connect_timeout, connect)
                    .await
                    .map_err(|_| timed_out())??,
            )
        }
        None => {
            let client = redis::Client::open(url)?;
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(connect_timeout)
                .set_response_timeout(response_timeout)
                .set_number_of_retries(1);
            let connect = ConnectionManager::new_with_config(client, config);
            Conn::Single(
                tokio::time::timeout(connect_timeout, connect)
                    .await
                    .map_err(|_| timed_out())??,
            )
        }
    };
    ping(&mut conn).await?;
    Ok(conn)
}

/// `PING`: what the health check runs.
pub(crate) async fn ping(conn: &mut Conn) -> Result<String, TierError> {
    Ok(redis::cmd("PING").query_async(conn).await?)
}

/// The cluster slot of a key (CRC16/XMODEM of its hash tag, or of the whole key, mod 16384), as
/// Redis computes it.
pub(crate) fn slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &b in tagged {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16_384
}

/// Commands sent together: one pipeline to a single Redis; to a cluster, one pipeline per slot,
/// sent concurrently. Answers come back in the order the commands were added.
#[derive(Default)]
pub(crate) struct Batch {
    cmds: Vec<(u16, redis::Cmd)>,
}

impl Batch {
    /// Adds a command on `key`.
    pub(crate) fn add(&mut self, key: &str, cmd: redis::Cmd) -> &mut Batch {
        self.cmds.push((slot(key.as_bytes()), cmd));
        self
    }

    pub(crate) fn len(&self) -> usize {
        self.cmds.len()
    }

    /// Sends every command (under [`ROUND_TRIP_TIMEOUT`]) and returns every answer.
    pub(crate) async fn send(self, conn: &mut Conn) -> Result<Vec<Value>, TierError> {
        if self.cmds.is_empty() {
            return Ok(Vec::new());
        }
        match conn {
            Conn::Single(_) => {
                let mut pipe = redis::pipe();
                for (_, cmd) in self.cmds {
                    pipe.add_command(cmd);
                }
                timed(pipe.query_async(conn)).await
            }
            Conn::Cluster(c) => {
                let n = self.cmds.len();
                let mut groups: std::collections::BTreeMap<u16, (Vec<usize>, redis::Pipeline)> =
                    std::collections::BTreeMap::new();
                for (i, (slot, cmd)) in self.cmds.into_iter().enumerate() {
                    let (idx, pipe) = groups
                        .entry(slot)
                        .or_insert_with(|| (Vec::new(), redis::pipe()));
                    idx.push(i);
                    pipe.add_command(cmd);
                }
                let sends = groups.into_values().map(|(idx, pipe)| {
                    let mut c = c.clone();
                    async move {
                        let values: Vec<Value> = pipe.query_async(&mut c).await?;
                        Ok::<_, redis::RedisError>((idx, values))
                    }
                });
                let answers = timed(async {
                    futures_util::future::join_all(sends)
                        .await
                        .into_iter()
                        .collect::<redis::RedisResult<Vec<_>>>()
                })
                .await?;
                let mut out = vec![Value::Nil; n];
                for (idx, values) in answers {
                    for (i, v) in idx.into_iter().zip(values) {
                        out[i] = v;
                    }
                }
                Ok(out)
            }
        }
    }
}

/// One round trip under [`ROUND_TRIP_TIMEOUT`].
pub(crate) async fn timed<T>(
    round_trip: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, TierError> {
    tokio::time::timeout(ROUND_TRIP_TIMEOUT, round_trip)
        .await
        .map_err(|_| TierError::Timeout {
            tier: "Redis",
            after: ROUND_TRIP_TIMEOUT,
        })?
        .map_err(TierError::from)
}

/// Decodes stored values (field, blob) and adds them to `into`; an undecodable one is skipped
/// with a warning.
pub(crate) fn merge_fields<'a>(
    fields: impl Iterator<Item = (&'a str, &'a [u8])>,
    into: &mut Minute<Accum>,
) {
    for (field, blob) in fields {
        match codec::decode(blob) {
            Ok(m) => accumulate(into, &m),
            Err(e) => {
                tracing::warn!(target: "perfmon", field, error = %e, "unreadable aggregate skipped")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_slots() {
        // values from the Redis Cluster specification and `CLUSTER KEYSLOT`
        assert_eq!(slot(b"123456789"), 0x31c3);
        assert_eq!(slot(b"foo"), 12_182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_ne!(
            slot(b"foo{}{bar}"),
            slot(b"bar"),
            "an empty tag hashes the whole key"
        );
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
    }

    #[test]
    fn cluster_urls() {
        assert_eq!(cluster_nodes("redis://127.0.0.1:6379/"), None);
        assert_eq!(
            cluster_nodes("redis://a:7000,redis://b:7001"),
            Some(vec![
                "redis://a:7000".to_string(),
                "redis://b:7001".to_string()
            ])
        );
        assert_eq!(
            cluster_nodes("redis+cluster://:pw@a:7000,b:7001"),
            Some(vec![
                "redis://:pw@a:7000".to_string(),
                "redis://:pw@b:7001".to_string()
            ])
        );
        assert_eq!(
            cluster_nodes("redis://:p,w@h:6379/"),
            None,
            "a comma in a password"
        );
        assert_eq!(
            cluster_nodes("rediss+cluster://a:7000"),
            Some(vec!["rediss://a:7000".to_string()])
        );
    }
}
