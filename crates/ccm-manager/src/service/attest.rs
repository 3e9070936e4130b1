//! Attestation services of the manager: the DCAP verifier with its trust roots, platform
//! collateral and the zone CAs in memory. The issuance decision that uses them is
//! [`crate::service::issuance`].
//!
//! Collateral (where it comes from, which set is current) is [`crate::service::collateral`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ccm_api::apps::TcbStatus as ApiTcbStatus;
use ccm_api::collateral::{CollateralSource, TcbUpdate};
use ccm_attest::{
    Collateral, Policy, RootKind, Tee, TrustRoot, TrustRoots, VerifiedQuote, Verifier, VerifyError,
};
use ccm_pki::ZoneCa;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::secrets::zone_key_context;
use crate::service::collateral::{self, CollateralError, CollateralServices, Platform};
use crate::service::{ServiceError, ServiceResult};
use crate::{AppState, Config, Error};

/// Attestation services shared by the handlers.
pub struct AttestServices {
    verifier: Verifier,
    /// Platform collateral.
    pub collateral: CollateralServices,
    cas: RwLock<HashMap<Uuid, Arc<ZoneCa>>>,
}

impl std::fmt::Debug for AttestServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestServices")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

/// SHA-256 hex of a PPID, as kept in node records.
pub fn ppid_hash(ppid: &[u8; 16]) -> String {
    hex::encode(Sha256::digest(ppid))
}

/// The API spelling of a verifier TCB status.
pub fn api_tcb_status(s: ccm_attest::TcbStatus) -> ApiTcbStatus {
    use ccm_attest::TcbStatus as T;
    match s {
        T::UpToDate => ApiTcbStatus::UpToDate,
        T::SWHardeningNeeded => ApiTcbStatus::SWHardeningNeeded,
        T::ConfigurationNeeded => ApiTcbStatus::ConfigurationNeeded,
        T::ConfigurationAndSWHardeningNeeded => ApiTcbStatus::ConfigurationAndSWHardeningNeeded,
        T::OutOfDate => ApiTcbStatus::OutOfDate,
        T::OutOfDateConfigurationNeeded => ApiTcbStatus::OutOfDateConfigurationNeeded,
        T::Revoked => ApiTcbStatus::Revoked,
    }
}

/// The verifier spelling of an API TCB status.
pub fn attest_tcb_status(s: ApiTcbStatus) -> ccm_attest::TcbStatus {
    use ccm_attest::TcbStatus as T;
    match s {
        ApiTcbStatus::UpToDate => T::UpToDate,
        ApiTcbStatus::SWHardeningNeeded => T::SWHardeningNeeded,
        ApiTcbStatus::ConfigurationNeeded => T::ConfigurationNeeded,
        ApiTcbStatus::ConfigurationAndSWHardeningNeeded => T::ConfigurationAndSWHardeningNeeded,
        ApiTcbStatus::OutOfDate => T::OutOfDate,
        ApiTcbStatus::OutOfDateConfigurationNeeded => T::OutOfDateConfigurationNeeded,
        ApiTcbStatus::Revoked => T::Revoked,
    }
}

impl AttestServices {
    /// Builds the services: Intel's root plus the simulated roots the configuration trusts.
    pub fn new(config: &Config) -> Result<Self, Error> {
        if !cfg!(feature = "sim") && !config.trusted_simulated_roots.is_empty() {
            return Err(Error::Config {
                field: "trusted_simulated_roots".into(),
                message: "this manager was built without the simulated platform (cargo feature \
                          `sim`) and cannot trust a simulated root (--trust-simulated-root); \
                          build it with `--features sim` for development and tests"
                    .into(),
            });
        }
        let mut roots = TrustRoots::intel();
        for path in &config.trusted_simulated_roots {
            let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
                path: path.clone(),
                source: e,
            })?;
            let root =
                TrustRoot::from_pem(&text, RootKind::Simulated).map_err(|e| Error::Config {
                    field: "trusted_simulated_roots".into(),
                    message: format!("{}: {e}", path.display()),
                })?;
            roots.add(root);
        }
        Ok(Self {
            verifier: Verifier::new(roots),
            collateral: CollateralServices::new(config)?,
            cas: RwLock::new(HashMap::new()),
        })
    }

    /// The verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }
}

/// Why [`verify_quote`] did not verify a quote.
#[derive(Debug, thiserror::Error)]
pub enum QuoteError {
    /// The quote does not parse, or carries no PCK certificate with an SGX extension and a
    /// Processor or Platform CA issuer.
    #[error("the quote does not parse or carries no PCK certificate with an SGX extension")]
    Malformed,
    /// No collateral is known for the quote's platform, and none could be fetched.
    #[error("no collateral for platform FMSPC {fmspc} (PCK {ca} CA): {reason}")]
    NoCollateral {
        /// The FMSPC (hex).
        fmspc: String,
        /// The PCK CA type.
        ca: &'static str,
        /// Why none could be had.
        reason: String,
    },
    /// The quote does not verify with the current collateral (the last verifier error).
    #[error("the quote does not verify: {0}")]
    Invalid(VerifyError),
    /// Reading stored collateral failed: an internal failure, not a verdict on the quote.
    #[error("the manager could not read platform collateral")]
    Store(#[source] ccm_store::Error),
}

/// Verifies a quote with the current collateral of its platform (fetched on demand when there
/// is none). `hint` is collateral that came with the request: it is offered like any upload
/// (current only if newer) and never used unless it became current.
pub async fn verify_quote(
    s: &AppState,
    quote: &[u8],
    hint: Option<Collateral>,
) -> Result<VerifiedQuote, QuoteError> {
    let (fmspc, ca) = s
        .attest
        .verifier
        .quote_collateral_key(quote)
        .ok_or(QuoteError::Malformed)?;
    if let Some(c) = hint {
        offer_hint(s, c).await?;
    }
    let platform = Platform {
        fmspc,
        ca,
        tee: Tee::Sgx,
    };
    let no_collateral = |reason: String| QuoteError::NoCollateral {
        fmspc: hex::encode(fmspc),
        ca: ca.as_str(),
        reason,
    };
    let sets = match collateral::current_sets(s, platform, quote).await {
        Ok(sets) => sets,
        Err(CollateralError::Store(e)) => return Err(QuoteError::Store(e)),
        Err(CollateralError::PckChain(e)) => return Err(QuoteError::Invalid(e)),
        Err(e) => return Err(no_collateral(e.to_string())),
    };
    let now = u64::try_from(s.clock.now()).unwrap_or(0);
    let mut last = None;
    for set in sets {
        match s.attest.verifier.verify(quote, &set.collateral, now) {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => QuoteError::Invalid(e),
        None => no_collateral(match s.attest.collateral.pccs_url() {
            Some(_) => "the PCS or PCCS has none for it".into(),
            None => "none was uploaded or imported, and no PCS or PCCS is configured \
                     (pccs_url)"
                .into(),
        }),
    })
}

/// Offers collateral a node brought: a hint, current only if newer. One that does not verify
/// is ignored (the quote is judged with the current set whatever the hint says).
async fn offer_hint(s: &AppState, c: Collateral) -> Result<(), QuoteError> {
    let node = ccm_store::Actor {
        user_id: None,
        name: "node-agent".into(),
    };
    match collateral::offer(s, c, CollateralSource::Upload, TcbUpdate::Standard, &node).await {
        Ok(_) => Ok(()),
        Err(CollateralError::Store(e)) => Err(QuoteError::Store(e)),
        Err(e) => {
            tracing::info!(reason = %e, "uploaded collateral not used");
            Ok(())
        }
    }
}

/// The loaded CA of a zone (cached).
pub async fn zone_ca(s: &AppState, acct_id: Uuid, zone_id: Uuid) -> ServiceResult<Arc<ZoneCa>> {
    if let Some(ca) = s
        .attest
        .cas
        .read()
        .ok()
        .and_then(|m| m.get(&zone_id).cloned())
    {
        return Ok(ca);
    }
    let rec = s
        .store
        .get_zone(acct_id, zone_id)
        .await?
        .ok_or(ServiceError::NotFound("zone"))?;
    let key = s
        .master_key
        .open(&zone_key_context(zone_id), &rec.ca_key_sealed)
        .map_err(ServiceError::internal)?;
    let pem = rec.zone.certificate.clone();
    let ca = tokio::task::spawn_blocking(move || ZoneCa::from_parts(&pem, &key))
        .await
        .map_err(ServiceError::internal)?
        .map_err(ServiceError::internal)?
        .with_crl_url(crate::service::zones::crl_url(
            &s.config.public_base_url(),
            zone_id,
            crate::service::zones::ZoneCaKind::Zone,
        ));
    let ca = Arc::new(ca);
    if let Ok(mut m) = s.attest.cas.write() {
        m.insert(zone_id, ca.clone());
    }
    Ok(ca)
}

pub use ccm_api::zones::NodePolicy;

/// The zone's node policy (the default when none was set).
pub async fn node_policy(s: &AppState, zone_id: Uuid) -> ServiceResult<NodePolicy> {
    match s.store.zone_node_policy(zone_id).await? {
        Some(text) => serde_json::from_str(&text).map_err(ServiceError::internal),
        None => Ok(NodePolicy::default()),
    }
}

/// The verifier policy of a node policy (platform checks only). Simulated platforms are accepted
/// only when the zone's account trusts them.
pub fn node_attest_policy(p: &NodePolicy, account_allows_simulated: bool) -> Policy {
    Policy::default()
        .accept_statuses(
            p.accepted_tcb_statuses
                .iter()
                .copied()
                .map(attest_tcb_status),
        )
        .allow_debug(true)
        .dangerous_allow_simulated(account_allows_simulated)
}

/// Decodes base64 (standard alphabet, padding optional, whitespace ignored).
pub fn decode_b64(text: &str) -> Option<Vec<u8>> {
    // The usual case, padded base64 without whitespace, without copying the text first.
    if let Ok(bytes) = STANDARD.decode(text) {
        return Some(bytes);
    }
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(&clean).ok().or_else(|| {
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(&clean)
            .ok()
    })
}
