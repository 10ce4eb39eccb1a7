//! HDR histograms of durations in nanoseconds, 3 significant digits, any value from 1 ns to
//! `u64::MAX` (so 1 µs to 1 h and beyond).
//!
//! The bucket layout is exactly HdrHistogram's for `lowest_discernible = 1`, `sigfig = 3`
//! (2048 sub-buckets, 1024 per further power of two), so counts convert one-to-one into an
//! `hdrhistogram::Histogram` and a percentile read here equals HdrHistogram's. What differs is
//! storage: a dense HdrHistogram over 1 µs–1 h holds ~24,000 `u64` counts (~190 KB) whatever it
//! records; here the live form allocates 1 KB pages (256 `u32` counts) only where values fall, and
//! closed minutes are kept as sorted `(index, count)` pairs of the non-zero bins only.

use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

const SUB_HALF_BITS: u32 = 10; // 1024 sub-buckets per power of two past the first 2048 values
const SUB_COUNT_BITS: u32 = SUB_HALF_BITS + 1;
const PAGE_BITS: u32 = 8;
const PAGE: usize = 1 << PAGE_BITS;

/// The highest bin index: the bin of `u64::MAX`.
#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
pub(crate) const MAX_INDEX: u32 =
    ((64 - SUB_COUNT_BITS) << SUB_HALF_BITS) + ((1 << SUB_COUNT_BITS) - 1);

/// Index of the bin holding `v`.
#[inline]
pub(crate) fn index_of(v: u64) -> u32 {
    let pow2ceil = 64 - (v | ((1 << SUB_COUNT_BITS) - 1)).leading_zeros();
    let bucket = pow2ceil - SUB_COUNT_BITS;
    let sub = (v >> bucket) as u32;
    (bucket << SUB_HALF_BITS) + sub
}

/// Lowest value that falls into bin `idx`.
#[inline]
pub(crate) fn lowest_of(idx: u32) -> u64 {
    let (bucket, sub) = split(idx);
    (sub as u64) << bucket
}

/// Highest value that falls into bin `idx` (what HdrHistogram reports for a percentile).
#[inline]
pub(crate) fn highest_of(idx: u32) -> u64 {
    let (bucket, _) = split(idx);
    lowest_of(idx).saturating_add((1u64 << bucket) - 1)
}

fn split(idx: u32) -> (u32, u32) {
    let page = idx >> SUB_HALF_BITS;
    if page == 0 {
        (0, idx)
    } else {
        (
            page - 1,
            (idx & ((1 << SUB_HALF_BITS) - 1)) + (1 << SUB_HALF_BITS),
        )
    }
}

/// Summary counters that travel with every histogram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    pub count: u64,
    pub sum_ns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
}

impl Summary {
    /// Adds one value.
    #[inline(always)]
    fn add_one(&mut self, v: u64) {
        // `min_ns` of an empty summary is 0, so an empty summary takes the first value as its
        // minimum through the count check; `max_ns` needs no such check
        if v < self.min_ns || self.count == 0 {
            self.min_ns = v;
        }
        self.max_ns = self.max_ns.max(v);
        self.count += 1;
        self.sum_ns = self.sum_ns.saturating_add(v);
    }

    pub(crate) fn merge(&mut self, o: &Summary) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 || o.min_ns < self.min_ns {
            self.min_ns = o.min_ns;
        }
        self.max_ns = self.max_ns.max(o.max_ns);
        self.count += o.count;
        self.sum_ns = self.sum_ns.saturating_add(o.sum_ns);
    }
}

/// The live, paged form: one minute of one series.
#[derive(Default)]
pub(crate) struct PagedHist {
    pages: Vec<Option<Box<[u32; PAGE]>>>,
    /// Bins whose `u32` count would overflow carry the excess here (practically never used).
    spill: Vec<(u32, u64)>,
    pub summary: Summary,
}

impl PagedHist {
    #[inline]
    pub(crate) fn record(&mut self, v: u64) {
        self.summary.add_one(v);
        let idx = index_of(v);
        let p = (idx >> PAGE_BITS) as usize;
        let slot = idx as usize & (PAGE - 1);
        match self.pages.get_mut(p) {
            Some(Some(page)) if page[slot] != u32::MAX => page[slot] += 1,
            _ => self.record_slow(idx),
        }
    }

    /// Adds `bins[i]` values in bin `base + i` for every `i`, with their summary (a per-thread
    /// tally's harvest).
    pub(crate) fn add_bins(&mut self, base: u32, bins: &[u32], summary: &Summary) {
        self.summary.merge(summary);
        for (idx, n) in nonzero(base, bins) {
            self.add_count(idx, n);
        }
    }

    /// `record`'s rare cases: a page not allocated yet, or a count about to overflow.
    #[cold]
    #[inline(never)]
    fn record_slow(&mut self, idx: u32) {
        self.add_count(idx, 1);
    }

    /// Adds `n` values in bin `idx`, allocating its page if need be; what its `u32` count cannot
    /// take goes to the spill, in one step.
    fn add_count(&mut self, idx: u32, n: u64) {
        let p = (idx >> PAGE_BITS) as usize;
        if p >= self.pages.len() {
            self.pages.resize_with(p + 1, || None);
        }
        let page = self.pages[p].get_or_insert_with(|| Box::new([0; PAGE]));
        let c = &mut page[idx as usize & (PAGE - 1)];
        let room = u64::from(u32::MAX - *c);
        *c += n.min(room) as u32;
        if n > room {
            match self.spill.iter_mut().find(|(i, _)| *i == idx) {
                Some((_, s)) => *s += n - room,
                None => self.spill.push((idx, n - room)),
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.summary.count == 0
    }

    /// Visits the non-zero bins in ascending order (spill included).
    fn for_each(&self, mut f: impl FnMut(u32, u64)) {
        for (p, page) in self.pages.iter().enumerate() {
            let Some(page) = page else { continue };
            for (i, &c) in page.iter().enumerate() {
                if c != 0 {
                    let idx = ((p << PAGE_BITS) + i) as u32;
                    let extra = self
                        .spill
                        .iter()
                        .find(|(s, _)| *s == idx)
                        .map_or(0, |(_, n)| *n);
                    f(idx, c as u64 + extra);
                }
            }
        }
    }

    /// Moves the contents out into the compact form and clears this one, keeping its pages
    /// allocated for the next minute (so steady traffic does not allocate).
    pub(crate) fn take_compact(&mut self) -> CompactHist {
        let mut out = CompactHist {
            bins: Vec::new(),
            summary: self.summary,
        };
        self.for_each(|i, c| out.bins.push((i, c)));
        for page in self.pages.iter_mut().flatten() {
            page.fill(0);
        }
        self.spill.clear();
        self.summary = Summary::default();
        out
    }

    /// Bytes held by this histogram's pages.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.pages.capacity() * std::mem::size_of::<Option<Box<[u32; PAGE]>>>()
            + self.pages.iter().flatten().count() * PAGE * 4
            + self.spill.capacity() * 16
    }
}

/// The compact form of a closed minute: sorted `(bin, count)` pairs.
#[derive(Clone, Debug, Default)]
pub(crate) struct CompactHist {
    bins: Vec<(u32, u64)>,
    pub summary: Summary,
}

impl CompactHist {
    /// Adds one value (for the rare event that arrives after its minute was closed).
    pub(crate) fn record(&mut self, v: u64) {
        self.summary.add_one(v);
        let idx = index_of(v);
        match self.bins.binary_search_by_key(&idx, |(i, _)| *i) {
            Ok(pos) => self.bins[pos].1 += 1,
            Err(pos) => self.bins.insert(pos, (idx, 1)),
        }
    }

    /// Adds `bins[i]` values in bin `base + i` for every `i`, with their summary.
    pub(crate) fn add_bins(&mut self, base: u32, bins: &[u32], summary: &Summary) {
        self.summary.merge(summary);
        for (idx, n) in nonzero(base, bins) {
            match self.bins.binary_search_by_key(&idx, |(i, _)| *i) {
                Ok(pos) => self.bins[pos].1 += n,
                Err(pos) => self.bins.insert(pos, (idx, n)),
            }
        }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.bins.capacity() * std::mem::size_of::<(u32, u64)>()
    }
}

/// The non-zero counts of `bins` as (HDR index, count), `bins[0]` being bin `base`.
fn nonzero(base: u32, bins: &[u32]) -> impl Iterator<Item = (u32, u64)> + '_ {
    bins.iter()
        .enumerate()
        .filter(|(_, n)| **n != 0)
        .map(move |(i, n)| (base + i as u32, u64::from(*n)))
}

/// The default upper bounds of the cumulative buckets exposed to Prometheus, in nanoseconds
/// (100 µs to 60 s, with 3 s for the seed's p99 objective and latency warning; `+Inf` is
/// implied).
pub(crate) const DEFAULT_BOUNDS_NS: [u64; 19] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    3_000_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];

/// [`DEFAULT_BOUNDS_NS`] as durations.
pub(crate) fn default_bounds() -> Vec<Duration> {
    DEFAULT_BOUNDS_NS
        .iter()
        .map(|&ns| Duration::from_nanos(ns))
        .collect()
}

/// What a histogram measures, for its Prometheus buckets: each kind has bounds of its own
/// (`ConfigBuilder::histogram_buckets`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HistogramKind {
    /// API requests (`perfmon_http_request_duration_seconds`).
    Api,
    /// Database queries (`perfmon_db_query_duration_seconds`).
    Query,
    /// Batch runs (`perfmon_batch_duration_seconds`).
    Batch,
    /// `#[measure]`d functions (`perfmon_function_duration_seconds`).
    Function,
}

impl HistogramKind {
    /// Every kind.
    pub const ALL: [HistogramKind; 4] = [
        HistogramKind::Api,
        HistogramKind::Query,
        HistogramKind::Batch,
        HistogramKind::Function,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// The bounds of every kind, and the grid the lifetime totals count on: the union of them all,
/// so that each kind's buckets are exact sums of grid slots. `generation` changes with the
/// grid; totals counted on an older grid start again (a counter reset, to Prometheus).
struct Bounds {
    per_kind: [Arc<[u64]>; 4],
    grid: Arc<[u64]>,
    generation: u32,
}

fn bounds() -> &'static RwLock<Bounds> {
    static BOUNDS: OnceLock<RwLock<Bounds>> = OnceLock::new();
    BOUNDS.get_or_init(|| {
        let default: Arc<[u64]> = Arc::from(&DEFAULT_BOUNDS_NS[..]);
        RwLock::new(Bounds {
            per_kind: std::array::from_fn(|_| default.clone()),
            grid: default,
            generation: 1,
        })
    })
}

/// Sets the bounds of each kind (`None`: the default); a new grid when they change.
pub(crate) fn set_bounds(per_kind: [Option<&[u64]>; 4]) {
    let per_kind: [Arc<[u64]>; 4] =
        std::array::from_fn(|i| Arc::from(per_kind[i].unwrap_or(&DEFAULT_BOUNDS_NS[..])));
    let mut grid: Vec<u64> = per_kind.iter().flat_map(|b| b.iter().copied()).collect();
    grid.sort_unstable();
    grid.dedup();
    let mut b = bounds().write().unwrap_or_else(|e| e.into_inner());
    if *b.grid != *grid {
        b.grid = Arc::from(grid);
        b.generation += 1;
    }
    b.per_kind = per_kind;
}

/// The bounds of `kind`, in nanoseconds.
pub(crate) fn bounds_of(kind: HistogramKind) -> Arc<[u64]> {
    bounds().read().unwrap_or_else(|e| e.into_inner()).per_kind[kind.index()].clone()
}

/// The bucket grid and its generation, as the lifetime totals and exemplars count on it.
pub(crate) type Grid = (u32, Arc<[u64]>);

/// The slot of `v` on `grid`: the number of bounds below it (a value equal to a bound counts in
/// that bound's bucket). Up to 32 bounds (the default grid has 19) by counting every comparison
/// without a branch: the loads do not wait for each other, where a binary search's five steps
/// each wait for the previous one's load (~10 ns for every traced call filed).
#[inline]
pub(crate) fn slot_of(grid: &[u64], v: u64) -> usize {
    debug_assert!(grid.is_sorted(), "a grid is sorted (set_bounds sorts it)");
    if grid.len() <= 32 {
        grid.iter().map(|&le| usize::from(le < v)).sum()
    } else {
        grid.partition_point(|&le| le < v)
    }
}

/// The current grid (a read lock: callers adding value after value take it once).
pub(crate) fn grid() -> Grid {
    let b = bounds().read().unwrap_or_else(|e| e.into_inner());
    (b.generation, b.grid.clone())
}

/// Lifetime counts per slot of the bucket grid (non-cumulative; the last slot is above every
/// bound), folded from HDR bins: a bin counts in the first slot whose bound is at or above its
/// lowest value, so a bucket's count is exact up to the bin width (0.1%). `sum_ns` is the
/// exact sum of the values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Buckets {
    generation: u32,
    counts: Vec<u64>,
    pub sum_ns: u64,
    /// Recent traced calls, for the buckets' exemplars.
    pub exemplars: Exemplars,
}

/// One traced call, as an OpenMetrics exemplar: its trace id, value and time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Exemplar {
    /// The trace id, high and low 64 bits (never both 0 in a kept exemplar).
    pub trace: [u64; 2],
    pub value_ns: u64,
    pub unix_ns: u64,
    /// The call's status code or outcome, for the counter it also counts in.
    pub status: u16,
}

impl Exemplar {
    /// The trace id as one number.
    pub(crate) fn trace_raw(&self) -> u128 {
        u128::from(self.trace[0]) << 64 | u128::from(self.trace[1])
    }
}

/// Groups of [`Exemplars`] a caller sorts calls into (an API call's status class, a query's or
/// batch's outcome), each keeping its newest call whatever its duration.
pub(crate) const EXEMPLAR_GROUPS: usize = 5;

/// The newest traced call in each slot of the bucket grid (the union of every kind's bounds, as
/// the lifetime [`Buckets`] count), so that every bucket of every kind keeps a recent call of its
/// own range; and the newest call of each group, for the counters and histograms split by
/// status. Allocated on a series' first traced call (40 bytes a grid slot and a group).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Exemplars(Option<Box<ExemplarSlots>>);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ExemplarSlots {
    generation: u32,
    /// One per grid slot (the last above every bound).
    slots: Vec<Exemplar>,
    groups: [Exemplar; EXEMPLAR_GROUPS],
}

fn keep_newer(slot: &mut Exemplar, e: &Exemplar) {
    if e.trace != [0, 0] && (slot.trace == [0, 0] || e.unix_ns >= slot.unix_ns) {
        *slot = *e;
    }
}

impl Exemplars {
    /// Keeps `e` as its slot's of `grid` and its group's exemplar where it is the newest.
    pub(crate) fn record(&mut self, e: Exemplar, group: usize, (generation, grid): &Grid) {
        let x = self.0.get_or_insert_with(Default::default);
        if x.generation != *generation || x.slots.len() != grid.len() + 1 {
            x.generation = *generation;
            x.slots = vec![Exemplar::default(); grid.len() + 1];
        }
        let slot = slot_of(grid, e.value_ns);
        keep_newer(&mut x.slots[slot], &e);
        keep_newer(&mut x.groups[group.min(EXEMPLAR_GROUPS - 1)], &e);
    }

    /// Keeps the newer exemplar of each slot and group (slots of an older grid are dropped).
    pub(crate) fn merge(&mut self, o: &Exemplars) {
        let Some(o) = &o.0 else {
            return;
        };
        let x = self.0.get_or_insert_with(Default::default);
        if x.slots.is_empty() || o.generation > x.generation {
            x.generation = o.generation;
            x.slots = o.slots.clone();
        } else if o.generation == x.generation && o.slots.len() == x.slots.len() {
            for (a, b) in x.slots.iter_mut().zip(&o.slots) {
                keep_newer(a, b);
            }
        }
        for (a, b) in x.groups.iter_mut().zip(&o.groups) {
            keep_newer(a, b);
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Exemplar> {
        self.0
            .iter()
            .flat_map(|x| x.slots.iter().chain(x.groups.iter()))
            .filter(|e| e.trace != [0, 0])
    }

    /// The newest exemplar with a value in `(above, at_most]` that `keep` accepts (`above` = 0
    /// takes a zero duration too).
    pub(crate) fn newest_in(
        &self,
        above: u64,
        at_most: u64,
        keep: impl Fn(&Exemplar) -> bool,
    ) -> Option<Exemplar> {
        self.iter()
            .filter(|e| (e.value_ns > above || above == 0) && e.value_ns <= at_most && keep(e))
            .max_by_key(|e| e.unix_ns)
            .copied()
    }

    /// Only the exemplars of group `group`: its newest call, and the slots' calls `in_group`
    /// accepts.
    pub(crate) fn of_group(&self, group: usize, in_group: impl Fn(&Exemplar) -> bool) -> Exemplars {
        let Some(x) = &self.0 else {
            return Exemplars::default();
        };
        let g = group.min(EXEMPLAR_GROUPS - 1);
        let mut out = ExemplarSlots {
            generation: x.generation,
            slots: x
                .slots
                .iter()
                .map(|e| if in_group(e) { *e } else { Exemplar::default() })
                .collect(),
            groups: Default::default(),
        };
        out.groups[g] = x.groups[g];
        Exemplars(Some(Box::new(out)))
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |x| {
            std::mem::size_of::<ExemplarSlots>()
                + x.slots.capacity() * std::mem::size_of::<Exemplar>()
        })
    }
}

impl Buckets {
    /// The grid, with the counts sized to it (emptied if they were counted on another grid).
    fn on_grid(&mut self) -> Arc<[u64]> {
        let g = grid();
        self.size_to(&g);
        g.1
    }

    /// Sizes the counts to `grid` (emptied if they were counted on another grid).
    fn size_to(&mut self, (generation, grid): &Grid) {
        if self.generation != *generation || self.counts.len() != grid.len() + 1 {
            self.generation = *generation;
            self.counts = vec![0; grid.len() + 1];
        }
    }

    #[inline]
    fn add_bin(&mut self, grid: &[u64], idx: u32, n: u64) {
        let v = lowest_of(idx);
        let b = slot_of(grid, v);
        self.counts[b] += n;
    }

    /// Adds one value.
    pub(crate) fn add_value(&mut self, v: u64) {
        self.add_value_on(v, &grid());
    }

    /// Adds one value, counted on `grid` (the current one, taken once for many values).
    pub(crate) fn add_value_on(&mut self, v: u64, g: &Grid) {
        self.size_to(g);
        self.add_bin(&g.1, index_of(v), 1);
        self.sum_ns = self.sum_ns.saturating_add(v);
    }

    /// Adds `bins[i]` values in bin `base + i` for every `i`, summing to `sum_ns`, counted on
    /// `g`.
    pub(crate) fn add_bins_on(&mut self, base: u32, bins: &[u32], sum_ns: u64, g: &Grid) {
        self.size_to(g);
        for (idx, n) in nonzero(base, bins) {
            self.add_bin(&g.1, idx, n);
        }
        self.sum_ns = self.sum_ns.saturating_add(sum_ns);
    }

    /// Adds the bins of a closed minute.
    pub(crate) fn add_compact(&mut self, h: &CompactHist) {
        let grid = self.on_grid();
        for &(i, n) in &h.bins {
            self.add_bin(&grid, i, n);
        }
        self.sum_ns = self.sum_ns.saturating_add(h.summary.sum_ns);
    }

    /// Adds the bins of the live minute.
    pub(crate) fn add_paged(&mut self, h: &PagedHist) {
        let grid = self.on_grid();
        h.for_each(|i, n| self.add_bin(&grid, i, n));
        self.sum_ns = self.sum_ns.saturating_add(h.summary.sum_ns);
    }

    /// Adds other totals (counted on the same grid; totals of an older grid add their sum
    /// only).
    pub(crate) fn add(&mut self, o: &Buckets) {
        self.on_grid();
        self.exemplars.merge(&o.exemplars);
        if o.generation == self.generation && o.counts.len() == self.counts.len() {
            for (a, b) in self.counts.iter_mut().zip(o.counts.iter()) {
                *a += b;
            }
        }
        self.sum_ns = self.sum_ns.saturating_add(o.sum_ns);
    }

    /// The cumulative counts at each of `bounds` (each a bound of the grid), and the count of
    /// every value.
    pub(crate) fn cumulative(&self, bounds: &[u64]) -> (Vec<u64>, u64) {
        let (generation, grid) = grid();
        let total: u64 = self.counts.iter().sum();
        let mut out = Vec::with_capacity(bounds.len());
        if generation != self.generation || self.counts.len() != grid.len() + 1 {
            out.resize(bounds.len(), 0);
            return (out, total);
        }
        let (mut running, mut slot) = (0, 0);
        for &b in bounds {
            while slot < grid.len() && grid[slot] <= b {
                running += self.counts[slot];
                slot += 1;
            }
            out.push(running);
        }
        (out, total)
    }

    /// Heap bytes of the counts and exemplars.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.counts.capacity() * std::mem::size_of::<u64>() + self.exemplars.heap_bytes()
    }
}

/// A merge of any number of histograms, for answering a query: sorted non-zero bins, so its
/// size follows the data, not the value range.
#[derive(Default, Clone, Debug)]
pub struct Merged {
    bins: Vec<(u32, u64)>,
    summary: Summary,
}

impl Merged {
    fn merge_sorted(&mut self, other: &[(u32, u64)]) {
        if other.is_empty() {
            return;
        }
        if self.bins.is_empty() {
            self.bins.extend_from_slice(other);
            return;
        }
        let mut out = Vec::with_capacity(self.bins.len() + other.len());
        let (mut i, mut j) = (0, 0);
        while i < self.bins.len() && j < other.len() {
            let (a, b) = (self.bins[i], other[j]);
            match a.0.cmp(&b.0) {
                std::cmp::Ordering::Less => {
                    out.push(a);
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    out.push(b);
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    out.push((a.0, a.1 + b.1));
                    i += 1;
                    j += 1;
                }
            }
        }
        out.extend_from_slice(&self.bins[i..]);
        out.extend_from_slice(&other[j..]);
        self.bins = out;
    }

    pub(crate) fn add_paged(&mut self, h: &PagedHist) {
        let mut bins = Vec::new();
        h.for_each(|i, c| bins.push((i, c)));
        self.merge_sorted(&bins);
        self.summary.merge(&h.summary);
    }

    pub(crate) fn add_compact(&mut self, h: &CompactHist) {
        self.merge_sorted(&h.bins);
        self.summary.merge(&h.summary);
    }

    /// A merge made of raw parts (sorted bins and their summary), e.g. decoded from a tier.
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    pub(crate) fn from_raw(bins: Vec<(u32, u64)>, summary: Summary) -> Merged {
        Merged { bins, summary }
    }

    /// The sorted non-zero bins, by index.
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    pub(crate) fn raw_bins(&self) -> &[(u32, u64)] {
        &self.bins
    }

    /// The exact count, sum, minimum and maximum.
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    pub(crate) fn summary(&self) -> Summary {
        self.summary
    }

    /// Adds another merge.
    pub fn add(&mut self, o: &Merged) {
        self.merge_sorted(&o.bins);
        self.summary.merge(&o.summary);
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.summary.count
    }

    /// Values at or below `v`: every bin whose lowest value is at most `v` (exact but for a
    /// value in the same 0.1%-wide bin as `v`, counted as at most `v`).
    pub(crate) fn count_at_most(&self, v: u64) -> u64 {
        self.bins
            .iter()
            .take_while(|&&(i, _)| lowest_of(i) <= v)
            .map(|&(_, c)| c)
            .sum()
    }

    /// Exact mean (from the exact sum, not from the bins).
    pub fn mean(&self) -> Duration {
        Duration::from_nanos(
            self.summary
                .sum_ns
                .checked_div(self.summary.count)
                .unwrap_or(0),
        )
    }

    /// Exact largest value.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.summary.max_ns)
    }

    /// Exact smallest value.
    pub fn min(&self) -> Duration {
        Duration::from_nanos(self.summary.min_ns)
    }

    /// The value at quantile `q` (0.0–1.0), as HdrHistogram computes it: the highest value
    /// equivalent to the bin where the cumulative count first reaches `ceil(q * count)`; never
    /// above the exact maximum. Zero for an empty histogram.
    pub fn quantile(&self, q: f64) -> Duration {
        let total = self.summary.count;
        if total == 0 {
            return Duration::ZERO;
        }
        let q = q.clamp(0.0, 1.0);
        let target = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for &(i, c) in &self.bins {
            seen += c;
            if seen >= target {
                return Duration::from_nanos(highest_of(i).min(self.summary.max_ns));
            }
        }
        self.max()
    }

    /// Non-zero bins as `(lowest value in the bin, count)`, ascending.
    pub fn bins(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.bins.iter().map(|&(i, c)| (lowest_of(i), c))
    }
}

/// A merge of many stored aggregates in progress (a tier read): counts in pages of 256 bins,
/// allocated where values fall and indexed directly, so adding an aggregate costs its own bins,
/// not the size of the merge so far. [`Accum::finish`] turns it into a [`Merged`].
#[derive(Default)]
#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
pub(crate) struct Accum {
    pages: Vec<Option<Box<[u64; PAGE]>>>,
    summary: Summary,
}

#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
impl Accum {
    /// Adds a merge.
    pub(crate) fn add(&mut self, m: &Merged) {
        for &(i, c) in &m.bins {
            let page = (i >> PAGE_BITS) as usize;
            if page >= self.pages.len() {
                self.pages.resize_with(page + 1, || None);
            }
            let p = self.pages[page].get_or_insert_with(|| Box::new([0; PAGE]));
            p[i as usize & (PAGE - 1)] += c;
        }
        self.summary.merge(&m.summary);
    }

    /// The merge, as sorted non-zero bins.
    pub(crate) fn finish(self) -> Merged {
        let mut bins = Vec::new();
        for (n, page) in self.pages.into_iter().enumerate() {
            let Some(page) = page else { continue };
            for (j, &c) in page.iter().enumerate() {
                if c > 0 {
                    bins.push((((n << PAGE_BITS) + j) as u32, c));
                }
            }
        }
        Merged {
            bins,
            summary: self.summary,
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn slot_of_is_the_count_of_bounds_below_on_short_and_long_grids() {
        let short: Vec<u64> = DEFAULT_BOUNDS_NS.to_vec();
        let long: Vec<u64> = (1..=100).map(|i| i * 1_000).collect();
        for grid in [&short[..], &long[..], &[][..]] {
            let mut values = vec![0, 1, u64::MAX];
            for &b in grid {
                values.extend([b - 1, b, b + 1]);
            }
            for v in values {
                let below = grid.iter().filter(|&&le| le < v).count();
                assert_eq!(slot_of(grid, v), below, "{v} on a grid of {}", grid.len());
            }
        }
    }

    #[test]
    fn every_bucket_finds_the_newest_traced_call_of_its_range() {
        // the default grid (unit tests never set bounds): ..., 1 ms, 2.5 ms, 5 ms, ..., 2.5 s,
        // 3 s, 5 s, ...
        let g = grid();
        let mut x = Exemplars::default();
        assert_eq!(x.heap_bytes(), 0, "nothing allocated before a traced call");
        let at = |value_ns, unix_ns, trace, status| Exemplar {
            trace: [0, trace],
            value_ns,
            unix_ns,
            status,
        };
        x.record(at(2_000_000, 10, 1, 200), 1, &g); // 2 ms: bucket (1 ms, 2.5 ms]
        x.record(at(2_400_000, 20, 2, 200), 1, &g); // same bucket, newer
        x.record(at(1_500_000, 15, 3, 500), 4, &g); // same bucket, older, a 5xx
        x.record(at(2_600_000_000, 7, 4, 200), 1, &g); // 2.6 s: bucket (2.5 s, 3 s]
        x.record(at(2_400_000_000, 8, 5, 200), 1, &g); // 2.4 s: bucket (1 s, 2.5 s], newer
        let trace = |e: Option<Exemplar>| e.map(|e| e.trace[1]);
        let all = |_: &Exemplar| true;
        assert_eq!(trace(x.newest_in(1_000_000, 2_500_000, all)), Some(2));
        // neighbouring buckets that share a power of two keep one each
        assert_eq!(
            trace(x.newest_in(2_500_000_000, 3_000_000_000, all)),
            Some(4)
        );
        assert_eq!(
            trace(x.newest_in(1_000_000_000, 2_500_000_000, all)),
            Some(5)
        );
        assert_eq!(trace(x.newest_in(3_000_000_000, u64::MAX, all)), None);
        // the 5xx lost its bucket's slot to a newer 2xx, but its group keeps it
        assert_eq!(
            trace(x.newest_in(0, u64::MAX, |e| e.status == 500)),
            Some(3)
        );
        let only_5xx = x.of_group(4, |e| e.status >= 500);
        assert_eq!(trace(only_5xx.newest_in(0, u64::MAX, all)), Some(3));
        assert_eq!(trace(x.newest_in(0, u64::MAX, all)), Some(2));
        let mut merged = Exemplars::default();
        merged.record(at(2_200_000, 30, 6, 200), 1, &g);
        merged.merge(&x);
        assert_eq!(trace(merged.newest_in(1_000_000, 2_500_000, all)), Some(6));
        assert_eq!(
            trace(merged.newest_in(2_500_000_000, 3_000_000_000, all)),
            Some(4)
        );
        // a zero duration (a call faster than the clock's resolution) is an exemplar too
        x.record(at(0, 40, 7, 200), 1, &g);
        assert_eq!(trace(x.newest_in(0, 100_000, all)), Some(7));
        assert!(x.heap_bytes() > 0);
    }
    use super::*;

    #[test]
    fn the_highest_index_is_that_of_the_largest_value() {
        assert_eq!(MAX_INDEX, index_of(u64::MAX));
        assert_eq!(highest_of(MAX_INDEX), u64::MAX);
    }

    #[test]
    fn an_accumulation_equals_the_pairwise_merge() {
        let mut parts = Vec::new();
        let mut x = 99u64;
        for n in 0..20 {
            let mut p = PagedHist::default();
            for _ in 0..(n * 37) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                p.record(1 + (x >> 30) % 3_000_000_000);
            }
            let mut m = Merged::default();
            m.add_paged(&p);
            parts.push(m);
        }
        let mut pairwise = Merged::default();
        let mut acc = Accum::default();
        for m in &parts {
            pairwise.add(m);
            acc.add(m);
        }
        let acc = acc.finish();
        assert_eq!(acc.raw_bins(), pairwise.raw_bins());
        assert_eq!(acc.summary(), pairwise.summary());
    }

    #[test]
    fn layout_matches_hdrhistogram() {
        let h =
            hdrhistogram::Histogram::<u64>::new_with_bounds(1, u64::MAX / 2, 3).expect("histogram");
        let mut v: u64 = 0;
        while v < (1u64 << 60) {
            for probe in [v, v + 1, v.saturating_mul(3) / 2] {
                let idx = index_of(probe);
                assert_eq!(
                    lowest_of(idx),
                    h.lowest_equivalent(probe),
                    "lowest of {probe}"
                );
                assert_eq!(
                    highest_of(idx),
                    h.highest_equivalent(probe),
                    "highest of {probe}"
                );
                assert!(lowest_of(idx) <= probe && probe <= highest_of(idx));
            }
            v = if v == 0 { 1 } else { v * 2 - v / 3 };
        }
    }

    #[test]
    fn quantiles_equal_hdrhistogram_on_the_same_values() {
        let mut reference =
            hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3)
                .expect("histogram");
        let mut paged = PagedHist::default();
        // a deterministic spread over 5 decades
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = 1_000 + (x % 1_000_000) * (1 + (x >> 40) % 100);
            reference.record(v).expect("in range");
            paged.record(v);
        }
        let mut m = Merged::default();
        m.add_paged(&paged);
        assert_eq!(m.count(), reference.len());
        // HdrHistogram reports the top of the bin; we never report above the exact maximum.
        let exact_max = m.max().as_nanos() as u64;
        assert_eq!(reference.max(), reference.highest_equivalent(exact_max));
        for q in [0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0] {
            let ours = m.quantile(q).as_nanos() as u64;
            let theirs = reference.value_at_quantile(q).min(exact_max);
            assert_eq!(ours, theirs, "quantile {q}");
        }
    }

    #[test]
    fn compact_round_trip_and_late_insert() {
        let mut p = PagedHist::default();
        for v in [5u64, 5, 70_000, 3_000_000_000] {
            p.record(v);
        }
        let mut c = p.take_compact();
        assert!(p.is_empty());
        c.record(70_001);
        c.record(1);
        let mut m = Merged::default();
        m.add_compact(&c);
        assert_eq!(m.count(), 6);
        assert_eq!(m.min(), Duration::from_nanos(1));
        assert_eq!(m.quantile(1.0), Duration::from_nanos(3_000_000_000));
        assert_eq!(m.bins().map(|(_, c)| c).sum::<u64>(), 6);
    }

    #[test]
    fn a_bulk_past_u32_spills_in_one_step() {
        let mut h = PagedHist::default();
        let bins = [u32::MAX, 0, 7];
        let sum = Summary {
            count: u64::from(u32::MAX) + 7,
            sum_ns: 0,
            min_ns: 100,
            max_ns: 102,
        };
        h.add_bins(100, &bins, &sum);
        h.add_bins(100, &bins, &sum);
        let mut got = Vec::new();
        h.for_each(|i, n| got.push((i, n)));
        assert_eq!(got, vec![(100, 2 * u64::from(u32::MAX)), (102, 14)]);
        assert_eq!(h.summary.count, 2 * (u64::from(u32::MAX) + 7));
    }

    #[test]
    fn u32_bins_spill_instead_of_wrapping() {
        let mut p = PagedHist::default();
        let idx = index_of(42);
        p.pages.resize_with(1, || None);
        let mut page = Box::new([0u32; PAGE]);
        page[idx as usize] = u32::MAX - 1;
        p.pages[0] = Some(page);
        p.record(42);
        p.record(42);
        p.record(42);
        let c = p.take_compact();
        assert_eq!(c.bins, vec![(idx, u32::MAX as u64 + 2)]);
    }
}
