//! What can go wrong in a retention tier.

use std::time::Duration;

use crate::core::worker::WorkerError;
#[cfg(any(feature = "redis", feature = "postgres"))]
use crate::store::codec::CodecError;

/// A retention tier failed: a write, a read, a migration or the flush worker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TierError {
    /// Redis answered with an error or the connection failed.
    #[cfg(feature = "redis")]
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// PostgreSQL answered with an error or the connection failed.
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] sqlx::Error),
    /// A tier did not answer in time.
    #[error("{tier}: no answer within {after:?}")]
    Timeout {
        /// `Redis` or `PostgreSQL`.
        tier: &'static str,
        /// The timeout.
        after: Duration,
    },
    /// A stored aggregate could not be encoded or decoded.
    #[cfg(any(feature = "redis", feature = "postgres"))]
    #[error("aggregate encoding: {0}")]
    Codec(#[from] CodecError),
    /// A PostgreSQL migration failed.
    #[cfg(feature = "postgres")]
    #[error("migration {version}: {source}")]
    Migration {
        /// The migration's version.
        version: i32,
        /// What PostgreSQL said.
        #[source]
        source: sqlx::Error,
    },
    /// A flush failed; what it held stays pending for the next one.
    #[error("{tier} flush failed ({pending} values kept for the next flush): {source}")]
    Kept {
        /// `Redis` or `PostgreSQL`.
        tier: &'static str,
        /// Values still pending.
        pending: usize,
        /// Why.
        #[source]
        source: Box<TierError>,
    },
    /// Several tiers failed in one flush.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<TierError>),
    /// The tier is not configured.
    #[error("no {tier} is configured")]
    NotConfigured {
        /// `Redis` or `PostgreSQL`.
        tier: &'static str,
    },
    /// The flush worker did not answer.
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

impl TierError {
    /// A flush that failed on `tier`, keeping `pending` values.
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    pub(crate) fn kept(tier: &'static str, pending: usize, source: TierError) -> TierError {
        TierError::Kept {
            tier,
            pending,
            source: Box::new(source),
        }
    }
}
