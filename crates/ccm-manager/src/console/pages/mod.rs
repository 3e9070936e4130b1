//! Console pages, one module per area of the navigation.

pub(crate) mod accounts;
pub(crate) mod apps;
pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod certs;
pub(crate) mod collateral;
pub(crate) mod images;
pub(crate) mod nodes;
pub(crate) mod overview;
pub(crate) mod tasks;
pub(crate) mod users;

use serde::Deserialize;

use super::html::{Chrome, Nav};
use super::session::{Authed, InAccount};
use super::{ConsoleError, PAGE_SIZE, PageResult};
use crate::AppState;
use crate::service::{self, ServiceError};

/// `?page=N` (1-based).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PageQuery {
    /// The page, from 1.
    pub(crate) page: Option<i64>,
}

impl PageQuery {
    /// The page number (at least 1) and its row offset; a page beyond any sane list is a 400.
    pub(crate) fn page(&self) -> PageResult<(i64, i64)> {
        let page = self.page.unwrap_or(1);
        if !(1..=1_000_000).contains(&page) {
            return Err(ConsoleError::Api(crate::ApiError::bad_request(
                "invalid_query",
                "page must be between 1 and 1000000",
            )));
        }
        Ok((page, (page - 1) * PAGE_SIZE))
    }

    /// The page number and the list page it shows ([`PAGE_SIZE`] items from its offset).
    pub(crate) fn list(&self) -> PageResult<(i64, ccm_api::list::PageQuery)> {
        let (page, offset) = self.page()?;
        let q = ccm_api::list::PageQuery {
            limit: Some(PAGE_SIZE),
            offset: Some(offset),
            next: None,
        };
        Ok((page, q))
    }
}

/// The first `limit` items of a list.
pub(crate) fn first(limit: i64) -> ccm_api::list::PageQuery {
    ccm_api::list::PageQuery {
        limit: Some(limit),
        ..Default::default()
    }
}

/// The frame of a page in the selected account: its name, the user's role, pending tasks.
pub(crate) async fn chrome(s: &AppState, ia: &InAccount, nav: Nav) -> PageResult<Chrome> {
    let acct = &ia.acct;
    let account = match service::accounts::get(s, &acct.caller, acct.acct_id).await {
        Err(ServiceError::NotFound(_)) => return Err(ConsoleError::NoAccount),
        other => other?,
    };
    Ok(Chrome {
        email: acct.caller.email.clone(),
        account: Some((account.name, acct.role.as_str())),
        pending_tasks: account.totals.pending_tasks,
        csrf: ia.auth.csrf.clone(),
        flash: ia.auth.flash.clone(),
        nav,
    })
}

/// The frame of a page that needs no account (the account list).
pub(crate) async fn chrome_user(s: &AppState, a: &Authed, nav: Nav) -> PageResult<Chrome> {
    let (account, pending) = match crate::auth::Acct::of(a.caller.clone(), s).await {
        Ok(acct) => match service::accounts::get(s, &acct.caller, acct.acct_id).await {
            Ok(account) => (
                Some((account.name, acct.role.as_str())),
                account.totals.pending_tasks,
            ),
            Err(ServiceError::NotFound(_)) => (None, 0),
            Err(e) => return Err(e.into()),
        },
        Err(_) => (None, 0),
    };
    Ok(Chrome {
        email: a.caller.email.clone(),
        account,
        pending_tasks: pending,
        csrf: a.auth.csrf.clone(),
        flash: a.auth.flash.clone(),
        nav,
    })
}
