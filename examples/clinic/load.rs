//! The traffic generator: 16 workers send the served service a seeded mix of requests over
//! HTTP (staff queries, assignments, fairness statistics, leave applications, logins; some
//! invalid, some slow, some failing), while the weekly assignment batch runs beside them on a
//! scheduler of its own.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinError;
use tokio::time::sleep;

use crate::rng::Rng;
use crate::service::{weekly_assignment, App, Staff};

/// How many requests the run drove, how many could not reach the server, and how long it took.
pub(crate) struct Traffic {
    pub(crate) calls: u64,
    pub(crate) failed: u64,
    pub(crate) elapsed: Duration,
}

/// Drives the service at `addr` for `duration` and runs the weekly batch beside it (unless
/// `duration` is zero); returns once both are done.
pub(crate) async fn drive(addr: SocketAddr, duration: Duration) -> Result<Traffic, JoinError> {
    let start = Instant::now();
    let until = start + duration;
    let workers: Vec<_> = (0..16)
        .map(|w| tokio::spawn(worker(addr, w, until)))
        .collect();
    let batch = tokio::spawn(async move {
        if !duration.is_zero() {
            weekly_batch().await;
        }
    });
    let (mut calls, mut failed) = (0, 0);
    for w in workers {
        let (c, f) = w.await?;
        calls += c;
        failed += f;
    }
    batch.await?;
    Ok(Traffic {
        calls,
        failed,
        elapsed: start.elapsed(),
    })
}

/// The weekly batch over weeks 36 to 41, on a scheduler of its own; week 40 fails.
async fn weekly_batch() {
    let staff = (1..=12)
        .map(|id| Staff {
            id,
            clinic: 1 + id % 3,
            shifts: 0,
        })
        .collect();
    let app = App::new(staff, 7);
    for week in 36..=41 {
        if let Err(e) = weekly_assignment(&app, week).await {
            tracing::error!(week, error = %e, "weekly assignment failed");
        }
        sleep(Duration::from_millis(200)).await;
    }
}

/// One HTTP/1.1 request over a fresh connection; the status code, or `None` if it failed.
async fn http_call(addr: SocketAddr, method: &str, target: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.ok()?;
    let head = std::str::from_utf8(buf.get(..12)?).ok()?;
    head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// One traffic worker: a mix of the service's requests until `until`; (calls, failed calls).
async fn worker(addr: SocketAddr, worker: u64, until: Instant) -> (u64, u64) {
    let mut rng =
        Rng::new(0x9E37_79B9_7F4A_7C15 ^ (worker + 1).wrapping_mul(0xA24B_AED4_963E_E407));
    let (mut calls, mut failed) = (0, 0);
    while Instant::now() < until {
        let clinic = 1 + rng.below(4);
        let target = match rng.below(100) {
            0..=29 => (
                "GET",
                format!(
                    "/api/staff?clinicId={}",
                    if rng.below(50) == 0 { 0 } else { clinic }
                ),
            ),
            // one assignment in 150 rebuilds the month, which is slow
            30..=49 => (
                "POST",
                format!(
                    "/api/schedule/assign?clinicId={clinic}&week={}&rebuild={}",
                    1 + rng.below(52),
                    rng.below(150) == 0
                ),
            ),
            50..=79 => {
                let month = match rng.below(100) {
                    0 => 13, // the cache fails
                    1..=3 => 12,
                    _ => 1 + rng.below(11),
                };
                (
                    "GET",
                    format!("/api/stats/fairness?clinicId={clinic}&month={month}"),
                )
            }
            80..=89 => (
                "POST",
                format!(
                    "/api/leave?clinicId={clinic}&staffId={}&annual={}",
                    rng.below(30),
                    rng.below(3) > 0
                ),
            ),
            _ => (
                "POST",
                format!(
                    "/api/auth/login?clinicId={clinic}&admin={}",
                    rng.below(5) == 0
                ),
            ),
        };
        if http_call(addr, target.0, &target.1).await.is_none() {
            failed += 1;
        }
        calls += 1;
    }
    (calls, failed)
}
