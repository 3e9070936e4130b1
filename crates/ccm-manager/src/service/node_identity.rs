//! Which node a TLS client certificate belongs to, checked on every request: one the manager
//! issued to a node (by serial), not revoked or expired, signed by the key of that node's zone
//! CA (the simulated intermediate for simulated nodes; verified once per certificate and
//! cached), for a node that is not deactivated, so a deactivation takes effect at once.

use std::collections::HashSet;
use std::sync::RwLock;

use ccm_api::nodes::NodeStatusType;
use ccm_store::NodeAuth;
use sha2::{Digest, Sha256};
use x509_parser::prelude::*;

use super::{ServiceError, ServiceResult};
use crate::AppState;

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

fn unauthorized(code: &'static str, message: &str) -> ServiceError {
    ServiceError::Unauthenticated {
        code,
        message: message.into(),
    }
}

/// The node presenting the client certificate `der`, or why it is refused.
pub async fn authenticate(s: &AppState, der: &[u8]) -> ServiceResult<NodeAuth> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| {
        unauthorized(
            "invalid_node_certificate",
            "the client certificate does not parse",
        )
    })?;
    let serial = hex::encode(cert.raw_serial());
    // The certificate's record and its node in one query (the node's current status is read on
    // every request, so a deactivation takes effect at once).
    let (rec, node) = s.store.node_cert_auth(&serial).await?.ok_or_else(|| {
        unauthorized(
            "invalid_node_certificate",
            "the client certificate was not issued to a node by this manager",
        )
    })?;
    let now = s.clock.now();
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
        return Err(ServiceError::Refused {
            code: "node_deactivated",
            message: format!("node {} is deactivated", node.name),
        });
    }
    let fp: [u8; 32] = Sha256::digest(der).into();
    if !s.node_certs.contains(&fp) {
        signed_by_zone_ca(s, &cert, &node, rec.zone_id).await?;
        s.node_certs.insert(fp);
    }
    Ok(node)
}

/// Step of [`authenticate`]: the certificate is signed by the node's zone CA (a simulated node's
/// by the zone's simulated intermediate).
async fn signed_by_zone_ca(
    s: &AppState,
    cert: &X509Certificate<'_>,
    node: &NodeAuth,
    zone_id: uuid::Uuid,
) -> ServiceResult<()> {
    let ca = super::zones::issuing_ca(s, node.acct_id, zone_id, node.sgx_info.simulated)
        .await?
        .ca;
    let (_, ca_cert) =
        X509Certificate::from_der(ca.certificate_der()).map_err(ServiceError::internal)?;
    if cert.issuer() != ca_cert.subject()
        || cert.verify_signature(Some(ca_cert.public_key())).is_err()
    {
        return Err(unauthorized(
            "invalid_node_certificate",
            "the client certificate is not signed by the node's zone CA",
        ));
    }
    Ok(())
}
