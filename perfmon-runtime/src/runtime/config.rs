//! Configuration: environment variables and a builder.

use std::time::Duration;

use crate::core::hist::HistogramKind;
use crate::core::limits::Limits;
use crate::core::secret::redact;
use crate::ops::alerts::{AlertConfig, Notification};
use crate::ops::notify::{is_http_url, Sinks};
use crate::read::sla::SlaTargets;

/// Everything `init` needs. Build it with [`Config::from_env`] or [`Config::builder`]. Its
/// `Debug` output hides credentials (passwords in URLs, webhook paths).
#[derive(Clone)]
pub struct Config {
    pub(crate) redis_url: Option<String>,
    pub(crate) database_url: Option<String>,
    pub(crate) key_prefix: String,
    pub(crate) instance: String,
    pub(crate) limits: Limits,
    pub(crate) api_slow: Duration,
    pub(crate) query_slow: Duration,
    pub(crate) cache_key_segments: usize,
    pub(crate) drain_interval: Duration,
    pub(crate) health_cache_ttl: Duration,
    pub(crate) health_check_timeout: Duration,
    pub(crate) critical_overrides: Vec<(String, bool)>,
    pub(crate) flush_interval: Duration,
    pub(crate) alerts: Option<AlertConfig>,
    pub(crate) alert_sinks: Sinks,
    pub(crate) sla: SlaTargets,
    pub(crate) monitoring_token: Option<String>,
    pub(crate) max_heavy_reads: usize,
    pub(crate) heavy_read_cache_ttl: Duration,
    pub(crate) heavy_read_timeout: Duration,
    pub(crate) read_threads: usize,
    /// Prometheus bucket bounds per `HistogramKind` (in its order), nanoseconds; `None`: the
    /// default.
    pub(crate) buckets: [Option<Vec<u64>>; 4],
    /// The Pushgateway's URL and the job the pushes are grouped under.
    pub(crate) pushgateway: Option<(String, String)>,
    pub(crate) push_interval: Duration,
    /// PEM root certificates `https://` sinks are checked against instead of the Mozilla roots.
    pub(crate) tls_roots: Option<Vec<u8>>,
    /// Split `perfmon_http_request_duration_seconds` by a `status_class` label.
    pub(crate) status_class_label: bool,
    /// At most one slow-call warning per series per this interval.
    pub(crate) slow_log_interval: Duration,
    /// The Apdex threshold T of routes without their own.
    pub(crate) apdex_threshold: Duration,
    /// Routes' own Apdex thresholds (over their `#[track_api(apdex)]`).
    pub(crate) route_apdex: Vec<(String, Duration)>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("redis_url", &self.redis_url.as_deref().map(redact))
            .field("database_url", &self.database_url.as_deref().map(redact))
            .field("key_prefix", &self.key_prefix)
            .field("instance", &self.instance)
            .field("limits", &self.limits)
            .field("api_slow", &self.api_slow)
            .field("query_slow", &self.query_slow)
            .field("cache_key_segments", &self.cache_key_segments)
            .field("drain_interval", &self.drain_interval)
            .field("health_cache_ttl", &self.health_cache_ttl)
            .field("health_check_timeout", &self.health_check_timeout)
            .field("critical_overrides", &self.critical_overrides)
            .field("flush_interval", &self.flush_interval)
            .field("tls_root_certificates", &self.tls_roots.is_some())
            .field("status_class_label", &self.status_class_label)
            .field("slow_log_interval", &self.slow_log_interval)
            .field("apdex_threshold", &self.apdex_threshold)
            .field("route_apdex", &self.route_apdex)
            .field("alerts", &self.alerts)
            .field("alert_sinks", &self.alert_sinks)
            .field("sla", &self.sla)
            .field(
                "monitoring_token",
                &self.monitoring_token.as_ref().map(|_| "<hidden>"),
            )
            .field("max_heavy_reads", &self.max_heavy_reads)
            .field("heavy_read_cache_ttl", &self.heavy_read_cache_ttl)
            .field("heavy_read_timeout", &self.heavy_read_timeout)
            .field("read_threads", &self.read_threads)
            .field("buckets", &self.buckets)
            .field(
                "pushgateway",
                &self
                    .pushgateway
                    .as_ref()
                    .map(|(url, job)| (redact(url), job)),
            )
            .field("push_interval", &self.push_interval)
            .finish()
    }
}

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// An environment variable holds something that is not valid for it.
    #[error("{var} is {value:?}: {expected}")]
    InvalidEnv {
        /// The variable.
        var: &'static str,
        /// Its value (credentials hidden).
        value: String,
        /// What it should hold.
        expected: &'static str,
    },
    /// A builder value is not valid.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// Which setting.
        what: &'static str,
        /// What is wrong and what is accepted.
        message: String,
    },
}

fn default_instance() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string());
    format!("{host}-{}", std::process::id())
}

impl Default for Config {
    fn default() -> Config {
        Config {
            redis_url: None,
            database_url: None,
            key_prefix: "perfmon".to_string(),
            instance: default_instance(),
            limits: Limits::default(),
            api_slow: Duration::from_secs(5),
            query_slow: Duration::from_millis(100),
            cache_key_segments: 2,
            drain_interval: Duration::from_millis(10),
            health_cache_ttl: Duration::from_secs(1),
            health_check_timeout: Duration::from_secs(2),
            critical_overrides: Vec::new(),
            flush_interval: Duration::from_secs(10),
            alerts: Some(AlertConfig::default()),
            alert_sinks: Sinks::default(),
            sla: SlaTargets::default(),
            monitoring_token: None,
            max_heavy_reads: 2,
            heavy_read_cache_ttl: Duration::from_secs(2),
            heavy_read_timeout: Duration::from_secs(60),
            read_threads: 1,
            buckets: Default::default(),
            pushgateway: None,
            push_interval: Duration::from_secs(15),
            tls_roots: None,
            status_class_label: false,
            slow_log_interval: Duration::from_secs(10),
            apdex_threshold: Duration::from_millis(500),
            route_apdex: Vec::new(),
        }
    }
}

impl Config {
    /// Reads `PERFMON_REDIS_URL`, `PERFMON_DATABASE_URL`, `PERFMON_KEY_PREFIX` (default
    /// `perfmon`), `PERFMON_INSTANCE` (default host name and pid), `PERFMON_ALERT_WEBHOOK` and
    /// `PERFMON_MONITORING_TOKEN`. Unset or empty variables keep their defaults.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let mut b = Config::builder();
        if let Some(v) = get("PERFMON_REDIS_URL") {
            let valid = |u: &str| {
                [
                    "redis://",
                    "rediss://",
                    "redis+unix://",
                    "redis+cluster://",
                    "rediss+cluster://",
                ]
                .iter()
                .any(|s| u.trim().starts_with(s))
            };
            let cluster = v.starts_with("redis+cluster://") || v.starts_with("rediss+cluster://");
            if !(cluster || valid(&v) || v.split(',').all(valid)) {
                return Err(ConfigError::InvalidEnv {
                    var: "PERFMON_REDIS_URL",
                    value: redact(&v),
                    expected: "a Redis URL such as redis://127.0.0.1:6379/, or a Redis Cluster as redis+cluster://host1:7000,host2:7000 or a comma-separated list of node URLs",
                });
            }
            b = b.redis_url(v);
        }
        if let Some(v) = get("PERFMON_DATABASE_URL") {
            if !(v.starts_with("postgres://") || v.starts_with("postgresql://")) {
                return Err(ConfigError::InvalidEnv {
                    var: "PERFMON_DATABASE_URL",
                    value: redact(&v),
                    expected: "a PostgreSQL URL such as postgres://user@127.0.0.1/db",
                });
            }
            b = b.database_url(v);
        }
        if let Some(v) = get("PERFMON_KEY_PREFIX") {
            if !valid_label(&v) {
                return Err(ConfigError::InvalidEnv {
                    var: "PERFMON_KEY_PREFIX",
                    value: v,
                    expected: "letters, digits, '-', '_' and ':' only",
                });
            }
            b = b.key_prefix(v);
        }
        if let Some(v) = get("PERFMON_ALERT_WEBHOOK") {
            if !is_http_url(&v) {
                return Err(ConfigError::InvalidEnv {
                    var: "PERFMON_ALERT_WEBHOOK",
                    value: redact(&v),
                    expected: "an http:// or https:// URL such as http://127.0.0.1:9000/alerts",
                });
            }
            b = b.alert_webhook(v);
        }
        if let Some(v) = get("PERFMON_STATUS_CLASS_LABEL") {
            let on = match v.as_str() {
                "1" | "true" | "on" => true,
                "0" | "false" | "off" => false,
                _ => {
                    return Err(ConfigError::InvalidEnv {
                        var: "PERFMON_STATUS_CLASS_LABEL",
                        value: v,
                        expected: "1, true or on; 0, false or off",
                    })
                }
            };
            b = b.status_class_label(on);
        }
        if let Some(v) = get("PERFMON_APDEX_THRESHOLD") {
            let t = env_duration(&v).ok_or(ConfigError::InvalidEnv {
                var: "PERFMON_APDEX_THRESHOLD",
                value: v.clone(),
                expected: "a duration above zero such as 500ms, 1s or 750us",
            })?;
            b = b.apdex_threshold(t);
        }
        if let Some(v) = get("PERFMON_ROUTE_APDEX") {
            for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let parsed = part
                    .rsplit_once('=')
                    .and_then(|(route, t)| Some((route.trim(), env_duration(t)?)))
                    .filter(|(route, _)| route.starts_with('/'));
                let Some((route, t)) = parsed else {
                    return Err(ConfigError::InvalidEnv {
                        var: "PERFMON_ROUTE_APDEX",
                        value: v.clone(),
                        expected: "route=duration pairs separated by commas, such as /api/staff=300ms,/api/schedule/assign=1s",
                    });
                };
                b = b.route_apdex(route, t);
            }
        }
        if let Some(path) = get("PERFMON_TLS_CA_FILE") {
            match std::fs::read(&path) {
                Ok(pem) => b = b.tls_root_certificates(pem),
                Err(e) => {
                    return Err(ConfigError::InvalidEnv {
                        var: "PERFMON_TLS_CA_FILE",
                        value: path,
                        expected: if e.kind() == std::io::ErrorKind::NotFound {
                            "a readable PEM file of root certificates (it does not exist)"
                        } else {
                            "a readable PEM file of root certificates"
                        },
                    })
                }
            }
        }
        if let Some(v) = get("PERFMON_MONITORING_TOKEN") {
            if !crate::core::secret::valid_token(&v) {
                return Err(ConfigError::InvalidEnv {
                    var: "PERFMON_MONITORING_TOKEN",
                    value: "<hidden>".into(),
                    expected: crate::core::secret::TOKEN_RULE,
                });
            }
            b = b.monitoring_token(v);
        }
        if let Some(v) = get("PERFMON_ALERTMANAGER_URL") {
            if !is_http_url(&v) {
                return Err(ConfigError::InvalidEnv {
                    var: "PERFMON_ALERTMANAGER_URL",
                    value: redact(&v),
                    expected: "an http:// or https:// URL such as http://127.0.0.1:9093",
                });
            }
            b = b.alertmanager(v);
        }
        if let Some(v) = get("PERFMON_PUSHGATEWAY_URL") {
            if !is_http_url(&v) {
                return Err(ConfigError::InvalidEnv {
                    var: "PERFMON_PUSHGATEWAY_URL",
                    value: redact(&v),
                    expected: "an http:// or https:// URL such as http://127.0.0.1:9091",
                });
            }
            let job = get("PERFMON_PUSHGATEWAY_JOB").unwrap_or_else(default_job);
            b = b.pushgateway(v, job);
        }
        if let Some(v) = get("PERFMON_INSTANCE") {
            if !valid_label(&v) {
                return Err(ConfigError::InvalidEnv {
                    var: "PERFMON_INSTANCE",
                    value: v,
                    expected: "letters, digits, '.', '-', '_' and ':' only",
                });
            }
            b = b.instance(v);
        }
        Ok(b.build())
    }

    /// A builder starting from this configuration, e.g. to adjust one read from the environment.
    pub fn into_builder(self) -> ConfigBuilder {
        ConfigBuilder { config: self }
    }

    /// A builder with every default.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config::default(),
        }
    }

    /// The Redis URL, if any.
    pub fn redis_url(&self) -> Option<&str> {
        self.redis_url.as_deref()
    }

    /// The PostgreSQL URL, if any.
    pub fn database_url(&self) -> Option<&str> {
        self.database_url.as_deref()
    }

    /// Prefix of every Redis key and PostgreSQL schema name.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// This instance's name.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The cardinality caps.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether the built-in check `name` is critical: the override if one was set, else `default`.
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    pub(crate) fn critical(&self, name: &str, default: bool) -> bool {
        self.critical_overrides
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map_or(default, |(_, c)| *c)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let require = |ok: bool, what: &'static str, message: &dyn Fn() -> String| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
                    what,
                    message: message(),
                })
            }
        };
        for (what, v) in [
            ("key_prefix", &self.key_prefix),
            ("instance", &self.instance),
        ] {
            require(valid_label(v), what, &|| {
                format!("{v:?} must be non-empty letters, digits, '-', '_', '.' or ':'")
            })?;
        }
        for (what, n) in [
            ("cache_key_segments", self.cache_key_segments),
            ("max_heavy_reads", self.max_heavy_reads),
        ] {
            require(n > 0, what, &|| "must be at least 1".into())?;
        }
        for (what, d) in [
            ("flush_interval", self.flush_interval),
            ("drain_interval", self.drain_interval),
            ("heavy_read_timeout", self.heavy_read_timeout),
            ("push_interval", self.push_interval),
        ] {
            require(!d.is_zero(), what, &|| "must be greater than zero".into())?;
        }
        require(
            (1..=64).contains(&self.read_threads),
            "read_threads",
            &|| format!("{} is not allowed; 1 to 64 threads", self.read_threads),
        )?;
        for (kind, bounds) in HistogramKind::ALL.iter().zip(&self.buckets) {
            if let Some(b) = bounds {
                let ok = !b.is_empty()
                    && b.len() <= MAX_BUCKETS
                    && b[0] > 0
                    && b.windows(2).all(|w| w[0] < w[1]);
                require(ok, "histogram_buckets", &|| {
                    format!("the {kind:?} bounds must be 1 to {MAX_BUCKETS} durations above zero, strictly increasing")
                })?;
            }
        }
        let http_url = |what: &'static str, url: &str, example: &str| {
            require(is_http_url(url), what, &|| {
                format!(
                    "{} is not allowed; an http:// or https:// URL such as {example}",
                    redact(url)
                )
            })
        };
        for t in
            std::iter::once(&self.apdex_threshold).chain(self.route_apdex.iter().map(|(_, t)| t))
        {
            require(!t.is_zero(), "apdex_threshold", &|| {
                "an Apdex threshold must be above zero, such as 300 ms".into()
            })?;
        }
        if let Some(url) = &self.alert_sinks.webhook {
            http_url("alert_webhook", url, "https://hooks.example.com/alerts")?;
        }
        if let Some(pem) = &self.tls_roots {
            if let Err(e) = crate::ops::notify::parse_pem_certificates(pem) {
                return Err(ConfigError::Invalid {
                    what: "tls_root_certificates",
                    message: e,
                });
            }
        }
        if let Some((url, job)) = &self.pushgateway {
            http_url("pushgateway", url, "http://127.0.0.1:9091")?;
            require(valid_label(job), "pushgateway", &|| {
                format!("job {job:?} must be letters, digits, '-', '_', '.' or ':'")
            })?;
        }
        if let Some(am) = &self.alert_sinks.alertmanager {
            http_url("alertmanager", &am.url, "http://127.0.0.1:9093")?;
        }
        if let Some(t) = &self.monitoring_token {
            require(
                crate::core::secret::valid_token(t),
                "monitoring_token",
                &|| crate::core::secret::TOKEN_RULE.into(),
            )?;
        }
        Ok(())
    }

    /// The monitoring token, if one is set.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn monitoring_token(&self) -> Option<&str> {
        self.monitoring_token.as_deref()
    }
}

impl crate::export::RuleSource for Config {
    fn alert_config(&self) -> Option<&AlertConfig> {
        self.alerts.as_ref()
    }

    fn sla_targets(&self) -> SlaTargets {
        self.sla
    }

    fn histogram_buckets(&self, kind: HistogramKind) -> Vec<Duration> {
        match &self.buckets[kind as usize] {
            Some(b) => b.iter().map(|&ns| Duration::from_nanos(ns)).collect(),
            None => crate::core::hist::default_bounds(),
        }
    }
}

/// Bucket bounds per histogram kind, at most.
const MAX_BUCKETS: usize = 64;

/// A duration above zero written `750us`, `300ms`, `1.5s` or `2m`.
fn env_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok()?;
    let secs = n * match unit.trim() {
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        _ => return None,
    };
    (secs.is_finite() && secs > 0.0 && secs < 86_400.0).then(|| Duration::from_secs_f64(secs))
}

/// The job a Pushgateway groups pushes under by default: the program's file name.
fn default_job() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "perfmon".into())
}

fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
}

/// Builds a [`Config`]; methods are named after the environment variables.
#[derive(Clone, Debug)]
#[must_use]
pub struct ConfigBuilder {
    config: Config,
}

impl ConfigBuilder {
    /// `PERFMON_REDIS_URL`: enables the Redis tiers. One URL names a single Redis
    /// (`redis://host:6379/`); a Redis Cluster is named by its seed nodes, either
    /// `redis+cluster://host1:7000,host2:7000` (`rediss+cluster://` with TLS; credentials before
    /// the first host apply to all) or a comma-separated list of node URLs.
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.config.redis_url = Some(url.into());
        self
    }
    /// `PERFMON_DATABASE_URL`: enables the PostgreSQL tiers.
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.config.database_url = Some(url.into());
        self
    }
    /// `PERFMON_KEY_PREFIX`: prefix of every key (default `perfmon`).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.key_prefix = prefix.into();
        self
    }
    /// `PERFMON_INSTANCE`: this instance's name (default host name and pid).
    pub fn instance(mut self, name: impl Into<String>) -> Self {
        self.config.instance = name.into();
        self
    }
    /// Cardinality caps (default [`Limits::default`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config.limits = limits;
        self
    }
    /// Slow threshold of hand-recorded API requests (default 5 s; `#[track_api]` has its own).
    pub fn api_slow(mut self, d: Duration) -> Self {
        self.config.api_slow = d;
        self
    }
    /// Slow threshold of hand-recorded queries (default 100 ms; `#[track_query]` has its own).
    pub fn query_slow(mut self, d: Duration) -> Self {
        self.config.query_slow = d;
        self
    }
    /// How many `:`-separated segments of a hand-recorded cache key form its key group
    /// (default 2: `fairness:stats:clinic-1:2025:10` → `fairness:stats`).
    pub fn cache_key_segments(mut self, n: usize) -> Self {
        self.config.cache_key_segments = n;
        self
    }
    /// How often the background worker drains the threads' rings (default 10 ms).
    pub fn drain_interval(mut self, d: Duration) -> Self {
        self.config.drain_interval = d;
        self
    }
    /// How long a health result is reused, so that polling under load does not hammer the
    /// backends (default 1 s; zero runs the checks on every call).
    pub fn health_cache_ttl(mut self, d: Duration) -> Self {
        self.config.health_cache_ttl = d;
        self
    }
    /// The timeout of the built-in backend checks (default 2 s).
    pub fn health_check_timeout(mut self, d: Duration) -> Self {
        self.config.health_check_timeout = d;
        self
    }
    /// Whether the built-in check `name` (`database` or `redis`) is critical: a failing critical
    /// check makes the system `unhealthy`, another one `degraded`. By default `database` is
    /// critical and `redis` is not.
    pub fn critical_check(mut self, name: impl Into<String>, critical: bool) -> Self {
        self.config.critical_overrides.push((name.into(), critical));
        self
    }
    /// How often the retention tiers are written (default 10 s).
    pub fn flush_interval(mut self, d: Duration) -> Self {
        self.config.flush_interval = d;
        self
    }
    /// The alert rules and their tick, window and pending duration (default: the seed's rules,
    /// evaluated every 30 s over 5 minutes).
    pub fn alerts(mut self, alerts: AlertConfig) -> Self {
        self.config.alerts = Some(alerts);
        self
    }
    /// `PERFMON_TLS_CA_FILE` (a file's path): check the certificates of `https://` webhooks,
    /// Alertmanagers and Pushgateways against these PEM root certificates only, instead of the
    /// Mozilla roots built in (a private CA, a self-signed test server).
    pub fn tls_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.config.tls_roots = Some(pem.into());
        self
    }
    /// `PERFMON_STATUS_CLASS_LABEL=1`: split `perfmon_http_request_duration_seconds` by a
    /// `status_class` label (`1xx` … `5xx`), so that latency objectives can leave out errors.
    /// Off by default: it multiplies the duration series by the classes each route answers
    /// with, and costs the aggregator one bucket update per request (off the hot path).
    pub fn status_class_label(mut self, on: bool) -> Self {
        self.config.status_class_label = on;
        self
    }
    /// At most one "slow request" / "slow query" / "slow call" warning per series per
    /// `interval` (default 10 s), each saying how many slow calls of the series it stands for
    /// since the previous one; `Duration::ZERO` logs every slow call. The slow lists and counters
    /// still count every one.
    pub fn slow_log_interval(mut self, interval: Duration) -> Self {
        self.config.slow_log_interval = interval;
        self
    }
    /// The Apdex threshold T of routes without their own (default 500 ms): a request at or
    /// under T is satisfied, at or under 4T tolerating, slower frustrated.
    pub fn apdex_threshold(mut self, t: Duration) -> Self {
        self.config.apdex_threshold = t;
        self
    }
    /// The Apdex threshold T of one route template, over its `#[track_api(apdex = "…")]`.
    pub fn route_apdex(mut self, route: impl Into<String>, t: Duration) -> Self {
        self.config.route_apdex.push((route.into(), t));
        self
    }
    /// No pushes to a Pushgateway (whatever `PERFMON_PUSHGATEWAY_URL` says).
    pub fn no_pushgateway(mut self) -> Self {
        self.config.pushgateway = None;
        self
    }
    /// No alert evaluation.
    pub fn no_alerts(mut self) -> Self {
        self.config.alerts = None;
        self
    }
    /// `PERFMON_ALERT_WEBHOOK`: POST every alert notification as JSON to this `http://` or
    /// `https://` URL (5 s an attempt, 3 tries with backoff, through a queue of
    /// [`DELIVERY_QUEUE`](crate::alerts::DELIVERY_QUEUE); see
    /// [`delivery_stats`](crate::alerts::delivery_stats)).
    pub fn alert_webhook(mut self, url: impl Into<String>) -> Self {
        self.config.alert_sinks.webhook = Some(url.into());
        self
    }
    /// `PERFMON_ALERTMANAGER_URL`: send the alerts to this Alertmanager's API v2 (`http://` or
    /// `https://`, such as `http://127.0.0.1:9093`), labelled with the rule, severity and this instance,
    /// with `startsAt`, and `endsAt` once resolved; firing alerts are sent again at every tick.
    pub fn alertmanager(mut self, url: impl Into<String>) -> Self {
        self.config.alert_sinks.alertmanager = Some(crate::ops::notify::Alertmanager {
            url: url.into(),
            instance: String::new(),
        });
        self
    }
    /// Call `f` with every alert notification.
    pub fn alert_callback(mut self, f: impl Fn(&Notification) + Send + Sync + 'static) -> Self {
        self.config.alert_sinks.callback = Some(std::sync::Arc::new(f));
        self
    }
    /// The SLA targets (default: the seed's).
    pub fn sla(mut self, targets: SlaTargets) -> Self {
        self.config.sla = targets;
        self
    }
    /// `PERFMON_MONITORING_TOKEN`: lock the monitoring routes (see
    /// `http::router`, feature `axum`): every route but liveness, readiness and health's
    /// status needs `Authorization: Bearer <token>`. 16 to 256 printable ASCII characters; a long
    /// random value, such as `openssl rand -hex 32` prints. Without it, `init` still takes the
    /// token from `PERFMON_MONITORING_TOKEN` when that is set, whatever built the configuration.
    pub fn monitoring_token(mut self, token: impl Into<String>) -> Self {
        self.config.monitoring_token = Some(token.into());
        self
    }
    /// How many long-window reads of `GET /api/monitoring/metrics` (every window but `5m` of
    /// this instance) may load at once (default 2); a request that would start one more is
    /// answered 429. Identical requests share one load and do not count twice.
    pub fn max_heavy_reads(mut self, n: usize) -> Self {
        self.config.max_heavy_reads = n;
        self
    }
    /// How long the answer of a long-window read of `GET /api/monitoring/metrics` is reused for
    /// the same request (default 2 s; zero keeps none).
    pub fn heavy_read_cache_ttl(mut self, d: Duration) -> Self {
        self.config.heavy_read_cache_ttl = d;
        self
    }
    /// The longest a long-window read of `GET /api/monitoring/metrics` may take (default 60 s);
    /// then its callers are answered 503 and its place under `max_heavy_reads` is freed.
    pub fn heavy_read_timeout(mut self, d: Duration) -> Self {
        self.config.heavy_read_timeout = d;
        self
    }
    /// Threads of the pool long-window reads of the monitoring endpoint run on, at the lowest
    /// CPU priority, off the application's async workers (default 1; 1 to 64). Read when the
    /// pool starts, at the first such read.
    pub fn read_threads(mut self, n: usize) -> Self {
        self.config.read_threads = n;
        self
    }
    /// The Prometheus bucket bounds of one kind of histogram (default: 100 µs, 250 µs, 500 µs,
    /// 1 ms, 2.5 ms, 5 ms, 10 ms, 25 ms, 50 ms, 100 ms, 250 ms, 500 ms, 1 s, 2.5 s, 3 s, 5 s, 10 s,
    /// 30 s, 60 s): 1 to 64 durations, strictly increasing. Each bucket's count is exact up to
    /// the HDR bin width (0.1%). Changing the bounds at a later `init` starts the histograms'
    /// lifetime counts again (a counter reset, to Prometheus).
    pub fn histogram_buckets(mut self, kind: HistogramKind, bounds: &[Duration]) -> Self {
        self.config.buckets[kind as usize] = Some(
            bounds
                .iter()
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                .collect(),
        );
        self
    }
    /// `PERFMON_PUSHGATEWAY_URL` (and `PERFMON_PUSHGATEWAY_JOB`, default the program's file
    /// name): push the Prometheus text to this Pushgateway (`http://`), grouped by `job` and
    /// this instance's name, every `push_interval` and once more at `shutdown()` — for batch
    /// programs that end before a scrape would find them. Each push replaces the group.
    pub fn pushgateway(mut self, url: impl Into<String>, job: impl Into<String>) -> Self {
        self.config.pushgateway = Some((url.into(), job.into()));
        self
    }
    /// How often the Pushgateway is pushed to while the program runs (default 15 s).
    pub fn push_interval(mut self, d: Duration) -> Self {
        self.config.push_interval = d;
        self
    }
    /// The configuration; `init` validates it.
    pub fn build(self) -> Config {
        self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_defaults_and_overrides() {
        let c = Config::from_lookup(|_| None).expect("defaults");
        assert_eq!(c.key_prefix(), "perfmon");
        assert!(c.instance().ends_with(&format!("-{}", std::process::id())));
        let c = Config::from_lookup(|k| match k {
            "PERFMON_REDIS_URL" => Some("redis://127.0.0.1:6379/".into()),
            "PERFMON_KEY_PREFIX" => Some("shop".into()),
            "PERFMON_INSTANCE" => Some("web-1".into()),
            _ => None,
        })
        .expect("valid");
        assert_eq!(c.redis_url(), Some("redis://127.0.0.1:6379/"));
        assert_eq!((c.key_prefix(), c.instance()), ("shop", "web-1"));
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        let e =
            Config::from_lookup(|k| (k == "PERFMON_DATABASE_URL").then(|| "mysql://x".to_string()))
                .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("PERFMON_DATABASE_URL is \"mysql://x\""),
            "{e}"
        );
        let e = Config::from_lookup(|k| (k == "PERFMON_KEY_PREFIX").then(|| "a b".to_string()))
            .unwrap_err();
        assert!(e.to_string().contains("PERFMON_KEY_PREFIX"), "{e}");
        for cluster in [
            "redis+cluster://127.0.0.1:7379,127.0.0.1:7380",
            "redis://127.0.0.1:7379,redis://127.0.0.1:7380",
        ] {
            let c =
                Config::from_lookup(|k| (k == "PERFMON_REDIS_URL").then(|| cluster.to_string()))
                    .expect("a cluster");
            assert_eq!(c.redis_url(), Some(cluster));
        }
        let c = Config::from_lookup(|k| {
            (k == "PERFMON_REDIS_URL").then(|| "redis://:p,w@h:6379/".to_string())
        })
        .expect("a comma in a password");
        assert_eq!(c.redis_url(), Some("redis://:p,w@h:6379/"));
        let e = Config::from_lookup(|k| {
            (k == "PERFMON_REDIS_URL").then(|| "http://a:1,http://b".to_string())
        })
        .unwrap_err();
        assert!(e.to_string().contains("redis+cluster://"), "{e}");
    }

    #[test]
    fn apdex_thresholds_from_the_environment() {
        let c = Config::from_lookup(|k| match k {
            "PERFMON_APDEX_THRESHOLD" => Some("750ms".into()),
            "PERFMON_ROUTE_APDEX" => Some("/api/staff=300ms, /api/schedule/assign=1.5s".into()),
            _ => None,
        })
        .expect("valid");
        assert_eq!(c.apdex_threshold, Duration::from_millis(750));
        assert_eq!(
            c.route_apdex,
            vec![
                ("/api/staff".to_string(), Duration::from_millis(300)),
                (
                    "/api/schedule/assign".to_string(),
                    Duration::from_millis(1500)
                ),
            ]
        );
        for (var, bad) in [
            ("PERFMON_APDEX_THRESHOLD", "fast"),
            ("PERFMON_APDEX_THRESHOLD", "0ms"),
            ("PERFMON_ROUTE_APDEX", "/api/staff"),
            ("PERFMON_ROUTE_APDEX", "staff=300ms"),
            ("PERFMON_STATUS_CLASS_LABEL", "maybe"),
        ] {
            let e = Config::from_lookup(|k| (k == var).then(|| bad.to_string())).unwrap_err();
            assert!(e.to_string().contains(var), "{var}={bad}: {e}");
        }
    }
}
