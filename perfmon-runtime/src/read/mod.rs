//! Reading: the statistics types (`stats`), one consistent read of a window (`snapshot`), the
//! collector handle and local collectors (`collector`), windows read from a source the runtime
//! installs (`query`), and the SLA report (`sla`). Imports `core` and `pipeline`.

pub(crate) mod collector;
pub(crate) mod query;
pub(crate) mod sla;
pub(crate) mod snapshot;
pub(crate) mod stats;
