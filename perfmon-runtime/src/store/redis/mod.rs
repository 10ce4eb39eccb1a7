//! The Redis tier: the key layout and read plans (`layout`), the connection (`io`), the writer
//! (`writer`), the compactor of cluster values (`compact`) and the reader (`reader`).

pub(crate) mod compact;
pub(crate) mod io;
pub(crate) mod layout;
pub(crate) mod reader;
pub(crate) mod writer;

pub use writer::PENDING_LIMIT;
