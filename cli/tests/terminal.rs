//! The `perfmon` command against the running example (issue 12, item 1): `perfmon top` in tmux
//! (`send-keys`, `capture-pane`) shows the example's routes with the figures of the JSON
//! endpoint, switches window, filters and opens a route's latency distribution;
//! `perfmon report` prints the same once, as text and as the endpoint's JSON.
//!
//! Needs tmux (`.ci/test` installs it) and the example binary cargo builds beside the tests.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use perfmon_tests::example::{request, start_example_with, Example};
use serde_json::Value;

fn prefix() -> String {
    format!("perfmon-test:cli:{}", std::process::id())
}

fn redis() -> String {
    std::env::var("PERFMON_TEST_REDIS_URL").unwrap_or("redis://127.0.0.1:6379".into())
}

/// The example serving after 2 s of traffic, its Redis tier under a prefix of its own.
fn start_example() -> (Example, String) {
    let (prefix, redis) = (prefix(), redis());
    let (example, addr, _) = start_example_with(
        &["--serve"],
        "2",
        &[
            ("PERFMON_REDIS_URL", &redis),
            ("PERFMON_KEY_PREFIX", &prefix),
        ],
    );
    (example, addr)
}

fn get_json(addr: &str, path: &str) -> Value {
    let (status, body) = request(addr, path, None);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

fn perfmon(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_perfmon"))
        .args(args)
        .env_remove("PERFMON_MONITORING_TOKEN")
        .output()
        .expect("perfmon runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The example's own routes (not the monitoring ones, which this test's reads change).
fn app_routes(answer: &Value) -> Vec<Value> {
    answer["data"]["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .filter(|r| {
            let p = r["path"].as_str().unwrap_or("");
            p.starts_with("/api/") && !p.starts_with("/api/monitoring")
        })
        .cloned()
        .collect()
}

struct Tmux(String);

impl Tmux {
    fn start(name: &str, command: &str) -> Tmux {
        let ok = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                name,
                "-x",
                "160",
                "-y",
                "48",
                command,
            ])
            .status()
            .expect("tmux runs (apt-get install tmux; .ci/test installs it)");
        assert!(ok.success());
        Tmux(name.to_string())
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.0];
        args.extend(keys);
        assert!(Command::new("tmux")
            .args(&args)
            .status()
            .expect("send-keys")
            .success());
    }

    /// Waits (30 s at most) for the screen to satisfy `ok`; returns it.
    fn until(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "gave up waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

#[test]
fn perfmon_top_and_report_show_the_example_as_the_json_endpoint_does() {
    let (_example, addr) = start_example();
    let url = format!("http://{addr}/api/monitoring/metrics");
    let json = get_json(&addr, "/api/monitoring/metrics");
    let routes = app_routes(&json);
    assert!(routes.len() >= 4, "the example's routes: {routes:?}");

    // report --json: the endpoint's JSON (the example is idle: its routes do not move)
    let (ok, out, err) = perfmon(&["report", "--url", &url, "--json"]);
    assert!(ok, "{err}");
    let reported: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(app_routes(&reported), routes);
    // report as text: every route with its figures
    let (ok, out, err) = perfmon(&["report", "--url", &url]);
    assert!(ok, "{err}");
    for r in &routes {
        let name = format!(
            "{} {}",
            r["method"].as_str().unwrap(),
            r["path"].as_str().unwrap()
        );
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in the report:\n{out}"));
        assert!(line.contains(&r["totalRequests"].to_string()), "{line}");
        assert!(
            line.contains(&format!("{:.1}", r["p99Duration"].as_f64().unwrap())),
            "{line}"
        );
    }
    // a bad argument: a clear error naming what is allowed, exit code 2
    let bad = Command::new(env!("CARGO_BIN_EXE_perfmon"))
        .args(["report", "--window", "2h"])
        .output()
        .expect("runs");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("5m, 1h, 24h, 7d, 90d, 1y"));

    // top, in tmux
    let session = format!("perfmon-test-{}", std::process::id());
    let tmux = Tmux::start(
        &session,
        &format!("{} top --url {url}", env!("CARGO_BIN_EXE_perfmon")),
    );
    let screen = tmux.until("the routes", |s| {
        s.contains("window 5m") && s.contains("/api/staff")
    });
    for r in &routes {
        let name = format!(
            "{} {}",
            r["method"].as_str().unwrap(),
            r["path"].as_str().unwrap()
        );
        let line = screen
            .lines()
            .find(|l| l.contains(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} on the screen:\n{screen}"));
        for v in [
            r["totalRequests"].to_string(),
            format!("{:.1}", r["p50Duration"].as_f64().unwrap()),
            format!("{:.1}", r["p99Duration"].as_f64().unwrap()),
            format!("{:.1}", r["errorRate"].as_f64().unwrap()),
            format!("{:.2}", r["apdex"].as_f64().unwrap()),
        ] {
            assert!(line.contains(&v), "{v} in {line:?}");
        }
    }
    assert!(screen.contains("health healthy"), "{screen}");
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("perfmon-top.txt");
    std::fs::write(&shot, &screen).expect("keep the screen");
    println!("perfmon top screen: {}", shot.display());

    // `/` filters the routes
    tmux.keys(&["/", "s", "t", "a", "f", "f", "Enter"]);
    let screen = tmux.until("the filter", |s| {
        s.contains("filter: /staff") && !s.contains("/api/leave")
    });
    assert!(screen.contains("GET /api/staff"), "{screen}");
    // Enter: the route's latency distribution, which adds up to its requests
    tmux.keys(&["Enter"]);
    let screen = tmux.until("the distribution", |s| {
        s.contains("latency distribution of /api/staff")
    });
    let staff = routes
        .iter()
        .find(|r| r["path"] == "/api/staff")
        .expect("the staff route");
    let total: u64 = screen
        .lines()
        .filter(|l| l.contains(" – ") || l.contains(" ms and above"))
        .filter_map(|l| {
            let after = l.split(" ms").nth(1)?;
            after.split_whitespace().find_map(|w| w.parse::<u64>().ok())
        })
        .sum();
    assert_eq!(total, staff["totalRequests"].as_u64().unwrap(), "{screen}");
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("perfmon-top-distribution.txt");
    std::fs::write(&shot, &screen).expect("keep the screen");
    // Esc back, `w`: the next window, read from the example's Redis tier
    tmux.keys(&["Escape"]);
    tmux.keys(&["w"]);
    let screen = tmux.until("the 1h window", |s| s.contains("window 1h"));
    assert!(!screen.contains("answered 4"), "{screen}");
    tmux.keys(&["q"]);

    // without --url: the cluster straight from the Redis tier the example writes (every 10 s)
    let from_tiers = || {
        let out = Command::new(env!("CARGO_BIN_EXE_perfmon"))
            .args(["report", "--json", "--window", "1h", "--scope", "cluster"])
            .env("PERFMON_REDIS_URL", redis())
            .env("PERFMON_KEY_PREFIX", prefix())
            .env("PERFMON_INSTANCE", "perfmon-cli")
            .output()
            .expect("perfmon runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).expect("JSON")
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    let tiers = loop {
        let t = from_tiers();
        if app_routes(&t).len() == routes.len() {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "the example's flush never showed: {t}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let served = get_json(&addr, "/api/monitoring/metrics?window=1h&scope=cluster");
    let counts = |a: &Value| -> Vec<(String, u64)> {
        app_routes(a)
            .iter()
            .map(|r| {
                (
                    r["path"].as_str().unwrap().to_string(),
                    r["totalRequests"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        counts(&tiers),
        counts(&served),
        "the tiers read directly and through the example agree"
    );
    assert_eq!(
        counts(&tiers),
        counts(&json),
        "every request of the traffic phase reached the tier"
    );
}
