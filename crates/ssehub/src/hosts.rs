//! Which host names a server answers to ([`crate::Server::allowed_hosts`]).
//!
//! A page on `http://evil.example:2015/` whose name the attacker then points at
//! 127.0.0.1 (DNS rebinding) is, for the browser, of the same origin as the server it
//! now reaches: its requests pass every own-origin check (their `Origin` names their
//! `Host`), and it reads `/stats` and streams, and publishes. What gives it away is the
//! name it asks for, in `Host` (or HTTP/2's `:authority`): a server that knows its own
//! names refuses the others before any route, with 421 (Misdirected Request).
//!
//! A name is compared ASCII case-insensitively and without a trailing dot; an allowed
//! name without a port matches any port, one with a port only that port. A request that
//! names no host at all (HTTP/1.0 without `Host`) is no browser's, and passes.

use http::header::{self, HeaderValue};
use http::Request;

/// The names a server answers to; `None`: any.
#[derive(Debug, Clone, Default)]
pub(crate) struct AllowedHosts {
    names: Option<Vec<Name>>,
}

/// One allowed name, lower case, IPv6 addresses in brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Name {
    host: String,
    port: Option<u16>,
}

impl AllowedHosts {
    /// Only `hosts` (names or addresses, each with or without a port); an entry that is
    /// none of these is the error's.
    pub(crate) fn only<I, S>(hosts: I) -> Result<AllowedHosts, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let names = hosts
            .into_iter()
            .map(|h| {
                let h = h.as_ref();
                let bare = h.trim();
                // A bare IPv6 address (`::1`) is written as `Host` writes it: in brackets.
                let bracketed;
                let entry = if bare.contains("::") && !bare.starts_with('[') {
                    bracketed = format!("[{bare}]");
                    &bracketed
                } else {
                    bare
                };
                parse(entry).ok_or_else(|| h.to_owned())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AllowedHosts { names: Some(names) })
    }

    /// The host `req` names that is not allowed, if it names one (as `Host` says it, for
    /// the answer and the log); `None`: go on.
    pub(crate) fn refused<B>(&self, req: &Request<B>) -> Option<String> {
        let names = self.names.as_ref()?;
        let allowed = |value: &str| {
            parse(value).is_some_and(|asked| {
                names
                    .iter()
                    .any(|n| n.host == asked.host && n.port.is_none_or(|p| Some(p) == asked.port))
            })
        };
        let authority = req.uri().authority().map(|a| a.as_str());
        let hosts = req
            .headers()
            .get_all(header::HOST)
            .iter()
            .map(HeaderValue::to_str);
        for host in hosts.map(|h| h.unwrap_or("(not text)")).chain(authority) {
            if !allowed(host) {
                return Some(host.to_owned());
            }
        }
        None
    }
}

/// The answer to a request for `host`, which the server does not serve.
pub(crate) fn refusal_text(host: &str) -> String {
    format!(
        "this server does not answer to the host {host:?}: a request for another site, \
         or a page whose name was pointed at this address (DNS rebinding); a name it \
         should answer to belongs in its allowed hosts (Server::allowed_hosts; ssehub \
         serve: server.allowed_hosts)"
    )
}

/// A `Host` value (`name`, `name:port`, `[v6]`, `[v6]:port`) as a [`Name`].
fn parse(value: &str) -> Option<Name> {
    let value = value.trim().to_ascii_lowercase();
    let (host, port) = if value.starts_with('[') {
        let end = value.find(']')?;
        let (host, rest) = value.split_at(end + 1);
        let inside = &host[1..end];
        if inside.is_empty()
            || !inside
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return None;
        }
        (host.to_owned(), port_of(rest)?)
    } else {
        let (host, port) = match value.split_once(':') {
            Some((host, port)) => (host, port_of(&format!(":{port}"))?),
            None => (value.as_str(), None),
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        let name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
        if host.is_empty() || !host.chars().all(name) {
            return None;
        }
        (host.to_owned(), port)
    };
    Some(Name { host, port })
}

/// `""` is no port; `":N"` is port N; anything else is not a port. `Some(None)`: none.
fn port_of(rest: &str) -> Option<Option<u16>> {
    if rest.is_empty() {
        return Some(None);
    }
    let digits = rest.strip_prefix(':')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(hosts: &AllowedHosts, host: Option<&str>, uri: &str) -> Option<String> {
        let mut req = Request::get(uri);
        if let Some(h) = host {
            req = req.header("host", h);
        }
        hosts.refused(&req.body(()).unwrap())
    }

    #[test]
    fn only_the_allowed_names_pass() {
        let hosts =
            AllowedHosts::only(["localhost", "127.0.0.1", "::1", "Hub.Example.:8443"]).unwrap();
        for passes in [
            "localhost",
            "localhost:2015",
            "LOCALHOST.:80",
            "127.0.0.1:1",
            "[::1]:2015",
            "[::1]",
            "hub.example:8443",
        ] {
            assert_eq!(refused(&hosts, Some(passes), "/x"), None, "{passes}");
        }
        for refused_host in [
            "evil.example",
            "evil.example:2015",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "hub.example",
            "hub.example:443",
            "",
            "localhost:",
            "localhost:x",
            "localhost:99999",
            "[::2]:2015",
            "user@localhost",
            "local host",
        ] {
            assert!(
                refused(&hosts, Some(refused_host), "/x").is_some(),
                "{refused_host:?}"
            );
        }
        // No name at all passes; HTTP/2's (the URI's) is checked as `Host` is.
        assert_eq!(refused(&hosts, None, "/x"), None);
        assert!(refused(&hosts, None, "http://evil.example/x").is_some());
        assert_eq!(refused(&hosts, None, "http://localhost:1/x"), None);
        // Any name, when not configured.
        assert_eq!(refused(&AllowedHosts::default(), Some("evil"), "/x"), None);
    }

    #[test]
    fn entries_must_be_names() {
        for bad in ["*", "", "a b", "http://x", "[zz]", "x:y"] {
            assert_eq!(AllowedHosts::only([bad]).unwrap_err(), bad);
        }
    }
}
