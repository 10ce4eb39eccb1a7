//! The binary form of one series' minute (or 5-minute bucket) in the retention tiers: its
//! counters, its exact summary, and its histogram as an HdrHistogram V2 + DEFLATE blob, so any
//! HdrHistogram implementation can read it and merges stay exact.
//!
//! Layout (integers as LEB128 varints): `b'P'`, version `1`, events, outcomes ×3, slow,
//! value_sum (f64 LE), last_ok_ns, last_fail_ns, status count, (code, count)…, count, sum_ns,
//! min_ns, max_ns, histogram length, histogram bytes.

use std::io::Cursor;
use std::sync::atomic::Ordering;

use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

use crate::core::hist::{highest_of, index_of, lowest_of, Merged, Summary};
use crate::core::kind::{Kind, METHODS};
use crate::pipeline::aggregator::Minute;
use crate::pipeline::registry::SeriesInfo;
use crate::pipeline::state::global;

/// A stored aggregate that cannot be encoded or decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(String);

impl From<String> for CodecError {
    fn from(s: String) -> CodecError {
        CodecError(s)
    }
}

impl From<&str> for CodecError {
    fn from(s: &str) -> CodecError {
        CodecError(s.to_string())
    }
}

const MAGIC: u8 = b'P';
const VERSION: u8 = 1;

fn put(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u64(&mut self) -> Result<u64, CodecError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CodecError::from("varint too long"))
    }

    fn bytes(&mut self, n: usize) -> Result<&[u8], CodecError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or("truncated")?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }
}

/// Encodes one minute.
pub(crate) fn encode(m: &Minute<Merged>) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![MAGIC, VERSION];
    put(&mut out, m.events);
    for o in m.outcomes {
        put(&mut out, o);
    }
    put(&mut out, m.slow);
    out.extend_from_slice(&m.value_sum.to_le_bytes());
    put(&mut out, m.last_ok_ns);
    put(&mut out, m.last_fail_ns);
    put(&mut out, m.statuses.len() as u64);
    for &(code, n) in &m.statuses {
        put(&mut out, u64::from(code));
        put(&mut out, n);
    }
    let s = m.hist.summary();
    for v in [s.count, s.sum_ns, s.min_ns, s.max_ns] {
        put(&mut out, v);
    }
    if s.count == 0 {
        put(&mut out, 0);
        return Ok(out);
    }
    let high = m
        .hist
        .raw_bins()
        .last()
        .map_or(2, |&(i, _)| highest_of(i))
        .max(2);
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, high, 3)
        .map_err(|e| format!("{e:?}"))?;
    for &(i, n) in m.hist.raw_bins() {
        h.record_n(lowest_of(i), n).map_err(|e| format!("{e:?}"))?;
    }
    let mut blob = Vec::new();
    V2DeflateSerializer::new()
        .serialize(&h, &mut blob)
        .map_err(|e| format!("{e:?}"))?;
    put(&mut out, blob.len() as u64);
    out.extend_from_slice(&blob);
    Ok(out)
}

/// Decodes one minute.
pub(crate) fn decode(buf: &[u8]) -> Result<Minute<Merged>, CodecError> {
    if buf.len() < 2 || buf[0] != MAGIC {
        return Err("not a perfmon aggregate".into());
    }
    if buf[1] != VERSION {
        return Err(CodecError(format!(
            "aggregate version {} is not supported (expected {VERSION})",
            buf[1]
        )));
    }
    let mut r = Reader { buf, pos: 2 };
    let mut m = Minute::<Merged> {
        events: r.u64()?,
        ..Default::default()
    };
    for o in m.outcomes.iter_mut() {
        *o = r.u64()?;
    }
    m.slow = r.u64()?;
    m.value_sum = f64::from_le_bytes(r.bytes(8)?.try_into().map_err(|_| "truncated f64")?);
    m.last_ok_ns = r.u64()?;
    m.last_fail_ns = r.u64()?;
    let n = r.u64()?;
    for _ in 0..n {
        let code = u16::try_from(r.u64()?).map_err(|_| "status code out of range")?;
        m.statuses.push((code, r.u64()?));
    }
    let summary = Summary {
        count: r.u64()?,
        sum_ns: r.u64()?,
        min_ns: r.u64()?,
        max_ns: r.u64()?,
    };
    let len = usize::try_from(r.u64()?).map_err(|_| "length out of range")?;
    let mut bins = Vec::new();
    if len > 0 {
        let blob = r.bytes(len)?;
        let h: hdrhistogram::Histogram<u64> = Deserializer::new()
            .deserialize(&mut Cursor::new(blob))
            .map_err(|e| format!("{e:?}"))?;
        for v in h.iter_recorded() {
            bins.push((index_of(v.value_iterated_to()), v.count_at_value()));
        }
        bins.sort_unstable();
    }
    m.hist = Merged::from_raw(bins, summary);
    Ok(m)
}

/// Encodes an aggregate; a failure (never expected) is counted and logged once, not written.
pub(crate) fn encode_counted(key: &str, m: &Minute<Merged>) -> Option<Vec<u8>> {
    match encode(m) {
        Ok(blob) => Some(blob),
        Err(e) => {
            let tiers = &global().outbox.tiers;
            if tiers.encode_failures.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::error!(target: "perfmon", series = key, error = %e, "an aggregate could not be encoded and is not written (counted in recorder_stats().tier_encode_failures)");
            }
            None
        }
    }
}

/// Separates the labels of a series key.
const SEP: char = '\u{1f}';

/// The series' labels as one string, the field name part that identifies it across instances.
pub(crate) fn series_key(i: &SeriesInfo) -> String {
    let mut key = String::with_capacity(i.name.len() + i.table.len() + 24);
    for (n, part) in [
        i.kind.code(),
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
    let kind = Kind::from_code(kind)?;
    let method = METHODS
        .iter()
        .copied()
        .find(|m| m == method)
        .unwrap_or(METHODS[0]);
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
    use crate::core::hist::PagedHist;

    #[test]
    fn round_trip_keeps_every_bin_and_counter() {
        let mut p = PagedHist::default();
        let mut x = 12345u64;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            p.record(1_000 + (x >> 20) % 5_000_000_000);
        }
        let mut hist = Merged::default();
        hist.add_paged(&p);
        let m = Minute {
            hist,
            outcomes: [7, 3, 1],
            statuses: vec![(200, 15), (404, 2), (503, 1)],
            slow: 4,
            events: 20_000,
            value_sum: 12.5,
            last_ok_ns: 1_700_000_000_000_000_000,
            last_fail_ns: 0,
            dirty: true,
        };
        let blob = encode(&m).expect("encodes");
        let back = decode(&blob).expect("decodes");
        assert_eq!(back.hist.raw_bins(), m.hist.raw_bins());
        assert_eq!(back.hist.summary(), m.hist.summary());
        assert_eq!(
            (back.outcomes, back.slow, back.events),
            (m.outcomes, m.slow, m.events)
        );
        assert_eq!(
            (back.statuses, back.value_sum, back.last_ok_ns),
            (m.statuses, m.value_sum, m.last_ok_ns)
        );
        assert!(blob.len() < 20_000 * 2, "compressed: {} bytes", blob.len());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(b"").is_err());
        assert!(decode(b"Px").is_err());
        assert!(decode(&[MAGIC, VERSION, 0x80]).is_err());
        let mut blob = encode(&Minute::default()).expect("encodes");
        blob.truncate(blob.len() - 1);
        assert!(decode(&blob).is_err());
    }

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
