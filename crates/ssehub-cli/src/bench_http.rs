//! The HTTP side of `ssehub bench` that is not a subscriber: publishing, reading
//! `/stats`, and the server process's CPU time and memory from `/proc`.

use std::net::SocketAddr;

use anyhow::{bail, Context};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One keep-alive HTTP/1.1 connection to the server.
pub struct Client {
    sender: http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl Client {
    pub async fn connect(addr: SocketAddr, host: &str) -> anyhow::Result<Client> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Client {
            sender,
            host: host.to_owned(),
        })
    }

    /// Send a request; the response's body is left to stream.
    pub async fn send(
        &mut self,
        method: Method,
        path_and_query: &str,
        body: Bytes,
    ) -> anyhow::Result<Response<Incoming>> {
        self.sender.ready().await?;
        let request = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(http::header::HOST, &self.host)
            .body(Full::new(body))?;
        Ok(self.sender.send_request(request).await?)
    }

    /// Send a request and read the whole response.
    pub async fn request(
        &mut self,
        method: Method,
        path_and_query: &str,
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let response = self.send(method, path_and_query, body).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// `POST /publish`; returns the number of connections the server delivered to.
    pub async fn publish(&mut self, path_and_query: &str, data: Bytes) -> anyhow::Result<u64> {
        let (status, body) = self.request(Method::POST, path_and_query, data).await?;
        if !status.is_success() {
            bail!(
                "POST {path_and_query}: {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let value: serde_json::Value =
            serde_json::from_slice(&body).context("publish response is not JSON")?;
        value
            .get("delivered")
            .and_then(|v| v.as_u64())
            .context("publish response has no \"delivered\" count")
    }
}

/// The server's counters, as `GET /stats` reports them.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerStats {
    pub connections: u64,
    /// Connections accepted since the server started, if it reports that count
    /// (`connections_total`): it only grows, unlike `connections`.
    pub connections_total: Option<u64>,
    pub dropped_events: u64,
    pub slow_consumer_closes: u64,
}

/// `GET {path}` on a fresh connection, parsed as the stats the bench needs.
pub async fn stats(addr: SocketAddr, host: &str, path: &str) -> anyhow::Result<ServerStats> {
    let mut client = Client::connect(addr, host).await?;
    let (status, body) = client.request(Method::GET, path, Bytes::new()).await?;
    if !status.is_success() {
        bail!("GET {path}: {status}");
    }
    let value: serde_json::Value =
        serde_json::from_slice(&body).with_context(|| format!("GET {path}: not JSON"))?;
    let field = |name: &str| find(&value, name).and_then(|v| v.as_u64());
    Ok(ServerStats {
        connections: field("connections")
            .with_context(|| format!("GET {path}: no \"connections\" count"))?,
        connections_total: field("connections_total"),
        dropped_events: field("dropped_events").unwrap_or(0),
        slow_consumer_closes: field("slow_consumer_closes").unwrap_or(0),
    })
}

/// A numeric field at the top level of a JSON object or one level down (servers may
/// nest their hub's counters).
fn find<'a>(value: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    let obj = value.as_object()?;
    if let Some(v) = obj.get(name).filter(|v| v.is_u64()) {
        return Some(v);
    }
    obj.values()
        .find_map(|v| v.as_object()?.get(name).filter(|v| v.is_u64()))
}

/// Clock ticks per second of `/proc/PID/stat` times (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// CPU time (user + system, all threads, seconds) a process has used so far.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let ticks = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).context("short /proc/PID/stat")?.parse()?)
    };
    Ok((ticks(11)? + ticks(12)?) as f64 / USER_HZ)
}

/// Resident set size of a process, in bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS in /proc/PID/status")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .context("malformed VmRSS")?
        .parse()?;
    Ok(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_cpu_time_and_memory() {
        let pid = std::process::id();
        // Burn a little CPU so the counter cannot legitimately be zero.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(cpu_seconds(pid).unwrap() > 0.0);
        assert!(rss_bytes(pid).unwrap() > 1024 * 1024);
        assert!(cpu_seconds(u32::MAX).is_err());
    }

    #[test]
    fn stats_fields_are_found_at_top_level_or_nested() {
        let flat: serde_json::Value = serde_json::json!({"connections": 3, "rooms": 1});
        let nested: serde_json::Value =
            serde_json::json!({"uptime": "x", "hub": {"connections": 5}});
        assert_eq!(find(&flat, "connections").unwrap().as_u64(), Some(3));
        assert_eq!(find(&nested, "connections").unwrap().as_u64(), Some(5));
        assert!(find(&flat, "missing").is_none());
    }
}
