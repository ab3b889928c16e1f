//! # ssehub — Server-Sent Events endpoint, hub and rooms
//!
//! Push events to browsers over plain HTTP. Mount an SSE endpoint, let connections join
//! rooms, and broadcast to a room from anywhere in your application. Every broadcast is
//! encoded once and shared by all recipients; a broadcast never waits on a socket; a
//! client that stops reading is dropped by policy, never by accident.
//!
//! ```no_run
//! use ssehub::{Message, Server, SseOptions, ROOM_ALL};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), ssehub::ServerError> {
//!     let sse = SseOptions::new().on_connect(|conn, _ctx| async move {
//!         let _ = conn.send_event("welcome", "hello world");
//!     });
//!     let hub = sse.hub().clone();
//!     tokio::spawn(async move {
//!         loop {
//!             tokio::time::sleep(std::time::Duration::from_secs(1)).await;
//!             if let Err(e) = hub.to(ROOM_ALL).publish(&Message::new("server is alive")) {
//!                 tracing::warn!(error = %e, "not sent");
//!             }
//!         }
//!     });
//!     Server::new(([0, 0, 0, 0], 2015)).sse(sse).run().await
//! }
//! ```
//!
//! ## Layout
//!
//! Data flows one way: caller -> [`Hub`] -> [`Connection`] outbox -> socket. One concept
//! per file; every public type is re-exported here, at one path.
//!
//! - `frame`: the wire format. [`Message`] with its validation, encoding to `Bytes`.
//!   No I/O.
//! - [`decode`]: the client side of the wire format, an incremental decoder that follows
//!   the HTML standard's parsing algorithm. Used by the CLI and the tests.
//! - `hub` (`config`, `broadcast`, `rooms`, `fanout`, `backplane`, `history`, `redis`,
//!   `presence`, `observe`): rooms and membership, publishing, the fan-out that queues
//!   one frame to every member, the seam between publishing and delivering locally (in
//!   process, or through Redis), presence events, and what the hub shows those who watch
//!   it ([`RoomInfo`], [`MemberInfo`]). Never waits on a socket.
//! - `connection` (`handle`, `origin`, `outbox`, `pace`, `send`, `writer`): one client. Identity, typed
//!   tags, the closed notification that fires exactly once, the bounded outbox every
//!   write goes through, and the direct writes of idle streams.
//! - `endpoint` (`options`, `request`, `hooks`, `guard`, `keepalive`, `body`): the HTTP
//!   side of SSE. [`SseOptions`], strict path match, handshake, hooks, keep-alive, and
//!   [`SseBody`], which turns an outbox into a streaming response. [`SseEndpoint`] is a
//!   `tower::Service`, so it mounts in axum or any tower stack.
//! - `transport` (`takeover`, `chunked`): HTTP/1.1 streams served on the bare socket
//!   after the handshake, and the `Transport` seam their writer runs on.
//! - `server` (`listener`, `routes`, `drain`, `tls`): a small server for SimpleW's "new
//!   server, add modules, run" feel: listeners (plain, or TLS with HTTP/2 by ALPN and
//!   certificate reload, feature `tls`), static files, extra routes, lifecycle, graceful
//!   shutdown.
//! - `http_api` (`publish`, `rooms`, `bearer`, `access`, `csrf`): [`HubApi`],
//!   `POST /publish`, `GET /stats`, `GET /rooms`, `GET /rooms/{room}` and (feature
//!   `metrics`) `GET /metrics` as a `tower::Service` for publishers and operators,
//!   guarded by a static token or by [`Auth`]; a publish the token cookie authorizes
//!   only from the hub's own or allowed origins.
//! - `auth` (`policy`, `claims`, `jwt`): who a request is ([`Identity`]), what it may
//!   subscribe to, publish to and operate ([`Auth`]), and the JSON Web Token verifier
//!   (feature `jwt`).
//! - `respond`: the few response builders the server and the API share.
//! - `hosts`: the host names a [`Server`] answers to (DNS rebinding).
//! - `admission`: connection limits, in all and per client address.
//! - `mercure` (`uri_template`, feature `mercure`): the Mercure protocol mode, in the
//!   making; so far the RFC 6570 URI templates its subscribers select topics with.
//! - `log_limit`: log lines a stranger can repeat, rate-limited per call site.
//! - `metrics` (`labels`, `histogram`, `process`): every counter, in one place;
//!   [`HubStats`] is its snapshot; timing histograms of sampled publications; the
//!   process's own figures from `/proc`.
//! - `prometheus` (feature `metrics`): `prometheus_text` and `MetricsCollector`,
//!   the counters in the Prometheus text format, read at scrape time.
//! - `shutdown`: how a process is asked to stop (the signals `Server::run` stops on).
//! - `sync`: lock helpers that ignore poisoning.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// On docs.rs only (Cargo.toml's `package.metadata.docs.rs`): each feature-gated item
// says which feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod admission;
mod auth;
mod connection;
pub mod decode;
mod endpoint;
mod hosts;
mod http_api;
mod hub;
mod log_limit;
#[cfg(feature = "mercure")]
mod mercure;
mod message;
mod metrics;
#[cfg(feature = "metrics")]
mod prometheus;
mod respond;
mod selector;
mod server;
mod shutdown;
mod sync;
mod transport;
mod uri;

pub use auth::{Auth, AuthError, Identity, TokenVerifier};
#[cfg(feature = "jwt")]
pub use auth::{JwtAlgorithm, JwtKeyError, JwtVerifier};
pub use connection::{Connection, ConnectionId, SendError, SlowConsumerPolicy};
pub use endpoint::{
    ConfigError, PeerAddr, Rejection, RequestContext, SseBody, SseEndpoint, SseOptions,
};
pub use http_api::{ApiBody, HubApi, DEFAULT_MAX_PUBLISH_BODY};
pub use hub::{
    validate_room, BackplaneStatus, Broadcast, GapReason, HistoryConfig, Hub, HubConfig, IntoRooms,
    JoinError, PublishError, Published, DEFAULT_MAX_EVENT_BYTES, MAX_ROOM_NAME_LEN, ROOM_ALL,
};
pub use hub::{MemberInfo, RoomInfo};
#[cfg(feature = "redis")]
pub use hub::{RedisConfig, RedisError};
#[cfg(feature = "mercure")]
pub use mercure::{Mercure, MercureConfig, MercureError, MERCURE_PATH};
pub use message::{FrameError, Message, MessageBuilder};
pub use metrics::{HubStats, TransportKind};
#[cfg(feature = "metrics")]
pub use prometheus::{prometheus_text, MetricsCollector, PROMETHEUS_CONTENT_TYPE};
pub use selector::{RoomSelector, SelectorError};
pub use server::{BoundServer, ListenerInfo, Server, ServerError, ServerInfo, StaticFiles};
#[cfg(feature = "tls")]
pub use server::{TlsConfig, TlsError};

/// The README's Rust examples, compiled and run as doctests (one serves `/metrics`,
/// hence the feature; `cargo test --workspace` turns it on).
// `README.md` in this crate is a link to the workspace's, so that the packaged crate
// carries it too.
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "metrics"))]
pub struct ReadmeDoctests;
