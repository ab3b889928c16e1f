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
