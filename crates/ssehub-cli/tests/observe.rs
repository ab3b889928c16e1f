//! What an operator gets from a real `ssehub serve`: `ssehub top --once --json`,
//! `/metrics`, `/rooms`, presence with `--presence`.

mod common;

use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_once_json_reports_the_running_hub() {
    let server = ServeProcess::start(&["--tick-interval", "0"]);
    let _a = demo_stream(server.addr, "/sse?room=top-room").await;
    let _b = demo_stream(server.addr, "/sse?room=top-room").await;
    let reply = publish_query(server.addr, "room=top-room", "counted").await;
    assert_eq!(reply.status.as_u16(), 202);

    let url = server.url("");
    let out = run_cli_async(
        &[
            "top",
            "--url",
            &url,
            "--once",
            "--json",
            "--interval",
            "0.2",
        ],
        b"",
    )
    .await;
    assert!(out.status.success(), "{}", out.stderr);
    let view: Value = serde_json::from_str(out.stdout.trim()).expect("one JSON object");
    assert_eq!(view["connections"], 2);
    assert_eq!(view["connections_by_transport"]["h1"], 2);
    assert_eq!(view["deliveries"], 2);
    assert_eq!(view["events_published"], 1);
    let rooms = view["top_rooms"].as_array().unwrap();
    let room = rooms
        .iter()
        .find(|r| r["room"] == "top-room")
        .expect("top-room listed");
    assert_eq!(room["members"], 2);
    assert!(view["rss_bytes"].as_u64().unwrap() > 0);
    assert!(view["events_per_second"].is_number());

    // The terminal view, once.
    let out = run_cli_async(&["top", "--url", &url, "--once", "--interval", "0.1"], b"").await;
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("top-room"), "{}", out.stdout);
    assert!(out.stdout.contains("connections"), "{}", out.stdout);
}

#[tokio::test]
async fn serve_exposes_metrics_rooms_and_presence() {
    let server = ServeProcess::start(&["--tick-interval", "0", "--presence", "lobby"]);
    let mut watcher = demo_stream(server.addr, "/sse?room=lobby").await;
    let join = watcher.next_of("ssehub.join").await;
    let data: Value = serde_json::from_str(&join.data).unwrap();
    assert_eq!(
        (data["room"].as_str(), data["count"].as_u64()),
        (Some("lobby"), Some(1))
    );

    let metrics = get(server.addr, "/metrics").await;
    assert_eq!(metrics.status.as_u16(), 200);
    let text = metrics.text();
    assert!(
        text.contains("ssehub_connections{transport=\"h1\"} 1"),
        "{text}"
    );
    assert!(text.contains("process_resident_memory_bytes"));

    let rooms = get(server.addr, "/rooms").await.json();
    assert_eq!(rooms["total"], 2, "lobby and __all: {rooms}");
    let lobby = get(server.addr, "/rooms/lobby").await.json();
    assert_eq!(lobby["connections"][0]["id"], data["connections"][0]["id"]);

    let page = get(server.addr, "/dashboard").await;
    assert_eq!(page.status.as_u16(), 200);
    assert!(page.text().contains("ssehub dashboard"));
    assert_eq!(get(server.addr, "/nothing-here").await.status.as_u16(), 404);
}
