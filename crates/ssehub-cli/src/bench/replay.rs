//! The replay phase of `ssehub bench` (`--replay-back N`): after the live phase, every
//! subscriber comes back at once with the id of the event N events before the last as
//! its `Last-Event-ID`, as after a network blip or a server-side cut. It measures how
//! long until every one of them has its N missed events (is live again), and the
//! server's CPU per replayed event, to hold against a live delivery's.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use super::Args;
use crate::hub_client::Target;
use crate::procfs::cpu_seconds;

/// What the replay phase measured.
#[derive(Debug, Serialize)]
pub(super) struct Replayed {
    /// Events each subscriber had missed.
    pub back: u64,
    /// From the first reconnect to the last missed event received.
    pub seconds: f64,
    /// Events received by all reconnected subscribers (expected: subscribers × back).
    pub events: u64,
    pub server_cpu_seconds: Option<f64>,
    pub server_cpu_us_per_replayed_event: Option<f64>,
}

/// Reconnect `--subscribers` subscribers resuming after `ids[len - back - 1]`.
pub(super) async fn replay(
    args: &Args,
    targets: &[Target],
    pids: &[u32],
    ids: &[String],
) -> anyhow::Result<Replayed> {
    let back = args.replay_back;
    if args.rooms != 1 {
        bail!("--replay-back needs --rooms 1 (one cursor for everyone)");
    }
    let cursor = ids
        .len()
        .checked_sub(back as usize + 1)
        .and_then(|i| ids.get(i))
        .filter(|id| !id.is_empty())
        .context("--replay-back: the server gave no id to the event to resume after (is its history on, and --messages larger than --replay-back?)")?;
    let n = args.subscribers;
    let expected = n as u64 * back;
    let limit = Duration::from_secs(args.timeout);
    let cpu0 = super::sum_of(pids, cpu_seconds)?;
    let start = Instant::now();
    let again = super::start_fleet(args, targets, Some(cursor))?;
    let pb = super::bar(expected, "replaying");
    loop {
        let got = again.shared().received();
        pb.set_position(got);
        let failed = again
            .shared()
            .failed
            .load(std::sync::atomic::Ordering::Relaxed);
        if got >= expected || start.elapsed() > limit || failed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pb.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let cpu1 = super::sum_of(pids, cpu_seconds)?;
    let events = again.shared().received();
    let received = again.finish().await;
    if let Some(e) = received.first_error {
        bail!("a reconnecting subscriber failed: {e}");
    }
    let cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
    Ok(Replayed {
        back,
        seconds,
        events,
        server_cpu_seconds: cpu,
        server_cpu_us_per_replayed_event: cpu
            .filter(|_| events > 0)
            .map(|c| c * 1e6 / events as f64),
    })
}
