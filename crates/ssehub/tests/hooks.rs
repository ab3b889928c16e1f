//! The hooks over real connections: authorize (deny, back off, panic), the request
//! context on_connect sees, on_connect panics.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::{Method, StatusCode};
use ssehub::decode::Item;
use ssehub::{Rejection, RequestContext, SseOptions};
use tokio::sync::mpsc;

/// Options whose authorize hook answers by the `token` query parameter, and a counter of
/// on_connect calls.
fn guarded() -> (SseOptions, Arc<AtomicUsize>) {
    let connects = Arc::new(AtomicUsize::new(0));
    let n = connects.clone();
    let options = SseOptions::new()
        .authorize(|ctx| async move {
            match ctx.query("token") {
                Some("good") => Ok(()),
                Some("boom") => panic!("authorize hook failure (expected by the test)"),
                Some("later") => Err(Rejection::back_off(Duration::from_millis(1500))),
                Some(_) => Err(Rejection::forbidden().body("wrong token")),
                None => Err(Rejection::unauthorized()
                    .header(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
                    .body("no token")),
            }
        })
        .on_connect(move |_conn, _ctx| {
            let n = n.clone();
            async move {
                n.fetch_add(1, Ordering::SeqCst);
            }
        });
    (options, connects)
}

#[tokio::test]
async fn authorize_denies_with_401_and_403() {
    let (options, connects) = guarded();
    let srv = TestServer::start(options).await;

    let (status, headers, body) = srv.request("GET", "/sse", "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert_eq!(body, "no token");
    assert!(headers.get("content-type").unwrap() != "text/event-stream; charset=utf-8");

    let (status, _, body) = srv.request("GET", "/sse?token=bad", "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, "wrong token");

    assert_eq!(srv.hub.connection_count(), 0);
    assert_eq!(
        srv.hub.stats().connections_total,
        0,
        "no connection registered"
    );
    assert_eq!(srv.hub.room_count(), 0);

    // The good token opens a stream, and only then does on_connect run.
    let mut c = srv.sse("/sse?token=good").await;
    assert_eq!(c.status, StatusCode::OK);
    assert_eq!(c.next_item().await, Some(Item::Comment("connected".into())));
    eventually("on_connect ran once", || {
        connects.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(srv.hub.stats().connections_total, 1);
    srv.stop().await;
}

#[tokio::test]
async fn back_off_sends_retry_then_ends() {
    let (options, connects) = guarded();
    let srv = TestServer::start(options).await;
    let mut c = srv.sse("/sse?token=later").await;
    assert_eq!(c.status, StatusCode::OK);
    assert_eq!(
        c.headers["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let items = c.until_end().await;
    let retries: Vec<Duration> = items
        .iter()
        .filter_map(|i| match i {
            Item::Retry(d) => Some(*d),
            _ => None,
        })
        .collect();
    assert_eq!(retries, vec![Duration::from_millis(1500)], "{items:?}");
    assert!(
        !items.iter().any(|i| matches!(i, Item::Event(_))),
        "{items:?}"
    );
    assert_eq!(srv.hub.stats().connections_total, 0);
    assert_eq!(connects.load(Ordering::SeqCst), 0);
    srv.stop().await;
}

#[tokio::test]
async fn panicking_authorize_gives_500_and_the_server_keeps_serving() {
    let (options, connects) = guarded();
    let srv = TestServer::start(options).await;
    for _ in 0..3 {
        let (status, _, _) = srv.request("GET", "/sse?token=boom", "").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(srv.hub.stats().connections_total, 0);
    let mut c = srv.sse("/sse?token=good").await;
    assert_eq!(c.status, StatusCode::OK);
    assert_eq!(c.next_item().await, Some(Item::Comment("connected".into())));
    srv.hub
        .to("__all")
        .publish(&ssehub::Message::new("still alive"))
        .unwrap();
    assert_eq!(c.next_event().await.data, "still alive");
    assert_eq!(connects.load(Ordering::SeqCst), 1);
    srv.stop().await;
}

#[tokio::test]
async fn panicking_on_connect_closes_only_its_stream() {
    let srv = TestServer::start(
        SseOptions::new()
            .keep_alive(None)
            .on_connect(welcome_unless_boom),
    )
    .await;
    assert_boom_stream_ends_without_events(&srv).await;
    let mut good = srv.sse("/sse").await;
    let e = good.next_event().await;
    assert_eq!((e.event.as_str(), e.data.as_str()), ("welcome", "ok"));
    eventually("only the good stream remains", || {
        srv.hub.connection_count() == 1
    })
    .await;
    srv.stop().await;
}

/// A server whose on_connect hands every RequestContext to the test.
async fn context_server() -> (TestServer, mpsc::UnboundedReceiver<RequestContext>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let srv = TestServer::start(SseOptions::new().on_connect(move |_conn, ctx| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(ctx);
        }
    }))
    .await;
    (srv, rx)
}

#[tokio::test]
async fn on_connect_sees_the_request() {
    let (srv, mut rx) = context_server().await;
    let (s, head) = raw_request(
        srv.addr,
        "GET /sse/?room=a&room=b&name=J%C3%BCrgen+K HTTP/1.1\r\nhost: t\r\nx-user: bob\r\nlast-event-id: 41\r\n\r\n",
    )
    .await;
    let local = s.local_addr().unwrap();
    assert_eq!(head.status, 200);
    let ctx = within("context", rx.recv()).await.unwrap();
    assert_eq!(ctx.method(), Method::GET);
    assert_eq!(ctx.path(), "/sse/");
    assert_eq!(ctx.query("room"), Some("a"));
    assert_eq!(ctx.query_all("room").collect::<Vec<_>>(), vec!["a", "b"]);
    assert_eq!(ctx.query("name"), Some("Jürgen K"));
    assert_eq!(ctx.query("missing"), None);
    assert_eq!(ctx.headers()["x-user"], "bob");
    assert_eq!(ctx.last_event_id(), Some("41"));
    let peer = ctx.peer_addr().expect("the server knows the peer");
    assert_eq!(peer.ip(), std::net::Ipv4Addr::LOCALHOST);
    assert_eq!(peer, local, "the client's own socket address");
    srv.stop().await;
}

#[tokio::test]
async fn last_event_id_from_query_and_header() {
    let (srv, mut rx) = context_server().await;

    let _a = srv.sse("/sse?lastEventId=17").await;
    let ctx = within("context", rx.recv()).await.unwrap();
    assert_eq!(ctx.last_event_id(), Some("17"));

    let _b = SseClient::connect(srv.addr, "/sse", &[("last-event-id", "99")]).await;
    let ctx = within("context", rx.recv()).await.unwrap();
    assert_eq!(ctx.last_event_id(), Some("99"));

    let _c = SseClient::connect(srv.addr, "/sse?lastEventId=1", &[("last-event-id", "2")]).await;
    let ctx = within("context", rx.recv()).await.unwrap();
    assert_eq!(ctx.last_event_id(), Some("2"), "the header wins");

    let _d = srv.sse("/sse").await;
    let ctx = within("context", rx.recv()).await.unwrap();
    assert_eq!(ctx.last_event_id(), None);
    srv.stop().await;
}

#[tokio::test]
async fn stop_rejection_answers_204_without_a_stream() {
    let srv = TestServer::start(SseOptions::new().authorize(|ctx| async move {
        if ctx.query("banned").is_some() {
            Err(Rejection::stop())
        } else {
            Ok(())
        }
    }))
    .await;
    let (status, headers, body) = srv.request("GET", "/sse?banned=1", "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(body, "");
    assert!(headers.get("content-type").is_none());
    assert_eq!(srv.hub.stats().connections_total, 0);
    let c = srv.sse("/sse").await;
    assert_eq!(c.status, StatusCode::OK);
    srv.stop().await;
}
