//! The subscriber side of `ssehub bench`: many SSE connections, cheap to hold and to read.
//!
//! The load generator must cost less per delivery than the server it measures, so a
//! subscriber is not a full client. Each worker thread runs a current-thread runtime with
//! all its connections as local tasks; a connection owns only its socket, a small
//! de-chunking state and the tail of an unfinished line. Reads go into one buffer per
//! thread and drain the socket until it would block, so under load one syscall carries
//! many events. Lines are found with `memchr`; only `data: ~<nanos>` lines (the bench's
//! own events) are counted, and their embedded send time gives two latencies:
//!
//! - end to end: to the wall clock read once after the socket is drained, so it includes
//!   the generator's own queueing (at light load, every other socket's `recv` before this
//!   one's);
//! - at the socket: to the kernel's receive timestamp of the read that completed the
//!   event (`SO_TIMESTAMPNS` on every subscriber socket, `recvmsg` taking the
//!   `SCM_TIMESTAMPNS` control message; Linux only). For TCP the kernel gives the time
//!   of the latest segment the read consumed, so an event that arrived in an earlier
//!   segment of the same read counts as received later than it was.
//!
//! Both clocks are `CLOCK_REALTIME`, like the send time in the event.
//!
//! The response head is parsed with `httparse`; the body may be chunked (HTTP/1.1, what
//! hyper and axum send) or close-delimited.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};

/// Connections per client source address: below the 28k ports of the default ephemeral
/// range, so every address has room to spare.
pub const PER_SOURCE_ADDRESS: usize = 20_000;

/// Size of the per-thread read buffer.
const READ_BUF: usize = 256 * 1024;

/// Counters shared by every subscriber thread and the coordinator.
#[derive(Default)]
pub struct Shared {
    /// Subscribers whose response head (200, text/event-stream) has arrived.
    pub connected: AtomicUsize,
    /// Subscribers that failed to connect or whose stream ended early.
    pub failed: AtomicUsize,
    /// Bench events received, all subscribers.
    pub received: AtomicU64,
    /// Wall-clock nanoseconds of the latest read that carried bench events.
    pub last_receive_ns: AtomicU64,
    /// The first error seen, for the report.
    pub first_error: Mutex<Option<String>>,
}

impl Shared {
    fn fail(&self, err: anyhow::Error) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap();
        if first.is_none() {
            *first = Some(format!("{err:#}"));
        }
    }
}

/// What one subscriber thread needs to know.
pub struct Plan {
    /// Server address.
    pub server: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// Path of the SSE endpoint, e.g. `/sse`.
    pub sse_path: String,
    /// `(subscriber index, room)` pairs this thread opens.
    pub subscribers: Vec<(usize, String)>,
    /// Handshakes in flight at once, for this thread.
    pub concurrency: usize,
}

/// Wall-clock time in nanoseconds since the Unix epoch: the clock both the publisher
/// (possibly another process) and the subscribers read.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A fresh latency histogram, in microseconds, 1 us to 10 minutes.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Latency histograms, in microseconds, of one subscriber thread or of all together.
pub struct Latencies {
    /// Send time to the wall clock after the socket was drained.
    pub end_to_end: Histogram<u64>,
    /// Send time to the kernel's receive timestamp of the read (empty where the kernel
    /// gives none).
    pub at_socket: Histogram<u64>,
}

impl Latencies {
    pub fn new() -> Latencies {
        Latencies {
            end_to_end: new_histogram(),
            at_socket: new_histogram(),
        }
    }

    pub fn add(&mut self, other: &Latencies) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.end_to_end.add(&other.end_to_end);
        let _ = self.at_socket.add(&other.at_socket);
    }
}

/// Microseconds from `sent` to `at` (both ns since the epoch), at least 1.
fn micros(at: u64, sent: u64) -> u64 {
    (at.saturating_sub(sent) / 1000).max(1)
}

/// Run one subscriber thread until `stop` turns true; returns its latency histograms.
pub fn run_thread(plan: Plan, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) -> Latencies {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("subscriber runtime");
    let local = tokio::task::LocalSet::new();
    let state = Rc::new(ThreadState {
        latencies: RefCell::new(Latencies::new()),
        buf: RefCell::new(vec![0u8; READ_BUF]),
        control: RefCell::new(rx_time::control_buffer()),
    });
    let state2 = state.clone();
    local.block_on(&rt, async move {
        let gate = Rc::new(Semaphore::new(plan.concurrency.max(1)));
        let plan = Rc::new(plan);
        for (i, room) in plan.subscribers.iter().cloned() {
            let (plan, shared, state, gate) =
                (plan.clone(), shared.clone(), state2.clone(), gate.clone());
            tokio::task::spawn_local(async move {
                let permit = gate.acquire().await.expect("semaphore open");
                let conn = match open(&plan, i, &room).await {
                    Ok(c) => c,
                    Err(e) => return shared.fail(e),
                };
                drop(permit);
                shared.connected.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = conn.read_loop(&state, &shared).await {
                    shared.fail(e);
                }
            });
        }
        // Dropping the LocalSet at the end cancels every subscriber and closes its socket.
        let _ = stop.wait_for(|s| *s).await;
    });
    drop(local);
    state.latencies.replace(Latencies::new())
}

struct ThreadState {
    latencies: RefCell<Latencies>,
    /// The read buffer every connection of this thread shares.
    buf: RefCell<Vec<u8>>,
    /// Room for one read's control messages (the receive timestamp).
    control: RefCell<Vec<u8>>,
}

/// Source address for subscriber `i`: spread over 127.0.0.x when one address's ports
/// would run out. `None` lets the kernel choose.
fn source_addr(server: &SocketAddr, i: usize) -> Option<SocketAddr> {
    let block = i / PER_SOURCE_ADDRESS;
    match server.ip() {
        IpAddr::V4(ip) if ip.is_loopback() && block > 0 => {
            let host = 1 + block as u8;
            Some(SocketAddr::from(([127, 0, 0, host], 0)))
        }
        _ => None,
    }
}

async fn open(plan: &Plan, i: usize, room: &str) -> anyhow::Result<Conn> {
    let socket = match plan.server {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(src) = source_addr(&plan.server, i) {
        socket
            .bind(src)
            .with_context(|| format!("binding source address {src}"))?;
    }
    let mut stream = socket
        .connect(plan.server)
        .await
        .with_context(|| format!("connecting to {}", plan.server))?;
    rx_time::enable(&stream);
    let sep = if plan.sse_path.contains('?') {
        '&'
    } else {
        '?'
    };
    let request = format!(
        "GET {}{sep}room={room} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
        plan.sse_path, plan.host
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(512);
    loop {
        stream.readable().await?;
        let mut chunk = [0u8; 4096];
        match stream.try_read(&mut chunk) {
            Ok(0) => bail!("connection closed before the response head"),
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&head).context("parsing the response head")? {
            httparse::Status::Partial => {
                if head.len() > 64 * 1024 {
                    bail!("response head larger than 64 KiB");
                }
            }
            httparse::Status::Complete(len) => {
                let status = resp.code.unwrap_or(0);
                if status != 200 {
                    bail!("GET {}: status {status}", plan.sse_path);
                }
                let chunked = resp.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("transfer-encoding")
                        && String::from_utf8_lossy(h.value)
                            .to_ascii_lowercase()
                            .contains("chunked")
                });
                let mut parser = BodyParser::new(chunked);
                // Bytes after the head are body; events cannot have been published yet.
                parser.feed(&head[len..], &mut Events::default())?;
                return Ok(Conn { stream, parser });
            }
        }
    }
}

/// Where the body de-chunker is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Body {
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Inside a chunk, with this many bytes left.
    Data(u64),
    /// After a chunk's data, this many bytes of its CRLF left.
    DataEnd(u8),
    /// Not chunked: everything until close is payload.
    Identity,
    /// The last chunk arrived.
    Done,
}

struct Conn {
    stream: TcpStream,
    parser: BodyParser,
}

/// De-chunks a response body and scans it for bench events.
struct BodyParser {
    body: Body,
    /// Raw bytes of a chunk-size line split across reads.
    stash: Vec<u8>,
    /// De-chunked bytes not yet ending in a newline.
    payload: Vec<u8>,
}

/// Events found in one batch of reads.
#[derive(Default)]
struct Events {
    /// Send times (ns since the epoch) of the bench events.
    sent_ns: Vec<u64>,
}

impl Conn {
    async fn read_loop(mut self, state: &ThreadState, shared: &Shared) -> anyhow::Result<()> {
        let mut events = Events::default();
        loop {
            self.stream.readable().await?;
            let mut closed = false;
            {
                let mut buf = state.buf.borrow_mut();
                let mut control = state.control.borrow_mut();
                // Drain the socket: under load one wake-up carries many events.
                loop {
                    match rx_time::read(&self.stream, &mut buf, &mut control) {
                        Ok((0, _)) => {
                            closed = true;
                            break;
                        }
                        Ok((n, received_ns)) => {
                            let from = events.sent_ns.len();
                            self.parser.feed(&buf[..n], &mut events)?;
                            if let Some(at) = received_ns {
                                let hist = &mut state.latencies.borrow_mut().at_socket;
                                for &sent in &events.sent_ns[from..] {
                                    hist.saturating_record(micros(at, sent));
                                }
                            }
                            if n < buf.len() {
                                break;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            if !events.sent_ns.is_empty() {
                let now = now_ns();
                let hist = &mut state.latencies.borrow_mut().end_to_end;
                for &sent in &events.sent_ns {
                    hist.saturating_record(micros(now, sent));
                }
                shared
                    .received
                    .fetch_add(events.sent_ns.len() as u64, Ordering::Relaxed);
                shared.last_receive_ns.fetch_max(now, Ordering::Relaxed);
                events.sent_ns.clear();
            }
            if closed || self.parser.body == Body::Done {
                bail!("the server ended the stream");
            }
        }
    }
}

impl BodyParser {
    fn new(chunked: bool) -> BodyParser {
        BodyParser {
            body: if chunked {
                Body::ChunkSize
            } else {
                Body::Identity
            },
            stash: Vec::new(),
            payload: Vec::new(),
        }
    }

    /// Feed raw body bytes: de-chunk them, then scan complete lines.
    fn feed(&mut self, input: &[u8], events: &mut Events) -> anyhow::Result<()> {
        if self.stash.is_empty() {
            self.dechunk(input)?;
        } else {
            let mut joined = std::mem::take(&mut self.stash);
            joined.extend_from_slice(input);
            self.dechunk(&joined)?;
        }
        self.scan(events);
        Ok(())
    }

    fn dechunk(&mut self, mut input: &[u8]) -> anyhow::Result<()> {
        while !input.is_empty() {
            match self.body {
                Body::Identity => {
                    self.payload.extend_from_slice(input);
                    return Ok(());
                }
                Body::ChunkSize => match httparse::parse_chunk_size(input) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        input = &input[used..];
                        self.body = if size == 0 {
                            Body::Done
                        } else {
                            Body::Data(size)
                        };
                    }
                    Ok(httparse::Status::Partial) => {
                        self.stash.extend_from_slice(input);
                        return Ok(());
                    }
                    Err(_) => bail!("invalid chunk size line"),
                },
                Body::Data(left) => {
                    let take = (left.min(input.len() as u64)) as usize;
                    self.payload.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    let left = left - take as u64;
                    self.body = if left == 0 {
                        Body::DataEnd(2)
                    } else {
                        Body::Data(left)
                    };
                }
                Body::DataEnd(left) => {
                    let take = (left as usize).min(input.len());
                    input = &input[take..];
                    let left = left - take as u8;
                    self.body = if left == 0 {
                        Body::ChunkSize
                    } else {
                        Body::DataEnd(left)
                    };
                }
                Body::Done => return Ok(()),
            }
        }
        Ok(())
    }

    /// Find complete lines in the payload; record every `data: ~<nanos>` line.
    fn scan(&mut self, events: &mut Events) {
        const MARK: &[u8] = b"data: ~";
        let mut start = 0;
        while let Some(nl) = memchr::memchr(b'\n', &self.payload[start..]) {
            let line = &self.payload[start..start + nl];
            if line.starts_with(MARK) {
                let mut sent = 0u64;
                for &b in &line[MARK.len()..] {
                    if !b.is_ascii_digit() {
                        break;
                    }
                    sent = sent.wrapping_mul(10).wrapping_add((b - b'0') as u64);
                }
                events.sent_ns.push(sent);
            }
            start += nl + 1;
        }
        if start == self.payload.len() {
            self.payload.clear();
        } else if start > 0 {
            self.payload.drain(..start);
        }
        // An idle connection keeps no payload buffer around.
        if self.payload.is_empty() && self.payload.capacity() > 4096 {
            self.payload = Vec::new();
        }
    }
}

/// Kernel receive timestamps: `SO_TIMESTAMPNS` on a socket, then every read is a
/// `recvmsg` that takes the `SCM_TIMESTAMPNS` control message (`CLOCK_REALTIME`; for TCP,
/// the time the latest segment consumed by the read arrived).
#[cfg(target_os = "linux")]
mod rx_time {
    use std::io::{self, IoSliceMut};
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags};
    use tokio::io::Interest;
    use tokio::net::TcpStream;

    /// Ask the kernel to stamp what this socket receives (if it refuses, reads carry no
    /// timestamp).
    pub fn enable(stream: &TcpStream) {
        let _ = setsockopt(stream, sockopt::ReceiveTimestampns, &true);
    }

    /// Room for one `SCM_TIMESTAMPNS` control message.
    pub fn control_buffer() -> Vec<u8> {
        nix::cmsg_space!(nix::sys::time::TimeSpec)
    }

    /// One non-blocking read: the bytes read, and when the kernel received them (ns since
    /// the epoch) if it said.
    pub fn read(
        stream: &TcpStream,
        buf: &mut [u8],
        control: &mut [u8],
    ) -> io::Result<(usize, Option<u64>)> {
        stream.try_io(Interest::READABLE, || {
            let mut iov = [IoSliceMut::new(buf)];
            let msg = recvmsg::<()>(
                stream.as_raw_fd(),
                &mut iov,
                Some(&mut *control),
                MsgFlags::empty(),
            )?;
            let mut received_ns = None;
            for cmsg in msg.cmsgs().into_iter().flatten() {
                if let ControlMessageOwned::ScmTimestampns(ts) = cmsg {
                    received_ns = Some(ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64);
                }
            }
            Ok((msg.bytes, received_ns))
        })
    }
}

/// Elsewhere: plain reads, no receive timestamps.
#[cfg(not(target_os = "linux"))]
mod rx_time {
    use std::io;

    use tokio::net::TcpStream;

    pub fn enable(_stream: &TcpStream) {}

    pub fn control_buffer() -> Vec<u8> {
        Vec::new()
    }

    pub fn read(
        stream: &TcpStream,
        buf: &mut [u8],
        _control: &mut [u8],
    ) -> io::Result<(usize, Option<u64>)> {
        stream.try_read(buf).map(|n| (n, None))
    }
}

/// The data of bench event: `~<send time in ns>` then padding, `size` bytes in all.
pub fn event_data(size: usize) -> String {
    let mut data = format!("~{}", now_ns());
    if data.len() < size {
        data.push(' ');
        data.extend(std::iter::repeat_n('x', size - data.len()));
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_events_split_anywhere_are_all_found() {
        let mut body = Vec::new();
        for piece in [
            "retry: 2000\n: welcome\n\ndata: ~",
            "123 xxx\n\nevent: a\ndata: ~456 yy\n\n",
            "",
        ] {
            body.extend_from_slice(format!("{:x}\r\n{piece}\r\n", piece.len()).as_bytes());
        }
        // Every split point of the same stream yields the same two send times.
        for split in 0..body.len() {
            let mut p = BodyParser::new(true);
            let mut events = Events::default();
            p.feed(&body[..split], &mut events).unwrap();
            p.feed(&body[split..], &mut events).unwrap();
            assert_eq!(events.sent_ns, vec![123, 456], "split at {split}");
            assert_eq!(p.body, Body::Done, "split at {split}");
        }
    }

    #[test]
    fn bad_chunk_size_is_an_error() {
        let mut p = BodyParser::new(true);
        assert!(p
            .feed(b"zz\r\ndata: ~1\n\n", &mut Events::default())
            .is_err());
    }

    #[test]
    fn identity_body_is_scanned_as_is() {
        let mut p = BodyParser::new(false);
        let mut events = Events::default();
        p.feed(b"data: ~7 x\n\ndata: not ours\n\ndata: ~8", &mut events)
            .unwrap();
        assert_eq!(events.sent_ns, vec![7]);
        p.feed(b"9\n\n", &mut events).unwrap();
        assert_eq!(events.sent_ns, vec![7, 89]);
    }

    #[test]
    fn event_data_has_the_requested_size_and_a_parsable_time() {
        let d = event_data(64);
        assert_eq!(d.len(), 64);
        assert!(d.starts_with('~'));
        let digits: String = d[1..].chars().take_while(|c| c.is_ascii_digit()).collect();
        assert!(digits.parse::<u64>().unwrap() > 1_600_000_000_000_000_000);
    }
}
