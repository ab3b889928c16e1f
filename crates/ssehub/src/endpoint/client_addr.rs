//! Which address a request comes from: its peer's, or, when the peer is a configured
//! proxy ([`crate::SseOptions::trusted_proxies`]), the client's it forwards for
//! (`Forwarded: for=`, RFC 7239, else `X-Forwarded-For`).
//!
//! A forwarding header is read from the right: each proxy appends the address it got the
//! request from, so the rightmost address that is not a trusted proxy is the first one
//! no trusted party vouches for, and the client's. Anything to its left is the client's
//! own word. From a peer that is not a trusted proxy the headers are ignored: anyone can
//! write them.

use std::net::IpAddr;

use http::HeaderMap;

use crate::admission::canonical;

/// The client's address, given the peer's and the proxies trusted to forward.
pub(crate) fn client_ip(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[IpAddr],
) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: &IpAddr| trusted.contains(&canonical(*ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let chain = forwarded_for(headers).or_else(|| x_forwarded_for(headers));
    let Some(chain) = chain else {
        return Some(peer);
    };
    // Unreadable entries (`unknown`, obfuscated names) end the walk: the client is then
    // the last address a trusted proxy vouched for.
    let mut client = peer;
    for entry in chain.iter().rev() {
        match entry {
            Some(ip) if is_trusted(ip) => client = *ip,
            Some(ip) => return Some(*ip),
            None => break,
        }
    }
    Some(client)
}

/// The `for=` addresses of every `Forwarded` header, in order (`None` for one that is
/// not an address); `None` without such a header.
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut chain = Vec::new();
    for value in headers.get_all("forwarded") {
        let text = value.to_str().ok()?;
        for element in text.split(',') {
            let node = element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then(|| v.trim())
            });
            if let Some(node) = node {
                chain.push(parse_node(node.trim_matches('"')));
            }
        }
    }
    (!chain.is_empty()).then_some(chain)
}

/// A `Forwarded` node: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]`, `[2001:db8::1]:4711`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Some(v6) = node.strip_prefix('[') {
        return v6.split_once(']')?.0.parse().ok();
    }
    let host = node.rsplit_once(':').map_or(node, |(h, _)| h);
    host.parse().ok().map(canonical)
}

/// The addresses of every `X-Forwarded-For` header, in order.
fn x_forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut chain = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let text = value.to_str().ok()?;
        chain.extend(
            text.split(',')
                .map(|a| a.trim().parse().ok().map(canonical)),
        );
    }
    (!chain.is_empty()).then_some(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn client(peer: &str, headers: &[(&str, &str)]) -> IpAddr {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        client_ip(Some(ip(peer)), &h, &[ip("10.0.0.1"), ip("10.0.0.2")]).unwrap()
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let xff = [("x-forwarded-for", "203.0.113.9, 198.51.100.7")];
        assert_eq!(
            client("10.0.0.1", &xff),
            ip("198.51.100.7"),
            "the rightmost untrusted"
        );
        assert_eq!(
            client("192.0.2.1", &xff),
            ip("192.0.2.1"),
            "not a proxy: ignored"
        );
        let via_two = [("x-forwarded-for", "203.0.113.9, 10.0.0.2")];
        assert_eq!(client("10.0.0.1", &via_two), ip("203.0.113.9"));
        let fwd = [(
            "forwarded",
            "for=192.0.2.60;proto=http, for=\"[2001:db8::17]:4711\"",
        )];
        assert_eq!(client("10.0.0.1", &fwd), ip("2001:db8::17"));
        let unknown = [("forwarded", "for=unknown")];
        assert_eq!(client("10.0.0.1", &unknown), ip("10.0.0.1"));
        assert_eq!(
            client("::ffff:10.0.0.1", &xff),
            ip("198.51.100.7"),
            "mapped IPv4"
        );
        assert_eq!(client("10.0.0.1", &[]), ip("10.0.0.1"));
    }
}
