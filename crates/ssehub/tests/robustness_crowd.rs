//! A crowd from one address is not an attacker: 2,000 complete stream requests from
//! 127.0.0.1, sent back to back the way the load generator (or a reconnect storm behind
//! a reverse proxy, where every client has the proxy's address) sends them, are all
//! served, with the default caps; no connect waits on a SYN retry (the listen backlog
//! holds the crowd), and no refusal is counted.
//!
//! Alone in its file: 4,000 sockets in this process (the clients' and the server's),
//! and the time of every connect, which other tests' load would blur.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{stream_request, within, TestServer, WAIT};
use ssehub::SseOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLIENTS: usize = 2000;
/// Opened at once, as the load generator does (200 at a time there).
const BATCH: usize = 250;
/// A connect this slow waited on a SYN retry (the first comes after one second).
const SYN_RETRY: Duration = Duration::from_millis(900);

/// Connect and write the whole head at once: the connection and how long the connect
/// took.
async fn connect_and_ask(addr: SocketAddr, request: String) -> (TcpStream, Duration) {
    let started = Instant::now();
    let mut s = within("connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    let took = started.elapsed();
    // A connection the server already closed may refuse the write; its read tells.
    let _ = s.write_all(request.as_bytes()).await;
    (s, took)
}

/// Whether the server answered `s` with 200 and the stream's first bytes (`: connected`)
/// rather than closing it; the socket is kept open for the stream to stay counted.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_complete_requests_from_one_address_is_all_served() {
    // The clients' sockets and the server's, in one process.
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    assert!(limit >= 2 * CLIENTS as u64 + 200, "open-file limit {limit}");
    // The default caps: 128 pending per address, 1,024 in all.
    let srv = TestServer::start_with(SseOptions::new().keep_alive(None), |s| s).await;
    let request = stream_request(srv.addr, "/sse");

    let mut clients = Vec::with_capacity(CLIENTS);
    let mut connects = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS / BATCH {
        let batch: Vec<_> = (0..BATCH)
            .map(|_| tokio::spawn(connect_and_ask(srv.addr, request.clone())))
            .collect();
        for task in batch {
            let (s, took) = task.await.unwrap();
            clients.push(s);
            connects.push(took);
        }
    }
    let answers = clients.into_iter().map(|mut s| {
        tokio::spawn(async move {
            let ok = served(&mut s).await;
            (s, ok)
        })
    });
    let mut held = Vec::with_capacity(CLIENTS);
    let mut answered = 0;
    for task in answers.collect::<Vec<_>>() {
        let (s, ok) = task.await.unwrap();
        answered += usize::from(ok);
        held.push(s);
    }

    let slowest = connects.iter().max().copied().unwrap_or_default();
    let retried = connects.iter().filter(|t| **t >= SYN_RETRY).count();
    let refused = srv.hub.stats().refused;
    eprintln!(
        "{answered} of {CLIENTS} served; {retried} connects took >= {SYN_RETRY:?} \
         (slowest {slowest:?}); refused {refused:?}"
    );
    assert_eq!(answered, CLIENTS, "every complete request is served");
    assert_eq!(retried, 0, "no connect waited on a SYN retry ({slowest:?})");
    let refusals: u64 = refused.values().sum();
    assert_eq!(refusals, 0, "nothing refused: {refused:?}");
    common::eventually("every stream counted", || {
        srv.hub.connection_count() == CLIENTS
    })
    .await;
    drop(held);
    srv.stop().await;
}
