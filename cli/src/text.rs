//! The figures as text: the rows both `perfmon report` and `perfmon top` show, from the JSON of
//! `GET /api/monitoring/metrics`, formatted alike (ms to one decimal, percent to one, Apdex to
//! two).

use serde_json::Value;

/// A duration in ms, one decimal.
pub(crate) fn ms(v: &Value) -> String {
    v.as_f64().map_or("—".into(), |v| format!("{v:.1}"))
}

/// A percentage, one decimal.
pub(crate) fn pct(v: &Value) -> String {
    v.as_f64().map_or("—".into(), |v| format!("{v:.1}"))
}

/// An Apdex score, two decimals (`—` without requests).
pub(crate) fn apdex(v: &Value) -> String {
    v.as_f64().map_or("—".into(), |v| format!("{v:.2}"))
}

/// A count.
pub(crate) fn count(v: &Value) -> String {
    v.as_u64().map_or("0".into(), |v| v.to_string())
}

/// The columns of the routes table.
pub(crate) const ROUTE_COLUMNS: [&str; 7] = [
    "route", "requests", "p50 ms", "p95 ms", "p99 ms", "errors %", "apdex",
];

/// One route's cells, in [`ROUTE_COLUMNS`] order.
pub(crate) fn route_cells(r: &Value) -> [String; 7] {
    [
        format!(
            "{} {}",
            r["method"].as_str().unwrap_or(""),
            r["path"].as_str().unwrap_or("")
        ),
        count(&r["totalRequests"]),
        ms(&r["p50Duration"]),
        ms(&r["p95Duration"]),
        ms(&r["p99Duration"]),
        pct(&r["errorRate"]),
        apdex(&r["apdex"]),
    ]
}

/// The key a routes column sorts by (largest first; the route column by name).
pub(crate) fn sort_key(r: &Value, column: usize) -> f64 {
    let field = [
        "",
        "totalRequests",
        "p50Duration",
        "p95Duration",
        "p99Duration",
        "errorRate",
        "apdex",
    ];
    r[field[column.min(6)]].as_f64().unwrap_or(0.0)
}

/// The header line: window, scope, health, firing alerts.
pub(crate) fn header(answer: &Value) -> String {
    let d = &answer["data"];
    // read from the tiers, health and alerts are the services' own: not shown
    let firing = d["alerts"]
        .as_array()
        .map_or("n/a".to_string(), |a| a.len().to_string());
    format!(
        "perfmon — window {} — scope {} — health {} — alerts firing {} — requests {} — apdex {}",
        answer["window"].as_str().unwrap_or("?"),
        answer["scope"].as_str().unwrap_or("?"),
        d["system"]["health"]["status"].as_str().unwrap_or("n/a"),
        firing,
        count(&d["api"]["totalRequests"]),
        apdex(&d["api"]["apdex"]),
    )
}

/// The slow list's lines, slowest first.
pub(crate) fn slow_lines(d: &Value) -> Vec<String> {
    d["slowRequests"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    let trace = r["traceId"]
                        .as_str()
                        .map_or(String::new(), |t| format!("  trace {t}"));
                    format!(
                        "{} {} {} {} ms{trace}",
                        r["method"].as_str().unwrap_or(""),
                        r["path"].as_str().unwrap_or(""),
                        r["statusCode"],
                        ms(&r["duration"])
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The database lines, one per table.
pub(crate) fn database_lines(d: &Value) -> Vec<String> {
    let mut out = vec![format!(
        "{:<24} {:>8} {:>8} {:>7} {:>9} {:>9} {:>6}",
        "table", "reads", "writes", "errors", "avg ms", "p95 ms", "slow"
    )];
    if let Some(tables) = d["database"]["tables"].as_object() {
        for (name, t) in tables {
            out.push(format!(
                "{:<24} {:>8} {:>8} {:>7} {:>9} {:>9} {:>6}",
                name,
                count(&t["reads"]),
                count(&t["writes"]),
                count(&t["errors"]),
                ms(&t["avgDuration"]),
                ms(&t["p95Duration"]),
                count(&t["slowQueries"])
            ));
        }
    }
    out
}

/// The cache line and the batch lines.
pub(crate) fn cache_and_batch_lines(d: &Value) -> Vec<String> {
    let c = &d["cache"];
    let mut out = vec![format!(
        "cache: hit {}%  miss {}%  error {}%  operations {}",
        pct(&c["hitRate"]),
        pct(&c["missRate"]),
        pct(&c["errorRate"]),
        count(&c["totalOperations"])
    )];
    if let Some(batches) = d["batch"]["batches"].as_object() {
        for (name, b) in batches {
            out.push(format!(
                "batch {name}: runs {}  failed {}  success {}%  avg {} ms  last failure {}",
                count(&b["runs"]),
                count(&b["failures"]),
                pct(&b["successRate"]),
                ms(&b["avgDuration"]),
                b["lastFailure"].as_str().unwrap_or("—")
            ));
        }
    }
    out
}

/// The firing alerts' lines.
pub(crate) fn alert_lines(d: &Value) -> Vec<String> {
    d["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    format!(
                        "{} {} {}",
                        x["severity"].as_str().unwrap_or(""),
                        x["rule"].as_str().unwrap_or(""),
                        x["message"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Routes, busiest first.
pub(crate) fn routes(d: &Value) -> Vec<Value> {
    d["routes"].as_array().cloned().unwrap_or_default()
}

/// `perfmon report` as text.
pub(crate) fn report(answer: &Value) -> String {
    let d = &answer["data"];
    let mut out = String::new();
    out.push_str(&header(answer));
    out.push_str("\n\nROUTES\n");
    out.push_str(&format!(
        "{:<40} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6}\n",
        ROUTE_COLUMNS[0],
        ROUTE_COLUMNS[1],
        ROUTE_COLUMNS[2],
        ROUTE_COLUMNS[3],
        ROUTE_COLUMNS[4],
        ROUTE_COLUMNS[5],
        ROUTE_COLUMNS[6]
    ));
    for r in routes(d) {
        let c = route_cells(&r);
        out.push_str(&format!(
            "{:<40} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6}\n",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6]
        ));
    }
    let sections = [
        ("SLOW REQUESTS", slow_lines(d)),
        ("DATABASE", database_lines(d)),
        ("CACHE AND BATCHES", cache_and_batch_lines(d)),
        ("FIRING ALERTS", alert_lines(d)),
    ];
    for (title, lines) in sections {
        out.push_str(&format!("\n{title}\n"));
        if lines.is_empty() {
            out.push_str("(none)\n");
        }
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

/// A route's latency distribution as bars (from `data.distribution`).
pub(crate) fn distribution_lines(d: &Value, width: usize) -> Vec<String> {
    let Some(buckets) = d["distribution"].as_array() else {
        return vec!["no distribution in the answer".into()];
    };
    let max = buckets
        .iter()
        .filter_map(|b| b["count"].as_u64())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut above = 0.0;
    buckets
        .iter()
        .map(|b| {
            let n = b["count"].as_u64().unwrap_or(0);
            let label = match b["le"].as_f64() {
                Some(le) => {
                    let l = format!("{above:>9.1} – {le:>9.1} ms");
                    above = le;
                    l
                }
                None => format!("{above:>9.1} ms and above  "),
            };
            let bar = "█".repeat((n as usize * width) / max as usize);
            format!("{label} {n:>8} {bar}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_report_shows_every_section_with_the_json_figures() {
        let answer = json!({
            "success": true, "window": "5m", "scope": "instance",
            "data": {
                "api": { "totalRequests": 3, "apdex": 0.833 },
                "routes": [{ "method": "GET", "path": "/api/staff", "totalRequests": 3,
                    "p50Duration": 7.94, "p95Duration": 13.03, "p99Duration": 13.69,
                    "errorRate": 33.333, "apdex": 0.833 }],
                "slowRequests": [{ "method": "POST", "path": "/api/schedule/assign",
                    "statusCode": 201, "duration": 3129.9, "traceId": "4bf92f3577b34da6a3ce929d0e0e4736" }],
                "database": { "tables": { "Staff": { "reads": 9, "writes": 1, "errors": 0,
                    "avgDuration": 2.0, "p95Duration": 4.0, "slowQueries": 0 } } },
                "cache": { "hitRate": 93.6, "missRate": 5.3, "errorRate": 1.0, "totalOperations": 974 },
                "batch": { "batches": {} },
                "alerts": [],
                "system": { "health": { "status": "healthy" } }
            }
        });
        let text = report(&answer);
        assert!(text.contains("health healthy"), "{text}");
        assert!(text.contains("GET /api/staff"));
        assert!(text.contains("13.7") && text.contains("33.3") && text.contains("0.83"));
        assert!(text.contains("trace 4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(text.contains("Staff"));
        assert!(text.contains("hit 93.6%"));
    }
}
