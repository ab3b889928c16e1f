//! Whether the server keeps up: the signal that decides between writing at once and
//! letting events gather.
//!
//! Two signals, one per end of the load:
//! - **The load** of the process: every 10 ms a fan-out samples the share of time the
//!   runtime's workers were busy. Past 75 % the pressure rises a level, under 45 % it
//!   falls one; at each level a stream that just wrote lets events gather for a part of
//!   its batching window (a half per level below the top). Under pressure a stream
//!   writes many events at once: fewer, larger writes, less CPU per event, the backlog
//!   drains, and the load falls back, keeping the process under a core per worker. With
//!   one sequential publisher as with many.
//! - **Being overtaken**: every fan-out takes the next number of its hub's [`Clock`]; a
//!   write that ends after two later fan-outs have begun was overtaken (events arrive
//!   faster than they are written, before the load shows it), and the stream waits its
//!   whole window.
//!
//! Either way a write that carried few events ([`FEW`]) keeps at most half the window:
//! the whole one is for streams it gathers tens of events for (saturation), where it
//! saves writes; a few a window are the moderate load, where it mostly adds latency.
//!
//! A stream woken by a wide fan-out ([`WIDE_FANOUT`]) times no window under load: its
//! wait in the run queue, behind the other streams of the fan-out, is longer than a
//! window already and gathers the events that come meanwhile. It **takes turns** instead
//! ([`Turns`]): after a write it waits half the time the fan-out's streams take to write
//! once each. The run queue alone is not fair: tokio runs the tasks it woke last (its
//! local queue) before the thousands that overflowed to the shared one, so a few hundred
//! streams wrote again and again with a few events each while the rest waited most of a
//! second (10,000 subscribers at max rate: 26 events a write on average, yet p99 0.5-1.4
//! s; BENCHMARKS.md).
//!
//! While the process keeps up, neither holds: every event is written at once, and
//! latency stays that of one write.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// The hub's count of fan-outs begun, its pressure (how loaded the process that runs it
/// is, as a level that sets how long streams let events gather) and the turns of wide
/// fan-outs' streams. Relaxed: a stale read only makes one write wait (or not) one window
/// or turn more.
#[derive(Debug)]
pub(crate) struct Clock {
    fanouts: AtomicU64,
    /// The recipients of the latest fan-out if it was wide ([`WIDE_FANOUT`]), else 0.
    wide: AtomicU64,
    pressure: Pressure,
    turns: Turns,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            fanouts: AtomicU64::new(0),
            wide: AtomicU64::new(0),
            pressure: Pressure::new(),
            turns: Turns::default(),
        }
    }
}

impl Clock {
    /// A fan-out to `recipients` streams begins (at `now`): the next number. Every few
    /// milliseconds the first fan-out also samples the load.
    fn tick(&self, now: Instant, recipients: usize) -> u64 {
        if let Some((since_last, level)) = self.pressure.sample(now) {
            let wide = self.wide.load(Ordering::Relaxed);
            self.turns.sample(since_last, wide, level > 0);
        }
        let wide = if recipients > WIDE_FANOUT {
            recipients
        } else {
            0
        };
        self.wide.store(wide as u64, Ordering::Relaxed);
        self.fanouts.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The number of the latest fan-out begun.
    pub(crate) fn now(&self) -> u64 {
        self.fanouts.load(Ordering::Relaxed)
    }

    /// No pressure at `now`, nor for [`CALM`] before it: every stream writes at once.
    pub(crate) fn calm(&self, now: Instant) -> bool {
        let p = &self.pressure;
        let t = now.saturating_duration_since(p.origin).as_nanos() as u64;
        p.level.load(Ordering::Relaxed) == 0
            && t.saturating_sub(p.pressed.load(Ordering::Relaxed)) >= CALM.as_nanos() as u64
    }

    /// How long a stream that just wrote lets events gather before its next write, out
    /// of its configured `window`: none while the process keeps up, up to all of it as
    /// the load nears a whole core per worker; none after a wide fan-out, whose streams
    /// gather in the run queue.
    pub(crate) fn gather(&self, window: Duration) -> Option<Duration> {
        if self.wide.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let level = self.pressure.level.load(Ordering::Relaxed);
        (level > 0).then(|| window / (1 << (MAX_LEVEL - level)))
    }

    /// A stream woken by a wide fan-out wrote: how long it waits for its next turn.
    fn turn(&self) -> Option<Duration> {
        self.turns.writes.fetch_add(1, Ordering::Relaxed);
        let ns = self.turns.turn.load(Ordering::Relaxed);
        (ns > 0).then(|| Duration::from_nanos(ns))
    }

    /// Set the turn, as a sample would.
    #[cfg(test)]
    pub(crate) fn set_turn(&self, turn: Duration) {
        self.turns
            .turn
            .store(turn.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// A fan-out to more streams than this is wide: writing them all takes longer than a
/// batching window (2,048 writes of about 6 us: 12 ms). Its publisher does not write it
/// (`hub/fanout.rs`), and the streams it wakes time no window after their writes: they
/// wait behind each other in the run queue longer than a window anyway, and a timer
/// only let the ones that ran first write again sooner, with fewer events each (10,000
/// subscribers at max rate: 0.58-0.94 us per delivery with the timers, 0.40-0.55 without;
/// BENCHMARKS.md).
pub(crate) const WIDE_FANOUT: usize = 2048;

/// How streams of wide fan-outs take turns: each waits, after a write, half the time
/// they all take to write once (the latest wide fan-out's recipients over the rate of
/// their writes at the last sample), so that none writes twice while others wait for
/// their first. A stream that waited no longer than that writes at once; only the ones
/// the run queue favoured wait. Only under pressure: a process that keeps up writes
/// every event at once. Relaxed, as the clock.
#[derive(Debug, Default)]
struct Turns {
    /// Writes of wide fan-outs' streams, in all ([`Clock::turn`]).
    writes: AtomicU64,
    /// `writes` at the last sample.
    mark: AtomicU64,
    /// The turn, in nanoseconds (0: none).
    turn: AtomicU64,
}

impl Turns {
    /// A sample of the load, `since_last` ns after the one before (`None`: the first):
    /// the turn from the writes since then, for a latest wide fan-out of `recipients`
    /// (0: none), if the process is under `pressure`.
    fn sample(&self, since_last: Option<u64>, recipients: u64, pressure: bool) {
        let writes = self.writes.load(Ordering::Relaxed);
        let n = writes.saturating_sub(self.mark.swap(writes, Ordering::Relaxed));
        // Only from a recent sample: a quiet spell's rate says nothing of a busy one.
        let dt = since_last.unwrap_or(u64::MAX);
        if !pressure || recipients == 0 || n == 0 || dt > CALM.as_nanos() as u64 {
            self.turn.store(0, Ordering::Relaxed);
            return;
        }
        let half_cycle = (u128::from(recipients) * u128::from(dt) / u128::from(n) / 2)
            .min(MAX_TURN.as_nanos()) as u64;
        // Smoothed over a few samples: one sample sees a few hundred writes.
        let old = self.turn.load(Ordering::Relaxed);
        let turn = if old == 0 {
            half_cycle
        } else {
            (old * 3 + half_cycle) / 4
        };
        self.turn.store(turn, Ordering::Relaxed);
    }
}

/// The longest turn: a bound on what a wrong rate can cost.
const MAX_TURN: Duration = Duration::from_millis(500);

/// The highest pressure: a stream waits its whole window. Each level below halves it
/// (20, 10, 5, 2.5, 1.25 ms with the default window).
const MAX_LEVEL: u8 = 5;

/// How long without pressure before the process counts as calm (a spell of light load,
/// not a lull between the bursts of a saturated one).
const CALM: Duration = Duration::from_millis(100);

/// How often the load is sampled (by the first fan-out after it is due).
const SAMPLE: Duration = Duration::from_millis(10);

/// Busier than this share of the workers' time: one level up (gather longer).
const HIGH: f64 = 0.75;

/// Less busy than this: one level down. Between the two the level stays, so that the
/// windows that brought the load down do not end for it.
const LOW: f64 = 0.45;

/// The load signal: the share of the last sample's time the runtime's workers were busy
/// (tokio's busy durations; no system call), turned into a level with hysteresis. True
/// at saturation whatever the shape of the load (one sequential publisher or many), and
/// false at light load, where every event goes out at once.
#[derive(Debug)]
struct Pressure {
    /// When the first sample was due (the zero of the times below).
    origin: Instant,
    /// Nanoseconds since `origin` when the next sample is due.
    next: AtomicU64,
    /// The workers' busy nanoseconds, in all, at the last sample, and its time.
    busy: AtomicU64,
    at: AtomicU64,
    level: AtomicU8,
    /// When (nanoseconds since `origin`) a sample last found pressure.
    pressed: AtomicU64,
}

impl Pressure {
    fn new() -> Pressure {
        Pressure {
            origin: Instant::now(),
            next: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            at: AtomicU64::new(0),
            level: AtomicU8::new(0),
            pressed: AtomicU64::new(0),
        }
    }

    /// Sample the load if due: the nanoseconds since the last sample (`None` for the
    /// first) and the new level.
    fn sample(&self, now: Instant) -> Option<(Option<u64>, u8)> {
        let t = now.saturating_duration_since(self.origin).as_nanos() as u64;
        let due = self.next.load(Ordering::Relaxed);
        if t < due {
            return None;
        }
        // One sampler per period: the fan-out that moves `next` on.
        let next = t + SAMPLE.as_nanos() as u64;
        if self
            .next
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        let level = self.level.load(Ordering::Relaxed);
        let last_at = self.at.swap(t, Ordering::Relaxed);
        let since_last = (last_at > 0).then(|| t.saturating_sub(last_at));
        let Some((busy, workers)) = runtime_busy() else {
            return Some((since_last, level));
        };
        let last_busy = self.busy.swap(busy, Ordering::Relaxed);
        let wall = t.saturating_sub(last_at) as f64 * workers as f64;
        if last_at == 0 || wall <= 0.0 {
            return Some((since_last, level));
        }
        let load = busy.saturating_sub(last_busy) as f64 / wall;
        let periods = t.saturating_sub(last_at) / SAMPLE.as_nanos() as u64;
        let new = next_level(level, load, periods);
        if new > 0 {
            self.pressed.store(t, Ordering::Relaxed);
        }
        self.level.store(new, Ordering::Relaxed);
        Some((since_last, new))
    }
}

/// The level after a sample that found the workers busy `load` of the time, over
/// `periods` sampling periods: up one past [`HIGH`], down one under [`LOW`] (a level per
/// period of a quiet spell with no fan-out at all, so that the first events after a
/// burst go out at once, not a window late), else unchanged.
fn next_level(level: u8, load: f64, periods: u64) -> u8 {
    if load > HIGH {
        (level + 1).min(MAX_LEVEL)
    } else if load < LOW {
        level.saturating_sub(u8::try_from(periods.max(1)).unwrap_or(u8::MAX))
    } else {
        level
    }
}

/// The busy nanoseconds of the current tokio runtime's workers, in all, and how many
/// workers it has (`None` outside a runtime).
fn runtime_busy() -> Option<(u64, usize)> {
    let metrics = tokio::runtime::Handle::try_current().ok()?.metrics();
    let workers = metrics.num_workers();
    let busy = (0..workers)
        .map(|w| metrics.worker_total_busy_duration(w).as_nanos() as u64)
        .sum();
    Some((busy, workers))
}

/// When, and after which fan-out, a frame was queued.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp {
    pub(crate) at: Instant,
    pub(crate) fanout: u64,
}

impl Stamp {
    /// A fan-out to `recipients` streams of the hub whose clock is `clock` begins now:
    /// the stamp its frames carry.
    pub(crate) fn fanout(clock: &Clock, recipients: usize) -> Stamp {
        let at = Instant::now();
        Stamp {
            fanout: clock.tick(at, recipients),
            at,
        }
    }

    /// A frame queued now, outside any fan-out.
    pub(crate) fn now(clock: &Clock) -> Stamp {
        Stamp {
            at: Instant::now(),
            fanout: clock.now(),
        }
    }
}

/// Whether a write of frames taken after fan-out `since` was overtaken by later ones:
/// by two at least, since one fan-out beginning while the previous one's last writes go
/// out is only an overlap (at a moderate rate the tail of a large fan-out meets the next
/// event), while two mean the writes fall behind the events.
pub(crate) fn overtaken(clock: &Clock, since: u64) -> bool {
    clock.now() > since + 1
}

/// How long a stream that just wrote `frames` frames, taken after fan-out `since`, lets
/// the next gather: its whole `window` if it was overtaken (or `adaptive` is off), the
/// pressure's part of it otherwise, or none; and at most half the window after a write
/// of fewer than [`FEW`] frames. A stream woken by a `wide` fan-out waits at least its
/// turn ([`Turns`]).
pub(crate) fn gather(
    clock: &Clock,
    since: u64,
    window: Duration,
    adaptive: bool,
    frames: usize,
    wide: bool,
) -> Option<Duration> {
    if !adaptive {
        return Some(window);
    }
    let most = if frames < FEW { window / 2 } else { window };
    let gather = if overtaken(clock, since) {
        Some(window)
    } else {
        clock.gather(window)
    };
    let gather = gather.map(|g| g.min(most));
    match wide.then(|| clock.turn()).flatten() {
        Some(turn) => Some(gather.map_or(turn, |g| g.max(turn))),
        None => gather,
    }
}

/// A write of fewer frames than this keeps at most half the window for the next. A whole
/// window pays where it gathers tens of events (at the highest rate, about 60 a write:
/// the cost of the write, not of the events, is what it saves). Where events come a few
/// per window, halving it doubles the writes of a stream but halves its events' wait: at
/// 1,000 subscribers x 200 events/s, under pressure, p99 21-22 -> 13.4 ms, CPU per
/// delivery 3.1 -> 3.4-3.6 us, still below one write per event's 4.4 (BENCHMARKS.md).
const FEW: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_climbs_under_load_and_holds_between_the_bounds() {
        let mut level = 0;
        for expected in [1, 2, 3, 4, 5, 5] {
            level = next_level(level, 0.9, 1);
            assert_eq!(level, expected);
        }
        assert_eq!(
            next_level(level, 0.6, 1),
            5,
            "between LOW and HIGH it stays"
        );
        assert_eq!(
            next_level(level, 0.2, 1),
            4,
            "one period of light load: one level"
        );
        assert_eq!(
            next_level(level, 0.0, 3),
            2,
            "a quiet spell: a level per period"
        );
        assert_eq!(next_level(level, 0.0, 1_000), 0);
    }

    #[test]
    fn calm_means_no_pressure_for_a_while() {
        let clock = Clock::default();
        let p = &clock.pressure;
        let at = |ms: u64| p.origin + Duration::from_millis(ms);
        assert!(!clock.calm(at(50)), "not before CALM has passed");
        assert!(clock.calm(at(150)));
        p.pressed.store(120_000_000, Ordering::Relaxed);
        assert!(!clock.calm(at(150)), "pressure 30 ms ago: a lull, not calm");
        assert!(clock.calm(at(230)));
        p.level.store(1, Ordering::Relaxed);
        assert!(!clock.calm(at(500)), "pressure now");
    }

    #[test]
    fn gather_is_none_at_rest_and_the_whole_window_when_overtaken() {
        let clock = Clock::default();
        let window = Duration::from_millis(20);
        assert_eq!(gather(&clock, 0, window, true, FEW, false), None);
        assert_eq!(gather(&clock, 0, window, false, FEW, false), Some(window));
        let now = Instant::now();
        clock.tick(now, 1);
        clock.tick(now, 1);
        assert_eq!(
            gather(&clock, 0, window, true, FEW, false),
            Some(window),
            "two fan-outs began since"
        );
        assert_eq!(
            gather(&clock, 0, window, true, FEW - 1, false),
            Some(window / 2),
            "a write of few frames: half the window at most"
        );
        assert_eq!(
            gather(&clock, 0, window, false, 1, false),
            Some(window),
            "not adaptive"
        );
        clock.pressure.level.store(MAX_LEVEL - 1, Ordering::Relaxed);
        assert_eq!(clock.gather(window), Some(window / 2));
        clock.tick(now, WIDE_FANOUT + 1);
        assert_eq!(
            clock.gather(window),
            None,
            "a wide fan-out's streams time no window"
        );
        clock.tick(now, WIDE_FANOUT);
        assert_eq!(clock.gather(window), Some(window / 2));
    }

    #[test]
    fn a_wide_fan_outs_streams_take_turns_under_pressure() {
        let turns = Turns::default();
        let ms = |n: u64| n * 1_000_000;
        turns.sample(None, 10_000, true);
        // 1,000 writes in 10 ms: 10,000 streams write once each in 100 ms.
        turns.writes.store(1_000, Ordering::Relaxed);
        turns.sample(Some(ms(10)), 10_000, true);
        assert_eq!(turns.turn.load(Ordering::Relaxed), ms(50), "half the cycle");
        turns.writes.store(3_000, Ordering::Relaxed);
        turns.sample(Some(ms(10)), 10_000, true);
        assert_eq!(
            turns.turn.load(Ordering::Relaxed),
            (ms(50) * 3 + ms(25)) / 4,
            "smoothed"
        );
        turns.writes.store(4_000, Ordering::Relaxed);
        turns.sample(Some(ms(10)), 10_000, false);
        assert_eq!(
            turns.turn.load(Ordering::Relaxed),
            0,
            "no pressure, no turn"
        );
        turns.writes.store(4_001, Ordering::Relaxed);
        turns.sample(Some(ms(10)), 10_000, true);
        assert_eq!(
            turns.turn.load(Ordering::Relaxed),
            MAX_TURN.as_nanos() as u64,
            "bounded"
        );
        turns.writes.store(5_000, Ordering::Relaxed);
        turns.sample(Some(CALM.as_nanos() as u64 + 1), 10_000, true);
        assert_eq!(
            turns.turn.load(Ordering::Relaxed),
            0,
            "a rate over a quiet spell is no rate"
        );
    }

    #[test]
    fn only_a_wide_fan_outs_stream_waits_its_turn() {
        let clock = Clock::default();
        let window = Duration::from_millis(20);
        let turn = Duration::from_millis(40);
        clock
            .turns
            .turn
            .store(turn.as_nanos() as u64, Ordering::Relaxed);
        assert_eq!(gather(&clock, 0, window, true, FEW, false), None);
        assert_eq!(clock.turns.writes.load(Ordering::Relaxed), 0, "not counted");
        assert_eq!(gather(&clock, 0, window, true, FEW, true), Some(turn));
        assert_eq!(clock.turns.writes.load(Ordering::Relaxed), 1);
        let now = Instant::now();
        clock.tick(now, 1);
        clock.tick(now, 1);
        clock.turns.turn.store(1_000_000, Ordering::Relaxed);
        assert_eq!(
            gather(&clock, 0, window, true, FEW, true),
            Some(window),
            "overtaken: the longer of the window and the turn"
        );
    }
}
