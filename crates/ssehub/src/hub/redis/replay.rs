//! Reading history from Redis: a walk over many rooms' streams, one bounded page at a
//! time, and a resuming stream's replay.
//!
//! ## Bounded reads
//! Redis runs one script at a time: a script that reads a lot holds every node's
//! publications and probes behind it. So no read is one script: a [`Walk`] asks the
//! fetch script for pages of at most [`ROOMS_PER_FETCH`] rooms, [`PAGE_EVENTS`] events,
//! [`PAGE_BYTES`] bytes and [`PAGE_READS`] entries looked at, and merges the pages of
//! its groups of rooms into one walk in sequence order, each event once. A replay walks
//! newest first and stops at its budget (half the outbox, as in memory), so it reads
//! what it sends and little more; the events past the budget are announced, never read.
//! Replays read on a connection of their own, so a large answer never delays a
//! publication's behind it on the same socket.
//!
//! ## Replay
//! A replay reads, newest first, its rooms' history after the cursor, as of the newest
//! number `T` at its first page. It switches the stream to live holding `delivered` (the
//! newest number delivered on this node, `D`): if `D <= T`, the events up to `D` come
//! from the read and those after `D` will come on the channel, so nothing is lost or
//! doubled; if this node has meanwhile delivered past `T`, it reads what came after `T`
//! (a few events) and tries again.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::AsyncCommands;

use super::Shared;
use crate::connection::Connection;
use crate::hub::backplane::Resumed;
use crate::hub::fanout;
use crate::hub::history::{gap_frame, hub_form, id_only_frame, place, GapReason, Resume};
use crate::sync::lock;

/// The most rooms one call of the fetch script reads: a stream in more rooms (up to
/// `HubConfig::max_rooms_per_connection`) is read in groups of this many, merged here.
pub(super) const ROOMS_PER_FETCH: usize = 64;
/// The most events one page holds.
const PAGE_EVENTS: usize = 1024;
/// A page ends after this many bytes of frames (at least one event).
const PAGE_BYTES: usize = 1 << 20;
/// A page ends after looking at this many entries (an event in several rooms of a group
/// is one entry in each; at least one event).
const PAGE_READS: usize = 4096;
/// The most entries one replay may look at, in all its pages: an event in every one of
/// 255 rooms costs 255 entries, so a replay of events shared that widely is cut (and
/// says so) before it costs Redis more than a replay of as many distinct events would.
pub(super) const REPLAY_READS: usize = 32 * 1024;

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
#[derive(Debug)]
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

/// Why a walk ended before its events did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cut {
    /// The count it was given (`?history=N`).
    Events,
    /// Its byte budget.
    Bytes,
    /// [`REPLAY_READS`].
    Reads,
}

/// What a walk may take.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) events: usize,
    pub(super) bytes: usize,
    pub(super) reads: usize,
}

impl Limits {
    pub(super) const NONE: Limits = Limits {
        events: usize::MAX,
        bytes: usize::MAX,
        reads: usize::MAX,
    };
}

/// Why a read failed.
#[derive(Debug)]
pub(super) enum ReadError {
    Redis(redis::RedisError),
    /// The epoch changed (or the sequence went back) between two pages: what was read
    /// is of no use.
    EpochChanged,
}

impl From<redis::RedisError> for ReadError {
    fn from(e: redis::RedisError) -> Self {
        ReadError::Redis(e)
    }
}

/// The next step of a walk.
#[derive(Debug)]
pub(super) enum Step {
    Event(Entry),
    /// The walk ends before event `seq`, for this reason (do not walk on).
    Cut(u64, Cut),
    End,
}

/// Where a group of rooms goes on from.
#[derive(Debug, Clone, Copy)]
enum Next {
    /// Read the next page: events after `after`, up to `upto` (`None`: the walk's).
    Read {
        after: u64,
        upto: Option<u64>,
    },
    /// Event `seq` is the group's next, and the limits refuse it.
    Blocked(u64, Cut),
    Done,
}

struct Group {
    rooms: Vec<Arc<str>>,
    /// Its next events, in the walk's order.
    buf: VecDeque<Entry>,
    next: Next,
    /// No page read yet.
    first: bool,
}

/// The answer of the fetch script (see `scripts.rs`).
type RawPage = (
    u64,
    String,
    u8,
    u64,
    usize,
    Vec<(u64, u64, u8)>,
    Vec<(u64, Vec<u8>, String)>,
);

/// A walk over some rooms' history after a number, in sequence order, each event once,
/// read a page at a time (see the module's doc).
pub(super) struct Walk<'a> {
    shared: &'a Shared,
    order: Order,
    /// The newest number to read (the walk's first page fixes it at the sequence then,
    /// so that every group is read as of one instant).
    upto: Option<u64>,
    left: Limits,
    reads: usize,
    groups: Vec<Group>,
    /// The sequence and the epoch at the first page.
    meta: Option<Meta>,
    /// Each room as its group's first page saw it, in the order given.
    pub(super) rooms: Vec<RoomRead>,
}

impl<'a> Walk<'a> {
    pub(super) fn new(
        shared: &'a Shared,
        rooms: &[impl AsRef<str>],
        order: Order,
        after: u64,
        upto: Option<u64>,
        limits: Limits,
    ) -> Walk<'a> {
        let groups = rooms
            .chunks(ROOMS_PER_FETCH)
            .map(|rooms| Group {
                rooms: rooms.iter().map(|r| Arc::from(r.as_ref())).collect(),
                buf: VecDeque::new(),
                next: Next::Read { after, upto: None },
                first: true,
            })
            .collect();
        Walk {
            shared,
            order,
            upto,
            left: limits,
            reads: 0,
            groups,
            meta: None,
            rooms: Vec::new(),
        }
    }

    /// The sequence and the epoch as of the walk's first page (read now if it has none).
    pub(super) async fn meta(&mut self) -> redis::RedisResult<Meta> {
        if self.meta.is_none() {
            self.meta = Some(meta(self.shared).await?);
        }
        Ok(self.meta.clone().unwrap_or_default())
    }

    /// The epoch of the walk's first page, once read.
    pub(super) fn epoch(&self) -> Option<&str> {
        self.meta.as_ref().map(|m| m.epoch.as_str())
    }

    fn before(&self, a: u64, b: u64) -> bool {
        match self.order {
            Order::Oldest => a < b,
            Order::Newest => a > b,
        }
    }

    pub(super) async fn next(&mut self) -> Result<Step, ReadError> {
        // Every group that may hold more shows its next event before one is chosen.
        for g in 0..self.groups.len() {
            while self.groups[g].buf.is_empty() {
                let Next::Read { after, upto } = self.groups[g].next else {
                    break;
                };
                self.page(g, after, upto).await?;
            }
        }
        let mut best: Option<(u64, usize, bool)> = None;
        for (g, group) in self.groups.iter().enumerate() {
            let head = match (group.buf.front(), group.next) {
                (Some(e), _) => (e.seq, false),
                (None, Next::Blocked(seq, _)) => (seq, true),
                _ => continue,
            };
            let better = best.is_none_or(|(seq, _, blocked)| {
                self.before(head.0, seq) || (head.0 == seq && head.1 && !blocked)
            });
            if better {
                best = Some((head.0, g, head.1));
            }
        }
        let Some((seq, g, blocked)) = best else {
            return Ok(Step::End);
        };
        if blocked {
            let Next::Blocked(_, why) = self.groups[g].next else {
                unreachable!("a blocked head")
            };
            return Ok(Step::Cut(seq, why));
        }
        let Some(entry) = self.groups[g].buf.pop_front() else {
            unreachable!("a head")
        };
        for group in &mut self.groups {
            if group.buf.front().is_some_and(|e| e.seq == seq) {
                group.buf.pop_front();
            }
        }
        if self.left.events == 0 {
            return Ok(Step::Cut(seq, Cut::Events));
        }
        if entry.frame.len() > self.left.bytes {
            return Ok(Step::Cut(seq, Cut::Bytes));
        }
        if self.reads > self.left.reads {
            return Ok(Step::Cut(seq, Cut::Reads));
        }
        self.left.events -= 1;
        self.left.bytes -= entry.frame.len();
        Ok(Step::Event(entry))
    }

    /// Read group `g`'s next page.
    async fn page(&mut self, g: usize, after: u64, upto: Option<u64>) -> Result<(), ReadError> {
        let shared = self.shared;
        // Every group, and every page, as of the first page's instant.
        let upto = match (upto, self.upto) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let events = self.left.events.min(PAGE_EVENTS);
        // Newest first, the byte limit is a budget: the first event that does not fit
        // ends the walk there (older ones would not fit either).
        let budget = (self.order == Order::Newest && self.left.bytes != usize::MAX)
            .then_some(self.left.bytes);
        let mut invocation = shared.fetch.prepare_invoke();
        invocation.key(shared.keys.meta());
        for room in &self.groups[g].rooms {
            invocation
                .key(shared.keys.stream(room))
                .key(shared.keys.room_meta(room));
        }
        invocation
            .arg(match self.order {
                Order::Oldest => "asc",
                Order::Newest => "desc",
            })
            .arg(after)
            .arg(upto.map(|n| n.to_string()).unwrap_or_default())
            .arg(events)
            .arg(budget.map(|n| n.to_string()).unwrap_or_default())
            .arg(PAGE_BYTES)
            .arg(PAGE_READS);
        let mut answer = invocation.invoke_async(&mut shared.reads.clone()).await;
        if answer.as_ref().is_err_and(dropped) {
            answer = invocation.invoke_async(&mut shared.reads.clone()).await;
        }
        let (seq, epoch, stop, next, reads, rooms, entries): RawPage = answer?;
        match &self.meta {
            None => {
                self.meta = Some(Meta { epoch, seq });
                self.upto = Some(self.upto.map_or(seq, |u| u.min(seq)));
            }
            Some(m) if m.epoch != epoch || seq < m.seq => return Err(ReadError::EpochChanged),
            Some(_) => {}
        }
        self.reads += reads;
        let order = self.order;
        let group = &mut self.groups[g];
        if group.first {
            group.first = false;
            for (room, (dropped, last, exists)) in group.rooms.iter().zip(rooms) {
                self.rooms.push(RoomRead {
                    name: room.clone(),
                    dropped,
                    last,
                    exists: exists == 1,
                });
            }
        }
        group.buf = entries
            .into_iter()
            .map(|(seq, frame, header)| Entry {
                seq,
                frame: Bytes::from(frame),
                header,
            })
            .collect();
        group.next = match stop {
            0 => Next::Done,
            // The walk's own count, not the page's.
            1 if events == self.left.events => Next::Blocked(next, Cut::Events),
            2 => Next::Blocked(next, Cut::Bytes),
            // The page is full: the next one starts at event `next`.
            _ => match order {
                Order::Oldest => Next::Read {
                    after: next.saturating_sub(1),
                    upto,
                },
                Order::Newest => Next::Read {
                    after,
                    upto: Some(next),
                },
            },
        };
        Ok(())
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
    let mut walk = Walk::new(shared, &[room], Order::Oldest, 0, None, Limits::NONE);
    let mut frames = Vec::new();
    while let Step::Event(e) = walk.next().await? {
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

/// What a replay read, newest first.
struct Collected {
    meta: Meta,
    entries: Vec<Entry>,
    /// Where and why the walk stopped short.
    cut: Option<(u64, Cut)>,
    /// Rooms whose history lost events after the number the read started from.
    evicted: Vec<String>,
}

/// Read, newest first, what `rooms` hold after `after`, within `limits`.
async fn collect(
    shared: &Shared,
    rooms: &[Arc<str>],
    after: u64,
    limits: Limits,
) -> Result<Collected, ReadError> {
    let mut walk = Walk::new(shared, rooms, Order::Newest, after, None, limits);
    let mut entries = Vec::new();
    let cut = loop {
        match walk.next().await? {
            Step::Event(e) => entries.push(e),
            Step::Cut(seq, why) => break Some((seq, why)),
            Step::End => break None,
        }
    };
    let evicted = walk
        .rooms
        .iter()
        .filter(|r| r.dropped_through() > after)
        .map(|r| r.name.to_string())
        .collect();
    Ok(Collected {
        meta: walk.meta().await?,
        entries,
        cut,
        evicted,
    })
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
    rooms: &[Arc<str>],
    resume: &Resume,
) -> redis::RedisResult<(u64, usize, Option<GapReason>)> {
    let cursor = match resume {
        // At most what the rooms can hold, whatever was asked: the count then never
        // reaches Lua, whose numbers are doubles, as more than it can say exactly.
        Resume::Newest(n) => {
            let kept = rooms
                .iter()
                .filter_map(|r| shared.rules.for_room(r))
                .fold(0usize, |sum, h| sum.saturating_add(h.events()));
            return Ok((0, (*n).min(kept), None));
        }
        Resume::After(cursor) => cursor,
    };
    let meta = meta(shared).await?;
    let own = if hub_form(cursor).is_none() && cursor != "earliest" {
        let held: Option<String> = shared.reads.clone().get(shared.keys.own_id(cursor)).await?;
        // `<epoch>-<seq>`: an id of another epoch is not this history's.
        held.as_deref()
            .and_then(hub_form)
            .and_then(Result::ok)
            .filter(|(epoch, _)| *epoch == meta.epoch)
            .map(|(_, seq)| seq)
    } else {
        None
    };
    Ok(match place(cursor, &meta.epoch, meta.seq, || own) {
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
        let Ok((after, events, gap)) = locate(shared, &rooms, resume).await else {
            break;
        };
        let limits = Limits {
            events,
            bytes: conn.outbox_limit() / 2,
            reads: REPLAY_READS,
        };
        let mut read = match collect(shared, &rooms, after, limits).await {
            Ok(read) => read,
            Err(ReadError::EpochChanged) => continue,
            Err(ReadError::Redis(_)) => break,
        };
        if matches!(resume, Resume::Newest(_)) || gap.is_some() {
            // Evictions matter only after a cursor that holds.
            read.evicted.clear();
        }
        // This node delivers on while the replay reads: each turn reads what it
        // delivered past the read, a few events.
        for _ in 0..50 {
            let behind = match switch(shared, conn, resume, &rooms, gap, &read) {
                Switch::Done(resumed) => return resumed,
                Switch::Again => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue 'attempt;
                }
                Switch::Behind => read.meta.seq,
            };
            let more = match collect(shared, &rooms, behind, limits).await {
                Ok(more) => more,
                Err(ReadError::EpochChanged) => continue 'attempt,
                Err(ReadError::Redis(_)) => break 'attempt,
            };
            read = combine(read, more, limits);
        }
    }
    // Redis does not answer: live events from now on, and the truth about the rest.
    let gap = gap_frame(
        &shared.rules.gap_event,
        GapReason::Outage,
        cursor_of(resume),
        &[],
        None,
    );
    let fanout = fanout::to_one(conn, &[gap]);
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
    /// The stream's rooms, or the epoch, changed: start again.
    Again,
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
    if recorded_rooms(shared, &joined) != rooms || delivered.epoch != read.meta.epoch {
        return Switch::Again;
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
        frames.push(gap_frame(
            &shared.rules.gap_event,
            reason,
            cursor_of(resume),
            &gap_rooms,
            first.as_deref(),
        ));
    }
    let last = entries.last().map_or(0, |e| e.seq);
    frames.extend(entries.iter().map(|e| e.frame.clone()));
    if top > last && !read.meta.epoch.is_empty() {
        frames.push(id_only_frame(&format!("{}-{top}", read.meta.epoch)));
    }
    let replayed = entries.len();
    let fanout = fanout::to_one(conn, &frames);
    conn.end_resume();
    drop(joined);
    drop(delivered);
    fanout.finish();
    Switch::Done(Resumed { replayed, gap })
}

/// The id a recorded frame carries (its first line, `id: ...`).
fn frame_id(frame: &[u8]) -> Option<String> {
    let line = frame.split(|&b| b == b'\n').next()?;
    let id = line.strip_prefix(b"id: ")?;
    String::from_utf8(id.to_vec()).ok()
}
