//! Where a connection came from and who it is, for the people who watch the hub: its
//! peer address and the client's (behind a trusted proxy, the one it forwards for), when
//! it connected, the transport carrying it, and the identity the
//! application gave it. None of it is read on the way of an event.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::handle::Connection;
use crate::metrics::TransportKind;
use crate::sync::lock;

/// What the endpoint knew when it opened the stream.
#[derive(Debug)]
pub(crate) struct Origin {
    pub(crate) peer: Option<SocketAddr>,
    /// The client's address: the peer's, or the one a trusted proxy forwards for.
    pub(crate) client: Option<IpAddr>,
    pub(crate) transport: TransportKind,
    pub(crate) since: SystemTime,
    /// The subject of the stream's identity (`SseOptions::auth`'s token, or what
    /// `authorize` returned), or what the application sets (`on_connect`).
    identity: Mutex<Option<Arc<str>>>,
}

impl Origin {
    /// A stream from `peer` (for `client`), carried by `transport`, opening now.
    pub(crate) fn new(
        peer: Option<SocketAddr>,
        client: Option<IpAddr>,
        transport: TransportKind,
    ) -> Origin {
        Origin {
            peer,
            client,
            transport,
            since: SystemTime::now(),
            identity: Mutex::new(None),
        }
    }
}

impl Default for Origin {
    /// A connection made outside an endpoint (tests): no peer, HTTP/1.1 through hyper.
    fn default() -> Self {
        Origin::new(None, None, TransportKind::Http1Hyper)
    }
}

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

    /// The identity the application gave this connection, if any.
    pub fn identity(&self) -> Option<Arc<str>> {
        lock(&self.inner.origin.identity).clone()
    }
}
