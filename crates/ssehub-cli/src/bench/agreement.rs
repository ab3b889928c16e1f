//! Agreeing with the server on who is connected: its `/stats` before the run (once a
//! previous run's connections have finished closing) and once every subscriber is in.

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::hub_client::{ServerStats, Target};

/// The server's stats before the run: the server at `url` must answer at once, or
/// within `patience` when it was just started; then see [`settled`].
pub(super) async fn before_run(
    target: &Target,
    url: &str,
    patience: Duration,
) -> anyhow::Result<ServerStats> {
    let deadline = Instant::now() + patience;
    let first = loop {
        match target.stats().await {
            Ok(s) => break s,
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("the server at {url} does not answer")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    settled(target, first).await
}

/// Wait (a few seconds at most) until the server counts all `n` subscribers, `before`
/// being its stats from before the first one connected; its open connections then.
pub(super) async fn all_connected(
    target: &Target,
    before: &ServerStats,
    n: u64,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = target.stats().await?;
        match agrees(before, &s, n) {
            Ok(()) => return Ok(s.connections),
            Err(e) if Instant::now() >= deadline => bail!("{e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
