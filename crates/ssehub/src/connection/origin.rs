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
    /// Who may receive private updates through this stream (a topic dialect's grants);
    /// `None`: no private update.
    pub(super) audience: Option<Arc<dyn Audience>>,
}

/// Which private updates a stream may receive: those with a topic it accepts. The
/// dialect that opened the stream decides (Mercure: the subscriber's token's grants).
pub(crate) trait Audience: Send + Sync + 'static {
    /// Whether a private update of `topic` may reach the stream.
    fn accepts(&self, topic: &str) -> bool;
}

impl std::fmt::Debug for dyn Audience {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Audience")
    }
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
            audience: None,
        }
    }

    /// Who may receive private updates through the stream.
    pub(crate) fn with_audience(mut self, audience: Option<Arc<dyn Audience>>) -> Origin {
        self.audience = audience;
        self
    }
}

impl Default for Origin {
    /// A connection made outside an endpoint (tests): no peer, HTTP/1.1 through hyper.
    fn default() -> Self {
        Origin::new(None, None, TransportKind::Http1Hyper)
    }
}
