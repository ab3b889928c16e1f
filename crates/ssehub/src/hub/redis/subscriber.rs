//! The node's listener on the channel: it delivers every publication on this node, in
//! sequence order and once; it probes Redis (a Redis that stays silent is an outage,
//! found within three probe intervals); and after an outage it reconnects with back-off
//! and catches up from the streams, sending the gap signal where it cannot.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::AsyncCommands;
use tokio::time::Instant;

use super::replay::{self, Start};
use super::wire::{self, Incoming, Wire};
use super::{RedisError, Shared};
use crate::connection::{Connection, ConnectionId};
use crate::hub::fanout::{self, Encoded, Publication};
use crate::hub::history::{gap_frame, GapReason};
use crate::sync::lock;

/// How long one step of (re)connecting may take before it counts as failed.
const STEP: Duration = Duration::from_secs(2);
/// The longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Connect the channel once (a bad URL fails here), then listen on a task of its own.
pub(super) async fn start(shared: Arc<Shared>) -> Result<(), RedisError> {
    let (sink, stream, seq, epoch) = connect(&shared).await?;
    *lock(&shared.delivered) = seq;
    *lock(&shared.epoch) = epoch;
    shared.connected.store(true, Ordering::Relaxed);
    tokio::spawn(run(Arc::downgrade(&shared), sink, stream));
    Ok(())
}

/// Subscribe, then read where the sequence is: every publication after that number
/// comes on the channel.
async fn connect(shared: &Shared) -> Result<(PubSubSink, PubSubStream, u64, String), RedisError> {
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
    let read = tokio::time::timeout(STEP, replay::fetch(shared, &[] as &[&str], Start::After(0)))
        .await
        .map_err(timed)??;
    Ok((sink, stream, read.seq, read.epoch))
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
                Ok((sink, stream, seq, epoch)) => {
                    catch_up(&s, seq, epoch).await;
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
    let Some(probe_every) = shared.upgrade().map(|s| s.probe) else {
        return;
    };
    let mut ticker = tokio::time::interval(probe_every);
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { return };
                let Some(s) = shared.upgrade() else { return };
                match wire::parse(msg.get_payload_bytes()) {
                    Some(Incoming::Probe(node)) if node == s.node => heard = Instant::now(),
                    Some(Incoming::Probe(_)) | None => {}
                    Some(Incoming::Event(w)) => on_event(&s, w).await,
                }
            }
            _ = ticker.tick() => {
                let Some(s) = shared.upgrade() else { return };
                if heard.elapsed() > probe_every * 3 {
                    tracing::debug!("redis backplane: probes unanswered");
                    return;
                }
                // Through the command connection, answered on the channel: both work.
                let (mut conn, channel, probe) = (s.conn.clone(), s.keys.channel(), wire::probe(&s.node));
                tokio::spawn(async move {
                    let _: Result<(), _> = conn.publish(channel, probe).await;
                });
            }
        }
    }
}

/// One publication from the channel: fill in any number skipped, then deliver it.
async fn on_event(shared: &Shared, w: Wire) {
    let delivered = *lock(&shared.delivered);
    if w.seq <= delivered {
        return;
    }
    if w.seq > delivered + 1 {
        // The channel lost some (at most once): read them from the streams.
        fill(shared, delivered, w.seq - 1).await;
    }
    deliver(shared, &w);
}

/// Deliver `w` on this node, in order.
fn deliver(shared: &Shared, w: &Wire) {
    let publication = Publication {
        private: false,
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
    if w.seq <= *delivered {
        return;
    }
    if w.node == shared.node && lock(&shared.local_only).remove(&w.token) {
        // Delivered here already, while Redis did not answer; it ran it later.
        *delivered = w.seq;
        return;
    }
    let fanout = fanout::deliver(&shared.local, &publication, &frame);
    *delivered = w.seq;
    drop(delivered);
    let n = shared.local.finish(fanout, &publication, &frame);
    if w.node == shared.node {
        shared.delivered_own(w.seq, n);
    }
}

/// Back after an outage, with the channel's numbers going on from `seq`.
async fn catch_up(shared: &Shared, seq: u64, epoch: String) {
    let known = std::mem::replace(&mut *lock(&shared.epoch), epoch.clone());
    // No epoch yet at start means no history yet, not another one.
    if !known.is_empty() && known != epoch {
        // Redis lost its data: what it held is gone, and the cursors with it. What the
        // new history holds is all new here.
        let rooms = local_rooms(shared, true);
        gap_to_rooms(shared, GapReason::UnknownEpoch, &rooms);
        *lock(&shared.delivered) = 0;
        fill(shared, 0, seq).await;
        return;
    }
    let delivered = *lock(&shared.delivered);
    if seq > delivered {
        fill(shared, delivered, seq).await;
    }
}

/// Deliver from the streams the publications numbered after `from` up to `to` that this
/// node did not get; signal a gap to the rooms that may have missed some.
async fn fill(shared: &Shared, from: u64, to: u64) {
    let recorded = local_rooms(shared, true);
    let read = replay::fetch(shared, &recorded, Start::After(from)).await;
    let Ok(read) = read else {
        // Not even the streams answer: everyone here may have missed something.
        gap_to_rooms(shared, GapReason::Outage, &local_rooms(shared, false));
        *lock(&shared.delivered) = to;
        return;
    };
    let mut found = 0u64;
    for ((seq, frame), header) in read.entries.iter().zip(&read.headers) {
        if *seq > to {
            break;
        }
        found += 1;
        if let Some(w) = wire::event(*seq, header, frame.clone()) {
            deliver(shared, &w);
        }
    }
    let evicted: Vec<String> = read
        .rooms
        .iter()
        .filter(|r| r.dropped_through() > from)
        .map(|r| r.name.to_string())
        .collect();
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
    *delivered = (*delivered).max(to);
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
        let frame = gap_frame(&shared.rules.gap_event, reason, None, &rooms, None);
        if conn.send_frame(frame).is_ok() {
            shared.local.metrics.gaps[reason.index()].inc();
        }
    }
}
