//! Runtime-agnostic synchronization for the workers: a one-shot reply channel that can be waited
//! on from a plain thread (with a timeout) or awaited from any executor, and a timeout for any
//! future that needs no async runtime (a helper thread wakes the task at the deadline).
//!
//! perfmon records and answers without tokio (the embedded default), so the waits of `init`,
//! `shutdown` and the health checks cannot lean on a runtime's timer.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Locks a mutex, taking over a poisoned one (perfmon never leaves shared state half-written
/// across a panic point, so the data is still consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
    closed: bool,
}

struct Shared<T> {
    slot: Mutex<Slot<T>>,
    ready: Condvar,
}

/// Why no value arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RecvError {
    /// The sender was dropped without sending (the worker is gone).
    #[error("the worker went away without answering")]
    Closed,
    /// Nothing arrived in time.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
}

/// The sending half: [`Sender::send`] consumes it; dropping it unsent closes the channel.
pub(crate) struct Sender<T>(Option<Arc<Shared<T>>>);

/// The receiving half.
pub(crate) struct Receiver<T>(Arc<Shared<T>>);

/// A channel for exactly one value.
pub(crate) fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        slot: Mutex::new(Slot {
            value: None,
            waker: None,
            closed: false,
        }),
        ready: Condvar::new(),
    });
    (Sender(Some(shared.clone())), Receiver(shared))
}

impl<T> Sender<T> {
    /// Delivers the value (dropped if the receiver is gone).
    pub(crate) fn send(mut self, value: T) {
        if let Some(s) = self.0.take() {
            Self::finish(&s, Some(value));
        }
    }

    fn finish(s: &Shared<T>, value: Option<T>) {
        let waker = {
            let mut slot = lock(&s.slot);
            slot.value = value;
            slot.closed = true;
            slot.waker.take()
        };
        s.ready.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            Self::finish(&s, None);
        }
    }
}

impl<T> Receiver<T> {
    /// Blocks this thread until the value arrives, the sender is dropped, or `timeout` passes.
    pub(crate) fn recv_timeout(self, timeout: Duration) -> Result<T, RecvError> {
        let deadline = Instant::now() + timeout;
        let mut slot = lock(&self.0.slot);
        loop {
            if let Some(v) = slot.value.take() {
                return Ok(v);
            }
            if slot.closed {
                return Err(RecvError::Closed);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvError::TimedOut(timeout));
            }
            slot = match self.0.ready.wait_timeout(slot, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// Awaits the value under any executor, for at most `timeout`.
    pub(crate) async fn recv(self, timeout: Duration) -> Result<T, RecvError> {
        match with_timeout(timeout, self).await {
            Ok(r) => r,
            Err(Elapsed(d)) => Err(RecvError::TimedOut(d)),
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = lock(&self.0.slot);
        if let Some(v) = slot.value.take() {
            return Poll::Ready(Ok(v));
        }
        if slot.closed {
            return Poll::Ready(Err(RecvError::Closed));
        }
        slot.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A future took longer than its timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {0:?}")]
pub(crate) struct Elapsed(pub Duration);

/// The process' one timer thread: wakes the tasks whose deadlines have passed. Started on the
/// first timeout; however many timeouts are pending, there is one thread.
struct Timer {
    queue: Mutex<std::collections::BinaryHeap<std::cmp::Reverse<(Instant, u64)>>>,
    wakers: Mutex<std::collections::HashMap<u64, Arc<Mutex<Option<Waker>>>>>,
    next_id: std::sync::atomic::AtomicU64,
    changed: std::sync::Condvar,
}

static TIMER: std::sync::OnceLock<Option<&'static Timer>> = std::sync::OnceLock::new();

fn timer() -> Option<&'static Timer> {
    *TIMER.get_or_init(|| {
        let t: &'static Timer = Box::leak(Box::new(Timer {
            queue: Mutex::new(std::collections::BinaryHeap::new()),
            wakers: Mutex::new(std::collections::HashMap::new()),
            next_id: std::sync::atomic::AtomicU64::new(0),
            changed: std::sync::Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("perfmon-timer".into())
            .spawn(move || t.run())
            .ok()
            .map(|_| t)
    })
}

impl Timer {
    fn add(&self, deadline: Instant, waker: Arc<Mutex<Option<Waker>>>) {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        lock(&self.wakers).insert(id, waker);
        lock(&self.queue).push(std::cmp::Reverse((deadline, id)));
        self.changed.notify_one();
    }

    fn run(&self) {
        let mut queue = lock(&self.queue);
        loop {
            let now = Instant::now();
            while let Some(std::cmp::Reverse((at, id))) = queue.peek().copied() {
                if at > now {
                    break;
                }
                queue.pop();
                if let Some(w) = lock(&self.wakers).remove(&id).and_then(|w| lock(&w).take()) {
                    w.wake();
                }
            }
            let wait = queue
                .peek()
                .map(|std::cmp::Reverse((at, _))| at.saturating_duration_since(now));
            queue = match wait {
                Some(d) => self
                    .changed
                    .wait_timeout(queue, d)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0),
                None => self.changed.wait(queue).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

/// `inner`, failing with [`Elapsed`] once `timeout` has passed since its first poll. Works
/// under any executor: the process' one timer thread wakes the task at the deadline.
pub(crate) fn with_timeout<F: Future>(timeout: Duration, inner: F) -> Timeout<F> {
    Timeout {
        inner: Box::pin(inner),
        timeout,
        deadline: None,
        waker: Arc::new(Mutex::new(None)),
    }
}

/// The future of [`with_timeout`].
pub(crate) struct Timeout<F> {
    inner: Pin<Box<F>>,
    timeout: Duration,
    deadline: Option<Instant>,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(r) = self.inner.as_mut().poll(cx) {
            return Poll::Ready(Ok(r));
        }
        *lock(&self.waker) = Some(cx.waker().clone());
        match self.deadline {
            None => {
                let deadline = Instant::now() + self.timeout;
                self.deadline = Some(deadline);
                match timer() {
                    Some(t) => t.add(deadline, self.waker.clone()),
                    // No thread for the timer: give up at once rather than wait unbounded.
                    None => return Poll::Ready(Err(Elapsed(self.timeout))),
                }
                Poll::Pending
            }
            Some(d) if Instant::now() >= d => Poll::Ready(Err(Elapsed(self.timeout))),
            Some(_) => Poll::Pending,
        }
    }
}

/// Runs one future to completion on the current thread (for the few places that must wait
/// without any executor: a health check on the alert worker of `init_blocking`).
pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_arrives_across_threads_and_a_dropped_sender_closes() {
        let (tx, rx) = oneshot();
        std::thread::spawn(move || tx.send(7));
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(7));
        let (tx, rx) = oneshot::<u8>();
        drop(tx);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Err(RecvError::Closed)
        );
        let (tx, rx) = oneshot();
        std::thread::spawn(move || tx.send("async"));
        assert_eq!(block_on(rx.recv(Duration::from_secs(10))), Ok("async"));
    }

    #[test]
    fn nothing_sent_times_out() {
        let (_tx, rx) = oneshot::<u8>();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(1)),
            Err(RecvError::TimedOut(Duration::from_millis(1)))
        );
        let (_tx, rx) = oneshot::<u8>();
        assert_eq!(
            block_on(rx.recv(Duration::from_millis(1))),
            Err(RecvError::TimedOut(Duration::from_millis(1)))
        );
    }
}
