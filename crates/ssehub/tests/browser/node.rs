//! Node's `eventsource` package (a WHATWG-following client), driven from the command
//! line through `tests/js/eventsource_client.mjs`: an independent client for the tests.
//! Included with `#[path = "browser/node.rs"] mod node;` beside `mod browser;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// Upper bound on waiting for the Node client (its start included).
const CLIENT_WAIT: Duration = Duration::from_secs(30);

pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub(crate) const NODE: &str =
    "node and the npm package eventsource (`npm ci` at the repository root)";

pub(crate) fn node_available() -> bool {
    crate::browser::which("node").is_some()
        && repo_root()
            .join("node_modules/eventsource/package.json")
            .is_file()
}

/// The Node client script, running against one URL; reads its JSON lines.
pub(crate) struct NodeClient {
    child: Child,
    lines: tokio::io::Lines<BufReader<ChildStdout>>,
}

impl NodeClient {
    pub(crate) fn spawn(url: &str, config: Value) -> NodeClient {
        NodeClient::spawn_trusting(url, config, None)
    }

    /// [`NodeClient::spawn`] for an `https` URL whose certificate Node is to trust: the
    /// PEM file `ca` (a test server's self-signed certificate), on top of its own roots.
    pub(crate) fn spawn_trusting(url: &str, config: Value, ca: Option<&Path>) -> NodeClient {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js/eventsource_client.mjs");
        let mut command = Command::new("node");
        if let Some(ca) = ca {
            command.env("NODE_EXTRA_CA_CERTS", ca);
        }
        let mut child = command
            .arg(script)
            .arg(url)
            .arg(config.to_string())
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn node");
        let stdout = child.stdout.take().unwrap();
        NodeClient {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// The next line the client printed, parsed (bounded wait).
    pub(crate) async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(CLIENT_WAIT, self.lines.next_line())
            .await
            .expect("timed out waiting for the Node client")
            .expect("read the Node client's output")
            .expect("the Node client exited early");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"))
    }

    /// Read lines up to and including `{"kind":"done"}`, then wait for the exit.
    pub(crate) async fn until_done(&mut self) -> Vec<Value> {
        let mut log = Vec::new();
        loop {
            let v = self.next().await;
            let done = v["kind"] == "done";
            log.push(v);
            if done {
                break;
            }
        }
        let status = tokio::time::timeout(CLIENT_WAIT, self.child.wait())
            .await
            .expect("the Node client did not exit")
            .unwrap();
        assert!(status.success(), "node exited with {status}; log: {log:?}");
        log
    }
}
