//! `PerfmonLayer` and the monitoring router, driven in-process through `tower::ServiceExt`.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use perfmon_runtime::http::{router, PerfmonLayer, UNMATCHED};
use perfmon_runtime::*;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tower::ServiceExt;

async fn staff() -> &'static str {
    "kim"
}

#[track_api(slow = "1ms")]
async fn assign() -> Result<(StatusCode, &'static str), StatusCode> {
    tokio::time::sleep(Duration::from_millis(3)).await;
    Ok((StatusCode::CREATED, "assigned"))
}

#[track_api(path = "/custom/name", method = "PUT")]
async fn explicit() -> StatusCode {
    StatusCode::ACCEPTED
}

async fn missing() -> StatusCode {
    StatusCode::NOT_FOUND
}

async fn boom() -> Result<&'static str, StatusCode> {
    Err(StatusCode::SERVICE_UNAVAILABLE)
}

fn app() -> Router {
    Router::new()
        .route("/api/staff/{id}", get(staff))
        .route("/api/schedule/assign", post(assign))
        .route("/api/explicit", get(explicit))
        .route("/api/missing", get(missing))
        .route("/api/boom", get(boom))
        .nest("/v1", Router::new().route("/items/{id}", get(staff)))
        // one route per other test, so that tests running in parallel do not share a series
        .route("/api/for-metrics", post(assign))
        .route("/api/for-prometheus/{id}", get(staff))
        .merge(router())
        .layer(PerfmonLayer::new())
}

async fn call(app: &Router, method: &str, uri: &str) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn json(app: &Router, uri: &str) -> (StatusCode, Value) {
    let (status, body) = call(app, "GET", uri).await;
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{uri}: {e}: {body}")),
    )
}

fn route(method: &str, path: &str) -> Option<RouteStats> {
    collector()
        .api_routes()
        .into_iter()
        .find(|r| r.method == method && r.path == path)
}

#[tokio::test]
async fn the_layer_records_each_request_once_under_its_route_template() {
    let app = app();
    for id in 1..=3 {
        assert_eq!(
            call(&app, "GET", &format!("/api/staff/{id}")).await.0,
            StatusCode::OK
        );
    }
    assert_eq!(
        call(&app, "POST", "/api/schedule/assign").await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        call(&app, "GET", "/api/explicit").await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        call(&app, "GET", "/api/missing").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&app, "GET", "/api/boom").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(call(&app, "GET", "/v1/items/9").await.0, StatusCode::OK);
    assert_eq!(
        call(&app, "GET", "/no/such/page").await.0,
        StatusCode::NOT_FOUND
    );
    // a second layer around the first does not count twice
    let twice = app.clone().layer(PerfmonLayer::new());
    assert_eq!(call(&twice, "GET", "/api/staff/4").await.0, StatusCode::OK);
    // nor does one around the whole router, which sees no route but gets it from the inner one
    let outside = tower::Layer::layer(&PerfmonLayer::new(), app.clone());
    let req = Request::builder()
        .uri("/api/staff/5")
        .body(Body::empty())
        .expect("request");
    assert_eq!(
        outside.oneshot(req).await.expect("infallible").status(),
        StatusCode::OK
    );

    let staff = route("GET", "/api/staff/{id}").expect("templated route, never the raw path");
    assert_eq!(staff.stats.total_requests, 5);
    assert!(collector()
        .api_routes()
        .iter()
        .all(|r| !r.path.starts_with("/api/staff/1")));
    let assign =
        route("POST", "/api/schedule/assign").expect("handler with #[track_api] recorded once");
    assert_eq!(assign.stats.total_requests, 1);
    assert_eq!(
        assign.stats.status_codes.get(&201),
        Some(&1),
        "the real status, from the response"
    );
    assert!(assign.stats.max_duration >= Duration::from_millis(3));
    assert!(
        collector()
            .slow_requests(50)
            .iter()
            .any(|r| r.path == "/api/schedule/assign"),
        "the handler's 1ms threshold applied"
    );
    assert_eq!(
        route("PUT", "/custom/name").map(|r| r.stats.status_codes),
        Some([(202, 1)].into())
    );
    assert!(route("GET", "/api/explicit").is_none());
    assert_eq!(
        route("GET", "/api/missing").map(|r| r.stats.client_error_rate),
        Some(100.0)
    );
    assert_eq!(
        route("GET", "/api/boom").map(|r| r.stats.server_error_rate),
        Some(100.0)
    );
    assert_eq!(
        route("GET", "/v1/items/{id}").map(|r| r.stats.total_requests),
        Some(1),
        "nested routers keep the full template"
    );
    assert_eq!(
        route("GET", UNMATCHED).map(|r| r.stats.status_codes),
        Some([(404, 1)].into())
    );
}

#[tokio::test]
async fn the_metrics_endpoint_answers_in_the_seeds_shape() {
    let app = app();
    call(&app, "POST", "/api/for-metrics").await;
    let (status, v) = json(&app, "/api/monitoring/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["success"], true);
    assert_eq!(
        (v["window"].as_str(), v["scope"].as_str()),
        (Some("5m"), Some("instance"))
    );
    for key in [
        "api",
        "slowRequests",
        "cache",
        "database",
        "batch",
        "business",
        "system",
    ] {
        assert!(!v["data"][key].is_null(), "data.{key} in {v}");
    }
    assert!(v["data"]["api"]["p95Duration"].is_number());
    assert!(v["data"]["system"]["health"]["status"].is_string());
    assert!(v["data"]["system"]["resources"]["memory"]["rss"].is_number());

    let (_, v) = json(
        &app,
        "/api/monitoring/metrics?type=api&path=/api/for-metrics",
    )
    .await;
    assert_eq!(v["data"]["api"]["totalRequests"].as_u64(), Some(1));
    assert!(
        v["data"]["cache"].is_null(),
        "type=api answers the API only"
    );
    let routes = v["data"]["routes"].as_array().expect("routes");
    assert!(
        routes.len() == 1 && routes[0]["path"] == "/api/for-metrics",
        "{routes:?}"
    );
    let (_, v) = json(&app, "/api/monitoring/metrics?type=cache").await;
    assert!(v["data"]["cache"]["hitRate"].is_number() && v["data"]["api"].is_null());

    for (query, expect) in [
        (
            "type=everything",
            "type must be one of: all, api, database, cache, batch, business, system",
        ),
        (
            "window=2d",
            "window must be one of: 5m, 1h, 24h, 7d, 90d, 1y",
        ),
        ("scope=galaxy", "scope must be one of: instance, cluster"),
        (
            "window=1h",
            "none is configured: set PERFMON_REDIS_URL or PERFMON_DATABASE_URL",
        ),
        ("window=90d&scope=cluster", "PostgreSQL"),
        ("foo=1", "the parameters are: type, path, window, scope"),
        ("type=%3Cb%3E", "type=?b? is not allowed"),
    ] {
        let (status, v) = json(&app, &format!("/api/monitoring/metrics?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(v["success"], false);
        let e = v["error"].as_str().expect("an error message");
        assert!(e.contains(expect), "{query}: {e}");
    }
}

#[tokio::test]
async fn prometheus_and_dashboard_routes() {
    let app = app();
    call(&app, "GET", "/api/for-prometheus/1").await;
    let req = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/plain; version=0.0.4"));
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    assert!(String::from_utf8_lossy(&body).contains(r#"perfmon_http_requests_total{method="GET",route="/api/for-prometheus/{id}",status="200"} 1"#));

    let req = Request::builder()
        .uri("/api/monitoring/dashboard")
        .body(Body::empty())
        .expect("request");
    let resp = app.oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/html"));
}

#[tokio::test]
async fn the_prometheus_text_is_streamed_a_chunk_at_a_time() {
    // 400 routes with 200-byte labels: about 2 MB of text
    let now = std::time::SystemTime::now();
    let long = "x".repeat(200);
    for i in 0..400 {
        let path = format!("/api/stream/{i}/{long}");
        record_api_metric(ApiMetric {
            method: "GET",
            path: &path,
            status_code: 200,
            duration: Duration::from_millis(1 + i % 7),
            timestamp: now,
        });
    }
    let req = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .expect("request");
    let resp = app().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers().get("content-length").is_none(),
        "streamed, not sent whole"
    );
    let mut body = resp.into_body();
    let (mut text, mut chunks, mut largest) = (String::new(), 0, 0);
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        let data = frame.expect("frame").into_data().expect("data");
        chunks += 1;
        largest = largest.max(data.len());
        text.push_str(std::str::from_utf8(&data).expect("utf-8"));
    }
    println!(
        "/metrics: {} bytes in {chunks} chunks, the largest {largest} bytes",
        text.len()
    );
    assert!(text.len() > 1_000_000, "{} bytes", text.len());
    assert!(chunks > 20, "{chunks} chunks");
    // a chunk is about 32 KB: one sample's lines past it at most
    assert!(largest < 48 * 1024, "largest chunk {largest} bytes");
    // the chunks join into whole lines of the format, every route there
    for line in text.lines() {
        assert!(
            line.starts_with("# HELP ")
                || line.starts_with("# TYPE ")
                || line
                    .rsplit_once(' ')
                    .is_some_and(|(_, v)| v.parse::<f64>().is_ok()),
            "{line}"
        );
    }
    for i in [0, 199, 399] {
        let series = format!(
            "perfmon_http_requests_total{{method=\"GET\",route=\"/api/stream/{i}/{long}\",status=\"200\"}} 1"
        );
        assert!(text.contains(&series), "route {i}");
    }
}

#[tokio::test]
async fn health_liveness_and_readiness() {
    // a long cache TTL, so that the cache assertion below does not depend on the machine's speed
    let perfmon = init(
        Config::builder()
            .health_cache_ttl(Duration::from_secs(600))
            .build(),
    )
    .await
    .expect("init");
    let app = app();
    let (status, v) = json(&app, "/api/monitoring/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["checks"]["recorder"], true);
    assert!(v["resources"]["memory"]["rss"].is_number() && v["resources"]["uptime"].is_number());
    assert!(
        v["resources"]["cpuSeconds"].is_number() && v["resources"]["openFds"].as_u64() > Some(0)
    );

    // a failing check that is not critical: degraded, still 200
    register_health_check(HealthCheck::new("search", || async {
        Err("index rebuilding".to_string())
    }));
    let (status, v) = json(&app, "/api/monitoring/health").await;
    assert_eq!(
        (status, v["status"].as_str()),
        (StatusCode::OK, Some("degraded"))
    );
    assert_eq!(v["checks"]["search"], false);
    assert_eq!(v["details"]["search"]["message"], "index rebuilding");

    // a critical check that hangs: times out, unhealthy, 503; readiness 503; liveness 200
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    register_health_check(
        HealthCheck::new("payments", || async {
            RUNS.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
            Ok(String::new())
        })
        .critical(true)
        .timeout(Duration::from_millis(50)),
    );
    let (status, v) = json(&app, "/api/monitoring/health").await;
    assert_eq!(
        (status, v["status"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unhealthy"))
    );
    assert!(
        v["details"]["payments"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("timed out after")),
        "{v}"
    );
    assert!(v["details"]["payments"]["latencyMs"].as_f64() >= Some(50.0));
    let (status, v) = json(&app, "/api/monitoring/ready").await;
    assert_eq!(
        (status, v["failing"][0].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("payments"))
    );
    assert_eq!(json(&app, "/api/monitoring/live").await.0, StatusCode::OK);

    // cached: polls within the TTL do not run the checks again
    let runs = RUNS.load(Ordering::SeqCst);
    let (status, _) = json(&app, "/api/monitoring/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(RUNS.load(Ordering::SeqCst), runs, "answered from the cache");

    assert!(unregister_health_check("payments") && unregister_health_check("search"));
    assert_eq!(json(&app, "/api/monitoring/ready").await.0, StatusCode::OK);
    perfmon.shutdown().await.expect("shutdown");
}

/// The README's layout: the application's routes *and its fallback* inside the layer, the
/// monitoring routes outside it. Requests to unknown paths are recorded (as `unmatched`, with
/// their 404); with the layer applied before a fallback exists, axum never runs it for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_are_recorded_with_the_readme_layout() {
    async fn not_found() -> StatusCode {
        StatusCode::NOT_FOUND
    }
    let local = Collector::local();
    let readme = Router::new()
        .route("/api/readme/{id}", get(staff))
        .fallback(not_found)
        .layer(PerfmonLayer::new())
        .merge(router());
    let before = Router::new()
        .route("/api/readme/{id}", get(staff))
        .layer(PerfmonLayer::new())
        .merge(router());
    let (readme_count, before_count) = local.scope(|| {
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                for _ in 0..3 {
                    assert_eq!(
                        call(&readme, "GET", "/no/such/page").await.0,
                        StatusCode::NOT_FOUND
                    );
                }
                let n = |c: &Collector| {
                    c.api_routes()
                        .into_iter()
                        .find(|r| r.path == UNMATCHED)
                        .map_or(0, |r| r.stats.total_requests)
                };
                let readme_count = n(&collector());
                for _ in 0..3 {
                    assert_eq!(
                        call(&before, "GET", "/no/such/page").await.0,
                        StatusCode::NOT_FOUND
                    );
                }
                (readme_count, n(&collector()) - readme_count)
            })
        })
    });
    assert_eq!(readme_count, 3, "the README's layout records 404s");
    assert_eq!(
        before_count, 0,
        "a layer applied before any fallback does not see them"
    );
}
