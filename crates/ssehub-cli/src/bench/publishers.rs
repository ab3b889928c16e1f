//! The publishing side of `ssehub bench`: `--publishers` keep-alive connections that post
//! the events, round-robin over the rooms, at `--rate` in all or as fast as they go, in
//! the run's dialect (see `dialect.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use http::Method;

use super::dialect::Dialect;
use super::latency::event_data;
use super::Args;
use crate::hub_client::{Client, Target};

/// What the publishers did.
#[derive(Debug, Default)]
pub(super) struct Published {
    /// Events sent, answered or not.
    pub count: u64,
    /// The sum of the server's `delivered` answers: deliveries to expect.
    pub delivered: u64,
    /// Publishes that failed.
    pub errors: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// From `start` to the last publish (0 when nothing was to be published).
    pub seconds: f64,
    /// The id the server gave event `i`, by `i` (empty where it gave none).
    pub ids: Vec<String>,
}

/// The publishers' counters, updated as they go (the progress bar reads them).
#[derive(Default)]
struct Tally {
    published: AtomicU64,
    delivered: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    ids: Mutex<Vec<String>>,
}

/// What every publisher follows: event `i` goes to room `i % rooms`, and at a rate, not
/// before `start + i / rate`.
struct Schedule {
    messages: u64,
    publishers: u64,
    size: usize,
    rate: Option<f64>,
    start: Instant,
    rooms: usize,
    dialect: Dialect,
    /// The server's base path.
    base: String,
    /// Subscribers of each room: what a publish to it delivers, where the answer does
    /// not say (Mercure's).
    members: Vec<u64>,
}

/// Publish `--messages` events, the schedule starting at `start`; bounded by `limit`
/// (publishers still going then are stopped).
pub(super) async fn publish(
    args: &Args,
    target: &Target,
    start: Instant,
    limit: Duration,
) -> anyhow::Result<Published> {
    if args.messages == 0 {
        return Ok(Published::default());
    }
    let schedule = Arc::new(Schedule {
        messages: args.messages,
        publishers: args.publishers as u64,
        size: args.size,
        rate: args.rate,
        start,
        rooms: args.rooms,
        dialect: args.dialect,
        base: target.path(""),
        members: (0..args.rooms)
            .map(|k| ((k..args.subscribers).step_by(args.rooms)).count() as u64)
            .collect(),
    });
    let token = match (args.dialect, &args.mercure_key) {
        (Dialect::Mercure, Some(key)) => Some(publisher_token(key)?),
        _ => None,
    };
    let tally = Arc::new(Tally {
        ids: Mutex::new(vec![String::new(); args.messages as usize]),
        ..Tally::default()
    });
    let mut tasks = Vec::new();
    for p in 0..args.publishers {
        let client = Client::connect(target).await?.token(token.as_deref());
        let (schedule, tally) = (schedule.clone(), tally.clone());
        tasks.push(tokio::spawn(publisher(client, p as u64, schedule, tally)));
    }
    let pb = super::bar(args.messages, "publishing");
    loop {
        pb.set_position(tally.published.load(Ordering::Relaxed));
        if tasks.iter().all(|t| t.is_finished()) || start.elapsed() > limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for t in &tasks {
        t.abort();
    }
    pb.finish_and_clear();
    let first_error = tally.first_error.lock().unwrap().clone();
    let ids = std::mem::take(&mut *tally.ids.lock().unwrap());
    Ok(Published {
        count: tally.published.load(Ordering::Relaxed),
        delivered: tally.delivered.load(Ordering::Relaxed),
        errors: tally.errors.load(Ordering::Relaxed),
        first_error,
        seconds: start.elapsed().as_secs_f64(),
        ids,
    })
}

/// Publisher `first` of the schedule: events `first`, `first + publishers`, ...
async fn publisher(mut client: Client, first: u64, schedule: Arc<Schedule>, tally: Arc<Tally>) {
    let rooms = schedule.rooms as u64;
    let mut i = first;
    while i < schedule.messages {
        if let Some(rate) = schedule.rate {
            let due = schedule.start + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let k = (i % rooms) as usize;
        let request = schedule
            .dialect
            .publish(&schedule.base, k, event_data(schedule.size));
        let answer = match schedule.dialect {
            Dialect::Rooms => client.publish(&request.path, request.body).await,
            Dialect::Mercure => mercure_publish(&mut client, request)
                .await
                .map(|id| (schedule.members[k], Some(id))),
        };
        match answer {
            Ok((d, id)) => {
                tally.delivered.fetch_add(d, Ordering::Relaxed);
                if let Some(id) = id {
                    tally.ids.lock().unwrap()[i as usize] = id;
                }
            }
            Err(e) => {
                tally.errors.fetch_add(1, Ordering::Relaxed);
                tally
                    .first_error
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| format!("{e:#}"));
            }
        }
        tally.published.fetch_add(1, Ordering::Relaxed);
        i += schedule.publishers;
    }
}

/// A Mercure publish: 200 and the update's id as text.
async fn mercure_publish(
    client: &mut Client,
    request: super::dialect::PublishRequest,
) -> anyhow::Result<String> {
    let response = client
        .send_typed(
            Method::POST,
            &request.path,
            request.content_type,
            request.body,
        )
        .await?;
    let status = response.status();
    let body = crate::hub_client::read_body(response.into_body(), 64 * 1024).await?;
    if !status.is_success() {
        bail!(
            "POST {}: {status}: {}",
            request.path,
            String::from_utf8_lossy(&body)
        );
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// An HS256 token of the `mercure` claim that may publish to every topic, for a day.
fn publisher_token(key: &str) -> anyhow::Result<String> {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 86_400;
    let claims = serde_json::json!({ "mercure": { "publish": ["*"] }, "exp": exp });
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes())?,
    )?)
}
