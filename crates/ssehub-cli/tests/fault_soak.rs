//! `ssehub soak --faults`: the fault soak with a fixed seed. Three nodes on a Redis of
//! the soak's own for 60 s (nodes killed and restarted, Redis paused and killed, clients
//! cut): not one accepted event silently lost, repeated or reordered for any subscriber.
//! One node with `--history-dir` restarted under its subscribers: not even a gap.

mod common;

use std::time::{Duration, Instant};

use common::{CliOutput, CliProcess};

/// Run the CLI with a wait bound of `limit` (the soak runs longer than the usual WAIT).
fn run_long(args: &[&str], limit: Duration) -> CliOutput {
    let mut cli = CliProcess::spawn(args);
    let deadline = Instant::now() + limit;
    while cli.child.try_wait().expect("poll the soak").is_none() {
        assert!(Instant::now() < deadline, "the soak ran past {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    cli.finish()
}

/// The number after `label` in the report.
fn figure(report: &str, label: &str) -> u64 {
    let at = report
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in:\n{report}"));
    report[at + label.len()..]
        .split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {label:?}"))
}

fn assert_passed(out: &CliOutput) -> &str {
    let report = out.stdout.as_str();
    assert!(
        out.status.success(),
        "{}\nstdout:\n{report}\nstderr:\n{}",
        out.status,
        out.stderr
    );
    for label in [
        "silent losses: ",
        "duplicates: ",
        "out of order: ",
        "without end marker: ",
    ] {
        assert_eq!(figure(report, label), 0, "{label}\n{report}");
    }
    assert!(
        figure(report, "deliveries of accepted events: ") > 1000,
        "{report}"
    );
    report
}

#[test]
fn sixty_seconds_of_faults_on_three_nodes_and_redis_lose_nothing_silently() {
    let out = run_long(
        &[
            "soak",
            "--faults",
            "redis",
            "--nodes",
            "3",
            "--duration",
            "60",
            "--seed",
            "25",
            "--rate",
            "80",
        ],
        Duration::from_secs(240),
    );
    let report = assert_passed(&out);
    assert!(report.contains("seed 25"), "the seed is printed:\n{report}");
    // The seed's schedule has every kind of fault: the run was not a quiet one.
    assert!(figure(report, "faults: ") >= 12, "{report}");
    for kind in [
        "node SIGKILL",
        "node SIGTERM",
        "Redis SIGSTOP",
        "Redis SIGKILL",
        "client cuts",
    ] {
        let line = report.lines().find(|l| l.starts_with("faults: ")).unwrap();
        let before = &line[..line.find(kind).unwrap()];
        let n: u64 = before
            .rsplit(|c: char| !c.is_ascii_digit())
            .find(|s| !s.is_empty())
            .unwrap()
            .parse()
            .unwrap();
        assert!(n > 0, "no {kind} in {line}");
    }
}

#[test]
fn a_node_with_a_history_dir_restarted_under_its_subscribers_loses_nothing() {
    let out = run_long(
        &[
            "soak",
            "--faults",
            "disk",
            "--duration",
            "15",
            "--seed",
            "7",
            "--rate",
            "80",
        ],
        Duration::from_secs(120),
    );
    let report = assert_passed(&out);
    assert!(figure(report, "faults: ") >= 3, "{report}");
    // Every restart resumed exactly: nothing was even covered by a gap.
    assert_eq!(figure(report, "covered by ssehub.gap: "), 0, "{report}");
}
