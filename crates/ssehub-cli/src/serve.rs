//! `ssehub serve`: the demo server of the seed, and a hub you can put on the internet
//! with one config file (`config.rs`).
//!
//! Routes:
//! - `/`: the demo page (embedded in the binary; `--static DIR` serves a folder instead,
//!   `demo.page = false` neither).
//! - `/sse`: the event stream. A new client gets event `status` with data `connected`;
//!   `?room=a&room=b` joins those rooms besides `__all`.
//! - `POST /publish`, `GET /stats`: the library's [`HubApi`] for this hub; open unless a
//!   token is configured (`serve/auth.rs`), so the demo listens on 127.0.0.1 unless told
//!   otherwise (with a warning while publishing is open).
//! - `/metrics`, `/rooms`, `/rooms/{room}`, `/dashboard`: what an operator watches the
//!   hub with (`serve/observe.rs`), behind the same credential as `/stats`.
//! - `/.well-known/mercure`: a Mercure hub, when `[mercure]` turns it on
//!   (`serve/mercure.rs`).
//! - `/healthz`: 200 `ok` while the server runs, for container health checks (the
//!   reference Mercure image's path), with or without the Mercure hub, open to all.
//!
//! The flags are `serve/args.rs`; TLS `serve/tls.rs`; cross-origin pages `serve/cors.rs`.
//! A ticker broadcasts event `tick` to `__all` every `demo.tick_interval`. Every room
//! keeps a history unless `history.enabled = false`, so a page that loses its
//! connection gets what it missed when its `EventSource` reconnects.

mod args;
mod auth;
mod cors;
mod dashboard;
mod mercure;
mod observe;
mod page;
mod tls;
mod token;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use ssehub::{
    ApiBody, Auth, HistoryConfig, Hub, HubApi, HubConfig, ListenerInfo, Message, RedisConfig,
    Server, SlowConsumerPolicy, SseOptions, StaticFiles, ROOM_ALL,
};

pub(crate) use self::args::Args;
use crate::config::{redact_url, Config, SlowConsumer};

/// The demo page, compiled into the binary so `ssehub` alone has everything it serves.
const INDEX_HTML: &str = include_str!("../assets/index.html");

pub(crate) async fn run(config: Config) -> anyhow::Result<()> {
    let hub = hub(&config).await?;
    let stream_auth = auth::stream_auth(&config.auth)?;
    let sse = sse_options(&config, stream_auth.clone()).with_hub(hub.clone());
    let server = listeners(&config)?.sse(sse);
    let server = pages(server, &config)?;
    let api = HubApi::new(hub.clone()).max_publish_body(config.limits.max_publish_body);
    let api = auth::guard_api(api, &config.auth, stream_auth.as_ref())?;
    let api = cors::cookie_origins(api, &config.cors);
    let mercure = mercure::mercure(&config).await?;
    let server = api_routes(
        server,
        &config,
        &api,
        mercure.as_ref().map(|m| m.hub().clone()),
    )?;
    let (server, feed) = observe::mount(server, &api, &config.observe)?;
    let server = server.route("/healthz", |req| async move { healthz(&req) });
    let server = match &mercure {
        Some(m) => server.mercure(m.clone()),
        None => server,
    };
    let server = server
        .header_timeout(config.server.header_timeout)
        .idle_timeout((!config.server.idle_timeout.is_zero()).then_some(config.server.idle_timeout))
        .max_connections(limit(config.limits.max_connections))
        .max_pending_connections(
            limit(config.limits.max_pending_connections),
            limit(config.limits.max_pending_per_ip),
        )
        .grace(config.server.grace)
        .shutdown_message(
            Message::builder()
                .event("status")
                .data("server shutting down")
                .build()
                .expect("a fixed, valid message"),
        )
        .bind()
        .await?;
    announce(&server.listeners(), &config);
    if mercure.is_some() {
        tracing::info!("{}", config.describe_mercure());
    }
    let every = config.demo.tick_interval;
    let ticker = (!every.is_zero()).then(|| tokio::spawn(ticker(hub.clone(), every)));
    server.run().await;
    if let Some(t) = ticker {
        t.abort();
    }
    drop(feed);
    tracing::info!("server stopped");
    Ok(())
}

/// The names of loopback, which a server there always answers to.
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// The host names the server answers to (`None`: any): on loopback, or when
/// `server.allowed_hosts` lists names, loopback's and those. On loopback because a page
/// whose name is pointed at 127.0.0.1 (DNS rebinding) is, for the browser, of the
/// demo's own origin, and would read and publish; a server reachable by other names
/// answers them all unless told which.
fn allowed_hosts(c: &Config) -> Option<Vec<String>> {
    let listed = &c.server.allowed_hosts;
    if listed.iter().any(|h| h == "*") {
        return None;
    }
    let on_loopback = std::iter::once(c.server.listen)
        .chain(c.server.also_listen)
        .all(|addr| addr.ip().is_loopback());
    (on_loopback || !listed.is_empty()).then(|| {
        LOOPBACK_HOSTS
            .iter()
            .map(|h| (*h).to_owned())
            .chain(listed.iter().cloned())
            .collect()
    })
}

/// The listeners: the main one (TLS when configured) and the optional plain one, and the
/// host names they answer to.
fn listeners(c: &Config) -> anyhow::Result<Server> {
    let mut server = Server::new(c.server.listen);
    if let Some(hosts) = allowed_hosts(c) {
        tracing::debug!(?hosts, "answering these host names only");
        server = server.allowed_hosts(hosts);
    }
    if c.server.listen_backlog != 0 {
        server = server.listen_backlog(c.server.listen_backlog);
    }
    if let Some(tls) = tls::tls_config(&c.tls)? {
        server = server.tls(tls);
    }
    if let Some(addr) = c.server.also_listen {
        server = server.also_listen(addr);
    }
    Ok(server)
}

/// The demo page, a static folder, or neither.
fn pages(server: Server, c: &Config) -> anyhow::Result<Server> {
    Ok(match &c.demo.static_dir {
        Some(dir) => {
            anyhow::ensure!(dir.is_dir(), "--static {}: not a directory", dir.display());
            server.static_files(StaticFiles::new(dir))
        }
        None if c.demo.page => server
            .route("/", |req| async move { index(req) })
            .route("/index.html", |req| async move { index(req) }),
        None => server,
    })
}

/// `/publish` and `/stats` of `api`, under `[cors]`'s layer; `/stats` also holds the
/// Mercure hub's counters, under `mercure`, when it is on.
fn api_routes(
    server: Server,
    c: &Config,
    api: &HubApi,
    mercure: Option<Hub>,
) -> anyhow::Result<Server> {
    let api = api.clone();
    let layer = cors::api_layer(&c.cors)?;
    let publish_api = api.clone();
    let publish = cors::wrap(layer.clone(), move |req| {
        let api = publish_api.clone();
        async move { api.publish(req).await }
    });
    let stats = cors::wrap(layer, move |req| {
        let (api, mercure) = (api.clone(), mercure.clone());
        async move { with_mercure(api.stats(&req), mercure.as_ref()).await }
    });
    Ok(server
        .route("/publish", move |req| publish(req))
        .route("/stats", move |req| stats(req)))
}

/// A successful `/stats` answer with the Mercure hub's counters added under `mercure`.
async fn with_mercure(res: Response<ApiBody>, mercure: Option<&Hub>) -> Response<ApiBody> {
    let Some(hub) = mercure.filter(|_| res.status().is_success()) else {
        return res;
    };
    let (mut parts, body) = res.into_parts();
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(never) => match never {},
    };
    let Ok(serde_json::Value::Object(mut stats)) = serde_json::from_slice(&bytes) else {
        return Response::from_parts(parts, ApiBody::new(bytes));
    };
    let counters = serde_json::to_value(hub.stats()).expect("counters serialize");
    stats.insert("mercure".into(), counters);
    let out = serde_json::to_vec(&stats).expect("a JSON object serializes");
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Response::from_parts(parts, ApiBody::new(out.into()))
}

/// One line per listener, and a warning for publishing open beyond this machine.
fn announce(listeners: &[ListenerInfo], c: &Config) {
    for l in listeners {
        let what = if l.tls {
            " (TLS: HTTP/2 and HTTP/1.1)"
        } else {
            ""
        };
        tracing::info!("listening on {}{what}", l.url());
    }
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.addr).collect();
    if let Some(warning) = open_warning(&addrs, c) {
        tracing::warn!("{warning}");
    }
}

/// The warning for publishing open to anyone on a listener beyond this machine.
fn open_warning(listeners: &[SocketAddr], c: &Config) -> Option<String> {
    let exposed: Vec<String> = listeners
        .iter()
        .filter(|addr| !addr.ip().is_loopback())
        .map(SocketAddr::to_string)
        .collect();
    (!exposed.is_empty() && auth::publishing_is_open(&c.auth)).then(|| {
        format!(
            "listening on {} with publishing open: anyone who can reach it may publish to \
             every client and read /stats, /rooms and the dashboard (every room's name, \
             every client's address); set --publish-token, or --jwt-secret / \
             --jwt-public-key",
            exposed.join(", ")
        )
    })
}

/// The hub: this process alone, or one node of those sharing `redis.url`.
async fn hub(c: &Config) -> anyhow::Result<Hub> {
    let h = &c.history;
    let history = h.enabled.then(|| {
        HistoryConfig::default()
            .max_events(h.max_events)
            .max_bytes(h.max_bytes)
            .max_age(h.max_age)
    });
    let mut config = observe::hub_config(&c.observe, HubConfig::default());
    if let Some(dir) = h.dir.as_ref().filter(|_| h.enabled) {
        config = config.history_dir(dir, h.fsync());
    }
    let config = config
        .history(history)
        .history_total_bytes(h.total_bytes)
        .max_rooms_per_connection(c.limits.max_rooms_per_connection);
    Ok(match &c.redis.url {
        None => {
            let hub = Hub::open(config).map_err(|e| anyhow::anyhow!("history.dir: {e}"))?;
            if let Some(dir) = h.dir.as_ref().filter(|_| h.enabled) {
                tracing::info!(dir = %dir.display(), fsync = ?h.fsync, "history kept on disk");
            }
            hub
        }
        Some(url) => {
            let redis = RedisConfig::new(url.as_str()).prefix(c.redis.prefix.as_str());
            let hub = Hub::with_redis(config, redis)
                .await
                .map_err(|e| anyhow::anyhow!("--redis {}: {e}", redact_url(url)))?;
            tracing::info!(redis = %redact_url(url), prefix = %c.redis.prefix, "joined the nodes sharing this Redis");
            hub
        }
    })
}

fn sse_options(c: &Config, auth: Option<Auth>) -> SseOptions {
    let s = &c.sse;
    let off = |d: Duration| (!d.is_zero()).then_some(d);
    let mut options = SseOptions::new()
        .prefix(s.prefix.as_str())
        .keep_alive(off(s.keep_alive))
        .retry(off(s.retry))
        .shutdown_retry(s.shutdown_retry_min, s.shutdown_retry_max)
        .outbox_limit(s.outbox_limit)
        .slow_consumer(match s.slow_consumer {
            SlowConsumer::Close => SlowConsumerPolicy::Close,
            SlowConsumer::DropEvent => SlowConsumerPolicy::DropEvent,
        })
        .batch_window(s.batch_window)
        .adaptive_batching(s.adaptive_batching)
        // Joined before `on_connect`: a client that has seen `status` is in its rooms.
        .rooms_from_query(s.rooms_from_query)
        .max_connections(limit(c.limits.max_streams))
        .max_connections_per_ip(limit(c.limits.max_streams_per_ip))
        .trusted_proxies(c.limits.trusted_proxies.iter().copied())
        .on_connect(|conn, _ctx| async move {
            let _ = conn.send_event("status", "connected");
        });
    options = if s.auto_join_room.is_empty() {
        options.no_auto_join()
    } else {
        options.auto_join_room(s.auto_join_room.as_str())
    };
    if let Some(auth) = auth {
        options = options.auth(auth);
    }
    // Streams for the hub's own pages and for clients that are not web pages, unless
    // `[cors]` lets other pages in.
    cors::sse_origins(options, &c.cors)
}

async fn ticker(hub: Hub, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await; // the first tick is immediate; the first event comes after `every`
    let mut n: u64 = 0;
    loop {
        interval.tick().await;
        n += 1;
        let message = Message::builder()
            .event("tick")
            .data(format!("tick #{n} @ {}", now_rfc3339()))
            .build()
            .expect("a tick has no line break in its event name");
        match hub.to(ROOM_ALL).publish(&message) {
            Ok(p) => tracing::trace!(n, reached = p.delivered, "tick"),
            Err(e) => tracing::warn!(error = %e, "tick not sent"),
        }
    }
}

/// The current UTC time, RFC 3339 with milliseconds: `2025-01-31T12:34:56.789Z`.
fn now_rfc3339() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_else(|_| "?".into())
}

/// The demo page (`GET` or `HEAD`; anything else is 405).
fn index(req: Request<Incoming>) -> Response<Full<Bytes>> {
    page::html(&req, INDEX_HTML)
}

/// `/healthz`: the server is up (`GET` or `HEAD`; anything else is 405). Nothing about
/// the hub in it: it is open to anyone.
fn healthz<B>(req: &Request<B>) -> Response<Full<Bytes>> {
    let method = req.method();
    if method != http::Method::GET && method != http::Method::HEAD {
        let mut res = page::plain(http::StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        res.headers_mut().insert(
            http::header::ALLOW,
            http::HeaderValue::from_static("GET, HEAD"),
        );
        return res;
    }
    let mut res = page::plain(http::StatusCode::OK, "ok\n");
    res.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    res
}

/// A limit of the config, where 0 means none.
fn limit(n: usize) -> Option<usize> {
    (n > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_binds_answer_their_own_names_only() {
        let mut c = Config::default();
        let all = |c: &Config| allowed_hosts(c).map(|h| h.join(","));
        assert_eq!(all(&c).as_deref(), Some("localhost,127.0.0.1,[::1]"));
        c.server.allowed_hosts = vec!["hub.test".into()];
        assert_eq!(
            all(&c).as_deref(),
            Some("localhost,127.0.0.1,[::1],hub.test")
        );
        c.server.also_listen = Some("0.0.0.0:80".parse().unwrap());
        assert!(all(&c).is_some(), "listed names are checked on any bind");
        c.server.allowed_hosts.clear();
        assert_eq!(all(&c), None, "a bind beyond loopback answers any name");
        c.server.also_listen = None;
        c.server.allowed_hosts = vec!["*".into()];
        assert_eq!(all(&c), None, "\"*\" turns the check off");
    }

    #[test]
    fn open_publishing_is_warned_of_beyond_loopback_only() {
        let on = |addr: &str| -> SocketAddr { addr.parse().unwrap() };
        let demo = Config::default();
        assert_eq!(open_warning(&[on("127.0.0.1:2015")], &demo), None);
        let warned = open_warning(&[on("127.0.0.1:80"), on("0.0.0.0:443")], &demo).unwrap();
        assert!(
            warned.contains("0.0.0.0:443") && !warned.contains(":80"),
            "{warned}"
        );
        let mut guarded = Config::default();
        guarded.auth.publish_token = Some("t".into());
        assert_eq!(open_warning(&[on("0.0.0.0:443")], &guarded), None);
        let mut jwt = Config::default();
        jwt.auth.jwt_secret = Some("s".into());
        assert_eq!(open_warning(&[on("0.0.0.0:443")], &jwt), None);
        jwt.auth.allow_anonymous_publish = true;
        assert!(open_warning(&[on("0.0.0.0:443")], &jwt).is_some());
    }
}
