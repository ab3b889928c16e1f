//! Where a connection came from and who it is, for the people who watch the hub: its
//! peer address and the client's (behind a trusted proxy, the one it forwards for), when
//! it connected, the transport carrying it, and the identity the
//! application gave it. None of it is read on the way of an event.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::metrics::TransportKind;

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
    pub(super) identity: Mutex<Option<Arc<str>>>,
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
