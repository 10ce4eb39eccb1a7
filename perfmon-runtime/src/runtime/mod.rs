//! The top layer: configuration (`config`), errors (`error`), the backends `init` connects
//! (`backends`), the jobs of the background threads (`workers`), and the one owned runtime —
//! `init`, `shutdown` and the [`Perfmon`](crate::Perfmon) handle (`handle`). The only place that
//! wires sources and sinks of the layers below together.

pub(crate) mod backends;
pub(crate) mod config;
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) mod direct;
pub(crate) mod error;
pub(crate) mod handle;
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) mod tiers;
#[cfg(not(any(feature = "redis", feature = "postgres")))]
#[path = "no_tiers.rs"]
pub(crate) mod tiers;
pub(crate) mod workers;
