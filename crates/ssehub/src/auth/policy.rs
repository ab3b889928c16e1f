//! [`Auth`]: where a request's token is looked for, what it must grant, and what
//! anonymous clients may do without one.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::{StatusCode, Uri};
use subtle::ConstantTimeEq;

use super::budget::FailureBudget;
use super::cache::{digest, TokenCache};
use super::{AuthError, Identity, TokenVerifier};
use crate::selector::RoomSelector;

/// The default name of the cookie a token is read from.
const COOKIE: &str = "ssehub_token";
/// The default query parameter a token is read from (for `EventSource`, which cannot set
/// headers).
const QUERY: &str = "access_token";
/// How many good tokens, and how many bad ones, are remembered by default.
const CACHED_TOKENS: usize = 4096;
/// Failed verifications one address may have by default: 20 at once, 20 more every
/// 10 s. An honest client's bad token is remembered after its first failure, so what
/// spends the budget is distinct bad tokens: a NAT's users whose tokens expire, or
/// someone making them up; 2 a second cost under 0.1 % of a core even for ES256.
const FAILURES: (u32, Duration) = (20, Duration::from_secs(10));

/// The auth policy of an SSE endpoint ([`crate::SseOptions::auth`]) and of the HTTP API
/// ([`crate::HubApi::auth`]).
///
/// A request's token is the first of: `Authorization: Bearer <token>`, the cookie
/// `ssehub_token` ([`Auth::cookie`]), the query parameter `access_token`
/// ([`Auth::query_parameter`]). A query parameter ends up in access logs and proxies'
/// logs, and in the browser's history: prefer the cookie where the page and the hub
/// share a site, and keep such tokens short-lived.
///
/// - Subscribing: every room a stream asks for (its `?room=`s and the auto-join room)
///   must be granted by the token's `subscribe` selectors, or allowed anonymously
///   ([`Auth::allow_anonymous_subscribe`]); else 403 naming the room. No token where
///   one is needed, or an invalid one, is 401 with `WWW-Authenticate: Bearer` and the
///   reason. A stream is ended at its token's expiry, after an event `ssehub.expired`.
/// - Publishing: every target room must be granted by the token's `publish` selectors;
///   without a token, 401 unless [`Auth::allow_anonymous_publish`].
/// - The operator's endpoints (`/stats`): a token whose claims say `"admin": true`, or
///   the static [`Auth::admin_token`].
///
/// Verifying a signature costs far more than serving a request (ES256: about 0.3 ms), so
/// what a token verified to is remembered ([`Auth::token_cache`]): a good token until
/// its `exp` (at most 5 minutes), a bad one for a minute. And a client address whose
/// tokens keep failing has its next ones refused unverified, with `429 Too Many
/// Requests`, until its budget refills ([`Auth::token_failure_budget`]; streams only:
/// the HTTP API's routes do not know the client's address).
///
/// ```
/// # #[cfg(feature = "jwt")] {
/// use ssehub::{Auth, JwtVerifier, SseOptions};
///
/// let jwt = JwtVerifier::hmac(ssehub::JwtAlgorithm::HS256, b"a long random secret")?;
/// let auth = Auth::new(jwt).allow_anonymous_subscribe(["public.*".parse()?]);
/// let sse = SseOptions::new().no_auto_join().rooms_from_query(true).auth(auth);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Auth {
    verifier: Option<Arc<dyn TokenVerifier>>,
    cookie: Option<String>,
    query: Option<String>,
    anonymous_subscribe: Vec<RoomSelector>,
    anonymous_publish: bool,
    admin_token: Option<Arc<[u8]>>,
    cache: Option<Arc<TokenCache>>,
    failures: Option<Arc<FailureBudget>>,
}

/// Where a request's token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenSource {
    /// `Authorization: Bearer`: set by the client's own code.
    Header,
    /// The cookie: sent by a browser whichever page makes the request.
    Cookie,
    /// The query parameter: in the URL the client asked for.
    Query,
}

/// Why a request is refused: the status and what the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Denied {
    /// 401: no token where one is needed, or one that is not valid.
    Unauthorized(AuthError),
    /// 403: a valid token (or none) that does not grant this.
    Forbidden(String),
    /// 429: the client's address has had too many tokens fail: this one was not
    /// checked. Try again after this many seconds.
    Throttled(u64),
}

impl Denied {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Denied::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Denied::Forbidden(_) => StatusCode::FORBIDDEN,
            Denied::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The `WWW-Authenticate` value (RFC 6750).
    pub(crate) fn challenge(&self) -> HeaderValue {
        match self {
            Denied::Unauthorized(e) => unauthorized_challenge(Some(e)),
            Denied::Forbidden(_) => {
                HeaderValue::from_static("Bearer realm=\"ssehub\", error=\"insufficient_scope\"")
            }
            // Not a verdict on the token, which was not read.
            Denied::Throttled(_) => unauthorized_challenge(None),
        }
    }

    /// What the client is told.
    pub(crate) fn message(&self) -> String {
        match self {
            Denied::Unauthorized(e) => e.to_string(),
            Denied::Forbidden(why) => why.clone(),
            Denied::Throttled(_) => {
                "too many invalid tokens from this address: try again later".into()
            }
        }
    }
}

/// `WWW-Authenticate: Bearer` for a 401: without an error when no token came (RFC 6750,
/// 3.1), else `invalid_token` and the reason's code.
fn unauthorized_challenge(why: Option<&AuthError>) -> HeaderValue {
    let value = match why {
        None | Some(AuthError::Missing) => {
            return HeaderValue::from_static("Bearer realm=\"ssehub\"")
        }
        Some(e) => format!(
            "Bearer realm=\"ssehub\", error=\"invalid_token\", error_description=\"{}\"",
            e.code()
        ),
    };
    HeaderValue::from_str(&value).expect("codes are plain ASCII")
}

impl Auth {
    /// Tokens verified by `verifier`; nothing anonymous; the token looked for in the
    /// `Authorization` header, the `ssehub_token` cookie and the `access_token` query
    /// parameter.
    pub fn new(verifier: impl TokenVerifier) -> Auth {
        Auth {
            verifier: Some(Arc::new(verifier)),
            ..Auth::without_tokens()
        }
    }

    /// No tokens but the static [`Auth::admin_token`], if set: what anonymous clients
    /// may do is all anyone may do.
    pub fn without_tokens() -> Auth {
        Auth {
            verifier: None,
            cookie: Some(COOKIE.into()),
            query: Some(QUERY.into()),
            anonymous_subscribe: Vec::new(),
            anonymous_publish: false,
            admin_token: None,
            cache: Some(Arc::new(TokenCache::new(CACHED_TOKENS))),
            failures: Some(Arc::new(FailureBudget::new(FAILURES.0, FAILURES.1))),
        }
    }

    /// How many verified tokens are remembered (4,096 good ones and 4,096 bad ones by
    /// default; `None`: none, every token is verified). A token is remembered by its
    /// SHA-256, never kept: a good one until its identity's expiry (its `exp`) and at
    /// most 5 minutes, so a token is refused at its `exp` whether it was remembered or
    /// not; a bad one for a minute (but not one refused as not valid yet, which may be
    /// valid in a moment). The oldest entry goes first when the table is full, and bad
    /// tokens have a table of their own, so a flood of them never evicts good ones.
    ///
    /// Turn it off for a [`TokenVerifier`] whose answer for a token changes (one that
    /// consults a revocation list, say): with it on, a revoked token may be served for up
    /// to 5 minutes more.
    ///
    /// ```
    /// # #[cfg(feature = "jwt")] {
    /// let jwt = ssehub::JwtVerifier::hmac(ssehub::JwtAlgorithm::HS256, b"a long random secret")?;
    /// let auth = ssehub::Auth::new(jwt).token_cache(Some(100_000));
    /// # }
    /// # Ok::<(), ssehub::JwtKeyError>(())
    /// ```
    pub fn token_cache(mut self, capacity: Option<usize>) -> Auth {
        self.cache = capacity.map(|n| Arc::new(TokenCache::new(n)));
        self
    }

    /// How many tokens may fail verification from one client address (IPv6 per /64,
    /// behind `SseOptions::trusted_proxies` the client's): `(max, per)`, at most `max`
    /// at once, `max` more every `per` (20 per 10 s by default; `None`: no limit). Past
    /// it, a stream whose token is not already known is refused with `429 Too Many
    /// Requests` and `Retry-After`, without its signature being checked; other addresses
    /// are served, and a token already known as good (or bad) is answered as usual. It
    /// bounds what a client sending made-up tokens costs: a signature check (ES256:
    /// about 0.3 ms) per token it may send, then nothing. 4,096 addresses are followed at
    /// once (those that failed most recently).
    ///
    /// 429 rather than 401: the token was not checked, and may well be good; a client
    /// that gets 401 is told its token is bad.
    ///
    /// ```
    /// # #[cfg(feature = "jwt")] {
    /// use std::time::Duration;
    ///
    /// let jwt = ssehub::JwtVerifier::hmac(ssehub::JwtAlgorithm::HS256, b"a long random secret")?;
    /// let auth = ssehub::Auth::new(jwt).token_failure_budget(Some((20, Duration::from_secs(60))));
    /// # }
    /// # Ok::<(), ssehub::JwtKeyError>(())
    /// ```
    pub fn token_failure_budget(mut self, budget: Option<(u32, Duration)>) -> Auth {
        self.failures = budget.map(|(max, per)| Arc::new(FailureBudget::new(max, per)));
        self
    }

    /// The cookie a token is read from (`ssehub_token`; `None`: no cookie).
    pub fn cookie(mut self, name: Option<&str>) -> Auth {
        self.cookie = name.map(str::to_owned);
        self
    }

    /// The query parameter a token is read from (`access_token`; `None`: none).
    pub fn query_parameter(mut self, name: Option<&str>) -> Auth {
        self.query = name.map(str::to_owned);
        self
    }

    /// Rooms anyone may subscribe to, with a token or without.
    pub fn allow_anonymous_subscribe(
        mut self,
        rooms: impl IntoIterator<Item = RoomSelector>,
    ) -> Auth {
        self.anonymous_subscribe.extend(rooms);
        self
    }

    /// Whether a publish without a token is accepted (to any room; off by default).
    pub fn allow_anonymous_publish(mut self, allow: bool) -> Auth {
        self.anonymous_publish = allow;
        self
    }

    /// A static token for the operator's endpoints (compared in constant time).
    pub fn admin_token(mut self, token: impl AsRef<str>) -> Auth {
        self.admin_token = Some(token.as_ref().as_bytes().into());
        self
    }

    /// The request's token: the first of the bearer header, the cookie, the query
    /// parameter.
    pub fn token<'a>(&self, headers: &'a HeaderMap, uri: &Uri) -> Option<Cow<'a, str>> {
        self.located_token(headers, uri).map(|(token, _)| token)
    }

    /// Where the request's token comes from, if it has one ([`Auth::token`]'s order).
    /// The cookie is the one source a browser adds by itself, to requests that pages of
    /// other origins make: what it authorizes must be checked for where it comes from.
    pub(crate) fn token_source(&self, headers: &HeaderMap, uri: &Uri) -> Option<TokenSource> {
        self.located_token(headers, uri).map(|(_, source)| source)
    }

    fn located_token<'a>(
        &self,
        headers: &'a HeaderMap,
        uri: &Uri,
    ) -> Option<(Cow<'a, str>, TokenSource)> {
        if let Some(t) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()))
        {
            return Some((Cow::Borrowed(t), TokenSource::Header));
        }
        if let Some(t) = self.cookie.as_deref().and_then(|n| cookie(headers, n)) {
            return Some((Cow::Borrowed(t), TokenSource::Cookie));
        }
        let name = self.query.as_deref()?;
        form_urlencoded::parse(uri.query()?.as_bytes())
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| (Cow::Owned(v.into_owned()), TokenSource::Query))
    }

    /// Who the request is: `Ok(None)` without a token, an error for a token that is not
    /// valid.
    pub fn identify(&self, headers: &HeaderMap, uri: &Uri) -> Result<Option<Identity>, AuthError> {
        match self.token(headers, uri) {
            Some(token) => self.identity_of(&token).map(Some),
            None => Ok(None),
        }
    }

    /// The identity `token` stands for: the operator's, for the admin token; else the
    /// verifier's.
    fn identity_of(&self, token: &str) -> Result<Identity, AuthError> {
        self.verified(token, None).map_err(|denied| match denied {
            Denied::Unauthorized(e) => e,
            _ => unreachable!("without an address, only the token's verdict"),
        })
    }

    /// [`Auth::identity_of`], for a request from `from`: through the cache, and refused
    /// unverified if `from` has spent its budget of failures.
    fn verified(&self, token: &str, from: Option<IpAddr>) -> Result<Identity, Denied> {
        if let Some(admin) = &self.admin_token {
            // Different lengths say no at once: only the length leaks. An empty token
            // is no credential, even against an empty admin token.
            if !token.is_empty() && bool::from(token.as_bytes().ct_eq(admin)) {
                return Ok(Identity::new("admin").admin(true));
            }
        }
        let Some(verifier) = &self.verifier else {
            return Err(Denied::Unauthorized(AuthError::NotAccepted));
        };
        let key = self.cache.as_ref().map(|cache| (cache, digest(token)));
        if let Some(known) = key.as_ref().and_then(|(cache, key)| cache.get(key)) {
            return known.map_err(Denied::Unauthorized);
        }
        let budget = self.failures.as_ref().zip(from);
        if let Some((budget, ip)) = budget {
            if !budget.allows(ip) {
                return Err(Denied::Throttled(budget.retry_after()));
            }
        }
        let verdict = verifier.verify(token);
        if let (Err(_), Some((budget, ip))) = (&verdict, budget) {
            budget.charge(ip);
        }
        if let Some((cache, key)) = key {
            cache.put(key, &verdict);
        }
        verdict.map_err(Denied::Unauthorized)
    }

    /// Admit a stream from `from` that asks for `rooms`: its identity (`None`:
    /// anonymous), or why not.
    pub(crate) fn admit_stream<'r>(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        from: Option<IpAddr>,
        rooms: impl IntoIterator<Item = &'r str>,
    ) -> Result<Option<Identity>, Denied> {
        let identity = match self.token(headers, uri) {
            Some(token) => Some(self.verified(&token, from)?),
            None => None,
        };
        // Within the leeway a token past its `exp` still verifies; a stream it opened
        // would be ended at once, and its client would come back with it at once.
        if identity
            .as_ref()
            .and_then(Identity::expiry)
            .is_some_and(|at| at <= std::time::SystemTime::now())
        {
            return Err(Denied::Unauthorized(AuthError::Expired));
        }
        let anonymous = |room: &str| self.anonymous_subscribe.iter().any(|s| s.matches(room));
        let mut asked = false;
        for room in rooms {
            asked = true;
            let granted = identity.as_ref().is_some_and(|id| id.may_subscribe(room));
            if granted || anonymous(room) {
                continue;
            }
            return Err(match identity {
                None => Denied::Unauthorized(AuthError::Missing),
                Some(_) => Denied::Forbidden(format!("this token may not subscribe to {room:?}")),
            });
        }
        if identity.is_none() && !asked && self.anonymous_subscribe.is_empty() {
            return Err(Denied::Unauthorized(AuthError::Missing));
        }
        Ok(identity)
    }

    /// The identity a publish is made as (the rooms are checked with
    /// [`Identity::may_publish`] once known), or why there is none.
    pub(crate) fn publisher(&self, headers: &HeaderMap, uri: &Uri) -> Result<Identity, Denied> {
        // What anyone may do, a token holder may do too (as with subscribing): a valid
        // token never narrows open publishing; an invalid one is still refused.
        let open = || self.anonymous_publish.then(RoomSelector::any);
        match self.identify(headers, uri) {
            Ok(Some(id)) => Ok(id.publish(open())),
            Ok(None) if self.anonymous_publish => Ok(Identity::anonymous().publish(open())),
            Ok(None) => Err(Denied::Unauthorized(AuthError::Missing)),
            Err(e) => Err(Denied::Unauthorized(e)),
        }
    }

    /// The identity of `token` if it alone opens the operator's endpoints (the admin
    /// token, or a valid token with `"admin": true`), for a token that came by another
    /// way than the request's usual sources.
    pub(crate) fn operator_identity(&self, token: &str) -> Option<Identity> {
        self.identity_of(token).ok().filter(Identity::is_admin)
    }

    /// `Ok` if the request may use the operator's endpoints.
    pub(crate) fn operator(&self, headers: &HeaderMap, uri: &Uri) -> Result<(), Denied> {
        match self.identify(headers, uri) {
            Ok(Some(id)) if id.is_admin() => Ok(()),
            Ok(Some(_)) => Err(Denied::Forbidden(
                "this token does not grant the operator's endpoints".into(),
            )),
            Ok(None) => Err(Denied::Unauthorized(AuthError::Missing)),
            Err(e) => Err(Denied::Unauthorized(e)),
        }
    }
}

/// The credentials of an `Authorization: Bearer <token>` value (the scheme is
/// case-insensitive, RFC 9110).
pub(crate) fn bearer(value: &[u8]) -> Option<&str> {
    let (scheme, rest) = value.split_at_checked(7)?;
    let token = scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
        .filter(|t| !t.is_empty())?;
    std::str::from_utf8(token).ok()
}

/// The value of cookie `name`, from any `Cookie` header (HTTP/2 may split them).
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.trim_matches('"'))
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.verifier.is_some())
            .field("cookie", &self.cookie)
            .field("query_parameter", &self.query)
            .field("anonymous_subscribe", &self.anonymous_subscribe)
            .field("anonymous_publish", &self.anonymous_publish)
            .field("admin_token", &self.admin_token.is_some())
            .field("token_cache", &self.cache.is_some())
            .field("token_failure_budget", &self.failures.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_first_source_present_wins() {
        let auth = Auth::without_tokens();
        let uri: Uri = "/sse?access_token=q%2Bq".parse().unwrap();
        let all = headers(&[
            ("authorization", "Bearer h"),
            ("cookie", "a=1; ssehub_token=c"),
        ]);
        assert_eq!(auth.token(&all, &uri).as_deref(), Some("h"));
        assert_eq!(auth.token_source(&all, &uri), Some(TokenSource::Header));
        let cookie_only = headers(&[("cookie", "a=1"), ("cookie", "ssehub_token=c")]);
        assert_eq!(auth.token(&cookie_only, &uri).as_deref(), Some("c"));
        assert_eq!(
            auth.token_source(&cookie_only, &uri),
            Some(TokenSource::Cookie)
        );
        assert_eq!(auth.token(&HeaderMap::new(), &uri).as_deref(), Some("q+q"));
        assert_eq!(
            auth.token_source(&HeaderMap::new(), &uri),
            Some(TokenSource::Query)
        );
        let off = auth.clone().cookie(None).query_parameter(None);
        assert_eq!(off.token(&cookie_only, &uri), None);
        let renamed = auth.cookie(Some("t"));
        assert_eq!(
            renamed
                .token(&headers(&[("cookie", "t=x")]), &"/".parse().unwrap())
                .as_deref(),
            Some("x")
        );
    }

    #[test]
    fn an_empty_admin_token_opens_nothing() {
        let auth = Auth::without_tokens().admin_token("");
        assert!(auth.operator_identity("").is_none());
        let uri: Uri = "/stats?token=".parse().unwrap();
        let empty = headers(&[("authorization", "Bearer ")]);
        assert!(auth.operator(&empty, &uri).is_err());
    }

    #[test]
    fn anonymous_rooms_and_the_admin_token() {
        let auth = Auth::without_tokens()
            .allow_anonymous_subscribe(["public.*".parse().unwrap()])
            .admin_token("root");
        let uri: Uri = "/sse".parse().unwrap();
        let none = HeaderMap::new();
        assert_eq!(auth.admit_stream(&none, &uri, None, ["public.a"]), Ok(None));
        assert_eq!(
            auth.admit_stream(&none, &uri, None, ["public.a", "private"]),
            Err(Denied::Unauthorized(AuthError::Missing))
        );
        let root = headers(&[("authorization", "Bearer root")]);
        assert_eq!(auth.operator(&root, &uri), Ok(()));
        assert!(matches!(
            auth.admit_stream(&root, &uri, None, ["private"]),
            Err(Denied::Forbidden(_))
        ));
        let other = headers(&[("authorization", "Bearer roo")]);
        assert_eq!(
            auth.operator(&other, &uri),
            Err(Denied::Unauthorized(AuthError::NotAccepted))
        );
        assert_eq!(
            auth.publisher(&none, &uri),
            Err(Denied::Unauthorized(AuthError::Missing))
        );
        let open = Auth::without_tokens().allow_anonymous_publish(true);
        assert!(open.publisher(&none, &uri).unwrap().may_publish("any"));
        assert_eq!(
            open.admit_stream(&none, &uri, None, []),
            Err(Denied::Unauthorized(AuthError::Missing)),
            "no anonymous streams unless some rooms are open"
        );
    }
}
