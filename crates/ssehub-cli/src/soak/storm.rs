//! `ssehub soak --storm term|kill`: the restart storm. One node with `--history-dir`
//! and `--subscribers` subscribers that reconnect as `EventSource` does (after the
//! server's `retry:` hint, 3 s without one), a publisher at `--rate`; after a warm-up
//! the node is stopped (SIGTERM or SIGKILL) and started again at once. It prints how
//! long until every subscriber was back and caught up (had an event published after
//! the restart, everything before it checked as in the fault soak), the new process's
//! CPU until then, and what was lost (0 expected). The shutdown `retry:` window is the
//! node's: set `SSEHUB_SSE_SHUTDOWN_RETRY_MIN`/`_MAX` in the soak's environment to
//! change it (`1` and `1`: every client told the same delay, no spread).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::cluster::{Cluster, FaultMode};
use super::faults::{check_noting, Verdict};
use super::resumers::{self, Pace, Subscribers};
use super::Args;

/// How the node is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StormSignal {
    /// SIGTERM: the node tells every stream its `retry:` and ends it.
    Term,
    /// SIGKILL: the streams break; clients wait their last hint (or 3 s).
    Kill,
}

/// How long the storm may take to settle before it counts as failed.
const SETTLE: Duration = Duration::from_secs(90);

pub(super) async fn run(args: &Args, signal: StormSignal) -> anyhow::Result<()> {
    let rooms = args.rooms as usize;
    let subscribers = args.subscribers as usize;
    let window = |k: &str| std::env::var(k).unwrap_or_else(|_| "default".into());
    println!(
        "restart storm: SIG{} of one node with --history-dir, {subscribers} subscribers in \
         {rooms} rooms, {} events/s; shutdown retry window {}..{} s",
        match signal {
            StormSignal::Term => "TERM",
            StormSignal::Kill => "KILL",
        },
        args.rate,
        window("SSEHUB_SSE_SHUTDOWN_RETRY_MIN"),
        window("SSEHUB_SSE_SHUTDOWN_RETRY_MAX"),
    );
    let mut cluster = Cluster::start(FaultMode::Disk, 1, &args.redis_server).await?;
    let result = storm(args, signal, &mut cluster, rooms, subscribers).await;
    if result.is_err() {
        cluster.keep = true;
    }
    result.with_context(|| format!("the node's log is in {}", cluster.dir().display()))
}

async fn storm(
    args: &Args,
    signal: StormSignal,
    cluster: &mut Cluster,
    rooms: usize,
    subscribers: usize,
) -> anyhow::Result<()> {
    let addrs = cluster.addrs();
    let pace = Pace::new(true);
    let opening = Instant::now();
    let subs = Subscribers::start(&addrs, rooms, subscribers, pace.clone()).await?;
    println!(
        "{subscribers} subscribers connected in {:.1} s",
        opening.elapsed().as_secs_f64()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let publisher = tokio::spawn(resumers::publish(
        addrs.clone(),
        rooms,
        args.rate,
        stop.clone(),
        next.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(5)).await;

    let sig = match signal {
        StormSignal::Term => "TERM",
        StormSignal::Kill => "KILL",
    };
    let stopped = Instant::now();
    cluster.restart_node(0, sig, Duration::ZERO).await?;
    let back = stopped.elapsed();
    pace.mark
        .store(next.load(Ordering::Relaxed), Ordering::Relaxed);
    let pid = cluster.node_pid(0).context("the node is running")?;
    // Every subscriber caught up: the journals say so once each has finished; poll
    // the new node's CPU meanwhile, and take the figure when the last one got there.
    let settle = Instant::now() + SETTLE;
    let mut cpu_at_end;
    loop {
        cpu_at_end = crate::procfs::cpu_seconds(pid).unwrap_or(f64::NAN);
        if pace.caught_up.load(Ordering::Relaxed) as usize == subscribers || Instant::now() > settle
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let ledger = publisher.await?;
    resumers::publish_end(&addrs, rooms).await?;
    let journals = subs.finish(Duration::from_secs(30)).await;

    let mut sum = Verdict::default();
    let mut times: Vec<Duration> = Vec::new();
    for j in &journals {
        let mut notes = Vec::new();
        sum += check_noting(&ledger.accepted[j.room], j, &mut notes);
        if let Some(t) = j.caught_up {
            times.push(t.saturating_duration_since(stopped));
        }
    }
    times.sort();
    let at = |q: f64| {
        times
            .get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64())
    };
    println!(
        "node down for {:.2} s (signal to accepting again)",
        back.as_secs_f64()
    );
    println!(
        "back and caught up, from the signal: {} of {subscribers}; p50 {:.2} s, p99 {:.2} s, \
         all {:.2} s",
        times.len(),
        at(0.5),
        at(0.99),
        times.last().map_or(f64::NAN, |d| d.as_secs_f64())
    );
    println!("server CPU of the new process until then: {cpu_at_end:.2} s");
    println!(
        "events: {} accepted, {} delivered; missed but covered by ssehub.gap: {}; silent \
         losses: {}, duplicates: {}, out of order: {}, without end marker: {}",
        ledger.accepted.iter().map(Vec::len).sum::<usize>(),
        sum.delivered,
        sum.covered,
        sum.silent,
        sum.duplicates,
        sum.disorder,
        sum.unfinished
    );
    if sum.silent + sum.duplicates + sum.disorder + sum.unfinished > 0 || times.len() < subscribers
    {
        bail!("the restart storm lost or repeated events, or left subscribers behind");
    }
    Ok(())
}
