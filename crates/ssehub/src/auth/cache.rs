//! Verification results remembered by token: a stream's client reconnects with the same
//! token, and an attacker repeats a bad one; either way the signature is checked once.
//!
//! ## Invariants (each under its own mutex)
//! - A token is known by its SHA-256 ([`digest`]), never kept: 32 bytes an entry
//!   whatever its length, and a token that collides with a cached one cannot be made.
//! - Each table holds at most `capacity` entries; the oldest goes first (FIFO: the
//!   order holds each key once, since a key already there is updated in place).
//! - A good entry is served until its identity's expiry (a token's `exp`) or
//!   [`GOOD_FOR`], whichever comes first; past that it is a miss and the token is
//!   verified again, so a cached token is refused at its `exp` as a fresh one is. A bad
//!   entry is served for [`BAD_FOR`]: what failed (a signature, a format, an `exp`) fails
//!   again, except `nbf`, which is never cached.
//! - Good and bad entries have tables of their own: a spray of distinct bad tokens
//!   evicts only bad entries.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest as _, Sha256};

use super::{AuthError, Identity};
use crate::sync::lock;

/// How long a verified token is served from the cache at most (a verifier of your own
/// may consult a revocation list: this is how stale its answer may get).
pub(crate) const GOOD_FOR: Duration = Duration::from_secs(300);
/// How long a refused token is refused from the cache.
pub(crate) const BAD_FOR: Duration = Duration::from_secs(60);

/// A token's key in the cache.
pub(crate) type Digest = [u8; 32];

/// The key of `token`.
pub(crate) fn digest(token: &str) -> Digest {
    Sha256::digest(token.as_bytes()).into()
}

/// Verification results by token digest.
#[derive(Debug)]
pub(crate) struct TokenCache {
    capacity: usize,
    good: Mutex<Fifo<Identity>>,
    bad: Mutex<Fifo<AuthError>>,
}

#[derive(Debug)]
struct Fifo<V> {
    map: HashMap<Digest, (V, Instant)>,
    order: VecDeque<Digest>,
}

impl<V> Default for Fifo<V> {
    fn default() -> Self {
        Fifo {
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<V: Clone> Fifo<V> {
    fn get(&self, key: &Digest, now: Instant) -> Option<V> {
        let (value, until) = self.map.get(key)?;
        (now < *until).then(|| value.clone())
    }

    fn put(&mut self, key: Digest, value: V, until: Instant, capacity: usize) {
        if let Some(slot) = self.map.get_mut(&key) {
            *slot = (value, until);
            return;
        }
        while self.map.len() >= capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => return,
            }
        }
        self.map.insert(key, (value, until));
        self.order.push_back(key);
    }
}

impl TokenCache {
    /// A cache of at most `capacity` good and `capacity` bad tokens (at least 1 each).
    pub(crate) fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity: capacity.max(1),
            good: Mutex::default(),
            bad: Mutex::default(),
        }
    }

    /// What verifying the token of `key` said, if it is remembered and still holds.
    pub(crate) fn get(&self, key: &Digest) -> Option<Result<Identity, AuthError>> {
        let now = Instant::now();
        if let Some(id) = lock(&self.good).get(key, now) {
            // The wall clock decides `exp` (it may have jumped since the entry was made).
            if id.expiry().is_none_or(|at| at > SystemTime::now()) {
                return Some(Ok(id));
            }
            return None;
        }
        lock(&self.bad).get(key, now).map(Err)
    }

    /// Remember what verifying the token of `key` said.
    pub(crate) fn put(&self, key: Digest, verdict: &Result<Identity, AuthError>) {
        let now = Instant::now();
        match verdict {
            Ok(id) => {
                let left = id.expiry().map_or(GOOD_FOR, |at| {
                    at.duration_since(SystemTime::now())
                        .unwrap_or(Duration::ZERO)
                        .min(GOOD_FOR)
                });
                if !left.is_zero() {
                    lock(&self.good).put(key, id.clone(), now + left, self.capacity);
                }
            }
            // It may be valid in a moment: not remembered.
            Err(AuthError::NotYetValid) => {}
            Err(e) => lock(&self.bad).put(key, e.clone(), now + BAD_FOR, self.capacity),
        }
    }

    /// How many tokens are remembered, good and bad.
    #[cfg(test)]
    pub(crate) fn len(&self) -> (usize, usize) {
        (lock(&self.good).map.len(), lock(&self.bad).map.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_table_holds_at_most_its_capacity_and_drops_the_oldest() {
        let cache = TokenCache::new(16);
        for n in 0..1000 {
            let key = digest(&format!("bad-{n}"));
            cache.put(key, &Err(AuthError::BadSignature));
        }
        assert_eq!(cache.len(), (0, 16));
        for n in 0..1000 {
            cache.put(
                digest(&format!("good-{n}")),
                &Ok(Identity::new(n.to_string())),
            );
        }
        assert_eq!(cache.len(), (16, 16), "bad tokens never evict good ones");
        assert!(cache.get(&digest("good-999")).is_some());
        assert!(
            cache.get(&digest("good-0")).is_none(),
            "the oldest went first"
        );
        assert_eq!(
            cache.get(&digest("bad-999")),
            Some(Err(AuthError::BadSignature))
        );
        // A key already there is updated in place, not queued twice.
        for _ in 0..100 {
            cache.put(digest("bad-999"), &Err(AuthError::Expired));
        }
        assert_eq!(lock(&cache.bad).order.len(), 16);
    }

    #[test]
    fn an_identity_past_its_expiry_is_a_miss_and_nbf_is_not_remembered() {
        let cache = TokenCache::new(4);
        let past = Identity::new("a").expires_at(SystemTime::now() - Duration::from_secs(1));
        cache.put(digest("past"), &Ok(past));
        assert_eq!(cache.get(&digest("past")), None);
        cache.put(digest("early"), &Err(AuthError::NotYetValid));
        assert_eq!(cache.get(&digest("early")), None);
        let soon = Identity::new("b").expires_at(SystemTime::now() + Duration::from_secs(3600));
        cache.put(digest("soon"), &Ok(soon.clone()));
        assert_eq!(cache.get(&digest("soon")), Some(Ok(soon)));
    }
}
