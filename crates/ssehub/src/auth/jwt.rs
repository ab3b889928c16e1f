//! [`JwtVerifier`]: JSON Web Tokens checked with `jsonwebtoken` and its pure-Rust
//! (RustCrypto) backend.
//!
//! The algorithm is the configuration's, never the token's: a token whose header names
//! another (`none`, or HS256 signed with an RSA public key as its secret, the classic
//! confusion) is refused before any signature is computed. `exp` is required unless
//! told otherwise and `nbf` is honoured, both with a small leeway for clock skew (5 s);
//! `iss` and `aud` are required and checked when configured.

use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{AlgorithmFamily, DecodingKey, Validation};

use super::{AuthError, Identity, TokenVerifier};

/// The signature algorithms of JSON Web Tokens (`jsonwebtoken`'s).
pub use jsonwebtoken::Algorithm as JwtAlgorithm;

/// Why a verifier could not be made of a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtKeyError {
    /// An HMAC secret that is empty.
    #[error("the JWT secret is empty")]
    EmptySecret,
    /// A PEM file that holds no RSA, EC or Ed25519 public key.
    #[error("not an RSA, EC or Ed25519 public key in PEM form")]
    UnreadableKey,
    /// An algorithm that does not go with the key (HS256 with a public key, say).
    #[error("the algorithm {algorithm:?} does not go with {key}")]
    Mismatch {
        /// The algorithm asked for.
        algorithm: JwtAlgorithm,
        /// The kind of key given.
        key: &'static str,
    },
}

/// Verifies JSON Web Tokens with one key and one algorithm, and reads the [`Identity`]
/// out of their claims ([`Identity::from_claims`]).
///
/// ```
/// use std::time::Duration;
/// use ssehub::{JwtAlgorithm, JwtVerifier, TokenVerifier};
///
/// let jwt = JwtVerifier::hmac(JwtAlgorithm::HS256, b"a long random secret")?
///     .leeway(Duration::from_secs(2))
///     .audience("ssehub");
/// assert!(jwt.verify("not.a.token").is_err());
/// # Ok::<(), ssehub::JwtKeyError>(())
/// ```
#[derive(Clone)]
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl JwtVerifier {
    /// Tokens signed with `secret` by `algorithm`, one of HS256, HS384, HS512.
    pub fn hmac(algorithm: JwtAlgorithm, secret: &[u8]) -> Result<JwtVerifier, JwtKeyError> {
        if algorithm.family() != AlgorithmFamily::Hmac {
            return Err(JwtKeyError::Mismatch {
                algorithm,
                key: "a secret",
            });
        }
        if secret.is_empty() {
            return Err(JwtKeyError::EmptySecret);
        }
        let key = DecodingKey::from_secret(secret).map_err(|_| JwtKeyError::EmptySecret)?;
        Ok(JwtVerifier::with(key, algorithm))
    }

    /// Tokens signed with the private half of the public key in `pem` (SPKI, `BEGIN
    /// PUBLIC KEY`, or `BEGIN RSA PUBLIC KEY`). The algorithm follows the key's type
    /// (RS256 for RSA, ES256 for EC, EdDSA for Ed25519) unless `algorithm` names another
    /// of its family (RS384, PS256, ES384, ...).
    pub fn public_key_pem(
        pem: &[u8],
        algorithm: Option<JwtAlgorithm>,
    ) -> Result<JwtVerifier, JwtKeyError> {
        let (key, family, default, kind) = if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
            (k, AlgorithmFamily::Rsa, JwtAlgorithm::RS256, "an RSA key")
        } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
            (k, AlgorithmFamily::Ec, JwtAlgorithm::ES256, "an EC key")
        } else if let Ok(k) = DecodingKey::from_ed_pem(pem) {
            (
                k,
                AlgorithmFamily::Ed,
                JwtAlgorithm::EdDSA,
                "an Ed25519 key",
            )
        } else {
            return Err(JwtKeyError::UnreadableKey);
        };
        let algorithm = algorithm.unwrap_or(default);
        if algorithm.family() != family {
            return Err(JwtKeyError::Mismatch {
                algorithm,
                key: kind,
            });
        }
        Ok(JwtVerifier::with(key, algorithm))
    }

    fn with(key: DecodingKey, algorithm: JwtAlgorithm) -> JwtVerifier {
        let mut validation = Validation::new(algorithm);
        validation.leeway = 5;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        JwtVerifier { key, validation }
    }

    /// The algorithm tokens must be signed with.
    pub fn algorithm(&self) -> JwtAlgorithm {
        self.validation.algorithms[0]
    }

    /// How far past `exp` (and before `nbf`) a token is still accepted: clock skew
    /// between the issuer and this hub (5 s; whole seconds).
    pub fn leeway(mut self, leeway: Duration) -> JwtVerifier {
        self.validation.leeway = leeway.as_secs();
        self
    }

    /// Accept only tokens whose `iss` is `issuer` (a token without one is refused).
    pub fn issuer(mut self, issuer: impl Into<String>) -> JwtVerifier {
        self.validation.set_issuer(&[issuer.into()]);
        self.validation.required_spec_claims.insert("iss".into());
        self
    }

    /// Accept only tokens whose `aud` is or contains `audience` (a token without one is
    /// refused).
    pub fn audience(mut self, audience: impl Into<String>) -> JwtVerifier {
        self.validation.set_audience(&[audience.into()]);
        self.validation.validate_aud = true;
        self.validation.required_spec_claims.insert("aud".into());
        self
    }

    /// Whether a token must have an `exp` (yes by default: a token that never expires
    /// cannot be withdrawn). Either way, a token whose `exp` is past is refused.
    pub fn require_exp(mut self, required: bool) -> JwtVerifier {
        if required {
            self.validation.required_spec_claims.insert("exp".into());
        } else {
            self.validation.required_spec_claims.remove("exp");
        }
        self
    }
}

impl TokenVerifier for JwtVerifier {
    fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &self.key, &self.validation)
            .map_err(|e| reason(e.kind()))?;
        Identity::from_claims(data.claims)
    }
}

/// What a client is told of `jsonwebtoken`'s error: the kind, never the detail.
fn reason(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => AuthError::WrongAlgorithm,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(c) => AuthError::MissingClaim(c.clone()),
        ErrorKind::InvalidClaimFormat(c) => AuthError::InvalidClaim(c.clone()),
        _ => AuthError::Malformed,
    }
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithm", &self.algorithm())
            .field("leeway", &self.validation.leeway)
            .field("issuer", &self.validation.iss)
            .field("audience", &self.validation.aud)
            .finish_non_exhaustive()
    }
}
