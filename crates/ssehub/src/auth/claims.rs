//! An identity out of a token's claims, for any verifier:
//!
//! ```json
//! { "sub": "alice", "exp": 1767225600,
//!   "ssehub": { "subscribe": ["orders.*", "news"], "publish": ["chat"], "admin": false } }
//! ```
//!
//! `sub` is the subject; `exp` the expiry; under `ssehub`, `subscribe` and `publish` are
//! lists of room selectors (an exact name, `*`, or a prefix such as `orders.*`; nothing
//! else, and never a regular expression), `admin` the operator's right. Every part may be
//! left out: what is not granted is refused.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

use super::{AuthError, Identity};
use crate::selector::RoomSelector;

/// The key of this hub's claims in a token.
pub(crate) const NAMESPACE: &str = "ssehub";

impl Identity {
    /// The identity a token's verified claims describe (see the crate's README for the
    /// claims). An unreadable part is refused, naming the claim.
    ///
    /// ```
    /// let claims = serde_json::json!({
    ///     "sub": "alice",
    ///     "ssehub": { "subscribe": ["orders.*"], "admin": true },
    /// });
    /// let alice = ssehub::Identity::from_claims(claims)?;
    /// assert_eq!(alice.subject(), Some("alice"));
    /// assert!(alice.may_subscribe("orders.1") && alice.is_admin() && !alice.may_publish("x"));
    /// # Ok::<(), ssehub::AuthError>(())
    /// ```
    pub fn from_claims(claims: Value) -> Result<Identity, AuthError> {
        let invalid = |name: &str| AuthError::InvalidClaim(name.to_owned());
        let subject = match claims.get("sub") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(invalid("sub")),
        };
        let expires_at = match claims.get("exp") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let secs = v.as_u64().ok_or_else(|| invalid("exp"))?;
                // A time past what `SystemTime` holds would panic the request's task.
                let at = UNIX_EPOCH.checked_add(Duration::from_secs(secs));
                Some(at.ok_or_else(|| invalid("exp"))?)
            }
        };
        let mut identity = Identity {
            subject,
            expires_at,
            ..Identity::default()
        };
        match claims.get(NAMESPACE) {
            None | Some(Value::Null) => {}
            Some(Value::Object(ours)) => {
                identity.subscribe = selectors(ours.get("subscribe"), "ssehub.subscribe")?;
                identity.publish = selectors(ours.get("publish"), "ssehub.publish")?;
                identity.admin = match ours.get("admin") {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return Err(invalid("ssehub.admin")),
                };
            }
            Some(_) => return Err(invalid(NAMESPACE)),
        }
        identity.claims = claims;
        Ok(identity)
    }
}

/// A list of room selectors (absent: none).
fn selectors(value: Option<&Value>, name: &str) -> Result<Vec<RoomSelector>, AuthError> {
    let invalid = || AuthError::InvalidClaim(name.to_owned());
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .ok_or_else(invalid)?
                    .parse()
                    .map_err(|_| invalid())
            })
            .collect(),
        Some(_) => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_grant_what_they_say_and_nothing_else() {
        let id = Identity::from_claims(json!({
            "sub": "alice", "exp": 10,
            "ssehub": { "subscribe": ["a", "orders.*"], "publish": ["*"] }
        }))
        .unwrap();
        assert_eq!(id.subject(), Some("alice"));
        assert_eq!(id.expiry(), Some(UNIX_EPOCH + Duration::from_secs(10)));
        assert!(id.may_subscribe("a") && id.may_subscribe("orders.9"));
        assert!(!id.may_subscribe("b") && id.may_publish("anything") && !id.is_admin());
        let nothing = Identity::from_claims(json!({ "sub": "bob" })).unwrap();
        assert!(!nothing.may_subscribe("a") && !nothing.may_publish("a"));
    }

    #[test]
    fn an_exp_past_what_a_time_can_hold_is_refused_not_a_panic() {
        for exp in [u64::MAX, i64::MAX as u64 + 1] {
            assert_eq!(
                Identity::from_claims(json!({ "sub": "alice", "exp": exp })),
                Err(AuthError::InvalidClaim("exp".into())),
                "{exp}"
            );
        }
    }

    #[test]
    fn unreadable_claims_are_named() {
        for (claims, name) in [
            (json!({ "sub": 5 }), "sub"),
            (json!({ "exp": "soon" }), "exp"),
            (json!({ "ssehub": [] }), "ssehub"),
            (
                json!({ "ssehub": { "subscribe": "a" } }),
                "ssehub.subscribe",
            ),
            (
                json!({ "ssehub": { "publish": ["a*b"] } }),
                "ssehub.publish",
            ),
            (json!({ "ssehub": { "admin": "yes" } }), "ssehub.admin"),
        ] {
            assert_eq!(
                Identity::from_claims(claims),
                Err(AuthError::InvalidClaim(name.into()))
            );
        }
    }
}
