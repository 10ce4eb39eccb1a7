//! The retention tiers (feature `redis` for now; PostgreSQL follows).
//!
//! # Restart- and retry-safety
//!
//! Every instance writes under its own name *and* its process run (a random id per `init`), and
//! every write *replaces* a whole value: one series' whole minute (merged across the aggregator
//! shards) or whole 5-minute bucket as of the flush. A flush retried after a timeout writes the
//! same or newer values, never adds twice; a process restarted within the same minute writes
//! under a new run and leaves the previous run's values as they were. Readers merge every
//! instance and run.
//!
//! # Redis key layout (prefix `PERFMON_KEY_PREFIX`, default `perfmon`)
//!
//! | key | type | holds | TTL |
//! | --- | --- | --- | --- |
//! | `{prefix}:m1:{unix minute}` | hash | field `{instance}␞{run}␞{series}` → that minute of the series (counters, status codes, exact sum/min/max, HDR V2+DEFLATE histogram; [`codec`]) — the 1-minute aggregates, error counters included | 24 h after the minute ends |
//! | `{prefix}:m5:{unix minute / 5}` | hash | the same per 5-minute bucket — the 5-minute aggregates and, for query series, the per-table statistics | 7 days after the bucket ends |
//! | `{prefix}:rt:{instance}:recent` | list | the last 100 API requests (JSON), newest first | 5 minutes |
//! | `{prefix}:rt:{instance}:times` | list | the last 100 response times in ms, newest first | 5 minutes |
//! | `{prefix}:rt:{instance}:counters` | hash | live counters since the process started | 5 minutes |
//! | `{prefix}:slow` | sorted set | the slowest requests of every instance (score: ms), trimmed to 50 | 24 hours |
//!
//! `{series}` is the series' labels joined by `␟` (U+001F): kind, method, name, table, tag
//! value, write flag.

pub(crate) mod codec;
pub(crate) mod redis;

use crate::aggregator::Minute;
use crate::hist::Merged;
use crate::registry::{Kind, SeriesInfo};

/// Minutes in a bucket of the medium tier.
pub(crate) const BUCKET_MINUTES: u64 = 5;

/// What one flush takes from the aggregator.
#[derive(Default)]
pub(crate) struct Snapshot {
    /// (series, unix minute, the whole minute).
    pub minutes: Vec<(u32, u64, Minute<Merged>)>,
    /// (series, bucket = unix minute / 5, the whole bucket so far).
    pub buckets: Vec<(u32, u64, Minute<Merged>)>,
}

const SEP: char = '\u{1f}';

fn kind_code(k: Kind) -> &'static str {
    match k {
        Kind::Api => "api",
        Kind::Query => "query",
        Kind::Batch => "batch",
        Kind::Cache => "cache",
        Kind::Measure => "fn",
        Kind::Business => "biz",
        Kind::BusinessTag => "tag",
    }
}

/// The series' labels as one string, the field name part that identifies it across instances.
pub(crate) fn series_key(i: &SeriesInfo) -> String {
    let mut key = String::with_capacity(i.name.len() + i.table.len() + 24);
    for (n, part) in [
        kind_code(i.kind),
        i.method,
        &i.name,
        &i.table,
        &i.tag_value,
        if i.write { "w" } else { "r" },
    ]
    .into_iter()
    .enumerate()
    {
        if n > 0 {
            key.push(SEP);
        }
        // the separators never occur in labels; drop them if a label carries one
        key.extend(part.chars().filter(|c| *c != SEP && *c != '\u{1e}'));
    }
    key
}

/// The labels of a series key written by [`series_key`].
pub(crate) fn parse_series_key(key: &str) -> Option<SeriesInfo> {
    let parts: Vec<&str> = key.split(SEP).collect();
    let [kind, method, name, table, tag_value, write] = parts.as_slice() else {
        return None;
    };
    let kind = [
        Kind::Api,
        Kind::Query,
        Kind::Batch,
        Kind::Cache,
        Kind::Measure,
        Kind::Business,
        Kind::BusinessTag,
    ]
    .into_iter()
    .find(|k| kind_code(*k) == *kind)?;
    let method = crate::registry::METHODS
        .iter()
        .copied()
        .find(|m| m == method)
        .unwrap_or(crate::registry::METHODS[0]);
    Some(SeriesInfo {
        kind,
        method,
        name: (*name).into(),
        table: (*table).into(),
        tag_value: (*tag_value).into(),
        write: *write == "w",
        slow_ns: u64::MAX,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_keys_are_distinct_per_label_set() {
        let info = |kind, name: &str, table: &str, write| SeriesInfo {
            kind,
            method: "GET",
            name: name.into(),
            table: table.into(),
            tag_value: "".into(),
            write,
            slow_ns: 1,
        };
        let a = series_key(&info(Kind::Query, "findMany", "Staff", false));
        let b = series_key(&info(Kind::Query, "findMany", "Staff", true));
        let c = series_key(&info(Kind::Api, "findMany", "Staff", false));
        assert!(a != b && a != c && b != c);
        let back = parse_series_key(&b).expect("parses");
        assert_eq!(
            (back.kind, &*back.name, &*back.table, back.write),
            (Kind::Query, "findMany", "Staff", true)
        );
        assert_eq!(
            series_key(&info(Kind::Api, "/a\u{1f}b", "", false)),
            series_key(&info(Kind::Api, "/ab", "", false))
        );
    }
}
