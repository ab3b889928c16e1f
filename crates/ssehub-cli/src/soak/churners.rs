//! The soak's churners: tasks that open and close connections all the time, each
//! connection a different abuse in turn: a stream closed cleanly, a stream reset, a
//! request dropped half-written, a `HEAD` of the stream, a `/stats` read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::crew::Crew;
use super::{exchange, request_head, timeout};
use crate::hub_client::Target;

/// What the churners did, so far.
#[derive(Default)]
struct Churn {
    clean: AtomicU64,
    reset: AtomicU64,
    half_request: AtomicU64,
    head: AtomicU64,
    stats: AtomicU64,
    errors: AtomicU64,
}

/// What the churners did, at the end.
pub(super) struct ChurnCounts {
    pub clean: u64,
    pub reset: u64,
    pub half_request: u64,
    pub head: u64,
    pub stats: u64,
    /// Churned connections that failed (not counted in the others).
    pub errors: u64,
}

impl ChurnCounts {
    /// Connections churned without an error.
    pub(super) fn total(&self) -> u64 {
        self.clean + self.reset + self.half_request + self.head + self.stats
    }
}

/// The churner tasks of a run.
pub(super) struct Churners(Crew<Churn>);

impl Churners {
    /// Start `n` churners against the small rooms (`rooms` of them) until `deadline`.
    pub(super) fn start(target: &Target, n: u64, rooms: u64, deadline: Instant) -> Churners {
        let target = target.clone();
        Churners(Crew::spawn(Churn::default(), 0..n, move |id, churn| {
            churner(target.clone(), id, rooms, deadline, churn)
        }))
    }

    /// Wait for every churner to stop (at the deadline); what they did.
    pub(super) async fn finish(self) -> ChurnCounts {
        let c = self.0.finish().await;
        ChurnCounts {
            clean: c.clean.load(Ordering::Relaxed),
            reset: c.reset.load(Ordering::Relaxed),
            half_request: c.half_request.load(Ordering::Relaxed),
            head: c.head.load(Ordering::Relaxed),
            stats: c.stats.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
        }
    }
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

/// Connection `n`: abuse number `n % 5`.
async fn churn_once(target: &Target, n: u64, rooms: u64, churn: &Churn) -> anyhow::Result<()> {
    let room = format!("soak-{}", n % rooms);
    let stream_req = request_head(
        "GET",
        &target.path(&format!("/sse?room={room}")),
        &target.host,
        "Accept: text/event-stream\r\n",
    );
    let mut s = timeout("connecting", TcpStream::connect(target.addr)).await??;
    match n % 5 {
        0 | 1 => {
            expect_ok(&mut s, &stream_req, "stream").await?;
            if n.is_multiple_of(5) {
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
            let req = request_head("HEAD", &target.path("/sse"), &target.host, "");
            expect_ok(&mut s, &req, "HEAD").await?;
            churn.head.fetch_add(1, Ordering::Relaxed);
        }
        _ => {
            let close = "Connection: close\r\n";
            let req = request_head("GET", &target.path("/stats"), &target.host, close);
            expect_ok(&mut s, &req, "stats").await?;
            churn.stats.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Send `request` and require a 200 (`what` names it in the error).
async fn expect_ok(s: &mut TcpStream, request: &str, what: &str) -> anyhow::Result<()> {
    let status = exchange(s, request).await?;
    anyhow::ensure!(status == 200, "{what}: {status}");
    Ok(())
}
