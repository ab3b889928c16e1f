//! One SSE client: identity, tag, bounded outbox and the closed notification.
//!
//! A [`Connection`] is a cheap handle (`Arc` inside); clone it freely. All writes go
//! through the connection's outbox, a queue of shared [`Bytes`] frames guarded by one
//! short-lived mutex. Senders only enqueue and never wait on the socket; one writer at a
//! time drains the queue, so bytes from concurrent senders can never interleave.
//! Whatever is queued when the writer comes goes out as one write.
//!
//! The writer is the stream's task: the HTTP body ([`crate::SseBody`]) polled by hyper,
//! or, for a stream served on the bare socket, the task in `takeover.rs`. That task
//! lends its socket to the connection ([`DirectSink`]): while it is parked and the stream
//! has not written within its batching window, the sender that queues a frame wins a
//! [`Claim`] and writes the queue itself, with a non-blocking write (the rest of a short
//! write goes back to the task). That saves a task wake-up and a scheduler hop per event,
//! about a quarter of the server's CPU per event at light load (BENCHMARKS.md).
//!
//! ## Invariants
//! - The outbox holds at most `outbox_limit` bytes, or one frame when that frame alone
//!   is larger (so a large message can always be sent). A frame that would pass the bound
//!   triggers the [`SlowConsumerPolicy`]: the connection is closed (default) or that frame
//!   is dropped for this connection. Either way memory stays bounded.
//! - `closed` fires exactly once: the first caller of the internal close wins an atomic
//!   swap and alone runs the clean-up (leaving every room, deregistering from the hub)
//!   and the callbacks. After that the connection is in no room.
//! - Frames are written in the order they were enqueued.
//! - One writer at a time: a sender writes only under a claim, won under the outbox lock
//!   while the task is parked and no other claim is out; the task neither writes nor ends
//!   the stream while a claim is out, and a claim dropped unwritten leaves the queue to it.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::frame::{self, FrameError, Message};
use crate::hub::{Hub, JoinError};

/// What happens when a frame would overflow a connection's outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowConsumerPolicy {
    /// Close the connection. The client's `EventSource` reconnects and can resume from
    /// its `Last-Event-ID`. This is the default: a stalled client costs nothing more.
    #[default]
    Close,
    /// Drop the frame for this connection only and keep it open. The client silently
    /// misses events; use it for streams where only the latest state matters.
    DropEvent,
}

/// Why a frame was not queued for a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
}

/// Handle that, when fired, drops the transport under a connection at once (without
/// flushing). The server inserts one per TCP connection into request extensions; when
/// the endpoint is mounted elsewhere it is absent and a closed connection ends its
/// response instead.
#[derive(Clone, Debug, Default)]
pub struct TransportAbort(pub(crate) Arc<Notify>);

impl TransportAbort {
    /// A new, unfired handle.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fire it. Idempotent.
    pub fn abort(&self) {
        self.0.notify_one();
    }

    /// Wait until it is fired.
    pub async fn aborted(&self) {
        self.0.notified().await;
    }
}

type ClosedCallback = Box<dyn FnOnce(&Connection) + Send>;

/// Per-connection settings the endpoint hands over.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionConfig {
    pub outbox_limit: usize,
    pub policy: SlowConsumerPolicy,
    pub abort: Option<TransportAbort>,
    /// After a write, how long a stream lets events gather before the next one (only
    /// transports that write through [`Connection::poll_wire`] batch).
    pub batch_window: Duration,
}

/// A transport that takes frames at once, without waiting. The bare-socket path lends
/// its socket to the connection ([`Connection::attach_sink`]); while the stream's task
/// waits for frames, the sender that queues a frame also writes the queue out itself
/// ([`Claim`]), instead of waking the task (one wake-up and one scheduler hop less per
/// event).
pub(crate) trait DirectSink: Send + Sync {
    /// Write `frames` now, framed for the wire as one piece. `Ok(None)`: all of it went
    /// out. `Ok(Some(rest))`: the socket took part of it or none; `rest` is what is
    /// left, framed, to be written next and verbatim. `Err`: the transport failed.
    fn try_send(&self, frames: &[Bytes]) -> io::Result<Option<Bytes>>;
}

/// A connected SSE client.
///
/// ```
/// # async fn demo(conn: ssehub::Connection) -> Result<(), ssehub::SendError> {
/// conn.send_event("welcome", "hello world")?;
/// conn.send_comment("still here")?;
/// conn.set_tag(String::from("user-42"));
/// assert_eq!(conn.tag::<String>().as_deref(), Some("user-42"));
/// conn.close();
/// conn.closed().await; // fires exactly once, at once here
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

// Laid out for the fan-out, which touches thousands of these per event: the limit, the
// lock and what `push` reads and writes share the first two cache lines.
#[repr(C)]
struct Inner {
    config: ConnectionConfig,
    outbox: Mutex<Outbox>,
    id: Uuid,
    hub: Hub,
    closed: AtomicBool,
    /// Set once the close is complete (rooms left, callbacks run); `closed()` waits for it.
    settled: AtomicBool,
    closed_notify: Notify,
    callbacks: Mutex<Vec<ClosedCallback>>,
    tags: Mutex<http::Extensions>,
    /// Rooms this connection is in. Maintained by the hub; its lock also orders joins
    /// against close (see `Hub::join`).
    rooms: Mutex<Vec<Arc<str>>>,
    dropped: AtomicU64,
}

#[derive(Default)]
#[repr(C)] // what `push` touches first
struct Outbox {
    state: OutboxState,
    /// Set on every enqueue, cleared by the keep-alive sweep: traffic is the keep-alive.
    active: bool,
    warned: bool,
    /// The stream's task waits for frames: nothing queued, nothing being written.
    parked: bool,
    /// A sender writes to the sink: the task neither writes nor ends the stream.
    writing: bool,
    bytes: usize,
    queue: VecDeque<Bytes>,
    waker: Option<Waker>,
    /// The transport, when it can be written directly ([`DirectSink`]).
    sink: Option<Arc<dyn DirectSink>>,
    /// What a partial direct write left, framed: it goes out first, verbatim.
    raw: Option<Bytes>,
    /// No write before this (batching); `None`: at once.
    next_write: Option<Instant>,
}

impl Outbox {
    /// Closed by policy or by the transport: drop what is queued, end at once.
    fn abort(&mut self) {
        self.state = OutboxState::Aborted;
        self.queue = VecDeque::new();
        self.raw = None;
        self.bytes = 0;
        self.sink = None;
    }

    /// Whether the sender that queues a frame at `at` may write the queue out itself:
    /// the task is idle, and the stream has not written within the batching window (a
    /// busy stream's frames are left to gather).
    fn claimable(&self, at: Instant) -> Option<Arc<dyn DirectSink>> {
        let sink = self.sink.as_ref()?;
        let busy = self.next_write.is_some_and(|t| at < t);
        if busy || !self.parked || self.writing || self.raw.is_some() {
            return None;
        }
        Some(sink.clone())
    }

    /// How the stream ends, if it has: the task takes the sink back (nobody else writes
    /// any more) and either finishes the stream or, aborted, just drops it.
    fn end(&mut self) -> Option<Wire> {
        let end = match self.state {
            OutboxState::Open => return None,
            OutboxState::Draining => Wire::End,
            OutboxState::Aborted => Wire::Abort,
        };
        self.sink = None;
        Some(end)
    }

    /// A write (the task's or a direct one) ended at `at`: see [`Connection::wrote`].
    fn wrote(&mut self, at: Instant, window: Duration) {
        self.next_write = self.queue.is_empty().then(|| at + window);
    }

    /// The task's waker, to wake it: from now on it is busy, not parked.
    fn wake(&mut self) -> Option<Waker> {
        self.parked = false;
        self.waker.take()
    }
}

#[derive(Default, PartialEq, Eq, Clone, Copy, Debug)]
enum OutboxState {
    #[default]
    Open,
    /// Closed by the application: flush what is queued, then end the stream.
    Draining,
    /// Closed by policy or by the transport: drop what is queued, end at once.
    Aborted,
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
    /// Over the bound under the `Close` policy: the caller must call `close_overflowed`
    /// once it holds no hub lock.
    Overflow,
}

impl Connection {
    pub(crate) fn new(hub: Hub, config: ConnectionConfig) -> Connection {
        Connection {
            inner: Arc::new(Inner {
                id: Uuid::new_v4(),
                hub,
                config,
                outbox: Mutex::new(Outbox::default()),
                closed: AtomicBool::new(false),
                settled: AtomicBool::new(false),
                closed_notify: Notify::new(),
                callbacks: Mutex::new(Vec::new()),
                tags: Mutex::new(http::Extensions::new()),
                rooms: Mutex::new(Vec::new()),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// The connection's unique id.
    pub fn id(&self) -> Uuid {
        self.inner.id
    }

    /// The hub this connection belongs to.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// Whether the connection is closed (by either side).
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Attach a value of type `T` (one per type), replacing any previous one.
    pub fn set_tag<T: Clone + Send + Sync + 'static>(&self, value: T) {
        lock(&self.inner.tags).insert(value);
    }

    /// A clone of the attached value of type `T`, if any.
    pub fn tag<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        lock(&self.inner.tags).get::<T>().cloned()
    }

    /// Remove and return the attached value of type `T`.
    pub fn take_tag<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        lock(&self.inner.tags).remove::<T>()
    }

    /// Queue a message for this client.
    pub fn send(&self, message: &Message) -> Result<(), SendError> {
        self.send_frame(message.encode())
    }

    /// Queue an event with this name and data (an empty name means `message`).
    pub fn send_event(&self, event: &str, data: &str) -> Result<(), SendError> {
        let m = Message::builder().event(event).data(data).build()?;
        self.send(&m)
    }

    /// Queue a comment (ignored by clients; useful as an application-level ping).
    pub fn send_comment(&self, text: &str) -> Result<(), SendError> {
        self.send_frame(frame::comment(text))
    }

    /// Queue an already encoded frame.
    pub(crate) fn send_frame(&self, frame: Bytes) -> Result<(), SendError> {
        match self.enqueue(frame, Some(Instant::now())) {
            Enqueued::Yes => Ok(()),
            Enqueued::Direct(claim) => {
                claim.write(&mut Vec::new());
                Ok(())
            }
            Enqueued::Closed => Err(SendError::Closed),
            Enqueued::Dropped => Err(SendError::Overflow),
            Enqueued::Busy => unreachable!("only keep-alive pings are skipped as busy"),
            Enqueued::Overflow => {
                self.close_overflowed();
                Err(SendError::Overflow)
            }
        }
    }

    /// Join a room of this connection's hub. See [`Hub::join`].
    pub fn join(&self, room: &str) -> Result<bool, JoinError> {
        self.inner.hub.join(room, self)
    }

    /// Leave a room of this connection's hub. See [`Hub::leave`].
    pub fn leave(&self, room: &str) -> bool {
        self.inner.hub.leave(room, self)
    }

    pub(crate) fn rooms_lock(&self) -> &Mutex<Vec<Arc<str>>> {
        &self.inner.rooms
    }

    /// The rooms this connection is in.
    pub fn rooms(&self) -> Vec<String> {
        lock(&self.inner.rooms)
            .iter()
            .map(|r| r.to_string())
            .collect()
    }

    /// Frames dropped for this connection by the `DropEvent` policy.
    pub fn dropped_events(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Bytes queued for this client and not yet handed to the transport: how far behind
    /// it is (at most the outbox limit, or one larger frame).
    pub fn queued_bytes(&self) -> usize {
        lock(&self.inner.outbox).bytes
    }

    /// Whether the transport is still attached: the stream has not ended and was not
    /// aborted (closed by policy, or the client went away).
    pub(crate) fn transport_attached(&self) -> bool {
        lock(&self.inner.outbox).state != OutboxState::Aborted
    }

    /// Close the connection: what is already queued is still sent, then the stream ends.
    /// The closed notification fires now. Idempotent.
    pub fn close(&self) {
        self.close_with(OutboxState::Draining);
    }

    /// Wait until the connection is closed and the close is complete: it has left every
    /// room and its closed callbacks have run. Returns at once if that is already so.
    pub async fn closed(&self) {
        loop {
            let notified = self.inner.closed_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.inner.settled.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Run `f` once when the connection closes (at once if it already has).
    pub fn on_closed(&self, f: impl FnOnce(&Connection) + Send + 'static) {
        let mut callbacks = lock(&self.inner.callbacks);
        if self.is_closed() {
            drop(callbacks);
            f(self);
        } else {
            callbacks.push(Box::new(f));
        }
    }

    /// Queue `frame`, sent at `at` (taken once per broadcast: a clock read per
    /// recipient would cost more than it tells). `None`: never [`Enqueued::Direct`],
    /// the stream's task writes it.
    pub(crate) fn enqueue(&self, frame: Bytes, at: Option<Instant>) -> Enqueued {
        self.push(frame, false, at)
    }

    /// For the keep-alive sweep: queue `ping` unless frames were queued since the last
    /// sweep (traffic is the keep-alive). Either way the slate is clean for the next
    /// sweep: a ping is not traffic.
    pub(crate) fn enqueue_keep_alive(&self, ping: Bytes, at: Option<Instant>) -> Enqueued {
        self.push(ping, true, at)
    }

    fn push(&self, frame: Bytes, keep_alive: bool, at: Option<Instant>) -> Enqueued {
        let mut out = lock(&self.inner.outbox);
        if out.state != OutboxState::Open {
            return Enqueued::Closed;
        }
        if keep_alive && std::mem::take(&mut out.active) {
            return Enqueued::Busy;
        }
        if out.bytes + frame.len() > self.inner.config.outbox_limit && !out.queue.is_empty() {
            let first = !out.warned;
            out.warned = true;
            if self.inner.config.policy == SlowConsumerPolicy::Close {
                // Leave Open under this lock: a concurrent sender (or another room of
                // the same broadcast) now sees Closed, so one overflow is reported once.
                out.abort();
            }
            drop(out);
            return match self.inner.config.policy {
                SlowConsumerPolicy::Close => Enqueued::Overflow,
                SlowConsumerPolicy::DropEvent => {
                    self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                    self.inner.hub.stats_ref().dropped_events.inc();
                    if first {
                        tracing::warn!(conn = %self.id(), "slow consumer: outbox full, dropping events");
                    }
                    Enqueued::Dropped
                }
            };
        }
        out.active |= !keep_alive;
        out.bytes += frame.len();
        out.queue.push_back(frame);
        if let Some(sink) = at.and_then(|at| out.claimable(at)) {
            out.writing = true;
            return Enqueued::Direct(Claim {
                conn: self.clone(),
                sink: Some(sink),
            });
        }
        // During a direct write the task could do nothing: its end wakes it instead.
        if out.writing {
            return Enqueued::Yes;
        }
        if let Some(w) = out.wake() {
            drop(out);
            w.wake();
        }
        Enqueued::Yes
    }

    /// A direct write is over (`result` from the sink, `None` if it never happened):
    /// hand the stream back to its task, waking it if there is anything for it to do.
    fn release(&self, result: Option<io::Result<Option<Bytes>>>) {
        let mut out = lock(&self.inner.outbox);
        out.writing = false;
        let failed = match result {
            Some(Ok(rest)) => {
                // An aborted stream keeps nothing (its transport is being dropped).
                if let Some(rest) = rest.filter(|_| out.state != OutboxState::Aborted) {
                    out.bytes += rest.len();
                    out.raw = Some(rest);
                }
                out.wrote(Instant::now(), self.inner.config.batch_window);
                false
            }
            Some(Err(_)) => true,
            None => false,
        };
        let pending = out.raw.is_some() || !out.queue.is_empty() || out.state != OutboxState::Open;
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

    /// True (and cleared) if frames other than pings were queued since the last sweep.
    #[cfg(test)]
    pub(crate) fn take_active(&self) -> bool {
        std::mem::take(&mut lock(&self.inner.outbox).active)
    }

    pub(crate) fn close_overflowed(&self) {
        tracing::warn!(conn = %self.id(), "slow consumer: outbox full, closing connection");
        self.inner.hub.stats_ref().slow_closes.inc();
        self.abort();
    }

    /// Close at once, dropping what is queued and the transport under it.
    pub(crate) fn abort(&self) {
        self.close_with(OutboxState::Aborted);
        if let Some(a) = &self.inner.config.abort {
            a.abort();
        }
    }

    fn close_with(&self, state: OutboxState) {
        {
            let mut out = lock(&self.inner.outbox);
            if state == OutboxState::Aborted {
                out.abort();
            } else if out.state == OutboxState::Open {
                out.state = state;
            }
            if let Some(w) = out.wake() {
                w.wake();
            }
        }
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // We won the swap: this block runs exactly once per connection.
        self.inner.hub.forget(self);
        let callbacks = std::mem::take(&mut *lock(&self.inner.callbacks));
        for cb in callbacks {
            if std::panic::catch_unwind(AssertUnwindSafe(|| cb(self))).is_err() {
                tracing::error!(conn = %self.id(), "a closed callback panicked");
            }
        }
        self.inner.settled.store(true, Ordering::Release);
        self.inner.closed_notify.notify_waiters();
    }

    /// Take what the body should write next. `Ok(Some)` bytes, `Ok(None)` end of stream,
    /// `Err(())` nothing yet (the waker is stored).
    pub(crate) fn poll_outbox(&self, waker: &Waker) -> Result<Option<Bytes>, ()> {
        let mut out = lock(&self.inner.outbox);
        if !out.queue.is_empty() {
            // Coalesce everything queued (up to a bound) into one write.
            let mut pieces = Vec::new();
            take_queued(&mut out, &mut pieces);
            return Ok(Some(match <[Bytes; 1]>::try_from(pieces) {
                Ok([one]) => one,
                Err(pieces) => Bytes::from(pieces.concat()),
            }));
        }
        if out.state != OutboxState::Open {
            return Ok(None);
        }
        match &out.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => out.waker = Some(waker.clone()),
        }
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
            out.sink = Some(sink);
        }
    }

    /// For a transport's task that writes through a [`DirectSink`]: what to write next.
    /// Queued frames are moved to `pieces` (at most [`MAX_WRITE`] bytes, or one larger frame).
    /// Pending (waker stored, task parked) while there is nothing, or while a sender
    /// writes directly. [`Wire::End`] and [`Wire::Abort`] take the sink back: nobody
    /// else writes any more.
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
                take_queued(&mut out, pieces);
                return Poll::Ready(Wire::Frames(out.next_write));
            }
            if let Some(end) = out.end() {
                return Poll::Ready(end);
            }
            out.parked = true;
        }
        match &out.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => out.waker = Some(waker.clone()),
        }
        Poll::Pending
    }

    /// For the task between [`Wire::Frames`] and its write (it is not parked, so no
    /// sender writes meanwhile): move what was queued since to `pieces`, as
    /// [`Connection::poll_wire`] does. `Some` if the stream has ended behind them.
    pub(crate) fn take_more(&self, pieces: &mut Vec<Bytes>) -> Option<Wire> {
        let mut out = lock(&self.inner.outbox);
        take_queued(&mut out, pieces);
        if out.queue.is_empty() {
            out.end()
        } else {
            None
        }
    }

    /// The task wrote at `at`. The next write waits for the batching window, unless
    /// frames are already waiting (the write was as large as a batch may be): then
    /// waiting would only cap the stream's throughput.
    pub(crate) fn wrote(&self, at: Instant) {
        lock(&self.inner.outbox).wrote(at, self.inner.config.batch_window);
    }
}

/// The most bytes one write takes from a queue (or one larger frame); the rest stays
/// queued, and counts against the outbox's bound, for the next write.
pub(crate) const MAX_WRITE: usize = 64 * 1024;

/// Move queued frames to `pieces`, up to [`MAX_WRITE`] bytes in all.
fn take_queued(out: &mut Outbox, pieces: &mut Vec<Bytes>) {
    let mut total: usize = pieces.iter().map(Bytes::len).sum();
    while let Some(f) = out.queue.front() {
        if !pieces.is_empty() && total + f.len() > MAX_WRITE {
            break;
        }
        total += f.len();
        out.bytes -= f.len();
        pieces.extend(out.queue.pop_front());
    }
    if out.queue.is_empty() && out.queue.capacity() > 64 {
        out.queue = VecDeque::new();
    }
}

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

/// The right to write a connection's queue straight to its transport, won by the
/// sender that queued a frame while the stream's task was idle. Senders that come
/// meanwhile queue behind, and the task waits until the claim is released. Whatever is
/// queued when the claim is written goes out as one write.
pub(crate) struct Claim {
    conn: Connection,
    sink: Option<Arc<dyn DirectSink>>,
}

impl Claim {
    /// Write what is queued (without waiting) and release the transport. `pieces` is
    /// scratch space, left empty.
    pub(crate) fn write(mut self, pieces: &mut Vec<Bytes>) {
        let Some(sink) = &self.sink else { return };
        take_queued(&mut lock(&self.conn.inner.outbox), pieces);
        let result = if pieces.is_empty() {
            Ok(None)
        } else {
            sink.try_send(pieces)
        };
        pieces.clear();
        // The task may take the socket back once released: drop our handle first. (Until
        // here a panic in the sink still releases the claim, through `Drop`.)
        self.sink = None;
        self.conn.release(Some(result));
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.sink.take().is_some() {
            self.conn.release(None);
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

/// Write claimed queues. Broadcasting stays queueing-only for the caller: on a runtime
/// the writes run in spawned tasks, a few hundred sockets each, yielding between slices
/// so that publishers and other streams get their turn. Outside a runtime they run
/// here, and never wait either (every write is non-blocking).
pub(crate) fn write_claims(claims: Vec<Claim>) {
    const PER_TASK: usize = 256;
    const PER_POLL: usize = 32;
    // Only a multi-threaded runtime is sure to run what is spawned on it soon; on a
    // current-thread one (maybe not even driven: a caller's `block_on` that ends) the
    // claims would hold their streams until it runs again.
    let rt = match tokio::runtime::Handle::try_current() {
        Ok(rt)
            if claims.len() > 1
                && rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
        {
            rt
        }
        _ => {
            let mut pieces = Vec::new();
            return claims.into_iter().for_each(|c| c.write(&mut pieces));
        }
    };
    let mut claims = claims.into_iter();
    loop {
        let batch: Vec<Claim> = claims.by_ref().take(PER_TASK).collect();
        if batch.is_empty() {
            break;
        }
        rt.spawn(async move {
            let mut pieces = Vec::new();
            let mut batch = batch.into_iter();
            loop {
                let mut slice = batch.by_ref().take(PER_POLL).peekable();
                if slice.peek().is_none() {
                    break;
                }
                slice.for_each(|c| c.write(&mut pieces));
                tokio::task::yield_now().await;
            }
        });
    }
}

/// Lock a mutex, ignoring poisoning: every critical section here leaves the data valid.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PartialEq for Connection {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Connection {}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.inner.id)
            .field("closed", &self.is_closed())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Context;

    fn conn(limit: usize, policy: SlowConsumerPolicy) -> Connection {
        Hub::new().connect(ConnectionConfig {
            outbox_limit: limit,
            policy,
            abort: None,
            batch_window: Duration::ZERO,
        })
    }

    fn drain(c: &Connection) -> Vec<u8> {
        let waker = futures_util::task::noop_waker();
        let mut out = Vec::new();
        while let Ok(Some(b)) = c.poll_outbox(&waker) {
            out.extend_from_slice(&b);
        }
        out
    }

    #[test]
    fn frames_are_coalesced_in_order() {
        let c = conn(1 << 20, SlowConsumerPolicy::Close);
        for i in 0..100 {
            c.send_event("n", &i.to_string()).unwrap();
        }
        let waker = futures_util::task::noop_waker();
        let first = c.poll_outbox(&waker).unwrap().unwrap();
        let expected: String = (0..100)
            .map(|i| format!("event: n\ndata: {i}\n\n"))
            .collect();
        assert_eq!(first, expected.as_bytes());
        assert!(c.poll_outbox(&waker).is_err(), "nothing left, waker stored");
        let _ = Context::from_waker(&waker);
    }

    #[test]
    fn overflow_closes_by_default() {
        let c = conn(100, SlowConsumerPolicy::Close);
        c.send_event("e", &"x".repeat(60)).unwrap();
        assert_eq!(c.send_event("e", &"x".repeat(60)), Err(SendError::Overflow));
        assert!(c.is_closed());
        assert_eq!(c.send_event("e", "y"), Err(SendError::Closed));
        assert!(drain(&c).is_empty(), "aborted: queue dropped");
        assert_eq!(c.hub().stats().slow_consumer_closes, 1);
    }

    #[test]
    fn overflow_drops_under_drop_policy() {
        let c = conn(100, SlowConsumerPolicy::DropEvent);
        c.send_event("e", &"x".repeat(60)).unwrap();
        assert_eq!(c.send_event("e", &"y".repeat(60)), Err(SendError::Overflow));
        assert!(!c.is_closed());
        assert_eq!(c.dropped_events(), 1);
        assert_eq!(drain(&c).len(), "event: e\ndata: \n\n".len() + 60);
        c.send_event("e", "z").unwrap();
    }

    #[test]
    fn close_flushes_then_ends() {
        let c = conn(1 << 20, SlowConsumerPolicy::Close);
        c.send_event("e", "last").unwrap();
        c.close();
        assert_eq!(drain(&c), b"event: e\ndata: last\n\n");
        let waker = futures_util::task::noop_waker();
        assert_eq!(c.poll_outbox(&waker), Ok(None));
    }

    #[test]
    fn closed_fires_once_under_concurrent_close() {
        for _ in 0..50 {
            let c = conn(1 << 20, SlowConsumerPolicy::Close);
            let fired = Arc::new(AtomicUsize::new(0));
            let f = fired.clone();
            c.on_closed(move |_| {
                f.fetch_add(1, Ordering::SeqCst);
            });
            let threads: Vec<_> = (0..8)
                .map(|i| {
                    let c = c.clone();
                    std::thread::spawn(move || {
                        if i % 2 == 0 {
                            c.close()
                        } else {
                            c.transport_closed()
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(fired.load(Ordering::SeqCst), 1);
            // Registering after close runs at once, exactly once.
            let f = fired.clone();
            c.on_closed(move |_| {
                f.fetch_add(1, Ordering::SeqCst);
            });
            assert_eq!(fired.load(Ordering::SeqCst), 2);
        }
    }

    /// A transport that takes `take` bytes of each frame (all when `None`), or fails.
    #[derive(Default)]
    struct Sink {
        written: Mutex<Vec<u8>>,
        take: Mutex<Option<usize>>,
        fail: AtomicBool,
        panic: AtomicBool,
        /// Run during the write.
        during: Mutex<Option<Connection>>,
    }

    impl DirectSink for Sink {
        fn try_send(&self, frames: &[Bytes]) -> io::Result<Option<Bytes>> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            assert!(!self.panic.load(Ordering::SeqCst), "the sink panics");
            let frame = frames.concat();
            if let Some(c) = lock(&self.during).take() {
                c.abort();
            }
            let n = lock(&self.take).unwrap_or(frame.len()).min(frame.len());
            lock(&self.written).extend_from_slice(&frame[..n]);
            Ok((n < frame.len()).then(|| Bytes::copy_from_slice(&frame[n..])))
        }
    }

    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A connection on a direct transport, its task parked; and the task's wake count.
    fn direct(window: Duration) -> (Connection, Arc<Sink>, Arc<Wakes>, Waker) {
        let c = Hub::new().connect(ConnectionConfig {
            outbox_limit: 1 << 20,
            policy: SlowConsumerPolicy::Close,
            abort: Some(TransportAbort::new()),
            batch_window: window,
        });
        let sink = Arc::new(Sink::default());
        c.attach_sink(sink.clone());
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        assert!(c.poll_wire(&waker, &mut Vec::new()).is_pending());
        (c, sink, wakes, waker)
    }

    fn frame(data: &str) -> Bytes {
        Message::new(data).encode()
    }

    #[test]
    fn an_idle_stream_is_written_by_the_sender_a_busy_one_by_its_task() {
        let (c, sink, wakes, waker) = direct(Duration::from_secs(3600));
        c.send(&Message::new("1")).unwrap();
        assert_eq!(&lock(&sink.written)[..], b"data: 1\n\n");
        assert_eq!(c.queued_bytes(), 0);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0, "the task was not woken");
        // Inside the batching window: queued for the task, which is woken.
        c.send(&Message::new("2")).unwrap();
        assert_eq!(lock(&sink.written).len(), 9);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        let mut pieces = Vec::new();
        match c.poll_wire(&waker, &mut pieces) {
            Poll::Ready(Wire::Frames(Some(_))) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(pieces, [frame("2")]);
    }

    #[test]
    fn without_a_window_every_event_of_an_idle_stream_goes_direct() {
        let (c, sink, wakes, _waker) = direct(Duration::ZERO);
        for i in 0..3 {
            c.send(&Message::new(i.to_string())).unwrap();
        }
        assert_eq!(
            &lock(&sink.written)[..],
            b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
        );
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn what_a_partial_write_left_goes_out_first() {
        let (c, sink, wakes, waker) = direct(Duration::ZERO);
        *lock(&sink.take) = Some(3);
        c.send(&Message::new("abc")).unwrap();
        assert_eq!(&lock(&sink.written)[..], b"dat");
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "the task must finish it");
        assert_eq!(c.queued_bytes(), "a: abc\n\n".len());
        // Queued behind it, not written directly.
        c.send(&Message::new("d")).unwrap();
        assert_eq!(lock(&sink.written).len(), 3);
        let mut pieces = Vec::new();
        match c.poll_wire(&waker, &mut pieces) {
            Poll::Ready(Wire::Raw(rest)) => assert_eq!(rest, "a: abc\n\n"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            c.poll_wire(&waker, &mut pieces),
            Poll::Ready(Wire::Frames(_))
        ));
        assert_eq!(pieces, [frame("d")]);
    }

    #[test]
    fn the_task_waits_for_a_direct_write_in_flight_even_to_end() {
        let (c, sink, wakes, waker) = direct(Duration::ZERO);
        let Enqueued::Direct(claim) = c.enqueue(frame("1"), Some(Instant::now())) else {
            panic!("an idle stream is claimed")
        };
        c.send(&Message::new("2")).unwrap();
        c.close();
        let mut pieces = Vec::new();
        assert!(c.poll_wire(&waker, &mut pieces).is_pending());
        let woken = wakes.0.load(Ordering::SeqCst);
        // What was queued behind the claim goes out in the same write.
        claim.write(&mut pieces);
        assert!(wakes.0.load(Ordering::SeqCst) > woken);
        assert_eq!(&lock(&sink.written)[..], b"data: 1\n\ndata: 2\n\n");
        assert!(matches!(
            c.poll_wire(&waker, &mut pieces),
            Poll::Ready(Wire::End)
        ));
    }

    #[test]
    fn a_claim_dropped_unwritten_leaves_the_queue_to_the_task() {
        let (c, sink, _wakes, waker) = direct(Duration::ZERO);
        let claim = c.enqueue(frame("1"), Some(Instant::now()));
        c.send(&Message::new("2")).unwrap();
        drop(claim);
        let mut pieces = Vec::new();
        assert!(matches!(
            c.poll_wire(&waker, &mut pieces),
            Poll::Ready(Wire::Frames(_))
        ));
        assert_eq!(pieces, [frame("1"), frame("2")]);
        assert!(lock(&sink.written).is_empty());
    }

    #[test]
    fn a_stream_aborted_during_a_direct_write_keeps_nothing() {
        let (c, sink, _wakes, waker) = direct(Duration::ZERO);
        *lock(&sink.take) = Some(3);
        *lock(&sink.during) = Some(c.clone());
        let _ = c.send(&Message::new("1"));
        assert!(c.is_closed());
        assert_eq!(&lock(&sink.written)[..], b"dat", "the write was cut short");
        assert_eq!(c.queued_bytes(), 0);
        assert!(matches!(
            c.poll_wire(&waker, &mut Vec::new()),
            Poll::Ready(Wire::Abort)
        ));
    }

    #[test]
    fn a_broadcast_from_a_current_thread_runtime_writes_at_once() {
        // Spawned there, the writes would wait for that runtime to run again (here:
        // never), and hold both streams meanwhile.
        let hub = Hub::new();
        let mut sinks = Vec::new();
        for _ in 0..2 {
            let c = hub.connect(ConnectionConfig {
                outbox_limit: 1 << 20,
                policy: SlowConsumerPolicy::Close,
                abort: None,
                batch_window: Duration::ZERO,
            });
            let sink = Arc::new(Sink::default());
            c.attach_sink(sink.clone());
            let waker = futures_util::task::noop_waker();
            assert!(c.poll_wire(&waker, &mut Vec::new()).is_pending());
            c.join("r").unwrap();
            sinks.push((c, sink));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(
            rt.block_on(async { hub.broadcast("r", &Message::new("x")) }),
            2
        );
        for (_, sink) in &sinks {
            assert_eq!(&lock(&sink.written)[..], b"data: x\n\n");
        }
    }

    #[test]
    fn a_panicking_transport_releases_its_claim() {
        let (c, sink, _wakes, waker) = direct(Duration::ZERO);
        sink.panic.store(true, Ordering::SeqCst);
        let Enqueued::Direct(claim) = c.enqueue(frame("1"), Some(Instant::now())) else {
            panic!("an idle stream is claimed")
        };
        let caught = std::panic::catch_unwind(AssertUnwindSafe(|| claim.write(&mut Vec::new())));
        assert!(caught.is_err());
        // Not stuck behind a claim that will never end: the task parks, and the next
        // event is written directly again.
        assert!(c.poll_wire(&waker, &mut Vec::new()).is_pending());
        sink.panic.store(false, Ordering::SeqCst);
        c.send(&Message::new("2")).unwrap();
        assert_eq!(&lock(&sink.written)[..], b"data: 2\n\n");
    }

    #[test]
    fn a_close_during_the_batching_window_hands_the_socket_back() {
        let (c, sink, _wakes, waker) = direct(Duration::from_secs(3600));
        c.send(&Message::new("1")).unwrap();
        c.send(&Message::new("2")).unwrap();
        let mut pieces = Vec::new();
        assert!(matches!(
            c.poll_wire(&waker, &mut pieces),
            Poll::Ready(Wire::Frames(Some(_)))
        ));
        c.close();
        assert!(matches!(c.take_more(&mut pieces), Some(Wire::End)));
        assert_eq!(
            Arc::strong_count(&sink),
            1,
            "only the test holds the socket"
        );
    }

    #[test]
    fn a_failed_direct_write_ends_the_stream() {
        let (c, sink, _wakes, waker) = direct(Duration::ZERO);
        sink.fail.store(true, Ordering::SeqCst);
        let _ = c.send(&Message::new("1"));
        assert!(c.is_closed());
        assert_eq!(c.send(&Message::new("2")), Err(SendError::Closed));
        assert!(matches!(
            c.poll_wire(&waker, &mut Vec::new()),
            Poll::Ready(Wire::Abort)
        ));
    }

    #[test]
    fn tags_are_typed() {
        let c = conn(1 << 20, SlowConsumerPolicy::Close);
        c.set_tag(7u32);
        c.set_tag("name".to_string());
        assert_eq!(c.tag::<u32>(), Some(7));
        assert_eq!(c.take_tag::<String>().as_deref(), Some("name"));
        assert_eq!(c.tag::<String>(), None);
    }
}
