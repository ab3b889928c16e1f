//! Peers that stop answering, and clients that take their time: every accepted socket
//! gets TCP keep-alive and `TCP_USER_TIMEOUT` (read back from the kernel here), an
//! HTTP/2 peer that stops answering pings is dropped while one that answers is kept,
//! and the header timeout is one deadline from the moment a client connects, whichever
//! of the server's waits (the SSE take-over's, the HTTP/2 sniffing, hyper's) it falls in.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{
    eventually, stalled_client, stream_request, until_closed, within, SseClient, TestServer,
};
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use ssehub::decode::Item;
use ssehub::{Message, Server, SseOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The header timeout of the deadline tests.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// Write `steps` to a fresh connection, each at its offset (a fraction of the header
/// timeout) from the moment of connecting, then read what the server answers: the
/// bytes that arrived before it closed the connection. Writes after a close are ignored.
async fn drip(srv: &TestServer, steps: &[(f64, &[u8])]) -> Vec<u8> {
    let mut s = within("connect", TcpStream::connect(srv.addr))
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    for (at, bytes) in steps {
        tokio::time::sleep_until(start + HEADER_TIMEOUT.mul_f64(*at)).await;
        if s.write_all(bytes).await.is_err() {
            break;
        }
    }
    let mut buf = vec![0u8; 4096];
    match within("the server to answer or close", s.read(&mut buf)).await {
        Ok(n) => buf[..n].to_vec(),
        Err(_) => Vec::new(), // reset: nothing answered
    }
}

async fn deadline_server() -> TestServer {
    TestServer::start_with(SseOptions::new().keep_alive(None), |s| {
        s.header_timeout(HEADER_TIMEOUT)
    })
    .await
}

/// The HTTP/2 preface, cut where the SSE take-over's look at the request gives up
/// ("HTTP/2" is no HTTP/1.1 head) and where the server still waits for the rest.
const PREFACE_START: &[u8] = b"PRI * HTTP/";
const PREFACE_MIDDLE: &[u8] = b"2.0\r\n\r\nSM\r\n";
const PREFACE_END: &[u8] = b"\r\n";
/// An empty HTTP/2 SETTINGS frame (9-byte header: length 0, type 4, no flags, stream 0).
const EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

#[tokio::test]
async fn a_preface_dripped_across_two_waits_gets_one_header_timeout() {
    let srv = deadline_server().await;
    // The take-over looks until 0.7 of the timeout, the HTTP/2 sniffing from then on;
    // the preface is complete at 1.5. With one wait after the other (each its own
    // timeout) the sniffing would last until 1.7 and hyper would answer with its SETTINGS.
    let got = drip(
        &srv,
        &[
            (0.0, PREFACE_START),
            (0.7, PREFACE_MIDDLE),
            (1.5, &[PREFACE_END, EMPTY_SETTINGS].concat()),
        ],
    )
    .await;
    assert!(got.is_empty(), "cut at the deadline, unanswered: {got:?}");
    // A client that finishes in time is served.
    let got = drip(
        &srv,
        &[
            (0.0, PREFACE_START),
            (0.2, PREFACE_MIDDLE),
            (0.4, &[PREFACE_END, EMPTY_SETTINGS].concat()),
        ],
    )
    .await;
    assert_eq!(got.get(3), Some(&4), "the server's SETTINGS frame: {got:?}");
    srv.stop().await;
}

#[tokio::test]
async fn a_large_head_dripped_into_hyper_gets_one_header_timeout() {
    let srv = deadline_server().await;
    // Over 8 KiB of head: the take-over hands it to hyper at 0.7 of the timeout; the head
    // is complete at 1.5. With hyper's own header timeout starting then, the request
    // would be answered.
    let pad = format!("X-Pad: {}", "p".repeat(9000));
    let got = drip(
        &srv,
        &[
            (0.0, b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n"),
            (0.7, pad.as_bytes()),
            (1.5, b"\r\n\r\n"),
        ],
    )
    .await;
    assert!(
        got.is_empty(),
        "cut at the deadline, unanswered: {:?}",
        String::from_utf8_lossy(&got)
    );
    // The same head sent in time is answered.
    let got = drip(
        &srv,
        &[
            (0.0, b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n"),
            (0.2, pad.as_bytes()),
            (0.4, b"\r\n\r\n"),
        ],
    )
    .await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
    srv.stop().await;
}

/// The TCP options of a socket, as the kernel reports them.
#[cfg(target_os = "linux")]
#[derive(Debug, PartialEq)]
struct SocketOptions {
    keepalive: bool,
    idle: Duration,
    interval: Duration,
    probes: u32,
    user_timeout: Option<Duration>,
}

/// The options of the server's end of `client`'s connection. The server runs in this
/// process: its socket is the one among our descriptors whose addresses mirror the
/// client's.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // the workspace denies it; see the SAFETY note below
fn server_end(client: &TcpStream) -> SocketOptions {
    use std::os::fd::{BorrowedFd, RawFd};
    let (peer, local) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let entry = entry.unwrap();
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor was open a moment ago and is duplicated at once; should
        // another thread of the test close it (and the number be reused) in between,
        // the duplicate is some other socket, which the address check below skips.
        let Ok(fd) = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned() else {
            continue;
        };
        let sock = socket2::SockRef::from(&fd);
        let addr = |a: std::io::Result<socket2::SockAddr>| a.ok().and_then(|a| a.as_socket());
        if addr(sock.peer_addr()) == Some(peer) && addr(sock.local_addr()) == Some(local) {
            return SocketOptions {
                keepalive: sock.keepalive().unwrap(),
                idle: sock.tcp_keepalive_time().unwrap(),
                interval: sock.tcp_keepalive_interval().unwrap(),
                probes: sock.tcp_keepalive_retries().unwrap(),
                user_timeout: sock.tcp_user_timeout().unwrap(),
            };
        }
    }
    panic!("no socket of this process is the server's end of {peer} -> {local}");
}

/// Open an SSE stream on a raw socket and read the response head (it must be 200).
async fn open_stream(addr: SocketAddr) -> TcpStream {
    let (stream, head) = common::raw_request(addr, &stream_request(addr, "/sse")).await;
    assert_eq!(head.status, 200);
    stream
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn accepted_sockets_get_keepalive_and_a_user_timeout() {
    let options = || SseOptions::new().keep_alive(None);
    // Defaults: dead peers are found in about two minutes.
    let default = TestServer::start(options()).await;
    let client = open_stream(default.addr).await;
    assert_eq!(
        server_end(&client),
        SocketOptions {
            keepalive: true,
            idle: Duration::from_secs(60),
            interval: Duration::from_secs(10),
            probes: 6,
            user_timeout: Some(Duration::from_secs(120)),
        }
    );
    // Configured (and on a connection hyper serves, not only on taken-over streams).
    let tuned = TestServer::start_with(options(), |s| {
        s.tcp_keepalive(Some(Duration::from_secs(30)))
            .tcp_keepalive_probes(Duration::from_secs(5), 3)
            .tcp_user_timeout(Some(Duration::from_millis(45_500)))
    })
    .await;
    let (client_b, head) =
        common::raw_request(tuned.addr, "GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(head.status, 404);
    assert_eq!(
        server_end(&client_b),
        SocketOptions {
            keepalive: true,
            idle: Duration::from_secs(30),
            interval: Duration::from_secs(5),
            probes: 3,
            user_timeout: Some(Duration::from_millis(45_500)),
        }
    );
    // Disabled: the system's defaults stay.
    let off =
        TestServer::start_with(options(), |s| s.tcp_keepalive(None).tcp_user_timeout(None)).await;
    let client_c = open_stream(off.addr).await;
    let got = server_end(&client_c);
    assert!(!got.keepalive, "{got:?}");
    assert_eq!(got.user_timeout, None);
    drop((client, client_b, client_c));
    default.stop().await;
    tuned.stop().await;
    off.stop().await;
}

#[tokio::test]
async fn out_of_range_socket_options_are_refused() {
    type Tweak = fn(Server) -> Server;
    let bad: [(&str, Tweak); 6] = [
        ("idle", |s| {
            s.tcp_keepalive(Some(Duration::from_millis(500)))
        }),
        ("interval", |s| s.tcp_keepalive_probes(Duration::ZERO, 3)),
        ("count", |s| {
            s.tcp_keepalive_probes(Duration::from_secs(1), 0)
        }),
        ("user", |s| s.tcp_user_timeout(Some(Duration::ZERO))),
        ("interval", |s| s.http2_keep_alive(Some(Duration::ZERO))),
        ("timeout", |s| s.http2_keep_alive_timeout(Duration::ZERO)),
    ];
    for (word, f) in bad {
        match f(Server::new(([127, 0, 0, 1], 0))).bind().await {
            Err(ssehub::ServerError::Invalid(why)) => assert!(why.contains(word), "{why}"),
            Err(e) => panic!("{word}: wrong error {e}"),
            Ok(_) => panic!("{word}: accepted"),
        }
    }
}

/// A client whose receive window stays shut (it stopped reading, its buffers are full)
/// is what the kernel can show on loopback of a peer that does not acknowledge: with
/// `TCP_USER_TIMEOUT` the server's kernel gives up on it; without, it waits on.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_user_timeout_drops_a_peer_that_acknowledges_nothing() {
    let options = || SseOptions::new().keep_alive(None);
    let timed = TestServer::start_with(options(), |s| {
        s.tcp_user_timeout(Some(Duration::from_millis(500)))
    })
    .await;
    let patient = TestServer::start_with(options(), |s| s.tcp_user_timeout(None)).await;
    let _a = stalled_client(timed.addr, "/sse").await;
    let _b = stalled_client(patient.addr, "/sse").await;
    for srv in [&timed, &patient] {
        eventually("the stream to open", || srv.hub.connection_count() == 1).await;
        // 256 KiB: more than the stalled client's window, far less than the outbox.
        let event = Message::new("x".repeat(4096));
        for _ in 0..64 {
            srv.hub.to("__all").publish(&event).unwrap();
        }
    }
    eventually("the kernel to give up on the stalled peer", || {
        timed.hub.connection_count() == 0
    })
    .await;
    assert_eq!(
        timed.hub.stats().slow_consumer_closes,
        0,
        "the kernel closed it, not the outbox policy"
    );
    assert_eq!(
        patient.hub.connection_count(),
        1,
        "without a user timeout the server keeps waiting"
    );
    timed.stop().await;
    patient.stop().await;
}

/// An HTTP/2 client over TCP (prior knowledge); it answers pings while the task polls it.
async fn h2_client(addr: SocketAddr) -> (SendRequest<Empty<Bytes>>, JoinHandle<()>) {
    let tcp = within("connect", TcpStream::connect(addr)).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (sender, task)
}

/// Open an SSE stream over HTTP/2 and read its first item (the `connected` comment).
async fn h2_stream(addr: SocketAddr, sender: &mut SendRequest<Empty<Bytes>>) -> SseClient {
    let req = Request::get(format!("http://{addr}/sse"))
        .header("accept", "text/event-stream")
        .body(Empty::new())
        .unwrap();
    let res = within("the response head", sender.send_request(req))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.version(), http::Version::HTTP_2);
    let mut stream = SseClient::from_response(res);
    assert_eq!(
        stream.next_item().await,
        Some(Item::Comment("connected".into()))
    );
    stream
}

#[tokio::test]
async fn http2_peers_that_stop_answering_pings_are_dropped() {
    let interval = Duration::from_millis(200);
    // A long header timeout: whatever closes the silent peer here is the pings.
    let srv = TestServer::start_with(SseOptions::new().keep_alive(None), |s| {
        s.header_timeout(Duration::from_secs(60))
            .http2_keep_alive(Some(interval))
            .http2_keep_alive_timeout(interval)
    })
    .await;
    // A live client with a quiet stream (no keep-alive comments), answering pings.
    let (mut sender, _task) = h2_client(srv.addr).await;
    let mut stream = h2_stream(srv.addr, &mut sender).await;
    // A peer that sends the preface and its SETTINGS, then goes silent.
    let mut silent = within("connect", TcpStream::connect(srv.addr))
        .await
        .unwrap();
    silent
        .write_all(&[PREFACE_START, PREFACE_MIDDLE, PREFACE_END, EMPTY_SETTINGS].concat())
        .await
        .unwrap();
    let got = until_closed("the silent HTTP/2 peer to be dropped", &mut silent).await;
    assert_eq!(
        got.get(3),
        Some(&4),
        "it was served (SETTINGS) first: {got:?}"
    );
    // Several more rounds of pings later, the live stream is still there.
    tokio::time::sleep(interval * 10).await;
    assert_eq!(srv.hub.connection_count(), 1);
    srv.hub
        .to("__all")
        .publish(&Message::new("still here"))
        .unwrap();
    match stream.next_item().await {
        Some(Item::Event(e)) => assert_eq!(e.data, "still here"),
        other => panic!("{other:?}"),
    }
    srv.stop().await;
}

/// The server's one stream, `stream`, still gets what is broadcast.
async fn assert_still_served(srv: &TestServer, stream: &mut SseClient) {
    srv.hub.to("__all").publish(&Message::new("kept")).unwrap();
    match stream.next_item().await {
        Some(Item::Event(e)) => assert_eq!(e.data, "kept"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_http2_connection_that_opens_no_stream_is_cut_at_the_header_timeout() {
    let header_timeout = Duration::from_millis(300);
    let srv = TestServer::start_with(SseOptions::new().keep_alive(None), |s| {
        s.header_timeout(header_timeout)
    })
    .await;
    // Answers pings, never asks for anything.
    let (_idle, idle_task) = h2_client(srv.addr).await;
    // Asks in time: kept past the deadline.
    let (mut sender, _task) = h2_client(srv.addr).await;
    let mut stream = h2_stream(srv.addr, &mut sender).await;
    within("the idle connection to be cut", idle_task)
        .await
        .unwrap();
    tokio::time::sleep(header_timeout * 2).await;
    assert_still_served(&srv, &mut stream).await;
    srv.stop().await;
}

#[tokio::test]
async fn an_http2_connection_whose_streams_ended_is_closed_when_idle() {
    let idle = Duration::from_millis(500);
    let srv = TestServer::start_with(SseOptions::new().keep_alive(None), |s| {
        s.idle_timeout(Some(idle))
    })
    .await;
    // One request, answered; then the client keeps the connection, answering pings.
    let (mut done_sender, done_task) = h2_client(srv.addr).await;
    let req = Request::get(format!("http://{}/nothing", srv.addr))
        .body(Empty::new())
        .unwrap();
    let res = within("the 404", done_sender.send_request(req))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    drop(res);
    // A stream in progress keeps its connection, however long it is quiet.
    let (mut sender, _task) = h2_client(srv.addr).await;
    let mut stream = h2_stream(srv.addr, &mut sender).await;
    within("the idle connection to be closed", done_task)
        .await
        .unwrap();
    tokio::time::sleep(idle * 3).await;
    assert_still_served(&srv, &mut stream).await;
    srv.stop().await;
}

#[tokio::test]
async fn tcp_connections_are_capped_in_all() {
    let srv = TestServer::start_with(SseOptions::new().keep_alive(None), |s| {
        s.max_connections(Some(3))
    })
    .await;
    // Three HTTP/2 connections, each with a stream (the stream limits would count them
    // apart from the connections: here it is the connections that are counted).
    let mut held = Vec::new();
    for _ in 0..3 {
        let (mut sender, task) = h2_client(srv.addr).await;
        let stream = h2_stream(srv.addr, &mut sender).await;
        held.push((sender, task, stream));
    }
    let mut fourth = within("connect", TcpStream::connect(srv.addr))
        .await
        .unwrap();
    let _ = fourth
        .write_all(stream_request(srv.addr, "/sse").as_bytes())
        .await;
    let got = until_closed("the fourth connection to be closed", &mut fourth).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    // One goes: its place is free again.
    drop(held.pop());
    eventually("a stream gone", || srv.hub.connection_count() == 2).await;
    let (_s, head) = common::raw_request(srv.addr, &stream_request(srv.addr, "/sse")).await;
    assert_eq!(head.status, 200);
    srv.stop().await;
}
