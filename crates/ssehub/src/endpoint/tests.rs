//! Unit tests of the endpoint: prefixes, jitter, strict path match.

use std::time::Duration;

use super::options::normalise_prefix;
use super::retry::jitter;
use super::*;

#[test]
fn prefixes_are_normalised() {
    assert_eq!(normalise_prefix("sse").unwrap(), "/sse");
    assert_eq!(normalise_prefix("/sse/").unwrap(), "/sse");
    assert_eq!(normalise_prefix("/a/b").unwrap(), "/a/b");
    assert!(normalise_prefix("/").is_err());
    assert!(normalise_prefix("").is_err());
    assert!(normalise_prefix("//").is_err());
}

#[test]
fn retry_jitter_stays_within_80_to_100_percent() {
    let base = Duration::from_millis(1000);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..500 {
        let d = jitter(base, crate::connection::ConnectionId::random());
        assert!(d >= base * 80 / 100 && d <= base, "{d:?}");
        seen.insert(d);
    }
    assert!(seen.len() > 10, "the delays are spread out: {}", seen.len());
}

#[test]
fn strict_match() {
    let e = SseEndpoint::new(SseOptions::new()).unwrap();
    assert!(e.matches("/sse"));
    assert!(e.matches("/sse/"));
    assert!(!e.matches("/sse/x"));
    assert!(!e.matches("/ssex"));
    assert!(!e.matches("/sse//"));
}
