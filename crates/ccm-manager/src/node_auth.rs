//! Node authentication: TLS client certificates issued by zone CAs.
//!
//! The manager's TLS server *offers* client authentication and accepts any client certificate
//! whose handshake signature verifies ([`OptionalClientCert`]): which CA to trust depends on the
//! node's account, which is only known once the certificate is read, so the chain is checked per
//! request by the [`NodeCaller`] extractor instead of in the handshake, with
//! [`crate::service::node_identity::authenticate`].
//! Browsers and the CLI present no certificate and are not affected.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use ccm_store::NodeAuth;
use rustls::DigitallySignedStruct;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls_pki_types::{CertificateDer, UnixTime};
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

/// An authenticated node agent.
#[derive(Debug, Clone)]
pub struct NodeCaller {
    /// The node.
    pub node: NodeAuth,
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
                ApiError::unauthorized(
                    "node_certificate_required",
                    "this endpoint needs a node certificate (TLS client authentication)",
                )
            })?;
        let node = crate::service::node_identity::authenticate(state, &der).await?;
        Ok(NodeCaller { node })
    }
}
