//! `ssehub bench`: a load generator that measures what a fan-out costs the server.
//!
//! It opens N subscribers (`GET /sse?room=bench-K`, round-robin over K rooms), waits
//! until all are connected and the server's `/stats` agrees, then publishes M events of
//! S bytes through `POST /publish?room=bench-K&event=bench` (round-robin over the rooms)
//! at a fixed rate or as fast as the publishers go. Each event's data starts with its
//! send time, so every subscriber measures publish-to-receive latency: to the wall clock
//! after its read, and to the kernel's receive timestamp of that read (see
//! [`subscribers`]).
//!
//! Given the server's pid (or starting the server itself), it also reads the server's
//! CPU time (`/proc/PID/stat`) around the publishing phase and its resident memory
//! (`/proc/PID/status`) before connecting and with every subscriber connected and idle:
//! server CPU per delivery and memory per idle connection.
//!
//! Subscribers live in `--threads` worker threads (see [`subscribers`]); publishing and
//! `/stats` run on the command's runtime. One process holds as many subscribers as its
//! open-file limit allows (less a small reserve); spreading subscribers over child
//! processes is not implemented, so N is capped there.
//!
//! Over TLS (`https://` URLs; certificates are not verified, `tls_client.rs`) the
//! subscribers speak HTTP/1.1, read as cheaply as plain ones, or HTTP/2 (`--http2`,
//! `--streams-per-connection`): `secure.rs`. `--spawn-nchan` measures Nginx with Nchan
//! in the same run instead (`nchan.rs`).
//!
//! The run's phases are here; each phase's work is in the module named for it;
//! `sweep` runs them once per rate of `--sweep`.

mod agents;
mod agreement;
mod dialect;
mod event_scan;
mod fleet;
mod latency;
mod nchan;
mod publishers;
mod replay;
mod report;
mod rx_time;
mod secure;
mod subscribers;
mod sweep;

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};

use crate::fd_limit::raise_fd_limit;
use crate::hub_client::{ServerStats, Target};
use crate::procfs::{cpu_seconds, rss_bytes};
use crate::server_process::ServerProcess;
use agents::Agents;
pub(crate) use dialect::Dialect;
use fleet::Fleet;
use latency::now_ns;
use publishers::Published;
use report::{Costs, Measured, Report};
use subscribers::Subscribers;

pub(crate) use agents::{run_agent, AgentArgs};

/// File descriptors kept back from the open-file limit for everything but subscribers.
const FD_RESERVE: u64 = 64;

#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Args {
    /// Server base URL; the bench uses its /sse, /publish and /stats. `https://` speaks
    /// TLS without verifying the certificate (a test hub's).
    #[arg(long, default_value = "http://127.0.0.1:2015")]
    pub url: String,
    /// Subscribe over HTTP/2 (ALPN `h2`; needs an `https://` subscriber URL).
    #[arg(long)]
    pub http2: bool,
    /// With `--http2`: streams sharing one connection (a browser's tabs share one).
    #[arg(long, default_value_t = 1, requires = "http2")]
    pub streams_per_connection: usize,
    /// Subscribers per loopback source address (127.0.0.1, .2, ...); default 20,000, or
    /// 1,000 over TLS (the server caps TLS requests in progress per address at 1,024).
    #[arg(long)]
    pub per_source_address: Option<usize>,
    /// Subscribers to open.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Rooms `bench-0..K`: subscribers and publishes go round-robin over them.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// The protocol: ssehub's rooms, or the Mercure hub at /.well-known/mercure (its
    /// topics `https://bench.example/rooms/K`; needs `--mercure-key`).
    #[arg(long, value_enum, default_value_t)]
    pub dialect: Dialect,
    /// The Mercure hub's publisher key (an HMAC secret): the bench signs an HS256 token
    /// that may publish to every topic.
    #[arg(long, env = "SSEHUB_BENCH_MERCURE_KEY", hide_env_values = true)]
    pub mercure_key: Option<String>,
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
    /// The server's pid, for its CPU time and memory (repeat it for the nodes of a hub:
    /// their figures add up).
    #[arg(long, conflicts_with = "spawn_server")]
    pub server_pid: Vec<u32>,
    /// Subscribe to these servers instead (repeatable: the nodes of one hub; subscriber
    /// `i` goes to the `i % n`-th); events are still published to `--url`.
    #[arg(long = "sse-url", value_name = "URL")]
    pub sse_urls: Vec<String>,
    /// Spread the subscribers over this many child processes (0: all in this one), for
    /// more connections than one process's open-file limit allows.
    #[arg(long, default_value_t = 0)]
    pub agents: usize,
    /// Start `ssehub serve --tick-interval 0` on the URL's address and port, pinned with
    /// `taskset -c <--server-cpus>`, and stop it at the end.
    #[arg(long)]
    pub spawn_server: bool,
    /// Start Nginx with Nchan instead (`nchan.rs`) on the URL's address and port, with a
    /// certificate made now for an `https://` URL, pinned like `--spawn-server`; the same
    /// run measures it.
    #[arg(long, conflicts_with_all = ["spawn_server", "server_pid"])]
    pub spawn_nchan: bool,
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
    /// After the run, reconnect every subscriber at once resuming N events back (their
    /// `Last-Event-ID` is the id of the event N before the last): time until all are
    /// live again, and server CPU per replayed event. Needs a hub with history.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub replay_back: u64,
    /// Run the scenario once per rate (events per second, or `max`), e.g.
    /// `20,200,2000,20000,max`: a table of CPU per delivery and p99 per rate, and the
    /// saturation point.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "RATES",
        conflicts_with = "rate"
    )]
    pub sweep: Vec<String>,
    /// Seconds each fixed rate of a sweep publishes for (at most `--messages` events).
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    pub sweep_seconds: f64,
    /// Add the sweep to this JSON file under `--label` (replacing that label's), to
    /// compare servers swept one after the other.
    #[arg(long, value_name = "FILE")]
    pub sweep_out: Option<std::path::PathBuf>,
    /// Draw every series of `--sweep-out` to this SVG file (CPU per delivery and p99
    /// against the asked rate), and print them as one table.
    #[arg(long, value_name = "FILE", requires = "sweep_out")]
    pub plot: Option<std::path::PathBuf>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    check(&args)?;
    let mut target = Target::parse(&args.url)
        .await
        .with_context(|| format!("--url {}", args.url))?;
    target.stats_section = args.dialect.stats_section();
    let limit = raise_fd_limit();
    if args.agents == 0 && args.subscribers as u64 + FD_RESERVE > limit {
        bail!(
            "{} subscribers need more than this process's open-file limit of {limit} \
             (one process holds at most {}); spread them over child processes with --agents",
            args.subscribers,
            limit.saturating_sub(FD_RESERVE)
        );
    }

    let server = if args.spawn_server {
        Some(ServerProcess::spawn(&target, &args.server_cpus)?)
    } else {
        None
    };
    let nchan = if args.spawn_nchan {
        Some(nchan::NchanProcess::spawn(&target, &args.server_cpus)?)
    } else {
        None
    };
    let mut pids = args.server_pid.clone();
    pids.extend(server.as_ref().map(ServerProcess::id));
    pids.extend(nchan.as_ref().map(nchan::NchanProcess::id));
    if !args.sweep.is_empty() {
        let result = sweep::run(&args, &target, &pids).await;
        drop(server);
        return result;
    }
    let result = bench(&args, &target, &pids).await;
    drop(server);
    drop(nchan);
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print();
    }
    if let Some(lost) = report.unexplained_loss() {
        bail!("{lost} deliveries lost although the server reports no overflow");
    }
    Ok(())
}

/// Refuse arguments no run could use.
fn check(args: &Args) -> anyhow::Result<()> {
    if args.subscribers == 0 || args.rooms == 0 || args.publishers == 0 || args.threads == 0 {
        bail!("--subscribers, --rooms, --publishers and --threads must be at least 1");
    }
    if args.dialect == Dialect::Mercure && args.mercure_key.is_none() {
        bail!("--dialect mercure needs --mercure-key (the hub's publisher key) to publish");
    }
    if args.http2 && args.streams_per_connection == 0 {
        bail!("--streams-per-connection must be at least 1");
    }
    if args.size < 21 {
        bail!("--size must be at least 21 bytes (the send time is embedded in the data)");
    }
    sweep::parse_rates(&args.sweep)?;
    if !(args.sweep_seconds > 0.0 && args.sweep_seconds.is_finite()) {
        bail!("--sweep-seconds must be a positive number of seconds");
    }
    if let Some(rate) = args.rate {
        if !(rate > 0.0 && rate.is_finite()) {
            bail!("--rate must be a positive number of events per second");
        }
    }
    Ok(())
}

/// A progress bar on standard error for one phase of the run.
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

/// The servers' summed figure `f` over `pids` (`None` without pids).
fn sum_of(pids: &[u32], f: impl Fn(u32) -> anyhow::Result<f64>) -> anyhow::Result<Option<f64>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut total = 0.0;
    for pid in pids {
        total += f(*pid)?;
    }
    Ok(Some(total))
}

/// Where the subscribers go: `--sse-url`s, or `--url`.
async fn sse_targets(args: &Args, target: &Target) -> anyhow::Result<Vec<Target>> {
    if args.sse_urls.is_empty() {
        return Ok(vec![target.clone()]);
    }
    let mut targets = Target::parse_each(&args.sse_urls).await?;
    for t in &mut targets {
        t.stats_section = args.dialect.stats_section();
    }
    Ok(targets)
}

/// Start the subscribers, here or in agents.
fn start_fleet(
    args: &Args,
    targets: &[Target],
    last_event_id: Option<&str>,
) -> anyhow::Result<Fleet> {
    let (n, rooms, threads) = (args.subscribers, args.rooms, args.threads);
    Ok(if args.agents == 0 {
        Fleet::Local(Subscribers::start(
            targets,
            0..n,
            rooms,
            args.dialect,
            threads,
            args.connect_concurrency,
            last_event_id,
            http_of(args),
        ))
    } else {
        let urls: Vec<String> = if args.sse_urls.is_empty() {
            vec![args.url.clone()]
        } else {
            args.sse_urls.clone()
        };
        Fleet::Agents(Agents::start(
            &urls,
            args.agents,
            n,
            rooms,
            args.dialect,
            threads,
            args.connect_concurrency,
            last_event_id,
            http_of(args),
        )?)
    })
}

/// How the subscribers speak.
fn http_of(args: &Args) -> subscribers::Http {
    let urls = if args.sse_urls.is_empty() {
        std::slice::from_ref(&args.url)
    } else {
        &args.sse_urls[..]
    };
    let tls = urls.iter().any(|u| u.starts_with("https://"));
    subscribers::Http {
        http2: args.http2,
        streams_per_connection: args.streams_per_connection.max(1),
        per_source: args.per_source_address.unwrap_or(if tls {
            subscribers::PER_SOURCE_ADDRESS_TLS
        } else {
            subscribers::PER_SOURCE_ADDRESS
        }),
    }
}

/// One run: connect every subscriber, publish, drain, and measure around it.
async fn bench(args: &Args, target: &Target, pids: &[u32]) -> anyhow::Result<Report> {
    let limit = Duration::from_secs(args.timeout);
    let targets = sse_targets(args, target).await?;
    let before = before_run(args, &targets).await?;
    let rss_before = server_rss(pids)?;
    let connected = connect(args, &targets, &before, limit).await?;
    // Memory with every subscriber connected and idle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = server_rss(pids)?;
    let delivery = publish_and_drain(args, target, &targets, &connected.fleet, pids, limit).await?;
    let received = connected.fleet.finish().await;
    let replayed = if args.replay_back > 0 {
        Some(replay::replay(args, &targets, pids, &delivery.published.ids).await?)
    } else {
        None
    };
    let measured = Measured {
        connect_seconds: connected.seconds,
        server_connections: connected.server_connections,
        stats: (before[0], delivery.stats_after),
        start_ns: delivery.start_ns,
        published: delivery.published,
        received,
        replayed,
        costs: Costs {
            server_cpu: delivery.server_cpu,
            generator_cpu: delivery.generator_cpu,
            rss_before: rss_before.map(|b| b as u64),
            rss_idle: rss_idle.map(|b| b as u64),
        },
    };
    Ok(Report::new(args, measured))
}

/// Every server's stats before the run, once it answers.
async fn before_run(args: &Args, targets: &[Target]) -> anyhow::Result<Vec<ServerStats>> {
    // A server we started may still be starting; one we were pointed at must answer now.
    let patience = Duration::from_secs(if args.spawn_server || args.spawn_nchan {
        10
    } else {
        0
    });
    let mut before = Vec::new();
    for (t, url) in targets.iter().zip(urls_of(args)) {
        before.push(agreement::before_run(t, &url, patience).await?);
    }
    Ok(before)
}

/// The servers' summed resident memory, in bytes (`None` without pids).
fn server_rss(pids: &[u32]) -> anyhow::Result<Option<f64>> {
    sum_of(pids, |p| rss_bytes(p).map(|b| b as f64))
}

/// The subscribers, all connected, and what connecting them measured.
struct Connected {
    fleet: Fleet,
    /// Seconds from starting the subscribers until the last one was connected.
    seconds: f64,
    /// The servers' open connections once they counted every subscriber.
    server_connections: u64,
}

/// Start every subscriber and wait until each is connected and every server agrees;
/// on failure the subscribers are stopped before the error is returned.
async fn connect(
    args: &Args,
    targets: &[Target],
    before: &[ServerStats],
    limit: Duration,
) -> anyhow::Result<Connected> {
    let n = args.subscribers;
    let fleet = start_fleet(args, targets, None)?;
    let t_connect = Instant::now();
    let connected = fleet.shared().wait_connected(n, limit).await;
    if connected < n {
        let err = fleet.shared().first_error.lock().unwrap().clone();
        fleet.finish().await;
        bail!(
            "only {connected} of {n} subscribers connected: {}",
            err.unwrap_or_else(|| "timed out".into())
        );
    }
    let seconds = t_connect.elapsed().as_secs_f64();
    // Every server must agree that its share of the subscribers is connected.
    let mut server_connections = 0;
    for (k, (t, b)) in targets.iter().zip(before).enumerate() {
        let share = (0..n).filter(|i| i % targets.len() == k).count() as u64;
        match agreement::all_connected(t, b, share).await {
            Ok(c) => server_connections += c,
            Err(e) => {
                fleet.finish().await;
                return Err(e);
            }
        }
    }
    Ok(Connected {
        fleet,
        seconds,
        server_connections,
    })
}

/// What publishing and draining measured.
struct Delivery {
    /// Wall-clock ns of the first publish.
    start_ns: u64,
    published: Published,
    /// CPU seconds the servers used while publishing and draining.
    server_cpu: Option<f64>,
    /// The same for this process, the generator (`None` with agents).
    generator_cpu: Option<f64>,
    /// The publishing server's stats after the drain.
    stats_after: ServerStats,
}

/// Publish every event and wait until the subscribers received them (or stopped
/// receiving), with the CPU time of the servers and of this process around it.
async fn publish_and_drain(
    args: &Args,
    target: &Target,
    targets: &[Target],
    fleet: &Fleet,
    pids: &[u32],
    limit: Duration,
) -> anyhow::Result<Delivery> {
    let cpu0 = sum_of(pids, cpu_seconds)?;
    let gen_cpu0 = cpu_seconds(std::process::id()).ok();
    let (start, start_ns) = (Instant::now(), now_ns());
    let mut published = publishers::publish(args, target, start, limit).await?;
    if targets.len() > 1 {
        // The publishing node counts its own clients only: expect what the plan says.
        published.delivered =
            report::planned_deliveries(args.messages, args.rooms, args.subscribers);
    }
    let idle = Duration::from_secs(args.drain_idle);
    fleet.shared().drain(published.delivered, idle, limit).await;
    let cpu1 = sum_of(pids, cpu_seconds)?;
    let gen_cpu1 = cpu_seconds(std::process::id()).ok();
    let stats_after = target.stats().await?;
    Ok(Delivery {
        start_ns,
        published,
        server_cpu: cpu0.zip(cpu1).map(|(a, b)| b - a),
        // With agents the generator's work is theirs, not counted here.
        generator_cpu: gen_cpu0
            .zip(gen_cpu1)
            .map(|(a, b)| b - a)
            .filter(|_| args.agents == 0),
        stats_after,
    })
}

/// The base URLs subscribers go to.
fn urls_of(args: &Args) -> Vec<String> {
    if args.sse_urls.is_empty() {
        vec![args.url.clone()]
    } else {
        args.sse_urls.clone()
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
        start_server_with(|_| {}).await
    }

    /// The same, with its configuration changed by `change`.
    async fn start_server_with(
        change: impl FnOnce(&mut crate::config::Config),
    ) -> (String, tokio::task::JoinHandle<anyhow::Result<()>>) {
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
        let mut config = args.config().expect("a valid config");
        change(&mut config);
        let task = tokio::spawn(crate::serve::run(config));
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
    async fn a_sweep_runs_each_rate_and_gathers_the_series_of_two_servers() {
        let (url, server) = start_server().await;
        let dir = std::env::temp_dir().join(format!("ssehub-sweep-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("sweep.json");
        let plot = dir.join("sweep.svg");
        for label in ["first", "second"] {
            let args = bench_args(&[
                "--url",
                &url,
                "--subscribers",
                "20",
                "--messages",
                "40",
                "--sweep",
                "100,max",
                "--sweep-seconds",
                "0.2",
                "--label",
                label,
                "--sweep-out",
                out.to_str().unwrap(),
                "--plot",
                plot.to_str().unwrap(),
            ]);
            let target = Target::parse(&args.url).await.unwrap();
            let pid = std::process::id();
            tokio::time::timeout(Duration::from_secs(60), sweep::run(&args, &target, &[pid]))
                .await
                .expect("the sweep finishes")
                .expect("the sweep succeeds");
        }
        server.abort();
        let all: Vec<sweep::Series> =
            serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(all.len(), 2);
        for series in &all {
            let asked: Vec<_> = series.steps.iter().map(|s| s.asked).collect();
            assert_eq!(asked, vec![Some(100.0), None]);
            assert!(series.steps.iter().all(|s| s.lost == 0));
            assert!(series.steps.iter().all(|s| s.cpu_us_per_delivery.is_some()));
            // 0.2 s at 100/s: 20 events to 20 subscribers.
            assert!(series.steps[0].deliveries_per_second > 0.0);
        }
        let svg = std::fs::read_to_string(&plot).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            svg.matches("<polyline").count(),
            4,
            "two panels, two series"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_mercure_dialect_subscribes_to_topics_and_publishes_forms() {
        const KEY: &str = "a bench secret of at least thirty-two bytes";
        let (url, server) = start_server_with(|c| {
            c.mercure.enabled = true;
            c.mercure.anonymous = true;
            c.mercure.publisher_jwt_key = Some(KEY.into());
        })
        .await;
        let args = bench_args(&[
            "--url",
            &url,
            "--dialect",
            "mercure",
            "--mercure-key",
            KEY,
            "--subscribers",
            "30",
            "--rooms",
            "3",
            "--messages",
            "20",
            "--publishers",
            "2",
            "--timeout",
            "20",
        ]);
        let mut target = Target::parse(&args.url).await.unwrap();
        target.stats_section = Some("mercure");
        let report = tokio::time::timeout(Duration::from_secs(60), bench(&args, &target, &[]))
            .await
            .expect("the bench finishes")
            .expect("the bench succeeds");
        // A wrong key: every publish is refused, and the report says why.
        let wrong = bench_args(&[
            "--url",
            &url,
            "--dialect",
            "mercure",
            "--mercure-key",
            "not the hub's key, though long enough for HS256",
            "--subscribers",
            "3",
            "--messages",
            "2",
            "--drain-idle",
            "1",
        ]);
        let refused = bench(&wrong, &target, &[])
            .await
            .expect("the run completes");
        server.abort();
        assert_eq!(report.server_connections, 30);
        assert_eq!((report.published, report.publish_errors), (20, 0));
        // 20 updates over 3 topics of 10 subscribers each.
        assert_eq!(report.expected_deliveries, 200);
        assert_eq!(report.received_deliveries, 200);
        assert_eq!(refused.publish_errors, 2);
        let error = refused.first_error.expect("the refusal is reported");
        assert!(error.contains("401") || error.contains("403"), "{error}");
        assert_eq!(refused.received_deliveries, 0);
        let no_key =
            BenchCli::try_parse_from(["b", "--dialect", "mercure"]).map(|c| check(&c.args));
        assert!(matches!(no_key, Ok(Err(e)) if e.to_string().contains("--mercure-key")));
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
        let report = tokio::time::timeout(Duration::from_secs(60), bench(&args, &target, &[pid]))
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reconnecting_subscribers_get_exactly_what_they_missed() {
        let (url, server) = start_server().await;
        let args = bench_args(&[
            "--url",
            &url,
            "--subscribers",
            "20",
            "--messages",
            "50",
            "--replay-back",
            "30",
            "--timeout",
            "20",
        ]);
        let target = Target::parse(&args.url).await.unwrap();
        let report = tokio::time::timeout(Duration::from_secs(60), bench(&args, &target, &[]))
            .await
            .expect("the bench finishes")
            .expect("the bench succeeds");
        server.abort();
        assert_eq!(report.received_deliveries, 1000);
        let replay = report.replay.expect("a replay phase");
        assert_eq!((replay.back, replay.events), (30, 600));
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
