//! How many tokens that fail verification one client address may send: past its
//! budget, its tokens are not verified (the request is refused with 429) until the
//! budget refills. A token already known (`cache.rs`) is answered whatever the budget:
//! that costs nothing.
//!
//! A token bucket per address (IPv6 per /64): `max` failures at once, refilled at `max`
//! per `per`. The table is bounded ([`MAX_ADDRESSES`]): when it is full, addresses whose
//! budget has refilled are forgotten first, then the one with the most budget left, so
//! the addresses that are failing now are the ones kept.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::admission::{address_key, DEFAULT_IPV6_PREFIX};
use crate::sync::lock;

/// The most addresses followed at once.
pub(crate) const MAX_ADDRESSES: usize = 4096;

/// Failed verifications per client address.
#[derive(Debug)]
pub(crate) struct FailureBudget {
    max: f64,
    per: Duration,
    table: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    left: f64,
    at: Instant,
}

impl FailureBudget {
    /// `max` failures at once per address, refilled at `max` per `per`.
    pub(crate) fn new(max: u32, per: Duration) -> FailureBudget {
        FailureBudget {
            max: f64::from(max.max(1)),
            per: per.max(Duration::from_millis(1)),
            table: Mutex::default(),
        }
    }

    /// How long until one more attempt is allowed from an address that has none left
    /// (whole seconds, at least 1): the `Retry-After` of a refusal.
    pub(crate) fn retry_after(&self) -> u64 {
        (self.per.as_secs_f64() / self.max).ceil().max(1.0) as u64
    }

    fn refilled(&self, b: Bucket, now: Instant) -> f64 {
        let earned = now.saturating_duration_since(b.at).as_secs_f64() / self.per.as_secs_f64();
        (b.left + earned * self.max).min(self.max)
    }

    /// Whether `ip` may have one more token verified.
    pub(crate) fn allows(&self, ip: IpAddr) -> bool {
        let key = address_key(ip, DEFAULT_IPV6_PREFIX);
        let table = lock(&self.table);
        table
            .get(&key)
            .is_none_or(|b| self.refilled(*b, Instant::now()) >= 1.0)
    }

    /// A token from `ip` failed verification.
    pub(crate) fn charge(&self, ip: IpAddr) {
        let key = address_key(ip, DEFAULT_IPV6_PREFIX);
        let now = Instant::now();
        let mut table = lock(&self.table);
        if let Some(b) = table.get_mut(&key) {
            b.left = (self.refilled(*b, now) - 1.0).max(0.0);
            b.at = now;
            return;
        }
        if table.len() >= MAX_ADDRESSES {
            table.retain(|_, b| self.refilled(*b, now) < self.max);
        }
        if table.len() >= MAX_ADDRESSES {
            let most = table
                .iter()
                .max_by(|a, b| {
                    self.refilled(*a.1, now)
                        .total_cmp(&self.refilled(*b.1, now))
                })
                .map(|(k, _)| *k);
            if let Some(k) = most {
                table.remove(&k);
            }
        }
        table.insert(
            key,
            Bucket {
                left: self.max - 1.0,
                at: now,
            },
        );
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        lock(&self.table).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_spends_its_budget_and_others_keep_theirs() {
        let budget = FailureBudget::new(3, Duration::from_secs(3600));
        let a: IpAddr = [192, 0, 2, 1].into();
        let b: IpAddr = [192, 0, 2, 2].into();
        for _ in 0..3 {
            assert!(budget.allows(a));
            budget.charge(a);
        }
        assert!(!budget.allows(a));
        assert!(budget.allows(b));
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        for _ in 0..3 {
            budget.charge(v6);
        }
        let same_64: IpAddr = "2001:db8::ffff".parse().unwrap();
        assert!(!budget.allows(same_64), "IPv6 counts per /64");
        assert_eq!(budget.retry_after(), 1200);
    }

    #[test]
    fn the_table_is_bounded() {
        let budget = FailureBudget::new(2, Duration::from_secs(3600));
        for n in 0..(MAX_ADDRESSES as u32 + 100) {
            budget.charge(IpAddr::from(n.to_be_bytes()));
        }
        assert_eq!(budget.tracked(), MAX_ADDRESSES);
    }
}
