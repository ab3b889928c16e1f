//! The bytes of a segment file: a magic header, then records, each length-prefixed and
//! checksummed, so that a torn or corrupt tail is found (and cut) instead of read.
//!
//! ```text
//! segment := "SSEHSEG1" record*
//! record  := len: u32 LE (of payload) | crc32: u32 LE (of payload) | payload
//! payload := kind = 1: u8 | seq: u64 | at_ms: u64 (wall clock, Unix ms) |
//!            removed: u64 | flags: u8 (bit 0 private, bit 1 custom id) |
//!            [id_len: u32 | id] | rooms: u32 | rooms × (name_len: u32 | name | link: u64) |
//!            frame (the rest)
//!          | kind = 2: u8 | removed: u64       (a marker: no event)
//! ```
//!
//! `removed` is the history's `removed_through` when the record was written (the newest
//! number dropped from a ring that was then removed): a room with no ring after a
//! restart reports a gap for cursors before it, as it did before. A marker carries it
//! alone, written before a segment is deleted or compacted, so a value that grew since
//! the last event is not lost with the records that showed it.
//!
//! A room's `link` is the number of the event before this one in that room's ring when
//! it was recorded (or, for a ring made afresh, the number its history was known to be
//! complete from): recovery rebuilds a ring only along an unbroken chain of links, so a
//! record gone from disk (its segment deleted or compacted) cuts the ring there rather
//! than letting older records make it look complete.

use std::sync::Arc;

use bytes::Bytes;

/// The first bytes of every segment file (format version 1).
pub(super) const MAGIC: &[u8; 8] = b"SSEHSEG1";
const HEADER: usize = 8;
const KIND_EVENT: u8 = 1;
const KIND_MARKER: u8 = 2;
const PRIVATE: u8 = 1;
const CUSTOM_ID: u8 = 2;
/// No record is larger: a length past it is corruption, not a record to allocate for.
const MAX_PAYLOAD: usize = 256 << 20;

/// One recorded event as stored.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) seq: u64,
    /// When it was recorded, Unix milliseconds (ages survive a restart).
    pub(crate) at_ms: u64,
    /// The history's `removed_through` when it was written.
    pub(crate) removed: u64,
    pub(crate) private: bool,
    pub(crate) custom_id: Option<Arc<str>>,
    /// Its rooms with history, each with its link (see the module's header).
    pub(crate) rooms: Vec<(Arc<str>, u64)>,
    pub(crate) frame: Bytes,
}

/// What is borrowed to write one record.
pub(crate) struct RecordRef<'a> {
    pub(crate) seq: u64,
    pub(crate) at_ms: u64,
    pub(crate) removed: u64,
    pub(crate) private: bool,
    pub(crate) custom_id: Option<&'a str>,
    pub(crate) rooms: &'a [(Arc<str>, u64)],
    pub(crate) frame: &'a [u8],
}

/// Append the encoding of `r` to `out`.
pub(crate) fn encode(r: &RecordRef<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.push(KIND_EVENT);
    out.extend_from_slice(&r.seq.to_le_bytes());
    out.extend_from_slice(&r.at_ms.to_le_bytes());
    out.extend_from_slice(&r.removed.to_le_bytes());
    let flags =
        if r.private { PRIVATE } else { 0 } | if r.custom_id.is_some() { CUSTOM_ID } else { 0 };
    out.push(flags);
    if let Some(id) = r.custom_id {
        put_str(out, id);
    }
    out.extend_from_slice(&(r.rooms.len() as u32).to_le_bytes());
    for (room, link) in r.rooms {
        put_str(out, room);
        out.extend_from_slice(&link.to_le_bytes());
    }
    out.extend_from_slice(r.frame);
    seal(out, start);
}

/// Append a marker carrying `removed` to `out`.
pub(crate) fn encode_marker(removed: u64, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.push(KIND_MARKER);
    out.extend_from_slice(&removed.to_le_bytes());
    seal(out, start);
}

/// Fill in the length and checksum of the record that starts at `start`.
fn seal(out: &mut [u8], start: usize) {
    let payload = &out[start + HEADER..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// What reading a segment found: its records, and where the valid part ends with the
/// reason it ended early, if it did.
#[derive(Debug)]
pub(crate) struct Scan {
    pub(crate) records: Vec<Record>,
    /// The largest `removed` of its records and markers.
    pub(crate) removed: u64,
    /// The length of the valid prefix (header and whole records).
    pub(crate) valid: usize,
    /// Why the rest (`len - valid` bytes) is not read, if there is a rest.
    pub(crate) bad: Option<&'static str>,
}

/// Read the records of one segment file's bytes, stopping at the first that is torn or
/// does not check. Never panics, whatever the bytes.
pub(crate) fn scan(data: &[u8]) -> Scan {
    let mut out = Scan {
        records: Vec::new(),
        removed: 0,
        valid: 0,
        bad: None,
    };
    if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
        out.bad = Some("not a segment file (bad magic)");
        return out;
    }
    let mut at = MAGIC.len();
    out.valid = at;
    while at < data.len() {
        let rest = &data[at..];
        if rest.len() < HEADER {
            out.bad = Some("torn record header");
            return out;
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap_or_default());
        if len > MAX_PAYLOAD {
            out.bad = Some("record length out of range");
            return out;
        }
        if rest.len() < HEADER + len {
            out.bad = Some("torn record (shorter than its length)");
            return out;
        }
        let payload = &rest[HEADER..HEADER + len];
        if crc32fast::hash(payload) != crc {
            out.bad = Some("checksum mismatch");
            return out;
        }
        match decode(payload) {
            Some(Decoded::Event(record)) => {
                out.removed = out.removed.max(record.removed);
                out.records.push(record);
            }
            Some(Decoded::Marker(removed)) => out.removed = out.removed.max(removed),
            None => {
                out.bad = Some("malformed record");
                return out;
            }
        }
        at += HEADER + len;
        out.valid = at;
    }
    out
}

enum Decoded {
    Event(Record),
    Marker(u64),
}

/// One payload, or `None` if it does not parse (a checksum that matches by chance, or a
/// writer of another version).
fn decode(p: &[u8]) -> Option<Decoded> {
    let mut r = Reader { p, at: 0 };
    match r.u8()? {
        KIND_EVENT => {}
        KIND_MARKER => return Some(Decoded::Marker(r.u64()?)),
        _ => return None,
    }
    let seq = r.u64()?;
    let at_ms = r.u64()?;
    let removed = r.u64()?;
    let flags = r.u8()?;
    let custom_id = if flags & CUSTOM_ID != 0 {
        Some(Arc::from(r.str()?))
    } else {
        None
    };
    let n = r.u32()? as usize;
    if n > 4096 {
        return None;
    }
    let mut rooms = Vec::with_capacity(n);
    for _ in 0..n {
        let name = Arc::from(r.str()?);
        rooms.push((name, r.u64()?));
    }
    let frame = Bytes::copy_from_slice(&p[r.at..]);
    Some(Decoded::Event(Record {
        seq,
        at_ms,
        removed,
        private: flags & PRIVATE != 0,
        custom_id,
        rooms,
        frame,
    }))
}

struct Reader<'a> {
    p: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.p.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(seq: u64) -> Vec<u8> {
        let rooms = [(Arc::from("a"), seq - 1), (Arc::from("b"), 0)];
        let mut out = Vec::new();
        encode(
            &RecordRef {
                seq,
                at_ms: 42,
                removed: seq / 2,
                private: seq.is_multiple_of(2),
                custom_id: (seq == 2).then_some("mine"),
                rooms: &rooms,
                frame: b"id: x\ndata: y\n\n",
            },
            &mut out,
        );
        out
    }

    #[test]
    fn records_round_trip_and_a_cut_anywhere_is_found() {
        let mut file = MAGIC.to_vec();
        let mut ends = Vec::new();
        for seq in 1..=3 {
            file.extend(one(seq));
            ends.push(file.len());
        }
        encode_marker(7, &mut file);
        let scan = scan(&file);
        assert!(scan.bad.is_none());
        assert_eq!(scan.removed, 7);
        assert_eq!(scan.records[2].removed, 1);
        assert_eq!(scan.records.len(), 3);
        assert_eq!(scan.records[1].custom_id.as_deref(), Some("mine"));
        assert!(scan.records[1].private);
        assert_eq!(&scan.records[2].rooms[0].0[..], "a");
        assert_eq!(scan.records[2].rooms[0].1, 2);
        assert_eq!(&scan.records[0].frame[..], b"id: x\ndata: y\n\n");
        // Every cut keeps exactly the whole records before it.
        for cut in MAGIC.len()..file.len() {
            let s = super::scan(&file[..cut]);
            let whole = ends.iter().filter(|&&e| e <= cut).count();
            assert_eq!(s.records.len(), whole, "cut at {cut}");
            assert_eq!(
                s.valid,
                ends.get(whole.wrapping_sub(1)).copied().unwrap_or(8)
            );
            assert_eq!(s.bad.is_some(), cut != s.valid);
        }
        // A flipped byte anywhere in a record stops the scan there.
        for at in MAGIC.len()..file.len() {
            let mut f = file.clone();
            f[at] ^= 0x55;
            let s = super::scan(&f);
            let before = ends.iter().filter(|&&e| e <= at).count();
            assert_eq!(s.records.len(), before, "flip at {at}");
        }
    }
}
