//! The Mercure hub as an operator runs it, on the real binary: `[mercure]` in a config
//! file, `SSEHUB_MERCURE_*`, the reference hub's container variables (`MERCURE_*`,
//! `MERCURE_EXTRA_DIRECTIVES`, `SERVER_NAME`, the old names), keys as secrets and as
//! PEM public keys (inline, from a file), `/healthz`, what `serve` and `check-config`
//! print (never a key), and two nodes on one Redis.

mod common;
#[path = "../../ssehub/tests/support/redis_server.rs"]
mod redis_server;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use bytes::Bytes;
use common::{bin, demo_stream, get, publish_query, request, Reply, ServeProcess, SseClient, WAIT};
use http::{Request, StatusCode};
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use ssehub::decode::Item;

const SECRET: &str = "!ChangeThisMercureHubJWTSecretKey!-for-the-cli-tests";
const HUB: &str = "/.well-known/mercure";
const BOOK: &str = "https://example.com/books/1";

/// The variables of the reference hub, cleared from every server a test starts: the
/// test's own environment must not change what it checks.
const COMPAT_VARS: &[&str] = &[
    "SERVER_NAME",
    "MERCURE_PUBLISHER_JWT_KEY",
    "MERCURE_PUBLISHER_JWT_ALG",
    "MERCURE_SUBSCRIBER_JWT_KEY",
    "MERCURE_SUBSCRIBER_JWT_ALG",
    "MERCURE_EXTRA_DIRECTIVES",
    "MERCURE_TRUSTED_ISSUERS",
    "JWT_KEY",
    "ALLOW_ANONYMOUS",
    "CORS_ALLOWED_ORIGINS",
    "PUBLISH_ALLOWED_ORIGINS",
];

fn hs256(claims: serde_json::Value) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::default(), &claims, &key).unwrap()
}

fn publisher() -> String {
    hs256(json!({ "mercure": { "publish": ["*"] } }))
}

fn subscriber(topics: &[&str]) -> String {
    hs256(json!({ "mercure": { "subscribe": topics } }))
}

/// A file of its own for one test, removed at the end.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("ssehub-m-{}-{name}", std::process::id()));
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

/// `ssehub serve` started by `make(port)` (the reference hub's variables cleared first),
/// logging at `info`, its stderr lines read as they come.
struct Logged {
    server: ServeProcess,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Logged {
    fn start(make: impl Fn(u16, &mut Command)) -> Logged {
        let (tx, lines) = mpsc::channel();
        let mut server = ServeProcess::spawn_with_stderr(
            |port| {
                let mut cmd = Command::new(bin());
                for v in COMPAT_VARS {
                    cmd.env_remove(v);
                }
                cmd.env("RUST_LOG", "info");
                make(port, &mut cmd);
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
        Logged {
            server,
            lines,
            seen: Vec::new(),
        }
    }

    /// `ssehub serve --port PORT ARGS` with the variables `env`.
    fn serve(args: &[&str], env: &[(&str, &str)]) -> Logged {
        Logged::start(|port, cmd| {
            cmd.args(["serve", "--port", &port.to_string()])
                .args(args)
                .envs(env.iter().copied());
        })
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// The first line containing `needle` (bounded by WAIT); every line read is kept.
    fn line_with(&mut self, needle: &str) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?} within {WAIT:?}: {:?}", self.seen),
            }
        }
    }
}

/// A subscriber to the hub with the query `query` and `headers`, its stream open.
async fn subscribe(addr: SocketAddr, query: &str, headers: &[(&str, &str)]) -> SseClient {
    let mut c = SseClient::connect(addr, &format!("{HUB}?{query}"), headers).await;
    assert_eq!(c.status, StatusCode::OK, "subscribe ?{query}");
    assert_eq!(c.next_item().await, Some(Item::Comment("connected".into())));
    c
}

fn topics(list: &[&str]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for t in list {
        q.append_pair("topic", t);
    }
    q.finish()
}

/// `POST` the form `fields` to the hub, with `token` as the bearer token if any.
async fn publish(addr: SocketAddr, fields: &[(&str, &str)], token: Option<&str>) -> Reply {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let mut req = Request::post(HUB).header("content-type", "application/x-www-form-urlencoded");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    request(addr, req.body(Full::new(Bytes::from(body))).unwrap()).await
}

/// `ssehub check-config FILE` with the variables `env` (and none of the reference
/// hub's but those): (success, stdout, stderr).
fn check_config(file: &str, env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(bin());
    for v in COMPAT_VARS {
        cmd.env_remove(v);
    }
    let out = cmd
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

#[tokio::test]
async fn a_config_section_serves_the_hub_beside_the_room_hub() {
    let config = TempFile::new(
        "section.toml",
        &format!(
            "[mercure]\nenabled = true\npublisher_jwt_key = \"{SECRET}\"\n\
             subscriber_jwt_key = \"{SECRET}\"\n[demo]\ntick_interval = 0\n"
        ),
    );
    let mut logged = Logged::serve(&["--config", config.path()], &[]);
    let addr = logged.addr();
    let started = logged.line_with("Mercure hub at /.well-known/mercure");
    assert!(
        started.contains("publisher key HS256 secret (hidden)"),
        "{started}"
    );
    assert!(started.contains("anonymous = false"), "{started}");

    // Subscribers need a token (anonymous is off); publishers a publisher's.
    let refused = SseClient::connect(addr, &format!("{HUB}?{}", topics(&[BOOK])), &[]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let bearer = format!("Bearer {}", subscriber(&["https://example.com/books/{id}"]));
    let mut sub = subscribe(
        addr,
        &topics(&["https://example.com/books/{id}"]),
        &[("authorization", &bearer)],
    )
    .await;
    let anonymous = publish(addr, &[("topic", BOOK), ("data", "x")], None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let sent = publish(
        addr,
        &[("topic", BOOK), ("data", "public")],
        Some(&publisher()),
    )
    .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text());
    let id = sent.text();
    assert!(id.starts_with("urn:uuid:"), "{id}");
    let e = sub.next_event().await;
    assert_eq!(
        (e.data.as_str(), e.last_event_id.as_str()),
        ("public", id.as_str())
    );
    // A private update reaches the subscriber its token grants.
    let private = [("topic", BOOK), ("data", "private"), ("private", "on")];
    let sent = publish(addr, &private, Some(&publisher())).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text());
    assert_eq!(sub.next_event().await.data, "private");

    // Everything else keeps working: the room endpoint, /publish, the dashboard.
    let mut room = demo_stream(addr, "/sse?room=news").await;
    assert_eq!(
        publish_query(addr, "room=news&event=headline", "hello")
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(room.next_of("headline").await.data, "hello");
    assert_eq!(get(addr, "/dashboard").await.status, StatusCode::OK);
    // /healthz, open to all.
    let health = get(addr, "/healthz").await;
    assert_eq!(
        (health.status, health.text().as_str()),
        (StatusCode::OK, "ok\n")
    );
    let post = request(
        addr,
        Request::post("/healthz").body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        logged.seen.iter().all(|l| !l.contains(SECRET)),
        "{:?}",
        logged.seen
    );
}

#[tokio::test]
async fn healthz_answers_without_the_hub_too_and_the_hub_is_off_by_default() {
    let server = ServeProcess::start(&["--tick-interval", "0"]);
    let health = get(server.addr, "/healthz").await;
    assert_eq!(
        (health.status, health.text().as_str()),
        (StatusCode::OK, "ok\n")
    );
    let hub = get(server.addr, HUB).await;
    assert_eq!(hub.status, StatusCode::NOT_FOUND);
}

/// A compose file of the reference hub, moved over: its variables, with
/// SSEHUB_MERCURE_ENABLED=true, and the port in SERVER_NAME.
#[tokio::test]
async fn the_reference_hubs_variables_run_it_unchanged() {
    let directives = "anonymous\n\
                      cors_origins https://app.example\n\
                      heartbeat 1s\n\
                      subscriptions\n\
                      write_timeout 600s\n\
                      transport bolt {\n\
                      \tpath /data/mercure.db\n\
                      }\n";
    let mut logged = Logged::start(|port, cmd| {
        cmd.args(["serve", "--tick-interval", "0"])
            .env("SSEHUB_MERCURE_ENABLED", "true")
            .env("SERVER_NAME", format!(":{port}"))
            .env("MERCURE_PUBLISHER_JWT_KEY", SECRET)
            .env("MERCURE_PUBLISHER_JWT_ALG", "HS256")
            .env("MERCURE_SUBSCRIBER_JWT_KEY", SECRET)
            .env("MERCURE_SUBSCRIBER_JWT_ALG", "HS256")
            .env("MERCURE_EXTRA_DIRECTIVES", directives);
    });
    let addr = logged.addr();
    // SERVER_NAME=:PORT: every interface, plain HTTP.
    logged.line_with(&format!("listening on http://127.0.0.1:{}/", addr.port()));
    let started = logged.line_with("Mercure hub at");
    assert!(started.contains("anonymous = true"), "{started}");
    assert!(started.contains("heartbeat 1 s"), "{started}");
    assert!(
        started.contains(r#"cors_origins = ["https://app.example"]"#),
        "{started}"
    );
    assert!(started.contains("subscriptions = true"), "{started}");
    for warned in ["`write_timeout`", "`transport`"] {
        let line = logged.line_with(warned);
        assert!(line.contains("WARN"), "{line}");
    }

    // `anonymous`: public updates without a token, never private ones.
    let origin = [("origin", "https://app.example")];
    let mut anon = subscribe(addr, &topics(&[BOOK]), &origin).await;
    assert_eq!(
        anon.headers["access-control-allow-origin"], "https://app.example",
        "cors_origins"
    );
    let private = [("topic", BOOK), ("data", "private"), ("private", "on")];
    assert_eq!(
        publish(addr, &private, Some(&publisher())).await.status,
        StatusCode::OK
    );
    let public = [("topic", BOOK), ("data", "public")];
    assert_eq!(
        publish(addr, &public, Some(&publisher())).await.status,
        StatusCode::OK
    );
    assert_eq!(anon.next_event().await.data, "public");
    // `heartbeat 1s`: a comment comes on an idle stream.
    match anon.next_item().await {
        Some(Item::Comment(_)) => {}
        other => panic!("a heartbeat, not {other:?}"),
    }
    assert_eq!(get(addr, "/healthz").await.status, StatusCode::OK);
    assert!(
        logged.seen.iter().all(|l| !l.contains(SECRET)),
        "{:?}",
        logged.seen
    );
}

#[tokio::test]
async fn ssehub_variables_configure_the_hub_without_a_file() {
    let env = [
        ("SSEHUB_MERCURE_ENABLED", "true"),
        ("SSEHUB_MERCURE_PUBLISHER_JWT_KEY", SECRET),
        ("SSEHUB_MERCURE_SUBSCRIBER_JWT_KEY", SECRET),
        ("SSEHUB_MERCURE_COOKIE_NAME", "hubCookie"),
        ("SSEHUB_MERCURE_MAX_TOPICS", "2"),
        ("SSEHUB_DEMO_TICK_INTERVAL", "0"),
    ];
    let logged = Logged::serve(&[], &env);
    let addr = logged.addr();
    // The token from the cookie of the configured name.
    let cookie = format!("hubCookie={}", subscriber(&[BOOK]));
    let mut sub = subscribe(addr, &topics(&[BOOK]), &[("cookie", &cookie)]).await;
    let other = format!("mercureAuthorization={}", subscriber(&[BOOK]));
    let refused = SseClient::connect(
        addr,
        &format!("{HUB}?{}", topics(&[BOOK])),
        &[("cookie", &other)],
    )
    .await;
    assert_eq!(
        refused.status,
        StatusCode::UNAUTHORIZED,
        "the default name is not read"
    );
    let private = [
        ("topic", BOOK),
        ("data", "for the cookie"),
        ("private", "on"),
    ];
    assert_eq!(
        publish(addr, &private, Some(&publisher())).await.status,
        StatusCode::OK
    );
    assert_eq!(sub.next_event().await.data, "for the cookie");
    // max_topics = 2.
    let three = [
        ("topic", "a"),
        ("topic", "b"),
        ("topic", "c"),
        ("data", "x"),
    ];
    let refused = publish(addr, &three, Some(&publisher())).await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "{}",
        refused.text()
    );
}

#[tokio::test]
async fn pem_public_keys_inline_and_from_a_file() {
    // An ES256 key pair for publishers (the public half in a file), another for
    // subscribers (the public half inline, as a compose file's variable carries it).
    let publishers = rcgen::KeyPair::generate().unwrap();
    let subscribers = rcgen::KeyPair::generate().unwrap();
    let key_file = TempFile::new("publisher.pub.pem", &publishers.public_key_pem());
    let es256 = |pair: &rcgen::KeyPair, claims: serde_json::Value| {
        let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &key).unwrap()
    };
    let subscribers_public = subscribers.public_key_pem();
    let env = [
        ("SSEHUB_MERCURE_ENABLED", "true"),
        ("MERCURE_PUBLISHER_JWT_KEY", key_file.path()),
        ("MERCURE_PUBLISHER_JWT_ALG", "ES256"),
        ("MERCURE_SUBSCRIBER_JWT_KEY", subscribers_public.as_str()),
        ("MERCURE_SUBSCRIBER_JWT_ALG", "ES256"),
        ("SSEHUB_DEMO_TICK_INTERVAL", "0"),
    ];
    let mut logged = Logged::serve(&[], &env);
    let addr = logged.addr();
    let started = logged.line_with("Mercure hub at");
    assert!(
        started.contains("publisher key ES256 public key (from a file, path hidden)")
            && started.contains("subscriber key ES256 public key (inline PEM, hidden)"),
        "{started}"
    );
    let bearer = format!(
        "Bearer {}",
        es256(&subscribers, json!({ "mercure": { "subscribe": ["*"] } }))
    );
    let mut sub = subscribe(addr, &topics(&[BOOK]), &[("authorization", &bearer)]).await;
    // The subscribers' token is no publisher's, nor an HS256 one.
    let wrong = es256(&subscribers, json!({ "mercure": { "publish": ["*"] } }));
    let fields = [("topic", BOOK), ("data", "signed"), ("private", "1")];
    assert_eq!(
        publish(addr, &fields, Some(&wrong)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        publish(addr, &fields, Some(&publisher())).await.status,
        StatusCode::UNAUTHORIZED
    );
    let right = es256(&publishers, json!({ "mercure": { "publish": [BOOK] } }));
    let sent = publish(addr, &fields, Some(&right)).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text());
    assert_eq!(sub.next_event().await.data, "signed");
}

#[test]
fn check_config_prints_the_effective_mercure_configuration_keys_hidden() {
    let file = TempFile::new(
        "effective.toml",
        &format!(
            "[mercure]\nenabled = true\nanonymous = true\npublisher_jwt_key = \"{SECRET}\"\n\
             cookie_name = \"fromFile\"\nheartbeat = 5\n[mercure.history]\nmax_events = 50\n"
        ),
    );
    let (ok, out, err) = check_config(file.path(), &[]);
    assert!(ok, "{err}");
    for want in [
        "[mercure]\nenabled = true\npublisher_jwt_key = \"(hidden)\"\npublisher_jwt_alg = \"HS256\"",
        "cookie_name = \"fromFile\"",
        "heartbeat = 5",
        "[mercure.history]\nenabled = true\nmax_events = 50",
    ] {
        assert!(out.contains(want), "{want} in {out}");
    }
    assert!(
        err.contains("Mercure hub at /.well-known/mercure: publisher key HS256 secret (hidden); subscriber key none"),
        "{err}"
    );
    // Precedence: the file, then the reference hub's variables, then SSEHUB_*.
    let env = [
        (
            "MERCURE_EXTRA_DIRECTIVES",
            "cookie_name fromDirective\nheartbeat 2m",
        ),
        ("SSEHUB_MERCURE_HEARTBEAT", "7"),
    ];
    let (ok, out, err) = check_config(file.path(), &env);
    assert!(ok, "{err}");
    assert!(out.contains("cookie_name = \"fromDirective\""), "{out}");
    assert!(out.contains("heartbeat = 7"), "{out}");
    for shown in [&out, &err] {
        assert!(!shown.contains(SECRET), "{shown}");
    }
    // The reference hub's example secret is warned of.
    let example = [(
        "MERCURE_PUBLISHER_JWT_KEY",
        "!ChangeThisMercureHubJWTSecretKey!",
    )];
    let (ok, _, err) = check_config(file.path(), &example);
    assert!(ok, "{err}");
    assert!(
        err.contains(
            "warning: mercure.publisher_jwt_key (from MERCURE_PUBLISHER_JWT_KEY) is the \
             reference hub's example secret"
        ),
        "{err}"
    );
}

#[test]
fn an_unknown_directive_is_refused_naming_it() {
    let env = [
        ("SSEHUB_MERCURE_ENABLED", "true"),
        ("MERCURE_PUBLISHER_JWT_KEY", SECRET),
        ("MERCURE_EXTRA_DIRECTIVES", "anonymous\nanonymus\n"),
    ];
    let empty = TempFile::new("unknown.toml", "");
    let (ok, _, err) = check_config(empty.path(), &env);
    assert!(!ok, "accepted");
    assert!(
        err.contains("`anonymus`") && err.contains("MERCURE_EXTRA_DIRECTIVES, line 2"),
        "{err}"
    );
    // `serve` refuses it the same way, before it listens.
    let mut cmd = Command::new(bin());
    for v in COMPAT_VARS {
        cmd.env_remove(v);
    }
    let out = cmd
        .args(["serve", "--port", "0"])
        .envs(env)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`anonymus`"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
}

#[test]
fn the_names_before_0_11_are_read_with_a_warning() {
    let env = [
        ("SSEHUB_MERCURE_ENABLED", "true"),
        ("JWT_KEY", SECRET),
        ("ALLOW_ANONYMOUS", "1"),
        (
            "CORS_ALLOWED_ORIGINS",
            "https://a.example https://b.example",
        ),
        ("PUBLISH_ALLOWED_ORIGINS", "https://a.example"),
    ];
    let empty = TempFile::new("old.toml", "");
    let (ok, out, err) = check_config(empty.path(), &env);
    assert!(ok, "{err}");
    for name in [
        "JWT_KEY",
        "ALLOW_ANONYMOUS",
        "CORS_ALLOWED_ORIGINS",
        "PUBLISH_ALLOWED_ORIGINS",
    ] {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("warning: {name} is a name"))
                    && l.contains("deprecated")),
            "{name}: {err}"
        );
    }
    assert!(out.contains("subscriber_jwt_key = \"(hidden)\""), "{out}");
    assert!(out.contains("anonymous = true"), "{out}");
    assert!(
        out.contains(r#"cors_origins = ["https://a.example", "https://b.example"]"#),
        "{out}"
    );
    assert!(
        out.contains(r#"publish_origins = ["https://a.example"]"#),
        "{out}"
    );
    assert!(!out.contains(SECRET) && !err.contains(SECRET));
}

#[test]
fn mercure_variables_without_the_hub_change_nothing_but_warn() {
    let env = [
        ("MERCURE_PUBLISHER_JWT_KEY", SECRET),
        ("SERVER_NAME", ":80"),
    ];
    let empty = TempFile::new("off.toml", "");
    let (ok, out, err) = check_config(empty.path(), &env);
    assert!(ok, "{err}");
    assert!(
        err.contains("warning: MERCURE_PUBLISHER_JWT_KEY set, but the Mercure hub is off")
            && err.contains("SSEHUB_MERCURE_ENABLED=true"),
        "{err}"
    );
    assert!(out.contains("[mercure]\nenabled = false\n"), "{out}");
    assert!(!out.contains("publisher_jwt_key"), "{out}");
    assert!(out.contains("listen = \"127.0.0.1:2015\""), "{out}");
}

#[test]
fn key_errors_name_the_key_and_the_variable_never_the_value() {
    let empty = TempFile::new("keys.toml", "");
    for (env, needles) in [
        (
            vec![("MERCURE_PUBLISHER_JWT_ALG", "RS256")],
            vec![
                "mercure.publisher_jwt_key (from MERCURE_PUBLISHER_JWT_KEY)",
                "PEM",
            ],
        ),
        (
            vec![("MERCURE_PUBLISHER_JWT_ALG", "HS999")],
            vec![
                "mercure.publisher_jwt_alg (from MERCURE_PUBLISHER_JWT_ALG)",
                "HS999",
            ],
        ),
        (
            vec![("MERCURE_SUBSCRIBER_JWT_KEY", "")],
            vec!["mercure.subscriber_jwt_key", "anonymous"],
        ),
        (
            vec![("MERCURE_EXTRA_DIRECTIVES", "publisher_jwt a b c")],
            vec!["`publisher_jwt`", "takes 1 to 2 arguments"],
        ),
    ] {
        let mut all = vec![
            ("SSEHUB_MERCURE_ENABLED", "true"),
            ("MERCURE_PUBLISHER_JWT_KEY", SECRET),
        ];
        all.extend(env.iter().copied());
        let (ok, out, err) = check_config(empty.path(), &all);
        assert!(!ok, "{env:?} accepted: {out}");
        for needle in needles {
            assert!(err.contains(needle), "{env:?}: {needle} in {err}");
        }
        assert!(!err.contains(SECRET), "{err}");
    }
}

#[tokio::test]
async fn two_nodes_share_the_hub_on_redis_under_a_prefix_of_its_own() {
    let Some(redis) = redis_server::RedisServer::start_if_available() else {
        return;
    };
    let url = redis.url();
    let env = [
        ("SSEHUB_MERCURE_ENABLED", "true"),
        ("SSEHUB_MERCURE_ANONYMOUS", "true"),
        ("MERCURE_PUBLISHER_JWT_KEY", SECRET),
        ("SSEHUB_REDIS_URL", url.as_str()),
        ("SSEHUB_DEMO_TICK_INTERVAL", "0"),
    ];
    let mut one = Logged::serve(&[], &env);
    let two = Logged::serve(&[], &env);
    let started = one.line_with("Mercure hub at");
    assert!(
        started.contains("in Redis (prefix ssehub:mercure)"),
        "{started}"
    );
    let mut sub = subscribe(two.addr(), &topics(&[BOOK]), &[]).await;
    let sent = publish(
        one.addr(),
        &[("topic", BOOK), ("data", "across")],
        Some(&publisher()),
    )
    .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text());
    assert_eq!(sub.next_event().await.data, "across");
    // Its keys are under its own prefix, apart from the room hub's.
    let keys = redis.cmd(&["KEYS", "ssehub:mercure:*"]);
    assert!(
        matches!(&keys, redis_server::Reply::Array(k) if !k.is_empty()),
        "{keys:?}"
    );
    // A subscriber resumes on the other node from what the first one published.
    let mut resumed = subscribe(
        two.addr(),
        &topics(&[BOOK]),
        &[("last-event-id", "earliest")],
    )
    .await;
    assert_eq!(resumed.next_event().await.data, "across");
}

/// A Mercure 1.0 access token signed with `secret`.
fn v1_token(secret: &str, iss: &str, actions: &[&str], matcher: &str) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = json!({
        "aud": "https://hub.example/.well-known/mercure",
        "iss": iss,
        "exp": exp,
        "authorization_details": [{
            "type": "https://mercure.rocks/authorization-detail",
            "actions": actions,
            "topics": [{ "match": matcher, "match_type": "urlpattern" }],
        }],
    });
    let key = EncodingKey::from_secret(secret.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

#[tokio::test]
async fn the_1_0_settings_resource_issuers_and_subscriptions() {
    let other = "another issuer's own secret, long enough";
    let file = TempFile::new(
        "v1.toml",
        &format!(
            "[mercure]\n\
             enabled = true\n\
             publisher_jwt_key = \"{SECRET}\"\n\
             subscriber_jwt_key = \"{SECRET}\"\n\
             resource = \"https://hub.example/.well-known/mercure\"\n\
             issuers = [\"https://self.example\"]\n\
             subscriptions = true\n\
             [[mercure.issuer]]\n\
             name = \"https://auth.example\"\n\
             key = \"{other}\"\n\
             alg = \"HS256\"\n"
        ),
    );
    let mut logged = Logged::serve(
        &["--config", file.path(), "--tick-interval", "0"],
        // Trusted from the reference hub's variable too.
        &[(
            "MERCURE_TRUSTED_ISSUERS",
            "https://env.example https://self.example",
        )],
    );
    let addr = logged.addr();
    let started = logged.line_with("Mercure hub at");
    assert!(
        started.contains("resource = \"https://hub.example/"),
        "{started}"
    );
    assert!(started.contains("https://env.example"), "{started}");
    assert!(
        started.contains("issuer keys for [\"https://auth.example\"]"),
        "{started}"
    );
    assert!(!started.contains(other), "{started}");
    let q = "match_urlpattern=https%3A%2F%2Fexample.com%2Fbooks%2F%3Aid";
    for (iss, secret, ok) in [
        ("https://env.example", SECRET, true),
        ("https://auth.example", other, true),
        ("https://auth.example", SECRET, false),
        ("https://self.example", other, false),
        ("https://unknown.example", SECRET, false),
    ] {
        let t = v1_token(secret, iss, &["subscribe"], "https://example.com/books/:id");
        let bearer = format!("Bearer {t}");
        let c =
            SseClient::connect(addr, &format!("{HUB}?{q}"), &[("authorization", &bearer)]).await;
        let want = if ok {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(
            c.status,
            want,
            "{iss} signed with {}",
            if secret == SECRET {
                "the hub key"
            } else {
                "its own"
            }
        );
    }
    // `subscriptions = true`: the API answers a token granted its URL.
    let t = v1_token(
        SECRET,
        "https://self.example",
        &["subscribe"],
        "/.well-known/mercure/subscriptions{/*}?",
    );
    let req = Request::get("/.well-known/mercure/subscriptions")
        .header("authorization", format!("Bearer {t}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = request(addr, req).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["type"], "Subscriptions");
    let meta = get(addr, ssehub::METADATA_PATH).await;
    assert_eq!(
        meta.json()["resource"],
        "https://hub.example/.well-known/mercure"
    );
}

#[tokio::test]
async fn a_dead_nodes_subscriptions_are_listed_everywhere_then_end_within_its_lease() {
    let Some(redis) = redis_server::RedisServer::start_if_available() else {
        return;
    };
    let url = redis.url();
    let env = [
        ("SSEHUB_MERCURE_ENABLED", "true"),
        ("SSEHUB_MERCURE_ANONYMOUS", "true"),
        ("SSEHUB_MERCURE_SUBSCRIPTIONS", "true"),
        ("SSEHUB_MERCURE_HEARTBEAT", "2"),
        (
            "SSEHUB_MERCURE_RESOURCE",
            "https://hub.example/.well-known/mercure",
        ),
        ("MERCURE_PUBLISHER_JWT_KEY", SECRET),
        ("MERCURE_SUBSCRIBER_JWT_KEY", SECRET),
        ("SSEHUB_REDIS_URL", url.as_str()),
        ("SSEHUB_DEMO_TICK_INTERVAL", "0"),
    ];
    let mut doomed = Logged::serve(&[], &env);
    let survivor = Logged::serve(&[], &env);
    let token = v1_token(
        SECRET,
        "https://self.example",
        &["subscribe"],
        "/.well-known/mercure/subscriptions{/*}?",
    );
    let bearer = format!("Bearer {token}");
    let events = "match_urlpattern=%2F.well-known%2Fmercure%2Fsubscriptions%2F*";
    let mut watcher = subscribe(survivor.addr(), events, &[("authorization", &bearer)]).await;
    let own: serde_json::Value = serde_json::from_str(&watcher.next_event().await.data).unwrap();
    assert_eq!(own["active"], true);
    let _gone = subscribe(doomed.addr(), "match=late", &[]).await;
    let started: serde_json::Value =
        serde_json::from_str(&watcher.next_event().await.data).unwrap();
    assert_eq!(
        (started["match"].as_str(), started["active"].as_bool()),
        (Some("late"), Some(true))
    );
    // The survivor's API lists the other node's subscription (once its lease is written).
    let listed = || async {
        let req = Request::get("/.well-known/mercure/subscriptions/Exact/late")
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let reply = request(survivor.addr(), req).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        reply.json()["subscriptions"].as_array().unwrap().len()
    };
    let deadline = Instant::now() + WAIT;
    while listed().await == 0 {
        assert!(
            Instant::now() < deadline,
            "the other node's subscription was never listed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The node dies without a word (SIGKILL): its subscription ends on the others' side
    // within its lease (15 s) and a heartbeat (5 s).
    doomed.server.child.kill().unwrap();
    let killed = Instant::now();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(40), watcher.next_event())
        .await
        .expect("the dead node's subscription ended within 40 s");
    let doc: serde_json::Value = serde_json::from_str(&ended.data).unwrap();
    assert_eq!(
        (doc["match"].as_str(), doc["active"].as_bool()),
        (Some("late"), Some(false))
    );
    eprintln!(
        "ended {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(listed().await, 0, "no longer listed");
}
