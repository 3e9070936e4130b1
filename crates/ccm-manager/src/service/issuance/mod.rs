//! Certificate issuance for application enclaves: nonces and the decision as named steps.

pub mod nonce;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ccm_api::nodes::{IssuanceNonce, IssuanceNonces, MAX_NONCE_BATCH};
use ccm_store::NodeAuth;

use crate::AppState;
use crate::service::{ServiceError, ServiceResult};

/// `count` fresh issuance nonces for `node` (1 to [`MAX_NONCE_BATCH`]). Only a node that may
/// obtain certificates gets nonces.
pub fn issue_nonces(s: &AppState, node: &NodeAuth, count: u32) -> ServiceResult<IssuanceNonces> {
    if !(1..=MAX_NONCE_BATCH).contains(&count) {
        return Err(ServiceError::bad_request(
            "nonce_count",
            format!("count must be between 1 and {MAX_NONCE_BATCH}, not {count}"),
        ));
    }
    if !node.status.may_issue() {
        return Err(ServiceError::Forbidden(format!(
            "node {} is {} and may not obtain certificates",
            node.name,
            node.status.as_str()
        )));
    }
    let count = usize::try_from(count).unwrap_or(1);
    let minted = s
        .nonces
        .mint(node.node_id, s.clock.now(), count)
        .ok_or_else(|| ServiceError::internal("no randomness for issuance nonces"))?;
    Ok(IssuanceNonces {
        nonces: minted
            .into_iter()
            .map(|(nonce, expires_at)| IssuanceNonce {
                nonce: STANDARD.encode(nonce),
                expires_at,
            })
            .collect(),
    })
}
