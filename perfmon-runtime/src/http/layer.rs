//! `PerfmonLayer`: records every request that passes through it, exactly once, with the matched
//! route template, the real status code and the full duration.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use axum::http::{HeaderName, Method, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::core::clock::{now_ticks, ticks_between_ns};
use crate::core::kind::{method_index, METHODS};
use crate::core::trace::{self, TraceId};
use crate::pipeline::event::{Event, FLAG_SLOW, FLAG_TICKS};
use crate::pipeline::handoff::{self, Frame, Series};
use crate::pipeline::meta::Meta;
use crate::pipeline::registry::{self, lookup_or_register};
use crate::pipeline::state::{push, push_traced};

/// The route recorded for a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// A tower layer that records every request once: method, matched route template (never the
/// raw path; `unmatched` when no route matched), the status code of the response and the
/// duration from the call until the response is ready.
///
/// A request with a valid W3C `traceparent` header runs in that trace: the request, and every
/// call tracked while its handler is polled, carry the trace id (slow list, recent requests,
/// batch failures, exemplars). Without the header, the trace id current where the layer is
/// called (set by an outer layer or by [`in_trace`](crate::trace::in_trace)) applies, else,
/// with the `opentelemetry` feature, the OpenTelemetry trace id of the current `tracing` span
/// (put the layer inside your tracing layer, such as tower-http's `TraceLayer`).
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

/// Per-thread caches, so that a request costs no lock, no string hashing and no shared atomic
/// once its series is known:
/// * `routes`: (matched route, method) → the request's series. Keyed by the address of the
///   route's `MatchedPath` string; each entry holds a clone of that `MatchedPath` (an `Arc<str>`),
///   so the address cannot be reused by another string while cached.
/// * `handlers`: (request's series, `#[track_api]` call site) → the series and threshold to
///   record under when the handler hands its metadata over.
struct Caches {
    routes: Vec<Option<(MatchedPath, usize, Series)>>,
    handlers: Vec<Option<(u32, usize, Series)>>,
    unmatched: [Option<Series>; METHODS.len()],
}

const CACHE_SLOTS: usize = 256;

/// The W3C trace context header, as a ready name: looking a header up by `&str` parses and
/// validates the name on every request.
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

thread_local! {
    static CACHES: RefCell<Caches> = const {
        RefCell::new(Caches { routes: Vec::new(), handlers: Vec::new(), unmatched: [None; METHODS.len()] })
    };
}

/// The standard methods in [`METHODS`]' order (after `ANY`).
const STANDARD_METHODS: [Method; 9] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::HEAD,
    Method::OPTIONS,
    Method::TRACE,
    Method::CONNECT,
];

/// The index in [`METHODS`] of a request's method: a standard one by comparing `http`'s own
/// value (no string comparison), an extension method by name.
fn request_method(m: &Method) -> usize {
    STANDARD_METHODS
        .iter()
        .position(|s| s == m)
        .map_or_else(|| method_index(m.as_str()), |i| i + 1)
}

/// The series of (method, route), registered with `slow_ns` (default: the configured API
/// threshold), and the threshold to apply.
fn register(method: usize, route: &str, slow_ns: Option<u64>) -> Series {
    let slow_ns = slow_ns.unwrap_or_else(|| registry::settings().api_slow_ns);
    let id = lookup_or_register(
        |r| r.find_api(method, route),
        |r, _| r.api(method, route, slow_ns),
    );
    Series { id, slow_ns }
}

/// The series of a request to a matched route.
fn route_series(matched: &MatchedPath, method: usize) -> Series {
    let ptr = matched.as_str().as_ptr() as usize;
    let slot = (ptr >> 3 ^ method) % CACHE_SLOTS;
    let hit = CACHES.try_with(|c| match c.borrow().routes.get(slot) {
        Some(Some((m, meth, series))) if m.as_str().as_ptr() as usize == ptr && *meth == method => {
            Some(*series)
        }
        _ => None,
    });
    if let Ok(Some(series)) = hit {
        return series;
    }
    let series = register(method, matched.as_str(), None);
    let _ = CACHES.try_with(|c| {
        let mut c = c.borrow_mut();
        if c.routes.is_empty() {
            c.routes.resize_with(CACHE_SLOTS, || None);
        }
        c.routes[slot] = Some((matched.clone(), method, series));
    });
    series
}

/// The series of a request that matched no route.
fn unmatched_series(method: usize) -> Series {
    if let Ok(Some(series)) = CACHES.try_with(|c| c.borrow().unmatched[method]) {
        return series;
    }
    let series = register(method, UNMATCHED, None);
    let _ = CACHES.try_with(|c| c.borrow_mut().unmatched[method] = Some(series));
    series
}

/// The series of a request whose `#[track_api]` handler handed over its metadata: its `path`
/// (if given) or the request's route, its `method` (if given) or the request's, its threshold.
fn handler_series(base: u32, meta: &'static Meta) -> Series {
    let meta_ptr = meta as *const Meta as usize;
    let slot = ((base as usize) ^ meta_ptr >> 3) % CACHE_SLOTS;
    let hit = CACHES.try_with(|c| match c.borrow().handlers.get(slot) {
        Some(Some((b, m, series))) if *b == base && *m == meta_ptr => Some(*series),
        _ => None,
    });
    if let Ok(Some(series)) = hit {
        return series;
    }
    let (base_route, base_method) = {
        registry::read()
            .info(base)
            .map_or((UNMATCHED.to_string(), METHODS[0]), |i| {
                (i.name.to_string(), i.method)
            })
    };
    let route = if meta.path_explicit() {
        meta.route()
    } else {
        base_route.as_str()
    };
    let method = if meta.method() != METHODS[0] {
        meta.method()
    } else {
        base_method
    };
    if meta.apdex_ns() != 0 {
        crate::pipeline::apdex::set_code(route, meta.apdex_ns());
    }
    let series = register(method_index(method), route, Some(meta.slow_ns()));
    let _ = CACHES.try_with(|c| {
        let mut c = c.borrow_mut();
        if c.handlers.is_empty() {
            c.handlers.resize_with(CACHE_SLOTS, || None);
        }
        c.handlers[slot] = Some((base, meta_ptr, series));
    });
    series
}

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

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // feature `off`: the inner service's future, untouched
        if cfg!(feature = "off") {
            return ResponseFuture {
                inner: self.inner.call(req),
                record: None,
                polled: true,
            };
        }
        let start = now_ticks();
        let method = request_method(req.method());
        let trace = req
            .headers()
            .get(&TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(TraceId::from_traceparent)
            .map_or_else(context_trace, TraceId::raw);
        let record = Some(Pending {
            start,
            method,
            trace,
            frame: Frame {
                route: req
                    .extensions()
                    .get::<MatchedPath>()
                    .map(|m| route_series(m, method)),
                handler: None,
            },
        });
        ResponseFuture {
            inner: self.inner.call(req),
            record,
            polled: false,
        }
    }
}

/// The trace id of a request without a `traceparent` header: the one current where the layer
/// runs (an outer layer's, or `in_trace`'s), else, with the `opentelemetry` feature, the
/// OpenTelemetry trace id of the current `tracing` span.
fn context_trace() -> u128 {
    match trace::current_raw() {
        0 => otel_trace(),
        t => t,
    }
}

#[cfg(feature = "opentelemetry")]
fn otel_trace() -> u128 {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let span = tracing::Span::current();
    if span.is_none() {
        return 0;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        u128::from_be_bytes(sc.trace_id().to_bytes())
    } else {
        0
    }
}

#[cfg(not(feature = "opentelemetry"))]
#[inline]
fn otel_trace() -> u128 {
    0
}

/// What the layer knows of a request until its response is ready.
struct Pending {
    start: u64,
    method: usize,
    /// The request's trace id (0 for none).
    trace: u128,
    /// The request's route (filled in by an inner `PerfmonLayer` when this one, outside the
    /// router, did not see it) and the `#[track_api]` handler that ran inside it.
    frame: Frame,
}

impl Pending {
    fn finish(&self, status: u16) {
        let end = now_ticks();
        let base = self
            .frame
            .route
            .unwrap_or_else(|| unmatched_series(self.method));
        let series = match self.frame.handler {
            Some(meta) => handler_series(base.id, meta),
            None => base,
        };
        let took_ns = ticks_between_ns(self.start, end);
        let mut flags = FLAG_TICKS;
        if took_ns > series.slow_ns {
            flags |= FLAG_SLOW;
            slow_warning(series.id, status, took_ns);
        }
        let ev = Event {
            series: series.id,
            status,
            flags,
            a: self.start,
            b: end,
        };
        if self.trace == 0 {
            push(ev);
        } else {
            push_traced(ev, self.trace);
        }
    }
}

#[cold]
fn slow_warning(series: u32, status: u16, took_ns: u64) {
    let Some(n) = crate::pipeline::slowlog::admit(series) else {
        return;
    };
    let more = crate::pipeline::slowlog::more(n);
    if let Some(i) = registry::read().info(series) {
        let took = std::time::Duration::from_nanos(took_ns);
        tracing::warn!(target: "perfmon", method = i.method, route = &*i.name, status, ?took, suppressed = n, "slow request{more}");
    }
}

pin_project_lite::pin_project! {
    /// The response future of `PerfmonService`.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        record: Option<Pending>,
        polled: bool,
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
        if !*this.polled {
            *this.polled = true;
            // Inside another `PerfmonLayer`'s request: that one records; hand it the matched
            // route if it did not see one, and stay quiet.
            if handoff::inside_request() {
                if let Some(mine) = this.record.take() {
                    handoff::offer_route(mine.frame.route);
                }
            }
        }
        let polled = match this.record.as_mut() {
            None => this.inner.poll(cx),
            Some(p) => {
                let _trace = (p.trace != 0).then(|| trace::Scope::enter(p.trace));
                let entered = handoff::enter(p.frame);
                let polled = this.inner.poll(cx);
                if let Some(frame) = entered.exit() {
                    p.frame = frame;
                }
                polled
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_methods_index_as_their_names_do() {
        for name in [
            "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT", "PURGE",
        ] {
            let m = Method::from_bytes(name.as_bytes()).expect("a method");
            assert_eq!(request_method(&m), method_index(name), "{name}");
        }
        assert_eq!(METHODS[request_method(&Method::GET)], "GET");
        assert_eq!(
            METHODS[request_method(&Method::from_bytes(b"PURGE").expect("a method"))],
            "OTHER"
        );
    }
}
