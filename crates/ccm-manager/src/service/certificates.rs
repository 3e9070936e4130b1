//! Application certificates: listing, one certificate, revocation, and an app's current
//! certificate on a node. Issuing them is `service::issuance`.

use ccm_api::accounts::AccessRole;
use ccm_api::builds::EnclaveInfo;
use ccm_api::certificates::{Certificate, CertificateDetails};
use ccm_api::list::PageQuery;
use ccm_store::Page;
use uuid::Uuid;

use super::{ServiceError, ServiceResult, paging};
use crate::AppState;
use crate::service::caller::Acct;
use crate::service::validate::Checker;

/// Which certificates [`list`] returns.
#[derive(Debug, Clone, Copy, Default)]
pub struct CertificateFilter {
    /// Only certificates of this app.
    pub app_id: Option<Uuid>,
    /// Only certificates requested through this node.
    pub node_id: Option<Uuid>,
}

/// The account's certificates and certificate requests, newest first.
pub async fn list(
    s: &AppState,
    acct: &Acct,
    f: CertificateFilter,
    q: &PageQuery,
) -> ServiceResult<Page<Certificate>> {
    let req = paging::page_request(q)?;
    Ok(s.store
        .list_certificates(acct.acct_id, f.app_id, f.node_id, &req, s.clock.now())
        .await?)
}

/// A certificate (request) of the account.
pub async fn get(s: &AppState, acct: &Acct, certificate_id: Uuid) -> ServiceResult<Certificate> {
    s.store
        .get_certificate(Some(acct.acct_id), certificate_id, s.clock.now())
        .await?
        .ok_or(ServiceError::NotFound("certificate"))
}

/// Step of [`revoke`]: a reason, when given, is 1 to 1024 characters of text.
pub fn check_reason(reason: Option<&str>) -> ServiceResult<()> {
    let mut c = Checker::new();
    if let Some(r) = reason {
        c.text("reason", r, 1, 1024, true);
    }
    c.finish()
}

/// Revokes an issued certificate of the account (MANAGER): it appears on the zone CRL and its
/// key is refused from then on. Returns the certificate as it is now.
pub async fn revoke(
    s: &AppState,
    acct: &Acct,
    certificate_id: Uuid,
    reason: Option<&str>,
) -> ServiceResult<Certificate> {
    acct.require(AccessRole::Manager)?;
    check_reason(reason)?;
    s.store
        .revoke_certificate(
            acct.acct_id,
            certificate_id,
            reason,
            &acct.actor(),
            s.clock.now(),
        )
        .await?;
    get(s, acct, certificate_id).await
}

/// The account's application instances: each app's current certificate per node, RUNNING while
/// the node reports it (until `node_stale_after_secs` without a report).
pub async fn instances(
    s: &AppState,
    acct: &Acct,
) -> ServiceResult<Vec<ccm_api::certificates::AppNodeInfo>> {
    Ok(s.store
        .app_instances(
            acct.acct_id,
            None,
            None,
            s.config.node_stale_after_secs,
            s.clock.now(),
        )
        .await?)
}

/// The app's current certificate on a node.
pub async fn current_on_node(
    s: &AppState,
    acct: &Acct,
    app_id: Uuid,
    node_id: Uuid,
) -> ServiceResult<Certificate> {
    s.store
        .app_instances(
            acct.acct_id,
            Some(app_id),
            Some(node_id),
            i64::MAX,
            s.clock.now(),
        )
        .await?
        .into_iter()
        .next()
        .map(|i| i.certificate)
        .ok_or(ServiceError::NotFound(
            "certificate of this app on this node",
        ))
}

/// Details of the app's current certificate on a node.
pub async fn current_on_node_details(
    s: &AppState,
    acct: &Acct,
    app_id: Uuid,
    node_id: Uuid,
) -> ServiceResult<CertificateDetails> {
    let cert = current_on_node(s, acct, app_id, node_id).await?;
    let (cpusvn, status) = s
        .store
        .certificate_quote_facts(cert.certificate_id)
        .await?
        .unwrap_or_default();
    details(
        cert.certificate.as_deref().unwrap_or_default(),
        cert.enclave_info.clone(),
        cpusvn,
        status,
        cert.simulated,
    )
}

/// Details of a certificate (PEM) the manager issued; a PEM that does not parse is an internal
/// failure (the manager stored it).
pub fn details(
    pem_text: &str,
    enclave_info: Option<EnclaveInfo>,
    cpusvn: String,
    status: String,
    simulated: bool,
) -> ServiceResult<CertificateDetails> {
    let block = pem::parse(pem_text).map_err(ServiceError::internal)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(block.contents()).map_err(ServiceError::internal)?;
    Ok(CertificateDetails {
        enclave_info,
        subject_name: cert.subject().to_string(),
        issuer_name: cert.issuer().to_string(),
        valid_until: cert.validity().not_after.timestamp(),
        valid_from: cert.validity().not_before.timestamp(),
        cpusvn,
        ias_quote_status: status,
        simulated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_reason_is_checked() {
        assert!(check_reason(None).is_ok());
        assert!(check_reason(Some("key leaked")).is_ok());
        assert!(matches!(
            check_reason(Some("")),
            Err(ServiceError::Invalid(_))
        ));
        let long = "x".repeat(1025);
        assert!(matches!(
            check_reason(Some(&long)),
            Err(ServiceError::Invalid(_))
        ));
    }

    #[test]
    fn details_of_a_pem_that_is_no_certificate_fail_as_internal() {
        let r = details("not a pem", None, String::new(), String::new(), false);
        assert!(matches!(r, Err(ServiceError::Internal(_))));
    }

    #[test]
    fn details_read_subject_issuer_and_validity() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["a.example".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let d = details(&cert.pem(), None, "cpu".into(), "UpToDate".into(), true).unwrap();
        assert_eq!(d.subject_name, d.issuer_name);
        assert!(d.valid_until > d.valid_from);
        assert!(d.simulated);
        assert_eq!(d.ias_quote_status, "UpToDate");
    }

    use crate::service::testing::Fixture;
    use ccm_api::accounts::{AccessRole, ApprovalPolicy};

    #[tokio::test]
    async fn revoking_needs_a_manager_a_valid_reason_and_an_existing_certificate() {
        let f = Fixture::new().await;
        let alice = f.user("alice@example.com").await;
        let mgr = f.account(&alice, "acme", ApprovalPolicy::Manual).await;
        let writer = f.member(&mgr, "w@example.com", AccessRole::Writer).await;
        let id = Uuid::new_v4();
        assert!(matches!(
            revoke(&f.s, &writer, id, None).await,
            Err(ServiceError::Forbidden(_))
        ));
        assert!(matches!(
            revoke(&f.s, &mgr, id, Some("")).await,
            Err(ServiceError::Invalid(_))
        ));
        assert!(matches!(
            revoke(&f.s, &mgr, id, Some("key leaked")).await,
            Err(ServiceError::NotFound("certificate"))
        ));
        assert!(matches!(
            get(&f.s, &mgr, id).await,
            Err(ServiceError::NotFound(_))
        ));
        let none = list(
            &f.s,
            &writer,
            CertificateFilter::default(),
            &PageQuery::default(),
        )
        .await
        .unwrap();
        assert!(none.items.is_empty());
        let bad = PageQuery {
            limit: Some(0),
            ..PageQuery::default()
        };
        assert!(matches!(
            list(&f.s, &mgr, CertificateFilter::default(), &bad).await,
            Err(ServiceError::Invalid(_))
        ));
    }
}
