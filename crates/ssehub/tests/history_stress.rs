//! Exactly once across rooms, under concurrency: several publishers to overlapping rooms,
//! clients in random subsets of them that drop their connection at random points and
//! come back with their last id. In the end every client has every event of its rooms
//! once, in one order (the ids it saw only ever grow), whatever the interleaving.
//!
//! Without the one ordered step that numbers, records and queues an event (see
//! `hub/history.rs`), two publishers can put a later id before an earlier one on a
//! connection in both their rooms, and a reconnect then repeats or loses events.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ssehub::{Hub, HubConfig, Message, SseOptions};

use common::*;

const ROOMS: [&str; 4] = ["r0", "r1", "r2", "r3"];
const PUBLISHERS: usize = 3;
const PER_PUBLISHER: usize = 400;
const CLIENTS: usize = 8;

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A non-empty subset of the rooms.
    fn rooms(&mut self) -> Vec<&'static str> {
        loop {
            let mask = self.below(16);
            let picked: Vec<&str> = (0..4)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| ROOMS[i])
                .collect();
            if !picked.is_empty() {
                return picked;
            }
        }
    }
}

/// An event's data says who published it and to which rooms: `p<k>-<n>|r0,r2`.
fn rooms_of(data: &str) -> Vec<&str> {
    data.split_once('|').unwrap().1.split(',').collect()
}

/// The sequence number of a hub id `<epoch>-<seq>`.
fn seq_of(id: &str) -> u64 {
    id.rsplit_once('-').unwrap().1.parse().unwrap()
}

async fn publisher(hub: Hub, k: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng(seed);
    let mut sent = Vec::new();
    for n in 0..PER_PUBLISHER {
        let rooms = rng.rooms();
        let data = format!("p{k}-{n}|{}", rooms.join(","));
        hub.to(&rooms)
            .unique()
            .publish(&Message::new(data.clone()))
            .unwrap();
        sent.push(data);
        if rng.below(4) == 0 {
            tokio::task::yield_now().await;
        }
        if rng.below(50) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    sent
}

/// What one client received: (id, data) in arrival order, over all its connections.
async fn client(
    addr: std::net::SocketAddr,
    rooms: Vec<&'static str>,
    seed: u64,
    done: Arc<tokio::sync::Notify>,
    expected: usize,
) -> Vec<(String, String)> {
    let mut rng = Rng(seed);
    let path = format!(
        "/sse?{}",
        rooms
            .iter()
            .map(|r| format!("room={r}"))
            .collect::<Vec<_>>()
            .join("&")
    );
    let mut got: Vec<(String, String)> = Vec::new();
    let mut last = String::new();
    let finished = done.notified();
    tokio::pin!(finished);
    let mut over = false;
    while got.len() < expected || !over {
        let headers: Vec<(&str, &str)> = if last.is_empty() {
            vec![]
        } else {
            vec![("last-event-id", last.as_str())]
        };
        let mut c = SseClient::connect(addr, &path, &headers).await;
        assert_eq!(c.status, http::StatusCode::OK);
        let stay = 1 + rng.below(60);
        let mut read = 0;
        loop {
            if over && got.len() >= expected {
                break;
            }
            let next = tokio::select! {
                e = c.next_event() => Some(e),
                _ = &mut finished, if !over => None,
            };
            let Some(e) = next else {
                over = true;
                continue;
            };
            got.push((e.last_event_id.clone(), e.data.clone()));
            last = c.last_event_id();
            read += 1;
            if read >= stay && !over {
                break; // drop the connection here, mid-stream
            }
        }
        if over && got.len() >= expected {
            break;
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_gets_every_event_of_its_rooms_once_across_reconnects() {
    let hub = Hub::with_config(HubConfig::default());
    let sse = SseOptions::new()
        .with_hub(hub)
        .no_auto_join()
        .keep_alive(None)
        .rooms_from_query(true);
    let srv = TestServer::start(sse).await;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let subsets: Vec<Vec<&'static str>> = (0..CLIENTS).map(|_| rng.rooms()).collect();
    // Publishers' plans are deterministic: the expected sets are known up front.
    let seeds: Vec<u64> = (0..PUBLISHERS as u64).map(|k| 1000 + k).collect();
    let mut planned: Vec<String> = Vec::new();
    for (k, seed) in seeds.iter().enumerate() {
        let mut r = Rng(*seed);
        for n in 0..PER_PUBLISHER {
            let rooms = r.rooms();
            planned.push(format!("p{k}-{n}|{}", rooms.join(",")));
            let _ = r.below(4);
            let _ = r.below(50);
        }
    }
    let expected: Vec<BTreeSet<String>> = subsets
        .iter()
        .map(|mine| {
            planned
                .iter()
                .filter(|d| rooms_of(d).iter().any(|r| mine.contains(r)))
                .cloned()
                .collect()
        })
        .collect();
    let done = Arc::new(tokio::sync::Notify::new());
    let clients: Vec<_> = subsets
        .iter()
        .enumerate()
        .map(|(i, rooms)| {
            tokio::spawn(client(
                srv.addr,
                rooms.clone(),
                77 + i as u64,
                done.clone(),
                expected[i].len(),
            ))
        })
        .collect();
    let memberships: usize = subsets.iter().map(Vec::len).sum();
    eventually("every client in its rooms", || {
        ROOMS.iter().map(|r| srv.hub.room_size(r)).sum::<usize>() == memberships
    })
    .await;
    let publishers: Vec<_> = seeds
        .iter()
        .enumerate()
        .map(|(k, seed)| tokio::spawn(publisher(srv.hub.clone(), k, *seed)))
        .collect();
    let mut sent = HashSet::new();
    for p in publishers {
        sent.extend(p.await.unwrap());
    }
    assert_eq!(sent.len(), PUBLISHERS * PER_PUBLISHER);
    done.notify_waiters();
    for (i, c) in clients.into_iter().enumerate() {
        let got = within("a client to receive all its events", c)
            .await
            .unwrap();
        let datas: Vec<&String> = got.iter().map(|(_, d)| d).collect();
        let distinct: HashSet<&String> = datas.iter().copied().collect();
        assert_eq!(distinct.len(), datas.len(), "client {i}: a duplicate");
        let got_set: BTreeSet<String> = datas.iter().map(|d| d.to_string()).collect();
        let missing: Vec<_> = expected[i].difference(&got_set).take(5).collect();
        assert!(missing.is_empty(), "client {i} missed {missing:?}");
        assert_eq!(got_set, expected[i], "client {i}: events from other rooms");
        let seqs: Vec<u64> = got.iter().map(|(id, _)| seq_of(id)).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "client {i}: ids out of order"
        );
    }
    let stats = srv.hub.stats();
    assert!(
        stats.replays as usize > CLIENTS,
        "clients reconnected: {stats:?}"
    );
    assert_eq!(stats.gaps.values().sum::<u64>(), 0, "nothing was evicted");
    srv.stop().await;
}
