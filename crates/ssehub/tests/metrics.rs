//! `/metrics` agrees with what happened on real sockets: deliveries, connections by
//! transport, refusals by reason, the sampled histograms.
#![cfg(feature = "metrics")]

mod common;

use common::*;
use http::StatusCode;
use ssehub::{HubApi, Message, Rejection};

/// The value of one series (`name` or `name{labels}`) in an exposition.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
        .parse()
        .unwrap()
}

async fn scrape(srv: &TestServer) -> String {
    let (status, headers, body) = srv.request("GET", "/metrics", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    body
}

/// Ask for a stream that `authorize` refuses, one with a bad room, one past the
/// connection limit (the server is full), and one from another site's page.
async fn refuse_one_of_each(srv: &TestServer) {
    let refused = [
        ("/sse?room=metrics&deny=1", StatusCode::FORBIDDEN),
        ("/sse?room=", StatusCode::BAD_REQUEST),
        ("/sse?room=metrics", StatusCode::SERVICE_UNAVAILABLE),
    ];
    for (path, status) in refused {
        assert_eq!(srv.sse(path).await.status, status, "{path}");
    }
    let elsewhere = [("origin", "http://elsewhere.example")];
    let page = SseClient::connect(srv.addr, "/sse?room=metrics", &elsewhere).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "another site's page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_agree_with_what_happened() {
    const SUBSCRIBERS: usize = 5;
    const EVENTS: usize = 128;
    let options = without_history()
        .keep_alive(None)
        .rooms_from_query(true)
        .max_connections(Some(SUBSCRIBERS))
        .allowed_origins(Vec::<String>::new())
        .authorize(|ctx| async move {
            match ctx.query("deny") {
                Some(_) => Err(Rejection::forbidden()),
                None => Ok(()),
            }
        });
    let api = HubApi::new(options.hub().clone());
    let srv = TestServer::start_with(options, |s| {
        s.route("/metrics", move |req| {
            let api = api.clone();
            async move { api.metrics(&req) }
        })
    })
    .await;
    let before = scrape(&srv).await;
    assert_eq!(value(&before, "ssehub_connections{transport=\"h1\"}"), 0.0);

    let mut subscribers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        subscribers.push(srv.sse("/sse?room=metrics").await);
    }
    eventually("every subscriber in its room", || {
        srv.hub.room_size("metrics") == SUBSCRIBERS
    })
    .await;
    refuse_one_of_each(&srv).await;
    // One task, no await: the publications are timed on one thread, 2 in 128.
    let message = Message::new("counted");
    for _ in 0..EVENTS {
        assert_eq!(
            srv.hub.to("metrics").publish(&message).unwrap().delivered,
            SUBSCRIBERS
        );
    }
    for s in &mut subscribers {
        for _ in 0..EVENTS {
            assert_eq!(s.next_event().await.data, "counted");
        }
    }
    let after = scrape(&srv).await;
    let grew = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(
        grew("ssehub_deliveries_total"),
        (EVENTS * SUBSCRIBERS) as f64
    );
    assert_eq!(grew("ssehub_events_published_total"), EVENTS as f64);
    let bytes = EVENTS * SUBSCRIBERS * message.encode().len();
    assert_eq!(grew("ssehub_delivered_bytes_total"), bytes as f64);
    assert_eq!(grew("ssehub_connections_total"), SUBSCRIBERS as f64);
    assert_eq!(
        value(&after, "ssehub_connections{transport=\"h1\"}"),
        SUBSCRIBERS as f64,
        "streams on fresh connections are served on the bare socket"
    );
    assert_eq!(value(&after, "ssehub_rooms"), 2.0, "metrics and __all");
    for reason in ["authorize", "bad_request", "max_connections", "origin"] {
        let series = format!("ssehub_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(grew(&series), 1.0, "{series}");
    }
    assert_eq!(
        grew("ssehub_refused_total{reason=\"max_connections_per_ip\"}"),
        0.0
    );
    assert_eq!(grew("ssehub_fanout_duration_seconds_count"), 2.0);
    // Every subscriber read every event: the timed frames were taken for their sockets
    // (both, unless both probes fell on one stream that had not written the first yet:
    // an outbox carries one probe at a time).
    let timed = grew("ssehub_delivery_latency_seconds_count");
    assert!((1.0..=2.0).contains(&timed), "{timed}");
    assert!(value(&after, "process_open_fds") >= SUBSCRIBERS as f64);
    assert!(!after.contains("room=\""), "no label is a room");
    // The backplane: this process is the hub, always connected; every gap reason listed.
    let backplane = "{backplane=\"in-process\"}";
    assert_eq!(
        value(&after, &format!("ssehub_backplane_connected{backplane}")),
        1.0
    );
    assert_eq!(
        value(
            &after,
            &format!("ssehub_backplane_outages_total{backplane}")
        ),
        0.0
    );
    for reason in [
        "evicted",
        "unknown-epoch",
        "malformed",
        "unknown-id",
        "replay-limit",
        "outage",
    ] {
        assert_eq!(
            value(&after, &format!("ssehub_gaps_total{{reason=\"{reason}\"}}")),
            0.0
        );
    }

    drop(subscribers);
    assert_all_gone(&srv).await;
    srv.stop().await;
}

/// Once every stream has closed, no transport counts one.
async fn assert_all_gone(srv: &TestServer) {
    eventually("the streams closed", || srv.hub.connection_count() == 0).await;
    let gone = scrape(srv).await;
    for transport in ["h1", "h1_hyper", "h2"] {
        let series = format!("ssehub_connections{{transport=\"{transport}\"}}");
        assert_eq!(value(&gone, &series), 0.0, "{series}");
    }
}
