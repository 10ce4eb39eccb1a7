//! The retention tiers (features `redis` and `postgres`): the codec of stored aggregates, each
//! tier's connection, writer and reader, and the flush worker that feeds them. Imports `core`,
//! `pipeline`, `read` and `ops` (the alerts shown in Redis); the runtime connects the backends
//! and starts the worker.
//!
//! | module | what |
//! | --- | --- |
//! | `codec` | the stored form of one aggregate (version 2: sparse HDR bins; version 1 read) |
//! | `rollup` | hours and days built from the minutes a flush carries; read-side accumulators |
//! | `prepared` | what one flush carries to every tier, and what it reports |
//! | `redis/` | the key layout and read plans, the connection (single or cluster) and batches, the writer, the compactor, the reader |
//! | `postgres`, `partitions`, `pgcompact` | the PostgreSQL writer and reader, its month partitions, its compactor |
//! | `flusher` | the flush worker, and the tiers as the read layer's source of long windows |
//! | `error` | [`TierError`](crate::TierError) |
//!
//! The key and table layout, the restart- and retry-safety and the cluster values are described
//! in the crate documentation (`lib.rs`, "Retention tiers and windows").

#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) mod codec;
pub(crate) mod error;
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) mod flusher;
#[cfg(feature = "postgres")]
pub(crate) mod partitions;
#[cfg(feature = "postgres")]
pub(crate) mod pgcompact;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) mod prepared;
#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) mod rollup;
