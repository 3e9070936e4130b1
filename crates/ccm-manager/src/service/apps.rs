//! Applications: creation and updates, with their attestation policy governed.
//!
//! # Who may change an app's attestation policy
//!
//! An app's attestation policy is its `advanced_settings`: the accepted TCB statuses, debug
//! enclaves, the minimum ISVSVN and trust in simulated platforms. Issuance reads it live, so a
//! change weakens (or tightens) every later certificate decision of the app. A change therefore
//! needs a MANAGER ([`policy_route`]):
//!
//! | caller | account approvals `MANUAL` | account approvals `AUTO_APPROVE` |
//! |---|---|---|
//! | MANAGER | POLICY_CHANGE task (a MANAGER's approval applies it) | applied at once |
//! | WRITER | POLICY_CHANGE task (a MANAGER's approval applies it) | refused (403) |
//!
//! A WRITER in an auto-approving account is refused because the task would approve itself: no
//! MANAGER would ever see the change. Other fields of the same update are applied at once; while
//! a POLICY_CHANGE task is pending the app keeps its current policy, and a second proposal is
//! refused (409) until the first is decided. Request and outcome are both audited
//! (`app.policy_change_request`, `task.approve`/`task.deny`, `app.policy_change`).
//!
//! An app created by a MANAGER gets the policy it is created with (there is no earlier policy to
//! weaken, and `app.create` records it); a WRITER creating an app with a policy other than the
//! default gets the app with the default policy and the requested one routed as above.
//!
//! # Simulated platforms
//!
//! A quote resting on a simulated root is acceptable only when both the account
//! (`allow_simulated`, set by a MANAGER) and the app (`advanced_settings.allow_simulated`) trust
//! simulated platforms ([`check_simulated_trust`], [`app_attest_policy`]).

use ccm_api::accounts::{AccessRole, ApprovalPolicy};
use std::collections::BTreeMap;

use ccm_api::apps::{AdvancedSettings, App, AppRequest, AppUpdateRequest, LabelsUpdate, TcbStatus};
use ccm_api::certificates::AppWithNodes;
use ccm_api::list::PageQuery;
use ccm_api::registries::PatchOperation;
use ccm_attest::Policy;
use ccm_store::{AppEdit, Page, PolicyEdit};
use uuid::Uuid;

use super::{Refusal, RefusalCode, ServiceError, ServiceResult, paging};
use crate::AppState;
use crate::service::caller::Acct;
use crate::service::validate::Checker;

/// What happens to a requested change of an app's attestation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyRoute {
    /// Applied at once.
    Apply,
    /// Proposed as a POLICY_CHANGE task.
    Propose,
}

/// Decides what a change of an app's attestation policy by a caller with `role` does in an
/// account with `approval` (see the module documentation).
pub fn policy_route(role: AccessRole, approval: ApprovalPolicy) -> ServiceResult<PolicyRoute> {
    match (role, approval) {
        (AccessRole::Reader, _) => Err(ServiceError::Forbidden(
            "changing an app needs the WRITER role in the account; you have READER".into(),
        )),
        (AccessRole::Writer | AccessRole::Manager, ApprovalPolicy::Manual) => {
            Ok(PolicyRoute::Propose)
        }
        (AccessRole::Manager, ApprovalPolicy::AutoApprove) => Ok(PolicyRoute::Apply),
        (AccessRole::Writer, ApprovalPolicy::AutoApprove) => Err(ServiceError::Forbidden(
            "changing an app's attestation policy (advanced_settings) needs the MANAGER role: \
             this account approves tasks automatically, so the change cannot wait for a manager"
                .into(),
        )),
    }
}

/// The verifier policy of an app's settings. Simulated platforms are accepted only when the
/// account and the app both trust them.
pub fn app_attest_policy(settings: &AdvancedSettings, account_allows_simulated: bool) -> Policy {
    Policy::default()
        .accept_statuses(
            settings
                .accepted_tcb_statuses
                .iter()
                .copied()
                .map(crate::service::attest::attest_tcb_status),
        )
        .allow_debug(settings.allow_debug)
        .min_isvsvn(
            settings
                .min_isvsvn
                .and_then(|m| u16::try_from(m).ok())
                .unwrap_or(0),
        )
        .dangerous_allow_simulated(account_allows_simulated && settings.allow_simulated)
}

/// Refuses a quote resting on a simulated platform unless the account and the app both trust
/// simulated platforms (code `simulated_not_trusted`).
pub fn check_simulated_trust(
    simulated: bool,
    account_allows: bool,
    app_allows: bool,
    app_name: &str,
) -> Result<(), Refusal> {
    if !simulated {
        return Ok(());
    }
    let who = match (account_allows, app_allows) {
        (true, true) => return Ok(()),
        (false, false) => format!("neither the account nor app {app_name} trusts"),
        (false, true) => "the account does not trust".to_string(),
        (true, false) => format!("app {app_name} does not trust"),
    };
    Err(Refusal::new(
        RefusalCode::SimulatedNotTrusted,
        format!(
            "the quote rests on a simulated SGX platform and {who} simulated platforms \
             (account: PATCH /v1/accounts/{{acct_id}} allow_simulated; app: \
             advanced_settings.allow_simulated)"
        ),
    ))
}

/// The description of a POLICY_CHANGE task.
fn proposal_description(app_name: &str, old: &AdvancedSettings, new: &AdvancedSettings) -> String {
    let mut parts = Vec::new();
    if old.accepted_tcb_statuses != new.accepted_tcb_statuses {
        let list = |v: &[TcbStatus]| {
            v.iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        parts.push(format!(
            "accepted TCB statuses {} -> {}",
            list(&old.accepted_tcb_statuses),
            list(&new.accepted_tcb_statuses)
        ));
    }
    if old.allow_debug != new.allow_debug {
        parts.push(format!(
            "debug enclaves {}",
            if new.allow_debug {
                "allowed"
            } else {
                "refused"
            }
        ));
    }
    if old.min_isvsvn != new.min_isvsvn {
        parts.push(format!(
            "minimum ISVSVN {} -> {}",
            old.min_isvsvn.map_or("none".into(), |v| v.to_string()),
            new.min_isvsvn.map_or("none".into(), |v| v.to_string())
        ));
    }
    if old.allow_simulated != new.allow_simulated {
        parts.push(format!(
            "simulated platforms {}",
            if new.allow_simulated {
                "trusted"
            } else {
                "refused"
            }
        ));
    }
    format!(
        "Change the attestation policy of app {app_name}: {}",
        parts.join("; ")
    )
}

/// Step of [`create`] and [`update`]: every field of an app, checked together (cross-field
/// rules included).
pub fn check(app: &App) -> ServiceResult<()> {
    let mut c = Checker::new();
    c.text("name", &app.name, 1, 128, false);
    if let Some(d) = &app.description {
        c.text("description", d, 0, 1024, true);
    }
    c.image("input_image_name", &app.input_image_name);
    c.image("output_image_name", &app.output_image_name);
    c.range("isvprodid", app.isvprodid, 0, 65535);
    c.range("isvsvn", app.isvsvn, 0, 65535);
    c.range("mem_size", app.mem_size, 16, 262_144);
    c.range("threads", app.threads, 1, 4096);
    c.domains("allowed_domains", &app.allowed_domains);
    if let Some(cert) = &app.certificate {
        c.certificate("certificate", cert, &app.allowed_domains);
    }
    c.advanced("advanced_settings", &app.advanced_settings);
    c.labels("labels", &app.labels);
    c.finish()
}

/// Validates and adds an app (WRITER); allowed domains raise a DOMAIN_WHITELIST task. A WRITER's
/// non-default attestation policy is routed like a change ([`policy_route`]): the app starts with
/// the default policy.
pub async fn create(s: &AppState, acct: &Acct, req: AppRequest) -> ServiceResult<App> {
    acct.require(AccessRole::Writer)?;
    let now = s.clock.now();
    let requested = req.advanced_settings.unwrap_or_default();
    let writer_policy = acct.role < AccessRole::Manager && requested != AdvancedSettings::default();
    let app = App {
        app_id: Uuid::new_v4(),
        acct_id: acct.acct_id,
        name: req.name,
        description: req.description.filter(|d| !d.is_empty()),
        input_image_name: req.input_image_name,
        output_image_name: req.output_image_name,
        isvprodid: req.isvprodid,
        isvsvn: req.isvsvn,
        mem_size: req.mem_size,
        threads: req.threads,
        allowed_domains: req.allowed_domains,
        whitelisted_domains: Vec::new(),
        pending_task_id: None,
        pending_policy_task_id: None,
        certificate: req.certificate,
        advanced_settings: requested.clone(),
        labels: req.labels,
        created_at: now,
        updated_at: now,
    };
    check(&app)?;
    if !writer_policy {
        return Ok(s
            .store
            .create_app(&app, &domain_approval(), &acct.actor(), now)
            .await?);
    }
    // Refuse before creating anything when the WRITER's policy cannot even become a task.
    let account = s
        .store
        .account_for_user(acct.acct_id, acct.caller.user_id)
        .await?
        .ok_or(ServiceError::NotFound("account"))?
        .0;
    policy_route(acct.role, account.approval_policy)?;
    let app = App {
        advanced_settings: AdvancedSettings::default(),
        ..app
    };
    let created = s
        .store
        .create_app(&app, &domain_approval(), &acct.actor(), now)
        .await?;
    update(
        s,
        acct,
        created.app_id,
        AppUpdateRequest {
            advanced_settings: Some(requested),
            ..AppUpdateRequest::default()
        },
    )
    .await
}

/// An app's labels after `update`: the new map, or the old labels with the JSON Patch
/// operations applied in order (`add`/`replace` `/KEY` with a string value, `remove` `/KEY`;
/// `replace` and `remove` of a missing label fail). A bad operation names its index.
pub fn updated_labels(
    labels: &BTreeMap<String, String>,
    update: LabelsUpdate,
) -> ServiceResult<BTreeMap<String, String>> {
    let ops = match update {
        LabelsUpdate::Replace(map) => return Ok(map),
        LabelsUpdate::Patch(ops) => ops,
    };
    let mut out = labels.clone();
    for (i, op) in ops.into_iter().enumerate() {
        let key = op
            .path
            .strip_prefix('/')
            .filter(|k| !k.is_empty() && !k.contains('/'))
            .map(|k| k.replace("~1", "/").replace("~0", "~"))
            .ok_or_else(|| ServiceError::invalid(format!("labels[{i}].path"), "must be /KEY"))?;
        match op.op {
            PatchOperation::Add | PatchOperation::Replace => {
                let Some(serde_json::Value::String(value)) = op.value else {
                    return Err(ServiceError::invalid(
                        format!("labels[{i}].value"),
                        "must be a string",
                    ));
                };
                if op.op == PatchOperation::Replace && !out.contains_key(&key) {
                    return Err(ServiceError::invalid(
                        format!("labels[{i}].path"),
                        format!("no label {key:?} to replace"),
                    ));
                }
                out.insert(key, value);
            }
            PatchOperation::Remove => {
                if out.remove(&key).is_none() {
                    return Err(ServiceError::invalid(
                        format!("labels[{i}].path"),
                        format!("no label {key:?} to remove"),
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// Applies a partial update to an app (WRITER), validating the result as a whole; nothing
/// changes when it is invalid. A changed attestation policy is applied, proposed as a
/// POLICY_CHANGE task or refused ([`policy_route`]); the returned app names a pending task in
/// `pending_policy_task_id`.
pub async fn update(
    s: &AppState,
    acct: &Acct,
    app_id: Uuid,
    p: AppUpdateRequest,
) -> ServiceResult<App> {
    acct.require(AccessRole::Writer)?;
    let role = acct.role;
    s.store
        .update_app(
            acct.acct_id,
            app_id,
            &domain_approval(),
            &acct.actor(),
            s.clock.now(),
            move |mut a, approval| {
                let before = a.advanced_settings.clone();
                if let Some(v) = p.name {
                    a.name = v;
                }
                if let Some(v) = p.description {
                    a.description = Some(v).filter(|d| !d.is_empty());
                }
                if let Some(v) = p.input_image_name {
                    a.input_image_name = v;
                }
                if let Some(v) = p.output_image_name {
                    a.output_image_name = v;
                }
                if let Some(v) = p.isvprodid {
                    a.isvprodid = v;
                }
                if let Some(v) = p.isvsvn {
                    a.isvsvn = v;
                }
                if let Some(v) = p.mem_size {
                    a.mem_size = v;
                }
                if let Some(v) = p.threads {
                    a.threads = v;
                }
                if let Some(v) = p.allowed_domains {
                    a.allowed_domains = v;
                }
                if let Some(v) = p.certificate {
                    a.certificate = Some(v);
                }
                if let Some(v) = p.advanced_settings {
                    a.advanced_settings = v;
                }
                if let Some(v) = p.labels {
                    a.labels = updated_labels(&a.labels, v)?;
                }
                check(&a)?;
                let policy = if a.advanced_settings == before {
                    PolicyEdit::Apply
                } else {
                    match policy_route(role, approval)? {
                        PolicyRoute::Apply => PolicyEdit::Apply,
                        PolicyRoute::Propose => {
                            if let Some(pending) = a.pending_policy_task_id {
                                return Err(ServiceError::conflict(
                                    "policy_change_pending",
                                    format!(
                                        "a change of this app's attestation policy is already \
                                         waiting for approval (task {pending}); decide that \
                                         task first"
                                    ),
                                ));
                            }
                            PolicyEdit::Propose {
                                task_id: Uuid::new_v4(),
                                description: proposal_description(
                                    &a.name,
                                    &before,
                                    &a.advanced_settings,
                                ),
                            }
                        }
                    }
                };
                Ok(AppEdit { app: a, policy })
            },
        )
        .await?
}

/// What approving an app's DOMAIN_WHITELIST task does, for approvals made at once under the
/// AUTO_APPROVE policy.
fn domain_approval() -> ccm_store::Effect {
    super::tasks::domain_effect(ccm_api::tasks::ApprovalStatus::Approved)
}

/// The account's apps, by name.
pub async fn list(s: &AppState, acct: &Acct, q: &PageQuery) -> ServiceResult<Page<App>> {
    let req = paging::page_request(q)?;
    Ok(s.store.list_apps(acct.acct_id, &req).await?)
}

/// An app of the account.
pub async fn find(s: &AppState, acct: &Acct, app_id: Uuid) -> ServiceResult<App> {
    s.store
        .get_app(acct.acct_id, app_id)
        .await?
        .ok_or(ServiceError::NotFound("app"))
}

/// An app of the account with the nodes it runs on.
pub async fn get(s: &AppState, acct: &Acct, app_id: Uuid) -> ServiceResult<AppWithNodes> {
    let app = find(s, acct, app_id).await?;
    let nodes = s
        .store
        .app_instances(
            acct.acct_id,
            Some(app_id),
            None,
            s.config.node_stale_after_secs,
            s.clock.now(),
        )
        .await?;
    Ok(AppWithNodes { app, nodes })
}

/// Deletes an app with its images and their tasks (WRITER); the certificates issued for it are
/// revoked ([`super::cascade::app_deleted`]).
pub async fn delete(s: &AppState, acct: &Acct, app_id: Uuid) -> ServiceResult<()> {
    acct.require(AccessRole::Writer)?;
    s.store
        .delete_app(
            acct.acct_id,
            app_id,
            &super::cascade::app_deleted(),
            &acct.actor(),
            s.clock.now(),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_replaced_or_patched_in_order() {
        use ccm_api::registries::PatchDocument;
        let op = |op, path: &str, value: Option<serde_json::Value>| PatchDocument {
            op,
            path: path.into(),
            value,
        };
        let old = BTreeMap::from([("team".to_string(), "web".to_string())]);
        let new = BTreeMap::from([("tier".to_string(), "1".to_string())]);
        assert_eq!(
            updated_labels(&old, LabelsUpdate::Replace(new.clone())).unwrap(),
            new
        );
        let patched = updated_labels(
            &old,
            LabelsUpdate::Patch(vec![
                op(PatchOperation::Add, "/a~1b", Some("x".into())),
                op(PatchOperation::Replace, "/team", Some("ops".into())),
                op(PatchOperation::Remove, "/a~1b", None),
                op(PatchOperation::Add, "/c~0", Some("y".into())),
            ]),
        )
        .unwrap();
        assert_eq!(
            patched,
            BTreeMap::from([
                ("team".to_string(), "ops".to_string()),
                ("c~".to_string(), "y".to_string())
            ])
        );
        for (bad, field) in [
            (
                op(PatchOperation::Replace, "/nope", Some("x".into())),
                "labels[0].path",
            ),
            (op(PatchOperation::Remove, "/nope", None), "labels[0].path"),
            (
                op(PatchOperation::Add, "team", Some("x".into())),
                "labels[0].path",
            ),
            (
                op(PatchOperation::Add, "/a/b", Some("x".into())),
                "labels[0].path",
            ),
            (
                op(PatchOperation::Add, "/a", Some(3.into())),
                "labels[0].value",
            ),
            (op(PatchOperation::Add, "/a", None), "labels[0].value"),
        ] {
            match updated_labels(&old, LabelsUpdate::Patch(vec![bad])) {
                Err(ServiceError::Invalid(f)) => assert_eq!(f[0].field, field),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn policy_changes_need_a_manager_or_a_task() {
        use AccessRole::*;
        use ApprovalPolicy::*;
        assert_eq!(policy_route(Manager, Manual).unwrap(), PolicyRoute::Propose);
        assert_eq!(policy_route(Writer, Manual).unwrap(), PolicyRoute::Propose);
        assert_eq!(
            policy_route(Manager, AutoApprove).unwrap(),
            PolicyRoute::Apply
        );
        let e = policy_route(Writer, AutoApprove).unwrap_err();
        assert!(
            matches!(&e, ServiceError::Forbidden(m) if m.contains("MANAGER")),
            "{e:?}"
        );
        assert!(matches!(
            policy_route(Reader, Manual),
            Err(ServiceError::Forbidden(_))
        ));
    }

    #[test]
    fn simulated_trust_needs_account_and_app() {
        assert!(check_simulated_trust(false, false, false, "a").is_ok());
        assert!(check_simulated_trust(true, true, true, "a").is_ok());
        for (acct, app) in [(false, false), (false, true), (true, false)] {
            let r = check_simulated_trust(true, acct, app, "web").unwrap_err();
            assert_eq!(r.code, RefusalCode::SimulatedNotTrusted);
        }
        let r = check_simulated_trust(true, false, true, "web").unwrap_err();
        assert!(
            r.message.contains("the account does not trust"),
            "{}",
            r.message
        );
    }

    #[test]
    fn app_policy_allows_simulated_only_with_both() {
        let mut settings = AdvancedSettings::default();
        assert!(!app_attest_policy(&settings, true).allows_simulated());
        settings.allow_simulated = true;
        assert!(!app_attest_policy(&settings, false).allows_simulated());
        assert!(app_attest_policy(&settings, true).allows_simulated());
    }

    #[test]
    fn app_policy_carries_statuses_debug_and_min_isvsvn() {
        let settings = AdvancedSettings {
            allow_debug: true,
            accepted_tcb_statuses: vec![TcbStatus::OutOfDate, TcbStatus::Revoked],
            min_isvsvn: Some(7),
            allow_simulated: false,
        };
        let p = app_attest_policy(&settings, false);
        assert_eq!(p.accepted_statuses(), &[ccm_attest::TcbStatus::OutOfDate]);
        let expected = Policy::default()
            .accept_statuses([ccm_attest::TcbStatus::OutOfDate])
            .allow_debug(true)
            .min_isvsvn(7);
        assert_eq!(p, expected);
    }

    #[test]
    fn proposal_description_names_each_change() {
        let old = AdvancedSettings::default();
        let new = AdvancedSettings {
            allow_debug: true,
            accepted_tcb_statuses: vec![TcbStatus::OutOfDate],
            min_isvsvn: Some(3),
            allow_simulated: true,
        };
        let d = proposal_description("web", &old, &new);
        for part in [
            "app web",
            "OutOfDate",
            "debug enclaves allowed",
            "minimum ISVSVN none -> 3",
            "simulated platforms trusted",
        ] {
            assert!(d.contains(part), "{d}");
        }
    }
}
