//! Reading history from Redis: the fetch script's answer, and a resuming stream's
//! replay.
//!
//! A replay reads, at one instant, the rooms' history after the cursor and the newest
//! number `T` then. It switches the stream to live holding `delivered` (the newest
//! number delivered on this node, `D`): if `D <= T`, the events up to `D` come from the
//! read and those after `D` will come on the channel, so nothing is lost or doubled; if
//! this node has meanwhile delivered past `T`, it reads again.

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

/// Where a read starts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Start {
    /// After this sequence number.
    After(u64),
    /// The newest this many events of each room.
    Newest(usize),
}

/// One room's part of a read.
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

/// What one fetch read.
#[derive(Debug)]
pub(super) struct Read {
    /// The newest publication's number at the read.
    pub(super) seq: u64,
    pub(super) epoch: String,
    pub(super) rooms: Vec<RoomRead>,
    /// Every event read, once, in sequence order.
    pub(super) entries: Vec<(u64, Bytes)>,
    /// The header each came with, by sequence number (parallel to `entries`).
    pub(super) headers: Vec<String>,
}

type RawRoom = (String, String, u8, Vec<(String, Vec<u8>, String)>);

/// Read `rooms`' history from `from`, and the sequence, at one instant.
pub(super) async fn fetch(
    shared: &Shared,
    rooms: &[impl AsRef<str>],
    from: Start,
) -> redis::RedisResult<Read> {
    let mut invocation = shared.fetch.prepare_invoke();
    invocation.key(shared.keys.meta());
    for room in rooms {
        let room = room.as_ref();
        invocation
            .key(shared.keys.stream(room))
            .key(shared.keys.room_meta(room));
    }
    match from {
        Start::After(seq) => invocation.arg(seq).arg("after"),
        Start::Newest(n) => invocation.arg(n.max(1)).arg("newest"),
    };
    let answer: Vec<redis::Value> = invocation.invoke_async(&mut shared.conn.clone()).await?;
    let mut answer = answer.into_iter();
    let mut next_string = || -> redis::RedisResult<String> {
        let v = answer.next().unwrap_or(redis::Value::Nil);
        Ok(redis::from_redis_value(v).unwrap_or_default())
    };
    let (seq, epoch) = (next_string()?, next_string()?);
    let raw = answer
        .map(|v| redis::from_redis_value::<RawRoom>(v).map_err(redis::RedisError::from))
        .collect::<redis::RedisResult<Vec<RawRoom>>>()?;
    let mut all: Vec<(u64, Bytes, String)> = Vec::new();
    let mut reads = Vec::new();
    for (room, (dropped, last, exists, list)) in rooms.iter().zip(raw) {
        for (n, frame, header) in list {
            all.push((n.parse().unwrap_or(0), Bytes::from(frame), header));
        }
        reads.push(RoomRead {
            name: Arc::from(room.as_ref()),
            dropped: dropped.parse().unwrap_or(0),
            last: last.parse().unwrap_or(0),
            exists: exists == 1,
        });
    }
    all.sort_by_key(|(n, _, _)| *n);
    all.dedup_by_key(|(n, _, _)| *n);
    let (entries, headers) = all.into_iter().map(|(n, f, h)| ((n, f), h)).unzip();
    Ok(Read {
        seq: seq.parse().unwrap_or(0),
        epoch,
        rooms: reads,
        entries,
        headers,
    })
}

/// The rooms of `conn` that keep history.
fn recorded_rooms(shared: &Shared, rooms: &[Arc<str>]) -> Vec<Arc<str>> {
    rooms
        .iter()
        .filter(|r| shared.rules.for_room(r).is_some())
        .cloned()
        .collect()
}

/// Where the replay starts, and the gap to report, if any.
async fn locate(
    shared: &Shared,
    resume: &Resume,
) -> redis::RedisResult<(Start, Option<GapReason>)> {
    let cursor = match resume {
        Resume::Newest(n) => return Ok((Start::Newest(*n), None)),
        Resume::After(cursor) => cursor,
    };
    let meta = fetch(shared, &[] as &[&str], Start::After(0)).await?;
    let own = if hub_form(cursor).is_none() && cursor != "earliest" {
        let seq: Option<u64> = shared.conn.clone().get(shared.keys.own_id(cursor)).await?;
        seq
    } else {
        None
    };
    Ok(
        match place(cursor, &meta.epoch, meta.seq, shared.rules.ids, || own) {
            Ok(after) => (Start::After(after), None),
            Err(reason) => (Start::After(0), Some(reason)),
        },
    )
}

/// Queue to `conn` what it missed, then let it have live events (see the module doc).
pub(super) async fn resume(shared: &Shared, conn: &Connection, resume: &Resume) -> Resumed {
    for _ in 0..20 {
        let rooms = recorded_rooms(shared, &lock(conn.rooms_lock()));
        if rooms.is_empty() {
            conn.end_resume();
            return Resumed::default();
        }
        let Ok((from, gap)) = locate(shared, resume).await else {
            break;
        };
        let Ok(read) = fetch(shared, &rooms, from).await else {
            break;
        };
        if let Some(resumed) = switch(shared, conn, resume, &rooms, from, gap, read) {
            return resumed;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Redis does not answer: live events from now on, and the truth about the rest.
    let gap = gap_frame(
        &shared.rules.gap_event,
        GapReason::Outage,
        cursor_of(resume),
        &[],
        None,
    );
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

/// Under `delivered` and the connection's room list: queue the replay and go live, if
/// the read is still good (same rooms, and this node has not delivered past it).
fn switch(
    shared: &Shared,
    conn: &Connection,
    resume: &Resume,
    rooms: &[Arc<str>],
    from: Start,
    mut gap: Option<GapReason>,
    read: Read,
) -> Option<Resumed> {
    let delivered = lock(&shared.delivered);
    let joined = lock(conn.rooms_lock());
    if recorded_rooms(shared, &joined) != rooms || *delivered > read.seq {
        return None;
    }
    let top = *delivered;
    let mut entries: Vec<&(u64, Bytes)> = read.entries.iter().filter(|(n, _)| *n <= top).collect();
    let mut gap_rooms: Vec<String> = Vec::new();
    if let Start::After(after) = from {
        if gap.is_none() {
            gap_rooms = read
                .rooms
                .iter()
                .filter(|r| r.dropped_through() > after)
                .map(|r| r.name.to_string())
                .collect();
            if !gap_rooms.is_empty() {
                gap = Some(GapReason::Evicted);
            }
        }
    }
    if let Start::Newest(n) = from {
        let skip = entries.len().saturating_sub(n);
        entries.drain(..skip);
    }
    let budget = conn.outbox_limit() / 2;
    let mut bytes = 0;
    let fit = entries
        .iter()
        .rev()
        .take_while(|(_, f)| {
            bytes += f.len();
            bytes <= budget
        })
        .count();
    if fit < entries.len() {
        entries.drain(..entries.len() - fit);
        gap = gap.or(Some(GapReason::ReplayLimit));
    }
    if gap.is_some() && gap_rooms.is_empty() {
        gap_rooms = rooms.iter().map(|r| r.to_string()).collect();
    }
    let mut frames: Vec<Bytes> = Vec::with_capacity(entries.len() + 2);
    if let Some(reason) = gap {
        let first = entries.first().and_then(|(_, f)| frame_id(f));
        frames.push(gap_frame(
            &shared.rules.gap_event,
            reason,
            cursor_of(resume),
            &gap_rooms,
            first.as_deref(),
        ));
    }
    let last = entries.last().map_or(0, |(n, _)| *n);
    frames.extend(entries.iter().map(|(_, f)| f.clone()));
    if top > last && !read.epoch.is_empty() {
        frames.push(id_only_frame(&format!("{}-{top}", read.epoch)));
    }
    let replayed = entries.len();
    let fanout = fanout::to_one(conn, frames);
    conn.end_resume();
    drop(joined);
    drop(delivered);
    fanout.finish();
    Some(Resumed { replayed, gap })
}

/// The id a recorded frame carries (its first line, `id: ...`).
fn frame_id(frame: &[u8]) -> Option<String> {
    let line = frame.split(|&b| b == b'\n').next()?;
    let id = line.strip_prefix(b"id: ")?;
    String::from_utf8(id.to_vec()).ok()
}
