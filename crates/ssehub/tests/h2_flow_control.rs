//! HTTP/2 clients over TLS that grant no flow-control window: what hyper holds of such a
//! stream counts against its outbox, the slow-consumer policy resets that stream alone
//! (its siblings on the connection go on), and one address cannot hold more than the
//! cap of requests in progress over TLS (`Server::max_tls_requests_per_address`).
#![cfg(feature = "tls")]

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::{eventually, within, Handout, TestServer};
use h2::client::SendRequest;
use h2::RecvStream;
use http::{Request, StatusCode};
use ssehub::{Message, Server, SseOptions, TlsConfig};
use ssehub_testkit::tls::{client_config, SelfSigned};
use tokio::net::{TcpSocket, TcpStream};

const OUTBOX: usize = 64 * 1024;
const EVENT: usize = 4 * 1024;
/// What each stream may receive before it must give window back: the paused streams
/// never do.
const WINDOW: u32 = 16 * 1024;

/// An HTTP/2 connection over TLS from `from` (an address of the loopback range), with a
/// stream window of [`WINDOW`] and a connection window large enough that the paused
/// streams never starve their siblings of it.
async fn h2_connect(addr: SocketAddr, from: [u8; 4], cert: &SelfSigned) -> SendRequest<Bytes> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let tcp: TcpStream = within("connect", socket.connect(addr)).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = within(
        "the TLS handshake",
        tokio_rustls::TlsConnector::from(client_config(&[&cert.cert], &[b"h2"])).connect(name, tcp),
    )
    .await
    .unwrap();
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(WINDOW)
        .initial_connection_window_size(64 << 20)
        .handshake::<_, Bytes>(tls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Open `path` on `client`: the response's status and body.
async fn get(client: &SendRequest<Bytes>, path: &str) -> (StatusCode, RecvStream) {
    let mut client = within("a stream slot", client.clone().ready())
        .await
        .unwrap();
    let req = Request::get(format!("https://localhost{path}"))
        .body(())
        .unwrap();
    let (res, _) = client.send_request(req, true).unwrap();
    let res = within("the response head", res).await.unwrap();
    let status = res.status();
    (status, res.into_body())
}

/// Read `body` (giving its window back) until `needle` has been seen `n` times in all.
struct Reader {
    body: RecvStream,
    seen: Vec<u8>,
}

impl Reader {
    async fn until(&mut self, needle: &[u8], n: usize) {
        within("the reader's events", async {
            while self
                .seen
                .windows(needle.len())
                .filter(|w| *w == needle)
                .count()
                < n
            {
                let chunk = self.body.data().await.expect("open").expect("data");
                let _ = self.body.flow_control().release_capacity(chunk.len());
                self.seen.extend_from_slice(&chunk);
            }
        })
        .await;
    }
}

/// Read what a paused stream received, then its end: `Some(reason)` if it was reset.
async fn end_of(mut body: RecvStream) -> Option<h2::Reason> {
    within("the paused stream's end", async {
        loop {
            match body.data().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return e.reason(),
                None => return None,
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_window_is_reset_by_policy_and_its_siblings_go_on() {
    const PAUSED: usize = 8;
    let cert = SelfSigned::new();
    let tls = TlsConfig::from_pem(cert.cert.clone(), cert.key.clone());
    let (options, mut handout) = Handout::wrap(
        SseOptions::new()
            .keep_alive(None)
            .outbox_limit(OUTBOX)
            .batch_window(std::time::Duration::ZERO),
    );
    let srv = TestServer::start_with(options, |s: Server| s.tls(tls)).await;
    let client = h2_connect(srv.addr, [127, 0, 0, 1], &cert).await;
    let (status, body) = get(&client, "/sse?room=r").await;
    assert_eq!(status, StatusCode::OK);
    let mut reader = Reader {
        body,
        seen: Vec::new(),
    };
    let _reader_conn = handout.next().await;
    let mut paused = Vec::new();
    let mut paused_conns = Vec::new();
    for _ in 0..PAUSED {
        let (status, body) = get(&client, "/sse?room=r").await;
        assert_eq!(status, StatusCode::OK);
        paused.push(body);
        paused_conns.push(handout.next().await);
    }
    eventually("all in the room", || srv.hub.room_size("r") == PAUSED + 1).await;

    // Three outboxes' worth, one event at a time: the reader takes each, the paused
    // streams take their window's worth and then nothing.
    let data = "x".repeat(EVENT);
    let events = 3 * OUTBOX / EVENT;
    for n in 1..=events {
        let m = Message::builder().event("big").data(&data).build().unwrap();
        srv.hub.to("r").publish(&m).unwrap();
        reader.until(b"event: big\n", n).await;
        for c in paused_conns.iter().filter(|c| !c.is_closed()) {
            // What hyper holds counts: at most the bound, and the frame that passes it.
            let queued = c.queued_bytes();
            assert!(
                queued <= OUTBOX + EVENT + 64,
                "{queued} bytes held for {}",
                c.id()
            );
        }
    }
    let stats = srv.hub.stats();
    assert_eq!(stats.slow_consumer_closes, PAUSED as u64, "{stats:?}");
    assert!(paused_conns.iter().all(|c| c.is_closed()));
    // Each paused stream is reset (what h2 buffered for it dropped), not left open
    // with hyper waiting for window that never comes.
    for body in paused {
        assert_eq!(end_of(body).await, Some(h2::Reason::CANCEL));
    }
    // The connection and its reader go on.
    let m = Message::builder().event("after").data("1").build().unwrap();
    srv.hub.to("r").publish(&m).unwrap();
    reader.until(b"event: after\n", 1).await;
    assert_eq!(srv.hub.connection_count(), 1);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_tls_past_the_cap_per_address_get_429_and_other_addresses_are_served() {
    const CAP: usize = 3;
    let cert = SelfSigned::new();
    let tls = TlsConfig::from_pem(cert.cert.clone(), cert.key.clone());
    let srv = TestServer::start_with(SseOptions::new().keep_alive(None), |s: Server| {
        s.tls(tls).max_tls_requests_per_address(Some(CAP))
    })
    .await;
    // Spread over two connections: the cap is the address's, not the connection's.
    let first = h2_connect(srv.addr, [127, 0, 0, 1], &cert).await;
    let second = h2_connect(srv.addr, [127, 0, 0, 1], &cert).await;
    let mut held = Vec::new();
    for n in 0..CAP {
        let client = if n % 2 == 0 { &first } else { &second };
        let (status, body) = get(client, "/sse").await;
        assert_eq!(status, StatusCode::OK);
        held.push(body);
    }
    let (status, _) = get(&second, "/sse").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(srv.hub.stats().refused["max_requests_per_ip"], 1);
    // Another address is served.
    let other = h2_connect(srv.addr, [127, 0, 0, 2], &cert).await;
    let (status, _other_body) = get(&other, "/sse").await;
    assert_eq!(status, StatusCode::OK);
    // A stream that ends gives its slot back.
    drop(held.pop());
    eventually("the slot given back", || srv.hub.connection_count() == CAP).await;
    let (status, _again) = get(&first, "/sse").await;
    assert_eq!(status, StatusCode::OK);
    srv.stop().await;
}
