//! Talking HTTP to a running hub server, for every command but `serve`: URL checks, where
//! the server is ([`Target`]), a pooled client for one-off requests ([`http_client`]), a
//! keep-alive connection for many ([`Client`], with `POST /publish`), and the server's
//! `GET /stats` ([`ServerStats`]).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// How long connecting may take before we give up.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Parse an `http://` URL. TLS is not built in: put a TLS-terminating proxy in front, or
/// talk to the server over plain HTTP.
pub(crate) fn parse_url(url: &str) -> anyhow::Result<Uri> {
    let uri: Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a valid URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => anyhow::bail!("{url}: https is not supported, use an http:// URL"),
        Some(other) => anyhow::bail!("{url}: unsupported scheme {other:?}, use http://"),
        None => anyhow::bail!("{url}: give a full URL such as http://127.0.0.1:2015/sse"),
    }
    anyhow::ensure!(uri.host().is_some(), "{url}: the URL has no host");
    Ok(uri)
}

/// Where a server is: its address, its `Host`, the path prefix its URL gave, and
/// whether it speaks TLS (an `https://` URL, for the load tools: `tls_client.rs`).
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub addr: SocketAddr,
    pub host: String,
    /// Path prefix from the URL, without a trailing slash.
    pub prefix: String,
    /// The object of `/stats` whose counters [`Target::stats`] reads (`mercure`: the
    /// Mercure hub's), or `None` for the room hub's.
    pub stats_section: Option<&'static str>,
    /// `https://`: connections are TLS, the certificate is not verified.
    pub tls: bool,
}

impl Target {
    /// A plain-HTTP server at `addr`, at the root, named by its address.
    pub(crate) fn plain(addr: SocketAddr) -> Target {
        Target {
            addr,
            host: addr.to_string(),
            prefix: String::new(),
            stats_section: None,
            tls: false,
        }
    }

    /// Every URL of a repeated `--sse-url`, parsed (an error names the one that failed).
    pub(crate) async fn parse_each(urls: &[String]) -> anyhow::Result<Vec<Target>> {
        let mut targets = Vec::with_capacity(urls.len());
        for url in urls {
            targets.push(
                Target::parse(url)
                    .await
                    .with_context(|| format!("--sse-url {url}"))?,
            );
        }
        Ok(targets)
    }

    /// Check `url` (see [`parse_url`]; `https://` is allowed too: the load tools speak
    /// TLS) and resolve its host.
    pub(crate) async fn parse(url: &str) -> anyhow::Result<Target> {
        let tls = url.starts_with("https://");
        let uri = if tls {
            parse_url(&format!("http://{}", &url["https://".len()..]))?
        } else {
            parse_url(url)?
        };
        let authority = uri.authority().context("the URL has no host")?;
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let addr = tokio::net::lookup_host((authority.host(), port))
            .await
            .with_context(|| format!("resolving {}", authority.host()))?
            .next()
            .with_context(|| format!("{} has no address", authority.host()))?;
        Ok(Target {
            addr,
            host: authority.as_str().to_owned(),
            prefix: uri.path().trim_end_matches('/').to_owned(),
            stats_section: None,
            tls,
        })
    }

    /// `p` below the URL's path prefix.
    pub(crate) fn path(&self, p: &str) -> String {
        format!("{}{p}", self.prefix)
    }

    /// The server's `GET /stats`, on a fresh connection.
    pub(crate) async fn stats(&self) -> anyhow::Result<ServerStats> {
        let path = self.path("/stats");
        let mut client = Client::connect(self).await?;
        let (status, body) = client.request(Method::GET, &path, Bytes::new()).await?;
        if !status.is_success() {
            bail!("GET {path}: {status}");
        }
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) else {
            // Nchan's `nchan_stub_status` (`ssehub bench --spawn-nchan`): `name: value`
            // lines; its subscribers are the connections.
            let text = String::from_utf8_lossy(&body);
            let line = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            return Ok(ServerStats {
                connections: line("subscribers")
                    .with_context(|| format!("GET {path}: neither JSON nor Nchan's status"))?,
                ..ServerStats::default()
            });
        };
        let scope = match self.stats_section {
            Some(section) => value
                .get(section)
                .with_context(|| format!("GET {path}: no \"{section}\" counters"))?,
            None => &value,
        };
        let field = |name: &str| find(scope, name).and_then(|v| v.as_u64());
        Ok(ServerStats {
            connections: field("connections")
                .with_context(|| format!("GET {path}: no \"connections\" count"))?,
            connections_total: field("connections_total"),
            dropped_events: field("dropped_events").unwrap_or(0),
            slow_consumer_closes: field("slow_consumer_closes").unwrap_or(0),
        })
    }
}

/// A plain-HTTP client (HTTP/1.1, connection pool).
pub(crate) fn http_client<B>() -> hyper_util::client::legacy::Client<HttpConnector, B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.set_nodelay(true);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector)
}

/// One keep-alive HTTP/1.1 connection to the server: what the load tools publish on, and
/// what a soak reader streams on.
pub(crate) struct Client {
    sender: http1::SendRequest<Full<Bytes>>,
    host: String,
    /// `Authorization` for every request: the server's publish token, from
    /// `SSEHUB_PUBLISH_TOKEN` (what `serve --publish-token` reads too).
    authorization: Option<String>,
}

impl Client {
    /// One HTTP/1.1 connection to `target` (over TLS for an `https://` one).
    pub(crate) async fn connect(target: &Target) -> anyhow::Result<Client> {
        let (addr, host) = (target.addr, &target.host);
        let sender = if target.tls {
            let stream = crate::tls_client::connect(addr, host, crate::tls_client::HTTP1).await?;
            let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            sender
        } else {
            let stream = TcpStream::connect(addr)
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            stream.set_nodelay(true)?;
            let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            sender
        };
        Ok(Client {
            sender,
            host: host.to_owned(),
            authorization: std::env::var("SSEHUB_PUBLISH_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())
                .map(|t| format!("Bearer {t}")),
        })
    }

    /// Send `Authorization: Bearer TOKEN` from now on (`None`: keep what the
    /// environment gave).
    pub(crate) fn token(mut self, token: Option<&str>) -> Client {
        if let Some(t) = token.filter(|t| !t.is_empty()) {
            self.authorization = Some(format!("Bearer {t}"));
        }
        self
    }

    /// Send a request; the response's body is left to stream.
    pub(crate) async fn send(
        &mut self,
        method: Method,
        path_and_query: &str,
        body: Bytes,
    ) -> anyhow::Result<Response<Incoming>> {
        self.send_typed(method, path_and_query, None, body).await
    }

    /// Send a request with a body of `content_type`.
    pub(crate) async fn send_typed(
        &mut self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> anyhow::Result<Response<Incoming>> {
        self.sender.ready().await?;
        let mut request = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(http::header::HOST, &self.host);
        if let Some(t) = content_type {
            request = request.header(http::header::CONTENT_TYPE, t);
        }
        if let Some(auth) = &self.authorization {
            request = request.header(http::header::AUTHORIZATION, auth);
        }
        let request = request.body(Full::new(body))?;
        Ok(self.sender.send_request(request).await?)
    }

    /// Send a request and read the whole response.
    pub(crate) async fn request(
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

    /// `POST /publish`; returns the number of connections the server delivered to, and
    /// the event's id when the server gave one (a hub with history does).
    pub(crate) async fn publish(
        &mut self,
        path_and_query: &str,
        data: Bytes,
    ) -> anyhow::Result<(u64, Option<String>)> {
        self.sender.ready().await?;
        let mut request = Request::post(path_and_query)
            .header(http::header::HOST, &self.host)
            // ssehub answers JSON anyway; Nchan only when asked.
            .header(http::header::ACCEPT, "application/json");
        if let Some(auth) = &self.authorization {
            request = request.header(http::header::AUTHORIZATION, auth);
        }
        let response = self
            .sender
            .send_request(request.body(Full::new(data))?)
            .await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!(
                "POST {path_and_query}: {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let value: serde_json::Value =
            serde_json::from_slice(&body).context("publish response is not JSON")?;
        // Nchan answers with the channel's subscribers (`bench --spawn-nchan`).
        let delivered = value
            .get("delivered")
            .or_else(|| value.get("subscribers"))
            .and_then(|v| v.as_u64())
            .context("publish response has no \"delivered\" count")?;
        let id = value.get("id").and_then(|v| v.as_str()).map(str::to_owned);
        Ok((delivered, id))
    }
}

/// The server's counters, as `GET /stats` reports them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ServerStats {
    pub connections: u64,
    /// Connections accepted since the server started, if it reports that count
    /// (`connections_total`): it only grows, unlike `connections`.
    pub connections_total: Option<u64>,
    pub dropped_events: u64,
    pub slow_consumer_closes: u64,
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

/// Read at most `limit` bytes of a body (error bodies and small answers).
pub(crate) async fn read_body<B>(body: B, limit: usize) -> anyhow::Result<Bytes>
where
    B: hyper::body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    Limited::new(body, limit)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| anyhow::anyhow!("could not read the answer: {e}"))
}

/// The human part of an error answer: the `error` field of a JSON body, else the text.
pub(crate) fn error_message(body: &[u8]) -> String {
    if let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice(body) {
        if let Some(serde_json::Value::String(e)) = obj.get("error") {
            return e.clone();
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(no message)".into()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(parse_url("http://127.0.0.1:2015/sse").is_ok());
        assert!(parse_url("https://example.com/")
            .unwrap_err()
            .to_string()
            .contains("https"));
        assert!(parse_url("/sse").is_err());
        assert!(parse_url("not a url").is_err());
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

    #[test]
    fn error_messages() {
        assert_eq!(error_message(br#"{"error":"bad event"}"#), "bad event");
        assert_eq!(error_message(b" plain text\n"), "plain text");
        assert_eq!(error_message(b""), "(no message)");
    }
}
