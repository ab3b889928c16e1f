//! Who a request is and what it may do.
//!
//! - [`Identity`]: what an authenticator learned of a request: its subject, its claims,
//!   the rooms it may subscribe to and publish to ([`RoomSelector`]s), whether it may
//!   use the operator's endpoints, and when it stops being valid.
//! - [`TokenVerifier`]: turns a bearer token into an identity; `jwt.rs` has the
//!   ready-made one for JSON Web Tokens (feature `jwt`), `claims.rs` reads the
//!   identity out of a token's claims for any verifier.
//! - [`Auth`]: the policy the SSE endpoint ([`crate::SseOptions::auth`]) and the HTTP
//!   API ([`crate::HubApi::auth`]) apply: where a token is looked for, what anonymous
//!   clients may do, and a static operator token.
//!
//! - `policy.rs`: [`Auth`] itself; `cache.rs`: verdicts on tokens by their hash;
//!   `budget.rs`: failed verifications per client address.
//!
//! Tokens are secrets: nothing here logs one, and [`AuthError`]'s messages (which clients
//! see) name what was wrong with a token, never a key or the token itself.

mod budget;
mod cache;
mod claims;
#[cfg(feature = "jwt")]
mod jwt;
mod policy;

#[cfg(feature = "jwt")]
pub use jwt::{JwtAlgorithm, JwtKeyError, JwtVerifier};
#[cfg(feature = "mercure")]
pub(crate) use policy::cookie;
pub use policy::Auth;
pub(crate) use policy::{bearer, Denied, TokenSource};

use std::time::SystemTime;

use crate::selector::RoomSelector;

/// Who a request is, and what it may do.
///
/// An anonymous identity may do nothing of its own (what anonymous clients may do is
/// [`Auth`]'s to say). Returned by an `authorize` hook ([`crate::SseOptions::authorize`];
/// `Ok(())` converts to the anonymous identity) and by a [`TokenVerifier`]; hooks read it
/// from [`crate::RequestContext::identity`].
///
/// ```
/// use ssehub::{Identity, RoomSelector};
///
/// let alice = Identity::new("alice")
///     .subscribe(["orders.*".parse::<RoomSelector>()?])
///     .publish(["chat".parse()?]);
/// assert!(alice.may_subscribe("orders.42") && !alice.may_subscribe("chat"));
/// assert!(alice.may_publish("chat") && !alice.is_admin());
/// assert!(Identity::from(()).is_anonymous());
/// # Ok::<(), ssehub::SelectorError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    subject: Option<String>,
    claims: serde_json::Value,
    subscribe: Vec<RoomSelector>,
    publish: Vec<RoomSelector>,
    admin: bool,
    expires_at: Option<SystemTime>,
}

impl Identity {
    /// Nobody in particular, with no permissions.
    pub fn anonymous() -> Identity {
        Identity::default()
    }

    /// `subject`, with no permissions yet.
    pub fn new(subject: impl Into<String>) -> Identity {
        Identity {
            subject: Some(subject.into()),
            ..Identity::default()
        }
    }

    /// Add rooms this identity may subscribe to.
    pub fn subscribe(mut self, rooms: impl IntoIterator<Item = RoomSelector>) -> Identity {
        self.subscribe.extend(rooms);
        self
    }

    /// Add rooms this identity may publish to.
    pub fn publish(mut self, rooms: impl IntoIterator<Item = RoomSelector>) -> Identity {
        self.publish.extend(rooms);
        self
    }

    /// Whether this identity may use the operator's endpoints (`/stats` and the like).
    pub fn admin(mut self, admin: bool) -> Identity {
        self.admin = admin;
        self
    }

    /// When this identity stops being valid: a stream it opened is ended then.
    pub fn expires_at(mut self, at: SystemTime) -> Identity {
        self.expires_at = Some(at);
        self
    }

    /// Keep the claims this identity came from (a token's payload), for the hooks: a
    /// [`TokenVerifier`] of your own attaches them here, `on_connect` reads them back.
    ///
    /// ```
    /// let id = ssehub::Identity::new("alice").with_claims(serde_json::json!({ "plan": "pro" }));
    /// assert_eq!(id.claims()["plan"], "pro");
    /// ```
    pub fn with_claims(mut self, claims: serde_json::Value) -> Identity {
        self.claims = claims;
        self
    }

    /// The subject (a token's `sub`), if any.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// The claims this identity came from (`Null` if none).
    pub fn claims(&self) -> &serde_json::Value {
        &self.claims
    }

    /// When this identity stops being valid, if it does.
    pub fn expiry(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// Whether this is the anonymous identity: no subject, no claims, no permission.
    pub fn is_anonymous(&self) -> bool {
        *self == Identity::default()
    }

    /// Whether this identity may subscribe to `room`.
    pub fn may_subscribe(&self, room: &str) -> bool {
        self.subscribe.iter().any(|s| s.matches(room))
    }

    /// Whether this identity may publish to `room`.
    pub fn may_publish(&self, room: &str) -> bool {
        self.publish.iter().any(|s| s.matches(room))
    }

    /// Whether this identity may use the operator's endpoints.
    pub fn is_admin(&self) -> bool {
        self.admin
    }
}

/// `Ok(())` from an `authorize` hook: admitted, without saying who.
impl From<()> for Identity {
    fn from(_: ()) -> Identity {
        Identity::anonymous()
    }
}

/// Why a token was not accepted. The message is what the client is told: it says what
/// was wrong with the token, never anything of the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token in the request.
    #[error("a token is required")]
    Missing,
    /// The token's `exp` is past.
    #[error("the token has expired")]
    Expired,
    /// The token's `nbf` is still to come.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// The signature does not verify with this hub's key.
    #[error("the token's signature is not valid")]
    BadSignature,
    /// The token says another algorithm than the one this hub is configured for.
    #[error("the token is signed with another algorithm than this hub accepts")]
    WrongAlgorithm,
    /// The token is for another audience (`aud`).
    #[error("the token is for another audience")]
    WrongAudience,
    /// The token is from another issuer (`iss`).
    #[error("the token is from another issuer")]
    WrongIssuer,
    /// A claim this hub requires is absent.
    #[error("the token lacks the claim {0:?}")]
    MissingClaim(String),
    /// A claim is there but unreadable (a room selector that is not one, say).
    #[error("the token's claim {0:?} is invalid")]
    InvalidClaim(String),
    /// Not a token this hub can read (not a JWT, or one with an unknown algorithm such as
    /// `none`).
    #[error("the token is malformed or uses an algorithm this hub does not accept")]
    Malformed,
    /// This hub takes no tokens, only the operator's static one.
    #[error("this hub accepts no such token")]
    NotAccepted,
}

impl AuthError {
    /// A short code for the reason, as `WWW-Authenticate`'s `error_description` and the
    /// logs carry it: `expired`, `bad-signature`, ...
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not-yet-valid",
            AuthError::BadSignature => "bad-signature",
            AuthError::WrongAlgorithm => "wrong-algorithm",
            AuthError::WrongAudience => "wrong-audience",
            AuthError::WrongIssuer => "wrong-issuer",
            AuthError::MissingClaim(_) => "missing-claim",
            AuthError::InvalidClaim(_) => "invalid-claim",
            AuthError::Malformed => "malformed",
            AuthError::NotAccepted => "not-accepted",
        }
    }
}

/// Turns a bearer token into an [`Identity`]. Verification is CPU work only (no I/O), so
/// it runs on the request's task.
///
/// ```
/// use ssehub::{AuthError, Identity, TokenVerifier};
///
/// struct OneUser;
/// impl TokenVerifier for OneUser {
///     fn verify(&self, token: &str) -> Result<Identity, AuthError> {
///         match token {
///             "alice-token" => Ok(Identity::new("alice").subscribe([ssehub::RoomSelector::any()])),
///             _ => Err(AuthError::BadSignature),
///         }
///     }
/// }
/// let auth = ssehub::Auth::new(OneUser);
/// ```
pub trait TokenVerifier: Send + Sync + 'static {
    /// The identity `token` stands for, or why it stands for none.
    fn verify(&self, token: &str) -> Result<Identity, AuthError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_may_do_nothing() {
        let a = Identity::anonymous();
        assert!(a.is_anonymous());
        assert!(!a.may_subscribe("x") && !a.may_publish("x") && !a.is_admin());
        assert!(!Identity::new("bob").is_anonymous());
        assert!(!Identity::anonymous().admin(true).is_anonymous());
    }
}
