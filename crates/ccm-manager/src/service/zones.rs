//! Zones: the account's zone and its join tokens; the zone certificate authorities (which CA
//! issues a certificate) and the zone CRLs.
//!
//! # Join tokens
//!
//! A join token admits nodes to a zone: a MANAGER creates one (the token string, carrying a
//! 32-byte secret and the manager's certificate fingerprint, exists only in the answer; the
//! store keeps the secret's SHA-256), lists them and revokes them ([`create_join_token`],
//! [`join_tokens`], [`revoke_join_token`]). The reference's `GET /v1/zones/{zone_id}/token`
//! gets a fresh token with ccm's safer defaults ([`fresh_join_token`]: single use, one hour)
//! instead of a long-lived zone secret.
//!
//! # Node settings
//!
//! A zone tells its node agents how often to check in (`node_refresh_interval`) and when to
//! renew their node certificate (`node_renewal_threshold`, percent of the validity left), and
//! what an enrolling node must satisfy (`node_enrollment`, the node policy). Zones that never
//! set the first two follow the manager's configuration ([`update`] sets them).
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

use ccm_api::accounts::AccessRole;
use ccm_api::zones::{
    JoinToken, JoinTokenInfo, JoinTokenRequest, Zone, ZoneJoinToken, ZoneUpdateRequest,
};
use ccm_pki::ZoneCa;
use ccm_store::{NewJoinToken, ZoneEdit};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{ServiceError, ServiceResult, blocking};
use crate::AppState;
use crate::service::caller::Acct;
use crate::service::validate::Checker;

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

/// The zone's CA for certificates resting on a hardware (`simulated == false`) or simulated
/// platform, with the chain to send after the certificate.
pub async fn issuing_ca(
    s: &AppState,
    acct_id: Uuid,
    zone_id: Uuid,
    simulated: bool,
) -> ServiceResult<IssuingCa> {
    let zone = crate::service::attest::zone_ca(s, acct_id, zone_id)
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
        ZoneCaKind::Zone => crate::service::attest::zone_ca(s, acct_id, zone_id)
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

/// Default lifetime of a join token.
pub const JOIN_TOKEN_DEFAULT_SECS: i64 = 86_400;
/// Shortest and longest lifetime of a join token.
pub const JOIN_TOKEN_LIFETIME: (i64, i64) = (60, 30 * 86_400);

/// Hex SHA-256 of a join token's 32-byte secret, as stored.
pub fn join_secret_hash(secret: &[u8; 32]) -> String {
    hex::encode(Sha256::digest(secret))
}

/// The account's zones (one per account).
pub async fn list(s: &AppState, acct: &Acct) -> ServiceResult<Vec<Zone>> {
    Ok(s.store
        .list_zones(acct.acct_id)
        .await?
        .into_iter()
        .map(|z| z.zone)
        .collect())
}

/// A zone of the account, with its CA certificate.
pub async fn get(s: &AppState, acct: &Acct, zone_id: Uuid) -> ServiceResult<Zone> {
    Ok(s.store
        .get_zone(acct.acct_id, zone_id)
        .await?
        .ok_or(ServiceError::NotFound("zone"))?
        .zone)
}

/// Step of [`create_join_token`]: the lifetime (default [`JOIN_TOKEN_DEFAULT_SECS`]) is within
/// [`JOIN_TOKEN_LIFETIME`] and a description, when given, is 1 to 256 characters on one line.
pub fn check_join_token(req: &JoinTokenRequest) -> ServiceResult<i64> {
    let mut c = Checker::new();
    let expires_in = req.expires_in.unwrap_or(JOIN_TOKEN_DEFAULT_SECS);
    let (min, max) = JOIN_TOKEN_LIFETIME;
    c.range("expires_in", expires_in, min, max);
    if let Some(d) = &req.description {
        c.text("description", d, 1, 256, false);
    }
    c.finish()?;
    Ok(expires_in)
}

/// Validates and creates a join token for a zone of the account (MANAGER); the token string
/// exists only in the result.
pub async fn create_join_token(
    s: &AppState,
    acct: &Acct,
    zone_id: Uuid,
    req: JoinTokenRequest,
) -> ServiceResult<ZoneJoinToken> {
    acct.require(AccessRole::Manager)?;
    let expires_in = check_join_token(&req)?;
    get(s, acct, zone_id).await?;
    let mut secret = [0u8; 32];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| ServiceError::internal("no randomness"))?;
    let token = JoinToken {
        token_id: Uuid::new_v4(),
        secret,
        manager_fingerprint: s.tls_fingerprint,
    };
    let now = s.clock.now();
    let info = JoinTokenInfo {
        token_id: token.token_id,
        zone_id,
        created_at: now,
        expires_at: now.saturating_add(expires_in),
        single_use: req.single_use,
        use_count: 0,
        last_used_at: None,
        revoked_at: None,
        created_by: Some(acct.caller.user_id),
        description: req.description,
    };
    let stored = NewJoinToken {
        info: info.clone(),
        secret_hash: join_secret_hash(&secret),
    };
    s.store
        .create_join_token(acct.acct_id, &stored, &acct.actor(), now)
        .await?;
    Ok(ZoneJoinToken {
        token: token.encode(),
        info,
    })
}

/// Lifetime of a join token made by [`fresh_join_token`].
pub const FRESH_JOIN_TOKEN_SECS: i64 = 3600;

/// A fresh join token for a zone of the account (MANAGER), as the reference's
/// `GET /v1/zones/{zone_id}/token` gives one: single use and valid for
/// [`FRESH_JOIN_TOKEN_SECS`], so a token that leaks from a script or a log admits at most one
/// node within the hour. Made and audited like any join token.
pub async fn fresh_join_token(
    s: &AppState,
    acct: &Acct,
    zone_id: Uuid,
) -> ServiceResult<ZoneJoinToken> {
    let req = JoinTokenRequest {
        expires_in: Some(FRESH_JOIN_TOKEN_SECS),
        single_use: true,
        description: Some("GET /v1/zones/{zone_id}/token".into()),
    };
    create_join_token(s, acct, zone_id, req).await
}

/// Step of [`update`]: the description is up to 1024 characters on one line (empty clears it),
/// the refresh interval between 1 s and half the manager's `node_stale_after_secs` (at most an
/// hour), the renewal threshold within [`crate::config::NODE_RENEWAL_THRESHOLD`], and the node
/// policy accepts some TCB status.
pub fn check_update(req: &ZoneUpdateRequest, stale_after_secs: i64) -> ServiceResult<ZoneEdit> {
    let mut c = Checker::new();
    if let Some(d) = req.description.as_deref().filter(|d| !d.is_empty()) {
        c.text("description", d, 1, 1024, false);
    }
    if let Some(v) = req.node_refresh_interval {
        let max = (stale_after_secs / 2).clamp(1, 3600);
        if !(1..=max).contains(&v) {
            c.err(
                "node_refresh_interval",
                format!(
                    "must be between 1 and {max} seconds (half the manager's \
                     node_stale_after_secs, so a node checking in on time is never stale)"
                ),
            );
        }
    }
    if let Some(v) = req.node_renewal_threshold {
        let r = crate::config::NODE_RENEWAL_THRESHOLD;
        c.range("node_renewal_threshold", v, *r.start(), *r.end());
    }
    if let Some(p) = &req.node_enrollment
        && p.accepted_tcb_statuses.is_empty()
    {
        c.err(
            "node_enrollment.accepted_tcb_statuses",
            "must name at least one status",
        );
    }
    c.finish()?;
    Ok(ZoneEdit {
        description: req
            .description
            .clone()
            .map(|d| Some(d).filter(|d| !d.is_empty())),
        node_refresh_interval: req.node_refresh_interval,
        node_renewal_threshold: req.node_renewal_threshold,
        node_enrollment: req.node_enrollment.clone(),
    })
}

/// Changes a zone's description and node settings (MANAGER); audited (`zone.update`). Node
/// agents take a new refresh interval and renewal threshold with their next heartbeat.
pub async fn update(
    s: &AppState,
    acct: &Acct,
    zone_id: Uuid,
    req: ZoneUpdateRequest,
) -> ServiceResult<Zone> {
    acct.require(AccessRole::Manager)?;
    let edit = check_update(&req, s.config.node_stale_after_secs)?;
    Ok(s.store
        .update_zone(acct.acct_id, zone_id, &edit, &acct.actor(), s.clock.now())
        .await?
        .zone)
}

/// A zone's join tokens (without secrets), newest first.
pub async fn join_tokens(
    s: &AppState,
    acct: &Acct,
    zone_id: Uuid,
) -> ServiceResult<Vec<JoinTokenInfo>> {
    get(s, acct, zone_id).await?;
    Ok(s.store.list_join_tokens(acct.acct_id, zone_id).await?)
}

/// Revokes a join token of a zone of the account at once (MANAGER).
pub async fn revoke_join_token(
    s: &AppState,
    acct: &Acct,
    zone_id: Uuid,
    token_id: Uuid,
) -> ServiceResult<JoinTokenInfo> {
    acct.require(AccessRole::Manager)?;
    Ok(s.store
        .revoke_join_token(
            acct.acct_id,
            zone_id,
            token_id,
            &acct.actor(),
            s.clock.now(),
        )
        .await?)
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

    #[test]
    fn a_join_token_lifetime_and_description_are_checked() {
        let req = |expires_in, description: Option<&str>| JoinTokenRequest {
            expires_in,
            single_use: false,
            description: description.map(String::from),
        };
        assert_eq!(check_join_token(&req(None, None)).unwrap(), 86_400);
        assert_eq!(
            check_join_token(&req(Some(60), Some("rack 4"))).unwrap(),
            60
        );
        for bad in [59, 30 * 86_400 + 1, -1] {
            assert!(matches!(
                check_join_token(&req(Some(bad), None)),
                Err(ServiceError::Invalid(f)) if f[0].field == "expires_in"
            ));
        }
        assert!(matches!(
            check_join_token(&req(None, Some(""))),
            Err(ServiceError::Invalid(f)) if f[0].field == "description"
        ));
    }

    #[test]
    fn zone_updates_are_checked_field_by_field() {
        use ccm_api::zones::NodePolicy;
        let ok = ZoneUpdateRequest {
            description: Some(String::new()),
            node_refresh_interval: Some(30),
            node_renewal_threshold: Some(20),
            node_enrollment: Some(NodePolicy::default()),
        };
        let edit = check_update(&ok, 60).unwrap();
        assert_eq!(
            edit.description,
            Some(None),
            "an empty description clears it"
        );
        assert_eq!(edit.node_refresh_interval, Some(30));
        let field = |req: ZoneUpdateRequest| match check_update(&req, 60) {
            Err(ServiceError::Invalid(f)) => f[0].field.clone(),
            other => panic!("{other:?}"),
        };
        for bad in [0, 31] {
            let req = ZoneUpdateRequest {
                node_refresh_interval: Some(bad),
                ..Default::default()
            };
            assert_eq!(field(req), "node_refresh_interval");
        }
        for bad in [4, 91] {
            let req = ZoneUpdateRequest {
                node_renewal_threshold: Some(bad),
                ..Default::default()
            };
            assert_eq!(field(req), "node_renewal_threshold");
        }
        let req = ZoneUpdateRequest {
            node_enrollment: Some(NodePolicy {
                require_approval: true,
                accepted_tcb_statuses: Vec::new(),
            }),
            ..Default::default()
        };
        assert_eq!(field(req), "node_enrollment.accepted_tcb_statuses");
        let req = ZoneUpdateRequest {
            description: Some(" padded".into()),
            ..Default::default()
        };
        assert_eq!(field(req), "description");
        assert_eq!(
            check_update(&Default::default(), 60).unwrap(),
            ZoneEdit::default()
        );
    }

    #[test]
    fn a_join_secret_is_stored_as_its_sha256() {
        let h = join_secret_hash(&[0u8; 32]);
        assert_eq!(
            h,
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
    }

    use crate::service::testing::Fixture;
    use ccm_api::accounts::ApprovalPolicy;

    #[tokio::test]
    async fn join_tokens_are_made_listed_and_revoked_by_managers_of_the_zone() {
        let f = Fixture::new().await;
        let alice = f.user("alice@example.com").await;
        let mgr = f.account(&alice, "acme", ApprovalPolicy::Manual).await;
        let writer = f.member(&mgr, "w@example.com", AccessRole::Writer).await;
        let bob = f.user("bob@example.com").await;
        let other = f.account(&bob, "other", ApprovalPolicy::Manual).await;
        let zone = list(&f.s, &mgr).await.unwrap()[0].zone_id;
        let req = || JoinTokenRequest {
            expires_in: Some(600),
            single_use: true,
            description: Some("rack 4".into()),
        };
        assert!(matches!(
            create_join_token(&f.s, &writer, zone, req()).await,
            Err(ServiceError::Forbidden(_))
        ));
        assert!(matches!(
            create_join_token(&f.s, &other, zone, req()).await,
            Err(ServiceError::NotFound("zone"))
        ));
        let bad = JoinTokenRequest {
            expires_in: Some(1),
            ..req()
        };
        assert!(matches!(
            create_join_token(&f.s, &mgr, zone, bad).await,
            Err(ServiceError::Invalid(_))
        ));
        assert!(join_tokens(&f.s, &mgr, zone).await.unwrap().is_empty());
        let made = create_join_token(&f.s, &mgr, zone, req()).await.unwrap();
        assert_eq!(made.info.expires_at, super::super::testing::NOW + 600);
        let listed = join_tokens(&f.s, &writer, zone).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].token_id, made.info.token_id);
        assert!(matches!(
            join_tokens(&f.s, &other, zone).await,
            Err(ServiceError::NotFound("zone"))
        ));
        let tid = made.info.token_id;
        assert!(matches!(
            revoke_join_token(&f.s, &writer, zone, tid).await,
            Err(ServiceError::Forbidden(_))
        ));
        let revoked = revoke_join_token(&f.s, &mgr, zone, tid).await.unwrap();
        assert!(revoked.revoked_at.is_some());
        // A revoked token admits nobody.
        let bearer = Some(made.token.as_str());
        assert!(
            crate::service::nodes::enrollment_nonce(&f.s, bearer)
                .await
                .is_err()
        );
    }
}
