//! The manager itself: readiness, version, secrets shared by replicas.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ccm_api::sys::VersionResponse;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use super::{ServiceError, ServiceResult};
use crate::AppState;

/// Readiness: the database answers. Unreachable: [`ServiceError::Unavailable`] (the cause is
/// logged, not returned).
pub async fn ready(s: &AppState) -> ServiceResult<()> {
    s.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        ServiceError::Unavailable("the database is not reachable".into())
    })
}

/// The manager's version and the database it runs on.
pub fn version(s: &AppState) -> VersionResponse {
    VersionResponse {
        version: env!("CARGO_PKG_VERSION").into(),
        database: s.store.backend().as_str().into(),
    }
}

/// A 32-byte secret every replica shares, named `name` in the database's meta table: made and
/// stored sealed under the master key (with `context` as associated data) by the first replica
/// that needs it, read back by all others.
pub async fn shared_secret(
    s: &AppState,
    name: &str,
    context: &str,
) -> ServiceResult<Zeroizing<Vec<u8>>> {
    let mut fresh = Zeroizing::new([0u8; 32]);
    SystemRandom::new()
        .fill(fresh.as_mut_slice())
        .map_err(|_| ServiceError::internal("no randomness"))?;
    let sealed = s.master_key.seal(context, fresh.as_slice())?;
    let stored = s
        .store
        .set_meta_if_absent(name, &STANDARD.encode(sealed))
        .await?;
    let sealed = STANDARD
        .decode(stored)
        .map_err(|_| ServiceError::internal(format!("meta value {name} is not base64")))?;
    Ok(s.master_key.open(context, &sealed)?)
}
