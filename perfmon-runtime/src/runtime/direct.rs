//! Direct access to the retention tiers with an injected clock: aggregates written through the
//! real writers (and the Redis compactor), windows read as the query layer reads them. For the
//! tests and the fleet benchmark (`perfmon_runtime::__tiers`); not a stable API.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::hist::{Merged, PagedHist};
use crate::core::kind::{method_index, Kind, METHODS};
use crate::core::window::{Scope, Window, BUCKET_MINUTES};
use crate::pipeline::aggregator::Minute;
use crate::pipeline::registry::SeriesInfo;
use crate::read::query::SeriesFilter;
use crate::read::snapshot::Snapshot;
use crate::store::codec::series_key;
use crate::store::error::TierError;
use crate::store::flusher::view;
#[cfg(feature = "redis")]
use crate::store::prepared::FlushReport;
use crate::store::prepared::Prepared;
use crate::store::rollup::merge;

/// One process run's aggregates, as its aggregator would hand them to a flush: whole minutes
/// and whole 5-minute buckets of the series it recorded.
#[derive(Default)]
pub struct Aggregates {
    /// Minutes of buckets that may still change, by (series key, minute).
    minutes: BTreeMap<(String, u64), Minute<Merged>>,
    changed: BTreeSet<(u64, String)>,
}

/// One minute of an API route: `durations_ns` with `status`.
fn api_minute(status: u16, durations_ns: &[u64]) -> Minute<Merged> {
    let mut p = PagedHist::default();
    for &d in durations_ns {
        p.record(d);
    }
    let mut m = Minute::<Merged>::default();
    m.hist.add_paged(&p);
    m.events = durations_ns.len() as u64;
    m.count_status_n(status, durations_ns.len() as u64);
    m
}

impl Aggregates {
    /// Records API calls of `method route` in the Unix minute `minute`.
    pub fn api(
        &mut self,
        minute: u64,
        method: &str,
        route: &str,
        status: u16,
        durations_ns: &[u64],
    ) {
        let info = SeriesInfo {
            kind: Kind::Api,
            method: METHODS[method_index(method)],
            name: route.into(),
            table: "".into(),
            tag_value: "".into(),
            write: false,
            slow_ns: u64::MAX,
        };
        let key = series_key(&info);
        merge(
            self.minutes.entry((key.clone(), minute)).or_default(),
            &api_minute(status, durations_ns),
        );
        self.changed.insert((minute, key));
    }

    /// What a flush at `now_secs` carries (for any number of tiers); see [`Aggregates::take`].
    pub fn take_flush(&mut self, now_secs: u64) -> Flush {
        Flush(self.take(now_secs / 60))
    }

    /// What a flush at `now_minute` carries: the changed minutes and their whole buckets; then
    /// forgets the minutes of buckets that are over.
    fn take(&mut self, now_minute: u64) -> Prepared {
        let mut prep = Prepared::default();
        let mut buckets = BTreeSet::new();
        for (minute, key) in std::mem::take(&mut self.changed) {
            if let Some(m) = self.minutes.get(&(key.clone(), minute)) {
                prep.minutes.push((minute, key.clone(), m.clone()));
            }
            buckets.insert((minute / BUCKET_MINUTES, key));
        }
        for (bucket, key) in buckets {
            let mut whole = Minute::<Merged>::default();
            let first = bucket * BUCKET_MINUTES;
            for (_, m) in self
                .minutes
                .range((key.clone(), first)..(key.clone(), first + BUCKET_MINUTES))
            {
                merge(&mut whole, m);
            }
            prep.buckets.push((bucket, key, whole));
        }
        let keep_from = (now_minute / BUCKET_MINUTES).saturating_sub(1) * BUCKET_MINUTES;
        self.minutes.retain(|(_, m), _| *m >= keep_from);
        prep
    }
}

/// What one flush carries, taken once and written to each tier.
pub struct Flush(Prepared);

impl Flush {
    /// Aggregates (series-minutes and series-buckets) it carries.
    pub fn len(&self) -> usize {
        self.0.minutes.len() + self.0.buckets.len()
    }

    /// Adds what a later flush carries (its values replace this one's for the same keys).
    pub fn absorb(&mut self, later: Flush) {
        self.0.minutes.extend(later.0.minutes);
        self.0.buckets.extend(later.0.buckets);
    }

    /// Whether it carries nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The stored form of one route-minute of `durations_ns`: its size, and the mean time to decode
/// it and to add it to a read's merge, over `rounds` rounds.
#[derive(Clone, Copy, Debug)]
pub struct CodecFigures {
    /// Encoded bytes.
    pub bytes: usize,
    /// Non-zero histogram bins.
    pub bins: usize,
    /// Mean ns to decode.
    pub decode_ns: f64,
    /// Mean ns to add a decoded aggregate to a merge in progress.
    pub merge_ns: f64,
}

/// Measures the codec on one route-minute of `durations_ns`.
pub fn codec_figures(durations_ns: &[u64], rounds: usize) -> CodecFigures {
    let m = api_minute(200, durations_ns);
    let blob = crate::store::codec::encode(&m).unwrap_or_default();
    let rounds = rounds.max(1);
    let t = std::time::Instant::now();
    let mut decoded = Vec::with_capacity(rounds.min(1024));
    for i in 0..rounds {
        let d = crate::store::codec::decode(std::hint::black_box(&blob)).unwrap_or_default();
        if i < 1024 {
            decoded.push(d);
        }
    }
    let decode_ns = t.elapsed().as_nanos() as f64 / rounds as f64;
    let mut acc = Minute::<crate::core::hist::Accum>::default();
    let t = std::time::Instant::now();
    for i in 0..rounds {
        crate::store::rollup::accumulate(&mut acc, &decoded[i % decoded.len()]);
    }
    let merge_ns = t.elapsed().as_nanos() as f64 / rounds as f64;
    std::hint::black_box(crate::store::rollup::finish(acc));
    CodecFigures {
        bytes: blob.len(),
        bins: m.hist.raw_bins().len(),
        decode_ns,
        merge_ns,
    }
}

fn filter(path: Option<&str>) -> SeriesFilter {
    match path {
        Some(p) => SeriesFilter {
            kinds: Some(vec![Kind::Api]),
            route: Some(p.to_string()),
        },
        None => SeriesFilter::all(),
    }
}

/// The Redis tier of one instance's process run.
#[cfg(feature = "redis")]
pub struct RedisTier {
    writer: crate::store::redis::writer::Writer,
    conn: crate::store::redis::io::Conn,
    keys: crate::store::redis::layout::Keys,
    instance: String,
}

#[cfg(feature = "redis")]
impl RedisTier {
    /// Connects as `instance`, process run `run`, under `prefix`.
    pub async fn connect(
        url: &str,
        prefix: &str,
        instance: &str,
        run: &str,
    ) -> Result<RedisTier, TierError> {
        let timeout = std::time::Duration::from_secs(5);
        let conn = crate::store::redis::io::connect(url, timeout, timeout).await?;
        Ok(RedisTier {
            writer: crate::store::redis::writer::Writer::new(conn.clone(), prefix, instance, run),
            conn,
            keys: crate::store::redis::layout::Keys {
                prefix: prefix.to_string(),
            },
            instance: instance.to_string(),
        })
    }

    /// A flush at `now_secs` of what changed in `agg` (and a compaction pass, if this run holds
    /// the lease).
    pub async fn flush(
        &mut self,
        agg: &mut Aggregates,
        now_secs: u64,
    ) -> Result<FlushReport, TierError> {
        let prep = agg.take(now_secs / 60);
        self.writer.write(&prep, now_secs).await
    }

    /// Writes a flush taken with [`Aggregates::take_flush`] at `now_secs`.
    pub async fn write(&mut self, flush: &Flush, now_secs: u64) -> Result<FlushReport, TierError> {
        self.writer.write(&flush.0, now_secs).await
    }

    /// Values this writer still holds for a later flush.
    pub fn pending(&self) -> usize {
        self.writer.pending()
    }

    /// Reads `window` for `scope` at `now_secs`: every series, or one route's.
    pub async fn read(
        &self,
        window: Window,
        scope: Scope,
        path: Option<&str>,
        now_secs: u64,
    ) -> Result<(Snapshot, crate::store::redis::reader::ReadStats), TierError> {
        let filter = filter(path);
        let spec = self.spec(window, scope, &filter, now_secs);
        let (rows, stats) =
            crate::store::redis::reader::load(&mut self.conn.clone(), &spec).await?;
        Ok((
            Snapshot::from_views(window, scope, rows.into_iter().map(view).collect()),
            stats,
        ))
    }

    /// What a read of `window` for `scope` at `now_secs` names.
    fn spec<'a>(
        &'a self,
        window: Window,
        scope: Scope,
        filter: &'a SeriesFilter,
        now_secs: u64,
    ) -> crate::store::redis::reader::ReadSpec<'a> {
        crate::store::redis::reader::ReadSpec {
            keys: &self.keys,
            instance: &self.instance,
            window,
            scope,
            filter,
            now_secs,
        }
    }

    /// One route's trend over `window` for `scope` at `now_secs`, in `points` slices.
    pub async fn read_trend(
        &self,
        window: Window,
        scope: Scope,
        path: &str,
        now_secs: u64,
        points: usize,
    ) -> Result<Vec<crate::read::stats::TimelinePoint>, TierError> {
        let filter = filter(Some(path));
        let spec = self.spec(window, scope, &filter, now_secs);
        let rows =
            crate::store::redis::reader::load_trend(&mut self.conn.clone(), &spec, points).await?;
        Ok(trend(rows, path))
    }
}

/// Trend slices as points of one route.
#[cfg(any(feature = "redis", feature = "postgres"))]
fn trend(rows: Vec<(u64, Minute<Merged>)>, path: &str) -> Vec<crate::read::stats::TimelinePoint> {
    rows.into_iter()
        .filter_map(|(t, m)| {
            let info = filter(Some(path)).exact()?.into_iter().next()?;
            Some(crate::read::snapshot::trend_point(t, &view((info, m))))
        })
        .collect()
}

/// The PostgreSQL tier of one instance's process run.
#[cfg(feature = "postgres")]
pub struct PgTier {
    writer: crate::store::postgres::Writer,
    pool: sqlx::PgPool,
    prefix: String,
    instance: String,
}

#[cfg(feature = "postgres")]
impl PgTier {
    /// Connects (and migrates) as `instance`, process run `run`, under the schema `prefix`.
    pub async fn connect(
        url: &str,
        prefix: &str,
        instance: &str,
        run: &str,
    ) -> Result<PgTier, TierError> {
        let pool = crate::store::postgres::connect(url, std::time::Duration::from_secs(5)).await?;
        crate::store::postgres::migrate(&pool, prefix).await?;
        Ok(PgTier {
            writer: crate::store::postgres::Writer::new(pool.clone(), prefix, instance, run),
            pool,
            prefix: prefix.to_string(),
            instance: instance.to_string(),
        })
    }

    /// A flush at `now_secs` of what changed in `agg`; returns the rows written.
    pub async fn flush(&mut self, agg: &mut Aggregates, now_secs: u64) -> Result<usize, TierError> {
        let prep = agg.take(now_secs / 60);
        self.writer.write(&prep, now_secs).await
    }

    /// Rows this writer still holds for a later flush.
    pub fn pending(&self) -> usize {
        self.writer.pending()
    }

    /// Runs the retention job as of `now_secs`.
    pub async fn prune(
        &self,
        now_secs: u64,
    ) -> Result<crate::store::postgres::PruneReport, TierError> {
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(now_secs);
        crate::store::postgres::prune(&self.pool, &self.prefix, now).await
    }

    /// Writes a flush taken with [`Aggregates::take_flush`] at `now_secs`; returns the rows.
    pub async fn write(&mut self, flush: &Flush, now_secs: u64) -> Result<usize, TierError> {
        self.writer.write(&flush.0, now_secs).await
    }

    /// One route's trend over `window` for `scope` at `now_secs`, in `points` slices.
    pub async fn read_trend(
        &self,
        window: Window,
        scope: Scope,
        path: &str,
        now_secs: u64,
        points: usize,
    ) -> Result<Vec<crate::read::stats::TimelinePoint>, TierError> {
        let filter = filter(Some(path));
        let read = self.read_of(window, scope, &filter, now_secs);
        let rows = crate::store::postgres::load_trend(&self.pool, &read, points).await?;
        Ok(trend(rows, path))
    }

    /// What a read of `window` for `scope` at `now_secs` names.
    fn read_of<'a>(
        &'a self,
        window: Window,
        scope: Scope,
        filter: &'a SeriesFilter,
        now_secs: u64,
    ) -> crate::store::postgres::PgRead<'a> {
        crate::store::postgres::PgRead {
            prefix: &self.prefix,
            instance: &self.instance,
            window,
            scope,
            filter,
            now: now_secs,
        }
    }

    /// Reads `window` for `scope` at `now_secs`: every series, or one route's.
    pub async fn read(
        &self,
        window: Window,
        scope: Scope,
        path: Option<&str>,
        now_secs: u64,
    ) -> Result<Snapshot, TierError> {
        let filter = filter(path);
        let read = self.read_of(window, scope, &filter, now_secs);
        let rows = crate::store::postgres::load(&self.pool, &read).await?;
        Ok(Snapshot::from_views(
            window,
            scope,
            rows.into_iter().map(view).collect(),
        ))
    }
}
