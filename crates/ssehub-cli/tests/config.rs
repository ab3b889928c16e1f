//! `ssehub serve --config` and `ssehub check-config`, on the real binary: the example
//! file, refusals that name the key, environment overrides, JWT auth from the config,
//! TLS with a self-signed certificate on HTTP/2 and HTTP/1.1, one line per listener.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{bin, free_port, request, run_cli, within, ServeProcess, SseClient, WAIT};
use http::{Request, StatusCode};
use http_body_util::{Empty, Full};
use ssehub_testkit::tls::{insecure_client_config, send_tls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ssehub.example.toml");
const SECRET: &str = "a secret for the config tests, long enough";

/// A file of its own for one test, removed at the end.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("ssehub-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `ssehub check-config FILE` with extra environment variables.
fn check_config(file: &str, env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(bin())
        .args(["check-config", file])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run ssehub check-config");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_prints_the_effective_configuration_of_the_example() {
    let (ok, out, err) = check_config(EXAMPLE, &[]);
    assert!(ok, "{err}");
    for section in [
        "[server]",
        "[tls]",
        "[auth]",
        "[cors]",
        "[sse]",
        "[limits]",
        "[history]",
    ] {
        assert!(out.contains(section), "{section} in {out}");
    }
    assert!(out.contains("listen = \"127.0.0.1:2015\""), "{out}");
}

#[test]
fn the_environment_overrides_the_file_and_secrets_are_hidden() {
    let env = [
        ("SSEHUB_SERVER_LISTEN", "127.0.0.1:9999"),
        ("SSEHUB_AUTH_JWT_SECRET", SECRET),
        ("SSEHUB_SSE_KEEP_ALIVE", "3"),
    ];
    let (ok, out, err) = check_config(EXAMPLE, &env);
    assert!(ok, "{err}");
    assert!(out.contains("listen = \"127.0.0.1:9999\""), "{out}");
    assert!(out.contains("keep_alive = 3"), "{out}");
    assert!(
        out.contains("jwt_secret = \"(hidden)\"") && !out.contains(SECRET),
        "{out}"
    );
}

#[test]
fn bad_configurations_are_refused_naming_the_key() {
    let cases = [
        (
            "[server]\nlisten = \"127.0.0.1:1\"\nlissten = 1\n",
            "lissten",
        ),
        ("[sse]\nkeep_alive = \"soon\"\n", "keep_alive"),
        ("[limits]\nmax_publish_body = -5\n", "max_publish_body"),
        (
            "[auth]\nallow_anonymous_subscribe = [\"a*b\"]\n",
            "allow_anonymous_subscribe",
        ),
        ("[tls]\ncert = \"/x.pem\"\n", "tls.key"),
        ("[unknown]\n", "unknown"),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let file = TempFile::new(&format!("bad-{i}.toml"), text);
        let (ok, _, err) = check_config(file.path(), &[]);
        assert!(!ok, "{text} was accepted");
        assert!(err.contains(key), "{text}: the error names {key}: {err}");
    }
    let (ok, _, err) = check_config("/definitely/not/here.toml", &[]);
    assert!(!ok && err.contains("/definitely/not/here.toml"), "{err}");
    let (ok, _, err) = check_config(EXAMPLE, &[("SSEHUB_SSE_OUTBOX_LIMIT", "lots")]);
    assert!(!ok && err.contains("SSEHUB_SSE_OUTBOX_LIMIT"), "{err}");
    // `serve` refuses the same way, before it listens.
    let file = TempFile::new("bad-serve.toml", "[sse]\nslow_consumer = \"wait\"\n");
    let out = run_cli(&["serve", "--config", file.path()], b"");
    assert!(!out.status.success());
    assert!(out.stderr.contains("slow_consumer"), "{}", out.stderr);
}

/// A configuration error names the key, the file and the line, never the value of a key
/// that may hold a secret: misspelled (so unknown), in the wrong section, of the wrong
/// type, or a misspelled environment variable. Through `check-config` and `serve`.
#[test]
fn config_errors_never_show_a_secret_value() {
    let files = [
        // A misspelled key: unknown, so its value is never shown.
        (
            "[auth]\njwt_secert = \"VALUE-1-misspelled\"\n",
            "jwt_secert",
        ),
        // A known secret in the wrong section.
        (
            "[server]\nlisten = \"127.0.0.1:1\"\nadmin_token = \"VALUE-2-wrong-section\"\n",
            "admin_token",
        ),
        // A secret of the wrong type: serde would quote the number.
        ("[auth]\njwt_secret = 918273645\n", "jwt_secret"),
        (
            "[auth]\npublish_token = [\"VALUE-4-in-an-array\"]\n",
            "publish_token",
        ),
        // A key this program never had, that looks like a secret.
        ("[redis]\npassword = \"VALUE-5-unknown\"\n", "password"),
        // A secret in an inline table, on the line of another key's error.
        (
            "auth = { admin_token = \"VALUE-6-inline\", leeway = \"soon\" }\n",
            "leeway",
        ),
    ];
    let values = |text: &str| -> Vec<String> {
        text.split(['"', ' ', '[', ']', '\n'])
            .filter(|w| w.starts_with("VALUE-") || w.chars().all(|c| c.is_ascii_digit()))
            .filter(|w| w.len() > 3)
            .map(str::to_owned)
            .collect()
    };
    for (i, (text, key)) in files.iter().enumerate() {
        let file = TempFile::new(&format!("secret-{i}.toml"), text);
        let (ok, _, err) = check_config(file.path(), &[]);
        assert!(!ok, "{text} was accepted");
        assert!(err.contains(key), "{text}: the error names {key}: {err}");
        assert!(
            err.contains(file.path()),
            "{text}: the error names the file: {err}"
        );
        assert!(
            err.contains("line "),
            "{text}: the error names the line: {err}"
        );
        for value in values(text) {
            assert!(!err.contains(&value), "{text}: {value} printed: {err}");
        }
    }
    // A misspelled variable (unknown, so its value is never shown), and a known secret's.
    for (name, value) in [
        ("SSEHUB_AUTH_JWT_SECRT", "VALUE-7-misspelled-variable"),
        ("SSEHUB_SERVER_ADMIN_TOKEN", "VALUE-8-wrong-section"),
    ] {
        let (ok, _, err) = check_config(EXAMPLE, &[(name, value)]);
        assert!(!ok, "{name} was accepted");
        assert!(err.contains(name), "the error names {name}: {err}");
        assert!(!err.contains(value), "{name}: its value printed: {err}");
    }
    // `serve` loads the configuration the same way.
    let file = TempFile::new("secret-serve.toml", files[0].0);
    let out = run_cli(&["serve", "--config", file.path()], b"");
    assert!(!out.status.success());
    assert!(out.stderr.contains("jwt_secert"), "{}", out.stderr);
    assert!(!out.stderr.contains("VALUE-1"), "{}", out.stderr);
}

fn token(claims: serde_json::Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

fn exp() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600
}

#[tokio::test]
async fn a_config_with_a_jwt_secret_turns_auth_on() {
    let config = TempFile::new(
        "jwt.toml",
        &format!(
            "[auth]\njwt_secret = \"{SECRET}\"\nallow_anonymous_subscribe = [\"__all\"]\n\
             [demo]\ntick_interval = 0\n"
        ),
    );
    let server = ServeProcess::spawn(|port| {
        let mut cmd = Command::new(bin());
        cmd.args([
            "serve",
            "--config",
            config.path(),
            "--port",
            &port.to_string(),
        ]);
        cmd
    });
    let addr = server.addr;
    let user = token(serde_json::json!({
        "sub": "alice", "exp": exp(),
        "ssehub": { "subscribe": ["orders.*"], "publish": ["orders.*"] }
    }));
    // The auto-join room is open to all; `orders.1` needs the token.
    let anonymous = SseClient::connect(addr, "/sse", &[]).await;
    assert_eq!(anonymous.status, StatusCode::OK);
    let refused = SseClient::connect(addr, "/sse?room=orders.1", &[]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let path = format!("/sse?room=orders.1&access_token={user}");
    let mut stream = SseClient::open(addr, &path).await;
    assert_eq!(stream.next_of("status").await.data, "connected");

    let publish = |auth: Option<String>, room: &str| {
        let mut req = Request::post(format!("/publish?room={room}&event=order"));
        if let Some(t) = auth {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        request(addr, req.body(Full::new(Bytes::from("shipped"))).unwrap())
    };
    assert_eq!(
        publish(None, "orders.1").await.status,
        StatusCode::UNAUTHORIZED
    );
    let denied = publish(Some(user.clone()), "news").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert!(denied.text().contains("news"), "{}", denied.text());
    assert_eq!(
        publish(Some(user.clone()), "orders.1").await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(stream.next_of("order").await.data, "shipped");

    let stats = |t: String| {
        let req = Request::get("/stats").header("authorization", format!("Bearer {t}"));
        request(addr, req.body(Full::default()).unwrap())
    };
    assert_eq!(stats(user.clone()).await.status, StatusCode::FORBIDDEN);
    let admin =
        token(serde_json::json!({ "sub": "ops", "exp": exp(), "ssehub": { "admin": true } }));
    assert_eq!(stats(admin.clone()).await.status, StatusCode::OK);
    // Every operator's route asks for the admin claim, as /stats does.
    let operator = |path: &'static str, t: Option<String>| {
        let mut req = Request::get(path);
        if let Some(t) = t {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        request(addr, req.body(Full::default()).unwrap())
    };
    for path in ["/metrics", "/rooms", "/rooms/orders.1"] {
        let none = operator(path, None).await;
        assert_eq!(none.status, StatusCode::UNAUTHORIZED, "{path}");
        let user_reply = operator(path, Some(user.clone())).await;
        assert_eq!(user_reply.status, StatusCode::FORBIDDEN, "{path}");
        let admin_reply = operator(path, Some(admin.clone())).await;
        assert_eq!(
            admin_reply.status,
            StatusCode::OK,
            "{path}: {}",
            admin_reply.text()
        );
    }
    // The members of a room are named by their token's subject.
    let members = operator("/rooms/orders.1", Some(admin.clone()))
        .await
        .text();
    assert!(members.contains("\"alice\""), "{members}");
    // The dashboard, which a browser opens without headers, takes the token in the URL.
    let page = |t: &str| {
        let req = Request::get(format!("/dashboard?token={t}"));
        request(addr, req.body(Full::default()).unwrap())
    };
    assert_eq!(page(&user).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(page(&admin).await.status, StatusCode::OK);
}

#[tokio::test]
async fn jwt_secret_from_the_flag_and_anonymous_rooms_from_flags() {
    let server = ServeProcess::start(&[
        "--jwt-secret",
        SECRET,
        "--allow-anonymous-subscribe",
        "__all",
        "--allow-anonymous-subscribe",
        "public.*",
        "--tick-interval",
        "0",
    ]);
    let open = SseClient::connect(server.addr, "/sse?room=public.lobby", &[]).await;
    assert_eq!(open.status, StatusCode::OK);
    let closed = SseClient::connect(server.addr, "/sse?room=private", &[]).await;
    assert_eq!(closed.status, StatusCode::UNAUTHORIZED);
    let challenge = closed.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
}

/// A server whose stderr lines the test reads (with `RUST_LOG=info`).
struct Logged {
    server: ServeProcess,
    lines: mpsc::Receiver<String>,
}

impl Logged {
    fn start(args: &[&str]) -> Logged {
        let (tx, lines) = mpsc::channel();
        let mut server = ServeProcess::spawn_with_stderr(
            |port| {
                let mut cmd = Command::new(bin());
                cmd.args(["serve", "--port", &port.to_string()])
                    .args(args)
                    .env("RUST_LOG", "info");
                cmd
            },
            Stdio::piped,
        );
        let err = server.child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Logged { server, lines }
    }

    /// The first line containing `needle` (bounded by WAIT).
    fn line_with(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => continue,
                Err(_) => panic!("no line with {needle:?} within {WAIT:?}"),
            }
        }
    }
}

#[tokio::test]
async fn tls_self_signed_serves_http2_and_http1_and_says_its_urls() {
    let plain = free_port();
    let config = TempFile::new(
        "two.toml",
        &format!("[server]\nalso_listen = \"127.0.0.1:{plain}\"\n[demo]\ntick_interval = 0.1\n"),
    );
    let logged = Logged::start(&["--tls-self-signed", "--config", config.path()]);
    let addr = logged.server.addr;
    let https = logged.line_with("listening on https://");
    assert!(
        https.contains(&format!("https://127.0.0.1:{}/", addr.port())),
        "{https}"
    );
    let http = logged.line_with("listening on http://");
    assert!(
        http.contains(&format!("http://127.0.0.1:{plain}/")),
        "{http}"
    );

    for alpn in [&b"h2"[..], &b"http/1.1"[..]] {
        let req = Request::get("/sse")
            .header("accept", "text/event-stream")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let (res, chosen) = send_tls(addr, insecure_client_config(&[alpn]), req).await;
        assert_eq!(chosen.as_deref(), Some(alpn));
        let mut stream = SseClient::from_response(res);
        assert_eq!(stream.status, StatusCode::OK);
        assert_eq!(stream.next_of("status").await.data, "connected");
        assert!(stream.next_of("tick").await.data.starts_with("tick #"));
    }
    let req = Request::get("/").body(Empty::<Bytes>::new()).unwrap();
    let (page, _) = send_tls(addr, insecure_client_config(&[b"h2"]), req).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.version(), http::Version::HTTP_2);
    // The plain listener serves the same hub.
    let mut stream = SseClient::open(([127, 0, 0, 1], plain).into(), "/sse").await;
    assert_eq!(stream.next_of("status").await.data, "connected");
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_open_streams_stay() {
    let first = ssehub_testkit::tls::SelfSigned::new();
    let cert = TempFile::new("cert.pem", &first.cert);
    let key = TempFile::new("key.pem", &first.key);
    let config = TempFile::new(
        "hup.toml",
        &format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\nwatch_interval = 0\n[demo]\ntick_interval = 0.1\n",
            cert.path(),
            key.path()
        ),
    );
    let server = ServeProcess::spawn(|port| {
        let mut cmd = Command::new(bin());
        cmd.args([
            "serve",
            "--config",
            config.path(),
            "--port",
            &port.to_string(),
        ]);
        cmd
    });
    let addr = server.addr;
    let trusts = |pem: &str| ssehub_testkit::tls::client_config(&[pem], &[b"h2"]);
    let req = || Request::get("/sse").body(Empty::<Bytes>::new()).unwrap();
    let (res, _) = send_tls(addr, trusts(&first.cert), req()).await;
    let mut stream = SseClient::from_response(res);
    assert_eq!(stream.next_of("status").await.data, "connected");

    let second = ssehub_testkit::tls::SelfSigned::new();
    std::fs::write(&cert.0, &second.cert).unwrap();
    std::fs::write(&key.0, &second.key).unwrap();
    let connect = ssehub_testkit::tls::connect_tls;
    // With no watch, nothing changes until the signal.
    assert!(connect(addr, trusts(&first.cert)).await.is_ok());
    let hup = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(hup.success());
    ssehub_testkit::within("the reload", async {
        while connect(addr, trusts(&second.cert)).await.is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    // The stream opened with the old certificate still gets its ticks.
    let before = stream.next_of("tick").await.data;
    let after = stream.next_of("tick").await.data;
    assert_ne!(before, after);
}

/// A connection from `source` that has sent `bytes` (of a request, or half of one).
async fn from_address(addr: SocketAddr, source: [u8; 4], bytes: &[u8]) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind((source, 0).into()).unwrap();
    let mut s = within("connect", sock.connect(addr)).await.unwrap();
    // The write may fail on a connection the server has already closed.
    let _ = s.write_all(bytes).await;
    s
}

/// What a read of `s` sees within `wait`: the bytes (none: closed), or `None` if the
/// connection stayed open and silent.
async fn read_within(s: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(wait, s.read(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        Ok(Err(_)) => Some(Vec::new()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn the_pending_connection_caps_come_from_the_config() {
    let server = ServeProcess::spawn(|port| {
        let mut c = Command::new(bin());
        c.args(["serve", "--bind", "127.0.0.1", "--tick-interval", "0"])
            .args(["--port", &port.to_string()])
            .env("SSEHUB_LIMITS_MAX_PENDING_PER_IP", "2");
        c
    });
    let half = b"GET /sse HTTP/1.1\r\nHost: x\r\n";
    // From an address of their own: the readiness probe from 127.0.0.1 is not theirs.
    let source = [127, 0, 0, 3];
    let mut three = Vec::new();
    for _ in 0..3 {
        three.push(from_address(server.addr, source, half).await);
    }
    // One of the three is closed at once, counted by its reason, well before the 10 s
    // header timeout would cut any of them. (Which one: the last the server read.)
    let deadline = Instant::now() + WAIT;
    loop {
        let refused = &common::stats(server.addr).await["refused"];
        if refused["max_pending_per_ip"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no refusal counted: {refused}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut held = Vec::new();
    for mut s in three {
        match read_within(&mut s, Duration::from_millis(300)).await {
            Some(bytes) => assert!(bytes.is_empty(), "closed without a word"),
            None => held.push(s),
        }
    }
    assert_eq!(held.len(), 2, "two wait for the rest of their head");
    // A complete request is no slow head: from the same address, it is served now.
    let request = ssehub_testkit::stream_request(server.addr, "/sse");
    let mut quick = from_address(server.addr, source, request.as_bytes()).await;
    let head = read_within(&mut quick, WAIT).await.unwrap_or_default();
    assert!(head.starts_with(b"HTTP/1.1 200"), "{head:?}");
    // Another address is not counted with them; once they go, theirs is free again.
    let mut other = from_address(server.addr, [127, 0, 0, 4], half).await;
    assert_eq!(
        read_within(&mut other, Duration::from_millis(300)).await,
        None
    );
    drop(held);
    loop {
        let mut s = from_address(server.addr, source, half).await;
        if read_within(&mut s, Duration::from_millis(300))
            .await
            .is_none()
        {
            break;
        }
        assert!(Instant::now() < deadline, "the address stayed refused");
    }
}
