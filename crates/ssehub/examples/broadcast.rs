//! Store the hub for later and broadcast from anywhere: a background task, a plain OS
//! thread, an HTTP route, or any function through a global.
//!
//! ```text
//! cargo run -p ssehub --example broadcast        # listens on 0.0.0.0:2015
//! curl -N http://127.0.0.1:2015/sse              # in one terminal
//! curl -d 'hello everyone' http://127.0.0.1:2015/notify
//! ```

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt;
use ssehub::{Hub, Message, Server, SseOptions};

/// One way to reach the hub from code that was never handed it.
static HUB: OnceLock<Hub> = OnceLock::new();

/// Any function, anywhere in the program.
fn announce(text: &str) -> usize {
    let Some(hub) = HUB.get() else { return 0 };
    match notice(hub, text) {
        Ok(reached) => reached,
        Err(e) => {
            eprintln!("not sent: {e}");
            0
        }
    }
}

/// Publish `text` as a `notice` event to everyone. Returns how many it reached.
fn notice(hub: &Hub, text: &str) -> Result<usize, Box<dyn std::error::Error>> {
    let message = Message::builder().event("notice").data(text).build()?;
    Ok(hub.to(ssehub::ROOM_ALL).publish(&message)?.delivered)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(a) => a.parse()?,
        None => ([0, 0, 0, 0], 2015).into(),
    };

    let sse = SseOptions::new(); // every connection joins `__all` by default
    let hub = sse.hub().clone(); // store for later
    HUB.set(hub.clone()).expect("set once");

    // Broadcasting works before the server starts; nobody is connected yet.
    let early = hub.to("__all").publish(&Message::new("too early"))?;
    assert_eq!(early.delivered, 0);

    // A background task.
    let ticker = hub.clone();
    tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            n += 1;
            let m = Message::builder()
                .id(n.to_string())
                .event("tick")
                .data(n.to_string())
                .build()
                .expect("a valid message");
            if let Err(e) = ticker.to("__all").publish(&m) {
                eprintln!("tick not sent: {e}");
            }
        }
    });

    // A plain OS thread: a broadcast never blocks, so no runtime is needed.
    std::thread::spawn(|| loop {
        std::thread::sleep(Duration::from_secs(10));
        announce("server is alive");
    });

    // An HTTP route: POST /notify broadcasts its body.
    let route_hub = hub.clone();
    let server = Server::new(addr)
        .sse(sse)
        .route("/notify", move |req| {
            let hub = route_hub.clone();
            async move {
                let body = match req.into_body().collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
                };
                let Ok(body) = String::from_utf8(body.to_vec()) else {
                    return text(StatusCode::BAD_REQUEST, "the body must be UTF-8");
                };
                match notice(&hub, &body) {
                    Ok(n) => text(StatusCode::OK, format!("reached {n} clients\n")),
                    Err(e) => text(StatusCode::BAD_REQUEST, e.to_string()),
                }
            }
        })
        .on_started(|info| println!("listening on http://{}/sse", info.local_addr));
    server.run().await?;
    Ok(())
}

/// A plain-text answer.
fn text(status: StatusCode, body: impl Into<String>) -> http::Response<String> {
    let mut res = http::Response::new(body.into());
    *res.status_mut() = status;
    res
}
