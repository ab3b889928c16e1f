//! Drives headless Chromium through chromedriver (the W3C WebDriver protocol: JSON over
//! HTTP, spoken with hyper's client). Each [`Browser`] owns one chromedriver process and
//! the Chromium it launches; both run in their own process group, which is killed when
//! the `Browser` is dropped, so a failing test leaves nothing behind.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

/// Upper bound on one WebDriver command (a script, a navigation).
const COMMAND_WAIT: Duration = Duration::from_secs(30);
/// Upper bound on starting chromedriver and Chromium (a loaded machine is slow to launch).
const LAUNCH_WAIT: Duration = Duration::from_secs(60);

/// Whether a test that needs an external tool should run: `true` when it is present.
/// When it is missing, CI (`CI=true`) fails the test; elsewhere the test is skipped
/// with a message saying why.
pub(crate) fn require(tool: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("this test needs {tool}: not found, and CI=true requires it");
    }
    eprintln!("SKIPPED: this test needs {tool}: not found (with CI=true this is a failure)");
    false
}

/// The first executable called `name` on `PATH`.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The Chromium binary. Debian's `/usr/bin/chromium` is a shell wrapper that adds flags
/// of its own (extensions, crash reporting); the real binary behind it is preferred.
fn chromium_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROME_BIN") {
        return Some(PathBuf::from(p));
    }
    let real = PathBuf::from("/usr/lib/chromium/chromium");
    if is_executable(&real) {
        return Some(real);
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|n| which(n))
}

/// Whether chromedriver and Chromium are both installed.
pub(crate) fn available() -> bool {
    which("chromedriver").is_some() && chromium_binary().is_some()
}

/// One chromedriver process with one Chromium session.
pub(crate) struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    profile: PathBuf,
}

impl Browser {
    /// Start chromedriver and a headless Chromium session with a fresh profile.
    pub(crate) async fn start() -> Browser {
        Browser::start_with(&[]).await
    }

    /// [`Browser::start`], with these Chromium flags too (`--ignore-certificate-errors`
    /// for a self-signed test server, say).
    pub(crate) async fn start_with(extra_args: &[&str]) -> Browser {
        let driver_bin = which("chromedriver").expect("chromedriver on PATH");
        let chromium = chromium_binary().expect("a Chromium binary");
        static N: AtomicUsize = AtomicUsize::new(0);
        let profile = std::env::temp_dir().join(format!(
            "ssehub-chromium-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&profile);
        // Chromium's own scratch directories go below the profile too (via TMPDIR), so
        // removing the profile removes every trace.
        let scratch = profile.join("tmp");
        std::fs::create_dir_all(&scratch).expect("create the Chromium profile directory");

        // chromedriver cannot report an ephemeral port, so pick a free one; if another
        // process takes it first, chromedriver exits and we try again.
        let mut attempts = 0;
        let (driver, addr) = loop {
            attempts += 1;
            let addr = free_port();
            let mut driver = Command::new(&driver_bin)
                .arg(format!("--port={}", addr.port()))
                .env("TMPDIR", &scratch)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("spawn chromedriver");
            if wait_ready(&mut driver, addr).await {
                break (driver, addr);
            }
            kill_group(&mut driver);
            assert!(attempts < 3, "chromedriver did not become ready");
        };

        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
            profile,
        };
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--disable-crash-reporter",
            "--disable-breakpad",
        ]
        .map(String::from)
        .to_vec();
        args.push(format!(
            "--user-data-dir={}",
            browser.profile.join("data").display()
        ));
        args.extend(extra_args.iter().map(|a| a.to_string()));
        let caps = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": args,
                },
            }},
        });
        let v = browser
            .command(Method::POST, "/session", Some(caps), LAUNCH_WAIT)
            .await
            .unwrap_or_else(|e| panic!("new WebDriver session: {e}"));
        browser.session = v["sessionId"]
            .as_str()
            .expect("sessionId in the new-session answer")
            .to_owned();
        browser
    }

    /// Load `url` and wait for its `load` event.
    pub(crate) async fn goto(&self, url: &str) {
        let path = format!("/session/{}/url", self.session);
        self.command(
            Method::POST,
            &path,
            Some(json!({ "url": url })),
            COMMAND_WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("navigate to {url}: {e}"));
    }

    /// Run `script` (a function body; `return` gives the result) in the page.
    pub(crate) async fn eval(&self, script: &str) -> Value {
        let path = format!("/session/{}/execute/sync", self.session);
        let body = json!({ "script": script, "args": [] });
        self.command(Method::POST, &path, Some(body), COMMAND_WAIT)
            .await
            .unwrap_or_else(|e| panic!("execute script: {e}"))
    }

    /// Evaluate `script` every 25 ms until `done` accepts its value (bounded by `limit`).
    pub(crate) async fn poll(
        &self,
        what: &str,
        script: &str,
        limit: Duration,
        mut done: impl FnMut(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let v = self.eval(script).await;
            if done(&v) {
                return v;
            }
            if start.elapsed() >= limit {
                let mut shown = v.to_string();
                if shown.len() > 4000 {
                    let cut = (0..=4000)
                        .rev()
                        .find(|&i| shown.is_char_boundary(i))
                        .unwrap();
                    shown.truncate(cut);
                    shown.push_str(" ...");
                }
                panic!("timed out waiting for {what}; last value: {shown}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Resize the window (the page is laid out again).
    pub(crate) async fn window_size(&self, width: u32, height: u32) {
        let path = format!("/session/{}/window/rect", self.session);
        let body = json!({ "width": width, "height": height });
        self.command(Method::POST, &path, Some(body), COMMAND_WAIT)
            .await
            .unwrap_or_else(|e| panic!("resize the window: {e}"));
    }

    /// A screenshot of the window, as WebDriver gives it: a PNG, base64-encoded.
    pub(crate) async fn screenshot_base64(&self) -> String {
        let path = format!("/session/{}/screenshot", self.session);
        let v = self
            .command(Method::GET, &path, None, COMMAND_WAIT)
            .await
            .unwrap_or_else(|e| panic!("take a screenshot: {e}"));
        v.as_str().expect("a base64 string").to_owned()
    }

    /// End the session (Chromium exits), then stop chromedriver.
    pub(crate) async fn quit(self) {
        let path = format!("/session/{}", self.session);
        let _ = self
            .command(Method::DELETE, &path, None, COMMAND_WAIT)
            .await;
        // Drop kills whatever is left of the process group.
    }

    async fn command(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        limit: Duration,
    ) -> Result<Value, String> {
        let (status, v) = tokio::time::timeout(limit, call(self.addr, method, path, body))
            .await
            .map_err(|_| format!("no answer from chromedriver within {limit:?}"))??;
        if !status.is_success() {
            return Err(format!("chromedriver answered {status}: {v}"));
        }
        Ok(v["value"].clone())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
        // Killed helpers may still be letting go of files: retry briefly.
        for _ in 0..20 {
            if std::fs::remove_dir_all(&self.profile).is_ok() || !self.profile.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Kill chromedriver's process group (chromedriver, Chromium and its helpers), then reap.
fn kill_group(child: &mut Child) {
    let group = format!("-{}", child.id());
    let killed = Command::new("kill")
        .args(["-KILL", "--", &group])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !killed {
        let _ = child.kill();
    }
    let _ = child.wait();
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr")
}

/// Poll `/status` until chromedriver says it is ready; `false` if it exits or is slow.
async fn wait_ready(driver: &mut Child, addr: SocketAddr) -> bool {
    let start = Instant::now();
    while start.elapsed() < LAUNCH_WAIT {
        if let Ok(Some(_)) = driver.try_wait() {
            return false;
        }
        let status = tokio::time::timeout(
            Duration::from_secs(5),
            call(addr, Method::GET, "/status", None),
        )
        .await;
        if let Ok(Ok((s, v))) = status {
            if s.is_success() && v["value"]["ready"] == Value::Bool(true) {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// One WebDriver request on a fresh connection: JSON in, status and JSON out.
async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(http::StatusCode, Value), String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to chromedriver: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = res.status();
    let bytes = res
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    let v = serde_json::from_slice(&bytes).map_err(|e| format!("JSON answer: {e}"))?;
    Ok((status, v))
}
