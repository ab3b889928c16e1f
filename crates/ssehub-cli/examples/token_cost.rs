//! What a stream request costs the server with no token, a good token and a bad one
//! (ES256): server CPU per request, from its `/proc/PID/stat` over `--requests`
//! requests of each kind (BENCHMARKS.md, "Token checks").
//!
//! ```sh
//! cargo build --release -p ssehub-cli --bin ssehub --example token_cost
//! taskset -c 1 target/release/examples/token_cost --server target/release/ssehub --requests 3000
//! ```
//!
//! It makes an ES256 key pair, writes the public key and a configuration that turns
//! auth on with it, and starts `taskset -c 0 SERVER serve` itself. Each request is
//! `GET /sse?room=x` on a connection of its own, the response head read and the
//! connection closed: no token (401), good tokens each used once (200: verified every
//! time), one good token repeated (200), one token with a bad signature repeated (401),
//! and bad tokens each used once (401, then 429 when the address's budget is spent).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "../src/procfs.rs"]
#[allow(dead_code)] // its RSS is not read here
mod procfs;
use procfs::cpu_seconds;

#[derive(Parser)]
struct Args {
    /// The `ssehub` binary to start (pinned to CPU 0 with `taskset`).
    #[arg(long)]
    server: PathBuf,
    #[arg(long, default_value_t = 2019)]
    port: u16,
    /// Requests of each kind.
    #[arg(long, default_value_t = 3000)]
    requests: usize,
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let dir = std::env::temp_dir().join(format!("ssehub-token-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let public = dir.join("jwt.pub.pem");
    std::fs::write(&public, key.public_key_pem())?;
    let config = dir.join("ssehub.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\njwt_public_key = {:?}\n",
            public.display().to_string()
        ),
    )?;
    let signing = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes())?;
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let forging = EncodingKey::from_ec_pem(other.serialize_pem().as_bytes())?;

    let server = Server(
        Command::new("taskset")
            .args(["-c", "0"])
            .arg(&args.server)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .args(["--port", &args.port.to_string()])
            .args(["--tick-interval", "0", "--keep-alive", "0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting the server")?,
    );
    let pid = server.0.id();
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let started = Instant::now();
    while TcpStream::connect(addr).await.is_err() {
        if started.elapsed() > Duration::from_secs(10) {
            bail!("the server did not start listening");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let n = args.requests;
    let token = |sub: String, key: &EncodingKey| -> anyhow::Result<String> {
        let claims = serde_json::json!({
            "sub": sub, "exp": now() + 3600, "ssehub": { "subscribe": ["*"] }
        });
        Ok(encode(&Header::new(Algorithm::ES256), &claims, key)?)
    };
    let fresh_good = (0..n)
        .map(|i| token(format!("u{i}"), &signing).map(Some))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let good = token("alice".into(), &signing)?;
    let bad = token("mallory".into(), &forging)?;
    let fresh_bad = (0..n)
        .map(|i| token(format!("m{i}"), &forging).map(Some))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Warm up (the server's first connections, the repeated tokens into its cache).
    measure(addr, pid, &vec![Some(good.clone()); 50]).await?;

    let kinds: [(&str, Vec<Option<String>>); 5] = [
        ("no token", vec![None; n]),
        ("good tokens, each once", fresh_good),
        ("one good token, repeated", vec![Some(good); n]),
        ("one bad signature, repeated", vec![Some(bad); n]),
        ("bad tokens, each once", fresh_bad),
    ];
    let mut baseline = None;
    for (what, tokens) in kinds {
        let (us, statuses) = measure(addr, pid, &tokens).await?;
        let base = *baseline.get_or_insert(us);
        println!(
            "{what:<30} {us:>7.1} us per request ({:.2}x no token)  statuses {statuses:?}",
            us / base
        );
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// One request per token, each on a connection of its own: the server's CPU time per
/// request (microseconds), and how many got each status.
async fn measure(
    addr: SocketAddr,
    pid: u32,
    tokens: &[Option<String>],
) -> anyhow::Result<(f64, Vec<(u16, usize)>)> {
    let mut statuses: Vec<(u16, usize)> = Vec::new();
    let before = cpu_seconds(pid)?;
    for token in tokens {
        let status = request(addr, token.as_deref()).await?;
        match statuses.iter_mut().find(|(s, _)| *s == status) {
            Some((_, count)) => *count += 1,
            None => statuses.push((status, 1)),
        }
    }
    // Let the server finish with the last connections before reading its clock.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cpu = cpu_seconds(pid)? - before;
    Ok((cpu * 1e6 / tokens.len() as f64, statuses))
}

/// `GET /sse?room=x` with `token`: the status of the response.
async fn request(addr: SocketAddr, token: Option<&str>) -> anyhow::Result<u16> {
    let mut tcp = TcpStream::connect(addr).await?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "GET /sse?room=x HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n{auth}\r\n"
    );
    tcp.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 2048];
        let got = tcp.read(&mut chunk).await?;
        if got == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..got]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status line")?;
    Ok(status)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
