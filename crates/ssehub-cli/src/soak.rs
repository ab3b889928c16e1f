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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http::{Method, StatusCode};
use hyper::body::Incoming;
use ssehub::decode::{EventStream, EventStreamError};

use crate::hub_client::{Client, ServerStats, Target};
use crate::server_process::{wait_accepting, ServerProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Bound on any single network wait (connect, a response, the end marker).
const WAIT: Duration = Duration::from_secs(15);
/// Bytes of data of an event to a small room.
const SMALL_SIZE: usize = 48;
/// Fast readers of the bulk room.
const BULK_READERS: usize = 2;
const LARGE_ROOM: &str = "soak-large";
const BULK_ROOM: &str = "soak-bulk";

#[derive(clap::Args, Debug)]
pub struct Args {
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
}

/// A keep-alive connection to the server (bounded by [`WAIT`]).
async fn connect(target: &Target) -> anyhow::Result<Client> {
    timeout("connecting", Client::connect(target.addr, &target.host)).await?
}

async fn timeout<F: std::future::Future>(what: &str, f: F) -> anyhow::Result<F::Output> {
    tokio::time::timeout(WAIT, f)
        .await
        .map_err(|_| anyhow::anyhow!("timed out after {WAIT:?} waiting for {what}"))
}

/// The server's `GET /stats` (bounded by [`WAIT`]).
async fn stats(target: &Target) -> anyhow::Result<ServerStats> {
    timeout("GET /stats", target.stats()).await?
}

/// Resident memory of a process, in bytes, if it can be read.
fn rss_bytes(pid: u32) -> Option<u64> {
    crate::procfs::rss_bytes(pid).ok()
}

/// What one fast reader saw.
#[derive(Debug, Default)]
struct ReaderReport {
    room: usize,
    /// `soak` events received in sequence.
    received: u64,
    /// Sequence numbers skipped (an event never arrived).
    gaps: u64,
    /// Events that arrived out of order or twice.
    disorder: u64,
    /// The stream ended (or failed) before the end marker.
    cut: Option<String>,
}

/// An open fast reader: the connection, and its stream being read.
type Reader = (Client, EventStream<Incoming>);

/// Open a stream to `room` and wait until the server announces it (`ssehub serve` sends
/// `status` once the connection is in its rooms).
async fn open_reader(target: &Target, room: &str) -> anyhow::Result<Reader> {
    let mut http = connect(target).await?;
    let path = target.path(&format!("/sse?room={room}"));
    let res = timeout("a response", http.send(Method::GET, &path, Bytes::new())).await??;
    if res.status() != StatusCode::OK {
        bail!("GET {path}: {}", res.status());
    }
    let mut stream = EventStream::new(res.into_body());
    timeout(
        "the stream's status event (the soak expects `ssehub serve`)",
        async {
            loop {
                match stream.next_event().await {
                    Some(Ok(e)) if e.event == "status" => return Ok(()),
                    Some(Ok(_)) => {}
                    Some(Err(EventStreamError::Decode(e))) => return Err(e.into()),
                    Some(Err(EventStreamError::Body(e))) => bail!("stream failed: {e}"),
                    None => bail!("stream ended before it was announced"),
                }
            }
        },
    )
    .await??;
    Ok((http, stream))
}

/// Follow a stream until the end marker; count what arrived and in which order.
async fn follow(room: usize, reader: Reader, stop_waiting: Arc<AtomicBool>) -> ReaderReport {
    let (_http, mut stream) = reader;
    let mut report = ReaderReport {
        room,
        ..ReaderReport::default()
    };
    let mut next = 0u64;
    loop {
        let event = tokio::select! {
            // What has arrived counts before the give-up flag.
            biased;
            e = stream.next_event() => e,
            _ = wait_flag(&stop_waiting) => {
                report.cut = Some("no end marker".into());
                return report;
            }
        };
        let e = match event {
            Some(Ok(e)) => e,
            Some(Err(EventStreamError::Decode(e))) => {
                report.cut = Some(format!("undecodable stream: {e}"));
                return report;
            }
            Some(Err(EventStreamError::Body(e))) => {
                report.cut = Some(format!("stream failed: {e}"));
                return report;
            }
            None => {
                report.cut = Some("stream ended".into());
                return report;
            }
        };
        match e.event.as_str() {
            "soak" => {
                let seq: Option<u64> = e.data.split(' ').next().and_then(|s| s.parse().ok());
                match seq {
                    Some(s) if s == next => {}
                    Some(s) if s > next => report.gaps += s - next,
                    _ => {
                        report.disorder += 1;
                        continue;
                    }
                }
                next = seq.unwrap_or(next) + 1;
                report.received += 1;
            }
            "soak-end" => return report,
            _ => {}
        }
    }
}

async fn wait_flag(flag: &AtomicBool) {
    while !flag.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A reader that reads its response head and then nothing more. The small receive
/// buffer makes its TCP window fill quickly.
async fn open_slow(target: &Target, room: &str) -> anyhow::Result<TcpStream> {
    let sock = if target.addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_recv_buffer_size(4096)?;
    let mut s = timeout("connecting", sock.connect(target.addr)).await??;
    let path = target.path(&format!("/sse?room={room}"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", target.host);
    let status = exchange(&mut s, &request).await?;
    if status != 200 {
        bail!("slow reader: GET {path}: {status}");
    }
    Ok(s)
}

/// Hold a stalled stream for `hold`, then replace it with a new one, until `deadline`.
async fn slow_reader(
    target: Target,
    mut stream: TcpStream,
    hold: Duration,
    deadline: Instant,
    opened: Arc<AtomicU64>,
) {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(hold.min(left)).await;
        drop(stream);
        if Instant::now() >= deadline {
            return;
        }
        stream = loop {
            match open_slow(&target, BULK_ROOM).await {
                Ok(s) => break s,
                Err(e) => {
                    tracing::debug!(error = %e, "slow reader");
                    if Instant::now() >= deadline {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        opened.fetch_add(1, Ordering::Relaxed);
    }
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

/// What the churners did.
#[derive(Default)]
struct Churn {
    clean: AtomicU64,
    reset: AtomicU64,
    half_request: AtomicU64,
    head: AtomicU64,
    stats: AtomicU64,
    errors: AtomicU64,
}

async fn churn_once(target: &Target, n: u64, rooms: u64, churn: &Churn) -> anyhow::Result<()> {
    let room = format!("soak-{}", n % rooms);
    let stream_req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
        target.path(&format!("/sse?room={room}")),
        target.host
    );
    let mut s = timeout("connecting", TcpStream::connect(target.addr)).await??;
    match n % 5 {
        0 | 1 => {
            let status = exchange(&mut s, &stream_req).await?;
            anyhow::ensure!(status == 200, "stream: {status}");
            if n % 5 == 0 {
                s.shutdown().await?;
                churn.clean.fetch_add(1, Ordering::Relaxed);
            } else {
                s.set_zero_linger()?;
                churn.reset.fetch_add(1, Ordering::Relaxed);
            }
        }
        2 => {
            let half = &stream_req[..stream_req.len() / 2];
            s.write_all(half.as_bytes()).await?;
            churn.half_request.fetch_add(1, Ordering::Relaxed);
        }
        3 => {
            let req = format!(
                "HEAD {} HTTP/1.1\r\nHost: {}\r\n\r\n",
                target.path("/sse"),
                target.host
            );
            let status = exchange(&mut s, &req).await?;
            anyhow::ensure!(status == 200, "HEAD: {status}");
            churn.head.fetch_add(1, Ordering::Relaxed);
        }
        _ => {
            let req = format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                target.path("/stats"),
                target.host
            );
            let status = exchange(&mut s, &req).await?;
            anyhow::ensure!(status == 200, "stats: {status}");
            churn.stats.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

async fn churner(target: Target, id: u64, rooms: u64, deadline: Instant, churn: Arc<Churn>) {
    let mut n = id;
    while Instant::now() < deadline {
        if let Err(e) = churn_once(&target, n, rooms, &churn).await {
            churn.errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "churn");
        }
        n += 1;
        // Bounded: a few hundred connections a second in all, which the client's
        // ephemeral ports (held in TIME_WAIT for a minute) sustain for hours.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Events published to each room, and deliveries the server reported.
struct Published {
    per_room: Vec<u64>,
    deliveries: u64,
}

/// Publish round-robin over `names` at `rate` until `deadline`.
async fn publish(
    target: &Target,
    names: &[String],
    sizes: &[usize],
    rate: u64,
    deadline: Instant,
) -> anyhow::Result<Published> {
    let mut http = connect(target).await?;
    let mut out = Published {
        per_room: vec![0; names.len()],
        deliveries: 0,
    };
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let pads: Vec<String> = sizes.iter().map(|&s| "x".repeat(s)).collect();
    let paths: Vec<String> = names
        .iter()
        .map(|name| target.path(&format!("/publish?room={name}&event=soak")))
        .collect();
    let mut i = 0;
    while Instant::now() < deadline {
        ticker.tick().await;
        let room = i % names.len();
        i += 1;
        let seq = out.per_room[room];
        let data = format!("{seq} {}", pads[room]);
        let path = &paths[room];
        let (status, body) = timeout(
            "a response",
            http.request(Method::POST, path, Bytes::from(data)),
        )
        .await??;
        if !status.is_success() {
            bail!("POST {path}: {status}: {}", String::from_utf8_lossy(&body));
        }
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        out.deliveries += v.get("delivered").and_then(|d| d.as_u64()).unwrap_or(0);
        out.per_room[room] += 1;
    }
    for (room, name) in names.iter().enumerate() {
        let path = target.path(&format!("/publish?room={name}&event=soak-end"));
        let count = Bytes::from(out.per_room[room].to_string());
        let (status, _) = timeout("a response", http.request(Method::POST, &path, count)).await??;
        if !status.is_success() {
            bail!("POST {path}: {status}");
        }
    }
    Ok(out)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
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

struct Report {
    seconds: u64,
    url: String,
    readers: usize,
    slow: usize,
    published: Vec<(String, u64)>,
    deliveries: u64,
    received: u64,
    dropped: u64,
    slow_closes: u64,
    lost: u64,
    disorder: u64,
    cut: usize,
    churn: [u64; 6],
    rss: Option<(u64, u64)>,
    leftover: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let total: u64 = self.published.iter().map(|(_, n)| n).sum();
        let rooms: Vec<String> = self
            .published
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        let c = &self.churn;
        writeln!(f, "soak: {} s against {}", self.seconds, self.url)?;
        writeln!(
            f,
            "clients: {} fast readers, {} slow readers, {} churned connections \
             (clean {}, reset {}, half request {}, HEAD {}, stats {}; {} failed)",
            self.readers,
            self.slow,
            c[0] + c[1] + c[2] + c[3] + c[4],
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5]
        )?;
        writeln!(f, "events published: {total} ({})", rooms.join(", "))?;
        writeln!(f, "deliveries (server): {}", self.deliveries)?;
        writeln!(f, "received by fast readers: {}", self.received)?;
        writeln!(
            f,
            "dropped by policy: {} (events dropped {}, slow consumers closed {})",
            self.dropped + self.slow_closes,
            self.dropped,
            self.slow_closes
        )?;
        writeln!(f, "lost without policy: {}", self.lost)?;
        writeln!(f, "out of order or repeated: {}", self.disorder)?;
        writeln!(f, "fast readers cut off: {}", self.cut)?;
        match self.rss {
            Some((base, peak)) => writeln!(
                f,
                "peak server RSS: {:.1} MiB (at start {:.1} MiB)",
                mib(peak),
                mib(base)
            )?,
            None => writeln!(f, "peak server RSS: n/a (no --server-pid)")?,
        }
        write!(f, "connections left open: {}", self.leftover)
    }
}

async fn soak(args: &Args, target: &Target, pid: Option<u32>) -> anyhow::Result<Report> {
    let before = stats(target).await?;
    if before.connections != 0 {
        eprintln!(
            "note: the server already has {} connections; \"left open\" counts them too",
            before.connections
        );
    }
    let rss_base = pid.and_then(rss_bytes);
    let peak = Arc::new(AtomicU64::new(rss_base.unwrap_or(0)));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = pid.map(|pid| {
        let peak = peak.clone();
        let sampling = sampling.clone();
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                if let Some(b) = rss_bytes(pid) {
                    peak.fetch_max(b, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    });

    // Rooms: small ones, the large one, the bulk one.
    let mut names: Vec<String> = (0..args.rooms).map(|k| format!("soak-{k}")).collect();
    let mut sizes = vec![SMALL_SIZE; names.len()];
    names.push(LARGE_ROOM.into());
    sizes.push(args.large_size);
    names.push(BULK_ROOM.into());
    sizes.push(args.bulk_size);
    // The room of each fast reader.
    let mut plan = Vec::new();
    for k in 0..args.rooms as usize {
        plan.resize(plan.len() + args.readers_per_room as usize, k);
    }
    plan.resize(plan.len() + args.large_room as usize, names.len() - 2);
    plan.resize(plan.len() + BULK_READERS, names.len() - 1);

    let mut opened = Vec::new();
    for &room in &plan {
        let conn = open_reader(target, &names[room])
            .await
            .with_context(|| format!("opening a reader of {}", names[room]))?;
        opened.push((room, conn));
    }
    let mut first_slow = Vec::new();
    for _ in 0..args.slow_readers {
        first_slow.push(open_slow(target, BULK_ROOM).await?);
    }
    let stop_waiting = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = opened
        .into_iter()
        .map(|(room, conn)| tokio::spawn(follow(room, conn, stop_waiting.clone())))
        .collect();

    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.duration);
    let churn = Arc::new(Churn::default());
    let hold = Duration::from_secs(args.slow_hold);
    let slow_opened = Arc::new(AtomicU64::new(first_slow.len() as u64));
    let slow: Vec<_> = first_slow
        .into_iter()
        .map(|s| {
            tokio::spawn(slow_reader(
                target.clone(),
                s,
                hold,
                deadline,
                slow_opened.clone(),
            ))
        })
        .collect();
    let churners: Vec<_> = (0..args.churners)
        .map(|id| {
            tokio::spawn(churner(
                target.clone(),
                id,
                args.rooms,
                deadline,
                churn.clone(),
            ))
        })
        .collect();
    let published = publish(target, &names, &sizes, args.rate, deadline).await;

    // Every fast reader should now see its room's end marker (bounded: a reader still
    // waiting after that is counted as cut off).
    let watchdog = {
        let stop = stop_waiting.clone();
        tokio::spawn(async move {
            tokio::time::sleep(WAIT * 2).await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    let mut reports = Vec::new();
    for r in readers {
        reports.push(r.await.context("a reader task failed")?);
    }
    watchdog.abort();
    for c in churners {
        let _ = c.await;
    }
    for s in slow {
        let _ = s.await;
    }
    let published = published?;

    // Every client is gone: the server should hold no connection.
    let mut after = stats(target).await?;
    let settle = Instant::now() + WAIT;
    while after.connections > 0 && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = stats(target).await?;
    }
    sampling.store(false, Ordering::Relaxed);
    if let Some(s) = sampler {
        let _ = s.await;
    }
    if let Some(b) = pid.and_then(rss_bytes) {
        peak.fetch_max(b, Ordering::Relaxed);
    }

    let mut lost = 0;
    let mut received = 0;
    let mut disorder = 0;
    let mut cut = 0;
    for r in &reports {
        let expected = published.per_room[r.room];
        received += r.received;
        disorder += r.disorder;
        lost += expected.saturating_sub(r.received);
        if let Some(why) = &r.cut {
            cut += 1;
            eprintln!("a reader of {} was cut off: {why}", names[r.room]);
        }
    }
    let churn_counts = [
        churn.clean.load(Ordering::Relaxed),
        churn.reset.load(Ordering::Relaxed),
        churn.half_request.load(Ordering::Relaxed),
        churn.head.load(Ordering::Relaxed),
        churn.stats.load(Ordering::Relaxed),
        churn.errors.load(Ordering::Relaxed),
    ];
    Ok(Report {
        seconds: args.duration,
        url: args.url.clone(),
        readers: reports.len(),
        slow: slow_opened.load(Ordering::Relaxed) as usize,
        published: names
            .iter()
            .cloned()
            .zip(published.per_room.iter().copied())
            .collect(),
        deliveries: published.deliveries,
        received,
        dropped: after.dropped_events - before.dropped_events.min(after.dropped_events),
        slow_closes: after.slow_consumer_closes
            - before.slow_consumer_closes.min(after.slow_consumer_closes),
        lost,
        disorder,
        cut,
        churn: churn_counts,
        rss: rss_base.map(|b| (b, peak.load(Ordering::Relaxed))),
        leftover: after.connections,
    })
}
