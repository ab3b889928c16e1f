//! Durable history (`HubConfig::history_dir`): the history's log, on disk, as an
//! append-only log of segment files that the in-memory log and rings index. Files:
//! `record.rs` (the bytes of a record, the scan that finds a torn tail).
//!
//! ## What is where
//! - `DIR/meta`: the epoch, the boot it was written in, and the fsync mode (JSON,
//!   replaced atomically at every start). `DIR/lock`: held (`flock`) while a hub has the
//!   directory open, so that two processes never append to one log.
//! - `DIR/<first seq, 20 digits>.seg`: records in sequence order. One is active
//!   (appended to); it is rotated past [`Store::segment_bytes`].
//!
//! ## Crash rules
//! - A record is written to the OS (one `write(2)`, no user-space buffer) inside the
//!   record step, under the history's lock, before the event is queued to anyone or
//!   `publish` returns: what a client has seen or a publisher was answered survives the
//!   process (SIGKILL, panic, OOM). A failed write is undone (the file cut back) and the
//!   publish refused, nothing sent.
//! - What a machine crash may take is [`Fsync`]'s: `Always` syncs each record before it
//!   is queued (nothing answered is lost); `Interval` syncs on a background thread (up to
//!   one interval lost); `Never` leaves it to the OS.
//! - So after a machine restart (another boot id) a log written with `Interval` or
//!   `Never` may miss its last answered events, whose numbers clients may hold: reusing
//!   them would hand those clients other events under ids they have. Such a log is
//!   dropped (with a warning) and a new epoch begins: every cursor gets the gap signal.
//!   After a process crash (same boot) the page cache had every write: the epoch stays.
//! - A torn or corrupt record ends its segment's readable part: the rest of that file is
//!   cut (truncated) and reported with its size and reason; earlier records, and later
//!   segments, are kept. A ring is rebuilt only along an unbroken chain of links
//!   (`record.rs`), and numbers missing from disk count as dropped, so what was cut
//!   becomes a gap for the cursors it concerns, never a silence.
//! - The sequence continues after the newest number on disk or in a segment's name
//!   (the active segment is named before its first record): never reused.
//!
//! ## Bounds
//! An event leaves disk with the log: a segment whose events all left the in-memory
//! log is deleted; an old one that keeps less than a quarter of its bytes live is
//! compacted (its live records rewritten to a new file that replaces it). Both run on the
//! store's own thread, which also syncs for `Interval`: the lock is held only to count
//! (and, for a compaction, to list the segment's live numbers).
//!
//! ## Invariants (under the history's mutex)
//! - `segments` holds every segment file of the log by first number; the last one is
//!   the active one. `live`/`live_bytes` of a segment count the log entries whose record
//!   is in it.
//! - The active file's length is `active_bytes`: a failed append is cut back.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) mod record;

use self::record::{Record, RecordRef, MAGIC};
use crate::sync::lock;

/// When records reach the disk itself, not only the OS (what a machine crash may take;
/// a process crash takes nothing that was answered, in every mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fsync {
    /// Every record is synced before its event is delivered or its publish answered:
    /// a machine crash loses nothing answered. Costs a disk flush per publish, under
    /// the history's lock (see BENCHMARKS.md).
    Always,
    /// Synced by a background thread this often: a machine crash may lose the events of
    /// the last interval (then the history restarts in a new epoch: clients get the gap
    /// signal, never wrong events).
    Interval(Duration),
    /// Left to the OS (a machine crash is handled as for `Interval`).
    Never,
}

impl Default for Fsync {
    /// `Interval(1 s)`.
    fn default() -> Self {
        Fsync::Interval(Duration::from_secs(1))
    }
}

impl Fsync {
    fn name(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::Interval(_) => "interval",
            Fsync::Never => "never",
        }
    }
}

/// Compactions done by the store's thread: a segment's first number, and its new size
/// (`None`: the compaction failed and the file is as it was).
type Compactions = Arc<Mutex<Vec<(u64, Option<u64>)>>>;

/// Where a hub keeps its history on disk, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoreConfig {
    pub(crate) dir: PathBuf,
    pub(crate) fsync: Fsync,
    /// Rotate the active segment past this size (`None`: from the total cap).
    pub(crate) segment_bytes: Option<u64>,
}

/// Why a durable history could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryStoreError {
    /// A file or the directory could not be read or written.
    #[error("history directory {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// Another process (or hub) has the directory open.
    #[error("history directory {} is in use by another process", path.display())]
    Locked {
        /// The directory.
        path: PathBuf,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> HistoryStoreError + '_ {
    move |source| HistoryStoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One segment file.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    /// Its size on disk (for the active one: what was appended).
    file_bytes: u64,
    /// Log entries whose record is in it, and their frames' bytes.
    live: usize,
    live_bytes: u64,
    /// A compaction of it is queued or running.
    compacting: bool,
}

impl Segment {
    /// A segment just created at `path`: its header alone.
    fn new(path: PathBuf) -> Segment {
        Segment {
            path,
            file_bytes: MAGIC.len() as u64,
            live: 0,
            live_bytes: 0,
            compacting: false,
        }
    }
}

/// Work for the store's thread.
enum Job {
    Delete(PathBuf),
    /// Rewrite segment `first` (`path`) with the records numbered in `live` (sorted).
    Compact {
        first: u64,
        path: PathBuf,
        live: Vec<u64>,
    },
    /// Sync a rotated segment (and the directory that names its successor).
    Sync(Arc<File>),
}

/// The on-disk side of a [`History`] (see the module's header).
#[derive(Debug)]
pub(crate) struct Store {
    dir: PathBuf,
    fsync: Fsync,
    segment_bytes: u64,
    segments: BTreeMap<u64, Segment>,
    active: Arc<File>,
    active_first: u64,
    /// The file `Interval` syncs (the active one), shared with the thread.
    syncing: Arc<Mutex<Arc<File>>>,
    /// Compactions done by the thread (first number, new size or `None` if it
    /// failed), taken in by the next append or drop: the thread never takes the
    /// history's lock.
    compacted: Compactions,
    jobs: mpsc::Sender<Job>,
    /// The thread, joined on drop: the directory is not released (its lock) while it
    /// still deletes or compacts there.
    thread: Option<std::thread::JoinHandle<()>>,
    /// The encoding buffer, reused.
    buf: Vec<u8>,
    /// The largest `removed_through` written (in a record or a marker).
    written_removed: u64,
    /// Held for the store's life: the directory is this process's.
    _lock: File,
}

/// What the segments on disk held at start.
pub(crate) struct Recovered {
    pub(crate) epoch: String,
    /// Every readable record, in sequence order.
    pub(crate) records: Vec<Record>,
    /// The newest number ever given (on disk or implied by a segment's name).
    pub(crate) top: u64,
    /// The newest number below `top` with no record on disk (0: none): dropped from
    /// the log.
    pub(crate) missing_through: u64,
    /// The history's `removed_through` as last written (records and markers), raised
    /// past records lost to corruption before the last segment (whose rooms are not
    /// known).
    pub(crate) removed_through: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    version: u32,
    epoch: String,
    boot: Option<String>,
    fsync: String,
}

/// The id of this boot of the machine (Linux), to tell a process restart from a
/// machine restart.
fn boot_id() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.seg")
}

/// Now, in Unix milliseconds.
pub(crate) fn wall_ms(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Store {
    /// Open (or create) `config.dir`: read every segment, cut what is torn, decide the
    /// epoch. The store itself is made by [`Store::start`] once the history is rebuilt.
    pub(crate) fn open(
        config: &StoreConfig,
        fresh_epoch: impl FnOnce() -> String,
    ) -> Result<(Recovered, File), HistoryStoreError> {
        let dir = &config.dir;
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let lock_path = dir.join("lock");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_at(&lock_path))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(HistoryStoreError::Locked { path: dir.clone() })
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_at(&lock_path)(e)),
        }
        let meta_path = dir.join("meta");
        let meta: Option<Meta> = match fs::read(&meta_path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(meta) => Some(meta),
                Err(e) => {
                    tracing::warn!(path = %meta_path.display(), error = %e, "history: unreadable meta file; starting a new epoch");
                    None
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_at(&meta_path)(e)),
        };
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_at(dir))? {
            let entry = entry.map_err(io_at(dir))?;
            let name = entry.file_name();
            let Some(first) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            files.push((first, entry.path()));
        }
        files.sort();
        let boot = boot_id();
        // The epoch stays unless the log cannot vouch for the numbers clients may hold.
        let keep = match &meta {
            None => None,
            Some(m)
                if m.fsync != Fsync::Always.name()
                    && m.boot.is_some()
                    && boot.is_some()
                    && m.boot != boot =>
            {
                tracing::warn!(
                    dir = %dir.display(),
                    fsync = %m.fsync,
                    segments = files.len(),
                    "history: the machine restarted since this history was written without \
                     fsync = always, so its last answered events may be lost; dropping it and \
                     starting a new epoch (resuming clients get the gap signal)"
                );
                None
            }
            Some(m) => Some(m.epoch.clone()),
        };
        let epoch = match keep {
            Some(epoch) => epoch,
            None => {
                if meta.is_none() && !files.is_empty() {
                    tracing::warn!(dir = %dir.display(), segments = files.len(), "history: segments without a meta file; dropping them and starting a new epoch");
                }
                for (_, path) in files.drain(..) {
                    fs::remove_file(&path).map_err(io_at(&path))?;
                }
                fresh_epoch()
            }
        };
        let mut records: Vec<Record> = Vec::new();
        let mut top = 0;
        let mut removed_through = 0;
        let last_file = files.last().map(|(f, _)| *f);
        for (i, (first, path)) in files.iter().enumerate() {
            top = top.max(first.saturating_sub(1));
            let mut data = Vec::new();
            File::open(path)
                .and_then(|mut f| f.read_to_end(&mut data))
                .map_err(io_at(path))?;
            let scan = record::scan(&data);
            removed_through = removed_through.max(scan.removed);
            if scan.bad.is_some() && Some(*first) != last_file {
                // Lost records of unknown rooms, up to the next file's first number: any
                // room may have had one.
                let next = files.get(i + 1).map_or(0, |(f, _)| *f);
                removed_through = removed_through.max(next.saturating_sub(1));
            }
            if let Some(why) = scan.bad {
                let cut = data.len() - scan.valid;
                tracing::warn!(
                    file = %path.display(),
                    at = scan.valid,
                    cut_bytes = cut,
                    kept_records = scan.records.len(),
                    last_kept_seq = scan.records.last().map(|r| r.seq),
                    reason = why,
                    "history: cutting a torn or corrupt tail (events after it in this file are lost; \
                     cursors they concern get the gap signal)"
                );
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_at(path))?;
                if scan.valid < MAGIC.len() {
                    // Not even a header: write one, so the file reads as an empty segment.
                    f.set_len(0).map_err(io_at(path))?;
                    (&f).write_all(MAGIC).map_err(io_at(path))?;
                } else {
                    f.set_len(scan.valid as u64).map_err(io_at(path))?;
                }
                f.sync_all().map_err(io_at(path))?;
            }
            records.extend(scan.records);
        }
        // Files are in order and so are their records; a compaction keeps the order,
        // but nothing on disk is trusted to: sort, and keep one record per number.
        if records.windows(2).any(|w| w[0].seq >= w[1].seq) {
            records.sort_by_key(|r| r.seq);
            records.dedup_by_key(|r| r.seq);
        }
        top = top.max(records.last().map_or(0, |r| r.seq));
        let mut missing_through = 0;
        let mut expect = 1;
        for r in &records {
            if r.seq > expect {
                missing_through = r.seq - 1;
            }
            expect = r.seq + 1;
        }
        if top >= expect {
            missing_through = top;
        }
        let meta = Meta {
            version: 1,
            epoch: epoch.clone(),
            boot,
            fsync: config.fsync.name().to_owned(),
        };
        write_atomically(dir, "meta", &serde_json::to_vec(&meta).unwrap_or_default())?;
        Ok((
            Recovered {
                epoch,
                records,
                top,
                missing_through,
                removed_through,
            },
            lock_file,
        ))
    }

    /// The store of a rebuilt history whose newest number is `seq`: a new active
    /// segment, its thread, and the live counts of the segments from `live` (the log's
    /// numbers and frame sizes). Segments with nothing live are deleted.
    pub(crate) fn start(
        config: &StoreConfig,
        lock: File,
        (seq, removed_through): (u64, u64),
        total_bytes: usize,
        live: impl Iterator<Item = (u64, u64)>,
    ) -> Result<Store, HistoryStoreError> {
        let dir = config.dir.clone();
        let mut segments = BTreeMap::new();
        for entry in fs::read_dir(&dir).map_err(io_at(&dir))? {
            let entry = entry.map_err(io_at(&dir))?;
            let Some(first) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let file_bytes = match entry.metadata() {
                Ok(m) => m.len(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_at(&dir)(e)),
            };
            segments.insert(
                first,
                Segment {
                    path: entry.path(),
                    file_bytes,
                    live: 0,
                    live_bytes: 0,
                    compacting: false,
                },
            );
        }
        let mut live_seqs = Vec::new();
        for (seq, bytes) in live {
            live_seqs.push(seq);
            if let Some((_, s)) = segments.range_mut(..=seq).next_back() {
                s.live += 1;
                s.live_bytes += bytes;
            }
        }
        let first = seq + 1;
        let (active, path) = create_segment(&dir, first)?;
        sync_dir(&dir)?;
        let active = Arc::new(active);
        segments.insert(first, Segment::new(path));
        let syncing = Arc::new(Mutex::new(active.clone()));
        let (jobs, rx) = mpsc::channel();
        let interval = match config.fsync {
            Fsync::Interval(d) => Some(d.max(Duration::from_millis(1))),
            _ => None,
        };
        let thread_dir = dir.clone();
        let thread_syncing = syncing.clone();
        let compacted = Arc::new(Mutex::new(Vec::new()));
        let done = compacted.clone();
        let thread = std::thread::Builder::new()
            .name("ssehub-history".into())
            .spawn(move || run(rx, thread_dir, thread_syncing, interval, done))
            .map_err(io_at(&dir))?;
        let segment_bytes = config
            .segment_bytes
            .unwrap_or(((total_bytes / 16) as u64).clamp(256 << 10, 64 << 20));
        let mut store = Store {
            dir,
            fsync: config.fsync,
            segment_bytes,
            segments,
            active,
            active_first: first,
            syncing,
            compacted,
            jobs,
            thread: Some(thread),
            buf: Vec::with_capacity(4096),
            written_removed: 0,
            _lock: lock,
        };
        let dead: Vec<u64> = store
            .segments
            .iter()
            .filter(|(f, s)| s.live == 0 && **f != first)
            .map(|(f, _)| *f)
            .collect();
        store.note_removed(removed_through);
        for f in dead {
            store.delete(f);
        }
        let old: Vec<u64> = store.segments.keys().copied().collect();
        let in_range = |from: u64, to: u64| {
            let at = live_seqs.partition_point(|s| *s < from);
            live_seqs[at..]
                .iter()
                .take_while(|s| **s < to)
                .copied()
                .collect()
        };
        for f in old {
            store.maybe_compact(f, &in_range);
        }
        Ok(store)
    }

    /// Write `r` to the OS (and to disk with `Fsync::Always`) before returning. On an
    /// error the file is as it was, and the event must not be delivered.
    pub(crate) fn append(&mut self, r: &RecordRef<'_>, live: Live<'_>) -> io::Result<()> {
        self.take_compacted();
        let active = self
            .segments
            .get(&self.active_first)
            .map_or(0, |s| s.file_bytes);
        if active >= self.segment_bytes && active > MAGIC.len() as u64 {
            self.rotate(r.seq, live)?;
        }
        self.buf.clear();
        record::encode(r, &mut self.buf);
        let before = self
            .segments
            .get(&self.active_first)
            .map_or(0, |s| s.file_bytes);
        let written = (&*self.active)
            .write_all(&self.buf)
            .and_then(|()| match self.fsync {
                Fsync::Always => self.active.sync_data(),
                _ => Ok(()),
            });
        if let Err(e) = written {
            // A record half written would end the readable log there at the next
            // start, taking every later record with it: cut it off now.
            if let Err(cut) = self.active.set_len(before) {
                tracing::error!(error = %cut, "history: could not cut a failed append back; rotating");
                let _ = self.rotate(r.seq, live);
            }
            return Err(e);
        }
        if let Some(s) = self.segments.get_mut(&self.active_first) {
            s.file_bytes += self.buf.len() as u64;
            s.live += 1;
            s.live_bytes += r.frame.len() as u64;
        }
        self.written_removed = self.written_removed.max(r.removed);
        Ok(())
    }

    /// Make sure `removed` is on disk before records that showed it may go (a segment
    /// deleted or compacted): a marker, if no record carries it yet. Best effort: a
    /// marker that cannot be written leaves the next restart more conservative only if
    /// nothing else carries it, and is reported.
    pub(crate) fn note_removed(&mut self, removed: u64) {
        if removed <= self.written_removed {
            return;
        }
        let mut buf = Vec::with_capacity(32);
        record::encode_marker(removed, &mut buf);
        match (&*self.active).write_all(&buf) {
            Ok(()) => {
                if let Some(s) = self.segments.get_mut(&self.active_first) {
                    s.file_bytes += buf.len() as u64;
                }
                self.written_removed = removed;
            }
            Err(e) => {
                let before = self
                    .segments
                    .get(&self.active_first)
                    .map_or(0, |s| s.file_bytes);
                let _ = self.active.set_len(before);
                tracing::warn!(error = %e, "history: could not write a marker");
            }
        }
    }

    /// Start a new active segment, first number `first`.
    fn rotate(&mut self, first: u64, live: Live<'_>) -> io::Result<()> {
        let (file, path) = create_segment(&self.dir, first).map_err(|e| match e {
            HistoryStoreError::Io { source, .. } => source,
            HistoryStoreError::Locked { .. } => io::Error::other("locked"),
        })?;
        let file = Arc::new(file);
        let old = std::mem::replace(&mut self.active, file.clone());
        let old_first = std::mem::replace(&mut self.active_first, first);
        self.segments.insert(first, Segment::new(path));
        match self.fsync {
            // Each record was synced; the new file's name must be too.
            Fsync::Always => sync_dir(&self.dir).map_err(|e| io::Error::other(e.to_string()))?,
            Fsync::Interval(_) => {
                *lock(&self.syncing) = file;
                let _ = self.jobs.send(Job::Sync(old));
            }
            Fsync::Never => {}
        }
        if self.segments.get(&old_first).is_some_and(|s| s.live == 0) {
            self.delete(old_first);
        } else {
            self.maybe_compact(old_first, live);
        }
        Ok(())
    }

    /// The log entry `seq` (a frame of `bytes`) left the log; the history's
    /// `removed_through` is now `removed`.
    pub(crate) fn forget(&mut self, seq: u64, bytes: usize, removed: u64, live: Live<'_>) {
        let Some((&first, s)) = self.segments.range_mut(..=seq).next_back() else {
            return;
        };
        s.live = s.live.saturating_sub(1);
        s.live_bytes = s.live_bytes.saturating_sub(bytes as u64);
        if first == self.active_first {
            return;
        }
        if s.live == 0 {
            self.note_removed(removed);
            self.delete(first);
        } else if self.wants_compaction(first) {
            self.note_removed(removed);
            self.maybe_compact(first, live);
        }
    }

    fn delete(&mut self, first: u64) {
        if let Some(s) = self.segments.remove(&first) {
            let _ = self.jobs.send(Job::Delete(s.path));
        }
    }

    fn wants_compaction(&self, first: u64) -> bool {
        first != self.active_first
            && self.segments.get(&first).is_some_and(|s| {
                !s.compacting && s.file_bytes >= 4096 && s.live_bytes * 4 <= s.file_bytes
            })
    }

    /// Queue a compaction of `first` if it is old and mostly dead; `live` lists the
    /// log's numbers in a range (cheap: a quarter of the segment's records at most).
    fn maybe_compact(&mut self, first: u64, live: Live<'_>) {
        if !self.wants_compaction(first) {
            return;
        }
        let end = self
            .segments
            .range(first + 1..)
            .next()
            .map_or(u64::MAX, |(f, _)| *f);
        if let Some(s) = self.segments.get_mut(&first) {
            s.compacting = true;
            let job = Job::Compact {
                first,
                path: s.path.clone(),
                live: live(first, end),
            };
            let _ = self.jobs.send(job);
        }
    }

    /// Count the compactions the thread finished.
    fn take_compacted(&mut self) {
        let done = std::mem::take(&mut *lock(&self.compacted));
        for (first, bytes) in done {
            if let Some(s) = self.segments.get_mut(&first) {
                s.compacting = false;
                if let Some(bytes) = bytes {
                    s.file_bytes = bytes;
                }
            }
        }
    }
}

/// The numbers the in-memory log holds in a range `[from, to)`, sorted.
pub(crate) type Live<'a> = &'a dyn Fn(u64, u64) -> Vec<u64>;

impl Drop for Store {
    fn drop(&mut self) {
        // A clean stop leaves everything on disk whatever the mode (the thread ends when
        // the sender goes, after its queue).
        if self.fsync != Fsync::Never {
            let _ = self.active.sync_data();
        }
        // The thread ends once its queue is done and no sender is left.
        let (closed, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.jobs, closed));
        if let Some(thread) = self.thread.take() {
            // The last reference may be the thread's own (a compaction's): then it is
            // on its way out already.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

fn create_segment(dir: &Path, first: u64) -> Result<(File, PathBuf), HistoryStoreError> {
    let path = dir.join(segment_name(first));
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(io_at(&path))?;
    file.write_all(MAGIC).map_err(io_at(&path))?;
    Ok((file, path))
}

fn sync_dir(dir: &Path) -> Result<(), HistoryStoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}

/// Replace `dir/name` with `bytes`, whole or not at all.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), HistoryStoreError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = File::create(&tmp).map_err(io_at(&tmp))?;
    f.write_all(bytes).map_err(io_at(&tmp))?;
    f.sync_all().map_err(io_at(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_at(&path))?;
    sync_dir(dir)
}

/// The store's thread: deletions, compactions, and `Interval`'s syncs. Ends when the
/// store is dropped (its sender with it), after the jobs queued before. It never takes
/// the history's lock: a compaction is handed the live numbers and hands back the size.
fn run(
    rx: mpsc::Receiver<Job>,
    dir: PathBuf,
    syncing: Arc<Mutex<Arc<File>>>,
    interval: Option<Duration>,
    done: Compactions,
) {
    let wait = interval.unwrap_or(Duration::from_secs(3600));
    let mut next_sync = std::time::Instant::now() + wait;
    loop {
        let timeout = next_sync.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(timeout) {
            Ok(Job::Delete(path)) => {
                if let Err(e) = fs::remove_file(&path) {
                    if e.kind() != io::ErrorKind::NotFound {
                        tracing::warn!(file = %path.display(), error = %e, "history: could not delete a segment");
                    }
                }
            }
            Ok(Job::Sync(file)) => {
                let _ = file.sync_data();
                let _ = sync_dir(&dir);
            }
            Ok(Job::Compact { first, path, live }) => {
                let bytes = compact(&path, &live);
                lock(&done).push((first, bytes));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if interval.is_some() {
                    let file = lock(&syncing).clone();
                    if let Err(e) = file.sync_data() {
                        tracing::warn!(error = %e, "history: fsync failed");
                    }
                }
                next_sync = std::time::Instant::now() + wait;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Rewrite the segment at `path` with only the records numbered in `live`; its new
/// size. Records that died since the list was made are kept (the next compaction or
/// the deletion takes them). The new file is synced before it replaces the old one, so
/// a crash leaves one or the other, whole.
fn compact(path: &Path, live: &[u64]) -> Option<u64> {
    let result = (|| -> io::Result<u64> {
        let data = fs::read(path)?;
        let scan = record::scan(&data);
        let tmp = path.with_extension("compact");
        let mut out = Vec::with_capacity(data.len() / 2);
        out.extend_from_slice(MAGIC);
        // What the dropped records said of `removed_through` stays (markers are small).
        record::encode_marker(scan.removed, &mut out);
        for r in scan
            .records
            .iter()
            .filter(|r| live.binary_search(&r.seq).is_ok())
        {
            record::encode(
                &RecordRef {
                    seq: r.seq,
                    at_ms: r.at_ms,
                    removed: r.removed,
                    private: r.private,
                    custom_id: r.custom_id.as_deref(),
                    rooms: &r.rooms,
                    frame: &r.frame,
                },
                &mut out,
            );
        }
        let mut f = File::create(&tmp)?;
        f.write_all(&out)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(out.len() as u64)
    })();
    match result {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "history: compaction failed; keeping the segment as it is");
            None
        }
    }
}
