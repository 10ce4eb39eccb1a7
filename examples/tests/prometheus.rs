//! A real Prometheus scrapes the running example (issue 11, item 2): Debian's `prometheus` 2.42
//! with `--enable-feature=exemplar-storage` negotiates OpenMetrics, and
//! `/api/v1/query_exemplars` returns the trace ids this test sent in `traceparent` headers.
//! `promtool check metrics` lints both formats.
//!
//! Needs Debian's `prometheus` package (`.ci/test` installs it).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use perfmon_tests::example::{request_with, start_example};
use perfmon_tests::promtool_check_metrics;
use serde_json::Value;

struct Prometheus {
    child: Child,
    dir: PathBuf,
    addr: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts Prometheus scraping `target` every second; returns once it is ready.
fn prometheus(target: &str) -> Prometheus {
    let dir = std::env::temp_dir().join(format!(
        "perfmon-prometheus-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: clinic\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .expect("config");
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--enable-feature=exemplar-storage")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus runs (apt-get install prometheus; .ci/test installs it)");
    let p = Prometheus { child, dir, addr };
    wait_for("Prometheus to be ready", || {
        std::net::TcpStream::connect(&p.addr).is_ok() && get(&p.addr, "/-/ready").0 == 200
    });
    p
}

fn get(addr: &str, path: &str) -> (u16, String) {
    let (status, _, body) = request_with(addr, path, &[]);
    (status, body)
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The trace ids of the exemplars Prometheus holds for `query` over the last ten minutes.
fn exemplar_trace_ids(prom: &str, query: &str) -> Vec<String> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let path = format!(
        "/api/v1/query_exemplars?query={}&start={}&end={}",
        encode(query),
        now - 600,
        now + 60
    );
    let (status, body) = get(prom, &path);
    assert_eq!(status, 200, "{body}");
    let json: Value = serde_json::from_str(&body).expect("JSON");
    json["data"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["exemplars"].as_array().into_iter().flatten())
        .filter_map(|e| e["labels"]["trace_id"].as_str().map(str::to_string))
        .collect()
}

/// The OpenMetrics text as the 0.0.4 parser of promtool 2.42 reads it: without the exemplars
/// and `# EOF`, counters' families named with their samples' `_total`. What promtool lints is
/// then exactly what OpenMetrics says (names, help, types, labels, values).
fn as_text_004(om: &str) -> String {
    let counters: Vec<String> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .map(str::to_string)
        .collect();
    let mut out = String::new();
    for line in om.lines().filter(|l| *l != "# EOF") {
        let line = line.split(" # {").next().unwrap_or(line);
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|tag| {
            let rest = line.strip_prefix(tag)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .iter()
                .any(|c| c == name)
                .then(|| format!("{tag}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[test]
fn a_real_prometheus_scrapes_openmetrics_and_keeps_the_trace_ids_as_exemplars() {
    let (_example, addr) = start_example(&["--serve"], "1");

    // both formats lint clean
    let (status, head, text) = request_with(&addr, "/metrics", &[]);
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let (ok, out) = promtool_check_metrics(&text);
    assert!(ok, "promtool check metrics on the 0.0.4 text: {out}");
    let accept = [(
        "Accept",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    )];
    let (status, head, om) = request_with(&addr, "/metrics", &accept);
    assert_eq!(status, 200);
    assert!(
        head.contains("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{head}"
    );
    assert!(om.ends_with("# EOF\n"));
    let (ok, out) = promtool_check_metrics(&as_text_004(&om));
    assert!(ok, "promtool check metrics on the OpenMetrics text: {out}");

    let prom = prometheus(&addr);
    // one traced request per scrape: Prometheus must see each one's trace id
    let sent: Vec<String> = (1..=3u128)
        .map(|i| {
            let salt = u128::from(std::process::id()) << 64;
            format!(
                "{:032x}",
                0x7e57_0000_0000_0000_0000_0000_0000_0000u128 | salt | i
            )
        })
        .collect();
    let bucket = r#"perfmon_http_request_duration_seconds_bucket{route="/api/ping"}"#;
    for id in &sent {
        let (status, _, _) = request_with(
            &addr,
            "/api/ping",
            &[("traceparent", &format!("00-{id}-00f067aa0ba902b7-01"))],
        );
        assert_eq!(status, 200);
        wait_for(&format!("the exemplar of trace {id}"), || {
            exemplar_trace_ids(&prom.addr, bucket).contains(id)
        });
    }
    let seen = exemplar_trace_ids(&prom.addr, bucket);
    for id in &sent {
        assert!(seen.contains(id), "{id} in {seen:?}");
    }
    assert!(
        seen.iter().all(|id| sent.contains(id)),
        "only the trace ids this test sent: {seen:?}"
    );
    let counter = r#"perfmon_http_requests_total{route="/api/ping",status="200"}"#;
    assert!(
        exemplar_trace_ids(&prom.addr, counter).contains(&sent[2]),
        "the counter carries the newest traced request"
    );

    // the scrape used the OpenMetrics parser without error
    let (_, targets) = get(&prom.addr, "/api/v1/targets");
    let targets: Value = serde_json::from_str(&targets).expect("JSON");
    let target = &targets["data"]["activeTargets"][0];
    assert_eq!(target["health"], "up", "{target}");
    assert_eq!(target["lastError"], "", "{target}");
}
