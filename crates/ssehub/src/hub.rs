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
mod rooms;

pub use rooms::{validate_room, JoinError, MAX_ROOM_NAME_LEN, ROOM_ALL};

pub(crate) use rooms::check_room;

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use self::backplane::{Backplane, InProcess};
use self::fanout::Publication;
use self::rooms::Rooms;
use crate::connection::{Connection, ConnectionConfig, ConnectionId, Owner};
use crate::frame::{FrameError, Message};
use crate::metrics::{HubStats, Metrics};
use crate::sync::lock;

/// Limits a hub enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubConfig {
    /// The most rooms one connection may be in (256 by default).
    pub max_rooms_per_connection: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            max_rooms_per_connection: 256,
        }
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
#[derive(Clone, Default)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    config: HubConfig,
    rooms: Rooms,
    connections: Mutex<HashMap<ConnectionId, Connection>>,
    metrics: Metrics,
    backplane: Box<dyn Backplane>,
}

impl Default for HubInner {
    fn default() -> Self {
        HubInner {
            config: HubConfig::default(),
            rooms: Rooms::default(),
            connections: Mutex::default(),
            metrics: Metrics::default(),
            backplane: Box::new(InProcess),
        }
    }
}

impl Owner for HubInner {
    /// Called exactly once when a connection closes: leave every room, deregister.
    fn forget(&self, conn: &Connection) {
        let rooms = std::mem::take(&mut *lock(conn.rooms_lock()));
        for name in rooms {
            self.rooms.remove(&name, conn.id());
        }
        lock(&self.connections).remove(&conn.id());
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

impl Hub {
    /// A new, empty hub.
    pub fn new() -> Hub {
        Hub::default()
    }

    /// A new, empty hub with these limits.
    pub fn with_config(config: HubConfig) -> Hub {
        Hub {
            inner: Arc::new(HubInner {
                config,
                ..HubInner::default()
            }),
        }
    }

    /// The limits this hub enforces.
    pub fn config(&self) -> HubConfig {
        self.inner.config
    }

    /// Whether `self` and `other` are clones of one hub.
    pub fn same_as(&self, other: &Hub) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Whether this hub keeps `conn`.
    fn keeps(&self, conn: &Connection) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(conn.owner()), Arc::as_ptr(&self.inner))
    }

    /// Create and register a connection (the endpoint does this for each stream).
    pub(crate) fn connect(&self, config: ConnectionConfig) -> Connection {
        let conn = Connection::new(self.inner.clone(), config);
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

    /// A snapshot of the counters.
    pub fn stats(&self) -> HubStats {
        self.inner
            .metrics
            .snapshot(self.connection_count(), self.room_count())
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

impl Broadcast<'_> {
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
    pub fn send(self, message: &Message) -> usize {
        self.send_frame(message.encode())
    }

    /// Queue an already encoded frame (crate-internal: only encoded messages and
    /// comments may reach the wire).
    pub(crate) fn send_frame(self, frame: Bytes) -> usize {
        let inner = &self.hub.inner;
        inner.metrics.published.inc();
        let publication = Publication {
            rooms: self.rooms,
            except: self.except,
            unique: self.unique,
            frame,
        };
        let reached = inner.backplane.publish(&publication, &inner.rooms);
        inner.metrics.deliveries.add(reached as u64);
        reached
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
