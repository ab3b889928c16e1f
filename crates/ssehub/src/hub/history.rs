//! The history: one hub-wide log of recorded events in sequence order, and per room a
//! ring of the sequence numbers it keeps (bounded by count, bytes and age, outliving the
//! room's members); what a stream that resumes from a cursor is owed. How much each room
//! keeps is in `history/config.rs`; the ids, cursors and the gap signal in
//! `history/cursor.rs`. With `HubConfig::history_dir` the log is also on disk:
//! `history/store.rs` (the append-only segment files, fsync, compaction; the bytes of a
//! record in `history/store/record.rs`) and `history/restore.rs` (the rings rebuilt at
//! start, under today's limits).
//!
//! An event is stored once, in the log, whatever the number of its rooms; a room's ring
//! holds only its numbers. So a resume across many rooms merges their rings as sorted
//! runs, newest first, and stops at its budget: its cost follows what it returns, not
//! what the history holds.
//!
//! ## Concurrency
//! All of it sits behind one mutex, which the in-process backplane also holds while it
//! fans a recorded event out: numbering, recording and queueing to members are one
//! ordered step, so on every connection the events of rooms with history arrive in
//! sequence order, whatever their rooms and whoever published them. That is what makes a
//! single cursor (the last id received) mean "everything up to here" for a connection in
//! several rooms.
//!
//! ## Invariants (under the mutex)
//! - The log holds exactly the events some ring holds; `held` of an entry counts those
//!   rings. Each ring is in sequence order and loses numbers only from its front, so the
//!   log's oldest entry is at the front of every ring that holds it.
//! - `bytes` of a ring is the sum of its events' frame lengths; `total_bytes` the sum
//!   over the log (an event counted once); neither passes its limit after a record.
//! - A ring's `ids` maps each caller-given id of an event it holds to that event's
//!   number: an id is unique within each room's history, not across rooms.

use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

mod config;
mod cursor;
mod restore;
pub(crate) mod store;

pub use config::HistoryConfig;
pub(crate) use config::HistoryRules;
pub use cursor::GapReason;
pub(crate) use cursor::{check_own_id, gap_message, hub_id_of, id_only_frame, place, Resume};
pub(crate) use store::StoreConfig;
pub use store::{Fsync, HistoryStoreError};
// Read by the Redis replay (and the tests) only.
#[cfg(any(feature = "redis", test))]
pub(crate) use cursor::hub_form;
#[cfg(feature = "redis")]
pub(crate) use cursor::hub_id;

use super::publish_error::PublishError;
use super::topics::{IdForm, Patterns};
use crate::message::Message;

/// One recorded event, stored once for all its rooms.
#[derive(Debug)]
struct Entry {
    at: Instant,
    /// The encoded frame, id included.
    frame: Bytes,
    /// The caller's own id, if it brought one (else the id is `<epoch>-<seq>`).
    custom_id: Option<Arc<str>>,
    /// The rooms it was recorded in.
    rooms: Box<[Arc<str>]>,
    /// Only for the streams whose audience accepts one of its rooms (topics).
    private: bool,
    /// How many rings still hold it.
    held: usize,
}

/// One room's history: its events, oldest first, by number and frame (the frame is the
/// log entry's, shared: a replay reads the rings alone, without a lookup in the log).
#[derive(Debug)]
struct Ring {
    limits: HistoryConfig,
    seqs: VecDeque<Slot>,
    bytes: usize,
    /// The sequence number of the newest event dropped from this ring (0: none).
    dropped_through: u64,
    /// The caller-given ids of its events.
    ids: HashMap<Arc<str>, u64>,
}

impl Ring {
    fn new(limits: HistoryConfig, dropped_through: u64) -> Ring {
        Ring {
            limits,
            seqs: VecDeque::new(),
            bytes: 0,
            dropped_through,
            ids: HashMap::new(),
        }
    }
}

/// One event of a ring: its number, its frame, and whether it is private (then the log
/// entry's rooms say who may have it).
#[derive(Debug, Clone)]
struct Slot {
    seq: u64,
    frame: Bytes,
    private: bool,
}

/// Who reads the history: a stream's rooms, which private events it may have, and the
/// patterns among its rooms (a hub whose rooms are topics, `topics.rs`).
pub(crate) struct Reader<'a> {
    pub(crate) rooms: &'a [Arc<str>],
    /// Whether a private event of these rooms may reach the stream.
    pub(crate) private: &'a dyn Fn(&[Arc<str>]) -> bool,
    pub(crate) patterns: Option<&'a dyn Patterns>,
}

impl<'a> Reader<'a> {
    /// A stream in `rooms`, given no private event and no pattern.
    #[cfg(test)]
    pub(crate) fn of(rooms: &'a [Arc<str>]) -> Reader<'a> {
        Reader {
            rooms,
            private: &|_| false,
            patterns: None,
        }
    }

    /// The patterns among the stream's rooms, if it has any.
    fn patterns(&self) -> Option<&'a dyn Patterns> {
        self.patterns.filter(|p| p.has_pattern(self.rooms))
    }
}

/// The most log entries a replay by pattern reads (newest first) for what it returns:
/// past it, what remains is announced by the gap signal (`replay-limit`).
const PATTERN_SCAN: usize = 100_000;

/// What one recorded publication became.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) id: String,
    pub(crate) frame: Bytes,
}

/// What a resuming stream is owed, in order: the gap event if any, the missed events,
/// and an id-only frame that moves its cursor to the newest event of the history (its
/// rooms have nothing newer it has not been given).
#[derive(Debug, Default)]
pub(crate) struct Replay {
    pub(crate) gap: Option<(GapReason, Bytes)>,
    pub(crate) frames: Vec<Bytes>,
    pub(crate) cursor: Option<Bytes>,
    /// The newest sequence number when the replay was read: a catch-up
    /// ([`History::catch_up`]) starts after it.
    pub(crate) through: u64,
    /// The number of the last event replayed (or where the replay started).
    pub(crate) last: u64,
}

/// A snapshot of the history's size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Size {
    pub(crate) rooms: usize,
    pub(crate) events: usize,
    pub(crate) bytes: usize,
}

/// The whole history of one hub.
#[derive(Debug)]
pub(crate) struct History {
    rules: HistoryRules,
    epoch: String,
    seq: u64,
    /// Every event some ring holds, by sequence number: the hub-wide log.
    log: BTreeMap<u64, Entry>,
    rings: HashMap<Arc<str>, Ring>,
    total_bytes: usize,
    /// The newest sequence number dropped from a ring that was then removed entirely.
    removed_through: u64,
    /// The newest sequence number dropped from the log (for readers by pattern, which
    /// cannot know which rooms an event they missed was in).
    log_dropped_through: u64,
    /// The log on disk, with `HubConfig::history_dir` (`history/store.rs`): every entry
    /// of `log` has its record there.
    store: Option<store::Store>,
}

impl History {
    pub(crate) fn new(rules: HistoryRules) -> History {
        History {
            rules,
            epoch: History::fresh_epoch(),
            seq: 0,
            log: BTreeMap::new(),
            rings: HashMap::new(),
            total_bytes: 0,
            removed_through: 0,
            log_dropped_through: 0,
            store: None,
        }
    }

    /// A fresh epoch: 8 hex digits.
    pub(crate) fn fresh_epoch() -> String {
        format!("{:08x}", rand_u32())
    }

    pub(crate) fn rules(&self) -> &HistoryRules {
        &self.rules
    }

    /// The hub-wide id of sequence number `seq`.
    fn id_of(&self, seq: u64) -> String {
        if self.rules.ids != IdForm::Plain {
            return hub_id_of(&self.epoch, seq, self.rules.ids);
        }
        let mut id = String::with_capacity(self.epoch.len() + 12);
        let _ = write!(id, "{}-{seq}", self.epoch);
        id
    }

    /// Number `message`, record it in the rings of those `rooms` that keep history, and
    /// encode it with its id. `None` when none of them keeps history (then nothing
    /// happens here).
    #[cfg(test)]
    pub(crate) fn record(
        &mut self,
        rooms: &[String],
        message: &Message,
        now: Instant,
    ) -> Result<Option<Recorded>, PublishError> {
        self.record_as(rooms, message, now, false)
    }

    /// [`History::record`], `private` or not (see [`Reader::private`]).
    pub(crate) fn record_as(
        &mut self,
        rooms: &[String],
        message: &Message,
        now: Instant,
        private: bool,
    ) -> Result<Option<Recorded>, PublishError> {
        let mut targets: Vec<(&str, HistoryConfig)> = Vec::new();
        for room in rooms {
            if let Some(limits) = self.rules.for_room(room) {
                if !targets.iter().any(|(r, _)| r == room) {
                    targets.push((room, limits));
                }
            }
        }
        if targets.is_empty() {
            return Ok(None);
        }
        let custom = match message.id() {
            Some(id) => Some(self.check_custom_id(id, &targets)?),
            None => None,
        };
        let seq = self.seq + 1;
        let id = custom.clone().unwrap_or_else(|| self.id_of(seq));
        let frame = message.encode_with_id(Some(&id));
        let custom: Option<Arc<str>> = custom.map(Arc::from);
        let names: Box<[Arc<str>]> = targets.iter().map(|(r, _)| self.key(r)).collect();
        if self.store.is_some() {
            // On disk first: an event not written is not numbered, kept or sent.
            self.append(seq, &names, custom.as_deref(), private, &frame)?;
        }
        self.seq = seq;
        self.total_bytes += frame.len();
        self.log.insert(
            seq,
            Entry {
                at: now,
                frame: frame.clone(),
                custom_id: custom.clone(),
                rooms: names.clone(),
                private,
                held: names.len(),
            },
        );
        let slot = Slot {
            seq,
            frame: frame.clone(),
            private,
        };
        for (name, (_, limits)) in names.iter().zip(targets) {
            self.push(name, limits, slot.clone(), custom.as_ref());
            self.trim(name, now);
        }
        self.evict_over_total();
        Ok(Some(Recorded { id, frame }))
    }

    /// The caller's own `id`, if it can be a cursor: well-formed, and not the id of an
    /// event still in the history of one of `rooms` (other rooms' ids are theirs).
    fn check_custom_id(
        &self,
        id: &str,
        rooms: &[(&str, HistoryConfig)],
    ) -> Result<String, PublishError> {
        check_own_id(id, self.rules.ids)?;
        if self.rules.repeat_ids {
            return Ok(id.to_owned());
        }
        let taken = rooms.iter().any(|(r, _)| {
            self.rings
                .get(*r)
                .is_some_and(|ring| ring.ids.contains_key(id))
        });
        if taken {
            return Err(PublishError::DuplicateId(id.to_owned()));
        }
        Ok(id.to_owned())
    }

    /// The shared name of `room` (its ring's key, if it has one).
    fn key(&self, room: &str) -> Arc<str> {
        match self.rings.get_key_value(room) {
            Some((k, _)) => k.clone(),
            None => Arc::from(room),
        }
    }

    fn push(
        &mut self,
        room: &Arc<str>,
        limits: HistoryConfig,
        slot: Slot,
        custom: Option<&Arc<str>>,
    ) {
        // A ring made afresh for a room whose ring was removed inherits what that removal
        // dropped, as an absent ring does (`locate`): else a cursor from before the
        // removal would resume with no gap over the events it never got.
        let removed_through = self.removed_through;
        let ring = self
            .rings
            .entry(room.clone())
            .or_insert_with(|| Ring::new(limits, removed_through));
        ring.bytes += slot.frame.len();
        if let Some(id) = custom {
            // A repeated id (where allowed) names its earliest event.
            ring.ids.entry(id.clone()).or_insert(slot.seq);
        }
        ring.seqs.push_back(slot);
    }

    /// Drop from `room`'s ring what its limits no longer allow (count, bytes, age).
    fn trim(&mut self, room: &str, now: Instant) {
        loop {
            let Some(ring) = self.rings.get(room) else {
                return;
            };
            let Some(front) = ring.seqs.front().and_then(|s| self.log.get(&s.seq)) else {
                return;
            };
            let over = ring.seqs.len() > ring.limits.events()
                || (ring.bytes > ring.limits.bytes() && ring.seqs.len() > 1)
                || now.saturating_duration_since(front.at) > ring.limits.age();
            if !over {
                return;
            }
            self.drop_front(room);
        }
    }

    /// Drop the oldest event of `room`'s ring, and from the log once no ring holds it;
    /// remove the ring once it is empty.
    fn drop_front(&mut self, room: &str) {
        let Some(ring) = self.rings.get_mut(room) else {
            return;
        };
        let Some(Slot { seq, frame, .. }) = ring.seqs.pop_front() else {
            return;
        };
        ring.bytes -= frame.len();
        ring.dropped_through = seq;
        let emptied = ring.seqs.is_empty();
        let mut freed = None;
        if let Some(entry) = self.log.get_mut(&seq) {
            if let Some(id) = &entry.custom_id {
                if ring.ids.get(id) == Some(&seq) {
                    ring.ids.remove(id);
                }
            }
            entry.held -= 1;
            if entry.held == 0 {
                let bytes = entry.frame.len();
                self.total_bytes -= bytes;
                self.log.remove(&seq);
                self.log_dropped_through = self.log_dropped_through.max(seq);
                freed = Some(bytes);
            }
        }
        if emptied {
            self.removed_through = self.removed_through.max(seq);
            self.rings.remove(room);
        }
        if let (Some(store), Some(bytes)) = (&mut self.store, freed) {
            // After `removed_through` moved: the store writes it down before it deletes
            // the records that showed it.
            let log = &self.log;
            let live = |from: u64, to: u64| log.range(from..to).map(|(s, _)| *s).collect();
            store.forget(seq, bytes, self.removed_through, &live);
        }
    }

    /// Evict the oldest events of all history until it is within its cap. The log's
    /// oldest entry is at the front of every ring that holds it.
    fn evict_over_total(&mut self) {
        while self.total_bytes > self.rules.total_bytes && self.log.len() > 1 {
            let Some((&seq, entry)) = self.log.first_key_value() else {
                return;
            };
            let rooms = entry.rooms.clone();
            for room in rooms.iter() {
                let front = self.rings.get(room).and_then(|r| r.seqs.front());
                if front.is_some_and(|s| s.seq == seq) {
                    self.drop_front(room);
                }
            }
            debug_assert!(!self.log.contains_key(&seq), "every holder dropped it");
        }
    }

    /// Drop every event older than its room allows. Returns whether anything is left.
    pub(crate) fn expire(&mut self, now: Instant) -> bool {
        let rooms: Vec<Arc<str>> = self.rings.keys().cloned().collect();
        for room in rooms {
            self.trim(&room, now);
        }
        !self.rings.is_empty()
    }

    /// How much is kept.
    pub(crate) fn size(&self) -> Size {
        Size {
            rooms: self.rings.len(),
            events: self.log.len(),
            bytes: self.total_bytes,
        }
    }

    /// The frames kept for `room`, oldest first.
    pub(crate) fn frames(&self, room: &str) -> Vec<Bytes> {
        self.rings.get(room).map_or_else(Vec::new, |r| {
            r.seqs.iter().map(|s| s.frame.clone()).collect()
        })
    }

    /// What a stream resuming at `resume` is owed for `rooms`, at most `budget` bytes of
    /// events (the newest ones that fit). `None` when none of `rooms` keeps history.
    #[cfg(test)]
    pub(crate) fn replay(
        &self,
        rooms: &[Arc<str>],
        resume: &Resume,
        budget: usize,
    ) -> Option<Replay> {
        self.replay_for(&Reader::of(rooms), resume, budget)
    }

    /// What `reader`, resuming at `resume`, is owed: at most `budget` bytes of events
    /// (the newest ones that fit). `None` when none of its rooms keeps history.
    pub(crate) fn replay_for(
        &self,
        reader: &Reader<'_>,
        resume: &Resume,
        budget: usize,
    ) -> Option<Replay> {
        let kept = self.kept(reader.rooms);
        if kept.is_empty() {
            return None;
        }
        let (after, mut gap, given, count) = match resume {
            Resume::Newest(n) => (0, None, None, *n),
            Resume::After(cursor) => {
                let (after, gap) = self.locate(cursor, reader, &kept);
                (after, gap, Some(cursor.as_str()), usize::MAX)
            }
        };
        let (taken, cut) = self.newest_for(reader, &kept, after, count, budget);
        if cut {
            // The newest events that fit the budget; the older rest is reported as a gap.
            gap = gap.or_else(|| {
                Some((
                    GapReason::ReplayLimit,
                    kept.iter().map(|r| r.to_string()).collect(),
                ))
            });
        }
        let mut replay = Replay {
            through: self.seq,
            last: taken.last().map(|(seq, _)| *seq).unwrap_or(match resume {
                // Asked for nothing: already at the newest.
                Resume::Newest(0) => self.seq,
                Resume::Newest(_) => 0,
                Resume::After(_) => after,
            }),
            ..Replay::default()
        };
        if let Some((reason, gap_rooms)) = gap {
            let first = taken.first().map(|(s, _)| self.id_at(*s));
            replay.gap = Some((reason, self.gap_frame(reason, given, &gap_rooms, first)));
        }
        replay.frames = taken.into_iter().map(|(_, frame)| frame).collect();
        replay.cursor = self.cursor_after(replay.last);
        Some(replay)
    }

    /// What a stream owed `replay` (already queued, without its cursor) gets for `rooms`
    /// of what was recorded since it was read: the events after `replay.through`, each
    /// once and in order, then the cursor frame. The catch-up and the switch to live are
    /// one step under the history's lock, so the replay itself could be queued without
    /// it. Events of `rooms` dropped in between (a ring overrun within that moment) are
    /// announced by a gap signal, never skipped silently.
    pub(crate) fn catch_up(&self, reader: &Reader<'_>, replay: &Replay) -> Vec<Bytes> {
        let kept = self.kept(reader.rooms);
        let mut frames = Vec::new();
        let lost: Vec<String> = kept
            .iter()
            .filter(|r| self.dropped_since(r, reader, replay.through))
            .map(|r| r.to_string())
            .collect();
        let max = usize::MAX;
        let (taken, _) = self.newest_for(reader, &kept, replay.through, max, max);
        let last = taken.last().map_or(replay.last, |(seq, _)| *seq);
        if !lost.is_empty() {
            let first = taken.first().map(|(s, _)| self.id_at(*s));
            let gap = GapReason::Evicted;
            frames.push(self.gap_frame(gap, None, &lost, first));
        }
        frames.extend(taken.into_iter().map(|(_, frame)| frame));
        frames.extend(self.cursor_after(last));
        frames
    }

    /// Whether `cursor` points into the history of `reader`'s rooms with nothing after it
    /// dropped: a replay from it would have no gap.
    pub(crate) fn holds(&self, cursor: &str, reader: &Reader<'_>) -> bool {
        let kept = self.kept(reader.rooms);
        !kept.is_empty() && self.locate(cursor, reader, &kept).1.is_none()
    }

    /// The id-only frame that moves a cursor at `last` to the newest event, if newer.
    fn cursor_after(&self, last: u64) -> Option<Bytes> {
        (self.seq > last).then(|| id_only_frame(&self.id_of(self.seq)))
    }

    /// Those of `rooms` that keep history.
    fn kept<'a>(&self, rooms: &'a [Arc<str>]) -> Vec<&'a str> {
        rooms
            .iter()
            .map(|r| &**r)
            .filter(|r| self.rules.for_room(r).is_some())
            .collect()
    }

    /// Whether `room` (for `reader`) dropped an event numbered after `after`. A reader
    /// by pattern may have missed any event dropped from the log.
    fn dropped_since(&self, room: &str, reader: &Reader<'_>, after: u64) -> bool {
        if reader.patterns().is_some() && self.log_dropped_through > after {
            return true;
        }
        match self.rings.get(room) {
            Some(ring) => ring.dropped_through > after,
            None => self.removed_through > after,
        }
    }

    /// Where `cursor` points (replay what follows this sequence number), and the gap to
    /// report with the rooms it concerns, if the cursor cannot be honoured.
    fn locate(
        &self,
        cursor: &str,
        reader: &Reader<'_>,
        rooms: &[&str],
    ) -> (u64, Option<(GapReason, Vec<String>)>) {
        let all_rooms = || rooms.iter().map(|r| r.to_string()).collect::<Vec<_>>();
        // A caller's id names an event of the rooms it was published to; if several of
        // the stream's rooms hold the id, the earliest wins: a duplicate, never a loss.
        // A reader by pattern may resume from the id of an event of any topic its
        // patterns match: every ring is searched then (a resume with a caller's id only,
        // so its cost, one lookup per room with history, is paid once per reconnect).
        let own = || {
            let exact = rooms
                .iter()
                .filter_map(|r| self.rings.get(*r)?.ids.get(cursor).copied())
                .min();
            if reader.patterns().is_none() {
                return exact;
            }
            let anywhere = self
                .rings
                .values()
                .filter_map(|ring| ring.ids.get(cursor).copied())
                .min();
            exact.into_iter().chain(anywhere).min()
        };
        let after = match place(cursor, &self.epoch, self.seq, self.rules.ids, own) {
            Ok(after) => after,
            Err(reason) => return (0, Some((reason, all_rooms()))),
        };
        let evicted: Vec<String> = rooms
            .iter()
            .filter(|r| self.dropped_since(r, reader, after))
            .map(|r| r.to_string())
            .collect();
        if evicted.is_empty() {
            (after, None)
        } else {
            (after, Some((GapReason::Evicted, evicted)))
        }
    }

    /// The newest events of `rooms` after `after` (number and frame), at most `count` of
    /// them and `budget` bytes of frames, each once, oldest first; and whether the budget
    /// cut older ones off. The rings are merged as sorted runs from their ends (a heap of
    /// one cursor per ring), so the cost follows what is returned: a ring is read only
    /// as far back as the merge reaches.
    fn newest_after(
        &self,
        reader: &Reader<'_>,
        rooms: &[&str],
        after: u64,
        count: usize,
        budget: usize,
    ) -> (Vec<(u64, Bytes)>, bool) {
        let rings: Vec<&VecDeque<Slot>> = rooms
            .iter()
            .filter_map(|r| self.rings.get(*r))
            .map(|r| &r.seqs)
            .collect();
        // (the ring's next number from its end, which ring, how many it has left)
        let mut heads: BinaryHeap<(u64, usize, usize)> = rings
            .iter()
            .enumerate()
            .filter_map(|(i, seqs)| Some((seqs.back()?.seq, i, seqs.len() - 1)))
            .filter(|(seq, _, _)| *seq > after)
            .collect();
        let mut taken: Vec<(u64, Bytes)> = Vec::new();
        let mut bytes = 0;
        let mut cut = false;
        while let Some((seq, ring, left)) = heads.pop() {
            if taken.last().map(|(s, _)| *s) != Some(seq) {
                if taken.len() == count {
                    break;
                }
                let slot = &rings[ring][left];
                let frame = &slot.frame;
                if slot.private && !self.visible(reader, seq) {
                    // Not this stream's: skipped, as the live stream skips it.
                } else if bytes + frame.len() > budget {
                    cut = true;
                    break;
                } else {
                    bytes += frame.len();
                    taken.push((seq, frame.clone()));
                }
            }
            if left > 0 {
                let next = rings[ring][left - 1].seq;
                if next > after {
                    heads.push((next, ring, left - 1));
                }
            }
        }
        taken.reverse();
        (taken, cut)
    }

    /// [`History::newest_after`] for `reader`: through its rooms' rings, or through the
    /// log when it has patterns (which may match any event).
    fn newest_for(
        &self,
        reader: &Reader<'_>,
        rooms: &[&str],
        after: u64,
        count: usize,
        budget: usize,
    ) -> (Vec<(u64, Bytes)>, bool) {
        match reader.patterns() {
            None => self.newest_after(reader, rooms, after, count, budget),
            Some(patterns) => self.newest_by_pattern(reader, patterns, after, count, budget),
        }
    }

    /// The newest events after `after` that `reader` has, by its exact rooms or by its
    /// patterns, read from the log newest first: at most `count`, `budget` bytes and
    /// [`PATTERN_SCAN`] entries read (the last two cut, as a gap says).
    fn newest_by_pattern(
        &self,
        reader: &Reader<'_>,
        patterns: &dyn Patterns,
        after: u64,
        count: usize,
        budget: usize,
    ) -> (Vec<(u64, Bytes)>, bool) {
        let exact: std::collections::HashSet<&str> = reader.rooms.iter().map(|r| &**r).collect();
        let mut taken = Vec::new();
        let mut bytes = 0;
        for (scanned, (&seq, entry)) in self.log.range(after + 1..).rev().enumerate() {
            if scanned == PATTERN_SCAN {
                return (taken.into_iter().rev().collect(), true);
            }
            let mine = entry.rooms.iter().any(|r| exact.contains(&**r))
                || patterns.any_matches(reader.rooms, &entry.rooms);
            if !mine || (entry.private && !(reader.private)(&entry.rooms)) {
                continue;
            }
            if taken.len() == count {
                break;
            }
            if bytes + entry.frame.len() > budget {
                return (taken.into_iter().rev().collect(), true);
            }
            bytes += entry.frame.len();
            taken.push((seq, entry.frame.clone()));
        }
        taken.reverse();
        (taken, false)
    }

    /// Whether the private event `seq` may reach `reader`.
    fn visible(&self, reader: &Reader<'_>, seq: u64) -> bool {
        self.log
            .get(&seq)
            .is_some_and(|e| (reader.private)(&e.rooms))
    }

    /// The id of the event numbered `seq`.
    fn id_at(&self, seq: u64) -> String {
        self.log
            .get(&seq)
            .and_then(|e| e.custom_id.as_deref())
            .map_or_else(|| self.id_of(seq), str::to_owned)
    }

    /// The gap event: `{"reason", "last_event_id", "rooms", "first_id"}`.
    fn gap_frame(
        &self,
        reason: GapReason,
        cursor: Option<&str>,
        rooms: &[String],
        first: Option<String>,
    ) -> Bytes {
        gap_message(
            &self.rules.gap_event,
            reason,
            cursor,
            rooms,
            first.as_deref(),
        )
        .encode()
    }
}

/// A random number for the epoch (from a fresh v4 UUID's random bits).
fn rand_u32() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}

#[cfg(test)]
mod tests;
