//! Who a Mercure request is: its token, from the first source present (the
//! `Authorization: Bearer` header, then in 0.x the `authorization` query parameter,
//! then the cookie: 0.x's configured one, 1.0's `__Secure-mercure_access_token`),
//! verified with the publisher's or the subscriber's key. A token's shape says which
//! rules it follows: a 1.0 access token (`access_token.rs`) or a 0.x token with the
//! `mercure` claim (its `publish` and `subscribe` selectors, its `payload`).
//! Refusals say why, in the body and in `WWW-Authenticate` (the reasons people most
//! often have to guess with other hubs), in RFC 6750's terms.

use std::time::SystemTime;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode, Uri};
use serde_json::Value;

use super::selector::{Selector, Selectors};
use super::MercureConfig;
use crate::auth::{AuthError, JwtVerifier, TokenVerifier};
use crate::endpoint::SseBody;

/// The cookie a 1.0 browser carries its token in (the `__Secure-` prefix: set only over
/// HTTPS, so a network attacker cannot plant one).
pub(crate) const V1_COOKIE: &str = "__Secure-mercure_access_token";

/// Whose key verifies a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Publisher,
    Subscriber,
}

impl Role {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Subscriber => "subscriber",
        }
    }
}

/// Verify `token` for `role` by the rules its shape says, and read what it grants.
pub(crate) fn verify(config: &MercureConfig, role: Role, token: &str) -> Result<Grants, Denied> {
    if super::access_token::is_v1(token) {
        super::access_token::verify(config, role, token)
    } else {
        grants(config.key(role), token, role.name())
    }
}

/// Where a token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Header,
    Query,
    Cookie,
}

/// The request's token and its source, the first present of: `Authorization: Bearer`,
/// the `authorization` query parameter (when `uri` is given: 0.x only), the cookies
/// `cookies` in order.
pub(crate) fn token(
    headers: &HeaderMap,
    uri: Option<&Uri>,
    cookies: &[&str],
) -> Option<(String, Source)> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| crate::auth::bearer(v.as_bytes()));
    if let Some(t) = bearer {
        return Some((t.to_owned(), Source::Header));
    }
    let query = uri.and_then(|uri| {
        crate::uri::query_pairs(uri)
            .into_iter()
            .find(|(k, v)| k == "authorization" && !v.is_empty())
    });
    if let Some((_, t)) = query {
        return Some((t, Source::Query));
    }
    cookies
        .iter()
        .find_map(|name| crate::auth::cookie(headers, name))
        .map(|value| (value.to_owned(), Source::Cookie))
}

/// What a verified token grants.
#[derive(Debug, Clone, Default)]
pub(crate) struct Grants {
    /// `mercure.publish`: the topics it may publish to (`None`: the claim is absent).
    pub(crate) publish: Option<Selectors>,
    /// `mercure.subscribe`: the topics of the private updates it may receive.
    pub(crate) subscribe: Selectors,
    /// Its `exp`: a stream it opened ends then.
    pub(crate) expiry: Option<SystemTime>,
    /// Its `sub`, for the operator's views.
    pub(crate) subject: Option<String>,
    /// The payloads of its subscribe grants, each with the selectors it is for (a 0.x
    /// token's `mercure.payload` is for every subscription).
    pub(crate) payloads: Vec<(Selectors, Option<Value>)>,
}

impl Grants {
    /// The payload of a subscription with `selector`: the first subscribe grant's whose
    /// selectors match the subscription's own selector, read as a topic.
    pub(crate) fn payload_for(&self, selector: &str) -> Option<&Value> {
        self.payloads
            .iter()
            .find(|(s, _)| s.match_any(selector))
            .and_then(|(_, p)| p.as_ref())
    }
}

/// Why a request is refused: 401 (no token, or a token that does not verify) or 403
/// (a token that does not grant what is asked), with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Denied {
    pub(crate) status: StatusCode,
    pub(crate) reason: String,
    /// No token at all (RFC 6750: the challenge then carries no error code, in 1.0).
    pub(crate) missing: bool,
}

impl Denied {
    pub(crate) fn unauthorized(reason: impl Into<String>) -> Denied {
        Denied {
            status: StatusCode::UNAUTHORIZED,
            reason: reason.into(),
            missing: false,
        }
    }

    /// No token where one is required.
    pub(crate) fn missing(reason: impl Into<String>) -> Denied {
        Denied {
            missing: true,
            ..Denied::unauthorized(reason)
        }
    }

    pub(crate) fn forbidden(reason: impl Into<String>) -> Denied {
        Denied {
            status: StatusCode::FORBIDDEN,
            reason: reason.into(),
            missing: false,
        }
    }

    /// The answer in 1.0's terms (RFC 6750): with no token, a bare `Bearer` challenge
    /// naming the hub's protected-resource metadata and no error code; otherwise as
    /// [`Denied::response`].
    pub(crate) fn response_v1(&self, metadata: &str) -> Response<SseBody> {
        if !self.missing {
            return self.response();
        }
        let mut res = crate::respond::text(self.status, format!("{}\n", self.reason));
        let challenge = format!(r#"Bearer resource_metadata="{metadata}""#);
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        res
    }

    /// The answer: the reason as the body and in `WWW-Authenticate`.
    pub(crate) fn response(&self) -> Response<SseBody> {
        let mut res = crate::respond::text(self.status, format!("{}\n", self.reason));
        let error = if self.status == StatusCode::FORBIDDEN {
            "insufficient_scope"
        } else {
            "invalid_token"
        };
        let description: String = self
            .reason
            .chars()
            .map(|c| if c == '"' || c == '\\' { '\'' } else { c })
            .collect();
        let challenge = format!(r#"Bearer error="{error}", error_description="{description}""#);
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        res
    }
}

/// Verify `token` with `key` (`role` names it in refusals: "publisher", "subscriber")
/// and read its `mercure` claim.
pub(crate) fn grants(key: Option<&JwtVerifier>, token: &str, role: &str) -> Result<Grants, Denied> {
    let Some(key) = key else {
        return Err(Denied::unauthorized(format!(
            "this hub has no {role} key: it accepts no {role} token"
        )));
    };
    let identity = key.verify(token).map_err(|e| {
        Denied::unauthorized(match e {
            AuthError::BadSignature => format!(
                "the token's signature does not verify with the {role} key (wrong key, or a token for another hub)"
            ),
            AuthError::Malformed | AuthError::WrongAlgorithm => format!(
                "the token is not a JWT signed with the {role} key's algorithm ({e})"
            ),
            other => format!("{other}"),
        })
    })?;
    let claim = identity.claims().get("mercure");
    let payload = claim.and_then(|c| c.get("payload")).cloned();
    let selectors = |name: &str| -> Result<Option<Selectors>, Denied> {
        let Some(list) = claim.and_then(|c| c.get(name)) else {
            return Ok(None);
        };
        let Some(items) = list.as_array() else {
            return Err(Denied::unauthorized(format!(
                "the claim mercure.{name} must be an array of topic selectors"
            )));
        };
        items
            .iter()
            .map(|item| {
                let s = item.as_str().ok_or_else(|| {
                    Denied::unauthorized(format!(
                        "mercure.{name} holds a selector that is not a string"
                    ))
                })?;
                Selector::parse(s).map_err(|e| {
                    Denied::unauthorized(format!(
                        "mercure.{name} holds an invalid selector {s:?}: {e}"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| Some(Selectors(v)))
    };
    Ok(Grants {
        publish: selectors("publish")?,
        subscribe: selectors("subscribe")?.unwrap_or_default(),
        expiry: identity.expiry(),
        subject: identity.subject().map(str::to_owned),
        payloads: vec![(Selectors(vec![Selector::Any]), payload)],
    })
}

/// A 400 in 1.0's terms: `invalid_request`, saying why.
pub(crate) fn invalid_request(why: &str) -> Response<SseBody> {
    let mut res = crate::respond::text(StatusCode::BAD_REQUEST, format!("{why}\n"));
    let description: String = why
        .chars()
        .map(|c| if c == '"' || c == '\\' { '\'' } else { c })
        .collect();
    let challenge = format!(r#"Bearer error="invalid_request", error_description="{description}""#);
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_wins_then_the_query_then_the_cookie() {
        let uri: Uri = "/.well-known/mercure?topic=x&authorization=q"
            .parse()
            .unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; mercureAuthorization=c".parse().unwrap(),
        );
        assert_eq!(
            token(&h, Some(&uri), &["mercureAuthorization"]),
            Some(("q".into(), Source::Query))
        );
        h.insert(header::AUTHORIZATION, "Bearer h".parse().unwrap());
        assert_eq!(
            token(&h, Some(&uri), &["mercureAuthorization"]),
            Some(("h".into(), Source::Header))
        );
        let bare: Uri = "/.well-known/mercure".parse().unwrap();
        h.remove(header::AUTHORIZATION);
        assert_eq!(
            token(&h, Some(&bare), &["mercureAuthorization"]),
            Some(("c".into(), Source::Cookie))
        );
        assert_eq!(token(&h, Some(&bare), &["other"]), None);
        // 1.0: no query token; its own cookie.
        h.insert(header::COOKIE, format!("{V1_COOKIE}=v1").parse().unwrap());
        assert_eq!(
            token(&h, None, &[V1_COOKIE]),
            Some(("v1".into(), Source::Cookie))
        );
    }
}
