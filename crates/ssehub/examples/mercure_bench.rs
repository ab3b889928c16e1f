//! Two measurements of the Mercure hub (BENCHMARKS.md, "Mercure 1.0"), each with the
//! hub in a child process of its own, so that its CPU time (`/proc/<pid>/stat`) is the
//! hub's alone; the clients are this process's, on loopback. It prints figures and
//! asserts no timing.
//!
//! ```text
//! cargo run --release -p ssehub --features mercure --example mercure_bench -- patterns
//! cargo run --release -p ssehub --features mercure --example mercure_bench -- subscriptions
//! ```
//!
//! - `patterns`: 10,000 subscribers, first all on one exact topic, then spread over
//!   1,000 distinct URL patterns (10 each) that all match the topic, then over 1,000
//!   distinct URI templates (Mercure 0.x) likewise; CPU per publish
//!   with the match cache warm (the same topic again) and cold (a new topic each time,
//!   so every publish matches the topic against the 1,000 patterns).
//! - `subscriptions`: 10,000 subscribers connecting within 10 s, with subscription
//!   events on and off: the hub's CPU, and with them on, how long each subscription's
//!   event takes to reach a watcher.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use ssehub::{JwtAlgorithm, JwtVerifier, Mercure, MercureConfig, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &[u8] = b"a long random secret for the benchmark only";
const RESOURCE: &str = "https://hub.example/.well-known/mercure";
const SUBSCRIBERS: usize = 10_000;
const PATTERNS: usize = 1_000;
const PUBLISHES: usize = 200;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(args.get(1).is_some_and(|a| a == "on")).await,
        Some("patterns") => patterns().await,
        Some("subscriptions") => subscriptions().await,
        _ => eprintln!("usage: mercure_bench patterns | subscriptions"),
    }
}

/// The child: a hub on an ephemeral port (subscription events on or off); prints its
/// address, runs until its standard input closes.
async fn serve(subscriptions: bool) {
    #[cfg(unix)]
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let key = JwtVerifier::hmac(JwtAlgorithm::HS256, SECRET).unwrap();
    let config = MercureConfig::new()
        .publisher_key(key.clone())
        .subscriber_key(key)
        .anonymous(true)
        .heartbeat(None)
        .resource(RESOURCE)
        .subscriptions(subscriptions);
    let mercure = Mercure::new(config).unwrap();
    let server = Server::new(([127, 0, 0, 1], 0))
        .mercure(mercure)
        .bind()
        .await
        .unwrap();
    println!("ADDR {}", server.local_addr());
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    });
    server
        .run_until(async {
            let _ = stdin_closed.await;
        })
        .await;
}

/// A hub in a child process.
struct Hub {
    child: Child,
    addr: SocketAddr,
}

impl Hub {
    fn start(subscriptions: bool) -> Hub {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["serve", if subscriptions { "on" } else { "off" }])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        let addr = line.trim().strip_prefix("ADDR ").unwrap().parse().unwrap();
        Hub { child, addr }
    }

    /// The hub's CPU time so far (user + system).
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // After the command name in parentheses: fields 14 and 15 are utime and stime.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<u64> = rest
            .split(' ')
            .skip(11)
            .take(2)
            .map(|x| x.parse().unwrap())
            .collect();
        // Clock ticks of 10 ms (USER_HZ is 100 on Linux).
        Duration::from_millis((f[0] + f[1]) * 10)
    }

    fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A 1.0 access token granting `actions` on the URL pattern `pattern`.
fn token(actions: &[&str], pattern: &str) -> String {
    let mut header = Header::new(JwtAlgorithm::HS256);
    header.typ = Some("at+jwt".into());
    let claims = json!({
        "aud": RESOURCE,
        "exp": now_secs() + 3600,
        "authorization_details": [{
            "type": "https://mercure.rocks/authorization-detail",
            "actions": actions,
            "topics": [{ "match": pattern, "match_type": "urlpattern" }],
        }],
    });
    encode(&header, &claims, &EncodingKey::from_secret(SECRET).unwrap()).unwrap()
}

fn query(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A subscriber on a raw socket, its stream open (the hub said `connected`); it then
/// reads nothing, and the kernel's buffers hold what it is sent.
async fn subscriber(addr: SocketAddr, query: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /.well-known/mercure?{query} HTTP/1.1\r\nHost: {addr}\r\n\
         Accept: text/event-stream\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !buf.windows(9).any(|w| w == b"connected") {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "the hub closed a subscriber: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("a stream opens within 10 s");
    s
}

/// How many events a subscriber's socket holds (read with a short timeout).
async fn events_in(s: &mut TcpStream) -> usize {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), s.read(&mut chunk)).await
    {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    buf.windows(6).filter(|w| w == b"data: ").count()
}

/// `POST` an update to `topic`; waits for the answer (the hub has queued it to every
/// recipient by then).
async fn publish(addr: SocketAddr, bearer: &str, topic: &str) {
    let body = query(&[("topic", topic), ("data", "x")]);
    let req = format!(
        "POST /.well-known/mercure HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: Bearer {bearer}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

/// CPU per publish of `PUBLISHES` updates to `topic(i)`, paced so that each one's writes
/// are done before the next.
async fn cpu_per_publish(hub: &Hub, bearer: &str, topic: impl Fn(usize) -> String) -> Duration {
    let before = hub.cpu();
    for i in 0..PUBLISHES {
        publish(hub.addr, bearer, &topic(i)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (hub.cpu() - before) / PUBLISHES as u32
}

async fn patterns() {
    #[cfg(unix)]
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let hub = Hub::start(false);
    let bearer = token(&["publish"], "*");
    let topic = "https://example.com/books/1";
    // Warm the publisher's token in the hub's verdict cache and the code paths.
    publish(hub.addr, &bearer, topic).await;

    let started = Instant::now();
    let mut subs = Vec::with_capacity(SUBSCRIBERS);
    for _ in 0..SUBSCRIBERS {
        subs.push(subscriber(hub.addr, &query(&[("match", topic)])).await);
    }
    println!(
        "exact: {SUBSCRIBERS} subscribers on one topic in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let idle = cpu_per_publish(&hub, &bearer, |_| "https://example.com/nobody".into()).await;
    let exact = cpu_per_publish(&hub, &bearer, |_| topic.into()).await;
    let got = events_in(&mut subs[SUBSCRIBERS / 2]).await;
    println!(
        "exact: CPU per publish {:.3} ms ({SUBSCRIBERS} deliveries each; a subscriber got \
         {got} of {PUBLISHES}); a publish nobody receives: {:.3} ms",
        ms(exact),
        ms(idle)
    );
    drop(subs);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 1,000 distinct selectors that all match the topic (an optional part of their own):
    // Mercure 1.0's URL patterns, then 0.x's URI templates.
    let selectors: [Selectors; 2] = [
        ("URL patterns", "match_urlpattern", |n| {
            format!("https://example.com/books/:id{{/v{n}}}?")
        }),
        ("URI templates", "topic", |n| {
            format!("https://example.com/books/{{id}}{{/v{n}}}")
        }),
    ];
    for (name, key, selector) in selectors {
        let started = Instant::now();
        let mut subs = Vec::with_capacity(SUBSCRIBERS);
        for i in 0..SUBSCRIBERS {
            let value = selector(i % PATTERNS);
            subs.push(subscriber(hub.addr, &query(&[(key, &value)])).await);
        }
        println!(
            "{name}: {SUBSCRIBERS} subscribers on {PATTERNS} selectors in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        publish(hub.addr, &bearer, topic).await; // the cache learns the topic
        let warm = cpu_per_publish(&hub, &bearer, |_| topic.into()).await;
        let cold = cpu_per_publish(&hub, &bearer, |i| {
            format!("https://example.com/books/{}", 1000 + i)
        })
        .await;
        let got = events_in(&mut subs[SUBSCRIBERS / 2]).await;
        println!(
            "{name}: CPU per publish {:.3} ms with the cache warm, {:.3} ms cold (a new \
             topic each time: {PATTERNS} selectors matched); a subscriber got {got} of {}",
            ms(warm),
            ms(cold),
            2 * PUBLISHES + 1
        );
        println!(
            "{name}: ratio warm/exact: {:.2}; cold/exact: {:.2}",
            warm.as_secs_f64() / exact.as_secs_f64(),
            cold.as_secs_f64() / exact.as_secs_f64()
        );
        drop(subs);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    hub.stop();
}

/// A kind of selector: its name, the query parameter that carries it, and the n-th of
/// the distinct ones.
type Selectors = (&'static str, &'static str, fn(usize) -> String);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// 10,000 subscribers, one a millisecond, each on a topic of its own: the hub's CPU,
/// and with subscription events on, each event's delay after its subscriber started to
/// connect, as a watcher sees it.
async fn subscriptions() {
    #[cfg(unix)]
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    for on in [false, true] {
        let hub = Hub::start(on);
        let addr = hub.addr;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
        let watcher = on.then(|| {
            let bearer = format!(
                "Bearer {}",
                token(&["subscribe"], "/.well-known/mercure/subscriptions/*")
            );
            let q = query(&[("match_urlpattern", "/.well-known/mercure/subscriptions/*")]);
            tokio::spawn(async move {
                let path = format!("/.well-known/mercure?{q}");
                let mut c =
                    ssehub_testkit::SseClient::connect(addr, &path, &[("authorization", &bearer)])
                        .await;
                loop {
                    let e = c.next_event().await;
                    let doc: Value = serde_json::from_str(&e.data).unwrap();
                    let m = doc["match"].as_str().unwrap_or_default();
                    if let (Some(n), Some(true)) = (m.strip_prefix("t/"), doc["active"].as_bool()) {
                        let _ = tx.send((n.parse().unwrap(), Instant::now()));
                    }
                }
            })
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = hub.cpu();
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(SUBSCRIBERS);
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        let mut starts = vec![start; SUBSCRIBERS];
        for (i, at) in starts.iter_mut().enumerate() {
            tick.tick().await;
            *at = Instant::now();
            let q = query(&[("match", &format!("t/{i}"))]);
            tasks.push(tokio::spawn(async move {
                let s = subscriber(addr, &q).await;
                (Instant::now(), s)
            }));
        }
        let mut opened = Vec::with_capacity(SUBSCRIBERS);
        let mut socks = Vec::with_capacity(SUBSCRIBERS);
        for (i, t) in tasks.into_iter().enumerate() {
            let (at, s) = t.await.unwrap();
            opened.push(at - starts[i]);
            socks.push(s);
        }
        let connected = start.elapsed();
        let mut delays = Vec::new();
        if on {
            let deadline = Instant::now() + Duration::from_secs(30);
            while delays.len() < SUBSCRIBERS && Instant::now() < deadline {
                if let Ok(Some((n, at))) =
                    tokio::time::timeout(Duration::from_secs(1), rx.recv()).await
                {
                    delays.push(at - starts[n]);
                }
            }
        }
        let cpu = hub.cpu() - before;
        opened.sort();
        delays.sort();
        let pct = |v: &[Duration], p: f64| {
            v.get(((v.len() as f64 - 1.0) * p) as usize)
                .map_or(0.0, |d| ms(*d))
        };
        println!(
            "subscriptions {}: {SUBSCRIBERS} connects in {:.2} s; hub CPU {:.2} s; stream open \
             after p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            if on { "on " } else { "off" },
            connected.as_secs_f64(),
            cpu.as_secs_f64(),
            pct(&opened, 0.5),
            pct(&opened, 0.99),
            pct(&opened, 1.0),
        );
        if on {
            println!(
                "subscriptions on : {} of {SUBSCRIBERS} events seen by the watcher; delay after \
                 the connect began p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                delays.len(),
                pct(&delays, 0.5),
                pct(&delays, 0.99),
                pct(&delays, 1.0),
            );
        }
        let before = hub.cpu();
        drop(socks);
        tokio::time::sleep(Duration::from_secs(3)).await;
        println!(
            "subscriptions {}: hub CPU for the {SUBSCRIBERS} disconnects {:.2} s",
            if on { "on " } else { "off" },
            (hub.cpu() - before).as_secs_f64()
        );
        if let Some(w) = watcher {
            w.abort();
        }
        hub.stop();
    }
}
