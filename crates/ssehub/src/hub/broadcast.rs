//! A publication being set up ([`Broadcast`]) and the rooms it goes to ([`IntoRooms`]): its rooms, each named once, whom to skip,
//! whether to de-duplicate; and the checks a publication passes before anything is sent.

use std::collections::HashSet;

use super::backplane::Published;
use super::fanout::Publication;
use super::publish_error::PublishError;
use super::{Hub, HubInner};
use crate::connection::ConnectionId;
use crate::message::Message;

/// A publication being set up: which rooms, whom to skip, whether to de-duplicate.
/// Made by [`Hub::to`]; [`Broadcast::publish`] performs it. This is the one way to send
/// an event to rooms (SimpleW's `BroadcastAsync`, `BroadcastManyAsync` and their
/// variants are all `hub.to(rooms)...publish(&message)`).
///
/// ```
/// # fn demo(hub: &ssehub::Hub, sender: &ssehub::Connection) -> Result<(), ssehub::PublishError> {
/// use ssehub::Message;
///
/// let m = Message::new("hi all");
/// hub.to("chat").publish(&m)?;                   // one room
/// hub.to(["r1", "r2"]).publish(&m)?;             // a member of both gets it twice (as SimpleW)
/// hub.to(["r1", "r2"]).unique().publish(&m)?;    // ...or once
/// hub.to("chat").except(sender).publish(&m)?;    // skip the sender
/// # Ok(()) }
/// ```
#[must_use = "a broadcast does nothing until `publish` is called"]
pub struct Broadcast<'a> {
    hub: &'a Hub,
    rooms: Vec<String>,
    except: Option<ConnectionId>,
    unique: bool,
    private: bool,
}

/// The rooms of a publication: one name (`&str`, `String`), or several (an array, a
/// slice or a `Vec` of names). A room named twice is one room.
///
/// Implemented for the standard types only; collect any other iterator into a `Vec`.
pub trait IntoRooms: sealed::Sealed {
    /// The names, each once, in the order first named.
    #[doc(hidden)]
    fn into_rooms(self) -> Vec<String>;
}

mod sealed {
    /// Keeps [`super::IntoRooms`] implemented here only, so that it can grow.
    pub trait Sealed {}
}

macro_rules! one_room {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl IntoRooms for $t {
            fn into_rooms(self) -> Vec<String> {
                vec![AsRef::<str>::as_ref(&self).to_owned()]
            }
        }
    )*};
}
one_room!(&str, String, &String);

macro_rules! many_rooms {
    ($([$($g:tt)*] $t:ty),*) => {$(
        impl<$($g)*> sealed::Sealed for $t {}
        impl<$($g)*> IntoRooms for $t {
            fn into_rooms(self) -> Vec<String> {
                distinct(self)
            }
        }
    )*};
}
many_rooms!(
    [S: AsRef<str>] Vec<S>,
    ['a, S: AsRef<str>] &'a Vec<S>,
    ['a, S: AsRef<str>] &'a [S],
    [S: AsRef<str>, const N: usize] [S; N],
    ['a, S: AsRef<str>, const N: usize] &'a [S; N]
);

impl<'a> Broadcast<'a> {
    pub(super) fn new(hub: &'a Hub, rooms: impl IntoRooms) -> Broadcast<'a> {
        Broadcast {
            hub,
            rooms: rooms.into_rooms(),
            except: None,
            unique: false,
            private: false,
        }
    }

    /// Skip this connection (typically the sender): a [`crate::Connection`] or its
    /// [`ConnectionId`].
    pub fn except(mut self, conn: impl Into<ConnectionId>) -> Self {
        self.except = Some(conn.into());
        self
    }

    /// Deliver at most once to a connection that is in several of the rooms. Without it
    /// such a connection gets the event once per room, as in SimpleW.
    pub fn unique(mut self) -> Self {
        self.unique = true;
        self
    }

    /// Deliver only to the connections whose audience accepts one of the rooms (a
    /// topic dialect's private update: `hub/topics.rs`), live and on replay.
    #[cfg_attr(not(feature = "mercure"), allow(dead_code))]
    pub(crate) fn private(mut self, private: bool) -> Self {
        self.private = private;
        self
    }

    /// Publish `message`: in rooms with history, give it its id (unless it has one) and
    /// record it, then queue it to every recipient (encoded once; every outbox gets the
    /// same bytes; nothing waits on a socket). Returns its id and how many connections it
    /// reached (counting duplicates unless [`Broadcast::unique`]).
    ///
    /// Refused, with nothing sent: an id of its own that cannot be a cursor in a room
    /// with history (empty, reserved, or already in the history), more distinct rooms
    /// than [`crate::HubConfig::max_rooms_per_publish`], a message larger than
    /// [`crate::HubConfig::max_event_bytes`].
    ///
    /// With a distributed backplane this does not wait for the backplane: the answer has
    /// no id and no count yet; [`Broadcast::publish_and_wait`] waits for both.
    ///
    /// ```
    /// let hub = ssehub::Hub::new();
    /// let published = hub.to("news").publish(&ssehub::Message::new("hello"))?;
    /// assert!(published.id.is_some()); // `news` keeps history: the event has a cursor
    /// assert_eq!(published.delivered, 0); // nobody is connected yet
    /// # Ok::<(), ssehub::PublishError>(())
    /// ```
    #[doc(alias = "broadcast")]
    #[doc(alias = "send")]
    pub fn publish(self, message: &Message) -> Result<Published, PublishError> {
        self.check(message)?;
        let (inner, publication) = self.into_publication();
        let published = inner.backplane.publish(&publication, message)?;
        inner.local.metrics.published.inc();
        Ok(published)
    }

    /// Publish `message` and wait until the backplane has given it its id and this node
    /// has delivered it (at once in-process; a round trip with a distributed backplane).
    /// Refused as [`Broadcast::publish`] refuses. Counted as published, as `publish`
    /// counts, once the backplane took it.
    pub fn publish_and_wait(
        self,
        message: &Message,
    ) -> impl std::future::Future<Output = Result<Published, PublishError>> + Send + 'static {
        let checked = self.check(message);
        let hub = self.hub.clone();
        let (_, publication) = self.into_publication();
        let fut = checked.map(|()| {
            hub.inner
                .backplane
                .publish_wait(publication, message.clone())
        });
        async move {
            let published = fut?.await?;
            hub.inner.local.metrics.published.inc();
            Ok(published)
        }
    }

    /// What the hub's limits say of this broadcast of `message`.
    fn check(&self, message: &Message) -> Result<(), PublishError> {
        let config = &self.hub.inner.config;
        let max = config.rooms_per_publish();
        if self.rooms.len() > max {
            let rooms = self.rooms.len();
            return Err(PublishError::TooManyRooms { rooms, max });
        }
        let (bytes, max) = (message.encoded_len(), config.event_bytes());
        if bytes > max {
            return Err(PublishError::TooLarge { bytes, max });
        }
        Ok(())
    }

    fn into_publication(self) -> (&'a HubInner, Publication) {
        let publication = Publication {
            rooms: self.rooms,
            except: self.except,
            unique: self.unique,
            private: self.private,
            sample: crate::metrics::sample(),
        };
        (&self.hub.inner, publication)
    }
}

/// `rooms`, each once, in the order first named. A short list is searched as it grows;
/// a long one (a hostile `/publish`, say) through a set, so that the cost stays linear.
fn distinct<S: AsRef<str>>(rooms: impl IntoIterator<Item = S>) -> Vec<String> {
    const SHORT: usize = 16;
    let mut out: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for room in rooms {
        let room = room.as_ref();
        let new = if out.len() < SHORT {
            !out.iter().any(|r| r == room)
        } else {
            if seen.is_empty() {
                seen.extend(out.iter().cloned());
            }
            seen.insert(room.to_owned())
        };
        if new {
            out.push(room.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::distinct;

    #[test]
    fn rooms_are_kept_once_in_first_order() {
        assert_eq!(distinct(["a", "b", "a", "c", "b"]), ["a", "b", "c"]);
        let long: Vec<String> = (0..100)
            .chain(0..100)
            .map(|i| format!("r{}", i % 40))
            .collect();
        let expected: Vec<String> = (0..40).map(|i| format!("r{i}")).collect();
        assert_eq!(distinct(&long), expected);
        assert!(distinct(Vec::<String>::new()).is_empty());
    }
}
