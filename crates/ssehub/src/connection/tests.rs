//! Unit tests of the connection: outbox bound and policy, close-once, direct writes
//! against a mock transport.

use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::pace::Stamp;
use super::*;
use crate::message::Message;
use crate::sync::lock;
use crate::Hub;

fn conn(limit: usize, policy: SlowConsumerPolicy) -> Connection {
    conn_of(&Hub::new(), limit, policy)
}

fn conn_of(hub: &Hub, limit: usize, policy: SlowConsumerPolicy) -> Connection {
    hub.connect(ConnectionConfig {
        outbox_limit: limit,
        policy,
        ..ConnectionConfig::for_tests()
    })
}

fn drain(c: &Connection) -> Vec<u8> {
    let waker = futures_util::task::noop_waker();
    let mut out = Vec::new();
    while let Ok(Some(b)) = c.poll_outbox(&waker) {
        out.extend_from_slice(&b);
    }
    out
}

#[test]
fn frames_are_coalesced_in_order() {
    let c = conn(1 << 20, SlowConsumerPolicy::Close);
    for i in 0..100 {
        c.send_event("n", &i.to_string()).unwrap();
    }
    let waker = futures_util::task::noop_waker();
    let first = c.poll_outbox(&waker).unwrap().unwrap();
    let expected: String = (0..100)
        .map(|i| format!("event: n\ndata: {i}\n\n"))
        .collect();
    assert_eq!(first, expected.as_bytes());
    assert!(c.poll_outbox(&waker).is_err(), "nothing left, waker stored");
    let _ = Context::from_waker(&waker);
}

#[test]
fn hyper_holds_one_piece_at_a_time_and_it_counts_until_dropped() {
    let limit = 64 * 1024;
    let c = conn(limit, SlowConsumerPolicy::Close);
    let event = "x".repeat(4000);
    for _ in 0..8 {
        c.send_event("e", &event).unwrap();
    }
    let queued = c.queued_bytes();
    let wakes = Arc::new(Wakes::default());
    let waker = Waker::from(wakes.clone());
    let piece = c.poll_outbox(&waker).unwrap().unwrap();
    // Joined up to 16 KiB (4 events of 4 KiB and a little), still counted.
    assert!(
        piece.len() <= 16 * 1024 && piece.len() > 12 * 1024,
        "{}",
        piece.len()
    );
    assert_eq!(c.queued_bytes(), queued);
    // Nothing more while hyper holds it (a peer that grants no window keeps it there).
    assert_eq!(c.poll_outbox(&waker), Err(()));
    // What hyper holds fills the bound as queued frames do: the policy applies.
    while c.send_event("e", &event).is_ok() {}
    assert!(c.is_closed());
    assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "woken by the close");
    // Aborted, with no transport handle to end it (mounted elsewhere): the body ends;
    // dropping the piece gives its bytes back.
    assert_eq!(c.poll_outbox(&waker), Ok(None));
    assert_eq!(c.queued_bytes(), piece.len());
    drop(piece);
    assert_eq!(c.queued_bytes(), 0);
}

#[test]
fn dropping_the_piece_wakes_a_body_with_frames_waiting() {
    let c = conn(1 << 20, SlowConsumerPolicy::Close);
    c.send_event("e", "1").unwrap();
    let wakes = Arc::new(Wakes::default());
    let waker = Waker::from(wakes.clone());
    let first = c.poll_outbox(&waker).unwrap().unwrap();
    // Nothing queued: parked as usual, and the drop wakes nobody.
    assert_eq!(c.poll_outbox(&waker), Err(()));
    c.send_event("e", "2").unwrap();
    assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "woken by the frame");
    assert_eq!(c.poll_outbox(&waker), Err(()), "held back behind the first");
    drop(first);
    assert_eq!(wakes.0.load(Ordering::SeqCst), 2, "woken by the drop");
    let second = c.poll_outbox(&waker).unwrap().unwrap();
    assert_eq!(&second[..], b"event: e\ndata: 2\n\n");
}

#[test]
fn an_aborted_body_with_a_transport_handle_waits_for_the_handle() {
    let c = Hub::new().connect(ConnectionConfig {
        abort: Some(TransportAbort::new()),
        ..ConnectionConfig::for_tests()
    });
    c.send_event("e", "1").unwrap();
    let waker = futures_util::task::noop_waker();
    let _piece = c.poll_outbox(&waker).unwrap().unwrap();
    c.abort();
    // An end would have hyper finish the response behind data the peer may never take;
    // the handle ends the transport (or the HTTP/2 stream's task) instead.
    assert_eq!(c.poll_outbox(&waker), Err(()));
}

#[test]
fn overflow_closes_by_default() {
    let hub = Hub::new();
    let c = conn_of(&hub, 100, SlowConsumerPolicy::Close);
    c.send_event("e", &"x".repeat(60)).unwrap();
    assert_eq!(c.send_event("e", &"x".repeat(60)), Err(SendError::Overflow));
    assert!(c.is_closed());
    assert_eq!(c.send_event("e", "y"), Err(SendError::Closed));
    assert!(drain(&c).is_empty(), "aborted: queue dropped");
    assert_eq!(hub.stats().slow_consumer_closes, 1);
}

#[test]
fn overflow_drops_under_drop_policy() {
    let c = conn(100, SlowConsumerPolicy::DropEvent);
    c.send_event("e", &"x".repeat(60)).unwrap();
    assert_eq!(c.send_event("e", &"y".repeat(60)), Err(SendError::Overflow));
    assert!(!c.is_closed());
    assert_eq!(c.dropped_events(), 1);
    assert_eq!(drain(&c).len(), "event: e\ndata: \n\n".len() + 60);
    c.send_event("e", "z").unwrap();
}

#[test]
fn close_flushes_then_ends() {
    let c = conn(1 << 20, SlowConsumerPolicy::Close);
    c.send_event("e", "last").unwrap();
    c.close();
    assert_eq!(drain(&c), b"event: e\ndata: last\n\n");
    let waker = futures_util::task::noop_waker();
    assert_eq!(c.poll_outbox(&waker), Ok(None));
}

#[test]
fn closed_fires_once_under_concurrent_close() {
    for _ in 0..50 {
        let c = conn(1 << 20, SlowConsumerPolicy::Close);
        let fired = Arc::new(AtomicUsize::new(0));
        let f = fired.clone();
        c.on_closed(move |_| {
            f.fetch_add(1, Ordering::SeqCst);
        });
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let c = c.clone();
                std::thread::spawn(move || {
                    if i % 2 == 0 {
                        c.close()
                    } else {
                        c.transport_closed()
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(fired.load(Ordering::SeqCst), 1);
        // Registering after close runs at once, exactly once.
        let f = fired.clone();
        c.on_closed(move |_| {
            f.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(fired.load(Ordering::SeqCst), 2);
    }
}

/// A transport that takes `take` bytes of each frame (all when `None`), or fails.
#[derive(Default)]
struct Sink {
    written: Mutex<Vec<u8>>,
    take: Mutex<Option<usize>>,
    fail: AtomicBool,
    panic: AtomicBool,
    /// Run during the write.
    during: Mutex<Option<Connection>>,
}

impl DirectSink for Sink {
    fn try_send(&self, frames: &[Bytes]) -> io::Result<Option<Bytes>> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        assert!(!self.panic.load(Ordering::SeqCst), "the sink panics");
        let frame = frames.concat();
        if let Some(c) = lock(&self.during).take() {
            c.abort();
        }
        let n = lock(&self.take).unwrap_or(frame.len()).min(frame.len());
        lock(&self.written).extend_from_slice(&frame[..n]);
        Ok((n < frame.len()).then(|| Bytes::copy_from_slice(&frame[n..])))
    }
}

#[derive(Default)]
struct Wakes(AtomicUsize);

impl std::task::Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A connection on a direct transport, its task parked; and the task's wake count.
fn direct(window: Duration) -> (Connection, Arc<Sink>, Arc<Wakes>, Waker) {
    direct_with(window, true)
}

/// [`direct`], batching after every write (not only when overtaken) unless `adaptive`.
fn direct_with(window: Duration, adaptive: bool) -> (Connection, Arc<Sink>, Arc<Wakes>, Waker) {
    let c = Hub::new().connect(ConnectionConfig {
        abort: Some(TransportAbort::new()),
        batch_window: window,
        adaptive,
        ..ConnectionConfig::for_tests()
    });
    let sink = Arc::new(Sink::default());
    c.attach_sink(sink.clone());
    let wakes = Arc::new(Wakes::default());
    let waker = Waker::from(wakes.clone());
    assert!(c.poll_wire(&waker, &mut Vec::new()).is_pending());
    (c, sink, wakes, waker)
}

fn frame(data: &str) -> Bytes {
    Message::new(data).encode()
}

/// A stamp of `c`'s hub, outside any fan-out.
fn stamp(c: &Connection) -> Stamp {
    Stamp::now(c.owner().clock())
}

#[test]
fn while_the_server_keeps_up_every_event_is_written_at_once() {
    let (c, sink, wakes, _waker) = direct(Duration::from_secs(3600));
    for i in 0..3 {
        c.send(&Message::new(i.to_string())).unwrap();
    }
    assert_eq!(
        &lock(&sink.written)[..],
        b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    );
    assert_eq!(
        wakes.0.load(Ordering::SeqCst),
        0,
        "no task woken, no window waited"
    );
}

#[test]
fn a_write_overtaken_by_a_later_fan_out_lets_the_next_events_gather() {
    let (c, sink, wakes, waker) = direct(Duration::from_secs(3600));
    let Enqueued::Direct(claim) = c.enqueue(frame("1"), Some(stamp(&c))) else {
        panic!("an idle stream is claimed")
    };
    // Two more publications' fan-outs begin before this write is done: behind. (One
    // would be an overlap.)
    let _later = Stamp::fanout(c.owner().clock(), 1);
    let _later = Stamp::fanout(c.owner().clock(), 1);
    claim.write(&mut Vec::new(), c.owner().clock());
    c.send(&Message::new("2")).unwrap();
    c.send(&Message::new("3")).unwrap();
    assert_eq!(&lock(&sink.written)[..], b"data: 1\n\n", "2 and 3 wait");
    assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "for the task");
    let mut pieces = Vec::new();
    assert!(matches!(
        c.poll_wire(&waker, &mut pieces),
        Poll::Ready(Wire::Frames(Some(_)))
    ));
    assert_eq!(
        pieces,
        [frame("2"), frame("3")],
        "one write for both, after the window"
    );
}

#[test]
fn a_stream_woken_by_a_wide_fan_out_waits_its_turn_after_its_write() {
    let (c, _sink, _wakes, waker) = direct(Duration::from_millis(20));
    let clock = c.owner().clock().clone();
    let turn = Duration::from_secs(3600);
    clock.set_turn(turn);
    let write = |f: Option<Stamp>, data: &str| {
        let mut pieces = Vec::new();
        // No stamp: queued by a fan-out too wide to write directly, for the task.
        assert!(matches!(c.enqueue(frame(data), f), Enqueued::Yes));
        let Poll::Ready(Wire::Frames(not_before)) = c.poll_wire(&waker, &mut pieces) else {
            panic!("frames for the task")
        };
        assert_eq!(pieces, [frame(data)]);
        c.wrote(&clock, clock.now(), pieces.len());
        not_before
    };
    assert_eq!(write(None, "1"), None, "the first write at once");
    let next = write(None, "2").expect("the next write waits its turn");
    assert!(next > Instant::now() + turn - Duration::from_secs(60));
    // Frames of a narrow fan-out (stamped; the stream waits, so they are queued): the
    // turn its last write began is waited, then no other.
    assert!(write(Some(stamp(&c)), "3").is_some());
    assert_eq!(
        write(Some(stamp(&c)), "4"),
        None,
        "no turn without a wide fan-out"
    );
}

#[test]
fn an_idle_stream_is_written_by_the_sender_a_busy_one_by_its_task() {
    let (c, sink, wakes, waker) = direct_with(Duration::from_secs(3600), false);
    c.send(&Message::new("1")).unwrap();
    assert_eq!(&lock(&sink.written)[..], b"data: 1\n\n");
    assert_eq!(c.queued_bytes(), 0);
    assert_eq!(wakes.0.load(Ordering::SeqCst), 0, "the task was not woken");
    // Inside the batching window: queued for the task, which is woken.
    c.send(&Message::new("2")).unwrap();
    assert_eq!(lock(&sink.written).len(), 9);
    assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
    let mut pieces = Vec::new();
    match c.poll_wire(&waker, &mut pieces) {
        Poll::Ready(Wire::Frames(Some(_))) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(pieces, [frame("2")]);
}

#[test]
fn without_a_window_every_event_of_an_idle_stream_goes_direct() {
    let (c, sink, wakes, _waker) = direct(Duration::ZERO);
    for i in 0..3 {
        c.send(&Message::new(i.to_string())).unwrap();
    }
    assert_eq!(
        &lock(&sink.written)[..],
        b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    );
    assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
}

#[test]
fn what_a_partial_write_left_goes_out_first() {
    let (c, sink, wakes, waker) = direct(Duration::ZERO);
    *lock(&sink.take) = Some(3);
    c.send(&Message::new("abc")).unwrap();
    assert_eq!(&lock(&sink.written)[..], b"dat");
    assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "the task must finish it");
    assert_eq!(c.queued_bytes(), "a: abc\n\n".len());
    // Queued behind it, not written directly.
    c.send(&Message::new("d")).unwrap();
    assert_eq!(lock(&sink.written).len(), 3);
    let mut pieces = Vec::new();
    match c.poll_wire(&waker, &mut pieces) {
        Poll::Ready(Wire::Raw(rest)) => assert_eq!(rest, "a: abc\n\n"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        c.poll_wire(&waker, &mut pieces),
        Poll::Ready(Wire::Frames(_))
    ));
    assert_eq!(pieces, [frame("d")]);
}

#[test]
fn the_task_waits_for_a_direct_write_in_flight_even_to_end() {
    let (c, sink, wakes, waker) = direct(Duration::ZERO);
    let Enqueued::Direct(claim) = c.enqueue(frame("1"), Some(stamp(&c))) else {
        panic!("an idle stream is claimed")
    };
    c.send(&Message::new("2")).unwrap();
    c.close();
    let mut pieces = Vec::new();
    assert!(c.poll_wire(&waker, &mut pieces).is_pending());
    let woken = wakes.0.load(Ordering::SeqCst);
    // What was queued behind the claim goes out in the same write.
    claim.write(&mut pieces, c.owner().clock());
    assert!(wakes.0.load(Ordering::SeqCst) > woken);
    assert_eq!(&lock(&sink.written)[..], b"data: 1\n\ndata: 2\n\n");
    assert!(matches!(
        c.poll_wire(&waker, &mut pieces),
        Poll::Ready(Wire::End)
    ));
}

#[test]
fn a_claim_dropped_unwritten_leaves_the_queue_to_the_task() {
    let (c, sink, _wakes, waker) = direct(Duration::ZERO);
    let claim = c.enqueue(frame("1"), Some(stamp(&c)));
    c.send(&Message::new("2")).unwrap();
    drop(claim);
    let mut pieces = Vec::new();
    assert!(matches!(
        c.poll_wire(&waker, &mut pieces),
        Poll::Ready(Wire::Frames(_))
    ));
    assert_eq!(pieces, [frame("1"), frame("2")]);
    assert!(lock(&sink.written).is_empty());
}

/// How many publish-to-socket latencies `c`'s hub has recorded.
fn latencies(c: &Connection) -> u64 {
    c.owner().metrics().latency_seconds.snapshot().count
}

#[test]
fn a_timed_frame_written_directly_records_its_latency_once() {
    let (c, sink, wakes, _waker) = direct(Duration::ZERO);
    let timed = c.enqueue_timed(frame("1"), Kind::Plain, Some(stamp(&c)), Instant::now());
    let Enqueued::Direct(claim) = timed else {
        panic!("an idle stream is claimed")
    };
    claim.write(&mut Vec::new(), c.owner().clock());
    assert_eq!(&lock(&sink.written)[..], b"data: 1\n\n");
    assert_eq!(latencies(&c), 1);
    c.send(&Message::new("2")).unwrap();
    assert_eq!(&lock(&sink.written)[..], b"data: 1\n\ndata: 2\n\n");
    assert_eq!(latencies(&c), 1, "an untimed frame records nothing");
    assert_eq!(wakes.0.load(Ordering::SeqCst), 0, "both written directly");
}

#[test]
fn a_timed_frame_behind_a_claim_dropped_unwritten_is_timed_when_taken() {
    let (c, sink, _wakes, waker) = direct(Duration::ZERO);
    // The claim's own frame is larger than a write: the task takes it alone, first.
    let large = Bytes::from(format!("data: {}\n\n", "x".repeat(outbox::MAX_WRITE)));
    let claim = c.enqueue(large.clone(), Some(stamp(&c)));
    let behind = c.enqueue_timed(frame("2"), Kind::Plain, Some(stamp(&c)), Instant::now());
    assert!(matches!(behind, Enqueued::Yes), "queued behind the claim");
    drop(claim);
    let mut pieces = Vec::new();
    assert!(matches!(
        c.poll_wire(&waker, &mut pieces),
        Poll::Ready(Wire::Frames(_))
    ));
    assert_eq!(pieces, [large]);
    assert_eq!(latencies(&c), 0, "the timed frame is still queued");
    pieces.clear();
    assert!(matches!(
        c.poll_wire(&waker, &mut pieces),
        Poll::Ready(Wire::Frames(_))
    ));
    assert_eq!(pieces, [frame("2")]);
    assert_eq!(latencies(&c), 1);
    assert!(lock(&sink.written).is_empty());
}

#[test]
fn a_stream_aborted_during_a_direct_write_keeps_nothing() {
    let (c, sink, _wakes, waker) = direct(Duration::ZERO);
    *lock(&sink.take) = Some(3);
    *lock(&sink.during) = Some(c.clone());
    let _ = c.send(&Message::new("1"));
    assert!(c.is_closed());
    assert_eq!(&lock(&sink.written)[..], b"dat", "the write was cut short");
    assert_eq!(c.queued_bytes(), 0);
    assert!(matches!(
        c.poll_wire(&waker, &mut Vec::new()),
        Poll::Ready(Wire::Abort)
    ));
}

#[test]
fn a_broadcast_from_a_current_thread_runtime_writes_at_once() {
    // Spawned there, the writes would wait for that runtime to run again (here:
    // never), and hold both streams meanwhile.
    let hub = Hub::with_config(crate::HubConfig::default().history(None));
    let mut sinks = Vec::new();
    for _ in 0..2 {
        let c = hub.connect(ConnectionConfig::for_tests());
        let sink = Arc::new(Sink::default());
        c.attach_sink(sink.clone());
        let waker = futures_util::task::noop_waker();
        assert!(c.poll_wire(&waker, &mut Vec::new()).is_pending());
        hub.join("r", &c).unwrap();
        sinks.push((c, sink));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(
        rt.block_on(async { hub.to("r").publish(&Message::new("x")).unwrap().delivered }),
        2
    );
    for (_, sink) in &sinks {
        assert_eq!(&lock(&sink.written)[..], b"data: x\n\n");
    }
}

#[test]
fn a_panicking_transport_releases_its_claim() {
    let (c, sink, _wakes, waker) = direct(Duration::ZERO);
    sink.panic.store(true, Ordering::SeqCst);
    let Enqueued::Direct(claim) = c.enqueue(frame("1"), Some(stamp(&c))) else {
        panic!("an idle stream is claimed")
    };
    let caught = std::panic::catch_unwind(AssertUnwindSafe(|| {
        claim.write(&mut Vec::new(), c.owner().clock())
    }));
    assert!(caught.is_err());
    // Not stuck behind a claim that will never end: the task parks, and the next
    // event is written directly again.
    assert!(c.poll_wire(&waker, &mut Vec::new()).is_pending());
    sink.panic.store(false, Ordering::SeqCst);
    c.send(&Message::new("2")).unwrap();
    assert_eq!(&lock(&sink.written)[..], b"data: 2\n\n");
}

#[test]
fn a_close_during_the_batching_window_hands_the_socket_back() {
    let (c, sink, _wakes, waker) = direct_with(Duration::from_secs(3600), false);
    c.send(&Message::new("1")).unwrap();
    c.send(&Message::new("2")).unwrap();
    let mut pieces = Vec::new();
    assert!(matches!(
        c.poll_wire(&waker, &mut pieces),
        Poll::Ready(Wire::Frames(Some(_)))
    ));
    c.close();
    assert!(matches!(c.take_more(&mut pieces), Some(Wire::End)));
    assert_eq!(
        Arc::strong_count(&sink),
        1,
        "only the test holds the socket"
    );
}

#[test]
fn a_failed_direct_write_ends_the_stream() {
    let (c, sink, _wakes, waker) = direct(Duration::ZERO);
    sink.fail.store(true, Ordering::SeqCst);
    let _ = c.send(&Message::new("1"));
    assert!(c.is_closed());
    assert_eq!(c.send(&Message::new("2")), Err(SendError::Closed));
    assert!(matches!(
        c.poll_wire(&waker, &mut Vec::new()),
        Poll::Ready(Wire::Abort)
    ));
}

#[test]
fn tags_are_typed() {
    let c = conn(1 << 20, SlowConsumerPolicy::Close);
    c.set_tag(7u32);
    c.set_tag("name".to_string());
    assert_eq!(c.tag::<u32>(), Some(7));
    assert_eq!(c.take_tag::<String>().as_deref(), Some("name"));
    assert_eq!(c.tag::<String>(), None);
}

/// A claim on plain TCP writes to the socket's descriptor and holds no reference to the
/// transport: the outbox keeps it, so the descriptor open, until the claim is released,
/// even when the stream is aborted and its task lets go of the socket meanwhile. Then the
/// release lets go: the peer reads the claim's chunk, then the end of the connection.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn an_aborted_stream_keeps_its_socket_open_until_the_claim_on_it_is_released() {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut peer = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let socket = Arc::new(listener.accept().await.unwrap().0);
    let c = Hub::new().connect(ConnectionConfig {
        abort: Some(TransportAbort::new()),
        ..ConnectionConfig::for_tests()
    });
    c.attach_sink(socket.clone());
    let waker = Waker::from(Arc::new(Wakes::default()));
    assert!(c.poll_wire(&waker, &mut Vec::new()).is_pending());
    let Enqueued::Direct(claim) = c.enqueue(frame("1"), Some(stamp(&c))) else {
        panic!("an idle stream is claimed")
    };
    assert_eq!(Arc::strong_count(&socket), 2, "the claim took no reference");
    c.abort();
    assert_eq!(Arc::strong_count(&socket), 2, "kept while the claim is out");
    let weak = Arc::downgrade(&socket);
    drop(socket); // the stream's task ends
    assert!(
        weak.upgrade().is_some(),
        "the outbox still holds the socket"
    );
    claim.write(&mut Vec::new(), c.owner().clock());
    assert!(weak.upgrade().is_none(), "the release let go of it");
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), peer.read_to_end(&mut got))
        .await
        .expect("the socket was closed")
        .unwrap();
    assert_eq!(&got[..], b"9\r\ndata: 1\n\n\r\n");
}
