//! `GET /rooms` and `GET /rooms/{room}`: the rooms, largest first, and the members of
//! one, a page at a time. Per-room figures live here rather than in `/metrics`, whose
//! size must not grow with the number of rooms.

use std::future::Future;

use http::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::json;

use super::ApiBody;
use crate::hub::{check_room, Hub, MemberInfo, RoomInfo};
use crate::respond::{allow_only, json};
use crate::uri::query_pairs;

/// A page when the request names none.
const DEFAULT_LIMIT: usize = 100;
/// The largest page served.
const MAX_LIMIT: usize = 1000;

/// Which part of a list a request asks for: `?offset=N&limit=M`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Page {
    offset: usize,
    limit: usize,
}

impl Page {
    fn of<B>(req: &Request<B>) -> Result<Page, String> {
        let mut page = Page {
            offset: 0,
            limit: DEFAULT_LIMIT,
        };
        for (k, v) in query_pairs(req.uri()) {
            let n = || {
                v.parse::<usize>()
                    .map_err(|_| format!("invalid {k}: it must be a whole number"))
            };
            match k.as_str() {
                "offset" => page.offset = n()?,
                "limit" => page.limit = n()?.clamp(1, MAX_LIMIT),
                _ => {}
            }
        }
        Ok(page)
    }
}

#[derive(Serialize)]
struct RoomList {
    total: usize,
    offset: usize,
    limit: usize,
    rooms: Vec<RoomInfo>,
}

#[derive(Serialize)]
struct RoomMembers {
    room: String,
    members: usize,
    history: usize,
    offset: usize,
    limit: usize,
    connections: Vec<MemberInfo>,
}

fn bad_request(why: String) -> Response<ApiBody> {
    json(StatusCode::BAD_REQUEST, &json!({ "error": why }))
}

/// `GET /rooms`: `{"total", "offset", "limit", "rooms": [{"room", "members",
/// "history"}]}`, largest room first. The request is read at once; the answer waits for
/// the page's history depths (a round trip with a distributed backplane).
pub(super) fn rooms<B>(
    hub: &Hub,
    req: &Request<B>,
) -> impl Future<Output = Response<ApiBody>> + Send + 'static {
    let page = match allow_only(req, &[Method::GET, Method::HEAD]) {
        Some(refused) => Err(refused),
        None => Page::of(req).map_err(bad_request),
    };
    let hub = hub.clone();
    async move {
        let page = match page {
            Ok(page) => page,
            Err(answer) => return answer,
        };
        let (total, rooms) = hub.rooms_page(page.offset, page.limit).await;
        let list = RoomList {
            total,
            offset: page.offset,
            limit: page.limit,
            rooms,
        };
        json(StatusCode::OK, &list)
    }
}

/// `GET /rooms/{room}` (the name percent-encoded): `{"room", "members", "history",
/// "offset", "limit", "connections": [{"id", "identity", "peer", "client", "since_ms",
/// "transport", "queued_bytes", "dropped_events"}]}`, oldest connection first. A room
/// with no member answers 200 with none (it may have had some a moment ago).
pub(super) fn room<B>(
    hub: &Hub,
    req: &Request<B>,
    encoded: &str,
) -> impl Future<Output = Response<ApiBody>> + Send + 'static {
    let asked = match allow_only(req, &[Method::GET, Method::HEAD]) {
        Some(refused) => Err(refused),
        None => room_and_page(req, encoded).map_err(bad_request),
    };
    let hub = hub.clone();
    async move {
        let (room, page) = match asked {
            Ok(asked) => asked,
            Err(answer) => return answer,
        };
        let (members, connections) = hub.members_page(&room, page.offset, page.limit);
        let history = hub.history_depth(&room).await;
        let body = RoomMembers {
            room,
            members,
            history,
            offset: page.offset,
            limit: page.limit,
            connections,
        };
        json(StatusCode::OK, &body)
    }
}

/// The room (decoded and checked) and the page a `GET /rooms/{room}` asks for, or why
/// the request cannot be served.
fn room_and_page<B>(req: &Request<B>, encoded: &str) -> Result<(String, Page), String> {
    let Ok(room) = percent_encoding::percent_decode_str(encoded).decode_utf8() else {
        return Err("the room name is not UTF-8".into());
    };
    check_room(&room)?;
    Ok((room.into_owned(), Page::of(req)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages() {
        let req = |uri: &str| Request::get(uri).body(()).unwrap();
        assert_eq!(
            Page::of(&req("/rooms?offset=5&limit=5000")).unwrap(),
            Page {
                offset: 5,
                limit: MAX_LIMIT
            }
        );
        assert_eq!(Page::of(&req("/rooms")).unwrap().limit, DEFAULT_LIMIT);
        assert!(Page::of(&req("/rooms?limit=x")).is_err());
    }
}
