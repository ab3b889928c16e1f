//! The reference Mercure hub's container variables, so that a compose file moves over
//! unchanged: `MERCURE_PUBLISHER_JWT_KEY`/`_ALG`, `MERCURE_SUBSCRIBER_JWT_KEY`/`_ALG`,
//! `MERCURE_EXTRA_DIRECTIVES` (`directives.rs`), `SERVER_NAME`, and the names before
//! its 0.11 (`JWT_KEY`, `ALLOW_ANONYMOUS`, `CORS_ALLOWED_ORIGINS`,
//! `PUBLISH_ALLOWED_ORIGINS`), which warn.
//!
//! They are read only when the hub is on (`[mercure] enabled`, `SSEHUB_MERCURE_ENABLED`):
//! they never turn it on, so that a `SERVER_NAME` (common in PHP images) or a
//! `JWT_KEY` meant for something else cannot move a room hub's listener or change it.
//! When the hub is off and some are set, one warning says so.
//!
//! Precedence, the later winning: the config file, the old names, the `MERCURE_*_JWT_*`
//! variables, `MERCURE_EXTRA_DIRECTIVES` (after the key variables, as in the reference
//! image's Caddyfile), `SERVER_NAME` (for `server.listen`); then `SSEHUB_*`, then flags.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::bail;
use toml::Value;

use super::directives;

/// A key of the configuration set from a variable.
#[derive(Debug, Clone)]
pub(crate) struct Setting {
    /// `["mercure", "anonymous"]`.
    pub path: &'static [&'static str],
    pub value: Value,
    /// Where it comes from, for messages: `MERCURE_PUBLISHER_JWT_KEY`.
    pub origin: String,
}

/// What the variables set, and what they call for saying.
#[derive(Debug, Default)]
pub(crate) struct Compat {
    pub settings: Vec<Setting>,
    pub warnings: Vec<String>,
    /// The `SERVER_NAME` that asked for HTTPS, if one did.
    pub https: Option<String>,
}

/// The key variables of the current image, and the keys they set.
const KEYS: &[(&str, &[&str])] = &[
    (
        "MERCURE_PUBLISHER_JWT_KEY",
        &["mercure", "publisher_jwt_key"],
    ),
    (
        "MERCURE_PUBLISHER_JWT_ALG",
        &["mercure", "publisher_jwt_alg"],
    ),
    (
        "MERCURE_SUBSCRIBER_JWT_KEY",
        &["mercure", "subscriber_jwt_key"],
    ),
    (
        "MERCURE_SUBSCRIBER_JWT_ALG",
        &["mercure", "subscriber_jwt_alg"],
    ),
];

/// Variables of the reference hub read here besides [`KEYS`].
const EXTRA: &str = "MERCURE_EXTRA_DIRECTIVES";
const TRANSPORT_URL: &str = "MERCURE_TRANSPORT_URL";
const TRUSTED_ISSUERS: &str = "MERCURE_TRUSTED_ISSUERS";

/// The names before the reference hub's 0.11 (its current image ignores them).
const OLD_NAMES: &[&str] = &[
    "JWT_KEY",
    "ALLOW_ANONYMOUS",
    "CORS_ALLOWED_ORIGINS",
    "PUBLISH_ALLOWED_ORIGINS",
];

/// What the apps that talk to a hub read (Symfony, Laravel): often in the same env
/// file, and none of the hub's business.
const APP_SIDE: &[&str] = &[
    "MERCURE_URL",
    "MERCURE_PUBLIC_URL",
    "MERCURE_JWT_SECRET",
    "MERCURE_SECRET",
    "MERCURE_JWT_TOKEN",
];

fn value<'a>(vars: &'a [(String, String)], name: &str) -> Option<&'a str> {
    // Empty is unset: the reference image passes `{env.X}`, "" when X is not set, and
    // compose files say `MERCURE_SUBSCRIBER_JWT_KEY: ''` to mean none.
    vars.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.trim().is_empty())
}

/// The hub's variables that are set (not the apps', nor `SERVER_NAME`, a common name):
/// for the warning when the hub is off.
pub(crate) fn hub_variables_set(vars: &[(String, String)]) -> Vec<String> {
    let mut names: Vec<String> = vars
        .iter()
        .filter(|(k, v)| {
            k.starts_with("MERCURE_") && !APP_SIDE.contains(&k.as_str()) && !v.trim().is_empty()
        })
        .map(|(k, _)| k.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Read the variables `vars` (the hub is on).
pub(crate) fn read(vars: &[(String, String)]) -> anyhow::Result<Compat> {
    let mut out = Compat::default();
    let set = |out: &mut Compat, path: &'static [&'static str], value: Value, origin: &str| {
        out.settings.push(Setting {
            path,
            value,
            origin: origin.to_owned(),
        });
    };
    for name in OLD_NAMES {
        let Some(v) = value(vars, name) else { continue };
        let (now, what) = match *name {
            "JWT_KEY" => {
                let key = Value::String(v.to_owned());
                set(
                    &mut out,
                    &["mercure", "publisher_jwt_key"],
                    key.clone(),
                    name,
                );
                set(&mut out, &["mercure", "subscriber_jwt_key"], key, name);
                (
                    "MERCURE_PUBLISHER_JWT_KEY and MERCURE_SUBSCRIBER_JWT_KEY",
                    "",
                )
            }
            "ALLOW_ANONYMOUS" => {
                let Some(b) = go_bool(v) else {
                    bail!("ALLOW_ANONYMOUS={v}: not a boolean (1, 0, true, false)");
                };
                set(&mut out, &["mercure", "anonymous"], Value::Boolean(b), name);
                ("`anonymous` in MERCURE_EXTRA_DIRECTIVES", "")
            }
            "CORS_ALLOWED_ORIGINS" | "PUBLISH_ALLOWED_ORIGINS" => {
                let list: Vec<Value> = v
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect();
                let (path, directive): (&'static [&'static str], _) =
                    if *name == "CORS_ALLOWED_ORIGINS" {
                        (&["mercure", "cors_origins"], "`cors_origins`")
                    } else {
                        (&["mercure", "publish_origins"], "`publish_origins`")
                    };
                set(&mut out, path, Value::Array(list), name);
                (directive, " in MERCURE_EXTRA_DIRECTIVES")
            }
            _ => unreachable!("one of OLD_NAMES"),
        };
        out.warnings.push(format!(
            "{name} is a name of the reference hub before 0.11 (deprecated; its current image \
             ignores it): ssehub reads it, but use {now}{what}, or the [mercure] section"
        ));
    }
    for (name, path) in KEYS {
        if let Some(v) = value(vars, name) {
            set(&mut out, path, Value::String(v.to_owned()), name);
        }
    }
    if let Some(url) = value(vars, TRANSPORT_URL) {
        let kind = url.split("://").next().unwrap_or(url);
        if !matches!(kind, "bolt" | "local") {
            bail!(
                "{TRANSPORT_URL}: the transport {kind:?} is not supported: ssehub keeps \
                 history in memory, or in Redis with [redis] url (SSEHUB_REDIS_URL)"
            );
        }
        out.warnings.push(format!(
            "{TRANSPORT_URL}: accepted, its file is not read: each topic's history is kept \
             in memory ([mercure.history]) and lost at restart, unless [mercure.history] dir \
             or [history] dir (SSEHUB_HISTORY_DIR) keeps it on disk in ssehub's own format \
             (or [redis] url in Redis)"
        ));
    }
    if let Some(v) = value(vars, TRUSTED_ISSUERS) {
        // The reference hub's list: separated by spaces (commas accepted too).
        let issuers: Vec<Value> = v
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|s| !s.is_empty())
            .map(|s| Value::String(s.to_owned()))
            .collect();
        set(
            &mut out,
            &["mercure", "issuers"],
            Value::Array(issuers),
            TRUSTED_ISSUERS,
        );
    }
    if let Some(text) = value(vars, EXTRA) {
        let env = |name: &str| value(vars, name).map(str::to_owned);
        let d = directives::parse(text, &env).map_err(anyhow::Error::msg)?;
        out.settings.extend(d.settings);
        out.warnings.extend(d.warnings);
    }
    for name in hub_variables_set(vars) {
        let known = KEYS.iter().any(|(k, _)| *k == name)
            || [EXTRA, TRANSPORT_URL, TRUSTED_ISSUERS].contains(&name.as_str());
        if !known {
            out.warnings
                .push(format!("{name} is not read by ssehub: ignored"));
        }
    }
    if let Some(raw) = value(vars, "SERVER_NAME") {
        let name = ServerName::parse(raw).map_err(|e| anyhow::anyhow!("SERVER_NAME={raw}: {e}"))?;
        set(
            &mut out,
            &["server", "listen"],
            Value::String(name.listen.to_string()),
            "SERVER_NAME",
        );
        if name.https {
            out.https = Some(raw.to_owned());
        }
    }
    Ok(out)
}

/// Go's `strconv.ParseBool`, which the reference hub read `ALLOW_ANONYMOUS` with.
fn go_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// What `SERVER_NAME` (Caddy's site address in the reference image) means for the
/// listener.
///
/// Caddy listens on every interface whatever the name; it serves plain HTTP for `:PORT`
/// (no name), `http://...` and port 80, and HTTPS otherwise (`localhost`,
/// `example.com`, `example.com:8443`, `https://...`), with a certificate it obtains.
/// Here: the address to listen on (the named IP if it is one, else `0.0.0.0`) and the
/// port; HTTPS needs `[tls]`'s certificate (ssehub obtains none). Several addresses
/// (`localhost, example.com`) must agree on the port and the scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerName {
    pub listen: SocketAddr,
    pub https: bool,
}

impl ServerName {
    pub(crate) fn parse(raw: &str) -> Result<ServerName, String> {
        let mut found: Option<ServerName> = None;
        for addr in raw
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|a| !a.is_empty())
        {
            let one = Self::one(addr)?;
            match &found {
                Some(f) if *f != one => {
                    return Err(format!(
                        "its addresses differ in port, scheme or IP ({} and {}): ssehub \
                         listens on one address (set server.listen, and server.also_listen \
                         for plain HTTP beside TLS)",
                        f.describe(),
                        one.describe()
                    ))
                }
                _ => found = Some(one),
            }
        }
        found.ok_or_else(|| "no address".to_owned())
    }

    fn describe(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme} on {}", self.listen)
    }

    fn one(addr: &str) -> Result<ServerName, String> {
        let (scheme, rest) = match addr.split_once("://") {
            Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
            None => (None, addr),
        };
        if let Some(s) = scheme.as_deref().filter(|s| *s != "http" && *s != "https") {
            return Err(format!("the scheme {s:?} is not http or https"));
        }
        if rest.contains('/') {
            return Err(format!(
                "{addr:?} has a path: site addresses with paths are not supported (the hub \
                 is at /.well-known/mercure)"
            ));
        }
        let (host, port) =
            split_host_port(rest).ok_or_else(|| format!("{addr:?} is not host:port"))?;
        let port: Option<u16> = match port {
            Some(p) => Some(p.parse().map_err(|_| format!("{addr:?}: bad port {p:?}"))?),
            None => None,
        };
        // Caddy's rule: plain HTTP without a name to get a certificate for, for http://
        // and for port 80; HTTPS for everything else.
        let https = match scheme.as_deref() {
            Some("http") => false,
            Some(_) => true,
            None => !host.is_empty() && port != Some(80),
        };
        let port = port.unwrap_or(if https { 443 } else { 80 });
        let ip: IpAddr = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        Ok(ServerName {
            listen: SocketAddr::new(ip, port),
            https,
        })
    }
}

/// `host:port`, `[v6]:port`, `[v6]`, `:port`, `host`.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if s.starts_with('[') {
        let end = s.find(']')?;
        let (host, rest) = s.split_at(end + 1);
        return match rest {
            "" => Some((host, None)),
            r => Some((host, Some(r.strip_prefix(':')?))),
        };
    }
    match s.rsplit_once(':') {
        Some((h, _)) if h.contains(':') => Some((s, None)), // a bare IPv6 address
        Some((h, p)) => Some((h, Some(p))),
        None => Some((s, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn paths(c: &Compat) -> Vec<String> {
        c.settings
            .iter()
            .map(|s| format!("{} = {} ({})", s.path.join("."), s.value, s.origin))
            .collect()
    }

    #[test]
    fn server_names_as_caddy_reads_them() {
        let listen = |s: &str| {
            let n = ServerName::parse(s).unwrap();
            (n.listen.to_string(), n.https)
        };
        assert_eq!(listen(":80"), ("0.0.0.0:80".into(), false));
        assert_eq!(listen(":3000"), ("0.0.0.0:3000".into(), false));
        assert_eq!(
            listen("http://localhost:8080"),
            ("0.0.0.0:8080".into(), false)
        );
        assert_eq!(listen("http://example.com"), ("0.0.0.0:80".into(), false));
        assert_eq!(listen("example.com:80"), ("0.0.0.0:80".into(), false));
        assert_eq!(listen("localhost"), ("0.0.0.0:443".into(), true));
        assert_eq!(listen("example.com:443"), ("0.0.0.0:443".into(), true));
        assert_eq!(listen("localhost:8443"), ("0.0.0.0:8443".into(), true));
        assert_eq!(listen("https://example.com"), ("0.0.0.0:443".into(), true));
        assert_eq!(listen("127.0.0.1:9000"), ("127.0.0.1:9000".into(), true));
        assert_eq!(listen("http://[::1]:9000"), ("[::1]:9000".into(), false));
        assert_eq!(
            listen("localhost, example.com"),
            ("0.0.0.0:443".into(), true)
        );
        for bad in [":http", "ftp://x", "x.com/path", ":80 localhost", ""] {
            assert!(ServerName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_variables_set_keys_in_order_and_old_names_warn() {
        let c = read(&vars(&[
            ("JWT_KEY", "old"),
            ("ALLOW_ANONYMOUS", "1"),
            ("MERCURE_PUBLISHER_JWT_KEY", "new"),
            ("MERCURE_SUBSCRIBER_JWT_KEY", ""),
            (
                "MERCURE_EXTRA_DIRECTIVES",
                "cookie_name c\npublisher_jwt newest",
            ),
            ("SERVER_NAME", ":8080"),
            ("MERCURE_URL", "http://app/.well-known/mercure"),
        ]))
        .unwrap();
        assert_eq!(
            paths(&c),
            [
                r#"mercure.publisher_jwt_key = "old" (JWT_KEY)"#,
                r#"mercure.subscriber_jwt_key = "old" (JWT_KEY)"#,
                "mercure.anonymous = true (ALLOW_ANONYMOUS)",
                r#"mercure.publisher_jwt_key = "new" (MERCURE_PUBLISHER_JWT_KEY)"#,
                r#"mercure.cookie_name = "c" (MERCURE_EXTRA_DIRECTIVES (cookie_name, line 1))"#,
                r#"mercure.publisher_jwt_key = "newest" (MERCURE_EXTRA_DIRECTIVES (publisher_jwt, line 2))"#,
                r#"server.listen = "0.0.0.0:8080" (SERVER_NAME)"#,
            ]
        );
        let warned = c.warnings.join("\n");
        assert_eq!(c.warnings.len(), 2, "{warned}");
        assert!(warned.contains("JWT_KEY is a name") && warned.contains("ALLOW_ANONYMOUS"));
        assert!(!warned.contains("old"), "no value: {warned}");
        assert_eq!(c.https, None);
        let e = read(&vars(&[("ALLOW_ANONYMOUS", "maybe")])).unwrap_err();
        assert!(e.to_string().contains("ALLOW_ANONYMOUS"), "{e}");
    }

    #[test]
    fn unknown_hub_variables_warn_and_app_variables_are_left_alone() {
        let v = vars(&[
            ("MERCURE_PUBLISHER_JWT_KEY", "k"),
            ("MERCURE_JWT_SECRET", "app"),
            ("MERCURE_DEBUG", "1"),
            ("SERVER_NAME", "example.com"),
        ]);
        assert_eq!(
            hub_variables_set(&v),
            ["MERCURE_DEBUG", "MERCURE_PUBLISHER_JWT_KEY"]
        );
        let c = read(&v).unwrap();
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("MERCURE_DEBUG"));
        assert_eq!(c.https.as_deref(), Some("example.com"));
    }
}
