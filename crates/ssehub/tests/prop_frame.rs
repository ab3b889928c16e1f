//! Property tests of the wire format: every valid `Message` survives encode -> decode,
//! under every split of the byte stream into reads; invalid fields always error; and the
//! decoder never panics and gives the same items however arbitrary bytes are split.

use std::time::Duration;

use proptest::prelude::*;
use ssehub::decode::{Decoder, Item};
use ssehub::{FrameError, Message};

/// Text without CR, LF or NUL: valid for `id` (and, without NUL, for `event`).
fn field_text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[^\r\n\u{0}]{0,12}").unwrap()
}

/// Any text, biased towards line endings, spaces and colons, which the format cares about.
fn data_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("\n".to_owned()),
            Just("\r\n".to_owned()),
            Just("\r".to_owned()),
            Just(" ".to_owned()),
            Just(":".to_owned()),
            Just("data: x".to_owned()),
            "\\PC{0,6}",
            any::<char>().prop_map(String::from),
        ],
        0..8,
    )
    .prop_map(|parts| parts.concat())
}

fn message() -> impl Strategy<Value = Message> {
    (
        proptest::option::of(field_text()),
        proptest::option::of(field_text()),
        proptest::option::of(0u64..10_000_000),
        proptest::option::of(data_text()),
    )
        .prop_map(|(id, event, retry, data)| {
            let mut b = Message::builder();
            if let Some(id) = id {
                b = b.id(id);
            }
            if let Some(e) = event {
                b = b.event(e);
            }
            if let Some(r) = retry {
                b = b.retry(Duration::from_millis(r));
            }
            if let Some(d) = data {
                b = b.data(d);
            }
            b.build().expect("generated fields are valid")
        })
}

/// An item as the tests compare it (a decoded `Event` is the library's to build).
#[derive(Debug, PartialEq)]
enum Seen {
    Event {
        event: String,
        data: String,
        last_event_id: String,
    },
    Retry(Duration),
    Comment(String),
}

impl From<Item> for Seen {
    fn from(item: Item) -> Seen {
        match item {
            Item::Event(e) => Seen::Event {
                event: e.event,
                data: e.data,
                last_event_id: e.last_event_id,
            },
            Item::Retry(r) => Seen::Retry(r),
            Item::Comment(c) => Seen::Comment(c),
            other => panic!("an item the tests do not know: {other:?}"),
        }
    }
}

/// What a conforming client must report for `messages`, from the standard's rules.
fn expected(messages: &[Message]) -> Vec<Seen> {
    let mut last_id = String::new();
    let mut out = Vec::new();
    for m in messages {
        if let Some(id) = m.id() {
            last_id = id.to_owned();
        }
        if let Some(r) = m.retry() {
            out.push(Seen::Retry(Duration::from_millis(r.as_millis() as u64)));
        }
        if let Some(data) = m.data() {
            out.push(Seen::Event {
                event: match m.event() {
                    Some(e) if !e.is_empty() => e.to_owned(),
                    _ => "message".to_owned(),
                },
                data: data.replace("\r\n", "\n").replace('\r', "\n"),
                last_event_id: last_id.clone(),
            });
        }
    }
    out
}

/// Decode `bytes` fed in pieces cut at `cuts` (positions, any order, any count).
fn decode_split(bytes: &[u8], cuts: &[usize]) -> Vec<Seen> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut d = Decoder::new();
    let mut items = Vec::new();
    let mut start = 0;
    for &c in cuts.iter().chain(std::iter::once(&bytes.len())) {
        d.feed(&bytes[start..c]);
        start = c;
        while let Some(i) = d.next_item().expect("within the decoder's limits") {
            items.push(Seen::from(i));
        }
    }
    items
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_decode_is_identity(
        messages in proptest::collection::vec(message(), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let stream: Vec<u8> = messages.iter().flat_map(|m| m.encode().to_vec()).collect();
        prop_assert_eq!(decode_split(&stream, &cuts), expected(&messages));
    }

    #[test]
    fn line_breaks_in_event_or_id_always_error(
        before in field_text(),
        after in field_text(),
        brk in prop_oneof![Just("\n"), Just("\r"), Just("\r\n")],
    ) {
        let bad = format!("{before}{brk}{after}");
        prop_assert_eq!(
            Message::builder().event(bad.clone()).data("x").build(),
            Err(FrameError::EventLineBreak)
        );
        prop_assert_eq!(Message::builder().id(bad).build(), Err(FrameError::IdLineBreak));
        let nul = format!("{before}\0{after}");
        prop_assert_eq!(Message::builder().id(nul).build(), Err(FrameError::IdNul));
    }

    /// Fuzz-style: arbitrary bytes never panic the decoder, and how they are split into
    /// reads never changes what it yields. (`fuzz/` runs the same check coverage-guided.)
    #[test]
    fn decoder_is_split_invariant_on_arbitrary_bytes(
        bytes in proptest::collection::vec(
            prop_oneof![
                Just(b'\n'), Just(b'\r'), Just(b':'), Just(b' '), Just(0xEFu8), Just(0xBB), Just(0xBF),
                any::<u8>(),
            ],
            0..256,
        ),
        cuts in proptest::collection::vec(any::<usize>(), 0..16),
    ) {
        let whole = decode_split(&bytes, &[]);
        let split = decode_split(&bytes, &cuts);
        prop_assert_eq!(whole, split);
        let one_by_one: Vec<usize> = (0..bytes.len()).collect();
        prop_assert_eq!(decode_split(&bytes, &[]), decode_split(&bytes, &one_by_one));
    }
}
