//! `POST /publish`: one event from a request, in either of its two forms, checked
//! field by field before anything is sent.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{json, Map, Value};

use super::access::Access;
use super::ApiBody;
use crate::hub::{check_room, Hub, PublishError as HubRefusal, ROOM_ALL};
use crate::message::{FrameError, Message};
use crate::respond::json;
use crate::uri::query_pairs;

/// A `POST /publish` refusal: the status and a JSON body `{"error": ..., "field": ...}`.
#[derive(Debug)]
struct PublishError {
    status: StatusCode,
    message: String,
    field: Option<&'static str>,
}

impl PublishError {
    fn bad(message: impl Into<String>) -> Self {
        PublishError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            field: None,
        }
    }

    fn field(field: &'static str, message: impl Into<String>) -> Self {
        PublishError {
            field: Some(field),
            ..Self::bad(message)
        }
    }

    fn into_response(self) -> Response<ApiBody> {
        let mut body = json!({ "error": self.message });
        if let Some(f) = self.field {
            body["field"] = json!(f);
        }
        let mut res = json(self.status, &body);
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        if self.status == StatusCode::FORBIDDEN {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ssehub\", error=\"insufficient_scope\""),
            );
        }
        res
    }
}

impl From<HubRefusal> for PublishError {
    fn from(e: HubRefusal) -> Self {
        match e {
            HubRefusal::TooManyRooms { .. } => PublishError::field("rooms", e.to_string()),
            HubRefusal::TooLarge { .. } => PublishError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                ..PublishError::field("data", e.to_string())
            },
            HubRefusal::Storage(_) => PublishError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                ..PublishError::field("history", e.to_string())
            },
            _ => PublishError::field("id", format!("invalid id: {e}")),
        }
    }
}

impl From<FrameError> for PublishError {
    fn from(e: FrameError) -> Self {
        let field = e.field();
        PublishError::field(field, format!("invalid {field}: {e}"))
    }
}

/// What one publish asks for, whichever form it came in.
#[derive(Debug, Default, PartialEq)]
struct PublishRequest {
    rooms: Vec<String>,
    event: Option<String>,
    id: Option<String>,
    retry: Option<u64>,
    data: String,
}

impl PublishRequest {
    /// The message, built from the fields it takes (the rooms are left).
    fn message(self) -> Result<Message, FrameError> {
        let mut b = Message::builder().data(self.data);
        if let Some(e) = self.event {
            b = b.event(e);
        }
        if let Some(id) = self.id {
            b = b.id(id);
        }
        if let Some(ms) = self.retry {
            b = b.retry(Duration::from_millis(ms));
        }
        b.build()
    }
}

/// `POST /publish`: broadcast one event, answer `202 {"delivered": N, "id": ...}`
/// (`id`: the event's id on the wire, which rooms with history assign; `null` if none).
///
/// Two forms:
/// - query: `?room=R&event=E&id=I&retry=MS`, the body is the data as is (UTF-8). `room`
///   may repeat; it defaults to `__all`.
/// - JSON (`Content-Type: application/json`): `{"room": "R"}` or `{"rooms": ["a", "b"]},
///   "event", "id", "retry", "data"}`. `data` may be any JSON value: a string is sent as
///   is, anything else serialised.
///
/// Several rooms are published to with [`crate::Broadcast::unique`]: a connection in more
/// than one of them receives the event once, and `delivered` counts connections. A room
/// named twice is one room; more distinct rooms than the hub allows one publish
/// ([`crate::HubConfig::max_rooms_per_publish`], 256) is a 400, and an event larger,
/// encoded, than [`crate::HubConfig::max_event_bytes`] a 413. Nothing is broadcast when
/// any field is invalid.
pub(super) async fn publish<B>(
    hub: &Hub,
    max_body: usize,
    access: &Access,
    req: Request<B>,
) -> Response<ApiBody>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let delivered = async {
        let mut p = publish_request(req, max_body).await?;
        let rooms = std::mem::take(&mut p.rooms);
        if let Some(denied) = rooms.iter().find_map(|r| access.refuse_room(r)) {
            return Err(PublishError {
                status: denied.status(),
                ..PublishError::field("room", denied.message())
            });
        }
        let message = p.message()?;
        let published = hub.to(&rooms).unique().publish_and_wait(&message).await?;
        tracing::debug!(?rooms, delivered = published.delivered, "published");
        Ok::<_, PublishError>(published)
    };
    match delivered.await {
        Ok(published) => json(
            StatusCode::ACCEPTED,
            &json!({
                "delivered": published.delivered,
                "id": published.id,
                "replicated": published.replicated,
            }),
        ),
        Err(e) => e.into_response(),
    }
}

async fn publish_request<B>(
    req: Request<B>,
    max_body: usize,
) -> Result<PublishRequest, PublishError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if req.method() != Method::POST {
        return Err(PublishError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            ..PublishError::bad("use POST")
        });
    }
    let too_large = || PublishError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        ..PublishError::bad(format!("the body is over {max_body} bytes"))
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body as u64) {
        return Err(too_large());
    }
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    let query = query_pairs(req.uri());
    let body = match Limited::new(req.into_body(), max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
        Err(e) => return Err(PublishError::bad(format!("could not read the body: {e}"))),
    };
    let p = if is_json {
        from_json(&body)?
    } else {
        from_query(&query, &body)?
    };
    for room in &p.rooms {
        check_room(room).map_err(|why| PublishError::field("room", why))?;
    }
    Ok(p)
}

fn from_query(query: &[(String, String)], body: &[u8]) -> Result<PublishRequest, PublishError> {
    let mut p = PublishRequest::default();
    for (k, v) in query {
        match k.as_str() {
            "room" => p.rooms.push(v.clone()),
            "event" if !v.is_empty() => p.event = Some(v.clone()),
            "id" => p.id = Some(v.clone()),
            "retry" => p.retry = Some(parse_retry(v)?),
            _ => {}
        }
    }
    if p.rooms.is_empty() {
        p.rooms.push(ROOM_ALL.into());
    }
    p.data = std::str::from_utf8(body)
        .map_err(|_| PublishError::field("data", "the body (the data) must be UTF-8 text"))?
        .to_owned();
    Ok(p)
}

fn parse_retry(v: &str) -> Result<u64, PublishError> {
    v.parse().map_err(|_| {
        PublishError::field(
            "retry",
            format!("invalid retry {v:?}: it must be a whole number of milliseconds"),
        )
    })
}

fn from_json(body: &[u8]) -> Result<PublishRequest, PublishError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| PublishError::bad(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(PublishError::bad("the JSON body must be an object"));
    };
    let mut p = PublishRequest::default();
    match (obj.remove("room"), obj.remove("rooms")) {
        (Some(_), Some(_)) => {
            return Err(PublishError::field(
                "room",
                "give \"room\" or \"rooms\", not both",
            ))
        }
        (Some(Value::String(r)), None) => p.rooms.push(r),
        (Some(_), None) => return Err(PublishError::field("room", "\"room\" must be a string")),
        (None, Some(Value::Array(rooms))) => {
            if rooms.is_empty() {
                return Err(PublishError::field("rooms", "\"rooms\" is empty"));
            }
            for r in rooms {
                match r {
                    Value::String(r) => p.rooms.push(r),
                    _ => {
                        return Err(PublishError::field(
                            "rooms",
                            "\"rooms\" must be an array of strings",
                        ))
                    }
                }
            }
        }
        (None, Some(_)) => {
            return Err(PublishError::field(
                "rooms",
                "\"rooms\" must be an array of strings",
            ))
        }
        (None, None) => p.rooms.push(ROOM_ALL.into()),
    }
    p.event = optional_string(&mut obj, "event")?.filter(|e| !e.is_empty());
    p.id = optional_string(&mut obj, "id")?;
    p.retry = match obj.remove("retry") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_u64().ok_or_else(|| {
            PublishError::field(
                "retry",
                format!("invalid retry {n}: it must be a whole number of milliseconds"),
            )
        })?),
        Some(Value::String(s)) => Some(parse_retry(&s)?),
        Some(_) => {
            return Err(PublishError::field(
                "retry",
                "invalid retry: it must be a whole number of milliseconds",
            ))
        }
    };
    p.data = match obj.remove("data") {
        None => String::new(),
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
    };
    if let Some(unknown) = obj.keys().next() {
        return Err(PublishError::bad(format!(
            "unknown field {unknown:?} (expected room, rooms, event, id, retry, data)"
        )));
    }
    Ok(p)
}

fn optional_string(
    obj: &mut Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, PublishError> {
    match obj.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(PublishError::field(
            field,
            format!("\"{field}\" must be a string"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_form() {
        let q = vec![
            ("room".to_owned(), "a".to_owned()),
            ("room".to_owned(), "b".to_owned()),
            ("event".to_owned(), "chat".to_owned()),
            ("id".to_owned(), "7".to_owned()),
            ("retry".to_owned(), "1500".to_owned()),
        ];
        let p = from_query(&q, b"hello\nworld").unwrap();
        assert_eq!(
            p,
            PublishRequest {
                rooms: vec!["a".into(), "b".into()],
                event: Some("chat".into()),
                id: Some("7".into()),
                retry: Some(1500),
                data: "hello\nworld".into(),
            }
        );
        assert_eq!(
            from_query(&[], b"x").unwrap().rooms,
            vec![ROOM_ALL.to_owned()]
        );
        let e = from_query(&[("retry".into(), "soon".into())], b"").unwrap_err();
        assert_eq!(e.field, Some("retry"));
        assert_eq!(from_query(&[], b"\xff").unwrap_err().field, Some("data"));
    }

    #[test]
    fn json_form() {
        let p = from_json(br#"{"rooms":["a","b"],"event":"e","data":{"n":1}}"#).unwrap();
        assert_eq!(p.rooms, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(p.data, r#"{"n":1}"#);
        let p = from_json(br#"{"room":"a","data":"text","retry":100}"#).unwrap();
        assert_eq!((p.data.as_str(), p.retry), ("text", Some(100)));
        assert_eq!(from_json(b"{}").unwrap().rooms, vec![ROOM_ALL.to_owned()]);
        assert!(from_json(b"{")
            .unwrap_err()
            .message
            .contains("not valid JSON"));
        assert!(from_json(b"[1]").is_err());
        assert_eq!(
            from_json(br#"{"retry":"x"}"#).unwrap_err().field,
            Some("retry")
        );
        assert_eq!(
            from_json(br#"{"retry":-5}"#).unwrap_err().field,
            Some("retry")
        );
        assert_eq!(
            from_json(br#"{"event":3}"#).unwrap_err().field,
            Some("event")
        );
        assert!(from_json(br#"{"room":"a","rooms":["b"]}"#).is_err());
        assert!(from_json(br#"{"rooms":[]}"#).is_err());
        assert!(from_json(br#"{"colour":"red"}"#)
            .unwrap_err()
            .message
            .contains("colour"));
    }

    #[test]
    fn invalid_fields_name_themselves() {
        let p = PublishRequest {
            event: Some("a\nb".into()),
            ..PublishRequest::default()
        };
        let e = PublishError::from(p.message().unwrap_err());
        assert_eq!(e.field, Some("event"));
        assert!(e.message.starts_with("invalid event"));
        let p = PublishRequest {
            id: Some("1\r".into()),
            ..PublishRequest::default()
        };
        assert_eq!(
            PublishError::from(p.message().unwrap_err()).field,
            Some("id")
        );
    }
}
