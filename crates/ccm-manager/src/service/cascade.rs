//! Revocation cascades: what withdrawing trust from an object does to what was issued through
//! it, each with the reason recorded on the revoked certificates.

use ccm_api::nodes::NodeStatusType;
use ccm_store::{Effect, EffectStep};

/// Why a node's certificates are revoked when an operator deactivates it.
pub const NODE_DEACTIVATED: &str = "the node was deactivated";
/// Why a node's certificates are revoked when its NODE_ATTESTATION task is denied.
pub const NODE_DENIED: &str = "the node's attestation was denied";
/// Why an app's certificates are revoked when it is deleted.
pub const APP_DELETED: &str = "the app was deleted";
/// Why an image's certificates are revoked when it is deleted.
pub const IMAGE_DELETED: &str = "the image was deleted";

/// A node is no longer trusted: it is deactivated, its own certificate and every certificate
/// issued through it revoked, its pending requests rejected.
fn node_withdrawn(reason: &str) -> Effect {
    Effect::of([
        EffectStep::SetNodeStatus {
            to: NodeStatusType::Deactivated,
            from: None,
        },
        EffectStep::RevokeNodeIdentity,
        EffectStep::RevokeCertificates {
            reason: reason.into(),
        },
    ])
}

/// An operator deactivates a node.
pub fn node_deactivated() -> Effect {
    node_withdrawn(NODE_DEACTIVATED)
}

/// A node's admission is denied.
pub fn node_denied() -> Effect {
    node_withdrawn(NODE_DENIED)
}

/// An app is deleted: the certificates issued for it are revoked.
pub fn app_deleted() -> Effect {
    Effect::of([EffectStep::RevokeCertificates {
        reason: APP_DELETED.into(),
    }])
}

/// An image is deleted: the certificates issued for it are revoked.
pub fn image_deleted() -> Effect {
    Effect::of([EffectStep::RevokeCertificates {
        reason: IMAGE_DELETED.into(),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revocation_reason(e: &Effect) -> Option<&str> {
        e.steps.iter().find_map(|s| match s {
            EffectStep::RevokeCertificates { reason } => Some(reason.as_str()),
            _ => None,
        })
    }

    #[test]
    fn deactivating_a_node_revokes_its_identity_and_certificates() {
        let e = node_deactivated();
        assert_eq!(
            e.steps[0],
            EffectStep::SetNodeStatus {
                to: NodeStatusType::Deactivated,
                from: None
            }
        );
        assert!(e.steps.contains(&EffectStep::RevokeNodeIdentity));
        assert_eq!(revocation_reason(&e), Some(NODE_DEACTIVATED));
    }

    #[test]
    fn deleting_an_app_or_image_revokes_with_its_own_reason() {
        assert_eq!(revocation_reason(&app_deleted()), Some(APP_DELETED));
        assert_eq!(revocation_reason(&image_deleted()), Some(IMAGE_DELETED));
        assert_eq!(app_deleted().steps.len(), 1);
        assert_eq!(image_deleted().steps.len(), 1);
    }
}
