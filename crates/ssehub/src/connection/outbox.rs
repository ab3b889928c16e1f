//! A connection's outbox: the bounded queue of encoded frames between its senders and
//! its one writer, and the flags that decide who writes next.
//!
//! ## Invariants (all under the connection's outbox mutex)
//! - `bytes` is the sum of the queued frames' lengths plus `raw`'s; `in_flight` what
//!   hyper took (`writer.rs`) and has not let go of yet. Their sum is what the bound
//!   counts. It never passes `outbox_limit`, unless a single frame larger than the limit
//!   was taken into an empty queue (so a large message can always be sent).
//! - hyper holds at most one piece of a stream at a time ([`HANDOVER`] bytes, or one
//!   larger frame): the next waits in the queue until hyper drops the last.
//! - Frames leave the queue in the order they entered it.
//! - At most one of {the stream's task, one claim} writes: `writing` is set while a
//!   claim is out, and the task neither writes nor ends the stream meanwhile; `parked`
//!   says the task waits for frames, the only time a claim may be won.
//! - While a claim is out the outbox keeps its `sink`, even aborted: a claim that
//!   writes to the socket's descriptor ([`SocketSink`]) holds no reference to the
//!   transport, and the descriptor stays open only while someone does. The release
//!   drops the sink of an aborted stream.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::handle::ConnectionConfig;

/// What happens when a frame would overflow a connection's outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SlowConsumerPolicy {
    /// Close the connection. The client's `EventSource` reconnects and can resume from
    /// its `Last-Event-ID`. This is the default: a stalled client costs nothing more.
    #[default]
    Close,
    /// Drop the frame for this connection only and keep it open. The client silently
    /// misses events; use it for streams where only the latest state matters.
    DropEvent,
}

/// The most bytes one write takes from a queue (or one larger frame); the rest stays
/// queued, and counts against the outbox's bound, for the next write.
pub(crate) const MAX_WRITE: usize = 64 * 1024;

/// The most bytes joined into one piece for hyper (a larger frame goes alone, shared, not
/// copied). An HTTP/2 stream that gets no flow-control window keeps the piece it took
/// until it is reset: 2,000 such streams held two 64 KiB copies each, 250 MiB outside
/// every outbox. 16 KiB is what one TLS record and one default HTTP/2 DATA frame carry,
/// so a larger join saved no record and no frame.
pub(crate) const HANDOVER: usize = 16 * 1024;

// Laid out for the fan-out, which touches thousands of these per event: after the
// connection's reference count, its flag and the lock (`handle.rs`), what `push` reads
// and writes fills two cache lines; what a write rarely needs comes after.
#[repr(C)]
pub(super) struct Outbox {
    pub(super) state: OutboxState,
    /// Set on every enqueue, cleared by the keep-alive sweep: traffic is the keep-alive.
    pub(super) active: bool,
    pub(super) warned: bool,
    /// The stream's task waits for frames: nothing queued, nothing being written.
    pub(super) parked: bool,
    /// A sender writes to the sink: the task neither writes nor ends the stream.
    pub(super) writing: bool,
    /// The stream resumes from a cursor and its replay is not done yet: events of rooms
    /// with history are left to the replay (which will carry them, in order).
    pub(super) resuming: bool,
    /// A wide fan-out queued frames since the task's last write: the next takes its
    /// turn (`pace.rs`).
    pub(super) wide: bool,
    /// What a frame that would pass `limit` meets.
    pub(super) policy: SlowConsumerPolicy,
    pub(super) bytes: usize,
    /// Bytes hyper took and still holds (in its buffers or h2's, waiting for the socket
    /// or for the peer's flow-control window): counted against the bound until dropped.
    pub(super) in_flight: usize,
    /// The bound on `bytes + in_flight`.
    pub(super) limit: usize,
    pub(super) queue: VecDeque<Bytes>,
    /// The transport's descriptor, when a claim may write to it without the transport
    /// ([`DirectSink::socket`]).
    pub(super) socket: Option<SocketSink>,
    /// No write before this (batching); `None`: at once.
    pub(super) next_write: Option<Instant>,
    /// What a partial direct write left, framed: it goes out first, verbatim. Only set
    /// while the task is awake (a claim's release wakes it), so never while `parked`.
    pub(super) raw: Option<Bytes>,
    /// The transport, when it can be written directly ([`DirectSink`]).
    pub(super) sink: Option<Arc<dyn DirectSink>>,
    pub(super) waker: Option<Waker>,
    /// A timed publication's frame waits in the queue (rarely set).
    pub(super) probe: Option<Probe>,
}

/// A frame of a timed publication (see `metrics/histogram.rs`): when the publication's
/// fan-out began, and the frame's place in the queue, counted from the front (1: next).
#[derive(Debug, Clone, Copy)]
pub(super) struct Probe {
    pub(super) at: Instant,
    pub(super) position: usize,
}

#[derive(Default, PartialEq, Eq, Clone, Copy, Debug)]
pub(super) enum OutboxState {
    #[default]
    Open,
    /// Closed by the application: flush what is queued, then end the stream.
    Draining,
    /// Closed by policy or by the transport: drop what is queued, end at once.
    Aborted,
}

/// What a frame is, for the outbox's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Any frame.
    Plain,
    /// An event recorded in a room's history, delivered live to that room's members.
    Recorded,
    /// A keep-alive ping: skipped for a stream that had traffic since the last sweep.
    KeepAlive,
}

/// Whether a frame may enter the queue ([`Outbox::admit`]).
pub(super) enum Admit {
    /// Room for it.
    Yes,
    /// The stream has ended.
    Closed,
    /// A keep-alive ping for a stream that had traffic since the last sweep.
    Busy,
    /// Over the bound; `first` is true the first time this outbox overflows.
    Full { first: bool },
    /// An event of a room with history for a stream whose replay will carry it.
    Deferred,
}

impl Outbox {
    /// An empty outbox under `config`'s bound, policy and batching.
    pub(super) fn new(config: &ConnectionConfig) -> Outbox {
        Outbox {
            state: OutboxState::Open,
            active: false,
            warned: false,
            parked: false,
            writing: false,
            resuming: config.resuming,
            wide: false,
            policy: config.policy,
            bytes: 0,
            in_flight: 0,
            limit: config.outbox_limit,
            queue: VecDeque::new(),
            socket: None,
            next_write: None,
            raw: None,
            sink: None,
            waker: None,
            probe: None,
        }
    }

    /// Whether `len` more bytes may be queued under the bound. A keep-alive ping is
    /// refused as `Busy` when frames were queued since the last sweep, and the slate is
    /// wiped either way: a ping is not traffic. A recorded event waits for the replay of
    /// a resuming stream.
    pub(super) fn admit(&mut self, len: usize, kind: Kind) -> Admit {
        if self.state != OutboxState::Open {
            return Admit::Closed;
        }
        let keep_alive = kind == Kind::KeepAlive;
        if kind == Kind::Recorded && self.resuming {
            return Admit::Deferred;
        }
        if keep_alive && std::mem::take(&mut self.active) {
            return Admit::Busy;
        }
        if self.bytes + self.in_flight + len > self.limit && !self.queue.is_empty() {
            let first = !self.warned;
            self.warned = true;
            return Admit::Full { first };
        }
        Admit::Yes
    }

    /// Queue an admitted frame.
    pub(super) fn queue(&mut self, frame: Bytes, kind: Kind) {
        self.active |= kind != Kind::KeepAlive;
        self.bytes += frame.len();
        self.queue.push_back(frame);
    }

    /// If the frame just queued is timed (its publication began at `timed`), time it to
    /// the moment a writer takes it (one probe at a time: an older one still waiting is
    /// kept).
    pub(super) fn probe_last_if(&mut self, timed: Option<Instant>) {
        if let (Some(at), None) = (timed, &self.probe) {
            self.probe = Some(Probe {
                at,
                position: self.queue.len(),
            });
        }
    }

    /// Put `frame`, which a direct write took and did not write, back first in the
    /// queue (a probe waiting behind it moves one place back).
    pub(super) fn put_back(&mut self, frame: Bytes) {
        self.bytes += frame.len();
        self.queue.push_front(frame);
        if let Some(probe) = &mut self.probe {
            probe.position += 1;
        }
    }

    /// Closed by policy or by the transport: drop what is queued, end at once.
    pub(super) fn abort(&mut self) {
        self.state = OutboxState::Aborted;
        self.queue = VecDeque::new();
        self.raw = None;
        self.bytes = 0;
        // `in_flight` stays: hyper still holds those bytes, and gives them back when it
        // drops them (the reset of an HTTP/2 stream, or the end of the connection).
        self.probe = None;
        // A claim out may be writing to the descriptor: its release drops the sink.
        if !self.writing {
            self.drop_sink();
        }
    }

    /// Nobody writes directly any more: let go of the transport.
    pub(super) fn drop_sink(&mut self) {
        self.sink = None;
        self.socket = None;
    }

    /// Whether the sender that queues a frame at `at` may write the queue out itself:
    /// the task is idle, and the stream has not written within the batching window (a
    /// busy stream's frames are left to gather).
    pub(super) fn claimable(&self, at: Instant) -> Option<Via> {
        let busy = self.next_write.is_some_and(|t| at < t);
        // A parked stream has nothing left over (`raw`): not read, its cache line is not
        // touched.
        if busy || !self.parked || self.writing {
            return None;
        }
        // The descriptor when there is one: the transport's memory is not touched (at
        // light load its cache line was a miss at the claim, and again at the write).
        match self.socket {
            Some(socket) => Some(Via::Socket(socket)),
            None => self.sink.clone().map(Via::Sink),
        }
    }

    /// How the stream ends, if it has: the task takes the sink back (nobody else writes
    /// any more) and either finishes the stream or, aborted, just drops it.
    pub(super) fn end(&mut self) -> Option<End> {
        let end = match self.state {
            OutboxState::Open => return None,
            OutboxState::Draining => End::Finish,
            OutboxState::Aborted => End::Abort,
        };
        self.drop_sink();
        Some(end)
    }

    /// A write (the task's or a direct one) ended now; `gather` is how long the next
    /// waits for events to gather, if it does (see `pace.rs`), unless frames are already
    /// waiting (the write was as large as a batch may be):
    /// waiting would only cap the stream's throughput. While the server keeps up, the
    /// next event is written at once (and the clock is not even read).
    pub(super) fn wrote(&mut self, gather: Option<Duration>) {
        self.next_write = gather
            .filter(|_| self.queue.is_empty())
            .map(|w| Instant::now() + w);
    }

    /// The task's waker, to wake it: from now on it is busy, not parked.
    pub(super) fn wake(&mut self) -> Option<Waker> {
        self.parked = false;
        self.waker.take()
    }

    /// Keep `waker` to be woken when there is something to write.
    pub(super) fn park_waker(&mut self, waker: &Waker) {
        match &self.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => self.waker = Some(waker.clone()),
        }
    }

    /// Move queued frames to `pieces`, up to [`MAX_WRITE`] bytes in all (or one larger
    /// frame). Returns when the timed frame among them, if one is, was published.
    #[must_use = "a timed frame's latency is to be recorded"]
    pub(super) fn take_into(&mut self, pieces: &mut Vec<Bytes>) -> Option<Instant> {
        self.take_up_to(pieces, MAX_WRITE)
    }

    /// [`Outbox::take_into`], up to `max` bytes in all (or one larger frame).
    #[must_use = "a timed frame's latency is to be recorded"]
    pub(super) fn take_up_to(&mut self, pieces: &mut Vec<Bytes>, max: usize) -> Option<Instant> {
        let before = self.queue.len();
        let mut total: usize = pieces.iter().map(Bytes::len).sum();
        while let Some(f) = self.queue.front() {
            if !pieces.is_empty() && total + f.len() > max {
                break;
            }
            total += f.len();
            self.bytes -= f.len();
            pieces.extend(self.queue.pop_front());
        }
        // A burst grew the queue; an idle stream should not keep its capacity for hours.
        if self.queue.is_empty() && self.queue.capacity() > 64 {
            self.queue = VecDeque::new();
        }
        let probe = self.probe.as_mut()?;
        let taken = before - self.queue.len();
        if probe.position > taken {
            probe.position -= taken;
            return None;
        }
        self.probe.take().map(|p| p.at)
    }
}

/// A transport that takes frames at once, without waiting. The bare-socket path lends
/// its socket to the connection; while the stream's task waits for frames, the sender
/// that queues a frame writes the queue out itself (a claim) instead of waking the task:
/// one wake-up and one scheduler hop less per event.
pub(crate) trait DirectSink: Send + Sync {
    /// Write `frames` now, framed for the wire as one piece. `Ok(None)`: all of it went
    /// out. `Ok(Some(rest))`: the socket took part of it or none; `rest` is what is
    /// left, framed, to be written next and verbatim. `Err`: the transport failed.
    fn try_send(&self, frames: &[Bytes]) -> std::io::Result<Option<Bytes>>;
    /// The same write on the transport's descriptor, without the transport, when its
    /// bytes need nothing else (plain TCP).
    fn socket(&self) -> Option<SocketSink> {
        None
    }
}

/// A socket's descriptor, as a transport gives it ([`DirectSink::socket`]).
#[cfg(unix)]
pub(crate) type Descriptor = std::os::fd::RawFd;
/// A socket's descriptor (never given, here).
#[cfg(not(unix))]
pub(crate) type Descriptor = i32;

/// A plain socket a claim writes to by its descriptor: what [`DirectSink::try_send`]
/// does, without the transport object (no reference count to take, no memory of the
/// transport's to touch). Valid while the outbox holds the sink it came from.
#[derive(Clone, Copy)]
pub(crate) struct SocketSink {
    pub(crate) fd: Descriptor,
    /// [`DirectSink::try_send`] on `fd`.
    pub(crate) send: fn(Descriptor, &[Bytes]) -> std::io::Result<Option<Bytes>>,
}

/// What a claim writes through ([`Outbox::claimable`]).
pub(super) enum Via {
    /// The socket's descriptor: the outbox keeps the transport open meanwhile.
    Socket(SocketSink),
    /// The transport itself (a TLS session).
    Sink(Arc<dyn DirectSink>),
}

impl Via {
    pub(super) fn try_send(&self, frames: &[Bytes]) -> std::io::Result<Option<Bytes>> {
        match self {
            Via::Socket(s) => (s.send)(s.fd, frames),
            Via::Sink(sink) => sink.try_send(frames),
        }
    }
}

/// How a stream ended ([`Outbox::end`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// Closed by the application: write the stream's end.
    Finish,
    /// Aborted: drop the transport without another byte.
    Abort,
}
