//! The demo as a person sees it: headless Chromium loads the page that `ssehub serve`
//! embeds, shows "connected", logs the `status` event, a tick, a message published through
//! `POST /publish`, one published with the page's own form, and, after its "drop
//! connection" button, every tick once: the stream resumes after its last id. And the
//! same page over TLS (`--tls-self-signed`), on HTTP/2. And a page of another origin
//! that tries to publish with the victim's `ssehub_token` cookie (CSRF): it fails.

#[path = "../../ssehub/tests/browser/mod.rs"]
mod browser;
mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use browser::Browser;
use bytes::Bytes;
use common::{publish_query, request, ServeProcess, SseClient};
use http_body_util::Full;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(20);

fn log_has(needle: &'static str) -> impl FnMut(&Value) -> bool {
    move |v| v.as_str().is_some_and(|s| s.contains(needle))
}

#[tokio::test]
async fn demo_page_connects_and_shows_ticks_and_published_messages() {
    if !browser::require("chromium and chromedriver", browser::available()) {
        return;
    }
    let server = ServeProcess::start(&["--tick-interval", "0.2"]);
    let browser = Browser::start().await;
    browser.goto(&server.url("/?room=lobby")).await;

    let status = "return document.querySelector('#status span').textContent";
    browser
        .poll("the status line", status, LIMIT, |v| v == "connected")
        .await;
    let log = "return document.getElementById('log').textContent";
    browser
        .poll(
            "the status event",
            log,
            LIMIT,
            log_has("[status] connected"),
        )
        .await;
    browser
        .poll("a tick", log, LIMIT, log_has("[tick] tick #"))
        .await;

    // Published from outside, to a room the page joined through its own URL.
    let reply = publish_query(server.addr, "room=lobby", "hello from outside").await;
    assert_eq!(reply.status.as_u16(), 202, "{}", reply.text());
    assert_eq!(reply.json()["delivered"], 1);
    browser
        .poll(
            "the published message",
            log,
            LIMIT,
            log_has("[message] hello from outside"),
        )
        .await;

    // Published with the page's form, under a custom event name.
    browser
        .eval(
            "document.getElementById('publish-room').value = 'lobby';
             document.getElementById('publish-event').value = 'chat';
             document.getElementById('publish-data').value = 'typed in the page';
             document.getElementById('publish').requestSubmit();
             return true;",
        )
        .await;
    browser
        .poll(
            "the form's message",
            log,
            LIMIT,
            log_has("[chat] typed in the page"),
        )
        .await;
    let result = "return document.getElementById('publish-result').textContent";
    browser
        .poll("the form's result", result, LIMIT, |v| {
            v.as_str().is_some_and(|s| s.starts_with("delivered to 1"))
        })
        .await;

    // Drop the connection: ticks go on meanwhile; the page resumes after its last id
    // and, with the history, shows every tick once, without a gap.
    browser
        .eval("document.getElementById('drop').click(); return true;")
        .await;
    browser
        .poll(
            "the resume",
            log,
            LIMIT,
            log_has("[resume] reconnecting after"),
        )
        .await;
    let text = browser
        .poll("ticks after the resume", log, LIMIT, |v| {
            v.as_str()
                .and_then(|s| s.split("[resume]").nth(1))
                .is_some_and(|after| after.matches("[tick] tick #").count() >= 8)
        })
        .await;
    let ticks: Vec<u64> = text
        .as_str()
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("[tick] tick #"))
        .map(|rest| rest.split(' ').next().unwrap().parse().unwrap())
        .collect();
    let first = ticks[0];
    let want: Vec<u64> = (first..first + ticks.len() as u64).collect();
    assert_eq!(ticks, want, "every tick once, in order, across the drop");
    let gap = "return document.getElementById('gap').hidden";
    assert_eq!(browser.eval(gap).await, Value::Bool(true), "no gap signal");
    browser.quit().await;
}

#[tokio::test]
async fn demo_page_works_over_tls_on_http2() {
    if !browser::require("chromium and chromedriver", browser::available()) {
        return;
    }
    let server = ServeProcess::start(&["--tls-self-signed", "--tick-interval", "0.2"]);
    // The certificate is made at start and trusted by nobody: for this test only.
    let browser = Browser::start_with(&["--ignore-certificate-errors"]).await;
    browser
        .goto(&format!(
            "https://127.0.0.1:{}/?room=lobby",
            server.addr.port()
        ))
        .await;
    let status = "return document.querySelector('#status span').textContent";
    browser
        .poll("the status line", status, LIMIT, |v| v == "connected")
        .await;
    let log = "return document.getElementById('log').textContent";
    browser
        .poll("a tick", log, LIMIT, log_has("[tick] tick #"))
        .await;
    let protocol = "return performance.getEntriesByType('navigation')[0].nextHopProtocol";
    assert_eq!(
        browser.eval(protocol).await,
        Value::from("h2"),
        "the page came over HTTP/2"
    );
    // The page's own form publishes over the same HTTP/2 connection.
    browser
        .eval(
            "document.getElementById('publish-room').value = 'lobby';
             document.getElementById('publish-event').value = 'chat';
             document.getElementById('publish-data').value = 'over h2';
             document.getElementById('publish').requestSubmit();
             return true;",
        )
        .await;
    browser
        .poll("the form's message", log, LIMIT, log_has("[chat] over h2"))
        .await;
    browser.quit().await;
}

const SECRET: &str = "a secret for the CSRF test, long enough for HS256";

/// A token that may subscribe and publish anywhere, for an hour.
fn victims_token() -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = json!({
        "sub": "victim", "exp": exp,
        "ssehub": { "subscribe": ["*"], "publish": ["*"] }
    });
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

/// The attacker's page: a `no-cors` `fetch` and a `text/plain` form, both to the hub's
/// `/publish`, both with the browser's cookies. Neither needs a preflight, so CORS never
/// gets to say no; `window.attack` says when each has had its answer.
fn attack_page(hub: &str) -> String {
    let target = format!("{hub}/publish?room=victim&amp;event=attack");
    let fetched = format!("{hub}/publish?room=victim&event=attack");
    format!(
        r#"<!doctype html><meta charset="utf-8"><title>a page of another origin</title>
<form id="form" method="POST" action="{target}" enctype="text/plain" target="sink">
<input name="form" value="pwned by a form"></form>
<iframe name="sink" id="sink"></iframe>
<script>
window.attack = {{}};
fetch("{fetched}", {{ method: "POST", mode: "no-cors", credentials: "include",
  headers: {{ "content-type": "text/plain" }}, body: "pwned by fetch" }})
  .then(() => window.attack.fetch = "answered", e => window.attack.fetch = "error: " + e);
</script>"#
    )
}

#[tokio::test]
async fn a_page_of_another_origin_cannot_publish_with_the_cookie() {
    if !browser::require("chromium and chromedriver", browser::available()) {
        return;
    }
    let hub = ServeProcess::start(&["--tick-interval", "0", "--jwt-secret", SECRET]);
    let hub_origin = format!("http://{}", hub.addr);
    // Another origin of the same site (another port of 127.0.0.1): the browser sends the
    // hub's cookie (SameSite=Lax by default) with its requests to the hub.
    let dir = std::env::temp_dir().join(format!("ssehub-csrf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("attack.html"), attack_page(&hub_origin)).unwrap();
    let attacker =
        ServeProcess::start(&["--tick-interval", "0", "--static", dir.to_str().unwrap()]);
    assert_ne!(attacker.addr, hub.addr);

    let token = victims_token();
    let bearer = format!("Bearer {token}");
    let mut victim =
        SseClient::connect(hub.addr, "/sse?room=victim", &[("authorization", &bearer)]).await;
    assert_eq!(victim.status.as_u16(), 200);
    victim.next_of("status").await;

    let browser = Browser::start().await;
    // The victim signs in on the hub's own page: the cookie is set, and the hub's own
    // page publishes with it.
    browser.goto(&hub.url("/")).await;
    let own = format!(
        "document.cookie = 'ssehub_token={token}; path=/';
         window.own = null;
         fetch('/publish?room=victim&event=own', {{ method: 'POST', body: 'from the hub page',
           headers: {{ 'content-type': 'text/plain' }} }})
           .then(r => window.own = r.status, e => window.own = 'error: ' + e);
         return true;"
    );
    browser.eval(&own).await;
    browser
        .poll("the own page's publish", "return window.own", LIMIT, |v| {
            !v.is_null()
        })
        .await;
    let e = victim.next_event().await;
    assert_eq!(
        (e.event.as_str(), e.data.as_str()),
        ("own", "from the hub page")
    );

    // The attack, from the other origin.
    browser.goto(&attacker.url("/attack.html")).await;
    browser
        .poll(
            "the fetch's answer",
            "return window.attack.fetch",
            LIMIT,
            |v| v.as_str() == Some("answered"),
        )
        .await;
    browser
        .eval(
            "document.getElementById('sink').onload = () => window.attack.form = 'answered';
             document.getElementById('form').submit();
             return true;",
        )
        .await;
    browser
        .poll(
            "the form's answer",
            "return window.attack.form",
            LIMIT,
            |v| v.as_str() == Some("answered"),
        )
        .await;
    browser.quit().await;

    // Both attacks have had their answer: whatever they published came before this.
    let marker = http::Request::post("/publish?room=victim&event=marker")
        .header("authorization", &bearer)
        .body(Full::new(Bytes::from("after the attack")))
        .unwrap();
    assert_eq!(request(hub.addr, marker).await.status.as_u16(), 202);
    let mut got = Vec::new();
    loop {
        let e = victim.next_event().await;
        got.push((e.event.clone(), e.data.clone()));
        if e.event == "marker" {
            break;
        }
    }
    let want = vec![("marker".to_owned(), "after the attack".to_owned())];
    assert_eq!(
        got, want,
        "the attacker's page published to the victim's stream"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
