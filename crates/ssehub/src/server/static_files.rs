//! Static files from a folder, through tower-http's `ServeDir`, with what it does not
//! refuse by itself: a path segment that starts with a dot (`.env`, `.git/`: dotfiles are
//! usually not meant for the web), and a symlink that leads out of the folder (a link
//! left in a deployed folder would publish whatever it points at). And a directory
//! redirect under a prefix keeps the prefix (`ServeDir` sees only the path below it).
//!
//! Symlinks are checked on each request, by resolving the path: a link changed between
//! the check and the read is served as it was checked or not at all, never from out of
//! the folder as the check saw it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use tower::ServiceExt;
use tower_http::services::ServeDir;

use super::body::{box_body, text, Body};
use crate::uri::clean_prefix;

/// Static files served from a folder.
#[derive(Debug, Clone)]
pub struct StaticFiles {
    path: PathBuf,
    prefix: String,
    max_age: Option<Duration>,
    dotfiles: bool,
    symlinks_outside: bool,
}

impl StaticFiles {
    /// Serve the folder `path` at `/`, with `index.html` for directories and no caching;
    /// no dotfiles, no symlinks that lead out of the folder.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StaticFiles {
            path: path.into(),
            prefix: "/".into(),
            max_age: None,
            dotfiles: false,
            symlinks_outside: false,
        }
    }

    /// The URL prefix to serve the folder at (such as `/assets`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = clean_prefix(&prefix.into());
        self
    }

    /// Send `Cache-Control: public, max-age=…` with every file.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// Serve paths with a segment that starts with a dot (`/.env`, `/.well-known/x`);
    /// off by default: they get 404. `.` and `..` segments are refused either way.
    pub fn allow_dotfiles(mut self, allow: bool) -> Self {
        self.dotfiles = allow;
        self
    }

    /// Follow symlinks that lead out of the folder; off by default: they get 404.
    /// Symlinks within the folder are followed either way.
    pub fn allow_symlinks_outside(mut self, allow: bool) -> Self {
        self.symlinks_outside = allow;
        self
    }

    /// Ready to serve: the `ServeDir`, and the folder as the system resolves it.
    pub(crate) fn ready(self) -> Ready {
        let dir = ServeDir::new(&self.path).append_index_html_on_directories(true);
        let root = std::fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        Ready {
            files: self,
            dir,
            root,
        }
    }
}

/// [`StaticFiles`] being served.
pub(crate) struct Ready {
    files: StaticFiles,
    dir: ServeDir,
    /// The folder, resolved (symlinks, `..`): what a served file must be below.
    root: PathBuf,
}

impl Ready {
    /// The path below the prefix, if `path` is under it.
    pub(crate) fn strip<'a>(&self, path: &'a str) -> Option<&'a str> {
        let prefix = &self.files.prefix;
        if prefix == "/" {
            return Some(path);
        }
        let rest = path.strip_prefix(prefix.as_str())?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    }

    /// Answer `req` for `rest`, the path below the prefix.
    pub(crate) async fn serve(&self, req: Request<Incoming>, rest: String) -> Response<Body> {
        let rest = if rest.is_empty() { "/".into() } else { rest };
        let Some(segments) = segments(&rest, self.files.dotfiles) else {
            return text(StatusCode::NOT_FOUND, "not found");
        };
        if !self.files.symlinks_outside && !self.stays_inside(&segments).await {
            return text(StatusCode::NOT_FOUND, "not found");
        }
        let (mut parts, body) = req.into_parts();
        let pq = match parts.uri.query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest,
        };
        match pq.parse() {
            Ok(uri) => parts.uri = uri,
            Err(_) => return text(StatusCode::BAD_REQUEST, "bad path"),
        }
        let req = Request::from_parts(parts, body);
        let mut res = match self.dir.clone().oneshot(req).await {
            Ok(res) => res.map(box_body),
            Err(never) => match never {},
        };
        self.finish(&mut res);
        res
    }

    /// The prefix in a redirect's `Location`, and the caching header.
    fn finish(&self, res: &mut Response<Body>) {
        let prefix = &self.files.prefix;
        if res.status().is_redirection() && prefix != "/" {
            let location = res
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok());
            if let Some(to) = location.filter(|l| l.starts_with('/')) {
                if let Ok(v) = HeaderValue::from_str(&format!("{prefix}{to}")) {
                    res.headers_mut().insert(header::LOCATION, v);
                }
            }
        }
        if let Some(age) = self.files.max_age.filter(|_| res.status().is_success()) {
            let v = format!("public, max-age={}", age.as_secs());
            if let Ok(v) = HeaderValue::from_str(&v) {
                res.headers_mut().insert(header::CACHE_CONTROL, v);
            }
        }
    }

    /// Whether what `segments` name (and, for a folder, its `index.html`) resolves to a
    /// place inside the folder. A path that does not exist is `ServeDir`'s to refuse.
    async fn stays_inside(&self, segments: &[String]) -> bool {
        let mut path = self.files.path.clone();
        path.extend(segments);
        let root = self.root.clone();
        let check = move || {
            let Ok(real) = std::fs::canonicalize(&path) else {
                return true;
            };
            let index = real.is_dir().then(|| real.join("index.html"));
            let inside = |p: &Path| std::fs::canonicalize(p).map_or(true, |r| r.starts_with(&root));
            real.starts_with(&root) && index.as_deref().is_none_or(inside)
        };
        // Resolving a path reads the file system: off the runtime's threads.
        tokio::task::spawn_blocking(check).await.unwrap_or(false)
    }
}

/// The decoded, non-empty segments of `path`; `None` if one is `.` or `..`, or starts
/// with a dot while dotfiles are not served, or does not decode.
fn segments(path: &str, dotfiles: bool) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        let segment = percent_decode_str(raw).decode_utf8().ok()?;
        let refused = segment == "."
            || segment == ".."
            || segment.contains(['/', '\\', '\0'])
            || (!dotfiles && segment.starts_with('.'));
        if refused {
            return None;
        }
        out.push(segment.into_owned());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::segments;

    #[test]
    fn dot_segments_are_refused() {
        assert_eq!(
            segments("/a/b.txt", false),
            Some(vec!["a".into(), "b.txt".into()])
        );
        assert_eq!(
            segments("/%61//b", false),
            Some(vec!["a".into(), "b".into()])
        );
        for bad in [
            "/.env",
            "/%2eenv",
            "/a/.git/config",
            "/a/../b",
            "/a/%2e%2e/b",
            "/a%2fb",
        ] {
            assert_eq!(segments(bad, false), None, "{bad}");
        }
        assert!(segments("/.well-known/x", true).is_some());
        assert_eq!(segments("/a/../b", true), None, "never `..`");
    }
}
