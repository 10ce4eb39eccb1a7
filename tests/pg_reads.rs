//! Long PostgreSQL reads never hold every connection of perfmon's pool: with four year-long
//! loads in progress and the table they read locked by someone else, at most two of them wait
//! on PostgreSQL and the health check still finds a connection. Real PostgreSQL; one test in
//! this binary (`init` is process-wide).

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use perfmon_runtime::http::{heavy_read_stats, router};
use perfmon_runtime::*;
use perfmon_tests::{database_url, drop_schema, unique_prefix};
use tower::ServiceExt;

async fn status(uri: &'static str) -> StatusCode {
    let req = Request::builder()
        .uri(uri)
        .body(Body::empty())
        .expect("request");
    router::<()>()
        .oneshot(req)
        .await
        .expect("infallible")
        .status()
}

/// Sessions waiting for a lock on the schema's `daily` table.
async fn waiting(admin: &sqlx::PgPool, schema: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE NOT l.granted AND n.nspname = $1 AND c.relname = 'daily'",
    )
    .bind(schema)
    .fetch_one(admin)
    .await
    .expect("pg_locks")
}

const READS: [&str; 4] = [
    "/api/monitoring/metrics?type=api&window=1y",
    "/api/monitoring/metrics?type=database&window=1y",
    "/api/monitoring/metrics?type=cache&window=1y",
    "/api/monitoring/metrics?type=batch&window=1y",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_reads_leave_the_writer_and_the_health_check_a_connection() {
    let prefix = unique_prefix("pgreads");
    let perf = init(
        Config::builder()
            .database_url(database_url())
            .key_prefix(&prefix)
            .max_heavy_reads(READS.len())
            .health_cache_ttl(Duration::ZERO)
            .flush_interval(Duration::from_secs(3600))
            .no_alerts()
            .build(),
    )
    .await
    .expect("init");
    record_api_metric(ApiMetric {
        method: "GET",
        path: "/pg-reads",
        status_code: 200,
        duration: Duration::from_millis(3),
        timestamp: std::time::SystemTime::now(),
    });
    perf.flush().await.expect("flush");

    // someone else's transaction holds the table year-long reads need
    let admin = sqlx::PgPool::connect(&database_url()).await.expect("admin");
    let mut tx = admin.begin().await.expect("begin");
    sqlx::raw_sql(&format!(
        "LOCK TABLE \"{prefix}\".daily IN ACCESS EXCLUSIVE MODE"
    ))
    .execute(&mut *tx)
    .await
    .expect("lock");

    let base = heavy_read_stats();
    let reads: Vec<_> = READS.iter().map(|&r| tokio::spawn(status(r))).collect();
    // four loads in progress, two of them waiting on PostgreSQL
    for _ in 0..3000 {
        if heavy_read_stats().in_progress == READS.len() as u64
            && waiting(&admin, &prefix).await >= 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(heavy_read_stats().loads, base.loads + READS.len() as u64);
    // a chance for more to reach PostgreSQL, if anything let them
    for _ in 0..20 {
        assert!(
            waiting(&admin, &prefix).await <= 2,
            "more reads than READ_CONNECTIONS hold connections"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let h = system_health().await;
    let db = &h.checks["database"];
    assert!(db.ok, "the health check found a connection: {db:?}");

    tx.rollback().await.expect("unlock");
    for r in reads {
        assert_eq!(r.await.expect("joined"), StatusCode::OK);
    }
    perf.shutdown().await.expect("shutdown");
    drop_schema(&prefix).await;
}
