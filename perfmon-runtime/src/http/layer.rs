//! `PerfmonLayer`: records every request that passes through it, exactly once, with the matched
//! route template, the real status code and the full duration.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use axum::http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::__private::Meta;
use crate::clock::now_ticks;
use crate::registry::{lookup_or_register, method_index, METHODS};
use crate::ring::{push, Event, FLAG_SLOW, FLAG_TICKS};
use crate::state::state;

/// The route recorded for a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// A tower layer that records every request once: method, matched route template (never the
/// raw path; `unmatched` when no route matched), the status code of the response and the
/// duration from the call until the response is ready.
///
/// Add it with `Router::layer` so that it sees the matched route. A handler carrying
/// `#[track_api]` inside it does not record a second time: it hands its `path` (if given),
/// `method` (if given) and `slow` threshold to the layer, which records with them.
///
/// ```
/// use axum::{routing::get, Router};
/// use perfmon_runtime::http::PerfmonLayer;
///
/// let app: Router = Router::new()
///     .route("/api/staff/{id}", get(|| async { "kim" }))
///     .merge(perfmon_runtime::http::router())
///     .layer(PerfmonLayer::new());
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct PerfmonLayer {
    _private: (),
}

impl PerfmonLayer {
    /// The layer.
    pub fn new() -> PerfmonLayer {
        PerfmonLayer { _private: () }
    }
}

impl<S> Layer<S> for PerfmonLayer {
    type Service = PerfmonService<S>;

    fn layer(&self, inner: S) -> PerfmonService<S> {
        PerfmonService { inner }
    }
}

/// The service `PerfmonLayer` wraps around the inner one.
#[derive(Clone, Debug)]
pub struct PerfmonService<S> {
    inner: S,
}

/// Marks a request already seen by an outer `PerfmonLayer`, so that a second layer stays quiet.
#[derive(Clone, Copy)]
struct Seen;

impl<S, B, R> Service<Request<B>> for PerfmonService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let start = now_ticks();
        let nested = req.extensions().get::<Seen>().is_some();
        req.extensions_mut().insert(Seen);
        let record = (!nested).then(|| Pending {
            start,
            method: method_index(req.method().as_str()),
            route: req.extensions().get::<MatchedPath>().cloned(),
            handler: Cell::new(None),
        });
        ResponseFuture {
            inner: self.inner.call(req),
            record,
        }
    }
}

/// What the layer knows of a request until its response is ready.
struct Pending {
    start: u64,
    method: usize,
    route: Option<MatchedPath>,
    /// Set by a `#[track_api]` handler that ran inside this request.
    handler: Cell<Option<&'static Meta>>,
}

thread_local! {
    /// The request being polled on this thread, while the layer polls its handler.
    static CURRENT: Cell<*const Pending> = const { Cell::new(std::ptr::null()) };
}

/// Called by `#[track_api]` when it finishes: inside a layer, hand the call site's metadata to
/// the layer (which records once, with the real status) and do not record.
pub(crate) fn hand_over(meta: &'static Meta) -> bool {
    CURRENT
        .try_with(|c| {
            let p = c.get();
            if p.is_null() {
                return false;
            }
            // SAFETY: `CURRENT` points at the `Pending` of a future being polled on this thread;
            // it is reset before that poll returns (see `Reset`), so the pointee is alive.
            unsafe { (*p).handler.set(Some(meta)) };
            true
        })
        .unwrap_or(false)
}

struct Reset(*const Pending);

impl Drop for Reset {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|c| c.set(self.0));
    }
}

impl Pending {
    fn finish(&self, status: u16) {
        let end = now_ticks();
        let s = state();
        let handler = self.handler.get();
        let route: &str = match (handler, &self.route) {
            (Some(m), _) if m.path_explicit() => m.route(),
            (_, Some(r)) => r.as_str(),
            (_, None) => UNMATCHED,
        };
        let method = match handler.map(|m| m.method()) {
            Some(m) if m != METHODS[0] => method_index(m),
            _ => self.method,
        };
        let slow_ns = handler.map_or_else(
            || s.api_slow_ns.load(std::sync::atomic::Ordering::Relaxed),
            |m| m.slow_ns(),
        );
        let id = lookup_or_register(
            &s.registry,
            |r| r.find_api(method, route),
            |r| r.api(method, route, slow_ns),
        );
        let took_ns = crate::clock::ticks_between_ns(self.start, end);
        let mut flags = FLAG_TICKS;
        if took_ns > slow_ns {
            flags |= FLAG_SLOW;
            tracing::warn!(target: "perfmon", method = METHODS[method], route, status, took = ?std::time::Duration::from_nanos(took_ns), "slow request");
        }
        push(Event {
            series: id,
            status,
            flags,
            a: self.start,
            b: end,
        });
    }
}

pin_project_lite::pin_project! {
    /// The response future of `PerfmonService`.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        record: Option<Pending>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before the response was ready: the client went away (499), or a panic is
            // unwinding through the handler (500).
            if let Some(p) = this.project().record.take() {
                p.finish(if std::thread::panicking() { 500 } else { 499 });
            }
        }
    }
}

impl<F, R, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<R>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let ptr: *const Pending = this
            .record
            .as_ref()
            .map_or(std::ptr::null(), |p| p as *const Pending);
        let polled = if ptr.is_null() {
            this.inner.poll(cx)
        } else {
            let previous = CURRENT.with(|c| c.replace(ptr));
            let _reset = Reset(previous);
            this.inner.poll(cx)
        };
        if let Poll::Ready(out) = &polled {
            if let Some(p) = this.record.take() {
                p.finish(match out {
                    Ok(resp) => resp.status().as_u16(),
                    Err(_) => 500,
                });
            }
        }
        polled
    }
}
