//! Where the figures come from: a running service's `/api/monitoring/metrics`, or the retention
//! tiers themselves through `perfmon_runtime` (the same JSON either way).

use std::time::Duration;

use perfmon_runtime::{Config, Perfmon, Scope, Window};
use serde_json::{json, Value};

/// A service's metrics URL, or the tiers.
pub(crate) enum Source {
    Url {
        url: String,
        token: Option<String>,
        agent: ureq::Agent,
    },
    Tiers {
        runtime: tokio::runtime::Runtime,
        /// Kept open: the tiers' connections live as long as it does.
        _perfmon: Box<Perfmon>,
    },
}

impl Source {
    /// With a URL, that service; without, the tiers of the `PERFMON_*` variables (an error that
    /// names what is missing or unreachable).
    pub(crate) fn open(url: Option<String>) -> Result<Source, String> {
        if let Some(url) = url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "--url {:?}: expected an http:// or https:// URL such as http://127.0.0.1:3000/api/monitoring/metrics",
                    redact(&url)
                ));
            }
            let agent = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(10)))
                .http_status_as_error(false)
                .build()
                .into();
            return Ok(Source::Url {
                url,
                token: std::env::var("PERFMON_MONITORING_TOKEN").ok(),
                agent,
            });
        }
        // a reader: no alert engine, no pushes (whatever the shell's PERFMON_* variables say)
        let config = Config::from_env()
            .map_err(|e| e.to_string())?
            .into_builder()
            .no_alerts()
            .no_pushgateway()
            .build();
        if config.redis_url().is_none() && config.database_url().is_none() {
            return Err(
                "no --url and no tier: set PERFMON_REDIS_URL and/or PERFMON_DATABASE_URL, or name a service with --url".into(),
            );
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let perfmon = runtime
            .block_on(perfmon_runtime::init(config))
            .map_err(|e| e.to_string())?;
        Ok(Source::Tiers {
            runtime,
            _perfmon: Box::new(perfmon),
        })
    }

    /// The answer of `GET /api/monitoring/metrics` for the window and scope (one route's, with
    /// its latency distribution, given `path`).
    pub(crate) fn fetch(
        &self,
        window: Window,
        scope: Scope,
        path: Option<&str>,
    ) -> Result<Value, String> {
        match self {
            Source::Url { url, token, agent } => {
                let shown = redact(url);
                let mut query = format!("window={}&scope={}", window.as_str(), scope.as_str());
                if let Some(p) = path {
                    query.push_str("&type=api&path=");
                    query.push_str(&encode(p));
                }
                let sep = if url.contains('?') { '&' } else { '?' };
                let mut req = agent.get(format!("{url}{sep}{query}"));
                if let Some(t) = token {
                    req = req.header("Authorization", format!("Bearer {t}"));
                }
                let mut resp = req.call().map_err(|e| {
                    format!("{shown}: {}", e.to_string().replace(url.as_str(), &shown))
                })?;
                let status = resp.status().as_u16();
                let text = resp
                    .body_mut()
                    .read_to_string()
                    .map_err(|e| format!("{shown}: answered {status}: {e}"))?;
                let body: Value = serde_json::from_str(&text)
                    .map_err(|e| format!("{shown}: answered {status}, not JSON: {e}"))?;
                if body["success"] != true {
                    return Err(format!(
                        "{shown}: answered {status}: {}",
                        body["error"].as_str().unwrap_or("no reason given")
                    ));
                }
                Ok(body)
            }
            Source::Tiers { runtime, .. } => {
                let kind = if path.is_some() { "api" } else { "all" };
                let mut data = runtime
                    .block_on(perfmon_runtime::export::metrics_json(
                        kind, path, window, scope,
                    ))
                    .map_err(|e| e.to_string())?;
                // health and alerts would be this reader's own, not the services'
                if let Some(d) = data.as_object_mut() {
                    d.remove("system");
                    d.remove("alerts");
                }
                Ok(json!({
                    "success": true,
                    "window": window.as_str(),
                    "scope": scope.as_str(),
                    "data": data,
                }))
            }
        }
    }
}

/// Percent-encodes a query value.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A URL with any `user:password@` taken out, for messages.
pub(crate) fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host_end = rest.find('/').unwrap_or(rest.len());
            match rest[..host_end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}
