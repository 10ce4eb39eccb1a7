//! Shared helpers of the integration tests.

use std::time::Duration;

pub mod example;

/// The Redis the tests use (`PERFMON_TEST_REDIS_URL`; `.ci/test` sets it).
pub fn redis_url() -> String {
    std::env::var("PERFMON_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// The local Redis Cluster `.ci/test` starts (`PERFMON_TEST_REDIS_CLUSTER_URL`).
pub fn redis_cluster_url() -> String {
    std::env::var("PERFMON_TEST_REDIS_CLUSTER_URL")
        .unwrap_or_else(|_| "redis+cluster://127.0.0.1:7379,127.0.0.1:7380,127.0.0.1:7381".into())
}

/// The PostgreSQL database the tests use (`PERFMON_TEST_DATABASE_URL`).
pub fn database_url() -> String {
    std::env::var("PERFMON_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A key prefix (and PostgreSQL schema) no other test, run or process uses.
pub fn unique_prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("perfmon-test:{name}:{}:{nanos}", std::process::id())
}

/// Drops the schema a test wrote under `prefix`.
pub async fn drop_schema(prefix: &str) {
    let pool = sqlx::PgPool::connect(&database_url())
        .await
        .expect("connect");
    sqlx::raw_sql(&format!("DROP SCHEMA \"{prefix}\" CASCADE"))
        .execute(&pool)
        .await
        .expect("clean up");
}

/// A small deterministic generator (xorshift64*), so every run sees the same inputs.
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A duration spread log-uniformly between `lo` and `hi`.
    pub fn log_uniform(&mut self, lo: Duration, hi: Duration) -> Duration {
        let (lo, hi) = ((lo.as_nanos() as f64).ln(), (hi.as_nanos() as f64).ln());
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        Duration::from_nanos((lo + u * (hi - lo)).exp() as u64)
    }
}

/// The exact value at quantile `q` of `sorted` (the smallest value with at least `q` of the
/// values at or below it), the definition HdrHistogram approximates.
pub fn exact_quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

/// Asserts that `reported` is the exact value's HDR bin: never below it, and above it by less
/// than one part in 1,024 (3 significant digits).
pub fn assert_within_hdr(what: &str, reported: Duration, exact: Duration) {
    let (r, e) = (reported.as_nanos(), exact.as_nanos());
    assert!(
        r >= e && r - e <= e / 1024,
        "{what}: reported {reported:?}, exact {exact:?}"
    );
}

/// A TCP proxy (to Redis or PostgreSQL) that a test can cut (every connection dropped, new ones refused) and
/// restore: a real outage as the writer sees it; or freeze (bytes held, connections kept) and
/// thaw: a backend that stops answering.
pub struct Proxy {
    /// The local port.
    pub port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Connections being forwarded now.
    live: std::sync::Arc<std::sync::atomic::AtomicU64>,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Copies one direction of a proxied connection, holding the bytes while the proxy is frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while frozen.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Proxy {
    /// Listens on a free local port, forwarding to `target`.
    pub async fn start(target: &'static str) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let generation = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let live = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let frozen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (u, g, l, f) = (up.clone(), generation.clone(), live.clone(), frozen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if !u.load(Ordering::SeqCst) {
                    continue; // refused: dropped at once
                }
                let (u, g, l, f) = (u.clone(), g.clone(), l.clone(), f.clone());
                let born = g.load(Ordering::SeqCst);
                l.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    struct Live(std::sync::Arc<std::sync::atomic::AtomicU64>);
                    impl Drop for Live {
                        fn drop(&mut self) {
                            self.0.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                    let _live = Live(l);
                    let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let copy = async {
                        tokio::select! {
                            _ = pump(cr, sw, f.clone()) => {}
                            _ = pump(sr, cw, f.clone()) => {}
                        }
                    };
                    tokio::pin!(copy);
                    loop {
                        tokio::select! {
                            _ = &mut copy => return,
                            _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {
                                if !u.load(Ordering::SeqCst) || g.load(Ordering::SeqCst) != born {
                                    return; // cut: both sides dropped
                                }
                            }
                        }
                    }
                });
            }
        });
        Proxy {
            port,
            up,
            generation,
            live,
            frozen,
        }
    }

    /// Holds every byte in both directions, keeping the connections: the backend stops
    /// answering.
    pub fn freeze(&self) {
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Forwards the held bytes and what follows.
    pub fn thaw(&self) {
        self.frozen
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// `redis://127.0.0.1:{port}/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        use std::sync::atomic::Ordering;
        self.up.store(false, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Cuts, and returns once every connection it forwarded is dropped (a bounded wait for
    /// that state: each connection notices the cut within 20 ms).
    pub async fn cut_and_wait(&self) {
        self.cut();
        let started = std::time::Instant::now();
        while self.live.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "the proxy's connections did not close"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// CPU seconds used so far by this process' threads, summed by thread name (Linux,
/// `/proc/self/task`; ticks of 1/100 s).
pub fn cpu_by_thread() -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for t in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // after the parenthesised name: utime and stime are the 12th and 13th fields, in ticks
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(vec![], |(_, r)| r.split_whitespace().collect());
        let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
            f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
        });
        *out.entry(name.trim().to_string()).or_insert(0.0) += ticks / 100.0;
    }
    out
}

/// The names of this process' threads (Linux, `/proc/self/task`).
pub fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

/// Serves an application of one route (`/api/ping`, under `PerfmonLayer`) with the monitoring
/// router beside it, on a free local port, on the current runtime; returns its address.
pub async fn serve_ping_and_monitoring() -> String {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/api/ping", get(|| async { "pong" }))
        .layer(perfmon_runtime::http::PerfmonLayer::new())
        .merge(perfmon_runtime::http::router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// One plain HTTP/1.1 request (`Connection: close`, no body) to `addr` (`host:port`, or an
/// `http://` base URL); the status code and the body as sent (chunked bodies keep their chunk
/// lines).
pub fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let host = addr.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(host).unwrap_or_else(|e| panic!("{host}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    let out = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (
        head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0),
        body.to_string(),
    )
}

/// The value of the Prometheus sample whose line starts with `prefix` (name and labels).
pub fn sample_value(text: &str, prefix: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no sample {prefix}\n{text}"));
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no value in {line}"))
}

/// `n` API requests of 3 ms to `POST path`, answered `status`, recorded now.
pub fn api_burst(path: &str, status: u16, n: usize) {
    for _ in 0..n {
        perfmon_runtime::record_api_metric(perfmon_runtime::ApiMetric {
            method: "POST",
            path,
            status_code: status,
            duration: Duration::from_millis(3),
            timestamp: std::time::SystemTime::now(),
        });
    }
}

/// Busy for at least `d`, without sleeping: a call that must be over a microsecond threshold is,
/// whatever the clock's resolution.
pub fn spin(d: Duration) {
    let until = std::time::Instant::now() + d;
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// A log writer for a `tracing` subscriber that keeps what is written, to read back.
#[derive(Clone, Default)]
pub struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogBuffer {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }

    /// A plain-text `tracing` subscriber (no colours) of events up to `max_level`, writing here.
    pub fn subscriber(
        &self,
        max_level: tracing_subscriber::filter::LevelFilter,
    ) -> impl tracing::Subscriber + Send + Sync + 'static {
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_max_level(max_level)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `promtool check metrics` (Debian's `prometheus` package; `.ci/test` installs it) on `text`:
/// whether it passed, and what it printed.
pub fn promtool_check_metrics(text: &str) -> (bool, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (apt-get install prometheus; .ci/test installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool finishes");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
