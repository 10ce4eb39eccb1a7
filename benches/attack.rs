//! The amplification benchmark (issue 10, item 6): the application's own `/api/ping` latency
//! while clients hammer the most expensive monitoring request, `?window=24h&scope=cluster`, over
//! many stored series.
//!
//! Writes `ATTACK_INSTANCES` × `ATTACK_ROUTES` series (default 20 × 1,000 = 20,000) with
//! `ATTACK_MINUTES` minutes each (default 20, one an hour over the last day) into the real Redis through
//! perfmon's own writer, starts perfmon on that key prefix with an axum service (`/api/ping`,
//! `PerfmonLayer`, the monitoring router) on 2 async workers, then measures `/api/ping` from a
//! client thread: `ATTACK_PINGS` (default 8,000) requests one a millisecond alone, then as many while `ATTACK_CLIENTS`
//! (default 10) threads request `/api/monitoring/metrics?window=24h&scope=cluster` together once a
//! second (the attack), then as many while they request it in a closed loop (a flood).
//! Prints p50/p99/max, the ratios, what the attackers were answered and the heavy-read counters.
//!
//! `cargo bench -p perfmon-benches --bench attack` (`PERFMON_BENCH_REDIS_URL`). Removes its keys
//! at the end.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use perfmon_runtime::__tiers::{Aggregates, RedisTier};
use perfmon_runtime::http::heavy_read_stats;
use perfmon_tests::{cpu_by_thread, serve_ping_and_monitoring};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One keep-alive HTTP/1.1 connection; `get` returns the status code.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: &str) -> Client {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        Client {
            reader: BufReader::new(s),
        }
    }

    fn get(&mut self, path: &str) -> u16 {
        self.get_sized(path).0
    }

    /// The status code and the body's length.
    fn get_sized(&mut self, path: &str) -> (u16, usize) {
        write!(
            self.reader.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n"
        )
        .expect("send");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status = line.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l
                .to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
            {
                length = v.parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body).expect("body");
        (status, length)
    }
}

/// p50, p99 and max of `n` pings, one a millisecond (as a client polling steadily, not a
/// closed loop that would take a core of its own), in ms.
fn pings(addr: &str, n: usize) -> (f64, f64, f64) {
    let mut c = Client::connect(addr);
    for _ in 0..200 {
        c.get("/api/ping");
    }
    let mut t: Vec<f64> = (0..n)
        .map(|_| {
            let s = Instant::now();
            assert_eq!(c.get("/api/ping"), 200);
            let took = s.elapsed();
            std::thread::sleep(Duration::from_millis(1).saturating_sub(took));
            took.as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    let q = |p: f64| t[((t.len() as f64 * p) as usize).min(t.len() - 1)];
    (q(0.5), q(0.99), t[t.len() - 1])
}

/// CPU seconds of the async workers, the read pool and perfmon's I/O thread between two
/// readings.
fn cpu_delta(
    a: &std::collections::BTreeMap<String, f64>,
    b: &std::collections::BTreeMap<String, f64>,
) -> String {
    let d = |name: &str| b.get(name).unwrap_or(&0.0) - a.get(name).unwrap_or(&0.0);
    format!(
        "CPU: async workers {:.2} s, perfmon-read {:.2} s, perfmon-io {:.2} s",
        d("tokio-rt-worker"),
        d("perfmon-read"),
        d("perfmon-io")
    )
}

fn main() {
    let instances = env_or("ATTACK_INSTANCES", 20);
    let routes = env_or("ATTACK_ROUTES", 1000);
    let minutes = env_or("ATTACK_MINUTES", 20) as u64;
    let clients = env_or("ATTACK_CLIENTS", 10);
    let redis_url = std::env::var("PERFMON_BENCH_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let prefix = format!("perfmon-attack-bench-{nanos}");
    let now = (nanos / 1_000_000_000) as u64;

    // the stored fleet, written through perfmon's own writer
    let setup = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    setup.block_on(async {
        for i in 0..instances {
            let mut agg = Aggregates::default();
            let mut tier = RedisTier::connect(&redis_url, &prefix, &format!("node-{i:02}"), "run")
                .await
                .expect("Redis");
            for m in 0..minutes {
                // spread over the last 24 h: one minute an hour
                let minute = now / 60 - 10 - m * 60;
                for r in 0..routes {
                    let values: Vec<u64> = (0..20)
                        .map(|k| 1_000_000 + (k * 7919 + r) as u64 * 1000)
                        .collect();
                    agg.api(minute, "GET", &format!("/api/attack/{r}"), 200, &values);
                }
            }
            let flush = agg.take_flush(now);
            tier.write(&flush, now).await.expect("Redis write");
        }
    });
    println!(
        "attack: {} series ({instances} instances × {routes} routes, {minutes} minutes each) written in {:.1} s; {clients} attackers",
        instances * routes,
        started.elapsed().as_secs_f64()
    );

    // the application: 2 async workers, as on the 2-core machine
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (perf, addr) = rt.block_on(async {
        let perf = perfmon_runtime::init(
            perfmon_runtime::Config::builder()
                .redis_url(&redis_url)
                .key_prefix(&prefix)
                .instance("bench-app")
                .no_alerts()
                .build(),
        )
        .await
        .expect("init");
        (perf, serve_ping_and_monitoring().await)
    });

    // one heavy request alone: what it costs
    let t = Instant::now();
    let (status, bytes) =
        Client::connect(&addr).get_sized("/api/monitoring/metrics?window=24h&scope=cluster");
    println!(
        "one ?window=24h&scope=cluster request: {status}, {:.1} MB, in {:.0} ms",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64() * 1e3
    );

    let n = env_or("ATTACK_PINGS", 8000);
    let cpu = cpu_by_thread();
    let (b50, b99, bmax) = pings(&addr, n);
    println!(
        "/api/ping alone: p50 {b50:.3} ms  p99 {b99:.3} ms  max {bmax:.2} ms; {}",
        cpu_delta(&cpu, &cpu_by_thread())
    );

    for (flood, target) in [
        (false, "/api/monitoring/metrics?window=24h&scope=cluster"),
        (true, "/api/monitoring/metrics?window=24h&scope=cluster"),
        // the control: the same flood of the application's cheapest route
        (true, "/api/ping"),
    ] {
        let stop = Arc::new(AtomicBool::new(false));
        let answers: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
        let attackers: Vec<_> = (0..clients)
            .map(|_| {
                let (stop, answers, addr) = (stop.clone(), answers.clone(), addr.clone());
                std::thread::spawn(move || {
                    let mut c = Client::connect(&addr);
                    while !stop.load(Ordering::Relaxed) {
                        let slot = match c.get(target) {
                            200 => 0,
                            429 => 1,
                            _ => 2,
                        };
                        answers[slot].fetch_add(1, Ordering::Relaxed);
                        if !flood {
                            // the attack: the clients' requests arrive together, once a
                            // second (the kept answer is 2 s old at most)
                            std::thread::sleep(Duration::from_millis(1000));
                        }
                    }
                })
            })
            .collect();
        // the attack is under way before the measurement starts
        std::thread::sleep(Duration::from_millis(500));
        let before = heavy_read_stats();
        let cpu = cpu_by_thread();
        let t = Instant::now();
        let (a50, a99, amax) = pings(&addr, n);
        let took = t.elapsed();
        let after = heavy_read_stats();
        let cpu = cpu_delta(&cpu, &cpu_by_thread());
        stop.store(true, Ordering::Relaxed);
        for a in attackers {
            let _ = a.join();
        }
        let what = match (flood, target) {
            (false, _) => "10 concurrent requests a second",
            (true, "/api/ping") => "control: the same flood of /api/ping itself",
            (true, _) => "flood (each attacker in a closed loop)",
        };
        println!("/api/ping under attack, {what}: p50 {a50:.3} ms  p99 {a99:.3} ms  max {amax:.2} ms; p99 ratio {:.2}×; {cpu}", a99 / b99);
        println!(
            "  attackers were answered: {} × 200, {} × 429, {} other; in the {:.1} s measured: {} loads, {} shared, {} from the kept answer, {} rejected",
            answers[0].load(Ordering::Relaxed),
            answers[1].load(Ordering::Relaxed),
            answers[2].load(Ordering::Relaxed),
            took.as_secs_f64(),
            after.loads - before.loads,
            after.shared - before.shared,
            after.cached - before.cached,
            after.rejected - before.rejected
        );
    }

    rt.block_on(async {
        let _ = perf.shutdown().await;
        let mut c = redis::Client::open(redis_url.as_str())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("Redis");
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}:*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut c)
                .await
                .expect("SCAN");
            if !keys.is_empty() {
                let _: () = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut c)
                    .await
                    .expect("UNLINK");
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    });
}
