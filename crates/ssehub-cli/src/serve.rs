//! `ssehub serve`: the demo server of the seed, and a small hub you can publish to.
//!
//! Routes:
//! - `/`: the demo page (embedded in the binary; `--static DIR` serves a folder instead).
//! - `/sse`: the event stream. A new client gets event `status` with data `connected`;
//!   `?room=a&room=b` joins those rooms besides `__all`.
//! - `POST /publish`, `GET /stats`: the library's [`HubApi`] for this hub; open unless
//!   `--publish-token` is given, so the demo listens on 127.0.0.1 unless told otherwise
//!   (`--bind 0.0.0.0`, with a warning while publishing is open).
//! - `/metrics`, `/rooms`, `/rooms/{room}`, `/dashboard`: what an operator watches the
//!   hub with (`observe.rs`), behind the same token.
//!
//! A ticker broadcasts event `tick` to `__all` every `--tick-interval` seconds. Every
//! room keeps a history (`--history-size`, `--history-age`, `--no-history`), so a page
//! that loses its connection gets what it missed when its `EventSource` reconnects.

mod dashboard;
mod observe;
mod page;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use ssehub::{
    HistoryConfig, Hub, HubApi, HubConfig, Message, RedisConfig, Server, SseOptions, StaticFiles,
    ROOM_ALL,
};

/// The demo page, compiled into the binary so `ssehub` alone has everything it serves.
const INDEX_HTML: &str = include_str!("../assets/index.html");

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Port to listen on.
    #[arg(long, env = "SSEHUB_PORT", default_value_t = 2015)]
    pub port: u16,
    /// Address to bind (`0.0.0.0` to be reachable from other machines).
    #[arg(long, env = "SSEHUB_BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Require `Authorization: Bearer TOKEN` on `POST /publish`, `GET /stats` and the
    /// operator's routes (`/metrics`, `/rooms`, `/rooms/{room}`; the dashboard takes it
    /// as `?token=TOKEN` too, for a browser).
    #[arg(
        long,
        env = "SSEHUB_PUBLISH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub publish_token: Option<String>,
    /// The largest `POST /publish` body, in bytes (an event is also refused, with 413,
    /// when it is over 512 KiB once encoded).
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    pub max_publish_body: usize,
    /// Serve this folder at `/` instead of the built-in demo page.
    #[arg(long = "static", value_name = "DIR")]
    pub static_dir: Option<PathBuf>,
    /// Seconds between `tick` events to `__all` (fractions allowed; 0 turns the ticker off).
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub tick_interval: Duration,
    /// Seconds between `: ping` comments on idle streams (0 turns keep-alive off).
    #[arg(long, value_name = "SECONDS", default_value = "15", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub keep_alive: Duration,
    /// Seconds a busy stream lets events gather before its next write (0 writes at once).
    #[arg(long, value_name = "SECONDS", default_value = "0.02", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub batch_window: Duration,
    /// Events each room's history keeps for clients that reconnect (`Last-Event-ID`).
    #[arg(long, value_name = "EVENTS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub history_size: u64,
    /// Seconds an event stays in its room's history.
    #[arg(long, value_name = "SECONDS", default_value = "600", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub history_age: Duration,
    /// Keep no history: reconnecting clients get live events only.
    #[arg(long)]
    pub no_history: bool,
    /// Join the nodes that share this Redis (`redis://HOST:PORT/DB`): rooms and history
    /// in common. Without it, this process is the whole hub.
    #[arg(long, env = "SSEHUB_REDIS_URL", value_name = "URL")]
    pub redis: Option<String>,
    /// The prefix of every key this hub keeps in Redis (hubs sharing a Redis differ here).
    #[arg(
        long,
        env = "SSEHUB_REDIS_PREFIX",
        default_value = "ssehub",
        value_name = "PREFIX"
    )]
    pub redis_prefix: String,
    #[command(flatten)]
    pub observe: observe::ObserveArgs,
}

#[derive(Parser)]
struct Standalone {
    #[command(flatten)]
    args: Args,
}

impl Args {
    /// The arguments of a bare `ssehub`: defaults, overridden by environment variables.
    pub fn from_env() -> anyhow::Result<Args> {
        Ok(Standalone::try_parse_from(["ssehub"])?.args)
    }
}

/// A duration in seconds, fractions allowed: `0` (off), or at least one millisecond.
fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!(
            "{s:?} must be a finite number of seconds, 0 or more"
        ));
    }
    if secs > 0.0 && secs < 0.001 {
        return Err(format!("{s:?} is too short: use 0 (off) or at least 0.001"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let hub = hub(&args).await?;
    let sse = sse_options(&args).with_hub(hub.clone());
    let mut server = Server::new(SocketAddr::new(args.bind, args.port)).sse(sse);
    server = match &args.static_dir {
        Some(dir) => {
            anyhow::ensure!(dir.is_dir(), "--static {}: not a directory", dir.display());
            server.static_files(StaticFiles::new(dir))
        }
        None => server
            .route("/", |req| async move { index(req) })
            .route("/index.html", |req| async move { index(req) }),
    };
    let api = hub_api(&args, &hub);
    let publish_api = api.clone();
    let server = server
        .shutdown_message(
            Message::builder()
                .event("status")
                .data("server shutting down")
                .build()
                .expect("a fixed, valid message"),
        )
        .route("/publish", move |req| {
            let api = publish_api.clone();
            async move { api.publish(req).await }
        })
        .route("/stats", {
            let api = api.clone();
            move |req| {
                let api = api.clone();
                async move { api.stats(&req) }
            }
        });
    let (server, feed) = observe::mount(server, &api, &args.observe)?;
    let server = server.bind().await?;
    let addr = server.local_addr();
    let shown = if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::from([127, 0, 0, 1]), addr.port())
    } else {
        addr
    };
    tracing::info!("server started at http://{shown}/");
    if !addr.ip().is_loopback() && args.publish_token.is_none() {
        tracing::warn!(
            "listening on {addr} without --publish-token: anyone who can reach it may \
             publish to every client and read /stats, /rooms and the dashboard (every \
             room's name, every client's address)"
        );
    }

    let ticker = (!args.tick_interval.is_zero())
        .then(|| tokio::spawn(ticker(hub.clone(), args.tick_interval)));
    server.run().await;
    if let Some(t) = ticker {
        t.abort();
    }
    drop(feed);
    tracing::info!("server stopped");
    Ok(())
}

/// `/publish` and `/stats`, with the demo's body limit and, if given, its token.
fn hub_api(args: &Args, hub: &Hub) -> HubApi {
    let api = HubApi::new(hub.clone()).max_publish_body(args.max_publish_body);
    match args.publish_token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => api.bearer_token(token),
        None => api,
    }
}

/// The hub: this process alone, or one node of those sharing `--redis`.
async fn hub(args: &Args) -> anyhow::Result<Hub> {
    let history = (!args.no_history).then(|| {
        HistoryConfig::default()
            .max_events(usize::try_from(args.history_size).unwrap_or(usize::MAX))
            .max_age(args.history_age)
    });
    let config = args
        .observe
        .hub_config(HubConfig::default().history(history));
    Ok(match &args.redis {
        None => Hub::with_config(config),
        Some(url) => {
            let redis = RedisConfig::new(url.as_str()).prefix(args.redis_prefix.as_str());
            let hub = Hub::with_redis(config, redis)
                .await
                .map_err(|e| anyhow::anyhow!("--redis {}: {e}", redact(url)))?;
            tracing::info!(redis = %redact(url), prefix = %args.redis_prefix, "joined the nodes sharing this Redis");
            hub
        }
    })
}

/// A Redis URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn sse_options(args: &Args) -> SseOptions {
    let keep_alive = (!args.keep_alive.is_zero()).then_some(args.keep_alive);
    SseOptions::new()
        .keep_alive(keep_alive)
        .batch_window(args.batch_window)
        // Joined before `on_connect`: a client that has seen `status` is in its rooms.
        .rooms_from_query(true)
        // Streams for the demo's own page and for clients that are not web pages; another
        // site's page may not open them from its visitors' browsers.
        .allowed_origins(Vec::<String>::new())
        .on_connect(|conn, _ctx| async move {
            let _ = conn.send_event("status", "connected");
        })
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
        let reached = hub.broadcast(ROOM_ALL, &message);
        tracing::trace!(n, reached, "tick");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_parse_fractions_and_refuse_nonsense() {
        assert_eq!(parse_seconds("1").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_seconds("0.25").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_seconds("0").unwrap(), Duration::ZERO);
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("abc").is_err());
        assert!(parse_seconds("inf").is_err());
        assert!(parse_seconds("NaN").is_err());
        assert!(parse_seconds("0.0000001").is_err());
    }
}
