//! `ssehub listen`: a terminal SSE client.
//!
//! Prints each event as it arrives, readably or (`--json`) as one JSON object per line,
//! and reconnects like a browser's `EventSource`: after the stream ends it waits the
//! reconnection delay (3 s, or what the server's `retry:` said) and reconnects with
//! `Last-Event-ID`. A non-200 answer or a body that is not `text/event-stream` ends it
//! with an error, as it does an `EventSource`.
//!
//! A server cannot make it grow without bound: an event whose data passes `--max-data`
//! (1 MiB unless told), or a line that has not ended 64 bytes past that, ends it with an
//! error naming the limit, without reconnecting (see [`ssehub::decode`]).
//!
//! ```text
//! ssehub listen http://127.0.0.1:2015/sse?room=chat
//! ssehub listen http://127.0.0.1:2015/sse --json --event tick --count 3
//! ```

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::Empty;
use hyper::body::Incoming;
use ssehub::decode::{
    Decoder, Event, EventStream, EventStreamError, Item, DEFAULT_MAX_DATA, DEFAULT_MAX_LINE,
};

use crate::hub_client;

/// The reconnection delay until the server sends `retry:` (what browsers use).
const DEFAULT_RETRY: Duration = Duration::from_secs(3);

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The stream's URL, such as http://127.0.0.1:2015/sse?room=chat.
    pub url: String,
    /// Print one JSON object per event: {"event": ..., "data": ..., "id": ...}.
    #[arg(long)]
    pub json: bool,
    /// Send this `Last-Event-ID` on the first connection.
    #[arg(long, value_name = "ID")]
    pub last_event_id: Option<String>,
    /// Exit (successfully) after this many events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Only print (and count) events of this type (repeat for several).
    #[arg(long = "event", value_name = "TYPE")]
    pub events: Vec<String>,
    /// Exit when the stream ends instead of reconnecting.
    #[arg(long)]
    pub no_reconnect: bool,
    /// Give up (exit with an error) after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Also print comments (`: ping`, `: connected`) and retry hints, on standard error.
    #[arg(long, short)]
    pub verbose: bool,
    /// The most data one event may carry, in bytes; a line may be 64 bytes longer, for
    /// its field name. A stream that passes it ends `listen` with an error.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_DATA)]
    pub max_data: usize,
}

/// How much longer than `--max-data` a line may be: room for its field name.
const FIELD_NAME_ROOM: usize = DEFAULT_MAX_LINE - DEFAULT_MAX_DATA;

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let uri = hub_client::parse_url(&args.url)?;
    match args.timeout {
        None => listen(&args, uri).await,
        Some(secs) => {
            let limit = Duration::try_from_secs_f64(secs)
                .map_err(|_| anyhow::anyhow!("--timeout {secs}: not a number of seconds"))?;
            tokio::time::timeout(limit, listen(&args, uri))
                .await
                .map_err(|_| anyhow::anyhow!("timed out after {secs} s"))?
        }
    }
}

/// What carries over from one connection to the next.
struct Listening {
    /// What to send as `Last-Event-ID` on the next connection (empty: nothing).
    last_id: String,
    /// The reconnection delay in force.
    retry: Duration,
    /// Events printed so far (for `--count`).
    seen: u64,
}

async fn listen(args: &Args, uri: Uri) -> anyhow::Result<()> {
    let client = hub_client::http_client::<Empty<Bytes>>();
    let mut state = Listening {
        last_id: args.last_event_id.clone().unwrap_or_default(),
        retry: DEFAULT_RETRY,
        seen: 0,
    };
    let mut connected_once = false;
    if args.count == Some(0) {
        return Ok(());
    }
    loop {
        let req = stream_request(&uri, &state.last_id)?;
        let res = match client.request(req).await {
            Ok(res) => res,
            Err(e) if connected_once && !args.no_reconnect => {
                // The server went away; like EventSource, keep trying.
                let retry = state.retry;
                eprintln!("ssehub listen: cannot reconnect ({e}); retrying in {retry:?}");
                tokio::time::sleep(retry).await;
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot connect to {uri}")),
        };
        let body = event_stream_body(&uri, res).await?;
        connected_once = true;
        let Some(ended) = follow(args, &uri, body, &mut state).await? else {
            return Ok(());
        };
        if args.no_reconnect {
            return match args.count {
                Some(n) => anyhow::bail!("{ended} after {} of {n} events", state.seen),
                None => {
                    eprintln!("ssehub listen: {ended}");
                    Ok(())
                }
            };
        }
        let retry = state.retry;
        eprintln!("ssehub listen: {ended}; reconnecting in {retry:?}");
        tokio::time::sleep(retry).await;
    }
}

/// The stream request, with `Last-Event-ID` unless `last_id` is empty.
fn stream_request(uri: &Uri, last_id: &str) -> anyhow::Result<Request<Empty<Bytes>>> {
    let mut req = Request::get(uri.clone())
        .header(header::ACCEPT, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache");
    if !last_id.is_empty() {
        let v = HeaderValue::from_str(last_id)
            .with_context(|| format!("last event id {last_id:?} cannot be sent"))?;
        req = req.header("last-event-id", v);
    }
    Ok(req.body(Empty::new())?)
}

/// The body of a 200 `text/event-stream` answer; any other answer is an error, as it is
/// for an `EventSource`.
async fn event_stream_body(uri: &Uri, res: Response<Incoming>) -> anyhow::Result<Incoming> {
    let status = res.status();
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if status != StatusCode::OK {
        let body = hub_client::read_body(res.into_body(), 16 * 1024)
            .await
            .unwrap_or_default();
        anyhow::bail!(
            "{uri} answered {status}: {}",
            hub_client::error_message(&body)
        );
    }
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("text/event-stream") {
        anyhow::bail!(
            "{uri} is not an event stream (content type {:?}, expected text/event-stream)",
            content_type
        );
    }
    Ok(res.into_body())
}

/// Print the stream's events until it ends (`Some`: why) or `--count` is reached
/// (`None`).
async fn follow(
    args: &Args,
    uri: &Uri,
    body: Incoming,
    state: &mut Listening,
) -> anyhow::Result<Option<String>> {
    // The last event id carries over a reconnection, as in a browser.
    let decoder = Decoder::resume(state.last_id.clone())
        .max_data(args.max_data)
        .max_line(args.max_data.saturating_add(FIELD_NAME_ROOM));
    let mut stream = EventStream::with_decoder(body, decoder);
    let ended = loop {
        let item = match stream.next().await {
            None => break "the server ended the stream".to_owned(),
            Some(Err(EventStreamError::Body(e))) => break format!("the stream broke: {e}"),
            // A stream past the limits is not worth a reconnection: it would do it again.
            Some(Err(EventStreamError::Decode(e))) => {
                return Err(e)
                    .with_context(|| format!("{uri}: gave up on the stream (see --max-data)"))
            }
            Some(Err(e)) => break format!("the stream broke: {e}"),
            Some(Ok(item)) => item,
        };
        match item {
            Item::Event(e) => {
                if !args.events.is_empty() && !args.events.contains(&e.event) {
                    continue;
                }
                print_event(&e, args.json)?;
                state.seen += 1;
                if args.count.is_some_and(|n| state.seen >= n) {
                    return Ok(None);
                }
            }
            Item::Retry(d) => {
                state.retry = d;
                if args.verbose {
                    eprintln!("retry: {} ms", d.as_millis());
                }
            }
            Item::Comment(c) if args.verbose => eprintln!(": {c}"),
            // Comments when not verbose, and kinds of item this listener does not know.
            _ => {}
        }
    };
    // An empty id (a reset by the server) means no Last-Event-ID on the next attempt.
    state.last_id = stream.decoder().last_event_id().to_owned();
    Ok(Some(ended))
}

fn print_event(e: &Event, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        let line = JsonEvent {
            event: &e.event,
            data: &e.data,
            id: &e.last_event_id,
        };
        writeln!(out, "{}", serde_json::to_string(&line)?)?;
    } else {
        write!(out, "{}", readable(e))?;
    }
    out.flush()?;
    Ok(())
}

/// One `--json` line, fields in this order.
#[derive(serde::Serialize)]
struct JsonEvent<'a> {
    event: &'a str,
    data: &'a str,
    id: &'a str,
}

/// `event: <type>  id: <last id>`, the data, and a blank line.
fn readable(e: &Event) -> String {
    let mut s = format!("event: {}", e.event);
    if !e.last_event_id.is_empty() {
        s.push_str(&format!("  id: {}", e.last_event_id));
    }
    s.push('\n');
    s.push_str(&e.data);
    s.push_str("\n\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_output() {
        let e = decoded("event: tick\ndata: a\ndata: b\nid: 7\n\n");
        assert_eq!(readable(&e), "event: tick  id: 7\na\nb\n\n");
        let e = decoded("event: tick\ndata: a\ndata: b\n\n");
        assert_eq!(readable(&e), "event: tick\na\nb\n\n");
    }

    /// The one event `frame` decodes to.
    fn decoded(frame: &str) -> Event {
        let mut decoder = ssehub::decode::Decoder::new();
        decoder.feed(frame.as_bytes());
        match decoder.next_item() {
            Ok(Some(Item::Event(e))) => e,
            other => panic!("not one event: {other:?}"),
        }
    }
}
