//! The hand-off between `PerfmonLayer` and the `#[track_api]` handlers it polls, in safe code.
//!
//! While a layer polls its inner service it pushes a [`Frame`] on this thread's stack and pops
//! it when the poll returns (also when the poll unwinds). A `#[track_api]` call that finishes
//! meanwhile ([`hand_over`]) leaves its call site's metadata in the top frame instead of
//! recording, so the layer records the request once, with the real status. A layer nested in
//! another one fills in the outer frame's route if the outer layer did not see one
//! ([`offer_route`]) and stays quiet.
//!
//! Frames hold plain values (no pointers into futures), and the stack is only borrowed for the
//! length of a push, a pop or a write — never across a poll — so no borrow can fail.

use std::cell::{Cell, RefCell};

use crate::pipeline::meta::Meta;

/// A series id and the slow threshold to apply to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Series {
    pub id: u32,
    pub slow_ns: u64,
}

/// What a layer knows of the request it is polling.
#[derive(Clone, Copy, Default)]
pub(crate) struct Frame {
    /// The series of (method, matched route), once known.
    pub route: Option<Series>,
    /// The `#[track_api]` call site that finished inside this request, if any.
    pub handler: Option<&'static Meta>,
}

thread_local! {
    static STACK: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
    /// The stack's depth, kept beside it: outside any layer (nearly every `#[track_api]` call)
    /// [`hand_over`] reads this one word, which needs no destructor and so no registration
    /// check, where the stack needs both and a borrow (two stores) besides.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Whether a layer is polling on this thread (the caller is nested inside its request).
pub(crate) fn inside_request() -> bool {
    STACK
        .try_with(|s| s.try_borrow().is_ok_and(|s| !s.is_empty()))
        .unwrap_or(false)
}

/// Gives the enclosing request a route if it has none.
pub(crate) fn offer_route(route: Option<Series>) {
    let _ = STACK.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            if let Some(top) = s.last_mut() {
                if top.route.is_none() {
                    top.route = route;
                }
            }
        }
    });
}

/// Called by `#[track_api]` when it finishes: inside a layer's request, leave the call site's
/// metadata there (the layer records) and return true; else false (record yourself). Inline:
/// every `#[track_api]` call asks, mostly outside any layer.
#[inline(always)]
pub(crate) fn hand_over(meta: &'static Meta) -> bool {
    DEPTH.with(Cell::get) != 0 && hand_over_to_top(meta)
}

#[inline(never)]
fn hand_over_to_top(meta: &'static Meta) -> bool {
    STACK
        .try_with(|s| match s.try_borrow_mut() {
            Ok(mut s) => match s.last_mut() {
                Some(top) => {
                    top.handler = Some(meta);
                    true
                }
                None => false,
            },
            Err(_) => false,
        })
        .unwrap_or(false)
}

/// A frame on the stack for the duration of one poll; [`Entered::exit`] pops it and returns what
/// the poll left in it. Dropped without `exit` (a panic unwinding), it pops it all the same.
pub(crate) struct Entered {
    depth: Option<usize>,
}

/// Pushes `frame` for the duration of one poll.
pub(crate) fn enter(frame: Frame) -> Entered {
    let depth = STACK
        .try_with(|s| {
            let mut s = s.try_borrow_mut().ok()?;
            s.push(frame);
            DEPTH.with(|d| d.set(s.len()));
            Some(s.len())
        })
        .ok()
        .flatten();
    Entered { depth }
}

impl Entered {
    /// Pops the frame; `None` if it could not be pushed (thread-local teardown).
    pub(crate) fn exit(mut self) -> Option<Frame> {
        let depth = self.depth.take()?;
        pop_to(depth)
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        if let Some(depth) = self.depth.take() {
            pop_to(depth);
        }
    }
}

/// Pops frames down to below `depth` and returns the one at `depth`.
fn pop_to(depth: usize) -> Option<Frame> {
    STACK
        .try_with(|s| {
            let mut s = s.try_borrow_mut().ok()?;
            let frame = s.get(depth - 1).copied();
            s.truncate(depth - 1);
            DEPTH.with(|d| d.set(s.len()));
            frame
        })
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    static META: Meta = Meta::api("GET", "/x", true, 1);

    #[test]
    fn a_handler_inside_a_frame_hands_over_and_outside_does_not() {
        assert!(!hand_over(&META), "no layer: record yourself");
        let e = enter(Frame::default());
        assert!(inside_request());
        assert!(hand_over(&META));
        let f = e.exit().expect("popped");
        assert!(f.handler.is_some_and(|m| std::ptr::eq(m, &META)));
        assert!(!inside_request());
    }

    #[test]
    fn nested_layers_fill_the_outer_route_and_panics_pop_their_frame() {
        let outer = enter(Frame::default());
        offer_route(Some(Series { id: 7, slow_ns: 1 }));
        offer_route(Some(Series { id: 8, slow_ns: 1 }));
        let unwound = std::panic::catch_unwind(|| {
            let _inner = enter(Frame::default());
            panic!("handler panicked");
        });
        assert!(unwound.is_err());
        assert_eq!(
            DEPTH.with(Cell::get),
            1,
            "the unwound frame is off the depth too"
        );
        assert!(hand_over(&META), "the outer layer still takes the handler");
        let f = outer.exit().expect("outer frame is intact");
        assert_eq!(
            f.route.map(|s| s.id),
            Some(7),
            "the first route offered wins"
        );
        assert!(f.handler.is_some());
        assert!(!inside_request());
        assert_eq!(DEPTH.with(Cell::get), 0);
        assert!(!hand_over(&META), "no layer left: record yourself");
    }
}
