//! Cardinality caps, one per label dimension, and the longest label kept.

/// Cardinality caps, one per label dimension. A value past its cap is counted under
/// `__other__`; nothing is dropped and memory stays bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Distinct API routes (per method). Default 1,000.
    pub max_routes: usize,
    /// Distinct database tables. Default 200.
    pub max_tables: usize,
    /// Distinct operations per table. Default 100.
    pub max_operations_per_table: usize,
    /// Distinct cache key groups. Default 500.
    pub max_cache_keys: usize,
    /// Distinct batch names. Default 200.
    pub max_batches: usize,
    /// Distinct `#[measure]` names. Default 1,000.
    pub max_functions: usize,
    /// Distinct business metric names. Default 200.
    pub max_business_metrics: usize,
    /// Distinct tag keys per business metric. Default 20.
    pub max_tag_keys: usize,
    /// Distinct values per tag key. Default 200.
    pub max_tag_values: usize,
    /// All series together, whatever their dimension. Default 20,000.
    pub max_series: usize,
    /// The longest label kept (route, table, operation, name, tag key or value), in bytes: a
    /// longer one is cut at a character boundary and ends with `…`. Control characters in labels
    /// become U+FFFD. Default 256.
    pub max_label_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_routes: 1_000,
            max_tables: 200,
            max_operations_per_table: 100,
            max_cache_keys: 500,
            max_batches: 200,
            max_functions: 1_000,
            max_business_metrics: 200,
            max_tag_keys: 20,
            max_tag_values: 200,
            max_series: 20_000,
            max_label_bytes: 256,
        }
    }
}
