//! Overhead of a tracked call against a bare call and against peer crates doing the same job,
//! all measured in the same run; then recording throughput on one thread and on two.
//!
//! With `--features off` (perfmon-runtime's `off`) every macro leaves its fn unchanged: the
//! tracked cases then cost what the bare call costs.
//!
//! `-- --alone-only` runs only the last table: each variant alone for 20 M calls in a process of
//! its own, at its best and at steady state, with its peak RSS. `-- --layer-only [REQUESTS]` runs only
//! the `PerfmonLayer` figures: a request through axum alone, with an empty layer, with the layer;
//! `-- --scaling-only` only the throughput on one thread and on two. `-- --pinned [RUNS]` runs
//! perfmon's variants and the floors alone, pinned to each CPU in turn, several processes each.
//!
//! `cargo bench -p perfmon-benches` prints ns per call (median of several rounds) and the ns
//! each instrumentation adds over the bare call. The machine is shared and noisy: compare the
//! ratios within one run, not the absolute figures across runs.

use std::hint::black_box;
use std::time::Instant;

use perfmon_runtime::trace::{with_trace_id, TraceId};
use perfmon_runtime::{collector, measure, track_api, track_query};

#[inline(never)]
fn bare(x: u64) -> u64 {
    black_box(x).wrapping_mul(0x9E37_79B9).rotate_left(7)
}

#[track_api(path = "/bench")]
#[inline(never)]
fn tracked_api(x: u64) -> u64 {
    black_box(x).wrapping_mul(0x9E37_79B9).rotate_left(7)
}

#[track_api(path = "/bench/result")]
#[inline(never)]
fn tracked_api_result(x: u64) -> Result<u64, String> {
    Ok(black_box(x).wrapping_mul(0x9E37_79B9).rotate_left(7))
}

#[track_query(table = "Bench", kind = "read")]
#[inline(never)]
fn tracked_query(x: u64) -> u64 {
    black_box(x).wrapping_mul(0x9E37_79B9).rotate_left(7)
}

#[measure("bench")]
#[inline(never)]
fn measured(x: u64) -> u64 {
    black_box(x).wrapping_mul(0x9E37_79B9).rotate_left(7)
}

#[track_api(path = "/bench/async")]
async fn tracked_async(x: u64) -> u64 {
    black_box(x).wrapping_mul(0x9E37_79B9).rotate_left(7)
}

/// The async floor: the body of an async fn between two clock reads, the second after the
/// inner future's `.await`, as `#[track_api]` places them.
async fn floor_async(x: u64) -> u64 {
    let a = tsc();
    let r = async move { black_box(x).wrapping_mul(0x9E37_79B9).rotate_left(7) }.await;
    r.wrapping_add(tsc().wrapping_sub(a))
}

#[inline(never)]
async fn bare_async(x: u64) -> u64 {
    black_box(x).wrapping_mul(0x9E37_79B9).rotate_left(7)
}

/// Polls a future that is ready at once, pinned where it is built (inlined, as an executor polls
/// a task in place: moving the future into a poll function first made the tracked future pay a
/// failed store-to-load forwarding of its wider state, an artifact of the harness).
#[inline(always)]
fn poll_ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => unreachable!("never pending"),
    }
}

mod peers {
    use super::black_box;
    use metered::{metered, HitCount, ResponseTime};

    #[derive(Default, Debug)]
    pub struct Metered {
        metrics: MeteredMetrics,
    }

    #[metered(registry = MeteredMetrics)]
    impl Metered {
        #[measure([HitCount, ResponseTime])]
        #[inline(never)]
        pub fn call(&self, x: u64) -> u64 {
            black_box(x).wrapping_mul(0x9E37_79B9).rotate_left(7)
        }
    }

    impl Metered {
        pub fn calls(&self) -> u64 {
            self.metrics.call.hit_count.0.get()
        }
    }

    /// hotpath's `#[measure]` (timing every call: no sampling configured).
    #[hotpath::measure]
    #[inline(never)]
    pub fn hotpath_measured(x: u64) -> u64 {
        black_box(x).wrapping_mul(0x9E37_79B9).rotate_left(7)
    }

    /// What a `metrics` user writes: an `Instant` around the call and `histogram!` with a real
    /// (Prometheus) recorder installed.
    #[inline(never)]
    pub fn metrics_histogram(x: u64) -> u64 {
        let start = std::time::Instant::now();
        let r = black_box(x).wrapping_mul(0x9E37_79B9).rotate_left(7);
        metrics::histogram!("bench_duration_seconds").record(start.elapsed());
        r
    }
}

/// A named benchmark case: how many calls per round, and the call.
type Case<'a> = (&'static str, u64, Box<dyn FnMut(u64) -> u64 + 'a>);

/// One timed run of `iters` calls: ns per call.
fn run_once(iters: u64, f: &mut dyn FnMut(u64) -> u64) -> f64 {
    let start = Instant::now();
    let mut acc = 0u64;
    for i in 0..iters {
        acc = acc.wrapping_add(f(i));
    }
    black_box(acc);
    start.elapsed().as_nanos() as f64 / iters as f64
}

/// Median ns per call of each case. The cases take turns, round after round, so that a burst of
/// noise on this shared machine hits every case alike instead of one case's whole measurement.
fn ns_per_call(rounds: usize, cases: &mut [Case<'_>]) -> Vec<(&'static str, f64)> {
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); cases.len()];
    for _ in 0..rounds {
        for (i, (_, iters, f)) in cases.iter_mut().enumerate() {
            samples[i].push(run_once(*iters, f.as_mut()));
        }
    }
    cases
        .iter()
        .zip(samples)
        .map(|((name, _, _), mut s)| {
            s.sort_by(|a, b| a.total_cmp(b));
            (*name, s[s.len() / 2])
        })
        .collect()
}

/// ns per call of the hot path alone: bursts of 512 calls (half a ring) are timed, and the ring
/// is drained between bursts outside the timing, as the background worker does on another core
/// in a service. Median over `rounds`.
fn hot_path_only(rounds: usize, bursts: u64, f: fn(u64) -> u64) -> f64 {
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let mut total = std::time::Duration::ZERO;
        let mut acc = 0u64;
        for b in 0..bursts {
            let start = Instant::now();
            for i in 0..512 {
                acc = acc.wrapping_add(f(b * 512 + i));
            }
            total += start.elapsed();
            black_box(collector().recorder_stats());
        }
        black_box(acc);
        samples.push(total.as_nanos() as f64 / (bursts * 512) as f64);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[rounds / 2]
}

/// Calls per second with `threads` threads each making `iters` calls of `f`.
fn throughput(threads: usize, iters: u64, f: fn(u64) -> u64) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(move || {
                let mut acc = 0u64;
                for i in 0..iters {
                    acc = acc.wrapping_add(f(i));
                }
                black_box(acc)
            });
        }
    });
    (threads as u64 * iters) as f64 / start.elapsed().as_secs_f64()
}

/// The trace id the traced cases run in.
fn bench_trace() -> Option<TraceId> {
    TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736")
}

/// Reads the TSC inline (quanta's raw reading, without the call), or quanta elsewhere.
#[inline(always)]
fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc exists on every x86_64 processor.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        static CLOCK: std::sync::OnceLock<quanta::Clock> = std::sync::OnceLock::new();
        CLOCK.get_or_init(quanta::Clock::new).raw()
    }
}

/// The floor: the bare call between two clock reads, which any timing instrumentation pays.
/// Also shows what the machine's two cores allow in the throughput runs.
#[inline(never)]
fn floor_call(x: u64) -> u64 {
    let a = tsc();
    let r = bare(x);
    r.wrapping_add(tsc().wrapping_sub(a))
}

/// Median of 1-thread and 2-thread throughput over `rounds` alternating runs.
fn scaling(rounds: usize, iters: u64, f: fn(u64) -> u64) -> (f64, f64) {
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        one.push(throughput(1, iters, f));
        two.push(throughput(2, iters, f));
    }
    one.sort_by(|a, b| a.total_cmp(b));
    two.sort_by(|a, b| a.total_cmp(b));
    (one[rounds / 2], two[rounds / 2])
}

/// ns per request through an axum router answering `/api/ping`: alone, with a layer that does
/// nothing (`MapResponseLayer` with the identity: what axum's `Router::layer` costs by itself,
/// as it boxes each layered route), and with `PerfmonLayer`. Median of `rounds` alternating runs
/// of `requests` requests each, in process through `tower::ServiceExt::oneshot`, so the
/// network's noise is left out.
fn layer_overhead(rounds: usize, requests: u64) -> [f64; 3] {
    use axum::{body::Body, http::Request, http::Response, routing::get, Router};
    use tower::ServiceExt;

    let plain: Router = Router::new().route("/api/ping", get(|| async { "pong" }));
    let identity: fn(Response<Body>) -> Response<Body> = |r| r;
    let apps = [
        plain.clone(),
        plain
            .clone()
            .layer(tower::util::MapResponseLayer::new(identity)),
        plain.layer(perfmon_runtime::http::PerfmonLayer::new()),
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let run = |app: &Router| -> f64 {
        rt.block_on(async {
            let start = Instant::now();
            for _ in 0..requests {
                let req = Request::get("/api/ping")
                    .body(Body::empty())
                    .expect("a request");
                let res = app.clone().oneshot(req).await.expect("infallible");
                assert_eq!(res.status(), 200);
                black_box(res);
            }
            start.elapsed().as_nanos() as f64 / requests as f64
        })
    };
    let before = api_requests();
    let mut samples: [Vec<f64>; 3] = Default::default();
    for _ in 0..rounds {
        for (app, s) in apps.iter().zip(samples.iter_mut()) {
            s.push(run(app));
        }
    }
    // every request through the layer was recorded (none with the feature `off`)
    let recorded = api_requests() - before;
    println!("requests through PerfmonLayer recorded: {recorded}");
    samples.map(|mut s| {
        s.sort_by(|x, y| x.total_cmp(y));
        s[rounds / 2]
    })
}

/// Prints [`layer_overhead`]'s figures and what the layers add.
fn layer_table(rounds: usize, requests: u64) {
    let [axum_ns, noop_ns, layered_ns] = layer_overhead(rounds, requests);
    println!(
        "GET /api/ping in process: axum alone {axum_ns:.0} ns/request; with a layer that does nothing {noop_ns:.0} (+{:.0}: axum's boxing of a layered route); with PerfmonLayer {layered_ns:.0} (+{:.0} over axum alone, +{:.0} over the empty layer)",
        noop_ns - axum_ns,
        layered_ns - axum_ns,
        layered_ns - noop_ns
    );
}

/// Requests recorded for `GET /api/ping` so far.
fn api_requests() -> u64 {
    collector().api_stats_for("/api/ping").total_requests
}

/// A control for the throughput runs: about 250 instructions of arithmetic in four independent
/// chains, with no memory shared between threads, so it shows how far the machine's two cores
/// scale work that keeps the execution units busy (the bare clock reads mostly wait on `rdtsc`).
#[inline(never)]
fn arithmetic_call(x: u64) -> u64 {
    let mut h = [x, x ^ 0x9e37, x ^ 0x7f4a, x ^ 0x3c6e];
    for _ in 0..10 {
        for v in h.iter_mut() {
            *v ^= *v << 13;
            *v ^= *v >> 7;
            *v ^= *v << 17;
        }
    }
    h[0] ^ h[1] ^ h[2] ^ h[3]
}

/// Throughput on one thread and on two, of the bare clock reads, of a control of arithmetic, and
/// of `#[measure]` (each thread drains its own full ring: no worker runs).
fn scaling_table(quick: bool) {
    let per_thread = if quick { 1_000_000 } else { 5_000_000 };
    let rounds = if quick { 3 } else { 5 };
    for (name, f) in [
        ("2 TSC reads, no perfmon", floor_call as fn(u64) -> u64),
        ("arithmetic, no perfmon", arithmetic_call),
        ("#[measure], no worker", measured),
    ] {
        let (one, two) = scaling(rounds, per_thread, f);
        println!(
            "throughput {name:<24}: 1 thread {:>5.1} M calls/s, 2 threads {:>5.1} M calls/s, ratio {:.2}",
            one / 1e6,
            two / 1e6,
            two / one
        );
    }
}

/// The variants measured alone, each in a process of its own.
const ALONE: [&str; 13] = [
    "bare",
    "floor",
    "track_api",
    "track_query",
    "measure",
    "traced_query",
    "bare_async",
    "floor_async",
    "async_api",
    "metered",
    "metrics",
    "hotpath",
    "hotpath_idle",
];

/// The peak resident set of this process (VmHWM), in MB.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// `--alone VARIANT CALLS`: this process runs one variant only, `CALLS` calls in a row (after
/// `init`, so the worker drains the rings, as in a service), and prints its ns per call at its
/// best (the fastest of ten equal parts) and at steady state (the whole run), and its peak RSS.
fn alone(variant: &str, calls: u64) {
    // `BENCH_INIT=0|1` overrides whether `init` runs (the worker's thread beside the calls)
    let init = std::env::var("BENCH_INIT").map_or(
        !variant.starts_with("bare") && !variant.starts_with("floor"),
        |v| v == "1",
    );
    let _perfmon = init.then(|| {
        perfmon_runtime::init_blocking(perfmon_runtime::Config::builder().no_alerts().build())
            .expect("init")
    });
    let metered = peers::Metered::default();
    let _hotpath =
        (variant == "hotpath").then(|| hotpath::HotpathGuardBuilder::new("alone").build());
    if variant == "metrics" {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        metrics::set_global_recorder(recorder).expect("no other recorder");
    }
    let f: Box<dyn Fn(u64) -> u64 + '_> = match variant {
        "bare" => Box::new(bare),
        "floor" => Box::new(floor_call),
        "track_api" => Box::new(tracked_api),
        "track_query" => Box::new(tracked_query),
        "measure" => Box::new(measured),
        "metered" => Box::new(|i| metered.call(i)),
        "metrics" => Box::new(peers::metrics_histogram),
        "hotpath" => Box::new(peers::hotpath_measured),
        // hotpath's macro before any `HotpathGuard` is built: it reads the clock twice and
        // drops the measurement (its state is unset), so this is its floor, not a recording
        "hotpath_idle" => Box::new(peers::hotpath_measured),
        "bare_async" => Box::new(|i| poll_ready(bare_async(i))),
        "async_api" => Box::new(|i| poll_ready(tracked_async(i))),
        "floor_async" => Box::new(|i| poll_ready(floor_async(i))),
        "traced_query" => {
            let trace = bench_trace();
            Box::new(move |i| with_trace_id(trace, || tracked_query(i)))
        }
        other => panic!("unknown variant {other}"),
    };
    let part = (calls / 10).max(1);
    let mut parts = Vec::with_capacity(10);
    let start = Instant::now();
    for p in 0..10 {
        let t = Instant::now();
        let mut acc = 0u64;
        for i in p * part..(p + 1) * part {
            acc = acc.wrapping_add(f(i));
        }
        black_box(acc);
        parts.push(t.elapsed().as_nanos() as f64 / part as f64);
    }
    let steady = start.elapsed().as_nanos() as f64 / (10 * part) as f64;
    let best = parts.iter().copied().fold(f64::INFINITY, f64::min);
    let inline = if _perfmon.is_some()
        && !matches!(variant, "metered" | "metrics" | "hotpath" | "hotpath_idle")
    {
        format!(
            " inline-drains {}",
            collector().recorder_stats().inline_drains
        )
    } else {
        String::new()
    };
    if std::env::var_os("BENCH_SPREAD").is_some() {
        if let Some(f) = collector().function_stats().functions.get("bench") {
            eprintln!(
                "spread of #[measure] calls: p50 {:?} p95 {:?} p99 {:?} max {:?}",
                f.p50_duration, f.p95_duration, f.p99_duration, f.max_duration
            );
        }
    }
    println!(
        "alone {variant} best {best:.1} steady {steady:.1} rss {:.1}{inline}",
        peak_rss_mb()
    );
}

/// Every variant alone, each in a fresh process: ns per call at its best and at steady state,
/// and the process's peak RSS.
fn alone_table(calls: u64) {
    println!("\nalone, {calls} calls each in a process of its own (after init): best part / whole run / peak RSS");
    let exe = std::env::current_exe().expect("own path");
    let mut bare = f64::NAN;
    for v in ALONE {
        let out = std::process::Command::new(&exe)
            .args(["--alone", v, &calls.to_string()])
            .output()
            .expect("run a variant alone");
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(line) = text.lines().find(|l| l.starts_with("alone ")) else {
            println!("{v:<14} failed: {}", String::from_utf8_lossy(&out.stderr));
            continue;
        };
        let w: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| {
            w.get(i)
                .and_then(|x| x.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        let (best, steady, rss) = (num(3), num(5), num(7));
        let inline = w
            .get(9)
            .map_or(String::new(), |n| format!("   inline drains {n}"));
        if v == "bare" {
            bare = steady;
        }
        println!(
            "{v:<14} best {best:>7.1} ns   steady {steady:>7.1} ns (+{:>6.1} over bare)   peak RSS {rss:>8.1} MB{inline}",
            steady - bare
        );
    }
}

/// `--pinned [RUNS]`: perfmon's variants and their floors alone, pinned to each CPU in turn
/// (`taskset`), `RUNS` processes each (5 by default): the median of their best parts, and the
/// lowest. On this project's VM one vCPU runs perfmon's variants ~10 ns slower in some processes
/// (the floor never), so figures are reported per CPU.
fn pinned_table(runs: usize) {
    const PINNED: [&str; 8] = [
        "bare",
        "bare_async",
        "floor",
        "track_api",
        "track_query",
        "measure",
        "floor_async",
        "async_api",
    ];
    let exe = std::env::current_exe().expect("own path");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("\npinned, 5 M calls per process, {runs} processes per CPU: median of the best parts (lowest), ns over its floor");
    for cpu in 0..cpus {
        // rounds of every variant in turn, so that a slow spell of the machine falls on all
        let mut best: Vec<Vec<f64>> = vec![Vec::new(); PINNED.len()];
        for _ in 0..runs {
            for (i, v) in PINNED.iter().enumerate() {
                let run = || -> Option<f64> {
                    let out = std::process::Command::new("taskset")
                        .args(["-c", &cpu.to_string()])
                        .arg(&exe)
                        .args(["--alone", v, "5000000"])
                        .output()
                        .ok()?;
                    let text = String::from_utf8_lossy(&out.stdout).into_owned();
                    let line = text.lines().find(|l| l.starts_with("alone "))?.to_string();
                    line.split_whitespace().nth(3)?.parse().ok()
                };
                best[i].extend(run());
            }
        }
        let medians: Vec<(&str, f64, f64)> = PINNED
            .iter()
            .zip(&mut best)
            .map(|(&v, b)| {
                b.sort_by(|x, y| x.total_cmp(y));
                let median = b.get(b.len() / 2).copied().unwrap_or(f64::NAN);
                (v, median, b.first().copied().unwrap_or(f64::NAN))
            })
            .collect();
        // (median, lowest) of a variant
        let of = |v: &str| {
            medians
                .iter()
                .find(|m| m.0 == v)
                .map_or((f64::NAN, f64::NAN), |m| (m.1, m.2))
        };
        let floor_of = |v: &str| {
            of(if v.contains("async") {
                "floor_async"
            } else {
                "floor"
            })
        };
        let row: Vec<String> = medians
            .iter()
            .map(|(v, median, lowest)| {
                if v.starts_with("floor") || v.starts_with("bare") {
                    format!("{v} {median:.1} ({lowest:.1})")
                } else {
                    let (fm, fl) = floor_of(v);
                    format!("{v} {:+.1} ({:+.1})", median - fm, lowest - fl)
                }
            })
            .collect();
        println!("cpu {cpu}: {}", row.join(", "));
        // the async bound: the sync floor plus what polling the bare future costs
        let polling = of("bare_async").0 - of("bare").0;
        println!(
            "cpu {cpu}: async #[track_api] {:+.1} ns over the floor plus polling a bare future ({polling:.1} ns)",
            of("async_api").0 - of("floor").0 - polling
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--pinned") {
        let runs = args.get(i + 1).and_then(|r| r.parse().ok()).unwrap_or(5);
        pinned_table(runs);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--alone") {
        let variant = args.get(i + 1).map_or("bare", String::as_str);
        let calls = args
            .get(i + 2)
            .and_then(|c| c.parse().ok())
            .unwrap_or(20_000_000);
        alone(variant, calls);
        return;
    }
    if args.iter().any(|a| a == "--layer-only") {
        let _perfmon =
            perfmon_runtime::init_blocking(perfmon_runtime::Config::builder().no_alerts().build())
                .expect("init");
        let requests = args
            .iter()
            .position(|a| a == "--layer-only")
            .and_then(|i| args.get(i + 1)?.parse().ok())
            .unwrap_or(100_000);
        layer_table(11, requests);
        return;
    }
    if args.iter().any(|a| a == "--scaling-only") {
        scaling_table(false);
        return;
    }
    if args.iter().any(|a| a == "--alone-only") {
        alone_table(20_000_000);
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, iters) = if quick { (3, 200_000) } else { (11, 2_000_000) };

    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("no other recorder");
    let metered = peers::Metered::default();
    let hotpath = hotpath::HotpathGuardBuilder::new("perfmon-bench").build();

    // warm everything up (series registration, rings, pages)
    for i in 0..100_000 {
        black_box((
            bare(i),
            tracked_api(i),
            tracked_query(i),
            measured(i),
            poll_ready(tracked_async(i)),
        ));
        black_box((
            peers::metrics_histogram(i),
            metered.call(i),
            tracked_api_result(i).ok(),
        ));
        if i < 10_000 {
            black_box(peers::hotpath_measured(i));
        }
    }

    let metered_ref = &metered;
    let trace = bench_trace();
    let mut specs: Vec<Case<'_>> = vec![
        ("bare fn", iters, Box::new(bare)),
        ("floor: bare fn + 2 TSC reads", iters, Box::new(floor_call)),
        ("#[track_api]", iters, Box::new(tracked_api)),
        (
            "#[track_api] -> Result",
            iters,
            Box::new(|i| tracked_api_result(i).unwrap_or(0)),
        ),
        ("#[track_query]", iters, Box::new(tracked_query)),
        ("#[measure]", iters, Box::new(measured)),
        // the cost of a trace id: the same calls inside `with_trace_id` (the scope's own cost is
        // the first case's; the second's extra over it is a traced event's: it goes to the
        // ring, in two slots, and is aggregated one by one)
        (
            "bare fn in with_trace_id",
            iters,
            Box::new(move |i| with_trace_id(trace, || bare(i))),
        ),
        (
            "#[track_query] in with_trace_id",
            iters,
            Box::new(move |i| with_trace_id(trace, || tracked_query(i))),
        ),
        (
            "bare async fn (polled)",
            iters,
            Box::new(|i| poll_ready(bare_async(i))),
        ),
        (
            "floor async: 2 TSC reads around an .await",
            iters,
            Box::new(|i| poll_ready(floor_async(i))),
        ),
        (
            "async #[track_api] (polled)",
            iters,
            Box::new(|i| poll_ready(tracked_async(i))),
        ),
        (
            "metered #[measure([HitCount, ResponseTime])]",
            iters,
            Box::new(move |i| metered_ref.call(i)),
        ),
        (
            "metrics histogram! + Prometheus recorder",
            iters,
            Box::new(peers::metrics_histogram),
        ),
        // hotpath buffers every measurement (hundreds of MB for millions of calls): fewer calls
        (
            "hotpath #[measure]",
            iters / 4,
            Box::new(peers::hotpath_measured),
        ),
    ];
    let cases = ns_per_call(rounds, &mut specs);
    drop(specs);
    let bare_ns = cases[0].1;
    let bare_async_ns = cases
        .iter()
        .find(|(n, _)| *n == "bare async fn (polled)")
        .map_or(f64::NAN, |c| c.1);
    println!("\n{:<46} {:>10} {:>12}", "case", "ns/call", "added ns");
    for (name, ns) in &cases {
        let base = if name.contains("async") {
            bare_async_ns
        } else {
            bare_ns
        };
        println!("{name:<46} {ns:>10.1} {:>12.1}", ns - base);
    }
    let added = |name: &str| {
        cases
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(f64::NAN, |(_, ns)| ns - bare_ns)
    };
    println!(
        "a trace id adds {:.1} ns to #[track_query] (traced call over the same scope around a bare fn; untraced #[track_query] adds {:.1})",
        added("#[track_query] in with_trace_id") - added("bare fn in with_trace_id"),
        added("#[track_query]")
    );
    let floor = added("floor: bare fn + 2 TSC reads");
    let async_floor = cases
        .iter()
        .find(|(n, _)| n.starts_with("floor async"))
        .map_or(f64::NAN, |c| c.1);
    let async_api = cases
        .iter()
        .find(|(n, _)| *n == "async #[track_api] (polled)")
        .map_or(f64::NAN, |c| c.1);
    println!(
        "over the floor (this run): #[track_api] {:+.1} ns, #[track_query] {:+.1}, #[measure] {:+.1}; async #[track_api] {:+.1} over the async floor (which includes polling the future), {:+.1} over the floor plus polling a bare future ({:.1} ns)",
        added("#[track_api]") - floor,
        added("#[track_query]") - floor,
        added("#[measure]") - floor,
        async_api - async_floor,
        async_api - bare_async_ns - floor,
        bare_async_ns - bare_ns
    );
    let ours = added("#[track_api]");
    let fastest_peer = added("metered #[measure([HitCount, ResponseTime])]")
        .min(added("metrics histogram! + Prometheus recorder"))
        .min(added("hotpath #[measure]"));
    println!("\n#[track_api] adds {ours:.1} ns; the fastest peer adds {fastest_peer:.1} ns (ratio {:.2})", ours / fastest_peer);

    let bursts = iters / 512 / 4;
    let hot_bare = hot_path_only(rounds, bursts, bare);
    let hot_floor = hot_path_only(rounds, bursts, floor_call);
    let hot_measure = hot_path_only(rounds, bursts, measured);
    let hot_api = hot_path_only(rounds, bursts, tracked_api);
    let hot_query = hot_path_only(rounds, bursts, tracked_query);
    // the whole measurement inside one trace: every call's event carries the trace id
    let hot_query_traced = with_trace_id(trace, || hot_path_only(rounds, bursts, tracked_query));
    println!("\nhot path alone (rings drained and tallies harvested between bursts, outside the timing):");
    for (name, ns) in [
        ("bare fn", hot_bare),
        ("floor: 2 TSC reads", hot_floor),
        ("#[measure]", hot_measure),
        ("#[track_api]", hot_api),
        ("#[track_query], no trace", hot_query),
        ("#[track_query], in a trace", hot_query_traced),
    ] {
        println!("{name:<46} {ns:>10.1} {:>12.1}", ns - hot_bare);
    }
    println!(
        "a trace id on the calling thread: #[track_query] adds {:.1} ns over the two clock reads without a trace (its tally), {:.1} ns in one (+{:.1} ns: a traced call goes to the ring, in two slots)",
        hot_query - hot_floor,
        hot_query_traced - hot_floor,
        hot_query_traced - hot_query
    );
    println!(
        "#[measure] adds {:.1} ns over the two clock reads on the calling thread; binning its tally and the harvests add {:.1} ns per call in the tight loop above\n",
        hot_measure - hot_floor,
        (cases.iter().find(|(n, _)| *n == "#[measure]").map_or(f64::NAN, |c| c.1) - hot_measure).max(0.0)
    );

    // hotpath's own report; its background thread must be gone before the throughput runs
    drop(hotpath);

    // After `init`, as in a service: the worker drains the rings and harvests the tallies every
    // 10 ms. Untraced calls that are not slow go to the tallies, so a thread recording flat out
    // no longer fills its ring (`inline drains` below counts the times one did).
    let perfmon =
        perfmon_runtime::init_blocking(perfmon_runtime::Config::builder().build()).expect("init");
    let with_worker = ns_per_call(
        rounds,
        &mut [
            (
                "#[track_api], worker draining",
                iters,
                Box::new(tracked_api) as Box<dyn FnMut(u64) -> u64>,
            ),
            ("#[measure], worker draining", iters, Box::new(measured)),
        ],
    );
    for (name, ns) in &with_worker {
        println!("{name:<46} {ns:>10.1} {:>12.1}", ns - bare_ns);
    }
    layer_table(rounds, if quick { 20_000 } else { 200_000 });
    drop(perfmon);

    scaling_table(quick);

    // the figures are real: every call above was recorded (none with the feature `off`)
    match collector().function_stats().functions.get("bench") {
        Some(f) => println!(
            "recorded #[measure] calls: {} (p50 {:?}, p99 {:?})",
            f.calls, f.p50_duration, f.p99_duration
        ),
        None => println!("recorded #[measure] calls: none (built with the feature `off`)"),
    }
    println!(
        "metered calls: {}; prometheus text bytes: {}",
        metered.calls(),
        handle.render().len()
    );
    let r = collector().recorder_stats();
    println!(
        "inline drains: {}, perfmon memory: {:.1} MB",
        r.inline_drains,
        r.memory_bytes as f64 / 1048576.0
    );

    // each variant alone: 20 M calls (2 M with --quick), in a fresh process for its RSS
    alone_table(if quick { 2_000_000 } else { 20_000_000 });
}
