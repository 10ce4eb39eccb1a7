//! The aggregator: turns raw events into per-series, per-minute histograms and counters, the slow
//! lists and the last-100 requests. It runs under one lock, held by whoever drains the rings.
//!
//! Per series it keeps the current minute in paged form and the previous minutes of the window in
//! compact form; an event is filed under the minute of its own timestamp, so the window is exact
//! whatever the order in which threads' rings are drained.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::core::clock::Anchor;
use crate::core::hist::{Buckets, CompactHist, Exemplar, Grid, Merged, PagedHist, Summary};
use crate::core::kind::{Kind, CACHE_ERROR, FAILED, OK};
use crate::core::window::{NS_PER_MINUTE, RECENT_REQUESTS, SLOW_LIST_SIZE, WINDOW_MINUTES};
use crate::pipeline::event::{Event, FLAG_NANOS, FLAG_SLOW, FLAG_TICKS, FLAG_TRACE, FLAG_VALUE};
use crate::pipeline::registry::SeriesInfo;
use crate::pipeline::tally::{Bulk, Logged};

/// Closed minutes kept past the window (see `SeriesAgg::rotate`).
pub(crate) const EVICTION_GRACE_MINUTES: u64 = 2;

/// The status classes API durations are split by when `status_class_label` is on: 1xx … 5xx
/// (codes outside 100–599 count as 5xx).
pub(crate) const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

static SPLIT_BY_CLASS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns on (or off) the per-status-class duration totals of API series, counted from the next
/// request on.
pub(crate) fn set_status_classes(on: bool) {
    SPLIT_BY_CLASS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether API durations are split by status class.
pub(crate) fn status_classes() -> bool {
    SPLIT_BY_CLASS.load(std::sync::atomic::Ordering::Relaxed)
}

/// The exemplar group of a call: an API call's status class, a query's or batch's outcome.
pub(crate) fn exemplar_group(kind: Kind, status: u16) -> usize {
    match kind {
        Kind::Api => class_of(status),
        _ => usize::from(status.min(FAILED)),
    }
}

/// The index in [`STATUS_CLASSES`] of a status code.
pub(crate) fn class_of(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100 - 1),
        _ => 4,
    }
}

/// One minute (or a merge of minutes) of one series.
#[derive(Clone, Default)]
pub(crate) struct Minute<H> {
    pub hist: H,
    /// ok/failed (queries, batches), hit/miss/error (cache).
    pub outcomes: [u64; 3],
    /// status code → count (API).
    pub statuses: Vec<(u16, u64)>,
    pub slow: u64,
    pub events: u64,
    pub value_sum: f64,
    /// Batches: the last successful and failed run in this minute (Unix ns, 0 for none).
    pub last_ok_ns: u64,
    pub last_fail_ns: u64,
    /// The trace id of the run at `last_fail_ns` (0 for none).
    pub last_fail_trace: u128,
    /// Changed since the retention tiers last took it.
    pub dirty: bool,
}

impl<H> Minute<H> {
    fn count_status(&mut self, code: u16) {
        match self.statuses.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n += 1,
            None => self.statuses.push((code, 1)),
        }
    }
}

pub(crate) struct SeriesAgg {
    pub info: Arc<SeriesInfo>,
    /// `info.kind`, kept beside the counters: spares a load through the `Arc` per event.
    kind: Kind,
    cur_minute: u64,
    cur: Minute<PagedHist>,
    closed: VecDeque<(u64, Minute<CompactHist>)>,
    /// Everything since start except the current minute, for monotonic counters (Prometheus):
    /// folded in when a minute closes, and directly for events that arrive after their minute
    /// closed. Costs nothing per event.
    totals: Minute<Buckets>,
    pub last_success_ns: Option<u64>,
    pub last_failure_ns: Option<u64>,
    /// The trace id of the run at `last_failure_ns` (0 for none).
    pub last_failure_trace: u128,
    /// Recent traced calls, one per value range: the exemplars of the Prometheus buckets.
    exemplars: crate::core::hist::Exemplars,
    /// API series with `status_class_label` on: the duration buckets since start by status
    /// class (allocated on the first request counted so).
    by_class: Option<Box<[Buckets; 5]>>,
}

/// A series' counters and duration buckets since start.
pub(crate) type Totals = Minute<Buckets>;

/// A raw request as kept in the slow and recent lists.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawRequest {
    pub series: u32,
    pub status: u16,
    pub dur_ns: u64,
    pub unix_ns: u64,
    /// The request's trace id (0 for none).
    pub trace: u128,
}

/// What a read sees of one series over a window: its labels, and its counters and merged
/// histogram (read through `Deref`). Owned, so a read can keep it after the shards are unlocked,
/// and the retention tiers produce the same type.
#[derive(Clone)]
pub(crate) struct View {
    pub info: Arc<SeriesInfo>,
    pub data: Minute<Merged>,
    pub last_success_ns: Option<u64>,
    pub last_failure_ns: Option<u64>,
    /// The trace id of the run at `last_failure_ns` (0 for none).
    pub last_failure_trace: u128,
}

impl std::ops::Deref for View {
    type Target = Minute<Merged>;

    fn deref(&self) -> &Self::Target {
        &self.data
    }
}

pub(crate) struct Aggregator {
    series: Vec<SeriesAgg>,
    slow: VecDeque<(u64, Vec<RawRequest>)>,
    recent: VecDeque<RawRequest>,
    anchor: Anchor,
    now_ns: u64,
    /// `now_ns` in minutes: spares a division per event.
    now_minute: u64,
    /// The last minute an event fell in, as `[start_ns, end_ns)`: spares a division per event.
    minute_cache: (u64, u64, u64),
    /// Events processed since start.
    pub processed: u64,
    /// Events whose timestamp was older than the window when they arrived (hand-recorded with an
    /// old timestamp): counted, not filed.
    pub late: u64,
    /// The bucket grid, taken once per batch of events ([`Aggregator::begin`]) for the class
    /// totals and exemplars, instead of a read lock per event.
    grid: crate::core::hist::Grid,
    /// The trace id carried by the event just processed ([`FLAG_TRACE`]) for the series named,
    /// applied to the next event, which the ring published together with it.
    pending_trace: (u32, u128),
}

impl Aggregator {
    pub(crate) fn new() -> Aggregator {
        let anchor = Anchor::now();
        Aggregator {
            series: Vec::new(),
            slow: VecDeque::new(),
            recent: VecDeque::with_capacity(RECENT_REQUESTS),
            anchor,
            now_ns: anchor.unix_ns(),
            now_minute: anchor.unix_ns() / NS_PER_MINUTE,
            minute_cache: (0, 0, 0),
            processed: 0,
            late: 0,
            pending_trace: (0, 0),
            grid: crate::core::hist::grid(),
        }
    }

    /// Called before a batch of events: refreshes "now" and, once a minute, the clock anchor.
    pub(crate) fn begin(&mut self) {
        let fresh = Anchor::now();
        if fresh.unix_ns().saturating_sub(self.anchor.unix_ns()) >= NS_PER_MINUTE {
            self.anchor = fresh;
        }
        self.now_ns = fresh.unix_ns();
        self.now_minute = self.now_ns / NS_PER_MINUTE;
        self.grid = crate::core::hist::grid();
    }

    #[inline]
    fn minute_of(&mut self, unix_ns: u64) -> u64 {
        let (start, end, minute) = self.minute_cache;
        if unix_ns >= start && unix_ns < end {
            return minute;
        }
        let minute = unix_ns / NS_PER_MINUTE;
        let start = minute * NS_PER_MINUTE;
        self.minute_cache = (start, start + NS_PER_MINUTE, minute);
        minute
    }

    fn series_mut(&mut self, id: u32) -> Option<&mut SeriesAgg> {
        let idx = id as usize;
        if idx >= self.series.len() {
            let reg = crate::pipeline::registry::read();
            while self.series.len() <= idx {
                let info = reg.info(self.series.len() as u32)?.clone();
                self.series.push(SeriesAgg {
                    kind: info.kind,
                    info,
                    cur_minute: 0,
                    cur: Minute::default(),
                    closed: VecDeque::new(),
                    totals: Minute::default(),
                    last_success_ns: None,
                    last_failure_ns: None,
                    last_failure_trace: 0,
                    exemplars: Default::default(),
                    by_class: None,
                });
            }
        }
        self.series.get_mut(idx)
    }

    /// Interprets an event: duration, wall-clock time and value, from ticks or nanoseconds.
    fn sample(&self, ev: &Event, trace: u128) -> Option<Sample> {
        let (dur_ns, unix_ns, value) = if ev.flags & FLAG_TICKS != 0 {
            (
                self.anchor.between_ns(ev.a, ev.b),
                self.anchor.to_unix_ns(ev.b),
                0.0,
            )
        } else if ev.flags & FLAG_NANOS != 0 {
            // Hand-recorded: a timestamp in the future is filed as now.
            (ev.a, ev.b.min(self.now_ns), 0.0)
        } else if ev.flags & FLAG_VALUE != 0 {
            (0, self.anchor.to_unix_ns(ev.b), f64::from_bits(ev.a))
        } else {
            return None;
        };
        Some(Sample {
            dur_ns,
            unix_ns,
            value,
            status: ev.status,
            slow: ev.flags & FLAG_SLOW != 0,
            trace,
        })
    }

    pub(crate) fn process(&mut self, ev: Event) {
        if ev.flags & FLAG_TRACE != 0 {
            self.pending_trace = (ev.series, u128::from(ev.a) << 64 | u128::from(ev.b));
            return;
        }
        // a carrier is rare: test before taking, which would write the 20 bytes back each time
        let trace = if self.pending_trace.1 == 0 {
            0
        } else {
            match std::mem::take(&mut self.pending_trace) {
                (series, trace) if series == ev.series => trace,
                _ => 0,
            }
        };
        self.processed += 1;
        let Some(x) = self.sample(&ev, trace) else {
            return;
        };
        let minute = self.minute_of(x.unix_ns);
        let now_minute = self.now_minute;
        if self.series_mut(ev.series).is_none() {
            return;
        }
        // the series (registered by now) beside the grid, borrowed apart
        let (s, grid) = (&mut self.series[ev.series as usize], &self.grid);
        let kind = s.kind;
        let filed = s.file(kind, minute, now_minute, &x);
        // the class totals count late events too, as the lifetime totals do
        if kind == Kind::Api && status_classes() {
            s.by_class.get_or_insert_with(Default::default)[class_of(x.status)]
                .add_value_on(x.dur_ns, grid);
        }
        if !filed {
            self.late += 1;
            return;
        }
        if trace != 0 && matches!(kind, Kind::Api | Kind::Query | Kind::Batch | Kind::Measure) {
            s.exemplars.record(
                Exemplar {
                    trace: [(trace >> 64) as u64, trace as u64],
                    value_ns: x.dur_ns,
                    unix_ns: x.unix_ns,
                    status: x.status,
                },
                exemplar_group(kind, x.status),
                grid,
            );
        }
        if kind == Kind::Api {
            let req = RawRequest {
                series: ev.series,
                status: x.status,
                dur_ns: x.dur_ns,
                unix_ns: x.unix_ns,
                trace,
            };
            self.push_recent(req);
            if x.slow {
                self.add_slow(minute, req);
            }
        }
    }

    /// Keeps the newest [`RECENT_REQUESTS`] requests, oldest first (requests arrive nearly in
    /// order, from rings and tallies drained at different times).
    fn push_recent(&mut self, req: RawRequest) {
        if self.recent.len() == RECENT_REQUESTS {
            if self.recent.front().is_some_and(|r| r.unix_ns > req.unix_ns) {
                return;
            }
            // before the insert, so the list never grows past its capacity
            self.recent.pop_front();
        }
        let pos = self
            .recent
            .iter()
            .rposition(|r| r.unix_ns <= req.unix_ns)
            .map_or(0, |p| p + 1);
        self.recent.insert(pos, req);
    }

    /// Files what a thread's tally counted since its last harvest (see `pipeline::tally`), as
    /// `b.count` events of its minute.
    pub(crate) fn add_bulk(&mut self, b: &Bulk) {
        self.processed += b.count;
        let now_minute = self.now_minute;
        if self.series_mut(b.series).is_none() {
            return;
        }
        let (s, grid) = (&mut self.series[b.series as usize], &self.grid);
        let kind = s.kind;
        if kind == Kind::Api && status_classes() {
            s.by_class.get_or_insert_with(Default::default)[class_of(b.status)]
                .add_bins_on(b.base, &b.bins, b.sum_ns, grid);
        }
        if !s.file_bulk(kind, now_minute, b, grid) {
            self.late += b.count;
        }
    }

    /// A request from a thread's recent log (see `pipeline::tally`).
    pub(crate) fn add_logged(&mut self, (series, status, end_tick, dur_ns): Logged) {
        let req = RawRequest {
            series,
            status,
            dur_ns,
            unix_ns: self.anchor.to_unix_ns(end_tick),
            trace: 0,
        };
        self.push_recent(req);
    }

    /// The Unix minute of a tick stamp and the first tick past it, for a tally's entry.
    pub(crate) fn minute_span(&self, tick: u64) -> (u64, u64) {
        self.anchor.minute_span(tick, NS_PER_MINUTE)
    }

    fn add_slow(&mut self, minute: u64, req: RawRequest) {
        let pos = match self.slow.iter().position(|(m, _)| *m == minute) {
            Some(p) => p,
            None => {
                let p = self
                    .slow
                    .iter()
                    .position(|(m, _)| *m > minute)
                    .unwrap_or(self.slow.len());
                self.slow.insert(p, (minute, Vec::new()));
                let newest = self.slow.back().map_or(minute, |(m, _)| *m);
                while self
                    .slow
                    .front()
                    .is_some_and(|(m, _)| m + WINDOW_MINUTES <= newest)
                {
                    self.slow.pop_front();
                }
                match self.slow.iter().position(|(m, _)| *m == minute) {
                    Some(p) => p,
                    None => return, // older than the window
                }
            }
        };
        let list = &mut self.slow[pos].1;
        if list.len() < SLOW_LIST_SIZE {
            list.push(req);
        } else if let Some(min) = list.iter_mut().min_by_key(|r| r.dur_ns) {
            if req.dur_ns > min.dur_ns {
                *min = req;
            }
        }
    }

    /// The labels of series `id`, if this shard has seen it.
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    pub(crate) fn info(&self, id: u32) -> Option<&Arc<SeriesInfo>> {
        self.series.get(id as usize).map(|s| &s.info)
    }

    /// The minute containing "now", for window queries.
    pub(crate) fn now_minute(&self) -> u64 {
        self.now_minute
    }

    /// Every series of the given kinds with activity in minutes `first..=last`.
    pub(crate) fn views_in(&self, kinds: &[Kind], first: u64, last: u64) -> Vec<(u32, View)> {
        let mut out = Vec::new();
        for (id, s) in self
            .series
            .iter()
            .enumerate()
            .filter(|(_, s)| kinds.contains(&s.info.kind))
        {
            let mut v = View {
                info: s.info.clone(),
                data: Minute::default(),
                last_success_ns: s.last_success_ns,
                last_failure_ns: s.last_failure_ns,
                last_failure_trace: s.last_failure_trace,
            };
            self.add_minutes(id as u32, first, last, &mut v.data);
            let keep = v.events > 0
                || (s.info.kind == Kind::Batch
                    && (v.last_success_ns.is_some() || v.last_failure_ns.is_some()));
            if keep {
                out.push((id as u32, v));
            }
        }
        out
    }

    /// Collects the (series, minute) pairs changed since the last call, and clears their flags.
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    pub(crate) fn take_dirty(&mut self, out: &mut std::collections::BTreeSet<(u32, u64)>) {
        for (id, s) in self.series.iter_mut().enumerate() {
            if s.cur.dirty {
                s.cur.dirty = false;
                out.insert((id as u32, s.cur_minute));
            }
            for (m, data) in s.closed.iter_mut().filter(|(_, d)| d.dirty) {
                data.dirty = false;
                out.insert((id as u32, *m));
            }
        }
    }

    /// Adds this shard's part of minutes `first..=last` of a series to `into`.
    pub(crate) fn add_minutes(
        &self,
        series: u32,
        first: u64,
        last: u64,
        into: &mut Minute<Merged>,
    ) {
        let Some(s) = self.series.get(series as usize) else {
            return;
        };
        if (first..=last).contains(&s.cur_minute) && s.cur.events > 0 {
            into.add_counters(&s.cur);
            into.hist.add_paged(&s.cur.hist);
        }
        for (_, data) in s.closed.iter().filter(|(m, _)| (first..=last).contains(m)) {
            into.add_counters(data);
            into.hist.add_compact(&data.hist);
        }
        into.statuses.sort_unstable();
    }

    /// Every series of the given kinds with its totals since start (current minute included).
    pub(crate) fn totals(&self, kinds: &[Kind]) -> Vec<(u32, &Arc<SeriesInfo>, Totals)> {
        let mut out = Vec::new();
        for (id, s) in self
            .series
            .iter()
            .enumerate()
            .filter(|(_, s)| kinds.contains(&s.info.kind))
        {
            let mut t = Totals::default();
            t.fold(&s.totals, |b, h| b.add(h));
            t.fold(&s.cur, |b, h| b.add_paged(h));
            t.hist.exemplars.merge(&s.exemplars);
            if t.events > 0 {
                t.statuses.sort_unstable();
                out.push((id as u32, &s.info, t));
            }
        }
        out
    }

    /// API series' duration buckets since start by status class (only those counted so).
    pub(crate) fn class_totals(&self) -> impl Iterator<Item = (u32, &[Buckets; 5])> {
        self.series
            .iter()
            .enumerate()
            .filter_map(|(id, s)| Some((id as u32, &**s.by_class.as_ref()?)))
    }

    /// Slow requests of the window, slowest first.
    pub(crate) fn slow_requests(&self, n: usize) -> Vec<(RawRequest, &SeriesInfo)> {
        let now = self.now_minute();
        let first = now.saturating_sub(WINDOW_MINUTES - 1);
        let mut all: Vec<RawRequest> = self
            .slow
            .iter()
            .filter(|(m, _)| *m >= first && *m <= now)
            .flat_map(|(_, l)| l.iter().copied())
            .collect();
        all.sort_unstable_by(|a, b| b.dur_ns.cmp(&a.dur_ns).then(b.unix_ns.cmp(&a.unix_ns)));
        all.truncate(n.min(SLOW_LIST_SIZE));
        all.into_iter()
            .filter_map(|r| Some((r, &*self.series.get(r.series as usize)?.info)))
            .collect()
    }

    /// The last requests, newest first.
    pub(crate) fn recent_requests(&self) -> Vec<(RawRequest, &SeriesInfo)> {
        self.recent
            .iter()
            .rev()
            .filter_map(|r| Some((*r, &*self.series.get(r.series as usize)?.info)))
            .collect()
    }

    /// Bytes held by histograms and lists (an estimate of the collector's memory).
    pub(crate) fn heap_bytes(&self) -> usize {
        let mut total = self.series.capacity() * std::mem::size_of::<SeriesAgg>();
        for s in &self.series {
            total += s
                .by_class
                .as_ref()
                .map_or(0, |c| c.iter().map(|b| b.heap_bytes() + 64).sum::<usize>())
                + s.exemplars.heap_bytes()
                + s.cur.hist.heap_bytes()
                + s.cur.statuses.capacity() * 16
                + s.totals.hist.heap_bytes()
                + s.totals.statuses.capacity() * 16;
            for (_, m) in &s.closed {
                total += m.hist.heap_bytes()
                    + m.statuses.capacity() * 16
                    + std::mem::size_of::<Minute<CompactHist>>();
            }
        }
        total += self
            .slow
            .iter()
            .map(|(_, l)| l.capacity() * std::mem::size_of::<RawRequest>())
            .sum::<usize>();
        total + self.recent.capacity() * std::mem::size_of::<RawRequest>()
    }
}

impl View {
    /// Adds the same series' view from another shard.
    pub(crate) fn merge(&mut self, o: View) {
        self.data.add_counters(&o.data);
        self.data.hist.add(&o.data.hist);
        self.data.statuses.sort_unstable();
        self.last_success_ns = self.last_success_ns.max(o.last_success_ns);
        if o.last_failure_ns > self.last_failure_ns {
            self.last_failure_ns = o.last_failure_ns;
            self.last_failure_trace = o.last_failure_trace;
        }
    }
}

impl Minute<Buckets> {
    /// Adds a minute's counters, and its histogram through `fold`.
    pub(crate) fn fold<H>(&mut self, m: &Minute<H>, fold: impl FnOnce(&mut Buckets, &H)) {
        self.add_counters(m);
        fold(&mut self.hist, &m.hist);
    }
}

impl<H> Minute<H> {
    /// Adds another minute's counters (not its histogram).
    pub(crate) fn add_counters<G>(&mut self, m: &Minute<G>) {
        for i in 0..3 {
            self.outcomes[i] += m.outcomes[i];
        }
        for &(code, n) in &m.statuses {
            self.count_status_n(code, n);
        }
        self.slow += m.slow;
        self.events += m.events;
        self.value_sum += m.value_sum;
        self.last_ok_ns = self.last_ok_ns.max(m.last_ok_ns);
        self.fail_at(m.last_fail_ns, m.last_fail_trace);
    }

    /// A failed run at `at_ns` with trace id `trace`: kept if it is the latest.
    pub(crate) fn fail_at(&mut self, at_ns: u64, trace: u128) {
        if at_ns > self.last_fail_ns || (at_ns == self.last_fail_ns && trace != 0) {
            self.last_fail_ns = at_ns;
            self.last_fail_trace = trace;
        }
    }

    pub(crate) fn count_status_n(&mut self, code: u16, n: u64) {
        match self.statuses.iter_mut().find(|(c, _)| *c == code) {
            Some((_, x)) => *x += n,
            None => self.statuses.push((code, n)),
        }
    }
}

/// One event, interpreted.
struct Sample {
    dur_ns: u64,
    unix_ns: u64,
    value: f64,
    status: u16,
    slow: bool,
    /// Its trace id (0 for none).
    trace: u128,
}

/// Adds a sample to a minute (or the totals), its duration through `record`.
fn apply<H>(m: &mut Minute<H>, kind: Kind, x: &Sample, record: impl FnOnce(&mut H, u64)) {
    m.events += 1;
    m.dirty = true;
    if kind == Kind::Batch {
        if x.status == OK {
            m.last_ok_ns = m.last_ok_ns.max(x.unix_ns);
        } else {
            m.fail_at(x.unix_ns, x.trace);
        }
    }
    match kind {
        Kind::Business | Kind::BusinessTag => {
            m.value_sum += x.value;
            return;
        }
        Kind::Cache => {
            m.outcomes[usize::from(x.status.min(CACHE_ERROR))] += 1;
            return;
        }
        Kind::Api => m.count_status(x.status),
        Kind::Query | Kind::Batch => m.outcomes[usize::from(x.status.min(FAILED))] += 1,
        Kind::Measure => {}
    }
    if x.slow {
        m.slow += 1;
    }
    record(&mut m.hist, x.dur_ns);
}

/// Adds a tally's bulk of events (never slow, never traced: those go through the ring) to a
/// minute (or the totals), its bins through `record`.
fn apply_bulk<H>(m: &mut Minute<H>, kind: Kind, b: &Bulk, record: impl FnOnce(&mut H)) {
    m.events += b.count;
    m.dirty = true;
    match kind {
        Kind::Api => m.count_status_n(b.status, b.count),
        Kind::Query => m.outcomes[usize::from(b.status.min(FAILED))] += b.count,
        Kind::Measure => {}
        // tallies count only the three kinds above
        _ => return,
    }
    record(&mut m.hist);
}

impl SeriesAgg {
    /// Files a sample under its own minute: the current one, a closed one still in the window
    /// (and the totals, which folded that minute already), or — too old for the window — the
    /// totals only. False for the last case (a late event).
    fn file(&mut self, kind: Kind, minute: u64, now_minute: u64, x: &Sample) -> bool {
        match kind {
            Kind::Batch if x.status == OK => {
                self.last_success_ns = self.last_success_ns.max(Some(x.unix_ns))
            }
            Kind::Batch if Some(x.unix_ns) >= self.last_failure_ns => {
                self.last_failure_ns = Some(x.unix_ns);
                self.last_failure_trace = x.trace;
            }
            _ => {}
        }
        if minute > self.cur_minute {
            self.rotate(minute);
        }
        if minute == self.cur_minute {
            apply(&mut self.cur, kind, x, |h, v| h.record(v));
            return true;
        }
        let in_window = minute + WINDOW_MINUTES > now_minute;
        if in_window {
            let pos = self.closed_pos(minute);
            apply(&mut self.closed[pos].1, kind, x, |h, v| h.record(v));
        }
        apply(&mut self.totals, kind, x, |b, v| b.add_value(v));
        in_window
    }

    /// Files a tally's bulk of events as [`file`](SeriesAgg::file) files one: under its minute,
    /// a closed one still in the window, or the totals only (false).
    fn file_bulk(&mut self, kind: Kind, now_minute: u64, b: &Bulk, grid: &Grid) -> bool {
        let summary = Summary {
            count: b.count,
            sum_ns: b.sum_ns,
            min_ns: b.min_ns,
            max_ns: b.max_ns,
        };
        if b.minute > self.cur_minute {
            self.rotate(b.minute);
        }
        if b.minute == self.cur_minute {
            apply_bulk(&mut self.cur, kind, b, |h| {
                h.add_bins(b.base, &b.bins, &summary)
            });
            return true;
        }
        let in_window = b.minute + WINDOW_MINUTES > now_minute;
        if in_window {
            let pos = self.closed_pos(b.minute);
            apply_bulk(&mut self.closed[pos].1, kind, b, |h| {
                h.add_bins(b.base, &b.bins, &summary)
            });
        }
        apply_bulk(&mut self.totals, kind, b, |t| {
            t.add_bins_on(b.base, &b.bins, b.sum_ns, grid)
        });
        in_window
    }

    /// The position of closed minute `minute`, created if it saw nothing until now.
    fn closed_pos(&mut self, minute: u64) -> usize {
        match self.closed.iter().position(|(m, _)| *m >= minute) {
            Some(p) if self.closed[p].0 == minute => p,
            Some(p) => {
                self.closed.insert(p, (minute, Minute::default()));
                p
            }
            None => {
                self.closed.push_back((minute, Minute::default()));
                self.closed.len() - 1
            }
        }
    }

    fn rotate(&mut self, minute: u64) {
        if self.cur.events > 0 {
            let hist = self.cur.hist.take_compact();
            let closed = Minute {
                hist,
                outcomes: self.cur.outcomes,
                statuses: std::mem::take(&mut self.cur.statuses),
                slow: self.cur.slow,
                events: self.cur.events,
                value_sum: self.cur.value_sum,
                last_ok_ns: self.cur.last_ok_ns,
                last_fail_ns: self.cur.last_fail_ns,
                last_fail_trace: self.cur.last_fail_trace,
                dirty: self.cur.dirty,
            };
            self.totals.fold(&closed, |b, h| b.add_compact(h));
            self.closed.push_back((self.cur_minute, closed));
            self.cur.outcomes = [0; 3];
            self.cur.slow = 0;
            self.cur.events = 0;
            self.cur.value_sum = 0.0;
            self.cur.last_ok_ns = 0;
            self.cur.last_fail_ns = 0;
            self.cur.last_fail_trace = 0;
            self.cur.dirty = false;
        }
        self.cur_minute = minute;
        // Closed minutes stay `EVICTION_GRACE_MINUTES` past the window: an event is filed into a
        // closed minute only while that minute is in the window by the wall clock, so every
        // shard still holds a minute whenever any shard can still change it (the retention
        // tiers rewrite whole minutes, merged across shards).
        while self
            .closed
            .front()
            .is_some_and(|(m, _)| m + WINDOW_MINUTES + EVICTION_GRACE_MINUTES <= minute)
        {
            self.closed.pop_front();
        }
    }
}
