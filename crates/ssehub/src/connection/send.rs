//! The sending side of a connection: every frame enters the outbox here, and an idle
//! bare-socket stream is written at once by the sender that queued the frame.
//!
//! Senders only enqueue and never wait on the socket. One writer at a time drains the
//! queue, so bytes from concurrent senders never interleave: usually the stream's task
//! (`writer.rs`), but while that task is parked and the stream has not written within
//! its batching window, the sender that queues a frame wins a [`Claim`] and writes the
//! queue itself, non-blocking (the rest of a short write goes back to the task, first).
//! That saves a task wake-up and a scheduler hop per event, about a quarter of the
//! server's CPU per event at light load (BENCHMARKS.md).
//!
//! ## Invariants
//! - A frame that would pass the outbox bound triggers the [`SlowConsumerPolicy`]: the
//!   connection is closed (default) or that frame is dropped for this connection.
//!   Either way memory stays bounded, and one overflow is reported once.
//! - A sender writes only under a claim, won under the outbox lock while the task is
//!   parked and no other claim is out; a claim dropped unwritten leaves the queue to
//!   the task.

use std::fmt;
use std::io;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;

use super::handle::Connection;
use super::outbox::{Admit, Kind, OutboxState, SlowConsumerPolicy, Via};
use super::pace::{Clock, Stamp};
use crate::log_limit::warn_limited;
use crate::message::{self, FrameError, Message};
use crate::sync::lock;

/// Why a frame was not queued for a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The connection is closed.
    #[error("connection is closed")]
    Closed,
    /// The outbox is full; the slow-consumer policy was applied.
    #[error("outbox full: the client is not reading fast enough")]
    Overflow,
    /// The message could not be encoded.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Encoded, the message is larger than the hub allows one event
    /// ([`crate::HubConfig::max_event_bytes`]).
    #[error("the event is {bytes} bytes encoded, over the limit of {max}")]
    TooLarge {
        /// Its encoded size.
        bytes: usize,
        /// The hub's limit.
        max: usize,
    },
}

/// What happened to one enqueue.
#[derive(Debug)]
pub(crate) enum Enqueued {
    Yes,
    /// Queued, and the caller is to write the queue out itself, now ([`Claim::write`]).
    Direct(Claim),
    Closed,
    /// Dropped by the `DropEvent` policy.
    Dropped,
    /// Not a keep-alive candidate: it had traffic since the last sweep.
    Busy,
    /// Left to the replay of a resuming stream, which will carry it.
    Deferred,
    /// Over the bound under the `Close` policy: the caller must call `close_overflowed`
    /// once it holds no hub lock.
    Overflow,
}

impl Connection {
    /// Queue a message for this client. A message larger, encoded, than
    /// [`crate::HubConfig::max_event_bytes`] is refused ([`SendError::TooLarge`]).
    pub fn send(&self, message: &Message) -> Result<(), SendError> {
        let (bytes, max) = (message.encoded_len(), self.owner().max_event_bytes());
        if bytes > max {
            return Err(SendError::TooLarge { bytes, max });
        }
        self.send_frame(message.encode())
    }

    /// Queue an event with this name and data (an empty name means `message`).
    pub fn send_event(&self, event: &str, data: &str) -> Result<(), SendError> {
        let m = Message::builder().event(event).data(data).build()?;
        self.send(&m)
    }

    /// Queue a comment (ignored by clients; useful as an application-level ping).
    pub fn send_comment(&self, text: &str) -> Result<(), SendError> {
        self.send_frame(message::comment(text))
    }

    /// Queue an already encoded frame, and write it at once if the stream is idle.
    pub(crate) fn send_frame(&self, frame: Bytes) -> Result<(), SendError> {
        match self.enqueue(frame, Some(Stamp::now(self.owner().clock()))) {
            Enqueued::Yes => Ok(()),
            Enqueued::Direct(claim) => {
                claim.write(&mut Vec::new(), self.owner().clock());
                Ok(())
            }
            Enqueued::Closed => Err(SendError::Closed),
            Enqueued::Dropped => Err(SendError::Overflow),
            Enqueued::Busy | Enqueued::Deferred => {
                unreachable!("only pings are skipped as busy, recorded events deferred")
            }
            Enqueued::Overflow => {
                self.close_overflowed();
                Err(SendError::Overflow)
            }
        }
    }

    /// Queue `frame`, sent at `stamp` (taken once per broadcast: a clock read per
    /// recipient would cost more than it tells). `None`: never [`Enqueued::Direct`],
    /// the stream's task writes it.
    pub(crate) fn enqueue(&self, frame: Bytes, stamp: Option<Stamp>) -> Enqueued {
        self.push(frame, Kind::Plain, stamp, None)
    }

    /// Queue a frame of one of these kinds: a recorded event is deferred while the
    /// stream's replay is pending; a keep-alive ping is skipped unless the stream was
    /// quiet since the last sweep (traffic is the keep-alive).
    pub(crate) fn enqueue_as(&self, frame: Bytes, kind: Kind, stamp: Option<Stamp>) -> Enqueued {
        self.push(frame, kind, stamp, None)
    }

    /// [`Connection::enqueue_as`] for the recipient a timed publication (fanned out
    /// from `timed`) measures its latency on.
    pub(crate) fn enqueue_timed(
        &self,
        frame: Bytes,
        kind: Kind,
        stamp: Option<Stamp>,
        timed: Instant,
    ) -> Enqueued {
        self.push(frame, kind, stamp, Some(timed))
    }

    fn push(
        &self,
        frame: Bytes,
        kind: Kind,
        stamp: Option<Stamp>,
        timed: Option<Instant>,
    ) -> Enqueued {
        let mut out = lock(&self.inner.outbox);
        match out.admit(frame.len(), kind) {
            Admit::Yes => {}
            Admit::Closed => return Enqueued::Closed,
            Admit::Busy => return Enqueued::Busy,
            Admit::Deferred => return Enqueued::Deferred,
            Admit::Full { first } => {
                if out.policy == SlowConsumerPolicy::Close {
                    // Leave Open under this lock: a concurrent sender (or another room
                    // of the same broadcast) now sees Closed, so one overflow is
                    // reported once.
                    out.abort();
                    return Enqueued::Overflow;
                }
                drop(out);
                self.dropped(first);
                return Enqueued::Dropped;
            }
        }
        if let Some((via, stamp)) = stamp.and_then(|s| out.claimable(s.at).map(|v| (v, s))) {
            out.writing = true;
            // An idle stream's queue is empty: the frame goes straight into the claim,
            // and the queue is not touched (nor locked again to write it). A timed
            // frame (one recipient of one publication in 64) still goes through the
            // queue, where its probe follows it to the write.
            let own = if out.queue.is_empty() && timed.is_none() {
                out.active |= kind != Kind::KeepAlive;
                Some(frame)
            } else {
                out.queue(frame, kind);
                out.probe_last_if(timed);
                None
            };
            return Enqueued::Direct(Claim {
                conn: self.clone(),
                via: Some(via),
                fanout: stamp.fanout,
                own,
            });
        }
        out.queue(frame, kind);
        out.probe_last_if(timed);
        // Without a stamp the fan-out was too wide to write directly (`hub/fanout.rs`):
        // the stream's next write takes its turn among its streams (`pace.rs`).
        out.wide |= stamp.is_none();
        // During a direct write the task could do nothing: its end wakes it instead.
        if out.writing {
            self.inner.queued_behind.store(true, Ordering::Release);
            return Enqueued::Yes;
        }
        if let Some(w) = out.wake() {
            drop(out);
            w.wake();
        }
        Enqueued::Yes
    }

    /// The `DropEvent` policy skipped a frame for this connection.
    fn dropped(&self, first: bool) {
        self.inner.dropped.fetch_add(1, Ordering::Relaxed);
        self.owner().metrics().dropped_events.inc();
        if first {
            warn_limited!(conn = %self.id(), "slow consumer: outbox full, dropping events");
        }
    }

    /// A direct write of frames queued by fan-out `fanout` is over: `written` is what the
    /// sink said, how many frames it was given and the hub's clock its pacing reads
    /// (`None`: it never wrote, and `unsent` is the claim's own frame, if it had one).
    /// Hand the stream back to its task, waking it if there is anything for it to do.
    fn release(
        &self,
        written: Option<(io::Result<Option<Bytes>>, usize, &Clock)>,
        fanout: u64,
        unsent: Option<Bytes>,
    ) {
        let mut out = lock(&self.inner.outbox);
        out.writing = false;
        if out.state == OutboxState::Aborted {
            // Aborted while the claim wrote: the transport was kept for it until now.
            out.drop_sink();
        }
        if let Some(frame) = unsent.filter(|_| out.state != OutboxState::Aborted) {
            // A claim dropped unwritten: its frame goes first, before what queued behind.
            out.put_back(frame);
        }
        // What the write left over, if it did: a claim is won only while the task is
        // parked, so with nothing left over before, and only this release sets it. (So
        // `raw`, on a cold cache line, is not read.)
        let mut left_over = false;
        let failed = match written {
            Some((Ok(rest), frames, clock)) => {
                // An aborted stream keeps nothing (its transport is being dropped).
                if let Some(rest) = rest.filter(|_| out.state != OutboxState::Aborted) {
                    out.bytes += rest.len();
                    out.raw = Some(rest);
                    left_over = true;
                }
                // A claim is won by a fan-out narrow enough to write directly.
                let gather = self.gather(clock, fanout, frames, false);
                out.wrote(gather);
                false
            }
            Some((Err(_), _, _)) => true,
            None => false,
        };
        let pending = left_over || !out.queue.is_empty() || out.state != OutboxState::Open;
        let waker = if pending { out.wake() } else { None };
        drop(out);
        if let Some(w) = waker {
            w.wake();
        }
        if failed {
            // The client is gone (reset, broken pipe): end the stream at once.
            self.abort();
        }
    }

    /// The stream's replay is queued: from now on it gets recorded events live. Called
    /// with the history locked, right after the replay was queued, so no event falls
    /// between the two.
    pub(crate) fn end_resume(&self) {
        lock(&self.inner.outbox).resuming = false;
    }

    /// The most bytes the outbox holds (its slow-consumer bound).
    pub(crate) fn outbox_limit(&self) -> usize {
        lock(&self.inner.outbox).limit
    }

    /// True (and cleared) if frames other than pings were queued since the last sweep.
    #[cfg(test)]
    pub(crate) fn take_active(&self) -> bool {
        std::mem::take(&mut lock(&self.inner.outbox).active)
    }
}

/// The right to write a connection's queue straight to its transport, won by the
/// sender that queued a frame while the stream's task was idle. Senders that come
/// meanwhile queue behind, and the task waits until the claim is released. Whatever is
/// queued when the claim is written goes out as one write.
pub(crate) struct Claim {
    conn: Connection,
    /// What it writes through; `None` once released.
    via: Option<Via>,
    /// The fan-out whose frame won the claim.
    fanout: u64,
    /// That frame, when the queue was empty: it never entered it.
    own: Option<Bytes>,
}

impl Claim {
    /// Write what is queued (without waiting) and release the transport. `pieces` is
    /// scratch space, left empty; `clock` the hub's, which the release's pacing reads
    /// (the fan-out hands it over: through the connection's owner it was a cache miss
    /// per recipient).
    pub(crate) fn write(mut self, pieces: &mut Vec<Bytes>, clock: &Clock) {
        let Some(via) = &self.via else { return };
        let own = self.own.take();
        let alone = own.is_some();
        pieces.extend(own);
        // Frames queued behind the claim go out in the same write; the lock is taken only
        // when some did (else `release` would find them and wake the task). A timed
        // frame is never the claim's own: it is among those.
        let behind = self.conn.inner.queued_behind.swap(false, Ordering::Acquire);
        if !alone || behind {
            let timed = lock(&self.conn.inner.outbox).take_into(pieces);
            self.conn.record_latency(timed);
        }
        let frames = pieces.len();
        let result = if pieces.is_empty() {
            Ok(None)
        } else {
            via.try_send(pieces)
        };
        pieces.clear();
        // The task may take the socket back once released: drop our handle (if it is the
        // transport's) first. (Until here a panic in the sink still releases the claim,
        // through `Drop`.)
        self.via = None;
        self.conn
            .release(Some((result, frames, clock)), self.fanout, None);
    }

    /// [`Connection::touch`] for the connection this claim writes.
    pub(crate) fn touch(&self) {
        self.conn.touch();
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.via.take().is_some() {
            self.conn.release(None, self.fanout, self.own.take());
        }
    }
}

impl fmt::Debug for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claim")
            .field("conn", &self.conn.id())
            .finish()
    }
}
