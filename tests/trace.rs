//! Trace ids (issue 11, item 1) and OpenMetrics exemplars (item 2), in process: a request's W3C
//! `traceparent` reaches the slow list, the recent requests, batch failures and the exemplars,
//! also for the calls tracked inside its handler; code outside a request sets one with
//! `with_trace_id`/`in_trace`. Then the same through the Redis and PostgreSQL tiers.

use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use perfmon_runtime::http::{router, PerfmonLayer};
use perfmon_runtime::trace::{current_trace_id, in_trace, with_trace_id, TraceId};
use perfmon_runtime::*;
use perfmon_tests::{database_url, redis_url, spin, unique_prefix};
use redis::AsyncCommands;
use serde_json::Value;
use tower::ServiceExt;

const T1: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const T2: &str = "0af7651916cd43dd8448eb211c80319c";

fn id(hex: &str) -> TraceId {
    TraceId::from_hex(hex).expect("a trace id")
}

#[track_query(table = "TraceStaff", kind = "read", op = "findMany")]
fn find_staff() -> Vec<&'static str> {
    spin(Duration::from_micros(50));
    vec!["kim"]
}

#[track_batch("trace-nightly")]
fn nightly(fail: bool) -> Result<(), String> {
    if fail {
        Err("no staff".into())
    } else {
        Ok(())
    }
}

#[track_api(slow = "1us")]
async fn traced_handler() -> Result<&'static str, StatusCode> {
    spin(Duration::from_micros(20));
    let _ = find_staff();
    // the handler's async part runs in the request's trace too
    tokio::task::yield_now().await;
    let _ = nightly(true);
    Ok("ok")
}

/// The OpenTelemetry test's handler (its own series: tests run in parallel).
#[track_api(slow = "1us")]
async fn otel_handler() -> &'static str {
    spin(Duration::from_micros(20));
    "ok"
}

fn app() -> Router {
    Router::new()
        .route("/trace/assign", get(traced_handler))
        .merge(router())
        .layer(PerfmonLayer::new())
}

async fn call(app: &Router, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, String, String) {
    let mut req = Request::builder().uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), ctype)
}

/// The exemplar's trace id on the first line of `text` that starts with `prefix`.
fn exemplar_on(text: &str, prefix: &str) -> Option<String> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .find_map(|l| l.split_once(" # {trace_id=\""))
        .map(|(_, rest)| rest[..32].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traceparent_reaches_the_slow_list_recent_requests_batch_failures_and_exemplars() {
    let app = app();
    let traceparent = format!("00-{T1}-00f067aa0ba902b7-01");
    let (status, _, _) = call(&app, "/trace/assign", &[("traceparent", &traceparent)]).await;
    assert_eq!(status, StatusCode::OK);
    // an untraced request, and one with a malformed header: no trace id anywhere
    call(&app, "/trace/assign", &[]).await;
    call(
        &app,
        "/trace/assign",
        &[("traceparent", "00-zz-00f067aa0ba902b7-01")],
    )
    .await;
    assert_eq!(current_trace_id(), None, "the layer restores the trace id");

    let slow: Vec<SlowRequest> = collector()
        .slow_requests(SLOW_LIST_SIZE)
        .into_iter()
        .filter(|r| r.path == "/trace/assign")
        .collect();
    assert_eq!(slow.len(), 3, "{slow:?}");
    let traced: Vec<_> = slow.iter().filter_map(|r| r.trace_id).collect();
    assert_eq!(traced, vec![id(T1)], "only the traced request carries it");
    let recent: Vec<Option<TraceId>> = collector()
        .recent_requests()
        .into_iter()
        .filter(|r| r.path == "/trace/assign")
        .map(|r| r.trace_id)
        .collect();
    assert_eq!(recent.len(), 3);
    assert_eq!(recent.iter().flatten().collect::<Vec<_>>(), vec![&id(T1)]);

    // JSON: traceId in the slow list, lastFailureTraceId on the batch
    let (_, body, _) = call(&app, "/api/monitoring/metrics", &[]).await;
    let json: Value = serde_json::from_str(&body).expect("JSON");
    let slow_json: Vec<&Value> = json["data"]["slowRequests"]
        .as_array()
        .expect("slow list")
        .iter()
        .filter(|r| r["path"] == "/trace/assign")
        .collect();
    assert_eq!(
        slow_json.iter().filter(|r| r["traceId"] == T1).count(),
        1,
        "{slow_json:?}"
    );
    assert!(slow_json
        .iter()
        .all(|r| r["traceId"] == T1 || r.get("traceId").is_none()));

    // OpenMetrics: exemplars on the request's bucket and counter, and on the query's
    let (status, om, ctype) = call(
        &app,
        "/metrics",
        &[(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        ctype,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(om.ends_with("# EOF\n"));
    assert!(
        om.contains("# TYPE perfmon_http_requests counter\n"),
        "a counter's family has no _total"
    );
    let route = "{method=\"GET\",route=\"/trace/assign\"";
    // the request and its query are the newest traced calls of their series
    assert_eq!(
        exemplar_on(
            &om,
            &format!("perfmon_http_requests_total{route},status=\"200\"}}")
        )
        .as_deref(),
        Some(T1)
    );
    let buckets: Vec<&str> = om
        .lines()
        .filter(|l| {
            l.starts_with(&format!(
                "perfmon_http_request_duration_seconds_bucket{route}"
            ))
        })
        .collect();
    assert_eq!(
        buckets.iter().filter(|l| l.contains(T1)).count(),
        1,
        "exactly one bucket holds the traced request: {buckets:#?}"
    );
    assert_eq!(
        exemplar_on(
            &om,
            "perfmon_db_query_duration_seconds_bucket{table=\"TraceStaff\""
        )
        .as_deref(),
        Some(T1),
        "the query inside the handler ran in the request's trace"
    );
    // the exemplar's value lies in its bucket
    let line = buckets.iter().find(|l| l.contains(T1)).expect("the bucket");
    let le: f64 = line
        .split("le=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .map(|v| {
            if v == "+Inf" {
                f64::INFINITY
            } else {
                v.parse().expect("le")
            }
        })
        .expect("le");
    let value: f64 = line
        .rsplit(' ')
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("exemplar value");
    assert!(value <= le && value > 20e-6, "{line}");

    // the 0.0.4 text stays the default, without exemplars
    let (_, text, ctype) = call(&app, "/metrics", &[]).await;
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    assert!(!text.contains(" # {") && !text.contains("# EOF"));
    assert!(text.contains("# TYPE perfmon_http_requests_total counter\n"));

    // outside any request: with_trace_id (sync) and in_trace (async) set the trace
    with_trace_id(Some(id(T2)), || nightly(true)).ok();
    let batches = collector().batch_stats();
    let b = &batches.batches["trace-nightly"];
    assert_eq!(b.failures, 4);
    assert_eq!(b.last_failure_trace_id, Some(id(T2)));
    in_trace(Some(id(T1)), async { nightly(true) }).await.ok();
    let batches = collector().batch_stats();
    assert_eq!(
        batches.batches["trace-nightly"].last_failure_trace_id,
        Some(id(T1))
    );
    let (_, body, _) = call(&app, "/api/monitoring/metrics?type=batch", &[]).await;
    let json: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        json["data"]["batch"]["batches"]["trace-nightly"]["lastFailureTraceId"], T1,
        "{json}"
    );
}

/// With the `opentelemetry` feature, a request without `traceparent` takes the trace id of the
/// current `tracing` span's OpenTelemetry context; a `traceparent` header still wins.
#[tokio::test(flavor = "current_thread")]
async fn the_current_opentelemetry_span_gives_a_request_its_trace_id() {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId as OtelId, TraceState,
    };
    use tracing::Instrument;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::layer::SubscriberExt;

    const T3: &str = "11112222333344445555666677778888";
    let subscriber = tracing_subscriber::registry().with(
        tracing_opentelemetry::layer().with_tracer(opentelemetry::trace::noop::NoopTracer::new()),
    );
    // this test's thread only (a current-thread runtime polls the request here)
    let _default = tracing::subscriber::set_default(subscriber);
    let app = Router::new()
        .route("/trace/otel", get(otel_handler))
        .layer(PerfmonLayer::new());
    let in_span = |hex: &str| {
        let span = tracing::info_span!("request");
        let remote = SpanContext::new(
            OtelId::from_hex(hex).expect("trace id"),
            SpanId::from_hex("00f067aa0ba902b7").expect("span id"),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
        span
    };
    call(&app, "/trace/otel", &[]).instrument(in_span(T3)).await;
    let header = format!("00-{T2}-00f067aa0ba902b7-01");
    call(&app, "/trace/otel", &[("traceparent", &header)])
        .instrument(in_span(T3))
        .await;
    call(&app, "/trace/otel", &[]).await; // outside any span: no trace
    let mut traced: Vec<Option<String>> = collector()
        .slow_requests(SLOW_LIST_SIZE)
        .into_iter()
        .filter(|r| r.path == "/trace/otel")
        .map(|r| r.trace_id.map(|t| t.to_string()))
        .collect();
    traced.sort();
    assert_eq!(
        traced,
        vec![None, Some(T2.to_string()), Some(T3.to_string())]
    );
}

/// Through the tiers: the realtime slow list and recent requests in Redis carry `traceId`;
/// a batch failure's trace id reaches the PostgreSQL event log and survives the Redis codec.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_ids_are_kept_in_redis_and_postgres() {
    let prefix = unique_prefix("trace");
    let pm = init(
        Config::builder()
            .redis_url(redis_url())
            .database_url(database_url())
            .key_prefix(&prefix)
            .instance("trace-a")
            .flush_interval(Duration::from_secs(3600))
            .no_alerts()
            .build(),
    )
    .await
    .expect("init with Redis and PostgreSQL");
    with_trace_id(Some(id(T2)), || {
        record_api_metric(ApiMetric {
            method: "GET",
            path: "/trace/tiers",
            status_code: 200,
            duration: Duration::from_secs(6), // over the 5 s default: slow
            timestamp: SystemTime::now(),
        });
        record_batch_metric(BatchMetric {
            name: "trace-tiers-nightly",
            duration: Duration::from_secs(2),
            success: false,
            timestamp: SystemTime::now(),
        });
    });
    record_api_metric(ApiMetric {
        method: "GET",
        path: "/trace/tiers",
        status_code: 200,
        duration: Duration::from_millis(3),
        timestamp: SystemTime::now(),
    });
    pm.flush().await.expect("flush");

    let mut r = redis::Client::open(redis_url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let slow: Vec<String> = r
        .zrevrange(format!("{prefix}:slow"), 0, -1)
        .await
        .expect("slow list");
    // members are the instance, then the request's JSON
    let slow: Vec<Value> = slow
        .iter()
        .map(|s| {
            assert!(s.starts_with("trace-a"), "{s}");
            serde_json::from_str::<Value>(&s[s.find('{').expect("JSON")..]).expect("JSON")
        })
        .filter(|j| j["path"] == "/trace/tiers")
        .collect();
    assert_eq!(slow.len(), 1, "{slow:?}");
    assert_eq!(slow[0]["traceId"], T2);
    let recent: Vec<String> = r
        .lrange(format!("{prefix}:rt:trace-a:recent"), 0, -1)
        .await
        .expect("recent");
    let traced: Vec<Value> = recent
        .iter()
        .map(|s| serde_json::from_str::<Value>(s).expect("JSON"))
        .filter(|j| j["path"] == "/trace/tiers")
        .collect();
    assert_eq!(traced.len(), 2);
    assert_eq!(
        traced.iter().filter(|j| j["traceId"] == T2).count(),
        1,
        "{traced:?}"
    );
    assert_eq!(
        traced.iter().filter(|j| j.get("traceId").is_none()).count(),
        1
    );

    // read back from the Redis tier: the codec keeps the failure's trace id
    let hour = collector()
        .query(Window::Hour1, Scope::Instance)
        .batch_stats()
        .await
        .expect("the Redis tier answers");
    assert_eq!(
        hour.batches["trace-tiers-nightly"].last_failure_trace_id,
        Some(id(T2))
    );

    let pool = sqlx::PgPool::connect(&database_url())
        .await
        .expect("connect");
    let detail: String = sqlx::query_scalar(&format!(
        "SELECT detail FROM \"{prefix}\".events WHERE kind = 'batch_failure' AND name = 'trace-tiers-nightly'"
    ))
    .fetch_one(&pool)
    .await
    .expect("the failure is in the event log");
    let detail: Value = serde_json::from_str(&detail).expect("JSON detail");
    assert_eq!(detail["traceId"], T2);
    pm.shutdown().await.expect("shutdown");
    perfmon_tests::drop_schema(&prefix).await;
}
