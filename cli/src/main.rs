//! `perfmon`: what an on-call engineer reaches for in a terminal.
//!
//! - `perfmon top [--url URL] [--window W] [--scope S]`: a live view — routes with requests,
//!   p50/p95/p99, error rate and Apdex (sortable, filterable), the slow list, the database per
//!   table, the cache, batches, health and firing alerts. Keys: `w`/`W` next/previous window,
//!   `s` scope, `/` filter routes, `1`–`7` sort column, Enter a route's latency distribution,
//!   Esc back, `q` or Ctrl-C quit.
//! - `perfmon report [--url URL] [--window W] [--scope S] [--json]`: the same once, for scripts
//!   and CI; `--json` prints the JSON of `GET /api/monitoring/metrics`.
//!
//! With `--url` (a service's `/api/monitoring/metrics` URL; the token from
//! `PERFMON_MONITORING_TOKEN`) it reads that service; without it, the retention tiers named by
//! the `PERFMON_*` variables (`PERFMON_REDIS_URL`, `PERFMON_DATABASE_URL`, …), the cluster scope
//! by default; the instance scope then reads the instance `PERFMON_INSTANCE` names, and health
//! and alerts are not shown (they are each service's own). Apdex thresholds set in a service's
//! code are not in the tiers: set `PERFMON_APDEX_THRESHOLD` / `PERFMON_ROUTE_APDEX` for them.

mod source;
mod text;
mod tui;

use std::process::ExitCode;

use perfmon_runtime::{Scope, Window};

use crate::source::Source;

const USAGE: &str = "usage: perfmon top|report [--url URL] [--window 5m|1h|24h|7d|90d|1y] [--scope instance|cluster] [--json]

  top      a live view of one service (--url) or of the cluster from Redis and PostgreSQL
  report   the same once, as text or (--json) the JSON of /api/monitoring/metrics

  --url URL     a service's /api/monitoring/metrics URL (token: PERFMON_MONITORING_TOKEN)
  --window W    5m (default), 1h, 24h, 7d, 90d or 1y
  --scope S     instance (default with --url) or cluster (default without)
  --json        report: print JSON";

/// What the command line asked for.
#[derive(Debug)]
struct Args {
    command: Command,
    url: Option<String>,
    window: Window,
    scope: Scope,
    json: bool,
}

#[derive(Debug, PartialEq)]
enum Command {
    Top,
    Report,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut it = args.iter();
    let command = match it.next().map(String::as_str) {
        Some("top") => Command::Top,
        Some("report") => Command::Report,
        Some(other) => return Err(format!("unknown command {other:?}; expected top or report")),
        None => return Err("a command is needed: top or report".into()),
    };
    let (mut url, mut window, mut scope, mut json) = (None, Window::Minutes5, None, false);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--url" => url = Some(value("--url")?),
            "--window" => {
                let v = value("--window")?;
                window = Window::parse(&v).ok_or_else(|| {
                    format!(
                        "--window {v:?} is not allowed; expected one of 5m, 1h, 24h, 7d, 90d, 1y"
                    )
                })?;
            }
            "--scope" => {
                let v = value("--scope")?;
                scope = Some(Scope::parse(&v).ok_or_else(|| {
                    format!("--scope {v:?} is not allowed; expected instance or cluster")
                })?);
            }
            "--json" if command == Command::Report => json = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let scope = scope.unwrap_or(if url.is_some() {
        Scope::Instance
    } else {
        Scope::Cluster
    });
    Ok(Args {
        command,
        url,
        window,
        scope,
        json,
    })
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let args = match parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("perfmon: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let source = match Source::open(args.url.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("perfmon: {e}");
            return ExitCode::FAILURE;
        }
    };
    let done = match args.command {
        Command::Report => source.fetch(args.window, args.scope, None).map(|answer| {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&answer).unwrap_or_default()
                );
            } else {
                print!("{}", text::report(&answer));
            }
        }),
        Command::Top => tui::run(&source, args.window, args.scope),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perfmon: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn arguments_are_checked_with_what_is_allowed() {
        let a =
            args("report --url http://x/api/monitoring/metrics --window 24h --json").expect("ok");
        assert_eq!(
            (a.command, a.window, a.scope, a.json),
            (Command::Report, Window::Hours24, Scope::Instance, true)
        );
        assert_eq!(args("top").expect("ok").scope, Scope::Cluster);
        for (bad, says) in [
            ("report --window 2h", "5m, 1h, 24h, 7d, 90d, 1y"),
            ("report --scope all", "instance or cluster"),
            ("top --json", "unknown argument"),
            ("status", "top or report"),
            ("report --url", "needs a value"),
        ] {
            let e = args(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
