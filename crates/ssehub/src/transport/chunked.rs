//! The bare-socket stream's task: write the response head, then move the connection's
//! outbox to the socket as HTTP/1.1 chunks until the stream ends, the client leaves, or
//! the connection is aborted by policy.
//!
//! The task lends its socket to the connection ([`DirectSink`]): while it is parked, a
//! sender writes an idle stream's frames itself (see `connection/send.rs`). A busy
//! stream's frames gather for its batching window and go out in one write.
//!
//! The client sends nothing once its request is made, so the task reads only to notice
//! it leaving: 0 bytes (FIN) or an error (RST) ends the stream. A little it does send (a
//! request pipelined after the stream's, which could never be answered anyway) is read
//! and ignored; past [`MAX_UNEXPECTED`] bytes the stream is cut off, so that a client
//! cannot make the server read for it for ever. hyper, by contrast, stops reading after
//! a `Connection: close` request or while pipelined bytes wait, and would notice such a
//! client only at a later write.
//!
//! Every answer here says `connection: close`: nothing after the stream is ever read as
//! a request, so a proxy must not keep the connection for another one.

use std::future::poll_fn;
use std::io::{self, Write as _};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use http::header;
use http::response::Parts;
use http::Response;
use http_body::Body as _;

use super::Transport;
use crate::connection::{Clock, Connection, DirectSink, TransportAbort, Wire};
#[cfg(target_os = "linux")]
use crate::connection::{Descriptor, SocketSink};
use crate::endpoint::SseBody;

/// Write the answer's head (and a fixed answer whole). For a stream, what its task then
/// runs ([`Streaming::run`]); `None` once the connection is done.
///
/// Two steps, so that the task a stream lives in for hours holds only what that life
/// needs: a future keeps its arguments for as long as it runs, and Rust lays it out for
/// its largest wait (the head's write, the response's parts). Done in one `async fn`,
/// an idle stream's task was 1,144 bytes (`size_of_val`); see `Streaming`.
///
/// The transport comes in an `Arc` already: the stream's task holds it once.
pub(crate) async fn start<T: Transport>(
    stream: Arc<T>,
    res: Response<SseBody>,
    abort: TransportAbort,
) -> Option<Streaming<T>> {
    let (parts, mut body) = res.into_parts();
    let Some(conn) = body.connection().cloned() else {
        // A fixed answer (a refusal, a back-off): send it whole and close.
        let mut head = response_head(&parts);
        let data = next_frame(&mut body).await.unwrap_or_default();
        // RFC 9110: no Content-Length on 204 and 304.
        if !matches!(parts.status.as_u16(), 204 | 304) {
            let _ = write!(head, "content-length: {}\r\n", data.len());
        }
        head.extend_from_slice(b"\r\n");
        head.extend_from_slice(&data);
        if write_or_abort(&*stream, &head, &abort).await.is_ok() {
            let _ = stream.shutdown_write();
        }
        return None;
    };
    let mut head = response_head(&parts);
    head.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
    if write_or_abort(&*stream, &head, &abort).await.is_err() {
        return None;
    }
    Some(Streaming {
        stream,
        conn,
        body,
        abort,
    })
}

/// A stream whose head is written: what its task holds while it lives.
pub(crate) struct Streaming<T> {
    stream: Arc<T>,
    conn: Connection,
    /// Dropped at the end: that tells the connection its transport is gone.
    body: SseBody,
    abort: TransportAbort,
}

impl<T: Transport> Streaming<T> {
    /// Move the outbox to the socket until the stream ends, the client leaves, or the
    /// connection is aborted by policy.
    pub(crate) async fn run(self) {
        stream_outbox(self.stream, &self.conn, &self.abort).await;
        drop(self.body);
    }
}

/// The status line and headers, without the framing header and the blank line.
fn response_head(parts: &Parts) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_str(),
        parts.status.canonical_reason().unwrap_or("")
    );
    // RFC 9110: an origin server with a clock sends Date (hyper does on its path too).
    let _ = write!(
        head,
        "date: {}\r\n",
        httpdate::fmt_http_date(std::time::SystemTime::now())
    );
    // The answer ends with the connection: no request after it is read.
    head.extend_from_slice(b"connection: close\r\n");
    for (name, value) in &parts.headers {
        // Framing and the connection's fate are ours to write; a stray header would
        // contradict them.
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head
}

/// The most bytes a client may send after its request before its stream is cut off (on
/// top of what came with the request's head in one read, under 8 KiB).
pub(crate) const MAX_UNEXPECTED: usize = 64 * 1024;

/// The stream's life on the socket, after its head.
///
/// An idle stream waits in the `select!` below for hours; a task is as large as its
/// largest wait, so every other wait (a write, the batching window, the end) is boxed:
/// an allocation per write the task makes itself (most writes are a sender's direct
/// one), against a smaller task for every idle stream.
async fn stream_outbox<T: Transport>(stream: Arc<T>, conn: &Connection, abort: &TransportAbort) {
    conn.attach_sink(stream.clone());
    // The hub's clock, which pacing reads after each write: held here, not reached
    // through the connection's owner, a cache line outside what a write touches.
    let clock = conn.owner().clock().clone();
    let mut unexpected = 0usize;
    let mut pieces: Vec<Bytes> = Vec::new();
    loop {
        tokio::select! {
            wire = poll_fn(|cx| conn.poll_wire(cx.waker(), &mut pieces)) => match wire {
                Wire::Raw(rest) => {
                    if Box::pin(write_or_abort(&*stream, &rest, abort)).await.is_err() {
                        return;
                    }
                }
                Wire::Frames(not_before) => {
                    match Box::pin(write_batch(&*stream, conn, &clock, &mut pieces, not_before, abort)).await {
                        Batch::Written => {}
                        Batch::Ended => return Box::pin(finish(stream, abort)).await,
                        Batch::Failed => return,
                    }
                }
                // The stream ended (closed by the application or at shutdown).
                Wire::End => return Box::pin(finish(stream, abort)).await,
                Wire::Abort => return,
            },
            // The client sends nothing after its request: readable means it left
            // (FIN reads as 0 bytes, RST as an error). A little else is ignored.
            ready = stream.readable() => {
                if ready.is_err() {
                    return;
                }
                match discard(&*stream) {
                    Some(n) if unexpected + n <= MAX_UNEXPECTED => unexpected += n,
                    Some(_) => {
                        tracing::debug!(conn = %conn.id(), "client sent too much after its request");
                        return;
                    }
                    None => return,
                }
            }
            _ = abort.aborted() => return,
        }
    }
}

/// Read and drop what the client sent: how many bytes, or `None` once it is gone (FIN or
/// an error). Stops a little past [`MAX_UNEXPECTED`]. The buffer lives on this call's
/// stack, not in the stream's task, which stays small for the hours it may live.
fn discard<T: Transport>(stream: &T) -> Option<usize> {
    let mut buf = [0u8; 8 * 1024];
    let mut read = 0;
    while read <= MAX_UNEXPECTED {
        match stream.try_read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => read += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => return None,
        }
    }
    Some(read)
}

/// How one batch went.
enum Batch {
    Written,
    /// Written, and the stream ended behind it: write its end.
    Ended,
    /// The write failed or the stream was aborted.
    Failed,
}

/// Write the frames in `pieces` as one chunk: at once, or, for a stream that wrote
/// moments ago, when its batching window (`not_before`) has passed, with whatever
/// gathered meanwhile.
async fn write_batch<T: Transport>(
    stream: &T,
    conn: &Connection,
    clock: &Clock,
    pieces: &mut Vec<Bytes>,
    not_before: Option<Instant>,
    abort: &TransportAbort,
) -> Batch {
    let mut ended = None;
    if let Some(at) = not_before.filter(|at| Instant::now() < *at) {
        tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
            _ = abort.aborted() => return Batch::Failed,
        }
        ended = conn.take_more(pieces);
        if matches!(ended, Some(Wire::Abort)) {
            return Batch::Failed;
        }
    }
    let since = clock.now();
    let frames = pieces.len();
    // As a sender's direct write: framed in the thread's buffer, one `send(2)` without
    // a readiness check; only what the socket did not take waits for it.
    let sent = DirectSink::try_send(stream, pieces);
    pieces.clear();
    let written = match sent {
        Ok(None) => Ok(()),
        Ok(Some(rest)) => write_or_abort(stream, &rest, abort).await,
        Err(_) => Err(()),
    };
    if written.is_err() {
        return Batch::Failed;
    }
    conn.wrote(clock, since, frames);
    if ended.is_some() {
        Batch::Ended
    } else {
        Batch::Written
    }
}

/// A chunk up to this size is framed in a reused buffer for a direct write; a larger
/// one gets its own (its rest may have to be kept).
const SMALL_WRITE: usize = 1024;

thread_local! {
    /// The buffer small direct writes are framed in: one per thread, never zeroed again
    /// (a fresh stack buffer cost a 1 KiB memset per write, 7 % of the instructions at
    /// light load).
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(SMALL_WRITE));
}

/// Senders write frames straight to an idle stream's socket, as one chunk.
impl<T: Transport> DirectSink for T {
    fn try_send(&self, frames: &[Bytes]) -> io::Result<Option<Bytes>> {
        let rest = send_chunk(frames, |buf| self.try_write_direct(buf))?;
        // All taken, but not all sent (a TLS session holds the end of a record): an
        // empty rest wakes the stream's task, which sends it before anything else.
        if rest.is_none() && self.pending() {
            return Ok(Some(Bytes::new()));
        }
        Ok(rest)
    }

    #[cfg(target_os = "linux")]
    fn socket(&self) -> Option<SocketSink> {
        self.descriptor().map(|fd| SocketSink {
            fd,
            send: send_chunk_on,
        })
    }
}

/// [`DirectSink::try_send`] on a plain socket's descriptor (which holds nothing back:
/// what it does not take is the rest).
#[cfg(target_os = "linux")]
fn send_chunk_on(fd: Descriptor, frames: &[Bytes]) -> io::Result<Option<Bytes>> {
    send_chunk(frames, |buf| super::send_on(fd, buf))
}

/// Write `frames` as one chunk with `write`, a non-blocking write: `Ok(None)` when it
/// took all of it, else what is left, framed.
fn send_chunk(
    frames: &[Bytes],
    mut write: impl FnMut(&[u8]) -> io::Result<usize>,
) -> io::Result<Option<Bytes>> {
    let len: usize = frames.iter().map(Bytes::len).sum();
    if len + 12 > SMALL_WRITE {
        let whole = chunk(frames);
        let written = sent(write(&whole))?;
        return Ok((written < whole.len()).then(|| whole.slice(written..)));
    }
    SCRATCH.with_borrow_mut(|buf| {
        buf.clear();
        put_chunk(buf, frames, len);
        let written = sent(write(buf))?;
        // The socket's buffer is full: keep what it did not take (rare, and copied).
        Ok((written < buf.len()).then(|| Bytes::copy_from_slice(&buf[written..])))
    })
}

/// How much a non-blocking write took: none when the socket's buffer is full.
fn sent(result: io::Result<usize>) -> io::Result<usize> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        other => other,
    }
}

async fn next_frame(body: &mut SseBody) -> Option<Bytes> {
    let frame = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await?;
    match frame {
        Ok(frame) => Some(frame.into_data().unwrap_or_default()),
        Err(never) => match never {},
    }
}

/// End the stream: the last chunk, then the connection. Every other handle on the
/// socket is gone by now ([`Wire::End`] takes the sink back).
async fn finish<T: Transport>(stream: Arc<T>, abort: &TransportAbort) {
    if write_or_abort(&*stream, b"0\r\n\r\n", abort).await.is_ok() {
        let _ = stream.shutdown_write();
    }
}

/// `pieces`, in order, as one HTTP/1.1 chunk: the one copy a write makes.
fn chunk(pieces: &[Bytes]) -> Bytes {
    let len: usize = pieces.iter().map(Bytes::len).sum();
    let mut buf = BytesMut::with_capacity(len + 12);
    put_chunk(&mut buf, pieces, len);
    buf.freeze()
}

/// Write `pieces` (`len` bytes in all) as one chunk: its size line, them, CRLF.
fn put_chunk(buf: &mut impl BufMut, pieces: &[Bytes], len: usize) {
    // By hand: the formatting machinery cost more than the rest of a small write.
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut n = len;
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    buf.put_slice(&digits[at..]);
    buf.put_slice(b"\r\n");
    for p in pieces {
        buf.put_slice(p);
    }
    buf.put_slice(b"\r\n");
}

/// Write all of `bytes`, unless the connection is aborted first (a client that does not
/// read would otherwise hold this task in the write for ever).
async fn write_or_abort<T: Transport>(
    stream: &T,
    bytes: &[u8],
    abort: &TransportAbort,
) -> Result<(), ()> {
    tokio::select! {
        r = write_all(stream, bytes) => r.map_err(|_| ()),
        _ = abort.aborted() => Err(()),
    }
}

/// `write_all` on a shared socket (senders write to it too, never at the same time).
/// Then what the transport still holds of them (a TLS session's records) is sent too.
pub(super) async fn write_all<T: Transport>(stream: &T, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    while stream.pending() {
        stream.writable().await?;
        match stream.try_flush() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_framed() {
        assert_eq!(
            &chunk(&[Bytes::from_static(b"data: x\n\n")])[..],
            b"9\r\ndata: x\n\n\r\n"
        );
        assert_eq!(&chunk(&[Bytes::from(vec![b'a'; 300])])[..5], b"12c\r\n");
        assert_eq!(
            &chunk(&[Bytes::from(vec![b'a'; 0x10000])])[..7],
            b"10000\r\n"
        );
        assert_eq!(&chunk(&[])[..], b"0\r\n\r\n");
    }
}

#[cfg(test)]
mod size {
    use super::*;
    use crate::connection::ConnectionConfig;

    /// What an idle stream's task holds, for the hours it may live: its future (the task's
    /// header and the spawn's own captures come on top). 1,144 bytes when the head's write
    /// and the response were part of it, 568 since; a regression here is memory per idle
    /// stream.
    #[tokio::test]
    async fn an_idle_streams_future_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let hub = crate::Hub::new();
        let streaming = Streaming {
            stream: Arc::new(socket),
            conn: hub.connect(ConnectionConfig::for_tests()),
            body: SseBody::from(Bytes::new()),
            abort: TransportAbort::new(),
        };
        let run = streaming.run();
        let size = std::mem::size_of_val(&run);
        assert!(size <= 600, "an idle stream's future is {size} bytes");
    }
}
