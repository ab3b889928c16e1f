//! The bare-socket path: HTTP/1.1 SSE streams served without hyper once the handshake
//! is done, and the small [`Transport`] seam their writer runs on.
//!
//! - `takeover.rs`: the look at a new connection's first request, and the decision to
//!   serve it here or hand the socket, untouched, to hyper.
//! - `chunked.rs`: the stream's task: the response head, then the outbox as HTTP/1.1
//!   chunks, direct writes by senders, batching, and noticing the client leave.
//!
//! A transport is what that writer needs of a socket: non-blocking reads and writes,
//! readiness, and a half-close. Plain TCP implements it; another stream (TLS) can, to get
//! the same cheap writer.

mod chunked;
mod takeover;

pub(crate) use takeover::{accept, Decision};

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

/// What the bare-socket writer needs of a connected socket.
pub(crate) trait Transport: Send + Sync + 'static {
    /// Write what the socket takes now (`WouldBlock` when it takes nothing).
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    /// Read what has arrived (`WouldBlock` when nothing has).
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Wait until a read would not block (data, FIN or an error is there).
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send;
    /// Wait until a write would not block.
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send;
    /// Send FIN: nothing more will be written.
    fn shutdown_write(&self) -> io::Result<()>;
}

impl Transport for TcpStream {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        TcpStream::try_write(self, buf)
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

/// Peek at the bytes waiting on `stream` (none consumed) until `decide` says what they
/// are. `decide` gets everything peeked so far and answers `Some` once it knows. `None`
/// if the client leaves first. Unbounded: the caller puts a deadline on it.
pub(crate) async fn peek_until<R>(
    stream: &TcpStream,
    buf: &mut [u8],
    mut decide: impl FnMut(&[u8]) -> Option<R>,
) -> Option<R> {
    loop {
        let n = match stream.peek(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => n,
        };
        if let Some(r) = decide(&buf[..n]) {
            return Some(r);
        }
        // Part of what we wait for: peek returns at once while bytes wait, so poll
        // gently for the rest.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
