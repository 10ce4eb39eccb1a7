//! A small clinic-scheduling service instrumented with all five perfmon macros and
//! `record_business_metric`, served over HTTP with `PerfmonLayer` and the monitoring router on
//! 127.0.0.1:3000. It drives its own mixed traffic over HTTP for a few seconds (staff queries,
//! schedule assignments, fairness statistics behind a cache, leave applications, logins, a weekly
//! batch; some slow calls, some errors, cache hits and misses), then prints what perfmon saw.
//!
//! ```text
//! cargo run --release -p perfmon-examples --example clinic               # traffic, report, exit
//! cargo run --release -p perfmon-examples --example clinic -- --serve    # ... then keep serving
//! ```
//!
//! Environment: `PERFMON_EXAMPLE_SECONDS` (traffic duration, default 5; 0 for none),
//! `PERFMON_EXAMPLE_ADDR` (default 127.0.0.1:3000; port 0 picks a free one),
//! `PERFMON_EXAMPLE_MONITORING_ADDR` (when set, the monitoring routes are served there and not on
//! the application's port: keep them on an address only operators reach), and perfmon's own
//! `PERFMON_*` variables (`PERFMON_MONITORING_TOKEN` locks the monitoring routes). Flags: `--serve` keeps serving after the report (until Ctrl-C),
//! `--no-layer` serves without `PerfmonLayer` (for the load benchmark's baseline),
//! `--alert-demo` evaluates alerts every second over 10 s and takes the database away for 4 s
//! one second in: the critical error-rate alert fires, then resolves (18 s of traffic by default).
//!
//! The parts: `service` (the instrumented scheduler), `routes` (its HTTP handlers and router),
//! `load` (the traffic generator), `report` (what is printed at the end), `alerts` (the alert
//! demo), `rng` (the seeded generator behind latencies and traffic), `server` (hyper with a
//! header-read timeout). This file starts, wires and
//! stops them.

mod alerts;
mod load;
mod report;
mod rng;
mod routes;
mod server;
mod service;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::service::{App, Staff};

/// What the command line and the environment ask for.
struct Options {
    serve: bool,
    with_layer: bool,
    alert_demo: bool,
    seconds: u64,
    addr: String,
    monitoring_addr: Option<String>,
}

impl Options {
    fn from_env() -> Options {
        let flag = |name: &str| std::env::args().any(|a| a == name);
        let alert_demo = flag("--alert-demo");
        Options {
            serve: flag("--serve"),
            with_layer: !flag("--no-layer"),
            alert_demo,
            seconds: std::env::var("PERFMON_EXAMPLE_SECONDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(if alert_demo {
                    alerts::TRAFFIC_SECONDS
                } else {
                    5
                }),
            addr: std::env::var("PERFMON_EXAMPLE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into()),
            monitoring_addr: std::env::var("PERFMON_EXAMPLE_MONITORING_ADDR")
                .ok()
                .filter(|a| !a.is_empty()),
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    let options = Options::from_env();
    let mut config = perfmon_runtime::Config::from_env()?;
    if options.alert_demo {
        config = alerts::configure(config);
    }
    let perfmon = perfmon_runtime::init(config).await?;

    // 40 staff across four clinics
    let staff = (1..=40)
        .map(|id| Staff {
            id,
            clinic: 1 + id % 4,
            shifts: id % 3,
        })
        .collect();
    let app = Arc::new(App::new(staff, 42));
    let addr = &options.addr;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let router = routes::router(app.clone(), options.with_layer);
    let server = match &options.monitoring_addr {
        None => {
            println!(
                "listening on http://{local} (dashboard: http://{local}/api/monitoring/dashboard)"
            );
            tokio::spawn(server::serve(
                listener,
                router.merge(perfmon_runtime::http::router()),
            ))
        }
        Some(addr) => {
            let monitoring = TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            let at = monitoring.local_addr()?;
            println!("listening on http://{local} (monitoring and dashboard: http://{at}/api/monitoring/dashboard)");
            tokio::spawn(server::serve(monitoring, perfmon_runtime::http::router()));
            tokio::spawn(server::serve(listener, router))
        }
    };
    if options.alert_demo {
        alerts::spawn_outage(app);
    }

    let traffic = load::drive(local, Duration::from_secs(options.seconds)).await?;
    if options.seconds > 0 {
        report::print(&traffic);
    }
    if options.serve {
        println!("serving on http://{local} until Ctrl-C");
        tokio::select! {
            r = server => { r??; }
            r = tokio::signal::ctrl_c() => { r?; }
        }
    }
    perfmon.shutdown().await?;
    Ok(())
}
