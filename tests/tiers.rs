//! The Redis tier against the real server: key classes and their TTLs, rewrites that never
//! double count, windows read back exactly, and two more processes merged in the cluster scope.

use perfmon_runtime::*;
use perfmon_tests::{
    assert_within_hdr, database_url, drop_schema, exact_quantile, redis_cluster_url, redis_url,
    unique_prefix, Rng,
};
use redis::AsyncCommands;
use std::time::{Duration, SystemTime};

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn client() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis on localhost")
}

/// Every (field, value) of the hashes `keys`, sorted.
async fn all_fields(
    r: &mut redis::aio::MultiplexedConnection,
    keys: &[&String],
) -> Vec<(String, Vec<u8>)> {
    let mut all = Vec::new();
    for k in keys {
        let h: Vec<(String, Vec<u8>)> = r.hgetall(*k).await.expect("hgetall");
        all.extend(h);
    }
    all.sort();
    all
}

fn api(path: &str, ms: u64) {
    record_api_metric(ApiMetric {
        method: "GET",
        path,
        status_code: 200,
        duration: Duration::from_millis(ms),
        timestamp: SystemTime::now(),
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_ttls_and_rewrites() {
    let _turn = TURN.lock().await;
    let prefix = unique_prefix("keys");
    let pm = init(
        Config::builder()
            .redis_url(redis_url())
            .key_prefix(&prefix)
            .instance("tier-a")
            .flush_interval(Duration::from_secs(3600))
            .build(),
    )
    .await
    .expect("init with Redis");
    for i in 0..100 {
        api("/tier/a", 1 + i % 40);
    }
    api("/tier/a", 6_000); // slow: over the 5 s default
    record_database_metric(DatabaseMetric {
        operation: "findMany",
        table: "TierStaff",
        duration: Duration::from_millis(3),
        timestamp: SystemTime::now(),
        query_type: QueryType::Read,
    });
    let report = pm.flush().await.expect("flush");
    assert!(
        report.minutes >= 2 && report.buckets >= 2 && report.commands > 0,
        "{report:?}"
    );

    let mut r = client().await;
    let keys: Vec<String> = r.keys(format!("{prefix}:*")).await.expect("keys");
    let m1: Vec<&String> = keys.iter().filter(|k| k.contains(":m1:")).collect();
    let m5: Vec<&String> = keys.iter().filter(|k| k.contains(":m5:")).collect();
    let h1: Vec<&String> = keys.iter().filter(|k| k.contains(":h1:")).collect();
    assert!(
        !m1.is_empty() && !m5.is_empty() && !h1.is_empty(),
        "{keys:?}"
    );
    for k in &h1 {
        let ttl: i64 = r.ttl(*k).await.expect("ttl");
        assert!(
            (7 * 86_400..=7 * 86_400 + 3600).contains(&ttl),
            "hourly aggregates live 7 days after their hour: {k} {ttl}"
        );
    }
    for k in &m1 {
        let ttl: i64 = r.ttl(*k).await.expect("ttl");
        assert!(
            (86_400..=86_400 + 60).contains(&ttl),
            "1-minute aggregates live 24 h after their minute: {k} {ttl}"
        );
    }
    for k in &m5 {
        let ttl: i64 = r.ttl(*k).await.expect("ttl");
        assert!(
            (7 * 86_400..=7 * 86_400 + 300).contains(&ttl),
            "5-minute aggregates live 7 days: {k} {ttl}"
        );
    }
    for class in ["recent", "times", "counters"] {
        let ttl: i64 = r
            .ttl(format!("{prefix}:rt:tier-a:{class}"))
            .await
            .expect("ttl");
        assert!((1..=300).contains(&ttl), "realtime {class}: {ttl}");
    }
    let ttl: i64 = r.ttl(format!("{prefix}:slow")).await.expect("ttl");
    assert!(
        (86_000..=86_400).contains(&ttl),
        "the slow list lives 24 h: {ttl}"
    );
    let recent: i64 = r
        .llen(format!("{prefix}:rt:tier-a:recent"))
        .await
        .expect("llen");
    assert_eq!(recent, 100, "the last 100 requests");
    let slowest: Vec<(String, f64)> = r
        .zrevrange_withscores(format!("{prefix}:slow"), 0, 0)
        .await
        .expect("zset");
    assert_eq!(slowest.first().map(|(_, s)| *s), Some(6000.0));

    // read back: the same figures as memory, bin for bin
    let memory = collector().api_stats_for("/tier/a");
    let hour = collector()
        .query(Window::Hour1, Scope::Instance)
        .api_stats_for("/tier/a")
        .await
        .expect("1h from Redis");
    assert_eq!(hour, memory);

    // flushing again, or after more calls, replaces values: never counts twice
    let before = all_fields(&mut r, &m1).await;
    pm.flush().await.expect("second flush");
    pm.flush().await.expect("third flush");
    let after = all_fields(&mut r, &m1).await;
    assert_eq!(before, after, "a repeated flush writes the same values");
    for _ in 0..50 {
        api("/tier/a", 5);
    }
    pm.flush().await.expect("flush after more calls");
    let hour = collector()
        .query(Window::Hour1, Scope::Instance)
        .api_stats_for("/tier/a")
        .await
        .expect("1h");
    assert_eq!(hour.total_requests, 151, "replaced, not added");
    let day = collector()
        .query(Window::Hours24, Scope::Cluster)
        .api_stats_for("/tier/a")
        .await
        .expect("24h");
    assert_eq!(day.total_requests, 151);
    let week = collector()
        .query(Window::Days7, Scope::Instance)
        .api_stats_for("/tier/a")
        .await
        .expect("7d from the 5-minute tier");
    assert_eq!(week, collector().api_stats_for("/tier/a"));
    let db = collector()
        .query(Window::Hour1, Scope::Instance)
        .database_stats()
        .await
        .expect("db");
    assert_eq!(db.tables["TierStaff"].totals.reads, 1);
    let e = collector()
        .query(Window::Days90, Scope::Cluster)
        .api_stats()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("PostgreSQL"), "{e}");
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_more_instances_merge_exactly_in_the_cluster_scope() {
    two_more_instances(redis_url(), "cluster").await;
}

/// The same end to end — `init`, flushes by other processes, queries — on a Redis Cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_more_instances_merge_exactly_on_a_redis_cluster() {
    two_more_instances(redis_cluster_url(), "redis-cluster").await;
}

async fn two_more_instances(redis_url: String, name: &str) {
    let _turn = TURN.lock().await;
    let prefix = unique_prefix(name);
    let counts = [(11u64, 3_000usize, "node-a"), (29, 5_000, "node-b")];
    let mut union = Vec::new();
    for (seed, count, instance) in counts {
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_tier-writer"))
            .env("PERFMON_REDIS_URL", redis_url.clone())
            .env("PERFMON_KEY_PREFIX", &prefix)
            .env("PERFMON_INSTANCE", instance)
            .env("TIER_SEED", seed.to_string())
            .env("TIER_COUNT", count.to_string())
            .status()
            .expect("run the writer");
        assert!(status.success(), "{instance}");
        let mut rng = Rng::new(seed);
        union.extend(
            (0..count)
                .map(|_| rng.log_uniform(Duration::from_micros(200), Duration::from_millis(900))),
        );
    }
    union.sort_unstable();

    let pm = init(
        Config::builder()
            .redis_url(redis_url.clone())
            .key_prefix(&prefix)
            .instance("reader")
            .build(),
    )
    .await
    .expect("init");
    let cluster = collector()
        .query(Window::Hour1, Scope::Cluster)
        .api_stats_for("/cluster")
        .await
        .expect("cluster");
    assert_eq!(cluster.total_requests, 8_000, "the sum of both instances");
    assert_within_hdr(
        "cluster p99",
        cluster.p99_duration,
        exact_quantile(&union, 0.99),
    );
    assert_within_hdr(
        "cluster p50",
        cluster.p50_duration,
        exact_quantile(&union, 0.50),
    );
    assert_eq!(cluster.max_duration, *union.last().expect("values"));
    let mine = collector()
        .query(Window::Hour1, Scope::Instance)
        .api_stats_for("/cluster")
        .await
        .expect("instance");
    assert_eq!(mine.total_requests, 0, "the reader itself recorded nothing");
    let five = collector()
        .query(Window::Minutes5, Scope::Cluster)
        .api_stats_for("/cluster")
        .await
        .expect("5m cluster");
    assert_eq!(five.total_requests, 8_000);
    pm.shutdown().await.expect("shutdown");
}

async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_hourly_daily_events_and_pruning() {
    let _turn = TURN.lock().await;
    let prefix = unique_prefix("pg");
    let schema = format!("\"{prefix}\"");
    let config = || {
        Config::builder()
            .database_url(database_url())
            .key_prefix(&prefix)
            .instance("pg-a")
            .flush_interval(Duration::from_secs(3600))
            .health_cache_ttl(Duration::ZERO)
            .build()
    };
    let pm = init(config())
        .await
        .expect("init with PostgreSQL (migrates)");
    for i in 0..60 {
        api("/pg/a", 2 + i % 30);
    }
    record_batch_metric(BatchMetric {
        name: "pg-nightly",
        duration: Duration::from_secs(3),
        success: false,
        timestamp: SystemTime::now(),
    });
    // a change of health goes to the event log
    assert_eq!(system_health().await.status, HealthStatus::Healthy);
    register_health_check(
        HealthCheck::new("pg-test-dependency", || async { Err("down".to_string()) }).critical(true),
    );
    assert_eq!(system_health().await.status, HealthStatus::Unhealthy);
    unregister_health_check("pg-test-dependency");
    let report = pm.flush().await.expect("flush");
    assert!(report.rows >= 4, "{report:?}");

    let pool = sqlx::PgPool::connect(&database_url())
        .await
        .expect("connect");
    assert!(count(&pool, &format!("SELECT count(*) FROM {schema}.hourly")).await >= 2);
    assert!(count(&pool, &format!("SELECT count(*) FROM {schema}.daily")).await >= 2);
    assert_eq!(count(&pool, &format!("SELECT count(*) FROM {schema}.events WHERE kind = 'batch_failure' AND name = 'pg-nightly'")).await, 1);
    assert_eq!(
        count(&pool, &format!("SELECT count(*) FROM {schema}.migrations")).await,
        4
    );
    let sql = format!("SELECT count(*) FROM {schema}.events WHERE kind = 'health_change' AND name = 'unhealthy' AND detail = 'pg-test-dependency'");
    assert_eq!(count(&pool, &sql).await, 1);

    // windows from the hourly and daily rows: the same figures as memory
    let memory = collector().api_stats_for("/pg/a");
    for (window, scope) in [
        (Window::Days90, Scope::Instance),
        (Window::Year1, Scope::Cluster),
        (Window::Hour1, Scope::Instance),
    ] {
        let q = collector()
            .query(window, scope)
            .api_stats_for("/pg/a")
            .await
            .expect("from PostgreSQL");
        assert_eq!(q, memory, "{window:?} {scope:?}");
    }
    // Another instance's rows: a valid copy of ours and one that cannot be decoded. The instance
    // scope filters in PostgreSQL; the cluster scope merges the copy and skips the bad row. Both
    // go into the hourly and the daily table: which one a window reads today depends on the hour
    // (from 23:00 UTC on, the current day is a whole day of the window and comes from the daily
    // rows).
    sqlx::raw_sql(&format!(
        "INSERT INTO {schema}.hourly SELECT bucket_start, 'pg-b', run, series, events, data, now() FROM {schema}.hourly WHERE instance = 'pg-a';
         INSERT INTO {schema}.daily SELECT bucket_start, 'pg-b', run, series, events, data, now() FROM {schema}.daily WHERE instance = 'pg-a';
         INSERT INTO {schema}.hourly VALUES (date_trunc('hour', now()), 'pg-c', 'r', 'api' || chr(31) || 'GET' || chr(31) || '/pg/a' || chr(31) || chr(31) || chr(31) || 'r', 1, '\\x00ff'::bytea, now());
         INSERT INTO {schema}.daily VALUES (date_trunc('day', now()), 'pg-c', 'r', 'api' || chr(31) || 'GET' || chr(31) || '/pg/a' || chr(31) || chr(31) || chr(31) || 'r', 1, '\\x00ff'::bytea, now());
         INSERT INTO {schema}.compact_queue SELECT DISTINCT 'hourly', bucket_start, series FROM {schema}.hourly ON CONFLICT DO NOTHING;"
    ))
    .execute(&pool)
    .await
    .expect("other instances");
    let instance = collector()
        .query(Window::Days90, Scope::Instance)
        .api_stats_for("/pg/a")
        .await
        .expect("instance");
    assert_eq!(instance, memory);
    let cluster = collector()
        .query(Window::Days90, Scope::Cluster)
        .api_stats_for("/pg/a")
        .await
        .expect("a bad row is skipped, not a failure");
    assert_eq!(cluster.total_requests, 2 * memory.total_requests);
    assert_eq!(cluster.p99_duration, memory.p99_duration);

    // one read of the window serves every section of type=all: one load; and the endpoint
    // reads as of the last flush, never making the application's runtime flush
    let before = collector().recorder_stats().tier_flushes;
    let loads = perfmon_runtime::http::heavy_read_stats().loads;
    let req = axum::http::Request::builder()
        .uri("/api/monitoring/metrics?type=all&window=90d")
        .body(axum::body::Body::empty())
        .expect("request");
    let resp = tower::ServiceExt::oneshot(perfmon_runtime::http::router::<()>(), req)
        .await
        .expect("infallible");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        perfmon_runtime::http::heavy_read_stats().loads - loads,
        1,
        "type=all loads the tiers once"
    );
    assert_eq!(
        collector().recorder_stats().tier_flushes - before,
        0,
        "no flush on the endpoint's behalf"
    );
    sqlx::raw_sql(&format!(
        "DELETE FROM {schema}.hourly WHERE instance IN ('pg-b', 'pg-c');
         DELETE FROM {schema}.daily WHERE instance IN ('pg-b', 'pg-c');"
    ))
    .execute(&pool)
    .await
    .expect("clean up the other instances");

    let batch = &collector()
        .query(Window::Days90, Scope::Instance)
        .batch_stats()
        .await
        .expect("batches")
        .batches["pg-nightly"];
    assert_eq!((batch.runs, batch.failures), (1, 1));
    assert!(batch.last_failure.is_some());

    // repeated flushes and more calls replace rows; init again (same process) migrates
    // idempotently and replaces its own rows
    pm.flush().await.expect("again");
    pm.shutdown().await.expect("shutdown");
    let pm = init(config()).await.expect("init again");
    for _ in 0..10 {
        api("/pg/a", 4);
    }
    pm.flush().await.expect("flush");
    let q = collector()
        .query(Window::Days90, Scope::Instance)
        .api_stats_for("/pg/a")
        .await
        .expect("90d");
    assert_eq!(q.total_requests, 70, "never counted twice");
    assert_eq!(
        count(&pool, &format!("SELECT count(*) FROM {schema}.migrations")).await,
        4
    );

    // the retention job, with an injected clock
    sqlx::raw_sql(&format!(
        "INSERT INTO {schema}.hourly VALUES (now() - interval '91 days', 'old', 'r', 's', 1, ''::bytea, now());
         INSERT INTO {schema}.hourly VALUES (now() - interval '89 days', 'kept', 'r', 's', 1, ''::bytea, now());
         INSERT INTO {schema}.daily VALUES (now() - interval '400 days', 'old', 'r', 's', 1, ''::bytea, now());
         INSERT INTO {schema}.events VALUES (now() - interval '400 days', 'old', 'batch_failure', 'x', '');"
    ))
    .execute(&pool)
    .await
    .expect("old rows");
    let pruned = pm.prune(SystemTime::now()).await.expect("prune");
    assert_eq!((pruned.hourly, pruned.daily, pruned.events), (1, 1, 1));
    assert_eq!(
        count(
            &pool,
            &format!("SELECT count(*) FROM {schema}.hourly WHERE instance = 'kept'")
        )
        .await,
        1
    );
    let later = SystemTime::now() + Duration::from_secs(2 * 86_400);
    let pruned = pm.prune(later).await.expect("prune two days later");
    assert_eq!(
        pruned.hourly, 1,
        "two days later, the 89-day-old row is past 90 days"
    );
    pm.shutdown().await.expect("shutdown");
    sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&pool)
        .await
        .expect("clean up");
}

/// `shutdown` then `init` again in the same process: the second runtime's writer continues the
/// first one's hours and days instead of replacing them with only what it saw itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_again_in_one_process_never_replaces_what_the_first_wrote() {
    let _turn = TURN.lock().await;
    let prefix = unique_prefix("reinit");
    let config = || {
        Config::builder()
            .database_url(database_url())
            .key_prefix(&prefix)
            .instance("reinit-a")
            .flush_interval(Duration::from_secs(3600))
            .build()
    };
    let now = SystemTime::now();
    // a minute earlier than the second runtime's calls (the same hour, unless the hour just
    // turned, when both land in their own hours and the totals hold either way)
    let earlier = now - Duration::from_secs(60);
    let pm = init(config()).await.expect("init");
    for i in 0..1_000 {
        record_api_metric(ApiMetric {
            method: "GET",
            path: "/reinit",
            status_code: 200,
            duration: Duration::from_millis(1 + i % 50),
            timestamp: earlier,
        });
    }
    pm.flush().await.expect("flush");
    pm.shutdown().await.expect("shutdown");

    let pm = init(config()).await.expect("init again");
    for _ in 0..10 {
        api("/reinit", 7);
    }
    pm.flush().await.expect("flush");
    for window in [Window::Days90, Window::Year1] {
        let q = collector()
            .query(window, Scope::Instance)
            .api_stats_for("/reinit")
            .await
            .expect("from PostgreSQL");
        assert_eq!(q.total_requests, 1_010, "{window:?}");
    }
    pm.shutdown().await.expect("shutdown");
    drop_schema(&prefix).await;
}

/// A label with a NUL byte (which PostgreSQL text cannot hold) and control characters: kept in
/// its clean form, so the PostgreSQL tier goes on writing every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_label_does_not_stop_the_postgres_tier() {
    let _turn = TURN.lock().await;
    let prefix = unique_prefix("poison");
    let pm = init(
        Config::builder()
            .database_url(database_url())
            .key_prefix(&prefix)
            .instance("poison-a")
            .flush_interval(Duration::from_secs(3600))
            .build(),
    )
    .await
    .expect("init");
    api("/poison\0label\n\x1b[31mforged", 3);
    api("/healthy", 4);
    let report = pm.flush().await.expect("the flush writes every row");
    assert!(report.rows >= 4, "{report:?}");
    let routes = collector()
        .query(Window::Days90, Scope::Instance)
        .api_routes()
        .await
        .expect("from PostgreSQL");
    let paths: Vec<&str> = routes.iter().map(|r| r.path.as_str()).collect();
    assert!(paths.contains(&"/healthy"), "{paths:?}");
    assert!(
        paths.contains(&"/poison\u{fffd}label\u{fffd}\u{fffd}[31mforged"),
        "{paths:?}"
    );
    pm.shutdown().await.expect("shutdown");
    drop_schema(&prefix).await;
}

/// An event the event log rejects (a CHECK constraint a DBA added to `events`) is set aside and
/// counted — in `recorder_stats()`, the health response's recorder counters and the database
/// check's message — while the other event and every hourly and daily row are written; it is
/// not tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_postgres_rejects_is_set_aside_and_counted() {
    let _turn = TURN.lock().await;
    let prefix = unique_prefix("reject-event");
    let schema = format!("\"{prefix}\"");
    let pm = init(
        Config::builder()
            .database_url(database_url())
            .key_prefix(&prefix)
            .instance("reject-a")
            .flush_interval(Duration::from_secs(3600))
            .health_cache_ttl(Duration::ZERO)
            .no_alerts()
            .build(),
    )
    .await
    .expect("init");
    let pool = sqlx::PgPool::connect(&database_url())
        .await
        .expect("connect");
    sqlx::raw_sql(&format!(
        "ALTER TABLE {schema}.events ADD CONSTRAINT no_poison CHECK (name <> 'reject-poison')"
    ))
    .execute(&pool)
    .await
    .expect("a DBA's constraint");
    let before = collector().recorder_stats().tier_set_aside;
    for name in ["reject-ok", "reject-poison"] {
        record_batch_metric(BatchMetric {
            name,
            duration: Duration::from_secs(1),
            success: false,
            timestamp: SystemTime::now(),
        });
    }
    let report = pm
        .flush()
        .await
        .expect("the rejected event does not fail the flush");
    assert_eq!(collector().recorder_stats().tier_set_aside - before, 1);
    let events = format!("SELECT count(*) FROM {schema}.events WHERE kind = 'batch_failure'");
    assert_eq!(
        count(&pool, &format!("{events} AND name = 'reject-ok'")).await,
        1
    );
    assert_eq!(
        count(&pool, &format!("{events} AND name = 'reject-poison'")).await,
        0
    );
    // both batches' hourly and daily rows, and the one event
    assert_eq!(report.rows, 5, "{report:?}");
    let q = collector()
        .query(Window::Days90, Scope::Instance)
        .batch_stats()
        .await
        .expect("from PostgreSQL");
    assert_eq!(q.batches["reject-poison"].failures, 1);
    let again = pm.flush().await.expect("again");
    assert_eq!(again.rows, 0, "nothing is tried again");
    assert_eq!(collector().recorder_stats().tier_set_aside - before, 1);
    let health = system_health().await;
    let json = serde_json::to_value(&health).expect("json");
    assert_eq!(json["recorder"]["tierSetAside"], before + 1);
    let db = &health.checks["database"];
    assert!(db.ok, "{db:?}");
    assert!(db.message.contains("set aside"), "{}", db.message);
    pm.shutdown().await.expect("shutdown");
    drop_schema(&prefix).await;
}

/// PostgreSQL away (its connections cut, new ones refused) while Redis is healthy: PostgreSQL's
/// writes fail and back off, and Redis goes on writing at every flush meanwhile — one tier never
/// holds back another. (Before, one backoff held both: Redis wrote once per PostgreSQL attempt,
/// down to once a minute.) Once PostgreSQL is back, its rows are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_that_is_away_never_holds_back_the_other() {
    let _turn = TURN.lock().await;
    let prefix = unique_prefix("isolation");
    let proxy = perfmon_tests::Proxy::start("127.0.0.1:5432").await;
    let direct = database_url();
    let through = direct.replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port), 1);
    assert_ne!(
        through, direct,
        "the test database URL points at 127.0.0.1:5432"
    );
    let pm = init(
        Config::builder()
            .redis_url(redis_url())
            .database_url(&through)
            .key_prefix(&prefix)
            .instance("iso-a")
            .flush_interval(Duration::from_millis(100))
            .no_alerts()
            .build(),
    )
    .await
    .expect("init");
    api("/isolation", 3);
    proxy.cut();
    let base = collector().recorder_stats();
    // a bounded wait for a state (six failed PostgreSQL writes), not a timing assertion
    let started = std::time::Instant::now();
    let now = loop {
        let r = collector().recorder_stats();
        if r.tier_failures - base.tier_failures >= 6 || started.elapsed() > Duration::from_secs(60)
        {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (pg_failures, redis_writes) = (
        now.tier_failures - base.tier_failures,
        now.tier_redis_writes - base.tier_redis_writes,
    );
    assert!(pg_failures >= 6, "PostgreSQL failed: {pg_failures}");
    assert!(
        redis_writes >= 2 * pg_failures,
        "Redis wrote {redis_writes} times while PostgreSQL failed {pg_failures} times"
    );
    assert_eq!(
        now.tier_postgres_writes, base.tier_postgres_writes,
        "nothing reached PostgreSQL while it was away"
    );
    proxy.restore();
    pm.flush()
        .await
        .expect("both tiers write once PostgreSQL is back");
    let q = collector()
        .query(Window::Days90, Scope::Instance)
        .api_stats_for("/isolation")
        .await
        .expect("from PostgreSQL");
    assert_eq!(q.total_requests, 1);
    pm.shutdown().await.expect("shutdown");
    drop_schema(&prefix).await;
}
