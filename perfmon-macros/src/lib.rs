//! Attribute macros of [perfmon](https://docs.rs/perfmon-runtime). Depend on `perfmon-runtime`,
//! which re-exports them, and never name this crate yourself.
//!
//! Parsing lives in `args`, expansion in `expand`; each entry point below is a one-liner. The
//! expansions refer only to `::perfmon_runtime::__private` (or the root given by
//! `crate = "path"`), so they work under any import style.

use proc_macro::TokenStream;

mod args;
mod expand;

use args::MacroKind;

/// Records one API request: method, route, status code and duration; a request slower than
/// `slow` (default 5 s) enters the slow list and logs a `tracing` warning.
///
/// Arguments (all optional): `slow = "3s"`, `path = "/api/schedule/assign"`,
/// `method = "POST"`, `crate = "path::to::perfmon_runtime"`.
#[proc_macro_attribute]
pub fn track_api(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(MacroKind::Api, attr.into(), item.into()).into()
}

/// Records one database query: operation (default: the fn's name), table, kind (`read` or
/// `write`), duration and whether it failed (an `Err` return or a panic).
///
/// Arguments: `table = "Staff"` and `kind = "read"` (required), `op = "findMany"`,
/// `slow = "100ms"` (the default), `crate = ".."`.
#[proc_macro_attribute]
pub fn track_query(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(MacroKind::Query, attr.into(), item.into()).into()
}

/// Records one batch run: duration and success, or failure on an `Err` return or a panic (which
/// still propagates). Name: `#[track_batch("weekly-assignment")]` or `name = ".."`.
#[proc_macro_attribute]
pub fn track_batch(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(MacroKind::Batch, attr.into(), item.into()).into()
}

/// Records a cache lookup for a key group: hit (`Some`), miss (`None`) or error (`Err`), on a fn
/// returning `Option<T>` or `Result<Option<T>, E>`. Argument: `key = "fairness:stats"` (required).
#[proc_macro_attribute]
pub fn track_cache(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(MacroKind::Cache, attr.into(), item.into()).into()
}

/// Records any fn's duration under a name; a call over `threshold` logs a `tracing` warning and
/// counts as slow. `#[measure("calculate-fairness", threshold = "1s")]`.
#[proc_macro_attribute]
pub fn measure(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(MacroKind::Measure, attr.into(), item.into()).into()
}
