//! The values a metric is split by: which transport carries a stream, and why a stream
//! or a connection was refused. Few and fixed, so that a scrape stays small whatever the traffic (no
//! label is ever a room, an address or an identity).

use std::fmt;

/// What carries a stream: the label of `ssehub_connections{transport=...}`, and what
/// `GET /rooms/{room}` shows for each member.
///
/// ```
/// assert_eq!(ssehub::TransportKind::Http1.as_str(), "h1");
/// assert_eq!(ssehub::TransportKind::Http2.to_string(), "h2");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum TransportKind {
    /// HTTP/1.1 served on the bare socket after the handshake (`transport/takeover.rs`).
    Http1,
    /// HTTP/1.x through hyper: a stream on a reused keep-alive connection, or the
    /// endpoint mounted in another hyper, tower or axum server.
    Http1Hyper,
    /// HTTP/2 (prior knowledge) through hyper.
    Http2,
    // `tls` comes with TLS termination in the server; none exists yet.
}

impl TransportKind {
    /// Every kind, in label order.
    pub(crate) const ALL: [TransportKind; 3] = [
        TransportKind::Http1,
        TransportKind::Http1Hyper,
        TransportKind::Http2,
    ];

    /// The label value: `h1`, `h1_hyper`, `h2`.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Http1 => "h1",
            TransportKind::Http1Hyper => "h1_hyper",
            TransportKind::Http2 => "h2",
        }
    }

    /// The kind of a stream on a hyper connection of this HTTP version.
    pub(crate) fn of_hyper(version: http::Version) -> TransportKind {
        if version == http::Version::HTTP_2 {
            TransportKind::Http2
        } else {
            TransportKind::Http1Hyper
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the endpoint refused to open a stream, or the server closed a connection before
/// its first request (`server/gate.rs`): the label of `ssehub_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Past `SseOptions::max_connections`.
    MaxConnections,
    /// Past `SseOptions::max_connections_per_ip`.
    MaxConnectionsPerIp,
    /// The application's `authorize` hook refused (or panicked).
    Authorize,
    /// `SseOptions::auth` refused: no token, one that does not check out, or rooms it
    /// does not grant (401 or 403).
    Auth,
    /// An `Origin` the endpoint does not allow (`SseOptions::allowed_origins`).
    Origin,
    /// A request the endpoint cannot serve: invalid rooms, an unreadable `history`.
    BadRequest,
    /// The server is shutting down.
    ShuttingDown,
    /// A new connection past `Server::max_connections` (all TCP connections).
    ServerMaxConnections,
    /// A slow connection (no complete head in its first read, or silent) past the cap
    /// on such connections in all (`Server::max_pending_connections`).
    MaxPendingConnections,
    /// The same, past the cap per client address.
    MaxPendingPerIp,
    /// No complete first request head within `Server::header_timeout`.
    HeaderTimeout,
    /// A request over TLS from an address with `Server::max_tls_requests_per_address`
    /// in progress already.
    MaxRequestsPerIp,
}

impl Refusal {
    pub(crate) const ALL: [Refusal; 12] = [
        Refusal::MaxConnections,
        Refusal::MaxConnectionsPerIp,
        Refusal::Authorize,
        Refusal::Auth,
        Refusal::Origin,
        Refusal::BadRequest,
        Refusal::ShuttingDown,
        Refusal::ServerMaxConnections,
        Refusal::MaxPendingConnections,
        Refusal::MaxPendingPerIp,
        Refusal::HeaderTimeout,
        Refusal::MaxRequestsPerIp,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::MaxConnectionsPerIp => "max_connections_per_ip",
            Refusal::Authorize => "authorize",
            Refusal::Auth => "auth",
            Refusal::Origin => "origin",
            Refusal::BadRequest => "bad_request",
            Refusal::ShuttingDown => "shutting_down",
            Refusal::ServerMaxConnections => "server_max_connections",
            Refusal::MaxPendingConnections => "max_pending_connections",
            Refusal::MaxPendingPerIp => "max_pending_per_ip",
            Refusal::HeaderTimeout => "header_timeout",
            Refusal::MaxRequestsPerIp => "max_requests_per_ip",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_follow_the_lists() {
        for (i, k) in TransportKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
        for (i, r) in Refusal::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
