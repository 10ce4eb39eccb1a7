//! One run of a piece of work that several callers share (single flight): the first caller
//! starts it, the others wait for its result instead of running the work again.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::core::sync::lock;

/// A run in progress and, once it ends, its result.
pub(crate) struct Flight<V> {
    state: Mutex<FlightState<V>>,
}

struct FlightState<V> {
    result: Option<V>,
    /// The run ended without a result (its runner went away).
    abandoned: bool,
    waiting: Vec<Waker>,
}

impl<V: Clone> Flight<V> {
    /// A run that has not ended.
    pub(crate) fn start() -> Arc<Flight<V>> {
        Arc::new(Flight {
            state: Mutex::new(FlightState {
                result: None,
                abandoned: false,
                waiting: Vec::new(),
            }),
        })
    }

    /// Ends the run with its result, or `None` if it was given up; wakes every waiting caller.
    pub(crate) fn finish(&self, result: Option<V>) {
        let mut st = lock(&self.state);
        st.abandoned = result.is_none();
        st.result = result;
        for w in st.waiting.drain(..) {
            w.wake();
        }
    }

    /// Waits for the end of the run: its result, or `None` if it was given up.
    pub(crate) fn landing(self: &Arc<Self>) -> Landing<V> {
        Landing(self.clone())
    }
}

/// The end of a [`Flight`], awaited.
pub(crate) struct Landing<V>(Arc<Flight<V>>);

impl<V: Clone> Future for Landing<V> {
    type Output = Option<V>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut st = lock(&self.0.state);
        if let Some(v) = &st.result {
            return Poll::Ready(Some(v.clone()));
        }
        if st.abandoned {
            return Poll::Ready(None);
        }
        if !st.waiting.iter().any(|w| w.will_wake(cx.waker())) {
            st.waiting.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
