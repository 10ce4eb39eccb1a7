//! The recording pipeline: from a tracked call to per-series, per-minute aggregates.
//!
//! `macros` and `record` (what the expansions and `record_*` call) intern labels in the
//! `registry` once per series (`meta` caches the id in the call site's static) and count a
//! tracked call in the calling thread's `tally` or push an `event` into its `ring`; `state` owns
//! the rings (each with its tally) and the `aggregator` shards they drain into, and hands reads
//! one locked, drained view. `handoff` lets `PerfmonLayer`
//! record a `#[track_api]` handler's request once; `outbox` queues what the storage tiers take
//! besides aggregates. Imports only `core`.

pub(crate) mod aggregator;
pub(crate) mod apdex;
pub(crate) mod event;
#[cfg(feature = "axum")]
pub(crate) mod handoff;
pub(crate) mod macros;
pub(crate) mod meta;
pub(crate) mod outbox;
pub(crate) mod record;
pub(crate) mod registry;
pub(crate) mod ring;
pub(crate) mod slowlog;
pub(crate) mod state;
pub(crate) mod tally;
