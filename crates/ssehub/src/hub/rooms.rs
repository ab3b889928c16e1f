//! The room table: which connections are in which room, and the rule that keeps a room
//! from outliving its last member.
//!
//! ## Concurrency
//! The table is an `RwLock<HashMap<name, Arc<Room>>>`; each room guards its own members
//! with its own `RwLock`. A fan-out holds the table lock only long enough to clone the
//! room's `Arc`, then reads that room's members under its read lock: fan-outs to
//! different rooms, and concurrent fan-outs to one room, proceed in parallel.
//!
//! ## Invariants
//! - A room exists while it has members. The member that empties a room marks it `dead`
//!   under the room's lock before removing it from the table; a join that finds a dead
//!   room helps remove it and retries with a fresh one, so no connection is ever
//!   stranded in a room that is no longer in the table.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use indexmap::IndexMap;

use crate::connection::{Connection, ConnectionId};
use crate::sync::{read, write};

/// Why a join failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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

/// The room every connection of an endpoint joins unless told otherwise
/// ([`crate::SseOptions::auto_join_room`]).
pub const ROOM_ALL: &str = "__all";

/// Check a room name: 1 to [`MAX_ROOM_NAME_LEN`] bytes, no control characters.
///
/// ```
/// assert!(ssehub::validate_room("news").is_ok());
/// assert!(ssehub::validate_room("").is_err());
/// assert!(ssehub::validate_room("a\nb").is_err());
/// ```
pub fn validate_room(name: &str) -> Result<(), JoinError> {
    validate_room_within(name, MAX_ROOM_NAME_LEN)
}

/// [`validate_room`] for a hub whose names may be up to `max` bytes (topics).
pub(crate) fn validate_room_within(name: &str, max: usize) -> Result<(), JoinError> {
    if name.is_empty() {
        return Err(JoinError::InvalidRoom("it is empty"));
    }
    if name.len() > max {
        return Err(if max == MAX_ROOM_NAME_LEN {
            JoinError::InvalidRoom("it is longer than 128 bytes")
        } else {
            JoinError::InvalidRoom("it is longer than the hub allows")
        });
    }
    if name.chars().any(char::is_control) {
        return Err(JoinError::InvalidRoom("it contains a control character"));
    }
    Ok(())
}

/// Every room with members.
#[derive(Default)]
pub(crate) struct Rooms {
    table: RwLock<HashMap<Arc<str>, Arc<Room>>>,
}

/// One room and its members.
pub(crate) struct Room {
    name: Arc<str>,
    members: RwLock<Members>,
}

#[derive(Default)]
pub(crate) struct Members {
    /// In the order they joined (a leaver's place goes to the last), which is roughly
    /// the order their memory was allocated in: a fan-out walks them, and the kernel
    /// their sockets, with fewer cache and TLB misses than in a hash map's order
    /// (19,000 in one room x 2 events/s: 10.0-11.1 -> 8.8-9.7 us per delivery, the
    /// floor's 8.0-8.5; BENCHMARKS.md).
    pub(crate) conns: IndexMap<ConnectionId, Connection>,
    /// Emptied and being removed from the table: joiners must not use it.
    dead: bool,
}

impl Room {
    /// The members, under the room's read lock (hold it briefly: joins wait for it).
    pub(crate) fn members(&self) -> RwLockReadGuard<'_, Members> {
        read(&self.members)
    }
}

impl Rooms {
    /// Put `conn` in `room`, creating the room if needed. Returns the room's shared
    /// name, for the connection's own room list, and whether `conn` is its first member.
    /// The caller has validated the name.
    pub(crate) fn add(&self, room: &str, conn: &Connection) -> (Arc<str>, bool) {
        loop {
            let room_arc = self.get_or_create(room);
            let mut members = write(&room_arc.members);
            if members.dead {
                // Its last member left a moment ago; it is on its way out of the table.
                drop(members);
                self.remove_if_same(&room_arc);
                continue;
            }
            let first = members.conns.is_empty();
            members.conns.insert(conn.id(), conn.clone());
            return (room_arc.name.clone(), first);
        }
    }

    /// Take the connection `id` out of room `name`; the room goes with its last member.
    /// Returns whether it went.
    pub(crate) fn remove(&self, name: &str, id: ConnectionId) -> bool {
        let Some(room) = self.get(name) else {
            return false;
        };
        let mut members = write(&room.members);
        members.conns.swap_remove(&id);
        if members.conns.is_empty() && !members.dead {
            members.dead = true;
            drop(members);
            self.remove_if_same(&room);
            return true;
        }
        false
    }

    fn get_or_create(&self, name: &str) -> Arc<Room> {
        if let Some(r) = read(&self.table).get(name) {
            return r.clone();
        }
        let mut table = write(&self.table);
        table
            .entry(Arc::from(name))
            .or_insert_with_key(|k| {
                Arc::new(Room {
                    name: k.clone(),
                    members: RwLock::new(Members::default()),
                })
            })
            .clone()
    }

    fn remove_if_same(&self, room: &Arc<Room>) {
        let mut table = write(&self.table);
        if table.get(&room.name).is_some_and(|r| Arc::ptr_eq(r, room)) {
            table.remove(&room.name);
        }
    }

    /// The room called `name`, if it has members.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Room>> {
        read(&self.table).get(name).cloned()
    }

    /// How many rooms have members.
    pub(crate) fn count(&self) -> usize {
        read(&self.table).len()
    }

    /// The names of the rooms that have members.
    pub(crate) fn names(&self) -> Vec<String> {
        read(&self.table).keys().map(|k| k.to_string()).collect()
    }

    /// The member count of every room.
    pub(crate) fn sizes(&self) -> HashMap<String, usize> {
        let rooms: Vec<Arc<Room>> = read(&self.table).values().cloned().collect();
        rooms
            .iter()
            .map(|r| (r.name.to_string(), r.members().conns.len()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// [`validate_room`], with a reason fit to show a client: what is wrong and which room
/// (its first 40 characters).
pub(crate) fn check_room(room: &str) -> Result<(), String> {
    validate_room(room).map_err(|e| {
        let shown: String = room.chars().take(40).collect();
        let more = if shown.len() < room.len() { "…" } else { "" };
        format!("{e} (room {shown:?}{more})")
    })
}
