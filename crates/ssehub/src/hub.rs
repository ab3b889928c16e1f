//! The hub: rooms, membership, the connection registry, publishing and statistics.
//!
//! [`Hub`] is the facade; behind it, one concept per file:
//! - `rooms.rs`: the room table and the dead-room rule;
//! - `fanout.rs`: queueing one frame to the members of some rooms;
//! - `backplane.rs`: the seam between publishing and delivering locally.
//!
//! An event's way: [`Broadcast::send`] encodes the message once, the backplane gives the
//! publication its place and hands it to the local fan-out, which queues the same bytes
//! to every member's outbox (and writes idle streams directly, after releasing the room
//! locks). The caller never waits on a socket.
//!
//! ## Concurrency
//! Lock order, always: a connection's room list -> the room table -> one room's members
//! -> one connection's outbox. A connection closed by the slow-consumer policy during a
//! fan-out is closed after the room lock is released, because closing takes it again.
//!
//! ## Invariants
//! - A closed connection cannot join: join checks `is_closed` under the connection's
//!   room-list lock, and close sets the flag before it takes that lock to leave rooms.
//! - A connection's room list and the rooms' member sets agree: both change under the
//!   connection's room-list lock.

mod backplane;
mod fanout;
mod history;
mod observe;
mod presence;
mod rooms;

pub use backplane::Published;
pub use history::{GapReason, HistoryConfig, PublishError};
pub use observe::{MemberInfo, RoomInfo};
pub use rooms::{validate_room, JoinError, MAX_ROOM_NAME_LEN, ROOM_ALL};

pub(crate) use history::Resume;

pub(crate) use rooms::check_room;

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use self::backplane::{Backplane, InProcess};
use self::fanout::Publication;
use self::history::HistoryRules;
use self::presence::{Presence, PresenceRules};
use self::rooms::Rooms;
use crate::connection::{Connection, ConnectionConfig, ConnectionId, Origin, Owner};
use crate::decode::{Decoder, Event, Item};
use crate::frame::{FrameError, Message};
use crate::metrics::{HubStats, Metrics, Sample};
use crate::selector::RoomSelector;
use crate::sync::lock;

/// What a hub enforces and keeps: limits per connection, and which rooms keep history.
///
/// By default every room keeps a history ([`HistoryConfig::default`]: 1,000 events,
/// 1 MiB, 10 minutes), all history together at most 64 MiB, and a stream that resumes
/// from a `Last-Event-ID` gets what it missed.
///
/// ```
/// use ssehub::{HistoryConfig, HubConfig};
///
/// let config = HubConfig::default()
///     .max_rooms_per_connection(16)
///     .room_history("cursors.*".parse()?, None) // live positions: no history
///     .room_history("audit".parse()?, Some(HistoryConfig::default().max_events(100_000)));
/// let hub = ssehub::Hub::with_config(config);
/// # Ok::<(), ssehub::SelectorError>(())
/// ```
#[derive(Debug, Clone)]
pub struct HubConfig {
    max_rooms_per_connection: usize,
    history: HistoryRules,
    presence: PresenceRules,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            max_rooms_per_connection: 256,
            history: HistoryRules::default(),
            presence: PresenceRules::default(),
        }
    }
}

impl HubConfig {
    /// The most rooms one connection may be in (256 by default).
    pub fn max_rooms_per_connection(mut self, n: usize) -> Self {
        self.max_rooms_per_connection = n;
        self
    }

    /// The history every room keeps unless a [`HubConfig::room_history`] rule says
    /// otherwise; `None`: no history (events keep the caller's id, or none).
    pub fn history(mut self, history: Option<HistoryConfig>) -> Self {
        self.history.default = history;
        self
    }

    /// The history of the rooms `selector` matches (`None`: none). Rules are tried in the
    /// order they were added; the first that matches wins.
    pub fn room_history(mut self, selector: RoomSelector, history: Option<HistoryConfig>) -> Self {
        self.history.overrides.push((selector, history));
        self
    }

    /// The most bytes all rooms' history may hold together (64 MiB by default); past it
    /// the oldest events go first, whatever their room.
    pub fn history_total_bytes(mut self, bytes: usize) -> Self {
        self.history.total_bytes = bytes.max(1);
        self
    }

    /// The event type of the gap signal (`ssehub.gap` by default).
    pub fn gap_event(mut self, name: impl Into<String>) -> Self {
        self.history.gap_event = name.into();
        self
    }

    /// The most rooms one connection may be in.
    pub fn rooms_per_connection(&self) -> usize {
        self.max_rooms_per_connection
    }

    /// Whether any room keeps history.
    pub fn keeps_history(&self) -> bool {
        self.history.any()
    }

    /// The history `room` keeps under these rules, if any.
    pub fn history_of(&self, room: &str) -> Option<HistoryConfig> {
        self.history.for_room(room)
    }
}

/// Rooms and connections, shared by every clone.
///
/// Create one and keep a clone wherever you need to broadcast: before the server starts,
/// inside handlers, from background tasks.
///
/// ```
/// use ssehub::{Hub, Message};
///
/// let hub = Hub::new();
/// // Nobody is connected yet: the broadcast reaches no one.
/// assert_eq!(hub.broadcast(ssehub::ROOM_ALL, &Message::new("server is alive")), 0);
/// ```
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    config: HubConfig,
    rooms: Rooms,
    connections: Mutex<HashMap<ConnectionId, Connection>>,
    metrics: Metrics,
    backplane: Box<dyn Backplane>,
    presence: Presence,
}

impl HubInner {
    fn new(config: HubConfig) -> HubInner {
        HubInner {
            backplane: Box::new(InProcess::new(config.history.clone())),
            presence: Presence::new(config.presence.clone()),
            config,
            rooms: Rooms::default(),
            connections: Mutex::default(),
            metrics: Metrics::default(),
        }
    }
}

impl HubInner {
    /// Count one publication (and time it, if it was `sample`d).
    fn count(&self, published: &Published, sample: Option<Sample>) {
        self.metrics.published.inc();
        self.metrics.deliveries.add(published.delivered as u64);
        self.metrics.delivered_bytes.add(published.bytes);
        if let Some(sample) = sample {
            self.metrics.fanout_seconds.observe(sample.at.elapsed());
        }
    }
}

impl Owner for HubInner {
    /// Called exactly once when a connection closes: leave every room, deregister.
    fn forget(&self, conn: &Connection) {
        let rooms = std::mem::take(&mut *lock(conn.rooms_lock()));
        for name in &rooms {
            self.rooms.remove(name, conn.id());
        }
        if self.presence.any() {
            let hub = conn.hub();
            rooms
                .iter()
                .for_each(|name| self.presence.left(&hub, name, conn));
        }
        lock(&self.connections).remove(&conn.id());
        self.metrics.open[conn.transport().index()].dec();
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

impl Hub {
    /// A new, empty hub with the default configuration.
    pub fn new() -> Hub {
        Hub::with_config(HubConfig::default())
    }

    /// A new, empty hub with this configuration.
    pub fn with_config(config: HubConfig) -> Hub {
        Hub {
            inner: Arc::new(HubInner::new(config)),
        }
    }

    /// The configuration of this hub.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// Whether `self` and `other` are clones of one hub.
    pub fn same_as(&self, other: &Hub) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Whether this hub keeps `conn`.
    fn keeps(&self, conn: &Connection) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(conn.owner()), Arc::as_ptr(&self.inner))
    }

    /// Create and register a connection of no known origin (for tests).
    #[cfg(test)]
    pub(crate) fn connect(&self, config: ConnectionConfig) -> Connection {
        self.connect_from(config, Origin::default())
    }

    /// Create and register a connection (the endpoint does this for each stream).
    pub(crate) fn connect_from(&self, config: ConnectionConfig, origin: Origin) -> Connection {
        let transport = origin.transport;
        let conn = Connection::with_origin(self.inner.clone(), config, origin);
        self.inner.metrics.open[transport.index()].inc();
        lock(&self.inner.connections).insert(conn.id(), conn.clone());
        self.inner.metrics.connected_total.inc();
        conn
    }

    /// Put `conn` in `room` (created on first join). Returns `false` if it already was.
    /// Fails for a closed connection, an invalid name (see [`validate_room`]) or past
    /// [`HubConfig::max_rooms_per_connection`].
    pub fn join(&self, room: &str, conn: &Connection) -> Result<bool, JoinError> {
        if !self.keeps(conn) {
            return Err(JoinError::OtherHub);
        }
        let mut rooms_of_conn = lock(conn.rooms_lock());
        if conn.is_closed() {
            return Err(JoinError::Closed);
        }
        if rooms_of_conn.iter().any(|r| &**r == room) {
            return Ok(false);
        }
        validate_room(room)?;
        let max = self.inner.config.max_rooms_per_connection;
        if rooms_of_conn.len() >= max {
            return Err(JoinError::TooManyRooms(max));
        }
        rooms_of_conn.push(self.inner.rooms.add(room, conn));
        drop(rooms_of_conn);
        self.inner.presence.joined(self, room, conn);
        Ok(true)
    }

    /// Take `conn` out of `room`. Returns `false` if it was not in it. Idempotent.
    pub fn leave(&self, room: &str, conn: &Connection) -> bool {
        let mut rooms_of_conn = lock(conn.rooms_lock());
        let Some(pos) = rooms_of_conn.iter().position(|r| &**r == room) else {
            return false;
        };
        let name = rooms_of_conn.swap_remove(pos);
        self.inner.rooms.remove(&name, conn.id());
        drop(rooms_of_conn);
        self.inner.presence.left(self, room, conn);
        true
    }

    /// Send `message` to every member of `room`. Returns how many connections it reached.
    ///
    /// The message is encoded once; every member's outbox gets the same shared bytes.
    pub fn broadcast(&self, room: &str, message: &Message) -> usize {
        self.to(room).send(message)
    }

    /// Send an event named `event` (empty: `message`) with `data` to every member of
    /// `room`: [`Connection::send_event`] for a room. Returns how many it reached.
    pub fn broadcast_event(
        &self,
        room: &str,
        event: &str,
        data: &str,
    ) -> Result<usize, FrameError> {
        let message = Message::builder().event(event).data(data).build()?;
        Ok(self.broadcast(room, &message))
    }

    /// Send `message` to every member of each room. As in SimpleW, a connection in several
    /// of these rooms receives it once per room; see [`Hub::broadcast_many_unique`].
    pub fn broadcast_many<I, S>(&self, rooms: I, message: &Message) -> usize
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.to_many(rooms).send(message)
    }

    /// Like [`Hub::broadcast_many`], but a connection in several rooms receives it once.
    pub fn broadcast_many_unique<I, S>(&self, rooms: I, message: &Message) -> usize
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.to_many(rooms).unique().send(message)
    }

    /// A broadcast to one room, with options.
    ///
    /// ```
    /// # fn f(hub: &ssehub::Hub, sender: &ssehub::Connection) {
    /// let reached = hub.to("chat").except(sender).send(&ssehub::Message::new("hi"));
    /// # }
    /// ```
    pub fn to(&self, room: &str) -> Broadcast<'_> {
        self.to_many([room])
    }

    /// A broadcast to several rooms, with options.
    pub fn to_many<I, S>(&self, rooms: I) -> Broadcast<'_>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Broadcast {
            hub: self,
            rooms: rooms.into_iter().map(|r| r.as_ref().to_owned()).collect(),
            except: None,
            unique: false,
        }
    }

    /// Queue an encoded frame to every connection the hub has (used by keep-alive and
    /// shutdown). `only_idle` skips connections that had traffic since the last call.
    pub(crate) fn send_to_all(&self, frame: &Bytes, only_idle: bool) -> usize {
        fanout::to_each(&self.connections(), frame, only_idle)
    }

    /// Queue `message` to every open connection, whatever its rooms (a shutdown notice,
    /// say). Returns how many it reached.
    pub fn send_to_everyone(&self, message: &Message) -> usize {
        self.send_to_all(&message.encode(), false)
    }

    /// Close every connection (each still flushes what it has queued).
    pub fn close_all(&self) {
        self.connections().iter().for_each(Connection::close);
    }

    /// Every open connection.
    pub(crate) fn connections(&self) -> Vec<Connection> {
        lock(&self.inner.connections).values().cloned().collect()
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        lock(&self.inner.connections).len()
    }

    /// The connection with this id, if it is open.
    pub fn connection(&self, id: ConnectionId) -> Option<Connection> {
        lock(&self.inner.connections).get(&id).cloned()
    }

    /// Rooms that have at least one member.
    pub fn room_count(&self) -> usize {
        self.inner.rooms.count()
    }

    /// Names of the rooms that have at least one member.
    pub fn room_names(&self) -> Vec<String> {
        self.inner.rooms.names()
    }

    /// Number of members of `room` (0 when it does not exist).
    pub fn room_size(&self, room: &str) -> usize {
        self.inner
            .rooms
            .get(room)
            .map_or(0, |r| r.members().conns.len())
    }

    /// The members of `room`.
    pub fn members(&self, room: &str) -> Vec<Connection> {
        self.inner
            .rooms
            .get(room)
            .map_or_else(Vec::new, |r| r.members().conns.values().cloned().collect())
    }

    /// The rooms `conn` is in.
    pub fn rooms_of(&self, conn: &Connection) -> Vec<String> {
        conn.rooms()
    }

    /// Member count of every room.
    pub fn room_sizes(&self) -> HashMap<String, usize> {
        self.inner.rooms.sizes()
    }

    /// The events `room`'s history holds, oldest first, as a client would decode them
    /// (for an application that serves its own backlog). Empty when it keeps none.
    ///
    /// ```
    /// let hub = ssehub::Hub::new();
    /// hub.broadcast_event("news", "headline", "hello")?;
    /// let kept = hub.history("news");
    /// assert_eq!(kept[0].data, "hello");
    /// assert_eq!(kept[0].event, "headline");
    /// # Ok::<(), ssehub::FrameError>(())
    /// ```
    pub fn history(&self, room: &str) -> Vec<Event> {
        let mut decoder = Decoder::new();
        let mut events = Vec::new();
        for frame in self.inner.backplane.history(room) {
            decoder.feed(&frame);
            while let Ok(Some(item)) = decoder.next_item() {
                if let Item::Event(e) = item {
                    events.push(e);
                }
            }
        }
        events
    }

    /// Queue to `conn` what it missed since `resume` in the rooms it is in now, then let
    /// it have its rooms' events live (see `backplane.rs`).
    pub(crate) fn resume(&self, conn: &Connection, resume: &Resume) {
        let resumed = self.inner.backplane.resume(conn, resume);
        let m = &self.inner.metrics;
        m.replays.inc();
        m.replayed_events.add(resumed.replayed as u64);
        if let Some(reason) = resumed.gap {
            m.gaps[reason.index()].inc();
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> HubStats {
        let history = self.inner.backplane.history_size();
        let mut stats = self
            .inner
            .metrics
            .snapshot(self.connection_count(), self.room_count());
        stats.history_rooms = history.rooms;
        stats.history_events = history.events;
        stats.history_bytes = history.bytes;
        stats.outbox_bytes = self.outbox_bytes();
        for reason in GapReason::ALL {
            let n = self.inner.metrics.gaps[reason.index()].get();
            stats.gaps.insert(reason.as_str(), n);
        }
        stats
    }
}

/// Room membership from the connection's side.
impl Connection {
    /// The hub this connection belongs to.
    pub fn hub(&self) -> Hub {
        let owner: Arc<dyn Any + Send + Sync> = self.owner().clone();
        Hub {
            inner: owner
                .downcast::<HubInner>()
                .expect("every connection is made by a hub"),
        }
    }

    /// Join a room of this connection's hub. See [`Hub::join`].
    pub fn join(&self, room: &str) -> Result<bool, JoinError> {
        self.hub().join(room, self)
    }

    /// Leave a room of this connection's hub. See [`Hub::leave`].
    pub fn leave(&self, room: &str) -> bool {
        self.hub().leave(room, self)
    }
}

/// A broadcast being set up: which rooms, whom to skip, whether to de-duplicate.
/// Made by [`Hub::to`] and [`Hub::to_many`]; [`Broadcast::send`] performs it.
#[must_use = "a broadcast does nothing until `send` is called"]
pub struct Broadcast<'a> {
    hub: &'a Hub,
    rooms: Vec<String>,
    except: Option<ConnectionId>,
    unique: bool,
}

impl<'a> Broadcast<'a> {
    /// Skip this connection (typically the sender).
    pub fn except(mut self, conn: &Connection) -> Self {
        self.except = Some(conn.id());
        self
    }

    /// Skip the connection with this id.
    pub fn except_id(mut self, id: ConnectionId) -> Self {
        self.except = Some(id);
        self
    }

    /// Deliver at most once to a connection that is in several of the rooms.
    pub fn unique(mut self) -> Self {
        self.unique = true;
        self
    }

    /// Encode `message` once and queue it to every recipient. Returns how many
    /// connections it reached (counting duplicates unless [`Broadcast::unique`]).
    ///
    /// In rooms with history the event is numbered and recorded (see
    /// [`Broadcast::publish`]). If its own id cannot be a cursor there (empty, already
    /// in the history, or reserved), it is still delivered, not recorded, and a warning
    /// is logged; [`Broadcast::publish`] returns the error instead.
    pub fn send(self, message: &Message) -> usize {
        let (inner, publication) = self.into_publication();
        let sample = publication.sample;
        let published = match inner.backplane.publish(&publication, message, &inner.rooms) {
            Ok(published) => published,
            Err(e) => {
                tracing::warn!(error = %e, "event delivered without being recorded in history");
                inner
                    .backplane
                    .publish_unrecorded(&publication, message, &inner.rooms)
            }
        };
        inner.count(&published, sample);
        published.delivered
    }

    /// Publish `message`: in rooms with history, give it its id (unless it has one) and
    /// record it, then queue it to every recipient. Returns its id and how many
    /// connections it reached. An id of its own that cannot be a cursor in a room with
    /// history is an error, and then nothing is sent.
    ///
    /// ```
    /// let hub = ssehub::Hub::new();
    /// let published = hub.to("news").publish(&ssehub::Message::new("hello"))?;
    /// assert!(published.id.is_some()); // `news` keeps history: the event has a cursor
    /// # Ok::<(), ssehub::PublishError>(())
    /// ```
    pub fn publish(self, message: &Message) -> Result<Published, PublishError> {
        let (inner, publication) = self.into_publication();
        let published = inner
            .backplane
            .publish(&publication, message, &inner.rooms)?;
        inner.count(&published, publication.sample);
        Ok(published)
    }

    fn into_publication(self) -> (&'a HubInner, Publication) {
        let publication = Publication {
            rooms: self.rooms,
            except: self.except,
            unique: self.unique,
            sample: crate::metrics::sample(),
        };
        (&self.hub.inner, publication)
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.connection_count())
            .field("rooms", &self.room_count())
            .finish()
    }
}

#[cfg(test)]
mod tests;
