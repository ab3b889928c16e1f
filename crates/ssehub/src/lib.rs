//! # ssehub — Server-Sent Events endpoint, hub and rooms
//!
//! Push events to browsers over plain HTTP. Mount an SSE endpoint, let connections join
//! rooms, and broadcast to a room from anywhere in your application. Every broadcast is
//! encoded once and shared by all recipients; a broadcast never waits on a socket; a
//! client that stops reading is dropped by policy, never by accident.
//!
//! ```no_run
//! use ssehub::{Message, Server, SseOptions};
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
//!             hub.broadcast("__all", &Message::new("server is alive"));
//!         }
//!     });
//!     Server::new(([0, 0, 0, 0], 2015)).sse(sse).run().await
//! }
//! ```
//!
//! ## Layout
//!
//! Data flows one way: caller -> [`Hub`] -> [`Connection`] outbox -> socket.
//!
//! - [`frame`]: the wire format. [`Message`] with its validation, encoding to `Bytes`.
//!   No I/O.
//! - [`decode`]: the client side of the wire format, an incremental decoder that follows
//!   the HTML standard's parsing algorithm. Used by the CLI and the tests.
//! - [`connection`]: one client. Identity, typed tag, the bounded outbox every write goes
//!   through, and the closed notification that fires exactly once.
//! - [`hub`]: rooms and membership, broadcast fan-out, statistics. Never waits on a socket.
//! - [`endpoint`]: the HTTP side of SSE. Options, strict path match, handshake, hooks,
//!   keep-alive, and [`SseBody`], which turns an outbox into a streaming response.
//!   [`SseEndpoint`] is a `tower::Service`, so it mounts in axum or any tower stack.
//! - [`server`]: a small server for SimpleW's "new server, add modules, run" feel:
//!   listener, static files, extra routes, lifecycle, graceful shutdown.
//! - [`shutdown`]: how a process is asked to stop.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod admission;
pub mod connection;
pub mod decode;
pub mod endpoint;
pub mod frame;
pub mod hub;
pub mod server;
pub mod shutdown;
mod takeover;

pub use connection::{Connection, SendError, SlowConsumerPolicy, TransportAbort};
pub use endpoint::{
    ConfigError, PeerAddr, Rejection, RequestContext, SseBody, SseEndpoint, SseOptions,
};
pub use frame::{FrameError, Message, MessageBuilder};
pub use hub::{Broadcast, Hub, HubConfig, HubStats, JoinError};
pub use server::{BoundServer, Server, ServerError, ServerInfo, StaticFiles};
pub use shutdown::Shutdown;

/// The README's Rust examples, compiled and run as doctests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
