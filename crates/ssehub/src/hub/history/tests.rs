//! Unit tests of the history: ids, the three limits and the global cap, where cursors
//! point and the gap each bad one gets, replay merging and its budget.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;

fn rules(h: HistoryConfig) -> HistoryRules {
    HistoryRules {
        default: Some(h),
        ..HistoryRules::default()
    }
}

fn msg(data: &str) -> Message {
    Message::new(data)
}

fn rooms(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn arcs(names: &[&str]) -> Vec<Arc<str>> {
    names.iter().map(|s| Arc::from(*s)).collect()
}

/// Publish `data` to `to`, return its id.
fn publish(h: &mut History, to: &[&str], data: &str, now: Instant) -> String {
    h.record(&rooms(to), &msg(data), now).unwrap().unwrap().id
}

/// The data of the events a replay carries, in order.
fn datas(r: &Replay) -> Vec<String> {
    r.frames
        .iter()
        .map(|f| {
            let text = std::str::from_utf8(f).unwrap();
            let line = text.lines().find(|l| l.starts_with("data: ")).unwrap();
            line["data: ".len()..].to_owned()
        })
        .collect()
}

fn gap_json(r: &Replay) -> serde_json::Value {
    let (_, frame) = r.gap.as_ref().expect("a gap");
    let text = std::str::from_utf8(frame).unwrap();
    assert!(text.starts_with("event: ssehub.gap\n"), "{text}");
    let data = text.lines().find(|l| l.starts_with("data: ")).unwrap();
    serde_json::from_str(&data["data: ".len()..]).unwrap()
}

#[test]
fn ids_are_epoch_and_sequence_and_frames_carry_them() {
    let mut h = History::new(rules(HistoryConfig::default()));
    let now = Instant::now();
    let a = h.record(&rooms(&["a"]), &msg("1"), now).unwrap().unwrap();
    let b = publish(&mut h, &["b"], "2", now);
    assert_eq!(a.id, format!("{}-1", h.epoch));
    assert_eq!(b, format!("{}-2", h.epoch), "one sequence for all rooms");
    assert_eq!(
        &a.frame[..],
        format!("id: {}\ndata: 1\n\n", a.id).as_bytes()
    );
    assert!(matches!(hub_form(&a.id), Some(Ok(_))));
}

#[test]
fn own_ids_are_kept_and_must_be_usable_as_cursors() {
    let mut h = History::new(rules(HistoryConfig::default()));
    let now = Instant::now();
    let own = Message::builder().id("order-7").data("x").build().unwrap();
    let r = h.record(&rooms(&["a"]), &own, now).unwrap().unwrap();
    assert_eq!(r.id, "order-7");
    assert_eq!(
        h.record(&rooms(&["a", "b"]), &own, now).unwrap_err(),
        PublishError::DuplicateId("order-7".into()),
        "unique within each room's history"
    );
    let empty = Message::builder().id("").data("x").build().unwrap();
    assert_eq!(
        h.record(&rooms(&["a"]), &empty, now).unwrap_err(),
        PublishError::EmptyId
    );
    for reserved in ["earliest", "0badf00d-12"] {
        let m = Message::builder().id(reserved).data("x").build().unwrap();
        assert!(matches!(
            h.record(&rooms(&["a"]), &m, now),
            Err(PublishError::ReservedId(_))
        ));
    }
    assert_eq!(h.seq, 1, "refused messages take no number");
    // Rooms without history keep any id, and record nothing.
    let mut none = History::new(HistoryRules {
        default: None,
        ..HistoryRules::default()
    });
    assert!(none.record(&rooms(&["a"]), &empty, now).unwrap().is_none());
}

#[test]
fn a_ring_keeps_its_count_its_bytes_and_its_age() {
    let limits = HistoryConfig::default()
        .max_events(3)
        .max_bytes(100)
        .max_age(Duration::from_secs(10));
    let mut h = History::new(rules(limits));
    let t0 = Instant::now();
    for i in 0..5 {
        publish(&mut h, &["a"], &i.to_string(), t0);
    }
    assert_eq!(h.size().events, 3, "count");
    let all = h.replay(&arcs(&["a"]), &Resume::After("earliest".into()), usize::MAX);
    assert_eq!(datas(&all.unwrap()), ["2", "3", "4"]);
    // One event larger than the byte limit is kept alone.
    publish(&mut h, &["a"], &"x".repeat(200), t0);
    assert_eq!(h.size().events, 1, "bytes");
    // Age: gone from the ring, and the ring (the room's history) with it.
    publish(&mut h, &["b"], "later", t0 + Duration::from_secs(5));
    assert!(h.expire(t0 + Duration::from_secs(12)));
    assert_eq!(h.size().rooms, 1, "`a` expired, `b` is 7 s old");
    assert!(!h.expire(t0 + Duration::from_secs(16)));
    assert_eq!(h.size(), Size::default(), "everything expired");
}

#[test]
fn the_cap_on_all_history_drops_the_oldest_first_whatever_the_room() {
    let mut h = History::new(HistoryRules {
        total_bytes: 300,
        ..HistoryRules::default()
    });
    let now = Instant::now();
    let frame_len = msg("0123456789").encode_with_id(Some("00000000-1")).len();
    for i in 0..10 {
        let room = if i % 2 == 0 { "even" } else { "odd" };
        publish(&mut h, &[room], "0123456789", now);
        assert!(h.size().bytes <= 300 + frame_len, "{:?}", h.size());
    }
    let kept = h.size().events;
    assert!(kept < 10 && kept >= 300 / (frame_len + 2) - 1, "{kept}");
    // The survivors are the newest, in both rooms.
    let r = h
        .replay(
            &arcs(&["even", "odd"]),
            &Resume::After("earliest".into()),
            usize::MAX,
        )
        .unwrap();
    assert_eq!(r.frames.len(), kept);
    let last = format!("{}-10", h.epoch);
    assert!(std::str::from_utf8(r.frames.last().unwrap())
        .unwrap()
        .contains(&last));
    // Churn keeps the log within the cap.
    for _ in 0..10_000 {
        publish(&mut h, &["even"], "0123456789", now);
        assert!(h.size().bytes <= 300 + frame_len, "{:?}", h.size());
    }
    assert_eq!(h.log.len(), h.size().events);
}

#[test]
fn a_cursor_resumes_after_itself_across_rooms_each_event_once() {
    let mut h = History::new(rules(HistoryConfig::default()));
    let now = Instant::now();
    let first = publish(&mut h, &["a"], "a1", now);
    publish(&mut h, &["b"], "b2", now);
    publish(&mut h, &["a", "b"], "ab3", now);
    publish(&mut h, &["c"], "c4", now);
    publish(&mut h, &["a"], "a5", now);
    let r = h
        .replay(&arcs(&["a", "b"]), &Resume::After(first), usize::MAX)
        .unwrap();
    assert!(r.gap.is_none());
    assert_eq!(
        datas(&r),
        ["b2", "ab3", "a5"],
        "merged in order, `ab3` once"
    );
    assert!(r.cursor.is_none(), "the last replayed is the newest event");
    let r = h.replay(
        &arcs(&["b"]),
        &Resume::After(format!("{}-2", h.epoch)),
        usize::MAX,
    );
    let r = r.unwrap();
    assert_eq!(datas(&r), ["ab3"]);
    let bump = std::str::from_utf8(r.cursor.as_ref().unwrap())
        .unwrap()
        .to_owned();
    assert_eq!(
        bump,
        format!("id: {}-5\n\n", h.epoch),
        "the cursor moves to the newest"
    );
    // A caller's own id is a cursor too.
    let own = Message::builder().id("mine").data("m6").build().unwrap();
    h.record(&rooms(&["a"]), &own, now).unwrap();
    publish(&mut h, &["a"], "a7", now);
    let r = h.replay(&arcs(&["a"]), &Resume::After("mine".into()), usize::MAX);
    assert_eq!(datas(&r.unwrap()), ["a7"]);
    // `earliest` and the newest n.
    let all = h.replay(&arcs(&["a"]), &Resume::After("earliest".into()), usize::MAX);
    assert_eq!(datas(&all.unwrap()), ["a1", "ab3", "a5", "m6", "a7"]);
    let newest = h.replay(&arcs(&["a", "c"]), &Resume::Newest(2), usize::MAX);
    assert_eq!(datas(&newest.unwrap()), ["m6", "a7"]);
    // No room with history: nothing to say.
    let mut rules = rules(HistoryConfig::default());
    rules.overrides.push(("live.*".parse().unwrap(), None));
    let h = History::new(rules);
    assert!(h
        .replay(&arcs(&["live.x"]), &Resume::After("x".into()), 100)
        .is_none());
}

#[test]
fn cursors_that_cannot_be_honoured_say_why_first() {
    let limits = HistoryConfig::default().max_events(2);
    let mut h = History::new(rules(limits));
    let now = Instant::now();
    let first = publish(&mut h, &["a"], "1", now);
    publish(&mut h, &["a"], "2", now);
    publish(&mut h, &["a"], "3", now);
    publish(&mut h, &["a"], "4", now);
    publish(&mut h, &["b"], "b5", now);
    let cases = [
        (first.clone(), "evicted", vec!["a"]),
        ("deadbeef-2".to_owned(), "unknown-epoch", vec!["a", "b"]),
        (format!("{}-99", h.epoch), "malformed", vec!["a", "b"]),
        (
            format!("{}-99999999999999999999999", h.epoch),
            "malformed",
            vec!["a", "b"],
        ),
        ("never-seen".to_owned(), "unknown-id", vec!["a", "b"]),
    ];
    for (cursor, reason, gap_rooms) in cases {
        let r = h
            .replay(
                &arcs(&["a", "b"]),
                &Resume::After(cursor.clone()),
                usize::MAX,
            )
            .unwrap();
        let gap = gap_json(&r);
        assert_eq!(gap["reason"], reason, "{cursor}");
        assert_eq!(gap["last_event_id"], cursor.as_str());
        assert_eq!(gap["rooms"], serde_json::json!(gap_rooms), "{cursor}");
        // Whatever history remains follows (for a known cursor: what follows it).
        assert_eq!(datas(&r), ["3", "4", "b5"], "{cursor}");
        assert_eq!(gap["first_id"], format!("{}-3", h.epoch));
    }
    // Room `b` lost nothing after event 1: resuming it alone is clean; and event 2,
    // the last `a` dropped, is no gap for a client that had it.
    let r = h
        .replay(&arcs(&["b"]), &Resume::After(first), usize::MAX)
        .unwrap();
    assert!(r.gap.is_none());
    assert_eq!(datas(&r), ["b5"]);
    let second = format!("{}-2", h.epoch);
    let r = h
        .replay(&arcs(&["a"]), &Resume::After(second), usize::MAX)
        .unwrap();
    assert!(r.gap.is_none());
    assert_eq!(datas(&r), ["3", "4"]);
}

#[test]
fn a_replay_larger_than_its_budget_keeps_the_newest_and_says_so() {
    let mut h = History::new(rules(HistoryConfig::default()));
    let now = Instant::now();
    for i in 0..10 {
        publish(&mut h, &["a"], &format!("{i:02}"), now);
    }
    let last = h.frames("a")[9].len();
    let r = h
        .replay(&arcs(&["a"]), &Resume::After("earliest".into()), 3 * last)
        .unwrap();
    assert_eq!(datas(&r), ["07", "08", "09"]);
    assert_eq!(gap_json(&r)["reason"], "replay-limit");
    assert_eq!(gap_json(&r)["first_id"], format!("{}-8", h.epoch));
}

#[test]
fn a_room_whose_history_was_emptied_and_refilled_still_reports_what_it_lost() {
    // The cap on all history empties room `a`'s ring; a later event starts a new one.
    // A client of `a` that had only event 1 missed event 2: the replay must say so.
    let mut h = History::new(HistoryRules {
        total_bytes: 300,
        ..HistoryRules::default()
    });
    let now = Instant::now();
    let had = publish(&mut h, &["a"], "a1", now);
    publish(&mut h, &["a"], "a2", now);
    publish(&mut h, &["b"], &"x".repeat(400), now);
    assert!(h.frames("a").is_empty(), "`a`'s ring is gone");
    publish(&mut h, &["a"], "a4", now);
    let r = h
        .replay(&arcs(&["a"]), &Resume::After(had.clone()), usize::MAX)
        .unwrap();
    assert_eq!(datas(&r), ["a4"]);
    let gap = gap_json(&r);
    assert_eq!(gap["reason"], "evicted", "a2 was lost");
    assert_eq!(gap["rooms"], serde_json::json!(["a"]));
    // The same through the age limit and the sweep.
    let limits = HistoryConfig::default().max_age(Duration::from_secs(10));
    let mut h = History::new(rules(limits));
    let t0 = Instant::now();
    let had = publish(&mut h, &["a"], "a1", t0);
    publish(&mut h, &["a"], "a2", t0);
    assert!(!h.expire(t0 + Duration::from_secs(11)));
    publish(&mut h, &["a"], "a3", t0 + Duration::from_secs(12));
    let r = h
        .replay(&arcs(&["a"]), &Resume::After(had), usize::MAX)
        .unwrap();
    assert_eq!(datas(&r), ["a3"]);
    assert_eq!(gap_json(&r)["reason"], "evicted", "a2 expired unseen");
}

#[test]
fn own_ids_are_unique_per_room_and_resolve_to_the_earliest_in_the_streams_rooms() {
    // A publisher of `chat` cannot block an id of `orders`, nor learn that it exists.
    let mut h = History::new(rules(HistoryConfig::default()));
    let now = Instant::now();
    let own = |data: &str| {
        Message::builder()
            .id("order-1001")
            .data(data)
            .build()
            .unwrap()
    };
    h.record(&rooms(&["orders"]), &own("o1"), now).unwrap();
    h.record(&rooms(&["chat"]), &own("c2"), now).unwrap();
    publish(&mut h, &["orders"], "o3", now);
    publish(&mut h, &["chat"], "c4", now);
    let r = h.replay(
        &arcs(&["chat"]),
        &Resume::After("order-1001".into()),
        usize::MAX,
    );
    assert_eq!(datas(&r.unwrap()), ["c4"], "chat's own order-1001");
    let r = h.replay(
        &arcs(&["orders"]),
        &Resume::After("order-1001".into()),
        usize::MAX,
    );
    assert_eq!(datas(&r.unwrap()), ["o3"], "orders' own order-1001");
    // In both rooms the earliest wins: c2 again rather than a lost o3.
    let r = h.replay(
        &arcs(&["orders", "chat"]),
        &Resume::After("order-1001".into()),
        usize::MAX,
    );
    assert_eq!(datas(&r.unwrap()), ["c2", "o3", "c4"]);
}

#[test]
fn a_resume_reads_as_far_back_as_its_budget_and_no_further() {
    // 255 rooms of 1,000 events each: a resume from the start, with a budget for 10
    // events, returns the newest 10 and the cut; `Newest(1)` the newest one.
    let limits = HistoryConfig::default().max_events(1_000);
    let mut h = History::new(HistoryRules {
        total_bytes: usize::MAX,
        ..rules(limits)
    });
    let now = Instant::now();
    let names: Vec<String> = (0..255).map(|i| format!("r{i:03}")).collect();
    for n in 0..1_000 {
        for room in &names {
            publish(&mut h, &[room.as_str()], &format!("{room}-{n:04}"), now);
        }
    }
    let all: Vec<Arc<str>> = names.iter().map(|n| Arc::from(n.as_str())).collect();
    let one = h.frames("r254")[999].len();
    let r = h
        .replay(&all, &Resume::After("earliest".into()), 10 * one)
        .unwrap();
    assert_eq!(r.frames.len(), 10);
    assert_eq!(datas(&r).last().unwrap(), "r254-0999");
    assert_eq!(gap_json(&r)["reason"], "replay-limit");
    let r = h.replay(&all, &Resume::Newest(1), usize::MAX).unwrap();
    assert_eq!(datas(&r), ["r254-0999"]);
    assert!(r.gap.is_none());
}

#[test]
fn a_catch_up_carries_what_was_recorded_after_the_replay_was_read() {
    let mut h = History::new(rules(HistoryConfig::default()));
    let now = Instant::now();
    let first = publish(&mut h, &["a"], "a1", now);
    publish(&mut h, &["a"], "a2", now);
    let r = h
        .replay(&arcs(&["a", "b"]), &Resume::After(first), usize::MAX)
        .unwrap();
    assert_eq!(datas(&r), ["a2"]);
    publish(&mut h, &["b"], "b3", now);
    publish(&mut h, &["c"], "c4", now);
    let rooms = arcs(&["a", "b"]);
    let rest = h.catch_up(&Reader::of(&rooms), &r);
    let text: Vec<String> = rest
        .iter()
        .map(|f| String::from_utf8(f.to_vec()).unwrap())
        .collect();
    assert_eq!(
        text,
        [
            format!("id: {}-3\ndata: b3\n\n", h.epoch),
            format!("id: {}-4\n\n", h.epoch),
        ],
        "b3, then the cursor moved to the newest"
    );
}
