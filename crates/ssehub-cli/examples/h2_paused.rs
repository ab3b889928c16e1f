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
//! windows (64 KiB per stream and for the connection) that never reads its streams, so
//! never gives window back: the server can send 64 KiB per connection, then nothing. The
//! connections come from `--addresses` loopback addresses in turn (127.0.0.1, .2, ...),
//! to stay under (or, with one, to meet) the server's cap on requests per address over
//! TLS. Events of `--event-bytes` are published over the plain listener; then, after a
//! second, the server's RSS is read and every stream is drained to see how it ended.

use std::net::SocketAddr;
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
    let mut bodies = Vec::new();
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
                bodies.push(res.into_body());
            } else {
                refused += 1;
            }
        }
        clients.push(client);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_open = rss_bytes(args.server_pid)?;
    println!(
        "{} streams open ({refused} refused): server RSS {:.1} -> {:.1} MiB",
        bodies.len(),
        rss_start as f64 / MIB,
        rss_open as f64 / MIB
    );

    let events = args.bytes.div_ceil(args.event_bytes);
    let data = "x".repeat(args.event_bytes);
    for _ in 0..events {
        let reply = post(
            args.publish,
            "/publish?room=paused&event=p",
            "text/plain",
            data.clone(),
        )
        .await;
        if !reply.status.is_success() {
            bail!("POST /publish: {} {}", reply.status, reply.text());
        }
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

    // How each stream ended: reset by the server, or still open (nothing more within a
    // short wait after what it had received).
    let (mut reset, mut open) = (0, 0);
    for body in bodies {
        match drain(body).await {
            Some(_) => reset += 1,
            None => open += 1,
        }
    }
    println!("{reset} streams reset by the server, {open} still open");
    drop(clients);
    Ok(())
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

/// Read what `body` received without giving window back: `Some(reason)` if it was reset.
async fn drain(mut body: RecvStream) -> Option<h2::Reason> {
    loop {
        match tokio::time::timeout(Duration::from_millis(20), body.data()).await {
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return e.reason(),
            Ok(None) | Err(_) => return None,
        }
    }
}
