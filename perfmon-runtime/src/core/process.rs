//! What `/proc` says about this process: memory, CPU, threads, file descriptors, start time.

use std::time::Duration;

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
