//! Series registry: interns label sets (route and method, table and operation, key group, ...)
//! into dense series ids, once per series, under per-dimension cardinality caps.
//!
//! A value past its dimension's cap is counted under [`OTHER`]; a total series cap backs the
//! per-dimension ones. Lookups take a read lock; only a new series takes the write lock.
//!
//! There is one registry per process ([`global`]): series ids are baked into the macro call
//! sites' statics, so every collector — the global one and any local one — shares it. It also
//! holds the recording settings `init` applies (limits, default thresholds, cache key groups).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use crate::core::kind::{Kind, METHODS, OTHER};
use crate::core::limits::Limits;

/// The labels and threshold of one series.
#[derive(Debug)]
pub(crate) struct SeriesInfo {
    pub kind: Kind,
    pub method: &'static str,
    /// Route, operation, batch name, cache key group, function name or business metric name.
    pub name: Box<str>,
    /// Table (queries) or tag key (business tags).
    pub table: Box<str>,
    /// Tag value (business tags).
    pub tag_value: Box<str>,
    pub write: bool,
    pub slow_ns: u64,
}

#[derive(Default)]
struct Business {
    id: u32,
    tags: HashMap<Box<str>, HashMap<Box<str>, u32>>,
}

/// The recording settings `init` applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    pub limits: Limits,
    /// Slow threshold of hand-recorded API requests (and of layer-recorded ones), ns.
    pub api_slow_ns: u64,
    /// Slow threshold of hand-recorded queries, ns.
    pub query_slow_ns: u64,
    /// `:`-separated segments of a hand-recorded cache key that form its group.
    pub cache_key_segments: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            limits: Limits::default(),
            api_slow_ns: 5_000_000_000,
            query_slow_ns: 100_000_000,
            cache_key_segments: 2,
        }
    }
}

/// The process' registry.
pub(crate) fn global() -> &'static RwLock<Registry> {
    static REGISTRY: OnceLock<RwLock<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| RwLock::new(Registry::new(Limits::default())))
}

/// The registry, read-locked (a poisoned lock is taken over: it is never left half-written).
pub(crate) fn read() -> std::sync::RwLockReadGuard<'static, Registry> {
    global().read().unwrap_or_else(|e| e.into_inner())
}

/// The registry's settings now.
pub(crate) fn settings() -> Settings {
    read().settings
}

/// Applies new settings (from `init`).
pub(crate) fn apply(settings: Settings) {
    global().write().unwrap_or_else(|e| e.into_inner()).settings = settings;
}

pub(crate) struct Registry {
    settings: Settings,
    infos: Vec<Arc<SeriesInfo>>,
    api: HashMap<Box<str>, [u32; METHODS.len()]>,
    query: HashMap<Box<str>, HashMap<Box<str>, [u32; 2]>>,
    batch: HashMap<Box<str>, u32>,
    cache: HashMap<Box<str>, u32>,
    measure: HashMap<Box<str>, u32>,
    business: HashMap<Box<str>, Business>,
    /// Bytes of the labels held (each series' labels and the maps' keys, estimated as twice
    /// the labels): counted in the recorder's memory figure.
    label_bytes: usize,
}

const NONE: u32 = u32::MAX;

/// Number of real (non-`OTHER`) keys in a map.
fn real_len<V>(map: &HashMap<Box<str>, V>) -> usize {
    map.len() - usize::from(map.contains_key(OTHER))
}

/// `key` itself if it is known or there is room under `cap`, else [`OTHER`].
/// What marks a label cut at [`Limits::max_label_bytes`].
pub(crate) const CUT_MARK: char = '…';

/// A label as the registry keeps it: control characters (NUL, which PostgreSQL text cannot hold;
/// newlines and escapes, which would forge log lines) replaced by U+FFFD, and at most `max`
/// bytes, cut at a character boundary and ending with `…`.
pub(crate) fn clean_label(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max && !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len().min(max));
    let room = max.saturating_sub(CUT_MARK.len_utf8());
    for c in s
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
    {
        if out.len() + c.len_utf8() > room && s.len() > max {
            out.push(CUT_MARK);
            return std::borrow::Cow::Owned(out);
        }
        out.push(c);
    }
    std::borrow::Cow::Owned(out)
}

fn capped<'a, V>(map: &HashMap<Box<str>, V>, key: &'a str, cap: usize, full: bool) -> &'a str {
    if map.contains_key(key) || (!full && real_len(map) < cap) {
        key
    } else {
        OTHER
    }
}

impl Registry {
    pub(crate) fn new(limits: Limits) -> Registry {
        Registry {
            settings: Settings {
                limits,
                ..Settings::default()
            },
            infos: Vec::new(),
            label_bytes: 0,
            api: HashMap::new(),
            query: HashMap::new(),
            batch: HashMap::new(),
            cache: HashMap::new(),
            measure: HashMap::new(),
            business: HashMap::new(),
        }
    }

    pub(crate) fn info(&self, id: u32) -> Option<&Arc<SeriesInfo>> {
        self.infos.get(id as usize)
    }

    /// Bytes held by the series' labels (estimate).
    pub(crate) fn label_bytes(&self) -> usize {
        self.label_bytes
    }

    pub(crate) fn len(&self) -> usize {
        self.infos.len()
    }

    fn full(&self) -> bool {
        self.infos.len() >= self.settings.limits.max_series
    }

    fn push(&mut self, info: SeriesInfo) -> u32 {
        let id = self.infos.len() as u32;
        self.label_bytes += 2 * (info.name.len() + info.table.len() + info.tag_value.len())
            + std::mem::size_of::<SeriesInfo>();
        self.infos.push(Arc::new(info));
        id
    }

    fn info_for(kind: Kind, name: &str, slow_ns: u64) -> SeriesInfo {
        SeriesInfo {
            kind,
            method: METHODS[0],
            name: name.into(),
            table: "".into(),
            tag_value: "".into(),
            write: false,
            slow_ns,
        }
    }

    // ---- lookups (read lock) ----
    //
    // Each lookup tries the labels as given, then — only on a miss, and only if one of them is
    // not in its clean form — their clean forms (see [`clean_label`]), so a series whose labels
    // needed cleaning is found under the read lock too, not registered again under the write
    // lock on every call.

    /// The clean forms of `labels`, if any differs from the label as given.
    fn cleaned<const N: usize>(&self, labels: [&str; N]) -> Option<[String; N]> {
        let max = self.settings.limits.max_label_bytes;
        let clean = labels.map(|l| clean_label(l, max));
        clean
            .iter()
            .any(|c| matches!(c, std::borrow::Cow::Owned(_)))
            .then(|| clean.map(std::borrow::Cow::into_owned))
    }

    pub(crate) fn find_api(&self, method: usize, route: &str) -> Option<u32> {
        let find = |route: &str| {
            self.api
                .get(route)
                .map(|m| m[method])
                .filter(|id| *id != NONE)
        };
        find(route).or_else(|| find(&self.cleaned([route])?[0]))
    }

    pub(crate) fn find_query(&self, table: &str, op: &str, write: bool) -> Option<u32> {
        let find = |table: &str, op: &str| {
            self.query
                .get(table)?
                .get(op)
                .map(|m| m[usize::from(write)])
                .filter(|id| *id != NONE)
        };
        find(table, op).or_else(|| {
            let [table, op] = self.cleaned([table, op])?;
            find(&table, &op)
        })
    }

    pub(crate) fn find_simple(&self, kind: Kind, name: &str) -> Option<u32> {
        let find = |name: &str| self.simple_map(kind).get(name).copied();
        find(name).or_else(|| find(&self.cleaned([name])?[0]))
    }

    pub(crate) fn find_business(&self, name: &str) -> Option<u32> {
        let find = |name: &str| self.business.get(name).map(|b| b.id);
        find(name).or_else(|| find(&self.cleaned([name])?[0]))
    }

    pub(crate) fn find_business_tag(&self, name: &str, key: &str, value: &str) -> Option<u32> {
        let find = |name: &str, key: &str, value: &str| {
            self.business.get(name)?.tags.get(key)?.get(value).copied()
        };
        find(name, key, value).or_else(|| {
            let [name, key, value] = self.cleaned([name, key, value])?;
            find(&name, &key, &value)
        })
    }

    fn simple_map(&self, kind: Kind) -> &HashMap<Box<str>, u32> {
        match kind {
            Kind::Batch => &self.batch,
            Kind::Cache => &self.cache,
            _ => &self.measure,
        }
    }

    // ---- registration (write lock) ----

    pub(crate) fn api(&mut self, method: usize, route: &str, slow_ns: u64) -> u32 {
        let route = &*clean_label(route, self.settings.limits.max_label_bytes);
        let full = self.full();
        let route = capped(&self.api, route, self.settings.limits.max_routes, full);
        if let Some(id) = self.find_api(method, route) {
            return id;
        }
        let mut info = Self::info_for(Kind::Api, route, slow_ns);
        info.method = METHODS[method];
        let id = self.push(info);
        self.api
            .entry(route.into())
            .or_insert([NONE; METHODS.len()])[method] = id;
        id
    }

    pub(crate) fn query(&mut self, table: &str, op: &str, write: bool, slow_ns: u64) -> u32 {
        let max = self.settings.limits.max_label_bytes;
        let (table, op) = (&*clean_label(table, max), &*clean_label(op, max));
        let full = self.full();
        let table = capped(&self.query, table, self.settings.limits.max_tables, full);
        let ops_cap = self.settings.limits.max_operations_per_table;
        let op = match self.query.get(table) {
            Some(ops) => capped(ops, op, ops_cap, full),
            None if full => OTHER,
            None => op,
        };
        if let Some(id) = self.find_query(table, op, write) {
            return id;
        }
        let mut info = Self::info_for(Kind::Query, op, slow_ns);
        info.table = table.into();
        info.write = write;
        let id = self.push(info);
        self.query
            .entry(table.into())
            .or_default()
            .entry(op.into())
            .or_insert([NONE; 2])[usize::from(write)] = id;
        id
    }

    pub(crate) fn simple(&mut self, kind: Kind, name: &str, slow_ns: u64) -> u32 {
        let name = &*clean_label(name, self.settings.limits.max_label_bytes);
        let full = self.full();
        let cap = match kind {
            Kind::Batch => self.settings.limits.max_batches,
            Kind::Cache => self.settings.limits.max_cache_keys,
            _ => self.settings.limits.max_functions,
        };
        let name = capped(self.simple_map(kind), name, cap, full);
        if let Some(id) = self.find_simple(kind, name) {
            return id;
        }
        let id = self.push(Self::info_for(kind, name, slow_ns));
        let map = match kind {
            Kind::Batch => &mut self.batch,
            Kind::Cache => &mut self.cache,
            _ => &mut self.measure,
        };
        map.insert(name.into(), id);
        id
    }

    pub(crate) fn business(&mut self, name: &str) -> u32 {
        let name = &*clean_label(name, self.settings.limits.max_label_bytes);
        let full = self.full();
        let name = capped(
            &self.business,
            name,
            self.settings.limits.max_business_metrics,
            full,
        );
        if let Some(id) = self.find_business(name) {
            return id;
        }
        let id = self.push(Self::info_for(Kind::Business, name, u64::MAX));
        self.business.insert(
            name.into(),
            Business {
                id,
                tags: HashMap::new(),
            },
        );
        id
    }

    pub(crate) fn business_tag(&mut self, name: &str, key: &str, value: &str) -> u32 {
        let max = self.settings.limits.max_label_bytes;
        let (key, value) = (&*clean_label(key, max), &*clean_label(value, max));
        let metric_id = self.business(name);
        let name: Box<str> = self.infos[metric_id as usize].name.clone();
        let full = self.full();
        let (max_keys, max_values) = (
            self.settings.limits.max_tag_keys,
            self.settings.limits.max_tag_values,
        );
        let Some(entry) = self.business.get(&*name) else {
            return metric_id;
        };
        let key = capped(&entry.tags, key, max_keys, full);
        let value = match entry.tags.get(key) {
            Some(values) => capped(values, value, max_values, full),
            None if full => OTHER,
            None => value,
        };
        if let Some(id) = self.find_business_tag(&name, key, value) {
            return id;
        }
        let mut info = Self::info_for(Kind::BusinessTag, &name, u64::MAX);
        info.table = key.into();
        info.tag_value = value.into();
        let id = self.push(info);
        if let Some(entry) = self.business.get_mut(&*name) {
            entry
                .tags
                .entry(key.into())
                .or_default()
                .insert(value.into(), id);
        }
        id
    }
}

/// Read-locked lookup in the process' registry, then write-locked registration on a miss.
/// Never panics on a poisoned lock.
pub(crate) fn lookup_or_register(
    find: impl FnOnce(&Registry) -> Option<u32>,
    register: impl FnOnce(&mut Registry, &Settings) -> u32,
) -> u32 {
    lookup_with_slow(find, register).0
}

/// [`lookup_or_register`], also returning the series' slow threshold, read under the same lock.
/// `register` sees the settings in force (default thresholds, key groups).
pub(crate) fn lookup_with_slow(
    find: impl FnOnce(&Registry) -> Option<u32>,
    register: impl FnOnce(&mut Registry, &Settings) -> u32,
) -> (u32, u64) {
    let slow = |r: &Registry, id: u32| r.info(id).map_or(u64::MAX, |i| i.slow_ns);
    {
        let r = read();
        if let Some(id) = find(&r) {
            return (id, slow(&r, id));
        }
    }
    let mut w = global().write().unwrap_or_else(|e| e.into_inner());
    let settings = w.settings;
    let id = register(&mut w, &settings);
    (id, slow(&w, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_lose_control_characters_and_long_ones_are_cut_visibly() {
        assert!(matches!(
            clean_label("/api/x", 256),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            clean_label("/a\0b\nc\x1b[31m", 256),
            "/a\u{fffd}b\u{fffd}c\u{fffd}[31m"
        );
        let long = "é".repeat(200); // 400 bytes
        let cut = clean_label(&long, 256);
        assert!(cut.len() <= 256 && cut.ends_with(CUT_MARK), "{}", cut.len());
        assert!(cut.starts_with("éé"));
        assert_eq!(
            clean_label(&"x".repeat(256), 256).len(),
            256,
            "exactly the limit is kept"
        );
    }

    #[test]
    fn a_label_is_registered_under_its_clean_form_once() {
        let mut r = Registry::new(Limits {
            max_label_bytes: 16,
            ..Limits::default()
        });
        let a = r.api(1, "/a\0", 1);
        assert_eq!(r.api(1, "/a\0", 1), a, "the same series every time");
        assert_eq!(
            r.api(1, "/a\u{fffd}", 1),
            a,
            "the clean form is the same label"
        );
        let long = r.api(1, &"/b".repeat(100), 1);
        assert_eq!(
            r.api(1, &"/b".repeat(90), 1),
            long,
            "cut to the same prefix"
        );
        assert!(r.infos[long as usize].name.len() <= 16);
    }

    fn small() -> Registry {
        Registry::new(Limits {
            max_routes: 2,
            max_tag_values: 1,
            max_series: 1000,
            ..Limits::default()
        })
    }

    #[test]
    fn routes_past_the_cap_share_other() {
        let mut r = small();
        let a = r.api(1, "/a", 1);
        let b = r.api(1, "/b", 1);
        let c = r.api(1, "/c", 1);
        let d = r.api(2, "/d", 1);
        assert_ne!(a, b);
        assert_eq!(
            &*r.info(c).map(|i| i.name.clone()).unwrap_or_default(),
            OTHER
        );
        assert_eq!(
            r.api(1, "/e", 1),
            c,
            "every further route lands on the same series"
        );
        assert_ne!(c, d, "methods stay apart under __other__");
        assert_eq!(r.api(1, "/a", 1), a, "known routes keep their series");
    }

    #[test]
    fn tag_values_are_capped_per_key() {
        let mut r = small();
        let x = r.business_tag("login", "role", "ADMIN");
        let y = r.business_tag("login", "role", "STAFF");
        assert_ne!(x, y);
        assert_eq!(
            &*r.info(y).map(|i| i.tag_value.clone()).unwrap_or_default(),
            OTHER
        );
    }

    #[test]
    fn the_total_cap_backs_the_dimensions() {
        let mut r = Registry::new(Limits {
            max_series: 3,
            ..Limits::default()
        });
        for i in 0..10 {
            r.simple(Kind::Measure, &format!("f{i}"), u64::MAX);
        }
        assert_eq!(r.len(), 4, "three series, then one __other__");
    }
}
