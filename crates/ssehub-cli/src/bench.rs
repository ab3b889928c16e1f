//! `ssehub bench`: a load generator that measures what a fan-out costs the server.
//!
//! It opens N subscribers (`GET /sse?room=bench-K`, round-robin over K rooms), waits
//! until all are connected and the server's `/stats` agrees, then publishes M events of
//! S bytes through `POST /publish?room=bench-K&event=bench` (round-robin over the rooms)
//! at a fixed rate or as fast as the publishers go. Each event's data starts with its
//! send time, so every subscriber measures publish-to-receive latency: to the wall clock
//! after its read, and to the kernel's receive timestamp of that read (see [`sub`]).
//!
//! Given the server's pid (or starting the server itself), it also reads the server's
//! CPU time (`/proc/PID/stat`) around the publishing phase and its resident memory
//! (`/proc/PID/status`) before connecting and with every subscriber connected and idle:
//! server CPU per delivery and memory per idle connection.
//!
//! Subscribers live in `--threads` worker threads (see [`sub`]); publishing and `/stats`
//! run on the command's runtime. One process holds as many subscribers as its open-file
//! limit allows (less a small reserve); spreading subscribers over child processes is
//! not implemented, so N is capped there.

#[path = "bench_sub.rs"]
mod sub;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::sync::watch;

use crate::fd_limit::raise_fd_limit;
use crate::hub_client::{Client, ServerStats, Target};
use crate::procfs::{cpu_seconds, rss_bytes};

/// File descriptors kept back from the open-file limit for everything but subscribers.
const FD_RESERVE: u64 = 64;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Server base URL; the bench uses its /sse, /publish and /stats.
    #[arg(long, default_value = "http://127.0.0.1:2015")]
    pub url: String,
    /// Subscribers to open.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Rooms `bench-0..K`: subscribers and publishes go round-robin over them.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Events to publish (0: only connect, for the memory figure).
    #[arg(long, default_value_t = 1000)]
    pub messages: u64,
    /// Bytes of data per event (at least 21: the send time is embedded).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Events per second, all publishers together; absent: as fast as possible.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Concurrent publishing connections.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// The server's pid, for its CPU time and memory.
    #[arg(long, conflicts_with = "spawn_server")]
    pub server_pid: Option<u32>,
    /// Start `ssehub serve --tick-interval 0` on the URL's address and port, pinned with
    /// `taskset -c <--server-cpus>`, and stop it at the end.
    #[arg(long)]
    pub spawn_server: bool,
    /// CPU list for the spawned server (empty: do not pin).
    #[arg(long, default_value = "0")]
    pub server_cpus: String,
    /// Subscriber worker threads (each a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Subscriber handshakes in flight at once (more overflows a busy server's accept
    /// queue, and a dropped SYN costs a one-second retransmit).
    #[arg(long, default_value_t = 32)]
    pub connect_concurrency: usize,
    /// Upper bound, in seconds, on each phase (connecting, publishing, draining).
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Seconds without a new delivery after which missing deliveries count as lost.
    #[arg(long, default_value_t = 3)]
    pub drain_idle: u64,
    /// Name of the server in the report.
    #[arg(long)]
    pub label: Option<String>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Serialize)]
struct Latency {
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
    mean: f64,
}

impl Latency {
    fn of(hist: &Histogram<u64>) -> Option<Latency> {
        (!hist.is_empty()).then(|| Latency {
            p50: hist.value_at_quantile(0.50),
            p99: hist.value_at_quantile(0.99),
            p999: hist.value_at_quantile(0.999),
            max: hist.max(),
            mean: hist.mean(),
        })
    }
}

#[derive(Debug, Serialize)]
struct Report {
    label: Option<String>,
    subscribers: usize,
    rooms: usize,
    messages: u64,
    size: usize,
    rate: Option<f64>,
    publishers: usize,
    connect_seconds: f64,
    server_connections: u64,
    published: u64,
    publish_errors: u64,
    publish_seconds: f64,
    publish_rate: f64,
    /// Sum of the server's `delivered` counts.
    expected_deliveries: u64,
    /// What the room plan predicts (differs if others are connected to the bench rooms).
    planned_deliveries: u64,
    received_deliveries: u64,
    lost_deliveries: u64,
    dropped_events: u64,
    slow_consumer_closes: u64,
    stream_failures: usize,
    /// First publish to last receive.
    duration_seconds: f64,
    deliveries_per_second: f64,
    latency_us: Option<Latency>,
    /// Send time to the kernel's receive timestamp (`SO_TIMESTAMPNS`) of the read that
    /// completed the event: without the generator's own queueing.
    latency_at_socket_us: Option<Latency>,
    server_cpu_seconds: Option<f64>,
    server_cpu_us_per_delivery: Option<f64>,
    generator_cpu_us_per_delivery: Option<f64>,
    server_rss_before_bytes: Option<u64>,
    server_rss_idle_bytes: Option<u64>,
    server_rss_per_connection_bytes: Option<f64>,
    first_error: Option<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.subscribers == 0 || args.rooms == 0 || args.publishers == 0 || args.threads == 0 {
        bail!("--subscribers, --rooms, --publishers and --threads must be at least 1");
    }
    if args.size < 21 {
        bail!("--size must be at least 21 bytes (the send time is embedded in the data)");
    }
    if let Some(rate) = args.rate {
        if !(rate > 0.0 && rate.is_finite()) {
            bail!("--rate must be a positive number of events per second");
        }
    }
    let target = Target::parse(&args.url)
        .await
        .with_context(|| format!("--url {}", args.url))?;
    let limit = raise_fd_limit();
    if args.subscribers as u64 + FD_RESERVE > limit {
        bail!(
            "{} subscribers need more than this process's open-file limit of {limit} \
             (one process holds at most {}); spreading subscribers over several processes \
             is not implemented",
            args.subscribers,
            limit.saturating_sub(FD_RESERVE)
        );
    }

    let mut server = if args.spawn_server {
        Some(spawn_server(&target, &args.server_cpus)?)
    } else {
        None
    };
    let pid = args.server_pid.or(server.as_ref().map(|c| c.id()));
    let result = bench(&args, &target, pid).await;
    if let Some(child) = server.as_mut() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    if report.lost_deliveries > 0 && report.dropped_events == 0 && report.slow_consumer_closes == 0
    {
        bail!(
            "{} deliveries lost although the server reports no overflow",
            report.lost_deliveries
        );
    }
    Ok(())
}

/// Start `ssehub serve --tick-interval 0` on `target`'s address, pinned with
/// `taskset -c <cpus>` unless `cpus` is empty.
pub(crate) fn spawn_server(target: &Target, cpus: &str) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("locating the ssehub executable")?;
    let port = target.addr.port().to_string();
    let bind = target.addr.ip().to_string();
    let serve = [
        "serve",
        "--tick-interval",
        "0",
        "--bind",
        bind.as_str(),
        "--port",
        port.as_str(),
    ];
    let mut cmd = if cpus.is_empty() {
        Command::new(&exe)
    } else {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(cpus).arg(&exe);
        c
    };
    cmd.args(serve)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let hint = if cpus.is_empty() {
        ""
    } else {
        "; is taskset installed?"
    };
    cmd.spawn()
        .with_context(|| format!("starting the server ({cmd:?}){hint}"))
}

/// `first`, or a later reading once the server's connection count stops falling: the
/// connections of a run that just ended may still be closing, and they must neither count
/// as others' connections that stay nor as memory in use before this run. Bounded: after
/// a few seconds of steady closing the latest reading is taken as it is.
async fn settled(target: &Target, first: ServerStats) -> anyhow::Result<ServerStats> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = first;
    while last.connections > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = target.stats().await?;
        let falling = now.connections < last.connections;
        last = now;
        if !falling {
            break;
        }
    }
    Ok(last)
}

/// Whether the server's `now` counts all `n` of this run's subscribers, `before` being
/// its counters from before the first one connected.
///
/// Where the server reports how many connections it ever accepted (`connections_total`),
/// that is the measure: it grows by exactly `n` for this run's subscribers whatever other
/// connections close meanwhile (a previous run's still closing, say). Only others opening
/// at the same time could make it pass early, and then every subscriber has its response
/// head anyway. Otherwise the open connections must have grown by `n`, which holds while
/// nobody else leaves.
fn agrees(before: &ServerStats, now: &ServerStats, n: u64) -> Result<(), String> {
    match before.connections_total.zip(now.connections_total) {
        Some((t0, t1)) => {
            let accepted = t1.saturating_sub(t0);
            if accepted >= n {
                Ok(())
            } else {
                Err(format!(
                    "the server accepted {accepted} connections since the bench started \
                     (connections_total {t0} -> {t1}), expected {n}"
                ))
            }
        }
        None => {
            let want = before.connections + n;
            if now.connections >= want {
                Ok(())
            } else {
                Err(format!(
                    "the server reports {} connections, expected at least {want} \
                     ({} before the bench and its {n} subscribers; did other clients leave?)",
                    now.connections, before.connections
                ))
            }
        }
    }
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos}/{len} {per_sec} {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_prefix(what.to_owned());
    pb
}

async fn bench(args: &Args, target: &Target, pid: Option<u32>) -> anyhow::Result<Report> {
    let limit = Duration::from_secs(args.timeout);

    // A server we started may still be starting; one we were pointed at must answer now.
    let patience = if args.spawn_server { 10 } else { 0 };
    let deadline = Instant::now() + Duration::from_secs(patience);
    let stats0 = loop {
        match target.stats().await {
            Ok(s) => break s,
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("the server at {} does not answer", args.url)))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let stats0 = settled(target, stats0).await?;
    let rss_before = pid.map(rss_bytes).transpose()?;

    // Subscribers.
    let shared = Arc::new(sub::Shared::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut plans: Vec<Vec<(usize, String)>> = vec![Vec::new(); args.threads];
    for i in 0..args.subscribers {
        plans[i % args.threads].push((i, format!("bench-{}", i % args.rooms)));
    }
    let threads: Vec<_> = plans
        .into_iter()
        .map(|subscribers| {
            let plan = sub::Plan {
                server: target.addr,
                host: target.host.clone(),
                sse_path: target.path("/sse"),
                subscribers,
                concurrency: (args.connect_concurrency / args.threads).max(1),
            };
            let (shared, stop) = (shared.clone(), stop_rx.clone());
            std::thread::Builder::new()
                .name("bench-subscribers".into())
                .spawn(move || sub::run_thread(plan, shared, stop))
                .expect("spawning a subscriber thread")
        })
        .collect();
    let stop = |threads: Vec<std::thread::JoinHandle<sub::Latencies>>| {
        let _ = stop_tx.send(true);
        let mut all = sub::Latencies::new();
        for t in threads {
            if let Ok(l) = t.join() {
                all.add(&l);
            }
        }
        all
    };

    let t_connect = Instant::now();
    let pb = bar(args.subscribers as u64, "connecting");
    let n = args.subscribers;
    let connected = loop {
        let c = shared.connected.load(Ordering::Relaxed);
        let f = shared.failed.load(Ordering::Relaxed);
        pb.set_position(c as u64);
        if f > 0 || c >= n || t_connect.elapsed() > limit {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    pb.finish_and_clear();
    if connected < n {
        stop(threads);
        let err = shared.first_error.lock().unwrap().clone();
        bail!(
            "only {connected} of {n} subscribers connected: {}",
            err.unwrap_or_else(|| "timed out".into())
        );
    }
    let connect_seconds = t_connect.elapsed().as_secs_f64();

    // The server must agree that everyone is connected.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (server_connections, agreed) = loop {
        let s = target.stats().await?;
        let agreed = agrees(&stats0, &s, n as u64);
        if agreed.is_ok() || Instant::now() >= deadline {
            break (s.connections, agreed);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if let Err(e) = agreed {
        stop(threads);
        bail!("{e}");
    }

    // Memory with every subscriber connected and idle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = pid.map(rss_bytes).transpose()?;

    // Publish.
    let published = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let publish_errors = Arc::new(AtomicU64::new(0));
    let publish_error: Arc<Mutex<Option<String>>> = Arc::default();
    let cpu0 = pid.map(cpu_seconds).transpose()?;
    let gen_cpu0 = cpu_seconds(std::process::id()).ok();
    let t0 = Instant::now();
    let t0_ns = sub::now_ns();
    let mut publish_seconds = 0.0;
    if args.messages > 0 {
        let mut tasks = Vec::new();
        for p in 0..args.publishers {
            let mut client = Client::connect(target.addr, &target.host).await?;
            let (published, delivered, errors, error) = (
                published.clone(),
                delivered.clone(),
                publish_errors.clone(),
                publish_error.clone(),
            );
            let (messages, publishers, rooms, size, rate) = (
                args.messages,
                args.publishers as u64,
                args.rooms as u64,
                args.size,
                args.rate,
            );
            let paths: Vec<String> = (0..rooms)
                .map(|k| target.path(&format!("/publish?room=bench-{k}&event=bench")))
                .collect();
            tasks.push(tokio::spawn(async move {
                let mut i = p as u64;
                while i < messages {
                    if let Some(rate) = rate {
                        let due = t0 + Duration::from_secs_f64(i as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let path = &paths[(i % rooms) as usize];
                    let data = Bytes::from(sub::event_data(size));
                    match client.publish(path, data).await {
                        Ok(d) => {
                            delivered.fetch_add(d, Ordering::Relaxed);
                        }
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            error
                                .lock()
                                .unwrap()
                                .get_or_insert_with(|| format!("{e:#}"));
                        }
                    }
                    published.fetch_add(1, Ordering::Relaxed);
                    i += publishers;
                }
            }));
        }
        let pb = bar(args.messages, "publishing");
        loop {
            pb.set_position(published.load(Ordering::Relaxed));
            if tasks.iter().all(|t| t.is_finished()) || t0.elapsed() > limit {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for t in &tasks {
            t.abort();
        }
        pb.finish_and_clear();
        publish_seconds = t0.elapsed().as_secs_f64();
    }

    // Drain: wait for every delivery, or until nothing arrives for a while.
    let expected = delivered.load(Ordering::Relaxed);
    let pb = bar(expected, "receiving");
    let drain_start = Instant::now();
    let mut last = (shared.received.load(Ordering::Relaxed), Instant::now());
    loop {
        let r = shared.received.load(Ordering::Relaxed);
        pb.set_position(r);
        if r >= expected || drain_start.elapsed() > limit {
            break;
        }
        if r != last.0 {
            last = (r, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(args.drain_idle) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pb.finish_and_clear();
    let cpu1 = pid.map(cpu_seconds).transpose()?;
    let gen_cpu1 = cpu_seconds(std::process::id()).ok();
    let stats1 = target.stats().await?;
    let received = shared.received.load(Ordering::Relaxed);
    let last_ns = shared.last_receive_ns.load(Ordering::Relaxed);
    let stream_failures = shared.failed.load(Ordering::Relaxed);
    let first_error = shared
        .first_error
        .lock()
        .unwrap()
        .clone()
        .or(publish_error.lock().unwrap().clone());
    let latencies = stop(threads);

    let published = published.load(Ordering::Relaxed);
    let duration_seconds = if received > 0 && last_ns > t0_ns {
        (last_ns - t0_ns) as f64 / 1e9
    } else {
        0.0
    };
    let per_delivery = |cpu: f64| (received > 0).then(|| cpu * 1e6 / received as f64);
    let server_cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
    let planned: u64 = (0..args.messages)
        .map(|i| {
            let room = (i % args.rooms as u64) as usize;
            (n / args.rooms + usize::from(room < n % args.rooms)) as u64
        })
        .sum();
    Ok(Report {
        label: args.label.clone(),
        subscribers: n,
        rooms: args.rooms,
        messages: args.messages,
        size: args.size,
        rate: args.rate,
        publishers: args.publishers,
        connect_seconds,
        server_connections,
        published,
        publish_errors: publish_errors.load(Ordering::Relaxed),
        publish_seconds,
        publish_rate: if publish_seconds > 0.0 {
            published as f64 / publish_seconds
        } else {
            0.0
        },
        expected_deliveries: expected,
        planned_deliveries: planned,
        received_deliveries: received,
        lost_deliveries: expected.saturating_sub(received),
        dropped_events: stats1.dropped_events.saturating_sub(stats0.dropped_events),
        slow_consumer_closes: stats1
            .slow_consumer_closes
            .saturating_sub(stats0.slow_consumer_closes),
        stream_failures,
        duration_seconds,
        deliveries_per_second: if duration_seconds > 0.0 {
            received as f64 / duration_seconds
        } else {
            0.0
        },
        latency_us: Latency::of(&latencies.end_to_end),
        latency_at_socket_us: Latency::of(&latencies.at_socket),
        server_cpu_seconds: server_cpu,
        server_cpu_us_per_delivery: server_cpu.and_then(per_delivery),
        generator_cpu_us_per_delivery: gen_cpu0
            .zip(gen_cpu1)
            .and_then(|(a, b)| per_delivery(b - a)),
        server_rss_before_bytes: rss_before,
        server_rss_idle_bytes: rss_idle,
        server_rss_per_connection_bytes: rss_before
            .zip(rss_idle)
            .map(|(a, b)| (b as f64 - a as f64) / n as f64),
        first_error,
    })
}

fn print_report(r: &Report) {
    let opt = |v: Option<f64>, unit: &str, why: &str| match v {
        Some(v) => format!("{v:.2} {unit}"),
        None => format!("n/a ({why})"),
    };
    let no_pid = "no --server-pid";
    let per_delivery_why = if r.server_cpu_seconds.is_some() {
        "no deliveries"
    } else {
        no_pid
    };
    if let Some(label) = &r.label {
        println!("server:            {label}");
    }
    println!(
        "load:              {} subscribers in {} room(s), {} events of {} bytes, {}, {} publisher(s)",
        r.subscribers,
        r.rooms,
        r.messages,
        r.size,
        r.rate.map_or("as fast as possible".to_owned(), |x| format!("{x} events/s")),
        r.publishers
    );
    println!(
        "connected:         {} in {:.2} s (server reports {})",
        r.subscribers, r.connect_seconds, r.server_connections
    );
    println!(
        "published:         {} in {:.2} s ({:.0}/s), {} errors",
        r.published, r.publish_seconds, r.publish_rate, r.publish_errors
    );
    println!(
        "deliveries:        {} received of {} expected ({} planned) in {:.2} s: {:.0}/s",
        r.received_deliveries,
        r.expected_deliveries,
        r.planned_deliveries,
        r.duration_seconds,
        r.deliveries_per_second
    );
    println!(
        "lost:              {} (server: {} dropped events, {} slow-consumer closes; {} streams failed)",
        r.lost_deliveries, r.dropped_events, r.slow_consumer_closes, r.stream_failures
    );
    let latency = |what: &str, l: &Latency| {
        println!(
            "{what:<19}p50 {} us, p99 {} us, p999 {} us, max {} us, mean {:.0} us",
            l.p50, l.p99, l.p999, l.max, l.mean
        );
    };
    if let Some(l) = &r.latency_us {
        latency("latency:", l);
        match &r.latency_at_socket_us {
            Some(l) => latency("latency at socket:", l),
            None => println!("latency at socket: n/a (no kernel receive timestamps)"),
        }
    }
    println!(
        "server CPU:        {} total, {} per delivery",
        opt(r.server_cpu_seconds, "s", no_pid),
        opt(r.server_cpu_us_per_delivery, "us", per_delivery_why)
    );
    println!(
        "generator CPU:     {} per delivery",
        opt(r.generator_cpu_us_per_delivery, "us", "no deliveries")
    );
    println!(
        "server memory:     {} per idle connection (RSS {} -> {} KiB)",
        opt(
            r.server_rss_per_connection_bytes.map(|b| b / 1024.0),
            "KiB",
            no_pid
        ),
        r.server_rss_before_bytes
            .map_or("?".into(), |b| (b / 1024).to_string()),
        r.server_rss_idle_bytes
            .map_or("?".into(), |b| (b / 1024).to_string()),
    );
    if let Some(e) = &r.first_error {
        println!("first error:       {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct BenchCli {
        #[command(flatten)]
        args: Args,
    }

    #[derive(Parser)]
    struct ServeCli {
        #[command(flatten)]
        args: crate::serve::Args,
    }

    fn bench_args(extra: &[&str]) -> Args {
        let argv = ["ssehub-bench"].iter().chain(extra);
        BenchCli::try_parse_from(argv)
            .expect("valid bench arguments")
            .args
    }

    /// The demo server on a free loopback port, in this process.
    async fn start_server() -> (String, tokio::task::JoinHandle<anyhow::Result<()>>) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port()
            .to_string();
        let argv = [
            "serve",
            "--bind",
            "127.0.0.1",
            "--port",
            &port,
            "--tick-interval",
            "0",
        ];
        let args = ServeCli::try_parse_from(argv)
            .expect("valid serve arguments")
            .args;
        let task = tokio::spawn(crate::serve::run(args));
        let url = format!("http://127.0.0.1:{port}");
        let target = Target::parse(&url).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            while target.stats().await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the server starts");
        (url, task)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_delivery_is_counted_against_a_real_server() {
        let (url, server) = start_server().await;
        let args = bench_args(&[
            "--url",
            &url,
            "--subscribers",
            "60",
            "--rooms",
            "3",
            "--messages",
            "30",
            "--rate",
            "300",
            "--publishers",
            "2",
            "--threads",
            "2",
            "--timeout",
            "20",
        ]);
        let target = Target::parse(&args.url).await.unwrap();
        let pid = std::process::id();
        let report =
            tokio::time::timeout(Duration::from_secs(60), bench(&args, &target, Some(pid)))
                .await
                .expect("the bench finishes")
                .expect("the bench succeeds");
        server.abort();
        assert_eq!(report.server_connections, 60);
        assert_eq!(report.published, 30);
        assert_eq!(report.publish_errors, 0);
        // 30 events over 3 rooms of 20 subscribers each.
        assert_eq!(report.planned_deliveries, 600);
        assert_eq!(report.expected_deliveries, 600);
        assert_eq!(report.received_deliveries, 600);
        assert_eq!(report.lost_deliveries, 0);
        assert_eq!(report.stream_failures, 0);
        let latency = report.latency_us.expect("latencies were recorded");
        assert!(latency.p50 <= latency.p99 && latency.p99 <= latency.max);
        // The kernel stamps a read before it returns: never later than the wall clock after.
        let at_socket = report
            .latency_at_socket_us
            .expect("receive timestamps were recorded");
        assert!(at_socket.p50 <= at_socket.p99 && at_socket.p99 <= at_socket.max);
        assert!(at_socket.p50 <= latency.p50 && at_socket.max <= latency.max);
        assert!(report.server_cpu_us_per_delivery.is_some());
        assert!(report.server_rss_per_connection_bytes.is_some());
    }

    #[test]
    fn agreement_counts_accepted_connections_where_the_server_reports_them() {
        let s = |connections, connections_total| ServerStats {
            connections,
            connections_total,
            ..ServerStats::default()
        };
        // A previous run's 30 connections closed meanwhile; the total still shows all 10.
        assert_eq!(agrees(&s(40, Some(100)), &s(20, Some(110)), 10), Ok(()));
        let err = agrees(&s(40, Some(100)), &s(49, Some(109)), 10).unwrap_err();
        assert!(err.contains("accepted 9 "), "{err}");
        // Without the total, the open connections must have grown by N.
        assert_eq!(agrees(&s(5, None), &s(15, None), 10), Ok(()));
        let err = agrees(&s(5, None), &s(14, None), 10).unwrap_err();
        assert!(err.contains("expected at least 15"), "{err}");
    }

    #[tokio::test]
    async fn more_subscribers_than_descriptors_is_a_clear_error() {
        let args = bench_args(&["--url", "http://127.0.0.1:9", "--subscribers", "100000000"]);
        let err = run(args).await.unwrap_err().to_string();
        assert!(err.contains("open-file limit"), "{err}");
    }

    #[tokio::test]
    async fn bad_arguments_are_refused() {
        for extra in [
            &["--size", "8"][..],
            &["--rate", "0"],
            &["--rooms", "0"],
            &["--url", "https://x"],
        ] {
            let err = run(bench_args(extra)).await.unwrap_err().to_string();
            assert!(err.contains("--"), "{extra:?}: {err}");
        }
    }

    #[tokio::test]
    async fn a_server_that_is_not_there_is_reported() {
        // Port 9 (discard) is closed on loopback.
        let args = bench_args(&["--url", "http://127.0.0.1:9", "--subscribers", "1"]);
        let err = format!("{:#}", run(args).await.unwrap_err());
        assert!(err.contains("does not answer"), "{err}");
    }
}
