//! A history kept on disk (`HubConfig::history_dir`): what a restart keeps (rings, epoch,
//! sequence; a resume after it), a torn last record cut at start with every earlier
//! event kept, the limits on disk (bytes and age: files deleted or compacted, older
//! cursors told of the gap), and a second hub refused the same directory.
//! The real binary killed and restarted is in `ssehub-cli/tests/restart.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use ssehub::{Fsync, HistoryConfig, HistoryStoreError, Hub, HubConfig, Message, SseOptions};

use common::*;

/// A fresh directory for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "ssehub-durable-{name}-{}-{}",
            std::process::id(),
            uuid_like()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn publish(hub: &Hub, rooms: &[&str], data: &str) -> String {
    hub.to(rooms)
        .unique()
        .publish(&Message::new(data))
        .unwrap()
        .id
        .unwrap()
}

/// The segment files and their sizes (the store's thread may delete one meanwhile).
fn segments(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .filter_map(|e| Some((e.path(), e.metadata().ok()?.len())))
        .collect();
    out.sort();
    out
}

async fn datas(hub: &Hub, room: &str) -> Vec<String> {
    hub.history(room)
        .await
        .into_iter()
        .map(|e| e.data)
        .collect()
}

fn options(hub: Hub) -> SseOptions {
    SseOptions::new()
        .with_hub(hub)
        .keep_alive(None)
        .rooms_from_query(true)
}

#[tokio::test]
async fn a_restart_keeps_the_rings_the_epoch_and_the_sequence() {
    let dir = TempDir::new("restart");
    let config = || HubConfig::default().history_dir(&dir.0, Fsync::Never);
    let hub = Hub::open(config()).unwrap();
    let mut ids = Vec::new();
    for i in 1..=5 {
        ids.push(publish(&hub, &["a"], &format!("a{i}")));
    }
    for i in 1..=3 {
        ids.push(publish(&hub, &["a", "b"], &format!("ab{i}")));
    }
    let before_a = datas(&hub, "a").await;
    let before_b = datas(&hub, "b").await;
    drop(hub);

    let hub = Hub::open(config()).unwrap();
    assert_eq!(datas(&hub, "a").await, before_a);
    assert_eq!(datas(&hub, "b").await, before_b);
    let ids_after: Vec<String> = hub
        .history("a")
        .await
        .into_iter()
        .map(|e| e.last_event_id)
        .collect();
    assert_eq!(ids_after, ids, "same ids: same epoch, same numbers");
    // The sequence goes on from where it was.
    let next = publish(&hub, &["a"], "a6");
    let (epoch, seq) = ids[7].rsplit_once('-').unwrap();
    assert_eq!(next, format!("{epoch}-{}", seq.parse::<u64>().unwrap() + 1));

    // A stream that resumes with an id of the last run gets exactly what followed it.
    let srv = TestServer::start(options(hub)).await;
    let mut c = SseClient::connect(srv.addr, "/sse?room=a", &[("last-event-id", &ids[3])]).await;
    let mut got = Vec::new();
    for _ in 0..5 {
        let e = c.next_event().await;
        assert_ne!(e.event, "ssehub.gap", "{e:?}");
        got.push(e.data);
    }
    assert_eq!(got, ["a5", "ab1", "ab2", "ab3", "a6"]);
    srv.stop().await;
}

#[tokio::test]
async fn a_torn_last_record_is_cut_and_every_earlier_event_is_kept() {
    let dir = TempDir::new("torn");
    let config = || HubConfig::default().history_dir(&dir.0, Fsync::Always);
    let hub = Hub::open(config()).unwrap();
    let ids: Vec<String> = (1..=10)
        .map(|i| publish(&hub, &["a"], &format!("event {i} {}", "x".repeat(100))))
        .collect();
    drop(hub);
    let segs = segments(&dir.0);
    let (last, len) = segs.iter().rfind(|(_, l)| *l > 8).unwrap().clone();
    // Cut the last record in its middle, as a crash during its write would.
    let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    f.set_len(len - 60).unwrap();
    drop(f);

    let hub = Hub::open(config()).unwrap();
    let kept = datas(&hub, "a").await;
    assert_eq!(kept.len(), 9, "{kept:?}");
    for (i, d) in kept.iter().enumerate() {
        assert!(d.starts_with(&format!("event {} ", i + 1)), "{d}");
    }
    // The file was cut back to its last whole record.
    let cut = std::fs::metadata(&last).unwrap().len();
    assert!(cut < len - 60, "the torn part is gone: {cut} of {len}");
    // A cursor before the cut resumes without a gap.
    let srv = TestServer::start(options(hub)).await;
    let mut c = SseClient::connect(srv.addr, "/sse?room=a", &[("last-event-id", &ids[4])]).await;
    for i in 6..=9 {
        let e = c.next_event().await;
        assert!(e.data.starts_with(&format!("event {i} ")), "{e:?}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn a_second_hub_cannot_open_a_directory_in_use() {
    let dir = TempDir::new("locked");
    let hub = Hub::open(HubConfig::default().history_dir(&dir.0, Fsync::Never)).unwrap();
    let second = Hub::open(HubConfig::default().history_dir(&dir.0, Fsync::Never));
    assert!(matches!(second, Err(HistoryStoreError::Locked { .. })));
    drop(hub);
    Hub::open(HubConfig::default().history_dir(&dir.0, Fsync::Never)).unwrap();
}

fn disk_bytes(dir: &Path) -> u64 {
    segments(dir).iter().map(|(_, l)| l).sum()
}

fn gap_of(e: &ssehub::decode::Event) -> Value {
    assert_eq!(e.event, "ssehub.gap", "{e:?}");
    serde_json::from_str(&e.data).unwrap()
}

#[tokio::test]
async fn the_disk_keeps_to_the_byte_bound_and_older_cursors_get_the_gap() {
    let dir = TempDir::new("bytes");
    // 64 KiB in all, 8 KiB segments; a quiet room whose one old event pins a segment
    // (compacted) and a busy room that turns over many times.
    let config = || {
        HubConfig::default()
            .history_total_bytes(64 << 10)
            .history_dir(&dir.0, Fsync::Never)
            .history_segment_bytes(8 << 10)
            .room_history(
                "busy".parse().unwrap(),
                Some(HistoryConfig::default().max_events(100)),
            )
    };
    let hub = Hub::open(config()).unwrap();
    let quiet = publish(&hub, &["quiet"], "the quiet room's one event");
    let first_busy = publish(&hub, &["busy"], "busy 0");
    let body = "y".repeat(200);
    for i in 1..3000 {
        publish(&hub, &["busy"], &format!("busy {i} {body}"));
    }
    // The store's thread deletes and compacts behind the publishes.
    eventually("the segments to be deleted or compacted", || {
        disk_bytes(&dir.0) < 3 * (64 << 10)
    })
    .await;
    // The first segment (8 KiB) is pinned by the quiet event: compacted (under 4 KiB).
    eventually("the first segment to be compacted", || {
        segments(&dir.0).first().is_some_and(|(_, len)| *len < 4096)
    })
    .await;
    assert_eq!(datas(&hub, "quiet").await, ["the quiet room's one event"]);
    assert_eq!(datas(&hub, "busy").await.len(), 100);
    drop(hub);

    let hub = Hub::open(config()).unwrap();
    assert!(
        disk_bytes(&dir.0) < 3 * (64 << 10),
        "{:?}",
        segments(&dir.0)
    );
    assert_eq!(datas(&hub, "quiet").await, ["the quiet room's one event"]);
    let busy = datas(&hub, "busy").await;
    assert_eq!(busy.len(), 100);
    assert!(busy[99].starts_with("busy 2999 "));
    let srv = TestServer::start(options(hub)).await;
    // The busy room's first event is long gone: a cursor there is told so...
    let mut c = SseClient::connect(
        srv.addr,
        "/sse?room=busy",
        &[("last-event-id", &first_busy)],
    )
    .await;
    assert_eq!(gap_of(&c.next_event().await)["reason"], "evicted");
    assert!(c.next_event().await.data.starts_with("busy 2900 "));
    // ...while the quiet room's cursor, as old, lost nothing.
    publish(&srv.hub, &["quiet"], "later");
    let mut q = SseClient::connect(srv.addr, "/sse?room=quiet", &[("last-event-id", &quiet)]).await;
    let e = q.next_event().await;
    assert_eq!(e.data, "later", "{e:?}");
    srv.stop().await;
}

#[tokio::test]
async fn events_past_their_age_leave_the_disk_and_their_cursors_get_the_gap() {
    let dir = TempDir::new("age");
    let config = || {
        HubConfig::default()
            .history(Some(
                HistoryConfig::default().max_age(Duration::from_secs(1)),
            ))
            .history_dir(&dir.0, Fsync::Never)
            .history_segment_bytes(4096)
    };
    let hub = Hub::open(config()).unwrap();
    let body = "z".repeat(300);
    let first = publish(&hub, &["a"], "first");
    for i in 0..100 {
        publish(&hub, &["a"], &format!("{i} {body}"));
    }
    let full = disk_bytes(&dir.0);
    assert!(full > 30_000, "{full}");
    // The sweeper drops them after a second; their segments go (all but the active one).
    eventually("the expired segments to be deleted", || {
        disk_bytes(&dir.0) <= 4096 + 400
    })
    .await;
    drop(hub);
    let hub = Hub::open(config()).unwrap();
    assert!(datas(&hub, "a").await.is_empty());
    assert!(segments(&dir.0).len() <= 2, "{:?}", segments(&dir.0));
    let srv = TestServer::start(options(hub)).await;
    let next = publish(&srv.hub, &["a"], "after");
    let seq = |id: &str| id.rsplit_once('-').unwrap().1.parse::<u64>().unwrap();
    assert_eq!(seq(&next), seq(&first) + 101, "the sequence went on");
    let mut c = SseClient::connect(srv.addr, "/sse?room=a", &[("last-event-id", &first)]).await;
    assert_eq!(gap_of(&c.next_event().await)["reason"], "evicted");
    assert_eq!(c.next_event().await.data, "after");
    srv.stop().await;
}

/// The Mercure hub keeps its topics' history on disk too (a directory of its own): its
/// `urn:uuid:` ids survive a restart.
#[cfg(feature = "mercure")]
#[tokio::test]
async fn a_mercure_hub_keeps_its_history_across_a_restart() {
    use ssehub::{Mercure, MercureConfig};
    let dir = TempDir::new("mercure");
    let config = || {
        MercureConfig::new()
            .anonymous(true)
            .history_dir(&dir.0, Fsync::Never)
    };
    let topic = "https://example.com/books/1";
    let mercure = Mercure::open(config()).unwrap();
    let id = publish(mercure.hub(), &[topic], "first edition");
    assert!(id.starts_with("urn:uuid:"), "{id}");
    drop(mercure);

    let mercure = Mercure::open(config()).unwrap();
    let kept = mercure.hub().history(topic).await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        (kept[0].data.as_str(), kept[0].last_event_id.as_str()),
        ("first edition", id.as_str())
    );
    // A second hub on the same directory is refused, with the reason.
    assert!(matches!(
        Mercure::open(config()),
        Err(ssehub::MercureError::History(_))
    ));
}
