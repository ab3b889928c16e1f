//! The dashboard as an operator sees it: headless Chromium opens `/dashboard` of a real
//! `ssehub serve`, the page goes live on its own feed, and its numbers move when clients
//! connect and events are published; a room's connections show when it is clicked.
//! The last view is saved as `target/dashboard.png` (CI keeps it as an artifact).

#[path = "../../ssehub/tests/browser/mod.rs"]
mod browser;
mod common;

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use browser::Browser;
use common::{demo_stream, publish_query, ServeProcess};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(20);

fn number(v: &Value) -> Option<u64> {
    v.as_str()?.replace(',', "").parse().ok()
}

/// Where the screenshot goes: `target/dashboard.png` of this workspace.
fn screenshot_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("dashboard.png")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_goes_live_and_its_numbers_move() {
    if !browser::require("chromium and chromedriver", browser::available()) {
        return;
    }
    let server = ServeProcess::start(&["--tick-interval", "0.5"]);
    let browser = Browser::start().await;
    browser.window_size(1280, 900).await;
    browser.goto(&server.url("/dashboard")).await;
    let status = "return document.getElementById('status').textContent";
    browser
        .poll("the feed live", status, LIMIT, |v| v == "live")
        .await;

    // Clients come, events are published: the page's figures follow within a second or two.
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(demo_stream(server.addr, "/sse?room=orders").await);
    }
    let connections = "return document.getElementById('connections').textContent";
    browser
        .poll("3 connections", connections, LIMIT, |v| {
            number(v) == Some(3)
        })
        .await;
    for i in 0..20 {
        let reply = publish_query(server.addr, "room=orders", &format!("order {i}")).await;
        assert_eq!(reply.status.as_u16(), 202);
    }
    let deliveries = "return document.getElementById('deliveries-total').textContent";
    browser
        .poll("the deliveries counted", deliveries, LIMIT, |v| {
            number(v).is_some_and(|n| n >= 60)
        })
        .await;
    let rooms = "return [...document.querySelectorAll('#top-rooms tbody td:first-child')].map(td => td.textContent)";
    browser
        .poll("the room listed", rooms, LIMIT, |v| {
            v.as_array()
                .is_some_and(|r| r.iter().any(|n| n == "orders"))
        })
        .await;

    // A room's connections, from GET /rooms/{room}.
    browser
        .eval(
            "[...document.querySelectorAll('#top-rooms tbody tr')]
               .find(tr => tr.cells[0].textContent === 'orders').click();
             return true;",
        )
        .await;
    let members = "return document.querySelectorAll('#members tbody tr td:nth-child(5)').length";
    browser
        .poll("the room's connections", members, LIMIT, |v| v == 3)
        .await;
    let transport = "return document.querySelector('#members tbody td:nth-child(5)').textContent";
    assert_eq!(browser.eval(transport).await, "h1");

    // Keep publishing for a few seconds so that the chart has a shape, then save the view.
    for i in 0..8 {
        for _ in 0..(5 + 5 * i) {
            publish_query(server.addr, "room=orders", "more").await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let rate = "return document.getElementById('events-rate').textContent";
    browser
        .poll("an event rate", rate, LIMIT, |v| {
            number(v).is_some_and(|n| n > 0)
        })
        .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(browser.screenshot_base64().await)
        .expect("a base64 PNG");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = screenshot_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &png).unwrap();
    eprintln!("dashboard screenshot: {}", path.display());
    browser.quit().await;
}

/// With `--publish-token`, the dashboard opened as `?token=` passes the token on: its
/// feed goes live and a room's connections load (`GET /rooms/{room}` with the header).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_dashboard_passes_it_on() {
    if !browser::require("chromium and chromedriver", browser::available()) {
        return;
    }
    let server = ServeProcess::start(&["--tick-interval", "0", "--publish-token", "s3cret"]);
    let _client = demo_stream(server.addr, "/sse?room=orders").await;
    let browser = Browser::start().await;
    browser
        .goto(&server.url("/dashboard?token=s3cret&room=orders"))
        .await;
    let status = "return document.getElementById('status').textContent";
    browser
        .poll("the feed live", status, LIMIT, |v| v == "live")
        .await;
    let backplane = "return document.getElementById('backplane').textContent";
    browser
        .poll("the backplane up", backplane, LIMIT, |v| v == "up")
        .await;
    let members = "return document.querySelectorAll('#members tbody tr td:nth-child(5)').length";
    browser
        .poll("the room's connection", members, LIMIT, |v| v == 1)
        .await;
    browser.quit().await;
}
