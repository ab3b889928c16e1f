//! The basic usage: an SSE endpoint at `/sse` whose `on_connect` greets every client with
//! a `welcome` event and a JSON `time` event.
//!
//! ```text
//! cargo run -p ssehub --example basic            # listens on 0.0.0.0:2015
//! cargo run -p ssehub --example basic 127.0.0.1:8080
//! curl -N http://127.0.0.1:2015/sse
//! ```
//!
//! In a browser:
//!
//! ```js
//! const es = new EventSource("/sse");
//! es.addEventListener("welcome", (e) => console.log("welcome:", e.data));
//! es.addEventListener("time", (e) => console.log("time:", JSON.parse(e.data).now));
//! ```

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use ssehub::{Message, Server, SseOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(a) => a.parse()?,
        None => ([0, 0, 0, 0], 2015).into(),
    };

    let sse = SseOptions::new()
        .prefix("/sse")
        .on_connect(|conn, _ctx| async move {
            // A send fails only if the client is already gone; nothing to do then.
            let _ = conn.send_event("welcome", "hello world");
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            match Message::builder()
                .event("time")
                .json(&serde_json::json!({ "now": now }))
                .and_then(|b| b.build())
            {
                Ok(m) => {
                    let _ = conn.send(&m);
                }
                Err(e) => eprintln!("cannot build the time event: {e}"),
            }
        });

    Server::new(addr)
        .sse(sse)
        .on_started(|info| println!("listening on http://{}/sse", info.local_addr))
        .run()
        .await?;
    Ok(())
}
