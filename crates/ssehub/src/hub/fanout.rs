//! The fan-out: queue one encoded frame to every local member of some rooms, then deal
//! with what the queueing found (outboxes that overflowed, idle streams to write).
//!
//! A fan-out encodes nothing: every recipient gets a clone of the same `Bytes` (a
//! reference count, no copy). It holds each room's read lock while it queues, and
//! nothing while it writes.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::rooms::{Room, Rooms};
use super::topics::Patterns;
use crate::connection::{
    Claim, Clock, Connection, ConnectionId, Enqueued, Kind, Stamp, WIDE_FANOUT,
};
use crate::metrics::{Metrics, Sample};

/// This process's side of the hub: the room table fan-outs read, and the counters they
/// bump. The hub and its backplane share it; the backplane delivers through it (for a
/// distributed one, from its own task, whenever an event reaches this node).
#[derive(Default)]
pub(crate) struct Local {
    pub(crate) rooms: Rooms,
    pub(crate) metrics: Metrics,
    /// Fan-outs begun: what pacing compares a write against (`connection/pace.rs`).
    pub(crate) clock: Arc<Clock>,
    /// The rooms named by patterns (`topics.rs`), for a hub whose rooms are topics.
    pub(crate) patterns: Option<Arc<dyn Patterns>>,
}

impl Local {
    pub(crate) fn new(patterns: Option<Arc<dyn Patterns>>) -> Local {
        Local {
            patterns,
            ..Local::default()
        }
    }

    /// Fan `frame` out to the local members of `p`'s rooms and count the deliveries.
    /// Returns how many outboxes took it.
    pub(crate) fn deliver(&self, p: &Publication, frame: &Encoded) -> usize {
        self.finish(deliver(self, p, frame), p, frame)
    }

    /// Finish `fanout`, of `p`'s `frame` ([`Fanout::finish`]), and count it: the
    /// deliveries, their bytes and, for a timed publication, how long it took to be
    /// queued. Once per publication, never per recipient. Returns how many outboxes
    /// took it.
    pub(crate) fn finish(&self, fanout: Fanout, p: &Publication, frame: &Encoded) -> usize {
        let reached = fanout.finish();
        let m = &self.metrics;
        m.deliveries.add(reached as u64);
        m.delivered_bytes.add((reached * frame.bytes.len()) as u64);
        if let Some(sample) = p.sample {
            m.fanout_seconds.observe(sample.at.elapsed());
        }
        reached
    }
}

/// What one publication delivers, and to whom.
#[derive(Debug, Clone, Default)]
pub(crate) struct Publication {
    pub(crate) rooms: Vec<String>,
    /// A connection to skip (typically the sender).
    pub(crate) except: Option<ConnectionId>,
    /// At most once per connection, even for one in several of the rooms.
    pub(crate) unique: bool,
    /// Only for the connections whose audience accepts one of its rooms (topics).
    pub(crate) private: bool,
    /// Timed (one in so many, `metrics/histogram.rs`): one recipient's frame carries a
    /// probe to its socket.
    pub(crate) sample: Option<Sample>,
}

/// The encoded frame of a publication, and which of its rooms recorded it in their
/// history (there, a stream whose replay is pending gets it from the replay instead).
#[derive(Debug, Clone)]
pub(crate) struct Encoded {
    pub(crate) bytes: Bytes,
    pub(crate) recorded_in: Vec<bool>,
}

// A fan-out wider than `WIDE_FANOUT` (`pace.rs`) is not written directly while the
// process is under pressure or was lately: it only queues and leaves the writing to the
// streams' tasks. Writing 10,000 sockets at about 6 us each takes longer than a batching
// window, and under load the tasks' later writes carry more events each (measured in
// BENCHMARKS.md: half the CPU per delivery at 10,000 subscribers and the highest rate).
// A calm process writes any fan-out directly (`Fanout::new`).

/// Queue `frame` to the local members of `p`'s rooms. The returned tally is finished
/// ([`Fanout::finish`]) once the caller holds no lock: that closes overflowed outboxes
/// and writes idle streams.
pub(crate) fn deliver(local: &Local, p: &Publication, frame: &Encoded) -> Fanout {
    let rooms = &local.rooms;
    let mut targets: Vec<(Arc<Room>, Kind)> = p
        .rooms
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let recorded = frame.recorded_in.get(i).copied().unwrap_or(false);
            let kind = if recorded {
                Kind::Recorded
            } else {
                Kind::Plain
            };
            rooms.get(n).map(|r| (r, kind))
        })
        .collect();
    if let Some(patterns) = &local.patterns {
        // A recorded event is recorded for the streams of its patterns too: their
        // replay reads it from the log.
        let kind = if frame.recorded_in.contains(&true) {
            Kind::Recorded
        } else {
            Kind::Plain
        };
        let matching = patterns.rooms_matching(&p.rooms);
        targets.extend(
            matching
                .iter()
                .filter_map(|n| rooms.get(n).map(|r| (r, kind))),
        );
    }
    // One room (names are distinct): nobody can be reached twice.
    let mut seen = (p.unique && targets.len() > 1).then(HashSet::new);
    let recipients = targets.iter().map(|(r, _)| r.members().conns.len()).sum();
    let mut fanout = Fanout::new(recipients, &local.clock);
    if let Some(sample) = p.sample.filter(|_| recipients > 0) {
        fanout.probe = Some((sample.seed as usize % recipients, sample.at));
    }
    for (room, kind) in &targets {
        let members = room.members();
        let mut ahead = members.conns.values();
        for (n, (id, conn)) in members.conns.iter().enumerate() {
            if n % GROUP == 0 {
                ahead.by_ref().take(GROUP).for_each(Connection::touch);
            }
            if p.except == Some(*id) {
                continue;
            }
            if let Some(seen) = &mut seen {
                if !seen.insert(*id) {
                    continue;
                }
            }
            if p.private && !conn.receives_private(&p.rooms) {
                continue;
            }
            fanout.push(conn, frame.bytes.clone(), *kind);
        }
    }
    fanout
}

/// Queue `frame` to each of `conns`, whatever their rooms (keep-alive and shutdown).
/// `only_idle` skips connections that had traffic since the last such call.
pub(crate) fn to_each(
    local: &Local,
    conns: &[Connection],
    frame: &Bytes,
    only_idle: bool,
) -> usize {
    let kind = if only_idle {
        Kind::KeepAlive
    } else {
        Kind::Plain
    };
    // Not a publication: it overtakes no write.
    let stamp = Stamp::now(&local.clock);
    let mut fanout = Fanout::with_stamp(conns.len(), stamp, &local.clock);
    for c in conns {
        fanout.push(c, frame.clone(), kind);
    }
    fanout.finish()
}

/// Queue `frames`, in order, to one connection (a replay).
pub(crate) fn to_one(conn: &Connection, frames: Vec<Bytes>) -> Fanout {
    let clock = conn.owner().clock();
    let mut fanout = Fanout::with_stamp(1, Stamp::now(clock), clock);
    for f in frames {
        fanout.push(conn, f, Kind::Plain);
    }
    fanout
}

/// One fan-out's tally: how many outboxes took the frame, which overflowed under the
/// `Close` policy, and which transports the frame is to be written to directly. Both are
/// dealt with by `finish`, once the caller holds no hub lock (closing a connection takes
/// room locks; a room's lock is not held over socket writes).
#[must_use = "a fan-out is finished by `finish`: overflowed streams closed, idle ones written"]
pub(crate) struct Fanout {
    reached: usize,
    overflowed: Vec<Connection>,
    claims: Vec<Claim>,
    /// When the fan-out began (one clock read for all recipients) and its number, if its
    /// recipients may be written directly.
    stamp: Option<Stamp>,
    /// A timed publication: how many recipients to skip before the one that carries
    /// the probe, and when the publication began.
    probe: Option<(usize, Instant)>,
    /// The hub's clock, which each claim's release reads (passed along: the connection's
    /// way to it is a cache line more per recipient).
    clock: Arc<Clock>,
}

impl Fanout {
    /// A publication's fan-out: it takes the next number of its hub's count.
    /// While the process is calm (no pressure for a while, `pace.rs`) it is written
    /// directly whatever its size: the streams' tasks would write each event alone
    /// anyway, and waking them costs more than the write.
    fn new(recipients: usize, clock: &Arc<Clock>) -> Fanout {
        let stamp = Stamp::fanout(clock, recipients);
        let limit = if clock.calm(stamp.at) {
            usize::MAX
        } else {
            WIDE_FANOUT
        };
        Fanout::direct_up_to(recipients, stamp, limit, clock)
    }

    fn with_stamp(recipients: usize, stamp: Stamp, clock: &Arc<Clock>) -> Fanout {
        Fanout::direct_up_to(recipients, stamp, WIDE_FANOUT, clock)
    }

    fn direct_up_to(recipients: usize, stamp: Stamp, limit: usize, clock: &Arc<Clock>) -> Fanout {
        let direct = recipients <= limit;
        Fanout {
            reached: 0,
            overflowed: Vec::new(),
            claims: Vec::with_capacity(if direct { recipients } else { 0 }),
            stamp: direct.then_some(stamp),
            probe: None,
            clock: clock.clone(),
        }
    }

    fn push(&mut self, conn: &Connection, frame: Bytes, kind: Kind) {
        let enqueued = match &mut self.probe {
            None => conn.enqueue_as(frame, kind, self.stamp),
            Some((0, timed)) => {
                let timed = *timed;
                self.probe = None;
                conn.enqueue_timed(frame, kind, self.stamp, timed)
            }
            Some((skip, _)) => {
                *skip -= 1;
                conn.enqueue_as(frame, kind, self.stamp)
            }
        };
        match enqueued {
            // Deferred: the stream's replay will carry it.
            Enqueued::Yes | Enqueued::Deferred => self.reached += 1,
            Enqueued::Direct(claim) => {
                self.reached += 1;
                self.claims.push(claim);
            }
            Enqueued::Overflow => self.overflowed.push(conn.clone()),
            Enqueued::Closed | Enqueued::Dropped | Enqueued::Busy => {}
        }
    }

    /// Close the connections that overflowed, write the idle streams. Returns how many
    /// outboxes took the frame.
    pub(crate) fn finish(self) -> usize {
        self.overflowed
            .iter()
            .for_each(Connection::close_overflowed);
        write_claims(self.claims, self.clock);
        self.reached
    }
}

/// A fan-out reads the first cache line of this many connections before it queues to
/// (or writes) the first of them. At light load that line is a miss for every recipient
/// (each `send` evicts what came before), and the lock taken next, a locked instruction,
/// waits for every load before it: one connection at a time, each miss was waited for
/// alone; read together, a group's misses overlap.
const GROUP: usize = 8;

/// Write the next [`GROUP`] of `claims`, their connections read first.
fn write_group(claims: &mut std::vec::IntoIter<Claim>, pieces: &mut Vec<Bytes>, clock: &Clock) {
    let n = claims.len().min(GROUP);
    claims.as_slice()[..n].iter().for_each(Claim::touch);
    claims.by_ref().take(n).for_each(|c| c.write(pieces, clock));
}

/// Write claimed queues. Broadcasting stays queueing-only for the caller: on a runtime
/// the writes run in spawned tasks, a few hundred sockets each, yielding between slices
/// so that publishers and other streams get their turn. Outside a runtime they run
/// here, and never wait either (every write is non-blocking).
fn write_claims(claims: Vec<Claim>, clock: Arc<Clock>) {
    const PER_TASK: usize = 256;
    const PER_POLL: usize = 32;
    // Only a multi-threaded runtime is sure to run what is spawned on it soon; on a
    // current-thread one (maybe not even driven: a caller's `block_on` that ends) the
    // claims would hold their streams until it runs again.
    let rt = match tokio::runtime::Handle::try_current() {
        Ok(rt)
            if claims.len() > 1
                && rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
        {
            rt
        }
        _ => {
            let (mut pieces, mut claims) = (Vec::new(), claims.into_iter());
            while claims.len() > 0 {
                write_group(&mut claims, &mut pieces, &clock);
            }
            return;
        }
    };
    let mut claims = claims.into_iter();
    loop {
        let batch: Vec<Claim> = claims.by_ref().take(PER_TASK).collect();
        if batch.is_empty() {
            break;
        }
        let clock = clock.clone();
        rt.spawn(async move {
            let mut pieces = Vec::new();
            let mut batch = batch.into_iter();
            while batch.len() > 0 {
                for _ in 0..PER_POLL / GROUP {
                    write_group(&mut batch, &mut pieces, &clock);
                }
                tokio::task::yield_now().await;
            }
        });
    }
}
