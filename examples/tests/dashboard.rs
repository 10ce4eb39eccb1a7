//! Drives headless Chromium against the running example: the dashboard must show the same
//! figures as the JSON endpoint, and a screenshot is kept as an artifact.
//!
//! Needs Debian's `chromium` (`.ci/test` installs it). The example is the one `cargo test`
//! builds beside this test.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use perfmon_tests::example::{request, start_example, start_example_with};

use serde_json::Value;

/// `GET path`, which must answer 200; its body.
fn get(addr: &str, path: &str) -> String {
    let (status, body) = request(addr, path, None);
    assert_eq!(status, 200, "{path}: {body}");
    body
}

fn chromium(args: &[&str]) -> String {
    let profile = tempdir();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", profile.display()),
            "--virtual-time-budget=8000",
        ])
        .args(args)
        .output()
        .expect("chromium runs (apt-get install chromium; .ci/test installs it)");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "perfmon-chromium-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The text of the element with `id` in the dumped DOM.
fn by_id(dom: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let at = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let rest = &dom[at..];
    let start = rest.find('>').expect("tag end") + 1;
    let end = rest[start..].find('<').expect("text end");
    rest[start..start + end].to_string()
}

/// The page's number formats (see dashboard.html).
fn ms(v: &Value) -> String {
    let v = v.as_f64().expect("a number");
    if v >= 1000.0 {
        format!("{} s", to_fixed(v / 1000.0, 2))
    } else {
        format!("{} ms", to_fixed(v, 1))
    }
}

/// JavaScript's `toFixed`, for the finite values below 1e21 the page formats (from there on,
/// `toFixed` switches to exponent form). Both it and Rust's formatting round the double's exact
/// value, but on an exact tie (0.25 to one digit) JavaScript takes the larger magnitude ("0.3")
/// and Rust the even digit ("0.2"). Rounding `v * 10` in floating point is not the same either:
/// 11.85 is stored as 11.8499…, which `toFixed(1)` gives as "11.8" while
/// `(11.85 * 10.0).round()` is 119. A negative value is formatted as its magnitude after a "-",
/// as `toFixed` does (so -0.25 gives "-0.3", and -0 gives "0.0").
fn to_fixed(v: f64, digits: usize) -> String {
    assert!(
        v.is_finite() && v.abs() < 1e21,
        "toFixed uses exponent form for {v}"
    );
    if v < 0.0 {
        return format!("-{}", to_fixed(-v, digits));
    }
    let v = v.abs(); // -0 formats as 0
                     // a finite double's exact decimal expansion has at most 1074 digits after the point
    let exact = format!("{v:.1100}");
    let fraction = &exact[exact.find('.').expect("a point") + 1..];
    let tie =
        fraction.as_bytes()[digits] == b'5' && fraction[digits + 1..].bytes().all(|b| b == b'0');
    if tie {
        // the next double up (`f64::next_up`, newer than this crate's MSRV) lies above the tie
        format!("{:.digits$}", f64::from_bits(v.to_bits() + 1))
    } else {
        format!("{v:.digits$}")
    }
}

/// The lines the trend chart draws (one per percentile and the error rate).
fn trend_lines(dom: &str) -> usize {
    let trend = &dom[dom.find("id=\"chart-trend\"").expect("the trend chart")..];
    trend
        .split("</svg>")
        .next()
        .unwrap_or("")
        .matches("<polyline")
        .count()
}

fn pct(v: &Value) -> String {
    format!("{}%", to_fixed(v.as_f64().expect("a number"), 1))
}

#[test]
fn the_dashboard_shows_what_the_json_endpoint_says() {
    // the traffic phase ends with the report; then the example only serves
    let (_example, addr) = start_example(&["--serve"], "3");

    let json: Value = serde_json::from_str(&get(&addr, "/api/monitoring/metrics")).expect("JSON");
    let d = &json["data"];
    assert!(
        d["api"]["totalRequests"].as_u64() > Some(100),
        "the example drove traffic"
    );

    let url = format!("http://{addr}/api/monitoring/dashboard?refresh=60");
    let dom = chromium(&["--dump-dom", &url]);
    assert!(
        dom.contains("data-loaded=\"1\"") || dom.contains("data-loaded=\"2\""),
        "the page rendered its data"
    );

    assert_eq!(by_id(&dom, "api-avg"), ms(&d["api"]["avgDuration"]));
    assert_eq!(by_id(&dom, "api-p95"), ms(&d["api"]["p95Duration"]));
    assert_eq!(by_id(&dom, "api-p99"), ms(&d["api"]["p99Duration"]));
    assert_eq!(
        by_id(&dom, "api-total"),
        d["api"]["totalRequests"].to_string()
    );
    assert_eq!(by_id(&dom, "api-error-rate"), pct(&d["api"]["errorRate"]));
    assert_eq!(
        by_id(&dom, "api-apdex"),
        to_fixed(d["api"]["apdex"].as_f64().expect("an Apdex score"), 2)
    );
    assert_eq!(by_id(&dom, "cache-hit-rate"), pct(&d["cache"]["hitRate"]));
    assert_eq!(
        by_id(&dom, "cache-total"),
        d["cache"]["totalOperations"].to_string()
    );
    let status = d["system"]["health"]["status"].as_str().expect("status");
    assert!(
        dom.contains(&format!("class=\"light {status}\"")),
        "status light {status}"
    );

    let slow = &d["slowRequests"][0];
    if !slow.is_null() {
        let path = slow["path"].as_str().expect("path");
        let first = format!(
            "{} {path} - {}s ({})",
            slow["method"].as_str().expect("method"),
            to_fixed(slow["duration"].as_f64().expect("ms") / 1000.0, 1),
            slow["statusCode"]
        );
        // each entry links to its route's drill-down
        let link = format!(
            "href=\"#route={}\">{first}</a></li>",
            path.replace('/', "%2F")
        );
        assert!(dom.contains(&link), "slow request {link}");
    }
    for (table, t) in d["database"]["tables"].as_object().expect("tables") {
        let row = format!(
            "<td>{table}</td><td>{}</td><td>{}</td><td>{}</td>",
            t["reads"],
            t["writes"],
            ms(&t["avgDuration"])
        );
        assert!(dom.contains(&row), "database row {row}");
    }
    for (name, b) in d["batch"]["batches"].as_object().expect("batches") {
        let row = format!(
            "<td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            b["runs"],
            b["successes"],
            b["failures"],
            pct(&b["successRate"])
        );
        assert!(dom.contains(&row), "batch row {row}");
    }
    assert!(dom.contains("<polyline"), "the trend chart has a line");

    // a refresh past what the browser's timer holds is clamped to an hour: the page loads once
    // in the 8 s of virtual time (it used to overflow the timer and reload without pause)
    let huge = format!("http://{addr}/api/monitoring/dashboard?refresh=99999999999");
    let dom = chromium(&["--dump-dom", &huge]);
    assert_eq!(by_id(&dom, "refresh"), "3600");
    assert!(
        dom.contains("data-loaded=\"1\""),
        "loaded once, not in a loop"
    );

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1400,1500",
        &url,
    ]);
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a real screenshot"
    );
    println!("dashboard screenshot: {}", shot.display());
}

const TOKEN: &str = "example-token-3f9e0b6c1d2a4e58";

/// A window read from the tiers: the example writes Redis (every 10 s); the page, opened on
/// `1h` and `cluster`, renders without the in-memory slow list and drills down with the trend
/// read slice by slice from Redis.
#[test]
fn the_dashboard_reads_a_long_window_from_redis() {
    let redis = std::env::var("PERFMON_TEST_REDIS_URL").unwrap_or("redis://127.0.0.1:6379".into());
    let prefix = format!("perfmon-test:dashboard:{}", std::process::id());
    let (_example, addr, _) = start_example_with(
        &["--serve"],
        "2",
        &[
            ("PERFMON_REDIS_URL", &redis),
            ("PERFMON_KEY_PREFIX", &prefix),
        ],
    );
    let path = "/api/monitoring/metrics?type=api&path=%2Fapi%2Fstaff&window=1h&scope=cluster";
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let json: Value = loop {
        let j: Value = serde_json::from_str(&get(&addr, path)).expect("JSON");
        if j["data"]["api"]["totalRequests"].as_u64() > Some(0) {
            break j;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the example never flushed: {j}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let d = &json["data"];
    let url = format!(
        "http://{addr}/api/monitoring/dashboard?refresh=60&window=1h&scope=cluster#route=%2Fapi%2Fstaff"
    );
    let dom = chromium(&["--dump-dom", &url]);
    assert!(
        dom.contains("data-loaded=\"1\""),
        "the page rendered its data"
    );
    assert_eq!(by_id(&dom, "status-text"), "healthy", "no error");
    assert!(
        dom.contains("<option value=\"1h\">1h</option>"),
        "the tiers' windows are offered"
    );
    assert_eq!(by_id(&dom, "drill-route"), "/api/staff (1h, cluster)");
    assert_eq!(
        by_id(&dom, "drill-total"),
        d["api"]["totalRequests"].to_string()
    );
    assert_eq!(by_id(&dom, "drill-p99"), ms(&d["api"]["p99Duration"]));
    assert!(d["trend"].as_array().is_some_and(|t| !t.is_empty()), "{d}");
    assert_eq!(trend_lines(&dom), 4);
}

#[test]
fn a_route_drills_down_to_its_distribution_and_trend_with_the_json_figures() {
    let (_example, addr) = start_example(&["--serve"], "3");
    let route = "/api/staff";
    let json: Value = serde_json::from_str(&get(
        &addr,
        "/api/monitoring/metrics?type=api&path=%2Fapi%2Fstaff&window=5m&scope=instance",
    ))
    .expect("JSON");
    let d = &json["data"];
    let url = format!(
        "http://{addr}/api/monitoring/dashboard?refresh=60&window=5m&scope=instance#route=%2Fapi%2Fstaff"
    );
    let dom = chromium(&["--dump-dom", &url]);
    assert!(
        !dom.contains("id=\"drill\" hidden"),
        "the drill-down is shown"
    );
    assert_eq!(
        by_id(&dom, "drill-route"),
        format!("{route} (5m, instance)")
    );
    assert_eq!(
        by_id(&dom, "drill-total"),
        d["api"]["totalRequests"].to_string()
    );
    assert_eq!(by_id(&dom, "drill-p50"), ms(&d["api"]["p50Duration"]));
    assert_eq!(by_id(&dom, "drill-p95"), ms(&d["api"]["p95Duration"]));
    assert_eq!(by_id(&dom, "drill-p99"), ms(&d["api"]["p99Duration"]));
    assert_eq!(by_id(&dom, "drill-errors"), pct(&d["api"]["errorRate"]));
    // every non-empty bucket of the distribution, with its count
    let buckets = d["distribution"].as_array().expect("a distribution");
    let sum: u64 = buckets
        .iter()
        .map(|b| b["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(sum, d["api"]["totalRequests"].as_u64().expect("total"));
    for b in buckets.iter().filter(|b| b["count"].as_u64() > Some(0)) {
        let le = if b["le"].is_null() {
            "above".to_string()
        } else {
            ms(&b["le"])
        };
        let row = format!("<td>{le}</td><td>{}</td>", b["count"]);
        assert!(dom.contains(&row), "distribution row {row}");
    }
    // the trend of the 5-minute window: a line per percentile and the error rate
    assert!(d["trend"].as_array().is_some_and(|t| !t.is_empty()));
    assert_eq!(trend_lines(&dom), 4);
    // routes and slow requests link to their drill-down; the window selector lists what this
    // example (no tiers) can answer
    assert!(
        dom.contains("href=\"#route=%2Fapi%2Fstaff\""),
        "the routes table links"
    );
    assert!(
        dom.contains("href=\"#route=%2Fapi%2Fschedule%2Fassign\""),
        "the slow list links"
    );
    assert!(
        dom.contains("<option value=\"5m\">5m</option>") && !dom.contains("<option value=\"1h\">")
    );
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-drill-down.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1400,1800",
        &url,
    ]);
    assert!(std::fs::read(&shot).is_ok_and(|png| png.starts_with(b"\x89PNG")));
}

#[test]
fn the_monitoring_routes_on_their_own_port_behind_a_token_and_the_dashboard_in_a_browser() {
    let (_example, app, monitoring) = start_example_with(
        &["--serve"],
        "2",
        &[
            ("PERFMON_EXAMPLE_MONITORING_ADDR", "127.0.0.1:0"),
            ("PERFMON_MONITORING_TOKEN", TOKEN),
        ],
    );
    let monitoring = monitoring.expect("the first line names the monitoring address");
    assert_ne!(app, monitoring);
    let bearer = format!("Bearer {TOKEN}");
    // not on the application's port, with or without the token
    assert_eq!(request(&app, "/metrics", Some(&bearer)).0, 404);
    assert_eq!(request(&app, "/api/monitoring/metrics", None).0, 404);
    // locked on the monitoring port
    let (status, body) = request(&monitoring, "/api/monitoring/metrics", None);
    assert_eq!(status, 401, "{body}");
    let (status, body) = request(&monitoring, "/api/monitoring/metrics", Some(&bearer));
    assert_eq!(status, 200, "{body}");
    let json: Value = serde_json::from_str(&body).expect("JSON");
    let d = &json["data"];
    assert!(d["api"]["totalRequests"].as_u64() > Some(10), "{d}");
    assert_eq!(request(&monitoring, "/api/monitoring/health", None).0, 200);

    // a browser asked for the password shows the figures; without it, nothing
    let page = "/api/monitoring/dashboard?refresh=3600";
    let dom = chromium(&["--dump-dom", &format!("http://{monitoring}{page}")]);
    assert!(
        !dom.contains("data-loaded="),
        "no figures without the token"
    );
    let dom = chromium(&[
        "--dump-dom",
        &format!("http://operator:{TOKEN}@{monitoring}{page}"),
    ]);
    assert!(
        dom.contains("data-loaded=\"1\""),
        "the page loaded its data with the token: {}",
        &dom[..dom.len().min(400)]
    );
    assert_eq!(
        by_id(&dom, "api-total"),
        d["api"]["totalRequests"].to_string()
    );
}

#[test]
fn a_client_that_never_reads_its_answers_is_cut_off() {
    let (_example, addr) = start_example(&["--serve"], "0");
    let mut s = TcpStream::connect(&addr).expect("connect");
    // far longer than the example's write timeout: a server without one never closes, and our
    // writes would end here
    s.set_write_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    // requests without end, never reading an answer: the server's writes fill the buffers
    // between us, then it stops reading, then our writes wait
    let requests = format!("GET /api/ping HTTP/1.1\r\nHost: {addr}\r\n\r\n").repeat(1000);
    let mut sent = 0usize;
    let end = loop {
        if let Err(e) = s.write_all(requests.as_bytes()) {
            break e;
        }
        sent += 1000;
        assert!(sent < 50_000_000, "the server read without end");
    };
    assert!(
        matches!(
            end.kind(),
            std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
        ),
        "the connection was still open after 60 s ({sent} requests sent): {end}"
    );
}

#[test]
fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let (_example, addr) = start_example(&["--serve"], "0");
    let mut s = TcpStream::connect(&addr).expect("connect");
    // headers without the blank line that ends them, then silence (slowloris)
    s.write_all(b"GET /api/ping HTTP/1.1\r\nHost: example\r\n")
        .expect("send");
    // far longer than the example's header-read timeout; a server without one never answers
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection was still open after 60 s: {e}"),
    }
    assert!(
        !String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"),
        "an unfinished request was not served"
    );
}

#[test]
fn an_outage_fires_and_resolves_a_critical_alert_that_the_dashboard_shows() {
    let (_example, addr) = start_example(&["--serve", "--alert-demo"], "18");
    let alerts: Value = serde_json::from_str(&get(&addr, "/api/monitoring/alerts")).expect("JSON");
    let history = alerts["data"]["history"].as_array().expect("history");
    let critical = |state: &str| {
        history
            .iter()
            .filter(|n| n["rule"] == "api-error-rate-critical" && n["state"] == state)
            .count()
    };
    assert_eq!(
        (critical("firing"), critical("resolved")),
        (1, 1),
        "{alerts}"
    );
    assert!(
        history
            .iter()
            .any(|n| n["rule"] == "batch-failure" && n["key"] == "weekly-assignment"),
        "the failed week: {alerts}"
    );

    let url = format!("http://{addr}/api/monitoring/dashboard?refresh=60");
    let dom = chromium(&["--dump-dom", &url]);
    assert!(
        dom.contains("resolved critical api-error-rate-critical at "),
        "the dashboard lists the resolved alert"
    );
    assert!(
        dom.contains("firing critical api-error-rate-critical at "),
        "and when it fired"
    );
    assert!(
        dom.contains("<td>API p95 response time</td>"),
        "the SLA table"
    );
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-alerts.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1400,1700",
        &url,
    ]);
    assert!(std::fs::read(&shot).is_ok_and(|png| png.starts_with(b"\x89PNG")));
    println!("dashboard screenshot with alerts: {}", shot.display());
}

#[test]
fn to_fixed_rounds_as_javascript_does() {
    // (0.25).toFixed(1), (11.85).toFixed(1), (0.125).toFixed(2), (1.005).toFixed(2), (2.5).toFixed(0)
    assert_eq!(to_fixed(0.25, 1), "0.3");
    assert_eq!(to_fixed(11.85, 1), "11.8");
    assert_eq!(to_fixed(0.125, 2), "0.13");
    assert_eq!(to_fixed(1.005, 2), "1.00");
    assert_eq!(to_fixed(2.5, 0), "3");
    assert_eq!(to_fixed(11.75, 1), "11.8");
    assert_eq!(to_fixed(0.0, 1), "0.0");
    // (-0.25).toFixed(1), (-2.5).toFixed(0), (-0).toFixed(1), (-11.85).toFixed(1)
    assert_eq!(to_fixed(-0.25, 1), "-0.3");
    assert_eq!(to_fixed(-2.5, 0), "-3");
    assert_eq!(to_fixed(-0.0, 1), "0.0");
    assert_eq!(to_fixed(-11.85, 1), "-11.8");
}
