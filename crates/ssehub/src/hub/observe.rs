//! What the hub shows those who watch it: the rooms with their sizes and history, the
//! members of a room with where they came from, the bytes waiting in outboxes, and the
//! counters the endpoint bumps for refused streams (and the server for connections it
//! closed before their first request). Everything here is read on demand
//! (an API call, a scrape, the dashboard's second); nothing runs per event.

use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

use super::Hub;
use crate::connection::{Connection, ConnectionId};
#[cfg(feature = "metrics")]
use crate::metrics::Metrics;
use crate::metrics::{Refusal, TransportKind};

/// One room, as [`Hub::rooms_page`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RoomInfo {
    /// The room's name.
    pub room: String,
    /// Its members on this node.
    pub members: usize,
    /// The events its history keeps (0 without history).
    pub history: usize,
}

/// One member of a room, as [`Hub::members_page`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MemberInfo {
    /// The connection's id.
    pub id: ConnectionId,
    /// What the application named it ([`Connection::set_identity`]).
    pub identity: Option<String>,
    /// The client's address, when known.
    pub peer: Option<SocketAddr>,
    /// The client's address: the peer's, or, behind a trusted proxy, the one it
    /// forwards for ([`crate::SseOptions::trusted_proxies`]).
    pub client: Option<IpAddr>,
    /// When it connected (milliseconds since the Unix epoch in JSON, as `since_ms`).
    #[serde(rename = "since_ms", serialize_with = "unix_ms")]
    pub connected_at: SystemTime,
    /// What carries it (`h1`, `h1_hyper`, `h2`).
    pub transport: TransportKind,
    /// Bytes waiting in its outbox: how far behind it is.
    pub queued_bytes: usize,
    /// Events the `DropEvent` policy skipped for it.
    pub dropped_events: u64,
}

impl Serialize for ConnectionId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Serialize for TransportKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

fn unix_ms<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let ms = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    s.serialize_u64(u64::try_from(ms).unwrap_or(u64::MAX))
}

impl MemberInfo {
    fn of(conn: &Connection) -> MemberInfo {
        MemberInfo {
            id: conn.id(),
            identity: conn.identity().map(|i| i.to_string()),
            peer: conn.peer_addr(),
            client: conn.client_ip(),
            connected_at: conn.connected_at(),
            transport: conn.transport(),
            queued_bytes: conn.queued_bytes(),
            dropped_events: conn.dropped_events(),
        }
    }
}

impl Hub {
    /// The rooms with members, largest first (then by name): from `offset`, at most
    /// `limit`, each with its history depth (looked up for the page only); and how many
    /// rooms there are in all.
    ///
    /// With a distributed backplane the depths are read from it (one round trip for the
    /// page); the members are this node's.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let hub = ssehub::Hub::new();
    /// let (total, page) = hub.rooms_page(0, 10).await;
    /// assert_eq!((total, page.len()), (0, 0));
    /// # }
    /// ```
    pub async fn rooms_page(&self, offset: usize, limit: usize) -> (usize, Vec<RoomInfo>) {
        let mut sizes: Vec<(String, usize)> = self.room_sizes().into_iter().collect();
        sizes.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let total = sizes.len();
        let page: Vec<(String, usize)> = sizes.into_iter().skip(offset).take(limit).collect();
        let names: Vec<String> = page.iter().map(|(n, _)| n.clone()).collect();
        let depths = self.inner.backplane.history_depths(names).await;
        let rooms = page
            .into_iter()
            .zip(depths)
            .map(|((room, members), history)| RoomInfo {
                room,
                members,
                history,
            })
            .collect();
        (total, rooms)
    }

    /// The members of `room`, oldest connection first, from `offset`, at most `limit`;
    /// and how many it has in all. Only the page's members are inspected.
    ///
    /// ```
    /// let hub = ssehub::Hub::new();
    /// let (total, page) = hub.members_page("news", 0, 100);
    /// assert_eq!((total, page.len()), (0, 0));
    /// ```
    pub fn members_page(
        &self,
        room: &str,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<MemberInfo>) {
        let mut members: Vec<(SystemTime, ConnectionId, Connection)> = self
            .members(room)
            .into_iter()
            .map(|c| (c.connected_at(), c.id(), c))
            .collect();
        members.sort_unstable_by_key(|m| (m.0, m.1));
        let page = members
            .iter()
            .skip(offset)
            .take(limit)
            .map(|(_, _, c)| MemberInfo::of(c))
            .collect();
        (members.len(), page)
    }

    /// How many events `room`'s history keeps (0 without history).
    pub async fn history_depth(&self, room: &str) -> usize {
        let depths = self.inner.backplane.history_depths(vec![room.to_owned()]);
        depths.await.first().copied().unwrap_or(0)
    }

    /// Bytes waiting in every open connection's outbox (each outbox locked in turn,
    /// briefly: for scrapes and stats, not for hot paths).
    pub(crate) fn outbox_bytes(&self) -> usize {
        self.connections()
            .iter()
            .map(Connection::queued_bytes)
            .sum()
    }

    /// The endpoint refused a stream, or the server a connection, for `why`.
    pub(crate) fn count_refusal(&self, why: Refusal) {
        self.inner.local.metrics.refused[why.index()].inc();
    }

    /// The counters themselves (for the Prometheus exposition's histograms).
    #[cfg(feature = "metrics")]
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.local.metrics
    }
}
