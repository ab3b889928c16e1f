//! Presence: the members of the rooms that opt in learn who joins and who leaves.
//!
//! A join or a leave in such a room is noted, not sent: changes gather for a short
//! window ([`HubConfig::presence_window`], 250 ms), then each room with changes gets at
//! most one `ssehub.join` and one `ssehub.leave` event, listing who came and who went
//! (the first [`MAX_LISTED`], and how many in all; or how many only, with
//! [`HubConfig::presence_counts_only`]). So a reconnect storm of N clients
//! into one room costs its members a few events per window, not N each (N² in all),
//! and a connection that comes and goes within one window is not reported at all.
//!
//! The events go to the room's members at the moment they are sent, joiners included
//! (a client recognises its own entry by its identity). They are not recorded in the
//! room's history: who was there an hour ago is no event to replay. Presence is of
//! this node: with a distributed backplane (Redis), a room's members hear of those
//! who join or leave it on their own node.
//!
//! Rooms without presence pay one check per join and leave; the fan-out never looks
//! here.
//!
//! ## Invariants
//! - One flush is scheduled at a time: `scheduled` and the pending changes share one
//!   lock, so a change either finds a flush scheduled that has not yet taken the
//!   changes, or schedules one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::fanout::Publication;
use super::{Hub, HubConfig};
use crate::connection::{Connection, ConnectionId};
use crate::message::Message;
use crate::selector::RoomSelector;
use crate::sync::lock;

/// The most connections one presence event lists; `count` says how many there were.
pub(crate) const MAX_LISTED: usize = 100;

/// Which rooms have presence, how long changes gather, and whether members are named.
#[derive(Debug, Clone)]
pub(crate) struct PresenceRules {
    rooms: Vec<RoomSelector>,
    window: Duration,
    counts_only: bool,
}

impl Default for PresenceRules {
    fn default() -> Self {
        PresenceRules {
            rooms: Vec::new(),
            window: Duration::from_millis(250),
            counts_only: false,
        }
    }
}

impl HubConfig {
    /// Give the rooms `selector` matches presence: their members get `ssehub.join` and
    /// `ssehub.leave` events, `{"room", "count", "connections": [{"id", "identity"}]}`,
    /// when others join or leave (coalesced, see [`HubConfig::presence_window`]). The
    /// identity is the `sub` of the connection's token with auth on: every member learns
    /// who the others are, unless [`HubConfig::presence_counts_only`].
    ///
    /// ```
    /// let config = ssehub::HubConfig::default().presence("chat.*".parse()?);
    /// assert!(config.has_presence("chat.lobby"));
    /// assert!(!config.has_presence("news"));
    /// # Ok::<(), ssehub::SelectorError>(())
    /// ```
    pub fn presence(mut self, selector: RoomSelector) -> Self {
        self.presence.rooms.push(selector);
        self
    }

    /// How long joins and leaves gather before a room's members hear of them (250 ms).
    pub fn presence_window(mut self, window: Duration) -> Self {
        self.presence.window = window;
        self
    }

    /// Send counts only: `{"room", "count"}`, with neither connection ids nor
    /// identities (off by default). Without it, every member of a presence room learns
    /// who comes and goes: each connection's id and its identity, which is the `sub` of
    /// its token with auth on, anonymous connections included (by id). Where members
    /// must not learn of each other, this tells them only how many came and went.
    ///
    /// ```
    /// let config = ssehub::HubConfig::default()
    ///     .presence("lobby".parse()?)
    ///     .presence_counts_only(true);
    /// # Ok::<(), ssehub::SelectorError>(())
    /// ```
    pub fn presence_counts_only(mut self, counts_only: bool) -> Self {
        self.presence.counts_only = counts_only;
        self
    }

    /// Whether `room` has presence.
    pub fn has_presence(&self, room: &str) -> bool {
        self.presence.rooms.iter().any(|s| s.matches(room))
    }
}

/// Who came and went in one room since the last flush.
#[derive(Default)]
struct Changes {
    joined: HashMap<ConnectionId, Connection>,
    left: HashMap<ConnectionId, Connection>,
}

#[derive(Default)]
struct Pending {
    scheduled: bool,
    rooms: HashMap<Arc<str>, Changes>,
}

/// The presence of one hub: its rules and the changes not yet sent.
pub(crate) struct Presence {
    rules: PresenceRules,
    pending: Mutex<Pending>,
}

impl Presence {
    pub(crate) fn new(rules: PresenceRules) -> Presence {
        Presence {
            rules,
            pending: Mutex::default(),
        }
    }

    /// `conn` joined `room` of `hub`.
    pub(crate) fn joined(&self, hub: &Hub, room: &str, conn: &Connection) {
        self.note(hub, room, conn, true);
    }

    /// `conn` left `room` of `hub` (or closed).
    pub(crate) fn left(&self, hub: &Hub, room: &str, conn: &Connection) {
        self.note(hub, room, conn, false);
    }

    /// Whether any room has presence (else nothing here ever runs).
    pub(crate) fn any(&self) -> bool {
        !self.rules.rooms.is_empty()
    }

    fn note(&self, hub: &Hub, room: &str, conn: &Connection, joined: bool) {
        if !self.rules.rooms.iter().any(|s| s.matches(room)) {
            return;
        }
        let mut pending = lock(&self.pending);
        let changes = pending.rooms.entry(Arc::from(room)).or_default();
        let (this, other) = if joined {
            (&mut changes.joined, &mut changes.left)
        } else {
            (&mut changes.left, &mut changes.joined)
        };
        // Came and went (or went and came back) within one window: nothing to tell.
        if other.remove(&conn.id()).is_none() {
            this.insert(conn.id(), conn.clone());
        }
        if std::mem::replace(&mut pending.scheduled, true) {
            return;
        }
        drop(pending);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // No runtime to wait on: tell at once.
            return self.flush(hub);
        };
        let (hub, window) = (hub.clone(), self.rules.window);
        rt.spawn(async move {
            tokio::time::sleep(window).await;
            hub.inner.presence.flush(&hub);
        });
    }

    /// Send what gathered: per room, one `ssehub.join` and one `ssehub.leave` at most.
    fn flush(&self, hub: &Hub) {
        let rooms = {
            let mut pending = lock(&self.pending);
            pending.scheduled = false;
            std::mem::take(&mut pending.rooms)
        };
        let named = !self.rules.counts_only;
        for (room, changes) in rooms {
            send(
                hub,
                &room,
                "ssehub.join",
                changes.joined.into_values(),
                named,
            );
            send(
                hub,
                &room,
                "ssehub.leave",
                changes.left.into_values(),
                named,
            );
        }
    }
}

/// Tell `room`'s members about `conns`, as `event`, unrecorded; `named`: who they are
/// (their ids and identities), else how many only.
fn send(
    hub: &Hub,
    room: &str,
    event: &str,
    conns: impl ExactSizeIterator<Item = Connection>,
    named: bool,
) {
    let count = conns.len();
    if count == 0 {
        return;
    }
    let mut data = json!({ "room": room, "count": count });
    if named {
        let listed: Vec<_> = conns
            .take(MAX_LISTED)
            .map(|c| json!({ "id": c.id().to_string(), "identity": c.identity().as_deref() }))
            .collect();
        data["connections"] = json!(listed);
    }
    let Ok(message) = Message::builder()
        .event(event)
        .data(data.to_string())
        .build()
    else {
        return;
    };
    let publication = Publication {
        rooms: vec![room.to_owned()],
        ..Publication::default()
    };
    let inner = &hub.inner;
    inner.local.metrics.published.inc();
    inner.backplane.publish_unrecorded(&publication, &message);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::ConnectionConfig;

    fn hub() -> Hub {
        let config = HubConfig::default()
            .history(None)
            .presence("*".parse().unwrap())
            .presence_window(Duration::from_millis(50));
        Hub::with_config(config)
    }

    fn connect(hub: &Hub) -> Connection {
        hub.connect(ConnectionConfig::for_tests())
    }

    #[test]
    fn without_a_runtime_changes_are_told_at_once() {
        let hub = hub();
        let a = connect(&hub);
        hub.join("r", &a).unwrap();
        assert!(a.queued_bytes() > 0, "its own join, at once");
    }

    #[tokio::test]
    async fn who_came_and_went_within_a_window_is_not_told() {
        let hub = hub();
        let a = connect(&hub);
        hub.join("r", &a).unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let told = a.queued_bytes();
        assert!(told > 0);
        let b = connect(&hub);
        hub.join("r", &b).unwrap();
        b.close();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(a.queued_bytes(), told);
        assert_eq!(hub.stats().events_published, 1, "one join event in all");
    }
}
