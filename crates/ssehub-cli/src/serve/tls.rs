//! The main listener's TLS side, from `[tls]`: PEM files (reloaded when they change and
//! on SIGHUP), or a certificate for `localhost` made at start (`--tls-self-signed`).

use anyhow::Context;
use ssehub::TlsConfig;

use crate::config::TlsSection;

/// The listener's TLS configuration (`None`: plain HTTP).
pub(super) fn tls_config(c: &TlsSection) -> anyhow::Result<Option<TlsConfig>> {
    if c.self_signed {
        return self_signed().map(Some);
    }
    let (Some(cert), Some(key)) = (&c.cert, &c.key) else {
        return Ok(None);
    };
    let watch = (!c.watch_interval.is_zero()).then_some(c.watch_interval);
    Ok(Some(
        TlsConfig::from_pem_files(cert, key).watch_interval(watch),
    ))
}

/// A self-signed certificate for `localhost`, `127.0.0.1` and `::1`, made now.
fn self_signed() -> anyhow::Result<TlsConfig> {
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    let made = rcgen::generate_simple_self_signed(names).context("--tls-self-signed")?;
    tracing::warn!(
        "TLS with a self-signed certificate made at start: for development only (browsers \
         will warn; curl needs -k)"
    );
    Ok(TlsConfig::from_pem(
        made.cert.pem(),
        made.signing_key.serialize_pem(),
    ))
}
