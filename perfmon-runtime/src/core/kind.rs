//! What a series measures, the HTTP methods a series can carry, the label that stands for every
//! value past a cardinality cap, and the outcome codes of queries, batches and cache lookups.

/// The label value that stands for every value past a cardinality cap.
pub const OTHER: &str = "__other__";

/// What a series measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    Api,
    Query,
    Batch,
    Cache,
    Measure,
    Business,
    BusinessTag,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub(crate) const ALL: [Kind; 7] = [
        Kind::Api,
        Kind::Query,
        Kind::Batch,
        Kind::Cache,
        Kind::Measure,
        Kind::Business,
        Kind::BusinessTag,
    ];

    /// The short code stored in series keys.
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    pub(crate) fn code(self) -> &'static str {
        match self {
            Kind::Api => "api",
            Kind::Query => "query",
            Kind::Batch => "batch",
            Kind::Cache => "cache",
            Kind::Measure => "fn",
            Kind::Business => "biz",
            Kind::BusinessTag => "tag",
        }
    }

    /// The kind of a code written by [`Kind::code`].
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    pub(crate) fn from_code(code: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.code() == code)
    }
}

/// HTTP methods a series can carry; anything else is `OTHER`.
pub(crate) const METHODS: [&str; 11] = [
    "ANY", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT", "OTHER",
];

/// Index of a method in [`METHODS`], case-insensitively; unknown methods map to `OTHER`.
pub(crate) fn method_index(m: &str) -> usize {
    METHODS
        .iter()
        .position(|k| k.eq_ignore_ascii_case(m))
        .unwrap_or(METHODS.len() - 1)
}

/// Outcome codes for queries and batches.
pub(crate) const OK: u16 = 0;
pub(crate) const FAILED: u16 = 1;
/// Outcome codes for cache lookups.
pub(crate) const HIT: u16 = 0;
pub(crate) const MISS: u16 = 1;
pub(crate) const CACHE_ERROR: u16 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_methods_fold() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_code(k.code()), Some(k));
        }
        assert_eq!(METHODS[method_index("post")], "POST");
        assert_eq!(METHODS[method_index("BREW")], "OTHER");
    }
}
