//! Zone certificate authorities: which CA issues a certificate, and the zone CRLs.
//!
//! # The simulated intermediate
//!
//! Certificates resting on a simulated platform (node certificates of simulated nodes, app
//! certificates on simulated quotes) are issued by the zone's simulated intermediate CA
//! (`OU=SIMULATED`, certified by the zone CA, `pathlen:0`), never by the zone CA itself: a
//! relying party that must refuse simulation does so by chain. The intermediate is made the
//! first time it is needed, its key sealed with the master key like the zone CA's (context
//! `zone-sim-ca-key:<zone>`), and its certificate is published with the zone
//! (`simulated_certificate`). A zone whose CA has `pathlen:0` (made before intermediates existed)
//! cannot certify one: simulated certificates there are refused (`Internal`, logged), fail
//! closed.
//!
//! # CRLs
//!
//! Each CA has a CRL at `<public_url>/v1/zones/<zone>/crl` (the zone CA) and
//! `.../crl?ca=simulated` (the intermediate); issued certificates name it as their CRL
//! distribution point. A signed CRL is cached per zone and CA and re-signed only when the revoked
//! set changes or half its validity has passed ([`crl`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ccm_pki::ZoneCa;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{ServiceError, ServiceResult};
use crate::AppState;

/// How long a signed CRL is valid (its nextUpdate is this long after thisUpdate).
pub const CRL_VALIDITY_SECS: i64 = 86_400;

/// Which of a zone's CAs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ZoneCaKind {
    /// The zone CA: hardware platforms.
    Zone,
    /// The simulated intermediate: simulated platforms.
    Simulated,
}

impl ZoneCaKind {
    /// The kind for a platform.
    pub fn for_platform(simulated: bool) -> Self {
        if simulated {
            Self::Simulated
        } else {
            Self::Zone
        }
    }
}

/// The sealing context of a zone's simulated intermediate key.
pub fn sim_key_context(zone_id: Uuid) -> String {
    format!("zone-sim-ca-key:{zone_id}")
}

/// The CRL URL of a zone's CA (the CRL distribution point of what it issues).
pub fn crl_url(base: &str, zone_id: Uuid, kind: ZoneCaKind) -> String {
    match kind {
        ZoneCaKind::Zone => format!("{base}/v1/zones/{zone_id}/crl"),
        ZoneCaKind::Simulated => format!("{base}/v1/zones/{zone_id}/crl?ca=simulated"),
    }
}

/// A CA that issues a certificate, with the chain (PEM) that follows the issued certificate.
#[derive(Debug, Clone)]
pub struct IssuingCa {
    /// The CA that signs.
    pub ca: Arc<ZoneCa>,
    /// Its certificate and those above it, up to and including the zone CA (PEM).
    pub chain_pem: String,
}

#[derive(Debug)]
struct CachedCrl {
    der: Vec<u8>,
    entries_digest: [u8; 32],
    signed_at: i64,
}

/// The simulated intermediates and signed CRLs this replica keeps.
#[derive(Debug, Default)]
pub struct ZoneCaches {
    sim: RwLock<HashMap<Uuid, Arc<ZoneCa>>>,
    crls: RwLock<HashMap<(Uuid, ZoneCaKind), Arc<CachedCrl>>>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> ServiceResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ServiceError::internal)
}

/// The zone's CA for certificates resting on a hardware (`simulated == false`) or simulated
/// platform, with the chain to send after the certificate.
pub async fn issuing_ca(
    s: &AppState,
    acct_id: Uuid,
    zone_id: Uuid,
    simulated: bool,
) -> ServiceResult<IssuingCa> {
    let zone = crate::attested::zone_ca(s, acct_id, zone_id)
        .await
        .map_err(|e| ServiceError::internal(format!("loading the zone CA: {e:?}")))?;
    if !simulated {
        return Ok(IssuingCa {
            chain_pem: zone.certificate_pem().to_string(),
            ca: zone,
        });
    }
    let sim = simulated_ca(s, acct_id, zone_id, &zone).await?;
    Ok(IssuingCa {
        chain_pem: format!("{}{}", sim.certificate_pem(), zone.certificate_pem()),
        ca: sim,
    })
}

/// The zone's simulated intermediate: cached, else loaded, else made and stored.
async fn simulated_ca(
    s: &AppState,
    acct_id: Uuid,
    zone_id: Uuid,
    zone: &Arc<ZoneCa>,
) -> ServiceResult<Arc<ZoneCa>> {
    if let Some(ca) = s
        .zone_cas
        .sim
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
    let (cert_pem, sealed) = match (rec.zone.simulated_certificate, rec.sim_ca_key_sealed) {
        (Some(cert), Some(key)) => (cert, key),
        _ => {
            if !zone.may_certify_intermediates() {
                return Err(ServiceError::internal(format!(
                    "zone {zone_id}: its CA (pathlen:0) cannot certify a simulated intermediate; \
                     simulated certificates are refused in this zone"
                )));
            }
            let zone2 = zone.clone();
            let cn = format!(
                "ccm simulated CA {}",
                rec.zone.name.chars().take(40).collect::<String>()
            );
            let now = s.clock.now();
            let validity = s.config.zone_ca_validity_days;
            let made = blocking(move || zone2.issue_simulated_intermediate(&cn, now, validity))
                .await?
                .map_err(ServiceError::internal)?;
            let sealed = s
                .master_key
                .seal(&sim_key_context(zone_id), &made.key_pkcs8_der())
                .map_err(ServiceError::internal)?;
            s.store
                .set_zone_sim_ca(acct_id, zone_id, made.certificate_pem(), &sealed, now)
                .await?
        }
    };
    let key = s
        .master_key
        .open(&sim_key_context(zone_id), &sealed)
        .map_err(ServiceError::internal)?;
    let url = crl_url(&s.config.public_base_url(), zone_id, ZoneCaKind::Simulated);
    let ca = blocking(move || ZoneCa::from_parts(&cert_pem, &key))
        .await?
        .map_err(ServiceError::internal)?
        .with_crl_url(url);
    let ca = Arc::new(ca);
    if let Ok(mut m) = s.zone_cas.sim.write() {
        m.insert(zone_id, ca.clone());
    }
    Ok(ca)
}

/// Whether a cached CRL can be served at `now` for the revoked set with `digest`: same set, and
/// signed less than half its validity ago (so a relying party never holds one past nextUpdate
/// while a fresher one exists).
pub fn crl_is_fresh(cached_digest: &[u8; 32], signed_at: i64, digest: &[u8; 32], now: i64) -> bool {
    cached_digest == digest
        && now >= signed_at
        && now.saturating_sub(signed_at) < CRL_VALIDITY_SECS / 2
}

fn entries_digest(entries: &[(String, i64)]) -> [u8; 32] {
    let mut h = Sha256::new();
    for (serial, at) in entries {
        h.update(serial.as_bytes());
        h.update(at.to_le_bytes());
    }
    h.finalize().into()
}

/// The zone CRL (DER) of one of its CAs: the cached one while the revoked set is unchanged and it
/// is fresh ([`crl_is_fresh`]), otherwise newly signed and cached. The simulated intermediate's
/// CRL exists once the zone has one.
pub async fn crl(s: &AppState, zone_id: Uuid, kind: ZoneCaKind) -> ServiceResult<Vec<u8>> {
    let acct_id = s
        .store
        .zone_account(zone_id)
        .await?
        .ok_or(ServiceError::NotFound("zone"))?;
    let now = s.clock.now();
    let entries = s.store.crl_entries(zone_id, now, 0).await?;
    let digest = entries_digest(&entries);
    if let Some(c) = s
        .zone_cas
        .crls
        .read()
        .ok()
        .and_then(|m| m.get(&(zone_id, kind)).cloned())
        && crl_is_fresh(&c.entries_digest, c.signed_at, &digest, now)
    {
        return Ok(c.der.clone());
    }
    let ca = match kind {
        ZoneCaKind::Zone => crate::attested::zone_ca(s, acct_id, zone_id)
            .await
            .map_err(|e| ServiceError::internal(format!("loading the zone CA: {e:?}")))?,
        ZoneCaKind::Simulated => {
            let has = s
                .store
                .get_zone(acct_id, zone_id)
                .await?
                .is_some_and(|z| z.zone.simulated_certificate.is_some());
            if !has {
                return Err(ServiceError::NotFound("simulated CA"));
            }
            issuing_ca(s, acct_id, zone_id, true).await?.ca
        }
    };
    let revoked: Vec<(Vec<u8>, i64)> = entries
        .iter()
        .filter_map(|(serial, at)| hex::decode(serial).ok().map(|b| (b, *at)))
        .collect();
    let crl_number = u64::try_from(now).unwrap_or(0);
    let der = ca
        .crl(&revoked, crl_number, now, CRL_VALIDITY_SECS)
        .map_err(ServiceError::internal)?;
    if let Ok(mut m) = s.zone_cas.crls.write() {
        m.insert(
            (zone_id, kind),
            Arc::new(CachedCrl {
                der: der.clone(),
                entries_digest: digest,
                signed_at: now,
            }),
        );
    }
    Ok(der)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_crl_is_served_until_the_set_changes_or_it_ages() {
        let a = entries_digest(&[("01".into(), 5)]);
        let b = entries_digest(&[("01".into(), 5), ("02".into(), 6)]);
        assert!(crl_is_fresh(&a, 1000, &a, 1000));
        assert!(crl_is_fresh(&a, 1000, &a, 1000 + CRL_VALIDITY_SECS / 2 - 1));
        assert!(!crl_is_fresh(&a, 1000, &a, 1000 + CRL_VALIDITY_SECS / 2));
        assert!(!crl_is_fresh(&a, 1000, &b, 1001));
        // A clock that went back re-signs.
        assert!(!crl_is_fresh(&a, 1000, &a, 999));
    }

    #[test]
    fn crl_urls_name_the_zone_and_the_ca() {
        let z = Uuid::nil();
        assert_eq!(
            crl_url("https://m:8443", z, ZoneCaKind::Zone),
            format!("https://m:8443/v1/zones/{z}/crl")
        );
        assert_eq!(
            crl_url("https://m:8443", z, ZoneCaKind::Simulated),
            format!("https://m:8443/v1/zones/{z}/crl?ca=simulated")
        );
        assert_eq!(ZoneCaKind::for_platform(true), ZoneCaKind::Simulated);
    }
}
