//! `[cors]` on the real binary: listed origins (with credentials) get their streams and
//! the publish API, preflights included; other pages get neither; `*` is any page,
//! without credentials; no list is the hub's own pages only.

mod common;

use std::process::Command;

use bytes::Bytes;
use common::{bin, request, Reply, ServeProcess};
use http::{Request, StatusCode};
use http_body_util::Full;

const APP: &str = "https://app.example";

fn serve_with(config: &str) -> (ServeProcess, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!(
        "ssehub-cors-{}-{}.toml",
        std::process::id(),
        config.len()
    ));
    std::fs::write(&path, format!("{config}\n[demo]\ntick_interval = 0\n")).unwrap();
    let file = path.clone();
    let server = ServeProcess::spawn(move |port| {
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--config"])
            .arg(&file)
            .args(["--port", &port.to_string()]);
        cmd
    });
    (server, path)
}

async fn call(server: &ServeProcess, method: &str, path: &str, origin: &str) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("origin", origin);
    if method == "OPTIONS" {
        req = req.header("access-control-request-method", "POST").header(
            "access-control-request-headers",
            "authorization, content-type",
        );
    }
    request(server.addr, req.body(Full::new(Bytes::new())).unwrap()).await
}

/// The stream's status, and its `Access-Control-Allow-Origin`, for a page at `origin`.
async fn stream(server: &ServeProcess, origin: &str) -> (StatusCode, String, String) {
    let client = common::SseClient::connect(server.addr, "/sse", &[("origin", origin)]).await;
    let h = |name: &str| {
        client
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    (
        client.status,
        h("access-control-allow-origin"),
        h("access-control-allow-credentials"),
    )
}

#[tokio::test]
async fn listed_origins_with_credentials() {
    let (server, file) = serve_with(&format!(
        "[cors]\nallowed_origins = [\"{APP}\"]\nallow_credentials = true\n"
    ));
    let preflight = call(&server, "OPTIONS", "/publish", APP).await;
    assert!(preflight.status.is_success(), "{preflight:?}");
    assert_eq!(preflight.header("access-control-allow-origin"), APP);
    assert_eq!(preflight.header("access-control-allow-credentials"), "true");
    let methods = preflight
        .header("access-control-allow-methods")
        .to_ascii_uppercase();
    assert!(methods.contains("POST"), "{methods}");
    let headers = preflight
        .header("access-control-allow-headers")
        .to_ascii_lowercase();
    assert!(headers.contains("authorization") && headers.contains("content-type"));

    let published = call(&server, "POST", "/publish?room=a", APP).await;
    assert_eq!(published.status, StatusCode::ACCEPTED);
    assert_eq!(published.header("access-control-allow-origin"), APP);

    let other = call(&server, "OPTIONS", "/publish", "https://evil.example").await;
    assert_eq!(other.header("access-control-allow-origin"), "");

    assert_eq!(
        stream(&server, APP).await,
        (StatusCode::OK, APP.to_owned(), "true".to_owned())
    );
    let (status, _, _) = stream(&server, "https://evil.example").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let _ = std::fs::remove_file(file);
}

#[tokio::test]
async fn any_origin_without_credentials() {
    let (server, file) = serve_with("[cors]\nallowed_origins = \"*\"\n");
    let preflight = call(&server, "OPTIONS", "/publish", "https://any.example").await;
    assert!(preflight.status.is_success(), "{preflight:?}");
    assert_eq!(preflight.header("access-control-allow-origin"), "*");
    assert_eq!(preflight.header("access-control-allow-credentials"), "");
    assert_eq!(
        stream(&server, "https://any.example").await,
        (StatusCode::OK, "*".to_owned(), String::new())
    );
    let _ = std::fs::remove_file(file);
}

#[tokio::test]
async fn no_list_is_the_hubs_own_pages_only() {
    let (server, file) = serve_with("");
    let preflight = call(&server, "OPTIONS", "/publish", APP).await;
    assert_eq!(preflight.header("access-control-allow-origin"), "");
    let (status, _, _) = stream(&server, APP).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let _ = std::fs::remove_file(file);
}

/// A token that may publish anywhere, for `secret`.
fn publisher_token(secret: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = serde_json::json!({ "sub": "p", "exp": exp, "ssehub": { "publish": ["*"] } });
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

/// The listed origins are also the pages that may publish with the token cookie (the
/// CORS layer alone would let any page's `text/plain` POST through, its answer unread);
/// the hub's own pages may too; other pages, and requests that say nothing of where
/// they come from, get 403.
#[tokio::test]
async fn the_token_cookie_publishes_from_listed_and_own_pages_only() {
    const SECRET: &str = "a secret for the cookie test, long enough";
    let (server, file) = serve_with(&format!(
        "[auth]\njwt_secret = \"{SECRET}\"\n\
         [cors]\nallowed_origins = [\"{APP}\"]\nallow_credentials = true\n"
    ));
    let cookie = format!("ssehub_token={}", publisher_token(SECRET));
    let own = format!("http://{}", server.addr);
    let publish = |origin: Option<&str>| {
        let mut req = Request::post("/publish?room=a")
            .header("cookie", cookie.as_str())
            .header("content-type", "text/plain");
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        request(server.addr, req.body(Full::new(Bytes::from("x"))).unwrap())
    };
    let listed = publish(Some(APP)).await;
    assert_eq!(listed.status, StatusCode::ACCEPTED, "{}", listed.text());
    assert_eq!(listed.header("access-control-allow-origin"), APP);
    assert_eq!(publish(Some(&own)).await.status, StatusCode::ACCEPTED);
    for origin in [Some("https://evil.example"), Some("null"), None] {
        let refused = publish(origin).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{origin:?}");
        assert!(refused.text().contains("origin"), "{}", refused.text());
    }
    let _ = std::fs::remove_file(file);
}
