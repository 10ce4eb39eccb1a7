//! No secret in any output: a known password in the backends' URLs, a webhook's secret path and
//! the monitoring token never appear in logs, errors (`Display`, `Debug`, sources), `Config`'s `Debug`, or any
//! endpoint. (Its own test binary: it sets environment variables and the log subscriber.)

use std::time::Duration;

use perfmon_runtime::{init, Config};
use perfmon_tests::LogBuffer;

const SECRET: &str = "pm-S3cret-9731";

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = format!("{e} / {e:?}");
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&format!(" / {s} / {s:?}"));
        source = s.source();
    }
    out
}

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} shows the secret: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_logs_errors_debug_or_endpoints() {
    let logs = LogBuffer::default();
    tracing::subscriber::set_global_default(
        logs.subscriber(tracing_subscriber::filter::LevelFilter::TRACE),
    )
    .expect("the only subscriber of this test binary");

    // invalid URLs in the environment: the errors name the variable, not the password
    // SAFETY: this test binary runs this one test; nothing else reads the environment meanwhile.
    unsafe {
        std::env::set_var("PERFMON_DATABASE_URL", format!("mysql://app:{SECRET}@db/x"));
    }
    let e = Config::from_env().expect_err("not a PostgreSQL URL");
    assert_clean("an invalid PERFMON_DATABASE_URL", &error_chain(&e));
    assert!(e.to_string().contains("PERFMON_DATABASE_URL"), "{e}");
    unsafe {
        std::env::remove_var("PERFMON_DATABASE_URL");
        std::env::set_var("PERFMON_REDIS_URL", format!("http://:{SECRET}@cache:6379"));
    }
    let e = Config::from_env().expect_err("not a Redis URL");
    assert_clean("an invalid PERFMON_REDIS_URL", &error_chain(&e));
    unsafe {
        std::env::remove_var("PERFMON_REDIS_URL");
        std::env::set_var("PERFMON_MONITORING_TOKEN", format!("with a space {SECRET}"));
    }
    let e = Config::from_env().expect_err("a token with spaces");
    assert_clean("an invalid PERFMON_MONITORING_TOKEN", &error_chain(&e));
    assert!(e.to_string().contains("PERFMON_MONITORING_TOKEN"), "{e}");
    unsafe {
        std::env::remove_var("PERFMON_MONITORING_TOKEN");
    }

    // an unreachable Redis with a password: the init error hides it
    let unreachable = Config::builder()
        .redis_url(format!("redis://:{SECRET}@127.0.0.1:1/"))
        .build();
    assert_clean("Config's Debug", &format!("{unreachable:?}"));
    let e = init(unreachable)
        .await
        .expect_err("nothing listens on port 1");
    assert_clean("the init error", &error_chain(&e));

    // a running runtime with a password in the PostgreSQL URL (trust authentication ignores
    // it) and a webhook whose path is its secret
    let database = std::env::var("PERFMON_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
        .replacen("postgres@", &format!("postgres:{SECRET}@"), 1);
    assert!(
        database.contains(SECRET),
        "the test URL carries the password: {database}"
    );
    let config = Config::builder()
        .database_url(&database)
        .key_prefix("perfmon-secrets-test")
        .alert_webhook(format!("http://127.0.0.1:9/hooks/{SECRET}"))
        .monitoring_token(format!("{SECRET}-{SECRET}"))
        .flush_interval(Duration::from_secs(3600))
        .build();
    assert_clean("Config's Debug", &format!("{config:?}"));
    let pm = init(config).await.expect("init with PostgreSQL");
    assert_clean("Perfmon's Debug", &format!("{pm:?}"));
    for uri in [
        "/api/monitoring/metrics",
        "/api/monitoring/metrics?type=system",
        "/api/monitoring/metrics?window=90d",
        "/api/monitoring/health",
        "/api/monitoring/live",
        "/api/monitoring/ready",
        "/metrics",
        "/api/monitoring/dashboard",
    ] {
        let req = axum::http::Request::builder()
            .uri(uri)
            .header("authorization", format!("Bearer {SECRET}-{SECRET}"))
            .body(axum::body::Body::empty())
            .expect("request");
        let resp = tower::ServiceExt::oneshot(perfmon_runtime::http::router::<()>(), req)
            .await
            .expect("infallible");
        assert_ne!(resp.status(), 401, "{uri}: the token opens every route");
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .expect("body")
            .to_bytes();
        assert_clean(uri, &String::from_utf8_lossy(&body));
    }
    pm.shutdown().await.expect("shutdown");
    let pool = sqlx::PgPool::connect(&database).await.expect("connect");
    sqlx::raw_sql("DROP SCHEMA \"perfmon-secrets-test\" CASCADE")
        .execute(&pool)
        .await
        .expect("clean up");

    let logs = logs.text();
    assert!(
        logs.contains("PostgreSQL reachable"),
        "the logs were captured: {logs}"
    );
    assert_clean("the logs", &logs);
}
