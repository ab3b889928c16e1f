//! The hub: rooms, membership, the connection registry, publishing and statistics.
//!
//! [`Hub`] is the facade (and the one door to a room: [`Hub::join`], [`Hub::leave`]);
//! behind it, one concept per file:
//! - `config.rs`: [`HubConfig`]; `publish_error.rs`: why a publication is refused;
//! - `broadcast.rs`: [`Broadcast`] (made by [`Hub::to`]): its rooms ([`IntoRooms`]),
//!   each named once, and its checks;
//! - `rooms.rs`: the room table and the dead-room rule;
//! - `fanout.rs`: queueing one frame to the members of some rooms, and counting it;
//! - `backplane.rs`: the seam between publishing and delivering locally, and the
//!   in-process backplane; `redis.rs` the Redis one (feature `redis`);
//! - `history.rs`: one hub-wide log of recorded events and a ring per room, replay;
//!   on disk with [`HubConfig::history_dir`] (`history/store.rs`, `history/restore.rs`);
//! - `topics.rs`: what a dialect built on topics asks of the hub (long names, pattern
//!   rooms, private publications, URN ids);
//! - `presence.rs`: `ssehub.join` / `ssehub.leave` for the rooms that opt in;
//! - `keepalive.rs`: one sweep per keep-alive interval pings idle streams;
//! - `observe.rs`: what watchers see ([`RoomInfo`], [`MemberInfo`], refusal counts).
//!
//! An event's way: [`Broadcast::publish`] hands it to the backplane, which gives it its
//! place (a number, the history) and hands it, encoded once, to the local fan-out, which
//! queues the same bytes to every member's outbox (and writes idle streams directly,
//! after releasing the locks). The caller never waits on a socket.
//!
//! ## Concurrency
//! Lock order, always: the history's mutex -> a connection's room list -> the pattern
//! rooms -> the room table -> one room's members -> one connection's outbox. A
//! connection closed by the slow-consumer policy during a fan-out is closed after the
//! room lock is released, because closing takes it again.
//!
//! ## Invariants
//! - A closed connection cannot join: join checks `is_closed` under the connection's
//!   room-list lock, and close sets the flag before it takes that lock to leave rooms.
//! - A connection's room list and the rooms' member sets agree: both change under the
//!   connection's room-list lock.

mod backplane;
mod broadcast;
mod config;
mod fanout;
mod history;
mod keepalive;
mod observe;
mod presence;
mod publish_error;
#[cfg(feature = "redis")]
mod redis;
mod rooms;
pub(crate) mod topics;

#[cfg(feature = "redis")]
pub use self::redis::{RedisConfig, RedisError};
pub use backplane::{BackplaneStatus, Published};
pub use broadcast::{Broadcast, IntoRooms};
pub use config::{HubConfig, DEFAULT_MAX_EVENT_BYTES};
pub use history::{Fsync, GapReason, HistoryConfig, HistoryStoreError};
pub use observe::{MemberInfo, RoomInfo};
pub use publish_error::PublishError;
pub(crate) use rooms::validate_room_within;
pub use rooms::{validate_room, JoinError, MAX_ROOM_NAME_LEN, ROOM_ALL};

pub(crate) use history::Resume;

pub(crate) use rooms::check_room;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

use self::backplane::{Backplane, InProcess};
use self::fanout::Local;
use self::presence::Presence;
use self::rooms::Rooms;
use crate::connection::{Clock, Connection, ConnectionConfig, ConnectionId, Origin, Owner};
use crate::decode::{Decoder, Event, Item};
use crate::metrics::{HubStats, Metrics};
use crate::sync::lock;

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
/// let published = hub.to(ssehub::ROOM_ALL).publish(&Message::new("server is alive"))?;
/// assert_eq!(published.delivered, 0);
/// # Ok::<(), ssehub::PublishError>(())
/// ```
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    config: HubConfig,
    /// The room table and the counters, shared with the backplane.
    local: Arc<Local>,
    connections: Mutex<HashMap<ConnectionId, Connection>>,
    backplane: Box<dyn Backplane>,
    presence: Presence,
    /// The keep-alive sweeps running, one per interval (`keepalive.rs`).
    sweeps: keepalive::Sweeps,
    /// The hub itself, for what a connection's close publishes (presence): the
    /// connection holds its hub only as its `Owner`, which names no hub.
    me: Weak<HubInner>,
}

impl HubInner {
    fn new(
        config: HubConfig,
        local: Arc<Local>,
        backplane: Box<dyn Backplane>,
        me: Weak<HubInner>,
    ) -> HubInner {
        HubInner {
            backplane,
            presence: Presence::new(config.presence_rules().clone()),
            config,
            local,
            connections: Mutex::default(),
            sweeps: keepalive::Sweeps::default(),
            me,
        }
    }

    fn rooms(&self) -> &Rooms {
        &self.local.rooms
    }

    /// Take `conn` out of room `name`, telling the backplane (and the patterns) when the
    /// room empties.
    fn remove_member(&self, name: &str, conn: &Connection) {
        if self.local.rooms.remove(name, conn.id()) {
            self.backplane.room_removed(name);
            if let Some(patterns) = &self.local.patterns {
                patterns.room_removed(name);
            }
        }
    }
}

impl Owner for HubInner {
    /// Called exactly once when a connection closes: leave every room, deregister.
    fn forget(&self, conn: &Connection) {
        let rooms = std::mem::take(&mut *lock(conn.rooms_lock()));
        for name in &rooms {
            self.remove_member(name, conn);
        }
        if let Some(inner) = self.me.upgrade().filter(|_| self.presence.any()) {
            let hub = Hub { inner };
            rooms
                .iter()
                .for_each(|name| self.presence.left(&hub, name, conn));
        }
        lock(&self.connections).remove(&conn.id());
        self.local.metrics.open[conn.transport().index()].dec();
    }

    fn metrics(&self) -> &Metrics {
        &self.local.metrics
    }

    fn clock(&self) -> &Arc<Clock> {
        &self.local.clock
    }

    fn max_event_bytes(&self) -> usize {
        self.config.event_bytes()
    }
}

impl Hub {
    /// A new, empty hub with the default configuration.
    pub fn new() -> Hub {
        Hub::with_config(HubConfig::default())
    }

    /// A new hub with this configuration.
    ///
    /// # Panics
    /// With [`HubConfig::history_dir`], if the history cannot be opened: use
    /// [`Hub::open`] to get the reason as an error instead.
    pub fn with_config(config: HubConfig) -> Hub {
        Hub::open(config).unwrap_or_else(|e| panic!("Hub::with_config: {e}"))
    }

    /// A new hub with this configuration; with [`HubConfig::history_dir`], its history
    /// read back from disk (the rings, the epoch and the sequence of the last run, under
    /// today's limits; a torn tail is cut and reported). Without it, the same as
    /// [`Hub::with_config`], and never an error.
    pub fn open(config: HubConfig) -> Result<Hub, HistoryStoreError> {
        let local = Arc::new(Local::new(config.topic_rules().patterns.clone()));
        let backplane = InProcess::open(local.clone(), config.history_rules().clone())?;
        Ok(Hub::with_backplane(config, local, Box::new(backplane)))
    }

    /// A hub shared by every node connected to the same Redis (and key prefix): a
    /// publication on any node reaches the members of its rooms on every node, in one
    /// order; the history lives in Redis, so a client resumes on any node. See the
    /// README's "Many nodes" for what happens when Redis goes away.
    #[cfg(feature = "redis")]
    pub async fn with_redis(config: HubConfig, redis: RedisConfig) -> Result<Hub, RedisError> {
        let local = Arc::new(Local::new(config.topic_rules().patterns.clone()));
        let backplane = self::redis::RedisBackplane::connect(
            local.clone(),
            config.history_rules().clone(),
            redis,
        )
        .await?;
        Ok(Hub::with_backplane(config, local, Box::new(backplane)))
    }

    /// A hub whose publications go through `backplane`, which delivers through `local`.
    pub(crate) fn with_backplane(
        config: HubConfig,
        local: Arc<Local>,
        backplane: Box<dyn Backplane>,
    ) -> Hub {
        Hub {
            inner: Arc::new_cyclic(|me| HubInner::new(config, local, backplane, me.clone())),
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
        self.inner.local.metrics.open[transport.index()].inc();
        lock(&self.inner.connections).insert(conn.id(), conn.clone());
        self.inner.local.metrics.connected_total.inc();
        if let Some(interval) = conn.keep_alive() {
            self.inner.sweeps.ensure(&self.inner.me, interval);
        }
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
        validate_room_within(room, self.inner.config.max_room_name())?;
        let max = self.inner.config.rooms_per_connection();
        if rooms_of_conn.len() >= max {
            return Err(JoinError::TooManyRooms(max));
        }
        let (name, first) = self.inner.rooms().add(room, conn);
        if first {
            self.inner.backplane.room_added(&name);
            if let Some(patterns) = &self.inner.local.patterns {
                patterns.room_added(&name);
            }
        }
        rooms_of_conn.push(name);
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
        self.inner.remove_member(&name, conn);
        drop(rooms_of_conn);
        self.inner.presence.left(self, room, conn);
        true
    }

    /// A publication to `rooms`: one name, or several (see [`IntoRooms`]). Finish it
    /// with [`Broadcast::publish`]; before that, [`Broadcast::except`] skips a
    /// connection and [`Broadcast::unique`] delivers once to a member of several rooms.
    ///
    /// ```
    /// # fn f(hub: &ssehub::Hub, sender: &ssehub::Connection) -> Result<(), ssehub::PublishError> {
    /// let published = hub.to("chat").except(sender).publish(&ssehub::Message::new("hi"))?;
    /// println!("reached {} connections", published.delivered);
    /// # Ok(()) }
    /// ```
    #[doc(alias = "broadcast")]
    #[doc(alias = "broadcast_many")]
    pub fn to(&self, rooms: impl IntoRooms) -> Broadcast<'_> {
        Broadcast::new(self, rooms)
    }

    /// Queue an encoded frame to every connection the hub has, whatever its rooms (a
    /// shutdown notice).
    pub(crate) fn send_to_all(&self, frame: &Bytes) -> usize {
        fanout::to_each(&self.inner.local, &self.connections(), frame, false)
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
        self.inner.rooms().count()
    }

    /// Names of the rooms that have at least one member.
    pub fn room_names(&self) -> Vec<String> {
        self.inner.rooms().names()
    }

    /// Number of members of `room` (0 when it does not exist).
    pub fn room_size(&self, room: &str) -> usize {
        self.inner
            .rooms()
            .get(room)
            .map_or(0, |r| r.members().conns.len())
    }

    /// The members of `room`.
    pub fn members(&self, room: &str) -> Vec<Connection> {
        self.inner
            .rooms()
            .get(room)
            .map_or_else(Vec::new, |r| r.members().conns.values().cloned().collect())
    }

    /// Member count of every room.
    pub fn room_sizes(&self) -> HashMap<String, usize> {
        self.inner.rooms().sizes()
    }

    /// The events `room`'s history holds, oldest first, as a client would decode them
    /// (for an application that serves its own backlog). Empty when it keeps none.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = ssehub::Hub::new();
    /// let m = ssehub::Message::builder().event("headline").data("hello").build()?;
    /// hub.to("news").publish(&m)?;
    /// let kept = hub.history("news").await;
    /// assert_eq!(kept[0].data, "hello");
    /// assert_eq!(kept[0].event, "headline");
    /// # Ok(()) }
    /// ```
    pub async fn history(&self, room: &str) -> Vec<Event> {
        let mut decoder = Decoder::new();
        let mut events = Vec::new();
        for frame in self.inner.backplane.history(room.to_owned()).await {
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
    pub(crate) async fn resume(&self, conn: &Connection, resume: Resume) {
        let resumed = self.inner.backplane.resume(conn.clone(), resume).await;
        let m = &self.inner.local.metrics;
        m.replays.inc();
        m.replayed_events.add(resumed.replayed as u64);
        if let Some(reason) = resumed.gap {
            m.gaps[reason.index()].inc();
        }
    }

    /// Whether the history can honour `cursor` for a stream in `rooms`: it points into
    /// the history and nothing after it was dropped (a topic dialect's answer header).
    #[cfg_attr(not(feature = "mercure"), allow(dead_code))]
    pub(crate) async fn holds(&self, cursor: &str, rooms: &[String]) -> bool {
        let rooms: Vec<Arc<str>> = rooms.iter().map(|r| Arc::from(r.as_str())).collect();
        self.inner.backplane.holds(cursor.to_owned(), rooms).await
    }

    /// How the backplane is doing (in-process: always connected).
    pub fn backplane_status(&self) -> BackplaneStatus {
        self.inner.backplane.status()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> HubStats {
        let history = self.inner.backplane.history_size();
        let metrics = &self.inner.local.metrics;
        let mut stats = metrics.snapshot(self.connection_count(), self.room_count());
        stats.history_rooms = history.rooms;
        stats.history_events = history.events;
        stats.history_bytes = history.bytes;
        stats.outbox_bytes = self.outbox_bytes();
        for reason in GapReason::ALL {
            let n = metrics.gaps[reason.index()].get();
            stats.gaps.insert(reason.as_str(), n);
        }
        stats
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
