//! The reading side of a connection's outbox: what its one writer, the stream's task,
//! takes from it.
//!
//! Two writers exist, one per stream: hyper polling the response body
//! ([`Connection::poll_outbox`], through `SseBody`), or the bare-socket task of
//! `transport/chunked.rs` ([`Connection::poll_wire`]), which also lends its socket to
//! senders for direct writes (`send.rs`) and batches busy streams.

use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Instant;

use bytes::Bytes;

use super::handle::Connection;
use super::outbox::{DirectSink, End, OutboxState, HANDOVER};
use super::pace::Clock;
use crate::sync::lock;

/// What a transport's task writes next ([`Connection::poll_wire`]).
#[derive(Debug)]
pub(crate) enum Wire {
    /// Bytes already framed for the wire (the rest of a partial direct write).
    Raw(Bytes),
    /// Frames were moved to the caller's `pieces`; the batching window ends at the
    /// instant given (`None`: write at once).
    Frames(Option<Instant>),
    /// The stream is over: write its end.
    End,
    /// The stream was aborted (by policy or because the client left): drop the
    /// transport without another byte (a direct write may have been cut mid-chunk).
    Abort,
}

impl From<End> for Wire {
    fn from(end: End) -> Wire {
        match end {
            End::Finish => Wire::End,
            End::Abort => Wire::Abort,
        }
    }
}

impl Connection {
    /// For hyper's path: take what the body should write next. `Ok(Some)` bytes (what
    /// is queued, up to [`HANDOVER`] joined, or one larger frame as it is), `Ok(None)`
    /// end of stream, `Err(())` nothing yet (the waker is stored).
    ///
    /// The bytes count against the outbox bound until hyper drops them ([`Handed`]), and
    /// nothing more is handed over meanwhile: a reader that never grants HTTP/2
    /// flow-control window leaves hyper holding one piece while its queue fills, and
    /// meets the slow-consumer policy as a reader that stops reading a socket does.
    pub(crate) fn poll_outbox(&self, waker: &Waker) -> Result<Option<Bytes>, ()> {
        let mut out = lock(&self.inner.outbox);
        if out.queue.is_empty() {
            match out.state {
                OutboxState::Open => {}
                OutboxState::Draining => return Ok(None),
                // The server's abort handle ends the transport (HTTP/1.1) or the stream's
                // task (HTTP/2: a reset). Ending the body instead would have hyper finish
                // the response, behind data the peer may never take: the stream would
                // stay open, and what h2 buffered for it with it.
                OutboxState::Aborted if self.inner.abort.is_some() => {}
                OutboxState::Aborted => return Ok(None),
            }
        } else if out.in_flight == 0 {
            let mut pieces = Vec::new();
            let timed = out.take_up_to(&mut pieces, HANDOVER);
            let len: usize = pieces.iter().map(Bytes::len).sum();
            out.in_flight += len;
            drop(out);
            self.record_latency(timed);
            let bytes = match <[Bytes; 1]>::try_from(pieces) {
                Ok([one]) => one,
                Err(pieces) => Bytes::from(pieces.concat()),
            };
            return Ok(Some(Bytes::from_owner(Handed {
                bytes,
                conn: self.clone(),
            })));
        }
        // Nothing queued, or hyper still holds the last piece: its drop wakes us.
        out.park_waker(waker);
        Err(())
    }

    /// The transport is gone (the body was dropped): close without flushing.
    pub(crate) fn transport_closed(&self) {
        self.close_with(OutboxState::Aborted);
    }

    /// Lend the transport to senders: from now on, while the stream's task waits for
    /// frames ([`Connection::poll_wire`]), a sender writes its frame directly.
    pub(crate) fn attach_sink(&self, sink: Arc<dyn DirectSink>) {
        let mut out = lock(&self.inner.outbox);
        if out.state != OutboxState::Aborted {
            out.socket = sink.socket();
            out.sink = Some(sink);
        }
    }

    /// For a transport's task that writes through a [`DirectSink`]: what to write next.
    /// Queued frames are moved to `pieces` (at most `MAX_WRITE` bytes, or one larger
    /// frame). Pending (waker stored, task parked) while there is nothing, or while a
    /// sender writes directly. [`Wire::End`] and [`Wire::Abort`] take the sink back:
    /// nobody else writes any more.
    pub(crate) fn poll_wire(&self, waker: &Waker, pieces: &mut Vec<Bytes>) -> Poll<Wire> {
        let mut out = lock(&self.inner.outbox);
        if !out.writing {
            if let Some(raw) = out.raw.take() {
                out.parked = false;
                out.bytes -= raw.len();
                return Poll::Ready(Wire::Raw(raw));
            }
            if !out.queue.is_empty() {
                out.parked = false;
                let timed = out.take_into(pieces);
                let next_write = out.next_write;
                drop(out);
                self.record_latency(timed);
                return Poll::Ready(Wire::Frames(next_write));
            }
            if let Some(end) = out.end() {
                return Poll::Ready(end.into());
            }
            out.parked = true;
        }
        out.park_waker(waker);
        Poll::Pending
    }

    /// For the task between [`Wire::Frames`] and its write (it is not parked, so no
    /// sender writes meanwhile): move what was queued since to `pieces`, as
    /// [`Connection::poll_wire`] does. `Some` if the stream has ended behind them.
    pub(crate) fn take_more(&self, pieces: &mut Vec<Bytes>) -> Option<Wire> {
        let mut out = lock(&self.inner.outbox);
        let timed = out.take_into(pieces);
        let wire = if out.queue.is_empty() {
            out.end().map(Wire::from)
        } else {
            None
        };
        drop(out);
        self.record_latency(timed);
        wire
    }

    /// A timed frame (published at `at`) was just taken for the socket.
    pub(super) fn record_latency(&self, at: Option<Instant>) {
        if let Some(at) = at {
            let latency = &self.owner().metrics().latency_seconds;
            latency.observe(at.elapsed());
        }
    }

    /// The task wrote `frames` frames it took after fan-out `since` of `clock`, its hub's
    /// (see the batching rule of `Outbox::wrote`).
    pub(crate) fn wrote(&self, clock: &Clock, since: u64, frames: usize) {
        let mut out = lock(&self.inner.outbox);
        let wide = std::mem::take(&mut out.wide);
        let gather = self.gather(clock, since, frames, wide);
        out.wrote(gather);
    }
}

/// Bytes handed to hyper: their drop (hyper wrote them out, or the stream is gone) takes
/// them off the outbox's count and lets the body hand over the next piece.
struct Handed {
    bytes: Bytes,
    conn: Connection,
}

impl AsRef<[u8]> for Handed {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Handed {
    fn drop(&mut self) {
        let mut out = lock(&self.conn.inner.outbox);
        out.in_flight -= self.bytes.len();
        // Only a body that found frames waiting (or an end to report) waits on this.
        let waiting = !out.queue.is_empty() || out.state != OutboxState::Open;
        let waker = if waiting { out.wake() } else { None };
        drop(out);
        if let Some(w) = waker {
            w.wake();
        }
    }
}
