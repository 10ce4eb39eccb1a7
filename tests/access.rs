//! The monitoring token (issue 10, item 7): with `monitoring_token` set, every monitoring route
//! but liveness, readiness and health's status answers 401 JSON without
//! `Authorization: Bearer <token>`; health details show only with it; the monitoring router can
//! be served on a listener of its own, off the application's port.
//!
//! Real listeners and real HTTP/1.1 over TCP, one process with `init` (the token is process-wide).

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use perfmon_runtime::http::{router, PerfmonLayer};
use perfmon_runtime::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "test-token-7d1c9a52e8b04f6a";

/// One request; the status, the headers (lower-cased names) and the body.
async fn get_with(addr: &str, path: &str, auth: Option<&str>) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .expect("send");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out))
        .await
        .expect("an answer within 30 s")
        .expect("read");
    let out = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head[9..12].parse().expect("a status code");
    (status, head.to_ascii_lowercase(), body.to_string())
}

async fn serve(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn body_json(body: &str) -> Value {
    // chunked bodies: the JSON object is between the first '{' and the last '}'
    let (Some(a), Some(b)) = (body.find('{'), body.rfind('}')) else {
        panic!("no JSON in {body:?}");
    };
    serde_json::from_str(&body[a..=b]).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitoring_token_locks_the_routes_and_hides_health_details() {
    // a weak token is refused at init, by name, without echoing it
    let weak = init(Config::builder().monitoring_token("short").build())
        .await
        .unwrap_err();
    assert!(weak.to_string().contains("monitoring_token"), "{weak}");
    assert!(!weak.to_string().contains("short"), "{weak}");

    let perf = init(Config::builder().monitoring_token(TOKEN).build())
        .await
        .expect("init");
    assert!(!format!("{perf:?}").contains(TOKEN));

    // the application on its port, the monitoring router on a port of its own
    let app = serve(
        Router::new()
            .route("/api/ping", get(|| async { "pong" }))
            .layer(PerfmonLayer::new()),
    )
    .await;
    let monitoring = serve(router()).await;

    // the application's port has no monitoring route; its requests are recorded
    assert_eq!(get_with(&app, "/api/ping", None).await.0, 200);
    assert_eq!(get_with(&app, "/metrics", None).await.0, 404);
    assert_eq!(
        get_with(
            &app,
            "/api/monitoring/metrics",
            Some(&format!("Bearer {TOKEN}"))
        )
        .await
        .0,
        404
    );

    let locked = [
        "/api/monitoring/metrics",
        "/api/monitoring/metrics?type=system",
        "/api/monitoring/alerts",
        "/api/monitoring/dashboard",
        "/metrics",
    ];
    let wrong = [
        None,
        Some("Bearer wrong-token-7d1c9a52e8b0".to_string()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(format!("Token {TOKEN}")),
        Some("Basic !!!".to_string()),
    ];
    for path in locked {
        for auth in &wrong {
            let (status, head, body) = get_with(&monitoring, path, auth.as_deref()).await;
            assert_eq!(status, 401, "{path} with {auth:?}: {body}");
            let v = body_json(&body);
            assert_eq!(v["success"], false);
            assert!(
                v["error"].as_str().unwrap_or("").contains("token"),
                "{path}: {v}"
            );
            assert!(head.contains("www-authenticate:"), "{path}: {head}");
            assert!(!body.contains("\"pid\""), "{path} leaked details: {body}");
        }
        let (status, _, body) = get_with(&monitoring, path, Some(&format!("Bearer {TOKEN}"))).await;
        assert_eq!(status, 200, "{path} with the token: {body}");
    }
    // browsers send the token as a Basic password, any user name; the page asks for it so
    let basic = format!("Basic {}", base64_of(format!("anyone:{TOKEN}").as_bytes()));
    let (status, _, body) = get_with(&monitoring, "/api/monitoring/dashboard", Some(&basic)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<html"));
    let (_, head, _) = get_with(&monitoring, "/api/monitoring/dashboard", None).await;
    assert!(
        head.contains("www-authenticate: basic realm=\"perfmon\""),
        "{head}"
    );
    let (_, head, _) = get_with(&monitoring, "/metrics", None).await;
    assert!(
        head.contains("www-authenticate: bearer realm=\"perfmon\""),
        "{head}"
    );

    // the token unlocks the figures: the application's request is there
    let (_, _, body) = get_with(
        &monitoring,
        "/api/monitoring/metrics?type=api",
        Some(&format!("Bearer {TOKEN}")),
    )
    .await;
    let v = body_json(&body);
    assert!(
        v["data"]["routes"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["path"] == "/api/ping")),
        "{v}"
    );

    // probes stay public: status and code, no details
    let (status, _, body) = get_with(&monitoring, "/api/monitoring/health", None).await;
    assert_eq!(status, 200);
    let public = body_json(&body);
    assert_eq!(public["status"], "healthy");
    assert_eq!(
        public.as_object().map(|o| o.len()),
        Some(1),
        "only the status: {public}"
    );
    let (status, _, body) = get_with(
        &monitoring,
        "/api/monitoring/health",
        Some(&format!("Bearer {TOKEN}")),
    )
    .await;
    assert_eq!(status, 200);
    let full = body_json(&body);
    assert_eq!(full["status"], "healthy");
    assert!(full["resources"]["pid"].as_u64().is_some(), "{full}");
    assert!(full["details"].is_object(), "{full}");
    let (status, _, body) = get_with(&monitoring, "/api/monitoring/ready", None).await;
    assert_eq!(
        (status, body_json(&body)),
        (200, serde_json::json!({"status": "ready"}))
    );
    let (status, _, body) = get_with(&monitoring, "/api/monitoring/live", None).await;
    assert_eq!(
        (status, body_json(&body)),
        (200, serde_json::json!({"status": "alive"}))
    );
    let (_, _, body) = get_with(
        &monitoring,
        "/api/monitoring/live",
        Some(&format!("Bearer {TOKEN}")),
    )
    .await;
    assert!(body_json(&body)["uptime"].is_u64(), "{body}");

    perf.shutdown().await.expect("shutdown");

    // the variable locks the routes also when the configuration is built without it
    const ENV_TOKEN: &str = "env-token-51c0a7d2b9e84f31";
    // SAFETY: this binary's one test; nothing else reads the environment meanwhile
    unsafe { std::env::set_var("PERFMON_MONITORING_TOKEN", ENV_TOKEN) };
    // `/metrics` answered with no token, the variable's and the configuration's
    let metrics_with = |token: Option<&'static str>| {
        let monitoring = monitoring.clone();
        async move {
            let auth = token.map(|t| format!("Bearer {t}"));
            get_with(&monitoring, "/metrics", auth.as_deref()).await.0
        }
    };
    let perf = init(Config::builder().build()).await.expect("init");
    assert_eq!(
        (
            metrics_with(None).await,
            metrics_with(Some(ENV_TOKEN)).await
        ),
        (401, 200)
    );
    // the configuration's token wins over the variable
    perf.shutdown().await.expect("shutdown");
    let perf = init(Config::builder().monitoring_token(TOKEN).build())
        .await
        .expect("init");
    assert_eq!(
        (
            metrics_with(Some(ENV_TOKEN)).await,
            metrics_with(Some(TOKEN)).await
        ),
        (401, 200)
    );
    unsafe { std::env::remove_var("PERFMON_MONITORING_TOKEN") };
    perf.shutdown().await.expect("shutdown");
}

/// Standard base64 (the test's own, so that it checks the server's decoding independently).
fn base64_of(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
