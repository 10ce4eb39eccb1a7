//! One recorded event, as the hot path writes it: as raw as possible; the aggregator interprets
//! it.

/// `a` = start tick, `b` = end tick.
pub(crate) const FLAG_TICKS: u16 = 1;
/// `a` = duration in ns, `b` = Unix time in ns.
pub(crate) const FLAG_NANOS: u16 = 2;
/// `a` = `f64` bits of a value, `b` = tick of the recording.
pub(crate) const FLAG_VALUE: u16 = 4;
/// The call was over its series' slow threshold.
pub(crate) const FLAG_SLOW: u16 = 8;
/// A trace id for the event that follows it in the same ring (`a` = high 64 bits, `b` = low):
/// the two are published together, so a drain never sees one without the other.
pub(crate) const FLAG_TRACE: u16 = 16;

/// One recorded event (24 bytes).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct Event {
    pub series: u32,
    pub status: u16,
    pub flags: u16,
    pub a: u64,
    pub b: u64,
}

impl Event {
    /// The event that carries `trace` for `self` (pushed just before it).
    #[inline]
    pub(crate) fn trace_of(&self, trace: u128) -> Event {
        Event {
            series: self.series,
            status: 0,
            flags: FLAG_TRACE,
            a: (trace >> 64) as u64,
            b: trace as u64,
        }
    }
}
