//! What HTTP/2 streams that never grant flow-control window cost the server: its RSS
//! while `--connections` x `--streams` such streams are open over TLS and `--bytes` of
//! events are published to them (BENCHMARKS.md, "Paused HTTP/2 streams").
//!
//! ```sh
//! SSEHUB_SERVER_ALSO_LISTEN=127.0.0.1:2017 taskset -c 0 target/release/ssehub serve \
//!     --tick-interval 0 --keep-alive 0 --tls-self-signed --port 2016 & PID=$!
//! taskset -c 1 target/release/examples/h2_paused --sse 127.0.0.1:2016 \
//!     --publish 127.0.0.1:2017 --server-pid $PID --connections 10 --streams 200
//! ```
//!
//! Each connection is an HTTP/2 client (the `h2` crate) with the protocol's default
//! windows (64 KiB per stream and for the connection) that takes what arrives (h2 closes
//! a connection whose small DATA frames pile up unread) but never gives window back: the
//! server can send 64 KiB per connection, then nothing. The
//! connections come from `--addresses` loopback addresses in turn (127.0.0.1, .2, ...),
//! to stay under (or, with one, to meet) the server's cap on requests per address over
//! TLS. Events of `--event-bytes` are published over the plain listener; then, after a
//! second, the server's RSS is read, and how many streams the server reset.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use bytes::Bytes;
use clap::Parser;
use h2::client::SendRequest;
use h2::RecvStream;
use http::Request;
use ssehub_testkit::tls::insecure_client_config;
use ssehub_testkit::{get, post};
use tokio::net::TcpSocket;

#[path = "../src/procfs.rs"]
#[allow(dead_code)] // its CPU time is not read here
mod procfs;
use procfs::rss_bytes;

#[derive(Parser)]
struct Args {
    /// The TLS listener the streams are opened on.
    #[arg(long)]
    sse: SocketAddr,
    /// A plain HTTP listener of the same server for `POST /publish` and `GET /stats`.
    #[arg(long)]
    publish: SocketAddr,
    /// The server's pid, for its RSS.
    #[arg(long)]
    server_pid: u32,
    #[arg(long, default_value_t = 10)]
    connections: usize,
    /// Streams per connection.
    #[arg(long, default_value_t = 200)]
    streams: usize,
    /// Loopback addresses the connections come from, in turn.
    #[arg(long, default_value_t = 10)]
    addresses: u8,
    /// Bytes published in all (600 KB: more than the streams' windows, less than the
    /// default outbox).
    #[arg(long, default_value_t = 600_000)]
    bytes: usize,
    /// Bytes of data per event.
    #[arg(long, default_value_t = 1000)]
    event_bytes: usize,
    /// Publishers at once (each on connections of its own): events faster than the
    /// server writes them pile up in the outboxes, and are joined when taken.
    #[arg(long, default_value_t = 8)]
    publishers: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

const MIB: f64 = 1048576.0;

async fn run(args: Args) -> anyhow::Result<()> {
    let rss_start = rss_bytes(args.server_pid)?;
    let ends = Arc::new(Ends::default());
    let mut opened = 0;
    let mut clients = Vec::new();
    let mut refused = 0;
    for c in 0..args.connections {
        let from = [
            127,
            0,
            0,
            1 + (c % usize::from(args.addresses.max(1))) as u8,
        ];
        let client = connect(args.sse, from).await?;
        for _ in 0..args.streams {
            let mut ready = client.clone().ready().await?;
            let req = Request::get(format!(
                "https://localhost:{}/sse?room=paused",
                args.sse.port()
            ))
            .body(())?;
            let (res, _) = ready.send_request(req, true)?;
            let res = res.await?;
            if res.status().is_success() {
                opened += 1;
                tokio::spawn(take_without_window(res.into_body(), ends.clone()));
            } else {
                refused += 1;
            }
        }
        clients.push(client);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_open = rss_bytes(args.server_pid)?;
    println!(
        "{opened} streams open ({refused} refused): server RSS {:.1} -> {:.1} MiB",
        rss_start as f64 / MIB,
        rss_open as f64 / MIB
    );

    let events = args.bytes.div_ceil(args.event_bytes);
    let data = "x".repeat(args.event_bytes);
    let publishers = args.publishers.max(1);
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let (data, addr) = (data.clone(), args.publish);
        let mine = events / publishers + usize::from(p < events % publishers);
        tasks.push(tokio::spawn(async move {
            for _ in 0..mine {
                let reply = post(
                    addr,
                    "/publish?room=paused&event=p",
                    "text/plain",
                    data.clone(),
                )
                .await;
                if !reply.status.is_success() {
                    bail!("POST /publish: {} {}", reply.status, reply.text());
                }
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_published = rss_bytes(args.server_pid)?;
    let stats: serde_json::Value =
        serde_json::from_str(&get(args.publish, "/stats").await.text()).unwrap_or_default();
    println!(
        "{events} events of {} bytes published: server RSS {:.1} MiB (+{:.1} since the streams opened, +{:.1} in all); \
         slow-consumer closes {}, refused {}",
        args.event_bytes,
        rss_published as f64 / MIB,
        (rss_published as f64 - rss_open as f64) / MIB,
        (rss_published as f64 - rss_start as f64) / MIB,
        stats["slow_consumer_closes"],
        stats["refused"]["max_requests_per_ip"],
    );

    let (reset, ended) = (
        ends.reset.load(Ordering::Relaxed),
        ends.ended.load(Ordering::Relaxed),
    );
    println!(
        "{reset} streams reset by the server, {ended} ended, {} still open",
        opened - reset - ended
    );
    drop(clients);
    Ok(())
}

/// How the streams ended.
#[derive(Default)]
struct Ends {
    reset: AtomicUsize,
    ended: AtomicUsize,
}

/// Take what arrives on `body`, never giving window back, until it ends.
async fn take_without_window(mut body: RecvStream, ends: Arc<Ends>) {
    loop {
        match body.data().await {
            Some(Ok(_)) => continue,
            Some(Err(_)) => ends.reset.fetch_add(1, Ordering::Relaxed),
            None => ends.ended.fetch_add(1, Ordering::Relaxed),
        };
        return;
    }
}

/// An HTTP/2 connection over TLS from `from`, with the protocol's default windows.
async fn connect(addr: SocketAddr, from: [u8; 4]) -> anyhow::Result<SendRequest<Bytes>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    let tcp = socket.connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost")?;
    let tls = tokio_rustls::TlsConnector::from(insecure_client_config(&[b"h2"]))
        .connect(name, tcp)
        .await?;
    let (client, conn) = h2::client::Builder::new()
        .max_concurrent_reset_streams(100_000)
        .handshake::<_, Bytes>(tls)
        .await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}
