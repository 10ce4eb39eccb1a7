//! What the pipeline holds for the storage tiers besides aggregates: the queue of notable events
//! for the PostgreSQL event log (batch failures, health changes, alerts), and the tiers' own
//! counters, which the read layer reports. Writers anywhere above push; the flusher drains.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::core::sync::lock;

/// Events waiting for the event log, at most (the oldest go first, counted as dropped).
pub(crate) const EVENTS_LIMIT: usize = 10_000;

/// One entry of the event log.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct LoggedEvent {
    /// When it happened, Unix ns.
    pub at_ns: u64,
    /// `batch_failure`, `health_change`, `alert_fired`, `alert_resolved`.
    pub kind: &'static str,
    /// What it is about (a batch, a status, a rule).
    pub name: String,
    pub detail: String,
}

/// Counters of the retention tiers.
#[derive(Debug, Default)]
pub(crate) struct TierCounters {
    /// Successful flushes.
    pub flushes: AtomicU64,
    /// Failed flushes.
    pub failures: AtomicU64,
    /// Values waiting to be written.
    pub pending: AtomicU64,
    /// Values dropped because a tier stayed away past its bound.
    pub dropped: AtomicU64,
    /// Encode failures (an aggregate that could not be serialized; never expected).
    pub encode_failures: AtomicU64,
    /// Rows a tier's server rejected for what they hold (a constraint, a trigger, a value out
    /// of range), each isolated from the rest of its flush and set aside: not retried.
    pub set_aside: AtomicU64,
    /// Successful writes to each tier.
    pub redis_writes: AtomicU64,
    pub postgres_writes: AtomicU64,
}

impl TierCounters {
    /// Counts one dropped value; true the first time (log once).
    pub(crate) fn drop_one(&self) -> bool {
        self.dropped.fetch_add(1, Ordering::Relaxed) == 0
    }
}

/// The outbox: the event log queue and the tier counters.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Whether an event log consumes the queue (PostgreSQL is configured); else events are not
    /// queued at all.
    logging: AtomicBool,
    events: Mutex<VecDeque<LoggedEvent>>,
    pub tiers: TierCounters,
}

impl Outbox {
    /// Starts (or stops) queueing events: only while an event log takes them.
    pub(crate) fn set_logging(&self, on: bool) {
        self.logging.store(on, Ordering::Relaxed);
        if !on {
            lock(&self.events).clear();
        }
    }

    /// Queues an event for the log (while one is configured); past [`EVENTS_LIMIT`] the oldest
    /// is dropped and counted.
    pub(crate) fn log(&self, event: LoggedEvent) {
        if !self.logging.load(Ordering::Relaxed) {
            return;
        }
        let mut q = lock(&self.events);
        if q.len() >= EVENTS_LIMIT {
            q.pop_front();
            if self.tiers.drop_one() {
                tracing::warn!(target: "perfmon", limit = EVENTS_LIMIT, "the event log queue is full: the oldest events are being dropped (counted in recorder_stats().tier_dropped)");
            }
        }
        q.push_back(event);
    }

    /// Takes every queued event.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn take_events(&self) -> Vec<LoggedEvent> {
        lock(&self.events).drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_bounded_and_counts_what_it_drops() {
        let o = Outbox::default();
        o.log(LoggedEvent {
            at_ns: 0,
            kind: "health_change",
            name: String::new(),
            detail: String::new(),
        });
        assert!(
            o.take_events().is_empty(),
            "nothing is queued without a log"
        );
        o.set_logging(true);
        for i in 0..EVENTS_LIMIT as u64 + 3 {
            o.log(LoggedEvent {
                at_ns: i,
                kind: "health_change",
                name: String::new(),
                detail: String::new(),
            });
        }
        assert_eq!(o.tiers.dropped.load(Ordering::Relaxed), 3);
        let events = o.take_events();
        assert_eq!(events.len(), EVENTS_LIMIT);
        assert_eq!(events[0].at_ns, 3, "the oldest went first");
        assert!(o.take_events().is_empty());
    }
}
