//! The bare-socket path: HTTP/1.1 SSE streams served without hyper once the handshake
//! is done, and the small [`Transport`] seam their writer runs on.
//!
//! - `takeover.rs`: the read of a new connection's first request, and the decision to
//!   serve it here or hand the socket to hyper;
//! - `prefixed.rs`: the socket hyper then gets, with what was read in front of it.
//! - `chunked.rs`: the stream's task: the response head, then the outbox as HTTP/1.1
//!   chunks, direct writes by senders, batching, and noticing the client leave.
//! - `tls.rs` (feature `tls`): a rustls session over a socket as a [`Transport`], so
//!   that HTTP/1.1 streams over TLS get the same writer.
//!
//! A transport is what that writer needs of a socket: non-blocking reads and writes,
//! readiness, and a half-close. Plain TCP implements it; so does a TLS session
//! (`tls.rs`), which may also hold records a write left unsent ([`Transport::pending`]).

mod chunked;
mod prefixed;
mod takeover;
#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "tls")]
pub(crate) use tls::{accept as accept_tls, TlsTransport};

pub(crate) use takeover::{accept, Decision, Waits};

use std::future::Future;
use std::io;

use tokio::net::TcpStream;

use crate::connection::Descriptor;

/// What the bare-socket writer needs of a connected socket.
pub(crate) trait Transport: Send + Sync + 'static {
    /// Write what the socket takes now (`WouldBlock` when it takes nothing).
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    /// The same, for a sender's direct write (`connection/send.rs`, `Claim`): it may skip
    /// the runtime's readiness bookkeeping, since a `WouldBlock` here hands what is left
    /// to the stream's task, whose own `try_write` then finds the socket full again.
    fn try_write_direct(&self, buf: &[u8]) -> io::Result<usize> {
        self.try_write(buf)
    }
    /// The descriptor a sender's direct write may go to without this object
    /// ([`send_on`]), for a socket whose bytes need no more than it (plain TCP; a TLS
    /// session's records do). The writer keeps the transport, so the descriptor open,
    /// for as long as a sender may use it (`connection/outbox.rs`).
    fn descriptor(&self) -> Option<Descriptor> {
        None
    }
    /// Read what has arrived (`WouldBlock` when nothing has).
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Wait until a read would not block (data, FIN or an error is there).
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send;
    /// Wait until a write would not block.
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send;
    /// Send FIN: nothing more will be written.
    fn shutdown_write(&self) -> io::Result<()>;
    /// Whether bytes a write accepted still wait to be sent (a TLS session's records).
    /// Plain sockets keep nothing: what a write does not take is the caller's.
    fn pending(&self) -> bool {
        false
    }
    /// Send what [`Transport::pending`] holds: `WouldBlock` while some is left.
    fn try_flush(&self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for TcpStream {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        TcpStream::try_write(self, buf)
    }

    /// One `send(2)` on the non-blocking socket, without tokio's readiness check: a
    /// fan-out writes to each of its members once, and that check's cache line (one per
    /// socket, cold at light load) cost a fifth of the CPU a direct write spent in user
    /// space (perf, 1k subscribers × 20 msg/s). `MSG_NOSIGNAL`: a closed peer is an
    /// error, never a `SIGPIPE`.
    #[cfg(target_os = "linux")]
    fn try_write_direct(&self, buf: &[u8]) -> io::Result<usize> {
        send_on(std::os::fd::AsRawFd::as_raw_fd(self), buf)
    }

    #[cfg(target_os = "linux")]
    fn descriptor(&self) -> Option<Descriptor> {
        Some(std::os::fd::AsRawFd::as_raw_fd(self))
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::try_read(self, buf)
    }

    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        TcpStream::readable(self)
    }

    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send {
        TcpStream::writable(self)
    }

    fn shutdown_write(&self) -> io::Result<()> {
        socket2::SockRef::from(self).shutdown(std::net::Shutdown::Write)
    }
}

/// One `send(2)` of `buf` on the non-blocking socket `fd`, which its caller keeps open
/// (see [`Transport::descriptor`]). `MSG_NOSIGNAL`: a closed peer is an error, never a
/// `SIGPIPE`.
#[cfg(target_os = "linux")]
pub(crate) fn send_on(fd: Descriptor, buf: &[u8]) -> io::Result<usize> {
    use nix::sys::socket::{send, MsgFlags};
    Ok(send(fd, buf, MsgFlags::MSG_NOSIGNAL)?)
}

/// What the take-over tells the one that accepted a connection: its first request came
/// (the connection's head is read; it no longer waits for one), it is slow to send it,
/// or it ran out of time. Held for the stream's life only if its end must be told too
/// (dropping it tells).
pub(crate) trait FirstRequest: Send + Sync + 'static {
    fn requested(&self);
    /// Its first read was not a complete head, or it sent nothing for a while: `false`
    /// if it must be closed at once (too many such connections).
    fn slow(&self) -> bool;
    /// No complete head within the header timeout: the connection is closed.
    fn timed_out(&self);
    /// Whether the end of the connection matters (it counts toward a limit).
    fn held_to_the_end(&self) -> bool;
    /// What a stream served here holds for its life (a TLS request's place among its
    /// address's, `server/gate.rs`); `Err` if it may not begin (hyper's path answers).
    fn begin_stream(&self) -> Result<Self::Slot, ()>;
    /// See [`FirstRequest::begin_stream`].
    type Slot: Send + 'static;
}
