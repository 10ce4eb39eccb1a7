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
    /// User and system CPU time since start, seconds.
    pub cpu_seconds: f64,
    /// OS threads.
    pub threads: u64,
    /// Open file descriptors.
    pub open_fds: u64,
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

/// What `/proc` says about this process (zeros and `None` where it is not available).
#[derive(Clone, Debug, Default)]
pub(crate) struct ProcStats {
    pub rss_bytes: u64,
    pub virtual_bytes: u64,
    pub cpu_seconds: f64,
    pub threads: u64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    pub start_time_seconds: Option<f64>,
    pub uptime: Duration,
}

/// Linux reports `/proc/<pid>/stat` times in USER_HZ, which is 100 on every architecture.
const USER_HZ: f64 = 100.0;

pub(crate) fn proc_stats() -> ProcStats {
    let mut p = ProcStats::default();
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        };
        p.rss_bytes = field("VmRSS:").unwrap_or(0) * 1024;
        p.virtual_bytes = field("VmSize:").unwrap_or(0) * 1024;
        p.threads = field("Threads:").unwrap_or(0);
    }
    // Fields after the command name (which may contain spaces) of /proc/self/stat:
    // 14 utime, 15 stime, 22 starttime (1-based in proc(5); 11, 12, 19 after the name).
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let fields: Vec<&str> = stat
        .as_deref()
        .and_then(|s| s.rsplit_once(')'))
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let num = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    if let (Some(u), Some(s)) = (num(11), num(12)) {
        p.cpu_seconds = (u + s) / USER_HZ;
    }
    let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("btime "))?
            .split_whitespace()
            .nth(1)?
            .parse::<f64>()
            .ok()
    });
    let since_boot = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok());
    if let Some(start) = num(19) {
        let start = start / USER_HZ;
        p.start_time_seconds = boot_time.map(|b| b + start);
        if let Some(up) = since_boot {
            p.uptime = Duration::from_secs_f64((up - start).max(0.0));
        }
    }
    p.open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    p.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse().ok()
        });
    p
}

fn mb(bytes: u64) -> f64 {
    (bytes as f64 / 1048576.0 * 10.0).round() / 10.0
}

/// Memory, CPU, threads, file descriptors, uptime and pid of this process, read from `/proc`
/// (zeros elsewhere); no I/O to any backend.
pub fn resource_usage() -> ResourceUsage {
    let perfmon = crate::collector().recorder_stats().memory_bytes;
    let p = proc_stats();
    ResourceUsage {
        memory: MemoryUsage {
            rss: mb(p.rss_bytes),
            virtual_size: mb(p.virtual_bytes),
            perfmon: mb(perfmon),
        },
        cpu_seconds: (p.cpu_seconds * 100.0).round() / 100.0,
        threads: p.threads,
        open_fds: p.open_fds,
        uptime: p.uptime.as_secs(),
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
