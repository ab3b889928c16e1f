//! The connection handle: identity, typed tags, the closed notification that fires
//! exactly once, and the seam to whoever keeps the connection (its hub).
//!
//! A [`Connection`] is a cheap handle (`Arc` inside); clone it freely.
//!
//! ## Invariants
//! - `closed` fires exactly once: the first caller of the internal close wins an atomic
//!   swap and alone runs the clean-up (its owner forgets it: it leaves every room and
//!   the registry) and the callbacks. After that the connection is in no room.
//! - A closed connection cannot join a room: the hub checks `is_closed` under the
//!   connection's room-list lock, and close sets the flag before its owner takes that
//!   lock to leave the rooms.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use uuid::Uuid;

use super::origin::Origin;
use super::outbox::{Outbox, OutboxState, SlowConsumerPolicy};
use super::pace::{self, Clock};
use crate::log_limit::warn_limited;
use crate::metrics::Metrics;
use crate::metrics::TransportKind;
use crate::sync::lock;

/// A connection's unique id: random, so it can be shown to clients without revealing
/// how many connections there were.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(Uuid);

impl ConnectionId {
    pub(crate) fn random() -> ConnectionId {
        ConnectionId(Uuid::new_v4())
    }

    /// A number drawn from the id's random bits (for jitter: stable per connection).
    pub(crate) fn spread(self) -> u128 {
        self.0.as_u128()
    }
}

impl From<&Connection> for ConnectionId {
    fn from(conn: &Connection) -> ConnectionId {
        conn.id()
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for ConnectionId {
    type Err = uuid::Error;

    /// Parse the form [`ConnectionId`]'s `Display` writes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(ConnectionId)
    }
}

/// Handle that, when fired, drops the transport under a connection at once (without
/// flushing). The server inserts one per TCP connection into request extensions; when
/// the endpoint is mounted elsewhere it is absent and a closed connection ends its
/// response instead.
#[derive(Clone, Debug, Default)]
pub(crate) struct TransportAbort(Arc<Notify>);

impl TransportAbort {
    /// A new, unfired handle.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Fire it. Idempotent.
    pub(crate) fn abort(&self) {
        self.0.notify_one();
    }

    /// Wait until it is fired.
    pub(crate) async fn aborted(&self) {
        self.0.notified().await;
    }

    /// [`TransportAbort::aborted`], as a future that owns its handle.
    pub(crate) fn aborted_owned(&self) -> tokio::sync::futures::OwnedNotified {
        self.0.clone().notified_owned()
    }
}

/// Per-connection settings the endpoint hands over.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionConfig {
    pub outbox_limit: usize,
    pub policy: SlowConsumerPolicy,
    pub abort: Option<TransportAbort>,
    /// After a write, how long a stream lets events gather before the next one (only
    /// transports that write through `Connection::poll_wire` batch).
    pub batch_window: Duration,
    /// The stream resumes from a cursor: recorded events wait for its replay.
    pub resuming: bool,
    /// Batch only when the server falls behind (`false`: after every write).
    pub adaptive: bool,
    /// Ping the stream when it had no traffic for this long (its hub's sweep does).
    pub keep_alive: Option<Duration>,
}

#[cfg(test)]
impl ConnectionConfig {
    /// What unit tests connect with: a 1 MiB outbox closed when full, no transport to
    /// abort, no batching window, not resuming, adaptive.
    pub(crate) fn for_tests() -> ConnectionConfig {
        ConnectionConfig {
            outbox_limit: 1 << 20,
            policy: SlowConsumerPolicy::Close,
            abort: None,
            batch_window: Duration::ZERO,
            resuming: false,
            adaptive: true,
            keep_alive: None,
        }
    }
}

/// What a connection needs from whoever keeps it (the hub). Through it the connection
/// knows nothing of rooms, and this module imports nothing of the hub.
pub(crate) trait Owner: Send + Sync {
    /// `conn` has closed: leave its rooms, forget it. Called exactly once per connection.
    fn forget(&self, conn: &Connection);
    /// The counters the slow-consumer policy bumps.
    fn metrics(&self) -> &Metrics;
    /// The count of fan-outs begun, which pacing compares against (`pace.rs`). Shared:
    /// a fan-out's write tasks carry it to the claims they write.
    fn clock(&self) -> &Arc<Clock>;
    /// The most bytes one encoded event sent to a connection may take.
    fn max_event_bytes(&self) -> usize;
}

type ClosedCallback = Box<dyn FnOnce(&Connection) + Send>;

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
    pub(super) inner: Arc<Inner>,
}

// Laid out for the fan-out, which touches thousands of these per event: the flag a
// direct write swaps first, then the lock and the outbox, whose first part is what
// `push` reads and writes (see `outbox.rs`); the `Arc`'s count, which a claim's handle
// takes, comes just before. About three cache lines per recipient, where the count, the
// settings, the lock and the transport's own allocation took five to seven.
#[repr(C)]
pub(super) struct Inner {
    /// Frames were queued behind a direct write in flight (see `send.rs`). Beside the
    /// lock: a direct write swaps it, then takes the lock to release the stream.
    pub(super) queued_behind: AtomicBool,
    /// Batch only when the server falls behind (`false`: after every write).
    adaptive: bool,
    /// After a write, how long the stream lets events gather before the next one, at
    /// most (`pace.rs`), in microseconds: it fits before the lock, where every write's
    /// release reads it, and a Duration would not.
    window_us: u32,
    pub(super) outbox: Mutex<Outbox>,
    /// The release of a direct write reads its pacing clock.
    owner: Arc<dyn Owner>,
    /// Fired to drop the transport at once (the server's handle, when there is one).
    pub(super) abort: Option<TransportAbort>,
    /// How often its hub pings it when idle (`None`: never).
    keep_alive: Option<Duration>,
    id: ConnectionId,
    closed: AtomicBool,
    /// Set once the close is complete (rooms left, callbacks run); `closed()` waits for it.
    settled: AtomicBool,
    closed_notify: Notify,
    callbacks: Mutex<Vec<ClosedCallback>>,
    tags: Mutex<http::Extensions>,
    /// Rooms this connection is in. Kept by the owner; its lock also orders joins
    /// against close (see the invariants above).
    rooms: Mutex<Vec<Arc<str>>>,
    pub(super) dropped: AtomicU64,
    /// Last: never touched by a fan-out.
    pub(super) origin: Origin,
}

impl Connection {
    /// A connection its owner keeps, from `origin`.
    pub(crate) fn with_origin(
        owner: Arc<dyn Owner>,
        config: ConnectionConfig,
        origin: Origin,
    ) -> Connection {
        Connection {
            inner: Arc::new(Inner {
                id: ConnectionId::random(),
                owner,
                outbox: Mutex::new(Outbox::new(&config)),
                adaptive: config.adaptive,
                window_us: u32::try_from(config.batch_window.as_micros()).unwrap_or(u32::MAX),
                abort: config.abort,
                keep_alive: config.keep_alive,
                closed: AtomicBool::new(false),
                settled: AtomicBool::new(false),
                closed_notify: Notify::new(),
                callbacks: Mutex::new(Vec::new()),
                tags: Mutex::new(http::Extensions::new()),
                rooms: Mutex::new(Vec::new()),
                dropped: AtomicU64::new(0),
                queued_behind: AtomicBool::new(false),
                origin,
            }),
        }
    }

    /// The connection's unique id.
    pub fn id(&self) -> ConnectionId {
        self.inner.id
    }

    /// Read the first cache line of the connection's memory (the flag before the lock),
    /// and nothing else: a fan-out reads a group of connections' lines this way before
    /// it locks any of them, so that their misses overlap (`hub/fanout.rs`).
    pub(crate) fn touch(&self) {
        std::hint::black_box(self.inner.queued_behind.load(Ordering::Relaxed));
    }

    /// Who keeps this connection (its hub).
    pub(crate) fn owner(&self) -> &Arc<dyn Owner> {
        &self.inner.owner
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

    /// The room list, for the owner: join and leave update it under this lock.
    pub(crate) fn rooms_lock(&self) -> &Mutex<Vec<Arc<str>>> {
        &self.inner.rooms
    }

    /// How often its hub pings it when idle (`None`: never).
    pub(crate) fn keep_alive(&self) -> Option<Duration> {
        self.inner.keep_alive
    }

    /// How long events gather before the write after one of `frames` frames taken after
    /// fan-out `since` (the task's or a direct one), by this stream's batching settings;
    /// `wide`: frames of a wide fan-out were among them (it takes turns, `pace.rs`).
    pub(super) fn gather(
        &self,
        clock: &Clock,
        since: u64,
        frames: usize,
        wide: bool,
    ) -> Option<Duration> {
        let window = Duration::from_micros(u64::from(self.inner.window_us));
        pace::gather(clock, since, window, self.inner.adaptive, frames, wide)
    }

    /// The rooms this connection is in, as its owner names them.
    pub(crate) fn rooms_snapshot(&self) -> Vec<Arc<str>> {
        lock(&self.inner.rooms).clone()
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

    /// Bytes queued for this client and not yet written out: how far behind it is (at
    /// most the outbox limit, or one larger frame). On hyper's path (TLS, HTTP/2) this
    /// includes what hyper took and has not written yet.
    pub fn queued_bytes(&self) -> usize {
        let out = lock(&self.inner.outbox);
        out.bytes + out.in_flight
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

    /// The `Close` policy's end for a connection whose outbox overflowed. Called once
    /// the caller holds no hub lock (closing takes room locks).
    pub(crate) fn close_overflowed(&self) {
        warn_limited!(conn = %self.id(), "slow consumer: outbox full, closing connection");
        self.inner.owner.metrics().slow_closes.inc();
        self.abort();
    }

    /// Close at once, dropping what is queued and the transport under it.
    pub(crate) fn abort(&self) {
        self.close_with(OutboxState::Aborted);
        if let Some(a) = &self.inner.abort {
            a.abort();
        }
    }

    pub(super) fn close_with(&self, state: OutboxState) {
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
        self.inner.owner.forget(self);
        let callbacks = std::mem::take(&mut *lock(&self.inner.callbacks));
        for cb in callbacks {
            if std::panic::catch_unwind(AssertUnwindSafe(|| cb(self))).is_err() {
                tracing::error!(conn = %self.id(), "a closed callback panicked");
            }
        }
        self.inner.settled.store(true, Ordering::Release);
        self.inner.closed_notify.notify_waiters();
    }
}

/// Where the connection came from and who it is (`origin.rs`), for observers.
impl Connection {
    /// The client's address, when the server knew it (see [`crate::PeerAddr`]).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.inner.origin.peer
    }

    /// The client's address: the peer's, or, when the peer is a trusted proxy
    /// ([`crate::SseOptions::trusted_proxies`]), the one it forwards for.
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.inner.origin.client
    }

    /// When the stream opened.
    pub fn connected_at(&self) -> SystemTime {
        self.inner.origin.since
    }

    /// What carries the stream: the bare socket, hyper's HTTP/1 or HTTP/2.
    pub fn transport(&self) -> TransportKind {
        self.inner.origin.transport
    }

    /// Name who is on the other end (a user id, a device): shown by `GET /rooms/{room}`,
    /// the dashboard and presence events. The application sets it, typically in
    /// `on_connect` from what `authorize` checked.
    ///
    /// ```
    /// use ssehub::SseOptions;
    ///
    /// let options = SseOptions::new().on_connect(|conn, ctx| async move {
    ///     if let Some(user) = ctx.query("user") {
    ///         conn.set_identity(user);
    ///     }
    /// });
    /// ```
    pub fn set_identity(&self, identity: impl Into<String>) {
        let identity: String = identity.into();
        *lock(&self.inner.origin.identity) = Some(Arc::from(identity));
    }

    /// Whether a private update of `topics` may reach this stream (its audience accepts
    /// one of them). Read by the fan-out for private updates only.
    pub(crate) fn receives_private<S: AsRef<str>>(&self, topics: &[S]) -> bool {
        let Some(audience) = &self.inner.origin.audience else {
            return false;
        };
        topics.iter().any(|t| audience.accepts(t.as_ref()))
    }

    /// The identity the application gave this connection, if any.
    pub fn identity(&self) -> Option<Arc<str>> {
        lock(&self.inner.origin.identity).clone()
    }
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
mod layout {
    use super::*;
    use crate::connection::outbox::Outbox;
    use std::mem::offset_of;

    /// What a fan-out's `push` and a direct write's release read and write, counted from
    /// the start of the connection's allocation (the `Arc`'s two counts first): the
    /// flag, the batching settings, the lock and the first fields of the outbox, up to
    /// `next_write`. 128 bytes are two cache lines when the allocation starts one, three
    /// at most otherwise; moving a field past them costs a miss per recipient per event
    /// at light load (BENCHMARKS.md).
    #[test]
    fn what_a_fan_out_touches_fits_in_128_bytes() {
        let hub = crate::Hub::new();
        let conn = hub.connect(ConnectionConfig::for_tests());
        let inner = Arc::as_ptr(&conn.inner) as usize;
        let outbox = &*lock(&conn.inner.outbox) as *const Outbox as usize;
        let counts = 2 * size_of::<usize>();
        let end = counts + (outbox - inner) + offset_of!(Outbox, next_write) + 16;
        assert!(end <= 128, "the hot part ends at byte {end}");
        assert!(offset_of!(Inner, queued_behind) < offset_of!(Inner, outbox));
        assert!(offset_of!(Inner, window_us) < offset_of!(Inner, outbox));
        for (name, at) in [
            ("state", offset_of!(Outbox, state)),
            ("bytes", offset_of!(Outbox, bytes)),
            ("in_flight", offset_of!(Outbox, in_flight)),
            ("limit", offset_of!(Outbox, limit)),
            ("queue", offset_of!(Outbox, queue)),
            ("socket", offset_of!(Outbox, socket)),
        ] {
            assert!(
                at < offset_of!(Outbox, next_write),
                "{name} is past the hot part"
            );
        }
    }
}
