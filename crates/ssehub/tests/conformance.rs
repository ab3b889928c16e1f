//! Conformance against clients this project did not write: headless Chromium's own
//! `EventSource`, and the npm package `eventsource` run by Node. Each is pointed at a
//! real server on an ephemeral port, and what it reports is compared with a sequence of
//! `(type, data, lastEventId)` worked out by hand from the HTML Living Standard's
//! "event stream interpretation" rules. The crate's own decoder must report the same.
//!
//! Chromium tests need `chromedriver` and Chromium; Node tests need `node` and
//! `npm ci` at the repository root. Missing tools skip the test, unless `CI=true`.
#![cfg(unix)]

mod browser;
mod common;
#[path = "browser/node.rs"]
mod node;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};
use ssehub::decode::Item;
use ssehub::{Connection, Message, Rejection, Server};

use browser::Browser;
use common::{eventually, TestServer};
use node::{node_available, NodeClient, NODE};

/// Upper bound on waiting for an external client (launching Chromium or Node included).
const CLIENT_WAIT: Duration = Duration::from_secs(30);
/// The reconnection delay the tests ask for, so reconnects are quick.
const RETRY: Duration = Duration::from_millis(50);

// --- The corpus -----------------------------------------------------------------------

/// One thing the server sends.
enum Step {
    Send(Message),
    Comment(&'static str),
}

fn msg(f: impl FnOnce(ssehub::MessageBuilder) -> ssehub::MessageBuilder) -> Step {
    Step::Send(
        f(Message::builder())
            .build()
            .expect("corpus message is valid"),
    )
}

/// 300 numbered lines of multi-byte text joined by `sep`: about 180 KB, so it spans many
/// reads, and read boundaries fall inside UTF-8 sequences and CRLF pairs.
fn big_data(sep: &str) -> String {
    (0..300)
        .map(|i| format!("{i:03} {}", "é🎉".repeat(100)))
        .collect::<Vec<_>>()
        .join(sep)
}

/// Tricky events, sent with the library's own `Message` encoder.
fn corpus() -> Vec<Step> {
    vec![
        Step::Comment("tricky events follow"),
        Step::Send(
            Message::builder()
                .event("big")
                .data(big_data("\r\n"))
                .build()
                .unwrap(),
        ),
        msg(|m| m.data("first line\nsecond line")),
        msg(|m| m.event("crlf").data("one\r\ntwo\r\nthree")),
        msg(|m| m.event("cr").data("one\rtwo")),
        msg(|m| m.event("mixed").data("a\r\n\r\nb\rc\n")),
        msg(|m| m.data("trailing newline\n")),
        msg(|m| m.data("\n")),
        msg(|m| {
            m.id("1")
                .event("unicode")
                .data("héllo wörld — 🎉🚀 👩‍👩‍👧 — שלום עולם — مرحبا — 日本語")
        }),
        msg(|m| m.data("")),
        msg(|m| m.data("  two leading spaces")),
        msg(|m| m.data(" one\n  two")),
        Step::Comment("a comment\nover two lines"),
        msg(|m| m.event("message").data("explicit message type")),
        msg(|m| m.id("").event("after-reset").data("id was reset")),
        msg(|m| m.id("42")),
        msg(|m| m.data("after id-only")),
        msg(|m| m.retry(RETRY).data("with a retry hint")),
        msg(|m| m.event("with space").data("key: value: more")),
        msg(|m| m.event("ünïcödé").data("data: not a field")),
        msg(|m| m.id("ïd ✓ 7").event("end").data("done")),
    ]
}

/// What a conforming client dispatches for [`corpus`], worked out from the standard:
/// each `data:` line appends its value and a LF, the last LF is removed at dispatch; one
/// space after the colon is stripped; CRLF, LF and CR all end a line; the last event id
/// persists until an `id` field changes it (an empty one resets it); a block without
/// data dispatches nothing; comments and `retry` dispatch nothing.
///
/// The first event, `big`, is left out here: see [`corpus_expected`].
const CORPUS_EXPECTED: &[(&str, &str, &str)] = &[
    ("message", "first line\nsecond line", ""),
    ("crlf", "one\ntwo\nthree", ""),
    ("cr", "one\ntwo", ""),
    ("mixed", "a\n\nb\nc\n", ""),
    ("message", "trailing newline\n", ""),
    ("message", "\n", ""),
    (
        "unicode",
        "héllo wörld — 🎉🚀 👩‍👩‍👧 — שלום עולם — مرحبا — 日本語",
        "1",
    ),
    ("message", "", "1"),
    ("message", "  two leading spaces", "1"),
    ("message", " one\n  two", "1"),
    ("message", "explicit message type", "1"),
    ("after-reset", "id was reset", ""),
    ("message", "after id-only", "42"),
    ("message", "with a retry hint", "42"),
    ("with space", "key: value: more", "42"),
    ("ünïcödé", "data: not a field", "42"),
    ("end", "done", "ïd ✓ 7"),
];

/// A raw stream the encoder would never write (served as bytes by a plain route), to
/// check the decoder's line and field handling against the same clients.
const WIRE: &[u8] = b"\xEF\xBB\xBF: a BOM, then a comment\r\n\
data: cr-terminated\r\r\
data: crlf\r\ndata: terminated\r\n\r\n\
event: mixed\rdata: a\ndata: b\r\ndata: c\r\n\n\
data\n\n\
data:no-space\ndata:  two-spaces\n\n\
id: 3\nretry: 1x\ndata: bad retry ignored\n\n\
id: a\0b\ndata: id with NUL ignored\n\n\
unknown: field\ndata: unknown field ignored\n\n\
id\nevent: end\ndata: done\n\n\
data: cut off by the end of the stream\n";

/// What a conforming client dispatches for [`WIRE`] before the stream ends: the BOM is
/// stripped; a line with no colon is a field with an empty value; only an all-digit
/// `retry` counts; an `id` containing NUL is ignored; unknown fields are ignored; a bare
/// `id` resets the last event id; an event the stream cuts off is never dispatched.
const WIRE_EXPECTED: &[(&str, &str, &str)] = &[
    ("message", "cr-terminated", ""),
    ("message", "crlf\nterminated", ""),
    ("mixed", "a\nb\nc", ""),
    ("message", "", ""),
    ("message", "no-space\n two-spaces", ""),
    ("message", "bad retry ignored", "3"),
    ("message", "id with NUL ignored", "3"),
    ("message", "unknown field ignored", "3"),
    ("end", "done", ""),
];

type Seq = Vec<(String, String, String)>;

/// The full expected sequence for [`corpus`]: the big event (its CRLFs arrive as LFs),
/// then [`CORPUS_EXPECTED`].
fn corpus_expected() -> Seq {
    let mut all = vec![("big".to_owned(), big_data("\n"), String::new())];
    all.extend(seq(CORPUS_EXPECTED));
    all
}

/// The event types a client of [`corpus`] listens for.
fn corpus_types() -> Vec<&'static str> {
    let mut t = vec!["big"];
    t.extend(types(CORPUS_EXPECTED));
    t
}

fn seq(expected: &[(&str, &str, &str)]) -> Seq {
    expected
        .iter()
        .map(|(t, d, i)| (t.to_string(), d.to_string(), i.to_string()))
        .collect()
}

/// The distinct event types of a sequence (what a client must listen for).
fn types(expected: &[(&'static str, &str, &str)]) -> Vec<&'static str> {
    let mut out = Vec::new();
    for &(t, _, _) in expected {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// Compare what a client reported with what the standard says, naming the first event
/// that differs (long data is shortened in the report).
#[track_caller]
fn assert_same(got: &Seq, want: &Seq) {
    fn short(e: Option<&(String, String, String)>) -> String {
        let mut s = format!("{e:?}");
        if s.len() > 300 {
            let cut = (0..=300).rev().find(|&i| s.is_char_boundary(i)).unwrap();
            s.truncate(cut);
            s.push_str(" ...");
        }
        s
    }
    if let Some(i) = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i)) {
        panic!(
            "event {i} differs (got {} events, want {}):\n  got:  {}\n  want: {}",
            got.len(),
            want.len(),
            short(got.get(i)),
            short(want.get(i)),
        );
    }
}

/// The `(type, data, lastEventId)` of every `event` entry in a client's log.
fn events_of(log: &[Value]) -> Seq {
    log.iter()
        .filter(|e| e["kind"] == "event")
        .map(|e| {
            let s = |k: &str| {
                e[k].as_str()
                    .unwrap_or_else(|| panic!("{k} missing in {e}"))
                    .to_owned()
            };
            (s("type"), s("data"), s("lastEventId"))
        })
        .collect()
}

fn send_steps(conn: &Connection, steps: Vec<Step>) {
    for step in steps {
        match step {
            Step::Send(m) => conn.send(&m).expect("send corpus message"),
            Step::Comment(c) => conn.send_comment(c).expect("send corpus comment"),
        }
    }
}

// --- Servers --------------------------------------------------------------------------

/// A page that opens an `EventSource` on `src`, listens for `types`, and records
/// everything (open, error with readyState, events) in `window.__log` and `<pre id=out>`.
fn page(src: &str, types: &[&str]) -> Bytes {
    let src = serde_json::to_string(src).unwrap();
    let types = serde_json::to_string(types).unwrap();
    Bytes::from(format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>ssehub conformance</title></head>
<body><pre id="out"></pre>
<script>
"use strict";
const log = [];
window.__log = log;
const out = document.getElementById("out");
function record(entry) {{ log.push(entry); out.textContent = JSON.stringify(log); }}
const es = new EventSource({src});
window.__es = es;
es.onopen = () => record({{ kind: "open", readyState: es.readyState }});
es.onerror = () => record({{ kind: "error", readyState: es.readyState }});
for (const type of {types}) {{
  es.addEventListener(type, (e) =>
    record({{ kind: "event", type: e.type, data: e.data, lastEventId: e.lastEventId }}));
}}
</script></body></html>"#
    ))
}

/// A route handler answering with a fixed HTML page.
fn html_route(
    html: Bytes,
) -> impl Fn(
    http::Request<hyper::body::Incoming>,
) -> std::future::Ready<http::Response<http_body_util::Full<Bytes>>>
       + Send
       + Sync
       + 'static {
    move |_req| {
        std::future::ready(bytes_response(
            StatusCode::OK,
            "text/html; charset=utf-8",
            html.clone(),
        ))
    }
}

/// A server whose `/sse` sends the corpus on connect, whose `/wire` serves [`WIRE`] as
/// one raw response, with a page for each at `/page/corpus` and `/page/wire`.
async fn corpus_server() -> TestServer {
    corpus_server_with(|s| s, false).await
}

/// [`corpus_server`], its server made by `listen` too (a TLS listener, say), its streams
/// open to pages of any origin if `any_origin`.
async fn corpus_server_with(listen: impl FnOnce(Server) -> Server, any_origin: bool) -> TestServer {
    let sse = common::without_history()
        .keep_alive(None)
        .allow_any_origin(any_origin)
        .on_connect(|conn, _ctx| async move { send_steps(&conn, corpus()) });
    let corpus_page = page("/sse", &corpus_types());
    let wire_page = page("/wire", &types(WIRE_EXPECTED));
    TestServer::start_with(sse, move |s: Server| {
        listen(s)
            .route("/wire", |_req| async {
                bytes_response(
                    StatusCode::OK,
                    "text/event-stream",
                    Bytes::from_static(WIRE),
                )
            })
            .route("/page/corpus", html_route(corpus_page))
            .route("/page/wire", html_route(wire_page))
    })
    .await
}

/// Every `Last-Event-ID` the server saw, one entry per stream opened.
type Seen = Arc<Mutex<Vec<Option<String>>>>;

/// A server whose first stream sends an event with id `first_id` and closes; a stream
/// that comes back with `Last-Event-ID` gets a follow-up event naming it. A third request
/// (the reconnect went wrong) gets 204, so a failing test stops its client at once.
async fn reconnect_server(first_id: &'static str) -> (TestServer, Seen) {
    reconnect_server_with(first_id, false).await
}

/// [`reconnect_server`], optionally allowing cross-origin `EventSource`s.
async fn reconnect_server_with(first_id: &'static str, any_origin: bool) -> (TestServer, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let requests = AtomicUsize::new(0);
    let sse = common::without_history()
        .keep_alive(None)
        .retry(Some(RETRY))
        .allow_any_origin(any_origin)
        .authorize(move |_ctx| {
            let n = requests.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Ok(())
                } else {
                    Err(Rejection::stop())
                }
            }
        })
        .on_connect(move |conn, ctx| {
            let last = ctx.last_event_id().map(str::to_owned);
            record.lock().unwrap().push(last.clone());
            async move {
                match last {
                    None => {
                        let m = Message::builder()
                            .id(first_id)
                            .event("first")
                            .data("before the drop")
                            .build()
                            .unwrap();
                        conn.send(&m).unwrap();
                        conn.close();
                    }
                    Some(id) => {
                        let m = Message::builder()
                            .event("followup")
                            .data(format!("resumed after {id}"))
                            .build()
                            .unwrap();
                        conn.send(&m).unwrap();
                    }
                }
            }
        });
    let html = page("/sse", &["first", "followup"]);
    let server =
        TestServer::start_with(sse, move |s: Server| s.route("/page", html_route(html))).await;
    (server, seen)
}

/// What a client of [`reconnect_server`] dispatches: the id persists across the
/// reconnect, so the follow-up carries it too.
fn reconnect_expected(id: &str) -> Seq {
    vec![
        ("first".into(), "before the drop".into(), id.into()),
        ("followup".into(), format!("resumed after {id}"), id.into()),
    ]
}

/// A client's log of [`reconnect_server`]: both events; the drop reported as an error
/// with the source reconnecting, not closed; `Last-Event-ID` sent back on the reconnect.
#[track_caller]
fn assert_reconnected(log: &[Value], seen: &Seen, id: &str) {
    assert_same(&events_of(log), &reconnect_expected(id));
    // The drop was reported as an error with the source reconnecting, not closed.
    assert!(
        log.iter()
            .any(|e| e["kind"] == "error" && e["readyState"] == 0),
        "{log:?}"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        vec![None, Some(id.to_owned())],
        "Last-Event-ID per stream"
    );
}

/// A non-ASCII id: the client sends it back UTF-8 encoded in `Last-Event-ID`.
const UNICODE_ID: &str = "ïd ✓ 7";

/// A server that lets the first request open a stream (sending nothing on its own) and
/// answers every later one with `Rejection::stop()` (204). Counts requests.
async fn stop_server() -> (TestServer, Arc<AtomicUsize>) {
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    let sse = common::without_history()
        .keep_alive(None)
        .retry(Some(RETRY))
        .authorize(move |_ctx| {
            let n = count.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Ok(())
                } else {
                    Err(Rejection::stop())
                }
            }
        });
    let html = page("/sse", &["hello"]);
    let server =
        TestServer::start_with(sse, move |s: Server| s.route("/page", html_route(html))).await;
    (server, requests)
}

/// The event [`stop_server`]'s tests broadcast once the stream is open.
fn hello() -> Message {
    Message::builder()
        .event("hello")
        .data("after open")
        .build()
        .unwrap()
}

/// A server that only serves `/page`, whose `EventSource` opens `src` (on another origin).
async fn page_server(src: &str, types: &[&str]) -> TestServer {
    let html = page(src, types);
    TestServer::start_with(
        common::without_history().prefix("/unused"),
        move |s: Server| s.route("/page", html_route(html)),
    )
    .await
}

fn url(server: &TestServer, path: &str) -> String {
    format!("http://{}{}", server.addr, path)
}

// --- Our own decoder ------------------------------------------------------------------

#[tokio::test]
async fn decoder_matches_the_standard_on_the_corpus() {
    let server = corpus_server().await;
    let mut client = server.sse("/sse").await;
    assert_eq!(client.status, StatusCode::OK);
    let mut got = Seq::new();
    let mut items = Vec::new();
    while !matches!(got.last(), Some((t, _, _)) if t == "end") {
        let item = client.next_item().await.expect("stream ended early");
        if let Item::Event(e) = &item {
            got.push((e.event.clone(), e.data.clone(), e.last_event_id.clone()));
        }
        items.push(item);
    }
    assert_same(&got, &corpus_expected());
    assert!(items.contains(&Item::Retry(RETRY)), "{items:?}");
    assert!(
        items.contains(&Item::Comment("over two lines".into())),
        "{items:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn decoder_matches_the_standard_on_the_raw_wire() {
    let server = corpus_server().await;
    let mut client = server.sse("/wire").await;
    assert_eq!(client.status, StatusCode::OK);
    let items = client.until_end().await;
    let got: Seq = items
        .iter()
        .filter_map(|i| match i {
            Item::Event(e) => Some((e.event.clone(), e.data.clone(), e.last_event_id.clone())),
            _ => None,
        })
        .collect();
    assert_same(&got, &seq(WIRE_EXPECTED));
    assert_eq!(
        items.first(),
        Some(&Item::Comment("a BOM, then a comment".into()))
    );
    assert!(
        !items.iter().any(|i| matches!(i, Item::Retry(_))),
        "{items:?}"
    );
    server.stop().await;
}

/// What the browsers send back: the id's UTF-8 bytes in `Last-Event-ID`.
#[tokio::test]
async fn server_reads_a_utf8_last_event_id() {
    let (server, seen) = reconnect_server("7").await;
    let mut client =
        common::SseClient::connect(server.addr, "/sse", &[("last-event-id", UNICODE_ID)]).await;
    let e = client.next_event().await;
    assert_eq!(
        (e.event.as_str(), e.data.as_str()),
        ("followup", format!("resumed after {UNICODE_ID}").as_str())
    );
    assert_eq!(*seen.lock().unwrap(), vec![Some(UNICODE_ID.to_owned())]);
    server.stop().await;
}

// --- Chromium -------------------------------------------------------------------------

const CHROMIUM_TOOLS: &str = "chromedriver and Chromium";

/// Chromium tests run one at a time: each launches a browser, and the machine is small.
static CHROMIUM: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const LOG: &str = "return window.__log || [];";

/// Whether Chromium tests can run (see [`browser::require`]), and if so the right to
/// run one now.
async fn chromium() -> Option<tokio::sync::MutexGuard<'static, ()>> {
    if !browser::require(CHROMIUM_TOOLS, browser::available()) {
        return None;
    }
    Some(CHROMIUM.lock().await)
}

/// Poll the page's log until it shows an event of type `ty` or a closing error.
async fn log_until(browser: &Browser, what: &str, ty: &str) -> Vec<Value> {
    let log = browser
        .poll(what, LOG, CLIENT_WAIT, |v| {
            has_event(v, ty) || has_closed_error(v)
        })
        .await;
    log_of(&log)
}

fn log_of(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

fn has_event(log: &Value, ty: &str) -> bool {
    log_of(log)
        .iter()
        .any(|e| e["kind"] == "event" && e["type"] == ty)
}

fn has_closed_error(log: &Value) -> bool {
    log_of(log)
        .iter()
        .any(|e| e["kind"] == "error" && e["readyState"] == 2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_reports_the_corpus_as_the_standard_says() {
    let Some(_one) = chromium().await else {
        return;
    };
    let server = corpus_server().await;
    let browser = Browser::start().await;

    browser.goto(&url(&server, "/page/corpus")).await;
    let log = log_until(&browser, "the corpus in Chromium", "end").await;
    assert_same(&events_of(&log), &corpus_expected());
    assert_eq!(log[0], json!({"kind": "open", "readyState": 1}));
    assert!(!log.iter().any(|e| e["kind"] == "error"), "{log:?}");
    // The page's own rendering agrees with the log.
    let out = browser
        .eval("return document.getElementById('out').textContent;")
        .await;
    let rendered: Vec<Value> = serde_json::from_str(out.as_str().unwrap()).unwrap();
    assert_same(&events_of(&rendered), &corpus_expected());

    browser.goto(&url(&server, "/page/wire")).await;
    // The raw stream ends after its last event; the first error marks that end.
    let log = browser
        .poll("the raw stream in Chromium", LOG, CLIENT_WAIT, |v| {
            log_of(v).iter().any(|e| e["kind"] == "error")
        })
        .await;
    let log = log_of(&log);
    let end = log.iter().position(|e| e["kind"] == "error").unwrap();
    assert_same(&events_of(&log[..end]), &seq(WIRE_EXPECTED));

    browser.quit().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_reconnects_with_last_event_id() {
    chromium_reconnect("7").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_reconnects_with_a_non_ascii_last_event_id() {
    chromium_reconnect(UNICODE_ID).await;
}

async fn chromium_reconnect(id: &'static str) {
    let Some(_one) = chromium().await else {
        return;
    };
    let (server, seen) = reconnect_server(id).await;
    let browser = Browser::start().await;

    browser.goto(&url(&server, "/page")).await;
    let log = log_until(&browser, "Chromium's follow-up event", "followup").await;
    assert_reconnected(&log, &seen, id);

    browser.quit().await;
    server.stop().await;
}

/// A page on one origin, the stream on another (another port): with `allow_any_origin`
/// Chromium streams and reconnects (sending `Last-Event-ID`); without it, Chromium
/// refuses the response and gives up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_cross_origin_streams_only_with_allow_any_origin() {
    let Some(_one) = chromium().await else {
        return;
    };
    let browser = Browser::start().await;

    let (open, seen) = reconnect_server_with("7", true).await;
    let pages = page_server(&url(&open, "/sse"), &["first", "followup"]).await;
    browser.goto(&url(&pages, "/page")).await;
    let log = log_until(&browser, "the cross-origin follow-up", "followup").await;
    assert_same(&events_of(&log), &reconnect_expected("7"));
    assert_eq!(*seen.lock().unwrap(), vec![None, Some("7".to_owned())]);

    let (closed, seen) = reconnect_server_with("7", false).await;
    let pages_2 = page_server(&url(&closed, "/sse"), &["first", "followup"]).await;
    browser.goto(&url(&pages_2, "/page")).await;
    let log = log_until(&browser, "Chromium to refuse the stream", "first").await;
    assert_eq!(log, vec![json!({"kind": "error", "readyState": 2})]);
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "no reconnect after a CORS failure"
    );

    browser.quit().await;
    for server in [open, pages, closed, pages_2] {
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_opens_before_any_event_and_stops_on_204() {
    let Some(_one) = chromium().await else {
        return;
    };
    let (server, requests) = stop_server().await;
    let browser = Browser::start().await;

    browser.goto(&url(&server, "/page")).await;
    // `open` fires although the server has sent no event: the stream's first bytes
    // were flushed with the headers.
    let log = browser
        .poll("Chromium's open event", LOG, CLIENT_WAIT, |v| {
            !log_of(v).is_empty()
        })
        .await;
    assert_eq!(log, json!([{"kind": "open", "readyState": 1}]));
    assert_eq!(server.hub.connection_count(), 1);

    assert_eq!(
        server.hub.to("__all").publish(&hello()).unwrap().delivered,
        1
    );
    let log = browser
        .poll("the event after open", LOG, CLIENT_WAIT, |v| {
            has_event(v, "hello")
        })
        .await;
    assert_eq!(
        log,
        json!([
            {"kind": "open", "readyState": 1},
            {"kind": "event", "type": "hello", "data": "after open", "lastEventId": ""},
        ])
    );

    // End the stream: Chromium comes back after the retry hint, gets 204, and gives up.
    server.hub.close_all();
    let log = browser
        .poll("Chromium to give up", LOG, CLIENT_WAIT, has_closed_error)
        .await;
    assert_eq!(
        browser.eval("return window.__es.readyState;").await,
        json!(2)
    );
    assert_eq!(requests.load(Ordering::SeqCst), 2, "log: {log}");
    // No further attempt within many retry periods.
    tokio::time::sleep(RETRY * 20).await;
    assert_eq!(requests.load(Ordering::SeqCst), 2);
    assert_eq!(
        browser.eval(LOG).await,
        log,
        "nothing happened after CLOSED"
    );

    browser.quit().await;
    server.stop().await;
}

// --- Over TLS, on the bare writer -------------------------------------------------------

/// [`corpus_server`] on a TLS listener, with a certificate made for the test (for
/// `localhost` and 127.0.0.1), also written to a PEM file (`name`, in the temporary
/// directory) for clients that read one.
#[cfg(feature = "tls")]
async fn corpus_server_over_tls(name: &str) -> (TestServer, std::path::PathBuf) {
    let cert = ssehub_testkit::tls::SelfSigned::new();
    let pem = std::env::temp_dir().join(format!("ssehub-{name}-{}.pem", std::process::id()));
    std::fs::write(&pem, &cert.cert).unwrap();
    let tls = ssehub::TlsConfig::from_pem(cert.cert.clone(), cert.key.clone());
    (corpus_server_with(move |s| s.tls(tls), true).await, pem)
}

#[cfg(feature = "tls")]
fn tls_url(server: &TestServer, path: &str) -> String {
    format!("https://localhost:{}{}", server.addr.port(), path)
}

/// How many SSE streams are served on the bare socket (`h1`), over TLS here.
#[cfg(feature = "tls")]
fn bare_streams(server: &TestServer) -> (usize, std::collections::BTreeMap<&'static str, usize>) {
    let by = server.hub.stats().connections_by_transport;
    (by["h1"], by)
}

/// The corpus through Chromium over TLS on HTTP/1.1 (HTTP/2 off, so the stream takes the
/// bare writer and its rustls session): the same events, ids and types as over plain
/// HTTP. The page comes from another server: a page of the same origin would leave its
/// connection open for the stream, and a second request on a connection is hyper's.
#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_over_tls_reports_the_corpus_as_the_standard_says() {
    let Some(_one) = chromium().await else {
        return;
    };
    let (server, pem) = corpus_server_over_tls("conformance-chromium").await;
    let _ = std::fs::remove_file(pem);
    // The certificate is trusted by nobody: for this test only.
    let browser = Browser::start_with(&["--ignore-certificate-errors", "--disable-http2"]).await;

    let pages = page_server(&tls_url(&server, "/sse"), &corpus_types()).await;
    browser.goto(&url(&pages, "/page")).await;
    let log = log_until(&browser, "the corpus in Chromium over TLS", "end").await;
    assert_same(&events_of(&log), &corpus_expected());
    assert_eq!(log[0], json!({"kind": "open", "readyState": 1}));
    assert!(!log.iter().any(|e| e["kind"] == "error"), "{log:?}");
    let (bare, by) = bare_streams(&server);
    assert_eq!(bare, 1, "the stream is on the bare writer: {by:?}");

    browser.quit().await;
    pages.stop().await;
    server.stop().await;
}

/// The corpus through the npm client over TLS (Node speaks HTTP/1.1: the bare writer),
/// with the test's certificate trusted, not verification turned off.
#[cfg(feature = "tls")]
#[tokio::test]
async fn node_eventsource_over_tls_reports_the_corpus_as_the_standard_says() {
    if !browser::require(NODE, node_available()) {
        return;
    }
    let (server, ca) = corpus_server_over_tls("conformance-node").await;

    let config = json!({"types": corpus_types(), "until": "end", "timeoutMs": 20000});
    let mut client =
        NodeClient::spawn_trusting(&tls_url(&server, "/sse"), config, Some(ca.as_path()));
    // Open, so counted: the client leaves as soon as the last event is in.
    let mut log = vec![client.next().await];
    let (bare, by) = bare_streams(&server);
    assert_eq!(bare, 1, "the stream is on the bare writer: {by:?}");
    log.extend(client.until_done().await);
    assert_same(&events_of(&log), &corpus_expected());
    assert_eq!(log[0], json!({"kind": "open", "readyState": 1}));
    assert_eq!(log.last().unwrap()["reason"], "until");

    let _ = std::fs::remove_file(ca);
    server.stop().await;
}

// --- Node's `eventsource` package -------------------------------------------------------

#[tokio::test]
async fn node_eventsource_reports_the_corpus_as_the_standard_says() {
    if !browser::require(NODE, node_available()) {
        return;
    }
    let server = corpus_server().await;

    let config = json!({"types": corpus_types(), "until": "end", "timeoutMs": 20000});
    let log = NodeClient::spawn(&url(&server, "/sse"), config)
        .until_done()
        .await;
    assert_same(&events_of(&log), &corpus_expected());
    assert_eq!(log[0], json!({"kind": "open", "readyState": 1}));
    assert_eq!(log.last().unwrap()["reason"], "until");

    // The raw stream: everything up to the first error (the end of the stream).
    let config = json!({"types": types(WIRE_EXPECTED), "timeoutMs": 20000});
    let mut client = NodeClient::spawn(&url(&server, "/wire"), config);
    let mut log = Vec::new();
    loop {
        let v = client.next().await;
        if v["kind"] == "error" {
            break;
        }
        log.push(v);
    }
    drop(client);
    assert_same(&events_of(&log), &seq(WIRE_EXPECTED));

    server.stop().await;
}

#[tokio::test]
async fn node_eventsource_reconnects_with_last_event_id() {
    node_reconnect("7").await;
}

#[tokio::test]
async fn node_eventsource_reconnects_with_a_non_ascii_last_event_id() {
    node_reconnect(UNICODE_ID).await;
}

async fn node_reconnect(id: &'static str) {
    if !browser::require(NODE, node_available()) {
        return;
    }
    let (server, seen) = reconnect_server(id).await;

    let config = json!({"types": ["first", "followup"], "until": "followup", "timeoutMs": 20000});
    let log = NodeClient::spawn(&url(&server, "/sse"), config)
        .until_done()
        .await;
    assert_reconnected(&log, &seen, id);
    server.stop().await;
}

#[tokio::test]
async fn node_eventsource_opens_before_any_event_and_stops_on_204() {
    if !browser::require(NODE, node_available()) {
        return;
    }
    let (server, requests) = stop_server().await;

    let config = json!({"types": ["hello"], "timeoutMs": 20000});
    let mut client = NodeClient::spawn(&url(&server, "/sse"), config);
    assert_eq!(
        client.next().await,
        json!({"kind": "open", "readyState": 1})
    );
    eventually("the stream to register", || {
        server.hub.connection_count() == 1
    })
    .await;

    assert_eq!(
        server.hub.to("__all").publish(&hello()).unwrap().delivered,
        1
    );
    assert_eq!(
        client.next().await,
        json!({"kind": "event", "type": "hello", "data": "after open", "lastEventId": ""})
    );

    server.hub.close_all();
    let rest = client.until_done().await;
    // A reconnecting error for the drop, then a closing one for the 204.
    let errors: Vec<_> = rest.iter().filter(|e| e["kind"] == "error").collect();
    assert_eq!(errors.len(), 2, "{rest:?}");
    assert_eq!(errors[0]["readyState"], 0);
    assert_eq!(errors[1]["readyState"], 2);
    assert_eq!(errors[1]["code"], 204);
    assert_eq!(rest.last().unwrap()["reason"], "closed");
    assert_eq!(requests.load(Ordering::SeqCst), 2);
    server.stop().await;
}

/// A response with a fixed body and content type.
fn bytes_response(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> http::Response<http_body_util::Full<Bytes>> {
    let mut res = http::Response::new(http_body_util::Full::new(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    res
}
