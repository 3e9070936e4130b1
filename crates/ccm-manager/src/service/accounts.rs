//! Accounts: membership and the caller's effective role, listing, creation with the zone CA,
//! settings (name, approval policy, trust in simulated platforms), deletion, and the account a
//! session works in.

use ccm_api::accounts::{
    AccessRole, Account, AccountRequest, AccountUpdateRequest, ApprovalPolicy, ZoneCaKeyType,
};
use ccm_api::list::PageQuery;
use ccm_pki::{CaKeyType, ZoneCa};
use ccm_store::{AccountRecord, NewAccount, NewZone, Page, SessionRecord};
use uuid::Uuid;

use super::{ServiceError, ServiceResult, blocking, paging};
use crate::AppState;
use crate::secrets::zone_key_context;
use crate::service::caller::{Caller, CallerAuth, require_role};
use crate::service::validate::Checker;

/// Step of every account lookup: an API key sees only its own account.
pub fn key_may_see(auth: &CallerAuth, acct_id: Uuid) -> bool {
    match auth {
        CallerAuth::ApiKey(k) => k.acct_id == acct_id,
        CallerAuth::Session { .. } => true,
    }
}

/// Step of every account lookup: an API key acts with at most its own role.
pub fn effective_role(auth: &CallerAuth, member_role: AccessRole) -> AccessRole {
    match auth {
        CallerAuth::ApiKey(k) => member_role.min(k.role),
        CallerAuth::Session { .. } => member_role,
    }
}

/// The account and the caller's effective role in it; not found when the caller is no member
/// (or, for an API key, it is not the key's account).
pub async fn member(
    s: &AppState,
    caller: &Caller,
    acct_id: Uuid,
) -> ServiceResult<(AccountRecord, AccessRole)> {
    if !key_may_see(&caller.auth, acct_id) {
        return Err(ServiceError::NotFound("account"));
    }
    let (rec, role) = s
        .store
        .account_for_user(acct_id, caller.user_id)
        .await?
        .ok_or(ServiceError::NotFound("account"))?;
    Ok((rec, effective_role(&caller.auth, role)))
}

/// The account as the API shows it to a caller with `role`.
pub async fn view(s: &AppState, rec: AccountRecord, role: AccessRole) -> ServiceResult<Account> {
    let totals = s.store.account_counts(rec.acct_id).await?;
    Ok(Account {
        acct_id: rec.acct_id,
        name: rec.name,
        created_at: rec.created_at,
        updated_at: rec.updated_at,
        roles: vec![role],
        status: "ACTIVE".into(),
        approval_policy: rec.approval_policy,
        allow_simulated: rec.allow_simulated,
        zone_id: rec.zone_id,
        totals,
    })
}

/// The caller's accounts (an API key's: its own).
pub async fn list(s: &AppState, caller: &Caller, q: &PageQuery) -> ServiceResult<Page<Account>> {
    let req = paging::page_request(q)?;
    let mut page = s
        .store
        .accounts_for_user(caller.user_id, caller.key_account(), &req)
        .await?;
    let mut accounts = Vec::with_capacity(page.items.len());
    for (rec, role) in std::mem::take(&mut page.items) {
        let role = effective_role(&caller.auth, role);
        accounts.push(view(s, rec, role).await?);
    }
    Ok(page.with_items(accounts))
}

/// An account the caller belongs to.
pub async fn get(s: &AppState, caller: &Caller, acct_id: Uuid) -> ServiceResult<Account> {
    let (rec, role) = member(s, caller, acct_id).await?;
    view(s, rec, role).await
}

/// Step of [`create`] and [`update`]: an account name is 1 to 128 characters on one line.
pub fn check_name(name: Option<&str>) -> ServiceResult<()> {
    let mut c = Checker::new();
    if let Some(n) = name {
        c.text("name", n, 1, 128, false);
    }
    c.finish()
}

/// Step of [`create`]: the zone CA's common name (the account name, cut to 40 characters).
pub fn zone_ca_name(account_name: &str) -> String {
    format!(
        "ccm zone CA {}",
        account_name.chars().take(40).collect::<String>()
    )
}

/// Step of [`create`]: the CA key algorithm of the requested key type.
pub fn ca_key_type(t: ZoneCaKeyType) -> CaKeyType {
    match t {
        ZoneCaKeyType::EcP256 => CaKeyType::P256,
        ZoneCaKeyType::EcP384 => CaKeyType::P384,
    }
}

/// Validates and creates an account with its zone and zone CA (key sealed with the master key);
/// the caller (a user in a session, not an API key) becomes its MANAGER. Simulated platforms
/// are refused unless the request turns `allow_simulated` on; approvals are manual unless it
/// names another policy.
pub async fn create(
    s: &AppState,
    caller: &Caller,
    req: AccountRequest,
) -> ServiceResult<AccountRecord> {
    caller.session()?;
    check_name(Some(&req.name))?;
    let now = s.clock.now();
    let key_type = req.zone_ca_key_type.unwrap_or_default();
    let zone_id = Uuid::new_v4();
    let (cn, algorithm) = (zone_ca_name(&req.name), ca_key_type(key_type));
    let validity = s.config.zone_ca_validity_days;
    let ca = blocking(move || ZoneCa::generate(&cn, algorithm, now, validity))
        .await?
        .map_err(crate::Error::from)?;
    let sealed = s
        .master_key
        .seal(&zone_key_context(zone_id), &ca.key_pkcs8_der())?;
    let account = NewAccount {
        acct_id: Uuid::new_v4(),
        name: req.name.clone(),
        approval_policy: req.approval_policy.unwrap_or(ApprovalPolicy::Manual),
        allow_simulated: req.allow_simulated.unwrap_or(false),
        creator: caller.user_id,
        zone: NewZone {
            zone_id,
            name: format!("{} zone", req.name),
            ca_cert_pem: ca.certificate_pem().to_string(),
            ca_key_sealed: sealed,
            ca_key_type: key_type,
        },
    };
    Ok(s.store
        .create_account(&account, &caller.actor(), now)
        .await?)
}

/// Renames an account, changes its approval policy or its trust in simulated platforms
/// (MANAGER; audited by the store).
pub async fn update(
    s: &AppState,
    caller: &Caller,
    acct_id: Uuid,
    req: AccountUpdateRequest,
) -> ServiceResult<Account> {
    let (_, role) = member(s, caller, acct_id).await?;
    require_role(role, AccessRole::Manager)?;
    check_name(req.name.as_deref())?;
    let rec = s
        .store
        .update_account(
            acct_id,
            req.name.as_deref(),
            req.approval_policy,
            req.allow_simulated,
            &caller.actor(),
            s.clock.now(),
        )
        .await?;
    view(s, rec, role).await
}

/// The account, when the caller may delete it: a MANAGER of it (not found for non-members).
pub async fn deletable(
    s: &AppState,
    caller: &Caller,
    acct_id: Uuid,
) -> ServiceResult<AccountRecord> {
    let (rec, role) = member(s, caller, acct_id).await?;
    if role != AccessRole::Manager {
        return Err(ServiceError::Forbidden(
            "deleting an account needs the MANAGER role in it".into(),
        ));
    }
    Ok(rec)
}

/// Deletes an account and everything it owns, in one transaction ([`deletable`] by the caller).
pub async fn delete(s: &AppState, caller: &Caller, acct_id: Uuid) -> ServiceResult<()> {
    deletable(s, caller, acct_id).await?;
    s.store
        .delete_account(acct_id, &caller.actor(), s.clock.now())
        .await?;
    Ok(())
}

/// Selects the account a session works in; not found unless the user is a member.
pub async fn select(s: &AppState, caller: &Caller, acct_id: Uuid) -> ServiceResult<SessionRecord> {
    let (session, _) = caller.session()?;
    if s.store.role_of(caller.user_id, acct_id).await?.is_none() {
        return Err(ServiceError::NotFound("account"));
    }
    Ok(s.store
        .select_account(session.session_id, acct_id, &caller.actor(), s.clock.now())
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_name_is_checked() {
        assert!(check_name(None).is_ok());
        assert!(check_name(Some("acme")).is_ok());
        for bad in ["", "two\nlines"] {
            assert!(
                matches!(check_name(Some(bad)), Err(ServiceError::Invalid(f)) if f[0].field == "name"),
                "{bad:?}"
            );
        }
        assert!(check_name(Some(&"x".repeat(129))).is_err());
    }

    #[test]
    fn the_zone_ca_name_keeps_40_characters_of_the_account_name() {
        assert_eq!(zone_ca_name("acme"), "ccm zone CA acme");
        let long = "é".repeat(50);
        assert_eq!(
            zone_ca_name(&long),
            format!("ccm zone CA {}", "é".repeat(40))
        );
    }

    fn key(acct_id: Uuid, role: AccessRole) -> CallerAuth {
        CallerAuth::ApiKey(ccm_api::auth::ApiKey {
            api_key_id: Uuid::new_v4(),
            name: "ci".into(),
            acct_id,
            user_id: Uuid::new_v4(),
            role,
            created_at: 0,
            expires_at: None,
        })
    }

    #[test]
    fn an_api_key_sees_only_its_account_with_at_most_its_role() {
        let (mine, other) = (Uuid::new_v4(), Uuid::new_v4());
        let k = key(mine, AccessRole::Writer);
        assert!(key_may_see(&k, mine));
        assert!(!key_may_see(&k, other));
        assert_eq!(effective_role(&k, AccessRole::Manager), AccessRole::Writer);
        assert_eq!(effective_role(&k, AccessRole::Reader), AccessRole::Reader);
    }

    #[test]
    fn each_key_type_has_its_algorithm() {
        assert!(matches!(
            ca_key_type(ZoneCaKeyType::EcP256),
            CaKeyType::P256
        ));
        assert!(matches!(
            ca_key_type(ZoneCaKeyType::EcP384),
            CaKeyType::P384
        ));
    }

    use crate::service::testing::Fixture;

    #[tokio::test]
    async fn a_manager_sets_simulated_trust_and_a_writer_cannot() {
        let f = Fixture::new().await;
        let alice = f.user("alice@example.com").await;
        let mgr = f.account(&alice, "acme", ApprovalPolicy::Manual).await;
        let writer = f.member(&mgr, "w@example.com", AccessRole::Writer).await;
        let account = get(&f.s, &mgr.caller, mgr.acct_id).await.unwrap();
        assert!(!account.allow_simulated, "off by default");
        let on = || AccountUpdateRequest {
            allow_simulated: Some(true),
            ..AccountUpdateRequest::default()
        };
        assert!(matches!(
            update(&f.s, &writer.caller, mgr.acct_id, on()).await,
            Err(ServiceError::Forbidden(_))
        ));
        assert!(
            !get(&f.s, &writer.caller, mgr.acct_id)
                .await
                .unwrap()
                .allow_simulated
        );
        let updated = update(&f.s, &mgr.caller, mgr.acct_id, on()).await.unwrap();
        assert!(updated.allow_simulated);
        assert_eq!(updated.roles, vec![AccessRole::Manager]);
        let bad = AccountUpdateRequest {
            name: Some(String::new()),
            ..AccountUpdateRequest::default()
        };
        assert!(matches!(
            update(&f.s, &mgr.caller, mgr.acct_id, bad).await,
            Err(ServiceError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn non_members_see_no_account_and_only_managers_delete() {
        let f = Fixture::new().await;
        let alice = f.user("alice@example.com").await;
        let mgr = f.account(&alice, "acme", ApprovalPolicy::Manual).await;
        let writer = f.member(&mgr, "w@example.com", AccessRole::Writer).await;
        let bob = f.user("bob@example.com").await;
        assert!(matches!(
            get(&f.s, &bob, mgr.acct_id).await,
            Err(ServiceError::NotFound("account"))
        ));
        assert!(matches!(
            select(&f.s, &bob, mgr.acct_id).await,
            Err(ServiceError::NotFound("account"))
        ));
        assert!(
            list(&f.s, &bob, &PageQuery::default())
                .await
                .unwrap()
                .items
                .is_empty()
        );
        assert_eq!(
            list(&f.s, &writer.caller, &PageQuery::default())
                .await
                .unwrap()
                .items[0]
                .roles,
            vec![AccessRole::Writer]
        );
        assert!(matches!(
            delete(&f.s, &bob, mgr.acct_id).await,
            Err(ServiceError::NotFound("account"))
        ));
        assert!(matches!(
            delete(&f.s, &writer.caller, mgr.acct_id).await,
            Err(ServiceError::Forbidden(_))
        ));
        delete(&f.s, &mgr.caller, mgr.acct_id).await.unwrap();
        assert!(
            list(&f.s, &alice, &PageQuery::default())
                .await
                .unwrap()
                .items
                .is_empty()
        );
    }

    #[tokio::test]
    async fn an_api_key_creates_no_account() {
        let f = Fixture::new().await;
        let alice = f.user("alice@example.com").await;
        let mgr = f.account(&alice, "acme", ApprovalPolicy::Manual).await;
        let keyed = Caller {
            auth: key(mgr.acct_id, AccessRole::Manager),
            ..alice.clone()
        };
        let req = AccountRequest {
            name: "via key".into(),
            approval_policy: None,
            zone_ca_key_type: None,
            allow_simulated: None,
        };
        assert!(matches!(
            create(&f.s, &keyed, req).await,
            Err(ServiceError::Forbidden(_))
        ));
        assert_eq!(
            list(&f.s, &alice, &PageQuery::default())
                .await
                .unwrap()
                .items
                .len(),
            1
        );
    }
}
