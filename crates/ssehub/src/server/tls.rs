//! TLS listeners (feature `tls`): rustls with its `ring` provider (no C to build), a
//! certificate chain and key from PEM, ALPN `h2` then `http/1.1` so that browsers get
//! HTTP/2 (one connection for all of a page's streams), and certificates reloaded
//! without dropping a connection.
//!
//! The certificate is resolved per handshake from a slot a reload swaps: connections
//! already open keep the session they negotiated (their keys do not depend on the
//! certificate any more), new ones get the new certificate. A reload that fails (a
//! file half-written, a key that does not match) is logged and the old certificate
//! stays; the next change or SIGHUP tries again.
//!
//! After the handshake, a connection that chose HTTP/2 is served by hyper; any other
//! goes through the take-over (`transport/takeover.rs`), so an HTTP/1.1 SSE stream is
//! served on the bare socket through its rustls session (`transport/tls.rs`), with
//! everything plain streams have (bounded outbox, slow-consumer policy, keep-alive,
//! dead-peer detection, graceful shutdown), and other requests by hyper.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;

use crate::sync::{read, write};
use crate::transport::{accept_tls, TlsTransport};

/// A certificate chain's and a key's PEM texts.
type Pem = (Vec<u8>, Vec<u8>);

/// Where a TLS listener's certificate comes from, and how it is kept fresh.
///
/// ```
/// use std::time::Duration;
/// use ssehub::{Server, TlsConfig};
///
/// let tls = TlsConfig::from_pem_files("/etc/ssehub/fullchain.pem", "/etc/ssehub/key.pem")
///     .watch_interval(Some(Duration::from_secs(10)));
/// let server = Server::new(([0, 0, 0, 0], 443)).tls(tls).also_listen(([0, 0, 0, 0], 80));
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    source: Source,
    watch: Option<Duration>,
}

#[derive(Clone)]
enum Source {
    Files { cert: PathBuf, key: PathBuf },
    Pem { cert: Vec<u8>, key: Vec<u8> },
}

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// No certificate in the chain's PEM.
    #[error("no certificate in {0}")]
    NoCertificate(String),
    /// No private key (PKCS#8, PKCS#1 or SEC1) in the key's PEM.
    #[error("no private key in {0}")]
    NoKey(String),
    /// rustls refused the key or the chain (a key that does not match the certificate).
    #[error("unusable certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
}

impl TlsConfig {
    /// The chain (leaf first) and the key from these PEM files, re-read when they
    /// change (checked every 5 s; [`TlsConfig::watch_interval`]) and on SIGHUP.
    pub fn from_pem_files(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsConfig {
        TlsConfig {
            source: Source::Files {
                cert: cert.into(),
                key: key.into(),
            },
            watch: Some(Duration::from_secs(5)),
        }
    }

    /// The chain and the key as PEM text (a certificate made at start, say); never
    /// reloaded.
    pub fn from_pem(cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> TlsConfig {
        TlsConfig {
            source: Source::Pem {
                cert: cert.into(),
                key: key.into(),
            },
            watch: None,
        }
    }

    /// How often the files are checked for a change (`None`: on SIGHUP only).
    pub fn watch_interval(mut self, every: Option<Duration>) -> TlsConfig {
        self.watch = every.filter(|d| !d.is_zero());
        self
    }

    /// Load the certificate and make the listener's TLS side.
    pub(crate) fn load(&self) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (bytes, key) = self.read()?;
        let slot = Arc::new(Slot {
            current: RwLock::new(Arc::new(key)),
        });
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(slot.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            config: Arc::new(config),
            slot,
            provider,
            source: self.clone(),
            loaded: bytes,
        })
    }

    /// The PEM texts and the key they make.
    fn read(&self) -> Result<(Pem, CertifiedKey), TlsError> {
        let provider = rustls::crypto::ring::default_provider();
        let (cert, key, cert_name, key_name) = match &self.source {
            Source::Files { cert, key } => (
                read_file(cert)?,
                read_file(key)?,
                cert.display().to_string(),
                key.display().to_string(),
            ),
            Source::Pem { cert, key } => (
                cert.clone(),
                key.clone(),
                "the certificate".into(),
                "the key".into(),
            ),
        };
        let certified = certified_key(&cert, &key, &cert_name, &key_name, &provider)?;
        Ok(((cert, key), certified))
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn certified_key(
    cert: &[u8],
    key: &[u8],
    cert_name: &str,
    key_name: &str,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::NoCertificate(cert_name.to_owned()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert_name.to_owned()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(key).map_err(|_| TlsError::NoKey(key_name.to_owned()))?;
    Ok(CertifiedKey::from_der(chain, key, provider)?)
}

/// The certificate new handshakes get; a reload swaps it.
#[derive(Debug)]
struct Slot {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Slot {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(read(&self.current).clone())
    }
}

/// A TLS listener's side: the sessions' configuration, and what reloading needs.
pub(crate) struct Tls {
    config: Arc<ServerConfig>,
    slot: Arc<Slot>,
    provider: Arc<CryptoProvider>,
    source: TlsConfig,
    /// The PEM texts the current certificate was made of.
    loaded: Pem,
}

impl Tls {
    /// The handshake of a new connection; `None` if it fails. (The caller holds it to
    /// the header deadline and the gate's grace, `listener.rs`.)
    pub(crate) async fn accept(&self, stream: TcpStream) -> Option<TlsTransport> {
        match accept_tls(stream, self.config.clone()).await {
            Ok(tls) => Some(tls),
            Err(e) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                None
            }
        }
    }

    /// Keep the certificate fresh until the task is aborted: on SIGHUP, and when the
    /// files change (PEM given in memory never changes).
    pub(crate) fn spawn_reloader(self: &Arc<Tls>) -> Option<tokio::task::JoinHandle<()>> {
        let Source::Files { .. } = self.source.source else {
            return None;
        };
        let this = self.clone();
        // Registered before the server accepts anything: a SIGHUP that comes once it
        // serves must reload, not stop the process (the signal's default).
        let mut hangup = hangup();
        Some(tokio::spawn(async move {
            let mut loaded = this.loaded.clone();
            loop {
                let tick = async {
                    match this.source.watch {
                        Some(every) => tokio::time::sleep(every).await,
                        None => std::future::pending().await,
                    }
                };
                let by_signal = tokio::select! {
                    _ = tick => false,
                    _ = next_hangup(&mut hangup) => true,
                };
                this.reload(&mut loaded, by_signal);
            }
        }))
    }

    /// Re-read the files; swap the certificate if they changed (or `forced`) and make a
    /// usable one.
    fn reload(&self, loaded: &mut Pem, forced: bool) {
        let Source::Files { cert, key } = &self.source.source else {
            return;
        };
        let (Ok(c), Ok(k)) = (std::fs::read(cert), std::fs::read(key)) else {
            tracing::warn!(cert = %cert.display(), key = %key.display(), "TLS reload: cannot read the files; keeping the current certificate");
            return;
        };
        if !forced && (&c, &k) == (&loaded.0, &loaded.1) {
            return;
        }
        let names = (cert.display().to_string(), key.display().to_string());
        match certified_key(&c, &k, &names.0, &names.1, &self.provider) {
            Ok(fresh) => {
                *write(&self.slot.current) = Arc::new(fresh);
                *loaded = (c, k);
                tracing::info!(cert = %names.0, "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS reload failed; keeping the current certificate")
            }
        }
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}
#[cfg(not(unix))]
fn hangup() -> Hangup {}

#[cfg(unix)]
async fn next_hangup(h: &mut Hangup) {
    match h {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}
#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangup) {
    std::future::pending().await
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TlsConfig");
        match &self.source {
            Source::Files { cert, key } => d.field("cert", cert).field("key", key),
            Source::Pem { .. } => d.field("pem", &"(in memory)"),
        };
        d.field("watch", &self.watch).finish()
    }
}
