//! The stream-text app (rooms and broadcast): static files at `/`, the SSE endpoint at
//! `/sse` with a keep-alive every 15 s, rooms chosen with `?room=`, a ticker, and a route
//! to post text to a room.
//!
//! ```text
//! cargo run -p ssehub --example stream_text      # listens on 0.0.0.0:2015
//! # open http://localhost:2015/?room=blue in a browser, then:
//! curl -d 'hello blue' 'http://localhost:2015/say?room=blue'
//! ```
//!
//! Arguments: `[address] [static folder]` (defaults `0.0.0.0:2015` and this example's
//! `www` folder).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt;
use ssehub::{Message, Server, SseOptions, StaticFiles};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = match args.next() {
        Some(a) => a.parse()?,
        None => ([0, 0, 0, 0], 2015).into(),
    };
    let www: PathBuf = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/examples/www").into());

    // setup sse
    let sse = SseOptions::new()
        .prefix("/sse")
        .keep_alive(Some(Duration::from_secs(15)))
        .on_connect(|conn, ctx| async move {
            // `/sse?room=blue&room=green` joins both rooms (and `__all`, by default).
            for room in ctx.query_all("room") {
                if let Err(e) = ctx.hub().join(room, &conn) {
                    let _ = conn.send_event("error", &format!("cannot join {room:?}: {e}"));
                }
            }
            let _ = conn.send_event("status", "connected");
        });
    let hub = sse.hub().clone(); // store for later

    // Everyone gets a tick every second.
    let ticker = hub.clone();
    tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            n += 1;
            let tick = Message::builder()
                .event("tick")
                .data(n.to_string())
                .build()
                .expect("a valid message");
            if let Err(e) = ticker.to("__all").publish(&tick) {
                eprintln!("tick not sent: {e}");
            }
        }
    });

    Server::new(addr)
        // setup static files to serve the index.html
        .static_files(StaticFiles::new(www).max_age(Duration::from_secs(24 * 3600)))
        .sse(sse)
        // POST /say?room=blue with a text body: a `message` event to that room.
        .route("/say", move |req| {
            let hub = hub.clone();
            async move {
                let room = req
                    .uri()
                    .query()
                    .and_then(|q| {
                        form_urlencoded::parse(q.as_bytes())
                            .find(|(k, _)| k == "room")
                            .map(|(_, v)| v.into_owned())
                    })
                    .unwrap_or_else(|| "__all".to_owned());
                let body = match req.into_body().collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
                };
                let Ok(body) = std::str::from_utf8(&body) else {
                    return text(StatusCode::BAD_REQUEST, "the body must be UTF-8");
                };
                match hub.to(&room).publish(&Message::new(body)) {
                    Ok(p) => text(
                        StatusCode::OK,
                        format!("{} clients in {room:?}\n", p.delivered),
                    ),
                    Err(e) => text(StatusCode::BAD_REQUEST, e.to_string()),
                }
            }
        })
        .on_started(|info| {
            println!(
                "server started at http://localhost:{}/",
                info.local_addr.port()
            );
        })
        .run()
        .await?;
    Ok(())
}

/// A plain-text answer.
fn text(status: StatusCode, body: impl Into<String>) -> http::Response<String> {
    let mut res = http::Response::new(body.into());
    *res.status_mut() = status;
    res
}
