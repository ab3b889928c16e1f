//! The hub: rooms, membership, broadcast fan-out and statistics.
//!
//! ## Concurrency
//! The room table is an `RwLock<HashMap<name, Arc<Room>>>`; each room guards its own
//! members with its own `RwLock`. A broadcast holds the table lock only long enough to
//! clone the room's `Arc`, then fans out under that room's read lock: broadcasts to
//! different rooms, and concurrent broadcasts to one room, proceed in parallel. Fan-out
//! only enqueues (see [`crate::Connection`]); it never waits on a socket.
//!
//! Lock order, always: connection's room list -> room table -> one room's members ->
//! one connection's outbox. A connection closed by the slow-consumer policy during a
//! fan-out is closed after the room lock is released, because closing takes it again.
//!
//! ## Invariants
//! - A room exists while it has members. The member that empties a room marks it
//!   `dead` under the room's lock before removing it from the table; a join that finds a
//!   dead room replaces it instead of joining it, so no connection is ever stranded in a
//!   room that is no longer in the table.
//! - A closed connection cannot join: join checks `is_closed` under the connection's
//!   room-list lock, and close sets the flag before it takes that lock to leave rooms.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use uuid::Uuid;

use crate::connection::{lock, write_claims, Claim, Connection, ConnectionConfig, Enqueued};
use crate::frame::{FrameError, Message};

/// Why a join failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The connection is closed.
    #[error("connection is closed")]
    Closed,
    /// The connection belongs to another hub.
    #[error("connection belongs to another hub")]
    OtherHub,
    /// The room name is not acceptable; the text says why.
    #[error("invalid room name: {0}")]
    InvalidRoom(&'static str),
    /// The connection is already in as many rooms as the hub allows.
    #[error("too many rooms: a connection may be in at most {0}")]
    TooManyRooms(usize),
}

/// The longest room name, in bytes.
pub const MAX_ROOM_NAME_LEN: usize = 128;

/// Check a room name: 1 to [`MAX_ROOM_NAME_LEN`] bytes, no control characters.
///
/// ```
/// assert!(ssehub::hub::validate_room("news").is_ok());
/// assert!(ssehub::hub::validate_room("").is_err());
/// assert!(ssehub::hub::validate_room("a\nb").is_err());
/// ```
pub fn validate_room(name: &str) -> Result<(), JoinError> {
    if name.is_empty() {
        return Err(JoinError::InvalidRoom("it is empty"));
    }
    if name.len() > MAX_ROOM_NAME_LEN {
        return Err(JoinError::InvalidRoom("it is longer than 128 bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err(JoinError::InvalidRoom("it contains a control character"));
    }
    Ok(())
}

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
/// assert_eq!(hub.broadcast("__all", &Message::new("server is alive")), 0);
/// ```
#[derive(Clone, Default)]
pub struct Hub {
    inner: Arc<HubInner>,
}

#[derive(Default)]
struct HubInner {
    config: HubConfig,
    rooms: RwLock<HashMap<Arc<str>, Arc<Room>>>,
    connections: Mutex<HashMap<Uuid, Connection>>,
    stats: Counters,
}

struct Room {
    name: Arc<str>,
    members: RwLock<Members>,
}

#[derive(Default)]
struct Members {
    conns: HashMap<Uuid, Connection>,
    /// Emptied and being removed from the table: joiners must not use it.
    dead: bool,
}

#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.add(1);
    }
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) published: Counter,
    pub(crate) deliveries: Counter,
    pub(crate) dropped_events: Counter,
    pub(crate) slow_closes: Counter,
    pub(crate) connected_total: Counter,
}

/// A snapshot of the hub's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HubStats {
    /// Open connections.
    pub connections: usize,
    /// Rooms with at least one member.
    pub rooms: usize,
    /// Connections accepted since the hub was created.
    pub connections_total: u64,
    /// Broadcasts made.
    pub events_published: u64,
    /// Frames queued to connections by broadcasts.
    pub deliveries: u64,
    /// Frames dropped by the `DropEvent` slow-consumer policy.
    pub dropped_events: u64,
    /// Connections closed by the `Close` slow-consumer policy.
    pub slow_consumer_closes: u64,
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    /// A new, empty hub.
    pub fn new() -> Hub {
        Hub::default()
    }

    /// Whether `self` and `other` are clones of one hub.
    pub fn same_as(&self, other: &Hub) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
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

    /// Create and register a connection (the endpoint does this for each stream).
    pub(crate) fn connect(&self, config: ConnectionConfig) -> Connection {
        let conn = Connection::new(self.clone(), config);
        lock(&self.inner.connections).insert(conn.id(), conn.clone());
        self.inner.stats.connected_total.inc();
        conn
    }

    pub(crate) fn stats_ref(&self) -> &Counters {
        &self.inner.stats
    }

    /// Put `conn` in `room` (created on first join). Returns `false` if it already was.
    /// Fails for a closed connection, an invalid name (see [`validate_room`]) or past
    /// [`HubConfig::max_rooms_per_connection`].
    pub fn join(&self, room: &str, conn: &Connection) -> Result<bool, JoinError> {
        if !conn.hub().same_as(self) {
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
        let name = loop {
            let room_arc = self.room_or_create(room);
            let mut members = write(&room_arc.members);
            if members.dead {
                // Its last member left a moment ago; it is on its way out of the table.
                drop(members);
                self.remove_room_if_same(&room_arc);
                continue;
            }
            members.conns.insert(conn.id(), conn.clone());
            break room_arc.name.clone();
        };
        rooms_of_conn.push(name);
        Ok(true)
    }

    /// Take `conn` out of `room`. Returns `false` if it was not in it. Idempotent.
    pub fn leave(&self, room: &str, conn: &Connection) -> bool {
        let mut rooms_of_conn = lock(conn.rooms_lock());
        let Some(pos) = rooms_of_conn.iter().position(|r| &**r == room) else {
            return false;
        };
        let name = rooms_of_conn.swap_remove(pos);
        self.remove_member(&name, conn.id());
        true
    }

    /// Called exactly once when a connection closes: leave every room, deregister.
    pub(crate) fn forget(&self, conn: &Connection) {
        let rooms = std::mem::take(&mut *lock(conn.rooms_lock()));
        for name in rooms {
            self.remove_member(&name, conn.id());
        }
        lock(&self.inner.connections).remove(&conn.id());
    }

    fn room_or_create(&self, name: &str) -> Arc<Room> {
        if let Some(r) = read(&self.inner.rooms).get(name) {
            return r.clone();
        }
        let mut rooms = write(&self.inner.rooms);
        rooms
            .entry(Arc::from(name))
            .or_insert_with_key(|k| {
                Arc::new(Room {
                    name: k.clone(),
                    members: RwLock::new(Members::default()),
                })
            })
            .clone()
    }

    fn remove_member(&self, name: &str, id: Uuid) {
        let Some(room) = self.room(name) else { return };
        let mut members = write(&room.members);
        members.conns.remove(&id);
        if members.conns.is_empty() && !members.dead {
            members.dead = true;
            drop(members);
            self.remove_room_if_same(&room);
        }
    }

    fn remove_room_if_same(&self, room: &Arc<Room>) {
        let mut rooms = write(&self.inner.rooms);
        if rooms.get(&room.name).is_some_and(|r| Arc::ptr_eq(r, room)) {
            rooms.remove(&room.name);
        }
    }

    fn room(&self, name: &str) -> Option<Arc<Room>> {
        read(&self.inner.rooms).get(name).cloned()
    }

    /// Send `message` to every member of `room`. Returns how many connections it reached.
    ///
    /// The message is encoded once; every member's outbox gets the same shared bytes.
    pub fn broadcast(&self, room: &str, message: &Message) -> usize {
        self.to(room).send(message)
    }

    /// Send `text` as an event named `event` (`None`: `message`) to every member of `room`.
    pub fn broadcast_text(
        &self,
        room: &str,
        text: &str,
        event: Option<&str>,
    ) -> Result<usize, FrameError> {
        let mut b = Message::builder().data(text);
        if let Some(e) = event {
            b = b.event(e);
        }
        Ok(self.broadcast(room, &b.build()?))
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
        let conns: Vec<Connection> = lock(&self.inner.connections).values().cloned().collect();
        let mut fanout = Fanout::new(conns.len());
        for c in &conns {
            let at = fanout.at;
            let queued = if only_idle {
                c.enqueue_keep_alive(frame.clone(), at)
            } else {
                c.enqueue(frame.clone(), at)
            };
            fanout.tally(c, queued);
        }
        fanout.finish()
    }

    /// Queue `message` to every open connection, whatever its rooms (a shutdown notice,
    /// say). Returns how many it reached.
    pub fn send_to_everyone(&self, message: &Message) -> usize {
        self.send_to_all(&message.encode(), false)
    }

    /// Close every connection (each still flushes what it has queued).
    pub fn close_all(&self) {
        let conns: Vec<Connection> = lock(&self.inner.connections).values().cloned().collect();
        conns.iter().for_each(Connection::close);
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
    pub fn connection(&self, id: Uuid) -> Option<Connection> {
        lock(&self.inner.connections).get(&id).cloned()
    }

    /// Rooms that have at least one member.
    pub fn room_count(&self) -> usize {
        read(&self.inner.rooms).len()
    }

    /// Names of the rooms that have at least one member.
    pub fn room_names(&self) -> Vec<String> {
        read(&self.inner.rooms)
            .keys()
            .map(|k| k.to_string())
            .collect()
    }

    /// Number of members of `room` (0 when it does not exist).
    pub fn room_size(&self, room: &str) -> usize {
        self.room(room).map_or(0, |r| read(&r.members).conns.len())
    }

    /// The members of `room`.
    pub fn members(&self, room: &str) -> Vec<Connection> {
        self.room(room).map_or_else(Vec::new, |r| {
            read(&r.members).conns.values().cloned().collect()
        })
    }

    /// The rooms `conn` is in.
    pub fn rooms_of(&self, conn: &Connection) -> Vec<String> {
        conn.rooms()
    }

    /// Member count of every room.
    pub fn room_sizes(&self) -> HashMap<String, usize> {
        let rooms: Vec<Arc<Room>> = read(&self.inner.rooms).values().cloned().collect();
        rooms
            .iter()
            .map(|r| (r.name.to_string(), read(&r.members).conns.len()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> HubStats {
        let s = &self.inner.stats;
        HubStats {
            connections: self.connection_count(),
            rooms: self.room_count(),
            connections_total: s.connected_total.get(),
            events_published: s.published.get(),
            deliveries: s.deliveries.get(),
            dropped_events: s.dropped_events.get(),
            slow_consumer_closes: s.slow_closes.get(),
        }
    }
}

/// A broadcast being set up: which rooms, whom to skip, whether to de-duplicate.
/// Made by [`Hub::to`] and [`Hub::to_many`]; [`Broadcast::send`] performs it.
#[must_use = "a broadcast does nothing until `send` is called"]
pub struct Broadcast<'a> {
    hub: &'a Hub,
    rooms: Vec<String>,
    except: Option<Uuid>,
    unique: bool,
}

impl Broadcast<'_> {
    /// Skip this connection (typically the sender).
    pub fn except(mut self, conn: &Connection) -> Self {
        self.except = Some(conn.id());
        self
    }

    /// Skip the connection with this id.
    pub fn except_id(mut self, id: Uuid) -> Self {
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
        let hub = self.hub;
        hub.inner.stats.published.inc();
        let mut seen = self.unique.then(HashSet::new);
        let rooms: Vec<Arc<Room>> = self.rooms.iter().filter_map(|n| hub.room(n)).collect();
        let mut fanout = Fanout::new(rooms.iter().map(|r| read(&r.members).conns.len()).sum());
        for room in &rooms {
            let members = read(&room.members);
            for (id, conn) in &members.conns {
                if self.except == Some(*id) {
                    continue;
                }
                if let Some(seen) = &mut seen {
                    if !seen.insert(*id) {
                        continue;
                    }
                }
                fanout.push(conn, &frame);
            }
        }
        let reached = fanout.finish();
        hub.inner.stats.deliveries.add(reached as u64);
        reached
    }
}

/// One fan-out's tally: how many outboxes took the frame, which overflowed under the
/// `Close` policy, and which transports the frame is to be written to directly. Both are
/// dealt with by `finish`, once the caller holds no hub lock (closing a connection takes
/// room locks; a room's lock is not held over socket writes).
struct Fanout {
    reached: usize,
    overflowed: Vec<Connection>,
    claims: Vec<Claim>,
    /// When the fan-out began (one clock read for all recipients), if its recipients
    /// may be written directly.
    at: Option<Instant>,
}

/// The most recipients a fan-out writes directly (see [`crate::Connection`]'s direct
/// writes). A larger one only queues and leaves the writing to the streams' tasks:
/// writing 10,000 sockets at about 6 us each takes longer than a batching window, and
/// under load the tasks' later writes carry more events each (measured in
/// BENCHMARKS.md: half the CPU per delivery at 10,000 subscribers and the highest rate).
const DIRECT_FANOUT: usize = 2048;

impl Fanout {
    fn new(recipients: usize) -> Fanout {
        Fanout {
            reached: 0,
            overflowed: Vec::new(),
            claims: Vec::new(),
            at: (recipients <= DIRECT_FANOUT).then(Instant::now),
        }
    }

    fn push(&mut self, conn: &Connection, frame: &Bytes) {
        self.tally(conn, conn.enqueue(frame.clone(), self.at));
    }

    fn tally(&mut self, conn: &Connection, queued: Enqueued) {
        match queued {
            Enqueued::Yes => self.reached += 1,
            Enqueued::Direct(claim) => {
                self.reached += 1;
                self.claims.push(claim);
            }
            Enqueued::Overflow => self.overflowed.push(conn.clone()),
            Enqueued::Closed | Enqueued::Dropped | Enqueued::Busy => {}
        }
    }

    fn finish(self) -> usize {
        self.overflowed
            .iter()
            .for_each(Connection::close_overflowed);
        write_claims(self.claims);
        self.reached
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
mod tests {
    use super::*;
    use crate::SlowConsumerPolicy;

    fn conn(hub: &Hub) -> Connection {
        hub.connect(ConnectionConfig {
            outbox_limit: 1 << 20,
            policy: SlowConsumerPolicy::Close,
            abort: None,
            batch_window: std::time::Duration::ZERO,
        })
    }

    #[test]
    fn room_names_are_validated() {
        let hub = Hub::new();
        let c = conn(&hub);
        assert!(matches!(hub.join("", &c), Err(JoinError::InvalidRoom(_))));
        assert!(matches!(
            hub.join("a\u{7}", &c),
            Err(JoinError::InvalidRoom(_))
        ));
        let long = "x".repeat(MAX_ROOM_NAME_LEN + 1);
        assert!(matches!(
            hub.join(&long, &c),
            Err(JoinError::InvalidRoom(_))
        ));
        assert_eq!(hub.join(&long[1..], &c), Ok(true));
        assert_eq!(hub.room_count(), 1, "refused joins create no room");
    }

    #[test]
    fn rooms_per_connection_are_capped() {
        let hub = Hub::with_config(HubConfig {
            max_rooms_per_connection: 3,
        });
        let c = conn(&hub);
        for r in ["a", "b", "c"] {
            assert_eq!(hub.join(r, &c), Ok(true));
        }
        assert_eq!(hub.join("a", &c), Ok(false), "re-joining is not a new room");
        assert_eq!(hub.join("d", &c), Err(JoinError::TooManyRooms(3)));
        assert!(hub.leave("a", &c));
        assert_eq!(hub.join("d", &c), Ok(true));
    }

    #[test]
    fn closed_connections_leave_everything_and_cannot_join() {
        let hub = Hub::new();
        let c = conn(&hub);
        hub.join("a", &c).unwrap();
        hub.join("b", &c).unwrap();
        c.close();
        assert_eq!(hub.room_count(), 0);
        assert_eq!(hub.connection_count(), 0);
        assert_eq!(hub.join("a", &c), Err(JoinError::Closed));
        assert_eq!(hub.room_count(), 0);
    }

    #[test]
    fn broadcast_counts_recipients_and_shares_one_encoding() {
        let hub = Hub::new();
        let a = conn(&hub);
        let b = conn(&hub);
        hub.join("r", &a).unwrap();
        hub.join("r", &b).unwrap();
        hub.join("s", &b).unwrap();
        let m = Message::new("x");
        assert_eq!(hub.broadcast("r", &m), 2);
        assert_eq!(hub.to("r").except(&a).send(&m), 1);
        assert_eq!(hub.broadcast_many(["r", "s"], &m), 3);
        assert_eq!(hub.broadcast_many_unique(["r", "s"], &m), 2);
        assert_eq!(hub.broadcast("nobody", &m), 0);
        // Every recipient gets the same allocation, not a copy.
        let waker = futures_util::task::noop_waker();
        for c in [&a, &b] {
            while let Ok(Some(_)) = c.poll_outbox(&waker) {}
        }
        let frame = Message::new("shared").encode();
        assert_eq!(hub.to("r").send_frame(frame.clone()), 2);
        for c in [&a, &b] {
            let got = c.poll_outbox(&waker).unwrap().unwrap();
            assert_eq!(got.as_ptr(), frame.as_ptr());
            assert_eq!(got, frame);
        }
    }

    #[test]
    fn keep_alive_pings_an_idle_stream_every_sweep_and_a_busy_one_never() {
        let hub = Hub::new();
        let idle = conn(&hub);
        let busy = conn(&hub);
        let ping = crate::frame::comment("ping");
        for _ in 0..3 {
            busy.send_comment("traffic").unwrap();
            assert_eq!(hub.send_to_all(&ping, true), 1, "only the idle stream");
        }
        assert!(!busy.take_active(), "the busy one's traffic was seen");
        let waker = futures_util::task::noop_waker();
        let mut pings = Vec::new();
        while let Ok(Some(b)) = idle.poll_outbox(&waker) {
            pings.extend_from_slice(&b);
        }
        assert_eq!(pings, b": ping\n\n".repeat(3));
    }

    #[test]
    fn an_overflow_is_reported_once_even_across_rooms() {
        let hub = Hub::new();
        let c = hub.connect(ConnectionConfig {
            outbox_limit: 10,
            policy: SlowConsumerPolicy::Close,
            abort: None,
            batch_window: std::time::Duration::ZERO,
        });
        hub.join("r1", &c).unwrap();
        hub.join("r2", &c).unwrap();
        assert_eq!(hub.broadcast("r1", &Message::new("fills the outbox")), 1);
        assert_eq!(hub.broadcast_many(["r1", "r2"], &Message::new("x")), 0);
        assert!(c.is_closed());
        assert_eq!(hub.stats().slow_consumer_closes, 1);
    }

    #[test]
    fn join_racing_with_last_leave_never_strands_a_member() {
        let hub = Hub::new();
        let conns: Vec<Connection> = (0..4).map(|_| conn(&hub)).collect();
        let threads: Vec<_> = conns
            .iter()
            .cloned()
            .map(|c| {
                let hub = hub.clone();
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        hub.join("hot", &c).unwrap();
                        hub.leave("hot", &c);
                    }
                    hub.join("hot", &c).unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(hub.room_size("hot"), 4);
        assert_eq!(hub.broadcast("hot", &Message::new("x")), 4);
        for c in &conns {
            c.close();
        }
        assert_eq!(hub.room_count(), 0);
    }
}
