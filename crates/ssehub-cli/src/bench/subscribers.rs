//! The subscriber side of `ssehub bench`: many SSE connections, cheap to hold and to read.
//!
//! The load generator must cost less per delivery than the server it measures, so a
//! subscriber is not a full client. Each worker thread runs a current-thread runtime with
//! all its connections as local tasks; a connection owns only its socket, a small
//! de-chunking state and the tail of an unfinished line ([`BodyParser`]). Reads go into
//! one buffer per thread and drain the socket until it would block, so under load one
//! syscall carries many events. Only the bench's own events are counted, and their
//! embedded send time gives two latencies:
//!
//! - end to end: to the wall clock read once after the socket is drained, so it includes
//!   the generator's own queueing (at light load, every other socket's `recv` before this
//!   one's);
//! - at the socket: to the kernel's receive timestamp of the read that completed the
//!   event (see [`rx_time`]). For TCP the kernel gives the time of the latest segment the
//!   read consumed, so an event that arrived in an earlier segment of the same read
//!   counts as received later than it was.
//!
//! Both clocks are `CLOCK_REALTIME`, like the send time in the event.
//!
//! The response head is parsed with `httparse`. The coordinator (on the command's
//! runtime) sees the threads through [`Subscribers`].

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};

use super::dialect::Dialect;
use super::event_scan::{BodyParser, Events};
use super::latency::{micros, now_ns, Latencies};
use super::rx_time;
use super::secure;
use crate::hub_client::Target;

/// Connections per client source address: below the 28k ports of the default ephemeral
/// range, so every address has room to spare.
pub(crate) const PER_SOURCE_ADDRESS: usize = 20_000;
/// Streams per source address over TLS: under the server's cap on TLS requests in
/// progress from one address (1,024 by default).
pub(crate) const PER_SOURCE_ADDRESS_TLS: usize = 1_000;

/// Size of the per-thread read buffer.
const READ_BUF: usize = 256 * 1024;

/// Counters shared by every subscriber thread and the coordinator.
#[derive(Default)]
pub(super) struct Shared {
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
    /// Wait until all `n` subscribers are connected, one has failed, or `limit` has
    /// passed; returns how many are connected.
    pub(super) async fn wait_connected(&self, n: usize, limit: Duration) -> usize {
        let start = Instant::now();
        let pb = super::bar(n as u64, "connecting");
        let connected = loop {
            let c = self.connected.load(Ordering::Relaxed);
            let f = self.failed.load(Ordering::Relaxed);
            pb.set_position(c as u64);
            if f > 0 || c >= n || start.elapsed() > limit {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        pb.finish_and_clear();
        connected
    }

    /// Wait until `expected` deliveries have arrived, or none has for `idle` (the rest
    /// counts as lost), or `limit` has passed.
    pub(super) async fn drain(&self, expected: u64, idle: Duration, limit: Duration) {
        let pb = super::bar(expected, "receiving");
        let start = Instant::now();
        let mut last = (self.received.load(Ordering::Relaxed), Instant::now());
        loop {
            let r = self.received.load(Ordering::Relaxed);
            pb.set_position(r);
            if r >= expected || start.elapsed() > limit {
                break;
            }
            if r != last.0 {
                last = (r, Instant::now());
            } else if last.1.elapsed() > idle {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        pb.finish_and_clear();
    }

    /// Events received so far, and subscribers failed so far.
    pub(super) fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub(super) fn fail(&self, err: anyhow::Error) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap();
        if first.is_none() {
            *first = Some(format!("{err:#}"));
        }
    }
}

/// What the subscribers received, all together.
pub(super) struct Received {
    /// Bench events received.
    pub count: u64,
    /// Wall-clock ns of the latest read that carried bench events.
    pub last_ns: u64,
    /// Subscribers whose stream failed.
    pub failures: usize,
    /// The first error a subscriber met.
    pub first_error: Option<String>,
    pub latencies: Latencies,
}

/// The subscriber threads of one run, as the coordinator sees them. Dropping it stops
/// the threads too (their stop signal's sender goes), without waiting for them.
pub(super) struct Subscribers {
    pub shared: Arc<Shared>,
    threads: Vec<JoinHandle<Latencies>>,
    stop: watch::Sender<bool>,
}

/// Where one subscriber connects.
#[derive(Clone)]
pub(super) struct Dest {
    server: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// Path of the SSE endpoint, e.g. `/sse`.
    pub sse_path: String,
    /// Over TLS (`https://`; `secure.rs`).
    tls: bool,
}

/// How the subscribers speak: HTTP/1.1 (a connection per stream), or HTTP/2 (over TLS
/// only) with this many streams per connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Http {
    pub http2: bool,
    pub streams_per_connection: usize,
    /// Subscribers per loopback source address (127.0.0.1, then .2, ...).
    pub per_source: usize,
}

impl Subscribers {
    /// Start `threads` worker threads that open the subscribers numbered `range`:
    /// subscriber `i` connects to `targets[i % targets.len()]`, in room `i % rooms`
    /// (as `dialect` names it), with `concurrency` handshakes in flight in all; each resumes
    /// after `last_event_id` when given (a reconnect). `http` says how they speak.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start(
        targets: &[Target],
        range: std::ops::Range<usize>,
        rooms: usize,
        dialect: Dialect,
        threads: usize,
        concurrency: usize,
        last_event_id: Option<&str>,
        http: Http,
    ) -> Subscribers {
        let shared = Arc::new(Shared::default());
        let (stop, stop_rx) = watch::channel(false);
        let dests: Vec<Dest> = targets
            .iter()
            .map(|t| Dest {
                server: t.addr,
                host: t.host.clone(),
                sse_path: t.path(dialect.stream_path()),
                tls: t.tls,
            })
            .collect();
        let mut plans: Vec<Vec<(usize, String)>> = vec![Vec::new(); threads];
        for i in range {
            plans[i % threads].push((i, dialect.select(i % rooms)));
        }
        let threads = plans
            .into_iter()
            .map(|subscribers| {
                let plan = Plan {
                    dests: dests.clone(),
                    subscribers,
                    concurrency: (concurrency / threads).max(1),
                    extra_headers: last_event_id
                        .map(|id| format!("Last-Event-ID: {id}\r\n"))
                        .unwrap_or_default(),
                    last_event_id: last_event_id.map(str::to_owned),
                    http,
                };
                let (shared, stop) = (shared.clone(), stop_rx.clone());
                std::thread::Builder::new()
                    .name("bench-subscribers".into())
                    .spawn(move || run_thread(plan, shared, stop))
                    .expect("spawning a subscriber thread")
            })
            .collect();
        Subscribers {
            shared,
            threads,
            stop,
        }
    }

    /// Stop every thread, closing its connections: what the subscribers received.
    pub(super) fn finish(self) -> Received {
        let shared = &self.shared;
        let count = shared.received.load(Ordering::Relaxed);
        let last_ns = shared.last_receive_ns.load(Ordering::Relaxed);
        let failures = shared.failed.load(Ordering::Relaxed);
        let first_error = shared.first_error.lock().unwrap().clone();
        Received {
            count,
            last_ns,
            failures,
            first_error,
            latencies: self.stop(),
        }
    }

    /// Stop every thread, closing its connections; the latencies of all together.
    pub(super) fn stop(self) -> Latencies {
        let _ = self.stop.send(true);
        let mut all = Latencies::new();
        for t in self.threads {
            if let Ok(l) = t.join() {
                all.add(&l);
            }
        }
        all
    }
}

/// What one subscriber thread needs to know.
struct Plan {
    /// Where subscriber `i` connects: `dests[i % dests.len()]`.
    dests: Vec<Dest>,
    /// `(subscriber index, the query pair of its room)` pairs this thread opens.
    subscribers: Vec<(usize, String)>,
    /// Handshakes in flight at once, for this thread.
    concurrency: usize,
    /// Header lines added to each request (each ending in CRLF).
    extra_headers: String,
    /// The same, for HTTP/2.
    last_event_id: Option<String>,
    http: Http,
}

/// Run one subscriber thread until `stop` turns true; returns its latency histograms.
fn run_thread(plan: Plan, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) -> Latencies {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("subscriber runtime");
    let local = tokio::task::LocalSet::new();
    let state = Rc::new(ThreadState {
        latencies: RefCell::new(Latencies::new()),
        buf: RefCell::new(vec![0u8; READ_BUF]),
        plain: RefCell::new(Vec::new()),
        control: RefCell::new(rx_time::control_buffer()),
    });
    if plan.dests.iter().any(|d| d.tls) {
        // Decrypted records, at most 16 KiB each, several per read.
        state.plain.replace(vec![0u8; READ_BUF]);
    }
    let state2 = state.clone();
    local.block_on(&rt, async move {
        let gate = Rc::new(Semaphore::new(plan.concurrency.max(1)));
        let plan = Rc::new(plan);
        if plan.http.http2 {
            let per = plan.http.streams_per_connection.max(1);
            for group in plan.subscribers.chunks(per) {
                let group = group.to_vec();
                let (plan, shared, state, gate) =
                    (plan.clone(), shared.clone(), state2.clone(), gate.clone());
                tokio::task::spawn_local(async move {
                    let _permit = gate.acquire().await.expect("semaphore open");
                    if let Err(e) = open_h2(&plan, &group, &state, &shared).await {
                        shared.fail(e);
                    }
                });
            }
        }
        for (i, select) in plan.subscribers.iter().cloned() {
            if plan.http.http2 {
                break;
            }
            let (plan, shared, state, gate) =
                (plan.clone(), shared.clone(), state2.clone(), gate.clone());
            tokio::task::spawn_local(async move {
                let permit = gate.acquire().await.expect("semaphore open");
                let conn = match open(&plan, i, &select).await {
                    Ok((c, early)) => {
                        shared.received.fetch_add(early, Ordering::Relaxed);
                        c
                    }
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

pub(super) struct ThreadState {
    pub latencies: RefCell<Latencies>,
    /// The read buffer every connection of this thread shares.
    pub buf: RefCell<Vec<u8>>,
    /// Where TLS connections decrypt into (empty without them).
    pub plain: RefCell<Vec<u8>>,
    /// Room for one read's control messages (the receive timestamp).
    pub control: RefCell<Vec<u8>>,
}

/// Count the events one batch of reads found, with their end-to-end latency.
pub(super) fn record(state: &ThreadState, shared: &Shared, events: &mut Events) {
    if events.sent_ns.is_empty() {
        return;
    }
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

/// Connect the socket for subscriber `i` (or the HTTP/2 connection it leads).
async fn connect_tcp(dest: &Dest, i: usize, per_source: usize) -> anyhow::Result<TcpStream> {
    let socket = match dest.server {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(src) = source_addr(&dest.server, i, per_source) {
        socket
            .bind(src)
            .with_context(|| format!("binding source address {src}"))?;
    }
    let stream = socket
        .connect(dest.server)
        .await
        .with_context(|| format!("connecting to {}", dest.server))?;
    rx_time::enable(&stream);
    Ok(stream)
}

/// One HTTP/2 connection for `group`'s streams (`secure.rs`).
async fn open_h2(
    plan: &Plan,
    group: &[(usize, String)],
    state: &Rc<ThreadState>,
    shared: &Arc<Shared>,
) -> anyhow::Result<()> {
    let i = group.first().map_or(0, |g| g.0);
    let dest = &plan.dests[i % plan.dests.len()];
    if !dest.tls {
        bail!("--http2 needs an https:// URL (HTTP/2 without TLS is not implemented)");
    }
    let tcp = connect_tcp(dest, i, plan.http.per_source).await?;
    secure::open_h2(
        tcp,
        dest,
        group,
        plan.last_event_id.as_deref(),
        state,
        shared,
    )
    .await
}

/// A response head, if `head` holds a complete one: its length and whether the body is
/// chunked; an error unless it is a 200.
pub(super) fn parse_head(head: &[u8], sse_path: &str) -> anyhow::Result<Option<(usize, bool)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(head).context("parsing the response head")? {
        httparse::Status::Partial => {
            if head.len() > 64 * 1024 {
                bail!("response head larger than 64 KiB");
            }
            Ok(None)
        }
        httparse::Status::Complete(len) => {
            let status = resp.code.unwrap_or(0);
            if status != 200 {
                bail!("GET {sse_path}: status {status}");
            }
            let chunked = resp.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("transfer-encoding")
                    && String::from_utf8_lossy(h.value)
                        .to_ascii_lowercase()
                        .contains("chunked")
            });
            Ok(Some((len, chunked)))
        }
    }
}

/// Source address for subscriber `i`: spread over 127.0.0.x when one address's ports
/// would run out. `None` lets the kernel choose.
fn source_addr(server: &SocketAddr, i: usize, per_source: usize) -> Option<SocketAddr> {
    let block = i / per_source.max(1);
    match server.ip() {
        IpAddr::V4(ip) if ip.is_loopback() && block > 0 => {
            let host = 1 + block as u8;
            Some(SocketAddr::from(([127, 0, 0, host], 0)))
        }
        _ => None,
    }
}

/// Connect subscriber `i`; also returns how many events came with the response head.
async fn open(plan: &Plan, i: usize, select: &str) -> anyhow::Result<(Conn, u64)> {
    let dest = &plan.dests[i % plan.dests.len()];
    let mut stream = connect_tcp(dest, i, plan.http.per_source).await?;
    let sep = if dest.sse_path.contains('?') {
        '&'
    } else {
        '?'
    };
    let request = format!(
        "GET {}{sep}{select} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n{}\r\n",
        dest.sse_path, dest.host, plan.extra_headers
    );
    if dest.tls {
        let (conn, early) = secure::open_h1(stream, dest, &request).await?;
        return Ok((Conn::Tls(Box::new(conn)), early));
    }
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
        if let Some((len, chunked)) = parse_head(&head, &dest.sse_path)? {
            let mut parser = BodyParser::new(chunked);
            // Bytes after the head are body: events of a replay may be there already.
            let mut early = Events::default();
            parser.feed(&head[len..], &mut early)?;
            let conn = Conn::Plain(PlainConn { stream, parser });
            return Ok((conn, early.sent_ns.len() as u64));
        }
    }
}

/// One subscriber's connection: plain, or over TLS (`secure.rs`).
/// (A TLS connection is boxed: its session is a kilobyte, which every plain
/// subscriber's task would otherwise carry too.)
enum Conn {
    Plain(PlainConn),
    Tls(Box<secure::TlsConn>),
}

impl Conn {
    async fn read_loop(self, state: &ThreadState, shared: &Shared) -> anyhow::Result<()> {
        match self {
            Conn::Plain(c) => c.read_loop(state, shared).await,
            Conn::Tls(c) => c.read_loop(state, shared).await,
        }
    }
}

struct PlainConn {
    stream: TcpStream,
    parser: BodyParser,
}

impl PlainConn {
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
            record(state, shared, &mut events);
            if closed || self.parser.done() {
                bail!("the server ended the stream");
            }
        }
    }
}
