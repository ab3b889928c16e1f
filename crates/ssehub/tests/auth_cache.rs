//! What a token costs to check, on a real server: the verdict on a token is remembered
//! (a repeated bad token is refused the same way without being verified again; a good
//! one is served from memory until its `exp`, and refused from then on), and a client
//! address whose tokens keep failing is refused (429) without verification while
//! another address is served.
#![cfg(feature = "jwt")]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{raw_exchange, RawHead, TestServer};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;
use ssehub::{Auth, AuthError, Identity, JwtAlgorithm, JwtVerifier, SseOptions, TokenVerifier};
use tokio::net::TcpSocket;

const SECRET: &[u8] = b"a test secret, long enough for HS256";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token for `sub` that may subscribe to any room, expiring at `exp`, signed with
/// `secret`.
fn token(sub: &str, exp: u64, secret: &[u8]) -> String {
    let claims = json!({ "sub": sub, "exp": exp, "ssehub": { "subscribe": ["*"] } });
    encode(
        &Header::new(JwtAlgorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

/// The JWT verifier, counting how many tokens it was asked to verify.
#[derive(Clone)]
struct Counting {
    jwt: JwtVerifier,
    calls: Arc<AtomicUsize>,
}

impl TokenVerifier for Counting {
    fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.jwt.verify(token)
    }
}

impl Counting {
    fn new() -> Counting {
        let jwt = JwtVerifier::hmac(JwtAlgorithm::HS256, SECRET)
            .unwrap()
            .leeway(Duration::ZERO);
        Counting {
            jwt,
            calls: Arc::default(),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

async fn server(auth: Auth) -> TestServer {
    TestServer::start(SseOptions::new().keep_alive(None).auth(auth)).await
}

/// `GET /sse` from `from` (a loopback address) with `token`: the response head, and
/// the connection (a stream stays open while it is held).
async fn open(addr: SocketAddr, from: [u8; 4], token: &str) -> (RawHead, tokio::net::TcpStream) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    let req = format!(
        "GET /sse HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    );
    let head = raw_exchange(&mut tcp, &req).await;
    (head, tcp)
}

const HERE: [u8; 4] = [127, 0, 0, 1];
const ELSEWHERE: [u8; 4] = [127, 0, 0, 2];

#[tokio::test]
async fn a_repeated_bad_token_is_refused_the_same_way_from_the_cache() {
    let verifier = Counting::new();
    let srv = server(Auth::new(verifier.clone())).await;
    let forged = token("mallory", now() + 600, b"another secret, not the hub's one");
    let mut answers = Vec::new();
    for _ in 0..5 {
        let (head, _) = open(srv.addr, HERE, &forged).await;
        answers.push((
            head.status,
            head.header("www-authenticate").map(str::to_owned),
        ));
    }
    let first = answers[0].clone();
    assert_eq!(first.0, 401);
    assert!(
        first.1.as_deref().unwrap().contains("bad-signature"),
        "{first:?}"
    );
    assert!(answers.iter().all(|a| *a == first), "{answers:?}");
    assert_eq!(
        verifier.calls(),
        1,
        "verified once, refused from the cache since"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_token_cached_as_good_still_expires_at_its_exp() {
    let verifier = Counting::new();
    let srv = server(Auth::new(verifier.clone())).await;
    let exp = now() + 2;
    let good = token("alice", exp, SECRET);
    let (head, _first) = open(srv.addr, HERE, &good).await;
    assert_eq!(head.status, 200);
    let (head, _second) = open(srv.addr, HERE, &good).await;
    assert_eq!(head.status, 200);
    assert_eq!(
        verifier.calls(),
        1,
        "the second stream was admitted from the cache"
    );
    // Past its `exp` (whole seconds: at most 2 s from now, and a little more).
    while now() <= exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (head, _) = open(srv.addr, HERE, &good).await;
    assert_eq!(head.status, 401);
    assert!(head.header("www-authenticate").unwrap().contains("expired"));
    srv.stop().await;
}

#[tokio::test]
async fn an_address_out_of_its_failure_budget_gets_429_and_another_is_served() {
    const BUDGET: u32 = 3;
    let verifier = Counting::new();
    let auth =
        Auth::new(verifier.clone()).token_failure_budget(Some((BUDGET, Duration::from_secs(3600))));
    let srv = server(auth).await;
    let bad = |n: usize| token(&format!("x{n}"), now() + 600, b"not the secret");
    for n in 0..BUDGET as usize {
        let (head, _) = open(srv.addr, HERE, &bad(n)).await;
        assert_eq!(head.status, 401, "failure {n} is within the budget");
    }
    assert_eq!(verifier.calls(), BUDGET as usize);
    // Past it: refused unverified, a bad token and a good one alike (the good one is
    // not known yet: checking it would cost what the budget bounds).
    let (head, _) = open(srv.addr, HERE, &bad(99)).await;
    assert_eq!(head.status, 429);
    assert!(head.header("retry-after").is_some());
    let good = token("alice", now() + 600, SECRET);
    let (head, _) = open(srv.addr, HERE, &good).await;
    assert_eq!(head.status, 429);
    assert_eq!(
        verifier.calls(),
        BUDGET as usize,
        "nothing verified past the budget"
    );
    // A bad token already known is still told why.
    let (head, _) = open(srv.addr, HERE, &bad(0)).await;
    assert_eq!(head.status, 401);
    // Another address is served, and its good token is known from then on, also from
    // the first address.
    let (head, _elsewhere) = open(srv.addr, ELSEWHERE, &good).await;
    assert_eq!(head.status, 200);
    let (head, _here) = open(srv.addr, HERE, &good).await;
    assert_eq!(head.status, 200);
    srv.stop().await;
}
