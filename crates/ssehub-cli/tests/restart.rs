//! The real binary restarted under its clients: with `--history-dir`, a SIGKILL or a
//! SIGTERM loses nothing (every client resumes with its last id and gets exactly the
//! events it had not received, in order, no gap signal); without it, the same run sees
//! `ssehub.gap` (so the test discriminates).

mod common;

use std::path::PathBuf;
use std::process::Command;

use http::StatusCode;
use ssehub::decode::Event;

use common::*;

/// A fresh directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "ssehub-restart-{name}-{}-{nanos}",
            std::process::id()
        ));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Clone, Copy, Debug)]
enum Stop {
    Kill,
    Term,
}

fn start(dir: Option<&TempDir>) -> ServeProcess {
    let mut args = vec!["--tick-interval", "0", "--keep-alive", "0"];
    let dir = dir.map(|d| d.0.to_string_lossy().into_owned());
    if let Some(d) = &dir {
        args.extend(["--history-dir", d.as_str()]);
    }
    ServeProcess::start(&args)
}

fn stop(server: &mut ServeProcess, how: Stop) {
    match how {
        Stop::Term => server.terminate(),
        Stop::Kill => {
            let status = Command::new("kill")
                .args(["-KILL", &server.pid().to_string()])
                .status()
                .expect("run kill");
            assert!(status.success());
        }
    }
    assert!(
        server.wait_exit(WAIT).is_some(),
        "the server did not exit after {how:?}"
    );
}

async fn publish(server: &ServeProcess, from: usize, to: usize) {
    for n in from..to {
        let r = publish_query(server.addr, "room=news", &format!("e{n}")).await;
        assert!(r.status.is_success(), "publish e{n}: {}", r.text());
    }
}

/// The events of the stream that are not the demo's `status`, until `last` arrives.
async fn read_until(s: &mut SseClient, last: &str) -> Vec<Event> {
    within("the stream to reach the last event", async {
        let mut seen = Vec::new();
        loop {
            let e = s.next_event().await;
            if e.event == "status" {
                continue;
            }
            let done = e.data == last;
            seen.push(e);
            if done {
                return seen;
            }
        }
    })
    .await
}

/// Clients read part of 30 events (each a different amount) and leave with their last
/// id; 10 more are published, the server is stopped `how` and started again (on the
/// same directory if `durable`), 10 more are published; each client resumes. Returns,
/// per client, what it read after resuming, and what it should have read.
async fn restart_run(how: Stop, durable: bool) -> Vec<(Vec<Event>, Vec<String>)> {
    let dir = TempDir::new(&format!("{how:?}"));
    let mut server = start(durable.then_some(&dir));
    let mut cursors = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(demo_stream(server.addr, "/sse?room=news").await);
    }
    publish(&server, 0, 30).await;
    for (i, s) in clients.iter_mut().enumerate() {
        let upto = 10 + 6 * i; // reads e0..=e{upto}
        let seen = read_until(s, &format!("e{upto}")).await;
        assert_eq!(seen.len(), upto + 1);
        cursors.push((s.last_event_id(), upto + 1));
    }
    drop(clients);
    publish(&server, 30, 40).await;
    stop(&mut server, how);
    drop(server);
    let server = start(durable.then_some(&dir));
    publish(&server, 40, 50).await;
    let mut out = Vec::new();
    for (cursor, next) in cursors {
        let mut s = SseClient::connect(
            server.addr,
            "/sse?room=news",
            &[("last-event-id", cursor.as_str())],
        )
        .await;
        assert_eq!(s.status, StatusCode::OK);
        let seen = read_until(&mut s, "e49").await;
        let want = (next..50).map(|n| format!("e{n}")).collect();
        out.push((seen, want));
    }
    out
}

fn assert_nothing_lost(how: Stop, runs: Vec<(Vec<Event>, Vec<String>)>) {
    for (i, (seen, want)) in runs.into_iter().enumerate() {
        let types: Vec<&str> = seen.iter().map(|e| e.event.as_str()).collect();
        assert!(
            !types.contains(&"ssehub.gap"),
            "client {i} after {how:?}: a gap: {seen:?}"
        );
        let datas: Vec<String> = seen.into_iter().map(|e| e.data).collect();
        assert_eq!(
            datas, want,
            "client {i} after {how:?}: exactly what it missed"
        );
    }
}

#[tokio::test]
async fn a_sigkill_with_a_history_dir_loses_nothing() {
    assert_nothing_lost(Stop::Kill, restart_run(Stop::Kill, true).await);
}

#[tokio::test]
async fn a_sigterm_with_a_history_dir_loses_nothing() {
    assert_nothing_lost(Stop::Term, restart_run(Stop::Term, true).await);
}

#[tokio::test]
async fn without_a_history_dir_a_restart_is_a_gap() {
    for (i, (seen, _)) in restart_run(Stop::Kill, false).await.into_iter().enumerate() {
        assert_eq!(
            seen.first().map(|e| e.event.as_str()),
            Some("ssehub.gap"),
            "client {i}: {seen:?}"
        );
        // What follows the gap is only what the new process published.
        let datas: Vec<&str> = seen[1..].iter().map(|e| e.data.as_str()).collect();
        let want: Vec<String> = (40..50).map(|n| format!("e{n}")).collect();
        assert_eq!(datas, want, "client {i}");
    }
}

/// `SSEHUB_HISTORY_DIR` and `[history] fsync` are read; the Mercure hub's history goes
/// to a subdirectory of its own.
#[tokio::test]
async fn the_history_dir_from_the_environment_and_mercure_beside_it() {
    let dir = TempDir::new("env");
    let make = |port: u16| {
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--tick-interval", "0"])
            .env("SSEHUB_HISTORY_DIR", &dir.0)
            .env("SSEHUB_HISTORY_FSYNC", "always")
            .env("SSEHUB_MERCURE_ENABLED", "true")
            .env("SSEHUB_MERCURE_ANONYMOUS", "true")
            .env(
                "SSEHUB_MERCURE_PUBLISHER_JWT_KEY",
                "a-publisher-key-for-this-test-only-32",
            );
        cmd
    };
    let server = ServeProcess::spawn(make);
    publish(&server, 0, 3).await;
    let entries = |d: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let top = entries(&dir.0);
    assert!(top.iter().any(|f| f.ends_with(".seg")), "{top:?}");
    assert!(top.contains(&"mercure".to_owned()), "{top:?}");
    let meta = std::fs::read_to_string(dir.0.join("meta")).unwrap();
    assert!(meta.contains("\"always\""), "{meta}");
    let mercure = entries(&dir.0.join("mercure"));
    assert!(mercure.iter().any(|f| f.ends_with(".seg")), "{mercure:?}");
}

/// A segment cut in the middle of its last record (as a crash during a write leaves it)
/// is cut back at the next start, said on stderr, and every earlier event is kept.
#[tokio::test]
async fn a_torn_tail_is_cut_and_reported_at_start() {
    let dir = TempDir::new("torn");
    let mut server = start(Some(&dir));
    publish(&server, 0, 20).await;
    stop(&mut server, Stop::Kill);
    drop(server);
    let mut segs: Vec<(PathBuf, u64)> = std::fs::read_dir(&dir.0)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .map(|e| (e.path(), e.metadata().unwrap().len()))
        .filter(|(_, len)| *len > 16)
        .collect();
    segs.sort();
    let (last, len) = segs.pop().expect("a segment with records");
    let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    f.set_len(len - 5).unwrap();
    drop(f);

    let d = dir.0.to_string_lossy().into_owned();
    let make = |port: u16| {
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--tick-interval",
                "0",
                "--keep-alive",
                "0",
                "--history-dir",
                &d,
            ]);
        cmd
    };
    let mut server = ServeProcess::spawn_with_stderr(make, std::process::Stdio::piped);
    let stderr = server.child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let said = loop {
        let line = rx
            .recv_timeout(WAIT)
            .expect("a warning about the torn tail on stderr");
        if line.contains("cutting a torn or corrupt tail") {
            break line;
        }
    };
    assert!(said.contains(&last.display().to_string()), "{said}");
    assert!(std::fs::metadata(&last).unwrap().len() < len - 5);
    // Every event but the torn one is still there, in order.
    let mut s = SseClient::connect(
        server.addr,
        "/sse?room=news",
        &[("last-event-id", "earliest")],
    )
    .await;
    publish(&server, 20, 21).await;
    let seen: Vec<String> = read_until(&mut s, "e20")
        .await
        .into_iter()
        .map(|e| e.data)
        .collect();
    let want: Vec<String> = (0..19).chain(20..21).map(|n| format!("e{n}")).collect();
    assert_eq!(seen, want);
}
