//! `ssehub soak`: a time-bounded abuse run against a server, and its balance sheet.
//!
//! For `--duration` seconds it mixes, against one server:
//! - fast readers that follow every event of their room: a few per small room
//!   (`soak-0..K`), many in the large room (`soak-large`), and two in the bulk room
//!   (`soak-bulk`), which carries large events;
//! - slow readers in the bulk room that read their response head and then never read
//!   again, so the server's slow-consumer policy has something to do; each is replaced
//!   by a new one every `--slow-hold` seconds, so a long run keeps exercising it;
//! - churners that open and close connections all the time: clean closes, resets,
//!   requests dropped half-written, `HEAD` requests and `/stats` reads;
//! - one publisher, `POST /publish?room=R&event=soak` round-robin over the rooms, each
//!   event carrying its room's sequence number.
//!
//! At the end it publishes an end marker to every room, waits for every fast reader to
//! see it, closes every client, and prints: events published, deliveries the server
//! reported, events the fast readers received, events dropped by policy (server
//! `/stats`), events lost without a policy (what the fast readers should have received
//! but did not; must be 0), the server's peak memory (when its pid is known), and the
//! connections still open once every client has gone (must be 0). It exits with an
//! error if anything was lost or left open.
//!
//! ```text
//! ssehub soak --spawn-server --url http://127.0.0.1:2016 --duration 600
//! ssehub soak --url http://127.0.0.1:2015 --server-pid $(pidof ssehub) --duration 3600
//! ```
//!
//! With `--faults redis` it is another run (`faults.rs`): N nodes of its own on a
//! `redis-server` of its own, subscribers that resume with their last id, a publisher at
//! a fixed rate, and faults drawn from `--seed` (nodes killed or stopped and restarted,
//! Redis paused or killed and restarted, client cuts); at the end a check that every
//! accepted event reached every subscriber of its room once and in order, or that an
//! `ssehub.gap` covered it. `--faults disk`: one node with `--history-dir`, restarted.
//!
//! `--storm term|kill` (`storm.rs`): one node with `--history-dir` and many subscribers
//! restarted once: how long until every subscriber is back and caught up.
//!
//! ```text
//! ssehub soak --faults redis --nodes 3 --duration 600 --seed 42
//! ssehub soak --faults disk --duration 600
//! ssehub soak --storm term --subscribers 10000 --rooms 1 --rate 100
//! ```

mod churners;
mod cluster;
mod crew;
mod faults;
mod peak_rss;
mod publisher;
mod readers;
mod report;
mod resumers;
mod rooms;
mod slow_readers;
mod storm;

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::hub_client::{Client, ServerStats, Target};
use crate::server_process::{wait_accepting, ServerProcess};
use churners::Churners;
use peak_rss::PeakRss;
use readers::Followers;
use report::{Outcome, Report};
use rooms::Rooms;
use slow_readers::SlowReaders;

/// Bound on any single network wait (connect, a response, the end marker).
const WAIT: Duration = Duration::from_secs(15);

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Server base URL: its /sse, /publish and /stats are used.
    #[arg(long, default_value = "http://127.0.0.1:2015")]
    pub url: String,
    /// How long to run, in seconds (1 to 86400).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub duration: u64,
    /// Start `ssehub serve` (ticker off) on the URL's address, and stop it at the end.
    #[arg(long)]
    pub spawn_server: bool,
    /// The server's pid, to follow its memory.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Small rooms `soak-0..K`.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub rooms: u64,
    /// Fast readers per small room.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub readers_per_room: u64,
    /// Fast readers of the large room.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub large_room: u64,
    /// Readers of the bulk room that stop reading.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub slow_readers: u64,
    /// Seconds a slow reader stays before it is replaced by a new one.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub slow_hold: u64,
    /// Tasks that open and close connections without pause.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub churners: u64,
    /// Events published per second, all rooms together.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub rate: u64,
    /// Bytes of data of an event to the large room.
    #[arg(long, default_value_t = 1024)]
    pub large_size: usize,
    /// Bytes of data of an event to the bulk room.
    #[arg(long, default_value_t = 16 * 1024)]
    pub bulk_size: usize,
    /// Fault mode, with processes of its own (--url is not used): `redis` (--nodes nodes
    /// on a redis-server) or `disk` (one node with --history-dir).
    #[arg(long, value_enum, value_name = "MODE")]
    pub faults: Option<cluster::FaultMode>,
    /// Fault mode: nodes on the Redis.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=32))]
    pub nodes: u64,
    /// Fault mode: the seed of the faults (printed; by default from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Fault mode: subscribers, spread over the nodes and the rooms.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub subscribers: u64,
    /// The restart storm (one node with --history-dir, --subscribers that reconnect
    /// after the server's retry hint, the node stopped once by this signal and started
    /// again): time until every subscriber is back and caught up, CPU, losses.
    #[arg(long, value_enum, value_name = "SIGNAL", conflicts_with = "faults")]
    pub storm: Option<storm::StormSignal>,
    /// Fault mode: the redis-server executable.
    #[arg(long, default_value = "redis-server")]
    pub redis_server: String,
}

/// A keep-alive connection to the server (bounded by [`WAIT`]).
async fn connect(target: &Target) -> anyhow::Result<Client> {
    timeout("connecting", Client::connect(target)).await?
}

/// `f`, bounded by [`WAIT`]; `what` names the wait in the error.
async fn timeout<F: std::future::Future>(what: &str, f: F) -> anyhow::Result<F::Output> {
    tokio::time::timeout(WAIT, f)
        .await
        .map_err(|_| anyhow::anyhow!("timed out after {WAIT:?} waiting for {what}"))
}

/// The server's `GET /stats` (bounded by [`WAIT`]).
async fn stats(target: &Target) -> anyhow::Result<ServerStats> {
    timeout("GET /stats", target.stats()).await?
}

/// A request head for a raw socket: the request line, `Host`, then the `extra` header
/// lines (each ending in CRLF).
fn request_head(method: &str, path: &str, host: &str, extra: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n")
}

/// Write `request` and read until a response head has arrived; its status.
async fn exchange(s: &mut TcpStream, request: &str) -> anyhow::Result<u16> {
    timeout("a request write", s.write_all(request.as_bytes())).await??;
    let mut buf = Vec::new();
    timeout("a response head", async {
        loop {
            let mut chunk = [0u8; 2048];
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection closed before the response head");
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut res = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(_) = res.parse(&buf)? {
                return Ok(res.code.unwrap_or(0));
            }
        }
    })
    .await?
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(signal) = args.storm {
        crate::fd_limit::raise_fd_limit();
        return storm::run(&args, signal).await;
    }
    if let Some(mode) = args.faults {
        crate::fd_limit::raise_fd_limit();
        return faults::run(&args, mode).await;
    }
    let target = Target::parse(&args.url)
        .await
        .with_context(|| format!("--url {}", args.url))?;
    crate::fd_limit::raise_fd_limit();
    let server = if args.spawn_server {
        Some(ServerProcess::spawn(&target, "")?)
    } else {
        None
    };
    let pid = args.server_pid.or(server.as_ref().map(ServerProcess::id));
    let result = async {
        if server.is_some() {
            wait_accepting(target.addr, WAIT).await?;
        }
        soak(&args, &target, pid).await
    }
    .await;
    drop(server);
    let report = result?;
    println!("{report}");
    if report.lost > 0 || report.leftover > 0 {
        bail!(
            "soak failed: {} events lost without a policy, {} connections left open",
            report.lost,
            report.leftover
        );
    }
    Ok(())
}

/// The run itself: open the readers, let every role go until the deadline, then collect
/// what each saw and what the server says.
async fn soak(args: &Args, target: &Target, pid: Option<u32>) -> anyhow::Result<Report> {
    let before = stats(target).await?;
    if before.connections != 0 {
        eprintln!(
            "note: the server already has {} connections; \"left open\" counts them too",
            before.connections
        );
    }
    let memory = PeakRss::start(pid);
    let rooms = Rooms::new(args);
    let opened = readers::open_all(target, &rooms, &rooms.fast_readers(args)).await?;
    let first_slow = SlowReaders::open(target, args.slow_readers).await?;
    let followers = Followers::start(opened);

    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let hold = Duration::from_secs(args.slow_hold);
    let slow = SlowReaders::start(target, first_slow, hold, deadline);
    let churners = Churners::start(target, args.churners, args.rooms, deadline);
    let published = publisher::publish(target, &rooms, args.rate, deadline).await;

    // Every fast reader should now see its room's end marker (bounded: a reader still
    // waiting after that is counted as cut off).
    let readers = followers.finish(WAIT * 2).await?;
    let churn = churners.finish().await;
    let slow_opened = slow.finish().await;
    let published = published?;
    let after = stats_once_all_gone(target).await?;
    let rss = memory.finish().await;
    let outcome = Outcome {
        rooms,
        published,
        readers,
        slow_opened,
        churn,
        before,
        after,
        rss,
    };
    Ok(Report::new(args, outcome))
}

/// The server's stats once every client has gone: it should hold no connection, but
/// may take a moment to see the last ones close (bounded by [`WAIT`]).
async fn stats_once_all_gone(target: &Target) -> anyhow::Result<ServerStats> {
    let mut after = stats(target).await?;
    let settle = Instant::now() + WAIT;
    while after.connections > 0 && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = stats(target).await?;
    }
    Ok(after)
}
