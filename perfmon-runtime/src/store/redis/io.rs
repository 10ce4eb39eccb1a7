//! The Redis connection: opening and checking it, one timeout for every round trip, and the
//! merge of the instance values read from a hash.

use std::future::Future;
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::core::hist::Merged;
use crate::pipeline::aggregator::Minute;
use crate::store::codec;
use crate::store::error::TierError;
use crate::store::rollup::merge;

/// How long one round trip (a flush's pipeline, a read's chunk) may take.
pub(crate) const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a reconnecting connection and checks it with `PING`, each step under `connect_timeout`.
pub(crate) async fn connect(
    url: &str,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<ConnectionManager, TierError> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(connect_timeout)
        .set_response_timeout(response_timeout)
        .set_number_of_retries(1);
    let connect = ConnectionManager::new_with_config(client, config);
    let mut conn = tokio::time::timeout(connect_timeout, connect)
        .await
        .map_err(|_| TierError::Timeout {
            tier: "Redis",
            after: connect_timeout,
        })??;
    ping(&mut conn).await?;
    Ok(conn)
}

/// `PING`: what the health check runs.
pub(crate) async fn ping(conn: &mut ConnectionManager) -> Result<String, TierError> {
    Ok(redis::cmd("PING").query_async(conn).await?)
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

/// Decodes instance values (field, blob) and merges them into `into`; an undecodable one is
/// skipped with a warning.
pub(crate) fn merge_fields<'a>(
    fields: impl Iterator<Item = (&'a str, &'a [u8])>,
    into: &mut Minute<Merged>,
) {
    for (field, blob) in fields {
        match codec::decode(blob) {
            Ok(m) => merge(into, &m),
            Err(e) => {
                tracing::warn!(target: "perfmon", field, error = %e, "unreadable aggregate skipped")
            }
        }
    }
}
