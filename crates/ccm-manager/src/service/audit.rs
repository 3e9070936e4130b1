//! Reading the hash-chained audit log.

use ccm_api::accounts::AccessRole;
use ccm_api::audit::AuditPage;

use crate::AppState;
use crate::service::ServiceResult;
use crate::service::caller::{Acct, Caller};
use crate::service::validate::Checker;

/// Most entries one page holds.
pub(crate) const MAX_PAGE: i64 = 1000;

/// Whose entries a caller reads: the whole chain, or one account's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Everything,
    Account(uuid::Uuid),
}

/// A system administrator signed in with a session reads the whole chain; anyone else reads the
/// selected account's entries, as its MANAGER.
async fn scope(s: &AppState, caller: Caller) -> ServiceResult<Scope> {
    if caller.administers() {
        return Ok(Scope::Everything);
    }
    let acct = Acct::of(caller, s).await?;
    acct.require(AccessRole::Manager)?;
    Ok(Scope::Account(acct.acct_id))
}

/// The entries after `after` (ascending, at most `limit`, 1 to [`MAX_PAGE`]) the caller may read.
pub(crate) async fn page(
    s: &AppState,
    caller: Caller,
    after: i64,
    limit: i64,
) -> ServiceResult<AuditPage> {
    let mut c = Checker::new();
    c.range("after", after, 0, i64::MAX);
    c.range("limit", limit, 1, MAX_PAGE);
    c.finish()?;
    let acct = match scope(s, caller).await? {
        Scope::Everything => None,
        Scope::Account(id) => Some(id),
    };
    let entries = s.store.list_audit(acct, after, limit).await?;
    let full = i64::try_from(entries.len()).is_ok_and(|n| n == limit);
    let next_after = if full {
        entries.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(AuditPage {
        entries,
        next_after,
        complete_chain: acct.is_none(),
    })
}

/// Entries newest first, before `before` (a `seq`; the newest when absent), at most `limit` (1 to
/// [`MAX_PAGE`]), and whether older ones exist: the whole chain when `everything` (a system
/// administrator with a session only), else the caller's selected account's (MANAGER).
pub(crate) async fn newest(
    s: &AppState,
    acct: &Acct,
    everything: bool,
    before: Option<i64>,
    limit: i64,
) -> ServiceResult<(Vec<ccm_api::audit::AuditEntry>, bool)> {
    let mut c = Checker::new();
    c.range("limit", limit, 1, MAX_PAGE);
    if let Some(b) = before {
        c.range("before", b, 1, i64::MAX);
    }
    c.finish()?;
    let scope = if everything {
        if !acct.caller.administers() {
            return Err(crate::service::ServiceError::Forbidden(
                "the whole manager's audit log is for system administrators".into(),
            ));
        }
        None
    } else {
        acct.require(AccessRole::Manager)?;
        Some(acct.acct_id)
    };
    let mut entries = s.store.list_audit_before(scope, before, limit + 1).await?;
    let more = i64::try_from(entries.len()).is_ok_and(|n| n > limit);
    entries.truncate(usize::try_from(limit).unwrap_or(0));
    Ok((entries, more))
}
