//! The decoder against hostile and merely large input: a line that never ends is refused
//! with a typed error while the decoder's memory stays bounded, however the line is cut
//! into reads; long lines within the limits decode correctly; and decoding time grows
//! linearly with the line's length (shown by printed timings, never asserted).

use std::time::{Duration, Instant};

use ssehub::decode::{DecodeError, Decoder, Item, DEFAULT_MAX_DATA, DEFAULT_MAX_LINE};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// What feeding a stream in pieces did.
struct Run {
    items: Vec<Item>,
    error: Option<DecodeError>,
    /// Bytes fed when the error came.
    fed_at_error: usize,
    /// The most the decoder held after any `feed` (before draining) or drain.
    peak_buffered: usize,
}

/// Feed `total` bytes of `source` in pieces of the sizes `piece` gives, draining after
/// each, and watching `buffered_len` throughout.
fn run(
    mut d: Decoder,
    total: usize,
    mut source: impl FnMut(usize, &mut Vec<u8>),
    mut piece: impl FnMut() -> usize,
) -> Run {
    let mut r = Run {
        items: Vec::new(),
        error: None,
        fed_at_error: 0,
        peak_buffered: 0,
    };
    let mut chunk = Vec::new();
    let mut fed = 0;
    while fed < total {
        let n = piece().clamp(1, total - fed);
        chunk.clear();
        source(n, &mut chunk);
        d.feed(&chunk);
        fed += n;
        r.peak_buffered = r.peak_buffered.max(d.buffered_len());
        loop {
            match d.next_item() {
                Ok(Some(item)) => r.items.push(item),
                Ok(None) => break,
                Err(e) => {
                    if r.error.is_none() {
                        r.error = Some(e);
                        r.fed_at_error = fed;
                    }
                    assert_eq!(r.error, Some(e), "the error must not change");
                    assert_eq!(d.buffered_len(), 0, "a failed decoder holds nothing");
                    break;
                }
            }
        }
        r.peak_buffered = r.peak_buffered.max(d.buffered_len());
    }
    r
}

/// `data: ` and then `x` forever: a line without end.
fn endless_line() -> impl FnMut(usize, &mut Vec<u8>) {
    let head = b"data: ";
    let mut at = 0usize;
    move |n, out| {
        for _ in 0..n {
            out.push(head.get(at).copied().unwrap_or(b'x'));
            at += 1;
        }
    }
}

/// A small deterministic generator of piece sizes in `1..=max`.
fn pieces(seed: u64, max: usize) -> impl FnMut() -> usize {
    let mut s = seed;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % max as u64) as usize + 1
    }
}

#[test]
fn a_ten_mebibyte_line_is_refused_with_bounded_memory_whatever_the_reads() {
    let total = 10 * MIB;
    let fixed = [1, 7, KIB, 64 * KIB];
    for size in fixed {
        let r = run(Decoder::new(), total, endless_line(), || size);
        check_refused(&r, size, &format!("pieces of {size} bytes"));
    }
    for seed in [1u64, 0x5eed, 0xdead_beef] {
        let r = run(
            Decoder::new(),
            total,
            endless_line(),
            pieces(seed, 64 * KIB),
        );
        check_refused(&r, 64 * KIB, &format!("random pieces (seed {seed:#x})"));
    }
}

fn check_refused(r: &Run, largest_piece: usize, how: &str) {
    let limit = DEFAULT_MAX_LINE;
    assert!(r.items.is_empty(), "{how}: {:?}", r.items.first());
    assert_eq!(
        r.error,
        Some(DecodeError::LineTooLong { limit }),
        "{how}: the endless line must be refused"
    );
    // Refused as soon as the line passed the limit, not at the end of the input...
    assert!(
        r.fed_at_error > limit && r.fed_at_error <= limit + largest_piece,
        "{how}: refused after {} bytes",
        r.fed_at_error
    );
    // ...and never holding more than the limit plus the read that crossed it.
    assert!(
        r.peak_buffered <= limit + largest_piece,
        "{how}: held {} bytes",
        r.peak_buffered
    );
    let message = r.error.unwrap().to_string();
    assert!(
        message.contains(&format!("max_line limit of {limit} bytes")),
        "{message}"
    );
}

#[test]
fn endless_data_lines_are_refused_with_bounded_memory() {
    // Short lines, but never the blank line that would dispatch them.
    let line = b"data: 0123456789abcdef0123456789abcdef\n";
    let mut at = 0usize;
    let source = move |n: usize, out: &mut Vec<u8>| {
        for _ in 0..n {
            out.push(line[at % line.len()]);
            at += 1;
        }
    };
    let r = run(Decoder::new(), 10 * MIB, source, pieces(42, 64 * KIB));
    let limit = DEFAULT_MAX_DATA;
    assert_eq!(r.error, Some(DecodeError::DataTooLarge { limit }));
    assert!(r.items.is_empty());
    assert!(
        r.peak_buffered <= limit + 64 * KIB + line.len(),
        "held {} bytes",
        r.peak_buffered
    );
    // Refused soon after the data passed the limit, not at the end of the input.
    assert!(
        r.fed_at_error <= 2 * limit,
        "refused after {} bytes",
        r.fed_at_error
    );
}

/// Decode one event whose data is a single `len`-byte line, fed in `piece`-byte reads;
/// check the data and return how long it took.
fn decode_long_line(d: Decoder, len: usize, piece: usize) -> Duration {
    // Varied bytes, so a decoder that drops or repeats a piece is caught.
    let data: Vec<u8> = (0..len).map(|i| b'a' + (i % 23) as u8).collect();
    let mut stream = b"id: 7\ndata: ".to_vec();
    stream.extend_from_slice(&data);
    stream.extend_from_slice(b"\r\n\r\n");
    let started = Instant::now();
    let mut d = d;
    let mut items = Vec::new();
    for chunk in stream.chunks(piece) {
        d.feed(chunk);
        while let Some(item) = d.next_item().expect("a line within the limits") {
            items.push(item);
        }
    }
    let took = started.elapsed();
    match &items[..] {
        [Item::Event(e)] => {
            assert_eq!(
                (e.event.as_str(), e.last_event_id.as_str()),
                ("message", "7")
            );
            assert!(e.data.as_bytes() == &data[..], "the data came out changed");
        }
        other => panic!("expected one event, got {} items", other.len()),
    }
    assert_eq!(d.buffered_len(), 0);
    took
}

#[test]
fn a_long_allowed_line_decodes_in_linear_time() {
    let took = decode_long_line(Decoder::new(), 512 * KIB, KIB);
    println!("512 KiB line in 1 KiB reads: {took:?}");
    // Also a byte at a time, the worst case for a decoder that rescans its buffer.
    let took = decode_long_line(Decoder::new(), 512 * KIB, 1);
    println!("512 KiB line in 1-byte reads: {took:?}");

    // Timings are shown, not asserted: linear time means about 4x for 4x the bytes
    // (a rescanning decoder would show about 16x). The best of three runs each, as other
    // work on the machine only ever adds time.
    let raised = || Decoder::new().max_line(8 * MIB).max_data(8 * MIB);
    let best = |len| {
        (0..3)
            .map(|_| decode_long_line(raised(), len, KIB))
            .min()
            .unwrap()
    };
    let one = best(MIB);
    let four = best(4 * MIB);
    println!(
        "1 MiB line in 1 KiB reads: {one:?}; 4 MiB: {four:?}; ratio {:.1} (linear: ~4, quadratic: ~16)",
        four.as_secs_f64() / one.as_secs_f64().max(1e-9)
    );
}

#[test]
fn a_line_just_over_a_raised_limit_is_refused_and_one_at_it_passes() {
    let limit = 3 * MIB;
    let decoder = || Decoder::new().max_line(limit).max_data(limit);
    // "data: " takes 6 bytes of the line.
    decode_long_line(decoder(), limit - 6, 4 * KIB);
    let mut d = decoder();
    let mut stream = b"data: ".to_vec();
    stream.resize(limit + 1, b'y');
    stream.extend_from_slice(b"\n\n");
    let mut error = None;
    for chunk in stream.chunks(4 * KIB) {
        d.feed(chunk);
        if let Err(e) = d.next_item() {
            error = Some(e);
            break;
        }
    }
    assert_eq!(error, Some(DecodeError::LineTooLong { limit }));
}
