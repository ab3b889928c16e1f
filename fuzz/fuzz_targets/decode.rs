//! Coverage-guided fuzzing of the event-stream decoder.
//!
//! The first input byte picks where to split the rest into two reads. The decoder must
//! never panic, and the split must never change what it yields. Run with:
//! `cargo +nightly fuzz run decode` from the `fuzz/` folder (see README).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssehub::decode::{Decoder, Item};

fn decode(parts: &[&[u8]]) -> Vec<Item> {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    for p in parts {
        d.feed(p);
        // Both runs must fail alike too, so an error just ends the list.
        while let Ok(Some(i)) = d.next_item() {
            out.push(i);
        }
    }
    out
}

fuzz_target!(|input: &[u8]| {
    let Some((&cut, bytes)) = input.split_first() else {
        return;
    };
    let cut = cut as usize % (bytes.len() + 1);
    let whole = decode(&[bytes]);
    let split = decode(&[&bytes[..cut], &bytes[cut..]]);
    assert_eq!(whole, split);
});
