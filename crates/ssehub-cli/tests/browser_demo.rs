//! The demo as a person sees it: headless Chromium loads the page that `ssehub serve`
//! embeds, shows "connected", logs the `status` event, a tick, a message published through
//! `POST /publish`, one published with the page's own form, and, after its "drop
//! connection" button, every tick once: the stream resumes after its last id. And the
//! same page over TLS (`--tls-self-signed`), on HTTP/2.

#[path = "../../ssehub/tests/browser/mod.rs"]
mod browser;
mod common;

use std::time::Duration;

use browser::Browser;
use common::{publish_query, ServeProcess};
use serde_json::Value;

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
