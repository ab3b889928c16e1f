//! `ssehub soak` against a real `ssehub serve`: a 30-second abuse run (churn, slow
//! readers, small, large and bulk rooms) loses nothing without a policy and leaves no
//! connection open; and the soak does fail when a connection is left open.

mod common;

use std::time::{Duration, Instant};

use common::{demo_stream, stats, CliOutput, CliProcess, ServeProcess};

/// Run the CLI with a wait bound of `limit` (the soak runs longer than the usual WAIT).
fn run_long(args: Vec<String>, limit: Duration) -> CliOutput {
    let mut cli = CliProcess::spawn(&args);
    let deadline = Instant::now() + limit;
    while cli.child.try_wait().expect("poll the soak").is_none() {
        assert!(Instant::now() < deadline, "the soak ran past {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    cli.finish()
}

/// The number after `label` on its line of the report.
fn figure(report: &str, label: &str) -> f64 {
    let line = report
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{report}"));
    line[label.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number in {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_second_soak_loses_nothing_and_leaves_nothing_open() {
    let server = ServeProcess::start(&["--tick-interval", "0"]);
    let url = server.url("");
    let pid = server.pid().to_string();
    let args = [
        "soak",
        "--url",
        &url,
        "--duration",
        "30",
        "--server-pid",
        &pid,
    ]
    .map(String::from);
    let out =
        tokio::task::spawn_blocking(move || run_long(args.to_vec(), Duration::from_secs(120)))
            .await
            .unwrap();
    let report = &out.stdout;
    assert!(
        out.status.success(),
        "{}\nstdout:\n{report}\nstderr:\n{}",
        out.status,
        out.stderr
    );
    assert!(figure(report, "events published:") > 0.0, "{report}");
    assert!(
        figure(report, "received by fast readers:") > 0.0,
        "{report}"
    );
    assert_eq!(figure(report, "lost without policy:"), 0.0, "{report}");
    assert_eq!(figure(report, "out of order or repeated:"), 0.0, "{report}");
    assert_eq!(figure(report, "fast readers cut off:"), 0.0, "{report}");
    assert_eq!(figure(report, "connections left open:"), 0.0, "{report}");
    assert!(figure(report, "peak server RSS:") > 1.0, "{report}");
    // The report agrees with the server.
    let s = stats(server.addr).await;
    assert_eq!(s["connections"], 0, "{s}");
    let by_policy =
        s["dropped_events"].as_u64().unwrap() + s["slow_consumer_closes"].as_u64().unwrap();
    assert_eq!(
        figure(report, "dropped by policy:"),
        by_policy as f64,
        "{report}\n{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_left_open_fails_the_soak() {
    let server = ServeProcess::start(&["--tick-interval", "0"]);
    // A client that is not the soak's keeps its stream open throughout.
    let _stranger = demo_stream(server.addr, "/sse").await;
    let url = server.url("");
    let args = [
        "soak",
        "--url",
        &url,
        "--duration",
        "2",
        "--large-room",
        "5",
        "--churners",
        "2",
    ]
    .map(String::from);
    let out = tokio::task::spawn_blocking(move || run_long(args.to_vec(), Duration::from_secs(90)))
        .await
        .unwrap();
    assert!(!out.status.success(), "stdout:\n{}", out.stdout);
    assert_eq!(
        figure(&out.stdout, "connections left open:"),
        1.0,
        "{}",
        out.stdout
    );
    assert_eq!(
        figure(&out.stdout, "lost without policy:"),
        0.0,
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("1 connections left open"),
        "{}",
        out.stderr
    );
}
