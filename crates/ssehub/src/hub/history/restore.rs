//! A history kept on disk (`store.rs`): appending a record, and rebuilding the log and
//! the rings from the records at start, under today's limits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::time::Instant;

use super::store::record::{Record, RecordRef};
use super::store::{self, HistoryStoreError, Store};
use super::{Entry, History, HistoryRules, Slot};
use crate::hub::publish_error::PublishError;
use crate::log_limit::warn_limited;

impl History {
    /// A history as `rules` say: in memory, or rebuilt from `rules.store`'s directory
    /// (then kept there).
    pub(crate) fn open(rules: HistoryRules) -> Result<History, HistoryStoreError> {
        let Some(config) = rules.store.clone() else {
            return Ok(History::new(rules));
        };
        let (recovered, lock) = Store::open(&config, History::fresh_epoch)?;
        let mut h = History::new(rules);
        h.epoch = recovered.epoch;
        let now = Instant::now();
        let wall = store::wall_ms(SystemTime::now());
        let count = recovered.records.len();
        let mut expired = HashMap::new();
        for record in recovered.records {
            h.restore(record, now, wall, &mut expired);
        }
        // A room whose last records expired while down has no ring now: as when the
        // sweeper removes one.
        for (room, seq) in expired {
            if !h.rings.contains_key(&room) {
                h.removed_through = h.removed_through.max(seq);
            }
        }
        h.seq = h.seq.max(recovered.top);
        // A number below the newest with no record on disk had left the log (its segment
        // deleted or compacted, or cut): a reader by pattern may have missed it. Rooms
        // without a ring now inherit what was written of `removed_through`.
        h.removed_through = h.removed_through.max(recovered.removed_through);
        h.log_dropped_through = h.log_dropped_through.max(recovered.missing_through);
        h.expire(now);
        let live = h.log.iter().map(|(s, e)| (*s, e.frame.len() as u64));
        let total = h.rules.total_bytes;
        let at = (h.seq, h.removed_through);
        h.store = Some(Store::start(&config, lock, at, total, live)?);
        tracing::info!(
            dir = %config.dir.display(),
            epoch = %h.epoch,
            seq = h.seq,
            records = count,
            events = h.log.len(),
            rooms = h.rings.len(),
            "history: opened"
        );
        Ok(h)
    }

    /// Write the record of event `seq` to the store, each room with its link: the last
    /// number of its ring, or what a ring made afresh inherits.
    pub(super) fn append(
        &mut self,
        seq: u64,
        rooms: &[Arc<str>],
        custom_id: Option<&str>,
        private: bool,
        frame: &Bytes,
    ) -> Result<(), PublishError> {
        let links: Vec<(Arc<str>, u64)> = rooms
            .iter()
            .map(|r| {
                let link = self
                    .rings
                    .get(r)
                    .and_then(|g| g.seqs.back())
                    .map_or(self.removed_through, |s| s.seq);
                (r.clone(), link)
            })
            .collect();
        let record = RecordRef {
            seq,
            at_ms: store::wall_ms(SystemTime::now()),
            removed: self.removed_through,
            private,
            custom_id,
            rooms: &links,
            frame,
        };
        let Some(store) = &mut self.store else {
            return Ok(());
        };
        let log = &self.log;
        let live = |from: u64, to: u64| log.range(from..to).map(|(s, _)| *s).collect();
        store.append(&record, &live).map_err(|e| {
            warn_limited!(error = %e, "history: could not write an event; publish refused");
            PublishError::Storage(e.to_string())
        })
    }

    /// Put one record back, as its recording did, under today's limits: its rooms that
    /// keep history get it if their rebuilt ring ends where its link says (else what the
    /// ring holds is older than a hole, and goes) and it is not past their age.
    fn restore(
        &mut self,
        r: Record,
        now: Instant,
        wall_ms: u64,
        expired: &mut HashMap<Arc<str>, u64>,
    ) {
        self.seq = self.seq.max(r.seq);
        // As it was when this record was written: a ring made afresh inherits it.
        self.removed_through = self.removed_through.max(r.removed);
        let age = Duration::from_millis(wall_ms.saturating_sub(r.at_ms));
        let mut targets = Vec::new();
        for (room, link) in &r.rooms {
            let Some(limits) = self.rules.for_room(room) else {
                continue;
            };
            let back = self
                .rings
                .get(&**room)
                .and_then(|g| g.seqs.back())
                .map(|s| s.seq);
            if back.is_some_and(|b| b != *link) {
                // A record of this room is missing between: the ring restarts here.
                self.clear_ring(room);
            }
            if age > limits.age() {
                // Expired while down; what the ring holds is no younger. A later record
                // of the room links to this one (its ring starts after it); if none
                // comes, the room's ring is gone (see `open`).
                self.clear_ring(room);
                expired.insert(room.clone(), r.seq);
                continue;
            }
            targets.push((self.key(room), limits, *link));
        }
        if targets.is_empty() {
            self.log_dropped_through = self.log_dropped_through.max(r.seq);
            return;
        }
        // An instant this old may not exist (older than the machine's uptime): then it
        // counts from now, kept up to its age longer.
        let at = now.checked_sub(age).unwrap_or(now);
        let names: Box<[Arc<str>]> = targets.iter().map(|(n, _, _)| n.clone()).collect();
        self.total_bytes += r.frame.len();
        self.log.insert(
            r.seq,
            Entry {
                at,
                frame: r.frame.clone(),
                custom_id: r.custom_id.clone(),
                rooms: names,
                private: r.private,
                held: targets.len(),
            },
        );
        let slot = Slot {
            seq: r.seq,
            frame: r.frame,
            private: r.private,
        };
        for (name, limits, link) in targets {
            let fresh = !self.rings.contains_key(&name);
            self.push(&name, limits, slot.clone(), r.custom_id.as_ref());
            if fresh {
                if let Some(ring) = self.rings.get_mut(&name) {
                    ring.dropped_through = ring.dropped_through.max(link);
                }
            }
            self.trim(&name, now);
        }
        self.evict_over_total();
    }

    /// Drop all of `room`'s ring, which goes on at once (a fresh ring, its floor the
    /// link or the record that cut it): so `removed_through`, which speaks for rooms
    /// without a ring, stays as it was.
    fn clear_ring(&mut self, room: &str) {
        let removed = self.removed_through;
        while self.rings.contains_key(room) {
            self.drop_front(room);
        }
        self.removed_through = removed;
    }
}
