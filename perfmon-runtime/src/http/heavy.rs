//! Heavy reads: every window but the last 5 minutes of this instance is read from the retention
//! tiers, at a CPU cost that grows with the series stored (decoding and merging histograms,
//! then percentiles and JSON for every route). Served naively, a few such requests would occupy
//! the application's own async workers. So, for `GET /api/monitoring/metrics`:
//!
//! - each load runs on the read pool (`core::pool`: threads of perfmon's own at the lowest CPU
//!   priority), never on the application's async workers, which only wait for the finished JSON
//!   bytes;
//! - identical requests share one load (single flight) and its answer is kept briefly (2 s by
//!   default) for the next identical request;
//! - past a configured number of loads in progress (2 by default), a request that would start
//!   another is answered 429 with `{"success": false, "error": "..."}` and `Retry-After: 1`.
//!
//! Memory: at most [`CACHE_ENTRIES`] kept answers, each the JSON of one request; at most the
//! configured number of loads in progress, each given up after the configured timeout (60 s by default).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use crate::core::flight::Flight;
use crate::core::pool;
use crate::core::sync::lock;
use crate::export::prometheus::{Family, MetricType};

/// Kept answers, at most.
pub(crate) const CACHE_ENTRIES: usize = 64;

/// A finished answer: status and JSON body.
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    pub retry_after: bool,
}

impl Answer {
    /// `status` with `value` as its JSON body.
    pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Answer {
        Answer {
            status,
            body: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
            retry_after: false,
        }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body,
        )
            .into_response();
        if self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// The limits of heavy reads (`ConfigBuilder::max_heavy_reads`, `heavy_read_cache_ttl`,
/// `heavy_read_timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    pub max_loads: usize,
    pub cache_ttl: Duration,
    /// The longest a load may take; then its callers are answered 503 and its place is freed.
    pub timeout: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_loads: 2,
            cache_ttl: Duration::from_secs(2),
            timeout: Duration::from_secs(60),
        }
    }
}

/// What heavy reads have done since the process started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct HeavyReadStats {
    /// Loads run (each a read of the tiers and the JSON built from it).
    pub loads: u64,
    /// Of those, loads that ran on the `perfmon-read` pool (the others ran on the caller's
    /// runtime because the pool could not be started).
    pub loads_on_pool: u64,
    /// Requests that waited for a load another request had started.
    pub shared: u64,
    /// Requests answered from a kept answer.
    pub cached: u64,
    /// Requests answered 429 because the limit of loads in progress was reached.
    pub rejected: u64,
    /// Loads in progress now.
    pub in_progress: u64,
}

struct Heavy {
    settings: RwLock<Settings>,
    /// Loads in progress, by request.
    flights: Mutex<HashMap<String, Arc<Flight<Answer>>>>,
    /// Finished answers, by request, with when they finished.
    cache: Mutex<HashMap<String, (Instant, Answer)>>,
    loads: AtomicU64,
    loads_on_pool: AtomicU64,
    shared: AtomicU64,
    cached: AtomicU64,
    rejected: AtomicU64,
}

fn heavy() -> &'static Heavy {
    static HEAVY: OnceLock<Heavy> = OnceLock::new();
    HEAVY.get_or_init(|| Heavy {
        settings: RwLock::new(Settings::default()),
        flights: Mutex::new(HashMap::new()),
        cache: Mutex::new(HashMap::new()),
        loads: AtomicU64::new(0),
        loads_on_pool: AtomicU64::new(0),
        shared: AtomicU64::new(0),
        cached: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
    })
}

/// Applies the configuration `init` was given and forgets the kept answers.
pub(crate) fn configure(settings: Settings) {
    let h = heavy();
    *h.settings.write().unwrap_or_else(|e| e.into_inner()) = settings;
    lock(&h.cache).clear();
}

fn settings() -> Settings {
    *heavy().settings.read().unwrap_or_else(|e| e.into_inner())
}

/// What heavy reads of the monitoring endpoint have done since the process started.
pub fn heavy_read_stats() -> HeavyReadStats {
    let h = heavy();
    HeavyReadStats {
        loads: h.loads.load(Ordering::Relaxed),
        loads_on_pool: h.loads_on_pool.load(Ordering::Relaxed),
        shared: h.shared.load(Ordering::Relaxed),
        cached: h.cached.load(Ordering::Relaxed),
        rejected: h.rejected.load(Ordering::Relaxed),
        in_progress: lock(&h.flights).len() as u64,
    }
}

/// The counters as Prometheus families (what `GET /metrics` adds to the collector's).
pub(crate) fn families() -> Vec<Family> {
    let s = heavy_read_stats();
    let mut requests = Family::new(
        "perfmon_heavy_read_requests_total",
        MetricType::Counter,
        "Long-window requests of the monitoring endpoint, by how they were answered: a load of their own, a load shared with identical requests, a kept answer, or 429.",
    );
    for (outcome, v) in [
        ("load", s.loads),
        ("shared", s.shared),
        ("cached", s.cached),
        ("rejected", s.rejected),
    ] {
        requests.push(vec![("outcome", outcome.to_string())], v as f64);
    }
    vec![
        requests,
        Family::new(
            "perfmon_heavy_reads_in_progress",
            MetricType::Gauge,
            "Long-window loads in progress now.",
        )
        .number(vec![], s.in_progress as f64),
    ]
}

fn too_many(limit: usize) -> Answer {
    let mut a = Answer::json(
        StatusCode::TOO_MANY_REQUESTS,
        &json!({
            "success": false,
            "error": format!("{limit} long-window reads are in progress, the configured limit (max_heavy_reads); retry in a second, or ask for window=5m&scope=instance, which is read from memory"),
        }),
    );
    a.retry_after = true;
    a
}

/// Ends a load: keeps a successful answer, removes the flight and wakes its callers; also when
/// the load panicked (then its callers get a 500).
struct Landing {
    key: String,
    flight: Arc<Flight<Answer>>,
    answer: Option<Answer>,
}

impl Landing {
    fn land(mut self, answer: Answer) {
        self.answer = Some(answer);
    }
}

impl Drop for Landing {
    fn drop(&mut self) {
        let h = heavy();
        let ttl = settings().cache_ttl;
        {
            let mut flights = lock(&h.flights);
            if let Some(a) = &self.answer {
                if a.status == StatusCode::OK && !ttl.is_zero() {
                    let mut cache = lock(&h.cache);
                    cache.retain(|_, (at, _)| at.elapsed() < ttl);
                    if cache.len() >= CACHE_ENTRIES {
                        let oldest = cache
                            .iter()
                            .min_by_key(|(_, (at, _))| *at)
                            .map(|(k, _)| k.clone());
                        if let Some(k) = oldest {
                            cache.remove(&k);
                        }
                    }
                    cache.insert(self.key.clone(), (Instant::now(), a.clone()));
                }
            }
            flights.remove(&self.key);
        }
        self.flight.finish(self.answer.take());
    }
}

/// The answer to the request `key`: a kept one if fresh, else the load in progress for it, else
/// a new load (`load`) on the read pool, or 429 past the limit of loads in progress.
pub(crate) async fn answer<F, Fut>(key: String, load: F) -> Answer
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Answer> + Send + 'static,
{
    let h = heavy();
    let s = settings();
    let (flight, lead) = {
        let mut flights = lock(&h.flights);
        // under the flights' lock: a load that ends keeps its answer before it leaves them
        let mut cache = lock(&h.cache);
        // answers past their time go as soon as anyone asks (at most CACHE_ENTRIES to look at)
        cache.retain(|_, (at, _)| at.elapsed() < s.cache_ttl);
        if let Some((_, a)) = cache.get(&key) {
            h.cached.fetch_add(1, Ordering::Relaxed);
            return a.clone();
        }
        drop(cache);
        match flights.get(&key) {
            Some(f) => (f.clone(), false),
            None if flights.len() >= s.max_loads.max(1) => {
                h.rejected.fetch_add(1, Ordering::Relaxed);
                return too_many(s.max_loads.max(1));
            }
            None => {
                let f = Flight::start();
                flights.insert(key.clone(), f.clone());
                (f, true)
            }
        }
    };
    if lead {
        h.loads.fetch_add(1, Ordering::Relaxed);
        let landing = Landing {
            key,
            flight: flight.clone(),
            answer: None,
        };
        // spawned, not run in this request: a caller that goes away does not cancel the load
        // the others wait for
        let timeout = s.timeout;
        let task = async move {
            // a tier that stops answering cannot hold a load (and its place under the limit)
            // for ever
            let answer = tokio::time::timeout(timeout, load())
                .await
                .unwrap_or_else(|_| {
                    Answer::json(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &json!({
                            "success": false,
                            "error": format!("the read took longer than {} s and was given up; the tiers may be slow or away (see /api/monitoring/health)", timeout.as_secs_f64()),
                        }),
                    )
                });
            landing.land(answer);
        };
        if pool::spawn(task) {
            h.loads_on_pool.fetch_add(1, Ordering::Relaxed);
        }
    } else {
        h.shared.fetch_add(1, Ordering::Relaxed);
    }
    flight.landing().await.unwrap_or_else(|| {
        Answer::json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({ "success": false, "error": "the read failed; see the log" }),
        )
    })
}
