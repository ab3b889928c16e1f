//! Reading history from Redis: walks over many rooms' streams in bounded steps, and a
//! resuming stream's replay.
//!
//! ## Bounded reads
//! Redis runs one command (or script) at a time: one that reads a lot holds every
//! node's publications and probes behind it. So history is read with plain commands,
//! each bounded, never with a script: per room an `XRANGE`/`XREVRANGE` with a `COUNT`
//! (at most [`PAGE`] entries), its meta hash after it, pipelined for at most
//! [`ROOMS_PER_FETCH`] rooms a round trip; Redis serves other clients between any two of
//! them. The rooms' pages are merged here, in sequence order, each event once. A replay
//! reads newest first and only as deep as its budget (half the outbox, as in memory)
//! reaches, in a few rounds of pages sized from what the last round found; what it
//! leaves out is announced, never read. Replays read on a connection of their own, so a
//! large answer never delays a publication behind it on the same socket.
//!
//! Plain commands do not see one instant as a script does, so every read is made to:
//! the walk's first command reads the sequence `T` and the epoch, every page reads up to
//! `T` only, each room's meta hash is read after its entries (an eviction meanwhile
//! shows there), a room of another epoch is not used, and each round trip ends by
//! reading the epoch again: a walk over which the epoch changed is of no use.
//!
//! ## Replay
//! A replay reads, newest first, its rooms' history after the cursor, up to `T`. It
//! switches the stream to live holding `delivered` (the newest number delivered on this
//! node, `D`): if `D <= T`, the events up to `D` come from the read and those after `D`
//! will come on the channel, so nothing is lost or doubled; if this node has meanwhile
//! delivered past `T`, it reads what came after `T` (a few events) and tries again.
//!
//! ## Replay of a hub of topics
//! A private entry is replayed only to a stream whose audience accepts one of its
//! topics (the header says both), as the live fan-out decides. A stream with a pattern
//! among its rooms (a hub with patterns, `hub/topics.rs`) reads the hub-wide log
//! instead of its rooms' streams: one stream, walked the same way, keeping the entries
//! of its exact rooms and those its patterns match, at most [`LOG_READS`] entries read;
//! whatever the log dropped after the cursor is a gap for all its rooms.

use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use redis::AsyncCommands;

use super::{wire, Shared, LOG_EVENTS};
use crate::connection::Connection;
use crate::hub::backplane::Resumed;
use crate::hub::fanout;
use crate::hub::history::{
    gap_message, hub_form, hub_id, hub_id_of, id_only_frame, place, GapReason, Resume,
};
use crate::hub::topics::Patterns;
use crate::sync::lock;

/// The most rooms one round trip reads (a stream may be in up to
/// `HubConfig::max_rooms_per_connection` rooms, 256 by default: several round trips).
pub(super) const ROOMS_PER_FETCH: usize = 64;
/// The most entries one command reads.
const PAGE: usize = 1024;
/// The most entries one replay may read, in all its commands: an event in every one of
/// 255 rooms is 255 entries, so a replay of events shared that widely is cut (and says
/// so) before it costs Redis more than a replay of as many distinct events would.
pub(super) const REPLAY_READS: usize = 16 * 1024;
/// The most entries of the hub-wide log one replay by pattern may read: the log holds
/// every topic's events, most of them not the reader's, so it scans further than a
/// replay of rooms reads; past it, what is left is announced (`replay-limit`), as the
/// in-memory history's scan cap does.
pub(super) const LOG_READS: usize = 64 * 1024;

/// Which entries a read keeps (a reader's own, among all those it reads): the rest are
/// read, counted against its limit on reads, and dropped at once.
pub(super) type Keep<'a> = &'a (dyn Fn(&Entry) -> bool + Send + Sync);

/// Which way a walk goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Order {
    Oldest,
    Newest,
}

/// One event of a room's history.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) seq: u64,
    pub(super) frame: Bytes,
    /// The header the nodes got with it (`wire.rs`).
    pub(super) header: String,
}

/// One room's state at a read.
#[derive(Debug, Clone)]
pub(super) struct RoomRead {
    pub(super) name: Arc<str>,
    dropped: u64,
    last: u64,
    exists: bool,
}

impl RoomRead {
    /// The newest number this room's history no longer holds (all of it when the stream
    /// has expired).
    pub(super) fn dropped_through(&self) -> u64 {
        if self.exists {
            self.dropped
        } else {
            self.last
        }
    }
}

/// The sequence and the epoch, as one read saw them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Meta {
    pub(super) epoch: String,
    pub(super) seq: u64,
}

/// Why a replay's read ended before the events did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// The count it was given (`?history=N`).
    Events,
    /// Its byte budget.
    Bytes,
    /// [`REPLAY_READS`].
    Reads,
}

/// What a replay's read may take.
#[derive(Debug, Clone, Copy)]
struct Limits {
    events: usize,
    bytes: usize,
    reads: usize,
}

/// Why a read failed.
#[derive(Debug)]
pub(super) enum ReadError {
    Redis(redis::RedisError),
    /// The epoch changed (or the sequence went back) during the walk: what was read is
    /// of no use.
    EpochChanged,
}

impl From<redis::RedisError> for ReadError {
    fn from(e: redis::RedisError) -> Self {
        ReadError::Redis(e)
    }
}

impl From<redis::ParsingError> for ReadError {
    fn from(e: redis::ParsingError) -> Self {
        ReadError::Redis(e.into())
    }
}

/// One room's place in a walk.
struct Cursor {
    stream: String,
    room_meta: String,
    /// What was read and not yet taken, in the walk's order.
    buf: VecDeque<Entry>,
    /// The number of the last entry read (the oldest, newest first): the next read
    /// starts past it.
    edge: Option<u64>,
    /// How many entries its last read asked for.
    asked: usize,
    /// How many its next read asks for.
    size: usize,
    /// Its last read was full: there may be more.
    more: bool,
    state: RoomRead,
}

/// The entries of an `XRANGE` answer as `(seq, frame, header)`, taken out of the
/// answer without copying the frames (`None` for an entry not as the publish script
/// writes them).
fn stream_entries(v: redis::Value) -> Vec<Option<(u64, Bytes, String)>> {
    let redis::Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .into_iter()
        .map(|item| {
            let redis::Value::Array(parts) = item else {
                return None;
            };
            let mut parts = parts.into_iter();
            let (Some(redis::Value::BulkString(id)), Some(redis::Value::Array(fields))) =
                (parts.next(), parts.next())
            else {
                return None;
            };
            let seq = std::str::from_utf8(&id)
                .ok()?
                .split_once('-')?
                .0
                .parse()
                .ok()?;
            let (mut frame, mut header) = (None, String::new());
            let mut fields = fields.into_iter();
            while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
                // Fields `f`, `t`, `c`, `h`, as the publish script writes them.
                match (name, value) {
                    (redis::Value::BulkString(n), redis::Value::BulkString(v)) if n == b"f" => {
                        frame = Some(Bytes::from(v));
                    }
                    (redis::Value::BulkString(n), redis::Value::BulkString(v)) if n == b"h" => {
                        header = String::from_utf8(v).ok()?;
                    }
                    _ => {}
                }
            }
            Some((seq, frame?, header))
        })
        .collect()
}

/// A walk over some rooms' history after a number (see the module's doc).
pub(super) struct Walk<'a> {
    shared: &'a Shared,
    order: Order,
    after: u64,
    /// The newest number to read: the sequence at the walk's first command, unless
    /// given lower.
    upto: Option<u64>,
    cursors: Vec<Cursor>,
    /// The sequence and the epoch at the walk's first command.
    meta: Option<Meta>,
    /// Entries read, in all.
    reads: usize,
    /// The rooms' heads, for [`Walk::next`]: (key, room), the greatest key next.
    heads: BinaryHeap<(u64, usize)>,
    /// Rooms whose page was taken to its end, and that may hold more.
    pending: Vec<usize>,
    started: bool,
    /// The number last given.
    last: Option<u64>,
    /// Which entries to keep (`None`: all).
    keep: Option<Keep<'a>>,
}

impl<'a> Walk<'a> {
    /// A walk over `rooms` after number `after` (up to `upto`, if given), asking first
    /// for `size` entries of each room.
    pub(super) fn new(
        shared: &'a Shared,
        rooms: &[impl AsRef<str>],
        order: Order,
        after: u64,
        upto: Option<u64>,
        size: usize,
    ) -> Walk<'a> {
        let streams = rooms.iter().map(|r| {
            let r = r.as_ref();
            (
                shared.keys.stream(r),
                shared.keys.room_meta(r),
                Arc::from(r),
            )
        });
        Walk::over(shared, streams, order, after, upto, size)
    }

    /// A walk over the hub-wide log (a hub with patterns, `scripts.rs`): a stream and a
    /// meta hash as a room's, named `log` here.
    pub(super) fn log(
        shared: &'a Shared,
        order: Order,
        after: u64,
        upto: Option<u64>,
        size: usize,
    ) -> Walk<'a> {
        let log = (shared.keys.log(), shared.keys.log_meta(), Arc::from("log"));
        Walk::over(shared, [log], order, after, upto, size)
    }

    /// A walk over `streams`: (stream, meta hash, name) each.
    fn over(
        shared: &'a Shared,
        streams: impl IntoIterator<Item = (String, String, Arc<str>)>,
        order: Order,
        after: u64,
        upto: Option<u64>,
        size: usize,
    ) -> Walk<'a> {
        let cursors = streams
            .into_iter()
            .map(|(stream, room_meta, name)| Cursor {
                stream,
                room_meta,
                buf: VecDeque::new(),
                edge: None,
                asked: 0,
                size: size.clamp(1, PAGE),
                more: true,
                state: RoomRead {
                    name,
                    dropped: 0,
                    last: 0,
                    exists: false,
                },
            })
            .collect();
        Walk {
            shared,
            order,
            after,
            upto,
            cursors,
            meta: None,
            reads: 0,
            heads: BinaryHeap::new(),
            pending: Vec::new(),
            started: false,
            last: None,
            keep: None,
        }
    }

    /// Keep only the entries `keep` says (the others are read, and counted, all the same).
    fn keeping(mut self, keep: Keep<'a>) -> Walk<'a> {
        self.keep = Some(keep);
        self
    }

    /// The sequence and the epoch as of the walk's first command (read now if it made
    /// none).
    pub(super) async fn meta(&mut self) -> redis::RedisResult<Meta> {
        if self.meta.is_none() {
            self.meta = Some(meta(self.shared).await?);
        }
        Ok(self.meta.clone().unwrap_or_default())
    }

    /// The epoch of the walk's first command, once read.
    pub(super) fn epoch(&self) -> Option<&str> {
        self.meta.as_ref().map(|m| m.epoch.as_str())
    }

    /// Each room as its last read saw it, in the order given.
    pub(super) fn rooms(&self) -> impl Iterator<Item = &RoomRead> {
        self.cursors.iter().map(|c| &c.state)
    }

    /// Read the next page of each room of `which`.
    async fn round(&mut self, which: &[usize]) -> Result<(), ReadError> {
        for chunk in which.chunks(ROOMS_PER_FETCH) {
            self.round_trip(chunk).await?;
        }
        Ok(())
    }

    async fn round_trip(&mut self, rooms: &[usize]) -> Result<(), ReadError> {
        let keys = &self.shared.keys;
        let mut pipe = redis::pipe();
        let first = self.meta.is_none();
        if first {
            pipe.cmd("HMGET").arg(keys.meta()).arg("seq").arg("epoch");
        }
        let low = format!("({}-1", self.after);
        let high = self
            .upto
            .map_or_else(|| "+".to_owned(), |n| format!("{n}-1"));
        for &i in rooms {
            let c = &self.cursors[i];
            let past = c.edge.map(|n| format!("({n}-1"));
            match self.order {
                Order::Newest => pipe
                    .cmd("XREVRANGE")
                    .arg(&c.stream)
                    .arg(past.as_ref().unwrap_or(&high))
                    .arg(&low),
                Order::Oldest => pipe
                    .cmd("XRANGE")
                    .arg(&c.stream)
                    .arg(past.as_ref().unwrap_or(&low))
                    .arg(&high),
            };
            pipe.arg("COUNT").arg(c.size);
            // After the entries: an eviction while they were read shows here.
            pipe.cmd("HMGET")
                .arg(&c.room_meta)
                .arg("dropped")
                .arg("last")
                .arg("epoch");
            pipe.cmd("EXISTS").arg(&c.stream);
        }
        // And the epoch after them: a walk across a change of epoch is of no use.
        pipe.cmd("HMGET").arg(keys.meta()).arg("seq").arg("epoch");
        let mut answer = pipe.query_async(&mut self.shared.reads.clone()).await;
        if answer.as_ref().is_err_and(dropped) {
            answer = pipe.query_async(&mut self.shared.reads.clone()).await;
        }
        let values: Vec<redis::Value> = answer?;
        let mut values = values.into_iter();
        let mut next = || values.next().unwrap_or(redis::Value::Nil);
        let read_meta = |v: redis::Value| -> redis::RedisResult<Meta> {
            let (seq, epoch): (Option<u64>, Option<String>) = redis::from_redis_value(v)?;
            Ok(Meta {
                epoch: epoch.unwrap_or_default(),
                seq: seq.unwrap_or(0),
            })
        };
        if first {
            let meta = read_meta(next())?;
            self.upto = Some(self.upto.map_or(meta.seq, |n| n.min(meta.seq)));
            self.meta = Some(meta);
        }
        let (epoch, upto) = match (&self.meta, self.upto) {
            (Some(m), Some(upto)) => (m.epoch.clone(), upto),
            _ => unreachable!("the first round trip reads them"),
        };
        for &i in rooms {
            let entries = stream_entries(next());
            let (dropped, last, room_epoch): (Option<u64>, Option<u64>, Option<String>) =
                redis::from_redis_value(next())?;
            let exists: u8 = redis::from_redis_value(next())?;
            let c = &mut self.cursors[i];
            self.reads += entries.len();
            c.more = entries.len() == c.size;
            c.asked = c.size;
            c.size = (c.size * 2).min(PAGE);
            if epoch.is_empty() || room_epoch.as_deref() != Some(epoch.as_str()) {
                // Of another epoch, or none: nothing of this one.
                c.more = false;
                c.buf.clear();
                continue;
            }
            c.state.dropped = dropped.unwrap_or(0);
            c.state.last = last.unwrap_or(0);
            c.state.exists = exists == 1;
            for (seq, frame, header) in entries.into_iter().flatten() {
                c.edge = Some(seq);
                let entry = Entry { seq, frame, header };
                if seq <= upto && self.keep.is_none_or(|keep| keep(&entry)) {
                    c.buf.push_back(entry);
                }
            }
        }
        let now = read_meta(next())?;
        let before = self.meta.as_ref().map_or(0, |m| m.seq);
        if now.epoch != epoch || now.seq < before {
            return Err(ReadError::EpochChanged);
        }
        Ok(())
    }

    /// The heap's key of number `seq`: the greatest key is the walk's next.
    fn key(&self, seq: u64) -> u64 {
        match self.order {
            Order::Newest => seq,
            Order::Oldest => u64::MAX - seq,
        }
    }

    fn push_head(&mut self, i: usize) {
        if let Some(e) = self.cursors[i].buf.front() {
            self.heads.push((self.key(e.seq), i));
        } else if self.cursors[i].more {
            self.pending.push(i);
        }
    }

    /// The walk's next event, in its order, each once; `None` at the end.
    pub(super) async fn next(&mut self) -> Result<Option<Entry>, ReadError> {
        if !self.started {
            self.started = true;
            self.pending = (0..self.cursors.len()).collect();
        }
        loop {
            // Rooms whose page ran out read their next before any event is chosen: the
            // walk's next may be theirs.
            while !self.pending.is_empty() {
                let rooms = std::mem::take(&mut self.pending);
                self.round(&rooms).await?;
                for i in rooms {
                    self.push_head(i);
                }
            }
            let Some((_, i)) = self.heads.pop() else {
                return Ok(None);
            };
            let Some(entry) = self.cursors[i].buf.pop_front() else {
                continue;
            };
            self.push_head(i);
            if self.last == Some(entry.seq) {
                // The same event in another room.
                continue;
            }
            self.last = Some(entry.seq);
            return Ok(Some(entry));
        }
    }
}

/// Whether `e` says the connection broke: the connection manager reconnects in the
/// background after answering the first command on a broken one with the error, so
/// that command is worth one more try (the reads connection may have been idle since
/// Redis went away).
fn dropped(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped()
}

/// Read the sequence and the epoch.
pub(super) async fn meta(shared: &Shared) -> redis::RedisResult<Meta> {
    let mut cmd = redis::cmd("HMGET");
    cmd.arg(shared.keys.meta()).arg("seq").arg("epoch");
    let mut answer = cmd.query_async(&mut shared.reads.clone()).await;
    if answer.as_ref().is_err_and(dropped) {
        answer = cmd.query_async(&mut shared.reads.clone()).await;
    }
    let (seq, epoch): (Option<u64>, Option<String>) = answer?;
    Ok(Meta {
        epoch: epoch.unwrap_or_default(),
        seq: seq.unwrap_or(0),
    })
}

/// The frames `room` keeps, oldest first.
pub(super) async fn history(shared: &Shared, room: &str) -> Result<Vec<Bytes>, ReadError> {
    let mut walk = Walk::new(shared, &[room], Order::Oldest, 0, None, PAGE);
    let mut frames = Vec::new();
    while let Some(e) = walk.next().await? {
        frames.push(e.frame);
    }
    Ok(frames)
}

/// The rooms of `conn` that keep history.
fn recorded_rooms(shared: &Shared, rooms: &[Arc<str>]) -> Vec<Arc<str>> {
    rooms
        .iter()
        .filter(|r| shared.rules.for_room(r).is_some())
        .cloned()
        .collect()
}

/// Where a replay reads.
#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    /// The streams of these rooms (the reader's with history).
    Rooms(&'a [Arc<str>]),
    /// The hub-wide log, for a reader in these rooms, some of them patterns: a pattern
    /// may match any topic's event, and has no stream of its own.
    Log(&'a [Arc<str>]),
}

impl<'a> Source<'a> {
    /// Where `conn`'s replay over `rooms` (its rooms with history) reads.
    fn of(shared: &Shared, rooms: &'a [Arc<str>]) -> Source<'a> {
        match shared.log.and(patterns_of(shared, rooms)) {
            Some(_) => Source::Log(rooms),
            None => Source::Rooms(rooms),
        }
    }

    /// A walk over it.
    fn walk<'s>(self, shared: &'s Shared, after: u64, size: usize) -> Walk<'s> {
        match self {
            Source::Rooms(rooms) => Walk::new(shared, rooms, Order::Newest, after, None, size),
            Source::Log(_) => Walk::log(shared, Order::Newest, after, None, size),
        }
    }

    /// The rooms whose history lost events after `after`, as `walk` saw them. The log
    /// does not say which rooms an event it dropped was in: all of the reader's.
    fn evicted(self, walk: &Walk<'_>, after: u64) -> Vec<String> {
        let mut dropped = walk.rooms().filter(|r| r.dropped_through() > after);
        match self {
            Source::Rooms(_) => dropped.map(|r| r.name.to_string()).collect(),
            Source::Log(rooms) if dropped.next().is_some() => {
                rooms.iter().map(|r| r.to_string()).collect()
            }
            Source::Log(_) => Vec::new(),
        }
    }
}

/// The patterns among `rooms`, on a hub with patterns.
fn patterns_of<'s>(shared: &'s Shared, rooms: &[Arc<str>]) -> Option<&'s dyn Patterns> {
    shared
        .local
        .patterns
        .as_deref()
        .filter(|p| p.has_pattern(rooms))
}

/// Which entries of `source` `conn` may have: from the log, those of its exact rooms
/// and those a pattern of its matches; and of those, a private one only if its
/// audience accepts one of the event's topics (as the live fan-out decides). An entry
/// whose header cannot be read is nobody's (a catch-up refuses it too).
fn keeper<'a>(
    shared: &'a Shared,
    conn: &'a Connection,
    source: Source<'a>,
) -> impl Fn(&Entry) -> bool + Send + Sync + 'a {
    let by_log = match source {
        Source::Log(rooms) => patterns_of(shared, rooms).map(|p| {
            let exact: HashSet<&str> = rooms.iter().map(|r| &**r).collect();
            (rooms, p, exact)
        }),
        Source::Rooms(_) => None,
    };
    move |e: &Entry| {
        let Some((private, topics)) = wire::audience(&e.header) else {
            return false;
        };
        if by_log.is_none() && !private {
            // A public event of one of its rooms (a room hub's every event).
            return true;
        }
        let topics: Vec<&str> = topics.collect();
        if let Some((rooms, patterns, exact)) = &by_log {
            let exactly = topics.iter().any(|t| exact.contains(t));
            if !exactly {
                let topics: Vec<Arc<str>> = topics.iter().map(|&t| Arc::from(t)).collect();
                if !patterns.any_matches(rooms, &topics) {
                    return false;
                }
            }
        }
        !private || conn.receives_private(&topics)
    }
}

/// What a replay read, newest first.
struct Collected {
    meta: Meta,
    entries: Vec<Entry>,
    /// Where and why the read stopped short.
    cut: Option<(u64, Cut)>,
    /// Rooms whose history lost events after the number the read started from.
    evicted: Vec<String>,
}

/// Read, newest first, what `source` holds after `after` that `keep` keeps, within
/// `limits`: rounds of pages (of the streams that may matter), until every event newer
/// than where the limits stop has been read, or the streams have no more.
async fn collect(
    shared: &Shared,
    source: Source<'_>,
    after: u64,
    limits: Limits,
    keep: Keep<'_>,
) -> Result<Collected, ReadError> {
    // A first guess at how deep each stream is read: events of 128 bytes (most are
    // larger), spread evenly over the rooms (the log holds them all).
    let wanted = limits.events.min(limits.bytes / 128).max(1);
    let streams = match source {
        Source::Rooms(rooms) => rooms.len().max(1),
        Source::Log(_) => 1,
    };
    let mut walk = source
        .walk(shared, after, wanted / streams + 2)
        .keeping(keep);
    let all: Vec<usize> = (0..walk.cursors.len()).collect();
    walk.round(&all).await?;
    let (entries, cut) = loop {
        let mut known: Vec<&Entry> = walk.cursors.iter().flat_map(|c| c.buf.iter()).collect();
        known.sort_unstable_by_key(|e| std::cmp::Reverse(e.seq));
        known.dedup_by_key(|e| e.seq);
        // Walk what was read, newest first, within the limits.
        let (mut taken, mut bytes, mut stop) = (0usize, 0usize, None);
        for e in &known {
            if taken >= limits.events {
                stop = Some((e.seq, Cut::Events));
            } else if bytes + e.frame.len() > limits.bytes {
                stop = Some((e.seq, Cut::Bytes));
            }
            if stop.is_some() {
                break;
            }
            taken += 1;
            bytes += e.frame.len();
        }
        // A room that may hold more holds only events older than the last it read (its
        // edge): none of them can come before where the walk stopped if no edge is
        // newer than that. Else read on in the rooms whose edge is.
        let floor = stop.map_or(after, |(seq, _)| seq);
        let which: Vec<usize> = walk
            .cursors
            .iter()
            .enumerate()
            .filter(|(_, c)| c.more && c.edge.is_some_and(|n| n > floor))
            .map(|(i, _)| i)
            .collect();
        if which.is_empty() {
            break (clone_all(&known[..taken]), stop);
        }
        if walk.reads >= limits.reads {
            // Settled only down to the newest edge of those rooms.
            let settled = which
                .iter()
                .filter_map(|&i| walk.cursors[i].edge)
                .max()
                .unwrap_or(floor);
            let kept = known[..taken].partition_point(|e| e.seq >= settled);
            break (clone_all(&known[..kept]), Some((settled, Cut::Reads)));
        }
        // As deep again as the limits still want, judging by what this much held; as
        // deep again as last time when they stopped already (only where is unsure).
        let need = match stop {
            Some(_) => 1.0,
            None if taken == 0 => 2.0,
            None => {
                let by_events = limits.events.saturating_sub(taken) as f64 / taken as f64;
                let by_bytes = limits.bytes.saturating_sub(bytes) as f64 / bytes.max(1) as f64;
                by_events.min(by_bytes).clamp(0.25, 2.0)
            }
        };
        // Within what the replay may still read.
        let share = (limits.reads - walk.reads) / which.len();
        for &i in &which {
            let c = &mut walk.cursors[i];
            c.size = ((c.asked as f64 * need * 1.25) as usize + 2).clamp(2, PAGE.min(share.max(2)));
        }
        walk.round(&which).await?;
    };
    let evicted = source.evicted(&walk, after);
    Ok(Collected {
        meta: walk.meta().await?,
        entries,
        cut,
        evicted,
    })
}

fn clone_all(entries: &[&Entry]) -> Vec<Entry> {
    entries.iter().map(|e| (*e).clone()).collect()
}

/// `old` followed by `new` (read after `old`'s instant): the newest that fit `limits`.
fn combine(old: Collected, new: Collected, limits: Limits) -> Collected {
    let mut entries = new.entries;
    let mut cut = new.cut;
    if cut.is_none() {
        let mut bytes: usize = entries.iter().map(|e| e.frame.len()).sum();
        for e in old.entries {
            if entries.len() >= limits.events {
                cut = Some((e.seq, Cut::Events));
            } else if bytes + e.frame.len() > limits.bytes {
                cut = Some((e.seq, Cut::Bytes));
            }
            if cut.is_some() {
                break;
            }
            bytes += e.frame.len();
            entries.push(e);
        }
        cut = cut.or(old.cut);
    }
    let mut evicted = old.evicted;
    for room in new.evicted {
        if !evicted.contains(&room) {
            evicted.push(room);
        }
    }
    Collected {
        meta: new.meta,
        entries,
        cut,
        evicted,
    }
}

/// Where the replay starts (after this number), how many events it may carry at most
/// (`?history=N`), and the gap to report, if any.
async fn locate(
    shared: &Shared,
    source: Source<'_>,
    resume: &Resume,
) -> redis::RedisResult<(u64, usize, Option<GapReason>)> {
    let cursor = match (resume, source) {
        // At most what the rooms (or the log) can hold, whatever was asked:
        // `?history=18446744073709551615` is all they keep, not a count to carry on.
        (Resume::Newest(n), Source::Rooms(rooms)) => {
            let kept = rooms
                .iter()
                .filter_map(|r| shared.rules.for_room(r))
                .fold(0usize, |sum, h| sum.saturating_add(h.events()));
            return Ok((0, (*n).min(kept), None));
        }
        (Resume::Newest(n), Source::Log(_)) => return Ok((0, (*n).min(LOG_EVENTS), None)),
        (Resume::After(cursor), _) => cursor,
    };
    let meta = meta(shared).await?;
    let ids = shared.rules.ids;
    let own = if hub_id(cursor, ids).is_none() && cursor != "earliest" {
        let held: Option<String> = shared.reads.clone().get(shared.keys.own_id(cursor)).await?;
        // `<epoch>-<seq>` (whatever the form of the hub's ids): an id of another epoch
        // is not this history's. Where ids repeat, the earliest event that carried it.
        held.as_deref()
            .and_then(hub_form)
            .and_then(Result::ok)
            .filter(|(epoch, _)| *epoch == meta.epoch)
            .map(|(_, seq)| seq)
    } else {
        None
    };
    Ok(match place(cursor, &meta.epoch, meta.seq, ids, || own) {
        Ok(after) => (after, usize::MAX, None),
        Err(reason) => (0, usize::MAX, Some(reason)),
    })
}

/// Queue to `conn` what it missed, then let it have live events (see the module doc).
pub(super) async fn resume(shared: &Shared, conn: &Connection, resume: &Resume) -> Resumed {
    'attempt: for _ in 0..10 {
        let rooms = recorded_rooms(shared, &lock(conn.rooms_lock()));
        if rooms.is_empty() {
            conn.end_resume();
            return Resumed::default();
        }
        let source = Source::of(shared, &rooms);
        let keep = keeper(shared, conn, source);
        let Ok((after, events, gap)) = locate(shared, source, resume).await else {
            break;
        };
        let limits = Limits {
            events,
            bytes: conn.outbox_limit() / 2,
            reads: match source {
                Source::Rooms(_) => REPLAY_READS,
                Source::Log(_) => LOG_READS,
            },
        };
        let mut read = match collect(shared, source, after, limits, &keep).await {
            Ok(read) => read,
            Err(ReadError::EpochChanged) => continue,
            Err(ReadError::Redis(_)) => break,
        };
        // Evictions matter only after a cursor that holds.
        let holds = matches!(resume, Resume::After(_)) && gap.is_none();
        // This node delivers on while the replay reads: each turn reads what it
        // delivered past the read, a few events.
        for _ in 0..50 {
            if !holds {
                read.evicted.clear();
            }
            let behind = match switch(shared, conn, resume, &rooms, gap, &read) {
                Switch::Done(resumed) => return resumed,
                Switch::Rooms => continue 'attempt,
                Switch::Epoch => {
                    // Redis is of another epoch than this node yet: its listener learns
                    // of it by the next message on the channel, a probe at the latest.
                    tokio::time::sleep(shared.probe_every / 4).await;
                    continue 'attempt;
                }
                Switch::Behind => read.meta.seq,
            };
            let more = match collect(shared, source, behind, limits, &keep).await {
                Ok(more) => more,
                Err(ReadError::EpochChanged) => continue 'attempt,
                Err(ReadError::Redis(_)) => break 'attempt,
            };
            read = combine(read, more, limits);
        }
    }
    // Redis does not answer: live events from now on, and the truth about the rest.
    let gap = gap_message(
        &shared.rules.gap_event,
        GapReason::Outage,
        cursor_of(resume),
        &[],
        None,
    )
    .encode();
    let fanout = fanout::to_one(conn, vec![gap]);
    conn.end_resume();
    fanout.finish();
    Resumed {
        replayed: 0,
        gap: Some(GapReason::Outage),
    }
}

fn cursor_of(resume: &Resume) -> Option<&str> {
    match resume {
        Resume::After(c) => Some(c),
        Resume::Newest(_) => None,
    }
}

enum Switch {
    Done(Resumed),
    /// The stream's rooms changed: start again.
    Rooms,
    /// The read is of another epoch than this node's: start again, later.
    Epoch,
    /// This node delivered past the read.
    Behind,
}

/// Under `delivered` and the connection's room list: queue the replay and go live, if
/// the read is still good (same rooms, same epoch, and this node has not delivered past
/// it).
fn switch(
    shared: &Shared,
    conn: &Connection,
    resume: &Resume,
    rooms: &[Arc<str>],
    mut gap: Option<GapReason>,
    read: &Collected,
) -> Switch {
    let delivered = lock(&shared.delivered);
    let joined = lock(conn.rooms_lock());
    if recorded_rooms(shared, &joined) != rooms {
        return Switch::Rooms;
    }
    if delivered.epoch != read.meta.epoch {
        return Switch::Epoch;
    }
    if delivered.seq > read.meta.seq {
        return Switch::Behind;
    }
    let top = delivered.seq;
    // Oldest first; the newer ones will come on the channel.
    let entries: Vec<&Entry> = read.entries.iter().rev().filter(|e| e.seq <= top).collect();
    let mut gap_rooms: Vec<String> = Vec::new();
    if gap.is_none() && !read.evicted.is_empty() {
        gap = Some(GapReason::Evicted);
        gap_rooms.clone_from(&read.evicted);
    }
    if let Some((_, Cut::Bytes | Cut::Reads)) = read.cut {
        gap = gap.or(Some(GapReason::ReplayLimit));
    }
    if gap.is_some() && gap_rooms.is_empty() {
        gap_rooms = rooms.iter().map(|r| r.to_string()).collect();
    }
    let mut frames: Vec<Bytes> = Vec::with_capacity(entries.len() + 2);
    if let Some(reason) = gap {
        let first = entries.first().and_then(|e| frame_id(&e.frame));
        frames.push(
            gap_message(
                &shared.rules.gap_event,
                reason,
                cursor_of(resume),
                &gap_rooms,
                first.as_deref(),
            )
            .encode(),
        );
    }
    let last = entries.last().map_or(0, |e| e.seq);
    frames.extend(entries.iter().map(|e| e.frame.clone()));
    if top > last && !read.meta.epoch.is_empty() {
        let id = hub_id_of(&read.meta.epoch, top, shared.rules.ids);
        frames.push(id_only_frame(&id));
    }
    let replayed = entries.len();
    let fanout = fanout::to_one(conn, frames);
    conn.end_resume();
    drop(joined);
    drop(delivered);
    fanout.finish();
    Switch::Done(Resumed { replayed, gap })
}

/// Whether the history can honour `cursor` for a stream in `rooms` (the Mercure answer
/// header): the cursor points into it, and nothing after it was dropped from the
/// streams a replay would read (the rooms', or the log for a stream with patterns).
/// Read as a replay reads, in bounded commands (a page of one entry per stream, and
/// the meta hashes); whatever Redis does not answer is a no.
pub(super) async fn holds(shared: &Shared, cursor: &str, rooms: &[Arc<str>]) -> bool {
    let rooms = recorded_rooms(shared, rooms);
    if rooms.is_empty() {
        return false;
    }
    let source = Source::of(shared, &rooms);
    let resume = Resume::After(cursor.to_owned());
    let Ok(before) = meta(shared).await else {
        return false;
    };
    let Ok((after, _, None)) = locate(shared, source, &resume).await else {
        return false;
    };
    let mut walk = source.walk(shared, after, 1);
    let all: Vec<usize> = (0..walk.cursors.len()).collect();
    if walk.round(&all).await.is_err() {
        return false;
    }
    // Located in the epoch the streams were read in (a walk across a change of epoch
    // fails by itself).
    walk.epoch() == Some(before.epoch.as_str()) && source.evicted(&walk, after).is_empty()
}

/// The id a recorded frame carries (its first line, `id: ...`).
fn frame_id(frame: &[u8]) -> Option<String> {
    let line = frame.split(|&b| b == b'\n').next()?;
    let id = line.strip_prefix(b"id: ")?;
    String::from_utf8(id.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(seqs: &[u64], cut: Option<(u64, Cut)>) -> Collected {
        Collected {
            meta: Meta::default(),
            // Newest first, 10 bytes each.
            entries: seqs
                .iter()
                .map(|&seq| Entry {
                    seq,
                    frame: Bytes::from(vec![b'x'; 10]),
                    header: String::new(),
                })
                .collect(),
            cut,
            evicted: Vec::new(),
        }
    }

    fn seqs(c: &Collected) -> Vec<u64> {
        c.entries.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn what_came_after_a_read_goes_first_and_the_budget_still_holds() {
        let limits = Limits {
            events: usize::MAX,
            bytes: 45,
            reads: REPLAY_READS,
        };
        // Room for all: the old read's own cut stays.
        let all = combine(
            read(&[3, 2], Some((1, Cut::Bytes))),
            read(&[5, 4], None),
            limits,
        );
        assert_eq!(
            (seqs(&all), all.cut),
            (vec![5, 4, 3, 2], Some((1, Cut::Bytes)))
        );
        // The newer ones push the oldest out.
        let pushed = combine(read(&[3, 2, 1], None), read(&[5, 4], None), limits);
        assert_eq!(
            (seqs(&pushed), pushed.cut),
            (vec![5, 4, 3, 2], Some((1, Cut::Bytes)))
        );
        // A newer read cut short: nothing older can follow it.
        let short = combine(
            read(&[3], None),
            read(&[9, 8], Some((7, Cut::Bytes))),
            limits,
        );
        assert_eq!(
            (seqs(&short), short.cut),
            (vec![9, 8], Some((7, Cut::Bytes)))
        );
        // A count (`?history=N`) holds across both.
        let two = Limits {
            events: 2,
            ..limits
        };
        let newest = combine(read(&[3, 2], None), read(&[4], None), two);
        assert_eq!(
            (seqs(&newest), newest.cut),
            (vec![4, 3], Some((2, Cut::Events)))
        );
    }
}
