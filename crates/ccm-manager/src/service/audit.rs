//! Reading the hash-chained audit log.

use ccm_api::accounts::AccessRole;
use ccm_api::audit::AuditPage;

use crate::AppState;
use crate::service::ServiceResult;
use crate::service::caller::{Acct, Caller, CallerAuth};
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
    if caller.is_sysadmin && matches!(caller.auth, CallerAuth::Session { .. }) {
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
