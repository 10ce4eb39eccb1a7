//! The `--alert-demo`: alerts evaluated every second over a 10-second window, and a 4-second
//! database outage one second into the traffic, so that the critical error-rate alert fires and
//! then resolves within one run.

use std::sync::Arc;
use std::time::Duration;

use perfmon_runtime::alerts::AlertConfig;
use perfmon_runtime::Config;
use tokio::time::sleep;

use crate::service::App;

/// The demo's default traffic duration: long enough for the alert to fire and resolve.
pub(crate) const TRAFFIC_SECONDS: u64 = 18;

/// `config` with alerts evaluated every second over 10 s, so that the outage fires and resolves
/// within the run.
pub(crate) fn configure(config: Config) -> Config {
    config
        .into_builder()
        .alerts(AlertConfig {
            tick: Duration::from_secs(1),
            window: Duration::from_secs(10),
            pending: Duration::from_secs(2),
            ..Default::default()
        })
        .build()
}

/// Takes `app`'s database away for 4 s, one second from now: a burst of 500s.
pub(crate) fn spawn_outage(app: Arc<App>) {
    tokio::spawn(async move {
        sleep(Duration::from_secs(1)).await;
        tracing::warn!("alert demo: the database goes away for 4 s");
        app.set_outage(true);
        sleep(Duration::from_secs(4)).await;
        app.set_outage(false);
        tracing::warn!("alert demo: the database is back");
    });
}
