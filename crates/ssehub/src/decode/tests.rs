use super::*;
use http_body::Body;

fn events(chunks: &[&[u8]]) -> Vec<Item> {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    for c in chunks {
        d.feed(c);
        while let Some(i) = d.next_item().unwrap() {
            out.push(i);
        }
    }
    out
}

fn ev(event: &str, data: &str, id: &str) -> Item {
    Item::Event(Event {
        event: event.into(),
        data: data.into(),
        last_event_id: id.into(),
    })
}

#[test]
fn standard_example_streams() {
    // From the standard's examples.
    let got = events(&[b"data: YHOO\ndata: +2\ndata: 10\n\n"]);
    assert_eq!(got, vec![ev("message", "YHOO\n+2\n10", "")]);
    let got = events(&[b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n"]);
    assert_eq!(
        got,
        vec![
            Item::Comment("test stream".into()),
            ev("message", "first event", "1"),
            ev("message", "second event", ""),
            ev("message", " third event", ""),
        ]
    );
    let got = events(&[b"data\n\ndata\ndata\n\ndata:"]);
    assert_eq!(got, vec![ev("message", "", ""), ev("message", "\n", "")]);
}

#[test]
fn crlf_split_across_reads_is_one_line_end() {
    let got = events(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
    assert_eq!(got, vec![ev("message", "a\nb", "")]);
}

#[test]
fn bom_stripped_once_and_lone_cr_ends_lines() {
    let got = events(&[b"\xEF\xBB", b"\xBFdata: x\r\r\xEF\xBB\xBFdata: y\r\r"]);
    assert_eq!(
        got,
        vec![ev("message", "x", "")] // second BOM makes the field name unknown
    );
}

#[test]
fn retry_digits_only_and_nul_id_ignored() {
    let got = events(&[b"retry: 12a\nretry: 250\nid: a\0b\ndata: x\n\n"]);
    assert_eq!(
        got,
        vec![
            Item::Retry(Duration::from_millis(250)),
            ev("message", "x", "")
        ]
    );
}

#[test]
fn resumed_decoder_keeps_the_last_id_until_a_new_one() {
    let mut d = Decoder::resume("7");
    d.feed(b"data: a\n\nid: 8\ndata: b\n\n");
    assert_eq!(d.next_item(), Ok(Some(ev("message", "a", "7"))));
    assert_eq!(d.next_item(), Ok(Some(ev("message", "b", "8"))));
}

#[test]
fn id_only_moves_cursor_and_unfinished_event_is_dropped() {
    let mut d = Decoder::new();
    d.feed(b"id: 5\n\nevent: e\ndata: cut");
    assert_eq!(d.next_item(), Ok(None));
    assert_eq!(d.last_event_id(), "5");
}

/// Feed `chunks`, draining after each; the items, then the error if one came.
fn decode_with(mut d: Decoder, chunks: &[&[u8]]) -> (Vec<Item>, Option<DecodeError>) {
    let mut out = Vec::new();
    for c in chunks {
        d.feed(c);
        loop {
            match d.next_item() {
                Ok(Some(i)) => out.push(i),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

#[test]
fn a_line_of_exactly_max_line_passes_one_more_byte_fails() {
    use DecodeError::LineTooLong;
    let long = LineTooLong { limit: 9 };
    // "data: abc" is 9 bytes; its line end does not count, whichever it is.
    for end in ["\n", "\r", "\r\n"] {
        let input = format!("data: abc{end}{end}");
        let (items, err) = decode_with(Decoder::new().max_line(9), &[input.as_bytes()]);
        assert_eq!(
            (items, err),
            (vec![ev("message", "abc", "")], None),
            "{end:?}"
        );
        let input = format!("data: abcd{end}{end}");
        let (items, err) = decode_with(Decoder::new().max_line(9), &[input.as_bytes()]);
        assert_eq!((items, err), (vec![], Some(long)), "{end:?}");
    }
    // The same, a byte at a time: the unfinished line fails once it passes the limit.
    let bytes = b"data: abc\r\ndata: abcd";
    let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
    let (items, err) = decode_with(Decoder::new().max_line(9), &chunks);
    assert_eq!((items, err), (vec![], Some(long)));
    let (_, err) = decode_with(Decoder::new().max_line(9), &chunks[..chunks.len() - 1]);
    assert_eq!(
        err, None,
        "ten bytes of an unfinished line is not yet too long"
    );
}

#[test]
fn items_before_the_long_line_come_first_and_the_error_is_final() {
    let mut d = Decoder::new().max_line(4);
    d.feed(b":a\n:b\n:toolong\n:c\n\n");
    assert_eq!(d.next_item(), Ok(Some(Item::Comment("a".into()))));
    assert_eq!(d.next_item(), Ok(Some(Item::Comment("b".into()))));
    let err = DecodeError::LineTooLong { limit: 4 };
    assert_eq!(d.next_item(), Err(err));
    assert_eq!(d.buffered_len(), 0);
    d.feed(b":ok\n\n");
    assert_eq!(d.buffered_len(), 0, "input after the error is dropped");
    assert_eq!(d.next_item(), Err(err));
    assert!(
        err.to_string().contains("max_line limit of 4 bytes"),
        "{err}"
    );
}

#[test]
fn feed_alone_refuses_an_endless_line() {
    // A caller that feeds without draining still cannot make the decoder grow.
    let mut d = Decoder::new().max_line(100);
    for _ in 0..1000 {
        d.feed(&[b'x'; 64]);
        assert!(d.buffered_len() <= 100 + 64);
    }
    assert_eq!(d.buffered_len(), 0);
    assert_eq!(d.next_item(), Err(DecodeError::LineTooLong { limit: 100 }));
}

#[test]
fn event_data_is_capped_as_dispatched() {
    use DecodeError::DataTooLarge;
    // "ab\ncd\nef" is 8 bytes: the LFs between lines count, the last one does not.
    let input = b"data: ab\ndata: cd\ndata: ef\n\n";
    let (items, err) = decode_with(Decoder::new().max_data(8), &[input]);
    assert_eq!((items, err), (vec![ev("message", "ab\ncd\nef", "")], None));
    let (items, err) = decode_with(Decoder::new().max_data(7), &[input]);
    assert_eq!((items, err), (vec![], Some(DataTooLarge { limit: 7 })));
    // The cap is per event: dispatching starts the count again.
    let many: Vec<u8> = b"data: abcdefgh\n\n".repeat(100);
    let (items, err) = decode_with(Decoder::new().max_data(8), &[&many]);
    assert_eq!((items.len(), err), (100, None));
    // Endless data lines without a blank line are refused, not gathered.
    let mut d = Decoder::new().max_data(1000);
    let mut err = None;
    for _ in 0..1000 {
        d.feed(b"data: 0123456789\n");
        if let Err(e) = d.next_item() {
            err = Some(e);
            break;
        }
        assert!(d.buffered_len() <= 1000 + 1);
    }
    assert_eq!(err, Some(DataTooLarge { limit: 1000 }));
}

#[test]
fn default_limits_take_a_full_mebibyte_of_data_on_one_line() {
    let data = "x".repeat(DEFAULT_MAX_DATA);
    let (items, err) = decode_with(Decoder::new(), &[format!("data: {data}\n\n").as_bytes()]);
    assert_eq!(err, None);
    assert!(matches!(&items[..], [Item::Event(e)] if e.data == data));
    let (_, err) = decode_with(Decoder::new(), &[format!("data: {data}x\n\n").as_bytes()]);
    assert_eq!(
        err,
        Some(DecodeError::DataTooLarge {
            limit: DEFAULT_MAX_DATA
        })
    );
}

mod event_stream {
    use super::*;
    use bytes::Bytes;
    use futures_util::stream;
    use http_body::Frame;
    use http_body_util::StreamBody;

    type Piece<D> = Result<Frame<D>, std::io::Error>;

    fn body<D>(pieces: Vec<Piece<D>>) -> StreamBody<stream::Iter<std::vec::IntoIter<Piece<D>>>> {
        StreamBody::new(stream::iter(pieces))
    }

    fn data(bytes: &[u8]) -> Piece<Bytes> {
        Ok(Frame::data(Bytes::copy_from_slice(bytes)))
    }

    async fn drain<B: Body + Unpin>(s: &mut EventStream<B>) -> Vec<Item>
    where
        B::Error: std::fmt::Debug,
    {
        let mut out = Vec::new();
        while let Some(item) = s.next().await {
            out.push(item.expect("a stream without errors"));
        }
        out
    }

    #[tokio::test]
    async fn frames_split_anywhere_give_the_items_of_the_whole() {
        let input: &[u8] = b"retry: 5\n: c\n\nid: 1\nevent: a\ndata: x\r\n\r\ndata: y\n\ndata: cut";
        let whole = events(&[input]);
        assert_eq!(whole.len(), 4);
        for split in 0..=input.len() {
            let trailers = Ok(Frame::trailers(http::HeaderMap::new()));
            let pieces = vec![data(&input[..split]), trailers, data(&input[split..])];
            let mut s = EventStream::new(body(pieces));
            assert_eq!(drain(&mut s).await, whole, "split at {split}");
            assert_eq!(s.decoder().last_event_id(), "1");
        }
    }

    #[tokio::test]
    async fn data_in_several_pieces_is_fed_whole() {
        let chained = Bytes::from_static(b"data: a").chain(Bytes::from_static(b"b\n\n"));
        let mut s = EventStream::new(body(vec![Ok(Frame::data(chained))]));
        let e = s.next_event().await.unwrap().unwrap();
        assert_eq!(e.data, "ab");
    }

    #[tokio::test]
    async fn a_body_error_comes_after_the_items_before_it_then_nothing() {
        let broken = Err(std::io::Error::other("reset"));
        let mut s = EventStream::new(body(vec![data(b"data: a\n\n: late"), broken]));
        assert_eq!(s.next().await.unwrap().unwrap(), ev("message", "a", ""));
        match s.next().await {
            Some(Err(EventStreamError::Body(e))) => assert_eq!(e.to_string(), "reset"),
            other => panic!("{other:?}"),
        }
        assert!(s.next().await.is_none());
    }

    #[tokio::test]
    async fn a_crossed_limit_is_the_decoders_error_then_nothing() {
        let pieces = vec![data(b":ok\n:far too long\n"), data(b"data: never\n\n")];
        let mut s = EventStream::with_decoder(body(pieces), Decoder::new().max_line(4));
        assert_eq!(s.next().await.unwrap().unwrap(), Item::Comment("ok".into()));
        let err = s.next().await.unwrap().unwrap_err();
        assert!(matches!(
            err,
            EventStreamError::Decode(DecodeError::LineTooLong { limit: 4 })
        ));
        assert!(
            err.to_string().contains("max_line limit of 4 bytes"),
            "{err}"
        );
        assert!(s.next().await.is_none());
    }
}
