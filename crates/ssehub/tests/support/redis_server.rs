//! A real `redis-server` for a test: its own process on a free loopback port, with a
//! temporary directory and nothing saved to disk (or, [`RedisServer::start_durable`],
//! every write in an append-only file, so that a restart keeps it); stopped by its pid
//! when dropped; and
//! [`RedisServer::command`], a few lines of RESP to do to it what an operator (or an
//! intruder) would, without a client library (the CLI's tests include this file too).
//! Included with `#[path = "support/redis_server.rs"] mod redis_server;`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    durable: bool,
}

/// Whether `redis-server` is here. Without it a test is skipped, except under CI
/// (`CI=true`), where that is a failure: CI installs it.
pub(crate) fn available() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "redis-server is missing (Debian package redis-server)"
        );
        eprintln!("skipped: redis-server is not installed (Debian package redis-server)");
    }
    found
}

impl RedisServer {
    /// Start one and wait until it answers.
    pub(crate) fn start() -> RedisServer {
        RedisServer::start_with(false)
    }

    /// One that writes every command to its append-only file before it answers: killed
    /// and restarted, it has all it had.
    pub(crate) fn start_durable() -> RedisServer {
        RedisServer::start_with(true)
    }

    fn start_with(durable: bool) -> RedisServer {
        let port = ssehub_testkit::free_port();
        let dir = std::env::temp_dir().join(format!("ssehub-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = RedisServer {
            child: None,
            port,
            dir,
            durable,
        };
        server.spawn();
        server
    }

    /// One started where `redis-server` is here ([`available`]); `None` where it is
    /// not, and the test is skipped.
    pub(crate) fn start_if_available() -> Option<RedisServer> {
        available().then(RedisServer::start)
    }

    /// One already running on `port`, left running when dropped.
    pub(crate) fn existing(port: u16) -> RedisServer {
        RedisServer {
            child: None,
            port,
            dir: PathBuf::new(),
            durable: false,
        }
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--protected-mode", "no"])
            .args(if self.durable {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "no"]
            })
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig}");
    }

    /// SIGSTOP: a Redis that is there but says nothing.
    pub(crate) fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT.
    pub(crate) fn resume(&self) {
        self.signal("CONT");
    }

    /// SIGKILL: a Redis that is gone, with what it held.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }

    /// Start it again on the same port: empty, or as it was if it is durable.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

/// A Redis reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

impl Reply {
    /// The reply as text (a status, a bulk string, a number); panics on an error.
    pub(crate) fn text(&self) -> String {
        match self {
            Reply::Status(s) => s.clone(),
            Reply::Int(n) => n.to_string(),
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            Reply::Bulk(None) => String::new(),
            other => panic!("not a single value: {other:?}"),
        }
    }
}

fn read_reply(r: &mut impl BufRead) -> Reply {
    let mut line = String::new();
    r.read_line(&mut line).expect("a reply");
    let (kind, rest) = line.trim_end().split_at(1);
    match kind {
        "+" => Reply::Status(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Int(rest.parse().unwrap()),
        "$" => {
            let n: i64 = rest.parse().unwrap();
            if n < 0 {
                return Reply::Bulk(None);
            }
            let mut buf = vec![0; n as usize + 2];
            std::io::Read::read_exact(r, &mut buf).unwrap();
            buf.truncate(n as usize);
            Reply::Bulk(Some(buf))
        }
        "*" => {
            let n: i64 = rest.parse().unwrap();
            Reply::Array((0..n.max(0)).map(|_| read_reply(r)).collect())
        }
        _ => panic!("not RESP: {line:?}"),
    }
}

impl RedisServer {
    /// Run one command on a connection of its own (blocking: for a test's set-up and
    /// its checks, not for load).
    pub(crate) fn command(&self, args: &[&[u8]]) -> Reply {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        s.write_all(&req).expect("send");
        read_reply(&mut BufReader::new(s))
    }

    /// [`RedisServer::command`] with text arguments.
    pub(crate) fn cmd(&self, args: &[&str]) -> Reply {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.command(&args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(self.pid().to_string())
                .status();
        }
        self.kill();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
