//! The RPC listener's TLS: our serving certificate, and client certificates *required* and
//! checked against `--client-ca` (chain, validity period, client-auth usage) during the
//! handshake — a client without one, with one from another CA, or with an expired one never
//! gets to send a request.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    #[error("{flag} {}: {reason}", path.display())]
    File {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        flag,
        path: path.into(),
        reason: e.to_string(),
    })
}

fn certs(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(flag, path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::File {
            flag,
            path: path.into(),
            reason: format!("not PEM certificates: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::File {
            flag,
            path: path.into(),
            reason: "holds no certificate".into(),
        });
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("--tls-key", path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| e.to_string())
        .and_then(|k| k.ok_or_else(|| "holds no private key".to_owned()))
        .map_err(|reason| TlsError::File {
            flag: "--tls-key",
            path: path.into(),
            reason,
        })
}

/// The server configuration: `cert`/`key` served, clients verified against `client_ca`.
pub(crate) fn server_config(
    cert: &Path,
    key_path: &Path,
    client_ca: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in certs("--client-ca", client_ca)? {
        roots.add(ca).map_err(|e| TlsError::File {
            flag: "--client-ca",
            path: client_ca.into(),
            reason: e.to_string(),
        })?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs("--tls-cert", cert)?, key(key_path)?)
        .map_err(|e| TlsError::Config(format!("--tls-cert/--tls-key: {e}")))?;
    Ok(Arc::new(config))
}
