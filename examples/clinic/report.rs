//! The report printed once the traffic is over: what perfmon saw, read back through
//! `collector()` (API routes, slow requests, database tables, cache, batch, functions, business
//! metrics, the recorder itself).

use std::time::Duration;

use perfmon_runtime::{collector, resource_usage, rfc3339, WINDOW_MINUTES};

use crate::load::Traffic;

fn ms(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{}µs", d.as_micros())
    } else {
        format!("{:.1}ms", d.as_secs_f64() * 1000.0)
    }
}

/// Prints the report of a run that drove `traffic`.
pub(crate) fn print(traffic: &Traffic) {
    let c = collector();
    println!(
        "\nperfmon report — {} requests driven in {:.1}s (window: the last {} minutes)\n",
        traffic.calls,
        traffic.elapsed.as_secs_f64(),
        WINDOW_MINUTES
    );
    let api = c.api_stats();
    println!("API overall: {} requests, avg {}, p50 {}, p95 {}, p99 {}, max {}, errors {:.2}% (4xx {:.2}%, 5xx {:.2}%)",
        api.total_requests, ms(api.avg_duration), ms(api.p50_duration), ms(api.p95_duration), ms(api.p99_duration),
        ms(api.max_duration), api.error_rate, api.client_error_rate, api.server_error_rate);
    println!(
        "\n{:<7} {:<24} {:>8} {:>10} {:>10} {:>10} {:>8}",
        "method", "route", "requests", "avg", "p95", "p99", "errors"
    );
    for r in c.api_routes() {
        let s = &r.stats;
        println!(
            "{:<7} {:<24} {:>8} {:>10} {:>10} {:>10} {:>7.2}%",
            r.method,
            r.path,
            s.total_requests,
            ms(s.avg_duration),
            ms(s.p95_duration),
            ms(s.p99_duration),
            s.error_rate
        );
    }

    println!("\nSlow requests, top 5:");
    for (i, r) in c.slow_requests(5).iter().enumerate() {
        println!(
            "  {}. {} {} - {:.1}s ({}) at {}",
            i + 1,
            r.method,
            r.path,
            r.duration.as_secs_f64(),
            r.status_code,
            rfc3339(r.timestamp)
        );
    }

    let db = c.database_stats();
    println!(
        "\nDatabase: {} queries, avg {}, p95 {}, {} slow, {} errors",
        db.total_queries,
        ms(db.totals.avg_duration),
        ms(db.totals.p95_duration),
        db.totals.slow_queries,
        db.totals.errors
    );
    for (table, t) in &db.tables {
        let ops: Vec<&str> = t.operations.keys().map(String::as_str).collect();
        println!("  {table:<13} reads {:>5}  writes {:>5}  avg {:>8}  p95 {:>8}  p99 {:>8}  slow {:>3}  errors {:>3}  ({})",
            t.totals.reads, t.totals.writes, ms(t.totals.avg_duration), ms(t.totals.p95_duration), ms(t.totals.p99_duration), t.totals.slow_queries, t.totals.errors, ops.join(", "));
    }

    let cache = c.cache_stats();
    println!(
        "\nCache: hit rate {:.1}%, miss rate {:.1}%, error rate {:.1}% over {} operations",
        cache.hit_rate, cache.miss_rate, cache.error_rate, cache.total_operations
    );

    for (name, b) in c.batch_stats().batches {
        println!("\nBatch {name}: {} runs, {} succeeded, {} failed ({:.1}% success), avg {}, last failure {}",
            b.runs, b.successes, b.failures, b.success_rate, ms(b.avg_duration), b.last_failure.map_or("none".into(), rfc3339));
    }

    for (name, f) in c.function_stats().functions {
        println!(
            "Function {name}: {} calls, p50 {}, p99 {}, {} over the threshold",
            f.calls,
            ms(f.p50_duration),
            ms(f.p99_duration),
            f.slow_calls
        );
    }

    for (name, m) in c.business_metrics().metrics {
        let tags: Vec<String> = m
            .tags
            .iter()
            .map(|(k, vs)| {
                let vs: Vec<String> = vs.iter().map(|(v, s)| format!("{v}={}", s.count)).collect();
                format!("{k}: {}", vs.join(" "))
            })
            .collect();
        println!("Business {name}: {} events ({})", m.count, tags.join("; "));
    }
    let r = c.recorder_stats();
    let res = resource_usage();
    println!(
        "\nRecorder: {} events aggregated, {} threads, {:.1} MB held; process RSS {:.1} MB, pid {}",
        r.events_processed,
        r.threads,
        r.memory_bytes as f64 / 1048576.0,
        res.memory.rss,
        res.pid
    );
    if traffic.failed > 0 {
        println!(
            "({} requests of the traffic generator could not reach the server)",
            traffic.failed
        );
    }
}
