//! Stands in for `tiers.rs` in a build without the `redis` and `postgres` features: there is no
//! tier to start or stop.

use crate::runtime::backends::Backends;
use crate::runtime::config::Config;
use crate::store::error::TierError;

/// No tiers.
pub(crate) enum Tiers {}

/// Never starts anything.
pub(crate) fn start(_config: &Config, _backends: &Backends) -> Option<Tiers> {
    None
}

impl Tiers {
    pub(crate) async fn stop(self) -> Result<(), TierError> {
        match self {}
    }

    pub(crate) fn stop_on_drop(self) {
        match self {}
    }
}
