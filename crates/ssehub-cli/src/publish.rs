//! `ssehub publish`: post one event to a running server's `POST /publish`.
//!
//! ```text
//! ssehub publish --room chat --event message "hello"
//! echo '{"n": 1}' | ssehub publish --event update -
//! ```

use std::io::Read as _;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::Full;

use crate::hub_client;

/// How long the whole request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The server's base URL (`/publish` is appended unless the URL already ends with it).
    #[arg(long, env = "SSEHUB_URL", default_value = "http://127.0.0.1:2015")]
    pub url: String,
    /// The room to publish to (repeat for several; default `__all`). A connection in
    /// several of them receives the event once.
    #[arg(long = "room", value_name = "ROOM")]
    pub rooms: Vec<String>,
    /// The event name (default: `message`).
    #[arg(long)]
    pub event: Option<String>,
    /// The event id (what clients send back as `Last-Event-ID`).
    #[arg(long)]
    pub id: Option<String>,
    /// A reconnection delay hint for the clients, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub retry: Option<u64>,
    /// The server's publish token (`serve --publish-token`), sent as a bearer token.
    #[arg(long, env = "SSEHUB_PUBLISH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The data; `-` reads it from standard input.
    pub data: String,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let data = if args.data == "-" {
        tokio::task::spawn_blocking(|| {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).map(|_| buf)
        })
        .await?
        .context("cannot read the data from standard input")?
    } else {
        args.data.clone().into_bytes()
    };
    let uri = publish_uri(&args)?;
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(uri.clone())
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
    if let Some(token) = &args.token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request.body(Full::new(Bytes::from(data)))?;
    let client = hub_client::http_client();
    let answer = async {
        let res = client
            .request(request)
            .await
            .with_context(|| format!("cannot reach {uri}"))?;
        let status = res.status();
        let body = hub_client::read_body(res.into_body(), 64 * 1024).await?;
        anyhow::Ok((status, body))
    };
    let (status, body) = tokio::time::timeout(TIMEOUT, answer)
        .await
        .with_context(|| format!("{uri} did not answer within {}s", TIMEOUT.as_secs()))??;
    if !status.is_success() {
        anyhow::bail!(
            "the server refused the event ({status}): {}",
            hub_client::error_message(&body)
        );
    }
    let delivered = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("delivered").and_then(|d| d.as_u64()))
        .with_context(|| {
            format!(
                "unexpected answer from {uri}: {}",
                String::from_utf8_lossy(&body)
            )
        })?;
    println!("delivered: {delivered}");
    Ok(())
}

/// `<url>/publish?room=…&event=…&id=…&retry=…`.
fn publish_uri(args: &Args) -> anyhow::Result<http::Uri> {
    let base = hub_client::parse_url(&args.url)?;
    let path = base.path().trim_end_matches('/');
    let path = if path.ends_with("/publish") {
        path.to_owned()
    } else {
        format!("{path}/publish")
    };
    let mut query = form_urlencoded::Serializer::new(String::new());
    for room in &args.rooms {
        query.append_pair("room", room);
    }
    if let Some(e) = &args.event {
        query.append_pair("event", e);
    }
    if let Some(id) = &args.id {
        query.append_pair("id", id);
    }
    if let Some(ms) = args.retry {
        query.append_pair("retry", &ms.to_string());
    }
    let query = query.finish();
    let path_and_query = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    let mut parts = base.into_parts();
    parts.path_and_query = Some(path_and_query.parse()?);
    Ok(http::Uri::from_parts(parts)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: &str, rooms: &[&str], event: Option<&str>) -> Args {
        Args {
            url: url.into(),
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            event: event.map(Into::into),
            id: None,
            retry: Some(100),
            token: None,
            data: "x".into(),
        }
    }

    #[test]
    fn uris() {
        let u = publish_uri(&args("http://h:1", &["a b", "c&d"], Some("e"))).unwrap();
        assert_eq!(
            u.to_string(),
            "http://h:1/publish?room=a+b&room=c%26d&event=e&retry=100"
        );
        let u = publish_uri(&args("http://h:1/base/", &[], None)).unwrap();
        assert_eq!(u.to_string(), "http://h:1/base/publish?retry=100");
        let u = publish_uri(&args("http://h:1/publish", &[], None)).unwrap();
        assert_eq!(u.to_string(), "http://h:1/publish?retry=100");
        assert!(publish_uri(&args("https://h/", &[], None)).is_err());
    }
}
