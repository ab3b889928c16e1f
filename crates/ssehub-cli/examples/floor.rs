//! The floor `ssehub bench` measures servers against: for each publish, the event is
//! written to every subscriber of its room with one blocking `send()` from the
//! publisher's thread, and the publish is answered afterwards. No HTTP library, no queue,
//! no runtime, no chunk framing (the stream is delimited by the connection's end).
//! Nothing that sends each event in its own write can cost less per delivery; it is not
//! a server anyone should run (one slow subscriber stalls every publisher).
//!
//! Same surface as `ssehub serve` as far as the bench is concerned:
//! - `GET /sse?room=R`: a subscriber of R (default `__all`).
//! - `POST /publish?room=R&event=E`, body = data: `202 {"delivered": N}`.
//! - `GET /stats`: `{"connections": N, "connections_total": T}`.
//!
//! ```text
//! cargo run --release -p ssehub-cli --example floor -- --port 2017
//! ```

// The binary's own way of raising the open-file limit (the package has no library to
// import it from).
#[path = "../src/fd_limit.rs"]
mod fd_limit;

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Port to listen on.
    #[arg(long, default_value_t = 2017)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
}

#[derive(Default)]
struct Floor {
    rooms: Mutex<HashMap<String, Vec<TcpStream>>>,
    connections: AtomicU64,
    connections_total: AtomicU64,
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    fd_limit::raise_fd_limit();
    let listener = TcpListener::bind((args.bind, args.port))?;
    eprintln!("floor server on http://{}/", listener.local_addr()?);
    let floor = Arc::new(Floor::default());
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let floor = floor.clone();
        // Subscribers are registered here; publishers and /stats get a small thread.
        let mut reader = BufReader::new(match stream.try_clone() {
            Ok(s) => s,
            Err(_) => continue,
        });
        match read_head(&mut reader) {
            Ok(Some(head)) if head.method == "GET" && head.path == "/sse" => {
                subscribe(&floor, stream, room_of(&head.query));
            }
            Ok(Some(head)) => {
                let _ = std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn(move || serve(&floor, stream, reader, head));
            }
            _ => {}
        }
    }
    Ok(())
}

struct Head {
    method: String,
    path: String,
    query: String,
    content_length: usize,
}

/// Read one request head; `None` at the end of the connection.
fn read_head(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Head>> {
    let mut raw = Vec::new();
    loop {
        let n = reader.read_until(b'\n', &mut raw)?;
        if n == 0 {
            return Ok(None);
        }
        if raw.ends_with(b"\r\n\r\n") || raw.ends_with(b"\n\n") {
            break;
        }
        if raw.len() > 16 * 1024 {
            return Err(io::ErrorKind::InvalidData.into());
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(&raw)
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let content_length = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
        .unwrap_or(0);
    Ok(Some(Head {
        method: req.method.unwrap_or("").to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        content_length,
    }))
}

fn room_of(query: &str) -> String {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "room")
        .map_or_else(|| "__all".to_owned(), |(_, v)| v.into_owned())
}

fn subscribe(floor: &Floor, mut stream: TcpStream, room: String) {
    let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n: connected\n\n";
    if stream.write_all(head).is_err() {
        return;
    }
    floor.connections.fetch_add(1, Ordering::Relaxed);
    floor.connections_total.fetch_add(1, Ordering::Relaxed);
    floor
        .rooms
        .lock()
        .unwrap()
        .entry(room)
        .or_default()
        .push(stream);
}

/// A publisher's or an observer's keep-alive connection.
fn serve(floor: &Floor, mut stream: TcpStream, mut reader: BufReader<TcpStream>, first: Head) {
    let mut head = Some(first);
    while let Some(h) = head.take() {
        let mut body = vec![0u8; h.content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, answer) = match (h.method.as_str(), h.path.as_str()) {
            ("POST", "/publish") => {
                let event = form_urlencoded::parse(h.query.as_bytes())
                    .find(|(k, _)| k == "event")
                    .map(|(_, v)| v.into_owned());
                let n = publish(floor, &room_of(&h.query), event.as_deref(), &body);
                ("202 Accepted", format!("{{\"delivered\":{n}}}"))
            }
            ("GET", "/stats") => (
                "200 OK",
                format!(
                    "{{\"connections\":{},\"connections_total\":{}}}",
                    floor.connections.load(Ordering::Relaxed),
                    floor.connections_total.load(Ordering::Relaxed)
                ),
            ),
            _ => ("404 Not Found", "{}".to_owned()),
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if stream.write_all(reply.as_bytes()).is_err() {
            return;
        }
        head = read_head(&mut reader).ok().flatten();
    }
}

/// One blocking `send()` per subscriber, from this thread; the dead are dropped.
fn publish(floor: &Floor, room: &str, event: Option<&str>, data: &[u8]) -> usize {
    let mut frame = Vec::with_capacity(data.len() + 32);
    if let Some(e) = event {
        frame.extend_from_slice(format!("event: {e}\n").as_bytes());
    }
    frame.extend_from_slice(b"data: ");
    frame.extend_from_slice(data);
    frame.extend_from_slice(b"\n\n");
    let mut rooms = floor.rooms.lock().unwrap();
    let Some(subscribers) = rooms.get_mut(room) else {
        return 0;
    };
    let before = subscribers.len();
    subscribers.retain_mut(|s| s.write_all(&frame).is_ok());
    let gone = before - subscribers.len();
    floor.connections.fetch_sub(gone as u64, Ordering::Relaxed);
    subscribers.len()
}
