//! The backplane seam: where a publication goes between the hub that takes it and the
//! fan-outs that deliver it.
//!
//! "Publish" (give the publication its place in the order of events and its id, record
//! it in the history, and make it reach every node that serves the hub's rooms) is kept
//! apart from "deliver locally" (fan it out to this process's members through
//! [`Local`]). The hub calls only this trait; nothing above the seam knows which
//! backplane is in use. Replay belongs here too: the history lives where the ids are
//! made. Room membership changes come in through [`Backplane::room_added`] and
//! [`Backplane::room_removed`], for a backplane that listens to other nodes per room.
//!
//! [`InProcess`] is the embedded default: one process is the whole hub, its history is
//! in memory, and publishing is delivering, at once and on the caller's thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::fanout::{self, Encoded, Local, Publication};
use super::history::{GapReason, History, HistoryRules, HistoryStoreError, Reader, Resume, Size};
use super::publish_error::PublishError;
use crate::connection::Connection;
use crate::message::Message;
use crate::sync::lock;

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a publication became.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// Its id on the wire: the message's own, or the one the history gave it (`None`
    /// when it has neither: no id, and no room of it keeps history; or when the
    /// backplane does not know it yet, see [`Published::replicated`]).
    pub id: Option<String>,
    /// How many local connections it reached (counting duplicates unless de-duplicated).
    pub delivered: usize,
    /// The bytes queued for them: `delivered` times the length of its frame (0 while
    /// the count is not known, as `delivered`).
    pub bytes: u64,
    /// Whether every node of the hub will get it: always for the in-process backplane
    /// (this process is the hub); for a distributed one, whether the backplane accepted
    /// it (`false`: it was delivered on this node only, the backplane being unreachable).
    pub replicated: bool,
}

/// What a resuming stream got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Resumed {
    pub(crate) replayed: usize,
    pub(crate) gap: Option<GapReason>,
}

/// How the backplane is doing, for the operator.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct BackplaneStatus {
    /// `in-process` or `redis`.
    pub kind: &'static str,
    /// Whether publications reach every node now (`false`: degraded, local only).
    pub connected: bool,
    /// Times the backplane was lost since start.
    pub outages: u64,
    /// Messages from other nodes refused (malformed, or numbered past the sequence):
    /// with Redis, a sign that something else publishes on the hub's channel.
    pub refused: u64,
}

/// Where publications go. Implementations keep, on every node, the order of the
/// publications to rooms with history (one sequence), and for one publisher the order of
/// all its publications.
pub(crate) trait Backplane: Send + Sync {
    /// Take `publication` of `message` now, without waiting: number, record and deliver
    /// it (in-process), or hand it on in order (distributed; then the answer knows no id
    /// and no local count yet).
    fn publish(
        &self,
        publication: &Publication,
        message: &Message,
    ) -> Result<Published, PublishError>;

    /// Publish and wait until the event has its id and has been delivered on this node.
    fn publish_wait(
        &self,
        publication: Publication,
        message: Message,
    ) -> BoxFuture<Result<Published, PublishError>>;

    /// Deliver `publication` of `message` without numbering or recording it (its own id
    /// could not be a cursor).
    fn publish_unrecorded(&self, publication: &Publication, message: &Message) -> Published;

    /// Queue to `conn` what it missed in its rooms since `resume`, and from then on let
    /// it have recorded events live: one step, so that nothing falls between the replay
    /// and the live stream, and nothing is in both.
    fn resume(&self, conn: Connection, resume: Resume) -> BoxFuture<Resumed>;

    /// The frames kept for `room`, oldest first.
    fn history(&self, room: String) -> BoxFuture<Vec<Bytes>>;

    /// How much history this node keeps in memory.
    fn history_size(&self) -> Size;

    /// How many events each of `rooms` keeps, in order (for a page of `GET /rooms`).
    /// By default their histories are read; a backplane that can count without reading
    /// says so (Redis: `XLEN`).
    fn history_depths(&self, rooms: Vec<String>) -> BoxFuture<Vec<usize>> {
        let reads: Vec<_> = rooms.into_iter().map(|r| self.history(r)).collect();
        Box::pin(async move {
            let kept = futures_util::future::join_all(reads).await;
            kept.iter().map(Vec::len).collect()
        })
    }

    /// Whether the history can honour `cursor` for a stream in `rooms` (nothing after
    /// it dropped). By default it cannot say: no.
    fn holds(&self, _cursor: String, _rooms: Vec<Arc<str>>) -> BoxFuture<bool> {
        Box::pin(std::future::ready(false))
    }

    /// `room` got its first local member.
    fn room_added(&self, _room: &str) {}

    /// `room` lost its last local member.
    fn room_removed(&self, _room: &str) {}

    /// How the backplane is doing.
    fn status(&self) -> BackplaneStatus;
}

/// One process, no other node: publishing is the local fan-out, and the history is in
/// memory.
pub(crate) struct InProcess {
    local: Arc<Local>,
    /// `None` when no room keeps history.
    history: Option<Arc<Mutex<History>>>,
    /// The task that drops expired events runs (started with the first record).
    sweeping: AtomicBool,
}

impl InProcess {
    /// The backplane of a hub with `rules`; its history is read from disk first if
    /// `rules` keep it there.
    pub(crate) fn open(
        local: Arc<Local>,
        rules: HistoryRules,
    ) -> Result<InProcess, HistoryStoreError> {
        let history = match rules.any() {
            true => Some(Arc::new(Mutex::new(History::open(rules)?))),
            false => None,
        };
        let backplane = InProcess {
            local,
            history,
            sweeping: AtomicBool::new(false),
        };
        if let Some(h) = &backplane.history {
            // A rebuilt history has events to expire before anything is published.
            if h.lock().is_ok_and(|h| h.size().events > 0) {
                backplane.start_sweeper(h);
            }
        }
        Ok(backplane)
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

    /// Two steps, so that the history's lock is held for reading the history, not for
    /// queueing: the replay is read under the lock and queued after it (while the stream
    /// is still marked resuming, recorded events are deferred for it, not queued); then,
    /// under the lock again, what was recorded meanwhile is queued and the mark cleared,
    /// in one step with the switch to live.
    fn resume_now(&self, conn: &Connection, resume: &Resume) -> Resumed {
        let Some(history) = &self.history else {
            conn.end_resume();
            return Resumed::default();
        };
        let budget = conn.outbox_limit() / 2;
        let rooms = conn.rooms_snapshot();
        let private = |topics: &[Arc<str>]| conn.receives_private(topics);
        let patterns = self.local.patterns.as_deref();
        let reader = Reader {
            rooms: &rooms,
            private: &private,
            patterns,
        };
        let Some(mut replay) = lock(history).replay_for(&reader, resume, budget) else {
            conn.end_resume();
            return Resumed::default();
        };
        let gap = replay.gap.as_ref().map(|(reason, _)| *reason);
        let replayed = replay.frames.len();
        let mut first = std::mem::take(&mut replay.frames);
        if let Some((_, frame)) = replay.gap.take() {
            first.insert(0, frame);
        }
        fanout::to_one(conn, first).finish();
        let h = lock(history);
        // Held until the catch-up is queued: a join meanwhile would add a room whose
        // events are deferred (the stream still resumes) but not caught up.
        let rooms = lock(conn.rooms_lock());
        let reader = Reader {
            rooms: &rooms,
            private: &private,
            patterns,
        };
        let rest = h.catch_up(&reader, &replay);
        let fanout = fanout::to_one(conn, rest);
        conn.end_resume();
        drop(rooms);
        drop(h);
        fanout.finish();
        Resumed { replayed, gap }
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
    fn publish(&self, p: &Publication, message: &Message) -> Result<Published, PublishError> {
        let Some(history) = &self.history else {
            return Ok(deliver_unrecorded(&self.local, p, message));
        };
        let mut h = lock(history);
        let Some(recorded) = h.record_as(&p.rooms, message, Instant::now(), p.private)? else {
            drop(h);
            return Ok(deliver_unrecorded(&self.local, p, message));
        };
        let frame = Encoded {
            bytes: recorded.frame,
            recorded_in: p
                .rooms
                .iter()
                .map(|r| h.rules().for_room(r).is_some())
                .collect(),
        };
        // Numbered, recorded and queued in one step under the history's lock: every
        // connection gets recorded events in sequence order (see `history.rs`).
        let fanout = fanout::deliver(&self.local, p, &frame);
        drop(h);
        self.start_sweeper(history);
        let delivered = self.local.finish(fanout, p, &frame);
        Ok(Published {
            id: Some(recorded.id),
            delivered,
            bytes: (delivered * frame.bytes.len()) as u64,
            replicated: true,
        })
    }

    fn publish_wait(
        &self,
        p: Publication,
        message: Message,
    ) -> BoxFuture<Result<Published, PublishError>> {
        let published = self.publish(&p, &message);
        Box::pin(std::future::ready(published))
    }

    fn publish_unrecorded(&self, p: &Publication, message: &Message) -> Published {
        deliver_unrecorded(&self.local, p, message)
    }

    fn resume(&self, conn: Connection, resume: Resume) -> BoxFuture<Resumed> {
        Box::pin(std::future::ready(self.resume_now(&conn, &resume)))
    }

    fn holds(&self, cursor: String, rooms: Vec<Arc<str>>) -> BoxFuture<bool> {
        let holds = self.history.as_ref().is_some_and(|h| {
            let reader = Reader {
                rooms: &rooms,
                private: &|_| false,
                patterns: self.local.patterns.as_deref(),
            };
            lock(h).holds(&cursor, &reader)
        });
        Box::pin(std::future::ready(holds))
    }

    fn history(&self, room: String) -> BoxFuture<Vec<Bytes>> {
        let frames = self
            .history
            .as_ref()
            .map_or_else(Vec::new, |h| lock(h).frames(&room));
        Box::pin(std::future::ready(frames))
    }

    fn history_size(&self) -> Size {
        self.history
            .as_ref()
            .map_or_else(Size::default, |h| lock(h).size())
    }

    fn status(&self) -> BackplaneStatus {
        BackplaneStatus {
            kind: "in-process",
            connected: true,
            outages: 0,
            refused: 0,
        }
    }
}

/// A publication no room records: encode and fan out, no lock but the rooms'.
pub(crate) fn deliver_unrecorded(local: &Local, p: &Publication, message: &Message) -> Published {
    let frame = Encoded {
        bytes: message.encode(),
        recorded_in: Vec::new(),
    };
    let delivered = local.deliver(p, &frame);
    Published {
        id: message.id().map(str::to_owned),
        delivered,
        bytes: (delivered * frame.bytes.len()) as u64,
        replicated: true,
    }
}
