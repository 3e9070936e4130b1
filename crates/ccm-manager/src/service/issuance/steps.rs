//! The named steps of an issuance decision, each a function over data ending in a [`Refusal`]
//! with its own code, so that each is tested without a database or a running manager.

use ccm_api::apps::App;
use ccm_api::builds::BuildStatusType;
use ccm_attest::{Policy, PolicyViolation, VerifiedQuote};
use ccm_pki::Csr;
use ccm_store::{ImageMatch, NodeAuth};
use uuid::Uuid;

use super::nonce::{NONCE_LEN, NonceFault, NonceKey};
use crate::service::attest::QuoteError;
use crate::service::{Refusal, RefusalCode};

/// The node may obtain certificates (enrolled, approved, not deactivated or failed).
pub fn node_may_issue(node: &NodeAuth) -> Result<(), Refusal> {
    if node.status.may_issue() {
        Ok(())
    } else {
        Err(Refusal::new(
            RefusalCode::NodeNotActive,
            format!(
                "node {} is {} and may not obtain certificates",
                node.name,
                node.status.as_str()
            ),
        ))
    }
}

/// The CSR parses and its signature verifies.
pub fn csr_parses(pem: &str) -> Result<Csr, Refusal> {
    Csr::from_pem(pem).map_err(|e| Refusal::new(RefusalCode::InvalidCsr, e.to_string()))
}

/// The CSR names at least one DNS name; returns them.
pub fn csr_names_dns(csr: &Csr) -> Result<Vec<String>, Refusal> {
    let names = csr.requested_names();
    if names.is_empty() {
        return Err(Refusal::new(
            RefusalCode::CsrWithoutName,
            "the CSR names no DNS name (neither a DNS subjectAltName nor a DNS common name)",
        ));
    }
    Ok(names)
}

/// The request carries a quote.
pub fn quote_present(quote: &[u8]) -> Result<(), Refusal> {
    if quote.is_empty() {
        Err(Refusal::new(
            RefusalCode::NoEvidence,
            "no attestation evidence: the request carries no quote",
        ))
    } else {
        Ok(())
    }
}

/// Why the quote did not verify, as a refusal (a store failure is internal).
pub fn quote_refusal(e: QuoteError) -> Refusal {
    match e {
        QuoteError::Malformed => Refusal::new(RefusalCode::MalformedQuote, e.to_string()),
        QuoteError::NoCollateral { .. } => Refusal::new(RefusalCode::NoCollateral, e.to_string()),
        QuoteError::Invalid(_) => Refusal::new(RefusalCode::QuoteInvalid, e.to_string()),
        QuoteError::Store(cause) => Refusal::internal("read platform collateral", cause),
    }
}

/// REPORTDATA[0..32] is SHA-256 of the CSR's SubjectPublicKeyInfo.
pub fn key_bound(report_data: &[u8; 64], spki_sha256: &[u8; 32]) -> Result<(), Refusal> {
    if report_data.get(..32) == Some(spki_sha256.as_slice()) {
        Ok(())
    } else {
        Err(Refusal::new(
            RefusalCode::KeyNotBound,
            "the quote's REPORTDATA[0..32] is not SHA-256 of the CSR's SubjectPublicKeyInfo",
        ))
    }
}

/// The key hash of a quote: REPORTDATA[0..32].
pub fn report_key(report_data: &[u8; 64]) -> [u8; 32] {
    let mut key = [0u8; 32];
    for (k, b) in key.iter_mut().zip(report_data.iter()) {
        *k = *b;
    }
    key
}

/// The nonce of a quote: REPORTDATA[32..64].
pub fn report_nonce(report_data: &[u8; 64]) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    for (n, b) in nonce.iter_mut().zip(report_data.iter().skip(32)) {
        *n = *b;
    }
    nonce
}

/// REPORTDATA[32..64] is a nonce this manager issued to this node, not yet used (`used`: a
/// request already recorded it) and not expired. Returns the nonce, which the request's record
/// then consumes.
pub fn nonce_fresh(
    key: &NonceKey,
    node_id: Uuid,
    report_data: &[u8; 64],
    used: bool,
    now: i64,
) -> Result<[u8; NONCE_LEN], Refusal> {
    let nonce = report_nonce(report_data);
    match key.check(node_id, &nonce, now) {
        Err(NonceFault::Absent) => Err(Refusal::new(
            RefusalCode::UnknownNonce,
            "the request carries no manager nonce (REPORTDATA[32..64] is zero): ask the node \
             agent for a nonce (POST /v1/enclave/nonce) and put it into the quote's REPORTDATA",
        )),
        Err(NonceFault::Unknown) => Err(Refusal::new(
            RefusalCode::UnknownNonce,
            "REPORTDATA[32..64] is not a nonce this manager issued to this node",
        )),
        Ok(()) | Err(NonceFault::Expired) if used => Err(Refusal::new(
            RefusalCode::ReplayedNonce,
            "the quote's nonce was already used by another request (a replayed quote)",
        )),
        Err(NonceFault::Expired) => Err(Refusal::new(
            RefusalCode::ExpiredNonce,
            "the quote's nonce has expired: ask for a new one and quote again",
        )),
        Ok(()) => Ok(nonce),
    }
}

/// The key to certify is not one of a revoked certificate of the account.
pub fn key_not_revoked(revoked: bool) -> Result<(), Refusal> {
    if revoked {
        Err(Refusal::new(
            RefusalCode::KeyRevoked,
            "the CSR's key belongs to a revoked certificate and may not be certified again",
        ))
    } else {
        Ok(())
    }
}

/// The quote comes from the requesting node's platform (same PPID).
pub fn same_platform(quote_ppid_hash: &str, node: &NodeAuth) -> Result<(), Refusal> {
    if quote_ppid_hash == node.sgx_info.ppid_hash {
        Ok(())
    } else {
        Err(Refusal::new(
            RefusalCode::WrongPlatform,
            format!(
                "the quote comes from a different platform than node {}",
                node.name
            ),
        ))
    }
}

/// The MRENCLAVE names an image of an app in the node's account.
pub fn image_known<T>(found: Option<T>, mrenclave: &str) -> Result<T, Refusal> {
    found.ok_or_else(|| {
        Refusal::new(
            RefusalCode::UnknownImage,
            format!("MRENCLAVE {mrenclave} is not an image of any app in the node's account"),
        )
    })
}

/// The image was not rejected.
pub fn image_not_rejected(image: &ImageMatch) -> Result<(), Refusal> {
    match image.status {
        BuildStatusType::Whitelisted | BuildStatusType::Pending => Ok(()),
        BuildStatusType::Rejected => Err(Refusal::new(
            RefusalCode::ImageRejected,
            format!("image {} was rejected", image.image),
        )),
    }
}

/// The enclave's MRSIGNER, ISVPRODID and ISVSVN are the image's.
pub fn identity_matches(
    image: &ImageMatch,
    mrsigner: &str,
    isvprodid: u16,
    isvsvn: u16,
) -> Result<(), Refusal> {
    let mismatch = |what: &str, got: String, expected: String| {
        Err(Refusal::new(
            RefusalCode::IdentityMismatch,
            format!(
                "{what} {got} does not match image {} (expected {expected})",
                image.image
            ),
        ))
    };
    if !image.mrsigner.eq_ignore_ascii_case(mrsigner) {
        return mismatch("MRSIGNER", mrsigner.into(), image.mrsigner.clone());
    }
    if image.isvprodid != i64::from(isvprodid) {
        return mismatch(
            "ISVPRODID",
            isvprodid.to_string(),
            image.isvprodid.to_string(),
        );
    }
    if image.isvsvn != i64::from(isvsvn) {
        return mismatch("ISVSVN", isvsvn.to_string(), image.isvsvn.to_string());
    }
    Ok(())
}

/// The image's app still exists.
pub fn app_exists(app: Option<App>) -> Result<App, Refusal> {
    app.ok_or_else(|| {
        Refusal::new(
            RefusalCode::UnknownImage,
            "the image's app no longer exists",
        )
    })
}

/// The attestation policy of an app's enclaves (simulated platforms only where the account and
/// the app both trust them).
pub fn app_policy(app: &App, account_allows_simulated: bool) -> Policy {
    crate::service::apps::app_attest_policy(&app.advanced_settings, account_allows_simulated)
}

/// A quote resting on a simulated platform needs the trust of the account and of the app.
pub fn simulated_trusted(
    quote: &VerifiedQuote,
    account_allows_simulated: bool,
    app: &App,
) -> Result<(), Refusal> {
    crate::service::apps::check_simulated_trust(
        quote.simulated,
        account_allows_simulated,
        app.advanced_settings.allow_simulated,
        &app.name,
    )
}

/// The app's attestation policy accepts the enclave (TCB status, debug, minimum ISVSVN,
/// simulated platform).
pub fn policy_allows(
    app: &App,
    account_allows_simulated: bool,
    quote: &VerifiedQuote,
) -> Result<(), Refusal> {
    let violations = app_policy(app, account_allows_simulated).violations(quote);
    if violations.is_empty() {
        return Ok(());
    }
    let code = if violations
        .iter()
        .all(|v| matches!(v, PolicyViolation::SimulatedPlatform))
    {
        RefusalCode::SimulatedNotTrusted
    } else {
        RefusalCode::PolicyViolation
    };
    let text = violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    Err(Refusal::new(
        code,
        format!("app {} does not accept this enclave: {text}", app.name),
    ))
}

/// Every requested name is among the app's domains. Returns the names still waiting for
/// approval (DOMAIN_WHITELIST).
pub fn domains_allowed(app: &App, names: &[String]) -> Result<Vec<String>, Refusal> {
    let mut waiting = Vec::new();
    for n in names {
        let listed = |list: &[String]| list.iter().any(|d| d.eq_ignore_ascii_case(n));
        if !listed(&app.allowed_domains) {
            return Err(Refusal::new(
                RefusalCode::DomainNotAllowed,
                format!("domain {n} is not among the domains of app {}", app.name),
            ));
        }
        if !listed(&app.whitelisted_domains) {
            waiting.push(n.clone());
        }
    }
    Ok(waiting)
}

/// What an otherwise granted request still waits for: the image's and the domains'
/// approvals (empty when it may be issued now).
pub fn approvals_outstanding(image: &ImageMatch, domains_waiting: &[String]) -> Vec<String> {
    let mut waiting = Vec::new();
    if image.status == BuildStatusType::Pending {
        waiting.push(format!("image {}", image.image));
    }
    waiting.extend(domains_waiting.iter().map(|d| format!("domain {d}")));
    waiting
}

#[cfg(test)]
mod tests {
    use ccm_api::apps::TcbStatus as ApiTcbStatus;
    use ccm_api::nodes::{NodeStatusType, SgxInfo};
    use ccm_attest::TcbStatus;
    use ring::hmac;
    use serde_json::json;
    use sha2::{Digest, Sha256};

    use super::*;

    fn node(status: NodeStatusType) -> NodeAuth {
        NodeAuth {
            node_id: Uuid::from_u128(1),
            acct_id: Uuid::from_u128(2),
            zone_id: Uuid::from_u128(3),
            name: "node-a".into(),
            status,
            sgx_info: SgxInfo {
                version: None,
                fmspc: "00906ed50000".into(),
                tcb_status: ApiTcbStatus::UpToDate,
                advisory_ids: Vec::new(),
                tcb_date: String::new(),
                ppid_hash: "aa".repeat(32),
                simulated: true,
                root_fingerprint: String::new(),
            },
        }
    }

    /// An app as the API describes it, with the given advanced settings.
    fn app(advanced: serde_json::Value) -> App {
        serde_json::from_value(json!({
            "app_id": Uuid::from_u128(4), "acct_id": Uuid::from_u128(2), "name": "web",
            "input_image_name": "r/web", "output_image_name": "r/web-sgx",
            "isvprodid": 7, "isvsvn": 1, "mem_size": 1024, "threads": 16,
            "allowed_domains": ["web.example.com", "api.example.com"],
            "whitelisted_domains": ["web.example.com"],
            "advanced_settings": advanced, "labels": {}, "created_at": 0, "updated_at": 0
        }))
        .unwrap()
    }

    fn image(status: BuildStatusType) -> ImageMatch {
        ImageMatch {
            build_id: Uuid::from_u128(5),
            app_id: Uuid::from_u128(4),
            mrsigner: "22".repeat(32),
            isvprodid: 7,
            isvsvn: 1,
            status,
            image: "r/web-sgx:1".into(),
            account_allows_simulated: false,
        }
    }

    /// A verified quote with these facts (the rest zero).
    fn verified(status: TcbStatus, debug: bool, isvsvn: u16, simulated: bool) -> VerifiedQuote {
        let mut body = [0u8; 384];
        // ATTRIBUTES.flags: INIT, and DEBUG when asked.
        body[48] = if debug { 3 } else { 1 };
        body[258..260].copy_from_slice(&isvsvn.to_le_bytes());
        VerifiedQuote {
            status,
            advisory_ids: Vec::new(),
            platform_status: status,
            platform_advisory_ids: Vec::new(),
            qe_status: TcbStatus::UpToDate,
            qe_advisory_ids: Vec::new(),
            tcb_date: String::new(),
            report: ccm_sgx::ReportBody::parse(&body).unwrap(),
            quote_version: 3,
            fmspc: [0; 6],
            pce_id: [0; 2],
            ppid: [0; 16],
            simulated,
            root_fingerprint: [0; 32],
            tcb_evaluation_data_number: 0,
            valid_until: 0,
        }
    }

    fn code<T: std::fmt::Debug>(r: Result<T, Refusal>) -> RefusalCode {
        r.unwrap_err().code
    }

    fn csr(names: Vec<String>) -> (Csr, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = if names.is_empty() {
            rcgen::CertificateParams::default()
        } else {
            rcgen::CertificateParams::new(names).unwrap()
        };
        let pem = params.serialize_request(&key).unwrap().pem().unwrap();
        (Csr::from_pem(&pem).unwrap(), pem)
    }

    #[test]
    fn node_may_issue_only_when_active() {
        for ok in [
            NodeStatusType::Running,
            NodeStatusType::Provisioned,
            NodeStatusType::Stopped,
        ] {
            assert!(node_may_issue(&node(ok)).is_ok(), "{ok:?}");
        }
        for refused in [
            NodeStatusType::Deactivated,
            NodeStatusType::Inprogress,
            NodeStatusType::Failed,
        ] {
            let r = node_may_issue(&node(refused)).unwrap_err();
            assert_eq!(r.code, RefusalCode::NodeNotActive);
            assert!(r.message.contains(refused.as_str()), "{r}");
        }
    }

    #[test]
    fn csr_must_parse_and_name_a_dns_name() {
        assert_eq!(code(csr_parses("not a CSR")), RefusalCode::InvalidCsr);
        let (nameless, _) = csr(Vec::new());
        assert_eq!(code(csr_names_dns(&nameless)), RefusalCode::CsrWithoutName);
        let (named, pem) = csr(vec!["web.example.com".into()]);
        assert!(csr_parses(&pem).is_ok());
        assert_eq!(csr_names_dns(&named).unwrap(), ["web.example.com"]);
    }

    #[test]
    fn quote_must_be_present() {
        assert_eq!(code(quote_present(&[])), RefusalCode::NoEvidence);
        assert!(quote_present(&[3, 0]).is_ok());
    }

    #[test]
    fn quote_errors_have_their_codes_and_store_failures_are_internal() {
        assert_eq!(
            quote_refusal(QuoteError::Malformed).code,
            RefusalCode::MalformedQuote
        );
        let r = quote_refusal(QuoteError::NoCollateral {
            fmspc: "00906ed50000".into(),
            ca: "platform",
            reason: "the PCS or PCCS has none for it".into(),
        });
        assert_eq!(r.code, RefusalCode::NoCollateral);
        assert!(r.code.is_transient());
        let r = quote_refusal(QuoteError::Store(ccm_store::Error::Connection(
            "disk I/O error at /var/lib/ccm/ccm.db".into(),
        )));
        assert_eq!(r.code, RefusalCode::Internal);
        assert!(!r.message.contains("/var/lib"), "{r}");
    }

    #[test]
    fn report_data_must_bind_the_csr_key() {
        let (c, _) = csr(vec!["web.example.com".into()]);
        let spki = c.spki_sha256();
        let mut rd = [7u8; 64];
        rd[..32].copy_from_slice(&spki);
        assert!(key_bound(&rd, &spki).is_ok());
        assert_eq!(report_key(&rd), spki);
        rd[0] ^= 1;
        assert_eq!(code(key_bound(&rd, &spki)), RefusalCode::KeyNotBound);
        let der_hash: [u8; 32] = Sha256::digest(c.spki_der()).into();
        assert_eq!(der_hash, spki, "the hash of the SubjectPublicKeyInfo DER");
    }

    #[test]
    fn nonce_must_be_fresh_for_this_node() {
        let key = NonceKey::new(hmac::Key::new(hmac::HMAC_SHA256, &[1; 32]), 300);
        let me = Uuid::from_u128(1);
        let (nonce, expires) = key.mint_with(me, 1_000, [4; 8]);
        let mut rd = [0u8; 64];
        rd[32..].copy_from_slice(&nonce);
        assert_eq!(nonce_fresh(&key, me, &rd, false, 1_000).unwrap(), nonce);
        assert_eq!(report_nonce(&rd), nonce);
        // Used already: a replay, also once expired.
        assert_eq!(
            code(nonce_fresh(&key, me, &rd, true, 1_000)),
            RefusalCode::ReplayedNonce
        );
        assert_eq!(
            code(nonce_fresh(&key, me, &rd, true, expires)),
            RefusalCode::ReplayedNonce
        );
        assert_eq!(
            code(nonce_fresh(&key, me, &rd, false, expires)),
            RefusalCode::ExpiredNonce
        );
        // Another node's, another manager's, or no nonce at all.
        assert_eq!(
            code(nonce_fresh(&key, Uuid::from_u128(9), &rd, false, 1_000)),
            RefusalCode::UnknownNonce
        );
        let other = NonceKey::new(hmac::Key::new(hmac::HMAC_SHA256, &[2; 32]), 300);
        assert_eq!(
            code(nonce_fresh(&other, me, &rd, false, 1_000)),
            RefusalCode::UnknownNonce
        );
        let r = nonce_fresh(&key, me, &[0; 64], false, 1_000).unwrap_err();
        assert_eq!(r.code, RefusalCode::UnknownNonce);
        assert!(r.message.contains("no manager nonce"), "{r}");
    }

    #[test]
    fn revoked_keys_are_refused() {
        assert_eq!(code(key_not_revoked(true)), RefusalCode::KeyRevoked);
        assert!(key_not_revoked(false).is_ok());
    }

    #[test]
    fn quote_must_come_from_the_nodes_platform() {
        let n = node(NodeStatusType::Running);
        assert!(same_platform(&"aa".repeat(32), &n).is_ok());
        assert_eq!(
            code(same_platform(&"bb".repeat(32), &n)),
            RefusalCode::WrongPlatform
        );
    }

    #[test]
    fn image_must_be_known_and_not_rejected() {
        assert_eq!(
            code(image_known::<ImageMatch>(None, "11")),
            RefusalCode::UnknownImage
        );
        assert!(image_known(Some(image(BuildStatusType::Pending)), "11").is_ok());
        assert_eq!(
            code(image_not_rejected(&image(BuildStatusType::Rejected))),
            RefusalCode::ImageRejected
        );
        assert!(image_not_rejected(&image(BuildStatusType::Whitelisted)).is_ok());
        assert!(image_not_rejected(&image(BuildStatusType::Pending)).is_ok());
        assert_eq!(code(app_exists(None)), RefusalCode::UnknownImage);
    }

    #[test]
    fn identity_must_match_the_image() {
        let img = image(BuildStatusType::Whitelisted);
        let signer = "22".repeat(32);
        assert!(identity_matches(&img, &signer, 7, 1).is_ok());
        for (mrsigner, prodid, svn, what) in [
            ("33".repeat(32), 7, 1, "MRSIGNER"),
            (signer.clone(), 8, 1, "ISVPRODID"),
            (signer.clone(), 7, 2, "ISVSVN"),
        ] {
            let r = identity_matches(&img, &mrsigner, prodid, svn).unwrap_err();
            assert_eq!(r.code, RefusalCode::IdentityMismatch);
            assert!(r.message.starts_with(what), "{r}");
        }
    }

    #[test]
    fn app_policy_tcb_status_debug_and_min_isvsvn() {
        let strict = app(json!({}));
        assert!(
            policy_allows(
                &strict,
                true,
                &verified(TcbStatus::UpToDate, false, 1, false)
            )
            .is_ok()
        );
        let r = policy_allows(
            &strict,
            true,
            &verified(TcbStatus::OutOfDate, false, 1, false),
        )
        .unwrap_err();
        assert_eq!(r.code, RefusalCode::PolicyViolation);
        assert!(r.message.contains("OutOfDate"), "{r}");
        let r = policy_allows(
            &strict,
            true,
            &verified(TcbStatus::UpToDate, true, 1, false),
        )
        .unwrap_err();
        assert_eq!(r.code, RefusalCode::PolicyViolation);
        assert!(r.message.to_lowercase().contains("debug"), "{r}");
        let min = app(json!({"min_isvsvn": 3}));
        let r =
            policy_allows(&min, true, &verified(TcbStatus::UpToDate, false, 2, false)).unwrap_err();
        assert_eq!(r.code, RefusalCode::PolicyViolation);
        assert!(policy_allows(&min, true, &verified(TcbStatus::UpToDate, false, 3, false)).is_ok());
        let lenient = app(json!({"allow_debug": true,
            "accepted_tcb_statuses": ["UpToDate", "OutOfDate"]}));
        assert!(
            policy_allows(
                &lenient,
                true,
                &verified(TcbStatus::OutOfDate, true, 0, false)
            )
            .is_ok()
        );
        // Revoked is never acceptable.
        let revoked = app(json!({"accepted_tcb_statuses": ["Revoked"]}));
        assert_eq!(
            code(policy_allows(
                &revoked,
                true,
                &verified(TcbStatus::Revoked, false, 1, false)
            )),
            RefusalCode::PolicyViolation
        );
    }

    #[test]
    fn simulated_platforms_need_the_account_and_the_app() {
        let sim = verified(TcbStatus::UpToDate, false, 1, true);
        let trusting = app(json!({"allow_simulated": true}));
        let plain = app(json!({}));
        assert!(simulated_trusted(&sim, true, &trusting).is_ok());
        assert!(policy_allows(&trusting, true, &sim).is_ok());
        for (account, a) in [(false, &trusting), (true, &plain), (false, &plain)] {
            assert_eq!(
                code(simulated_trusted(&sim, account, a)),
                RefusalCode::SimulatedNotTrusted
            );
            assert_eq!(
                code(policy_allows(a, account, &sim)),
                RefusalCode::SimulatedNotTrusted
            );
        }
        // A hardware quote needs no such trust.
        let hw = verified(TcbStatus::UpToDate, false, 1, false);
        assert!(simulated_trusted(&hw, false, &plain).is_ok());
    }

    #[test]
    fn domains_must_be_the_apps() {
        let a = app(json!({}));
        assert_eq!(
            domains_allowed(&a, &["WEB.example.com".into()]).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            domains_allowed(&a, &["api.example.com".into()]).unwrap(),
            ["api.example.com"]
        );
        let r = domains_allowed(&a, &["web.example.com".into(), "evil.example.com".into()])
            .unwrap_err();
        assert_eq!(r.code, RefusalCode::DomainNotAllowed);
        assert!(r.message.contains("evil.example.com"), "{r}");
        assert_eq!(
            approvals_outstanding(
                &image(BuildStatusType::Pending),
                &["api.example.com".into()]
            ),
            ["image r/web-sgx:1", "domain api.example.com"]
        );
        assert!(approvals_outstanding(&image(BuildStatusType::Whitelisted), &[]).is_empty());
    }
}
