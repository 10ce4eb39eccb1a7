//! Where the Redis tier keeps what, and which buckets a window reads.
//!
//! Every aggregate lives in one hash per (tier, bucket, series), so a read of one series touches
//! that series' keys only; a hash per (tier, bucket) indexes the series written in it, for reads
//! of every series. See the table in [`crate::store`].

use crate::core::window::{Window, BUCKET_MINUTES};
use crate::store::rollup::FINAL_AFTER_MINUTES;

const DAY_SECS: u64 = 86_400;

/// The hash field of the merge of every instance (written by the compactor).
pub(crate) const CLUSTER: &str = "*";
/// The hash field holding the number of writes (`#v`) the cluster value merged.
pub(crate) const CLUSTER_VERSION: &str = "*v";
/// The hash field counting writes of instance values (`HINCRBY` with every write).
pub(crate) const WRITES: &str = "#v";

/// The bucket sizes of the Redis tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Tier {
    /// 1-minute aggregates, kept 24 hours.
    M1,
    /// 5-minute aggregates, kept 7 days.
    M5,
    /// Hourly aggregates, kept 7 days (the rollup that long windows read).
    H1,
}

impl Tier {
    /// Coarsest first.
    pub(crate) const COARSEST_FIRST: [Tier; 3] = [Tier::H1, Tier::M5, Tier::M1];

    pub(crate) fn code(self) -> &'static str {
        match self {
            Tier::M1 => "m1",
            Tier::M5 => "m5",
            Tier::H1 => "h1",
        }
    }

    pub(crate) fn from_code(code: &str) -> Option<Tier> {
        Tier::COARSEST_FIRST.into_iter().find(|t| t.code() == code)
    }

    /// Minutes in one bucket.
    pub(crate) fn minutes(self) -> u64 {
        match self {
            Tier::M1 => 1,
            Tier::M5 => BUCKET_MINUTES,
            Tier::H1 => 60,
        }
    }

    /// How long a bucket is kept after it ends, in seconds.
    pub(crate) fn retention_secs(self) -> u64 {
        match self {
            Tier::M1 => DAY_SECS,
            Tier::M5 | Tier::H1 => 7 * DAY_SECS,
        }
    }

    /// The Unix second at which a bucket's keys expire.
    pub(crate) fn expire_at(self, bucket: u64) -> u64 {
        (bucket + 1) * self.minutes() * 60 + self.retention_secs()
    }

    /// The Unix second from which no instance changes a bucket any more (unless it was away
    /// and flushes late): from then on the compactor may merge it.
    pub(crate) fn final_at(self, bucket: u64) -> u64 {
        ((bucket + 1) * self.minutes() + FINAL_AFTER_MINUTES) * 60
    }
}

/// A short, stable id of a series key: 16 hex digits of its 64-bit FNV-1a hash.
pub(crate) fn sid(series_key: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in series_key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The hash field of one instance's process run.
pub(crate) fn field(instance: &str, run: &str) -> String {
    format!("{instance}\u{1e}{run}")
}

/// Whether a hash field holds an instance's value (not the cluster value or a counter).
pub(crate) fn is_instance_field(f: &str) -> bool {
    f.contains('\u{1e}')
}

/// The key names under one prefix.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    pub prefix: String,
}

impl Keys {
    /// One series' aggregates of one bucket: `{prefix}:{tier}:{bucket}:{{sid}}`. The series id
    /// is the key's hash tag: in a Redis Cluster, every bucket of a series lives in one slot,
    /// so a read of one series is one pipeline to one node.
    pub(crate) fn data(&self, tier: Tier, bucket: u64, sid: &str) -> String {
        format!("{}:{}:{bucket}:{{{sid}}}", self.prefix, tier.code())
    }

    /// The series written in one bucket: `{prefix}:{tier}:{bucket}:ix`, sid → series key.
    pub(crate) fn index(&self, tier: Tier, bucket: u64) -> String {
        format!("{}:{}:{bucket}:ix", self.prefix, tier.code())
    }

    /// An instance's process runs, scored by the last minute each flushed.
    pub(crate) fn runs(&self, instance: &str) -> String {
        format!("{}:runs:{instance}", self.prefix)
    }

    /// The buckets waiting for the compactor: member `{tier}:{bucket}:{sid}`, score the Unix
    /// second from which it may run.
    pub(crate) fn compact_queue(&self) -> String {
        format!("{}:compact", self.prefix)
    }

    /// The compactor's lease (`SET NX PX`): the instance and run holding it.
    pub(crate) fn lease(&self) -> String {
        format!("{}:compact:lease", self.prefix)
    }
}

/// A member of the compaction queue.
pub(crate) fn queue_member(tier: Tier, bucket: u64, sid: &str) -> String {
    format!("{}:{bucket}:{sid}", tier.code())
}

/// The (tier, bucket, sid) of a queue member.
pub(crate) fn parse_queue_member(m: &str) -> Option<(Tier, u64, &str)> {
    let mut parts = m.splitn(3, ':');
    let tier = Tier::from_code(parts.next()?)?;
    let bucket = parts.next()?.parse().ok()?;
    Some((tier, bucket, parts.next()?))
}

/// The minutes `[first, last]` a window covers at `now_minute`: the last `n` minutes for up to
/// 24 hours; for 7 days, the 5-minute buckets of the window (as the 5-minute tier holds them),
/// from the first one's start to now.
pub(crate) fn window_minutes(window: Window, now_minute: u64) -> (u64, u64) {
    let minutes = window.duration().as_secs() / 60;
    if minutes > 1440 {
        let n = minutes / BUCKET_MINUTES;
        let last_bucket = now_minute / BUCKET_MINUTES;
        (
            (last_bucket + 1).saturating_sub(n) * BUCKET_MINUTES,
            now_minute,
        )
    } else {
        ((now_minute + 1).saturating_sub(minutes), now_minute)
    }
}

/// The buckets that cover the minutes `[first, last]` exactly: the coarsest whole bucket that
/// starts at each point, finer ones only at the ragged edges. 24 hours is at most 4 edge
/// minutes + 11 five-minute buckets + 23 hours + 11 five-minute buckets + 4 minutes.
pub(crate) fn plan(first: u64, last: u64) -> Vec<(Tier, u64)> {
    plan_within(first, last, u64::MAX)
}

/// [`plan`] with buckets of at most `max_minutes` (each dividing it): a trend's slices of
/// `max_minutes` then hold whole buckets, as many in each.
pub(crate) fn plan_within(first: u64, last: u64, max_minutes: u64) -> Vec<(Tier, u64)> {
    let mut out = Vec::new();
    let mut x = first;
    while x <= last {
        let tier = Tier::COARSEST_FIRST
            .into_iter()
            .filter(|t| {
                let m = t.minutes();
                max_minutes == u64::MAX || (m <= max_minutes && max_minutes % m == 0)
            })
            .find(|t| x % t.minutes() == 0 && x + t.minutes() - 1 <= last)
            .unwrap_or(Tier::M1);
        out.push((tier, x / tier.minutes()));
        x += tier.minutes();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minutes_of(plan: &[(Tier, u64)]) -> Vec<u64> {
        plan.iter()
            .flat_map(|&(t, b)| b * t.minutes()..(b + 1) * t.minutes())
            .collect()
    }

    #[test]
    fn a_plan_covers_the_range_exactly_with_the_coarsest_buckets() {
        for (first, last) in [
            (0, 0),
            (3, 3),
            (7, 1446),
            (60, 119),
            (61, 10_000),
            (29_999_000, 29_999_000 + 2015 * 5),
        ] {
            let p = plan(first, last);
            assert_eq!(
                minutes_of(&p),
                (first..=last).collect::<Vec<_>>(),
                "{first}..={last}"
            );
            // no bucket could be replaced by a coarser one inside the range
            for &(t, b) in &p {
                let start = b * t.minutes();
                for coarser in Tier::COARSEST_FIRST
                    .into_iter()
                    .filter(|c| c.minutes() > t.minutes())
                {
                    let fits =
                        start % coarser.minutes() == 0 && start + coarser.minutes() - 1 <= last;
                    assert!(!fits, "{t:?} {b} could be {coarser:?}");
                }
            }
        }
        // 24 hours: at most 4 + 11 + 24 + 11 + 4 values per series instead of 1,440
        for now in 28_000_000..28_000_000 + 60 {
            let (first, last) = window_minutes(Window::Hours24, now);
            assert_eq!(last - first + 1, 1440);
            assert!(plan(first, last).len() <= 54, "{now}");
        }
        // 7 days: hours and edges, at most 168 + 2 × 11 + 4
        let (first, last) = window_minutes(Window::Days7, 28_000_003);
        assert_eq!(first % 5, 0);
        assert!(plan(first, last).len() <= 194);
    }

    #[test]
    fn queue_members_and_ids_round_trip() {
        let s = sid("api\u{1f}GET\u{1f}/a\u{1f}\u{1f}\u{1f}r");
        assert_eq!(s.len(), 16);
        assert_ne!(s, sid("api\u{1f}GET\u{1f}/b\u{1f}\u{1f}\u{1f}r"));
        let m = queue_member(Tier::H1, 470_000, &s);
        assert_eq!(
            parse_queue_member(&m),
            Some((Tier::H1, 470_000, s.as_str()))
        );
        assert_eq!(parse_queue_member("x:1:y"), None);
    }
}
