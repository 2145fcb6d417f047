//! TLS for `wss://`: rustls with the ring provider, the certificate chain and key
//! read from PEM files, and a certificate that can be swapped at run time
//! (`ServerHandle::reload_tls`, SIGHUP in the binary) without dropping
//! connections: new handshakes get the new certificate, open ones keep theirs.

use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;
use crate::error::{Error, Result};

/// The server's TLS state: the acceptor and the certificate it presents.
pub(crate) struct Tls {
    files: TlsConfig,
    provider: Arc<CryptoProvider>,
    current: Arc<CurrentCert>,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// Hands every handshake the certificate loaded last.
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

impl Tls {
    /// Loads the files and builds the acceptor.
    pub(crate) fn new(files: &TlsConfig) -> Result<Tls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert = load(files, &provider)?;
        let current = Arc::new(CurrentCert(RwLock::new(Arc::new(cert))));
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("TLS: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        // WebSocket upgrades are HTTP/1.1.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            files: files.clone(),
            provider,
            current,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Reads the files again and presents the new certificate from the next
    /// handshake on. On error the current certificate stays.
    pub(crate) fn reload(&self) -> Result<()> {
        let cert = load(&self.files, &self.provider)?;
        *self.current.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(cert);
        Ok(())
    }
}

/// The chain and key from the PEM files, checked to belong together.
fn load(files: &TlsConfig, provider: &CryptoProvider) -> Result<CertifiedKey> {
    let cert_path = files.cert_path.display();
    let key_path = files.key_path.display();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert_path)
        .and_then(|certs| certs.collect())
        .map_err(|e| Error::Config(format!("TLS certificate {cert_path}: {e}")))?;
    if chain.is_empty() {
        return Err(Error::Config(format!(
            "TLS certificate {cert_path}: no certificate found"
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key_path)
        .map_err(|e| Error::Config(format!("TLS key {key_path}: {e}")))?;
    CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| Error::Config(format!("TLS certificate and key: {e}")))
}
