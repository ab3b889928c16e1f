//! Mount the SSE endpoint in an axum application.
//!
//! [`ssehub::SseEndpoint`] is a `tower::Service`, so axum's `route_service` takes it as
//! is. Mount it at both `/sse` and `/sse/` (axum routes are exact; the endpoint answers
//! both). A small middleware passes axum's `ConnectInfo` on as [`ssehub::PeerAddr`], so
//! the hooks see the client's address. An ordinary axum handler broadcasts.
//!
//! ```text
//! cargo run -p ssehub --example axum             # listens on 0.0.0.0:3000
//! curl -N 'http://127.0.0.1:3000/sse?room=news'
//! curl -d 'extra, extra' 'http://127.0.0.1:3000/broadcast?room=news&event=headline'
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use ssehub::{ConfigError, Hub, Message, PeerAddr, SseEndpoint, SseOptions};

/// The application: the SSE endpoint, a broadcast handler, the peer-address middleware.
pub(crate) fn app(options: SseOptions) -> Result<Router, ConfigError> {
    let hub = options.hub().clone();
    let endpoint = SseEndpoint::new(options)?;
    Ok(Router::new()
        .route_service("/sse", endpoint.clone())
        .route_service("/sse/", endpoint)
        .route("/broadcast", post(broadcast))
        .with_state(hub)
        .layer(middleware::from_fn(peer_addr)))
}

/// Tell the endpoint who the client is.
async fn peer_addr(
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    req.extensions_mut().insert(PeerAddr(addr));
    next.run(req).await
}

/// `POST /broadcast?room=r&event=e` with a text body.
async fn broadcast(
    State(hub): State<Hub>,
    Query(q): Query<HashMap<String, String>>,
    body: String,
) -> (StatusCode, String) {
    let room = q.get("room").map_or("__all", String::as_str);
    let event = q.get("event").map_or("", String::as_str);
    let published = Message::builder()
        .event(event)
        .data(body)
        .build()
        .map_err(|e| e.to_string())
        .and_then(|m| hub.to(room).publish(&m).map_err(|e| e.to_string()));
    match published {
        Ok(p) => (StatusCode::OK, format!("reached {}\n", p.delivered)),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

/// The options of this example: join the rooms named by `?room=`, say hello.
pub(crate) fn options() -> SseOptions {
    SseOptions::new().on_connect(|conn, ctx| async move {
        for room in ctx.query_all("room") {
            let _ = ctx.hub().join(room, &conn);
        }
        let peer = ctx
            .peer_addr()
            .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        let _ = conn.send_event("welcome", &format!("hello {peer}"));
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(a) => a.parse()?,
        None => ([0, 0, 0, 0], 3000).into(),
    };
    let options = options();
    let hub = options.hub().clone();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}/sse", listener.local_addr()?);
    axum::serve(
        listener,
        app(options)?.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = tokio::signal::ctrl_c().await;
        // SSE streams never end by themselves: end them so the shutdown can finish.
        hub.close_all();
    })
    .await?;
    Ok(())
}
