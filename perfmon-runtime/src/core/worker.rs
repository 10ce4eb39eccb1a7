//! The one pattern every background worker follows: a thread (or, for async I/O, a task) that
//! runs its job on a timer and takes messages — [`Msg::Flush`] (run now and answer) and
//! [`Msg::Shutdown`] (run one last time, answer, stop) — while whoever waits for an answer waits
//! with a timeout. Messages queue in a channel, so no request can be lost between a check and a
//! wait.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::core::sync::{oneshot, RecvError, Sender};

/// A message to a worker; the reply carries the job's result.
pub(crate) enum Msg<R> {
    /// Run the job now and answer with its result.
    Flush(Sender<R>),
    /// Run the job one last time, answer, and stop.
    Shutdown(Sender<R>),
}

/// Why a worker did not answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    /// The worker did not answer in time (it may be stuck on a slow backend); it is left to
    /// finish on its own.
    #[error("the {worker} worker did not answer within {after:?}")]
    TimedOut {
        /// Which worker.
        worker: &'static str,
        /// How long it was given.
        after: Duration,
    },
    /// The worker is gone: it panicked, or was already stopped.
    #[error("the {worker} worker is gone (it panicked or was already stopped)")]
    Gone {
        /// Which worker.
        worker: &'static str,
    },
}

impl WorkerError {
    pub(crate) fn from_recv(worker: &'static str, e: RecvError) -> WorkerError {
        match e {
            RecvError::Closed => WorkerError::Gone { worker },
            RecvError::TimedOut(after) => WorkerError::TimedOut { worker, after },
        }
    }
}

/// The work of a background thread: run on every tick and on every message.
pub(crate) trait Job: Send + 'static {
    /// What one run produces (sent back to `Flush` and `Shutdown`).
    type Output: Send + 'static;
    /// One run.
    fn run(&mut self) -> Self::Output;
}

/// A background thread running a [`Job`] every `tick` and on request.
pub(crate) struct ThreadWorker<R> {
    name: &'static str,
    tx: Option<mpsc::Sender<Msg<R>>>,
    thread: Option<JoinHandle<()>>,
}

impl<R: Send + 'static> ThreadWorker<R> {
    /// Starts the thread.
    pub(crate) fn spawn<J: Job<Output = R>>(
        name: &'static str,
        tick: Duration,
        mut job: J,
    ) -> std::io::Result<ThreadWorker<R>> {
        let (tx, rx) = mpsc::channel::<Msg<R>>();
        let thread = std::thread::Builder::new()
            .name(format!("perfmon-{name}"))
            .spawn(move || loop {
                match rx.recv_timeout(tick) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        job.run();
                    }
                    Ok(Msg::Flush(reply)) => reply.send(job.run()),
                    Ok(Msg::Shutdown(reply)) => {
                        reply.send(job.run());
                        return;
                    }
                    // Every handle is gone: a last run, then stop.
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        job.run();
                        return;
                    }
                }
            })?;
        Ok(ThreadWorker {
            name,
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    fn send(
        &self,
        make: impl FnOnce(Sender<R>) -> Msg<R>,
    ) -> Result<crate::core::sync::Receiver<R>, WorkerError> {
        let (reply, rx) = oneshot();
        self.tx
            .as_ref()
            .ok_or(WorkerError::Gone { worker: self.name })?
            .send(make(reply))
            .map_err(|_| WorkerError::Gone { worker: self.name })?;
        Ok(rx)
    }

    /// Runs the job now on the worker and waits (blocking this thread) for its result.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn flush(&self, timeout: Duration) -> Result<R, WorkerError> {
        self.send(Msg::Flush)?
            .recv_timeout(timeout)
            .map_err(|e| WorkerError::from_recv(self.name, e))
    }

    /// Runs the job now on the worker and awaits its result (any executor).
    pub(crate) async fn flush_async(&self, timeout: Duration) -> Result<R, WorkerError> {
        self.send(Msg::Flush)?
            .recv(timeout)
            .await
            .map_err(|e| WorkerError::from_recv(self.name, e))
    }

    /// Stops the worker after a last run, waiting (blocking) at most `timeout`; the thread is
    /// joined once it has answered (it exits right after), else left to finish on its own.
    pub(crate) fn shutdown(&mut self, timeout: Duration) -> Result<R, WorkerError> {
        let rx = self.send(Msg::Shutdown);
        self.tx = None;
        let result = rx?
            .recv_timeout(timeout)
            .map_err(|e| WorkerError::from_recv(self.name, e));
        if let Some(t) = self.thread.take() {
            if result.is_ok() || t.is_finished() {
                let _ = t.join();
            }
        }
        result
    }

    /// Stops the worker after a last run, awaiting its answer for at most `timeout` (never a
    /// blocking join: the thread exits on its own right after answering).
    pub(crate) async fn shutdown_async(&mut self, timeout: Duration) -> Result<R, WorkerError> {
        let rx = self.send(Msg::Shutdown);
        self.tx = None;
        self.thread = None;
        rx?.recv(timeout)
            .await
            .map_err(|e| WorkerError::from_recv(self.name, e))
    }
}

impl<R> Drop for ThreadWorker<R> {
    fn drop(&mut self) {
        // Dropping the sender disconnects the channel: the thread runs once more and stops.
        self.tx = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    struct Count(Arc<AtomicU64>);
    impl Job for Count {
        type Output = u64;
        fn run(&mut self) -> u64 {
            self.0.fetch_add(1, Ordering::SeqCst) + 1
        }
    }

    #[test]
    fn flush_and_shutdown_answer_with_the_job_result() {
        let runs = Arc::new(AtomicU64::new(0));
        // a tick far longer than the test: every run below comes from a message
        let mut w = ThreadWorker::spawn("test", Duration::from_secs(3600), Count(runs.clone()))
            .expect("spawns");
        assert_eq!(w.flush(Duration::from_secs(10)), Ok(1));
        assert_eq!(
            crate::core::sync::block_on(w.flush_async(Duration::from_secs(10))),
            Ok(2)
        );
        assert_eq!(w.shutdown(Duration::from_secs(10)), Ok(3));
        assert_eq!(
            w.flush(Duration::from_secs(1)),
            Err(WorkerError::Gone { worker: "test" })
        );
    }

    struct Panics;
    impl Job for Panics {
        type Output = ();
        fn run(&mut self) {
            panic!("job failed");
        }
    }

    #[test]
    fn a_panicking_job_is_reported_as_gone() {
        let mut w =
            ThreadWorker::spawn("panicky", Duration::from_secs(3600), Panics).expect("spawns");
        assert_eq!(
            w.shutdown(Duration::from_secs(10)),
            Err(WorkerError::Gone { worker: "panicky" })
        );
    }
}
