//! Who may use the API: the static bearer token ([`super::HubApi::bearer_token`]), which
//! grants both routes, and [`Auth`] ([`super::HubApi::auth`]): a publish needs `publish`
//! rights on every room it targets, the operator's routes an admin credential.

use http::header::{self, HeaderValue};
use http::{Request, Response};
use serde_json::json;

use super::bearer::Bearer;
use super::ApiBody;
use crate::auth::{Auth, Denied, Identity};
use crate::respond::json;

/// What a request may do.
#[derive(Debug)]
pub(super) enum Access {
    /// Anything: no check is configured, or the static token came.
    Full,
    /// What this identity grants.
    As(Identity),
}

impl Access {
    /// The 403 for publishing to `room`, if this access does not grant it.
    pub(super) fn refuse_room(&self, room: &str) -> Option<Denied> {
        match self {
            Access::As(id) if !id.may_publish(room) => Some(Denied::Forbidden(format!(
                "this token may not publish to {room:?}"
            ))),
            _ => None,
        }
    }
}

/// Which part of the API a request asks for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Need {
    Publish,
    Operator,
}

/// What `req` may do, or the 401 or 403 it gets.
pub(super) fn access<R>(
    bearer: Option<&Bearer>,
    auth: Option<&Auth>,
    req: &Request<R>,
    need: Need,
) -> Result<Access, Box<Response<ApiBody>>> {
    let refused = match bearer.map(|b| b.refuse::<ApiBody, R>(req)) {
        None => None,
        Some(None) => return Ok(Access::Full),
        Some(Some(refused)) => Some(Box::new(refused)),
    };
    let Some(auth) = auth else {
        return refused.map_or(Ok(Access::Full), Err);
    };
    let (headers, uri) = (req.headers(), req.uri());
    let checked = match need {
        Need::Publish => auth.publisher(headers, uri).map(Access::As),
        Need::Operator => auth.operator(headers, uri).map(|()| Access::Full),
    };
    checked.map_err(|denied| Box::new(denial(&denied)))
}

/// The answer to a denied request: its status, `WWW-Authenticate`, and why.
fn denial(denied: &Denied) -> Response<ApiBody> {
    let mut res = json(denied.status(), &json!({ "error": denied.message() }));
    let challenge: HeaderValue = denied.challenge();
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, challenge);
    res
}
