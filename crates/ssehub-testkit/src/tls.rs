//! TLS on the client's side: certificates made for the test ([`SelfSigned`]), and one
//! request over TLS, on HTTP/2 or HTTP/1.1 as ALPN decides ([`send_tls`]).

use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::within;

/// A self-signed certificate for `localhost` and `127.0.0.1`, and its key, as PEM.
#[derive(Clone)]
pub struct SelfSigned {
    /// The certificate, PEM.
    pub cert: String,
    /// Its private key, PEM.
    pub key: String,
}

impl SelfSigned {
    /// A new certificate and key.
    pub fn new() -> SelfSigned {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let made = rcgen::generate_simple_self_signed(names).expect("a self-signed certificate");
        SelfSigned {
            cert: made.cert.pem(),
            key: made.signing_key.serialize_pem(),
        }
    }
}

impl Default for SelfSigned {
    fn default() -> Self {
        SelfSigned::new()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client that trusts the certificates in `roots` (PEM) and offers `alpn`.
pub fn client_config(roots: &[&str], alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for pem in roots {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            store.add(cert.expect("a PEM certificate")).expect("a root");
        }
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A client that accepts any certificate (for a server's `--tls-self-signed`), still
/// checking the handshake's signatures.
pub fn insecure_client_config(alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

#[derive(Debug)]
struct AnyCertificate;

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
        let algs = provider().signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = provider().signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS connection to `addr` for `localhost`; the handshake's error if it fails.
pub async fn connect_tls(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = within("connect", TcpStream::connect(addr)).await?;
    let name = ServerName::try_from("localhost").expect("a DNS name");
    within(
        "the TLS handshake",
        TlsConnector::from(config).connect(name, tcp),
    )
    .await
}

/// The protocol ALPN chose on `tls` (`h2`, `http/1.1`, or none).
pub fn alpn(tls: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

/// Send `req` over a new TLS connection: HTTP/2 if ALPN chose `h2`, else HTTP/1.1. The
/// response head, and the protocol ALPN chose; the body is left to stream.
pub async fn send_tls<B>(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    mut req: Request<B>,
) -> (Response<Incoming>, Option<Vec<u8>>)
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tls = connect_tls(addr, config).await.expect("a TLS handshake");
    let protocol = alpn(&tls);
    let io = TokioIo::new(tls);
    let res = if protocol.as_deref() == Some(b"h2") {
        *req.uri_mut() = format!("https://localhost:{}{}", addr.port(), req.uri())
            .parse()
            .expect("an absolute URI");
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .expect("HTTP/2 handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        within("the response head", sender.send_request(req)).await
    } else {
        if !req.headers().contains_key(header::HOST) {
            let host = format!("localhost:{}", addr.port())
                .parse()
                .expect("a Host");
            req.headers_mut().insert(header::HOST, host);
        }
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        within("the response head", sender.send_request(req)).await
    };
    (res.expect("send the request"), protocol)
}
