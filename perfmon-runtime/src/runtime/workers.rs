//! The jobs of the runtime's background threads, each run by a
//! [`ThreadWorker`](crate::core::worker::ThreadWorker): the drain (every `drain_interval`, the
//! threads' rings into the aggregator) and the alert evaluation (every alert tick). The flush
//! worker is the storage layer's (`store::flusher`), a tokio task of the same pattern.

use std::time::{Duration, SystemTime};

use crate::core::kind::Kind;
use crate::core::sync::block_on;
use crate::core::worker::Job;
use crate::ops::alerts::{publish, AlertEngine, Counters};
use crate::ops::health::{system_health, HealthStatus};
use crate::ops::notify::{deliver, Sinks};
use crate::pipeline::state::global;
use crate::read::snapshot::Snapshot;

/// Drains the threads' rings into the aggregator, a shard at a time.
pub(crate) struct Drain;

impl Job for Drain {
    type Output = ();

    fn run(&mut self) {
        global().drain_incrementally();
    }
}

/// How long the alert worker waits for `system_health()` on the application's runtime.
#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
const HEALTH_WAIT: Duration = Duration::from_secs(10);

/// Evaluates the alert rules: samples the process (one drain), runs the health checks, ticks
/// the engine it owns — custom rules run here, with no lock of perfmon's held, so a rule may
/// read `collector()` — publishes the engine's state and delivers what fired or resolved.
pub(crate) struct Alerting {
    pub engine: AlertEngine,
    pub sinks: Sinks,
    /// The async runtime `init` ran in, if any: the backends' health checks need it.
    #[cfg(any(feature = "redis", feature = "postgres"))]
    pub runtime: Option<tokio::runtime::Handle>,
}

impl Alerting {
    /// Runs `system_health()`: on `init`'s runtime when there is one (`None` if it does not
    /// answer in time), else on this thread.
    fn health(&self) -> Option<HealthStatus> {
        #[cfg(any(feature = "redis", feature = "postgres"))]
        if let Some(rt) = &self.runtime {
            let (tx, rx) = crate::core::sync::oneshot();
            rt.spawn(async move { tx.send(system_health().await.status) });
            return rx.recv_timeout(HEALTH_WAIT).ok();
        }
        Some(block_on(system_health()).status)
    }
}

impl Job for Alerting {
    type Output = ();

    fn run(&mut self) {
        let now = SystemTime::now();
        let health = self.health();
        let (counters, batches) = {
            let d = global().drained();
            let batches = Snapshot::memory(&d, &[Kind::Batch], false)
                .batch_stats()
                .batches
                .into_iter()
                .map(|(n, b)| (n, (b.last_success, b.last_failure)))
                .collect();
            (Counters::from_drained(&d), batches)
        };
        let inputs = self.engine.inputs(now, counters, health, batches);
        let notes = self.engine.tick(now, &inputs);
        let board = self.engine.board();
        // Alertmanager expects firing alerts again and again until they end; those that fired
        // on this tick are sent by `deliver`
        let again: Vec<_> = match &self.sinks.alertmanager {
            Some(_) => board
                .active
                .iter()
                .filter(|a| !notes.iter().any(|n| n.rule == a.rule && n.key == a.key))
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        publish(Some(board));
        for n in &notes {
            deliver(n, &self.sinks);
        }
        if let Some(am) = &self.sinks.alertmanager {
            am.send(&again);
        }
    }
}

/// Pushes the Prometheus text to a Pushgateway, replacing its group (`PUT`), on every tick and
/// at shutdown. A failing push is logged when the failures start and when they end.
pub(crate) struct Push {
    /// `{pushgateway}/metrics/job/{job}/instance/{instance}`.
    pub url: String,
    pub failing: bool,
}

impl Push {
    pub(crate) fn new(base: &str, job: &str, instance: &str) -> Push {
        Push {
            url: format!(
                "{}/metrics/job/{job}/instance/{instance}",
                base.trim_end_matches('/')
            ),
            failing: false,
        }
    }
}

impl Job for Push {
    type Output = Result<(), String>;

    fn run(&mut self) -> Result<(), String> {
        let text = crate::read::collector::collector().prometheus_text();
        let sent = crate::ops::notify::send(
            "PUT",
            &self.url,
            "text/plain; version=0.0.4; charset=utf-8",
            &text,
            2,
            Duration::from_secs(5),
            None,
        );
        match &sent {
            Ok(_) if self.failing => {
                self.failing = false;
                tracing::info!(target: "perfmon", "pushes to the Pushgateway resumed");
            }
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::warn!(target: "perfmon", url = %crate::core::secret::redact(&self.url), error = %e, "a push to the Pushgateway failed; retried at the next tick");
            }
            _ => {}
        }
        sent.map(|_| ())
    }
}
