//! Why `init` or `shutdown` failed. Each message says what to do.

use std::time::Duration;

use crate::core::worker::WorkerError;
use crate::runtime::config::ConfigError;
use crate::store::error::TierError;

/// Why `init` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// The configuration is not valid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A backend is configured but this build cannot talk to it.
    #[error("{backend} is configured ({var} is set) but perfmon-runtime was built without its `{feature}` feature: enable the feature or unset {var}")]
    BackendUnsupported {
        /// `Redis` or `PostgreSQL`.
        backend: &'static str,
        /// The variable or builder setting that configures it.
        var: &'static str,
        /// The cargo feature that supports it.
        feature: &'static str,
    },
    /// The PostgreSQL schema could not be created or migrated.
    #[error("PostgreSQL at {target}: applying perfmon's migrations failed: {source}; check that the user may create schemas and tables")]
    Migration {
        /// Its URL, password redacted.
        target: String,
        /// What failed.
        #[source]
        source: TierError,
    },
    /// A configured backend could not be reached at start.
    #[error("{backend} at {target} is unreachable: {source}; check that it runs and that the URL is right")]
    Unreachable {
        /// `Redis` or `PostgreSQL`.
        backend: &'static str,
        /// Its URL, password redacted.
        target: String,
        /// What failed.
        #[source]
        source: TierError,
    },
    /// `init` was already called in this process and its handle is still alive.
    #[error("perfmon is already initialized in this process; keep the first handle, or shut it down before calling init again")]
    AlreadyInitialized,
    /// A background worker thread could not be started.
    #[error("could not start the perfmon {worker} worker thread: {source}")]
    Worker {
        /// Which worker.
        worker: &'static str,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

/// Why `shutdown` failed. Statistics recorded up to the failure are kept in memory either way.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShutdownError {
    /// The last flush to the retention tiers failed; what it held stays unwritten.
    #[error("the last flush failed: {0}")]
    Flush(#[source] TierError),
    /// The last push to the Pushgateway failed (`ConfigBuilder::pushgateway`).
    #[error("the last push to the Pushgateway failed: {0}")]
    Push(String),
    /// A background worker panicked (statistics up to its last run are kept).
    #[error("the perfmon {worker} worker panicked or was already gone; statistics up to its last run are kept")]
    WorkerPanicked {
        /// Which worker: `drain`, `alerts` or `flush`.
        worker: &'static str,
    },
    /// A background worker did not stop within its timeout (it may be stuck on a slow backend);
    /// it is left to finish on its own.
    #[error("the perfmon {worker} worker did not stop within {after:?}; it is left to finish on its own")]
    WorkerTimedOut {
        /// Which worker.
        worker: &'static str,
        /// How long it was given.
        after: Duration,
    },
}

impl From<WorkerError> for ShutdownError {
    fn from(e: WorkerError) -> ShutdownError {
        match e {
            WorkerError::Gone { worker } => ShutdownError::WorkerPanicked { worker },
            WorkerError::TimedOut { worker, after } => {
                ShutdownError::WorkerTimedOut { worker, after }
            }
        }
    }
}
