//! The fault soak's clients: subscribers that resume with their last id wherever a node
//! answers, as a browser's `EventSource` would, and a publisher at a fixed rate that
//! notes which events were accepted (answered 2xx) and which it cannot know about.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ssehub::decode::{Decoder, EventStream, Item};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::hub_client::{Client, Target};

/// Bound on a connect, a response head, a publish.
const STEP: Duration = Duration::from_secs(3);

/// What a subscriber saw, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    /// A `soak` event: the publisher's number.
    Event(u64),
    /// `ssehub.gap`: events before the next one may be missing.
    Gap,
}

/// One subscriber's record.
#[derive(Debug, Default)]
pub(super) struct Journal {
    pub room: usize,
    pub seen: Vec<Seen>,
    /// Streams opened (1 + reconnections).
    pub streams: u64,
    /// It saw its room's end marker.
    pub finished: bool,
    /// When it first received an event numbered at least [`Pace::mark`] (the restart
    /// storm's "back and caught up").
    pub caught_up: Option<Instant>,
}

/// How subscribers come back, shared by all.
#[derive(Debug)]
pub(super) struct Pace {
    /// Wait for the server's `retry:` hint (or 3 s, a browser's default, without one)
    /// before each reconnection, as `EventSource` does; otherwise a short pause.
    pub honor_retry: bool,
    /// The first number published after a restart (`u64::MAX`: none yet).
    pub mark: AtomicU64,
    /// Subscribers that have received an event numbered at least `mark`.
    pub caught_up: AtomicU64,
}

impl Pace {
    pub(super) fn new(honor_retry: bool) -> Arc<Pace> {
        Arc::new(Pace {
            honor_retry,
            mark: AtomicU64::new(u64::MAX),
            caught_up: AtomicU64::new(0),
        })
    }
}

/// A running subscriber: cut its stream with `cut`.
pub(super) struct Subscriber {
    pub cut: Arc<Notify>,
    task: JoinHandle<Journal>,
}

/// Subscribers of `rooms` rooms on `nodes`, subscriber `i` at home on node `i % N`.
pub(super) struct Subscribers {
    pub list: Vec<Subscriber>,
    give_up: Arc<AtomicBool>,
}

impl Subscribers {
    /// Start `count` subscribers; returns once each has its first stream open (its
    /// `status` event seen), so that nothing published after is before its time.
    pub(super) async fn start(
        nodes: &[SocketAddr],
        rooms: usize,
        count: usize,
        pace: Arc<Pace>,
    ) -> anyhow::Result<Subscribers> {
        let give_up = Arc::new(AtomicBool::new(false));
        let mut list = Vec::new();
        for i in 0..count {
            let cut = Arc::new(Notify::new());
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            let task = tokio::spawn(follow(
                nodes.to_vec(),
                i % nodes.len(),
                i % rooms,
                cut.clone(),
                give_up.clone(),
                ready_tx,
                pace.clone(),
            ));
            tokio::time::timeout(STEP * 5, ready_rx)
                .await
                .map_err(|_| anyhow::anyhow!("subscriber {i} could not open its stream"))?
                .map_err(|_| anyhow::anyhow!("subscriber {i} stopped before its stream"))?;
            list.push(Subscriber { cut, task });
        }
        Ok(Subscribers { list, give_up })
    }

    /// Each subscriber's journal once it saw its end marker, or after `patience`.
    pub(super) async fn finish(self, patience: Duration) -> Vec<Journal> {
        let give_up = self.give_up.clone();
        let watchdog = tokio::spawn(async move {
            tokio::time::sleep(patience).await;
            give_up.store(true, Ordering::Relaxed);
        });
        let mut out = Vec::new();
        for s in self.list {
            out.push(s.task.await.unwrap_or_default());
        }
        watchdog.abort();
        out
    }
}

/// The room names of the fault soak.
pub(super) fn room_name(room: usize) -> String {
    format!("fault-{room}")
}

/// Open `GET /sse?room=R` on `addr` with `Last-Event-ID: last` (if any).
async fn open(addr: SocketAddr, room: usize, last: &str) -> anyhow::Result<EventStream<Incoming>> {
    let stream = tokio::time::timeout(STEP, TcpStream::connect(addr)).await??;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::get(format!("/sse?room={}", room_name(room)))
        .header(http::header::HOST, addr.to_string())
        .header(http::header::ACCEPT, "text/event-stream");
    if !last.is_empty() {
        req = req.header("last-event-id", last);
    }
    let res = tokio::time::timeout(
        STEP,
        sender.send_request(req.body(Full::new(Bytes::new()))?),
    )
    .await??;
    if res.status() != StatusCode::OK {
        anyhow::bail!("GET /sse: {}", res.status());
    }
    // The decoder keeps the cursor across streams, as EventSource does.
    Ok(EventStream::with_decoder(
        res.into_body(),
        Decoder::resume(last.to_owned()),
    ))
}

async fn wait_flag(flag: &AtomicBool) {
    while !flag.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Follow room `room` until its end marker: on any end of a stream (a node stopped, a
/// cut, an error) resume with the last id, at home first, then on the next node.
async fn follow(
    nodes: Vec<SocketAddr>,
    home: usize,
    room: usize,
    cut: Arc<Notify>,
    give_up: Arc<AtomicBool>,
    ready: tokio::sync::oneshot::Sender<()>,
    pace: Arc<Pace>,
) -> Journal {
    let mut journal = Journal {
        room,
        ..Journal::default()
    };
    let mut ready = Some(ready);
    let mut last = String::new();
    let mut attempt = 0usize;
    // The server's reconnection hint, kept across streams as EventSource keeps it.
    let mut retry = Duration::from_secs(3);
    while !give_up.load(Ordering::Relaxed) {
        let addr = nodes[(home + attempt) % nodes.len()];
        // No cursor yet (cut before any event): everything the history still has.
        let cursor = match (&ready, last.is_empty()) {
            (None, true) => "earliest",
            _ => last.as_str(),
        };
        let mut stream = match open(addr, room, cursor).await {
            Ok(s) => s,
            Err(_) => {
                attempt += 1;
                let pause = match pace.honor_retry {
                    true => retry,
                    false => Duration::from_millis(100),
                };
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        journal.streams += 1;
        loop {
            let next = tokio::select! {
                biased;
                e = stream.next() => e,
                _ = cut.notified() => break,
                _ = wait_flag(&give_up) => return journal,
            };
            let e = match next {
                Some(Ok(Item::Event(e))) => e,
                Some(Ok(Item::Retry(d))) => {
                    retry = d;
                    continue;
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => break,
            };
            let id = stream.decoder().last_event_id();
            if !id.is_empty() && id != "earliest" {
                last = id.to_owned();
            }
            match e.event.as_str() {
                "status" => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                "soak" => {
                    if let Ok(n) = e.data.parse::<u64>() {
                        journal.seen.push(Seen::Event(n));
                        if journal.caught_up.is_none() && n >= pace.mark.load(Ordering::Relaxed) {
                            journal.caught_up = Some(Instant::now());
                            pace.caught_up.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                "ssehub.gap" => journal.seen.push(Seen::Gap),
                "soak-end" => {
                    journal.finished = true;
                    return journal;
                }
                _ => {}
            }
        }
        // Back after the server's hint, as EventSource does, or after a short pause.
        let pause = match pace.honor_retry {
            true => retry,
            false => Duration::from_millis(50 + (journal.streams % 7) * 40),
        };
        tokio::time::sleep(pause).await;
        attempt = 0;
    }
    journal
}

/// What the publisher knows of each event it tried.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    /// Per room, the numbers answered 2xx, in publish order.
    pub accepted: Vec<Vec<u64>>,
    /// Numbers whose publish failed without an answer (a node died, a timeout): the
    /// hub may or may not have taken them.
    pub unknown: Vec<u64>,
    /// Numbers refused with an answer (5xx): never taken.
    pub refused: u64,
    /// Numbers answered 2xx but `"replicated": false`: Redis did not answer, and the
    /// node delivered them to its own subscribers only (as `/publish` documents), so
    /// the other nodes' subscribers may never see them.
    pub local_only: Vec<u64>,
}

/// Publish `soak` events numbered from 0, round-robin over the rooms and the nodes, at
/// `rate` per second until `stop`.
pub(super) async fn publish(
    nodes: Vec<SocketAddr>,
    rooms: usize,
    rate: u64,
    stop: Arc<AtomicBool>,
    next: Arc<AtomicU64>,
) -> Ledger {
    let mut ledger = Ledger {
        accepted: vec![Vec::new(); rooms],
        ..Ledger::default()
    };
    let mut clients: Vec<Option<Client>> = nodes.iter().map(|_| None).collect();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        let room = (n as usize) % rooms;
        let node = (n as usize) % nodes.len();
        let path = format!("/publish?room={}&event=soak", room_name(room));
        match post(&mut clients[node], nodes[node], &path, n.to_string()).await {
            Answer::Accepted => ledger.accepted[room].push(n),
            Answer::LocalOnly => ledger.local_only.push(n),
            Answer::Refused => ledger.refused += 1,
            Answer::Unknown => ledger.unknown.push(n),
        }
        n += 1;
        next.store(n, Ordering::Relaxed);
    }
    ledger
}

enum Answer {
    Accepted,
    LocalOnly,
    Refused,
    Unknown,
}

async fn post(slot: &mut Option<Client>, addr: SocketAddr, path: &str, data: String) -> Answer {
    if slot.is_none() {
        match tokio::time::timeout(STEP, Client::connect(&Target::plain(addr))).await {
            Ok(Ok(c)) => *slot = Some(c),
            // Not even connected: the event was never sent.
            _ => return Answer::Refused,
        }
    }
    let client = slot.as_mut().expect("connected above");
    let sent =
        tokio::time::timeout(STEP, client.request(Method::POST, path, Bytes::from(data))).await;
    match sent {
        Ok(Ok((status, body))) if status.is_success() => {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            match v.get("replicated").and_then(|r| r.as_bool()) {
                Some(false) => Answer::LocalOnly,
                _ => Answer::Accepted,
            }
        }
        Ok(Ok(_)) => Answer::Refused,
        _ => {
            *slot = None;
            Answer::Unknown
        }
    }
}

/// Publish each room's `soak-end` marker (through any node that answers), bounded.
pub(super) async fn publish_end(nodes: &[SocketAddr], rooms: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + STEP * 10;
    for room in 0..rooms {
        let path = format!("/publish?room={}&event=soak-end", room_name(room));
        let mut i = 0;
        loop {
            let mut slot = None;
            let addr = nodes[i % nodes.len()];
            // Only through Redis: a marker one node alone delivered would not reach all.
            if let Answer::Accepted = post(&mut slot, addr, &path, "end".into()).await {
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!("no node accepted the end marker of {}", room_name(room));
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}
