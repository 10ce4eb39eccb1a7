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
