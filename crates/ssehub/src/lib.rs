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
//! per file; every public type is re-exported here, at one path. Each module's own
//! documentation lists its files; ARCHITECTURE.md draws the map, the glossary and the
//! lock order.
//!
//! - `message`: the wire format: [`Message`], its validation, its encoding. No I/O.
//! - [`decode`]: the client side of the wire format (the HTML standard's parser).
//! - `hub`: rooms, publishing ([`Hub::to`]), the fan-out, the backplane seam (in
//!   process, or Redis, feature `redis`), the history, presence, keep-alive. Never waits
//!   on a socket.
//! - `connection`: one client: [`Connection`], its bounded outbox, its writer's side.
//! - `endpoint`: the HTTP side of SSE: [`SseOptions`], [`SseEndpoint`] (a
//!   `tower::Service`), the room dialect, hooks, [`SseBody`].
//! - `transport`: HTTP/1.1 streams served on the bare socket.
//! - `server`: [`Server`]: listeners (TLS with feature `tls`), caps, routes, static
//!   files, graceful shutdown.
//! - `http_api`: [`HubApi`] for publishers and operators.
//! - `auth`: [`Identity`], [`Auth`], the JSON Web Token verifier (feature `jwt`).
//! - `mercure` (feature `mercure`): a Mercure hub (`Mercure`).
//! - `metrics`, `prometheus` (feature `metrics`): the counters ([`HubStats`]) and the
//!   Prometheus text.
//! - `admission`, `hosts`, `selector`, `uri`, `respond`, `sync`, `shutdown`,
//!   `log_limit`: the small pieces the others share.
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
    validate_room, BackplaneStatus, Broadcast, Fsync, GapReason, HistoryConfig, HistoryStoreError,
    Hub, HubConfig, IntoRooms, JoinError, PublishError, Published, DEFAULT_MAX_EVENT_BYTES,
    MAX_ROOM_NAME_LEN, ROOM_ALL,
};
pub use hub::{MemberInfo, RoomInfo};
#[cfg(feature = "redis")]
pub use hub::{RedisConfig, RedisError};
#[cfg(feature = "mercure")]
pub use mercure::{Mercure, MercureConfig, MercureError, MERCURE_PATH, METADATA_PATH};
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
