//! The accept gate against slow clients, on real sockets: connections that send half a
//! head, or nothing, are still capped per address and in all while complete requests
//! from the same address pass; every connection the gate or the header timeout closes
//! is counted by reason in `/stats` (and `/metrics`); the listen backlog is the
//! configured one, or the system's.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{request, stream_request, within, TestServer, WAIT};
use http::StatusCode;
use ssehub::{HubApi, Server, SseOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Half a stream request's head: no blank line yet.
const HALF: &[u8] = b"GET /sse HTTP/1.1\r\nHost: t\r\n";

/// Connect to `addr` from the local address `from` (127.x.y.z).
async fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((from, 0))).unwrap();
    within("connect", sock.connect(addr)).await.unwrap()
}

/// Connect from `from` and write `bytes` (the write may fail on a connection the server
/// has closed already: what it read tells).
async fn send_from(from: [u8; 4], addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = connect_from(from, addr).await;
    let _ = s.write_all(bytes).await;
    s
}

/// A server with `/stats` (and `/metrics` with the feature) and a header timeout far
/// beyond the test: whatever closes a connection here is not the timeout.
async fn server(f: impl FnOnce(Server) -> Server) -> TestServer {
    let options = SseOptions::new().keep_alive(None);
    let api = HubApi::new(options.hub().clone());
    TestServer::start_with(options, move |s| {
        let stats = api.clone();
        let s = s
            .header_timeout(Duration::from_secs(60))
            .route("/stats", move |req| {
                let api = stats.clone();
                async move { api.stats(&req) }
            });
        #[cfg(feature = "metrics")]
        let s = s.route("/metrics", move |req| {
            let api = api.clone();
            async move { api.metrics(&req) }
        });
        f(s)
    })
    .await
}

/// `/stats`'s refusal counts, read over HTTP.
async fn refused(srv: &TestServer) -> serde_json::Value {
    let (status, _, body) = request(srv.addr, "GET", "/stats", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["refused"].clone()
}

/// `ssehub_refused_total{reason}` in `/metrics`.
#[cfg(feature = "metrics")]
async fn refused_metric(srv: &TestServer, reason: &str) -> u64 {
    let (status, _, body) = request(srv.addr, "GET", "/metrics", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    let series = format!("ssehub_refused_total{{reason=\"{reason}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in:\n{body}"))
        .parse()
        .unwrap()
}

/// Wait until the hub has counted `n` refusals for `reason`.
async fn counted(srv: &TestServer, reason: &str, n: u64) {
    within(&format!("{n} refusals for {reason}"), async {
        while srv.hub.stats().refused.get(reason).copied().unwrap_or(0) < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Whether the server answered `s` with 200 and the stream's first bytes, rather than
/// closing it.
async fn served(s: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let read = async {
        loop {
            if buf.starts_with(b"HTTP/1.1 200") && buf.windows(12).any(|w| w == b": connected\n") {
                return true;
            }
            let mut chunk = [0u8; 1024];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(WAIT, read).await.unwrap_or(false)
}

/// Write `rest` on every connection (the rest of its request) and sort them: how many
/// were served a stream, and how many the server had closed. The connections served
/// are kept open in `conns`.
async fn finish(conns: &mut [TcpStream], rest: &[u8]) -> (usize, usize) {
    let (mut streams, mut closed) = (0, 0);
    for s in conns.iter_mut() {
        let _ = s.write_all(rest).await;
        if served(s).await {
            streams += 1;
        } else {
            closed += 1;
        }
    }
    (streams, closed)
}

#[tokio::test]
async fn half_heads_from_one_address_are_still_capped() {
    const CAP: usize = 4;
    const EXTRA: usize = 3;
    let srv = server(|s| s.max_pending_connections(Some(100), Some(CAP))).await;
    let from = [127, 0, 0, 2];
    let mut slow = Vec::new();
    for _ in 0..CAP + EXTRA {
        slow.push(send_from(from, srv.addr, HALF).await);
    }
    // Each first read is half a head: CAP are held, the others closed at once (the
    // header timeout is a minute away) and counted.
    counted(&srv, "max_pending_per_ip", EXTRA as u64).await;
    // A complete request from the same address is no slow head: served.
    let mut quick = send_from(from, srv.addr, stream_request(srv.addr, "/sse").as_bytes()).await;
    assert!(served(&mut quick).await, "a complete head from {from:?}");
    // The held ones were only waiting: the rest of their heads opens their streams.
    let (streams, closed) = finish(&mut slow, b"\r\n").await;
    assert_eq!((streams, closed), (CAP, EXTRA), "held, closed");
    let refused = refused(&srv).await;
    assert_eq!(refused["max_pending_per_ip"], EXTRA, "{refused}");
    for other in [
        "max_pending_connections",
        "server_max_connections",
        "header_timeout",
    ] {
        assert_eq!(refused[other], 0, "{other}: {refused}");
    }
    #[cfg(feature = "metrics")]
    assert_eq!(
        refused_metric(&srv, "max_pending_per_ip").await,
        EXTRA as u64
    );
    srv.stop().await;
}

#[tokio::test]
async fn silent_connections_are_capped_once_their_grace_is_over() {
    const CAP: usize = 2;
    const EXTRA: usize = 2;
    let srv = server(|s| s.max_pending_connections(Some(100), Some(CAP))).await;
    let from = [127, 0, 0, 3];
    let mut silent = Vec::new();
    for _ in 0..CAP + EXTRA {
        silent.push(connect_from(from, srv.addr).await);
    }
    // Nothing sent: each counts as pending after its grace (a second), and past the cap
    // is closed then, long before the header timeout.
    counted(&srv, "max_pending_per_ip", EXTRA as u64).await;
    let request = stream_request(srv.addr, "/sse");
    let (streams, closed) = finish(&mut silent, request.as_bytes()).await;
    assert_eq!((streams, closed), (CAP, EXTRA), "held, closed");
    assert_eq!(refused(&srv).await["max_pending_per_ip"], EXTRA);
    srv.stop().await;
}

#[tokio::test]
async fn half_heads_are_capped_in_all() {
    let srv = server(|s| s.max_pending_connections(Some(2), None)).await;
    let mut slow = vec![
        send_from([127, 0, 0, 4], srv.addr, HALF).await,
        send_from([127, 0, 0, 5], srv.addr, HALF).await,
    ];
    slow.push(send_from([127, 0, 0, 6], srv.addr, HALF).await);
    counted(&srv, "max_pending_connections", 1).await;
    let mut quick = send_from(
        [127, 0, 0, 7],
        srv.addr,
        stream_request(srv.addr, "/sse").as_bytes(),
    )
    .await;
    assert!(served(&mut quick).await, "a complete head passes");
    let (streams, closed) = finish(&mut slow, b"\r\n").await;
    assert_eq!((streams, closed), (2, 1), "held, closed");
    let refused = refused(&srv).await;
    assert_eq!(refused["max_pending_connections"], 1, "{refused}");
    assert_eq!(refused["max_pending_per_ip"], 0, "{refused}");
    #[cfg(feature = "metrics")]
    assert_eq!(refused_metric(&srv, "max_pending_connections").await, 1);
    srv.stop().await;
}

#[tokio::test]
async fn connections_past_max_connections_are_closed_and_counted() {
    let srv = server(|s| s.max_connections(Some(2))).await;
    let request = stream_request(srv.addr, "/sse");
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut s = send_from([127, 0, 0, 8], srv.addr, request.as_bytes()).await;
        assert!(served(&mut s).await);
        open.push(s);
    }
    let mut third = send_from([127, 0, 0, 9], srv.addr, request.as_bytes()).await;
    assert!(!served(&mut third).await, "closed at accept");
    counted(&srv, "server_max_connections", 1).await;
    // `/stats` itself would be refused now: the hub's own figures, as it would show them.
    let stats = srv.hub.stats();
    assert_eq!(stats.refused["server_max_connections"], 1);
    assert_eq!(stats.refused["max_pending_per_ip"], 0);
    #[cfg(feature = "metrics")]
    assert!(ssehub::prometheus_text(&srv.hub)
        .contains("ssehub_refused_total{reason=\"server_max_connections\"} 1\n"));
    drop(open);
    srv.stop().await;
}

#[tokio::test]
async fn connections_cut_by_the_header_timeout_are_counted() {
    let options = SseOptions::new().keep_alive(None);
    let srv =
        TestServer::start_with(options, |s| s.header_timeout(Duration::from_millis(300))).await;
    // Half a head, and nothing at all (cut before its grace is over).
    let mut half = send_from([127, 0, 0, 10], srv.addr, HALF).await;
    let mut silent = connect_from([127, 0, 0, 11], srv.addr).await;
    for s in [&mut half, &mut silent] {
        common::until_closed("the header timeout", s).await;
    }
    counted(&srv, "header_timeout", 2).await;
    let stats = srv.hub.stats();
    assert_eq!(stats.refused["header_timeout"], 2);
    assert_eq!(stats.refused["max_pending_per_ip"], 0);
    srv.stop().await;
}

#[cfg(target_os = "linux")]
/// Connect to a listener nobody accepts from, one connection after another, until one
/// does not complete: how many the kernel queued. (A connect past the full accept queue
/// has its SYN dropped and would complete only at the client's retry, a second later.)
async fn fill_accept_queue(addr: SocketAddr, most: usize) -> (usize, Vec<TcpStream>) {
    let mut queued = Vec::new();
    for _ in 0..most {
        match tokio::time::timeout(Duration::from_millis(900), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => queued.push(s),
            _ => break,
        }
    }
    (queued.len(), queued)
}

/// The system's maximum listen backlog.
#[cfg(target_os = "linux")]
fn somaxconn() -> usize {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_listen_backlog_is_the_configured_one() {
    const BACKLOG: usize = 200;
    // Bound, never run: nothing is accepted.
    let bound = Server::new(([127, 0, 0, 1], 0))
        .sse(SseOptions::new())
        .listen_backlog(BACKLOG as u32)
        .bind()
        .await
        .unwrap();
    let (queued, _held) = fill_accept_queue(bound.local_addr(), 2 * BACKLOG).await;
    // Linux queues one more than the backlog.
    assert!((BACKLOG..=BACKLOG + 1).contains(&queued), "{queued} queued");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_default_listen_backlog_is_the_system_s() {
    const MOST: usize = 600;
    let max = somaxconn();
    let bound = Server::new(([127, 0, 0, 1], 0))
        .sse(SseOptions::new())
        .bind()
        .await
        .unwrap();
    let (queued, _held) = fill_accept_queue(bound.local_addr(), MOST).await;
    // std's 128 would queue 129.
    if max >= MOST {
        assert_eq!(queued, MOST);
    } else {
        assert!((max..=max + 1).contains(&queued), "{queued} queued");
    }
}

#[tokio::test]
async fn a_zero_listen_backlog_is_refused() {
    let bound = Server::new(([127, 0, 0, 1], 0))
        .sse(SseOptions::new())
        .listen_backlog(0)
        .bind()
        .await;
    assert!(matches!(bound, Err(ssehub::ServerError::Invalid(_))));
}
