//! The bottom layer: values and algorithms that know nothing of the rest of perfmon — the clock,
//! HDR histograms, what a series measures, windows and their constants, limits, `/proc`
//! readings, status codes from return values, single flights, and the plumbing every background
//! worker uses.
//! Nothing here imports another perfmon module outside `core`.

pub(crate) mod clock;
pub(crate) mod flight;
pub(crate) mod hist;
pub(crate) mod kind;
pub(crate) mod limits;
#[cfg(any(feature = "axum", feature = "redis", feature = "postgres"))]
pub(crate) mod pool;
pub(crate) mod process;
pub(crate) mod secret;
pub(crate) mod status;
pub(crate) mod sync;
pub(crate) mod trace;
pub(crate) mod window;
pub(crate) mod worker;
