//! Trace ids: the W3C trace context of the request a call belongs to.
//!
//! The current trace id is one thread-local `u128` (0 for none; the W3C format forbids the
//! all-zero id). `PerfmonLayer` sets it while it polls a request that carried a `traceparent`
//! header; [`with_trace_id`] and [`in_trace`] set it for code outside the layer (a batch job, a
//! queue consumer). A tracked call reads it once when it finishes: with no trace that is one
//! thread-local load and a compare; with one, the event takes a second ring slot.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::num::NonZeroU128;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A W3C trace id: 16 bytes, never all zero, shown as 32 lowercase hex digits.
///
/// ```
/// use perfmon_runtime::trace::TraceId;
///
/// let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let id = TraceId::from_traceparent(header).unwrap();
/// assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736"), Some(id));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(NonZeroU128);

impl TraceId {
    /// The id of 16 bytes, big-endian (`None` for all zeros, which W3C calls invalid).
    pub fn from_bytes(bytes: [u8; 16]) -> Option<TraceId> {
        NonZeroU128::new(u128::from_be_bytes(bytes)).map(TraceId)
    }

    /// The id as 16 bytes, big-endian.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.get().to_be_bytes()
    }

    /// Parses exactly 32 hex digits (either case); `None` for anything else or all zeros.
    pub fn from_hex(s: &str) -> Option<TraceId> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(s, 16)
            .ok()
            .and_then(NonZeroU128::new)
            .map(TraceId)
    }

    /// The trace id of a W3C `traceparent` header value (`version-traceid-parentid-flags`):
    /// `None` when the header is malformed, the version is `ff`, or either id is all zeros, as
    /// the W3C Trace Context specification asks. Versions above `00` may carry more fields after
    /// the flags.
    pub fn from_traceparent(header: &str) -> Option<TraceId> {
        let h = header.trim();
        let b = h.as_bytes();
        if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let version = &h[..2];
        let lower_hex = |s: &str| s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        if !lower_hex(version) || version == "ff" {
            return None;
        }
        if (version == "00" && b.len() != 55) || (b.len() > 55 && b[55] != b'-') {
            return None;
        }
        let (trace, parent, flags) = (&h[3..35], &h[36..52], &h[53..55]);
        if !lower_hex(trace) || !lower_hex(parent) || !lower_hex(flags) {
            return None;
        }
        if parent.bytes().all(|c| c == b'0') {
            return None;
        }
        TraceId::from_hex(trace)
    }

    /// The raw value (never 0).
    pub(crate) fn raw(self) -> u128 {
        self.0.get()
    }

    /// The id of a raw value; `None` for 0.
    pub(crate) fn from_raw(raw: u128) -> Option<TraceId> {
        NonZeroU128::new(raw).map(TraceId)
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0.get())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl serde::Serialize for TraceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

thread_local! {
    static CURRENT: Cell<u128> = const { Cell::new(0) };
}

/// The raw trace id of the code running on this thread (0 for none): what a tracked call reads
/// when it finishes.
#[inline(always)]
pub(crate) fn current_raw() -> u128 {
    CURRENT.try_with(Cell::get).unwrap_or(0)
}

/// The trace id the code running now belongs to, if any.
pub fn current_trace_id() -> Option<TraceId> {
    TraceId::from_raw(current_raw())
}

/// Sets this thread's trace id until dropped, then restores the previous one (also when a panic
/// unwinds).
pub(crate) struct Scope {
    previous: u128,
}

impl Scope {
    #[inline]
    pub(crate) fn enter(raw: u128) -> Scope {
        let previous = CURRENT.try_with(|c| c.replace(raw)).unwrap_or(0);
        Scope { previous }
    }
}

impl Drop for Scope {
    #[inline]
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|c| c.set(self.previous));
    }
}

/// Runs `f` with `id` as the current trace id: every call tracked inside it (and every
/// `record_*` call) carries `id` in the slow list, the recent requests, batch failures and
/// exemplars. The previous trace id is restored afterwards. `None` runs `f` outside any trace.
///
/// ```
/// use perfmon_runtime::trace::{current_trace_id, with_trace_id, TraceId};
///
/// let id = TraceId::from_hex("0af7651916cd43dd8448eb211c80319c");
/// with_trace_id(id, || assert_eq!(current_trace_id(), id));
/// assert_eq!(current_trace_id(), None);
/// ```
pub fn with_trace_id<R>(id: Option<TraceId>, f: impl FnOnce() -> R) -> R {
    let _scope = Scope::enter(id.map_or(0, TraceId::raw));
    f()
}

/// Runs a future with `id` as the current trace id while it is polled (on whichever thread polls
/// it): the async form of [`with_trace_id`].
///
/// ```
/// use std::future::Future;
/// use std::task::{Context, Poll, Waker};
/// use perfmon_runtime::trace::{current_trace_id, in_trace, TraceId};
///
/// let id = TraceId::from_hex("0af7651916cd43dd8448eb211c80319c");
/// let mut job = std::pin::pin!(in_trace(id, async { current_trace_id() }));
/// let polled = job.as_mut().poll(&mut Context::from_waker(Waker::noop()));
/// assert_eq!(polled, Poll::Ready(id));
/// assert_eq!(current_trace_id(), None);
/// ```
pub fn in_trace<F: Future>(id: Option<TraceId>, future: F) -> InTrace<F> {
    InTrace {
        raw: id.map_or(0, TraceId::raw),
        future,
    }
}

/// The future of [`in_trace`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct InTrace<F> {
    raw: u128,
    future: F,
}

impl<F: Future> Future for InTrace<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `future` is structurally pinned: it is never moved out of `self`, and `InTrace`
        // implements neither `Drop` nor `Unpin` by hand.
        let (raw, future) = unsafe {
            let this = self.get_unchecked_mut();
            (this.raw, Pin::new_unchecked(&mut this.future))
        };
        let _scope = Scope::enter(raw);
        future.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn traceparent_is_parsed_as_the_w3c_specification_says() {
        let ok = format!("00-{ID}-00f067aa0ba902b7-01");
        assert_eq!(
            TraceId::from_traceparent(&ok).map(|t| t.to_string()),
            Some(ID.into())
        );
        // a future version may add fields after the flags
        let future = format!("cc-{ID}-00f067aa0ba902b7-01-what-the-future-holds");
        assert!(TraceId::from_traceparent(&future).is_some());
        for bad in [
            String::new(),
            format!("ff-{ID}-00f067aa0ba902b7-01"),
            format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
            format!("00-{ID}-0000000000000000-01"),
            format!("00-{}-00f067aa0ba902b7-01", ID.to_uppercase()),
            format!("00-{ID}-00f067aa0ba902b7-01-extra"),
            format!("00_{ID}-00f067aa0ba902b7-01"),
            format!("00-{ID}-00f067aa0ba902b7-0"),
            format!("0g-{ID}-00f067aa0ba902b7-01"),
            format!("cc-{ID}-00f067aa0ba902b7-01x"),
        ] {
            assert_eq!(TraceId::from_traceparent(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hex_round_trips_and_zero_is_no_id() {
        let id = TraceId::from_hex(ID).unwrap();
        assert_eq!(id.to_string(), ID);
        assert_eq!(TraceId::from_bytes(id.to_bytes()), Some(id));
        assert_eq!(TraceId::from_hex(&"0".repeat(32)), None);
        assert_eq!(TraceId::from_hex("+bf92f3577b34da6a3ce929d0e0e4736"), None);
        assert_eq!(
            TraceId::from_hex("00000000000000000000000000000001").map(|t| t.to_string()),
            Some("00000000000000000000000000000001".into())
        );
    }

    #[test]
    fn scopes_nest_and_restore_on_panic() {
        let a = TraceId::from_hex(ID);
        let b = TraceId::from_hex("00000000000000000000000000000002");
        with_trace_id(a, || {
            let r = std::panic::catch_unwind(|| with_trace_id(b, || panic!("inner")));
            assert!(r.is_err());
            assert_eq!(current_trace_id(), a);
            with_trace_id(None, || assert_eq!(current_trace_id(), None));
            assert_eq!(current_trace_id(), a);
        });
        assert_eq!(current_trace_id(), None);
    }
}
