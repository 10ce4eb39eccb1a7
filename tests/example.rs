//! Starting the example service the workspace builds beside the tests (its dashboard, Prometheus
//! and terminal tests drive it), and a bare HTTP/1.1 client to read it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The example binary cargo built for this test run (`target/<profile>/examples/clinic`).
pub fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let bin = profile_dir
        .join("examples")
        .join(format!("clinic{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} not built: run the workspace's tests (`cargo test --workspace` builds the example)",
        bin.display()
    );
    bin
}

/// The running example, killed when dropped.
pub struct Example(Child);

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the example with `args` and `seconds` of traffic; returns it and its address once the
/// traffic phase is over.
pub fn start_example(args: &[&str], seconds: &str) -> (Example, String) {
    let (example, addr, _) = start_example_with(args, seconds, &[]);
    (example, addr)
}

/// [`start_example`] with more environment variables; also returns the monitoring address the
/// first line names, when it is not the application's.
pub fn start_example_with(
    args: &[&str],
    seconds: &str,
    env: &[(&str, &str)],
) -> (Example, String, Option<String>) {
    let mut child = Command::new(example_binary())
        .args(args)
        .env("PERFMON_EXAMPLE_SECONDS", seconds)
        .env("PERFMON_EXAMPLE_ADDR", "127.0.0.1:0")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the example");
    let stdout = child.stdout.take().expect("stdout");
    let guard = Example(child);
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().expect("a first line").expect("utf-8");
    let addr = first
        .strip_prefix("listening on http://")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_string();
    let monitoring = first
        .split_once("(monitoring and dashboard: http://")
        .and_then(|(_, r)| r.split('/').next())
        .map(str::to_string);
    for line in lines.by_ref() {
        if line.expect("utf-8").starts_with("serving on") {
            break;
        }
    }
    (guard, addr, monitoring)
}

/// One raw `GET`, with an `Authorization` header if given; the status code and the body.
pub fn request(addr: &str, path: &str, auth: Option<&str>) -> (u16, String) {
    let auth = auth.map(|a| ("Authorization", a));
    let (status, _, body) = request_with(addr, path, auth.as_slice());
    (status, body)
}

/// `GET path` with `headers`: the status, the response's header block and its body.
pub fn request_with(addr: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the example");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP response");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        head[9..12].parse().expect("a status code"),
        head.to_string(),
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    )
}

/// The body of a chunked response.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}
