//! `[mercure]`: the Mercure hub at `/.well-known/mercure` (off by default), and how its
//! JWT keys are read.
//!
//! A key goes with its algorithm, which is the configuration's, never the token's: an
//! HMAC secret for HS256/384/512; for RS*, PS*, ES* and EdDSA a PEM public key, inline
//! (the value starts with `-----BEGIN`) or the path of a file holding it. A combination
//! that cannot work is an error naming the key, never showing its value (a secret given
//! where a path was expected is still a secret).

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail};
use serde::{Deserialize, Serialize};
use ssehub::{JwtAlgorithm, JwtVerifier};

use super::{units, HistorySection};

/// The Mercure hub.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct MercureSection {
    /// Serve the hub at `/.well-known/mercure`.
    pub enabled: bool,
    /// The publishers' key: an HMAC secret, or a PEM public key (inline or a path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publisher_jwt_key: Option<String>,
    pub publisher_jwt_alg: String,
    /// The subscribers' key (none: only anonymous subscribers, if `anonymous`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriber_jwt_key: Option<String>,
    pub subscriber_jwt_alg: String,
    /// Subscribers without a token get public updates.
    pub anonymous: bool,
    /// The web pages that may subscribe from another origin, with their cookies.
    #[serde(with = "units::list")]
    pub cors_origins: Vec<String>,
    /// The origins whose pages may publish with the cookie (`*`: any).
    #[serde(with = "units::list")]
    pub publish_origins: Vec<String>,
    pub cookie_name: String,
    /// 0: off.
    #[serde(with = "units::seconds")]
    pub heartbeat: Duration,
    /// Topics one update may have.
    pub max_topics: usize,
    /// Topic selectors one subscriber may send.
    pub max_selectors: usize,
    /// The largest publish body, in bytes.
    pub max_body: usize,
    /// Each topic's history, shaped as `[history]`.
    pub history: HistorySection,
    /// Mercure 1.0: the `aud` every access token must carry (the hub's resource
    /// identifier; none: no 1.0 token is accepted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The hub's public URL, the base of relative URL patterns and topics (default: the
    /// resource when it is a URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub_url: Option<String>,
    /// Mercure 1.0: trusted `iss`, verified with the publisher/subscriber keys (none and
    /// no `[[mercure.issuer]]`: any issuer, self-issued tokens).
    #[serde(with = "units::list")]
    pub issuers: Vec<String>,
    /// Mercure 1.0: issuers with keys of their own (`[[mercure.issuer]]`).
    #[serde(rename = "issuer", skip_serializing_if = "Vec::is_empty")]
    pub issuer_keys: Vec<IssuerSection>,
    /// Subscription events and the subscriptions API.
    pub subscriptions: bool,
}

/// `[[mercure.issuer]]`: a trusted issuer and the key its tokens are signed with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct IssuerSection {
    /// Its `iss`.
    pub name: String,
    /// An HMAC secret, or a PEM public key (inline or a path).
    pub key: String,
    pub alg: String,
}

impl Default for MercureSection {
    fn default() -> Self {
        MercureSection {
            enabled: false,
            publisher_jwt_key: None,
            publisher_jwt_alg: "HS256".into(),
            subscriber_jwt_key: None,
            subscriber_jwt_alg: "HS256".into(),
            anonymous: false,
            cors_origins: Vec::new(),
            publish_origins: Vec::new(),
            cookie_name: "mercureAuthorization".into(),
            heartbeat: Duration::from_secs(40),
            max_topics: 100,
            max_selectors: 100,
            max_body: 1024 * 1024,
            history: HistorySection::default(),
            resource: None,
            hub_url: None,
            issuers: Vec::new(),
            issuer_keys: Vec::new(),
            subscriptions: false,
        }
    }
}

/// The secret of the reference hub's examples.
const EXAMPLE_SECRET: &str = "!ChangeThisMercureHubJWTSecretKey!";

/// Whose key: the publishers' or the subscribers'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Publisher,
    Subscriber,
}

impl Role {
    /// The config key of this role's key.
    pub(crate) fn key_field(self) -> &'static str {
        match self {
            Role::Publisher => "mercure.publisher_jwt_key",
            Role::Subscriber => "mercure.subscriber_jwt_key",
        }
    }

    /// The config key of this role's algorithm.
    pub(crate) fn alg_field(self) -> &'static str {
        match self {
            Role::Publisher => "mercure.publisher_jwt_alg",
            Role::Subscriber => "mercure.subscriber_jwt_alg",
        }
    }
}

impl MercureSection {
    /// This role's key and algorithm, as configured.
    fn key_of(&self, role: Role) -> (Option<&str>, &str) {
        match role {
            Role::Publisher => (
                self.publisher_jwt_key.as_deref(),
                self.publisher_jwt_alg.as_str(),
            ),
            Role::Subscriber => (
                self.subscriber_jwt_key.as_deref(),
                self.subscriber_jwt_alg.as_str(),
            ),
        }
    }

    /// This role's verifier (`None`: no key configured), and what kind of key it is, for
    /// the startup line. `named` says a config key with where its value came from.
    pub(crate) fn verifier(
        &self,
        role: Role,
        named: &dyn Fn(&str) -> String,
    ) -> anyhow::Result<Option<(JwtVerifier, String)>> {
        let (Some(key), alg) = self.key_of(role) else {
            return Ok(None);
        };
        verifier(key, alg, &named(role.key_field()), &named(role.alg_field())).map(Some)
    }

    /// The issuers with keys of their own, each with its verifier; errors name the
    /// issuer's entry, never the key.
    pub(crate) fn issuer_verifiers(&self) -> anyhow::Result<Vec<(String, JwtVerifier)>> {
        self.issuer_keys
            .iter()
            .enumerate()
            .map(|(i, is)| {
                let at = format!("mercure.issuer[{i}]");
                if is.name.is_empty() {
                    bail!("{at}.name is empty: name the issuer (its tokens' iss)");
                }
                let alg = if is.alg.is_empty() {
                    "HS256"
                } else {
                    is.alg.as_str()
                };
                let (v, _) = verifier(&is.key, alg, &format!("{at}.key"), &format!("{at}.alg"))?;
                Ok((is.name.clone(), v))
            })
            .collect()
    }

    /// A warning for each key that is the reference hub's example secret: it is in
    /// every tutorial and compose file, so anyone can sign tokens with it.
    pub(crate) fn well_known_keys(&self, named: &dyn Fn(&str) -> String) -> Vec<String> {
        [Role::Publisher, Role::Subscriber]
            .into_iter()
            .filter(|r| self.key_of(*r).0 == Some(EXAMPLE_SECRET))
            .map(|r| {
                format!(
                    "{} is the reference hub's example secret, published in its \
                     documentation: anyone can sign tokens with it; use a long random one",
                    named(r.key_field())
                )
            })
            .collect()
    }

    /// One line saying what the hub runs with, keys hidden.
    pub(crate) fn describe(
        &self,
        redis_prefix: Option<&str>,
        dir: Option<&std::path::Path>,
    ) -> String {
        let key = |role: Role| -> String {
            match self.key_of(role) {
                (None, _) => "none".into(),
                (Some(key), alg) => format!("{alg} {}", key_kind(key, alg)),
            }
        };
        let off = |d: Duration| {
            if d.is_zero() {
                "off".to_owned()
            } else {
                format!("{} s", d.as_secs_f64())
            }
        };
        let h = &self.history;
        let history = if h.enabled {
            format!(
                "{} events, {} bytes, {} per topic, {} bytes in all, {}",
                h.max_events,
                h.max_bytes,
                off(h.max_age),
                h.total_bytes,
                match (redis_prefix, dir) {
                    (Some(p), _) => format!("in Redis (prefix {p})"),
                    (None, Some(dir)) => format!("on disk in {}", dir.display()),
                    (None, None) => "in memory".into(),
                }
            )
        } else {
            "off".into()
        };
        format!(
            "Mercure hub at {}: publisher key {}; subscriber key {}; anonymous = {}; \
             cors_origins = {:?}; publish_origins = {:?}; cookie_name = {:?}; heartbeat {}; \
             max_topics = {}, max_selectors = {}, max_body = {} bytes; history: {history}; \
             1.0: resource = {}, issuers = {:?}, issuer keys for {:?}; subscriptions = {}",
            ssehub::MERCURE_PATH,
            key(Role::Publisher),
            key(Role::Subscriber),
            self.anonymous,
            self.cors_origins,
            self.publish_origins,
            self.cookie_name,
            off(self.heartbeat),
            self.max_topics,
            self.max_selectors,
            self.max_body,
            self.resource
                .as_deref()
                .map_or("none (no 1.0 token accepted)".to_owned(), |r| format!(
                    "{r:?}"
                )),
            self.issuers,
            self.issuer_keys.iter().map(|i| &i.name).collect::<Vec<_>>(),
            self.subscriptions,
        )
    }
}

/// What kind of key `key` is for `alg`, never the key itself.
fn key_kind(key: &str, alg: &str) -> &'static str {
    let hmac = alg.to_ascii_uppercase().starts_with("HS");
    if hmac {
        "secret (hidden)"
    } else if is_pem(key) {
        "public key (inline PEM, hidden)"
    } else {
        "public key (from a file, path hidden)"
    }
}

fn is_pem(key: &str) -> bool {
    key.trim_start().starts_with("-----BEGIN")
}

/// The algorithm `alg`, or an error naming `alg_name`. A value that is not an
/// algorithm's name is shown only when short: a key written where the algorithm goes
/// (`publisher_jwt ALG KEY`) must not be printed.
pub(crate) fn algorithm(alg: &str, alg_name: &str) -> anyhow::Result<JwtAlgorithm> {
    alg.parse::<JwtAlgorithm>().map_err(|_| {
        let shown = if alg.len() <= 8 && alg.chars().all(|c| c.is_ascii_alphanumeric()) {
            format!("{alg:?}")
        } else {
            "(not shown: it may be a key written in the algorithm's place)".into()
        };
        anyhow!(
            "{alg_name} = {shown}: not a JWT algorithm (HS256, HS384, HS512, RS256, RS384, \
             RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"
        )
    })
}

/// A verifier of tokens signed by `alg` with `key`; errors name `key_name` and
/// `alg_name`, never the key's value.
pub(crate) fn verifier(
    key: &str,
    alg: &str,
    key_name: &str,
    alg_name: &str,
) -> anyhow::Result<(JwtVerifier, String)> {
    let algorithm = algorithm(alg, alg_name)?;
    let kind = format!("{alg} {}", key_kind(key, alg));
    if key.is_empty() {
        bail!("{key_name} is empty: an empty key would accept forged tokens");
    }
    if alg.to_ascii_uppercase().starts_with("HS") {
        if is_pem(key) {
            bail!(
                "{key_name} is a PEM key, but {alg_name} = {alg:?} would use its text as an \
                 HMAC secret (anyone holding the public key could sign): set {alg_name} to \
                 the key's algorithm (RS256, ES256, EdDSA, ...)"
            );
        }
        let v =
            JwtVerifier::hmac(algorithm, key.as_bytes()).map_err(|e| anyhow!("{key_name}: {e}"))?;
        return Ok((v, kind));
    }
    let (pem, from) = if is_pem(key) {
        (key.as_bytes().to_vec(), "inline PEM")
    } else {
        match std::fs::read(Path::new(key)) {
            Ok(bytes) => (bytes, "the file it names"),
            Err(e) => bail!(
                "{key_name}: with {alg_name} = {alg:?} the key is a PEM public key, inline \
                 (starting with -----BEGIN) or the path of a file holding one; the value is \
                 neither (read as a path: {e}; the value is not shown)"
            ),
        }
    };
    let v = JwtVerifier::public_key_pem(&pem, Some(algorithm)).map_err(|e| {
        anyhow!("{key_name} ({from}): {e} (a public key, `BEGIN PUBLIC KEY`, not the private key)")
    })?;
    Ok((v, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh EC P-256 public key, PEM.
    fn ec_public_pem() -> String {
        rcgen::KeyPair::generate().unwrap().public_key_pem()
    }

    fn err(key: &str, alg: &str) -> String {
        match verifier(key, alg, "mercure.k", "mercure.a") {
            Ok(_) => panic!("{alg} with that key was accepted"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn keys_go_with_their_algorithms() {
        assert!(verifier("s3cret-s3cret", "HS256", "k", "a").is_ok());
        assert!(verifier("s3cret-s3cret", "HS512", "k", "a").is_ok());
        let pem = ec_public_pem();
        let (v, kind) = verifier(&pem, "ES256", "k", "a").unwrap();
        assert_eq!(v.algorithm(), JwtAlgorithm::ES256);
        assert!(kind.contains("inline PEM"), "{kind}");
        let dir = std::env::temp_dir().join(format!("ssehub-mkey-{}.pem", std::process::id()));
        std::fs::write(&dir, &pem).unwrap();
        let (_, kind) = verifier(dir.to_str().unwrap(), "ES256", "k", "a").unwrap();
        assert!(kind.contains("file"), "{kind}");
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn the_example_secret_is_warned_of() {
        let mut m = MercureSection {
            publisher_jwt_key: Some(EXAMPLE_SECRET.into()),
            subscriber_jwt_key: Some("another".into()),
            ..MercureSection::default()
        };
        let warned = m.well_known_keys(&|k| k.to_owned());
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(warned[0].starts_with("mercure.publisher_jwt_key is the reference"));
        m.publisher_jwt_key = Some("a long random one".into());
        assert!(m.well_known_keys(&|k| k.to_owned()).is_empty());
    }

    #[test]
    fn wrong_combinations_name_the_key_and_never_show_it() {
        let pem = ec_public_pem();
        let body = pem.lines().nth(1).unwrap();
        let e = err(&pem, "HS256");
        assert!(e.contains("mercure.k") && e.contains("PEM"), "{e}");
        assert!(!e.contains(body), "{e}");
        let e = err("my-hmac-s3cret", "RS256");
        assert!(
            e.contains("mercure.k") && !e.contains("my-hmac-s3cret"),
            "{e}"
        );
        let e = err(&pem, "RS256");
        assert!(e.contains("mercure.k") && e.contains("RS256"), "{e}");
        assert!(!e.contains(body), "{e}");
        let e = err("", "HS256");
        assert!(e.contains("empty"), "{e}");
        let e = err("x", "HS257");
        assert!(e.contains("mercure.a") && e.contains("HS257"), "{e}");
        // A key written where the algorithm goes is not printed.
        let e = err("HS256", "a-long-s3cret-in-the-wrong-place");
        assert!(e.contains("mercure.a") && !e.contains("s3cret"), "{e}");
        let e = err(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "ES256",
        );
        assert!(e.contains("public key") && !e.contains("AAAA"), "{e}");
    }
}
