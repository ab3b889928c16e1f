//! Static files over real TCP: what is served from the folder, and what is not (dotfiles,
//! symlinks that leave it), and redirects that keep the URL prefix.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use http::StatusCode;
use ssehub::{SseOptions, StaticFiles};

/// A scratch folder: `www/` with `index.html`, `.env`, `.git/config`, `sub/index.html`,
/// `inside.txt` and two symlinks, `in.txt` to `inside.txt` and `out.txt` to a file next
/// to `www/`.
struct Site {
    root: PathBuf,
}

impl Site {
    fn new(name: &str) -> Site {
        let root =
            std::env::temp_dir().join(format!("ssehub-static-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let www = root.join("www");
        std::fs::create_dir_all(www.join("sub")).unwrap();
        std::fs::create_dir_all(www.join(".git")).unwrap();
        let write = |p: &Path, text: &str| std::fs::write(p, text).unwrap();
        write(&www.join("index.html"), "home");
        write(&www.join(".env"), "SECRET=1");
        write(&www.join(".git/config"), "[core]");
        write(&www.join("sub/index.html"), "sub");
        write(&www.join("inside.txt"), "inside");
        write(&root.join("secret.txt"), "outside");
        std::os::unix::fs::symlink(www.join("inside.txt"), www.join("in.txt")).unwrap();
        std::os::unix::fs::symlink(root.join("secret.txt"), www.join("out.txt")).unwrap();
        Site { root }
    }

    fn www(&self) -> PathBuf {
        self.root.join("www")
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

async fn serve(files: StaticFiles) -> TestServer {
    TestServer::start_with(SseOptions::new().keep_alive(None), |s| {
        s.static_files(files)
    })
    .await
}

#[tokio::test]
async fn dotfiles_and_symlinks_out_of_the_folder_are_not_served() {
    let site = Site::new("refuse");
    let srv = serve(StaticFiles::new(site.www())).await;
    for path in [
        "/.env",
        "/%2eenv",
        "/.git/config",
        "/sub/../.env",
        "/out.txt",
    ] {
        let (status, _, body) = srv.request("GET", path, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    for (path, text) in [("/", "home"), ("/in.txt", "inside"), ("/sub/", "sub")] {
        let (status, _, body) = srv.request("GET", path, "").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, text), "{path}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn dotfiles_and_symlinks_out_are_served_when_allowed() {
    let site = Site::new("allow");
    let files = StaticFiles::new(site.www())
        .allow_dotfiles(true)
        .allow_symlinks_outside(true);
    let srv = serve(files).await;
    for (path, text) in [("/.env", "SECRET=1"), ("/out.txt", "outside")] {
        let (status, _, body) = srv.request("GET", path, "").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, text), "{path}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn a_directory_redirect_keeps_the_prefix() {
    let site = Site::new("prefix");
    let srv = serve(StaticFiles::new(site.www()).prefix("/assets")).await;
    let (status, headers, _) = srv.request("GET", "/assets/sub", "").await;
    assert!(status.is_redirection(), "{status}");
    assert_eq!(headers["location"], "/assets/sub/");
    let (status, _, body) = srv.request("GET", "/assets/sub/", "").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "sub"));
    srv.stop().await;
}
