//! The manager's TLS identity: an operator-provided certificate, or a self-signed one generated
//! on first start and kept in `<data_dir>/tls/` (key mode 0600). Clients pin its SHA-256
//! fingerprint, which `ccm manager` prints at start.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{Config, Error};

/// A loaded TLS identity.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    /// Server configuration for the listener.
    pub server_config: Arc<ServerConfig>,
    /// SHA-256 of the leaf certificate (DER).
    pub fingerprint: [u8; 32],
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// Loads the configured identity, or loads/creates the generated one in the data directory.
pub fn load_or_create(config: &Config, now: i64) -> Result<TlsIdentity, Error> {
    let (cert_path, key_path) = match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let dir = config.data_dir.join("tls");
            let cert = dir.join("manager.crt");
            let key = dir.join("manager.key");
            if !cert.exists() || !key.exists() {
                std::fs::create_dir_all(&dir).map_err(io(&dir))?;
                let id = ccm_pki::self_signed_server(&config.tls_names, now, 825)?;
                // Key first, so a crash in between never leaves a certificate without its key.
                let _ = std::fs::remove_file(&key);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&key)
                    .map_err(io(&key))?;
                f.write_all(id.key_pem.as_bytes()).map_err(io(&key))?;
                f.sync_all().map_err(io(&key))?;
                std::fs::write(&cert, id.cert_pem.as_bytes()).map_err(io(&cert))?;
            }
            (cert, key)
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| Error::Tls(format!("{}: {e}", cert_path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Tls(format!("{}: {e}", cert_path.display())))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Error::Tls(format!("{}: no certificate", cert_path.display())))?;
    let fingerprint = ccm_pki::fingerprint_sha256(leaf.as_ref());
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| Error::Tls(format!("{}: {e}", key_path.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server_config = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        // Node agents present their node certificate; everyone else presents none.
        .with_client_cert_verifier(Arc::new(crate::node_auth::OptionalClientCert::new(
            provider,
        )))
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsIdentity {
        server_config: Arc::new(server_config),
        fingerprint,
    })
}
