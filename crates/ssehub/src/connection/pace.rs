//! Whether the server keeps up: the signal that decides between writing at once and
//! letting events gather.
//!
//! Every fan-out takes the next number of its hub's count. A write that ends
//! after two later fan-outs have begun was overtaken: events arrive faster than this process
//! writes them, and the stream it wrote lets the next ones gather for its batching
//! window (fewer, larger writes: less CPU per event, and the backlog drains). A write
//! that ends before the next fan-out leaves the stream ready to be written at once
//! again: while the server keeps up, latency stays that of one write.

use std::time::Instant;

use crate::metrics::Counter;

/// When, and after which fan-out, a frame was queued.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp {
    pub(crate) at: Instant,
    pub(crate) fanout: u64,
}

impl Stamp {
    /// A fan-out of the hub counting in `fanouts` begins now: the stamp its frames carry.
    pub(crate) fn fanout(fanouts: &Counter) -> Stamp {
        fanouts.inc();
        Stamp {
            at: Instant::now(),
            fanout: fanouts.get(),
        }
    }

    /// A frame queued now, outside any fan-out.
    pub(crate) fn now(fanouts: &Counter) -> Stamp {
        Stamp {
            at: Instant::now(),
            fanout: fanouts.get(),
        }
    }
}

/// Whether a write of frames taken after fan-out `since` was overtaken by later ones:
/// by two at least, since one fan-out beginning while the previous one's last writes go
/// out is only an overlap (at a moderate rate the tail of a large fan-out meets the next
/// event), while two mean the writes fall behind the events.
pub(crate) fn overtaken(fanouts: &Counter, since: u64) -> bool {
    fanouts.get() > since + 1
}
