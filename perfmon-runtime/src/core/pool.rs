//! perfmon's own Tokio runtimes, so that its work never occupies the application's async
//! workers:
//!
//! - the read pool (`perfmon-read`, one thread by default, at the lowest CPU priority on Linux),
//!   on which the heavy reads run — loading windows from the retention tiers, decoding and
//!   merging their histograms, building the monitoring endpoint's JSON;
//! - the I/O runtime (`perfmon-io`, one thread, normal priority), which holds the backends'
//!   connections and runs the tiers' flush worker and compactor, so that a flush, a slow backend
//!   or a reconnect costs the application's runtime nothing, and a final flush still runs when
//!   the application's runtime is gone.
//!
//! Each starts on first use and is kept for the life of the process, like the timer thread:
//! connections opened on it stay usable.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Threads of the pool, read when it starts.
static THREADS: AtomicUsize = AtomicUsize::new(1);

/// Sets the pool's size; it applies if the pool has not started yet.
pub(crate) fn set_threads(n: usize) {
    THREADS.store(n.max(1), Ordering::Relaxed);
}

/// A multi-threaded runtime of perfmon's own with `threads` threads named `name`, `tuned` as
/// each starts; `None` (logged) if they could not be started.
fn start(name: &'static str, threads: usize, tuned: fn()) -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .max_blocking_threads(threads)
        .thread_name(name)
        .on_thread_start(tuned)
        .enable_all()
        .build()
        .map_err(|e| {
            tracing::warn!(target: "perfmon", error = %e, threads = name, "could not start perfmon's threads; the work runs on the caller's runtime");
        })
        .ok()
}

/// The pool, or `None` if its threads could not be started (then heavy reads run where they
/// are called).
fn pool() -> Option<&'static tokio::runtime::Runtime> {
    static POOL: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = THREADS.load(Ordering::Relaxed).max(1);
        start("perfmon-read", threads, lowest_priority)
    })
    .as_ref()
}

/// The I/O runtime, or `None` if its thread could not be started (then the caller's runtime
/// holds the connections and runs the flush worker, as it did before).
fn io() -> Option<&'static tokio::runtime::Runtime> {
    static IO: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    IO.get_or_init(|| start("perfmon-io", 1, || {})).as_ref()
}

/// A handle of the I/O runtime, else of the caller's runtime (`None` outside any).
#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
pub(crate) fn io_handle() -> Option<tokio::runtime::Handle> {
    io().map(|rt| rt.handle().clone())
        .or_else(|| tokio::runtime::Handle::try_current().ok())
}

/// Runs `work` on the I/O runtime and waits for it (in place if that runtime is not
/// available). `None` if it panicked.
#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
pub(crate) async fn on_io<F>(work: F) -> Option<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match io() {
        Some(rt) => rt.spawn(work).await.ok(),
        None => Some(work.await),
    }
}

/// Lowers the calling thread's CPU priority to the lowest (nice 19): the application's own
/// threads go first when the cores are busy.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority only reads its integer arguments; on Linux, PRIO_PROCESS with
        // who = 0 applies to the calling thread alone.
        let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    }
}

/// Whether the calling thread is one of the pool's.
#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
fn on_pool() -> bool {
    std::thread::current().name() == Some("perfmon-read")
}

/// Starts `task` on the pool (true), or on the caller's runtime if the pool is not available
/// (false).
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
pub(crate) fn spawn<F>(task: F) -> bool
where
    F: Future<Output = ()> + Send + 'static,
{
    match pool() {
        Some(rt) => {
            rt.spawn(task);
            true
        }
        None => {
            tokio::spawn(task);
            false
        }
    }
}

/// Runs `work` on the pool and waits for it (in place when already on the pool, or when the
/// pool is not available). `None` if it panicked.
#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
pub(crate) async fn off_workers<F>(work: F) -> Option<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match pool() {
        Some(rt) if !on_pool() => rt.spawn(work).await.ok(),
        _ => Some(work.await),
    }
}
