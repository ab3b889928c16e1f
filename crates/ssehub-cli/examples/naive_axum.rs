//! The naive baseline `ssehub bench` compares against: the SSE server most people would
//! write with axum. One `tokio::sync::broadcast` channel per room in a `HashMap` behind a
//! `Mutex`; each connection subscribes to its room and to `__all` and turns every message
//! into an axum `Event` (so every recipient encodes every event again).
//!
//! Same surface as `ssehub serve` as far as the bench is concerned:
//! - `GET /sse?room=R`: joins R (default `__all`) and `__all`.
//! - `POST /publish?room=R&event=E`, body = data: `202 {"delivered": N}`.
//! - `GET /stats`: `{"connections": N, "dropped_events": D, ...}`; dropped events are the
//!   messages a lagging receiver skipped (the channel holds `--capacity` messages).
//!
//! With `--tls-self-signed` it listens over TLS (ALPN `h2` and `http/1.1`, a certificate
//! made at start), as an axum app is usually put behind TLS: tokio-rustls and
//! hyper-util's automatic HTTP/1.1-or-HTTP/2 connection, hyper's settings untouched.
//!
//! ```text
//! cargo run --release -p ssehub-cli --example naive_axum -- --port 2016
//! ```

// The binary's own way of raising the open-file limit (the package has no library to
// import it from).
#[path = "../src/fd_limit.rs"]
mod fd_limit;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use futures_util::stream::{self, Stream};
use serde_json::json;
use tokio::sync::broadcast;

#[derive(Parser)]
struct Args {
    /// Port to listen on.
    #[arg(long, default_value_t = 2016)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// Messages each room's broadcast channel holds for its slowest receiver.
    #[arg(long, default_value_t = 1024)]
    capacity: usize,
    /// Listen over TLS with a self-signed certificate made at start.
    #[arg(long)]
    tls_self_signed: bool,
}

/// What a room's channel carries: event name and data.
type Msg = Arc<(Option<String>, String)>;

struct App {
    rooms: Mutex<HashMap<String, broadcast::Sender<Msg>>>,
    capacity: usize,
    connections: AtomicU64,
    /// Streams ever opened: the bench counts its subscribers by this, which only grows.
    connections_total: AtomicU64,
    published: AtomicU64,
    deliveries: AtomicU64,
    dropped: AtomicU64,
}

impl App {
    fn sender(&self, room: &str) -> broadcast::Sender<Msg> {
        let mut rooms = self.rooms.lock().unwrap();
        rooms
            .entry(room.to_owned())
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .clone()
    }
}

/// Counts the connection while its stream lives.
struct Live(Arc<App>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    fd_limit::raise_fd_limit();
    let app = Arc::new(App {
        rooms: Mutex::default(),
        capacity: args.capacity,
        connections: AtomicU64::new(0),
        connections_total: AtomicU64::new(0),
        published: AtomicU64::new(0),
        deliveries: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
    });
    let router = Router::new()
        .route("/sse", get(sse))
        .route("/publish", post(publish))
        .route("/stats", get(stats))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind((args.bind, args.port)).await?;
    if args.tls_self_signed {
        eprintln!("naive_axum listening on https://{}", listener.local_addr()?);
        return serve_tls(listener, router).await;
    }
    eprintln!("naive_axum listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router).await?;
    Ok(())
}

/// The router over TLS: each connection's handshake, then hyper-util's automatic
/// HTTP/1.1-or-HTTP/2 connection, on a task of its own.
async fn serve_tls(listener: tokio::net::TcpListener, router: Router) -> anyhow::Result<()> {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![made.cert.der().clone()], key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    loop {
        let (tcp, _) = listener.accept().await?;
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(router);
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
        });
    }
}

async fn sse(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let room = q.get("room").map_or("__all", String::as_str);
    app.connections.fetch_add(1, Ordering::Relaxed);
    app.connections_total.fetch_add(1, Ordering::Relaxed);
    let live = Arc::new(Live(app.clone()));
    let mut streams = vec![receive(app.sender("__all").subscribe(), live.clone())];
    if room != "__all" {
        streams.push(receive(app.sender(room).subscribe(), live));
    }
    Sse::new(stream::select_all(streams)).keep_alive(KeepAlive::default())
}

/// One receiver as a stream of events; a lagging receiver skips what it missed.
fn receive(
    rx: broadcast::Receiver<Msg>,
    live: Arc<Live>,
) -> std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> {
    Box::pin(stream::unfold((rx, live), |(mut rx, live)| async move {
        loop {
            match rx.recv().await {
                Ok(msg) => {
                    let (event, data) = &*msg;
                    let mut e = Event::default().data(data);
                    if let Some(name) = event {
                        e = e.event(name);
                    }
                    return Some((Ok(e), (rx, live)));
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    live.0.dropped.fetch_add(n, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }))
}

async fn publish(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
    body: String,
) -> impl IntoResponse {
    let room = q.get("room").map_or("__all", String::as_str);
    if body.contains(['\r', '\n']) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "line break in data"})),
        );
    }
    let sender = app.rooms.lock().unwrap().get(room).cloned();
    let msg = Arc::new((q.get("event").cloned(), body));
    let delivered = sender.map_or(0, |s| s.send(msg).unwrap_or(0)) as u64;
    app.published.fetch_add(1, Ordering::Relaxed);
    app.deliveries.fetch_add(delivered, Ordering::Relaxed);
    (
        StatusCode::ACCEPTED,
        Json(json!({ "delivered": delivered })),
    )
}

async fn stats(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(json!({
        "connections": app.connections.load(Ordering::Relaxed),
        "connections_total": app.connections_total.load(Ordering::Relaxed),
        "rooms": app.rooms.lock().unwrap().len(),
        "events_published": app.published.load(Ordering::Relaxed),
        "deliveries": app.deliveries.load(Ordering::Relaxed),
        "dropped_events": app.dropped.load(Ordering::Relaxed),
        "slow_consumer_closes": 0,
    }))
}
