//! What the bench speaks: the room hub's own dialect (`GET /sse?room=`, `POST
//! /publish?room=`), or Mercure's (`GET /.well-known/mercure?topic=`, `POST` of a form
//! with a publisher's token), so both paths of one server are measured by the same
//! subscribers and publishers. Room `k` of a run is the room `bench-k`, or the topic
//! `https://bench.example/rooms/k`.

use bytes::Bytes;
use ssehub::MERCURE_PATH;

/// The protocol a run speaks (`--dialect`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Dialect {
    /// ssehub's rooms: `/sse?room=` and `/publish?room=`.
    #[default]
    Rooms,
    /// The Mercure hub: `/.well-known/mercure?topic=` and its publish form.
    Mercure,
}

/// One event's request to publish it.
pub(super) struct PublishRequest {
    pub path: String,
    pub content_type: Option<&'static str>,
    pub body: Bytes,
}

impl Dialect {
    /// The path of the stream endpoint.
    pub(super) fn stream_path(self) -> &'static str {
        match self {
            Dialect::Rooms => "/sse",
            Dialect::Mercure => MERCURE_PATH,
        }
    }

    /// The object of the server's `/stats` that counts this dialect's streams.
    pub(super) fn stats_section(self) -> Option<&'static str> {
        match self {
            Dialect::Rooms => None,
            Dialect::Mercure => Some("mercure"),
        }
    }

    /// The query pair that subscribes to room `k`.
    pub(super) fn select(self, k: usize) -> String {
        match self {
            Dialect::Rooms => format!("room=bench-{k}"),
            Dialect::Mercure => form(&[("topic", &topic(k))]),
        }
    }

    /// The request that publishes `data` to room `k` (`path` is the server's base path).
    pub(super) fn publish(self, base: &str, k: usize, data: String) -> PublishRequest {
        match self {
            Dialect::Rooms => PublishRequest {
                path: format!("{base}/publish?room=bench-{k}&event=bench"),
                content_type: None,
                body: Bytes::from(data),
            },
            Dialect::Mercure => PublishRequest {
                path: format!("{base}{MERCURE_PATH}"),
                content_type: Some("application/x-www-form-urlencoded"),
                body: Bytes::from(form(&[
                    ("topic", &topic(k)),
                    ("type", "bench"),
                    ("data", &data),
                ])),
            },
        }
    }
}

/// The Mercure topic of room `k`.
fn topic(k: usize) -> String {
    format!("https://bench.example/rooms/{k}")
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_dialect_names_room_k_its_own_way() {
        assert_eq!(Dialect::Rooms.select(3), "room=bench-3");
        assert_eq!(
            Dialect::Mercure.select(3),
            "topic=https%3A%2F%2Fbench.example%2Frooms%2F3"
        );
        let p = Dialect::Mercure.publish("/hub", 3, "~12 x&y".into());
        assert_eq!(p.path, "/hub/.well-known/mercure");
        assert_eq!(
            p.body,
            "topic=https%3A%2F%2Fbench.example%2Frooms%2F3&type=bench&data=%7E12+x%26y"
        );
        let p = Dialect::Rooms.publish("", 3, "d".into());
        assert_eq!(p.path, "/publish?room=bench-3&event=bench");
        assert_eq!(p.content_type, None);
    }
}
