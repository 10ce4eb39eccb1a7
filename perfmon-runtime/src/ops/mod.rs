//! Operations: health checks and resource usage (`health`), the alert rules and their engine
//! (`alerts`), and where notifications go (`notify`). Imports `core`, `pipeline` and `read`;
//! the runtime runs the engine on its worker and registers the backends' checks.

pub(crate) mod alerts;
pub(crate) mod health;
pub(crate) mod notify;
