//! The durable history's store, chosen by measurement: the cost of one publish that is
//! on its way to disk before it is answered, with
//!
//! - `memory`: the hub without a history directory (the floor);
//! - `segment-*`: `HubConfig::history_dir`, the append-only segment log, per fsync mode;
//! - `redb-*`, `fjall-*`: the same in-memory hub, plus one write of the same frame to
//!   redb (one write transaction per event) or fjall (insert, then `persist`) in the
//!   publish loop: what the record step would cost with that store under it.
//!
//! "os" modes hand each event to the OS before the next (what survives a process crash:
//! the segment log's `write(2)`, redb `Durability::None`, fjall `PersistMode::Buffer`);
//! "sync" modes put it on the disk (`Fsync::Always`, redb `Durability::Immediate`, fjall
//! `PersistMode::SyncData`). Run:
//!
//! ```text
//! cd benches/store-compare && cargo run --release -- [EVENTS] [SYNC_EVENTS]
//! ```
//!
//! and it prints, per store, the mean and p50/p99/max of one publish in microseconds.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use redb::{Database, Durability, TableDefinition, WriteTransaction};
use ssehub::{Fsync, HistoryConfig, Hub, HubConfig, Message};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");

fn main() {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let sync_events: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let base = std::env::temp_dir().join(format!("ssehub-store-compare-{}", std::process::id()));
    let payload = "x".repeat(200);
    println!(
        "{events} events of {} bytes (sync modes: {sync_events})",
        payload.len()
    );
    println!(
        "{:<16} {:>9} {:>9} {:>9} {:>9} {:>11}",
        "store", "mean µs", "p50 µs", "p99 µs", "max µs", "disk bytes"
    );
    let runs: [(&str, usize); 9] = [
        ("memory", events),
        ("segment-never", events),
        ("segment-interval", events),
        ("redb-os", events),
        ("fjall-os", events),
        ("segment-always", sync_events),
        ("redb-sync", sync_events),
        ("fjall-sync", sync_events),
        ("memory-again", events),
    ];
    for (name, n) in runs {
        let dir = base.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let times = run(name, &dir, n, &payload);
        report(name, times, du(&dir));
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// One publish per event, each timed.
fn run(name: &str, dir: &Path, n: usize, payload: &str) -> Vec<Duration> {
    let mut config = HubConfig::default().history(Some(HistoryConfig::default()));
    match name {
        "segment-never" => config = config.history_dir(dir, Fsync::Never),
        "segment-interval" => config = config.history_dir(dir, Fsync::default()),
        "segment-always" => config = config.history_dir(dir, Fsync::Always),
        _ => {}
    }
    let hub = Hub::open(config).expect("open the hub");
    let mut store = Store::open(name, dir);
    let rooms = ["room-a", "room-b", "room-c", "room-d"];
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let message = Message::new(format!("{i} {payload}"));
        let started = Instant::now();
        let published = hub.to(rooms[i % rooms.len()]).publish(&message).unwrap();
        store.write(i as u64, published.id.as_deref().unwrap_or(""), payload);
        times.push(started.elapsed());
    }
    drop(store);
    drop(hub);
    times
}

/// A candidate store written beside the in-memory hub.
enum Store {
    None,
    Redb(Database, Durability),
    Fjall(fjall::Keyspace, fjall::PartitionHandle, fjall::PersistMode),
}

impl Store {
    fn open(name: &str, dir: &Path) -> Store {
        match name {
            "redb-os" | "redb-sync" => {
                let db = Database::create(dir.join("log.redb")).unwrap();
                let durability = match name {
                    "redb-os" => Durability::None,
                    _ => Durability::Immediate,
                };
                Store::Redb(db, durability)
            }
            "fjall-os" | "fjall-sync" => {
                let ks = fjall::Config::new(dir).open().unwrap();
                let part = ks
                    .open_partition("log", fjall::PartitionCreateOptions::default())
                    .unwrap();
                let mode = match name {
                    "fjall-os" => fjall::PersistMode::Buffer,
                    _ => fjall::PersistMode::SyncData,
                };
                Store::Fjall(ks, part, mode)
            }
            _ => Store::None,
        }
    }

    /// The record the segment log writes carries the same: number, id, rooms, frame.
    fn write(&mut self, seq: u64, id: &str, payload: &str) {
        match self {
            Store::None => {}
            Store::Redb(db, durability) => {
                let mut txn: WriteTransaction = db.begin_write().unwrap();
                txn.set_durability(*durability);
                {
                    let mut t = txn.open_table(LOG).unwrap();
                    let value = format!("{id}\nroom\n{payload}");
                    t.insert(seq, value.as_bytes()).unwrap();
                }
                txn.commit().unwrap();
            }
            Store::Fjall(ks, part, mode) => {
                let value = format!("{id}\nroom\n{payload}");
                part.insert(seq.to_be_bytes(), value.as_bytes()).unwrap();
                ks.persist(*mode).unwrap();
            }
        }
    }
}

fn report(name: &str, mut times: Vec<Duration>, disk: u64) {
    times.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let at = |q: f64| us(times[((times.len() as f64 * q) as usize).min(times.len() - 1)]);
    let mean = times.iter().map(|d| us(*d)).sum::<f64>() / times.len() as f64;
    println!(
        "{name:<16} {mean:>9.2} {:>9.2} {:>9.2} {:>9.1} {disk:>11}",
        at(0.5),
        at(0.99),
        us(*times.last().unwrap())
    );
}

/// Bytes under `dir`, before it is removed.
fn du(dir: &Path) -> u64 {
    fn walk(p: PathBuf) -> u64 {
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => std::fs::read_dir(&p)
                .map(|r| r.filter_map(|e| e.ok()).map(|e| walk(e.path())).sum())
                .unwrap_or(0),
            Ok(m) => m.len(),
            Err(_) => 0,
        }
    }
    walk(dir.to_path_buf())
}
