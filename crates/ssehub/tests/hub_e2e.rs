//! Rooms and broadcast over real connections: join, leave, except, many rooms with and
//! without de-duplication, return values and statistics.

mod common;

use common::*;
use ssehub::{Broadcast, Connection, Hub, JoinError, Message, SseOptions};

/// Every event `client` receives before the one whose data is `marker`, as
/// `(event, data)` pairs. A marker broadcast to `__all` fences off what came before.
async fn events_before(client: &mut SseClient, marker: &str) -> Vec<(String, String)> {
    let mut got = Vec::new();
    loop {
        let e = client.next_event().await;
        if e.data == marker {
            return got;
        }
        got.push((e.event, e.data));
    }
}

/// A server without keep-alives, and the hand-out of its streams' connections.
async fn start() -> (TestServer, Handout) {
    let (options, handout) = Handout::wrap(SseOptions::new().keep_alive(None));
    (TestServer::start(options).await, handout)
}

/// Three streams: `a` in room r1, `b` in r1 and r2, `c` in r2.
async fn open_a_b_c(srv: &TestServer, handout: &mut Handout) -> [(SseClient, Connection); 3] {
    [
        handout.open(srv, "/sse?room=r1").await,
        handout.open(srv, "/sse?room=r1&room=r2").await,
        handout.open(srv, "/sse?room=r2").await,
    ]
}

fn ev(event: &str, data: &str) -> (String, String) {
    (event.to_owned(), data.to_owned())
}

fn msg(event: &str, data: &str) -> Message {
    Message::builder().event(event).data(data).build().unwrap()
}

/// Publish `m` as `to` says; how many streams it reached.
fn delivered(to: Broadcast<'_>, m: &Message) -> usize {
    to.publish(m).unwrap().delivered
}

/// Publish the marker `#1` to every stream, for [`events_before`]; how many it reached.
fn fence(hub: &Hub) -> usize {
    delivered(hub.to("__all"), &Message::new("#1"))
}

#[tokio::test]
async fn broadcast_reaches_exactly_the_room() {
    let (srv, mut handout) = start().await;
    let [(mut a, _ca), (mut b, cb), (mut c, _cc)] = open_a_b_c(&srv, &mut handout).await;
    let hub = &srv.hub;

    assert_eq!(delivered(hub.to("r1"), &msg("m", "to r1")), 2);
    assert_eq!(delivered(hub.to("r2"), &msg("m", "to r2")), 2);
    assert_eq!(delivered(hub.to("nobody"), &msg("m", "lost")), 0);
    assert_eq!(
        delivered(hub.to("r1").except(&cb), &msg("m", "r1 but b")),
        1
    );
    assert_eq!(delivered(hub.to("__all"), &msg("notice", "hello all")), 3);
    assert_eq!(fence(hub), 3);

    assert_eq!(
        events_before(&mut a, "#1").await,
        vec![
            ev("m", "to r1"),
            ev("m", "r1 but b"),
            ev("notice", "hello all")
        ]
    );
    assert_eq!(
        events_before(&mut b, "#1").await,
        vec![
            ev("m", "to r1"),
            ev("m", "to r2"),
            ev("notice", "hello all")
        ]
    );
    assert_eq!(
        events_before(&mut c, "#1").await,
        vec![ev("m", "to r2"), ev("notice", "hello all")]
    );
    srv.stop().await;
}

#[tokio::test]
async fn broadcast_many_duplicates_unless_unique() {
    let (srv, mut handout) = start().await;
    let [(mut a, _ca), (mut b, cb), (mut c, _cc)] = open_a_b_c(&srv, &mut handout).await;
    let hub = &srv.hub;

    assert_eq!(delivered(hub.to(["r1", "r2"]), &msg("m", "dup")), 4);
    assert_eq!(
        delivered(hub.to(["r1", "r2"]).unique(), &msg("m", "once")),
        3
    );
    assert_eq!(
        delivered(
            hub.to(["r1", "r2"]).unique().except(&cb),
            &msg("m", "once but b")
        ),
        2
    );
    assert_eq!(fence(hub), 3);

    assert_eq!(
        events_before(&mut a, "#1").await,
        vec![ev("m", "dup"), ev("m", "once"), ev("m", "once but b")]
    );
    assert_eq!(
        events_before(&mut b, "#1").await,
        vec![ev("m", "dup"), ev("m", "dup"), ev("m", "once")],
        "in both rooms: two copies from broadcast_many, one from the unique one"
    );
    assert_eq!(
        events_before(&mut c, "#1").await,
        vec![ev("m", "dup"), ev("m", "once"), ev("m", "once but b")]
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_room_named_twice_in_one_publish_is_one_room() {
    let (srv, mut handout) = start().await;
    let [(mut a, _ca), (mut b, _cb), (mut c, _cc)] = open_a_b_c(&srv, &mut handout).await;
    let hub = &srv.hub;
    // Once per distinct room: a (r1) once, b (r1, r2) twice, c (r2) once.
    assert_eq!(
        delivered(hub.to(["r1", "r2", "r1", "r1"]), &msg("m", "x")),
        4
    );
    let many = vec!["r1"; 10_000];
    assert_eq!(delivered(hub.to(&many), &msg("m", "y")), 2);
    assert_eq!(fence(hub), 3);
    assert_eq!(
        events_before(&mut a, "#1").await,
        vec![ev("m", "x"), ev("m", "y")]
    );
    assert_eq!(
        events_before(&mut b, "#1").await,
        vec![ev("m", "x"), ev("m", "x"), ev("m", "y")]
    );
    assert_eq!(events_before(&mut c, "#1").await, vec![ev("m", "x")]);
    srv.stop().await;
}

#[tokio::test]
async fn a_publish_to_more_distinct_rooms_than_the_cap_is_refused() {
    let (srv, mut handout) = start().await;
    let [(mut a, _ca), _, _] = open_a_b_c(&srv, &mut handout).await;
    let hub = &srv.hub;
    let mut rooms: Vec<String> = (0..256).map(|i| format!("x{i}")).collect();
    rooms[0] = "r1".into();
    assert_eq!(delivered(hub.to(&rooms), &msg("m", "256")), 2);
    rooms.push("x256".into());
    assert_eq!(
        hub.to(&rooms).publish(&msg("m", "257")),
        Err(ssehub::PublishError::TooManyRooms {
            rooms: 257,
            max: 256
        })
    );
    // Nothing is sent when the publication is refused.
    assert!(hub.to(&rooms).publish(&msg("m", "257 too")).is_err());
    assert_eq!(fence(hub), 3);
    assert_eq!(events_before(&mut a, "#1").await, vec![ev("m", "256")]);
    srv.stop().await;
}

#[tokio::test]
async fn join_and_leave_over_live_streams() {
    let (srv, mut handout) = start().await;
    let (mut a, ca) = handout.open(&srv, "/sse").await;
    let (mut b, cb) = handout.open(&srv, "/sse").await;
    let hub = &srv.hub;

    assert_eq!(hub.join("chat", &ca), Ok(true));
    assert_eq!(hub.join("chat", &ca), Ok(false), "already a member");
    assert_eq!(hub.join("chat", &cb), Ok(true));
    assert_eq!(delivered(hub.to("chat"), &Message::new("both")), 2);

    assert!(hub.leave("chat", &cb));
    assert!(!hub.leave("chat", &cb), "leave is idempotent");
    assert!(!hub.leave("chat", &cb));
    assert!(!hub.leave("never-joined", &cb));
    assert_eq!(delivered(hub.to("chat"), &Message::new("only a")), 1);

    assert!(hub.leave("chat", &ca));
    assert!(
        !hub.room_names().contains(&"chat".to_owned()),
        "the emptied room is gone"
    );
    assert_eq!(delivered(hub.to("chat"), &Message::new("nobody")), 0);
    // A room comes back on the next join.
    assert_eq!(hub.join("chat", &cb), Ok(true));
    assert_eq!(delivered(hub.to("chat"), &Message::new("b again")), 1);

    assert_eq!(fence(hub), 2);
    let data = |v: Vec<(String, String)>| v.into_iter().map(|(_, d)| d).collect::<Vec<_>>();
    assert_eq!(data(events_before(&mut a, "#1").await), ["both", "only a"]);
    assert_eq!(data(events_before(&mut b, "#1").await), ["both", "b again"]);

    assert_eq!(
        hub.join("bad\nroom", &ca),
        Err(JoinError::InvalidRoom("it contains a control character"))
    );
    assert!(matches!(hub.join("", &ca), Err(JoinError::InvalidRoom(_))));
    let other = ssehub::Hub::new();
    assert_eq!(other.join("x", &ca), Err(JoinError::OtherHub));
    srv.stop().await;
}

#[tokio::test]
async fn statistics_follow_the_streams() {
    let (srv, mut handout) = start().await;
    let hub = srv.hub.clone();
    assert_eq!((hub.connection_count(), hub.room_count()), (0, 0));

    let (a, ca) = handout.open(&srv, "/sse?room=r1").await;
    let (b, cb) = handout.open(&srv, "/sse?room=r1&room=r2").await;
    assert_eq!(hub.connection_count(), 2);
    assert_eq!(hub.room_count(), 3, "__all, r1, r2");
    assert_eq!(hub.room_size("__all"), 2);
    assert_eq!(hub.room_size("r1"), 2);
    assert_eq!(hub.room_size("r2"), 1);
    assert_eq!(hub.room_size("none"), 0);
    let mut rooms = cb.rooms();
    rooms.sort();
    assert_eq!(rooms, ["__all", "r1", "r2"]);
    let mut names = hub.room_names();
    names.sort();
    assert_eq!(names, ["__all", "r1", "r2"]);
    let sizes = hub.room_sizes();
    assert_eq!((sizes["__all"], sizes["r1"], sizes["r2"]), (2, 2, 1));
    assert_eq!(hub.connection(ca.id()), Some(ca.clone()));
    let members = hub.members("r2");
    assert_eq!(members, vec![cb.clone()]);

    let before = hub.stats();
    assert_eq!(delivered(hub.to(["r1", "r2"]), &Message::new("x")), 3);
    let after = hub.stats();
    assert_eq!(after.events_published, before.events_published + 1);
    assert_eq!(after.deliveries, before.deliveries + 3);
    assert_eq!(after.connections_total, 2);

    // b's client goes away: its rooms shrink, r2 disappears.
    drop(b);
    eventually("b is gone", || hub.connection_count() == 1).await;
    assert!(cb.is_closed());
    assert_eq!(hub.room_size("r1"), 1);
    assert_eq!(hub.room_size("r2"), 0);
    assert_eq!(hub.room_count(), 2);
    assert_eq!(hub.connection(cb.id()), None);
    assert_eq!(
        hub.join("r1", &cb),
        Err(JoinError::Closed),
        "a closed connection cannot join"
    );
    assert!(cb.rooms().is_empty());

    // Closing from the server side has the same effect.
    ca.close();
    assert_eq!((hub.connection_count(), hub.room_count()), (0, 0));
    drop(a);
    srv.stop().await;
}

#[tokio::test]
async fn ids_reach_the_client_and_close_flushes() {
    let (srv, mut handout) = start().await;
    let (mut a, ca) = handout.open(&srv, "/sse").await;
    let m = Message::builder()
        .id("41")
        .event("chat")
        .data("line one\nline two")
        .build()
        .unwrap();
    assert_eq!(delivered(srv.hub.to("__all"), &m), 1);
    ca.send_event("", "last words").unwrap();
    ca.close();
    let e = a.next_event().await;
    assert_eq!(
        (e.event.as_str(), e.data.as_str(), e.last_event_id.as_str()),
        ("chat", "line one\nline two", "41")
    );
    let e = a.next_event().await;
    assert_eq!(
        (e.event.as_str(), e.data.as_str()),
        ("message", "last words")
    );
    assert!(
        a.until_end().await.is_empty(),
        "the stream ends after the flush"
    );
    assert_eq!(ca.send_event("x", "late"), Err(ssehub::SendError::Closed));
    srv.stop().await;
}

#[tokio::test]
async fn a_message_larger_than_the_hub_allows_is_refused() {
    let (srv, mut handout) = start().await;
    let [(mut a, ca), _, _] = open_a_b_c(&srv, &mut handout).await;
    let hub = &srv.hub;
    let big = Message::new("x".repeat(ssehub::DEFAULT_MAX_EVENT_BYTES));
    let bytes = big.encoded_len();
    let max = ssehub::DEFAULT_MAX_EVENT_BYTES;
    assert_eq!(
        hub.to("r1").publish(&big),
        Err(ssehub::PublishError::TooLarge { bytes, max })
    );
    assert!(
        hub.to(["r1", "r2"]).publish(&big).is_err(),
        "refused to several rooms too: nothing sent"
    );
    assert_eq!(
        ca.send(&big),
        Err(ssehub::SendError::TooLarge { bytes, max })
    );
    let fits = Message::new("y".repeat(max - 16));
    assert_eq!(fits.encoded_len(), max - 8);
    assert_eq!(delivered(hub.to("r1"), &fits), 2);
    assert_eq!(a.next_event().await.data.len(), max - 16);
    srv.stop().await;
}
