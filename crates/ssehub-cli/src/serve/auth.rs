//! Who may subscribe, publish and operate, from `[auth]`.
//!
//! Auth is on when a JWT key is configured: every stream's rooms (the auto-join room
//! too) must be granted by its token or allowed anonymously, every publish's rooms by
//! the token's `publish` selectors, and the operator's endpoints need `"admin": true`
//! or the admin token. Off, the demo's rules stay: publishing is open unless
//! `publish_token` is set, and `admin_token`, if set, guards the operator's endpoints.

use anyhow::Context;
use ssehub::{Auth, HubApi, JwtAlgorithm, JwtVerifier, RoomSelector};

use crate::config::AuthSection;

/// The policy streams are checked with (`None`: auth is off).
pub(super) fn stream_auth(c: &AuthSection) -> anyhow::Result<Option<Auth>> {
    if !c.enabled() {
        return Ok(None);
    }
    let auth = sources(Auth::new(verifier(c)?), c);
    Ok(Some(match &c.admin_token {
        Some(token) => auth.admin_token(token),
        None => auth,
    }))
}

/// `api` guarded as `[auth]` says.
pub(super) fn guard_api(
    api: HubApi,
    c: &AuthSection,
    streams: Option<&Auth>,
) -> anyhow::Result<HubApi> {
    let api = match c.publish_token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => api.bearer_token(token),
        None => api,
    };
    Ok(match (streams, &c.admin_token) {
        (Some(auth), _) => api.auth(auth.clone()),
        (None, Some(admin)) => {
            // Without tokens, publishing stays as open as the demo's (or the publish
            // token's); only the operator's endpoints need the admin token.
            // (After `sources`, which would set `allow_anonymous_publish` as if tokens
            // were checked.)
            let open = publishing_is_open(c);
            let auth = sources(Auth::without_tokens(), c)
                .allow_anonymous_publish(open)
                .admin_token(admin);
            api.auth(auth)
        }
        (None, None) => api,
    })
}

/// Whether anyone may publish without a credential.
pub(super) fn publishing_is_open(c: &AuthSection) -> bool {
    if c.enabled() {
        c.allow_anonymous_publish
    } else {
        c.publish_token.as_deref().is_none_or(str::is_empty)
    }
}

fn verifier(c: &AuthSection) -> anyhow::Result<JwtVerifier> {
    let algorithm: Option<JwtAlgorithm> = c
        .jwt_algorithm
        .as_deref()
        .map(str::parse)
        .transpose()
        .context("auth.jwt_algorithm")?;
    let jwt = match (&c.jwt_secret, &c.jwt_public_key) {
        (Some(secret), _) => {
            JwtVerifier::hmac(algorithm.unwrap_or(JwtAlgorithm::HS256), secret.as_bytes())
                .context("auth.jwt_secret")?
        }
        (None, Some(path)) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("auth.jwt_public_key: cannot read {}", path.display()))?;
            JwtVerifier::public_key_pem(&pem, algorithm)
                .with_context(|| format!("auth.jwt_public_key = {}", path.display()))?
        }
        (None, None) => unreachable!("auth is on only with a key"),
    };
    let mut jwt = jwt.leeway(c.leeway).require_exp(c.require_exp);
    if let Some(iss) = &c.issuer {
        jwt = jwt.issuer(iss.as_str());
    }
    if let Some(aud) = &c.audience {
        jwt = jwt.audience(aud.as_str());
    }
    Ok(jwt)
}

/// Where tokens come from, and what anonymous clients may do.
fn sources(auth: Auth, c: &AuthSection) -> Auth {
    let name = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
    let rooms: Vec<RoomSelector> = c
        .allow_anonymous_subscribe
        .iter()
        .filter_map(|s| s.parse().ok()) // checked by Config::validate
        .collect();
    auth.cookie(name(&c.cookie).as_deref())
        .query_parameter(name(&c.query_parameter).as_deref())
        .allow_anonymous_subscribe(rooms)
        .allow_anonymous_publish(c.allow_anonymous_publish)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Full;

    /// The status of a `POST /publish` without a credential to `api`.
    async fn anonymous_publish(api: &HubApi) -> u16 {
        let req = http::Request::post("/publish?room=a")
            .body(Full::new(Bytes::from_static(b"x")))
            .unwrap();
        api.publish(req).await.status().as_u16()
    }

    #[tokio::test]
    async fn an_admin_token_leaves_publishing_as_open_as_the_demos() {
        let hub = ssehub::Hub::new();
        let mut c = AuthSection {
            admin_token: Some("operator".into()),
            ..AuthSection::default()
        };
        // No publish token: the demo's open publishing (which the startup warning says).
        assert!(publishing_is_open(&c));
        let api = guard_api(HubApi::new(hub.clone()), &c, None).unwrap();
        assert_eq!(anonymous_publish(&api).await, 202);
        // A publish token closes it, whatever allow_anonymous_publish says without a key.
        c.publish_token = Some("publisher".into());
        c.allow_anonymous_publish = true;
        assert!(!publishing_is_open(&c));
        let api = guard_api(HubApi::new(hub), &c, None).unwrap();
        assert_eq!(anonymous_publish(&api).await, 401);
    }
}
