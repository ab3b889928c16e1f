//! The HTTP client side shared by the commands: URL checks, where a server is
//! ([`Target`]), and a hyper client.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How long connecting may take before we give up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Parse an `http://` URL. TLS is not built in: put a TLS-terminating proxy in front, or
/// talk to the server over plain HTTP.
pub fn parse_url(url: &str) -> anyhow::Result<Uri> {
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

/// Where a server is: its address, its `Host`, and the path prefix its URL gave.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    /// Path prefix from the URL, without a trailing slash.
    pub prefix: String,
}

impl Target {
    /// Check `url` (see [`parse_url`]) and resolve its host.
    pub async fn parse(url: &str) -> anyhow::Result<Target> {
        let uri = parse_url(url)?;
        let authority = uri.authority().context("the URL has no host")?;
        let port = authority.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((authority.host(), port))
            .await
            .with_context(|| format!("resolving {}", authority.host()))?
            .next()
            .with_context(|| format!("{} has no address", authority.host()))?;
        Ok(Target {
            addr,
            host: authority.as_str().to_owned(),
            prefix: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// `p` below the URL's path prefix.
    pub fn path(&self, p: &str) -> String {
        format!("{}{p}", self.prefix)
    }
}

/// A plain-HTTP client (HTTP/1.1, connection pool).
pub fn http_client<B>() -> Client<HttpConnector, B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Read at most `limit` bytes of a body (error bodies and small answers).
pub async fn read_body<B>(body: B, limit: usize) -> anyhow::Result<Bytes>
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
pub fn error_message(body: &[u8]) -> String {
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
    fn error_messages() {
        assert_eq!(error_message(br#"{"error":"bad event"}"#), "bad event");
        assert_eq!(error_message(b" plain text\n"), "plain text");
        assert_eq!(error_message(b""), "(no message)");
    }
}
