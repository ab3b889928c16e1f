//! Whether the server keeps up: the signal that decides between writing at once and
//! letting events gather.
//!
//! Every fan-out takes the next number of its hub's [`Clock`]. A write that ends
//! after two later fan-outs have begun was overtaken: events arrive faster than this process
//! writes them, and the stream it wrote lets the next ones gather for its batching
//! window (fewer, larger writes: less CPU per event, and the backlog drains). A write
//! that ends before the next fan-out leaves the stream ready to be written at once
//! again: while the server keeps up, latency stays that of one write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The hub's count of fan-outs begun: the clock pacing reads. Relaxed: a stale read only
/// makes one write wait (or not) one window more.
#[derive(Debug, Default)]
pub(crate) struct Clock(AtomicU64);

impl Clock {
    /// A fan-out begins: the next number.
    fn tick(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The number of the latest fan-out begun.
    pub(crate) fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// When, and after which fan-out, a frame was queued.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp {
    pub(crate) at: Instant,
    pub(crate) fanout: u64,
}

impl Stamp {
    /// A fan-out of the hub whose clock is `clock` begins now: the stamp its frames carry.
    pub(crate) fn fanout(clock: &Clock) -> Stamp {
        Stamp {
            fanout: clock.tick(),
            at: Instant::now(),
        }
    }

    /// A frame queued now, outside any fan-out.
    pub(crate) fn now(clock: &Clock) -> Stamp {
        Stamp {
            at: Instant::now(),
            fanout: clock.now(),
        }
    }
}

/// Whether a write of frames taken after fan-out `since` was overtaken by later ones:
/// by two at least, since one fan-out beginning while the previous one's last writes go
/// out is only an overlap (at a moderate rate the tail of a large fan-out meets the next
/// event), while two mean the writes fall behind the events.
pub(crate) fn overtaken(clock: &Clock, since: u64) -> bool {
    clock.now() > since + 1
}
