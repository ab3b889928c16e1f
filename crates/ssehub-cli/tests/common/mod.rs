//! Helpers for tests that run the real `ssehub` binary: start `ssehub serve` on an
//! ephemeral port ([`ServeProcess`]), run the CLI with a bounded wait ([`run_cli`]), and
//! speak the demo's API (`/publish`, `/stats`, its `status` event). The client side
//! (bounded waits, HTTP, SSE) is `ssehub-testkit`'s, shared with the library's tests and
//! re-exported here.
//!
//! Every wait is bounded by [`WAIT`]; a process is killed when its [`ServeProcess`] or
//! [`CliProcess`] is dropped, so a failing test never leaves one behind.
#![allow(dead_code, unused_imports)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use http::StatusCode;

pub(crate) use ssehub_testkit::{free_port, get, post, request, within, Reply, SseClient, WAIT};

/// The binary under test.
pub(crate) fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ssehub")
}

/// A running `ssehub` server process. Killed (by PID) when dropped.
pub(crate) struct ServeProcess {
    pub addr: SocketAddr,
    pub child: Child,
}

impl ServeProcess {
    /// `ssehub serve --port <free> --bind 127.0.0.1 <extra_args>`, once it accepts.
    pub(crate) fn start(extra_args: &[&str]) -> ServeProcess {
        Self::spawn(|port| {
            let mut cmd = Command::new(bin());
            cmd.args(["serve", "--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(extra_args);
            cmd
        })
    }

    /// Start the command `make(port)` builds (stdout is discarded, stderr shown), and
    /// wait until it accepts connections on 127.0.0.1:`port`. Another process may grab
    /// the free port first; then a few other ports are tried.
    pub(crate) fn spawn(make: impl Fn(u16) -> Command) -> ServeProcess {
        Self::spawn_with_stderr(make, Stdio::inherit)
    }

    /// [`ServeProcess::spawn`], with its stderr as `stderr` makes it (piped, to read
    /// its log lines).
    pub(crate) fn spawn_with_stderr(
        make: impl Fn(u16) -> Command,
        stderr: fn() -> Stdio,
    ) -> ServeProcess {
        let mut last_failure = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut cmd = make(port);
            let set_here = cmd.get_envs().any(|(k, _)| k == "RUST_LOG");
            if std::env::var_os("RUST_LOG").is_none() && !set_here {
                cmd.env("RUST_LOG", "warn");
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr())
                .spawn()
                .expect("start the ssehub binary");
            let mut server = ServeProcess {
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                child,
            };
            match server.wait_until_accepting() {
                Ok(()) => return server,
                Err(e) => last_failure = e,
            }
        }
        panic!("the server did not start: {last_failure}");
    }

    fn wait_until_accepting(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the server process") {
                return Err(format!("it exited early with {status}"));
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("nothing accepted on {} within {WAIT:?}", self.addr));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send SIGTERM (through `kill(1)`, to this process's PID only).
    pub(crate) fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Wait (bounded by `limit`) for the process to exit; `None` if it has not.
    pub(crate) fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_exit(&mut self.child, limit)
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        reap(&mut self.child);
    }
}

/// What a finished CLI run printed.
#[derive(Debug)]
pub(crate) struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Run `ssehub <args>` with `stdin` as its input; kill it if it takes longer than WAIT.
pub(crate) fn run_cli<S: AsRef<OsStr>>(args: &[S], stdin: &[u8]) -> CliOutput {
    let mut child = CliProcess::spawn(args);
    {
        use std::io::Write;
        let mut input = child.child.stdin.take().expect("piped stdin");
        input.write_all(stdin).expect("write the CLI's stdin");
    }
    child.finish()
}

/// [`run_cli`] on a blocking thread, for tests whose own runtime must keep serving
/// while the CLI runs.
pub(crate) async fn run_cli_async(args: &[&str], stdin: &[u8]) -> CliOutput {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.to_vec();
    tokio::task::spawn_blocking(move || run_cli(&args, &stdin))
        .await
        .expect("the CLI run panicked")
}

/// A CLI process whose output lines can be read as they come.
pub(crate) struct CliProcess {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    stdout_so_far: Vec<String>,
    stderr: mpsc::Receiver<String>,
}

impl CliProcess {
    pub(crate) fn spawn<S: AsRef<OsStr>>(args: &[S]) -> CliProcess {
        let mut child = Command::new(bin())
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the ssehub binary");
        let out = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().expect("piped stderr");
        let (etx, stderr) = mpsc::channel();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            let _ = etx.send(s);
        });
        CliProcess {
            child,
            lines,
            stdout_so_far: Vec::new(),
            stderr,
        }
    }

    /// The next line of standard output (bounded by WAIT).
    pub(crate) fn next_line(&mut self) -> String {
        let line = self
            .lines
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("no line from the CLI within {WAIT:?}: {e}"));
        self.stdout_so_far.push(line.clone());
        line
    }

    /// Wait (bounded) for the process to exit, and collect what is left of its output.
    pub(crate) fn finish(mut self) -> CliOutput {
        let Some(status) = wait_exit(&mut self.child, WAIT) else {
            reap(&mut self.child);
            panic!("the CLI did not exit within {WAIT:?}");
        };
        let mut stdout = self.stdout_so_far.join("\n");
        while let Ok(line) = self.lines.recv_timeout(WAIT) {
            if !stdout.is_empty() {
                stdout.push('\n');
            }
            stdout.push_str(&line);
        }
        let stderr = self.stderr.recv_timeout(WAIT).unwrap_or_default();
        CliOutput {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for CliProcess {
    fn drop(&mut self) {
        reap(&mut self.child);
    }
}

/// Wait (bounded by `limit`) for `child` to exit; `None` if it has not.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("poll the child process") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kill `child` if it still runs, and reap it: a failing test leaves no process behind.
fn reap(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// `POST /publish` with a query string and a text body.
pub(crate) async fn publish_query(addr: SocketAddr, query: &str, data: &str) -> Reply {
    post(
        addr,
        &format!("/publish?{query}"),
        "text/plain",
        data.to_owned(),
    )
    .await
}

/// `POST /publish` with a JSON body.
pub(crate) async fn publish_json(addr: SocketAddr, body: serde_json::Value) -> Reply {
    post(addr, "/publish", "application/json", body.to_string()).await
}

/// `GET /stats`, as JSON.
pub(crate) async fn stats(addr: SocketAddr) -> serde_json::Value {
    let reply = get(addr, "/stats").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()
}

/// Open `path` on the demo server and wait for its `status: connected` event, after
/// which the connection is in every room it asked for.
pub(crate) async fn demo_stream(addr: SocketAddr, path: &str) -> SseClient {
    let mut s = SseClient::open(addr, path).await;
    let e = s.next_event().await;
    assert_eq!((e.event.as_str(), e.data.as_str()), ("status", "connected"));
    s
}
