//! A second and third "instance" for the cluster tests: records deterministic API durations as
//! instance `$PERFMON_INSTANCE` into the Redis tier under `$PERFMON_KEY_PREFIX`, then shuts
//! down (which flushes). `$TIER_SEED` and `$TIER_COUNT` choose the durations.

use perfmon_tests::Rng;
use std::time::{Duration, SystemTime};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seed: u64 = std::env::var("TIER_SEED")?.parse()?;
    let count: usize = std::env::var("TIER_COUNT")?.parse()?;
    let pm = perfmon_runtime::init(perfmon_runtime::Config::from_env()?).await?;
    let mut rng = Rng::new(seed);
    let now = SystemTime::now();
    for _ in 0..count {
        let d = rng.log_uniform(Duration::from_micros(200), Duration::from_millis(900));
        perfmon_runtime::record_api_metric(perfmon_runtime::ApiMetric {
            method: "GET",
            path: "/cluster",
            status_code: 200,
            duration: d,
            timestamp: now,
        });
    }
    pm.shutdown().await?;
    Ok(())
}
