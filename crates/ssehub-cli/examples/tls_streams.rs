//! What a stream over TLS costs the server: RSS per idle stream and CPU per delivery,
//! for `ssehub serve --tls-self-signed` over HTTP/1.1 and HTTP/2, or a plain server for
//! comparison (BENCHMARKS.md, "TLS").
//!
//! ```sh
//! taskset -c 0 target/release/ssehub serve --tick-interval 0 --keep-alive 0 \
//!     --tls-self-signed --port 2016 & PID=$!   # with SSEHUB_SERVER_ALSO_LISTEN=127.0.0.1:2017
//! taskset -c 1 target/release/examples/tls_streams --sse 127.0.0.1:2016 \
//!     --publish 127.0.0.1:2017 --server-pid $PID --protocol h2 --subscribers 1000 \
//!     --messages 50 --rate 5
//! ```
//!
//! Subscribers open `GET /sse?room=bench` (each on a connection of its own unless
//! `--streams-per-connection`, HTTP/2 only), then events of 64 bytes whose data starts
//! with `~<send time in ns>` are published over plain HTTP at `--rate` per second. The
//! server's `utime + stime` over the publishing phase is divided by the deliveries; the
//! RSS per idle stream is the server's `VmRSS` growth while the streams opened, divided
//! by them. The generator is this one process on a current-thread runtime.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http::{header, Request};
use http_body_util::{Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ssehub::decode::EventStream;
use ssehub_testkit::post;
use ssehub_testkit::tls::insecure_client_config;
use tokio::net::TcpStream;

#[path = "../src/procfs.rs"]
mod procfs;
use procfs::{cpu_seconds, rss_bytes};

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Protocol {
    /// HTTP/1.1 without TLS (the server's own writer takes the socket over).
    Plain,
    /// HTTP/1.1 without TLS, served by hyper: the request carries a one-byte body, which
    /// the take-over leaves to hyper (what a TLS stream costs without the TLS).
    PlainHyper,
    /// HTTP/2 without TLS (prior knowledge).
    H2c,
    /// HTTP/1.1 over TLS (ALPN `http/1.1`).
    H1,
    /// HTTP/2 over TLS (ALPN `h2`).
    H2,
}

#[derive(Parser)]
struct Args {
    /// Where the streams are opened.
    #[arg(long)]
    sse: SocketAddr,
    /// A plain HTTP listener of the same server for `POST /publish`.
    #[arg(long)]
    publish: SocketAddr,
    /// The server's pid, for its CPU time and RSS.
    #[arg(long)]
    server_pid: u32,
    #[arg(long, value_enum, default_value = "h2")]
    protocol: Protocol,
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// HTTP/2 streams sharing one connection.
    #[arg(long, default_value_t = 1)]
    streams_per_connection: usize,
    /// Events to publish (0: only measure the idle streams).
    #[arg(long, default_value_t = 50)]
    messages: u64,
    /// Events per second.
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    /// Loopback addresses the TLS connections come from, in turn (127.0.0.1, .2, ...):
    /// the server takes at most 1,024 requests at once from one address over TLS.
    #[arg(long, default_value_t = 8)]
    addresses: u8,
}

/// What the subscribers received: a count and every latency in microseconds.
#[derive(Default)]
struct Received {
    events: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.streams_per_connection == 0
        || (args.streams_per_connection > 1
            && !matches!(args.protocol, Protocol::H2 | Protocol::H2c))
    {
        bail!("--streams-per-connection: at least 1, and more than 1 only over HTTP/2");
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let received = Arc::new(Received::default());
    let rss_before = rss_bytes(args.server_pid)?;
    let mut opened = 0;
    let mut connections: usize = 0;
    while opened < args.subscribers {
        let streams = args.streams_per_connection.min(args.subscribers - opened);
        let from = [
            127,
            0,
            0,
            1 + (connections % usize::from(args.addresses.max(1))) as u8,
        ];
        connections += 1;
        for body in open(&args, streams, from).await? {
            tokio::spawn(follow(body, received.clone()));
        }
        opened += streams;
    }
    // Let the server settle (its stream tasks parked, buffers released) before reading.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = rss_bytes(args.server_pid)?;
    let per_stream = (rss_after as f64 - rss_before as f64) / args.subscribers as f64 / 1024.0;
    println!(
        "{} streams: server RSS {:.1} -> {:.1} MiB, {per_stream:.2} KiB per idle stream",
        args.subscribers,
        rss_before as f64 / 1048576.0,
        rss_after as f64 / 1048576.0,
    );
    if args.messages == 0 {
        return Ok(());
    }

    let cpu_before = cpu_seconds(args.server_pid)?;
    let started = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / args.rate);
    for n in 0..args.messages {
        tokio::time::sleep_until((started + gap.mul_f64(n as f64)).into()).await;
        let data = format!("~{:020}{}", now_ns(), "x".repeat(43));
        let reply = post(
            args.publish,
            "/publish?room=bench&event=bench",
            "text/plain",
            data,
        )
        .await;
        if !reply.status.is_success() {
            bail!("POST /publish: {} {}", reply.status, reply.text());
        }
    }
    let expected = args.messages * args.subscribers as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.events.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cpu = cpu_seconds(args.server_pid)? - cpu_before;
    let got = received.events.load(Ordering::Relaxed);
    let mut lat = std::mem::take(&mut *received.latencies_us.lock().unwrap());
    lat.sort_unstable();
    let at = |q: f64| lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)));
    println!(
        "{got} of {expected} deliveries ({} lost); server CPU {:.2} us per delivery; \
         latency p50 {:.1} ms, p99 {:.1} ms",
        expected - got.min(expected),
        cpu * 1e6 / got.max(1) as f64,
        at(0.5).copied().unwrap_or(0) as f64 / 1000.0,
        at(0.99).copied().unwrap_or(0) as f64 / 1000.0,
    );
    if got < expected {
        bail!("{} deliveries missing", expected - got);
    }
    Ok(())
}

/// A TLS connection to `addr` from `from` (a loopback address).
async fn tls_from(
    addr: SocketAddr,
    from: [u8; 4],
    alpn: &[&[u8]],
) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    let tcp = socket.connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost")?;
    Ok(
        tokio_rustls::TlsConnector::from(insecure_client_config(alpn))
            .connect(name, tcp)
            .await?,
    )
}

/// `streams` event streams on one new connection (over TLS: from `from`), their heads
/// received.
async fn open(args: &Args, streams: usize, from: [u8; 4]) -> anyhow::Result<Vec<Incoming>> {
    let request = |authority: &str| {
        Request::get(format!("{authority}/sse?room=bench"))
            .header(header::ACCEPT, "text/event-stream")
            .body(Empty::<Bytes>::new())
    };
    let mut bodies = Vec::with_capacity(streams);
    match args.protocol {
        Protocol::Plain => {
            let tcp = TcpStream::connect(args.sse).await?;
            bodies.push(h1(TokioIo::new(tcp), args.sse, request("")?).await?);
        }
        Protocol::PlainHyper => {
            let tcp = TcpStream::connect(args.sse).await?;
            let req = request("")?.map(|_| Full::new(Bytes::from_static(b"x")));
            bodies.push(h1(TokioIo::new(tcp), args.sse, req).await?);
        }
        Protocol::H1 => {
            let tls = tls_from(args.sse, from, &[b"http/1.1"]).await?;
            bodies.push(h1(TokioIo::new(tls), args.sse, request("")?).await?);
        }
        Protocol::H2 => {
            let tls = tls_from(args.sse, from, &[b"h2"]).await?;
            let authority = format!("https://localhost:{}", args.sse.port());
            bodies = h2(TokioIo::new(tls), &authority, streams, request).await?;
        }
        Protocol::H2c => {
            let tcp = TcpStream::connect(args.sse).await?;
            let authority = format!("http://{}", args.sse);
            bodies = h2(TokioIo::new(tcp), &authority, streams, request).await?;
        }
    }
    Ok(bodies)
}

/// `streams` streams over one HTTP/2 connection on `io`.
async fn h2<T>(
    io: T,
    authority: &str,
    streams: usize,
    request: impl Fn(&str) -> http::Result<Request<Empty<Bytes>>>,
) -> anyhow::Result<Vec<Incoming>>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
    tokio::spawn(conn);
    let mut bodies = Vec::with_capacity(streams);
    for _ in 0..streams {
        let mut sender = sender.clone();
        bodies.push(head(sender.send_request(request(authority)?).await?)?);
    }
    Ok(bodies)
}

/// One stream over HTTP/1.1 on `io`.
async fn h1<T, B>(io: T, addr: SocketAddr, mut req: Request<B>) -> anyhow::Result<Incoming>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    req.headers_mut()
        .insert(header::HOST, addr.to_string().parse()?);
    head(sender.send_request(req).await?)
}

fn head(res: http::Response<Incoming>) -> anyhow::Result<Incoming> {
    if !res.status().is_success() {
        bail!("GET /sse: {}", res.status());
    }
    Ok(res.into_body())
}

/// Count the `bench` events of one stream and the latency of each.
async fn follow(body: Incoming, received: Arc<Received>) {
    let mut events = EventStream::new(body);
    while let Some(Ok(event)) = events.next_event().await {
        if event.event != "bench" {
            continue;
        }
        if let Some(sent) = event.data.get(1..21).and_then(|t| t.parse::<u64>().ok()) {
            let us = now_ns().saturating_sub(sent) / 1000;
            received.latencies_us.lock().unwrap().push(us);
        }
        received.events.fetch_add(1, Ordering::Relaxed);
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
