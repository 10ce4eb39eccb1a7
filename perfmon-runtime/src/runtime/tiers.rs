//! The retention tiers' part of the runtime (features `redis`, `postgres`): the flush worker
//! for the connected backends, and the tiers installed as the read layer's source of long
//! windows. Without either feature, `no_tiers.rs` stands in with the same names.

use std::sync::Arc;

use crate::core::worker::WorkerError;
use crate::pipeline::state::global;
use crate::read::query::install_source;
use crate::runtime::backends::Backends;
use crate::runtime::config::Config;
use crate::store::error::TierError;
use crate::store::flusher::{run_id, FlushHandle, FlushWorker, Flusher, TierSource, FLUSH_WAIT};
use crate::store::prepared::FlushReport;

/// The running flush worker.
pub(crate) struct Tiers {
    worker: FlushWorker,
    flush: FlushHandle,
    runtime: tokio::runtime::Handle,
}

/// Starts the flush worker for the connected backends and installs the tiers as the source of
/// long windows; `None` without a backend.
pub(crate) fn start(config: &Config, backends: &Backends) -> Option<Tiers> {
    // perfmon's own I/O runtime, which also holds the connections (`init` opened them there)
    let runtime = crate::core::pool::io_handle()?;
    let run = run_id();
    let (prefix, instance) = (&config.key_prefix, &config.instance);
    let flusher = Flusher::new(
        instance,
        config.flush_interval,
        #[cfg(feature = "redis")]
        backends
            .redis
            .clone()
            .map(|c| crate::store::redis::writer::Writer::new(c, prefix, instance, &run)),
        #[cfg(feature = "postgres")]
        backends
            .pg
            .clone()
            .map(|p| crate::store::postgres::Writer::new(p, prefix, instance, &run)),
    )?;
    global().outbox.set_logging(backends.has_event_log());
    let worker = {
        let _enter = runtime.enter();
        FlushWorker::start(flusher, config.flush_interval)
    };
    let flush = worker.handle();
    install_source(Some(Arc::new(TierSource {
        prefix: prefix.clone(),
        instance: instance.clone(),
        flush: flush.clone(),
        #[cfg(feature = "redis")]
        redis: backends.redis.clone(),
        #[cfg(feature = "redis")]
        redis_url: config.redis_url.clone(),
        #[cfg(feature = "redis")]
        read_redis: Default::default(),
        #[cfg(feature = "postgres")]
        pg: backends.pg.clone(),
        #[cfg(feature = "postgres")]
        pg_reads: tokio::sync::Semaphore::new(crate::store::postgres::READ_CONNECTIONS),
    })));
    Some(Tiers {
        worker,
        flush,
        runtime,
    })
}

/// The last flush of a handle dropped without `shutdown().await`: never silent.
impl Tiers {
    /// Flushes now and waits for the result.
    pub(crate) async fn flush(&self) -> Result<FlushReport, TierError> {
        self.flush.flush().await
    }

    /// Uninstalls the source, stops the flush worker after a last flush, and awaits it.
    pub(crate) async fn stop(self) -> Result<(), TierError> {
        install_source(None);
        let rx = self.worker.stop()?;
        match rx.recv(FLUSH_WAIT).await {
            Ok(result) => result.map(|_| ()),
            Err(e) => Err(WorkerError::from_recv("flush", e).into()),
        }
    }

    /// [`Tiers::stop`] from `Drop`: never silent. The last flush runs on perfmon's I/O runtime;
    /// outside any runtime this waits for it (bounded), inside one it cannot block.
    pub(crate) fn stop_on_drop(self) {
        use tokio::runtime::RuntimeFlavor;
        install_source(None);
        let rx = match self.worker.stop() {
            Ok(rx) => rx,
            Err(e) => {
                tracing::warn!(target: "perfmon", error = %e, "final flush on drop: the flush worker is gone");
                return;
            }
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            // Inside a runtime: blocking here could stall it; the flush worker finishes on its
            // own runtime.
            tracing::info!(target: "perfmon", "perfmon dropped without shutdown().await: the final flush runs in the background");
            return;
        }
        if self.runtime.runtime_flavor() == RuntimeFlavor::CurrentThread {
            tracing::warn!(target: "perfmon", "perfmon dropped outside its current-thread runtime: the final flush runs only if that runtime is driven again; call shutdown().await to be sure");
            return;
        }
        match rx.recv_timeout(FLUSH_WAIT) {
            Ok(Ok(_)) => tracing::debug!(target: "perfmon", "final flush on drop"),
            Ok(Err(e)) => {
                tracing::warn!(target: "perfmon", error = %e, "final flush on drop failed")
            }
            Err(e) => {
                tracing::warn!(target: "perfmon", error = %e, "final flush on drop did not complete")
            }
        }
    }
}
