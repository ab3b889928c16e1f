//! Unit tests of the hub: room names, limits, close clean-up, fan-out sharing,
//! keep-alive, and join racing with the last leave.

use super::*;
use crate::Message;

fn conn(hub: &Hub) -> Connection {
    hub.connect(ConnectionConfig::for_tests())
}

#[test]
fn room_names_are_validated() {
    let hub = Hub::new();
    let c = conn(&hub);
    assert!(matches!(hub.join("", &c), Err(JoinError::InvalidRoom(_))));
    assert!(matches!(
        hub.join("a\u{7}", &c),
        Err(JoinError::InvalidRoom(_))
    ));
    let long = "x".repeat(MAX_ROOM_NAME_LEN + 1);
    assert!(matches!(
        hub.join(&long, &c),
        Err(JoinError::InvalidRoom(_))
    ));
    assert_eq!(hub.join(&long[1..], &c), Ok(true));
    assert_eq!(hub.room_count(), 1, "refused joins create no room");
}

#[test]
fn rooms_per_connection_are_capped() {
    let hub = Hub::with_config(HubConfig::default().max_rooms_per_connection(3));
    let c = conn(&hub);
    for r in ["a", "b", "c"] {
        assert_eq!(hub.join(r, &c), Ok(true));
    }
    assert_eq!(hub.join("a", &c), Ok(false), "re-joining is not a new room");
    assert_eq!(hub.join("d", &c), Err(JoinError::TooManyRooms(3)));
    assert!(hub.leave("a", &c));
    assert_eq!(hub.join("d", &c), Ok(true));
}

#[test]
fn closed_connections_leave_everything_and_cannot_join() {
    let hub = Hub::new();
    let c = conn(&hub);
    hub.join("a", &c).unwrap();
    hub.join("b", &c).unwrap();
    c.close();
    assert_eq!(hub.room_count(), 0);
    assert_eq!(hub.connection_count(), 0);
    assert_eq!(hub.join("a", &c), Err(JoinError::Closed));
    assert_eq!(hub.room_count(), 0);
}

#[test]
fn broadcast_counts_recipients_and_shares_one_encoding() {
    let hub = Hub::new();
    let a = conn(&hub);
    let b = conn(&hub);
    hub.join("r", &a).unwrap();
    hub.join("r", &b).unwrap();
    hub.join("s", &b).unwrap();
    let m = Message::new("x");
    assert_eq!(hub.to("r").publish(&m).unwrap().delivered, 2);
    assert_eq!(hub.to("r").except(&a).publish(&m).unwrap().delivered, 1);
    assert_eq!(hub.to(["r", "s"]).publish(&m).unwrap().delivered, 3);
    assert_eq!(
        hub.to(["r", "s"]).unique().publish(&m).unwrap().delivered,
        2
    );
    assert_eq!(hub.to("nobody").publish(&m).unwrap().delivered, 0);
    // Every recipient gets the same allocation, not a copy.
    let waker = futures_util::task::noop_waker();
    for c in [&a, &b] {
        while let Ok(Some(_)) = c.poll_outbox(&waker) {}
    }
    let published = hub.to("r").publish(&Message::new("shared")).unwrap();
    assert_eq!(published.delivered, 2);
    let got: Vec<Bytes> = [&a, &b]
        .iter()
        .map(|c| c.poll_outbox(&waker).unwrap().unwrap())
        .collect();
    assert_eq!(got[0].as_ptr(), got[1].as_ptr(), "one encoding, shared");
    let id = published
        .id
        .expect("`r` keeps history: the hub numbers the event");
    assert_eq!(got[0], format!("id: {id}\ndata: shared\n\n").as_bytes());
}

#[test]
fn keep_alive_pings_an_idle_stream_every_sweep_and_a_busy_one_never() {
    let hub = Hub::new();
    let idle = conn(&hub);
    let busy = conn(&hub);
    let ping = crate::message::comment("ping");
    for _ in 0..3 {
        busy.send_comment("traffic").unwrap();
        let (local, conns) = (&hub.inner.local, hub.connections());
        assert_eq!(
            fanout::to_each(local, &conns, &ping, true),
            1,
            "only the idle stream"
        );
    }
    assert!(!busy.take_active(), "the busy one's traffic was seen");
    let waker = futures_util::task::noop_waker();
    let mut pings = Vec::new();
    while let Ok(Some(b)) = idle.poll_outbox(&waker) {
        pings.extend_from_slice(&b);
    }
    assert_eq!(pings, b": ping\n\n".repeat(3));
}

#[test]
fn an_overflow_is_reported_once_even_across_rooms() {
    let hub = Hub::new();
    let c = hub.connect(ConnectionConfig {
        outbox_limit: 10,
        ..ConnectionConfig::for_tests()
    });
    hub.join("r1", &c).unwrap();
    hub.join("r2", &c).unwrap();
    assert_eq!(
        hub.to("r1")
            .publish(&Message::new("fills the outbox"))
            .unwrap()
            .delivered,
        1
    );
    assert_eq!(
        hub.to(["r1", "r2"])
            .publish(&Message::new("x"))
            .unwrap()
            .delivered,
        0
    );
    assert!(c.is_closed());
    assert_eq!(hub.stats().slow_consumer_closes, 1);
}

#[test]
fn join_racing_with_last_leave_never_strands_a_member() {
    let hub = Hub::new();
    let conns: Vec<Connection> = (0..4).map(|_| conn(&hub)).collect();
    let threads: Vec<_> = conns
        .iter()
        .cloned()
        .map(|c| {
            let hub = hub.clone();
            std::thread::spawn(move || {
                for _ in 0..2000 {
                    hub.join("hot", &c).unwrap();
                    hub.leave("hot", &c);
                }
                hub.join("hot", &c).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(hub.room_size("hot"), 4);
    assert_eq!(
        hub.to("hot").publish(&Message::new("x")).unwrap().delivered,
        4
    );
    for c in &conns {
        c.close();
    }
    assert_eq!(hub.room_count(), 0);
}
