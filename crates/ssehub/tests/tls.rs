//! TLS listeners on real sockets: an HTTP/1.1 and an HTTP/2 client (chosen by ALPN)
//! receive events over TLS; a certificate reload keeps open streams open while new
//! connections get the new certificate; a plain listener beside a TLS one. Certificates
//! are made in the test (rcgen).
#![cfg(feature = "tls")]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use common::{Running, TestServer};
use http::{Request, StatusCode, Version};
use http_body_util::Empty;
use ssehub::{Server, SseOptions, TlsConfig};
use ssehub_testkit::tls::{client_config, connect_tls, send_tls, SelfSigned};
use ssehub_testkit::{eventually, SseClient};

/// A TLS configuration serving `cert`.
fn tls_of(cert: &SelfSigned) -> TlsConfig {
    TlsConfig::from_pem(cert.cert.clone(), cert.key.clone())
}

async fn tls_server(tls: TlsConfig) -> TestServer {
    TestServer::start_with(SseOptions::new().rooms_from_query(true), |s: Server| {
        s.tls(tls)
    })
    .await
}

/// Send the event `event` with `data` to every stream of `srv`.
fn broadcast(srv: &TestServer, event: &str, data: &str) {
    let m = ssehub::Message::builder()
        .event(event)
        .data(data)
        .build()
        .unwrap();
    srv.hub.to(ssehub::ROOM_ALL).publish(&m).unwrap();
}

/// Open `/sse` over TLS offering `alpn`; the stream and the protocol ALPN chose.
async fn open(srv: &TestServer, roots: &[&str], alpn: &[&[u8]]) -> (SseClient, Vec<u8>) {
    let req = Request::get("/sse")
        .header("accept", "text/event-stream")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let (res, chosen) = send_tls(srv.addr, client_config(roots, alpn), req).await;
    let client = SseClient::from_response(res);
    assert_eq!(client.status, StatusCode::OK);
    (client, chosen.unwrap_or_default())
}

#[tokio::test]
async fn http1_and_http2_clients_receive_events_over_tls() {
    let cert = SelfSigned::new();
    let srv = tls_server(tls_of(&cert)).await;
    let (mut h2, alpn) = open(&srv, &[&cert.cert], &[b"h2", b"http/1.1"]).await;
    assert_eq!(alpn, b"h2", "a client offering h2 gets it");
    let (mut h1, alpn) = open(&srv, &[&cert.cert], &[b"http/1.1"]).await;
    assert_eq!(alpn, b"http/1.1");
    eventually("both streams joined", || srv.hub.connection_count() == 2).await;
    for n in 0..3 {
        broadcast(&srv, "n", &n.to_string());
        assert_eq!(h2.next_of("n").await.data, n.to_string());
        assert_eq!(h1.next_of("n").await.data, n.to_string());
    }
    srv.stop().await;
}

#[tokio::test]
async fn a_client_without_alpn_gets_http1() {
    let cert = SelfSigned::new();
    let srv = tls_server(tls_of(&cert)).await;
    let (mut client, alpn) = open(&srv, &[&cert.cert], &[]).await;
    assert!(alpn.is_empty());
    eventually("joined", || srv.hub.connection_count() == 1).await;
    broadcast(&srv, "x", "1");
    assert_eq!(client.next_of("x").await.data, "1");
    srv.stop().await;
}

#[tokio::test]
async fn an_untrusted_certificate_fails_the_handshake() {
    let cert = SelfSigned::new();
    let other = SelfSigned::new();
    let srv = tls_server(tls_of(&cert)).await;
    let refused = connect_tls(srv.addr, client_config(&[&other.cert], &[b"h2"])).await;
    assert!(
        refused.is_err(),
        "a client that trusts another certificate refuses"
    );
    srv.stop().await;
}

/// A folder of its own for one test's files, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("ssehub-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        // Written beside and renamed, as certificate tools do, so a reload never reads
        // half a file.
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn a_certificate_reload_keeps_open_streams_open() {
    let dir = Dir::new("reload");
    let first = SelfSigned::new();
    let cert = dir.write("cert.pem", &first.cert);
    let key = dir.write("key.pem", &first.key);
    let tls =
        TlsConfig::from_pem_files(&cert, &key).watch_interval(Some(Duration::from_millis(50)));
    let srv = tls_server(tls).await;
    let (mut h2, _) = open(&srv, &[&first.cert], &[b"h2"]).await;
    let (mut h1, _) = open(&srv, &[&first.cert], &[b"http/1.1"]).await;
    eventually("both streams joined", || srv.hub.connection_count() == 2).await;

    let second = SelfSigned::new();
    dir.write("key.pem", &second.key);
    dir.write("cert.pem", &second.cert);
    // New connections get the new certificate (a client trusting only it gets through).
    let trusts_second = client_config(&[&second.cert], &[b"h2"]);
    ssehub_testkit::within("the reload", async {
        while connect_tls(srv.addr, trusts_second.clone()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        connect_tls(srv.addr, client_config(&[&first.cert], &[b"h2"]))
            .await
            .is_err(),
        "the old certificate is not served any more"
    );
    // The streams opened before go on.
    assert_eq!(srv.hub.connection_count(), 2);
    broadcast(&srv, "after", "reload");
    assert_eq!(h2.next_of("after").await.data, "reload");
    assert_eq!(h1.next_of("after").await.data, "reload");
    srv.stop().await;
}

#[tokio::test]
async fn a_bad_certificate_is_refused_at_bind() {
    let cert = SelfSigned::new();
    let other = SelfSigned::new();
    let mismatched = TlsConfig::from_pem(cert.cert.clone(), other.key.clone());
    let bound = Server::new(([127, 0, 0, 1], 0))
        .sse(SseOptions::new())
        .tls(mismatched)
        .bind()
        .await;
    assert!(bound.is_err(), "a key that is not the certificate's");
    let missing = TlsConfig::from_pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem");
    let err = Server::new(([127, 0, 0, 1], 0))
        .tls(missing)
        .bind()
        .await
        .err()
        .expect("a missing file is refused");
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
}

#[tokio::test]
async fn a_plain_listener_beside_a_tls_one() {
    let cert = SelfSigned::new();
    let tls = tls_of(&cert);
    let server = Server::new(([127, 0, 0, 1], 0))
        .sse(SseOptions::new())
        .tls(tls)
        .also_listen(([127, 0, 0, 1], 0))
        .bind()
        .await
        .unwrap();
    let listeners = server.listeners();
    assert_eq!(listeners.len(), 2);
    assert!(listeners[0].tls && !listeners[1].tls);
    assert!(listeners[0].url().starts_with("https://127.0.0.1:"));
    assert!(listeners[1].url().starts_with("http://127.0.0.1:"));
    let plain = listeners[1].addr;
    let server = Running::spawn(server);
    let client = SseClient::open(plain, "/sse").await;
    assert_eq!(client.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn http2_over_tls_says_no_connection_header() {
    let cert = SelfSigned::new();
    let srv = tls_server(tls_of(&cert)).await;
    let req = Request::get("/sse").body(Empty::<Bytes>::new()).unwrap();
    let (res, _) = send_tls(srv.addr, client_config(&[&cert.cert], &[b"h2"]), req).await;
    assert_eq!(res.version(), Version::HTTP_2);
    assert!(res.headers().get("connection").is_none());
    srv.stop().await;
}

#[tokio::test]
async fn shutdown_drains_tls_streams_with_the_farewell() {
    let cert = SelfSigned::new();
    let tls = tls_of(&cert);
    let farewell = ssehub::Message::builder()
        .event("bye")
        .data("shutting down")
        .build()
        .unwrap();
    let srv = TestServer::start_with(SseOptions::new(), |s: Server| {
        s.tls(tls).shutdown_message(farewell)
    })
    .await;
    let (mut h2, _) = open(&srv, &[&cert.cert], &[b"h2"]).await;
    let (mut h1, _) = open(&srv, &[&cert.cert], &[b"http/1.1"]).await;
    eventually("both streams joined", || srv.hub.connection_count() == 2).await;
    let ((), h2_events, h1_events) =
        tokio::join!(srv.stop(), h2.events_until_end(), h1.events_until_end());
    for events in [h2_events, h1_events] {
        assert_eq!(
            events.last().map(|e| (e.event.as_str(), e.data.as_str())),
            Some(("bye", "shutting down")),
            "{events:?}"
        );
    }
}

/// An HTTP/2 client over TLS that stops reading: its stream's flow-control window
/// fills, then its outbox, and the slow-consumer policy closes that stream only.
#[tokio::test]
async fn a_tls_client_that_stops_reading_meets_the_outbox_bound() {
    let cert = SelfSigned::new();
    let tls = tls_of(&cert);
    let options = SseOptions::new().outbox_limit(64 * 1024);
    let srv = TestServer::start_with(options, |s: Server| s.tls(tls)).await;
    let (stalled, _) = open(&srv, &[&cert.cert], &[b"h2"]).await;
    let (mut reader, _) = open(&srv, &[&cert.cert], &[b"http/1.1"]).await;
    eventually("both streams joined", || srv.hub.connection_count() == 2).await;
    let chunk = "x".repeat(8 * 1024);
    // At most 4 MiB: far more than the window and the outbox together.
    for n in 0..512 {
        broadcast(&srv, "big", &chunk);
        assert_eq!(
            reader.next_of("big").await.data.len(),
            chunk.len(),
            "event {n}"
        );
        if srv.hub.stats().slow_consumer_closes > 0 {
            break;
        }
    }
    let stats = srv.hub.stats();
    assert_eq!(stats.slow_consumer_closes, 1, "{stats:?}");
    eventually("the stalled stream is gone", || {
        srv.hub.connection_count() == 1
    })
    .await;
    broadcast(&srv, "after", "1");
    assert_eq!(
        reader.next_of("after").await.data,
        "1",
        "the reader goes on"
    );
    drop(stalled);
    srv.stop().await;
}

/// A TLS server with a header timeout of 300 ms, and a client that opens TCP and says
/// nothing: the server, once it has cut that client, and what the client got.
async fn a_silent_client_cut() -> (TestServer, Vec<u8>) {
    let cert = SelfSigned::new();
    let tls = tls_of(&cert);
    let srv = TestServer::start_with(SseOptions::new(), |s: Server| {
        s.tls(tls).header_timeout(Duration::from_millis(300))
    })
    .await;
    let mut silent = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let got = ssehub_testkit::until_closed("the silent client is cut", &mut silent).await;
    (srv, got)
}

/// A client that opens TCP and never starts the TLS handshake (or stops half-way) is cut
/// at the header timeout, as a plain client that sends no request is.
#[tokio::test]
async fn a_handshake_that_never_comes_is_cut_at_the_header_timeout() {
    let (srv, got) = a_silent_client_cut().await;
    assert!(
        got.is_empty(),
        "nothing is sent to a client that said nothing"
    );
    srv.stop().await;
}

/// Over TLS, on `tcp` (connected already): the handshake (ALPN http/1.1), then a stream
/// request. Whether it got 200 and the stream's first bytes; the connection, to keep.
async fn tls_stream_on(
    tcp: tokio::net::TcpStream,
    cert: &SelfSigned,
) -> (bool, Option<impl Sized>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let config = client_config(&[&cert.cert], &[b"http/1.1"]);
    let attempt = async {
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .ok()?;
        tls.write_all(b"GET /sse HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .ok()?;
        let mut got = Vec::new();
        while !(got.starts_with(b"HTTP/1.1 200") && got.windows(11).any(|w| w == b": connected")) {
            let mut chunk = [0u8; 1024];
            match tls.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
        Some(tls)
    };
    let tls = tokio::time::timeout(ssehub_testkit::WAIT, attempt)
        .await
        .ok()
        .flatten();
    (tls.is_some(), tls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_tls_clients_from_one_address_is_served() {
    // Handshakes in progress are not slow heads: a crowd far past the per-address cap,
    // all handshaking at once, is served.
    const CLIENTS: usize = 64;
    let cert = SelfSigned::new();
    let tls = tls_of(&cert);
    let srv = TestServer::start_with(SseOptions::new().keep_alive(None), |s: Server| {
        s.tls(tls).max_pending_connections(Some(100), Some(4))
    })
    .await;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (addr, cert) = (srv.addr, cert.clone());
            tokio::spawn(async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                tls_stream_on(tcp, &cert).await
            })
        })
        .collect();
    let mut held = Vec::new();
    let mut served = 0;
    for c in clients {
        let (ok, tls) = c.await.unwrap();
        served += usize::from(ok);
        held.push(tls);
    }
    let refused = srv.hub.stats().refused;
    assert_eq!(served, CLIENTS, "refused: {refused:?}");
    assert_eq!(refused.values().sum::<u64>(), 0, "{refused:?}");
    drop(held);
    srv.stop().await;
}

#[tokio::test]
async fn stalled_tls_handshakes_are_capped_once_their_grace_is_over() {
    const CAP: usize = 2;
    const EXTRA: usize = 2;
    let cert = SelfSigned::new();
    let tls = tls_of(&cert);
    let srv = TestServer::start_with(SseOptions::new().keep_alive(None), |s: Server| {
        s.tls(tls)
            .header_timeout(Duration::from_secs(60))
            .max_pending_connections(Some(100), Some(CAP))
    })
    .await;
    let mut stalled = Vec::new();
    for _ in 0..CAP + EXTRA {
        stalled.push(tokio::net::TcpStream::connect(srv.addr).await.unwrap());
    }
    // No handshake: each counts as pending after its grace (a second), and past the
    // cap is closed then.
    ssehub_testkit::within("the refusals", async {
        while srv.hub.stats().refused["max_pending_per_ip"] < EXTRA as u64 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // The held ones were only waiting: their handshakes and streams go through.
    let mut served = 0;
    let mut held = Vec::new();
    for tcp in stalled {
        let (ok, tls) = tls_stream_on(tcp, &cert).await;
        served += usize::from(ok);
        held.push(tls);
    }
    assert_eq!(served, CAP);
    let refused = srv.hub.stats().refused;
    assert_eq!(refused["max_pending_per_ip"], EXTRA as u64, "{refused:?}");
    assert_eq!(refused["header_timeout"], 0, "{refused:?}");
    drop(held);
    srv.stop().await;
}

#[tokio::test]
async fn a_handshake_cut_by_the_header_timeout_is_counted() {
    let (srv, _) = a_silent_client_cut().await;
    eventually("the timeout counted", || {
        srv.hub.stats().refused["header_timeout"] == 1
    })
    .await;
    srv.stop().await;
}
