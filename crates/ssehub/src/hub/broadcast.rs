//! A broadcast being set up ([`Broadcast`]): its rooms, each named once, whom to skip,
//! whether to de-duplicate; and the checks a publication passes before anything is sent.

use std::collections::HashSet;

use super::backplane::Published;
use super::fanout::Publication;
use super::publish_error::PublishError;
use super::{Hub, HubInner};
use crate::connection::{Connection, ConnectionId};
use crate::frame::Message;
use crate::log_limit::warn_limited;

/// A broadcast being set up: which rooms, whom to skip, whether to de-duplicate.
/// Made by [`Hub::to`] and [`Hub::to_many`]; [`Broadcast::send`] performs it.
#[must_use = "a broadcast does nothing until `send` is called"]
pub struct Broadcast<'a> {
    hub: &'a Hub,
    rooms: Vec<String>,
    except: Option<ConnectionId>,
    unique: bool,
}

impl<'a> Broadcast<'a> {
    pub(super) fn new<I, S>(hub: &'a Hub, rooms: I) -> Broadcast<'a>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Broadcast {
            hub,
            rooms: distinct(rooms),
            except: None,
            unique: false,
        }
    }

    /// Skip this connection (typically the sender).
    pub fn except(mut self, conn: &Connection) -> Self {
        self.except = Some(conn.id());
        self
    }

    /// Skip the connection with this id.
    pub fn except_id(mut self, id: ConnectionId) -> Self {
        self.except = Some(id);
        self
    }

    /// Deliver at most once to a connection that is in several of the rooms.
    pub fn unique(mut self) -> Self {
        self.unique = true;
        self
    }

    /// Encode `message` once and queue it to every recipient. Returns how many
    /// connections it reached (counting duplicates unless [`Broadcast::unique`]).
    ///
    /// In rooms with history the event is numbered and recorded (see
    /// [`Broadcast::publish`]). If its own id cannot be a cursor there (empty, already
    /// in the history, or reserved), it is still delivered, not recorded, and a warning
    /// is logged; [`Broadcast::publish`] returns the error instead.
    ///
    /// A broadcast to more distinct rooms than [`crate::HubConfig::max_rooms_per_publish`],
    /// or of a message larger than [`crate::HubConfig::max_event_bytes`], sends nothing:
    /// it returns 0 and logs a warning.
    pub fn send(self, message: &Message) -> usize {
        if let Err(e) = self.check(message) {
            warn_limited!(error = %e, "event not sent");
            return 0;
        }
        let (inner, publication) = self.into_publication();
        inner.local.metrics.published.inc();
        match inner.backplane.publish(&publication, message) {
            Ok(published) => published.delivered,
            Err(e) => {
                warn_limited!(error = %e, "event delivered without being recorded in history");
                inner
                    .backplane
                    .publish_unrecorded(&publication, message)
                    .delivered
            }
        }
    }

    /// Publish `message`: in rooms with history, give it its id (unless it has one) and
    /// record it, then queue it to every recipient. Returns its id and how many
    /// connections it reached. An id of its own that cannot be a cursor in a room with
    /// history is an error, and then nothing is sent; so are more distinct rooms than
    /// [`crate::HubConfig::max_rooms_per_publish`] and a message larger than
    /// [`crate::HubConfig::max_event_bytes`].
    ///
    /// With a distributed backplane this does not wait for the backplane: the answer has
    /// no id and no count yet; [`Broadcast::publish_and_wait`] waits for both.
    ///
    /// ```
    /// let hub = ssehub::Hub::new();
    /// let published = hub.to("news").publish(&ssehub::Message::new("hello"))?;
    /// assert!(published.id.is_some()); // `news` keeps history: the event has a cursor
    /// # Ok::<(), ssehub::PublishError>(())
    /// ```
    pub fn publish(self, message: &Message) -> Result<Published, PublishError> {
        self.check(message)?;
        let (inner, publication) = self.into_publication();
        let published = inner.backplane.publish(&publication, message)?;
        inner.local.metrics.published.inc();
        Ok(published)
    }

    /// Publish `message` and wait until the backplane has given it its id and this node
    /// has delivered it (at once in-process; a round trip with a distributed backplane).
    /// Refused as [`Broadcast::publish`] refuses.
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
            sample: crate::metrics::sample(),
        };
        (&self.hub.inner, publication)
    }
}

/// `rooms`, each once, in the order first named. A short list is searched as it grows;
/// a long one (a hostile `/publish`, say) through a set, so that the cost stays linear.
fn distinct<I, S>(rooms: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
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
