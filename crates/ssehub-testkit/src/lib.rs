//! What the end-to-end tests of `ssehub` and `ssehub-cli` share: a real client for a real
//! server on this machine, with every wait bounded.
//!
//! - [`wait`]: [`WAIT`], the bound on any single wait, and [`within`] / [`eventually`].
//! - [`http`]: one request on a fresh HTTP/1.1 connection ([`send`], [`request`],
//!   [`get`], [`post`]) and its whole answer ([`Reply`]); [`free_port`].
//! - [`raw`]: HTTP/1.1 written and read by hand on a socket, for what a well-behaved
//!   client cannot send or would hide: [`raw_request`], [`RawHead`], stalled readers.
//! - [`tls`]: certificates made for the test ([`tls::SelfSigned`]) and one request
//!   over TLS, HTTP/2 or HTTP/1.1 by ALPN ([`tls::send_tls`]).
//! - [`sse`]: [`SseClient`], an event-stream client (hyper's HTTP/1 client and the
//!   library's [`ssehub::decode::EventStream`]).
//!
//! Only the library's public API is used here. What only one crate needs (an in-process
//! server, the CLI binary's processes) stays in that crate's `tests/common`. A failed
//! wait or a broken expectation panics, failing the test that called it.

pub mod http;
pub mod raw;
pub mod sse;
pub mod tls;
pub mod wait;

pub use http::{free_port, get, post, request, send, Reply};
pub use raw::{
    raw_exchange, raw_request, read_until_contains, stalled_client, stream_request, until_closed,
    RawHead,
};
pub use sse::SseClient;
pub use wait::{eventually, within, WAIT};
