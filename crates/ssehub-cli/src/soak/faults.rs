//! `ssehub soak --faults redis|disk`: random faults survived, or a proof that they were
//! not. Files: `cluster.rs` (Redis and the node processes), `resumers.rs` (the
//! subscribers that resume, the publisher and its ledger); this file draws the faults
//! from a seed, runs them, and checks every subscriber's journal.
//!
//! ## The check
//! The publisher is one client, one request at a time: an event answered 2xx was taken
//! before the next was sent, so every subscriber of its room must receive the accepted
//! events in publish order, each once. Walking a subscriber's journal, the accepted
//! events between two it received (or before the first, or after the last once its end
//! marker came) that it did not receive are *covered* if an `ssehub.gap` came between,
//! and *silent losses* otherwise. Events received twice are duplicates; accepted events
//! received after a later accepted one are out of order. Events whose publish got no
//! answer (a node died under it) may or may not have been taken: received, they are
//! counted apart, never as losses; so are events answered 2xx with `"replicated":
//! false` (Redis did not answer: the node delivered them to its own subscribers only,
//! and said so to the publisher). For those the report says how many each subscriber
//! of their room received, how many a later `ssehub.gap` told of (the node that took
//! one publishes that signal once Redis is back), and how many neither: reported, not
//! failed, since a node killed before Redis came back takes its signal with it.
//! Silent losses, duplicates, disorder and subscribers that never saw their end marker
//! fail the run.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::cluster::{Cluster, FaultMode};
use super::resumers::{self, Journal, Ledger, Pace, Seen, Subscribers};
use super::Args;

/// A small seeded generator (splitmix64): the same seed, the same faults.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A duration between `lo` and `hi` milliseconds.
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// One fault.
#[derive(Debug)]
enum Fault {
    NodeKill(usize, Duration),
    NodeTerm(usize, Duration),
    RedisPause(Duration),
    RedisKill(Duration),
    Cut(Vec<usize>),
}

impl Fault {
    fn draw(rng: &mut Rng, mode: FaultMode, nodes: usize, subscribers: usize) -> Fault {
        // Weights: node kills and stops, Redis pauses and kills, client cuts.
        let kinds: &[(u64, u8)] = match mode {
            FaultMode::Redis => &[(3, 0), (3, 1), (2, 2), (1, 3), (3, 4)],
            FaultMode::Disk => &[(4, 0), (4, 1), (3, 4)],
        };
        let total: u64 = kinds.iter().map(|k| k.0).sum();
        let mut pick = rng.below(total);
        let kind = kinds
            .iter()
            .find(|(w, _)| {
                let hit = pick < *w;
                pick = pick.saturating_sub(*w);
                hit
            })
            .map_or(4, |k| k.1);
        let node = rng.below(nodes as u64) as usize;
        match kind {
            0 => Fault::NodeKill(node, rng.ms(50, 800)),
            1 => Fault::NodeTerm(node, rng.ms(50, 800)),
            2 => Fault::RedisPause(rng.ms(300, 2500)),
            3 => Fault::RedisKill(rng.ms(100, 1000)),
            _ => {
                let n = 1 + rng.below(5) as usize;
                Fault::Cut(
                    (0..n)
                        .map(|_| rng.below(subscribers as u64) as usize)
                        .collect(),
                )
            }
        }
    }
}

/// Faults done, by kind.
#[derive(Debug, Default)]
struct Done {
    node_kills: u64,
    node_terms: u64,
    redis_pauses: u64,
    redis_kills: u64,
    cuts: u64,
    clients_cut: u64,
}

impl Done {
    fn total(&self) -> u64 {
        self.node_kills + self.node_terms + self.redis_pauses + self.redis_kills + self.cuts
    }
}

/// One subscriber's verdict (or all of them, added up).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Verdict {
    pub(super) delivered: u64,
    pub(super) covered: u64,
    pub(super) gaps: u64,
    pub(super) silent: u64,
    pub(super) duplicates: u64,
    pub(super) disorder: u64,
    pub(super) unconfirmed: u64,
    pub(super) unfinished: u64,
}

impl std::ops::AddAssign for Verdict {
    fn add_assign(&mut self, o: Verdict) {
        self.delivered += o.delivered;
        self.covered += o.covered;
        self.gaps += o.gaps;
        self.silent += o.silent;
        self.duplicates += o.duplicates;
        self.disorder += o.disorder;
        self.unconfirmed += o.unconfirmed;
        self.unfinished += o.unfinished;
    }
}

/// What became of the events answered `"replicated": false`, for the subscribers of
/// their rooms (added up): received; told of by a gap signal after the last event
/// before them; neither.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Unreplicated {
    received: u64,
    told: u64,
    neither: u64,
}

/// [`Unreplicated`] for one journal and the events of its room answered
/// `"replicated": false`.
fn check_unreplicated(local_only: impl Iterator<Item = u64>, journal: &Journal) -> Unreplicated {
    let mut u = Unreplicated::default();
    for n in local_only {
        if journal.seen.contains(&Seen::Event(n)) {
            u.received += 1;
            continue;
        }
        let after = journal
            .seen
            .iter()
            .rposition(|s| matches!(s, Seen::Event(m) if *m < n))
            .map_or(0, |i| i + 1);
        if journal.seen[after..].contains(&Seen::Gap) {
            u.told += 1;
        } else {
            u.neither += 1;
        }
    }
    u
}

/// Check one journal against its room's accepted events (increasing numbers).
#[cfg(test)]
fn check(accepted: &[u64], journal: &Journal) -> Verdict {
    check_noting(accepted, journal, &mut Vec::new())
}

/// [`check`], noting in `notes` where each silent loss was (for the report).
pub(super) fn check_noting(
    accepted: &[u64],
    journal: &Journal,
    notes: &mut Vec<String>,
) -> Verdict {
    let mut v = Verdict::default();
    let position = |n: u64| accepted.partition_point(|&a| a < n);
    let mut seen = HashSet::new();
    // Position in `accepted` after the last accepted event received.
    let mut next = 0usize;
    let mut last: Option<u64> = None;
    let mut gap = false;
    let mut judge = |from: usize, to: usize, gap: bool, v: &mut Verdict| {
        let missing = to - from;
        if gap {
            v.covered += missing as u64;
        } else if missing > 0 {
            v.silent += missing as u64;
            notes.push(format!(
                "events {:?} (after {} received of room {}, stream {})",
                &accepted[from..to],
                v.delivered,
                journal.room,
                journal.streams
            ));
        }
    };
    for s in &journal.seen {
        match *s {
            Seen::Gap => {
                v.gaps += 1;
                gap = true;
            }
            Seen::Event(n) => {
                if !seen.insert(n) {
                    v.duplicates += 1;
                    continue;
                }
                if accepted.binary_search(&n).is_err() {
                    v.unconfirmed += 1;
                    continue;
                }
                if last.is_some_and(|l| n < l) {
                    v.disorder += 1;
                    continue;
                }
                let at = position(n);
                judge(next, at, gap, &mut v);
                gap = false;
                next = at + 1;
                last = Some(n);
                v.delivered += 1;
            }
        }
    }
    if journal.finished {
        judge(next, accepted.len(), gap, &mut v);
    } else {
        v.unfinished += 1;
    }
    v
}

/// The fault soak, from start to verdict.
pub(super) async fn run(args: &Args, mode: FaultMode) -> anyhow::Result<()> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let nodes = match mode {
        FaultMode::Redis => args.nodes as usize,
        FaultMode::Disk => 1,
    };
    let rooms = args.rooms as usize;
    let subscribers = args.subscribers as usize;
    println!(
        "fault soak: seed {seed} ({mode:?}, {nodes} node(s), {subscribers} subscribers, \
         {rooms} rooms, {} events/s, {} s); replay with --seed {seed}",
        args.rate, args.duration
    );
    let mut cluster = Cluster::start(mode, nodes, &args.redis_server).await?;
    let outcome = drive(args, mode, seed, &mut cluster, rooms, subscribers).await;
    match outcome {
        Ok(report) => {
            println!("{report}");
            if report.failed() {
                cluster.keep = true;
                bail!(
                    "fault soak failed (seed {seed}): {} silent losses, {} duplicates, {} out \
                     of order, {} subscribers without their end marker; the processes' logs \
                     are in {}",
                    report.sum.silent,
                    report.sum.duplicates,
                    report.sum.disorder,
                    report.sum.unfinished,
                    cluster.dir().display()
                );
            }
            Ok(())
        }
        Err(e) => {
            cluster.keep = true;
            Err(e.context(format!(
                "fault soak (seed {seed}); the processes' logs are in {}",
                cluster.dir().display()
            )))
        }
    }
}

async fn drive(
    args: &Args,
    mode: FaultMode,
    seed: u64,
    cluster: &mut Cluster,
    rooms: usize,
    subscribers: usize,
) -> anyhow::Result<Report> {
    let addrs = cluster.addrs();
    let subs = Subscribers::start(&addrs, rooms, subscribers, Pace::new(false)).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn(resumers::publish(
        addrs.clone(),
        rooms,
        args.rate,
        stop.clone(),
        Arc::default(),
    ));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let mut rng = Rng(seed);
    let mut done = Done::default();
    loop {
        let wait = rng.ms(1500, 4000);
        if Instant::now() + wait >= deadline {
            break;
        }
        tokio::time::sleep(wait).await;
        let fault = Fault::draw(&mut rng, mode, cluster.node_count(), subscribers);
        eprintln!("soak: {:>6.1} s {fault:?}", started.elapsed().as_secs_f64());
        match fault {
            Fault::NodeKill(i, down) => {
                cluster.restart_node(i, "KILL", down).await?;
                done.node_kills += 1;
            }
            Fault::NodeTerm(i, down) => {
                cluster.restart_node(i, "TERM", down).await?;
                done.node_terms += 1;
            }
            Fault::RedisPause(pause) => {
                cluster.pause_redis(pause).await?;
                done.redis_pauses += 1;
            }
            Fault::RedisKill(down) => {
                cluster.restart_redis(down).await?;
                done.redis_kills += 1;
            }
            Fault::Cut(list) => {
                for &i in &list {
                    subs.list[i].cut.notify_one();
                }
                done.cuts += 1;
                done.clients_cut += list.len() as u64;
            }
        }
    }
    tokio::time::sleep(deadline.saturating_duration_since(Instant::now())).await;
    stop.store(true, Ordering::Relaxed);
    let ledger = publisher.await?;
    // Every process is up again: the end markers go through, and every subscriber
    // that resumes gets what it missed before its marker.
    tokio::time::sleep(Duration::from_secs(1)).await;
    resumers::publish_end(&addrs, rooms).await?;
    let journals = subs.finish(Duration::from_secs(30)).await;
    let mut sum = Verdict::default();
    let mut unreplicated = Unreplicated::default();
    let mut streams = 0;
    for (i, j) in journals.iter().enumerate() {
        let mut notes = Vec::new();
        sum += check_noting(&ledger.accepted[j.room], j, &mut notes);
        let of_room = ledger
            .local_only
            .iter()
            .copied()
            .filter(|n| *n as usize % rooms == j.room);
        let u = check_unreplicated(of_room, j);
        unreplicated.received += u.received;
        unreplicated.told += u.told;
        unreplicated.neither += u.neither;
        for n in notes.iter().take(5) {
            eprintln!(
                "soak: subscriber {i} (home node {}) silently lost {n}",
                i % addrs.len()
            );
        }
        streams += j.streams;
    }
    Ok(Report {
        done,
        ledger,
        sum,
        unreplicated,
        subscribers: journals.len(),
        streams,
    })
}

struct Report {
    done: Done,
    ledger: Ledger,
    sum: Verdict,
    unreplicated: Unreplicated,
    subscribers: usize,
    streams: u64,
}

impl Report {
    fn failed(&self) -> bool {
        let s = &self.sum;
        s.silent + s.duplicates + s.disorder + s.unfinished > 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (d, l, s) = (&self.done, &self.ledger, &self.sum);
        let accepted: usize = l.accepted.iter().map(Vec::len).sum();
        writeln!(
            f,
            "faults: {} ({} node SIGKILL, {} node SIGTERM, {} Redis SIGSTOP/SIGCONT, {} Redis \
             SIGKILL, {} client cuts of {} streams)",
            d.total(),
            d.node_kills,
            d.node_terms,
            d.redis_pauses,
            d.redis_kills,
            d.cuts,
            d.clients_cut
        )?;
        writeln!(
            f,
            "published: {accepted} accepted, {} answered as not replicated (their node's \
             subscribers only), {} without an answer, {} refused",
            l.local_only.len(),
            l.unknown.len(),
            l.refused
        )?;
        let u = &self.unreplicated;
        writeln!(
            f,
            "not replicated, for the subscribers of their rooms: {} received, {} told by a \
             later ssehub.gap, {} neither",
            u.received, u.told, u.neither
        )?;
        writeln!(
            f,
            "subscribers: {}, streams opened: {}",
            self.subscribers, self.streams
        )?;
        writeln!(
            f,
            "deliveries of accepted events: {}; of the others: {}",
            s.delivered, s.unconfirmed
        )?;
        writeln!(
            f,
            "missed but covered by ssehub.gap: {} ({} gap signals)",
            s.covered, s.gaps
        )?;
        write!(
            f,
            "silent losses: {}, duplicates: {}, out of order: {}, without end marker: {}",
            s.silent, s.duplicates, s.disorder, s.unfinished
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(seen: &[Seen], finished: bool) -> Journal {
        Journal {
            room: 0,
            seen: seen.to_vec(),
            streams: 1,
            finished,
            caught_up: None,
        }
    }

    use Seen::{Event as E, Gap as G};

    #[test]
    fn an_unreplicated_event_is_received_told_of_later_or_neither() {
        let j = journal(&[E(1), E(2), E(3), G, E(5)], true);
        let u = check_unreplicated([2, 4, 6].into_iter(), &j);
        // 2 received; 4: a gap after 3, the last event before it; 6: nothing after 5.
        assert_eq!((u.received, u.told, u.neither), (1, 1, 1));
        let j = journal(&[E(1), E(3), E(5), G], true);
        let u = check_unreplicated([2, 4, 6].into_iter(), &j);
        assert_eq!((u.received, u.told, u.neither), (0, 3, 0));
    }

    #[test]
    fn everything_once_in_order_passes() {
        let v = check(&[0, 4, 8], &journal(&[E(0), E(4), E(8)], true));
        assert_eq!((v.delivered, v.silent, v.covered), (3, 0, 0));
    }

    #[test]
    fn a_missing_event_is_a_silent_loss_unless_a_gap_came_between() {
        let v = check(&[0, 4, 8], &journal(&[E(0), E(8)], true));
        assert_eq!((v.silent, v.covered), (1, 0));
        let v = check(&[0, 4, 8], &journal(&[E(0), G, E(8)], true));
        assert_eq!((v.silent, v.covered, v.gaps), (0, 1, 1));
        // Before the first and after the last (once the end marker came).
        let v = check(&[0, 4, 8], &journal(&[E(4)], true));
        assert_eq!(v.silent, 2);
        let v = check(&[0, 4, 8], &journal(&[E(0), E(4)], false));
        assert_eq!((v.silent, v.unfinished), (0, 1));
    }

    #[test]
    fn repeats_and_disorder_are_counted_and_unanswered_events_are_apart() {
        let v = check(&[0, 4, 8], &journal(&[E(0), E(4), E(4), E(8)], true));
        assert_eq!((v.duplicates, v.silent), (1, 0));
        let v = check(&[0, 4, 8], &journal(&[E(0), E(8), E(4)], true));
        assert_eq!((v.disorder, v.silent), (1, 1));
        let v = check(&[0, 8], &journal(&[E(0), E(5), E(8)], true));
        assert_eq!((v.unconfirmed, v.silent, v.delivered), (1, 0, 2));
    }

    #[test]
    fn the_same_seed_draws_the_same_faults() {
        let draw = |seed| {
            let mut rng = Rng(seed);
            (0..20)
                .map(|_| format!("{:?}", Fault::draw(&mut rng, FaultMode::Redis, 3, 30)))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }
}
