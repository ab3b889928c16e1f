//! The Mercure hub with the clients applications use: Symfony's Mercure component (PHP)
//! publishing, its `Authorization` helper's cookie letting a subscriber in; headless
//! Chromium's `EventSource` and the npm `eventsource` package subscribing with a URI
//! template, cut by the server and resuming with their `Last-Event-ID`, and starting from
//! the `lastEventID` query parameter; Chromium also with a 1.0 URL pattern
//! (`match_urlpattern`, `last_event_id`). Each test skips with a notice when its tool is
//! missing (fails with `CI=true`).
#![cfg(all(unix, feature = "mercure"))]

mod browser;
mod common;
#[path = "support/mercure.rs"]
mod mercure;
#[path = "browser/node.rs"]
mod node;

use std::ops::Deref;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};
use ssehub::decode::Item;
use ssehub::{Mercure, MercureConfig, Server, MERCURE_PATH};
use tokio::io::AsyncWriteExt as _;

use browser::Browser;
use common::{eventually, within, SseClient};
use mercure::{config, publisher, subscriber, MercureHub, SECRET};
use node::{node_available, NodeClient, NODE};

const BOOKS: &str = "https://example.com/books/{id}";
const AUTHORS: &str = "https://example.com/authors/{id}";
/// Upper bound on a client (PHP, Node, a page) doing what it was asked.
const CLIENT_WAIT: Duration = Duration::from_secs(30);
/// The reconnection delay the resume tests give their clients (the `retry` field of
/// their first update), so that what is published right after a cut is published while
/// they are away.
const RETRY_MS: u64 = 2000;

fn book(n: u32) -> String {
    format!("https://example.com/books/{n}")
}

/// A hub on an ephemeral port of 127.0.0.1, with a web page at `/page` (which sets the
/// cookie [`MercureServer::set_cookie`] was given, if any).
struct MercureServer {
    hub: MercureHub,
    set_cookie: Arc<Mutex<Option<String>>>,
}

impl MercureServer {
    async fn start(config: MercureConfig) -> MercureServer {
        let set_cookie: Arc<Mutex<Option<String>>> = Arc::default();
        let cookie = set_cookie.clone();
        let page = move |server: Server| {
            server.route("/page", move |_req| {
                let cookie = cookie.lock().unwrap().clone();
                async move {
                    let mut res = http::Response::new(http_body_util::Full::new(Bytes::from(PAGE)));
                    let h = res.headers_mut();
                    h.insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/html; charset=utf-8"),
                    );
                    if let Some(c) = cookie {
                        h.insert(http::header::SET_COOKIE, c.parse().unwrap());
                    }
                    res
                }
            })
        };
        let hub = MercureHub::serve(Mercure::new(config).unwrap(), page).await;
        MercureServer { hub, set_cookie }
    }

    async fn stop(self) {
        self.hub.stop().await;
    }

    fn hub_url(&self) -> String {
        format!("http://{}{MERCURE_PATH}", self.addr)
    }

    fn connections(&self) -> usize {
        self.mercure.hub().connection_count()
    }

    fn replays(&self) -> u64 {
        self.mercure.hub().stats().replays
    }
}

// Its page aside, a hub like any other.
impl Deref for MercureServer {
    type Target = MercureHub;

    fn deref(&self) -> &MercureHub {
        &self.hub
    }
}

/// What a subscriber saw, in order: `(type, data, id)` for an event, `("retry", ms, "")`
/// for a reconnection delay. Comments (heartbeats) are left out.
type Seen = (String, String, String);

fn event(kind: &str, data: &str, id: &str) -> Seen {
    (kind.to_owned(), data.to_owned(), id.to_owned())
}

/// What `c` gets up to the event whose data is `last`, with the retry hints among it.
async fn seen(c: &mut SseClient, last: &str) -> Vec<Seen> {
    let mut out = Vec::new();
    loop {
        match c.next_item().await {
            Some(Item::Event(e)) => {
                let done = e.data == last;
                out.push((e.event, e.data, e.last_event_id));
                if done {
                    return out;
                }
            }
            Some(Item::Retry(d)) => out.push(event("retry", &d.as_millis().to_string(), "")),
            Some(_) => {}
            None => panic!("the stream ended after {out:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Symfony's Mercure component

/// The PHP side: publishes with Symfony's `Hub` and `Update` (see its header comment).
const PUBLISH_PHP: &str = r#"<?php
// Publishes to a Mercure hub with Symfony's Mercure component, as an application does.
// Reads one JSON object on standard input:
//   { "hub": "http://host:port/.well-known/mercure",
//     "jwt": "<publisher token>",                 -- a StaticTokenProvider, or:
//     "secret": "<HS256 key>", "publish": [...],  -- a FactoryTokenProvider over an HS256
//                                                    factory of this script's own
//     "cookie": { "page": "http://host/", "subscribe": [...] },  -- optional: print the
//                                                    Authorization helper's cookie first
//     "updates": [ { "topics": [...], "data": "...", "private": false, "id": null,
//                    "type": null, "retry": null }, ... ] }
// Prints one JSON object per line: {"cookie": {...}} first if asked, then per update
// {"id": "<what publish() returned>"} or {"error": "...", "status": 403, "body": "..."}.
declare(strict_types=1);

require_once getenv('SYMFONY_MERCURE_AUTOLOAD') ?: 'Symfony/Component/Mercure/autoload.php';

use Symfony\Component\HttpFoundation\Request;
use Symfony\Component\Mercure\Authorization;
use Symfony\Component\Mercure\Exception\RuntimeException;
use Symfony\Component\Mercure\Hub;
use Symfony\Component\Mercure\HubRegistry;
use Symfony\Component\Mercure\Jwt\FactoryTokenProvider;
use Symfony\Component\Mercure\Jwt\StaticTokenProvider;
use Symfony\Component\Mercure\Jwt\TokenFactoryInterface;
use Symfony\Component\Mercure\Update;
use Symfony\Contracts\HttpClient\Exception\HttpExceptionInterface;

/** HS256 tokens with the `mercure` claim (the component's own factory needs lcobucci/jwt). */
final class Hs256Factory implements TokenFactoryInterface
{
    private $secret;

    public function __construct(string $secret)
    {
        $this->secret = $secret;
    }

    public function create(?array $subscribe = [], ?array $publish = [], array $additionalClaims = []): string
    {
        $mercure = [];
        if (null !== $subscribe) {
            $mercure['subscribe'] = $subscribe;
        }
        if (null !== $publish) {
            $mercure['publish'] = $publish;
        }
        $claims = ['mercure' => (object) $mercure];
        foreach ($additionalClaims as $name => $value) {
            $claims[$name] = $value instanceof \DateTimeInterface ? $value->getTimestamp() : $value;
        }
        $b64 = static function (string $s): string {
            return rtrim(strtr(base64_encode($s), '+/', '-_'), '=');
        };
        $head = $b64(json_encode(['alg' => 'HS256', 'typ' => 'JWT']));
        $body = $b64(json_encode($claims, \JSON_UNESCAPED_SLASHES | \JSON_THROW_ON_ERROR));

        return $head.'.'.$body.'.'.$b64(hash_hmac('sha256', $head.'.'.$body, $this->secret, true));
    }
}

function out(array $line): void
{
    echo json_encode($line, \JSON_UNESCAPED_SLASHES | \JSON_THROW_ON_ERROR), "\n";
}

$in = json_decode(stream_get_contents(\STDIN), true, 512, \JSON_THROW_ON_ERROR);

$factory = isset($in['secret']) ? new Hs256Factory($in['secret']) : null;
$provider = isset($in['jwt'])
    ? new StaticTokenProvider($in['jwt'])
    : new FactoryTokenProvider($factory, [], $in['publish'] ?? []);
$hub = new Hub($in['hub'], $provider, $factory);

if (isset($in['cookie'])) {
    $authorization = new Authorization(new HubRegistry($hub), 600);
    $cookie = $authorization->createCookie(Request::create($in['cookie']['page']), $in['cookie']['subscribe']);
    out(['cookie' => [
        'name' => $cookie->getName(),
        'value' => $cookie->getValue(),
        'path' => $cookie->getPath(),
        'domain' => $cookie->getDomain(),
        'secure' => $cookie->isSecure(),
        'httpOnly' => $cookie->isHttpOnly(),
        'sameSite' => $cookie->getSameSite(),
        'header' => (string) $cookie,
    ]]);
}

foreach ($in['updates'] as $u) {
    $update = new Update(
        $u['topics'],
        $u['data'] ?? '',
        $u['private'] ?? false,
        $u['id'] ?? null,
        $u['type'] ?? null,
        $u['retry'] ?? null
    );
    try {
        out(['id' => $hub->publish($update)]);
    } catch (RuntimeException $e) {
        $http = $e->getPrevious();
        $line = ['error' => $e->getMessage(), 'status' => null, 'body' => null];
        if ($http instanceof HttpExceptionInterface) {
            $line['status'] = $http->getResponse()->getStatusCode();
            $line['body'] = $http->getResponse()->getContent(false);
        } elseif (null !== $http) {
            $line['error'] .= ' '.$http->getMessage();
        }
        out($line);
    }
}
"#;

const PHP: &str = "php (php-cli) and Symfony's Mercure component (php-symfony-mercure: \
                   Symfony/Component/Mercure/autoload.php on PHP's include path, or \
                   SYMFONY_MERCURE_AUTOLOAD naming an autoloader that loads it)";

/// Whether `php` runs and finds the component's autoloader.
fn php_available() -> bool {
    if browser::which("php").is_none() {
        return false;
    }
    let check =
        "$f = getenv('SYMFONY_MERCURE_AUTOLOAD') ?: 'Symfony/Component/Mercure/autoload.php'; \
                 exit(stream_resolve_include_path($f) === false ? 1 : 0);";
    std::process::Command::new("php")
        .args(["-r", check])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Run [`PUBLISH_PHP`] (written to a directory of its own) on `input`; its output lines.
async fn php(input: Value) -> Vec<Value> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "ssehub-mercure-php-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("publish.php");
    std::fs::write(&script, PUBLISH_PHP).unwrap();
    let mut cmd = tokio::process::Command::new("php");
    cmd.arg(&script)
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // The hub is on 127.0.0.1: no proxy in between.
    for proxy in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(proxy);
    }
    let mut child = cmd.spawn().expect("spawn php");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.to_string().as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(CLIENT_WAIT, child.wait_with_output())
        .await
        .expect("php did not finish in time")
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "php exited with {}: {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("php printed {l:?}: {e}")))
        .collect()
}

/// The id a `publish()` returned (panics on an error line).
#[track_caller]
fn published_id(line: &Value) -> String {
    line["id"]
        .as_str()
        .unwrap_or_else(|| panic!("Symfony's publish() failed: {line}"))
        .to_owned()
}

#[tokio::test]
async fn symfony_publishes_what_subscribers_receive_private_updates_to_the_granted_only() {
    if !browser::require(PHP, php_available()) {
        return;
    }
    let srv = MercureServer::start(config()).await;
    let mut anonymous = srv.subscribe(&[BOOKS], &[]).await;
    let granted = format!("Bearer {}", subscriber(&[BOOKS]));
    let mut granted = srv
        .subscribe(&[BOOKS], &[("authorization", granted.as_str())])
        .await;
    let mut authors = srv.subscribe(&[AUTHORS], &[]).await;
    // Form-encoding on PHP's side (`urlencode`: spaces as `+`), decoding on ours.
    let text = "Hello, wörld & co: 1+1 = 2?\nsecond line";
    let lines = php(json!({
        "hub": srv.hub_url(),
        "jwt": publisher(&[BOOKS, "https://example.com/alt/{id}"]),
        "updates": [
            { "topics": [book(1), "https://example.com/alt/1"], "data": text,
              "type": "book.updated" },
            // One topic as a string, the caller's id, a reconnection delay.
            { "topics": book(1), "data": "its own id", "id": "book-1-v2", "retry": 1500 },
            { "topics": [book(2)], "data": "secret", "private": true },
            // Not granted by the publisher's token: Symfony throws, with the hub's 403.
            { "topics": ["https://example.com/authors/1"], "data": "refused" },
            { "topics": [book(2)], "data": "marker" },
        ],
    }))
    .await;
    assert_eq!(lines.len(), 5, "{lines:?}");
    let ids: Vec<String> = [0, 1, 2, 4]
        .iter()
        .map(|&i| published_id(&lines[i]))
        .collect();
    assert!(ids[0].starts_with("urn:uuid:"), "the hub's id: {}", ids[0]);
    assert_eq!(ids[1], "book-1-v2", "the caller's id comes back");
    assert!(ids[2].starts_with("urn:uuid:") && ids[3].starts_with("urn:uuid:"));
    assert_eq!(lines[3]["status"], 403, "{}", lines[3]);
    assert!(
        lines[3]["body"]
            .as_str()
            .unwrap()
            .contains("https://example.com/authors/1"),
        "the hub names the topic: {}",
        lines[3]
    );

    let expected = |with_secret: bool| {
        let mut v = vec![
            event("book.updated", text, &ids[0]),
            event("retry", "1500", ""),
            event("message", "its own id", &ids[1]),
        ];
        if with_secret {
            v.push(event("message", "secret", &ids[2]));
        }
        v.push(event("message", "marker", &ids[3]));
        v
    };
    assert_eq!(
        seen(&mut granted, "marker").await,
        expected(true),
        "the granted one"
    );
    assert_eq!(
        seen(&mut anonymous, "marker").await,
        expected(false),
        "no private update to an anonymous subscriber"
    );
    // The refused update went nowhere: the next thing an author subscriber gets is this.
    let after = srv
        .publish(&[("topic", "https://example.com/authors/2"), ("data", "next")])
        .await;
    assert_eq!(
        seen(&mut authors, "next").await,
        vec![event("message", "next", &after)]
    );
    srv.stop().await;
}

#[tokio::test]
async fn symfonys_authorization_cookie_lets_a_subscriber_in_to_private_updates() {
    if !browser::require(PHP, php_available()) {
        return;
    }
    let srv = MercureServer::start(config()).await;
    let page = format!("http://{}/page", srv.addr);
    // The app's side: a cookie for its page's visitors, made by the Authorization helper.
    let lines = php(json!({
        "hub": srv.hub_url(),
        "secret": SECRET,
        "cookie": { "page": page, "subscribe": [BOOKS] },
        "updates": [],
    }))
    .await;
    let cookie = &lines[0]["cookie"];
    assert_eq!(cookie["name"], "mercureAuthorization", "{cookie}");
    assert_eq!(cookie["path"], MERCURE_PATH, "{cookie}");
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    let pair = format!(
        "{}={}",
        cookie["name"].as_str().unwrap(),
        cookie["value"].as_str().unwrap()
    );
    let mut with_cookie = srv.subscribe(&[BOOKS], &[("cookie", pair.as_str())]).await;
    let mut anonymous = srv.subscribe(&[BOOKS], &[]).await;
    // Published through a FactoryTokenProvider over the same factory.
    let lines = php(json!({
        "hub": srv.hub_url(),
        "secret": SECRET,
        "publish": [BOOKS],
        "updates": [
            { "topics": [book(7)], "data": "for the cookie", "private": true },
            { "topics": [book(7)], "data": "for all" },
        ],
    }))
    .await;
    let secret = published_id(&lines[0]);
    let public = published_id(&lines[1]);
    assert_eq!(
        seen(&mut with_cookie, "for all").await,
        vec![
            event("message", "for the cookie", &secret),
            event("message", "for all", &public)
        ]
    );
    assert_eq!(
        seen(&mut anonymous, "for all").await,
        vec![event("message", "for all", &public)]
    );
    // A forged cookie is refused, not taken for anonymous.
    let forged = format!(
        "mercureAuthorization={}x",
        cookie["value"].as_str().unwrap()
    );
    let c = SseClient::connect(
        srv.addr,
        &format!("{MERCURE_PATH}?topic=x"),
        &[("cookie", forged.as_str())],
    )
    .await;
    assert_eq!(c.status, StatusCode::UNAUTHORIZED);

    // And a browser: the page sets the cookie, the page's EventSource sends it.
    if !browser::require("chromedriver and Chromium", browser::available()) {
        return srv.stop().await;
    }
    *srv.set_cookie.lock().unwrap() = Some(cookie["header"].as_str().unwrap().to_owned());
    let browser = Browser::start().await;
    browser.goto(&page).await;
    eventually("the page's stream", || srv.connections() == 3).await;
    let private = srv
        .publish(&[("topic", &book(8)), ("data", "private"), ("private", "on")])
        .await;
    let marker = srv
        .publish(&[("topic", &book(8)), ("data", "marker")])
        .await;
    let first = wait_for_page_events(&browser, 1).await;
    assert_eq!(
        first[0],
        event("message", "private", &private),
        "the page got the private update first (its cookie was sent)"
    );
    assert_eq!(
        wait_for_page_events(&browser, 2).await,
        vec![
            event("message", "private", &private),
            event("message", "marker", &marker)
        ]
    );
    browser.quit().await;
    srv.stop().await;
}

// ---------------------------------------------------------------------------------------
// Resuming: Chromium's EventSource and the npm eventsource

/// The page: an `EventSource` on the hub with the books' template (0.x), or with `?v=1`
/// their URL pattern (1.0, `match_urlpattern`); `?last=<id>` starts it from that id
/// (`lastEventID`, 1.0's `last_event_id`). Logs `{type, data, id}` of each event.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>mercure</title></head><body><script>
"use strict";
window.__log = [];
window.__opens = 0;
const hubUrl = new URL("/.well-known/mercure", location.href).href;
const params = new URLSearchParams(location.search);
const last = params.get("last");
const v1 = params.get("v") === "1";
let url = hubUrl + (v1
  ? "?match_urlpattern=" + encodeURIComponent("https://example.com/books/:id")
  : "?topic=" + encodeURIComponent("https://example.com/books/{id}"));
if (last !== null) url += (v1 ? "&last_event_id=" : "&lastEventID=") + encodeURIComponent(last);
const es = new EventSource(url);
es.onopen = () => { window.__opens += 1; };
for (const type of ["message", "book.updated", "last"]) {
  es.addEventListener(type, (e) => window.__log.push({ type: e.type, data: e.data, id: e.lastEventId }));
}
</script></body></html>"#;

/// The updates of a resume test and the ids the hub gave them. The client subscribes to
/// the books' template; authors' updates are published too, which it must not get.
#[derive(Default)]
struct Scenario {
    /// What the client got before the cut.
    before: Vec<Seen>,
    /// Published while it was away.
    away: Vec<Seen>,
    /// Published once it was back (the last one of type `last`).
    after: Vec<Seen>,
}

impl Scenario {
    /// Before the cut: the client's first update sets its reconnection delay.
    async fn publish_before(&mut self, srv: &MercureServer) {
        let retry = RETRY_MS.to_string();
        let id = srv
            .publish(&[("topic", &book(1)), ("data", "1"), ("retry", &retry)])
            .await;
        self.before.push(event("message", "1", &id));
        srv.publish(&[("topic", "https://example.com/authors/1"), ("data", "a")])
            .await;
        let id = srv
            .publish(&[("topic", &book(2)), ("data", "2"), ("type", "book.updated")])
            .await;
        self.before.push(event("book.updated", "2", &id));
    }

    /// Cut every stream; once the client is gone, publish; it must still be away then
    /// (its retry delay is long enough for that).
    async fn cut_and_publish_while_away(&mut self, srv: &MercureServer) {
        srv.mercure.hub().close_all();
        eventually("the cut stream to end", || srv.connections() == 0).await;
        let id = srv.publish(&[("topic", &book(3)), ("data", "3")]).await;
        self.away.push(event("message", "3", &id));
        srv.publish(&[("topic", "https://example.com/authors/2"), ("data", "b")])
            .await;
        let id = srv
            .publish(&[("topic", &book(4)), ("data", "4"), ("type", "book.updated")])
            .await;
        self.away.push(event("book.updated", "4", &id));
        assert_eq!(
            srv.connections(),
            0,
            "the client came back within {RETRY_MS} ms: the updates were not published \
             while it was away"
        );
    }

    /// Once the client is back: the last update.
    async fn publish_after_return(&mut self, srv: &MercureServer) {
        within("the client to come back", async {
            while srv.connections() == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        let id = srv
            .publish(&[("topic", &book(5)), ("data", "5"), ("type", "last")])
            .await;
        self.after.push(event("last", "5", &id));
    }

    /// Everything the client should have got, in order.
    fn all(&self) -> Vec<Seen> {
        [&self.before[..], &self.away, &self.after].concat()
    }

    /// What a client starting after the last update before the cut should get.
    fn since_the_cut(&self) -> Vec<Seen> {
        [&self.away[..], &self.after].concat()
    }

    fn last_before_the_cut(&self) -> &str {
        &self.before.last().unwrap().2
    }
}

/// The page's log once it holds `n` events, or one of type `last`.
async fn wait_for_page_events(browser: &Browser, n: usize) -> Vec<Seen> {
    let log = browser
        .poll(
            &format!("{n} events on the page"),
            "return window.__log;",
            CLIENT_WAIT,
            |v| {
                v.as_array()
                    .is_some_and(|a| a.len() >= n || a.iter().any(|e| e["type"] == "last"))
            },
        )
        .await;
    log.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_owned();
            (s("type"), s("data"), s("id"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_subscribes_with_a_template_and_resumes_after_a_cut_missing_nothing() {
    chromium_resumes("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_subscribes_with_a_url_pattern_and_resumes_after_a_cut_missing_nothing() {
    chromium_resumes("?v=1").await;
}

/// The page (0.x, or 1.0 with `v1 = "?v=1"`) through a cut and from an id.
async fn chromium_resumes(v1: &str) {
    if !browser::require("chromedriver and Chromium", browser::available()) {
        return;
    }
    let srv = MercureServer::start(config()).await;
    let browser = Browser::start().await;
    let page = format!("http://{}/page{v1}", srv.addr);
    browser.goto(&page).await;
    // Open as the page sees it (its `open` event): the hub answers a stream once it has
    // joined its rooms (a stream is counted before, and a URL pattern takes a while to
    // compile on a loaded machine).
    browser
        .poll(
            "the page's stream open",
            "return window.__opens;",
            CLIENT_WAIT,
            |v| v.as_u64().is_some_and(|n| n >= 1),
        )
        .await;
    assert_eq!(srv.connections(), 1);
    let mut s = Scenario::default();
    s.publish_before(&srv).await;
    assert_eq!(wait_for_page_events(&browser, 2).await, s.before);
    s.cut_and_publish_while_away(&srv).await;
    s.publish_after_return(&srv).await;
    assert_eq!(
        wait_for_page_events(&browser, s.all().len()).await,
        s.all(),
        "every book once, in order, none of the authors"
    );
    assert_eq!(browser.eval("return window.__opens;").await, json!(2));
    assert_eq!(srv.replays(), 1, "it came back with its Last-Event-ID");

    // A second page, from the id of the last update before the cut.
    let from = s.last_before_the_cut().to_owned();
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("last", &from)
        .finish();
    let sep = if v1.is_empty() { '?' } else { '&' };
    browser.goto(&format!("{page}{sep}{q}")).await;
    let want = s.since_the_cut();
    assert_eq!(wait_for_page_events(&browser, want.len()).await, want);
    assert_eq!(srv.replays(), 2, "it started from lastEventID");
    browser.quit().await;
    srv.stop().await;
}

/// The Node client on the books' template (from `lastEventID` when given).
fn node_client(srv: &MercureServer, last_event_id: Option<&str>) -> NodeClient {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("topic", BOOKS);
    if let Some(id) = last_event_id {
        q.append_pair("lastEventID", id);
    }
    let config = json!({
        "types": ["message", "book.updated", "last"],
        "until": "last",
        "timeoutMs": CLIENT_WAIT.as_millis() as u64,
    });
    NodeClient::spawn(&format!("{}?{}", srv.hub_url(), q.finish()), config)
}

/// Read the client's lines until it has printed `n` events in all; `log` keeps them.
async fn node_events(client: &mut NodeClient, log: &mut Vec<Value>, n: usize) -> Vec<Seen> {
    while log.iter().filter(|v| v["kind"] == "event").count() < n {
        let line = client.next().await;
        assert_ne!(line["kind"], "done", "the client gave up: {log:?} {line}");
        log.push(line);
    }
    log.iter()
        .filter(|v| v["kind"] == "event")
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_owned();
            (s("type"), s("data"), s("lastEventId"))
        })
        .collect()
}

/// The Node client through a cut: what it got, and how many times it opened.
async fn node_through_a_cut(srv: &MercureServer, s: &mut Scenario) -> (Vec<Seen>, usize) {
    let mut client = node_client(srv, None);
    let mut log = Vec::new();
    // Its `open` line: the stream is established.
    assert_eq!(client.next().await["kind"], "open");
    s.publish_before(srv).await;
    assert_eq!(node_events(&mut client, &mut log, 2).await, s.before);
    s.cut_and_publish_while_away(srv).await;
    s.publish_after_return(srv).await;
    log.extend(client.until_done().await);
    let events = node_events(&mut client, &mut log, 0).await;
    let opens = 1 + log.iter().filter(|v| v["kind"] == "open").count();
    (events, opens)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_eventsource_subscribes_with_a_template_and_resumes_after_a_cut_missing_nothing() {
    if !browser::require(NODE, node_available()) {
        return;
    }
    let srv = MercureServer::start(config()).await;
    let mut s = Scenario::default();
    let (events, opens) = node_through_a_cut(&srv, &mut s).await;
    assert_eq!(
        events,
        s.all(),
        "every book once, in order, none of the authors"
    );
    assert_eq!(opens, 2);
    assert_eq!(srv.replays(), 1, "it came back with its Last-Event-ID");

    // A second client, from the id of the last update before the cut.
    let mut client = node_client(&srv, Some(s.last_before_the_cut()));
    let mut log = client.until_done().await;
    assert_eq!(
        node_events(&mut client, &mut log, 0).await,
        s.since_the_cut()
    );
    assert_eq!(srv.replays(), 2, "it started from lastEventID");
    srv.stop().await;
}

/// The control: the same cut on a hub that keeps no history loses what was published
/// while the client was away, so the resume tests above do tell a resume from a
/// reconnection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_history_the_node_client_misses_what_was_published_while_it_was_away() {
    if !browser::require(NODE, node_available()) {
        return;
    }
    let srv = MercureServer::start(config().history(None)).await;
    let mut s = Scenario::default();
    let (events, opens) = node_through_a_cut(&srv, &mut s).await;
    assert_eq!(events, [&s.before[..], &s.after].concat());
    assert_ne!(events, s.all());
    assert_eq!(opens, 2);
    assert_eq!(srv.replays(), 0);
    srv.stop().await;
}
