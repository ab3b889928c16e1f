//! A client that stops reading cannot hurt the others: broadcasts never wait on its
//! socket, a fast client in the same room still gets every event in order, the
//! slow-consumer policy fires (close, or drop events) and shows in the statistics, and
//! the server's memory stays bounded by the outbox limit.

mod common;

use common::{
    eventually, rss, stalled_client, until_closed, within, Handout, Logs, SseClient, TestServer,
};
use ssehub::{Connection, Message, SlowConsumerPolicy, SseOptions};
use tokio::net::TcpStream;

/// Bytes of data per event.
const PAYLOAD: usize = 4096;
/// Events per batch: the fast client reads a batch before the next one is sent, so its
/// own outbox (64 KiB) never fills. A batch is half the outbox.
const BATCH: usize = 8;
/// 768 batches of 32 KiB: 24 MiB in all, far more than the kernel buffers of the
/// stalled client's connection can absorb.
const BATCHES: usize = 768;
const OUTBOX: usize = 64 * 1024;

/// The tests measure the memory of the whole process: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A server with a fast client and a stalled one in room `r`.
struct Scene {
    srv: TestServer,
    fast: SseClient,
    fast_conn: Connection,
    slow: TcpStream,
    slow_conn: Connection,
}

impl Scene {
    async fn open(policy: SlowConsumerPolicy) -> Scene {
        let (options, mut handout) = Handout::wrap(
            SseOptions::new()
                .keep_alive(None)
                .outbox_limit(OUTBOX)
                .slow_consumer(policy)
                // The fast client reads each batch before the next is sent: a batching
                // window would add one window per batch and test nothing here.
                .batch_window(std::time::Duration::ZERO),
        );
        let srv = TestServer::start(options).await;
        let (fast, fast_conn) = handout.open(&srv, "/sse?room=r").await;
        let slow = stalled_client(srv.addr, "/sse?room=r").await;
        let slow_conn = handout.next().await;
        eventually("both in the room", || srv.hub.room_size("r") == 2).await;
        Scene {
            srv,
            fast,
            fast_conn,
            slow,
            slow_conn,
        }
    }
}

/// Broadcast BATCHES batches to room `r`; the fast client must get every event, in
/// order. Returns the peak resident memory seen over the run.
async fn broadcast_and_follow(srv: &TestServer, fast: &mut SseClient) -> u64 {
    let payload = "x".repeat(PAYLOAD);
    let mut peak = 0;
    within("every batch broadcast and received", async {
        for b in 0..BATCHES {
            for i in 0..BATCH {
                let n = b * BATCH + i;
                let m = Message::builder()
                    .id(n.to_string())
                    .data(payload.as_str())
                    .build()
                    .unwrap();
                // Never waits on a socket: the fast client is reached every time.
                assert!(srv.hub.to("r").publish(&m).unwrap().delivered >= 1);
            }
            for i in 0..BATCH {
                let e = fast.next_event().await;
                assert_eq!(e.last_event_id, (b * BATCH + i).to_string(), "in order");
                assert_eq!(e.data.len(), PAYLOAD);
            }
            fast.raw.clear();
            peak = peak.max(rss());
        }
    })
    .await;
    peak
}

#[tokio::test]
async fn stalled_client_is_closed_by_policy_and_the_others_get_everything() {
    let _serial = SERIAL.lock().await;
    let (logs, _log_guard) = Logs::capture();
    let Scene {
        srv,
        mut fast,
        fast_conn: _fast_conn,
        mut slow,
        slow_conn,
    } = Scene::open(SlowConsumerPolicy::Close).await;
    let before = rss();

    let peak = broadcast_and_follow(&srv, &mut fast).await;

    assert!(slow_conn.is_closed(), "the stalled client was closed");
    let stats = srv.hub.stats();
    assert_eq!(stats.slow_consumer_closes, 1, "{stats:?}");
    assert_eq!(stats.dropped_events, 0, "{stats:?}");
    assert_eq!(stats.connections, 1, "{stats:?}");
    assert_eq!(srv.hub.room_size("r"), 1);
    assert_eq!(
        logs.count("slow consumer: outbox full, closing connection"),
        1
    );
    assert!(!slow_conn.rooms().contains(&"r".to_string()));
    // 24 MiB went out; holding it for the stalled client would show here.
    let growth = peak.saturating_sub(before);
    assert!(
        growth < 12 * 1024 * 1024,
        "memory grew by {growth} bytes while a client was stalled"
    );
    // The server dropped the transport: what was in flight drains, then the socket ends.
    until_closed("the stalled client's socket to end", &mut slow).await;
    // The fast client is still served.
    srv.hub.to("r").publish(&Message::new("after")).unwrap();
    assert_eq!(fast.next_event().await.data, "after");
    srv.stop().await;
}

#[tokio::test]
async fn stalled_client_misses_events_under_drop_policy_and_stays() {
    let _serial = SERIAL.lock().await;
    let (logs, _log_guard) = Logs::capture();
    let Scene {
        srv,
        mut fast,
        fast_conn: _fast_conn,
        slow: _slow,
        slow_conn,
    } = Scene::open(SlowConsumerPolicy::DropEvent).await;
    let before = rss();

    let peak = broadcast_and_follow(&srv, &mut fast).await;

    assert!(!slow_conn.is_closed(), "the stalled client stays");
    let stats = srv.hub.stats();
    assert_eq!(stats.slow_consumer_closes, 0, "{stats:?}");
    assert!(stats.dropped_events > 0, "{stats:?}");
    assert_eq!(slow_conn.dropped_events(), stats.dropped_events);
    assert_eq!(stats.connections, 2, "{stats:?}");
    assert_eq!(srv.hub.room_size("r"), 2);
    assert!(stats.dropped_events > 1);
    assert_eq!(
        logs.count("slow consumer: outbox full, dropping events"),
        1,
        "logged once per connection, not once per event"
    );
    assert!(slow_conn.queued_bytes() <= OUTBOX);
    let growth = peak.saturating_sub(before);
    assert!(
        growth < 12 * 1024 * 1024,
        "memory grew by {growth} bytes while a client was stalled"
    );
    srv.stop().await;
}
