//! System health and resource usage (the seed's `getSystemHealth` and `getResourceUsage`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::stats::{ser_time, RecorderStats};

/// Overall status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Every check passes.
    Healthy,
    /// A non-critical check fails.
    Degraded,
    /// A critical check fails.
    Unhealthy,
}

/// One check's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// Whether it passed.
    pub ok: bool,
    /// Whether its failure makes the system unhealthy (else degraded).
    pub critical: bool,
    /// What was found.
    pub message: String,
}

/// Memory of this process, in MB.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryUsage {
    /// Resident set size.
    pub rss: f64,
    /// Virtual memory size.
    #[serde(rename = "virtual")]
    pub virtual_size: f64,
    /// Memory held by perfmon's own histograms and lists.
    pub perfmon: f64,
}

/// Resources of this process (`resource_usage()`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceUsage {
    /// Memory, MB.
    pub memory: MemoryUsage,
    /// Seconds since the process started.
    pub uptime: u64,
    /// Process id.
    pub pid: u32,
}

/// Health (`system_health().await`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemHealth {
    /// Overall status.
    pub status: HealthStatus,
    /// Check name → result.
    pub checks: BTreeMap<String, CheckResult>,
    /// Resources at the time of the check.
    pub resources: ResourceUsage,
    /// The recorder's counters.
    pub recorder: RecorderStats,
    /// When the check ran.
    #[serde(serialize_with = "ser_time")]
    pub timestamp: SystemTime,
}

fn status_kb(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn uptime() -> Duration {
    // /proc/self/stat field 22 is the start time in clock ticks after boot (USER_HZ = 100 on
    // Linux); /proc/uptime gives seconds since boot.
    let start = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            after.split_whitespace().nth(19)?.parse::<u64>().ok()
        });
    let boot = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok());
    match (start, boot) {
        (Some(start), Some(boot)) => {
            Duration::from_secs_f64((boot - start as f64 / 100.0).max(0.0))
        }
        _ => Duration::ZERO,
    }
}

fn mb(kb: Option<u64>) -> f64 {
    (kb.unwrap_or(0) as f64 / 1024.0 * 10.0).round() / 10.0
}

/// Memory, uptime and pid of this process, read from `/proc` (zeros elsewhere); no I/O to any
/// backend.
pub fn resource_usage() -> ResourceUsage {
    let perfmon = crate::collector().recorder_stats().memory_bytes;
    ResourceUsage {
        memory: MemoryUsage {
            rss: mb(status_kb("VmRSS:")),
            virtual_size: mb(status_kb("VmSize:")),
            perfmon: (perfmon as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        },
        uptime: uptime().as_secs(),
        pid: std::process::id(),
    }
}

/// Runs the health checks. With no backend configured, the one check is the recorder itself:
/// it is healthy while no event had to be set aside.
pub async fn system_health() -> SystemHealth {
    let recorder = crate::collector().recorder_stats();
    let mut checks = BTreeMap::new();
    let ok = recorder.late_events == 0;
    checks.insert(
        "recorder".to_string(),
        CheckResult {
            ok,
            critical: false,
            message: if ok {
                format!(
                    "{} events aggregated, none set aside",
                    recorder.events_processed
                )
            } else {
                format!(
                    "{} hand-recorded events arrived after their window and were not filed",
                    recorder.late_events
                )
            },
        },
    );
    let status = if checks.values().any(|c| !c.ok && c.critical) {
        HealthStatus::Unhealthy
    } else if checks.values().any(|c| !c.ok) {
        HealthStatus::Degraded
    } else {
        HealthStatus::Healthy
    };
    SystemHealth {
        status,
        checks,
        resources: resource_usage(),
        recorder,
        timestamp: SystemTime::now(),
    }
}
