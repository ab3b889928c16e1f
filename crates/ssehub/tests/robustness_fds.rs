//! Running out of file descriptors is logged and survived: with the process's open-file
//! limit lowered, clients are opened until the server can no longer accept; its accept
//! loop backs off instead of spinning (the process uses far less CPU than wall time
//! while stalled), and once descriptors are freed it serves again.
//!
//! Its own test binary with a single test: lowering the limit would break any test
//! running beside it in the same process.

mod common;

use std::io::{Read, Seek};
use std::time::Duration;

use common::{eventually, within, Logs, SseClient, TestServer};
use http::StatusCode;
use rlimit::Resource;
use ssehub::decode::Item;
use ssehub::{Message, SseOptions};
use tokio::net::TcpStream;

/// CPU time (user + system) this process has used, in clock ticks, read from a
/// `/proc/self/stat` opened beforehand (no descriptor is needed to read it again).
fn cpu_ticks(stat: &mut std::fs::File) -> u64 {
    let mut s = String::new();
    stat.rewind().unwrap();
    stat.read_to_string(&mut s).unwrap();
    let rest = s.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the file; `rest` starts at field 3.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Clock ticks per second of `/proc` times (USER_HZ).
const TICKS_PER_SECOND: u64 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_is_logged_survived_and_not_spun_on() {
    let logs = Logs::capture_global();

    let srv = TestServer::start_with(SseOptions::new().keep_alive(None), |s| {
        s.header_timeout(Duration::from_secs(60))
    })
    .await;
    let mut stat = std::fs::File::open("/proc/self/stat").unwrap();

    // Leave room for a few dozen connections (each costs two descriptors here: the
    // client's and the server's).
    let (soft, hard) = rlimit::getrlimit(Resource::NOFILE).unwrap();
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    rlimit::setrlimit(Resource::NOFILE, open + 60, hard).unwrap();

    let mut clients = Vec::new();
    let mut refused = false;
    for _ in 0..200 {
        match TcpStream::connect(srv.addr).await {
            Ok(s) => clients.push(s),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(24), "EMFILE expected: {e}");
                refused = true;
                break;
            }
        }
    }
    assert!(refused, "the descriptors never ran out");
    assert!(clients.len() >= 10, "{} clients", clients.len());
    eventually("the server to log an accept failure", || {
        logs.count("accept failed") > 0
    })
    .await;

    // Stalled: connections wait in the backlog and every accept fails. A loop spinning
    // on the error would burn a whole core; backing off costs almost nothing.
    let failures_before = logs.count("accept failed");
    let cpu_before = cpu_ticks(&mut stat);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu = cpu_ticks(&mut stat) - cpu_before;
    let failures = logs.count("accept failed") - failures_before;
    eprintln!("stalled second: {cpu} CPU ticks, {failures} accept failures");
    assert!(
        cpu < TICKS_PER_SECOND / 2,
        "{cpu} ticks of CPU in a one-second stall: the accept loop spins"
    );
    assert!(
        failures < 200,
        "{failures} accept failures in a one-second stall"
    );

    // Free half the descriptors: the server notices the closed connections, accepts
    // the waiting ones, and serves a new stream.
    let keep = clients.split_off(clients.len() / 2);
    drop(clients);
    let mut c = within("a stream after descriptors were freed", async {
        loop {
            // Retry while the server still holds the descriptors being given back.
            if let Ok(c) = tokio::spawn(SseClient::connect(srv.addr, "/sse", &[])).await {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(c.status, StatusCode::OK);
    assert_eq!(c.next_item().await, Some(Item::Comment("connected".into())));
    srv.hub
        .to("__all")
        .publish(&Message::new("back in business"))
        .unwrap();
    assert_eq!(c.next_event().await.data, "back in business");

    drop(keep);
    drop(c);
    rlimit::setrlimit(Resource::NOFILE, soft, hard).unwrap();
    srv.stop().await;
}
