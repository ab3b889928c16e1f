//! Helpers for tests that run the real `ssehub` binary: start `ssehub serve` on an
//! ephemeral port ([`ServeProcess`]), run the CLI with a bounded wait ([`run_cli`]), and
//! talk HTTP and SSE to the server over TCP (hyper's client plus the library's decoder).
//!
//! Every wait is bounded by [`WAIT`]; a server process is killed when its
//! [`ServeProcess`] is dropped, so a failing test never leaves one behind.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ssehub::decode::{Decoder, Event, Item};

/// Upper bound on any single wait in a test: a hang fails instead of blocking CI.
pub const WAIT: Duration = Duration::from_secs(15);

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ssehub")
}

/// Fail (instead of hanging) if `fut` takes longer than [`WAIT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for {what}"))
}

/// A port that was free a moment ago (bind port 0, read it, close).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// A running `ssehub` server process. Killed (by PID) when dropped.
pub struct ServeProcess {
    pub addr: SocketAddr,
    pub child: Child,
}

impl ServeProcess {
    /// `ssehub serve --port <free> --bind 127.0.0.1 <extra_args>`, once it accepts.
    pub fn start(extra_args: &[&str]) -> ServeProcess {
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
    pub fn spawn(make: impl Fn(u16) -> Command) -> ServeProcess {
        let mut last_failure = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut cmd = make(port);
            if std::env::var_os("RUST_LOG").is_none() {
                cmd.env("RUST_LOG", "warn");
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
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
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send SIGTERM (through `kill(1)`, to this process's PID only).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Wait (bounded by `limit`) for the process to exit; `None` if it has not.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the server process") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// What a finished CLI run printed.
#[derive(Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Run `ssehub <args>` with `stdin` as its input; kill it if it takes longer than WAIT.
pub fn run_cli<S: AsRef<OsStr>>(args: &[S], stdin: &[u8]) -> CliOutput {
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
pub async fn run_cli_async(args: &[&str], stdin: &[u8]) -> CliOutput {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.to_vec();
    tokio::task::spawn_blocking(move || run_cli(&args, &stdin))
        .await
        .expect("the CLI run panicked")
}

/// A CLI process whose output lines can be read as they come.
pub struct CliProcess {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    stdout_so_far: Vec<String>,
    stderr: mpsc::Receiver<String>,
}

impl CliProcess {
    pub fn spawn<S: AsRef<OsStr>>(args: &[S]) -> CliProcess {
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
    pub fn next_line(&mut self) -> String {
        let line = self
            .lines
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("no line from the CLI within {WAIT:?}: {e}"));
        self.stdout_so_far.push(line.clone());
        line
    }

    /// Wait (bounded) for the process to exit, and collect what is left of its output.
    pub fn finish(mut self) -> CliOutput {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("poll the CLI") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the CLI did not exit within {WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
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
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A whole HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Send one request on a new HTTP/1.1 connection and read the whole answer.
pub async fn request(addr: SocketAddr, req: Request<Full<Bytes>>) -> Reply {
    within("an HTTP answer", async {
        let res = send(addr, req).await;
        let status = res.status();
        let headers = res.headers().clone();
        let body = res
            .into_body()
            .collect()
            .await
            .expect("read the body")
            .to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    })
    .await
}

async fn send(addr: SocketAddr, mut req: Request<Full<Bytes>>) -> http::Response<Incoming> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the server");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP handshake");
    tokio::spawn(conn);
    req.headers_mut()
        .insert(http::header::HOST, addr.to_string().parse().unwrap());
    sender.send_request(req).await.expect("send the request")
}

pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, Request::get(path).body(Full::default()).unwrap()).await
}

pub async fn post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Reply {
    let req = Request::post(path)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .unwrap();
    request(addr, req).await
}

/// `POST /publish` with a query string and a text body.
pub async fn publish_query(addr: SocketAddr, query: &str, data: &str) -> Reply {
    post(
        addr,
        &format!("/publish?{query}"),
        "text/plain",
        data.to_owned(),
    )
    .await
}

/// `POST /publish` with a JSON body.
pub async fn publish_json(addr: SocketAddr, body: serde_json::Value) -> Reply {
    post(addr, "/publish", "application/json", body.to_string()).await
}

/// `GET /stats`, as JSON.
pub async fn stats(addr: SocketAddr) -> serde_json::Value {
    let reply = get(addr, "/stats").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()
}

/// An open event stream, read with the library's decoder.
pub struct SseStream {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Incoming,
    decoder: Decoder,
}

impl SseStream {
    /// Open `path` and check the answer is a 200 event stream.
    pub async fn open(addr: SocketAddr, path: &str) -> SseStream {
        let req = Request::get(path)
            .header(http::header::ACCEPT, "text/event-stream")
            .body(Full::default())
            .unwrap();
        let res = within("the SSE handshake", send(addr, req)).await;
        let status = res.status();
        let headers = res.headers().clone();
        assert_eq!(status, StatusCode::OK, "GET {path}");
        assert!(
            headers[http::header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream"),
            "{headers:?}"
        );
        SseStream {
            status,
            headers,
            body: res.into_body(),
            decoder: Decoder::new(),
        }
    }

    /// Open `path` and wait for the server's `status: connected` event, after which the
    /// connection is in every room it asked for.
    pub async fn connected(addr: SocketAddr, path: &str) -> SseStream {
        let mut s = Self::open(addr, path).await;
        let e = s.next_event().await;
        assert_eq!((e.event.as_str(), e.data.as_str()), ("status", "connected"));
        s
    }

    /// The next event (comments and retry hints skipped); panics at the end of the
    /// stream or after WAIT.
    pub async fn next_event(&mut self) -> Event {
        within("an event", async {
            loop {
                match self.next_item().await {
                    Some(Item::Event(e)) => return e,
                    Some(_) => continue,
                    None => panic!("the stream ended"),
                }
            }
        })
        .await
    }

    /// The next event of type `event`, skipping others (bounded by WAIT).
    pub async fn next_of(&mut self, event: &str) -> Event {
        within("an event of the right type", async {
            loop {
                let e = self.next_event().await;
                if e.event == event {
                    return e;
                }
            }
        })
        .await
    }

    /// The next item, or `None` when the stream ends (unbounded: wrap in `within`).
    pub async fn next_item(&mut self) -> Option<Item> {
        loop {
            if let Some(item) = self.decoder.next_item().expect("a stream within limits") {
                return Some(item);
            }
            match self.body.frame().await {
                None | Some(Err(_)) => return None,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.decoder.feed(&data);
                    }
                }
            }
        }
    }

    /// Read until the stream ends (bounded by WAIT), returning the events seen.
    pub async fn until_end(&mut self) -> Vec<Event> {
        within("the end of the stream", async {
            let mut events = Vec::new();
            while let Some(item) = self.next_item().await {
                if let Item::Event(e) = item {
                    events.push(e);
                }
            }
            events
        })
        .await
    }
}
