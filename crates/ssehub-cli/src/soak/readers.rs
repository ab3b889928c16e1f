//! The soak's fast readers: each follows every event of its room and checks the
//! sequence numbers, until the room's end marker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http::{Method, StatusCode};
use hyper::body::Incoming;
use ssehub::decode::{EventStream, EventStreamError};
use tokio::task::JoinHandle;

use super::rooms::Rooms;
use super::{connect, timeout};
use crate::hub_client::{Client, Target};

/// What one fast reader saw.
#[derive(Debug, Default)]
pub(super) struct ReaderReport {
    pub room: usize,
    /// `soak` events received in sequence.
    pub received: u64,
    /// Sequence numbers skipped (an event never arrived).
    pub gaps: u64,
    /// Events that arrived out of order or twice.
    pub disorder: u64,
    /// The stream ended (or failed) before the end marker.
    pub cut: Option<String>,
}

/// Open a fast reader of each room in `plan` (room indices into `rooms`), one after the
/// other: each is announced before the next opens.
pub(super) async fn open_all(
    target: &Target,
    rooms: &Rooms,
    plan: &[usize],
) -> anyhow::Result<Vec<(usize, Reader)>> {
    let mut opened = Vec::new();
    for &room in plan {
        let name = &rooms.names[room];
        let reader = open_reader(target, name)
            .await
            .with_context(|| format!("opening a reader of {name}"))?;
        opened.push((room, reader));
    }
    Ok(opened)
}

/// The readers, each following its stream in a task of its own.
pub(super) struct Followers {
    tasks: Vec<JoinHandle<ReaderReport>>,
    /// Set when the readers have waited long enough for their end marker.
    stop_waiting: Arc<AtomicBool>,
}

impl Followers {
    pub(super) fn start(opened: Vec<(usize, Reader)>) -> Followers {
        let stop_waiting = Arc::new(AtomicBool::new(false));
        let tasks = opened
            .into_iter()
            .map(|(room, reader)| tokio::spawn(follow(room, reader, stop_waiting.clone())))
            .collect();
        Followers {
            tasks,
            stop_waiting,
        }
    }

    /// Every reader's report once it has seen its room's end marker; a reader still
    /// waiting after `patience` is counted as cut off.
    pub(super) async fn finish(self, patience: Duration) -> anyhow::Result<Vec<ReaderReport>> {
        let watchdog = {
            let stop = self.stop_waiting.clone();
            tokio::spawn(async move {
                tokio::time::sleep(patience).await;
                stop.store(true, Ordering::Relaxed);
            })
        };
        let mut reports = Vec::new();
        for r in self.tasks {
            reports.push(r.await.context("a reader task failed")?);
        }
        watchdog.abort();
        Ok(reports)
    }
}

/// An open fast reader: the connection, and its stream being read.
pub(super) type Reader = (Client, EventStream<Incoming>);

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
                    Some(Err(e)) => bail!("stream failed: {e}"),
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
            Some(Err(e)) => {
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
