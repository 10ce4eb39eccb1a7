//! Where alert notifications go: `tracing`, a callback, a webhook and an Alertmanager (its API
//! v2) over `http://` or `https://` (ureq with rustls; a bounded queue in front of one delivery
//! thread, timeouts, retries with backoff, every outcome counted), and the PostgreSQL event log
//! (through the pipeline's outbox).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

use crate::core::secret::redact;
use crate::ops::alerts::{AlertState, Callback, Notification, Severity};
use crate::pipeline::outbox::LoggedEvent;

/// Where notifications go.
#[derive(Clone, Default)]
pub struct Sinks {
    /// POST each notification as JSON to this `http://` or `https://` URL (5 s an attempt, 3
    /// tries with backoff, through the bounded delivery queue).
    pub webhook: Option<String>,
    /// Call this with each notification.
    pub callback: Option<Callback>,
    /// Send the alerts to this Alertmanager.
    pub alertmanager: Option<Alertmanager>,
}

/// An Alertmanager the alerts go to: `POST {url}/api/v2/alerts` with each alert's labels
/// (`alertname` = the rule, `severity`, `instance`, and `key` when the alert is about one
/// batch, route or the like), `annotations.summary`, `startsAt`, and `endsAt` once resolved;
/// firing alerts are sent again at every tick of the alert engine, as Alertmanager expects
/// (well inside its `resolve_timeout`).
#[derive(Clone)]
pub struct Alertmanager {
    /// Its base URL (`http://` or `https://`), such as `http://127.0.0.1:9093`.
    pub url: String,
    /// The `instance` label (`init` sets this instance's name).
    pub instance: String,
}

impl std::fmt::Debug for Alertmanager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alertmanager")
            .field("url", &redact(&self.url))
            .field("instance", &self.instance)
            .finish()
    }
}

impl Alertmanager {
    /// Alertmanager's JSON (API v2) for `ns`.
    pub(crate) fn body(&self, ns: &[Notification]) -> String {
        let alerts: Vec<serde_json::Value> = ns
            .iter()
            .map(|n| {
                let mut labels = serde_json::Map::new();
                labels.insert("alertname".into(), n.rule.clone().into());
                labels.insert(
                    "severity".into(),
                    match n.severity {
                        Severity::Critical => "critical",
                        Severity::Warning => "warning",
                    }
                    .into(),
                );
                labels.insert("instance".into(), self.instance.clone().into());
                if !n.key.is_empty() {
                    labels.insert("key".into(), n.key.clone().into());
                }
                let mut a = serde_json::json!({
                    "labels": labels,
                    "annotations": { "summary": n.message, "value": n.value.to_string() },
                    "startsAt": crate::core::clock::rfc3339(n.since),
                });
                if n.state == AlertState::Resolved {
                    a["endsAt"] = crate::core::clock::rfc3339(n.at).into();
                }
                a
            })
            .collect();
        serde_json::Value::Array(alerts).to_string()
    }

    /// Queues `ns` for the delivery thread (2 tries of 5 s).
    pub(crate) fn send(&self, ns: &[Notification]) {
        if ns.is_empty() {
            return;
        }
        let url = format!("{}/api/v2/alerts", self.url.trim_end_matches('/'));
        post_in_background("alertmanager", url, self.body(ns), 2);
    }
}

/// Queues `body` to be POSTed as JSON to `url` by the delivery thread, `tries` times at most.
fn post_in_background(sink: &'static str, url: String, body: String, tries: u32) {
    outbound(sink).enqueue(Delivery {
        sink,
        url,
        body,
        tries,
    });
}

impl std::fmt::Debug for Sinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sinks")
            .field("webhook", &self.webhook.as_deref().map(redact))
            .field("callback", &self.callback.is_some())
            .field("alertmanager", &self.alertmanager)
            .finish()
    }
}

/// Sends one notification everywhere: `tracing` (error for critical, warn for warning), the
/// callback, the webhook and the Alertmanager (queued for the delivery thread), the PostgreSQL
/// event log.
pub fn deliver(n: &Notification, sinks: &Sinks) {
    // names and messages as escaped fields: a name holding a line break cannot forge a line
    let (rule, key, message) = (
        n.rule.escape_debug(),
        n.key.escape_debug(),
        n.message.escape_debug(),
    );
    match (n.severity, n.state) {
        (Severity::Critical, AlertState::Firing) => {
            tracing::error!(target: "perfmon::alerts", rule = %rule, key = %key, value = n.value, "{message}")
        }
        (Severity::Warning, AlertState::Firing) => {
            tracing::warn!(target: "perfmon::alerts", rule = %rule, key = %key, value = n.value, "{message}")
        }
        (_, AlertState::Resolved) => {
            tracing::info!(target: "perfmon::alerts", rule = %rule, key = %key, value = n.value, "{message}")
        }
    }
    if let Some(cb) = &sinks.callback {
        cb(n);
    }
    if let Some(url) = sinks.webhook.clone() {
        let body = serde_json::to_string(n).unwrap_or_default();
        post_in_background("webhook", url, body, 3);
    }
    if let Some(am) = &sinks.alertmanager {
        am.send(std::slice::from_ref(n));
    }
    crate::pipeline::state::global().outbox.log(LoggedEvent {
        at_ns: crate::core::clock::unix_ns(n.at),
        kind: match n.state {
            AlertState::Firing => "alert_fired",
            AlertState::Resolved => "alert_resolved",
        },
        name: if n.key.is_empty() {
            n.rule.clone()
        } else {
            format!("{}:{}", n.rule, n.key)
        },
        detail: n.message.clone(),
    });
}

/// Notifications waiting for the delivery thread at most; past it a notification is dropped
/// and counted ([`DeliveryStats::dropped`]).
pub const DELIVERY_QUEUE: usize = 256;

/// How long one attempt may take (connect, TLS, send, answer).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the delivery thread did since start (`perfmon_runtime::alerts::delivery_stats()`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryStats {
    /// Notifications a webhook or Alertmanager accepted (2xx).
    pub sent: u64,
    /// Notifications given up after their last try.
    pub failed: u64,
    /// Notifications dropped because the queue held [`DELIVERY_QUEUE`] already.
    pub dropped: u64,
    /// Attempts that were retried (a connection error, a timeout or a non-2xx answer).
    pub retries: u64,
    /// Notifications in the queue now.
    pub queued: u64,
}

/// What the delivery threads did since start, the webhook's and the Alertmanager's together.
pub fn delivery_stats() -> DeliveryStats {
    let (w, a) = (sink_stats("webhook"), sink_stats("alertmanager"));
    DeliveryStats {
        sent: w.sent + a.sent,
        failed: w.failed + a.failed,
        dropped: w.dropped + a.dropped,
        retries: w.retries + a.retries,
        queued: w.queued + a.queued,
    }
}

/// What the delivery thread of one sink (`webhook` or `alertmanager`) did since start.
pub(crate) fn sink_stats(sink: &'static str) -> DeliveryStats {
    let o = outbound(sink);
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    DeliveryStats {
        sent: n(&o.sent),
        failed: n(&o.failed),
        dropped: n(&o.dropped),
        retries: n(&o.retries),
        queued: n(&o.queued),
    }
}

/// One notification on its way.
struct Delivery {
    sink: &'static str,
    url: String,
    body: String,
    tries: u32,
}

/// The bounded queue in front of one sink's delivery thread (`perfmon-webhook`,
/// `perfmon-alertmanager`), which sends one notification at a time, retrying with backoff: a
/// slow or unreachable webhook holds up only its own notifications — never the alert engine,
/// never the other sink — and never more than [`DELIVERY_QUEUE`] of them.
struct Outbound {
    sink: &'static str,
    tx: Mutex<Option<SyncSender<Delivery>>>,
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
    queued: AtomicU64,
}

fn outbound(sink: &'static str) -> &'static Outbound {
    static WEBHOOK: OnceLock<Outbound> = OnceLock::new();
    static ALERTMANAGER: OnceLock<Outbound> = OnceLock::new();
    let (cell, sink) = match sink {
        "alertmanager" => (&ALERTMANAGER, "alertmanager"),
        _ => (&WEBHOOK, "webhook"),
    };
    cell.get_or_init(|| Outbound {
        sink,
        tx: Mutex::new(None),
        sent: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        retries: AtomicU64::new(0),
        queued: AtomicU64::new(0),
    })
}

impl Outbound {
    fn enqueue(&'static self, d: Delivery) {
        let mut tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if tx.is_none() {
            *tx = self.start();
        }
        let Some(sender) = tx.as_ref() else {
            self.drop_one(d.sink, "the delivery thread could not start");
            return;
        };
        self.queued.fetch_add(1, Ordering::Relaxed);
        match sender.try_send(d) {
            Ok(()) => {}
            Err(TrySendError::Full(d)) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                self.drop_one(d.sink, "the delivery queue is full");
            }
            Err(TrySendError::Disconnected(d)) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                *tx = None;
                self.drop_one(d.sink, "the delivery thread stopped");
            }
        }
    }

    fn drop_one(&self, sink: &'static str, why: &str) {
        let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        // the first drop, then every 100th: a flood cannot flood the log
        if n == 1 || n % 100 == 0 {
            tracing::warn!(target: "perfmon::alerts", sink, dropped = n, "an alert notification was dropped: {why}");
        }
    }

    fn start(&'static self) -> Option<SyncSender<Delivery>> {
        let (tx, rx) = sync_channel::<Delivery>(DELIVERY_QUEUE);
        let spawned = std::thread::Builder::new()
            .name(format!("perfmon-{}", self.sink))
            .spawn(move || {
                for d in rx {
                    self.queued.fetch_sub(1, Ordering::Relaxed);
                    // a panic in the client must not end the thread with notifications queued
                    let sent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        send(
                            "POST",
                            &d.url,
                            "application/json",
                            &d.body,
                            d.tries,
                            ATTEMPT_TIMEOUT,
                            Some(&self.retries),
                        )
                    }))
                    .unwrap_or_else(|_| Err("the HTTP client panicked".into()));
                    match sent {
                        Ok(_) => {
                            self.sent.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            self.failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(target: "perfmon::alerts", sink = d.sink, url = %redact(&d.url), error = %e, "alert delivery failed");
                        }
                    }
                }
            });
        match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::warn!(target: "perfmon::alerts", error = %e, "could not start the alert delivery thread");
                None
            }
        }
    }
}

/// The root certificates `https://` sinks are checked against: the Mozilla roots, or only the
/// configured ones (`ConfigBuilder::tls_root_certificates`).
static ROOTS: RwLock<Option<Arc<Vec<Certificate<'static>>>>> = RwLock::new(None);

/// Trust only `certs` (DER) from now on; `None`: the Mozilla roots again.
pub(crate) fn set_root_certificates(certs: Option<Vec<Vec<u8>>>) {
    let certs = certs.map(|c| {
        Arc::new(
            c.iter()
                .map(|der| Certificate::from_der(der).to_owned())
                .collect(),
        )
    });
    *ROOTS.write().unwrap_or_else(|e| e.into_inner()) = certs;
}

/// The DER certificates of a PEM text; an error naming what is wrong when it holds none.
pub(crate) fn parse_pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c.der().to_vec()),
            Ok(_) => {}
            Err(e) => return Err(format!("not a PEM file: {e}")),
        }
    }
    if certs.is_empty() {
        return Err("no CERTIFICATE block in the PEM text".into());
    }
    Ok(certs)
}

fn agent(timeout: Duration) -> ureq::Agent {
    let roots = match ROOTS.read().unwrap_or_else(|e| e.into_inner()).clone() {
        Some(certs) => RootCerts::Specific(certs),
        None => RootCerts::WebPki,
    };
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .user_agent("perfmon")
        .tls_config(
            TlsConfig::builder()
                .provider(TlsProvider::Rustls)
                .root_certs(roots)
                .build(),
        )
        .build()
        .into()
}

/// An `http://` or `https://` URL: what the HTTP sinks accept.
pub(crate) fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// Sends `body` with `method` to an `http://` or `https://` URL, `tries` times at most with
/// backoff (200 ms, doubling), counting each retry in `retries`; the status code of a 2xx
/// answer, else what went wrong last.
pub(crate) fn send(
    method: &str,
    url: &str,
    content_type: &str,
    body: &str,
    tries: u32,
    timeout: Duration,
    retries: Option<&AtomicU64>,
) -> Result<u16, String> {
    if !is_http_url(url) {
        return Err(format!(
            "{}: only http:// and https:// URLs are supported",
            redact(url)
        ));
    }
    let agent = agent(timeout);
    let mut last = String::new();
    for attempt in 0..tries.max(1) {
        if attempt > 0 {
            if let Some(r) = retries {
                r.fetch_add(1, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(200 << (attempt - 1).min(5)));
        }
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(url)
            .header("Content-Type", content_type)
            .body(body.to_string())
            .map_err(|e| format!("{}: {e}", redact(url)))?;
        match agent.run(request) {
            Ok(resp) if resp.status().is_success() => return Ok(resp.status().as_u16()),
            Ok(resp) => last = format!("answered {}", resp.status().as_u16()),
            // ureq's errors may quote the URL, whose path or user part can hold a secret
            Err(e) => last = e.to_string().replace(url, &redact(url)),
        }
    }
    Err(last)
}
