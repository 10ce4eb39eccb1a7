//! What the operating system says about this process: memory, CPU, threads, file descriptors,
//! start time. On Linux through the `procfs` crate (the real clock-tick rate and page size, from
//! `sysconf`); elsewhere what the standard library can tell (the uptime since perfmon first
//! looked), and zeros or `None` for the rest.

use std::time::Duration;

/// What the operating system says about this process (zeros and `None` where it is not
/// available).
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

#[cfg(target_os = "linux")]
pub(crate) fn proc_stats() -> ProcStats {
    use procfs::prelude::*;
    use procfs::process::{LimitValue, Process};
    use std::sync::OnceLock;

    static TICKS_AND_BOOT: OnceLock<(f64, Option<u64>)> = OnceLock::new();
    let &(ticks, boot) = TICKS_AND_BOOT.get_or_init(|| {
        (
            procfs::ticks_per_second().max(1) as f64,
            procfs::boot_time_secs().ok(),
        )
    });
    let mut p = ProcStats::default();
    let Ok(me) = Process::myself() else {
        return p;
    };
    if let Ok(stat) = me.stat() {
        p.rss_bytes = stat.rss_bytes().get();
        p.virtual_bytes = stat.vsize;
        p.threads = u64::try_from(stat.num_threads).unwrap_or(0);
        p.cpu_seconds = (stat.utime + stat.stime) as f64 / ticks;
        let start = stat.starttime as f64 / ticks;
        if let Some(boot) = boot {
            let started = boot as f64 + start;
            p.start_time_seconds = Some(started);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            p.uptime = Duration::from_secs_f64((now - started).max(0.0));
        }
    }
    p.open_fds = me.fd_count().map_or(0, |n| n as u64);
    p.max_fds = me
        .limits()
        .ok()
        .and_then(|l| match l.max_open_files.soft_limit {
            LimitValue::Value(v) => Some(v),
            LimitValue::Unlimited => None,
        });
    p
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn proc_stats() -> ProcStats {
    use std::sync::OnceLock;
    use std::time::Instant;

    static FIRST_LOOK: OnceLock<Instant> = OnceLock::new();
    ProcStats {
        uptime: FIRST_LOOK.get_or_init(Instant::now).elapsed(),
        ..ProcStats::default()
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The figures agree with what `/proc` says by other means, read here by hand.
    #[test]
    fn figures_agree_with_proc() {
        let p = proc_stats();
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .expect("field")
        };
        assert!(p.rss_bytes > 0 && p.virtual_bytes >= p.rss_bytes, "{p:?}");
        // resident memory moves between the two reads; the thread count too, by a little
        let rss = field("VmRSS:") * 1024;
        assert!(
            p.rss_bytes.abs_diff(rss) < 64 << 20,
            "{} vs {rss}",
            p.rss_bytes
        );
        assert!(p.threads >= 1);
        assert!(p.open_fds >= 3, "stdin, stdout, stderr at least: {p:?}");
        assert!(p.max_fds.is_none_or(|m| m >= p.open_fds));
        let start = p.start_time_seconds.expect("start time");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        assert!(start <= now + 1.0 && start > now - 86_400.0 * 365.0);
        assert!(p.uptime.as_secs_f64() <= now - start + 1.0);
    }
}
