//! One SSE client: its handle, its bounded outbox, and the two sides of that outbox.
//!
//! - `handle.rs`: [`Connection`] itself: id, typed tags, close-once, callbacks, what
//!   observers read of it, the room list its hub keeps in it, and the `Owner` seam
//!   through which its hub cleans up (the connection never names its hub).
//! - `origin.rs`: where it came from and who it is (peer, since, transport, identity),
//!   and the `Audience` of its private updates.
//! - `pace.rs`: the hub's clock of fan-outs and the process's pressure (the runtime's
//!   busy share, as levels): whether a stream writes at once or lets events gather.
//! - `outbox.rs`: the bounded queue of encoded frames and the flags that decide who
//!   writes next; [`SlowConsumerPolicy`].
//! - `send.rs`: every frame enters here; direct writes ([`Claim`]) of idle streams.
//! - `writer.rs`: what the stream's one writer (hyper's body, or the bare-socket task)
//!   takes out.

mod handle;
mod origin;
mod outbox;
mod pace;
mod send;
mod writer;

pub use handle::{Connection, ConnectionId};
pub use outbox::SlowConsumerPolicy;
pub use send::SendError;

pub(crate) use handle::{ConnectionConfig, Owner, TransportAbort};
pub(crate) use origin::{Audience, Origin};
pub(crate) use outbox::{Descriptor, DirectSink, Kind, SocketSink};
pub(crate) use pace::{Clock, Stamp, WIDE_FANOUT};
pub(crate) use send::{Claim, Enqueued};
pub(crate) use writer::Wire;

#[cfg(test)]
mod tests;
