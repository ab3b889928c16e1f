//! Admission control: how many streams an endpoint holds, in all and per client address.
//!
//! A slot is taken before a stream opens and given back exactly once, when its connection
//! closes (the closed callback runs once). Counting happens under one mutex, and only
//! when a limit is configured: with no limit, admission costs nothing.
//!
//! "Per client address" groups IPv6 addresses by prefix ([`address_key`], /64 by
//! default): one subscriber line usually gets a whole /64, so counting each address
//! apart would set no limit at all.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use crate::connection::Connection;
use crate::metrics::Refusal;
use crate::sync::lock;

/// Connection limits of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub total: Option<usize>,
    pub per_ip: Option<usize>,
    /// IPv6 addresses are counted per prefix of this many bits.
    pub ipv6_prefix: u8,
}

/// The default IPv6 grouping: a /64, what one subscriber line usually gets.
pub(crate) const DEFAULT_IPV6_PREFIX: u8 = 64;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            total: None,
            per_ip: None,
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
        }
    }
}

impl Limits {
    fn none(&self) -> bool {
        self.total.is_none() && self.per_ip.is_none()
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) as the IPv4 address they are.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The address `ip` is counted under: an IPv4 address as it is, an IPv6 one with all but
/// its first `v6_prefix` bits cleared.
pub(crate) fn address_key(ip: IpAddr, v6_prefix: u8) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let bits = u32::from(v6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
        v4 => v4,
    }
}

/// Why a stream was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Total,
    PerIp,
}

impl Refused {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refused::Total => "too many connections",
            Refused::PerIp => "too many connections from this address",
        }
    }

    /// Its label in `ssehub_refused_total`.
    pub(crate) fn counted_as(self) -> Refusal {
        match self {
            Refused::Total => Refusal::MaxConnections,
            Refused::PerIp => Refusal::MaxConnectionsPerIp,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Admission {
    limits: Limits,
    state: Arc<Mutex<Counts>>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Admission {
    pub(crate) fn new(limits: Limits) -> Self {
        Admission {
            limits,
            state: Arc::default(),
        }
    }

    /// Take a slot for a stream from `ip`; it is released when `conn` closes.
    /// Call `admit` first, then `bind` once the connection exists.
    pub(crate) fn admit(&self, ip: Option<IpAddr>) -> Result<(), Refused> {
        if self.limits.none() {
            return Ok(());
        }
        let ip = ip.map(|ip| address_key(ip, self.limits.ipv6_prefix));
        let mut counts = lock(&self.state);
        if self.limits.total.is_some_and(|max| counts.total >= max) {
            return Err(Refused::Total);
        }
        if let (Some(max), Some(ip)) = (self.limits.per_ip, ip) {
            if counts.per_ip.get(&ip).is_some_and(|n| *n >= max) || max == 0 {
                return Err(Refused::PerIp);
            }
            *counts.per_ip.entry(ip).or_default() += 1;
        }
        counts.total += 1;
        Ok(())
    }

    /// Give the slot taken by `admit(ip)` back when `conn` closes.
    pub(crate) fn bind(&self, ip: Option<IpAddr>, conn: &Connection) {
        if self.limits.none() {
            return;
        }
        let ip = ip.map(|ip| address_key(ip, self.limits.ipv6_prefix));
        let state = self.state.clone();
        let per_ip = self.limits.per_ip.is_some();
        conn.on_closed(move |_| {
            let mut counts = lock(&state);
            counts.total -= 1;
            if let (true, Some(ip)) = (per_ip, ip) {
                if let Some(n) = counts.per_ip.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        counts.per_ip.remove(&ip);
                    }
                }
            }
        });
    }

    #[cfg(test)]
    fn total(&self) -> usize {
        lock(&self.state).total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::ConnectionConfig;
    use crate::Hub;

    #[test]
    fn slots_are_taken_and_given_back_once() {
        let hub = Hub::new();
        let a = Admission::new(Limits {
            total: Some(3),
            per_ip: Some(2),
            ..Limits::default()
        });
        let ip1: IpAddr = [127, 0, 0, 1].into();
        let ip2: IpAddr = [127, 0, 0, 2].into();
        let mut conns = Vec::new();
        for ip in [ip1, ip1, ip2] {
            a.admit(Some(ip)).unwrap();
            let c = hub.connect(ConnectionConfig::for_tests());
            a.bind(Some(ip), &c);
            conns.push(c);
        }
        assert_eq!(a.admit(Some(ip2)), Err(Refused::Total));
        conns[2].close();
        conns[2].close();
        assert_eq!(a.total(), 2);
        assert_eq!(a.admit(Some(ip1)), Err(Refused::PerIp));
        a.admit(Some(ip2)).unwrap();
    }

    #[test]
    fn ipv6_addresses_are_grouped_by_prefix() {
        let key = |s: &str, p| address_key(s.parse().unwrap(), p);
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        assert_eq!(key("2001:db8:1:2:3:4:5:6", 64), ip("2001:db8:1:2::"));
        assert_eq!(key("2001:db8:1:2:3:4:5:6", 48), ip("2001:db8:1::"));
        assert_eq!(key("2001:db8::1", 128), ip("2001:db8::1"));
        assert_eq!(key("2001:db8::1", 0), ip("::"));
        assert_eq!(key("192.0.2.7", 64), ip("192.0.2.7"));
        assert_eq!(key("::ffff:192.0.2.7", 64), ip("192.0.2.7"), "mapped IPv4");
    }
}
