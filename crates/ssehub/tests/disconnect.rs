//! A client that goes away is noticed even when nothing is being sent to it.

mod common;

use common::*;
use ssehub::SseOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn open_raw(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /sse?room=x HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = within("handshake", s.read(&mut buf)).await.unwrap();
    assert!(std::str::from_utf8(&buf[..n])
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    s
}

#[tokio::test]
async fn fin_without_traffic_closes_and_cleans_rooms() {
    let srv = TestServer::start(SseOptions::new().keep_alive(None)).await;
    let s = open_raw(srv.addr).await;
    eventually("one connection", || srv.hub.connection_count() == 1).await;
    assert_eq!(srv.hub.room_size("__all"), 1);
    drop(s); // FIN, nothing unread
    eventually("connection gone", || srv.hub.connection_count() == 0).await;
    assert_eq!(srv.hub.room_count(), 0, "the emptied room is dropped");
    srv.stop().await;
}

#[tokio::test]
async fn rst_without_traffic_closes_and_cleans_rooms() {
    let srv = TestServer::start(SseOptions::new().keep_alive(None)).await;
    let s = open_raw(srv.addr).await;
    eventually("one connection", || srv.hub.connection_count() == 1).await;
    s.set_zero_linger().unwrap();
    drop(s); // RST
    eventually("connection gone", || srv.hub.connection_count() == 0).await;
    assert_eq!(srv.hub.room_count(), 0);
    srv.stop().await;
}

#[tokio::test]
async fn abrupt_disconnect_leaves_every_room_joined_on_connect() {
    let (options, mut handout) = Handout::wrap(SseOptions::new().keep_alive(None));
    let srv = TestServer::start(options).await;
    // One client stays, in room b only.
    let (_stays, stays) = handout.open(&srv, "/sse?room=b").await;
    for (n, linger) in [(0, false), (1, true), (2, false)] {
        let (s, head) = raw_request(
            srv.addr,
            "GET /sse?room=a&room=b&room=c&room=d HTTP/1.1\r\nhost: t\r\n\r\n",
        )
        .await;
        assert_eq!(head.status, 200);
        let conn = handout.next().await;
        let mut rooms = conn.rooms();
        rooms.sort();
        assert_eq!(rooms, ["__all", "a", "b", "c", "d"]);
        assert_eq!(srv.hub.room_count(), 5);
        assert_eq!(srv.hub.room_size("b"), 2);
        if linger {
            s.set_zero_linger().unwrap(); // RST instead of FIN
        }
        drop(s);
        within("the close completes", conn.closed()).await;
        assert!(conn.rooms().is_empty(), "round {n}");
        let mut names = srv.hub.room_names();
        names.sort();
        assert_eq!(names, ["__all", "b"], "round {n}");
        assert_eq!(srv.hub.members("b"), vec![stays.clone()]);
        assert_eq!(srv.hub.connection_count(), 1);
    }
    srv.stop().await;
}
