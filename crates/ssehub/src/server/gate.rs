//! The accept gate: how many TCP connections the server holds, in all, and how many of
//! them have not finished their first request, in all and per client address.
//!
//! A connection that has sent no complete request yet costs a descriptor, a task and a
//! buffer, and proves nothing: a client that opens hundreds and sends half a request on
//! each must not crowd out the others until the header timeout cuts them. Past a limit, a
//! new connection is closed at once. Per address, IPv6 counts per /64
//! (`admission::address_key`).
//!
//! ## Invariants (under the gate's mutex)
//! - `open` is the number of live [`Ticket`]s (counted only while there is a limit on
//!   it), `pending` the number of those not yet [`Ticket::requested`], `per_address` the
//!   same split by address key (entries at zero are removed).
//! - A ticket leaves `pending` at most once (when its first request came or when it is
//!   dropped, whichever is first) and, if counted there, `open` exactly once (when it is
//!   dropped).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::admission::{address_key, DEFAULT_IPV6_PREFIX};
use crate::sync::lock;

/// The gate's limits (`None`: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GateLimits {
    pub(crate) connections: Option<usize>,
    pub(crate) pending: Option<usize>,
    pub(crate) pending_per_address: Option<usize>,
}

impl Default for GateLimits {
    fn default() -> Self {
        GateLimits {
            connections: None,
            pending: Some(1024),
            pending_per_address: Some(128),
        }
    }
}

/// Why a connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    Connections,
    Pending,
    PendingFromAddress,
}

impl Full {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Full::Connections => "too many connections",
            Full::Pending => "too many connections without a request",
            Full::PendingFromAddress => "too many connections without a request from this address",
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Gate {
    limits: GateLimits,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    open: usize,
    pending: usize,
    per_address: HashMap<IpAddr, usize>,
}

impl Gate {
    pub(crate) fn new(limits: GateLimits) -> Arc<Gate> {
        Arc::new(Gate {
            limits,
            counts: Mutex::default(),
        })
    }

    /// Let a connection from `ip` in, pending until its first request.
    pub(crate) fn enter(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Full> {
        let key = address_key(ip, DEFAULT_IPV6_PREFIX);
        let mut c = lock(&self.counts);
        if self.limits.connections.is_some_and(|max| c.open >= max) {
            return Err(Full::Connections);
        }
        if self.limits.pending.is_some_and(|max| c.pending >= max) {
            return Err(Full::Pending);
        }
        let from_here = c.per_address.get(&key).copied().unwrap_or(0);
        if self
            .limits
            .pending_per_address
            .is_some_and(|max| from_here >= max)
        {
            return Err(Full::PendingFromAddress);
        }
        let counted = self.limits.connections.is_some();
        c.open += usize::from(counted);
        c.pending += 1;
        *c.per_address.entry(key).or_default() += 1;
        Ok(Ticket {
            gate: self.clone(),
            key,
            pending: AtomicBool::new(true),
            counted,
        })
    }

    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let c = lock(&self.counts);
        (c.open, c.pending)
    }
}

/// One connection's place in the gate. Shared (the connection task and hyper's service
/// both hold it); dropped with the connection.
#[derive(Debug)]
pub(crate) struct Ticket {
    gate: Arc<Gate>,
    key: IpAddr,
    pending: AtomicBool,
    /// Counted in `open`: without a limit on all connections, nobody needs the count.
    counted: bool,
}

impl Ticket {
    /// Whether the connection counts toward the limit on all connections (then the
    /// ticket must live as long as the connection).
    pub(crate) fn counted(&self) -> bool {
        self.counted
    }

    /// Whether the connection's first request has yet to come.
    pub(crate) fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// The connection's first request has come: it no longer counts as pending.
    pub(crate) fn requested(&self) {
        if self.pending.swap(false, Ordering::AcqRel) {
            let mut c = lock(&self.gate.counts);
            c.pending -= 1;
            leave_address(&mut c, self.key);
        }
    }
}

fn leave_address(c: &mut Counts, key: IpAddr) {
    if let Some(n) = c.per_address.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            c.per_address.remove(&key);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.requested();
        if self.counted {
            lock(&self.gate.counts).open -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_connections_are_capped_in_all_and_per_address() {
        let gate = Gate::new(GateLimits {
            connections: Some(4),
            pending: Some(3),
            pending_per_address: Some(2),
        });
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let a2: IpAddr = "2001:db8::2".parse().unwrap();
        let b: IpAddr = "192.0.2.1".parse().unwrap();
        let t1 = gate.enter(a).unwrap();
        let t2 = gate.enter(a2).unwrap();
        assert_eq!(
            gate.enter(a).unwrap_err(),
            Full::PendingFromAddress,
            "one /64"
        );
        let t3 = gate.enter(b).unwrap();
        assert_eq!(gate.enter(b).unwrap_err(), Full::Pending);
        t1.requested();
        t1.requested();
        assert_eq!(gate.counts(), (3, 2));
        let t4 = gate.enter(a).unwrap();
        assert_eq!(gate.enter(b).unwrap_err(), Full::Connections);
        drop((t2, t3, t4));
        assert_eq!(gate.counts(), (1, 0));
        drop(t1);
        assert_eq!(gate.counts(), (0, 0));
    }
}
