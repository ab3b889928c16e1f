//! TLS for the load tools (`bench`, `soak`, `top`) when they are given an `https://` URL:
//! rustls with its `ring` provider, ALPN chosen by the caller, and the server's
//! certificate **not verified**. These tools measure a test hub (often one started with
//! `--tls-self-signed`), never carry secrets, and must not fail on a certificate made a
//! second ago; `listen` and `publish` stay plain HTTP only.
//!
//! Only the certificate check is skipped: the handshake's signatures are still checked
//! by the provider's own code, so the session is a real one, just not authenticated.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use anyhow::Context as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// ALPN for HTTP/1.1.
pub(crate) const HTTP1: &[u8] = b"http/1.1";
/// ALPN for HTTP/2.
pub(crate) const HTTP2: &[u8] = b"h2";

/// A client configuration offering `alpn` only, which accepts any certificate (one per
/// protocol, made once per process).
pub(crate) fn config(alpn: &'static [u8]) -> Arc<ClientConfig> {
    static H1: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    static H2: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    let slot = if alpn == HTTP2 { &H2 } else { &H1 };
    slot.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        // A load generator opens thousands of sessions: no resumption cache to grow.
        config.resumption = rustls::client::Resumption::disabled();
        Arc::new(config)
    })
    .clone()
}

/// The TLS handshake over `tcp`, for the server `host` (a name or an address; its port,
/// if any, is ignored), offering `alpn`.
pub(crate) async fn handshake(
    tcp: TcpStream,
    host: &str,
    alpn: &'static [u8],
) -> anyhow::Result<TlsStream<TcpStream>> {
    let name = server_name(host)?;
    TlsConnector::from(config(alpn))
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS handshake with {host}"))
}

/// Connect to `addr` and shake hands (see [`handshake`]).
pub(crate) async fn connect(
    addr: SocketAddr,
    host: &str,
    alpn: &'static [u8],
) -> anyhow::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.set_nodelay(true)?;
    handshake(tcp, host, alpn).await
}

/// The name to send in SNI: `host` without its port (an address sends none).
fn server_name(host: &str) -> anyhow::Result<ServerName<'static>> {
    let bare = match host.rsplit_once(':') {
        // `[::1]:443`, `example.com:443`; a bare IPv6 address has more than one colon.
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => host,
    };
    let bare = bare.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned()).with_context(|| format!("{host:?} is not a server name"))
}

/// Accepts every certificate; checks the handshake's signatures with the provider.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_lose_their_port() {
        assert_eq!(
            server_name("example.com:443").unwrap(),
            ServerName::try_from("example.com").unwrap()
        );
        assert!(matches!(
            server_name("127.0.0.1:2016").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]:2016").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("::1").unwrap(),
            ServerName::IpAddress(_)
        ));
    }
}
