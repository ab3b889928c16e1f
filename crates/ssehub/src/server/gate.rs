//! The accept gate: how many TCP connections the server holds, in all, and how many of
//! them are slow to send their first request, in all and per client address; and the
//! count, by reason, of every connection it closes for that.
//!
//! A connection that has sent no complete request yet costs a descriptor, a task and a
//! buffer, and proves nothing: a client that opens hundreds and sends half a request on
//! each must not crowd out the others until the header timeout cuts them. But a crowd
//! of clients that send their whole request at once (a load generator, a reconnect
//! storm behind a proxy, where every client has the proxy's address) must not be taken
//! for that attacker: the server, not the client, is the one behind when hundreds of
//! complete heads wait to be read.
//!
//! So a connection is let in at accept (only the cap on all connections applies there)
//! and counts as *pending* only once it shows itself slow ([`Ticket::slow`]):
//! - its first read, when the socket first becomes readable, is not a complete HTTP/1.x
//!   head (half a head, the HTTP/2 preface, a head larger than the take-over reads);
//! - or it sent nothing for [`SLOW_AFTER`] from the moment its task first looked at it
//!   (measured from there, not from accept, so that a server busy with a crowd does not
//!   charge its own delay to the client);
//! - a TLS connection cannot show a head in its first read (the handshake comes first):
//!   it gets the same [`SLOW_AFTER`] for its handshake and first request.
//!
//! Past a cap on pending connections, in all or from the address, the connection that
//! shows itself slow is closed at once. An attacker that sends half a head is counted on
//! its first read, one that sends nothing a second later, one that stalls a TLS
//! handshake a second later: each holds at most the caps' worth of connections until
//! [`crate::Server::header_timeout`] cuts them, plus, for at most [`SLOW_AFTER`] each,
//! those it opens faster than they are judged (bounded by `max_connections` if set).
//! Per address, IPv6 counts per /64 (`admission::address_key`).
//!
//! Every refusal is counted in the hubs of the server's SSE endpoints (`/stats` and
//! `/metrics`), by reason ([`Refusal`]): the cap on all connections, on pending ones in
//! all or per address, and the header timeout.
//!
//! ## Invariants (under the gate's mutex)
//! - `open` is the number of live [`Ticket`]s (counted only while there is a limit on
//!   it); `pending` the number of tickets in the `PENDING` state, `per_address` the same
//!   split by address key (entries at zero are removed).
//! - A ticket's state only moves forward: `FRESH` → `PENDING` (under the mutex, with
//!   the counts raised in the same critical section) → `REQUESTED`, or `FRESH` →
//!   `REQUESTED`. It leaves `pending` exactly once if it entered it (the swap to
//!   `REQUESTED` returns `PENDING` once), and `open` exactly once if counted there
//!   (when dropped).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::admission::{address_key, DEFAULT_IPV6_PREFIX};
use crate::hub::Hub;
use crate::metrics::Refusal;
use crate::sync::lock;

/// How long a connection may stay silent (or, over TLS, without a request) before it
/// counts as pending. An honest client sends its head right after connecting (over TLS,
/// a round trip or two later); one that has not is counted, not closed: it is refused
/// only if the caps are already full of such connections.
pub(crate) const SLOW_AFTER: Duration = Duration::from_secs(1);

/// The gate's limits (`None`: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GateLimits {
    pub(crate) connections: Option<usize>,
    pub(crate) pending: Option<usize>,
    pub(crate) pending_per_address: Option<usize>,
    /// Requests in progress from one address over the TLS listeners (each stream is one
    /// for its whole life): [`Ticket::begin_request`].
    pub(crate) requests_per_address: Option<usize>,
}

/// The default of [`GateLimits::requests_per_address`] (`Server::max_tls_requests_per_address`).
pub(crate) const TLS_REQUESTS_PER_ADDRESS: usize = 1024;

impl Default for GateLimits {
    fn default() -> Self {
        GateLimits {
            connections: None,
            pending: Some(1024),
            pending_per_address: Some(128),
            requests_per_address: Some(TLS_REQUESTS_PER_ADDRESS),
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
            Full::Pending => "too many slow connections without a request",
            Full::PendingFromAddress => {
                "too many slow connections without a request from this address"
            }
        }
    }

    fn refusal(self) -> Refusal {
        match self {
            Full::Connections => Refusal::ServerMaxConnections,
            Full::Pending => Refusal::MaxPendingConnections,
            Full::PendingFromAddress => Refusal::MaxPendingPerIp,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Gate {
    limits: GateLimits,
    counts: Mutex<Counts>,
    /// Where refusals are counted: each distinct hub of the server's endpoints.
    hubs: Vec<Hub>,
}

#[derive(Debug, Default)]
struct Counts {
    open: usize,
    pending: usize,
    per_address: HashMap<IpAddr, usize>,
    /// Requests in progress over TLS, by address key (entries at zero are removed).
    requests: HashMap<IpAddr, usize>,
}

/// A ticket's states (see the invariants).
const FRESH: u8 = 0;
const PENDING: u8 = 1;
const REQUESTED: u8 = 2;

impl Gate {
    /// A gate with `limits` that counts its refusals in `hubs` (each once).
    pub(crate) fn new(limits: GateLimits, hubs: impl IntoIterator<Item = Hub>) -> Arc<Gate> {
        let mut distinct: Vec<Hub> = Vec::new();
        for hub in hubs {
            if !distinct.iter().any(|h| h.same_as(&hub)) {
                distinct.push(hub);
            }
        }
        Arc::new(Gate {
            limits,
            counts: Mutex::default(),
            hubs: distinct,
        })
    }

    /// Let a connection from `ip` in, if there is room for one more connection. It is
    /// not pending (yet): see [`Ticket::slow`].
    pub(crate) fn enter(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Full> {
        let key = address_key(ip, DEFAULT_IPV6_PREFIX);
        let counted = self.limits.connections.is_some();
        {
            let mut c = lock(&self.counts);
            if self.limits.connections.is_some_and(|max| c.open >= max) {
                drop(c);
                self.count(Refusal::ServerMaxConnections);
                return Err(Full::Connections);
            }
            c.open += usize::from(counted);
        }
        Ok(Ticket {
            gate: self.clone(),
            key,
            state: AtomicU8::new(FRESH),
            counted,
        })
    }

    /// Count a refusal in every hub.
    fn count(&self, why: Refusal) {
        for hub in &self.hubs {
            hub.count_refusal(why);
        }
    }

    #[cfg(test)]
    fn counts(&self) -> (usize, usize, usize) {
        let c = lock(&self.counts);
        (c.open, c.pending, c.per_address.values().sum())
    }
}

/// One connection's place in the gate. Shared (the connection task and hyper's service
/// both hold it); dropped with the connection.
#[derive(Debug)]
pub(crate) struct Ticket {
    gate: Arc<Gate>,
    key: IpAddr,
    /// `FRESH`, `PENDING` or `REQUESTED`.
    state: AtomicU8,
    /// Counted in `open`: without a limit on all connections, nobody needs the count.
    counted: bool,
}

impl Ticket {
    /// Whether the connection counts toward the limit on all connections (then the
    /// ticket must live as long as the connection).
    pub(crate) fn counted(&self) -> bool {
        self.counted
    }

    /// The client's address as the gate counts it (IPv6: its /64).
    pub(crate) fn address(&self) -> IpAddr {
        self.key
    }

    /// Whether the connection's first request has come.
    pub(crate) fn has_requested(&self) -> bool {
        self.state.load(Ordering::Acquire) == REQUESTED
    }

    /// The connection showed itself slow (see the module's header): it counts as
    /// pending from now until its first request, or is refused (and the refusal
    /// counted) if the caps on pending connections are full. Does nothing, and lets it
    /// go on, if it already counts or has made its request.
    pub(crate) fn slow(&self) -> Result<(), Full> {
        let gate = &self.gate;
        let mut c = lock(&gate.counts);
        if self.state.load(Ordering::Acquire) != FRESH {
            return Ok(());
        }
        let from_here = c.per_address.get(&self.key).copied().unwrap_or(0);
        let full = if gate.limits.pending.is_some_and(|max| c.pending >= max) {
            Some(Full::Pending)
        } else if gate
            .limits
            .pending_per_address
            .is_some_and(|max| from_here >= max)
        {
            Some(Full::PendingFromAddress)
        } else {
            None
        };
        if let Some(full) = full {
            drop(c);
            gate.count(full.refusal());
            return Err(full);
        }
        // Under the mutex: the counts rise only with the state's move to PENDING, which
        // fails if the request came meanwhile.
        let moved =
            self.state
                .compare_exchange(FRESH, PENDING, Ordering::AcqRel, Ordering::Acquire);
        if moved.is_ok() {
            c.pending += 1;
            *c.per_address.entry(self.key).or_default() += 1;
        }
        Ok(())
    }

    /// The connection's first request has come: it no longer counts as pending.
    pub(crate) fn requested(&self) {
        if self.state.swap(REQUESTED, Ordering::AcqRel) == PENDING {
            let mut c = lock(&self.gate.counts);
            c.pending -= 1;
            leave_address(&mut c, self.key);
        }
    }

    /// A request (over a TLS listener) begins: its slot among the requests in progress
    /// from this address, held until its response body is dropped; `Err` (counted) if
    /// the address has [`GateLimits::requests_per_address`] in progress already.
    ///
    /// HTTP/2 lets one connection carry hyper's 200 streams, and a client may open many
    /// connections: without this, one address could hold thousands of streams, each
    /// with its state in hyper and h2 and its outbox. Plain listeners are left alone: they
    /// usually sit behind a proxy, whose one address is every client's.
    pub(crate) fn begin_request(&self) -> Result<Option<RequestSlot>, ()> {
        let gate = &self.gate;
        let Some(max) = gate.limits.requests_per_address else {
            return Ok(None);
        };
        let mut c = lock(&gate.counts);
        let n = c.requests.entry(self.key).or_default();
        if *n >= max {
            if *n == 0 {
                c.requests.remove(&self.key);
            }
            drop(c);
            gate.count(Refusal::MaxRequestsPerIp);
            return Err(());
        }
        *n += 1;
        Ok(Some(RequestSlot {
            gate: gate.clone(),
            key: self.key,
        }))
    }

    /// The connection is closed because its first request's head did not come within
    /// the header timeout: counted as a refusal.
    pub(crate) fn timed_out(&self) {
        if !self.has_requested() {
            self.gate.count(Refusal::HeaderTimeout);
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

/// A request's place among those in progress from its address (over TLS).
#[derive(Debug)]
pub(crate) struct RequestSlot {
    gate: Arc<Gate>,
    key: IpAddr,
}

impl Drop for RequestSlot {
    fn drop(&mut self) {
        let mut c = lock(&self.gate.counts);
        if let Some(n) = c.requests.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                c.requests.remove(&self.key);
            }
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

    fn refused(hub: &Hub, why: &str) -> u64 {
        hub.stats().refused[why]
    }

    #[test]
    fn only_slow_connections_are_capped_in_all_and_per_address() {
        let hub = Hub::new();
        let gate = Gate::new(
            GateLimits {
                connections: Some(5),
                pending: Some(3),
                pending_per_address: Some(2),
                requests_per_address: None,
            },
            [hub.clone(), hub.clone()],
        );
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let a2: IpAddr = "2001:db8::2".parse().unwrap();
        let b: IpAddr = "192.0.2.1".parse().unwrap();
        // Let in without counting as pending: a crowd from one address is not refused.
        let fresh: Vec<Ticket> = (0..3).map(|_| gate.enter(a).unwrap()).collect();
        assert_eq!(gate.counts(), (3, 0, 0));
        // Each that shows itself slow counts, up to the cap of its /64.
        fresh[0].slow().unwrap();
        fresh[1].slow().unwrap();
        fresh[1].slow().unwrap();
        assert_eq!(gate.counts(), (3, 2, 2), "counted once");
        let t4 = gate.enter(a2).unwrap();
        assert_eq!(t4.slow().unwrap_err(), Full::PendingFromAddress, "one /64");
        assert_eq!(
            refused(&hub, "max_pending_per_ip"),
            1,
            "counted once per hub"
        );
        let t5 = gate.enter(b).unwrap();
        t5.slow().unwrap();
        assert_eq!(gate.enter(b).unwrap_err(), Full::Connections);
        assert_eq!(refused(&hub, "server_max_connections"), 1);
        drop(t4);
        let t6 = gate.enter(b).unwrap();
        assert_eq!(t6.slow().unwrap_err(), Full::Pending, "3 pending in all");
        assert_eq!(refused(&hub, "max_pending_connections"), 1);
        // A request frees its place; a ticket that requested is never slow again.
        fresh[0].requested();
        fresh[0].requested();
        fresh[0].slow().unwrap();
        assert_eq!(gate.counts(), (5, 2, 2));
        t6.slow().unwrap();
        assert_eq!(gate.counts(), (5, 3, 3));
        // A header timeout counts only for a connection still without a request.
        fresh[0].timed_out();
        t6.timed_out();
        assert_eq!(refused(&hub, "header_timeout"), 1);
        drop((fresh, t5, t6));
        assert_eq!(gate.counts(), (0, 0, 0));
    }
}
