//! # perfmon-runtime
//!
//! Performance instrumentation for Rust services: annotate handlers and functions, read exact
//! percentiles, error rates, slow-call lists, cache hit rates, batch outcomes and business
//! counters. A tracked call costs two clock reads and a few stores into memory owned by the
//! calling thread (a byte and a count in its tally; its ring when slow or traced).
//!
//! ## Getting started
//!
//! ```
//! use perfmon_runtime::{collector, measure, track_api, track_batch, track_cache, track_query};
//!
//! #[track_api(method = "POST", path = "/api/schedule/assign", slow = "3s")]
//! fn assign(week: u32) -> Result<String, std::io::Error> {
//!     let staff = find_staff(week);
//!     Ok(format!("{} staff assigned", staff.len()))
//! }
//!
//! #[track_query(table = "Staff", kind = "read", op = "findMany")]
//! fn find_staff(_week: u32) -> Vec<&'static str> {
//!     vec!["kim", "lee"]
//! }
//!
//! #[track_cache(key = "fairness:stats")]
//! fn cached_fairness(clinic: &str) -> Option<f64> {
//!     (clinic == "c1").then_some(0.93)
//! }
//!
//! #[measure("calculate-fairness", threshold = "1s")]
//! fn calculate_fairness() -> f64 { 0.93 }
//!
//! #[track_batch("weekly-assignment")]
//! fn weekly() -> Result<(), String> { Ok(()) }
//!
//! assign(42).unwrap();
//! cached_fairness("c1");
//! cached_fairness("c2");
//! calculate_fairness();
//! weekly().unwrap();
//!
//! let api = collector().api_stats();
//! assert_eq!(api.total_requests, 1);
//! assert_eq!(collector().cache_stats().hit_rate, 50.0);
//! assert_eq!(collector().database_stats().tables["Staff"].totals.reads, 1);
//! ```
//!
//! A service calls [`init`] once at start-up (it applies the [`Config`], connects the backends and
//! starts the background workers) and keeps the returned [`Perfmon`] handle; without `init`,
//! everything still records and answers, draining on each read.
//!
//! Tests assert on what their own code recorded with a local collector, which sees only what
//! runs inside its scope (so tests run in parallel):
//!
//! ```
//! use perfmon_runtime::{measure, Collector};
//!
//! #[measure("parse-order")]
//! fn parse_order() {}
//!
//! let local = Collector::local();
//! local.scope(|| parse_order());
//! assert_eq!(local.function_stats().functions["parse-order"].calls, 1);
//! ```
//!
//! ## The macros
//!
//! | macro | records |
//! | --- | --- |
//! | [`track_api`] | one request: method, route, status code, duration; slow ones (default 5 s) into the slow list |
//! | [`track_query`] | one query: table, operation, read/write, duration, ok or failed; slow default 100 ms |
//! | [`track_batch`] | one run: duration, success or failure (an `Err` or a panic, which still propagates) |
//! | [`track_cache`] | hit (`Some`), miss (`None`) or error (`Err`) for a key group |
//! | [`measure`] | any fn's duration under a name; over `threshold` a `tracing` warning |
//!
//! They work on sync and async fns (an async fn is timed from first poll to completion), methods
//! with any receiver, generic fns, `impl Trait`, `?` and early `return`, and in trait impls with
//! native `async fn` or `#[async_trait]`. Status codes come from the return value through
//! [`HttpStatus`]; every return type compiles. `crate = "path"` names a renamed dependency.
//!
//! ## Feature flags
//!
//! With none, this is the embedded default: everything in memory, no network, no async runtime
//! needed for recording.
//!
//! | feature | adds |
//! | --- | --- |
//! | `axum` | `http::PerfmonLayer` (records every request once, with its route template and real status) and `http::router`: `/api/monitoring/metrics`, `/api/monitoring/health`, `/api/monitoring/live`, `/api/monitoring/ready`, `/metrics` (Prometheus), `/api/monitoring/dashboard`; locked by `PERFMON_MONITORING_TOKEN` when set |
//! | `opentelemetry` | with `axum`: a request without a `traceparent` header takes the OpenTelemetry trace id of the current `tracing` span (tracing-opentelemetry), for the slow list, the recent requests and the exemplars |
//! | `postgres` | `PERFMON_DATABASE_URL`: a sqlx pool opened by [`init`], which applies the embedded migrations; the built-in `database` health check (`SELECT 1`, pool counts; critical); the PostgreSQL tier |
//! | `redis` | `PERFMON_REDIS_URL`: a reconnecting connection opened by [`init`] — to one Redis, or to a Redis Cluster named by `redis+cluster://host1:7000,host2:7000` or a comma-separated list of node URLs; the built-in `redis` health check (`PING`; not critical); the Redis tier |
//!
//! ## Retention tiers and windows
//!
//! A flush worker (every 10 s, [`ConfigBuilder::flush_interval`]) takes what changed from the
//! aggregator and writes it to every configured tier; [`Collector::query`] reads a window back.
//! A read touches only the series it asks for ([`Query::path`] reads one route; each `type=` of
//! the HTTP API reads its kinds), from the coarsest stored buckets that cover the window
//! exactly, with finer ones only at its ragged edges:
//!
//! | window | read from (either scope) | values per series |
//! | --- | --- | --- |
//! | 5 m | memory (`instance`); Redis minutes or a 5-minute bucket (`cluster`) | ≤ 5 |
//! | 1 h, 24 h | Redis: hours, 5-minute buckets and minutes at the edges (else PostgreSQL hours) | 24 h: ≤ 54 instead of 1,440 |
//! | 7 d | Redis: hours, 5-minute buckets at the edges (else PostgreSQL) | ≤ 194 instead of 2,016 |
//! | 90 d | PostgreSQL: whole days, hours at the edges | ≤ 136 instead of 2,160 |
//! | 1 y | PostgreSQL: days | ≤ 366 |
//!
//! Results are exactly those of merging every minute of the window (histograms bin by bin).
//!
//! **Restart- and retry-safe.** Every value is written under the instance's name *and* its
//! process run (an id per process), and every write replaces a whole value: one series' whole
//! minute, 5-minute bucket, hour or day as of the flush. A retried flush writes the same or newer
//! values and never adds twice; a restarted process writes under a new run and leaves the
//! previous run's values alone; instances never overwrite each other.
//!
//! **Cluster values.** A cluster read of a closed bucket reads one value per series, whatever the
//! number of instances: a compactor (in Redis, the instance holding a lease, `SET NX PX`; in
//! PostgreSQL, the one holding an advisory lock) merges each closed bucket of each series across
//! instances once. A write into a merged bucket (a late flush from an instance that was away)
//! invalidates the merge — in Redis the merge carries the write counter it saw, in PostgreSQL the
//! writer's transaction re-queues the bucket — so readers never take a stale merge, and the next
//! pass recomputes it from every instance's values. Open buckets are merged at read time.
//!
//! **Stored form.** Each aggregate is encoded once (version 2: counters, exact sum/min/max, the
//! histogram's non-zero HDR bins as delta varints), about 2 bytes per non-zero bin; decoding
//! allocates the bins only. Reads merge into paged accumulators, a few series at a time, so a
//! read's memory does not grow with the window or the number of instances.
//!
//! **Redis keys** (prefix `PERFMON_KEY_PREFIX`, default `perfmon`; `{sid}` is 16 hex digits of a
//! hash of the series' labels, and the key's hash tag, so all of a series' buckets share a
//! Redis Cluster slot):
//!
//! | key | type | holds | TTL |
//! | --- | --- | --- | --- |
//! | `{prefix}:m1:{unix minute}:{{sid}}` | hash | `{instance}␞{run}` → that run's whole minute of the series; `#v` → writes so far; `*` → the compactor's merge of every instance, `*v` → the `#v` it merged | 24 h after the minute |
//! | `{prefix}:m5:{unix minute / 5}:{{sid}}` | hash | the same per 5-minute bucket | 7 days after the bucket |
//! | `{prefix}:h1:{unix hour}:{{sid}}` | hash | the same per hour | 7 days after the hour |
//! | `{prefix}:{m1,m5,h1}:{bucket}:ix` | hash | `{sid}` → the series' labels: the series written in that bucket | as the bucket |
//! | `{prefix}:runs:{instance}` | sorted set | the instance's process runs, scored by the minute each last flushed | 8 days |
//! | `{prefix}:compact` | sorted set | `{tier}:{bucket}:{sid}` written and not yet merged, scored by when it may be | — |
//! | `{prefix}:compact:lease` | string | the instance and run compacting | 30 s, renewed |
//! | `{prefix}:rt:{instance}:recent` | list | the last 100 API requests, JSON, newest first | 5 min |
//! | `{prefix}:rt:{instance}:times` | list | the last 100 response times in ms, newest first | 5 min |
//! | `{prefix}:rt:{instance}:counters` | hash | live counters (`totalRequests`, `errorRequests`, `eventsProcessed`, `updatedAt`) | 5 min |
//! | `{prefix}:slow` | sorted set | the slowest requests of every instance (score: ms), top 50 | 24 h |
//! | `{prefix}:alerts:{instance}` | hash | the alerts firing now: `{rule}␞{key}` → notification JSON | 5 min, refreshed on every flush |
//!
//! A series' labels are joined with `␟` (U+001F): kind, method, name, table, tag value,
//! read/write. Commands per flush grow with the active series, not with the events; no command
//! spans two keys, so a Redis Cluster needs nothing more (a batch goes as one pipeline per slot).
//!
//! **PostgreSQL** (schema named after `PERFMON_KEY_PREFIX`, created and upgraded by the
//! migrations): `hourly` and `daily` (`bucket_start, instance, run, series` as primary key,
//! `events`, `data` in the same encoding, upserted whole in bulk: `INSERT … SELECT FROM UNNEST`),
//! partitioned by month, indexed by `(series, bucket_start)`; `cluster_hourly` and
//! `cluster_daily` (the compactor's merges) with `compact_queue`; `events` (batch failures and
//! health changes); `migrations`. A retention job drops month partitions past their retention
//! whole (hourly 90 days, daily a year), then deletes what is left, in batches of 10,000 rows,
//! once an hour (`Perfmon::prune` runs it on demand).
//!
//! **While a backend is away** recording goes on; its health check fails; Redis aggregates wait
//! in a bounded buffer (`PENDING_LIMIT`: 100,000 series-minutes and buckets) and PostgreSQL's folded
//! hours and days in another; past the bound the oldest are dropped and counted
//! ([`RecorderStats::tier_dropped`], logged once). Everything waiting is written when the backend
//! returns; [`Perfmon::shutdown`] flushes once more and reports a failure. **Tiers fail alone:**
//! each tier writes in its own task and backs off on its own (doubling up to a minute), so a
//! tier that is slow or away never delays another, which goes on at every flush
//! ([`RecorderStats::tier_redis_writes`], [`RecorderStats::tier_postgres_writes`]). A row that
//! PostgreSQL rejects for what it holds does not stop the tier either: a flush that fails that
//! way is written again with each chunk under a savepoint, a rejected chunk split in halves down
//! to the rows it rejects, which are set aside (not retried, counted in
//! [`RecorderStats::tier_set_aside`], logged once each), while every other row is written.
//!
//! ## Alerts and SLA
//!
//! [`init`] starts the alert engine ([`alerts`]) with the specification's rules, evaluated on a
//! tick over a sliding window with pending durations and hysteresis; notifications go to
//! `tracing`, a webhook, a callback, the PostgreSQL event log and (while firing) Redis.
//! [`Collector::sla_report`] compares a window with the SLA targets ([`SlaTargets`]).
//! [`export::prometheus_rules`] writes the same rules and the SLA objectives (as burn-rate
//! alerts) as a Prometheus rule file, for teams whose alerts live in Prometheus.
//!
//! ## What can fail
//!
//! | call | failure | what happens |
//! | --- | --- | --- |
//! | tracked call, `record_*` | nothing: never blocks on I/O, never panics | a full ring is drained by its own thread; a call no tally entry takes goes to the ring |
//! | [`Config::from_env`] | [`ConfigError::InvalidEnv`] | names the variable and what it accepts |
//! | [`init`] | [`InitError::Unreachable`] | names the backend and its URL (password redacted) |
//! | [`init`] | [`InitError::Migration`] | the PostgreSQL schema could not be created or migrated |
//! | [`Collector::query`] | [`QueryError::TierUnavailable`], [`QueryError::Backend`] | the window's tier is not configured, or failed |
//! | [`init`] | [`InitError::BackendUnsupported`] | a URL is set for a backend whose feature is off |
//! | [`init`] | [`InitError::AlreadyInitialized`], [`InitError::Config`] | one `init` at a time; invalid config |
//! | a backend going away later | its health check fails: `degraded` (Redis) or `unhealthy` (PostgreSQL) | recording goes on; the connection is retried |
//! | a health check hanging | fails after its timeout (2 s by default) | results are cached 1 s |
//! | [`Perfmon::shutdown`] | [`ShutdownError::Flush`] (a [`TierError`]), [`ShutdownError::WorkerPanicked`], [`ShutdownError::WorkerTimedOut`] | every worker is still stopped; statistics up to the last drain are kept; the first failure is returned, the others logged |
//! | [`Perfmon::flush`], [`Perfmon::prune`] (with a tier) | [`TierError`] | what the flush held stays pending for the next one |
//! | dropping [`Perfmon`] without `shutdown` | nothing returned | the same teardown with bounded waits; the last flush runs on perfmon's I/O thread (`perfmon-io`), and outside an async runtime the drop waits for it |
//! | an alert rule or callback that reads the collector | nothing: rules run with no perfmon lock held | |
//! | hand-recorded event older than the window | counted in [`RecorderStats::late_events`], kept in the Prometheus totals | health turns `degraded` |
//! | a label past its cap | counted under [`OTHER`] (`__other__`) | memory stays bounded |
//! | a row PostgreSQL rejects for what it holds (a `CHECK` or trigger added by a DBA, a value out of range, text it cannot store: SQLSTATE class 22 or 23, `54000`, `P0001`) | nothing: the flush succeeds | the row is isolated (savepoints, halves) and set aside, counted in [`RecorderStats::tier_set_aside`] and logged once; every other row is written; a flush whose every row is rejected, and any other error, keeps everything pending |
//! | a bad query parameter | 400 `{"success": false, "error": ...}` naming the allowed values | |
//! | a monitoring route without the token (when `PERFMON_MONITORING_TOKEN` is set) | 401 `{"success": false, "error": ...}` with `WWW-Authenticate` | health, liveness and readiness answer their status and code only |
//! | more long-window reads of `/api/monitoring/metrics` in progress than `max_heavy_reads` | 429 `{"success": false, "error": ...}` with `Retry-After: 1` | identical requests share a load and do not count twice |
//!
//! ## Layout: layers that import one way
//!
//! The source folders are the layers, lowest first. **A module imports only from its own
//! layer's lower modules and from the layers before it, never from a layer after it, and no two
//! modules import each other** (`.ci/run` checks this with `module-cycles.py`, at the depth of
//! the layers and of their modules). Inside the crate, code imports by module path
//! (`crate::read::collector::Collector`), never through the re-exports below, so the check sees
//! every edge.
//!
//! | layer | holds | imports |
//! | --- | --- | --- |
//! | `core/` | clock, HDR histograms, kinds and outcome codes, windows and their constants, limits, `/proc`, status codes from return values, runtime-agnostic channels, single flights, perfmon's own Tokio runtimes (read pool, I/O) and the worker pattern | nothing of ours |
//! | `pipeline/` | events, per-thread rings and tallies, the series registry, the aggregator and its shards (`state`), hand recording, the macros' support (`meta`, `macros`), the layer's hand-off slot, the outbox for the tiers | `core` |
//! | `read/` | stats types, the collector and local collectors, snapshots, queries over a window source, the SLA report | `core`, `pipeline` |
//! | `ops/` | health checks and resources, the alert engine and its board, notification sinks | the above |
//! | `store/` | the aggregate codec, the Redis and PostgreSQL tiers, the flush worker, the tiers as a window source | the above |
//! | `export/` | Prometheus families and their text writer, generated Prometheus rules, the JSON of the monitoring endpoints | the above but `store` |
//! | `http/` | axum adapters only: `PerfmonLayer`, the router, the token check, the bounded and shared long-window reads, the dashboard | the above |
//! | `runtime/` | configuration, errors, backends, worker jobs, `init`/`shutdown` and the [`Perfmon`] handle: the only place that wires sources and sinks together | everything |
//!
//! Process-wide values, one per concern: the calibrated clock, the one timer thread that wakes
//! every timeout, the read pool that long-window reads run on and the I/O runtime that holds the backends' connections and runs the flush worker (`core`), the series registry and
//! the global collector's state (`pipeline`, installed on first use), the tiers as source of
//! long windows and the SLA targets (`read`, installed by `init`), the health-check registry and
//! the alert board (`ops`), the process run id and the writers' rollups, which outlive a
//! runtime so that `init` again never replaces what an earlier one wrote (`store`), and the flag
//! that one runtime is running (`runtime`), the monitoring token and the long-window reads in
//! flight and kept (`http`). Everything
//! `init` starts is owned by the [`Perfmon`] handle. Every background worker follows one
//! pattern: a thread (drain, alerts, Pushgateway pushes) or a tokio task (flush) that runs on a timer and answers
//! `Flush(reply)` and `Shutdown(reply)` messages, every wait for an answer under a timeout.
//!
//! ## Design
//!
//! ```text
//! #[track_*] expansion ──► static Meta (names, thresholds; series id registered on first call)
//!     │ start = TSC read … end = TSC read
//!     ├─ not slow, not traced (#[measure], #[track_query], #[track_api]):
//!     │    per-thread tally: the tick count appended to the buffer of the entry that holds
//!     │    (series, status, minute); every 32 calls binned by the owner (one-tick bins for
//!     │    short calls, HDR bins of ns otherwise); #[track_api] also logs the request
//!     ▼ otherwise (slow, traced, batches, cache, or no entry free)
//! per-thread ring (series id, start, end, status)   ◄── record_*_metric() (labels interned, capped)
//!     │ (inside Collector::scope, the ring and tally of a local collector)
//!     │ drained — and the tally harvested — every 10 ms by the worker, by any stats read, or by
//!     │ its own thread when the ring is full or a tally entry is claimed
//!     ▼
//! aggregator shards (one per core, up to 8; a ring always feeds the same shard): per series,
//! the current minute as a paged HDR histogram + counters, the previous four minutes compact;
//! slow top 50 per minute; last 100 requests
//!     ▼
//! collector() getters: lock every shard, drain, merge the window's histograms → stats types
//! ```
//!
//! * **Hot path**: two TSC reads (`quanta`), a relaxed load of the call site's series id (and,
//!   for `#[track_api]`, of one thread-local word that says whether a `PerfmonLayer` is polling
//!   on this thread, feature `axum`), and, for an untraced call that is not slow, a range check
//!   and a one-byte (short calls) or 8-byte store into a tally entry of the calling thread plus
//!   a release store of its count; every 32 calls the thread bins its buffer, counting it by
//!   value eight bytes at a time. The rest writes 24 bytes (48 with a trace id) into the
//!   thread's ring. No lock shared with other threads, no allocation on the hot path after the
//!   thread's first call on a series (a claim, about once a minute, files a harvest and may
//!   allocate a histogram page), no syscall. A tally entry is claimed under the shard's lock
//!   once per minute (or when the calls' durations move out of its bins), right after the
//!   tally is harvested.
//! * **No silent loss**: a ring is never overwritten; when full, its own thread drains it under
//!   its shard's lock (counted in [`RecorderStats::inline_drains`]); threads on different shards
//!   never wait for each other. A tally is harvested under a sequence number (never half a
//!   binning) and only ever reset by its owner right after a harvest. Events are filed under the
//!   minute of their own timestamp, whatever order threads are drained in.
//! * **Exact percentiles**: bins are HdrHistogram's (3 significant digits, 1 ns to `u64::MAX`);
//!   every figure over several minutes, shards, routes or tables is a merge of bins, never an
//!   average of percentiles. Means and maxima are exact.
//! * **Bounded memory**: cardinality caps per dimension ([`Limits`]) and in total; a recording
//!   thread holds a 24 KiB ring and ~44 KiB of tallies (16 entries of 256 bins), allocated
//!   once; a live histogram allocates 1 KiB pages only where values fall
//!   (a series spread over two decades of latency holds ~8–30 pages); closed minutes keep only
//!   their non-zero bins. [`RecorderStats::memory_bytes`] reports the histograms, lists and
//!   labels (not the rings and tallies, a fixed 68 KiB per recording thread).
//! * **Window**: the current minute and the four before it (4 to 5 minutes of data).

#![warn(missing_docs)]

mod core;
pub mod export;
#[cfg(feature = "axum")]
pub mod http;
mod ops;
mod pipeline;
mod read;
mod runtime;
mod store;

/// What the macro expansions call. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::pipeline::macros::*;
}

/// Direct access to the retention tiers with an injected clock, for perfmon's own tests and
/// fleet benchmark. Not a stable API.
#[doc(hidden)]
#[cfg(any(feature = "redis", feature = "postgres"))]
pub mod __tiers {
    pub use crate::runtime::direct::*;
    #[cfg(feature = "redis")]
    pub use crate::store::redis::reader::ReadStats;
}

/// Alerts: the specification's rules, evaluated on a tick over a sliding window, with pending
/// durations and hysteresis; custom rules; where notifications go.
pub mod alerts {
    pub use crate::ops::alerts::{
        alerts, default_rules, AlertConfig, AlertEngine, AlertInputs, AlertState, Alerts, Callback,
        Condition, Counters, CustomRule, Notification, Reading, RouteCounters, Rule, Severity,
        ALERT_HISTORY,
    };
    pub use crate::ops::notify::{
        deliver, delivery_stats, Alertmanager, DeliveryStats, Sinks, DELIVERY_QUEUE,
    };
}

/// Trace ids: the W3C trace context a tracked call belongs to, carried into the slow list, the
/// recent requests, batch failures and the OpenMetrics exemplars. `PerfmonLayer` reads the
/// `traceparent` header; code outside a request sets one with [`with_trace_id`](trace::with_trace_id)
/// or [`in_trace`](trace::in_trace).
pub mod trace {
    pub use crate::core::trace::{current_trace_id, in_trace, with_trace_id, InTrace, TraceId};
}

pub use crate::core::clock::rfc3339;
pub use crate::core::hist::{HistogramKind, Merged};
pub use crate::core::kind::OTHER;
pub use crate::core::limits::Limits;
pub use crate::core::status::HttpStatus;
pub use crate::core::window::{Scope, Window, RECENT_REQUESTS, SLOW_LIST_SIZE, WINDOW_MINUTES};
pub use crate::core::worker::WorkerError;
pub use crate::ops::health::{
    register_health_check, resource_usage, system_health, unregister_health_check, CheckResult,
    HealthCheck, HealthStatus, MemoryUsage, PoolStats, ResourceUsage, SystemHealth,
};
pub use crate::pipeline::record::{
    record_api_metric, record_batch_metric, record_business_metric, record_cache_metric,
    record_database_metric, ApiMetric, BatchMetric, CacheMetric, CacheOp, DatabaseMetric,
    FailedQuery, IntoDatabaseMetric, QueryType,
};
pub use crate::pipeline::ring::RING_CAPACITY;
pub use crate::read::collector::{collector, Collector};
pub use crate::read::query::{answerable_windows, Query, QueryError};
pub use crate::read::sla::{SlaObjective, SlaReport, SlaTargets};
pub use crate::read::snapshot::Snapshot;
pub use crate::read::stats::{
    ApiStats, BatchJobStats, BatchStats, BusinessMetricStats, BusinessMetrics, CacheKeyStats,
    CacheStats, DatabaseStats, FnStats, FunctionStats, QueryStats, RecorderStats, RouteStats,
    SlowRequest, TableStats, TimelinePoint, ValueStats,
};
pub use crate::runtime::config::{Config, ConfigBuilder, ConfigError};
pub use crate::runtime::error::{InitError, ShutdownError};
pub use crate::runtime::handle::{init, init_blocking, Perfmon};
pub use crate::store::error::TierError;
#[cfg(feature = "postgres")]
pub use crate::store::postgres::{
    PruneReport, DAILY_RETENTION, HOURLY_RETENTION, PG_PENDING_LIMIT,
};
#[cfg(feature = "redis")]
pub use crate::store::redis::PENDING_LIMIT;
#[cfg(any(feature = "redis", feature = "postgres"))]
pub use crate::store::{codec::CodecError, prepared::FlushReport};
pub use perfmon_macros::{measure, track_api, track_batch, track_cache, track_query};
