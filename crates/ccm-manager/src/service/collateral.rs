//! Platform collateral (DESIGN.md section 14): one current set per platform (FMSPC, PCK CA type,
//! TEE) and trusted root, kept in the database and in memory, never replaced by an older one.
//!
//! Collateral arrives three ways, and each is only an *offer* ([`offer`]): fetched from the
//! configured PCS or PCCS (`pccs_url`), uploaded by a node agent at enrollment, or imported by
//! an operator. An offer is verified under the trusted roots, then compared part by part with
//! the current set: a set newer in every part replaces it, a set newer in some parts lends
//! those parts (each is signed on its own), and a set that is nowhere newer changes nothing. So
//! a tenant who uploads older, still valid collateral (from before a TCB recovery or a
//! revocation) cannot make anyone's quotes be judged against it.
//!
//! Quotes are verified with the current set ([`current_sets`]); when there is none, or it has
//! expired, the set is fetched on demand (one fetch per platform at a time). The refresher
//! ([`spawn_refresher`], [`refresh_due`]) fetches every set again before it expires and at
//! least every `collateral_refresh_interval_secs` (the PCK CRL is re-signed daily), with
//! backoff after failures; on PostgreSQL one replica at a time does it (a lease) and every
//! replica reloads what it wrote.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ccm_api::collateral::{CollateralSet, CollateralSource, PckCaType, TcbUpdate, TeeType};
use ccm_attest::pcs::{PcsClient, PcsOptions, Update, system_tls};
use ccm_attest::{
    CaType, Collateral, CollateralPart, CollateralSummary, Recency, Tee, VerifyError, newest_parts,
};
use ccm_store::{Actor, CollateralAges, CollateralKey, CollateralRecord, NewCollateral};

use crate::service::caller::Caller;
use crate::service::{ServiceError, ServiceResult};
use crate::{AppState, Config, Error};

/// The platform a collateral set is for (the root aside: a platform has one set per root).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Platform {
    /// FMSPC.
    pub fmspc: [u8; 6],
    /// PCK CA type.
    pub ca: CaType,
    /// TEE.
    pub tee: Tee,
}

/// A current collateral set in memory.
#[derive(Debug)]
pub struct CurrentSet {
    /// The collateral.
    pub collateral: Arc<Collateral>,
    /// What it says about itself (from the stored ages; verified when it was offered).
    pub summary: CollateralSummary,
    /// Where it came from.
    pub source: CollateralSource,
}

/// Why collateral was not accepted or could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CollateralError {
    /// It does not verify under a trusted root (signatures, chains, CRLs, validity).
    #[error("the collateral does not verify: {0}")]
    Invalid(#[source] VerifyError),
    /// Its PCK CRL issuer is neither a Processor nor a Platform CA.
    #[error("the collateral's PCK CRL issuer is neither a PCK Processor CA nor a Platform CA")]
    UnknownCaType,
    /// No PCS or PCCS is configured, so nothing can be fetched.
    #[error("no PCS or PCCS is configured (pccs_url), so the manager cannot fetch collateral")]
    Offline,
    /// The PCS or PCCS did not deliver.
    #[error("fetching collateral from {url} failed: {source}")]
    Fetch {
        /// The service's base URL.
        url: String,
        /// What went wrong.
        #[source]
        source: ccm_attest::PcsError,
    },
    /// The quote's PCK certificate chain does not verify, so nothing is fetched for it.
    #[error("{0}")]
    PckChain(#[source] VerifyError),
    /// The current set expired and no newer one could be had.
    #[error(
        "the current collateral expired at {valid_until} (Unix seconds) and no newer set could be had: {cause}"
    )]
    Stale {
        /// When the current set expired.
        valid_until: i64,
        /// Why no newer one could be had.
        cause: Box<CollateralError>,
    },
    /// The database failed.
    #[error("the manager could not read or store collateral")]
    Store(#[from] ccm_store::Error),
}

/// What became of an offered set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// It (or its newer parts, with the rest of the current set) is now current.
    Current,
    /// It is no newer than the current set in any part: nothing changed.
    Unchanged,
}

/// The manager's collateral: the in-memory sets, the PCS client and the refresher's state.
pub struct CollateralServices {
    sets: RwLock<HashMap<Platform, Vec<Arc<CurrentSet>>>>,
    client: Option<PcsClient>,
    flights: tokio::sync::Mutex<HashMap<Platform, Arc<tokio::sync::Mutex<()>>>>,
    backoff: Mutex<HashMap<Platform, Backoff>>,
    holder: String,
}

impl std::fmt::Debug for CollateralServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollateralServices")
            .field("pccs", &self.client.as_ref().map(PcsClient::base_url))
            .finish_non_exhaustive()
    }
}

/// Failed attempts for one platform: when the next may start.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    next_attempt: i64,
}

/// The longest wait between attempts after failures.
const MAX_BACKOFF_SECS: i64 = 3600;

/// The lease one replica holds while it refreshes.
const REFRESH_LEASE: &str = "collateral-refresh";

impl CollateralServices {
    /// The services of `config`: a PCS client when `pccs_url` is set.
    pub fn new(config: &Config) -> Result<Self, Error> {
        let client = match &config.pccs_url {
            Some(url) => Some(pcs_client(config, url)?),
            None => None,
        };
        Ok(Self {
            sets: RwLock::new(HashMap::new()),
            client,
            flights: tokio::sync::Mutex::new(HashMap::new()),
            backoff: Mutex::new(HashMap::new()),
            holder: uuid::Uuid::new_v4().to_string(),
        })
    }

    /// The base URL collateral is fetched from, if any.
    pub fn pccs_url(&self) -> Option<&str> {
        self.client.as_ref().map(PcsClient::base_url)
    }

    fn cached(&self, platform: &Platform) -> Vec<Arc<CurrentSet>> {
        self.sets
            .read()
            .map(|m| m.get(platform).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Puts `set` in memory in place of the set of its root, unless the one there is newer.
    fn remember(&self, platform: Platform, set: Arc<CurrentSet>) {
        let Ok(mut m) = self.sets.write() else {
            return;
        };
        let list = m.entry(platform).or_default();
        let root = set.summary.root_fingerprint;
        match list.iter_mut().find(|c| c.summary.root_fingerprint == root) {
            Some(slot) => {
                if set.summary.compare_age(&slot.summary) == Recency::Newer {
                    *slot = set;
                }
            }
            None => list.push(set),
        }
    }
}

/// A PCS client for `url`, trusting the system's CA certificates and `pccs_ca_file`.
fn pcs_client(config: &Config, url: &str) -> Result<PcsClient, Error> {
    let bad = |message: String| Error::Config {
        field: "pccs_url".into(),
        message,
    };
    let extra = match &config.pccs_ca_file {
        Some(path) => Some(std::fs::read(path).map_err(|e| Error::Io {
            path: path.clone(),
            source: e,
        })?),
        None => None,
    };
    let tls = system_tls(extra.as_deref()).map_err(|e| match &config.pccs_ca_file {
        Some(path) => bad(format!("{} (pccs_ca_file): {e}", path.display())),
        None => bad(e.to_string()),
    })?;
    let mut options = PcsOptions::new(url);
    options.timeout = Duration::from_secs(config.pccs_timeout_secs);
    if let Some(path) = &config.pccs_api_key_file {
        let key = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.clone(),
            source: e,
        })?;
        options.api_key = Some(key.trim().to_string()).filter(|k| !k.is_empty());
    }
    PcsClient::new(options, tls).map_err(|e| bad(e.to_string()))
}

/// The store key of a platform's set under a root.
fn store_key(platform: &Platform, root: &[u8; 32], update: TcbUpdate) -> CollateralKey {
    CollateralKey {
        root_fingerprint: hex::encode(root),
        fmspc: hex::encode(platform.fmspc),
        ca_type: api_ca_type(platform.ca),
        tee: api_tee(platform.tee),
        update,
    }
}

fn api_ca_type(ca: CaType) -> PckCaType {
    match ca {
        CaType::Processor => PckCaType::Processor,
        CaType::Platform => PckCaType::Platform,
    }
}

fn attest_ca_type(ca: PckCaType) -> CaType {
    match ca {
        PckCaType::Processor => CaType::Processor,
        PckCaType::Platform => CaType::Platform,
    }
}

fn api_tee(tee: Tee) -> TeeType {
    match tee {
        Tee::Sgx => TeeType::Sgx,
        Tee::Tdx => TeeType::Tdx,
    }
}

fn attest_tee(tee: TeeType) -> Tee {
    match tee {
        TeeType::Sgx => Tee::Sgx,
        TeeType::Tdx => Tee::Tdx,
    }
}

fn ages(s: &CollateralSummary) -> CollateralAges {
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    CollateralAges {
        tcb_evaluation_data_number: i64::from(s.tcb_evaluation_data_number),
        qe_evaluation_data_number: i64::from(s.qe_identity_evaluation_data_number),
        tcb_info_issued: i(s.tcb_info_issued),
        qe_identity_issued: i(s.qe_identity_issued),
        pck_crl_issued: i(s.pck_crl_issued),
        root_crl_issued: i(s.root_crl_issued),
    }
}

/// A stored set as it was when offered: its text parsed, its summary from the stored columns
/// (it was verified then; a set past its expiry still orders offers and lends parts).
fn from_record(rec: &CollateralRecord) -> Option<(Platform, CurrentSet)> {
    let parse_hex = |text: &str| hex::decode(text).ok();
    let fmspc: [u8; 6] = parse_hex(&rec.key.fmspc)?.try_into().ok()?;
    let root: [u8; 32] = parse_hex(&rec.key.root_fingerprint)?.try_into().ok()?;
    let u = |v: i64| u64::try_from(v).unwrap_or(0);
    let a = rec.ages;
    let ca = attest_ca_type(rec.key.ca_type);
    let summary = CollateralSummary {
        fmspc,
        ca_type: Some(ca),
        tcb_evaluation_data_number: u32::try_from(a.tcb_evaluation_data_number).ok()?,
        qe_identity_evaluation_data_number: u32::try_from(a.qe_evaluation_data_number).ok()?,
        tcb_info_issued: u(a.tcb_info_issued),
        qe_identity_issued: u(a.qe_identity_issued),
        pck_crl_issued: u(a.pck_crl_issued),
        root_crl_issued: u(a.root_crl_issued),
        simulated: rec.simulated,
        root_fingerprint: root,
        valid_until: u(rec.valid_until),
    };
    let collateral = match Collateral::from_json(rec.collateral.as_bytes()) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::warn!(fmspc = %rec.key.fmspc, error = %e, "stored collateral does not parse");
            return None;
        }
    };
    let platform = Platform {
        fmspc,
        ca,
        tee: attest_tee(rec.key.tee),
    };
    Some((
        platform,
        CurrentSet {
            collateral,
            summary,
            source: rec.source,
        },
    ))
}

fn now(s: &AppState) -> i64 {
    s.clock.now()
}

/// Offers a collateral set as the TCB evaluation set `update` of its platform: verified now,
/// then current if it (or some of its parts) is newer than the current set, audited as
/// `actor`'s change.
pub async fn offer(
    s: &AppState,
    collateral: Collateral,
    source: CollateralSource,
    update: TcbUpdate,
    actor: &Actor,
) -> Result<Offered, CollateralError> {
    let t = now(s);
    let summary = s
        .attest
        .verifier()
        .check_collateral(&collateral, u64::try_from(t).unwrap_or(0))
        .map_err(CollateralError::Invalid)?;
    let ca = summary.ca_type.ok_or(CollateralError::UnknownCaType)?;
    let platform = Platform {
        fmspc: summary.fmspc,
        ca,
        tee: Tee::Sgx,
    };
    let key = store_key(&platform, &summary.root_fingerprint, update);
    let current = s.store.collateral_set(&key).await?;
    let Some((collateral, summary)) = candidate(
        s,
        collateral,
        summary,
        current.as_ref().and_then(from_record),
        t,
    )?
    else {
        return Ok(Offered::Unchanged);
    };
    let text = collateral.to_json();
    let became_current = s
        .store
        .put_collateral_if_newer(&NewCollateral {
            key: &key,
            collateral: &text,
            ages: ages(&summary),
            valid_until: i64::try_from(summary.valid_until).unwrap_or(i64::MAX),
            simulated: summary.simulated,
            source,
            actor,
            now: t,
        })
        .await?;
    if !became_current {
        // Another replica stored a newer set meanwhile.
        reload_platform(s, platform).await?;
        return Ok(Offered::Unchanged);
    }
    tracing::info!(
        fmspc = %hex::encode(platform.fmspc),
        ca = ca.as_str(),
        update = update.as_str(),
        tcb_evaluation_data_number = summary.tcb_evaluation_data_number,
        source = source.as_str(),
        "collateral is current"
    );
    if update == TcbUpdate::Standard {
        s.attest.collateral.remember(
            platform,
            Arc::new(CurrentSet {
                collateral: Arc::new(collateral),
                summary,
                source,
            }),
        );
    }
    Ok(Offered::Current)
}

/// What an offer would make current: the offer itself when there is no current set or it is
/// newer in every part, the current set with the offer's newer parts when only some are newer,
/// nothing when none is.
fn candidate(
    s: &AppState,
    offered: Collateral,
    summary: CollateralSummary,
    current: Option<(Platform, CurrentSet)>,
    t: i64,
) -> Result<Option<(Collateral, CollateralSummary)>, CollateralError> {
    let Some((_, current)) = current else {
        return Ok(Some((offered, summary)));
    };
    match summary.compare_age(&current.summary) {
        Recency::Newer => Ok(Some((offered, summary))),
        Recency::Same | Recency::Older => Ok(None),
        Recency::Mixed => {
            let Some(merged) = newest_parts(
                (&current.collateral, &current.summary),
                (&offered, &summary),
            ) else {
                return Ok(None);
            };
            let merged_summary = s
                .attest
                .verifier()
                .check_collateral(&merged, u64::try_from(t).unwrap_or(0))
                .map_err(CollateralError::Invalid)?;
            Ok(Some((merged, merged_summary)))
        }
    }
}

/// Replaces the memory sets of `platform` with the stored ones.
async fn reload_platform(s: &AppState, platform: Platform) -> Result<(), CollateralError> {
    let records = s
        .store
        .collateral_sets_for(
            &hex::encode(platform.fmspc),
            api_ca_type(platform.ca),
            api_tee(platform.tee),
            TcbUpdate::Standard,
        )
        .await?;
    for rec in &records {
        if let Some((p, set)) = from_record(rec) {
            s.attest.collateral.remember(p, Arc::new(set));
        }
    }
    Ok(())
}

/// Loads every stored standard set into memory (at start, and on every refresher tick, so a
/// set another replica stored is used here too).
pub async fn reload(s: &AppState) -> Result<usize, CollateralError> {
    let records = s.store.collateral_sets().await?;
    for r in &records {
        s.metrics.collateral_set(r);
    }
    let mut n = 0;
    for rec in records
        .iter()
        .filter(|r| r.key.update == TcbUpdate::Standard)
    {
        if let Some((p, set)) = from_record(rec) {
            s.attest.collateral.remember(p, Arc::new(set));
            n += 1;
        }
    }
    Ok(n)
}

fn is_valid_at(set: &CurrentSet, t: i64) -> bool {
    i64::try_from(set.summary.valid_until).unwrap_or(i64::MAX) >= t
}

/// The current sets (one per root) for `quote`, of `platform`: from memory; from the database
/// when memory has none valid now; fetched from the PCS or PCCS when neither has (one fetch
/// per platform at a time, and only for a quote whose PCK chain verifies, so that nobody makes
/// the manager ask the PCS about made-up platforms). May return expired sets (verification
/// then says so) or none.
pub async fn current_sets(
    s: &AppState,
    platform: Platform,
    quote: &[u8],
) -> Result<Vec<Arc<CurrentSet>>, CollateralError> {
    let t = now(s);
    let cached = s.attest.collateral.cached(&platform);
    if cached.iter().any(|c| is_valid_at(c, t)) {
        return Ok(cached);
    }
    reload_platform(s, platform).await?;
    let stored = s.attest.collateral.cached(&platform);
    if stored.iter().any(|c| is_valid_at(c, t)) || s.attest.collateral.client.is_none() {
        return Ok(stored);
    }
    s.attest
        .verifier()
        .verified_collateral_key(quote, u64::try_from(t).unwrap_or(0))
        .map_err(CollateralError::PckChain)?;
    match fetch_once(s, platform).await {
        Ok(()) => Ok(s.attest.collateral.cached(&platform)),
        Err(e @ CollateralError::Store(_)) => Err(e),
        Err(cause) => match stored.iter().map(|c| c.summary.valid_until).max() {
            Some(expired) => Err(CollateralError::Stale {
                valid_until: i64::try_from(expired).unwrap_or(i64::MAX),
                cause: Box::new(cause),
            }),
            None => Err(cause),
        },
    }
}

/// Fetches `platform`'s set unless another task is fetching it or fetched it meanwhile.
async fn fetch_once(s: &AppState, platform: Platform) -> Result<(), CollateralError> {
    let flight = {
        let mut flights = s.attest.collateral.flights.lock().await;
        flights.entry(platform).or_default().clone()
    };
    let _turn = flight.lock().await;
    let t = now(s);
    if s.attest
        .collateral
        .cached(&platform)
        .iter()
        .any(|c| is_valid_at(c, t))
    {
        return Ok(());
    }
    fetch_and_offer(s, platform, TcbUpdate::Standard)
        .await
        .map(|_| ())
}

/// Fetches the `update` set of `platform` and offers it.
pub async fn fetch_and_offer(
    s: &AppState,
    platform: Platform,
    update: TcbUpdate,
) -> Result<Offered, CollateralError> {
    let client = s
        .attest
        .collateral
        .client
        .as_ref()
        .ok_or(CollateralError::Offline)?;
    let fetched = client
        .sgx_collateral(
            &platform.fmspc,
            platform.ca,
            match update {
                TcbUpdate::Standard => Update::Standard,
                TcbUpdate::Early => Update::Early,
            },
        )
        .await
        .map_err(|source| CollateralError::Fetch {
            url: client.base_url().to_string(),
            source,
        })?;
    offer(s, fetched, CollateralSource::Pccs, update, &Actor::system()).await
}

/// What one refresher run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refreshed {
    /// Sets that were due and fetched (newer or not).
    pub fetched: usize,
    /// Of those, the ones that changed the current set.
    pub changed: usize,
    /// Sets whose fetch failed (the current set stays in use until it expires).
    pub failed: usize,
    /// Whether another replica holds the refresher lease (this one did nothing).
    pub not_leader: bool,
}

/// Whether the set `rec` should be fetched again at `t`.
fn is_due(config: &Config, rec: &CollateralRecord, t: i64) -> bool {
    let last = rec
        .last_attempt_at
        .unwrap_or(rec.updated_at)
        .max(rec.updated_at);
    let expiring = t
        >= rec
            .valid_until
            .saturating_sub(config.collateral_refresh_margin_secs);
    let stale = t >= last.saturating_add(config.collateral_refresh_interval_secs);
    expiring || stale
}

/// Fetches every set that is due ([`is_due`]) and not backing off, if this replica holds the
/// refresher lease. Standard and early sets are refreshed alike.
pub async fn refresh_due(s: &AppState) -> Result<Refreshed, CollateralError> {
    let mut report = Refreshed::default();
    if s.attest.collateral.client.is_none() {
        return Ok(report);
    }
    let t = now(s);
    let ttl = i64::try_from(s.config.collateral_check_interval_secs)
        .unwrap_or(3600)
        .saturating_mul(3)
        .max(60);
    if !s
        .store
        .try_lease(REFRESH_LEASE, &s.attest.collateral.holder, t, ttl)
        .await?
    {
        report.not_leader = true;
        return Ok(report);
    }
    let records = s.store.collateral_sets().await?;
    // The sets in force first: after a failure the platform backs off, early sets included.
    let due = records.iter().filter(|r| is_due(&s.config, r, t));
    let (standard, early): (Vec<_>, Vec<_>) =
        due.partition(|r| r.key.update == TcbUpdate::Standard);
    for rec in standard.into_iter().chain(early) {
        refresh(s, &rec.key, t, &mut report).await?;
    }
    for key in missing_early_sets(&records) {
        refresh(s, &key, t, &mut report).await?;
    }
    Ok(report)
}

/// Standard sets without an early set beside them (the early set is fetched once one exists).
fn missing_early_sets(records: &[CollateralRecord]) -> Vec<CollateralKey> {
    records
        .iter()
        .filter(|r| r.key.update == TcbUpdate::Standard)
        .map(|r| CollateralKey {
            update: TcbUpdate::Early,
            ..r.key.clone()
        })
        .filter(|k| !records.iter().any(|r| &r.key == k))
        .collect()
}

fn platform_of(key: &CollateralKey) -> Option<Platform> {
    let fmspc: [u8; 6] = hex::decode(&key.fmspc).ok()?.try_into().ok()?;
    Some(Platform {
        fmspc,
        ca: attest_ca_type(key.ca_type),
        tee: attest_tee(key.tee),
    })
}

fn backing_off(s: &AppState, platform: &Platform, t: i64) -> bool {
    s.attest
        .collateral
        .backoff
        .lock()
        .ok()
        .and_then(|m| m.get(platform).copied())
        .is_some_and(|b| b.next_attempt > t)
}

fn note_outcome(s: &AppState, platform: Platform, t: i64, ok: bool) {
    let Ok(mut m) = s.attest.collateral.backoff.lock() else {
        return;
    };
    if ok {
        m.remove(&platform);
        return;
    }
    let failures = m.get(&platform).map_or(0, |b| b.failures).saturating_add(1);
    let wait = 60i64
        .saturating_mul(1 << failures.min(10))
        .min(MAX_BACKOFF_SECS);
    m.insert(
        platform,
        Backoff {
            failures,
            next_attempt: t.saturating_add(wait),
        },
    );
}

/// Fetches the set of `key` again (unless its platform is backing off) and notes the outcome.
async fn refresh(
    s: &AppState,
    key: &CollateralKey,
    t: i64,
    report: &mut Refreshed,
) -> Result<(), CollateralError> {
    let Some(platform) = platform_of(key) else {
        return Ok(());
    };
    if backing_off(s, &platform, t) {
        return Ok(());
    }
    let outcome = fetch_and_offer(s, platform, key.update).await;
    record_outcome(s, key, platform, t, outcome, report).await
}

/// Notes a fetch's outcome on the set (when it was tried, why it failed) and in the backoff.
/// Only a database failure is an error of the run; a failed fetch is logged and counted.
async fn record_outcome(
    s: &AppState,
    key: &CollateralKey,
    platform: Platform,
    t: i64,
    outcome: Result<Offered, CollateralError>,
    report: &mut Refreshed,
) -> Result<(), CollateralError> {
    match outcome {
        Ok(offered) => {
            report.fetched += 1;
            if offered == Offered::Current {
                report.changed += 1;
            }
            note_outcome(s, platform, t, true);
            s.store.note_collateral_attempt(key, t, None).await?;
        }
        Err(CollateralError::Store(e)) => return Err(CollateralError::Store(e)),
        Err(e) => {
            report.failed += 1;
            s.metrics.collateral_refresh_failed();
            note_outcome(s, platform, t, false);
            let reason = e.to_string();
            tracing::warn!(fmspc = %key.fmspc, update = key.update.as_str(), reason = %reason,
                "collateral refresh failed; the current set stays in use until it expires");
            s.store
                .note_collateral_attempt(key, t, Some(&reason))
                .await?;
        }
    }
    Ok(())
}

/// Offers what managers before schema version 15 stored, once, at start.
pub async fn adopt_legacy(s: &AppState) -> Result<(), CollateralError> {
    let texts = s.store.legacy_collateral().await?;
    if texts.is_empty() {
        return Ok(());
    }
    for text in &texts {
        let outcome = match Collateral::from_json(text.as_bytes()) {
            Ok(c) => {
                let system = Actor::system();
                offer(s, c, CollateralSource::Upload, TcbUpdate::Standard, &system).await
            }
            Err(e) => {
                tracing::warn!(error = %e, "legacy collateral does not parse; dropped");
                continue;
            }
        };
        match outcome {
            Err(CollateralError::Store(e)) => return Err(CollateralError::Store(e)),
            Err(e) => tracing::warn!(error = %e, "legacy collateral not adopted"),
            Ok(_) => {}
        }
    }
    let n = s.store.forget_legacy_collateral().await?;
    tracing::info!(sets = n, "collateral of the previous schema adopted");
    Ok(())
}

/// Adopts collateral of the previous schema and loads the current sets into memory. A failure
/// is logged: quotes then load what they need when they need it.
pub async fn load_at_start(s: &AppState) {
    if let Err(e) = adopt_legacy(s).await {
        tracing::warn!(error = %e, "adopting stored collateral failed");
    }
    if let Err(e) = reload(s).await {
        tracing::warn!(error = %e, "loading collateral failed");
    }
}

/// Runs the refresher until shutdown: every `collateral_check_interval_secs`, reloads what
/// other replicas stored and refreshes what is due.
pub fn spawn_refresher(s: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        let every = Duration::from_secs(s.config.collateral_check_interval_secs.max(1));
        loop {
            if let Err(e) = refresh_due(&s).await {
                tracing::warn!(error = %e, "collateral refresh failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => break,
            }
            if let Err(e) = reload(&s).await {
                tracing::warn!(error = %e, "reloading collateral failed");
            }
        }
    });
}

/// Collateral is the manager's, not an account's: which platform families are enrolled is
/// for the system administrator to see and change.
fn administrator(caller: &Caller) -> ServiceResult<()> {
    if caller.administers() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(
            "platform collateral needs a system administrator's login session".into(),
        ))
    }
}

/// Every current set (`GET /v1/collateral`).
pub async fn list(s: &AppState, caller: &Caller) -> ServiceResult<Vec<CollateralSet>> {
    administrator(caller)?;
    let records = s.store.collateral_sets().await?;
    Ok(records.iter().map(api_set).collect())
}

/// Every current standard set as `QuoteCollateralV3` JSON texts, for an air-gapped site
/// (`GET /v1/collateral/export`).
pub async fn export(s: &AppState, caller: &Caller) -> ServiceResult<Vec<String>> {
    administrator(caller)?;
    let records = s.store.collateral_sets().await?;
    Ok(records
        .into_iter()
        .filter(|r| r.key.update == TcbUpdate::Standard)
        .map(|r| r.collateral)
        .collect())
}

fn api_set(r: &CollateralRecord) -> CollateralSet {
    CollateralSet {
        fmspc: r.key.fmspc.clone(),
        root_fingerprint: r.key.root_fingerprint.clone(),
        simulated: r.simulated,
        ca_type: r.key.ca_type,
        tee: r.key.tee,
        update: r.key.update,
        tcb_evaluation_data_number: r.ages.tcb_evaluation_data_number,
        tcb_info_issued: r.ages.tcb_info_issued,
        pck_crl_issued: r.ages.pck_crl_issued,
        valid_until: r.valid_until,
        source: r.source,
        updated_at: r.updated_at,
        last_attempt_at: r.last_attempt_at,
        last_error: r.last_error.clone(),
    }
}

/// An operator's import: every set is verified first (one that does not verify refuses the
/// whole import, changing nothing), then each is offered like any other (an older one changes
/// nothing).
pub async fn import(
    s: &AppState,
    caller: &Caller,
    sets: Vec<Collateral>,
) -> ServiceResult<Vec<Offered>> {
    administrator(caller)?;
    let t = u64::try_from(now(s)).unwrap_or(0);
    for (i, c) in sets.iter().enumerate() {
        let checked = s.attest.verifier().check_collateral(c, t);
        if let Err(e) = checked {
            return Err(invalid_set(i, &CollateralError::Invalid(e)));
        }
    }
    let mut out = Vec::with_capacity(sets.len());
    let actor = caller.actor();
    for (i, c) in sets.into_iter().enumerate() {
        match offer(s, c, CollateralSource::Import, TcbUpdate::Standard, &actor).await {
            Ok(o) => out.push(o),
            Err(CollateralError::Store(e)) => return Err(e.into()),
            Err(e) => return Err(invalid_set(i, &e)),
        }
    }
    Ok(out)
}

fn invalid_set(index: usize, e: &CollateralError) -> ServiceError {
    ServiceError::Invalid(vec![ccm_api::FieldError {
        field: format!("collateral[{index}]"),
        message: e.to_string(),
    }])
}

/// An item of the PCCS API (`/sgx/certification/v4/...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PccsItem {
    /// `tcb?fmspc=`.
    TcbInfo {
        /// The FMSPC asked for.
        fmspc: [u8; 6],
    },
    /// `qe/identity`.
    QeIdentity,
    /// `pckcrl?ca=`.
    PckCrl {
        /// The CA asked for.
        ca: CaType,
    },
    /// `rootcacrl`.
    RootCaCrl,
}

/// What the PCCS API answers for an item, before rendering.
#[derive(Debug, Clone)]
pub enum PccsAnswer {
    /// A signed JSON object (`{"tcbInfo": ..., "signature": "hex"}` or `enclaveIdentity`).
    Signed {
        /// The exact body.
        body: String,
        /// The issuer chain (PEM).
        issuer_chain: String,
        /// When the set it came from expires (Unix seconds).
        valid_until: i64,
    },
    /// A CRL (DER).
    Crl {
        /// DER.
        der: Vec<u8>,
        /// The issuer chain (PEM; empty for the root CA CRL).
        issuer_chain: String,
        /// When the set it came from expires (Unix seconds).
        valid_until: i64,
    },
}

/// The PCCS API's answer for `item` from the current sets (SGX; TDX collateral is not held yet),
/// or 404 when ccm holds none. Several sets can hold an item (the QE identity is in every set):
/// the one under Intel's root wins over a simulated one, then the newest.
pub async fn pccs_answer(
    s: &AppState,
    item: PccsItem,
    set: EvaluationSet,
) -> ServiceResult<PccsAnswer> {
    let sets = match set {
        EvaluationSet::Standard => sets_for_pccs(s, TcbUpdate::Standard).await?,
        EvaluationSet::Early => sets_for_pccs(s, TcbUpdate::Early).await?,
        EvaluationSet::Number(_) => {
            let mut all = sets_for_pccs(s, TcbUpdate::Standard).await?;
            all.extend(sets_for_pccs(s, TcbUpdate::Early).await?);
            all
        }
    };
    let part = match item {
        PccsItem::TcbInfo { .. } => CollateralPart::TcbInfo,
        PccsItem::QeIdentity => CollateralPart::QeIdentity,
        PccsItem::PckCrl { .. } => CollateralPart::PckCrl,
        PccsItem::RootCaCrl => CollateralPart::RootCrl,
    };
    let best = sets
        .iter()
        .filter(|c| holds(c, item) && has_number(c, part, set))
        .max_by_key(|c| (!c.summary.simulated, c.summary.part_age(part)))
        .ok_or(ServiceError::NotFound("collateral"))?;
    Ok(answer_from(best, item))
}

/// Which TCB evaluation data set a PCCS API request asks for (`update=`, or
/// `tcbEvaluationDataNumber=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvaluationSet {
    /// The set in force.
    Standard,
    /// The set published ahead of a TCB recovery.
    Early,
    /// The set with this evaluation data number, if ccm holds it (standard or early).
    Number(u32),
}

/// Whether `c`'s `part` has the evaluation data number `set` asks for (any, unless a number).
fn has_number(c: &CurrentSet, part: CollateralPart, set: EvaluationSet) -> bool {
    let EvaluationSet::Number(n) = set else {
        return true;
    };
    match part {
        CollateralPart::TcbInfo => c.summary.tcb_evaluation_data_number == n,
        CollateralPart::QeIdentity => c.summary.qe_identity_evaluation_data_number == n,
        CollateralPart::PckCrl | CollateralPart::RootCrl => true,
    }
}

/// The sets the PCCS API serves from: memory for the standard sets, the database for early.
async fn sets_for_pccs(s: &AppState, update: TcbUpdate) -> ServiceResult<Vec<Arc<CurrentSet>>> {
    if update == TcbUpdate::Standard {
        let m = s
            .attest
            .collateral
            .sets
            .read()
            .map_err(|_| ServiceError::internal("collateral cache poisoned"))?;
        return Ok(m.values().flatten().cloned().collect());
    }
    let records = s.store.collateral_sets().await?;
    Ok(records
        .iter()
        .filter(|r| r.key.update == update)
        .filter_map(from_record)
        .map(|(_, set)| Arc::new(set))
        .collect())
}

fn holds(set: &CurrentSet, item: PccsItem) -> bool {
    match item {
        PccsItem::TcbInfo { fmspc } => set.summary.fmspc == fmspc,
        PccsItem::PckCrl { ca } => set.summary.ca_type == Some(ca),
        PccsItem::QeIdentity | PccsItem::RootCaCrl => true,
    }
}

fn answer_from(set: &CurrentSet, item: PccsItem) -> PccsAnswer {
    let p = set.collateral.parts();
    let valid_until = i64::try_from(set.summary.valid_until).unwrap_or(i64::MAX);
    match item {
        PccsItem::TcbInfo { .. } => PccsAnswer::Signed {
            body: ccm_attest::collateral::join_signed_json(
                "tcbInfo",
                &p.tcb_info,
                &p.tcb_info_signature,
            ),
            issuer_chain: p.tcb_info_issuer_chain.clone(),
            valid_until,
        },
        PccsItem::QeIdentity => PccsAnswer::Signed {
            body: ccm_attest::collateral::join_signed_json(
                "enclaveIdentity",
                &p.qe_identity,
                &p.qe_identity_signature,
            ),
            issuer_chain: p.qe_identity_issuer_chain.clone(),
            valid_until,
        },
        PccsItem::PckCrl { .. } => PccsAnswer::Crl {
            der: p.pck_crl.clone(),
            issuer_chain: p.pck_crl_issuer_chain.clone(),
            valid_until,
        },
        PccsItem::RootCaCrl => PccsAnswer::Crl {
            der: p.root_ca_crl.clone(),
            issuer_chain: String::new(),
            valid_until,
        },
    }
}
