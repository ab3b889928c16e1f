//! Per-room history: bounded rings of published events that outlive their rooms'
//! members, and what a stream that resumes from a cursor is owed. How much each room
//! keeps is in `history/config.rs`; the ids, cursors and the gap signal in
//! `history/cursor.rs`.
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
//! - Each ring is in sequence order; events leave it only from the front.
//! - `bytes` of a ring is the sum of its frames' lengths; `total_bytes` the sum over
//!   rings; neither passes its limit after a record.
//! - `custom_ids` maps each caller-given id still in some ring to its sequence number,
//!   with the number of rings holding it.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

mod config;
mod cursor;

pub use config::HistoryConfig;
pub(crate) use config::HistoryRules;
pub use cursor::GapReason;
pub(crate) use cursor::{check_own_id, gap_frame, id_only_frame, place, Resume};
// Read by the Redis replay (and the tests) only.
#[cfg(any(feature = "redis", test))]
pub(crate) use cursor::hub_form;

use super::publish_error::PublishError;
use crate::message::Message;

/// One recorded event of one room.
#[derive(Debug, Clone)]
struct Slot {
    seq: u64,
    at: Instant,
    /// The encoded frame, id included; shared with every other room it was published to.
    frame: Bytes,
    /// The caller's own id, if it brought one (else the id is `<epoch>-<seq>`).
    custom_id: Option<Arc<str>>,
}

#[derive(Debug)]
struct Ring {
    limits: HistoryConfig,
    slots: VecDeque<Slot>,
    bytes: usize,
    /// The sequence number of the newest event dropped from this ring (0: none).
    dropped_through: u64,
}

impl Ring {
    fn new(limits: HistoryConfig) -> Ring {
        Ring {
            limits,
            slots: VecDeque::new(),
            bytes: 0,
            dropped_through: 0,
        }
    }
}

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
}

impl Replay {
    /// Everything, in the order the stream gets it.
    pub(crate) fn into_frames(self) -> Vec<Bytes> {
        let mut frames = Vec::with_capacity(self.frames.len() + 2);
        frames.extend(self.gap.map(|(_, frame)| frame));
        frames.extend(self.frames);
        frames.extend(self.cursor);
        frames
    }
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
    rings: HashMap<Arc<str>, Ring>,
    /// Every (sequence number, room) recorded, oldest first: the order in which the cap on
    /// all history evicts. Entries whose slot is already gone are skipped and compacted.
    order: VecDeque<(u64, Arc<str>)>,
    total_bytes: usize,
    total_slots: usize,
    custom_ids: HashMap<Arc<str>, (u64, u32)>,
    /// The newest sequence number dropped from a ring that was then removed entirely.
    removed_through: u64,
}

impl History {
    pub(crate) fn new(rules: HistoryRules) -> History {
        History {
            rules,
            epoch: History::fresh_epoch(),
            seq: 0,
            rings: HashMap::new(),
            order: VecDeque::new(),
            total_bytes: 0,
            total_slots: 0,
            custom_ids: HashMap::new(),
            removed_through: 0,
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
        let mut id = String::with_capacity(self.epoch.len() + 12);
        let _ = write!(id, "{}-{seq}", self.epoch);
        id
    }

    /// Number `message`, record it in the rings of those `rooms` that keep history, and
    /// encode it with its id. `None` when none of them keeps history (then nothing
    /// happens here).
    pub(crate) fn record(
        &mut self,
        rooms: &[String],
        message: &Message,
        now: Instant,
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
        let custom = message
            .id()
            .map(|id| self.check_custom_id(id))
            .transpose()?;
        self.seq += 1;
        let seq = self.seq;
        let id = custom.clone().unwrap_or_else(|| self.id_of(seq));
        let frame = message.encode_with_id(Some(&id));
        let custom: Option<Arc<str>> = custom.map(Arc::from);
        for (room, limits) in targets {
            let slot = Slot {
                seq,
                at: now,
                frame: frame.clone(),
                custom_id: custom.clone(),
            };
            self.push(room, limits, slot, now);
        }
        self.evict_over_total();
        Ok(Some(Recorded { id, frame }))
    }

    fn check_custom_id(&self, id: &str) -> Result<String, PublishError> {
        check_own_id(id)?;
        if self.custom_ids.contains_key(id) {
            return Err(PublishError::DuplicateId(id.to_owned()));
        }
        Ok(id.to_owned())
    }

    fn push(&mut self, room: &str, limits: HistoryConfig, slot: Slot, now: Instant) {
        if let Some(id) = &slot.custom_id {
            self.custom_ids.entry(id.clone()).or_insert((slot.seq, 0)).1 += 1;
        }
        let key: Arc<str> = match self.rings.get_key_value(room) {
            Some((k, _)) => k.clone(),
            None => Arc::from(room),
        };
        let len = slot.frame.len();
        self.order.push_back((slot.seq, key.clone()));
        // A ring made afresh for a room whose ring was removed inherits what that removal
        // dropped, as an absent ring does (`locate`): else a cursor from before the
        // removal would resume with no gap over the events it never got.
        let removed_through = self.removed_through;
        let ring = self.rings.entry(key).or_insert_with(|| Ring {
            dropped_through: removed_through,
            ..Ring::new(limits)
        });
        ring.bytes += len;
        ring.slots.push_back(slot);
        self.total_bytes += len;
        self.total_slots += 1;
        self.trim(room, now);
    }

    /// Drop from `room`'s ring what its limits no longer allow (count, bytes, age).
    fn trim(&mut self, room: &str, now: Instant) {
        loop {
            let Some(ring) = self.rings.get(room) else {
                return;
            };
            let Some(front) = ring.slots.front() else {
                return;
            };
            let over = ring.slots.len() > ring.limits.events()
                || (ring.bytes > ring.limits.bytes() && ring.slots.len() > 1)
                || now.saturating_duration_since(front.at) > ring.limits.age();
            if !over {
                return;
            }
            self.drop_front(room);
        }
    }

    /// Drop the oldest slot of `room`'s ring; remove the ring once it is empty.
    fn drop_front(&mut self, room: &str) {
        let Some(ring) = self.rings.get_mut(room) else {
            return;
        };
        let Some(slot) = ring.slots.pop_front() else {
            return;
        };
        ring.bytes -= slot.frame.len();
        ring.dropped_through = slot.seq;
        let emptied = ring.slots.is_empty();
        self.total_bytes -= slot.frame.len();
        self.total_slots -= 1;
        if let Some(id) = &slot.custom_id {
            if let Some(entry) = self.custom_ids.get_mut(id) {
                entry.1 -= 1;
                if entry.1 == 0 {
                    self.custom_ids.remove(id);
                }
            }
        }
        if emptied {
            self.removed_through = self.removed_through.max(slot.seq);
            self.rings.remove(room);
        }
    }

    /// Evict the oldest events of all history until it is within its cap.
    fn evict_over_total(&mut self) {
        while self.total_bytes > self.rules.total_bytes && self.total_slots > 1 {
            let Some((seq, room)) = self.order.pop_front() else {
                return;
            };
            let present = self
                .rings
                .get(&room)
                .and_then(|r| r.slots.front())
                .is_some_and(|s| s.seq == seq);
            if present {
                self.drop_front(&room);
            }
        }
        self.compact_order();
    }

    /// Forget order entries whose slots are gone, once they outnumber the live ones.
    fn compact_order(&mut self) {
        if self.order.len() <= 2 * self.total_slots + 64 {
            return;
        }
        let rings = &self.rings;
        self.order.retain(|(seq, room)| {
            rings
                .get(room)
                .and_then(|r| r.slots.front())
                .is_some_and(|front| front.seq <= *seq)
        });
    }

    /// Drop every event older than its room allows. Returns whether anything is left.
    pub(crate) fn expire(&mut self, now: Instant) -> bool {
        let rooms: Vec<Arc<str>> = self.rings.keys().cloned().collect();
        for room in rooms {
            self.trim(&room, now);
        }
        self.compact_order();
        !self.rings.is_empty()
    }

    /// How much is kept.
    pub(crate) fn size(&self) -> Size {
        Size {
            rooms: self.rings.len(),
            events: self.total_slots,
            bytes: self.total_bytes,
        }
    }

    /// The frames kept for `room`, oldest first.
    pub(crate) fn frames(&self, room: &str) -> Vec<Bytes> {
        self.rings.get(room).map_or_else(Vec::new, |r| {
            r.slots.iter().map(|s| s.frame.clone()).collect()
        })
    }

    /// What a stream resuming at `resume` is owed for `rooms`, at most `budget` bytes of
    /// events (the newest ones that fit). `None` when none of `rooms` keeps history.
    pub(crate) fn replay(
        &self,
        rooms: &[Arc<str>],
        resume: &Resume,
        budget: usize,
    ) -> Option<Replay> {
        let kept: Vec<&str> = rooms
            .iter()
            .map(|r| &**r)
            .filter(|r| self.rules.for_room(r).is_some())
            .collect();
        if kept.is_empty() {
            return None;
        }
        let (after, mut gap, given) = match resume {
            Resume::Newest(n) => (self.newest_floor(&kept, *n), None, None),
            Resume::After(cursor) => {
                let (after, gap) = self.locate(cursor, &kept);
                (after, gap, Some(cursor.as_str()))
            }
        };
        let mut slots = self.slots_after(&kept, after);
        // The newest events that fit the budget; the older rest is reported as a gap.
        let mut bytes = 0;
        let fit = slots
            .iter()
            .rev()
            .take_while(|s| {
                bytes += s.frame.len();
                bytes <= budget
            })
            .count();
        if fit < slots.len() {
            slots.drain(..slots.len() - fit);
            gap = gap.or_else(|| {
                Some((
                    GapReason::ReplayLimit,
                    kept.iter().map(|r| r.to_string()).collect(),
                ))
            });
        }
        let mut replay = Replay::default();
        if let Some((reason, gap_rooms)) = gap {
            let first = slots.first().map(|s| self.slot_id(s));
            replay.gap = Some((reason, self.gap_frame(reason, given, &gap_rooms, first)));
        }
        let last = slots.last().map_or(after, |s| s.seq);
        replay.frames = slots.into_iter().map(|s| s.frame.clone()).collect();
        if self.seq > last {
            replay.cursor = Some(id_only_frame(&self.id_of(self.seq)));
        }
        Some(replay)
    }

    /// The sequence number after which the newest `n` events of `rooms` start.
    fn newest_floor(&self, rooms: &[&str], n: usize) -> u64 {
        let all = self.slots_after(rooms, 0);
        if n == 0 {
            return self.seq;
        }
        all.len()
            .checked_sub(n)
            .and_then(|skip| skip.checked_sub(1))
            .map_or(0, |i| all[i].seq)
    }

    /// Where `cursor` points (replay what follows this sequence number), and the gap to
    /// report with the rooms it concerns, if the cursor cannot be honoured.
    fn locate(&self, cursor: &str, rooms: &[&str]) -> (u64, Option<(GapReason, Vec<String>)>) {
        let all_rooms = || rooms.iter().map(|r| r.to_string()).collect::<Vec<_>>();
        let own = || self.custom_ids.get(cursor).map(|(seq, _)| *seq);
        let after = match place(cursor, &self.epoch, self.seq, own) {
            Ok(after) => after,
            Err(reason) => return (0, Some((reason, all_rooms()))),
        };
        let evicted: Vec<String> = rooms
            .iter()
            .filter(|r| match self.rings.get(**r) {
                Some(ring) => ring.dropped_through > after,
                None => self.removed_through > after,
            })
            .map(|r| r.to_string())
            .collect();
        if evicted.is_empty() {
            (after, None)
        } else {
            (after, Some((GapReason::Evicted, evicted)))
        }
    }

    /// The slots of `rooms` numbered after `after`, in sequence order, each once.
    fn slots_after(&self, rooms: &[&str], after: u64) -> Vec<&Slot> {
        let mut slots: Vec<&Slot> = Vec::new();
        for room in rooms {
            let Some(ring) = self.rings.get(*room) else {
                continue;
            };
            let from = ring.slots.partition_point(|s| s.seq <= after);
            slots.extend(ring.slots.range(from..));
        }
        slots.sort_by_key(|s| s.seq);
        slots.dedup_by_key(|s| s.seq);
        slots
    }

    fn slot_id(&self, slot: &Slot) -> String {
        slot.custom_id
            .as_deref()
            .map_or_else(|| self.id_of(slot.seq), str::to_owned)
    }

    /// The gap event: `{"reason", "last_event_id", "rooms", "first_id"}`.
    fn gap_frame(
        &self,
        reason: GapReason,
        cursor: Option<&str>,
        rooms: &[String],
        first: Option<String>,
    ) -> Bytes {
        gap_frame(
            &self.rules.gap_event,
            reason,
            cursor,
            rooms,
            first.as_deref(),
        )
    }
}

/// A random number for the epoch (from a fresh v4 UUID's random bits).
fn rand_u32() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}

#[cfg(test)]
mod tests;
