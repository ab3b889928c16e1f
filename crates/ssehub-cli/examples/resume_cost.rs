//! What a resume across many rooms costs a running hub, and what it does to publishers.
//!
//! Fills the history of `--rooms` rooms with `--events` events each (through `POST
//! /publish`, many requests in flight), then:
//! 1. opens `--resumes` streams one after the other, each naming every room with
//!    `last_event_id=earliest`, reads its replay and closes it: the server's CPU time
//!    per resume (from `/proc/PID/stat`) and the client's time to the end of the replay;
//! 2. runs `--loops` clients that do such resumes back to back while one publisher sends
//!    `--rate` events a second to another room for `--seconds`: the publish latency
//!    (p50, p99, max), the figure other clients pay for those resumes.
//!
//! ```text
//! taskset -c 0 target/release/ssehub serve --tick-interval 0 --port 2015 & PID=$!
//! taskset -c 1 target/release/examples/resume_cost --server-pid $PID
//! ```

#[path = "../src/procfs.rs"]
#[allow(dead_code)] // its RSS reader is not needed here
mod procfs;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use procfs::cpu_seconds;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
struct Args {
    /// The hub's address.
    #[arg(long, default_value = "127.0.0.1:2015")]
    addr: SocketAddr,
    /// The hub's process, for its CPU time.
    #[arg(long)]
    server_pid: u32,
    #[arg(long, default_value_t = 255)]
    rooms: usize,
    /// Events per room (at most the hub's history size per room).
    #[arg(long, default_value_t = 1000)]
    events: usize,
    #[arg(long, default_value_t = 50)]
    resumes: usize,
    #[arg(long, default_value_t = 2)]
    loops: usize,
    #[arg(long, default_value_t = 200)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Skip filling (the history is already full from an earlier run).
    #[arg(long)]
    no_fill: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rooms: Vec<String> = (0..args.rooms).map(|i| format!("r{i:03}")).collect();
    if !args.no_fill {
        let started = Instant::now();
        fill(args.addr, &rooms, args.events).await?;
        println!(
            "filled {} rooms x {} events in {:.1} s",
            rooms.len(),
            args.events,
            started.elapsed().as_secs_f64()
        );
    }
    let query: String = rooms
        .iter()
        .map(|r| format!("room={r}"))
        .collect::<Vec<_>>()
        .join("&");
    let path = format!("/sse?{query}&last_event_id=earliest");
    println!("request: GET of {} bytes", path.len());

    // 1. One resume after the other.
    let cpu0 = cpu_seconds(args.server_pid)?;
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..args.resumes {
        let t = Instant::now();
        bytes = resume(args.addr, &path).await?;
        times.push(t.elapsed());
    }
    let cpu = cpu_seconds(args.server_pid)? - cpu0;
    times.sort();
    println!(
        "resume: {:.2} ms of server CPU each ({} resumes), {} bytes replayed, client time p50 {:.2} ms, max {:.2} ms",
        cpu * 1e3 / args.resumes as f64,
        args.resumes,
        bytes,
        ms(times[times.len() / 2]),
        ms(*times.last().unwrap()),
    );

    // 2. Publish latency while resumes loop.
    let stop = Arc::new(AtomicBool::new(false));
    let mut loopers = Vec::new();
    for _ in 0..args.loops {
        let (stop, path, addr) = (stop.clone(), path.clone(), args.addr);
        loopers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if resume(addr, &path).await.is_ok() {
                    n += 1;
                }
            }
            n
        }));
    }
    let mut latencies = Vec::new();
    let mut conn = Keep::open(args.addr).await?;
    let every = Duration::from_nanos(1_000_000_000 / args.rate.max(1));
    let mut tick = tokio::time::interval(every);
    let end = Instant::now() + Duration::from_secs(args.seconds);
    while Instant::now() < end {
        tick.tick().await;
        let t = Instant::now();
        conn.publish("elsewhere", "x").await?;
        latencies.push(t.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let mut resumed = 0;
    for l in loopers {
        resumed += l.await?;
    }
    latencies.sort();
    let pct = |p: f64| ms(latencies[((latencies.len() - 1) as f64 * p) as usize]);
    println!(
        "publish under {} resume loops ({resumed} resumes): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} publishes)",
        args.loops,
        pct(0.5),
        pct(0.99),
        ms(*latencies.last().unwrap()),
        latencies.len()
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Publish `events` events to each of `rooms`, 64 connections in flight.
async fn fill(addr: SocketAddr, rooms: &[String], events: usize) -> anyhow::Result<()> {
    let rooms = Arc::new(rooms.to_vec());
    let mut tasks = Vec::new();
    const CONNS: usize = 64;
    for k in 0..CONNS {
        let rooms = rooms.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Keep::open(addr).await?;
            for n in 0..events {
                for (i, room) in rooms.iter().enumerate() {
                    if (n * rooms.len() + i) % CONNS == k {
                        conn.publish(room, &format!("{room} event {n}")).await?;
                    }
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Open a stream at `path`, read until the replay's end (the stream goes quiet for
/// 50 ms, or 4 MiB), close it. Returns the bytes read.
async fn resume(addr: SocketAddr, path: &str) -> anyhow::Result<usize> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0;
    loop {
        match tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => return Ok(total),
            Ok(Ok(n)) => total += n,
            Ok(Err(e)) => return Err(e.into()),
        }
        if total > 4 << 20 {
            return Ok(total);
        }
    }
}

/// A keep-alive connection for `POST /publish`.
struct Keep {
    s: TcpStream,
    addr: SocketAddr,
    buf: Vec<u8>,
}

impl Keep {
    async fn open(addr: SocketAddr) -> anyhow::Result<Keep> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Keep {
            s,
            addr,
            buf: vec![0u8; 4096],
        })
    }

    /// Publish (`?room=R`, the body is the data) and wait for the whole answer (a short
    /// JSON body with a length).
    async fn publish(&mut self, room: &str, data: &str) -> anyhow::Result<()> {
        let room: String = form_urlencoded::byte_serialize(room.as_bytes()).collect();
        let req = format!(
            "POST /publish?room={room} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{data}",
            self.addr,
            data.len()
        );
        self.s.write_all(req.as_bytes()).await?;
        let mut got = Vec::new();
        loop {
            let n = self.s.read(&mut self.buf).await?;
            anyhow::ensure!(n > 0, "the hub closed the connection");
            got.extend_from_slice(&self.buf[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut res = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) = res.parse(&got)? {
                anyhow::ensure!(
                    res.code.is_some_and(|c| c < 300),
                    "publish answered {:?}",
                    res.code
                );
                let len: usize = res
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                    .unwrap_or(0);
                if got.len() >= head + len {
                    return Ok(());
                }
            }
        }
    }
}
