//! Where alert notifications go: `tracing`, a callback, a webhook (plain `http://`, on its own
//! thread, with retries), an Alertmanager (its API v2), and the PostgreSQL event log (through
//! the pipeline's outbox).

use std::time::Duration;

use crate::core::secret::redact;
use crate::ops::alerts::{AlertState, Callback, Notification, Severity};
use crate::pipeline::outbox::LoggedEvent;

/// Where notifications go.
#[derive(Clone, Default)]
pub struct Sinks {
    /// POST each notification as JSON to this `http://` URL (timeout 5 s, 3 tries).
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
    /// Its base URL (`http://`), such as `http://127.0.0.1:9093`.
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

    /// Sends `ns` (on a thread of its own, 2 tries of 5 s).
    pub(crate) fn send(&self, ns: &[Notification]) {
        if ns.is_empty() {
            return;
        }
        let url = format!("{}/api/v2/alerts", self.url.trim_end_matches('/'));
        post_in_background("alertmanager", url, self.body(ns), 2);
    }
}

/// POSTs `body` as JSON to `url` on a thread of its own (`perfmon-{sink}`), `tries` times at
/// most (5 s each); a failure is logged.
fn post_in_background(sink: &'static str, url: String, body: String, tries: u32) {
    let spawned = std::thread::Builder::new()
        .name(format!("perfmon-{sink}"))
        .spawn(move || {
            if let Err(e) = post_json(&url, &body, tries, Duration::from_secs(5)) {
                tracing::warn!(target: "perfmon::alerts", sink, url = %redact(&url), error = %e, "alert delivery failed");
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(target: "perfmon::alerts", sink, error = %e, "could not start an alert delivery thread");
    }
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
/// callback, the webhook (on its own thread), the PostgreSQL event log.
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

/// POSTs `body` as JSON to an `http://host[:port]/path` URL, retrying with backoff.
pub(crate) fn post_json(
    url: &str,
    body: &str,
    tries: u32,
    timeout: Duration,
) -> Result<u16, String> {
    send("POST", url, "application/json", body, tries, timeout)
}

/// Sends `body` with `method` to an `http://host[:port]/path` URL, retrying with backoff; the
/// status code of a 2xx answer, else what went wrong.
pub(crate) fn send(
    method: &str,
    url: &str,
    content_type: &str,
    body: &str,
    tries: u32,
    timeout: Duration,
) -> Result<u16, String> {
    use std::io::{Read, Write};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{}: only http:// URLs are supported", redact(url)))?;
    let (hostport, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let addr = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let mut last = String::new();
    for attempt in 0..tries.max(1) {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(200 << attempt));
        }
        let result = (|| -> Result<u16, String> {
            use std::net::ToSocketAddrs;
            let sock = addr
                .to_socket_addrs()
                .map_err(|e| e.to_string())?
                .next()
                .ok_or("no address")?;
            let mut s =
                std::net::TcpStream::connect_timeout(&sock, timeout).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            s.set_write_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            write!(
                s,
                "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: perfmon\r\n\r\n{body}",
                body.len()
            )
            .map_err(|e| e.to_string())?;
            let mut resp = String::new();
            s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
            let code: u16 = resp
                .get(9..12)
                .and_then(|c| c.parse().ok())
                .ok_or("no HTTP status")?;
            if (200..300).contains(&code) {
                Ok(code)
            } else {
                Err(format!("answered {code}"))
            }
        })();
        match result {
            Ok(code) => return Ok(code),
            Err(e) => last = e,
        }
    }
    Err(last)
}
