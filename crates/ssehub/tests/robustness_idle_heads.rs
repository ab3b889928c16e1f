//! Clients that send half a request head and wait cost no CPU while they wait: the
//! server reads a connection's first bytes when they come, never on a timer. Alone in
//! its file: it measures the CPU of the whole test process.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{within, TestServer};
use ssehub::SseOptions;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// Connect to `addr` from the local address `from` (127.x.y.z).
async fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((from, 0))).unwrap();
    within("connect", sock.connect(addr)).await.unwrap()
}

/// An unfinished request head of about 8 KB (no blank line: hyper's business, past the
/// take-over's limit).
fn half_head() -> String {
    format!(
        "GET /x HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n",
        "p".repeat(8000)
    )
}

/// CPU time (user + system) of this process, in clock ticks (USER_HZ, 100 a second).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn half_sent_heads_are_not_reread_while_they_wait() {
    let srv = TestServer::start_with(SseOptions::new().keep_alive(None), |s| {
        s.header_timeout(Duration::from_secs(60))
    })
    .await;
    let mut held = Vec::new();
    for i in 0..100u8 {
        let mut s = connect_from([127, 0, 1, i], srv.addr).await;
        s.write_all(half_head().as_bytes()).await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // They all wait for the rest of their heads. Looking at each again every few
    // milliseconds kept a core busy; reading once when bytes come costs nothing.
    let before = cpu_ticks();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu = cpu_ticks() - before;
    eprintln!("one second with 100 half heads: {cpu} CPU ticks");
    assert!(cpu < 20, "{cpu} ticks of CPU in one idle second");
    srv.stop().await;
}
