//! Subscribers in child processes: `ssehub bench --agents P` splits them over P children
//! (`ssehub bench-agent`), each with its own open-file limit, so one run can hold more
//! connections than one process may (three nodes of 19,700 subscribers, say).
//!
//! An agent reports on its standard output, one JSON object a line: its counters every
//! 100 ms (`{"connected", "failed", "received", "last_ns", "error"}`), and, once its
//! standard input closes, the final line with its latency histograms as
//! `[value, count]` pairs (`{"done": true, "end_to_end": [...], "at_socket": [...]}`).
//! The coordinator sums the counters into one [`Shared`], as if the subscribers were its
//! own.

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use super::dialect::Dialect;
use super::latency::Latencies;
use super::subscribers::{Http, Received, Shared, Subscribers};
use crate::hub_client::Target;

/// One line an agent prints.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Line {
    connected: usize,
    failed: usize,
    received: u64,
    last_ns: u64,
    error: Option<String>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    end_to_end: Vec<(u64, u64)>,
    #[serde(default)]
    at_socket: Vec<(u64, u64)>,
}

/// What `ssehub bench-agent` is told.
#[derive(clap::Args, Debug)]
pub(crate) struct AgentArgs {
    /// SSE servers' base URLs; subscriber `i` connects to the `i % len`-th.
    #[arg(long = "sse-url", required = true)]
    pub sse_urls: Vec<String>,
    #[arg(long)]
    pub subscribers: usize,
    /// The number of this agent's first subscriber (rooms and source addresses follow it).
    #[arg(long)]
    pub first: usize,
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    #[arg(long, value_enum, default_value_t)]
    pub dialect: Dialect,
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    #[arg(long, default_value_t = 32)]
    pub connect_concurrency: usize,
    #[arg(long)]
    pub last_event_id: Option<String>,
    #[arg(long)]
    pub http2: bool,
    #[arg(long, default_value_t = 1)]
    pub streams_per_connection: usize,
    #[arg(long, default_value_t = super::subscribers::PER_SOURCE_ADDRESS)]
    pub per_source_address: usize,
}

/// Run as an agent until standard input closes.
pub(crate) async fn run_agent(args: AgentArgs) -> anyhow::Result<()> {
    crate::fd_limit::raise_fd_limit();
    let targets = Target::parse_each(&args.sse_urls).await?;
    let subs = Subscribers::start(
        &targets,
        args.first..args.first + args.subscribers,
        args.rooms,
        args.dialect,
        args.threads,
        args.connect_concurrency,
        args.last_event_id.as_deref(),
        Http {
            http2: args.http2,
            streams_per_connection: args.streams_per_connection.max(1),
            per_source: args.per_source_address,
        },
    );
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            line = stdin.next_line() => if !matches!(line, Ok(Some(_))) { break },
            _ = tick.tick() => {
                let line = serde_json::to_string(&counters(&subs.shared))?;
                out.write_all(format!("{line}\n").as_bytes()).await?;
                out.flush().await?;
            }
        }
    }
    let mut last = counters(&subs.shared);
    let received = subs.finish();
    last.done = true;
    last.end_to_end = pairs(&received.latencies.end_to_end);
    last.at_socket = pairs(&received.latencies.at_socket);
    let line = serde_json::to_string(&last)?;
    out.write_all(format!("{line}\n").as_bytes()).await?;
    out.flush().await?;
    Ok(())
}

fn counters(shared: &Shared) -> Line {
    Line {
        connected: shared.connected.load(Ordering::Relaxed),
        failed: shared.failed.load(Ordering::Relaxed),
        received: shared.received.load(Ordering::Relaxed),
        last_ns: shared.last_receive_ns.load(Ordering::Relaxed),
        error: shared.first_error.lock().unwrap().clone(),
        ..Line::default()
    }
}

fn pairs(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// The children of one run, as the coordinator sees them.
pub(super) struct Agents {
    pub shared: Arc<Shared>,
    children: Vec<(Child, ChildStdin)>,
    /// Each agent's latest line.
    lines: Arc<Mutex<Vec<Line>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl Agents {
    /// Start `agents` children sharing `n` subscribers to `sse_urls`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start(
        sse_urls: &[String],
        agents: usize,
        n: usize,
        rooms: usize,
        dialect: Dialect,
        threads: usize,
        concurrency: usize,
        last_event_id: Option<&str>,
        http: Http,
    ) -> anyhow::Result<Agents> {
        let exe = std::env::current_exe().context("finding this program to start agents")?;
        let shared = Arc::new(Shared::default());
        let lines = Arc::new(Mutex::new(
            (0..agents).map(|_| Line::default()).collect::<Vec<_>>(),
        ));
        let (mut children, mut readers) = (Vec::new(), Vec::new());
        for k in 0..agents {
            let (first, count) = (n * k / agents, n * (k + 1) / agents - n * k / agents);
            let mut cmd = Command::new(&exe);
            cmd.arg("bench-agent");
            for url in sse_urls {
                cmd.arg("--sse-url").arg(url);
            }
            cmd.args([
                "--subscribers",
                &count.to_string(),
                "--first",
                &first.to_string(),
            ])
            .args([
                "--dialect",
                dialect.to_possible_value().expect("named").get_name(),
                "--rooms",
                &rooms.to_string(),
                "--threads",
                &threads.to_string(),
            ])
            .args([
                "--connect-concurrency",
                &concurrency.max(agents).div_ceil(agents).to_string(),
            ]);
            if let Some(id) = last_event_id {
                cmd.args(["--last-event-id", id]);
            }
            cmd.args(["--per-source-address", &http.per_source.to_string()]);
            if http.http2 {
                cmd.args([
                    "--http2",
                    "--streams-per-connection",
                    &http.streams_per_connection.to_string(),
                ]);
            }
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .context("starting a bench agent")?;
            let stdin = child.stdin.take().expect("piped");
            let stdout = child.stdout.take().expect("piped");
            let (shared, lines) = (shared.clone(), lines.clone());
            readers.push(tokio::spawn(async move {
                let mut stdout = BufReader::new(stdout).lines();
                while let Ok(Some(text)) = stdout.next_line().await {
                    let Ok(line) = serde_json::from_str::<Line>(&text) else {
                        continue;
                    };
                    let mut all = lines.lock().unwrap();
                    all[k] = line;
                    sum_into(&all, &shared);
                }
            }));
            children.push((child, stdin));
        }
        Ok(Agents {
            shared,
            children,
            lines,
            readers,
        })
    }

    /// Close every agent's input, collect their final lines.
    pub(super) async fn finish(self) -> Received {
        // Closing their input is what tells them to stop (dropping it closes the pipe).
        let mut children: Vec<Child> = self.children.into_iter().map(|(c, _)| c).collect();
        for r in self.readers {
            let _ = tokio::time::timeout(Duration::from_secs(30), r).await;
        }
        for child in &mut children {
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        }
        let lines = self.lines.lock().unwrap();
        let mut latencies = Latencies::new();
        for line in lines.iter() {
            for &(v, c) in &line.end_to_end {
                let _ = latencies.end_to_end.record_n(v, c);
            }
            for &(v, c) in &line.at_socket {
                let _ = latencies.at_socket.record_n(v, c);
            }
        }
        let shared = &self.shared;
        Received {
            count: shared.received.load(Ordering::Relaxed),
            last_ns: shared.last_receive_ns.load(Ordering::Relaxed),
            failures: shared.failed.load(Ordering::Relaxed),
            first_error: shared.first_error.lock().unwrap().clone(),
            latencies,
        }
    }
}

/// The agents' latest counters, summed into `shared`.
fn sum_into(lines: &[Line], shared: &Shared) {
    let s = |f: fn(&Line) -> u64| lines.iter().map(f).sum::<u64>();
    shared
        .connected
        .store(s(|l| l.connected as u64) as usize, Ordering::Relaxed);
    shared
        .failed
        .store(s(|l| l.failed as u64) as usize, Ordering::Relaxed);
    shared.received.store(s(|l| l.received), Ordering::Relaxed);
    let last = lines.iter().map(|l| l.last_ns).max().unwrap_or(0);
    shared.last_receive_ns.store(last, Ordering::Relaxed);
    if let Some(e) = lines.iter().find_map(|l| l.error.clone()) {
        shared.first_error.lock().unwrap().get_or_insert(e);
    }
}
