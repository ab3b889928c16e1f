//! [`Auth`]: where a request's token is looked for, what it must grant, and what
//! anonymous clients may do without one.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::{StatusCode, Uri};
use subtle::ConstantTimeEq;

use super::{AuthError, Identity, TokenVerifier};
use crate::selector::RoomSelector;

/// The default name of the cookie a token is read from.
const COOKIE: &str = "ssehub_token";
/// The default query parameter a token is read from (for `EventSource`, which cannot set
/// headers).
const QUERY: &str = "access_token";

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
}

impl Denied {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Denied::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Denied::Forbidden(_) => StatusCode::FORBIDDEN,
        }
    }

    /// The `WWW-Authenticate` value (RFC 6750).
    pub(crate) fn challenge(&self) -> HeaderValue {
        match self {
            Denied::Unauthorized(e) => unauthorized_challenge(Some(e)),
            Denied::Forbidden(_) => {
                HeaderValue::from_static("Bearer realm=\"ssehub\", error=\"insufficient_scope\"")
            }
        }
    }

    /// What the client is told.
    pub(crate) fn message(&self) -> String {
        match self {
            Denied::Unauthorized(e) => e.to_string(),
            Denied::Forbidden(why) => why.clone(),
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
        }
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
        if let Some(admin) = &self.admin_token {
            // Different lengths say no at once: only the length leaks. An empty token
            // is no credential, even against an empty admin token.
            if !token.is_empty() && bool::from(token.as_bytes().ct_eq(admin)) {
                return Ok(Identity::new("admin").admin(true));
            }
        }
        match &self.verifier {
            Some(v) => v.verify(token),
            None => Err(AuthError::NotAccepted),
        }
    }

    /// Admit a stream that asks for `rooms`: its identity (`None`: anonymous), or why not.
    pub(crate) fn admit_stream<'r>(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        rooms: impl IntoIterator<Item = &'r str>,
    ) -> Result<Option<Identity>, Denied> {
        let identity = self.identify(headers, uri).map_err(Denied::Unauthorized)?;
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
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
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
        assert_eq!(auth.admit_stream(&none, &uri, ["public.a"]), Ok(None));
        assert_eq!(
            auth.admit_stream(&none, &uri, ["public.a", "private"]),
            Err(Denied::Unauthorized(AuthError::Missing))
        );
        let root = headers(&[("authorization", "Bearer root")]);
        assert_eq!(auth.operator(&root, &uri), Ok(()));
        assert!(matches!(
            auth.admit_stream(&root, &uri, ["private"]),
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
            open.admit_stream(&none, &uri, []),
            Err(Denied::Unauthorized(AuthError::Missing)),
            "no anonymous streams unless some rooms are open"
        );
    }
}
