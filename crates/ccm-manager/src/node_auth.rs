//! Node authentication: TLS client certificates issued by zone CAs.
//!
//! The manager's TLS server *offers* client authentication and accepts any client certificate
//! whose handshake signature verifies ([`OptionalClientCert`]): which CA to trust depends on the
//! node's account, which is only known once the certificate is read, so the chain is checked per
//! request by the [`NodeCaller`] extractor instead of in the handshake. On every request it checks
//! that the certificate is one the manager issued to a node (by serial), is not revoked or
//! expired, is signed by the key of that node's zone CA (verified once per certificate and
//! cached), and that the node is not deactivated, so a deactivation takes effect at once.
//! Browsers and the CLI present no certificate and are not affected.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use ccm_api::nodes::NodeStatusType;
use ccm_store::NodeAuth;
use rustls::DigitallySignedStruct;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls_pki_types::{CertificateDer, UnixTime};
use sha2::{Digest, Sha256};
use x509_parser::prelude::*;

use crate::AppState;
use crate::error::ApiError;

/// A client-certificate verifier that asks for a certificate, does not require one, and checks
/// only that the client holds the certified key (the handshake signature); the certificate
/// itself is judged per request by [`NodeCaller`].
#[derive(Debug)]
pub struct OptionalClientCert {
    provider: Arc<CryptoProvider>,
}

impl OptionalClientCert {
    /// A verifier using `provider`'s signature algorithms.
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        Self { provider }
    }
}

impl ClientCertVerifier for OptionalClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Must at least be a certificate; everything else is checked per request.
        X509Certificate::from_der(end_entity.as_ref())
            .map(|_| ClientCertVerified::assertion())
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The client certificate (DER) of the TLS connection a request came on, put into the request
/// extensions by the server.
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Arc<Vec<u8>>);

/// Certificates (by SHA-256) whose zone-CA signature was verified.
#[derive(Debug, Default)]
pub struct VerifiedCerts(RwLock<HashSet<[u8; 32]>>);

impl VerifiedCerts {
    fn contains(&self, fp: &[u8; 32]) -> bool {
        self.0.read().map(|s| s.contains(fp)).unwrap_or(false)
    }

    fn insert(&self, fp: [u8; 32]) {
        if let Ok(mut s) = self.0.write() {
            if s.len() >= 65_536 {
                s.clear();
            }
            s.insert(fp);
        }
    }
}

/// An authenticated node agent.
#[derive(Debug, Clone)]
pub struct NodeCaller {
    /// The node.
    pub node: NodeAuth,
}

fn unauthorized(code: &str, message: impl Into<String>) -> ApiError {
    ApiError::unauthorized(code, message)
}

impl FromRequestParts<AppState> for NodeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let der = parts
            .extensions
            .get::<PeerCertificate>()
            .map(|p| p.0.clone())
            .ok_or_else(|| {
                unauthorized(
                    "node_certificate_required",
                    "this endpoint needs a node certificate (TLS client authentication)",
                )
            })?;
        let (_, cert) = X509Certificate::from_der(&der).map_err(|_| {
            unauthorized(
                "invalid_node_certificate",
                "the client certificate does not parse",
            )
        })?;
        let serial = hex::encode(cert.raw_serial());
        // The certificate's record and its node in one query (the node's current status is
        // read on every request, so a deactivation takes effect at once).
        let (rec, node) = state.store.node_cert_auth(&serial).await?.ok_or_else(|| {
            unauthorized(
                "invalid_node_certificate",
                "the client certificate was not issued to a node by this manager",
            )
        })?;
        let now = state.clock.now();
        if rec.revoked_at.is_some() {
            return Err(unauthorized(
                "node_certificate_revoked",
                "the node certificate is revoked",
            ));
        }
        if rec.not_after <= now || cert.validity().not_after.timestamp() <= now {
            return Err(unauthorized(
                "node_certificate_expired",
                "the node certificate has expired; the node must enroll again",
            ));
        }
        let node = node.ok_or_else(|| unauthorized("invalid_node_certificate", "unknown node"))?;
        if node.status == NodeStatusType::Deactivated {
            return Err(ApiError::bad_request(
                "node_deactivated",
                format!("node {} is deactivated", node.name),
            )
            .with_status(StatusCode::FORBIDDEN));
        }
        let fp: [u8; 32] = Sha256::digest(der.as_slice()).into();
        if !state.node_certs.contains(&fp) {
            // A simulated node's certificate comes from the zone's simulated intermediate.
            let ca = crate::service::zones::issuing_ca(
                state,
                node.acct_id,
                rec.zone_id,
                node.sgx_info.simulated,
            )
            .await?
            .ca;
            let (_, ca_cert) =
                X509Certificate::from_der(ca.certificate_der()).map_err(ApiError::internal)?;
            if cert.issuer() != ca_cert.subject()
                || cert.verify_signature(Some(ca_cert.public_key())).is_err()
            {
                return Err(unauthorized(
                    "invalid_node_certificate",
                    "the client certificate is not signed by the node's zone CA",
                ));
            }
            state.node_certs.insert(fp);
        }
        Ok(NodeCaller { node })
    }
}
