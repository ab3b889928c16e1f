//! Mercure 1.0's access tokens (draft-08, the JWT access-token profile of RFC 9068):
//! the header's `typ` is `at+jwt` (so an ID token or a 0.x token signed with the same key
//! is not taken for one), `exp` is required, `aud` names this hub's resource identifier,
//! `iss` is a trusted issuer (each with the key and algorithm it signs with; none
//! configured: self-issued tokens with the role's key), and the rights are in
//! `authorization_details` (RFC 9396): entries of type
//! `https://mercure.rocks/authorization-detail` (or `mercure`, as later revisions of the
//! draft call it) with `actions` (`publish`, `subscribe`), `topics`
//! (`[{match, match_type}]`) and an optional `payload`. One invalid entry of ours
//! rejects the whole token: acting on the rest would silently change what it grants.
//! Entries of other types are someone else's, and ignored.

use serde_json::Value;

use super::auth::{Denied, Grants, Role};
use super::selector::{MatchType, Selector, Selectors};
use super::MercureConfig;
use crate::auth::{AuthError, JwtVerifier, TokenVerifier};

/// The authorization detail types that are Mercure's.
const DETAIL_TYPES: [&str; 2] = ["https://mercure.rocks/authorization-detail", "mercure"];
/// The most Mercure entries in one token, and topics in one entry.
const MAX_DETAILS: usize = 100;
const MAX_TOPICS: usize = 100;

/// Whether `token` has a 1.0 token's shape: an `at+jwt` header, or an
/// `authorization_details` claim (read unverified: the shape only chooses the rules,
/// and both sets verify the signature).
pub(crate) fn is_v1(token: &str) -> bool {
    let typ_v1 = jsonwebtoken::decode_header(token)
        .ok()
        .and_then(|h| h.typ)
        .is_some_and(|t| is_at_jwt(&t));
    typ_v1
        || jsonwebtoken::dangerous::insecure_decode_claims::<Value>(token)
            .is_ok_and(|c| c.get("authorization_details").is_some())
}

/// `at+jwt`, or its media type, in any case (RFC 9068).
fn is_at_jwt(typ: &str) -> bool {
    typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
}

/// Verify a 1.0 token for `role` and read its rights.
pub(crate) fn verify(config: &MercureConfig, role: Role, token: &str) -> Result<Grants, Denied> {
    let typ = jsonwebtoken::decode_header(token)
        .map_err(|_| Denied::unauthorized("the token is not a JWT"))?
        .typ;
    if !typ.as_deref().is_some_and(is_at_jwt) {
        return Err(Denied::unauthorized(format!(
            "the token's typ is {}, not at+jwt: it is no access token",
            typ.as_deref().unwrap_or("absent")
        )));
    }
    let Some(resource) = config.resource.as_deref() else {
        return Err(Denied::unauthorized(
            "this hub has no resource identifier configured: it accepts no Mercure 1.0 token",
        ));
    };
    let verifier = key_for(config, role, token)?
        .audience(resource)
        .require_exp(true);
    let identity = verifier.verify(token).map_err(|e| {
        Denied::unauthorized(match e {
            AuthError::WrongAudience => format!("the token's aud does not name {resource}"),
            AuthError::MissingClaim(c) => format!("the token lacks the claim {c:?}"),
            AuthError::BadSignature => "the token's signature does not verify".to_owned(),
            other => other.to_string(),
        })
    })?;
    let mut grants = details(config, identity.claims().get("authorization_details"))?;
    grants.expiry = identity.expiry();
    grants.subject = identity.subject().map(str::to_owned);
    Ok(grants)
}

/// The key a token is verified with: its issuer's own, or the role's with the issuer
/// pinned. The issuer is read unverified to choose among configured keys only; the
/// verifier then requires that very `iss`, so a token cannot pick a key that is not its
/// issuer's.
fn key_for(config: &MercureConfig, role: Role, token: &str) -> Result<JwtVerifier, Denied> {
    let iss = jsonwebtoken::dangerous::insecure_decode_claims::<Value>(token)
        .ok()
        .and_then(|c| c.get("iss")?.as_str().map(str::to_owned));
    let role_key = || {
        config.key(role).ok_or_else(|| {
            Denied::unauthorized(format!(
                "this hub has no {} key: it accepts no {} token",
                role.name(),
                role.name()
            ))
        })
    };
    if config.issuer_keys.is_empty() && config.issuers.is_empty() {
        return Ok(role_key()?.clone());
    }
    let Some(iss) = iss else {
        return Err(Denied::unauthorized(
            "the token has no iss: this hub accepts tokens of its trusted issuers only",
        ));
    };
    if let Some((_, key)) = config.issuer_keys.iter().find(|(name, _)| *name == iss) {
        return Ok(key.as_ref().clone().issuer(iss));
    }
    if config.issuers.contains(&iss) {
        return Ok(role_key()?.clone().issuer(iss));
    }
    Err(Denied::unauthorized(format!(
        "the token's issuer {iss:?} is not trusted by this hub"
    )))
}

/// The rights in `authorization_details` (absent: none).
fn details(config: &MercureConfig, claim: Option<&Value>) -> Result<Grants, Denied> {
    let invalid =
        |why: String| Denied::unauthorized(format!("invalid authorization_details: {why}"));
    let mut grants = Grants {
        publish: Some(Selectors::default()),
        ..Grants::default()
    };
    let Some(claim) = claim else {
        return Ok(grants);
    };
    let entries = claim
        .as_array()
        .ok_or_else(|| invalid("it must be an array".into()))?;
    let ours = entries.iter().filter(|e| {
        e.get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| DETAIL_TYPES.contains(&t))
    });
    let base = config.base_url();
    for (n, entry) in ours.enumerate() {
        if n >= MAX_DETAILS {
            return Err(invalid(format!("more than {MAX_DETAILS} Mercure entries")));
        }
        let actions = entry
            .get("actions")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| invalid(format!("entry {n}: actions must be a non-empty array")))?;
        let mut publish = false;
        let mut subscribe = false;
        for a in actions {
            match a.as_str() {
                Some("publish") => publish = true,
                Some("subscribe") => subscribe = true,
                _ => {
                    return Err(invalid(format!(
                        "entry {n}: unknown action {a} (publish or subscribe)"
                    )))
                }
            }
        }
        let topics = entry
            .get("topics")
            .and_then(Value::as_array)
            .filter(|t| !t.is_empty() && t.len() <= MAX_TOPICS)
            .ok_or_else(|| {
                invalid(format!(
                    "entry {n}: topics must be an array of 1 to {MAX_TOPICS} matchers"
                ))
            })?;
        let mut selectors = Vec::with_capacity(topics.len());
        for t in topics {
            let matcher = t
                .get("match")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("entry {n}: a topic without a string match")))?;
            let kind = match t.get("match_type").or_else(|| t.get("matchType")) {
                None => MatchType::Exact,
                Some(k) => k.as_str().and_then(MatchType::parse).ok_or_else(|| {
                    invalid(format!(
                        "entry {n}: unknown match_type {k} (exact or urlpattern)"
                    ))
                })?,
            };
            let s = Selector::parse_v1(matcher, kind, &base)
                .map_err(|e| invalid(format!("entry {n}: match {matcher:?}: {e}")))?;
            selectors.push(s);
        }
        let payload = match entry.get("payload") {
            None => None,
            Some(p) if p.is_object() => Some(p.clone()),
            Some(_) => return Err(invalid(format!("entry {n}: payload must be an object"))),
        };
        if publish {
            if let Some(p) = grants.publish.as_mut() {
                p.0.extend(selectors.iter().cloned());
            }
        }
        if subscribe {
            grants.subscribe.0.extend(selectors.iter().cloned());
            grants.payloads.push((Selectors(selectors), payload));
        }
    }
    Ok(grants)
}
