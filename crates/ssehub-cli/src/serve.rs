//! `ssehub serve`: the demo server of the seed, and a small hub you can publish to.
//!
//! Routes:
//! - `/`: the demo page (embedded in the binary; `--static DIR` serves a folder instead).
//! - `/sse`: the event stream. A new client gets event `status` with data `connected`;
//!   `?room=a&room=b` joins those rooms besides `__all`.
//! - `POST /publish`: broadcast one event (query form or JSON body, see [`publish`]).
//! - `GET /stats`: the hub's counters and room sizes as JSON.
//!
//! A ticker broadcasts event `tick` to `__all` every `--tick-interval` seconds.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::{json, Map, Value};
use ssehub::server::{self, Body};
use ssehub::{
    FrameError, Hub, HubConfig, HubStats, Message, Rejection, Server, SseOptions, StaticFiles,
};

/// The demo page, compiled into the binary so `ssehub` alone has everything it serves.
const INDEX_HTML: &str = include_str!("../assets/index.html");

/// The largest `POST /publish` body accepted.
pub const MAX_PUBLISH_BODY: usize = 1024 * 1024;

/// The room every connection joins, and the one the ticker and default publishes use.
pub const ALL: &str = "__all";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Port to listen on.
    #[arg(long, env = "SSEHUB_PORT", default_value_t = 2015)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, env = "SSEHUB_BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,
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
    let sse = sse_options(&args);
    let hub = sse.hub().clone();
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
    let publish_hub = hub.clone();
    let stats_hub = hub.clone();
    let server = server
        .shutdown_message(
            Message::builder()
                .event("status")
                .data("server shutting down")
                .build()
                .expect("a fixed, valid message"),
        )
        .route("/publish", move |req| publish(publish_hub.clone(), req))
        .route("/stats", move |req| {
            let hub = stats_hub.clone();
            async move { stats(&hub, req) }
        })
        .bind()
        .await?;
    let addr = server.local_addr();
    let shown = if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::from([127, 0, 0, 1]), addr.port())
    } else {
        addr
    };
    tracing::info!("server started at http://{shown}/");

    let ticker = (!args.tick_interval.is_zero())
        .then(|| tokio::spawn(ticker(hub.clone(), args.tick_interval)));
    server.run().await;
    if let Some(t) = ticker {
        t.abort();
    }
    tracing::info!("server stopped");
    Ok(())
}

fn sse_options(args: &Args) -> SseOptions {
    let keep_alive = (!args.keep_alive.is_zero()).then_some(args.keep_alive);
    SseOptions::new()
        .keep_alive(keep_alive)
        .batch_window(args.batch_window)
        .authorize(|ctx| async move {
            check_rooms(ctx.query_all("room"))
                .map_err(|why| Rejection::status(StatusCode::BAD_REQUEST).body(why))
        })
        .on_connect(|conn, ctx| async move {
            // Join before announcing: a client that has seen `status` is in its rooms.
            for room in ctx.query_all("room") {
                let _ = conn.join(room);
            }
            let _ = conn.send_event("status", "connected");
        })
}

/// Why a room name is refused, if it is (see [`ssehub::hub::validate_room`]: empty,
/// over 128 bytes, or containing a control character).
pub fn check_room(room: &str) -> Result<(), String> {
    ssehub::hub::validate_room(room).map_err(|e| {
        let shown: String = room.chars().take(40).collect();
        let more = if shown.len() < room.len() { "…" } else { "" };
        format!("{e} (room {shown:?}{more})")
    })
}

/// Why the rooms a client asks for are refused, if they are.
fn check_rooms<'a>(rooms: impl Iterator<Item = &'a str>) -> Result<(), String> {
    // Every connection is in `__all` too.
    let max = HubConfig::default().max_rooms_per_connection - 1;
    let mut distinct = std::collections::HashSet::new();
    for room in rooms {
        check_room(room)?;
        distinct.insert(room);
    }
    if distinct.len() > max {
        return Err(format!(
            "too many rooms: {} asked for, at most {max}",
            distinct.len()
        ));
    }
    Ok(())
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
        let reached = hub.broadcast(ALL, &message);
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

/// `405` for any method but `GET` and `HEAD`.
fn get_or_head_only(req: &Request<Incoming>) -> Option<Response<Body>> {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return None;
    }
    let mut res = server::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    Some(res)
}

fn index(req: Request<Incoming>) -> Response<Body> {
    if let Some(refused) = get_or_head_only(&req) {
        return refused;
    }
    let mut res = server::bytes(
        StatusCode::OK,
        "text/html; charset=utf-8",
        Bytes::from_static(INDEX_HTML.as_bytes()),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

/// `GET /stats`: the hub's counters, flattened, plus the member count of every room.
#[derive(Serialize)]
struct Stats {
    #[serde(flatten)]
    hub: HubStats,
    room_members: BTreeMap<String, usize>,
}

fn stats(hub: &Hub, req: Request<Incoming>) -> Response<Body> {
    if let Some(refused) = get_or_head_only(&req) {
        return refused;
    }
    let stats = Stats {
        hub: hub.stats(),
        room_members: hub.room_sizes().into_iter().collect(),
    };
    let mut res = server::json(StatusCode::OK, &stats);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// A `POST /publish` refusal: the status and a JSON body `{"error": ..., "field": ...}`.
#[derive(Debug)]
struct PublishError {
    status: StatusCode,
    message: String,
    field: Option<&'static str>,
}

impl PublishError {
    fn bad(message: impl Into<String>) -> Self {
        PublishError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            field: None,
        }
    }

    fn field(field: &'static str, message: impl Into<String>) -> Self {
        PublishError {
            field: Some(field),
            ..Self::bad(message)
        }
    }

    fn into_response(self) -> Response<Body> {
        let mut body = json!({ "error": self.message });
        if let Some(f) = self.field {
            body["field"] = json!(f);
        }
        let mut res = server::json(self.status, &body);
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        res
    }
}

impl From<FrameError> for PublishError {
    fn from(e: FrameError) -> Self {
        let field = e.field();
        PublishError::field(field, format!("invalid {field}: {e}"))
    }
}

/// What one publish asks for, whichever form it came in.
#[derive(Debug, Default, PartialEq)]
struct PublishRequest {
    rooms: Vec<String>,
    event: Option<String>,
    id: Option<String>,
    retry: Option<u64>,
    data: String,
}

impl PublishRequest {
    /// The message, built from the fields it takes (the rooms are left).
    fn message(self) -> Result<Message, FrameError> {
        let mut b = Message::builder().data(self.data);
        if let Some(e) = self.event {
            b = b.event(e);
        }
        if let Some(id) = self.id {
            b = b.id(id);
        }
        if let Some(ms) = self.retry {
            b = b.retry(Duration::from_millis(ms));
        }
        b.build()
    }
}

/// `POST /publish`: broadcast one event, answer `202 {"delivered": N}`.
///
/// Two forms:
/// - query: `?room=R&event=E&id=I&retry=MS`, the body is the data as is (UTF-8). `room`
///   may repeat; it defaults to `__all`.
/// - JSON (`Content-Type: application/json`): `{"room": "R"}` or `{"rooms": ["a", "b"]},
///   "event", "id", "retry", "data"}`. `data` may be any JSON value: a string is sent as
///   is, anything else serialised.
///
/// Several rooms are broadcast with [`Hub::broadcast_many_unique`]: a connection in more
/// than one of them receives the event once, and `delivered` counts connections.
/// Nothing is broadcast when any field is invalid.
async fn publish(hub: Hub, req: Request<Incoming>) -> Response<Body> {
    let delivered = async {
        let mut p = publish_request(req).await?;
        let rooms = std::mem::take(&mut p.rooms);
        let message = p.message()?;
        let delivered = hub.broadcast_many_unique(&rooms, &message);
        tracing::debug!(?rooms, delivered, "published");
        Ok::<_, PublishError>(delivered)
    };
    match delivered.await {
        Ok(delivered) => server::json(StatusCode::ACCEPTED, &json!({ "delivered": delivered })),
        Err(e) => e.into_response(),
    }
}

async fn publish_request(req: Request<Incoming>) -> Result<PublishRequest, PublishError> {
    if req.method() != Method::POST {
        return Err(PublishError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            ..PublishError::bad("use POST")
        });
    }
    let too_large = || PublishError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        ..PublishError::bad(format!("the body is over {MAX_PUBLISH_BODY} bytes"))
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_PUBLISH_BODY as u64) {
        return Err(too_large());
    }
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let body = match Limited::new(req.into_body(), MAX_PUBLISH_BODY)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
        Err(e) => return Err(PublishError::bad(format!("could not read the body: {e}"))),
    };
    let p = if is_json {
        from_json(&body)?
    } else {
        from_query(&query, &body)?
    };
    for room in &p.rooms {
        check_room(room).map_err(|why| PublishError::field("room", why))?;
    }
    Ok(p)
}

fn from_query(query: &[(String, String)], body: &[u8]) -> Result<PublishRequest, PublishError> {
    let mut p = PublishRequest::default();
    for (k, v) in query {
        match k.as_str() {
            "room" => p.rooms.push(v.clone()),
            "event" if !v.is_empty() => p.event = Some(v.clone()),
            "id" => p.id = Some(v.clone()),
            "retry" => p.retry = Some(parse_retry(v)?),
            _ => {}
        }
    }
    if p.rooms.is_empty() {
        p.rooms.push(ALL.into());
    }
    p.data = std::str::from_utf8(body)
        .map_err(|_| PublishError::field("data", "the body (the data) must be UTF-8 text"))?
        .to_owned();
    Ok(p)
}

fn parse_retry(v: &str) -> Result<u64, PublishError> {
    v.parse().map_err(|_| {
        PublishError::field(
            "retry",
            format!("invalid retry {v:?}: it must be a whole number of milliseconds"),
        )
    })
}

fn from_json(body: &[u8]) -> Result<PublishRequest, PublishError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| PublishError::bad(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(PublishError::bad("the JSON body must be an object"));
    };
    let mut p = PublishRequest::default();
    match (obj.remove("room"), obj.remove("rooms")) {
        (Some(_), Some(_)) => {
            return Err(PublishError::field(
                "room",
                "give \"room\" or \"rooms\", not both",
            ))
        }
        (Some(Value::String(r)), None) => p.rooms.push(r),
        (Some(_), None) => return Err(PublishError::field("room", "\"room\" must be a string")),
        (None, Some(Value::Array(rooms))) => {
            if rooms.is_empty() {
                return Err(PublishError::field("rooms", "\"rooms\" is empty"));
            }
            for r in rooms {
                match r {
                    Value::String(r) => p.rooms.push(r),
                    _ => {
                        return Err(PublishError::field(
                            "rooms",
                            "\"rooms\" must be an array of strings",
                        ))
                    }
                }
            }
        }
        (None, Some(_)) => {
            return Err(PublishError::field(
                "rooms",
                "\"rooms\" must be an array of strings",
            ))
        }
        (None, None) => p.rooms.push(ALL.into()),
    }
    p.event = optional_string(&mut obj, "event")?.filter(|e| !e.is_empty());
    p.id = optional_string(&mut obj, "id")?;
    p.retry = match obj.remove("retry") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_u64().ok_or_else(|| {
            PublishError::field(
                "retry",
                format!("invalid retry {n}: it must be a whole number of milliseconds"),
            )
        })?),
        Some(Value::String(s)) => Some(parse_retry(&s)?),
        Some(_) => {
            return Err(PublishError::field(
                "retry",
                "invalid retry: it must be a whole number of milliseconds",
            ))
        }
    };
    p.data = match obj.remove("data") {
        None => String::new(),
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
    };
    if let Some(unknown) = obj.keys().next() {
        return Err(PublishError::bad(format!(
            "unknown field {unknown:?} (expected room, rooms, event, id, retry, data)"
        )));
    }
    Ok(p)
}

fn optional_string(
    obj: &mut Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, PublishError> {
    match obj.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(PublishError::field(
            field,
            format!("\"{field}\" must be a string"),
        )),
    }
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

    #[test]
    fn room_names_are_checked() {
        assert!(check_room("chat").is_ok());
        assert!(check_room("é-日本").is_ok());
        assert!(check_room(&"a".repeat(128)).is_ok());
        assert!(check_room("").unwrap_err().contains("empty"));
        assert!(check_room(&"a".repeat(129))
            .unwrap_err()
            .contains("128 bytes"));
        assert!(check_room("a\nb").unwrap_err().contains("control"));
        assert!(check_room("a\u{7f}").unwrap_err().contains("control"));
        let many: Vec<String> = (0..300).map(|i| format!("r{i}")).collect();
        assert!(check_rooms(many.iter().map(String::as_str))
            .unwrap_err()
            .contains("too many rooms"));
        assert!(check_rooms(["a", "a", "b"].into_iter()).is_ok());
    }

    #[test]
    fn query_form() {
        let q = vec![
            ("room".to_owned(), "a".to_owned()),
            ("room".to_owned(), "b".to_owned()),
            ("event".to_owned(), "chat".to_owned()),
            ("id".to_owned(), "7".to_owned()),
            ("retry".to_owned(), "1500".to_owned()),
        ];
        let p = from_query(&q, b"hello\nworld").unwrap();
        assert_eq!(
            p,
            PublishRequest {
                rooms: vec!["a".into(), "b".into()],
                event: Some("chat".into()),
                id: Some("7".into()),
                retry: Some(1500),
                data: "hello\nworld".into(),
            }
        );
        assert_eq!(from_query(&[], b"x").unwrap().rooms, vec![ALL.to_owned()]);
        let e = from_query(&[("retry".into(), "soon".into())], b"").unwrap_err();
        assert_eq!(e.field, Some("retry"));
        assert_eq!(from_query(&[], b"\xff").unwrap_err().field, Some("data"));
    }

    #[test]
    fn json_form() {
        let p = from_json(br#"{"rooms":["a","b"],"event":"e","data":{"n":1}}"#).unwrap();
        assert_eq!(p.rooms, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(p.data, r#"{"n":1}"#);
        let p = from_json(br#"{"room":"a","data":"text","retry":100}"#).unwrap();
        assert_eq!((p.data.as_str(), p.retry), ("text", Some(100)));
        assert_eq!(from_json(b"{}").unwrap().rooms, vec![ALL.to_owned()]);
        assert!(from_json(b"{")
            .unwrap_err()
            .message
            .contains("not valid JSON"));
        assert!(from_json(b"[1]").is_err());
        assert_eq!(
            from_json(br#"{"retry":"x"}"#).unwrap_err().field,
            Some("retry")
        );
        assert_eq!(
            from_json(br#"{"retry":-5}"#).unwrap_err().field,
            Some("retry")
        );
        assert_eq!(
            from_json(br#"{"event":3}"#).unwrap_err().field,
            Some("event")
        );
        assert!(from_json(br#"{"room":"a","rooms":["b"]}"#).is_err());
        assert!(from_json(br#"{"rooms":[]}"#).is_err());
        assert!(from_json(br#"{"colour":"red"}"#)
            .unwrap_err()
            .message
            .contains("colour"));
    }

    #[test]
    fn invalid_fields_name_themselves() {
        let p = PublishRequest {
            event: Some("a\nb".into()),
            ..PublishRequest::default()
        };
        let e = PublishError::from(p.message().unwrap_err());
        assert_eq!(e.field, Some("event"));
        assert!(e.message.starts_with("invalid event"));
        let p = PublishRequest {
            id: Some("1\r".into()),
            ..PublishRequest::default()
        };
        assert_eq!(
            PublishError::from(p.message().unwrap_err()).field,
            Some("id")
        );
    }
}
