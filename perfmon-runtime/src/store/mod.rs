//! The retention tiers (features `redis` and `postgres`): the codec of stored aggregates, each
//! tier's connection, writer and reader, and the flush worker that feeds them. Imports `core`,
//! `pipeline`, `read` and `ops` (the alerts shown in Redis); the runtime connects the backends
//! and starts the worker.
//!
//! # Restart- and retry-safety
//!
//! Every instance writes under its own name *and* its process run (a random id per `init`), and
//! every write *replaces* a whole value: one series' whole minute (merged across the aggregator
//! shards) or whole 5-minute bucket as of the flush. A flush retried after a timeout writes the
//! same or newer values, never adds twice; a process restarted within the same minute writes
//! under a new run and leaves the previous run's values as they were. Readers merge every
//! instance and run.
//!
//! # Redis key layout (prefix `PERFMON_KEY_PREFIX`, default `perfmon`)
//!
//! | key | type | holds | TTL |
//! | --- | --- | --- | --- |
//! | `{prefix}:m1:{unix minute}` | hash | field `{instance}␞{run}␞{series}` → that minute of the series (counters, status codes, exact sum/min/max, HDR V2+DEFLATE histogram; `codec`) — the 1-minute aggregates, error counters included | 24 h after the minute ends |
//! | `{prefix}:m5:{unix minute / 5}` | hash | the same per 5-minute bucket — the 5-minute aggregates and, for query series, the per-table statistics | 7 days after the bucket ends |
//! | `{prefix}:rt:{instance}:recent` | list | the last 100 API requests (JSON), newest first | 5 minutes |
//! | `{prefix}:rt:{instance}:times` | list | the last 100 response times in ms, newest first | 5 minutes |
//! | `{prefix}:rt:{instance}:counters` | hash | live counters since the process started | 5 minutes |
//! | `{prefix}:slow` | sorted set | the slowest requests of every instance (score: ms), trimmed to 50 | 24 hours |
//!
//! `{series}` is the series' labels joined by `␟` (U+001F): kind, method, name, table, tag
//! value, write flag.

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
