//! The endpoint mounted in an axum Router (the `axum` example itself), served on an
//! ephemeral port: streams open at `/sse` and `/sse/`, the hooks see the peer address
//! through the middleware, an axum handler broadcasts.

mod common;

#[allow(dead_code)]
#[path = "../examples/axum.rs"]
mod axum_example;

use std::net::SocketAddr;

use common::*;
use http::StatusCode;
use ssehub::decode::Item;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

struct AxumServer {
    addr: SocketAddr,
    hub: ssehub::Hub,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start() -> AxumServer {
    let options = axum_example::options();
    let hub = options.hub().clone();
    let app = axum_example::app(options).expect("valid options");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let close = hub.clone();
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stopped.await;
            close.close_all();
        })
        .await
    });
    AxumServer {
        addr,
        hub,
        stop,
        task,
    }
}

#[tokio::test]
async fn axum_mount_streams_and_broadcasts() {
    let srv = start().await;
    let (mut s, head) = raw_request(
        srv.addr,
        "GET /sse?room=news HTTP/1.1\r\nhost: t\r\naccept-encoding: gzip\r\n\r\n",
    )
    .await;
    let local = s.local_addr().unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert_eq!(head.header("content-length"), None);
    assert_eq!(head.header("content-encoding"), None);
    let mut rest = head.rest;
    // The welcome names the client's own address: ConnectInfo reached the hook.
    read_until_contains(
        &mut s,
        &mut rest,
        format!("event: welcome\ndata: hello {local}\n\n").as_bytes(),
    )
    .await;

    let mut c = SseClient::connect(srv.addr, "/sse/?room=news", &[]).await;
    assert_eq!(c.status, StatusCode::OK);
    assert_eq!(c.next_item().await, Some(Item::Comment("connected".into())));
    let welcome = c.next_event().await;
    assert_eq!(welcome.event, "welcome");
    assert!(welcome.data.starts_with("hello 127.0.0.1:"), "{welcome:?}");
    eventually("both in the room", || srv.hub.room_size("news") == 2).await;

    let (status, _, body) = request(
        srv.addr,
        "POST",
        "/broadcast?room=news&event=headline",
        &[],
        "extra, extra",
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "reached 2\n"));
    let e = c.next_event().await;
    assert_eq!(
        (e.event.as_str(), e.data.as_str()),
        ("headline", "extra, extra")
    );
    read_until_contains(
        &mut s,
        &mut rest,
        b"event: headline\ndata: extra, extra\n\n",
    )
    .await;

    let (status, _, _) = request(
        srv.addr,
        "POST",
        "/broadcast?room=news&event=bad%0Aname",
        &[],
        "x",
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "an invalid event name is refused"
    );

    // Strict match still holds behind axum's router.
    let (status, _, _) = request(srv.addr, "GET", "/sse/x", &[], "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Shutdown ends the streams and the server returns.
    srv.stop.send(()).unwrap();
    c.until_end().await;
    within("axum shutdown", srv.task).await.unwrap().unwrap();
    assert_eq!(srv.hub.connection_count(), 0);
}
