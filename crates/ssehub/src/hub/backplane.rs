//! The backplane seam: where a publication goes between the hub that takes it and the
//! fan-outs that deliver it.
//!
//! "Publish" (give the publication its place in the order of events and its id, record
//! it in the history, and make it reach every node that serves the hub's rooms) is kept
//! apart from "deliver locally" (fan it out to this process's members,
//! [`super::fanout::deliver`]). The hub calls only this trait; nothing above the seam
//! knows which backplane is in use. Replay belongs here too: the history lives where
//! the ids are made.
//!
//! [`InProcess`] is the embedded default: one process is the whole hub, its history is
//! in memory, and publishing is delivering, at once and on the caller's thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::fanout::{self, Frame, Publication};
use super::history::{GapReason, History, HistoryRules, PublishError, Resume, Size};
use super::rooms::Rooms;
use crate::connection::Connection;
use crate::frame::Message;
use crate::sync::lock;

/// What a publication became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Its id on the wire: the message's own, or the one the history gave it (`None`
    /// when it has neither: no id, and no room of it keeps history).
    pub id: Option<String>,
    /// How many local connections it reached (counting duplicates unless de-duplicated).
    pub delivered: usize,
    /// The bytes queued for them: `delivered` times the length of its frame.
    pub bytes: u64,
}

/// What a resuming stream got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Resumed {
    pub(crate) replayed: usize,
    pub(crate) gap: Option<GapReason>,
}

/// Where publications go. Implementations keep, on every node, the order of the
/// publications to rooms with history (one sequence), and for one publisher the order of
/// all its publications.
pub(crate) trait Backplane: Send + Sync {
    /// Take `publication` of `message`: number and record it where its rooms keep
    /// history, deliver it to the local members through `local`, reach the other nodes.
    fn publish(
        &self,
        publication: &Publication,
        message: &Message,
        local: &Rooms,
    ) -> Result<Published, PublishError>;

    /// Deliver `publication` of `message` without numbering or recording it (its own id
    /// could not be a cursor), to the local members and the other nodes.
    fn publish_unrecorded(
        &self,
        publication: &Publication,
        message: &Message,
        local: &Rooms,
    ) -> Published;

    /// Queue to `conn` what it missed in its rooms since `resume`, and from then on let
    /// it have recorded events live: one step, so that nothing falls between the replay
    /// and the live stream, and nothing is in both.
    fn resume(&self, conn: &Connection, resume: &Resume) -> Resumed;

    /// The frames kept for `room`, oldest first.
    fn history(&self, room: &str) -> Vec<Bytes>;

    /// How much history is kept.
    fn history_size(&self) -> Size;

    /// How many events each of `rooms` keeps, in order (for a page of `GET /rooms`).
    fn history_depths(&self, rooms: &[&str]) -> Vec<usize> {
        rooms.iter().map(|r| self.history(r).len()).collect()
    }
}

/// One process, no other node: publishing is the local fan-out, and the history is in
/// memory.
pub(crate) struct InProcess {
    /// `None` when no room keeps history.
    history: Option<Arc<Mutex<History>>>,
    /// The task that drops expired events runs (started with the first record).
    sweeping: AtomicBool,
}

impl InProcess {
    pub(crate) fn new(rules: HistoryRules) -> InProcess {
        InProcess {
            history: rules
                .any()
                .then(|| Arc::new(Mutex::new(History::new(rules)))),
            sweeping: AtomicBool::new(false),
        }
    }

    /// Expired events must go even from rooms nobody publishes to any more: a task
    /// drops them every second, for as long as the hub lives (and a runtime runs it).
    fn start_sweeper(&self, history: &Arc<Mutex<History>>) {
        if self.sweeping.load(Ordering::Relaxed) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        rt.spawn(sweep(Arc::downgrade(history)));
    }
}

async fn sweep(history: Weak<Mutex<History>>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(history) = history.upgrade() else {
            return;
        };
        lock(&history).expire(Instant::now());
    }
}

impl Backplane for InProcess {
    fn publish(
        &self,
        p: &Publication,
        message: &Message,
        local: &Rooms,
    ) -> Result<Published, PublishError> {
        let Some(history) = &self.history else {
            return Ok(deliver_unrecorded(p, message, local));
        };
        let mut h = lock(history);
        let Some(recorded) = h.record(&p.rooms, message, Instant::now())? else {
            drop(h);
            return Ok(deliver_unrecorded(p, message, local));
        };
        let frame = Frame {
            bytes: recorded.frame,
            recorded_in: p
                .rooms
                .iter()
                .map(|r| h.rules().for_room(r).is_some())
                .collect(),
        };
        // Numbered, recorded and queued in one step under the history's lock: every
        // connection gets recorded events in sequence order (see `history.rs`).
        let fanout = fanout::deliver(local, p, &frame);
        drop(h);
        self.start_sweeper(history);
        let delivered = fanout.finish();
        Ok(Published {
            id: Some(recorded.id),
            delivered,
            bytes: (delivered * frame.bytes.len()) as u64,
        })
    }

    fn publish_unrecorded(&self, p: &Publication, message: &Message, local: &Rooms) -> Published {
        deliver_unrecorded(p, message, local)
    }

    fn resume(&self, conn: &Connection, resume: &Resume) -> Resumed {
        let Some(history) = &self.history else {
            conn.end_resume();
            return Resumed::default();
        };
        let h = lock(history);
        // Held until the replay is queued: a join meanwhile would add a room whose events
        // are deferred (the stream still resumes) but not replayed.
        let rooms = lock(conn.rooms_lock());
        let Some(replay) = h.replay(&rooms, resume, conn.outbox_limit() / 2) else {
            conn.end_resume();
            return Resumed::default();
        };
        let gap = replay.gap.as_ref().map(|(reason, _)| *reason);
        let mut frames: Vec<Bytes> = Vec::with_capacity(replay.frames.len() + 2);
        frames.extend(replay.gap.map(|(_, frame)| frame));
        let replayed = replay.frames.len();
        frames.extend(replay.frames);
        frames.extend(replay.cursor);
        let fanout = fanout::to_one(conn, &frames);
        conn.end_resume();
        drop(rooms);
        drop(h);
        fanout.finish();
        Resumed { replayed, gap }
    }

    fn history(&self, room: &str) -> Vec<Bytes> {
        self.history
            .as_ref()
            .map_or_else(Vec::new, |h| lock(h).frames(room))
    }

    fn history_size(&self) -> Size {
        self.history
            .as_ref()
            .map_or_else(Size::default, |h| lock(h).size())
    }

    fn history_depths(&self, rooms: &[&str]) -> Vec<usize> {
        match &self.history {
            None => vec![0; rooms.len()],
            Some(h) => {
                let h = lock(h);
                rooms.iter().map(|r| h.frames(r).len()).collect()
            }
        }
    }
}

/// A publication no room records: encode and fan out, no lock but the rooms'.
fn deliver_unrecorded(p: &Publication, message: &Message, local: &Rooms) -> Published {
    let frame = Frame {
        bytes: message.encode(),
        recorded_in: Vec::new(),
    };
    let delivered = fanout::deliver(local, p, &frame).finish();
    Published {
        id: message.id().map(str::to_owned),
        delivered,
        bytes: (delivered * frame.bytes.len()) as u64,
    }
}
