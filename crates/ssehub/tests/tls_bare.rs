//! HTTP/1.1 streams over TLS on the bare socket (`transport/tls.rs`): what a TLS client
//! receives is, byte for byte once de-chunked, what a plain client of the same server
//! receives; records cut by a full socket are finished before the next one (a client
//! that reads slowly gets every event intact); a client that stops reading, even in the
//! middle of a record, meets the outbox bound and is closed by policy, as a plain one is.
//! Real servers on ephemeral loopback ports, certificates made in the test (rcgen).
#![cfg(feature = "tls")]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use ssehub::{Hub, HubConfig, Message, Server, SseOptions, TlsConfig};
use ssehub_testkit::tls::{client_config, connect_tls, SelfSigned};
use ssehub_testkit::{eventually, within};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use common::Running;

/// A server with a TLS listener (`addr`) and a plain one beside it (`plain`).
struct Both {
    addr: SocketAddr,
    plain: SocketAddr,
    hub: ssehub::Hub,
    server: Running,
}

impl Both {
    async fn start(options: SseOptions, cert: &SelfSigned) -> Both {
        let hub = options.hub().clone();
        let tls = TlsConfig::from_pem(cert.cert.clone(), cert.key.clone());
        let server = Server::new(([127, 0, 0, 1], 0))
            .sse(options)
            .tls(tls)
            .also_listen(([127, 0, 0, 1], 0))
            .bind()
            .await
            .unwrap();
        let listeners = server.listeners();
        assert!(listeners[0].tls && !listeners[1].tls);
        let (addr, plain) = (listeners[0].addr, listeners[1].addr);
        Both {
            addr,
            plain,
            hub,
            server: Running::spawn(server),
        }
    }

    async fn stop(self) {
        self.server.stop().await;
    }
}

/// Send a stream request on `io`; read its head. The head's text and what followed it.
async fn open<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S, path: &str) -> (String, Vec<u8>) {
    io.write_all(format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    within("the response head", async {
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let rest = got.split_off(end + 4);
                return (String::from_utf8(got).unwrap(), rest);
            }
            let mut chunk = [0u8; 4096];
            let n = io.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before the head");
            got.extend_from_slice(&chunk[..n]);
        }
    })
    .await
}

/// Options whose hub keeps no history: events go out exactly as published.
fn options() -> SseOptions {
    SseOptions::new()
        .with_hub(Hub::with_config(HubConfig::default().history(None)))
        .rooms_from_query(true)
}

/// De-chunk `raw` as far as it holds whole chunks: the body's bytes, and whether the
/// last chunk came.
fn dechunk(raw: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    let mut at = 0;
    while let Ok(httparse::Status::Complete((skip, len))) = httparse::parse_chunk_size(&raw[at..]) {
        let start = at + skip;
        let end = start + len as usize;
        if end + 2 > raw.len() {
            break;
        }
        if len == 0 {
            return (body, true);
        }
        body.extend_from_slice(&raw[start..end]);
        at = end + 2;
    }
    (body, false)
}

/// Read `io` until its de-chunked body ends with `marker`; the body.
async fn body_until<S: AsyncRead + Unpin>(io: &mut S, mut raw: Vec<u8>, marker: &[u8]) -> Vec<u8> {
    within("the stream's events", async {
        loop {
            let (body, _) = dechunk(&raw);
            if body.ends_with(marker) {
                return body;
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let n = io.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the stream ended early");
            raw.extend_from_slice(&chunk[..n]);
        }
    })
    .await
}

/// Events that test the framing: multi-line data, every line ending, ids, retry, a
/// comment, an empty data line, and one event of 180 KB (many records, many writes).
fn corpus() -> Vec<Message> {
    let big: String = (0..300)
        .map(|i| format!("{i:03} {}", "é🎉".repeat(100)))
        .collect::<Vec<_>>()
        .join("\r\n");
    vec![
        Message::builder().data("one").build().unwrap(),
        Message::builder()
            .event("multi")
            .data("a\nb\r\nc\rd")
            .build()
            .unwrap(),
        Message::builder()
            .id("7")
            .retry(Duration::from_millis(1500))
            .data("")
            .build()
            .unwrap(),
        Message::builder().event("big").data(big).build().unwrap(),
        Message::builder()
            .data("after the big one")
            .build()
            .unwrap(),
    ]
}

#[tokio::test]
async fn a_tls_stream_receives_exactly_what_a_plain_one_does() {
    let cert = SelfSigned::new();
    let srv = Both::start(options(), &cert).await;
    let plain = srv.plain;
    let mut tls = connect_tls(srv.addr, client_config(&[&cert.cert], &[b"http/1.1"]))
        .await
        .unwrap();
    let (tls_head, tls_rest) = open(&mut tls, "/sse?room=r").await;
    let mut tcp = TcpStream::connect(plain).await.unwrap();
    let (plain_head, plain_rest) = open(&mut tcp, "/sse?room=r").await;
    // Both on the bare socket: it says `connection: close` (hyper would keep it alive).
    for head in [&tls_head, &plain_head] {
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        assert!(
            head.contains("\r\ntransfer-encoding: chunked\r\n"),
            "{head}"
        );
    }
    eventually("both joined", || srv.hub.room_size("r") == 2).await;
    for m in corpus() {
        assert_eq!(srv.hub.to("r").publish(&m).unwrap().delivered, 2);
    }
    let end = Message::builder().event("end").data("x").build().unwrap();
    srv.hub.to("r").publish(&end).unwrap();
    let marker = b"event: end\ndata: x\n\n";
    let tls_body = body_until(&mut tls, tls_rest, marker).await;
    let plain_body = body_until(&mut tcp, plain_rest, marker).await;
    assert!(tls_body.len() > 180_000, "{}", tls_body.len());
    assert!(
        tls_body == plain_body,
        "TLS: {} bytes, plain: {} bytes",
        tls_body.len(),
        plain_body.len()
    );
    srv.stop().await;
}

/// A client with a small receive buffer that reads nothing while large events pile up,
/// then reads slowly: the server's writes stop at a full socket mid-record, many times,
/// the last one included. Every record is finished before the next one starts (rustls
/// would refuse a broken one), and the last one is sent once the socket takes it, with
/// nothing published after it: every event arrives whole, in order.
#[tokio::test]
async fn records_cut_by_a_full_socket_are_finished_before_the_next() {
    let cert = SelfSigned::new();
    let options = options().outbox_limit(32 * 1024 * 1024);
    let srv = Both::start(options, &cert).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(srv.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(client_config(&[&cert.cert], &[b"http/1.1"]))
        .connect(name, tcp)
        .await
        .unwrap();
    let (head, mut raw) = open(&mut tls, "/sse?room=r").await;
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
    eventually("joined", || srv.hub.room_size("r") == 1).await;
    // 256 events of 40 KB: 10 MB, more than the socket buffers hold (the sender's grows
    // to 4 MB by default).
    let data = |n: usize| format!("{n:02}{}", "z".repeat(40 * 1024));
    for n in 0..256 {
        let m = Message::builder().event("e").data(data(n)).build().unwrap();
        srv.hub.to("r").publish(&m).unwrap();
        // Direct writes and the task's both meet the full socket.
        tokio::task::yield_now().await;
    }
    let mut expected = Vec::new();
    for n in 0..256 {
        expected.extend_from_slice(format!("event: e\ndata: {}\n\n", data(n)).as_bytes());
    }
    let mut reads = 0u32;
    within("every event", async {
        loop {
            let (body, _) = dechunk(&raw);
            // After the stream's opening comment.
            let body = body
                .strip_prefix(b": connected\n\n".as_slice())
                .unwrap_or(&body);
            if body.len() >= expected.len() {
                let first_difference = body.iter().zip(&expected).position(|(a, b)| a != b);
                assert!(
                    body == expected,
                    "{} bytes received, {} expected; first difference at {first_difference:?}",
                    body.len(),
                    expected.len()
                );
                return;
            }
            // Slow: small reads, with pauses, so the server keeps meeting a full socket.
            let mut chunk = [0u8; 2048];
            let n = tls.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the stream ended early");
            raw.extend_from_slice(&chunk[..n]);
            reads += 1;
            if reads.is_multiple_of(64) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    })
    .await;
    assert_eq!(srv.hub.stats().slow_consumer_closes, 0);
    srv.stop().await;
}

/// A TLS client that stops reading (its last record half-read, or not read at all)
/// meets the same outbox bound as a plain one: it is closed by policy, and the reader
/// beside it goes on.
#[tokio::test]
async fn a_tls_client_that_stops_reading_is_closed_by_policy_as_a_plain_one_is() {
    let cert = SelfSigned::new();
    let options = options().outbox_limit(64 * 1024);
    let srv = Both::start(options, &cert).await;
    let plain = srv.plain;
    let mut stalled = connect_tls(srv.addr, client_config(&[&cert.cert], &[b"http/1.1"]))
        .await
        .unwrap();
    let (head, _) = open(&mut stalled, "/sse?room=r").await;
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
    let mut stalled_tcp = TcpStream::connect(plain).await.unwrap();
    open(&mut stalled_tcp, "/sse?room=r").await;
    let mut reader = connect_tls(srv.addr, client_config(&[&cert.cert], &[b"http/1.1"]))
        .await
        .unwrap();
    let (_, mut raw) = open(&mut reader, "/sse?room=r").await;
    eventually("all joined", || srv.hub.room_size("r") == 3).await;
    let chunk = "x".repeat(8 * 1024);
    // At most 4 MiB: far more than the socket buffers and the outbox together.
    for n in 0..512 {
        let m = Message::builder()
            .event("big")
            .data(format!("{n:03}{chunk}"))
            .build()
            .unwrap();
        srv.hub.to("r").publish(&m).unwrap();
        let want = format!("event: big\ndata: {n:03}{chunk}\n\n");
        raw = {
            let body_len_before = dechunk(&raw).0.len();
            let mut raw = raw;
            within("the reader's event", async {
                while dechunk(&raw).0.len() < body_len_before + want.len() {
                    let mut buf = vec![0u8; 64 * 1024];
                    let k = reader.read(&mut buf).await.unwrap();
                    assert!(k > 0, "the reader's stream ended");
                    raw.extend_from_slice(&buf[..k]);
                }
            })
            .await;
            raw
        };
        if srv.hub.stats().slow_consumer_closes >= 2 {
            break;
        }
    }
    assert_eq!(
        srv.hub.stats().slow_consumer_closes,
        2,
        "TLS and plain alike"
    );
    eventually("the stalled streams are gone", || {
        srv.hub.room_size("r") == 1
    })
    .await;
    // The stalled TLS client finds its connection closed once it reads: what the server
    // sent before, then the end (no `close_notify` behind a cut record is required).
    within("the stalled client's end", async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stalled.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    let m = Message::builder().event("after").data("1").build().unwrap();
    assert_eq!(srv.hub.to("r").publish(&m).unwrap().delivered, 1);
    let body = body_until(&mut reader, raw, b"event: after\ndata: 1\n\n").await;
    assert!(body.ends_with(b"event: after\ndata: 1\n\n"));
    srv.stop().await;
}
