//! `ssehub top`: a running hub at a glance, like `top`: connections, rates, the largest
//! rooms, drops and refusals, refreshed every second from the server's `GET /stats`
//! and `GET /rooms`. `--json` prints the same view as one JSON object per refresh, and
//! `--once` prints one (after one interval: rates need two samples) and exits.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http::Method;
use serde::Serialize;
use serde_json::Value;

use crate::hub_client::{Client, Target};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The server's base URL (where `/stats` and `/rooms` are).
    #[arg(long, env = "SSEHUB_URL", default_value = "http://127.0.0.1:2015")]
    pub url: String,
    /// Seconds between refreshes (fractions allowed).
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    pub interval: f64,
    /// Print one view and exit (after one interval, so that rates are known).
    #[arg(long)]
    pub once: bool,
    /// Print JSON (one object per refresh) instead of the terminal view.
    #[arg(long)]
    pub json: bool,
    /// How many of the largest rooms to show.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub rooms: usize,
    /// The server's token (`serve --publish-token`), sent as a bearer token.
    #[arg(long, env = "SSEHUB_PUBLISH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// What the server said at one moment.
struct Sample {
    at: Instant,
    stats: Value,
    rooms: Value,
}

/// What `top` shows: the latest figures and the rates since the previous sample.
#[derive(Debug, Serialize)]
struct View {
    url: String,
    connections: u64,
    connections_by_transport: Value,
    rooms: u64,
    events_per_second: f64,
    deliveries_per_second: f64,
    delivered_bytes_per_second: f64,
    connections_total: u64,
    events_published: u64,
    deliveries: u64,
    dropped_events: u64,
    slow_consumer_closes: u64,
    refused: Value,
    gaps: Value,
    backplane: Value,
    outbox_bytes: u64,
    rss_bytes: Option<u64>,
    cpu_percent: Option<f64>,
    top_rooms: Value,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.interval.is_finite() && args.interval >= 0.05,
        "--interval must be at least 0.05 seconds"
    );
    let every = Duration::from_secs_f64(args.interval);
    let target = Target::parse(&args.url).await?;
    let mut client = None;
    let token = args.token.as_deref();
    let mut previous = sample(&target, &mut client, token, args.rooms).await?;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        let latest = sample(&target, &mut client, token, args.rooms).await?;
        let view = view(&args.url, &previous, &latest);
        if args.json {
            println!("{}", serde_json::to_string(&view)?);
        } else {
            // Home and clear, then the view: a plain terminal is enough.
            let clear = if args.once { "" } else { "\x1b[H\x1b[2J" };
            print!("{clear}{}", render(&view, every));
        }
        if args.once {
            return Ok(());
        }
        previous = latest;
    }
}

/// `GET /stats` and `GET /rooms?limit=N` on one kept-alive connection (made again if
/// the server closed it).
async fn sample(
    target: &Target,
    client: &mut Option<Client>,
    token: Option<&str>,
    rooms: usize,
) -> anyhow::Result<Sample> {
    for attempt in 0..2 {
        if client.is_none() {
            let c = Client::connect(target).await?;
            *client = Some(c.token(token));
        }
        let c = client.as_mut().expect("connected above");
        let got = async {
            let stats = get_json(c, &target.path("/stats")).await?;
            let rooms =
                get_json(c, &target.path(&format!("/rooms?limit={}", rooms.max(1)))).await?;
            anyhow::Ok((stats, rooms))
        }
        .await;
        match got {
            Ok((stats, rooms)) => {
                return Ok(Sample {
                    at: Instant::now(),
                    stats,
                    rooms,
                })
            }
            Err(e) if attempt == 0 => {
                tracing::debug!(error = %e, "reconnecting");
                *client = None;
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the second attempt returns")
}

async fn get_json(client: &mut Client, path: &str) -> anyhow::Result<Value> {
    let (status, body) = client.request(Method::GET, path, Bytes::new()).await?;
    anyhow::ensure!(status.is_success(), "GET {path}: {status}");
    serde_json::from_slice(&body).with_context(|| format!("GET {path}: not JSON"))
}

fn view(url: &str, before: &Sample, now: &Sample) -> View {
    let secs = now.at.duration_since(before.at).as_secs_f64().max(1e-9);
    let field = |s: &Sample, name: &str| s.stats[name].as_u64().unwrap_or(0);
    let rate = |name: &str| field(now, name).saturating_sub(field(before, name)) as f64 / secs;
    let process = |s: &Sample, name: &str| s.stats["process"][name].clone();
    let cpu = match (
        process(before, "cpu_seconds").as_f64(),
        process(now, "cpu_seconds").as_f64(),
    ) {
        (Some(a), Some(b)) => Some(100.0 * (b - a).max(0.0) / secs),
        _ => None,
    };
    View {
        url: url.to_owned(),
        connections: field(now, "connections"),
        connections_by_transport: now.stats["connections_by_transport"].clone(),
        rooms: field(now, "rooms"),
        events_per_second: rate("events_published"),
        deliveries_per_second: rate("deliveries"),
        delivered_bytes_per_second: rate("delivered_bytes"),
        connections_total: field(now, "connections_total"),
        events_published: field(now, "events_published"),
        deliveries: field(now, "deliveries"),
        dropped_events: field(now, "dropped_events"),
        slow_consumer_closes: field(now, "slow_consumer_closes"),
        refused: now.stats["refused"].clone(),
        gaps: now.stats["gaps"].clone(),
        backplane: now.stats["backplane"].clone(),
        outbox_bytes: field(now, "outbox_bytes"),
        rss_bytes: process(now, "rss_bytes").as_u64(),
        cpu_percent: cpu,
        top_rooms: now.rooms["rooms"].clone(),
    }
}

/// `n` with thousands separators.
fn count(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut v, mut unit) = (n as f64, 0);
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `k n · k n` for the non-zero members of a JSON object of counts.
fn breakdown(v: &Value) -> String {
    let parts: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, n)| {
            n.as_u64()
                .filter(|n| *n > 0)
                .map(|n| format!("{k} {}", count(n as f64)))
        })
        .collect();
    parts.join(" · ")
}

fn render(v: &View, every: Duration) -> String {
    let mut o = String::new();
    let refused: u64 = v
        .refused
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, n)| n.as_u64())
        .sum();
    let cpu = v.cpu_percent.map_or("-".into(), |c| format!("{c:.1} %"));
    let rss = v.rss_bytes.map_or("-".into(), bytes);
    let _ = writeln!(
        o,
        "ssehub top  {}  every {:.1} s  (Ctrl-C quits)\n",
        v.url,
        every.as_secs_f64()
    );
    let _ = writeln!(
        o,
        "connections  {:>12}  {}",
        count(v.connections as f64),
        breakdown(&v.connections_by_transport)
    );
    let _ = writeln!(o, "rooms        {:>12}", count(v.rooms as f64));
    let _ = writeln!(
        o,
        "events/s     {:>12}   deliveries/s {:>12}   {}/s",
        count(v.events_per_second),
        count(v.deliveries_per_second),
        bytes(v.delivered_bytes_per_second as u64)
    );
    let _ = writeln!(
        o,
        "published    {:>12}   deliveries   {:>12}",
        count(v.events_published as f64),
        count(v.deliveries as f64)
    );
    let _ = writeln!(
        o,
        "dropped      {:>12}   slow closes  {:>12}",
        count(v.dropped_events as f64),
        count(v.slow_consumer_closes as f64)
    );
    let _ = writeln!(
        o,
        "refused      {:>12}   {}",
        count(refused as f64),
        breakdown(&v.refused)
    );
    let _ = writeln!(
        o,
        "outbox       {:>12}   memory {rss}   cpu {cpu}",
        bytes(v.outbox_bytes)
    );
    backplane(&mut o, v);
    rooms(&mut o, v);
    o
}

/// `backplane  redis up, 0 outages   gaps ...`
fn backplane(o: &mut String, v: &View) {
    let b = &v.backplane;
    let state = match b["connected"].as_bool() {
        Some(true) => "up",
        Some(false) => "DOWN",
        None => "-",
    };
    let _ = writeln!(
        o,
        "backplane    {:>12}   {} outages   gaps {}\n",
        format!("{} {state}", b["kind"].as_str().unwrap_or("-")),
        count(b["outages"].as_u64().unwrap_or(0) as f64),
        breakdown(&v.gaps)
    );
}

/// The largest rooms, one a line.
fn rooms(o: &mut String, v: &View) {
    let _ = writeln!(o, "{:<40} {:>10} {:>10}", "ROOM", "MEMBERS", "HISTORY");
    for r in v.top_rooms.as_array().into_iter().flatten() {
        let name: String = r["room"].as_str().unwrap_or("?").chars().take(40).collect();
        let n = |f: &str| count(r[f].as_u64().unwrap_or(0) as f64);
        let _ = writeln!(o, "{name:<40} {:>10} {:>10}", n("members"), n("history"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(secs: u64, stats: Value) -> Sample {
        Sample {
            at: Instant::now() - Duration::from_secs(10 - secs),
            stats,
            rooms: json!({"rooms": [{"room": "news", "members": 1200, "history": 7}]}),
        }
    }

    #[test]
    fn rates_come_from_two_samples() {
        let a = sample(
            0,
            json!({"events_published": 10, "deliveries": 100, "process": {"cpu_seconds": 1.0}}),
        );
        let b = sample(
            2,
            json!({"events_published": 30, "deliveries": 2100, "connections": 1200, "process": {"cpu_seconds": 1.5},
                   "backplane": {"kind": "redis", "connected": false, "outages": 2}, "gaps": {"outage": 3}}),
        );
        let v = view("http://x", &a, &b);
        assert!((v.events_per_second - 10.0).abs() < 0.1, "{v:?}");
        assert!((v.deliveries_per_second - 1000.0).abs() < 5.0);
        assert!((v.cpu_percent.unwrap() - 25.0).abs() < 0.5);
        let text = render(&v, Duration::from_secs(1));
        assert!(text.contains("1,200"), "{text}");
        assert!(text.contains("news"));
        assert!(text.contains("redis DOWN"), "{text}");
        assert!(text.contains("outage 3"), "{text}");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(count(1234567.0), "1,234,567");
        assert_eq!(count(12.0), "12");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(breakdown(&json!({"h1": 3, "h2": 0})), "h1 3");
    }
}
