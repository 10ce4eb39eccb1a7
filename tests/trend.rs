//! A route's trend over a long window (issue 12, item 2), read slice by slice from the Redis
//! tier (1 hour, 7 days) and from PostgreSQL (24 hours), with an injected clock: each slice's
//! requests and percentiles equal what was recorded in it, within HDR precision.

use std::time::Duration;

use perfmon_runtime::__tiers::{Aggregates, PgTier, RedisTier};
use perfmon_runtime::{Scope, TimelinePoint, Window};
use perfmon_tests::{
    assert_within_hdr, database_url, drop_schema, exact_quantile, redis_url, unique_prefix, Rng,
};

/// A clock on a day boundary plus 23 h, so that every slice below is whole.
const NOW: u64 = 1_800_000_000 / 86_400 * 86_400 + 23 * 3600;

/// A clock in the middle of a minute and of an hour: slices align to their own length, not to
/// the clock.
const ODD_NOW: u64 = NOW + 17 * 60 + 13;

/// Three bursts of requests at `minutes_ago` before `NOW`, each its own durations.
fn bursts(minutes_ago: [u64; 3]) -> (Aggregates, Vec<(u64, Vec<u64>)>) {
    bursts_at(NOW, minutes_ago)
}

fn bursts_at(now: u64, minutes_ago: [u64; 3]) -> (Aggregates, Vec<(u64, Vec<u64>)>) {
    let mut agg = Aggregates::default();
    let mut rng = Rng::new(11);
    let mut recorded = Vec::new();
    for (i, ago) in minutes_ago.into_iter().enumerate() {
        let minute = now / 60 - ago;
        let n = 50 + 100 * i;
        let ds: Vec<u64> = (0..n)
            .map(|_| {
                rng.log_uniform(
                    Duration::from_millis(1),
                    Duration::from_millis(200 * (i as u64 + 1)),
                )
                .as_nanos() as u64
            })
            .collect();
        agg.api(minute, "GET", "/trend/a", 200, &ds);
        recorded.push((minute, ds));
    }
    (agg, recorded)
}

/// Each recorded burst is exactly one slice of the trend, in order, its label at or before the
/// burst and less than `slice_minutes` before it.
fn check(trend: &[TimelinePoint], recorded: &[(u64, Vec<u64>)], what: &str) {
    check_sliced(trend, recorded, u64::MAX, what)
}

fn check_sliced(
    trend: &[TimelinePoint],
    recorded: &[(u64, Vec<u64>)],
    slice_minutes: u64,
    what: &str,
) {
    assert_eq!(trend.len(), recorded.len(), "{what}: {trend:?}");
    for (p, (minute, ds)) in trend.iter().zip(recorded) {
        let label = p
            .minute
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
            / 60;
        assert!(
            label <= *minute,
            "{what}: a slice starts at or before its data"
        );
        assert!(
            slice_minutes == u64::MAX || minute - label < slice_minutes,
            "{what}: the burst at minute {minute} is in the slice from {label}"
        );
        assert_eq!(p.total_requests, ds.len() as u64, "{what}");
        let mut sorted: Vec<Duration> = ds.iter().map(|&d| Duration::from_nanos(d)).collect();
        sorted.sort();
        assert_within_hdr(what, p.p99_duration, exact_quantile(&sorted, 0.99));
        assert_within_hdr(what, p.p50_duration, exact_quantile(&sorted, 0.50));
        assert_eq!(p.error_rate, 0.0);
    }
    let starts: Vec<_> = trend.iter().map(|p| p.minute).collect();
    assert!(
        starts.windows(2).all(|w| w[0] < w[1]),
        "{what}: slices in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routes_trend_from_redis_slice_by_slice() {
    let prefix = unique_prefix("trend-redis");
    let mut tier = RedisTier::connect(&redis_url(), &prefix, "trend-a", "run-1")
        .await
        .expect("Redis");
    let (mut agg, recorded) = bursts([50, 30, 10]);
    tier.flush(&mut agg, NOW).await.expect("flush");
    // 1 hour in 12 slices of 5 minutes: one burst each
    let hour = tier
        .read_trend(Window::Hour1, Scope::Instance, "/trend/a", NOW, 12)
        .await
        .expect("trend");
    check(&hour, &recorded, "1h from Redis");
    let cluster = tier
        .read_trend(Window::Hour1, Scope::Cluster, "/trend/a", NOW, 12)
        .await
        .expect("trend");
    check(&cluster, &recorded, "1h cluster from Redis");
    // the same bursts, 7 days in 7 slices: all in the last day's
    let week = tier
        .read_trend(Window::Days7, Scope::Instance, "/trend/a", NOW, 7)
        .await
        .expect("trend");
    assert_eq!(week.len(), 1, "{week:?}");
    assert_eq!(week[0].total_requests, 50 + 150 + 250);
    // another route: nothing
    let none = tier
        .read_trend(Window::Hour1, Scope::Instance, "/trend/none", NOW, 12)
        .await
        .expect("trend");
    assert!(none.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routes_trend_from_postgres_hour_by_hour() {
    let prefix = unique_prefix("trend-pg");
    let mut tier = PgTier::connect(&database_url(), &prefix, "trend-a", "run-1")
        .await
        .expect("PostgreSQL");
    let (mut agg, recorded) = bursts([20 * 60 + 5, 10 * 60 + 5, 2 * 60 + 5]);
    tier.flush(&mut agg, NOW).await.expect("flush");
    // a later flush closes the hours
    tier.flush(&mut Aggregates::default(), NOW + 3600)
        .await
        .expect("flush");
    let day = tier
        .read_trend(Window::Hours24, Scope::Instance, "/trend/a", NOW, 24)
        .await
        .expect("trend");
    check(&day, &recorded, "24h from PostgreSQL");
    drop_schema(&prefix).await;
}

/// 48 slices, as the dashboard asks, with a clock that is not on a boundary: every slice holds
/// whole buckets (30 minutes of 5-minute buckets from Redis, an hour of hourly rows from
/// PostgreSQL), and each burst lands in the slice its time falls in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_eight_slices_with_an_unaligned_clock() {
    let prefix = unique_prefix("trend-48");
    let mut redis = RedisTier::connect(&redis_url(), &prefix, "trend-a", "run-1")
        .await
        .expect("Redis");
    let (mut agg, recorded) = bursts_at(ODD_NOW, [300, 150, 20]);
    redis.flush(&mut agg, ODD_NOW).await.expect("flush");
    for scope in [Scope::Instance, Scope::Cluster] {
        let day = redis
            .read_trend(Window::Hours24, scope, "/trend/a", ODD_NOW, 48)
            .await
            .expect("trend");
        check_sliced(
            &day,
            &recorded,
            30,
            &format!("24h/48 from Redis, {scope:?}"),
        );
    }
    let hour = redis
        .read_trend(Window::Hour1, Scope::Instance, "/trend/a", ODD_NOW, 48)
        .await
        .expect("trend");
    check_sliced(&hour, &recorded[2..], 2, "1h/48 from Redis");

    let mut pg = PgTier::connect(&database_url(), &prefix, "trend-a", "run-1")
        .await
        .expect("PostgreSQL");
    let (mut agg, recorded) = bursts_at(ODD_NOW, [20 * 60, 10 * 60, 2 * 60]);
    pg.flush(&mut agg, ODD_NOW).await.expect("flush");
    pg.flush(&mut Aggregates::default(), ODD_NOW + 3600)
        .await
        .expect("flush");
    for scope in [Scope::Instance, Scope::Cluster] {
        let day = pg
            .read_trend(Window::Hours24, scope, "/trend/a", ODD_NOW, 48)
            .await
            .expect("trend");
        check_sliced(
            &day,
            &recorded,
            60,
            &format!("24h/48 from PostgreSQL, {scope:?}"),
        );
    }
    drop_schema(&prefix).await;
}
