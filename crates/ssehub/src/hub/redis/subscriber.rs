//! The node's listener on the channel: it delivers every publication on this node, in
//! sequence order and once; it probes Redis (a Redis that stays silent is an outage,
//! found within three probe intervals); and after an outage it reconnects with back-off
//! and catches up from the streams, sending the gap signal where it cannot.
//!
//! ## What comes from the channel is checked
//! - A number is delivered once and in order: one already delivered here is dropped, one
//!   after a skipped number makes the node read the skipped ones from the streams first.
//!   That read also reads the sequence: a message numbered past it was not published
//!   through the script (a forgery, or a bug), and is refused, where before it would
//!   have made every later publication look delivered already.
//! - Within one epoch and one subscription the numbers on the channel only go up. One
//!   that goes back means the sequence in Redis went back, or a message was forged:
//!   the node probes at once, and the probe script, given this node's watermark,
//!   starts a new epoch if the sequence did go back.
//! - A message of another epoch is believed only if Redis says that epoch is its own
//!   now; then every node here tells its clients (`unknown-epoch`: their cursors are of
//!   the old epoch, and what it held is gone) and delivers the new epoch from its start.
//! - A frame must be one event, as this crate encodes one, with its number's id
//!   ([`wire::check_frame`]). Whatever is refused is counted (`BackplaneStatus::refused`)
//!   and logged, at most a few lines per interval.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::time::Instant;

use super::replay::{self, Meta, Order, ReadError, Walk};
use super::wire::{self, Incoming, Wire};
use super::{RedisError, Shared};
use crate::connection::{Connection, ConnectionId};
use crate::hub::fanout::{self, Encoded, Publication};
use crate::hub::history::{gap_message, GapReason, History};
use crate::log_limit::warn_limited;
use crate::sync::lock;

/// How long one step of (re)connecting may take before it counts as failed.
const STEP: Duration = Duration::from_secs(2);
/// The longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Connect the channel once (a bad URL fails here), then listen on a task of its own.
pub(super) async fn start(shared: Arc<Shared>) -> Result<(), RedisError> {
    let (sink, stream, meta) = connect(&shared).await?;
    {
        let mut delivered = lock(&shared.delivered);
        delivered.epoch = meta.epoch;
        delivered.seq = meta.seq;
    }
    shared.connected.store(true, Ordering::Relaxed);
    tokio::spawn(run(Arc::downgrade(&shared), sink, stream));
    Ok(())
}

/// Subscribe, then probe: every publication after the number the probe reads comes on
/// the channel.
async fn connect(shared: &Shared) -> Result<(PubSubSink, PubSubStream, Meta), RedisError> {
    let timed = |e: tokio::time::error::Elapsed| {
        redis::RedisError::from((redis::ErrorKind::Io, "timed out", e.to_string()))
    };
    let pubsub = tokio::time::timeout(STEP, shared.client.get_async_pubsub())
        .await
        .map_err(timed)??;
    let (mut sink, stream) = pubsub.split();
    tokio::time::timeout(STEP, sink.subscribe(shared.keys.channel()))
        .await
        .map_err(timed)??;
    let meta = tokio::time::timeout(STEP, probe(shared))
        .await
        .map_err(timed)??;
    Ok((sink, stream, meta))
}

/// Run the probe script with this node's watermark (a new epoch starts if the
/// sequence went back, or if there is none); where the epoch and the sequence are.
pub(super) async fn probe(shared: &Shared) -> redis::RedisResult<Meta> {
    // Counted before it is sent: a publication that failed before this count is
    // before this probe on the command connection (`settle`).
    shared.probes_sent.fetch_add(1, Ordering::AcqRel);
    let (epoch, seq) = {
        let delivered = lock(&shared.delivered);
        (delivered.epoch.clone(), delivered.seq)
    };
    let (epoch, seq): (String, u64) = shared
        .probe
        .key(shared.keys.meta())
        .arg(shared.keys.channel())
        .arg(&shared.node)
        .arg(epoch)
        .arg(seq)
        .arg(History::fresh_epoch())
        .invoke_async(&mut shared.conn.clone())
        .await?;
    Ok(Meta { epoch, seq })
}

/// Probe now (once at a time): something on the channel does not add up.
fn probe_soon(shared: &Arc<Shared>) {
    if shared.probing.swap(true, Ordering::AcqRel) {
        return;
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        let _ = probe(&shared).await;
        shared.probing.store(false, Ordering::Release);
    });
}

/// Count and log a message refused from the channel.
fn refuse(shared: &Shared, why: &'static str) {
    shared.refused.fetch_add(1, Ordering::Relaxed);
    warn_limited!(
        reason = why,
        "redis backplane: a message on the channel refused"
    );
}

async fn run(shared: Weak<Shared>, mut sink: PubSubSink, mut stream: PubSubStream) {
    loop {
        listen(&shared, &mut stream).await;
        drop((sink, stream));
        let Some(s) = shared.upgrade() else { return };
        s.connected.store(false, Ordering::Relaxed);
        s.outages.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("redis backplane lost: delivering this node's publications only");
        drop(s);
        let mut backoff = Duration::from_millis(250);
        (sink, stream) = loop {
            tokio::time::sleep(backoff).await;
            let Some(s) = shared.upgrade() else { return };
            match connect(&s).await {
                Ok((sink, stream, meta)) => {
                    // The probe of `connect` ran after every probe counted so far,
                    // and the catch-up delivers what was numbered before it.
                    let sent = s.probes_sent.load(Ordering::Acquire);
                    if catch_up(&s, meta).await {
                        s.probes_heard.fetch_max(sent, Ordering::AcqRel);
                        settle(&s);
                    }
                    s.connected.store(true, Ordering::Relaxed);
                    tracing::info!("redis backplane back");
                    break (sink, stream);
                }
                Err(e) => tracing::debug!(error = %e, "redis backplane: still away"),
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        };
    }
}

/// Deliver what comes on the channel until the connection ends or Redis goes silent.
async fn listen(shared: &Weak<Shared>, stream: &mut PubSubStream) {
    let Some(probe_every) = shared.upgrade().map(|s| s.probe_every) else {
        return;
    };
    let mut ticker = tokio::time::interval(probe_every);
    let mut heard = Instant::now();
    // The newest number heard on the channel in this epoch, on this subscription.
    let mut last: Option<u64> = None;
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { return };
                let Some(s) = shared.upgrade() else { return };
                match wire::parse(msg.get_payload_bytes()) {
                    Some(Incoming::Probe { node, epoch, seq }) => {
                        let own = node == s.node;
                        if own {
                            heard = Instant::now();
                        }
                        if on_probe(&s, &epoch, seq, &mut last).await && own {
                            s.probes_heard.fetch_add(1, Ordering::AcqRel);
                            settle(&s);
                        }
                    }
                    Some(Incoming::Event { epoch, wire }) => {
                        on_event(&s, &epoch, wire, &mut last).await;
                    }
                    None => refuse(&s, "unreadable"),
                }
            }
            _ = ticker.tick() => {
                let Some(s) = shared.upgrade() else { return };
                if heard.elapsed() > probe_every * 3 {
                    tracing::debug!("redis backplane: probes unanswered");
                    return;
                }
                // Through the command connection, answered on the channel: both work.
                tokio::spawn(async move {
                    let _ = probe(&s).await;
                });
            }
        }
    }
}

/// Whether a message of `epoch` may be delivered: if it is not the epoch this node
/// delivers in, only if Redis says it is the history's now, and then this node moves to
/// it (and `last` starts again).
async fn check_epoch(shared: &Shared, epoch: &str, last: &mut Option<u64>) -> bool {
    if lock(&shared.delivered).epoch == epoch {
        return true;
    }
    let Ok(meta) = replay::meta(shared).await else {
        // Redis does not answer: the probes will tell.
        return false;
    };
    if meta.epoch != epoch {
        refuse(shared, "an epoch Redis does not have");
        return false;
    }
    new_epoch(shared, epoch);
    *last = None;
    true
}

/// The history in Redis is of epoch `epoch` now: deliver from its start, and tell the
/// clients of rooms with history that their cursors are of the old one.
fn new_epoch(shared: &Shared, epoch: &str) {
    let had = {
        let mut delivered = lock(&shared.delivered);
        if delivered.epoch == epoch {
            return;
        }
        let had = !delivered.epoch.is_empty();
        delivered.epoch = epoch.to_owned();
        delivered.seq = 0;
        had
    };
    if had {
        tracing::warn!(
            epoch,
            "redis backplane: the history in Redis was lost or went back; a new epoch"
        );
        gap_to_rooms(shared, GapReason::UnknownEpoch, &local_rooms(shared, true));
    }
}

/// A probe: where the epoch and the sequence were when it was sent. Whether everything
/// numbered before it is delivered here now.
async fn on_probe(shared: &Arc<Shared>, epoch: &str, seq: u64, last: &mut Option<u64>) -> bool {
    if !check_epoch(shared, epoch, last).await {
        return false;
    }
    let delivered = {
        let d = lock(&shared.delivered);
        if d.epoch != epoch {
            return false;
        }
        d.seq
    };
    if last.is_some_and(|l| seq < l) || seq < delivered {
        // Publications before the probe came before it, and had numbers up to its own.
        probe_soon(shared);
        return false;
    }
    *last = Some(seq);
    if seq > delivered {
        // Some never came (the channel is at most once): from the streams.
        match fill(shared, delivered, seq).await {
            Fill::Done { .. } => {}
            Fill::Stale => {
                probe_soon(shared);
                return false;
            }
            Fill::Failed => return false,
        }
    }
    true
}

/// The publications this node delivered alone that a probe sent after them has passed
/// (`probes_heard` of them are): each came back on the channel, or Redis never ran it,
/// and then the other nodes' clients missed it. For those, the gap signal goes to every
/// node through Redis, a publication per room (naming only its own room), recorded like
/// any event so that a resume meets it too. If Redis fails it again, that publication is
/// one of these in turn, and the signal is sent again later.
fn settle(shared: &Arc<Shared>) {
    let heard = shared.probes_heard.load(Ordering::Acquire);
    // Each room lost, and whether only private publications of it were.
    let lost: std::collections::BTreeMap<String, bool> = {
        let mut pending = lock(&shared.unreplicated);
        let local_only = lock(&shared.local_only);
        let mut lost = std::collections::BTreeMap::new();
        pending.retain(|u| {
            if u.after >= heard {
                return true;
            }
            if u.token.is_none_or(|t| local_only.contains(&t)) {
                for room in &u.rooms {
                    *lost.entry(room.clone()).or_insert(true) &= u.private;
                }
            }
            false
        });
        lost
    };
    if lost.is_empty() {
        return;
    }
    tracing::info!(
        rooms = lost.len(),
        "redis backplane: publications Redis never ran; the gap signal to their rooms"
    );
    let shared = shared.clone();
    tokio::spawn(async move {
        for (room, private) in lost {
            let rooms = vec![room];
            let message = gap_message(
                &shared.rules.gap_event,
                GapReason::Outage,
                None,
                &rooms,
                None,
            );
            let p = Publication {
                rooms,
                private,
                ..Publication::default()
            };
            if let Err(e) = shared.publish(p, message, false).await {
                tracing::warn!(error = %e, "the gap signal not published");
            }
        }
    });
}

/// One publication from the channel: check it, fill in any number skipped, deliver it.
async fn on_event(shared: &Arc<Shared>, epoch: &str, w: Wire, last: &mut Option<u64>) {
    if !check_epoch(shared, epoch, last).await {
        return;
    }
    let delivered = {
        let d = lock(&shared.delivered);
        if d.epoch != epoch {
            return;
        }
        d.seq
    };
    if last.is_some_and(|l| w.seq <= l) {
        // The numbers on the channel went back: Redis's sequence did, or this is forged.
        probe_soon(shared);
        return;
    }
    if w.seq <= delivered {
        // Read from the streams before it came.
        *last = Some(w.seq);
        return;
    }
    if let Err(why) = wire::check_frame(&w.frame, epoch, w.seq, shared.rules.ids) {
        return refuse(shared, why);
    }
    if w.seq > delivered + 1 {
        // The channel lost some (at most once): read them from the streams.
        match fill(shared, delivered, w.seq - 1).await {
            Fill::Done { top } if w.seq > top => {
                return refuse(shared, "numbered past the sequence in Redis");
            }
            Fill::Done { .. } => {}
            Fill::Stale => return probe_soon(shared),
            // The next probe reads from the streams what this missed, this included.
            Fill::Failed => return,
        }
    }
    deliver(shared, epoch, &w);
    *last = Some(w.seq);
}

/// Deliver `w`, publication of `epoch`, on this node, in order.
fn deliver(shared: &Shared, epoch: &str, w: &Wire) {
    let publication = Publication {
        private: w.private,
        rooms: w.rooms.clone(),
        except: w.except.filter(|_| w.node == shared.node),
        unique: w.unique,
        // Timed from its arrival on this node (one in so many, as at a publisher).
        sample: crate::metrics::sample(),
    };
    let frame = Encoded {
        bytes: w.frame.clone(),
        recorded_in: w
            .rooms
            .iter()
            .map(|r| shared.rules.for_room(r).is_some())
            .collect(),
    };
    let mut delivered = lock(&shared.delivered);
    if delivered.epoch != epoch || w.seq <= delivered.seq {
        return;
    }
    if w.node == shared.node && lock(&shared.local_only).remove(&w.token) {
        // Delivered here already, while Redis did not answer; it ran it later.
        delivered.seq = w.seq;
        return;
    }
    let fanout = fanout::deliver(&shared.local, &publication, &frame);
    delivered.seq = w.seq;
    drop(delivered);
    let n = shared.local.finish(fanout, &publication, &frame);
    if w.node == shared.node {
        shared.delivered_own(w.token, n);
    }
}

/// Back after an outage, where the probe found the epoch and the sequence. Whether
/// everything numbered up to it is delivered here now.
async fn catch_up(shared: &Shared, meta: Meta) -> bool {
    // A new epoch (Redis lost its data, or went back): what the new one holds is all
    // new here.
    new_epoch(shared, &meta.epoch);
    let delivered = lock(&shared.delivered).seq;
    if meta.seq <= delivered {
        return true;
    }
    match fill(shared, delivered, meta.seq).await {
        Fill::Failed => {
            // Not even the streams answer: everyone here may have missed something.
            gap_to_rooms(shared, GapReason::Outage, &local_rooms(shared, false));
            let mut d = lock(&shared.delivered);
            if d.epoch == meta.epoch {
                d.seq = d.seq.max(meta.seq);
            }
            false
        }
        Fill::Stale => false,
        Fill::Done { .. } => true,
    }
}

/// What a fill did.
enum Fill {
    /// Delivered what the streams hold; the sequence was at `top`.
    Done { top: u64 },
    /// Redis is not where this node is (another epoch, or a sequence behind what this
    /// node delivered): nothing done.
    Stale,
    /// Redis did not answer.
    Failed,
}

/// Deliver from the streams the publications numbered after `from` up to `to` (and up
/// to the sequence) that this node did not get; signal a gap to the rooms that may have
/// missed some. On a hub with patterns, from the log: a pattern room here may match
/// any event, and has no stream of its own.
async fn fill(shared: &Shared, from: u64, to: u64) -> Fill {
    let epoch = lock(&shared.delivered).epoch.clone();
    let recorded = local_rooms(shared, true);
    // Usually a few events: small pages first (they double as a room turns out to
    // hold more).
    let mut walk = match shared.log {
        Some(_) => Walk::log(shared, Order::Oldest, from, Some(to), 64),
        None => Walk::new(shared, &recorded, Order::Oldest, from, Some(to), 64),
    };
    let mut found = 0u64;
    let ids = shared.rules.ids;
    loop {
        match walk.next().await {
            Ok(Some(e)) => {
                if walk.epoch() != Some(epoch.as_str()) {
                    return Fill::Stale;
                }
                found += 1;
                match wire::event(e.seq, &e.header, e.frame) {
                    Some(w) if wire::check_frame(&w.frame, &epoch, w.seq, ids).is_ok() => {
                        deliver(shared, &epoch, &w);
                    }
                    _ => refuse(shared, "an unreadable entry in a stream"),
                }
            }
            Ok(None) => break,
            Err(ReadError::EpochChanged) => return Fill::Stale,
            Err(ReadError::Redis(e)) => {
                tracing::debug!(error = %e, "redis backplane: the streams did not answer");
                return Fill::Failed;
            }
        }
    }
    let Ok(meta) = walk.meta().await else {
        return Fill::Failed;
    };
    if meta.epoch != epoch || meta.seq < from {
        return Fill::Stale;
    }
    // Nothing is numbered past the sequence.
    let to = to.min(meta.seq);
    let evicted: Vec<String> = match shared.log {
        // The log does not say which rooms an event it dropped was in: all of them.
        Some(_) if walk.rooms().any(|r| r.dropped_through() > from) => recorded,
        Some(_) => Vec::new(),
        None => walk
            .rooms()
            .filter(|r| r.dropped_through() > from)
            .map(|r| r.name.to_string())
            .collect(),
    };
    gap_to_rooms(shared, GapReason::Evicted, &evicted);
    if found < to - from {
        // Some of the missed ones are in no stream of ours: events of rooms without
        // history, which nothing can bring back.
        let unrecorded: Vec<String> = local_rooms(shared, false)
            .into_iter()
            .filter(|r| shared.rules.for_room(r).is_none())
            .collect();
        gap_to_rooms(shared, GapReason::Outage, &unrecorded);
    }
    let mut delivered = lock(&shared.delivered);
    if delivered.epoch == epoch {
        delivered.seq = delivered.seq.max(to);
    }
    Fill::Done { top: meta.seq }
}

/// The rooms with local members (only those with history, if `recorded`).
fn local_rooms(shared: &Shared, recorded: bool) -> Vec<String> {
    shared
        .local
        .rooms
        .names()
        .into_iter()
        .filter(|r| !recorded || shared.rules.for_room(r).is_some())
        .collect()
}

/// Send the gap signal to the local members of `rooms`: one to each connection, naming
/// its rooms among them.
fn gap_to_rooms(shared: &Shared, reason: GapReason, rooms: &[String]) {
    let mut members: std::collections::HashMap<ConnectionId, (Connection, Vec<String>)> =
        std::collections::HashMap::new();
    for room in rooms {
        let Some(r) = shared.local.rooms.get(room) else {
            continue;
        };
        for (id, conn) in &r.members().conns {
            let entry = members
                .entry(*id)
                .or_insert_with(|| (conn.clone(), Vec::new()));
            entry.1.push(room.clone());
        }
    }
    for (conn, rooms) in members.into_values() {
        let frame = gap_message(&shared.rules.gap_event, reason, None, &rooms, None).encode();
        if conn.send_frame(frame).is_ok() {
            shared.local.metrics.gaps[reason.index()].inc();
        }
    }
}
