//! Alerts: the seed's rules, evaluated on a tick over a sliding window, with a pending duration
//! before firing, a minimum request count, and resolve hysteresis, so that each incident notifies
//! once when it fires and once when it resolves.
//!
//! Windows slide by the tick, not by the minute: every tick takes the cumulative counters since
//! start (the same monotonic totals Prometheus reads) and a rule looks at the difference between
//! now and one window ago — exact counts, any window length.
//!
//! | rule | severity | condition (defaults) |
//! | --- | --- | --- |
//! | `api-error-rate-critical` | critical | 4xx+5xx above 5% of at least 20 requests |
//! | `api-latency-critical` | critical | mean response time above 5 s over at least 20 requests |
//! | `system-unhealthy` | critical | `system_health()` is `unhealthy` |
//! | `batch-failure` | critical | a batch run failed (fires at once; resolves on that batch's next success) |
//! | `api-error-rate-warning` | warning | 4xx+5xx above 2% |
//! | `api-latency-warning` | warning | mean response time above 3 s |
//! | `cache-hit-rate-low` | warning | hit rate below 80% of at least 20 operations |
//! | `slow-queries-rising` | warning | slow queries in the window at least twice the baseline and at least 10, the baseline being the mean of the same count over the previous hour (needs 30 minutes of history) |
//!
//! A threshold rule fires after its condition held for the pending duration (60 s by default)
//! and resolves once the value is back past the threshold by 10% (below 90% of an "above"
//! threshold, above 110% of a "below" one) for the same duration.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::core::kind::{Kind, CACHE_ERROR, HIT, MISS};
use crate::core::sync::lock;
use crate::ops::health::HealthStatus;
use crate::pipeline::state::Drained;
use crate::read::stats::percent;

/// How bad an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Monitor it.
    Warning,
    /// Act now.
    Critical,
}

/// What an [`AlertInputs`]-based custom rule returns for each key it watches: the value and
/// whether it is breached and (for hysteresis) whether it is clearly back to normal.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    /// What the reading is about, e.g. a route (`""` for the whole service).
    pub key: String,
    /// The measured value.
    pub value: f64,
    /// The condition holds.
    pub breached: bool,
    /// The value is back past the threshold with margin: an incident may resolve.
    pub recovered: bool,
}

/// A custom rule: readings computed from the window's figures.
pub type CustomRule = Arc<dyn Fn(&AlertInputs) -> Vec<Reading> + Send + Sync>;

/// A notification callback.
pub type Callback = Arc<dyn Fn(&Notification) + Send + Sync>;

/// A rule's condition.
#[derive(Clone)]
pub enum Condition {
    /// 4xx and 5xx responses above this percentage of the window's requests.
    ErrorRateAbove(f64),
    /// Mean response time above this.
    AvgDurationAbove(Duration),
    /// Cache hit rate below this percentage.
    CacheHitRateBelow(f64),
    /// `system_health()` reports `unhealthy`.
    Unhealthy,
    /// A batch run failed.
    BatchFailed,
    /// Slow queries in the window at least `factor` × the previous hour's mean, and at least
    /// `min_count`.
    SlowQueriesRising {
        /// Multiple of the baseline.
        factor: f64,
        /// Smallest count that can fire.
        min_count: u64,
    },
    /// Your own: readings computed from the window's figures (per route, per table, ...).
    Custom(CustomRule),
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Condition::ErrorRateAbove(v) => write!(f, "ErrorRateAbove({v})"),
            Condition::AvgDurationAbove(d) => write!(f, "AvgDurationAbove({d:?})"),
            Condition::CacheHitRateBelow(v) => write!(f, "CacheHitRateBelow({v})"),
            Condition::Unhealthy => f.write_str("Unhealthy"),
            Condition::BatchFailed => f.write_str("BatchFailed"),
            Condition::SlowQueriesRising { factor, min_count } => {
                write!(f, "SlowQueriesRising({factor}, {min_count})")
            }
            Condition::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// One rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Its name, in notifications.
    pub name: String,
    /// Its severity.
    pub severity: Severity,
    /// What it watches.
    pub condition: Condition,
    /// How long the condition must hold before firing (and be gone before resolving); `None`
    /// for the engine's default.
    pub pending: Option<Duration>,
}

impl Rule {
    /// A rule with the engine's pending duration.
    pub fn new(name: impl Into<String>, severity: Severity, condition: Condition) -> Rule {
        Rule {
            name: name.into(),
            severity,
            condition,
            pending: None,
        }
    }

    /// Its own pending duration.
    pub fn pending(mut self, d: Duration) -> Rule {
        self.pending = Some(d);
        self
    }
}

/// The seed's rules with their thresholds.
pub fn default_rules() -> Vec<Rule> {
    vec![
        Rule::new(
            "api-error-rate-critical",
            Severity::Critical,
            Condition::ErrorRateAbove(5.0),
        ),
        Rule::new(
            "api-latency-critical",
            Severity::Critical,
            Condition::AvgDurationAbove(Duration::from_secs(5)),
        ),
        Rule::new("system-unhealthy", Severity::Critical, Condition::Unhealthy),
        Rule::new("batch-failure", Severity::Critical, Condition::BatchFailed),
        Rule::new(
            "api-error-rate-warning",
            Severity::Warning,
            Condition::ErrorRateAbove(2.0),
        ),
        Rule::new(
            "api-latency-warning",
            Severity::Warning,
            Condition::AvgDurationAbove(Duration::from_secs(3)),
        ),
        Rule::new(
            "cache-hit-rate-low",
            Severity::Warning,
            Condition::CacheHitRateBelow(80.0),
        ),
        Rule::new(
            "slow-queries-rising",
            Severity::Warning,
            Condition::SlowQueriesRising {
                factor: 2.0,
                min_count: 10,
            },
        ),
    ]
}

/// A notification: an incident fired or resolved.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// The rule.
    pub rule: String,
    /// What it is about (`""` for the whole service, else a batch, route, ...).
    pub key: String,
    /// Its severity.
    pub severity: Severity,
    /// `firing` or `resolved`.
    pub state: AlertState,
    /// The value that decided it.
    pub value: f64,
    /// When the incident started (the condition first held).
    #[serde(serialize_with = "crate::read::stats::ser_time")]
    pub since: SystemTime,
    /// When this notification was made.
    #[serde(serialize_with = "crate::read::stats::ser_time")]
    pub at: SystemTime,
    /// A sentence for people.
    pub message: String,
}

/// Firing or resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The incident is on.
    Firing,
    /// It is over.
    Resolved,
}

/// Cumulative counters since start, as the engine samples them on each tick.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    /// API requests.
    pub requests: u64,
    /// API 4xx and 5xx responses.
    pub errors: u64,
    /// Sum of API durations, ns.
    pub duration_ns: u64,
    /// Cache hits.
    pub cache_hits: u64,
    /// Cache operations.
    pub cache_ops: u64,
    /// Slow queries.
    pub slow_queries: u64,
    /// Per route (`METHOD path`).
    pub routes: BTreeMap<String, RouteCounters>,
}

/// One route's cumulative counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteCounters {
    /// Requests.
    pub requests: u64,
    /// 4xx and 5xx responses.
    pub errors: u64,
    /// Sum of durations, ns.
    pub duration_ns: u64,
}

impl RouteCounters {
    fn minus(&self, o: &RouteCounters) -> RouteCounters {
        RouteCounters {
            requests: self.requests.saturating_sub(o.requests),
            errors: self.errors.saturating_sub(o.errors),
            duration_ns: self.duration_ns.saturating_sub(o.duration_ns),
        }
    }
}

impl Counters {
    /// The counters of the collector this thread records into, now.
    pub fn now() -> Counters {
        Counters::from_drained(&crate::read::collector::collector().state.drained())
    }

    /// The counters of one drained view.
    pub(crate) fn from_drained(agg: &Drained<'_>) -> Counters {
        let mut c = Counters::default();
        for (info, t) in agg.totals(&[Kind::Api]) {
            let errors: u64 = t
                .statuses
                .iter()
                .filter(|(s, _)| *s >= 400)
                .map(|(_, n)| n)
                .sum();
            c.requests += t.events;
            c.errors += errors;
            c.duration_ns += t.hist.sum_ns;
            let r = c
                .routes
                .entry(format!("{} {}", info.method, info.name))
                .or_default();
            r.requests += t.events;
            r.errors += errors;
            r.duration_ns += t.hist.sum_ns;
        }
        for (_, t) in agg.totals(&[Kind::Cache]) {
            c.cache_hits += t.outcomes[usize::from(HIT)];
            c.cache_ops += t.outcomes[usize::from(HIT)]
                + t.outcomes[usize::from(MISS)]
                + t.outcomes[usize::from(CACHE_ERROR)];
        }
        for (_, t) in agg.totals(&[Kind::Query]) {
            c.slow_queries += t.slow;
        }
        c
    }

    fn minus(&self, o: &Counters) -> Counters {
        Counters {
            requests: self.requests.saturating_sub(o.requests),
            errors: self.errors.saturating_sub(o.errors),
            duration_ns: self.duration_ns.saturating_sub(o.duration_ns),
            cache_hits: self.cache_hits.saturating_sub(o.cache_hits),
            cache_ops: self.cache_ops.saturating_sub(o.cache_ops),
            slow_queries: self.slow_queries.saturating_sub(o.slow_queries),
            routes: self
                .routes
                .iter()
                .map(|(k, r)| {
                    (
                        k.clone(),
                        r.minus(&o.routes.get(k).copied().unwrap_or_default()),
                    )
                })
                .collect(),
        }
    }
}

/// What the rules see on a tick: the window's figures and the state of the system.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlertInputs {
    /// The window's counters (differences of the cumulative ones).
    pub window: Counters,
    /// Overall health.
    pub health: Option<HealthStatus>,
    /// Per batch: (last success, last failure).
    pub batches: BTreeMap<String, (Option<SystemTime>, Option<SystemTime>)>,
    /// Mean slow-query count per window over the previous hour, once 30 minutes are known.
    pub slow_baseline: Option<f64>,
}

impl AlertInputs {
    /// Error rate of the window, percent.
    pub fn error_rate(&self) -> f64 {
        percent(self.window.errors, self.window.requests)
    }
    /// Mean response time of the window.
    pub fn avg_duration(&self) -> Duration {
        Duration::from_nanos(
            self.window
                .duration_ns
                .checked_div(self.window.requests)
                .unwrap_or(0),
        )
    }
    /// Cache hit rate of the window, percent.
    pub fn cache_hit_rate(&self) -> f64 {
        percent(self.window.cache_hits, self.window.cache_ops)
    }
}

/// Engine settings.
#[derive(Clone, Debug)]
pub struct AlertConfig {
    /// How often rules are evaluated (default 30 s).
    pub tick: Duration,
    /// The sliding window (default 5 min).
    pub window: Duration,
    /// Default pending duration before firing and before resolving (default 60 s).
    pub pending: Duration,
    /// Fewest requests (or cache operations) in the window for a rate rule to fire (default 20).
    pub min_requests: u64,
    /// The rules (default: [`default_rules`]).
    pub rules: Vec<Rule>,
}

impl Default for AlertConfig {
    fn default() -> AlertConfig {
        AlertConfig {
            tick: Duration::from_secs(30),
            window: Duration::from_secs(300),
            pending: Duration::from_secs(60),
            min_requests: 20,
            rules: default_rules(),
        }
    }
}

#[derive(Clone, Debug)]
struct Incident {
    since: SystemTime,
    firing: bool,
    /// While firing: when the value first looked recovered (for the resolve delay).
    recovered_since: Option<SystemTime>,
}

/// The rules engine. [`AlertEngine::tick`] is pure given its inputs, so tests drive it with any
/// clock; the background task feeds it the process' counters.
#[derive(Debug)]
pub struct AlertEngine {
    config: AlertConfig,
    incidents: BTreeMap<(usize, String), Incident>,
    samples: VecDeque<(SystemTime, Counters)>,
    slow_history: VecDeque<(SystemTime, u64)>,
    history: VecDeque<Notification>,
    /// Per batch, the last failure already seen by a tick.
    seen_failures: BTreeMap<String, SystemTime>,
}

/// Notifications kept for `GET /api/monitoring/alerts`.
pub const ALERT_HISTORY: usize = 100;

impl AlertEngine {
    /// An engine with `config`.
    pub fn new(config: AlertConfig) -> AlertEngine {
        AlertEngine {
            config,
            incidents: BTreeMap::new(),
            samples: VecDeque::new(),
            slow_history: VecDeque::new(),
            history: VecDeque::new(),
            seen_failures: BTreeMap::new(),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &AlertConfig {
        &self.config
    }

    /// Builds the inputs for `now` from cumulative counters: the window is the difference with
    /// the oldest sample at most a window old.
    pub fn inputs(
        &mut self,
        now: SystemTime,
        counters: Counters,
        health: Option<HealthStatus>,
        batches: BTreeMap<String, (Option<SystemTime>, Option<SystemTime>)>,
    ) -> AlertInputs {
        let window = self.config.window;
        // the base is the newest sample at least a window old (the difference then covers the
        // window, plus at most one tick), or zero while the process is younger than the window
        let old_enough = |t: &SystemTime| now.duration_since(*t).unwrap_or_default() >= window;
        while self.samples.get(1).is_some_and(|(t, _)| old_enough(t)) {
            self.samples.pop_front();
        }
        let base = match self.samples.front() {
            Some((t, c)) if old_enough(t) => c.clone(),
            _ => Counters::default(),
        };
        let delta = counters.minus(&base);
        self.samples.push_back((now, counters));
        // the slow-query baseline: this window's count, sampled each tick, over the last hour
        self.slow_history.push_back((now, delta.slow_queries));
        while self.slow_history.front().is_some_and(|(t, _)| {
            now.duration_since(*t).unwrap_or_default() > Duration::from_secs(3600)
        }) {
            self.slow_history.pop_front();
        }
        let older: Vec<u64> = self
            .slow_history
            .iter()
            .filter(|(t, _)| now.duration_since(*t).unwrap_or_default() >= window)
            .map(|(_, n)| *n)
            .collect();
        let known = self.slow_history.front().map_or(Duration::ZERO, |(t, _)| {
            now.duration_since(*t).unwrap_or_default()
        });
        let slow_baseline = (known >= Duration::from_secs(1800) && !older.is_empty())
            .then(|| older.iter().sum::<u64>() as f64 / older.len() as f64);
        AlertInputs {
            window: delta,
            health,
            batches,
            slow_baseline,
        }
    }

    fn readings(&self, rule: &Rule, inp: &AlertInputs) -> Vec<Reading> {
        let min = self.config.min_requests;
        let service = |value: f64, breached: bool, recovered: bool| {
            vec![Reading {
                key: String::new(),
                value,
                breached,
                recovered,
            }]
        };
        match &rule.condition {
            Condition::ErrorRateAbove(t) => {
                let v = inp.error_rate();
                service(v, inp.window.requests >= min && v > *t, v < t * 0.9)
            }
            Condition::AvgDurationAbove(t) => {
                let v = inp.avg_duration();
                service(
                    v.as_secs_f64() * 1000.0,
                    inp.window.requests >= min && v > *t,
                    v.as_secs_f64() < t.as_secs_f64() * 0.9,
                )
            }
            Condition::CacheHitRateBelow(t) => {
                let v = inp.cache_hit_rate();
                service(
                    v,
                    inp.window.cache_ops >= min && v < *t,
                    inp.window.cache_ops < min || v >= (t * 1.1).min(100.0),
                )
            }
            Condition::Unhealthy => {
                let bad = inp.health == Some(HealthStatus::Unhealthy);
                service(f64::from(u8::from(bad)), bad, !bad)
            }
            Condition::BatchFailed => inp
                .batches
                .iter()
                .map(|(name, (ok, failed))| {
                    // a failure since the last tick fires, even if a success followed it
                    let new_failure =
                        failed.is_some() && *failed > self.seen_failures.get(name).copied();
                    let recovered = !new_failure && ok.is_some() && *ok > *failed;
                    Reading {
                        key: name.clone(),
                        value: f64::from(u8::from(new_failure)),
                        breached: new_failure,
                        recovered,
                    }
                })
                .collect(),
            Condition::SlowQueriesRising { factor, min_count } => {
                let v = inp.window.slow_queries as f64;
                match inp.slow_baseline {
                    Some(b) => service(
                        v,
                        v >= *min_count as f64 && v >= factor * b,
                        v < factor * b * 0.9 || v < *min_count as f64,
                    ),
                    None => service(v, false, true),
                }
            }
            Condition::Custom(f) => f(inp),
        }
    }

    /// Evaluates every rule at `now` and returns what fired or resolved.
    pub fn tick(&mut self, now: SystemTime, inputs: &AlertInputs) -> Vec<Notification> {
        let mut out = Vec::new();
        for (i, rule) in self.config.rules.iter().enumerate() {
            // a batch failure fires at once; the others wait for their pending duration
            let pending = match rule.condition {
                Condition::BatchFailed => Duration::ZERO,
                _ => rule.pending.unwrap_or(self.config.pending),
            };
            for r in self.readings(rule, inputs) {
                let id = (i, r.key.clone());
                let notify = |state, since: SystemTime, message: String| Notification {
                    rule: rule.name.clone(),
                    key: r.key.clone(),
                    severity: rule.severity,
                    state,
                    value: r.value,
                    since,
                    at: now,
                    message,
                };
                match self.incidents.get_mut(&id) {
                    None if r.breached => {
                        let firing = pending.is_zero();
                        self.incidents.insert(
                            id.clone(),
                            Incident {
                                since: now,
                                firing,
                                recovered_since: None,
                            },
                        );
                        if firing {
                            out.push(notify(
                                AlertState::Firing,
                                now,
                                format!("{} fired: {:.2}", rule.name, r.value),
                            ));
                        }
                    }
                    None => {}
                    Some(inc) if !inc.firing => {
                        if !r.breached {
                            self.incidents.remove(&id);
                        } else if now.duration_since(inc.since).unwrap_or_default() >= pending {
                            inc.firing = true;
                            out.push(notify(
                                AlertState::Firing,
                                inc.since,
                                format!("{} fired: {:.2}", rule.name, r.value),
                            ));
                        }
                    }
                    Some(inc) => {
                        if r.recovered && !r.breached {
                            let since = *inc.recovered_since.get_or_insert(now);
                            if now.duration_since(since).unwrap_or_default() >= pending {
                                let started = inc.since;
                                self.incidents.remove(&id);
                                out.push(notify(
                                    AlertState::Resolved,
                                    started,
                                    format!("{} resolved: {:.2}", rule.name, r.value),
                                ));
                            }
                        } else {
                            inc.recovered_since = None;
                        }
                    }
                }
            }
        }
        for (name, (_, failed)) in &inputs.batches {
            if let Some(f) = failed {
                self.seen_failures.insert(name.clone(), *f);
            }
        }
        for n in &out {
            if self.history.len() == ALERT_HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(n.clone());
        }
        out
    }

    /// The incidents firing now, as their last firing notification.
    pub fn active(&self) -> Vec<Notification> {
        self.history
            .iter()
            .rev()
            .filter(|n| n.state == AlertState::Firing)
            .filter(|n| {
                self.config.rules.iter().enumerate().any(|(i, r)| {
                    r.name == n.rule
                        && self
                            .incidents
                            .get(&(i, n.key.clone()))
                            .is_some_and(|inc| inc.firing && inc.since == n.since)
                })
            })
            .cloned()
            .collect()
    }

    /// The last notifications, newest first.
    pub fn history(&self) -> Vec<Notification> {
        self.history.iter().rev().cloned().collect()
    }

    /// What [`alerts`] shows.
    pub fn board(&self) -> Alerts {
        Alerts {
            active: self.active(),
            history: self.history(),
        }
    }
}

/// The incidents firing now and the recent notifications, as the running engine last published
/// them (`GET /api/monitoring/alerts`, the dashboard, Prometheus, Redis).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Alerts {
    /// The incidents firing now, as their last firing notification.
    pub active: Vec<Notification>,
    /// The last notifications, newest first.
    pub history: Vec<Notification>,
}

/// What the engine last published; empty without a running engine.
static BOARD: Mutex<Option<Alerts>> = Mutex::new(None);

/// Publishes the engine's state (`None` when the engine stops).
pub(crate) fn publish(alerts: Option<Alerts>) {
    *lock(&BOARD) = alerts;
}

/// The incidents firing now and the recent notifications, newest first (empty without a
/// running engine).
pub fn alerts() -> Alerts {
    lock(&BOARD).clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000;

    fn at(secs: u64) -> SystemTime {
        std::time::UNIX_EPOCH + Duration::from_secs(T0 + secs)
    }

    fn engine(rules: Vec<Rule>) -> AlertEngine {
        AlertEngine::new(AlertConfig {
            rules,
            ..AlertConfig::default()
        })
    }

    fn api(requests: u64, errors: u64, avg_ms: u64) -> AlertInputs {
        AlertInputs {
            window: Counters {
                requests,
                errors,
                duration_ns: requests * avg_ms * 1_000_000,
                ..Counters::default()
            },
            ..AlertInputs::default()
        }
    }

    fn states(ns: &[Notification]) -> Vec<(String, AlertState)> {
        ns.iter().map(|n| (n.rule.clone(), n.state)).collect()
    }

    #[test]
    fn error_rate_fires_after_pending_once_and_resolves_with_hysteresis() {
        let mut e = engine(vec![Rule::new(
            "err",
            Severity::Critical,
            Condition::ErrorRateAbove(5.0),
        )]);
        assert!(e.tick(at(0), &api(100, 10, 5)).is_empty(), "pending");
        assert!(e.tick(at(30), &api(100, 10, 5)).is_empty(), "still pending");
        let fired = e.tick(at(60), &api(100, 10, 5));
        assert_eq!(states(&fired), vec![("err".into(), AlertState::Firing)]);
        assert_eq!(fired[0].since, at(0));
        assert!(
            e.tick(at(90), &api(100, 10, 5)).is_empty(),
            "no duplicate while firing"
        );
        assert_eq!(e.active().len(), 1);
        assert!(
            e.tick(at(100), &api(100, 5, 5)).is_empty(),
            "5% is not breached, but not clearly back (hysteresis)"
        );
        assert!(
            e.tick(at(110), &api(100, 1, 5)).is_empty(),
            "recovered, waiting"
        );
        assert!(e.tick(at(169), &api(100, 1, 5)).is_empty());
        let resolved = e.tick(at(170), &api(100, 1, 5));
        assert_eq!(
            states(&resolved),
            vec![("err".into(), AlertState::Resolved)]
        );
        assert!(e.tick(at(200), &api(100, 1, 5)).is_empty());
        assert!(e.active().is_empty());
        assert_eq!(e.history().len(), 2);
    }

    #[test]
    fn a_breach_shorter_than_pending_never_fires_and_few_requests_never_breach() {
        let mut e = engine(vec![Rule::new(
            "err",
            Severity::Critical,
            Condition::ErrorRateAbove(5.0),
        )]);
        assert!(e.tick(at(0), &api(100, 10, 5)).is_empty());
        assert!(e.tick(at(30), &api(100, 0, 5)).is_empty());
        assert!(
            e.tick(at(90), &api(100, 10, 5)).is_empty(),
            "the pending clock restarted"
        );
        let mut e = engine(vec![Rule::new(
            "err",
            Severity::Critical,
            Condition::ErrorRateAbove(5.0),
        )]);
        for t in 0..10 {
            assert!(
                e.tick(at(t * 60), &api(19, 19, 5)).is_empty(),
                "under 20 requests"
            );
        }
    }

    #[test]
    fn the_seeds_rules_fire_on_their_own_thresholds() {
        let mut e = engine(default_rules());
        let mut inputs = api(100, 3, 4_000); // 3% errors, 4 s average
        inputs.window.cache_ops = 100;
        inputs.window.cache_hits = 70;
        inputs.health = Some(HealthStatus::Unhealthy);
        e.tick(at(0), &inputs);
        let mut fired: Vec<String> = e
            .tick(at(60), &inputs)
            .into_iter()
            .map(|n| n.rule)
            .collect();
        fired.sort();
        assert_eq!(
            fired,
            vec![
                "api-error-rate-warning",
                "api-latency-warning",
                "cache-hit-rate-low",
                "system-unhealthy"
            ]
        );
        let mut worse = api(100, 6, 6_000);
        worse.window.cache_ops = 100;
        worse.window.cache_hits = 70;
        worse.health = Some(HealthStatus::Unhealthy);
        e.tick(at(90), &worse);
        let mut fired: Vec<String> = e
            .tick(at(150), &worse)
            .into_iter()
            .map(|n| n.rule)
            .collect();
        fired.sort();
        assert_eq!(
            fired,
            vec!["api-error-rate-critical", "api-latency-critical"]
        );
        // cache at 85% is above the threshold but inside the hysteresis band: still firing
        let mut better = api(100, 0, 10);
        better.window.cache_ops = 100;
        better.window.cache_hits = 85;
        better.health = Some(HealthStatus::Healthy);
        e.tick(at(200), &better);
        let resolved: Vec<String> = e
            .tick(at(260), &better)
            .into_iter()
            .map(|n| n.rule)
            .collect();
        assert!(
            !resolved.contains(&"cache-hit-rate-low".to_string()) && resolved.len() == 5,
            "{resolved:?}"
        );
        better.window.cache_hits = 90;
        e.tick(at(270), &better);
        let resolved: Vec<String> = e
            .tick(at(330), &better)
            .into_iter()
            .map(|n| n.rule)
            .collect();
        assert_eq!(resolved, vec!["cache-hit-rate-low"]);
    }

    #[test]
    fn a_batch_failure_fires_at_once_and_resolves_on_the_next_success() {
        let mut e = engine(vec![Rule::new(
            "batch-failure",
            Severity::Critical,
            Condition::BatchFailed,
        )]);
        let mut inputs = AlertInputs::default();
        inputs
            .batches
            .insert("nightly".into(), (Some(at(0)), Some(at(10))));
        inputs.batches.insert("weekly".into(), (Some(at(5)), None));
        let fired = e.tick(at(11), &inputs);
        assert_eq!(fired.len(), 1);
        assert_eq!(
            (fired[0].key.as_str(), fired[0].state),
            ("nightly", AlertState::Firing)
        );
        assert!(e.tick(at(40), &inputs).is_empty(), "once");
        inputs
            .batches
            .insert("nightly".into(), (Some(at(50)), Some(at(10))));
        let resolved = e.tick(at(51), &inputs);
        assert_eq!(
            states(&resolved),
            vec![("batch-failure".into(), AlertState::Resolved)]
        );
        // a failure followed by a success between two ticks still fires, then resolves
        inputs
            .batches
            .insert("nightly".into(), (Some(at(70)), Some(at(60))));
        assert_eq!(
            states(&e.tick(at(80), &inputs)),
            vec![("batch-failure".into(), AlertState::Firing)]
        );
        assert_eq!(
            states(&e.tick(at(90), &inputs)),
            vec![("batch-failure".into(), AlertState::Resolved)]
        );
    }

    #[test]
    fn slow_queries_rising_against_the_hourly_baseline() {
        let mut e = AlertEngine::new(AlertConfig {
            rules: vec![Rule::new(
                "slow",
                Severity::Warning,
                Condition::SlowQueriesRising {
                    factor: 2.0,
                    min_count: 10,
                },
            )],
            ..AlertConfig::default()
        });
        let mut cumulative = 0;
        // one tick a minute over `minutes`, `per_minute` more slow queries each time
        let mut feed = |e: &mut AlertEngine,
                        minutes: std::ops::Range<u64>,
                        per_minute: u64,
                        check: &dyn Fn(&AlertInputs)| {
            let mut notes = Vec::new();
            for m in minutes {
                cumulative += per_minute;
                let counters = Counters {
                    slow_queries: cumulative,
                    ..Counters::default()
                };
                let inputs = e.inputs(at(m * 60), counters, None, BTreeMap::new());
                check(&inputs);
                notes.extend(e.tick(at(m * 60), &inputs));
            }
            notes
        };
        // an hour of 2 slow queries a minute (10 per 5-minute window)
        let notes = feed(&mut e, 0..60, 2, &|_| {});
        assert!(notes.is_empty(), "steady: {notes:?}");
        // then 10 a minute: 50 per window against a baseline of about 10
        let notes = feed(&mut e, 60..70, 10, &|inputs| {
            assert!(
                inputs
                    .slow_baseline
                    .is_some_and(|b| (9.0..=13.0).contains(&b)),
                "{:?}",
                inputs.slow_baseline
            );
        });
        assert_eq!(states(&notes), vec![("slow".into(), AlertState::Firing)]);
        // back to 2 a minute: once the window holds only that, resolved
        let later = feed(&mut e, 70..90, 2, &|_| {});
        assert_eq!(states(&later), vec![("slow".into(), AlertState::Resolved)]);
    }

    #[test]
    fn window_differences_are_exact() {
        let mut e = AlertEngine::new(AlertConfig {
            window: Duration::from_secs(300),
            ..AlertConfig::default()
        });
        let c = |requests| Counters {
            requests,
            ..Counters::default()
        };
        assert_eq!(
            e.inputs(at(0), c(100), None, BTreeMap::new())
                .window
                .requests,
            100,
            "since start on the first tick"
        );
        assert_eq!(
            e.inputs(at(100), c(150), None, BTreeMap::new())
                .window
                .requests,
            150,
            "younger than the window: since start"
        );
        assert_eq!(
            e.inputs(at(300), c(400), None, BTreeMap::new())
                .window
                .requests,
            300
        );
        assert_eq!(
            e.inputs(at(400), c(500), None, BTreeMap::new())
                .window
                .requests,
            350,
            "base: the newest sample a window old (t=100)"
        );
    }

    fn route(requests: u64, errors: u64) -> RouteCounters {
        RouteCounters {
            requests,
            errors,
            duration_ns: 0,
        }
    }

    #[test]
    fn custom_rules_fire_per_key() {
        let per_route = Condition::Custom(Arc::new(|inp: &AlertInputs| {
            inp.window
                .routes
                .iter()
                .map(|(route, r)| {
                    let rate = percent(r.errors, r.requests);
                    Reading {
                        key: route.clone(),
                        value: rate,
                        breached: r.requests >= 10 && rate > 50.0,
                        recovered: rate < 40.0,
                    }
                })
                .collect()
        }));
        let mut e = engine(vec![Rule::new(
            "route-errors",
            Severity::Warning,
            per_route,
        )
        .pending(Duration::ZERO)]);
        let mut inputs = AlertInputs::default();
        inputs
            .window
            .routes
            .insert("POST /api/leave".into(), route(20, 15));
        inputs
            .window
            .routes
            .insert("GET /api/staff".into(), route(20, 1));
        let fired = e.tick(at(0), &inputs);
        assert_eq!(
            fired.iter().map(|n| n.key.as_str()).collect::<Vec<_>>(),
            vec!["POST /api/leave"]
        );
    }
}
