//! The tiers at fleet scale, through the real writers with an injected clock (against the real
//! Redis and PostgreSQL): every window and scope answers exactly what merging every recorded
//! value of the window gives — across instances, a restarted instance's two runs, and an
//! instance that was away and flushed its buffer late — while a read touches only the series it
//! asks for and a cluster read of closed buckets takes one compacted value per series and bucket.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use perfmon_runtime::__tiers::{Aggregates, PgTier, RedisTier};
use perfmon_runtime::{ApiStats, Scope, Window};
use perfmon_tests::{
    assert_within_hdr, database_url, drop_schema, exact_quantile, redis_cluster_url, redis_url,
    unique_prefix, Proxy, Rng,
};

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

const ROUTES: [&str; 2] = ["/fleet/a", "/fleet/b"];

/// Every value recorded: (instance, route) → minute → durations.
#[derive(Default)]
struct Truth(BTreeMap<(String, &'static str), BTreeMap<u64, Vec<Duration>>>);

impl Truth {
    /// Records `values` as `instance`'s calls of `route` in `minute`, into `agg` and here.
    fn add(
        &mut self,
        agg: &mut Aggregates,
        instance: &str,
        route: &'static str,
        minute: u64,
        values: Vec<Duration>,
    ) {
        let ns: Vec<u64> = values.iter().map(|d| d.as_nanos() as u64).collect();
        agg.api(minute, "GET", route, 200, &ns);
        self.0
            .entry((instance.to_string(), route))
            .or_default()
            .entry(minute)
            .or_default()
            .extend(values);
    }

    /// Records `n` random calls (300 µs to 2 s) the same way.
    fn record(
        &mut self,
        rng: &mut Rng,
        agg: &mut Aggregates,
        instance: &str,
        route: &'static str,
        minute: u64,
        n: usize,
    ) {
        let values = (0..n)
            .map(|_| rng.log_uniform(Duration::from_micros(300), Duration::from_secs(2)))
            .collect();
        self.add(agg, instance, route, minute, values);
    }

    fn values(&self, instance: Option<&str>, route: &str, minutes: (u64, u64)) -> Vec<Duration> {
        let mut all: Vec<Duration> = self
            .0
            .iter()
            .filter(|((i, r), _)| *r == route && instance.is_none_or(|x| x == i))
            .flat_map(|(_, by_minute)| by_minute.range(minutes.0..=minutes.1))
            .flat_map(|(_, v)| v.iter().copied())
            .collect();
        all.sort_unstable();
        all
    }
}

fn assert_exact(what: &str, got: &ApiStats, values: &[Duration]) {
    assert_eq!(got.total_requests, values.len() as u64, "{what}: count");
    if values.is_empty() {
        return;
    }
    for (q, p) in [
        (0.50, got.p50_duration),
        (0.95, got.p95_duration),
        (0.99, got.p99_duration),
    ] {
        assert_within_hdr(
            &format!("{what} p{}", q * 100.0),
            p,
            exact_quantile(values, q),
        );
    }
    assert_eq!(
        got.max_duration,
        *values.last().expect("values"),
        "{what}: max"
    );
}

/// The minutes a Redis window covers (the contract: the last n minutes; 7 days in whole
/// 5-minute buckets).
fn redis_minutes(window: Window, now_minute: u64) -> (u64, u64) {
    match window {
        Window::Days7 => ((now_minute / 5 + 1 - 2016) * 5, now_minute),
        w => (now_minute + 1 - w.duration().as_secs() / 60, now_minute),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_windows_and_scopes_are_exact_across_instances_runs_and_late_flushes() {
    redis_fleet(&redis_url(), unique_prefix("redis")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_on_a_redis_cluster() {
    redis_fleet(&redis_cluster_url(), unique_prefix("redis-cluster")).await;
}

async fn redis_fleet(url: &str, prefix: String) {
    let url = url.to_string();
    let end = now_secs() / 60 * 60; // the simulated "now" at the end, a minute start
    let start = end - 26 * 3600;
    let mut rng = Rng::new(7);
    let mut truth = Truth::default();
    // b holds the compactor's lease throughout (it flushes first at every step); a restarts
    // (run a1, then a2); c is away for two hours and flushes its buffer when it is back.
    let mut b = RedisTier::connect(&url, &prefix, "b", "b1")
        .await
        .expect("redis");
    let mut a1 = RedisTier::connect(&url, &prefix, "a", "a1")
        .await
        .expect("redis");
    let mut a2 = RedisTier::connect(&url, &prefix, "a", "a2")
        .await
        .expect("redis");
    let mut c = RedisTier::connect(&url, &prefix, "c", "c1")
        .await
        .expect("redis");
    let (mut agg_a1, mut agg_a2, mut agg_b, mut agg_c) = (
        Aggregates::default(),
        Aggregates::default(),
        Aggregates::default(),
        Aggregates::default(),
    );
    let restart = end - 10 * 3600;
    let (away, back) = (end - 3 * 3600, end - 3600);
    let mut compacted = 0;
    let mut t = start;
    while t < end {
        let step_end = t + 300;
        for minute in t / 60..step_end / 60 {
            // dense over the last 2 hours, every 7th minute before
            if minute * 60 + 2 * 3600 < end && minute % 7 != 0 {
                continue;
            }
            for (instance, n) in [("a", 3), ("b", 5), ("c", 2)] {
                for route in ROUTES {
                    let agg = match instance {
                        "a" if minute * 60 < restart => &mut agg_a1,
                        "a" => &mut agg_a2,
                        "b" => &mut agg_b,
                        _ => &mut agg_c,
                    };
                    truth.record(&mut rng, agg, instance, route, minute, n);
                }
            }
        }
        t = step_end;
        compacted += b.flush(&mut agg_b, t).await.expect("b").compacted;
        if t <= restart {
            a1.flush(&mut agg_a1, t).await.expect("a1");
        } else {
            a2.flush(&mut agg_a2, t).await.expect("a2");
        }
        if t <= away || t >= back {
            c.flush(&mut agg_c, t).await.expect("c");
        }
    }
    assert!(compacted > 0, "b holds the lease and compacts");
    // one more pass at the end, so every bucket closed by now is compacted
    let t = end + 600;
    b.flush(&mut agg_b, t).await.expect("b");
    let now_minute = t / 60 - 1;
    let read_at = now_minute * 60 + 30;

    for window in [
        Window::Minutes5,
        Window::Hour1,
        Window::Hours24,
        Window::Days7,
    ] {
        let minutes = redis_minutes(window, now_minute);
        for route in ROUTES {
            let (cluster, stats) = b
                .read(window, Scope::Cluster, Some(route), read_at)
                .await
                .expect("cluster read");
            let what = format!("{window:?} cluster {route}");
            let values = truth.values(None, route, minutes);
            assert_exact(&what, &cluster.api_stats_for(route), &values);
            assert_eq!(
                cluster.api_routes().len(),
                usize::from(!values.is_empty()),
                "{what}: only the route asked for"
            );
            // a route's read: its hashes only, one per bucket and method
            assert_eq!(stats.hashes, stats.buckets * 11, "{what}: {stats:?}");
            for (tier, instance) in [(&a2, "a"), (&b, "b"), (&c, "c")] {
                let (mine, stats) = tier
                    .read(window, Scope::Instance, Some(route), read_at)
                    .await
                    .expect("instance read");
                assert_exact(
                    &format!("{window:?} {instance} {route}"),
                    &mine.api_stats_for(route),
                    &truth.values(Some(instance), route, minutes),
                );
                assert_eq!(stats.cluster_values, 0);
            }
        }
        // every route at once
        let (all, _) = b
            .read(window, Scope::Cluster, None, read_at)
            .await
            .expect("all routes");
        let every: Vec<Duration> = {
            let mut v: Vec<Duration> = ROUTES
                .iter()
                .flat_map(|r| truth.values(None, r, minutes))
                .collect();
            v.sort_unstable();
            v
        };
        assert_exact(
            &format!("{window:?} cluster, every route"),
            &all.api_stats(),
            &every,
        );
    }

    // Cluster reads of closed buckets take the compacted values: the instance values read are
    // those of the open buckets at the window's end, whatever the number of instances.
    let (_, stats) = b
        .read(Window::Hours24, Scope::Cluster, Some(ROUTES[0]), read_at)
        .await
        .expect("24h");
    assert!(stats.cluster_values > stats.buckets / 2, "{stats:?}");
    assert!(stats.instance_values <= 4 * 3, "{stats:?}");
    let compacted_read = stats;

    // A late flush into a compacted bucket: counted at once (the stale merge is rejected), and
    // compacted again by the next pass.
    let old_minute = (end - 20 * 3600) / 60 / 7 * 7;
    let mut agg_late = Aggregates::default();
    let late = vec![Duration::from_millis(1_500); 40];
    truth.add(&mut agg_late, "d", ROUTES[0], old_minute, late);
    let mut d = RedisTier::connect(&url, &prefix, "d", "d1")
        .await
        .expect("redis");
    d.flush(&mut agg_late, read_at).await.expect("late flush");
    let minutes = redis_minutes(Window::Hours24, now_minute);
    let expect = truth.values(None, ROUTES[0], minutes);
    let (cluster, stats) = b
        .read(Window::Hours24, Scope::Cluster, Some(ROUTES[0]), read_at)
        .await
        .expect("24h");
    assert_exact(
        "24h after a late flush",
        &cluster.api_stats_for(ROUTES[0]),
        &expect,
    );
    assert!(
        stats.instance_values > compacted_read.instance_values
            && stats.cluster_values < compacted_read.cluster_values,
        "the stale bucket was read whole: {stats:?}"
    );
    let report = b.flush(&mut agg_b, read_at).await.expect("compaction pass");
    assert!(report.compacted >= 1, "{report:?}");
    let (again, stats) = b
        .read(Window::Hours24, Scope::Cluster, Some(ROUTES[0]), read_at)
        .await
        .expect("24h");
    assert_eq!(
        again.api_stats_for(ROUTES[0]),
        cluster.api_stats_for(ROUTES[0])
    );
    assert_eq!(stats, compacted_read, "compacted again");
    drop_keys(&url, &prefix).await;
}

/// The nodes behind a test URL: itself, or each node of a `redis+cluster://` list.
fn node_urls(url: &str) -> Vec<String> {
    match url.strip_prefix("redis+cluster://") {
        Some(hosts) => hosts.split(',').map(|h| format!("redis://{h}")).collect(),
        None => vec![url.to_string()],
    }
}

/// Deletes what a test wrote under its prefix (on every node of a cluster).
async fn drop_keys(url: &str, prefix: &str) {
    use redis::AsyncCommands;
    for node in node_urls(url) {
        let mut r = redis::Client::open(node)
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let keys: Vec<String> = r.keys(format!("{prefix}:*")).await.expect("keys");
        for k in keys {
            let _: () = r.unlink(k).await.expect("unlink");
        }
    }
}

/// Redis away for a while under one instance: its flushes fail and keep everything; once Redis
/// is back, one flush writes it all, and every window reads exactly what was recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_loses_and_double_counts_nothing() {
    let prefix = unique_prefix("outage");
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let url = redis_url();
    let mut away = RedisTier::connect(&proxy.url(), &prefix, "away", "w1")
        .await
        .expect("through the proxy");
    let mut steady = RedisTier::connect(&url, &prefix, "steady", "s1")
        .await
        .expect("redis");
    let (mut agg_away, mut agg_steady) = (Aggregates::default(), Aggregates::default());
    let mut truth = Truth::default();
    let mut rng = Rng::new(3);
    let end = now_secs() / 60 * 60;
    let start = end - 3 * 3600;
    let mut t = start;
    let mut failed = 0;
    while t < end {
        for (instance, agg) in [("away", &mut agg_away), ("steady", &mut agg_steady)] {
            truth.record(&mut rng, agg, instance, ROUTES[0], t / 60, 20);
        }
        t += 60;
        if t == end - 2 * 3600 {
            proxy.cut();
        }
        if t == end - 3600 {
            proxy.restore();
        }
        if (t - start) % 300 == 0 {
            steady.flush(&mut agg_steady, t).await.expect("steady");
            match away.flush(&mut agg_away, t).await {
                Ok(_) => {}
                Err(e) => {
                    failed += 1;
                    assert!(away.pending() > 0, "kept while away: {e}");
                }
            }
        }
    }
    assert!(
        failed >= 5,
        "the writer saw the outage: {failed} failed flushes"
    );
    let read_at = end + 600;
    steady
        .flush(&mut agg_steady, read_at)
        .await
        .expect("steady");
    let report = away.flush(&mut agg_away, read_at).await.expect("back");
    assert_eq!(away.pending(), 0, "{report:?}");
    // flushed twice more: replaced, never added
    away.flush(&mut agg_away, read_at).await.expect("again");
    let now_minute = read_at / 60;
    for window in [Window::Hour1, Window::Hours24, Window::Days7] {
        let minutes = redis_minutes(window, now_minute);
        let (cluster, _) = steady
            .read(window, Scope::Cluster, Some(ROUTES[0]), read_at)
            .await
            .expect("cluster");
        assert_exact(
            &format!("{window:?} cluster after the outage"),
            &cluster.api_stats_for(ROUTES[0]),
            &truth.values(None, ROUTES[0], minutes),
        );
        let (mine, _) = away
            .read(window, Scope::Instance, Some(ROUTES[0]), read_at)
            .await
            .expect("instance");
        assert_exact(
            &format!("{window:?} the instance that was away"),
            &mine.api_stats_for(ROUTES[0]),
            &truth.values(Some("away"), ROUTES[0], minutes),
        );
    }
    drop_keys(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_windows_and_scopes_are_exact_from_days_and_edge_hours() {
    let prefix = unique_prefix("pg");
    let url = database_url();
    let end = now_secs() / 60 * 60;
    let start = end - 4 * 86_400 - 7 * 3600;
    let mut rng = Rng::new(11);
    let mut truth = Truth::default();
    let mut a = PgTier::connect(&url, &prefix, "a", "a1")
        .await
        .expect("postgres");
    let mut b = PgTier::connect(&url, &prefix, "b", "b1")
        .await
        .expect("postgres");
    let (mut agg_a, mut agg_b) = (Aggregates::default(), Aggregates::default());
    // one minute every 37 minutes, flushed every 6 hours (and at the end)
    let mut minute = start / 60;
    while minute < end / 60 {
        for (instance, agg, n) in [("a", &mut agg_a, 4), ("b", &mut agg_b, 6)] {
            for route in ROUTES {
                truth.record(&mut rng, agg, instance, route, minute, n);
            }
        }
        let next = minute + 37;
        if next / 360 != minute / 360 {
            a.flush(&mut agg_a, next * 60).await.expect("a");
            b.flush(&mut agg_b, next * 60).await.expect("b");
        }
        minute = next;
    }
    // flushed long after the last minute, so every minute is final and folded
    let t = end + 3600;
    a.flush(&mut agg_a, t).await.expect("a");
    b.flush(&mut agg_b, t).await.expect("b");
    let read_at = t;
    for window in [
        Window::Hours24,
        Window::Days7,
        Window::Days90,
        Window::Year1,
    ] {
        // the contract: from the hour (for a year, the day) holding the window's start
        let unit = if window == Window::Year1 {
            86_400
        } else {
            3600
        };
        let from_minute = (read_at - window.duration().as_secs()) / unit * unit / 60;
        let minutes = (from_minute, read_at / 60);
        for route in ROUTES {
            let cluster = a
                .read(window, Scope::Cluster, Some(route), read_at)
                .await
                .expect("cluster");
            assert_exact(
                &format!("{window:?} cluster {route}"),
                &cluster.api_stats_for(route),
                &truth.values(None, route, minutes),
            );
            assert_eq!(cluster.api_routes().len(), 1);
            let mine = b
                .read(window, Scope::Instance, Some(route), read_at)
                .await
                .expect("instance");
            assert_exact(
                &format!("{window:?} b {route}"),
                &mine.api_stats_for(route),
                &truth.values(Some("b"), route, minutes),
            );
        }
        let all = a
            .read(window, Scope::Cluster, None, read_at)
            .await
            .expect("all");
        assert_eq!(all.api_routes().len(), ROUTES.len());
    }
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    // Closed buckets are compacted: one cluster row per series and bucket; only open buckets
    // are still queued.
    let (cluster_rows, queued): (i64, i64) = sqlx::query_as(&format!(
        "SELECT (SELECT count(*) FROM \"{prefix}\".cluster_hourly),
                (SELECT count(*) FROM \"{prefix}\".compact_queue WHERE tbl = 'hourly')"
    ))
    .fetch_one(&pool)
    .await
    .expect("counts");
    assert!(
        cluster_rows > 0 && queued < cluster_rows / 10,
        "{cluster_rows} {queued}"
    );
    // A late flush into a compacted hour (an instance that was away): counted at once and
    // merged again.
    let late_minute = (end - 2 * 86_400) / 60;
    let mut agg_late = Aggregates::default();
    let late = vec![Duration::from_millis(1_700); 25];
    truth.add(&mut agg_late, "c", ROUTES[0], late_minute, late);
    let mut c = PgTier::connect(&url, &prefix, "c", "c1")
        .await
        .expect("postgres");
    c.flush(&mut agg_late, read_at).await.expect("late flush");
    for window in [Window::Days7, Window::Days90, Window::Year1] {
        let unit = if window == Window::Year1 {
            86_400
        } else {
            3600
        };
        let from_minute = (read_at - window.duration().as_secs()) / unit * unit / 60;
        let cluster = b
            .read(window, Scope::Cluster, Some(ROUTES[0]), read_at)
            .await
            .expect("cluster");
        assert_exact(
            &format!("{window:?} cluster after a late flush"),
            &cluster.api_stats_for(ROUTES[0]),
            &truth.values(None, ROUTES[0], (from_minute, read_at / 60)),
        );
    }
    // The tables are partitioned by month, and a route's read uses the (series, bucket) index.
    let partitions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
         JOIN pg_namespace n ON n.oid = p.relnamespace WHERE n.nspname = $1 AND p.relname = 'hourly'",
    )
    .bind(&prefix)
    .fetch_one(&pool)
    .await
    .expect("partitions");
    assert!(
        partitions >= 2,
        "a month partition and the default: {partitions}"
    );

    // A 0.1 schema (unpartitioned tables, migrations 1 and 2) holding the same rows: migration
    // 3 moves them into partitions, and every window reads the same.
    let old = format!("{prefix}-old");
    sqlx::raw_sql(&format!(
        "CREATE SCHEMA \"{old}\";
         CREATE TABLE \"{old}\".migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO \"{old}\".migrations (version) VALUES (1), (2);
         CREATE TABLE \"{old}\".hourly (bucket_start timestamptz NOT NULL, instance text NOT NULL, run text NOT NULL,
             series text NOT NULL, events bigint NOT NULL, data bytea NOT NULL,
             updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (bucket_start, instance, run, series));
         CREATE TABLE \"{old}\".daily (LIKE \"{old}\".hourly INCLUDING ALL);
         CREATE TABLE \"{old}\".events (at timestamptz NOT NULL, instance text NOT NULL, kind text NOT NULL,
             name text NOT NULL, detail text NOT NULL DEFAULT '', PRIMARY KEY (at, instance, kind, name));
         CREATE INDEX hourly_series_bucket ON \"{old}\".hourly (series, bucket_start);
         CREATE INDEX daily_series_bucket ON \"{old}\".daily (series, bucket_start);
         INSERT INTO \"{old}\".hourly SELECT * FROM \"{prefix}\".hourly;
         INSERT INTO \"{old}\".daily SELECT * FROM \"{prefix}\".daily;"
    ))
    .execute(&pool)
    .await
    .expect("a 0.1 schema");
    let migrated = PgTier::connect(&url, &old, "a", "a1")
        .await
        .expect("migrates");
    for window in [Window::Hours24, Window::Days90, Window::Year1] {
        for route in ROUTES {
            let before = a
                .read(window, Scope::Cluster, Some(route), read_at)
                .await
                .expect("read");
            let after = migrated
                .read(window, Scope::Cluster, Some(route), read_at)
                .await
                .expect("read the migrated schema");
            assert_eq!(
                after.api_stats_for(route),
                before.api_stats_for(route),
                "{window:?}"
            );
        }
    }
    let moved: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{old}\".hourly_default"))
        .fetch_one(&pool)
        .await
        .expect("default partition");
    assert_eq!(moved, 0, "every month has its partition");
    // Retention drops whole month partitions: a minute 130 days old has its month's partitions
    // (hourly and daily); the hourly one is past 90 days whole and is dropped, the daily one kept.
    let old_minute = (read_at - 130 * 86_400) / 60;
    let mut agg = Aggregates::default();
    agg.api(old_minute, "GET", ROUTES[0], 200, &[5_000_000]);
    a.flush(&mut agg, read_at).await.expect("an old minute");
    let count_partitions = |table: &'static str| {
        let pool = pool.clone();
        let prefix = prefix.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
                 JOIN pg_namespace n ON n.oid = p.relnamespace WHERE n.nspname = $1 AND p.relname = $2",
            )
            .bind(prefix)
            .bind(table)
            .fetch_one(&pool)
            .await
            .expect("partitions")
        }
    };
    let (hourly, daily) = (
        count_partitions("hourly").await,
        count_partitions("daily").await,
    );
    let pruned = a.prune(read_at).await.expect("prune");
    assert_eq!((pruned.hourly, pruned.daily), (1, 0), "{pruned:?}");
    assert_eq!(
        count_partitions("hourly").await,
        hourly - 1,
        "the old month's partition is dropped"
    );
    assert_eq!(count_partitions("daily").await, daily);
    let year = a
        .read(Window::Year1, Scope::Cluster, Some(ROUTES[0]), read_at)
        .await
        .expect("1y");
    assert_eq!(
        year.api_stats_for(ROUTES[0]).total_requests,
        truth.values(None, ROUTES[0], (0, read_at / 60)).len() as u64 + 1,
        "the daily row of the old minute is kept"
    );
    for schema in [&prefix, &old] {
        sqlx::raw_sql(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .execute(&pool)
            .await
            .expect("clean up");
    }
}

/// A TCP proxy to PostgreSQL that adds 1 ms to every round trip (each chunk the client sends
/// waits 1 ms) and counts the chunks.
async fn slow_proxy(target: &'static str) -> (u16, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                return;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    if sw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut sr, &mut cw).await;
            });
        }
    });
    (port, sent)
}

/// 20,000 series flushed to PostgreSQL through a link that adds 1 ms a round trip: the rows go
/// in bulk (a few statements per table), so the flush takes a few dozen round trips, well
/// inside the writer's 10 s limit. (Written one statement per row, as before, it was 40,008
/// statements and timed out.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_series_flush_in_a_few_round_trips() {
    let prefix = unique_prefix("bulk");
    let direct = database_url();
    let (port, sent) = slow_proxy("127.0.0.1:5432").await;
    let slow = direct.replacen("127.0.0.1:5432", &format!("127.0.0.1:{port}"), 1);
    assert_ne!(
        slow, direct,
        "the test database URL points at 127.0.0.1:5432: {direct}"
    );
    // migrated directly, then written through the slow link
    drop(
        PgTier::connect(&direct, &prefix, "bulk", "b1")
            .await
            .expect("migrate"),
    );
    let mut tier = PgTier::connect(&slow, &prefix, "bulk", "b1")
        .await
        .expect("through the proxy");
    let mut agg = Aggregates::default();
    let minute = now_secs() / 60;
    for r in 0..20_000 {
        agg.api(minute, "GET", &format!("/bulk/{r}"), 200, &[1_000_000 + r]);
    }
    let before = sent.load(std::sync::atomic::Ordering::Relaxed);
    let rows = tier
        .flush(&mut agg, minute * 60 + 30)
        .await
        .expect("within the writer's limit");
    let round_trips = sent.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert_eq!(rows, 40_000, "an hourly and a daily row per series");
    assert!(
        round_trips < 200,
        "{round_trips} chunks sent for 40,000 rows"
    );
    let all = tier
        .read(Window::Days90, Scope::Instance, None, minute * 60 + 30)
        .await
        .expect("read back");
    assert_eq!(all.api_routes().len(), 20_000);
    drop_schema(&prefix).await;
}

/// Rows of `table` (in the schema `prefix`) as (series, events), sorted.
async fn stored(pool: &sqlx::PgPool, prefix: &str, table: &str) -> Vec<(String, i64)> {
    sqlx::query_as(&format!(
        "SELECT series, events FROM \"{prefix}\".{table} ORDER BY series"
    ))
    .fetch_all(pool)
    .await
    .expect("rows")
}

/// Asserts that `hourly` and `daily` hold `n` rows each, none of the poison series, each with
/// its exact count of events.
async fn check_stored(pool: &sqlx::PgPool, prefix: &str, truth: &Truth, n: usize, when: &str) {
    for table in ["hourly", "daily"] {
        let rows = stored(pool, prefix, table).await;
        assert_eq!(rows.len(), n, "{when}: {table}");
        for (series, events) in rows {
            assert!(!series.contains("poison"), "{when}: {table} {series}");
            let route = series.split('\u{1f}').nth(2).expect("name");
            let recorded = truth.values(Some("rej"), route, (0, u64::MAX)).len() as i64;
            assert_eq!(events, recorded, "{when}: {table} {route}");
        }
    }
}

/// A row PostgreSQL rejects for what it holds — here a CHECK constraint on `hourly` and a
/// trigger on `daily` that a DBA added, each refusing one series — is isolated (savepoints,
/// halves) and set aside: the flush succeeds, every other row is written with its exact value,
/// the rejected rows are counted once and never retried. Errors that say nothing about a row
/// (a lock the trigger cannot take, the connection cut) still fail the flush and keep every
/// row. (Before, the one rejected row failed every flush: nothing was ever written again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_postgres_rejects_is_set_aside_and_every_other_row_is_written() {
    const GOOD: usize = 300;
    let prefix = unique_prefix("reject");
    let s = format!("\"{prefix}\"");
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let direct = database_url();
    let through = direct.replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port), 1);
    assert_ne!(
        through, direct,
        "the test database URL points at 127.0.0.1:5432"
    );
    let mut tier = PgTier::connect(&through, &prefix, "rej", "r1")
        .await
        .expect("through the proxy");
    let pool = sqlx::PgPool::connect(&direct).await.expect("connect");
    sqlx::raw_sql(&format!(
        "ALTER TABLE {s}.hourly ADD CONSTRAINT no_poison CHECK (series NOT LIKE '%/poison%');
         CREATE FUNCTION {s}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.series LIKE '%/poison%' THEN
                 RAISE EXCEPTION 'series % refused', NEW.series;
             END IF;
             IF NEW.series LIKE '%/reject/locked%' THEN
                 RAISE EXCEPTION 'busy' USING ERRCODE = 'lock_not_available';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON {s}.daily FOR EACH ROW EXECUTE FUNCTION {s}.refuse();"
    ))
    .execute(&pool)
    .await
    .expect("a DBA's constraint and trigger");
    let set_aside = || perfmon_runtime::collector().recorder_stats().tier_set_aside;
    let before = set_aside();

    // the poison series sorts in the middle of the good ones, so the halves have work to do
    let route = |i: usize| format!("/reject/ok/{i:04}");
    let poison = format!("{}/poison", route(GOOD / 2));
    let routes: Vec<&'static str> = (0..GOOD)
        .map(|i| &*Box::leak(route(i).into_boxed_str()))
        .collect();
    let hour = now_secs() / 3600 * 3600 - 3 * 3600;
    let minute = hour / 60 + 7;
    let mut truth = Truth::default();
    let mut agg = Aggregates::default();
    let mut rng = Rng::new(17);
    for (i, r) in routes.iter().enumerate() {
        truth.record(&mut rng, &mut agg, "rej", r, minute, 1 + i % 5);
        if i == GOOD / 2 {
            agg.api(minute, "GET", &poison, 200, &[7_000_000]);
        }
    }
    let t = minute * 60 + 30;
    let rows = tier
        .flush(&mut agg, t)
        .await
        .expect("the rejected row does not fail the flush");
    assert_eq!(rows, 2 * GOOD, "an hourly and a daily row per good series");
    assert_eq!(
        set_aside() - before,
        2,
        "the poison's hourly and daily rows"
    );
    assert_eq!(tier.pending(), 0, "set aside, not pending");
    check_stored(&pool, &prefix, &truth, GOOD, "after the first flush").await;
    for window in [Window::Days90, Window::Year1] {
        let all = tier
            .read(window, Scope::Instance, None, t)
            .await
            .expect("read back");
        assert_eq!(all.api_routes().len(), GOOD, "{window:?}: no poison");
        for r in &routes {
            assert_exact(
                &format!("{window:?} {r}"),
                &all.api_stats_for(r),
                &truth.values(Some("rej"), r, (0, u64::MAX)),
            );
        }
    }
    // flushed again: the rows set aside are not tried again
    assert_eq!(tier.flush(&mut agg, t + 1).await.expect("again"), 0);
    assert_eq!(set_aside() - before, 2, "counted once");
    // more of the poison series in the same hour: its rows stay set aside, not tried, counted or
    // logged again at every flush
    agg.api(minute, "GET", &poison, 200, &[8_000_000]);
    assert_eq!(tier.flush(&mut agg, t + 2).await.expect("again"), 0);
    assert_eq!(
        set_aside() - before,
        2,
        "counted once per row, not per flush"
    );

    // An error that says nothing about the rows (the trigger cannot take a lock): the flush
    // fails and keeps every row, none written, none set aside.
    let later = minute + 1;
    for r in &routes[..10] {
        truth.record(&mut rng, &mut agg, "rej", r, later, 2);
    }
    truth.add(
        &mut agg,
        "rej",
        "/reject/locked",
        later,
        vec![Duration::from_millis(1)],
    );
    let tables = || async {
        (
            stored(&pool, &prefix, "hourly").await,
            stored(&pool, &prefix, "daily").await,
        )
    };
    let before_lock = tables().await;
    let e = tier
        .flush(&mut agg, later * 60 + 30)
        .await
        .expect_err("a lock error fails the flush");
    assert!(e.to_string().contains("busy"), "{e}");
    assert_eq!(tier.pending(), 2 * 11, "every row kept: {e}");
    assert_eq!(tables().await, before_lock, "nothing written");
    assert_eq!(set_aside() - before, 2, "nothing set aside");
    sqlx::raw_sql(&format!("DROP TRIGGER refuse ON {s}.daily"))
        .execute(&pool)
        .await
        .expect("the DBA drops the trigger");
    assert_eq!(
        tier.flush(&mut agg, later * 60 + 31)
            .await
            .expect("written"),
        2 * 11
    );
    assert_eq!(tier.pending(), 0);

    // The connection cut: the flush fails and keeps every row.
    let last = minute + 2;
    for r in &routes[10..20] {
        truth.record(&mut rng, &mut agg, "rej", r, last, 3);
    }
    proxy.cut_and_wait().await;
    let e = tier
        .flush(&mut agg, last * 60 + 30)
        .await
        .expect_err("PostgreSQL is away");
    assert_eq!(tier.pending(), 2 * 10, "every row kept: {e}");
    proxy.restore();
    assert_eq!(
        tier.flush(&mut agg, last * 60 + 31).await.expect("back"),
        2 * 10
    );
    assert_eq!(tier.pending(), 0);
    assert_eq!(set_aside() - before, 2, "nothing more set aside");
    // every good series exact, and the locked one (its trigger gone); no poison
    check_stored(&pool, &prefix, &truth, GOOD + 1, "at the end").await;

    // A flush whose every row is rejected says nothing about its rows (a constraint no row
    // meets): it fails and keeps them, as on any other error.
    sqlx::raw_sql(&format!(
        "ALTER TABLE {s}.daily ADD CONSTRAINT no_poison CHECK (series NOT LIKE '%/poison%')"
    ))
    .execute(&pool)
    .await
    .expect("the same constraint on daily");
    // (another poison series: the first one's rows in this hour and day are known set aside)
    let poison_again = format!("{}/poison-again", route(1));
    agg.api(last, "GET", &poison_again, 200, &[1_000_000]);
    let e = tier
        .flush(&mut agg, last * 60 + 32)
        .await
        .expect_err("every row rejected");
    assert_eq!(tier.pending(), 2, "kept: {e}");
    assert_eq!(set_aside() - before, 2, "nothing more set aside");
    drop_schema(&prefix).await;
}
