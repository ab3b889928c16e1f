//! The soak's slow readers: streams of the bulk room that read their response head and
//! then never read again, so the server's slow-consumer policy has something to do. Each
//! is replaced by a new one every `--slow-hold` seconds, so a long run keeps exercising
//! it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::net::{TcpSocket, TcpStream};

use super::crew::Crew;
use super::rooms::BULK_ROOM;
use super::{exchange, request_head, timeout};
use crate::hub_client::Target;

/// The slow readers of a run; their counter is the slow streams opened so far, the first
/// ones included.
pub(super) struct SlowReaders(Crew<AtomicU64>);

impl SlowReaders {
    /// Open `n` slow readers (before the run starts: an error here fails the soak).
    pub(super) async fn open(target: &Target, n: u64) -> anyhow::Result<Vec<TcpStream>> {
        let mut first = Vec::new();
        for _ in 0..n {
            first.push(open_slow(target, BULK_ROOM).await?);
        }
        Ok(first)
    }

    /// Hold the `first` streams and replace them, each every `hold`, until `deadline`.
    pub(super) fn start(
        target: &Target,
        first: Vec<TcpStream>,
        hold: Duration,
        deadline: Instant,
    ) -> SlowReaders {
        let opened = AtomicU64::new(first.len() as u64);
        let target = target.clone();
        SlowReaders(Crew::spawn(opened, first, move |s, opened| {
            slow_reader(target.clone(), s, hold, deadline, opened)
        }))
    }

    /// Wait for every slow reader to end (at the deadline); how many streams were opened.
    pub(super) async fn finish(self) -> u64 {
        self.0.finish().await.load(Ordering::Relaxed)
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
    let request = request_head("GET", &path, &target.host, "");
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
