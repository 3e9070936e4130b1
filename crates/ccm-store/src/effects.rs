//! Writes of a decided effect: what a task decision or a deactivation changes, as the manager's
//! service layer decided it.
//!
//! This module knows no workflow. It is given a [`Subject`] (the object the decision is about)
//! and an [`Effect`] (a list of typed steps) and writes each step, inside the caller's
//! transaction. A step that does not fit its subject, or needs a task and has none, gives
//! [`Error::InvalidState`] and the caller's transaction is rolled back.

use std::collections::BTreeSet;

use ccm_api::apps::AdvancedSettings;
use ccm_api::builds::BuildStatusType;
use ccm_api::nodes::NodeStatusType;
use sqlx::AnyConnection;
use uuid::Uuid;

use crate::util::{json, to_json};
use crate::{Actor, Error, Result};

/// The object a decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// An image (a build).
    Image(Uuid),
    /// An app (its domains or its attestation policy).
    App(Uuid),
    /// A node.
    Node(Uuid),
    /// A certificate request (the certificate row's id).
    CertificateRequest(Uuid),
}

impl Subject {
    /// The `certificates` column that names this subject, for revocations.
    fn certificate_column(self) -> Option<(&'static str, Uuid)> {
        match self {
            Self::Image(id) => Some(("build_id", id)),
            Self::App(id) => Some(("app_id", id)),
            Self::Node(id) => Some(("node_id", id)),
            Self::CertificateRequest(_) => None,
        }
    }
}

/// One write of an [`Effect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EffectStep {
    /// The image gets this whitelisting status and stops waiting for the task.
    SetImageStatus(BuildStatusType),
    /// The task's domains that the app still requests become whitelisted; the app stops
    /// waiting for the task.
    WhitelistTaskDomains,
    /// The task's domains that are not whitelisted are no longer requested by the app; the app
    /// stops waiting for the task.
    WithdrawTaskDomains,
    /// The node gets status `to` (only if its status is `from`, when given) and stops waiting
    /// for the task.
    SetNodeStatus {
        /// The new status.
        to: NodeStatusType,
        /// The status the node must have for the change to happen.
        from: Option<NodeStatusType>,
    },
    /// The node's own certificates (its mTLS identity) are revoked.
    RevokeNodeIdentity,
    /// The subject's issued certificates are revoked (their keys denied from then on) and its
    /// pending requests rejected with their tasks closed, all with this reason.
    RevokeCertificates {
        /// The reason recorded on each certificate.
        reason: String,
    },
    /// The task's pending certificate request is rejected with this reason.
    RejectCertificateRequest {
        /// The reason recorded on the certificate.
        reason: String,
    },
    /// The app gets these attestation settings (the task's proposal).
    SetAppPolicy(AdvancedSettings),
    /// The task's policy proposal is discarded; the app keeps its settings.
    DiscardAppPolicy,
}

impl EffectStep {
    fn name(&self) -> &'static str {
        match self {
            Self::SetImageStatus(_) => "SetImageStatus",
            Self::WhitelistTaskDomains => "WhitelistTaskDomains",
            Self::WithdrawTaskDomains => "WithdrawTaskDomains",
            Self::SetNodeStatus { .. } => "SetNodeStatus",
            Self::RevokeNodeIdentity => "RevokeNodeIdentity",
            Self::RevokeCertificates { .. } => "RevokeCertificates",
            Self::RejectCertificateRequest { .. } => "RejectCertificateRequest",
            Self::SetAppPolicy(_) => "SetAppPolicy",
            Self::DiscardAppPolicy => "DiscardAppPolicy",
        }
    }
}

/// What a decision changes, in order: written in one transaction with the decision itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effect {
    /// The writes, in order.
    pub steps: Vec<EffectStep>,
}

impl Effect {
    /// An effect of these steps.
    pub fn of(steps: impl IntoIterator<Item = EffectStep>) -> Self {
        Self {
            steps: steps.into_iter().collect(),
        }
    }
}

/// The task a decision settles, for the steps that refer to it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TaskRef<'a> {
    pub task_id: Uuid,
    pub domains: &'a [String],
}

fn misfit(step: &EffectStep, subject: Subject) -> Error {
    Error::InvalidState(format!("{} does not apply to {subject:?}", step.name()))
}

fn needs_task<'a>(step: &EffectStep, task: Option<TaskRef<'a>>) -> Result<TaskRef<'a>> {
    task.ok_or_else(|| Error::InvalidState(format!("{} needs a task", step.name())))
}

/// Writes `effect` about `subject` on `conn` (inside the caller's transaction).
pub(crate) async fn write(
    conn: &mut AnyConnection,
    subject: Subject,
    task: Option<TaskRef<'_>>,
    effect: &Effect,
    actor: &Actor,
    now: i64,
) -> Result<()> {
    for step in &effect.steps {
        write_step(conn, subject, task, step, actor, now).await?;
    }
    Ok(())
}

async fn write_step(
    conn: &mut AnyConnection,
    subject: Subject,
    task: Option<TaskRef<'_>>,
    step: &EffectStep,
    actor: &Actor,
    now: i64,
) -> Result<()> {
    match (step, subject) {
        (EffectStep::SetImageStatus(status), Subject::Image(id)) => {
            set_image_status(conn, id, *status, task.map(|t| t.task_id), now).await
        }
        (EffectStep::WhitelistTaskDomains, Subject::App(id)) => {
            change_domains(
                conn,
                id,
                needs_task(step, task)?,
                DomainChange::Whitelist,
                now,
            )
            .await
        }
        (EffectStep::WithdrawTaskDomains, Subject::App(id)) => {
            change_domains(
                conn,
                id,
                needs_task(step, task)?,
                DomainChange::Withdraw,
                now,
            )
            .await
        }
        (EffectStep::SetNodeStatus { to, from }, Subject::Node(id)) => {
            set_node_status(conn, id, *to, *from, task.map(|t| t.task_id), now).await
        }
        (EffectStep::RevokeNodeIdentity, Subject::Node(id)) => {
            crate::nodes::revoke_node_identity(conn, id, now).await
        }
        (EffectStep::RevokeCertificates { reason }, _) => {
            let (column, id) = subject
                .certificate_column()
                .ok_or_else(|| misfit(step, subject))?;
            crate::certificates::revoke_where(conn, column, &id.to_string(), reason, now).await
        }
        (EffectStep::RejectCertificateRequest { reason }, Subject::CertificateRequest(_)) => {
            let task = needs_task(step, task)?;
            crate::certificates::reject_for_task(conn, task.task_id, reason, now).await
        }
        (EffectStep::SetAppPolicy(settings), Subject::App(id)) => {
            let task = needs_task(step, task)?;
            crate::apps::settle_policy_change(conn, task.task_id, id, Some(settings), actor, now)
                .await
        }
        (EffectStep::DiscardAppPolicy, Subject::App(id)) => {
            let task = needs_task(step, task)?;
            crate::apps::settle_policy_change(conn, task.task_id, id, None, actor, now).await
        }
        _ => Err(misfit(step, subject)),
    }
}

async fn set_image_status(
    conn: &mut AnyConnection,
    build_id: Uuid,
    status: BuildStatusType,
    task_id: Option<Uuid>,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE builds SET status = $1, status_updated_at = $2, updated_at = $2, \
         pending_task_id = CASE WHEN pending_task_id = $3 THEN NULL ELSE pending_task_id END \
         WHERE build_id = $4",
    )
    .bind(status.as_str())
    .bind(now)
    .bind(task_id.map(|t| t.to_string()).unwrap_or_default())
    .bind(build_id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(Clone, Copy)]
enum DomainChange {
    Whitelist,
    Withdraw,
}

async fn change_domains(
    conn: &mut AnyConnection,
    app_id: Uuid,
    task: TaskRef<'_>,
    change: DomainChange,
    now: i64,
) -> Result<()> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT allowed_domains, whitelisted_domains FROM apps WHERE app_id = $1")
            .bind(app_id.to_string())
            .fetch_optional(&mut *conn)
            .await?;
    let Some((allowed, whitelisted)) = row else {
        return Ok(());
    };
    let mut allowed: Vec<String> = json("apps.allowed_domains", &allowed)?;
    let mut whitelisted: BTreeSet<String> = json("apps.whitelisted_domains", &whitelisted)?;
    let domains = task.domains;
    match change {
        DomainChange::Whitelist => {
            whitelisted.extend(domains.iter().filter(|d| allowed.contains(d)).cloned());
        }
        DomainChange::Withdraw => {
            allowed.retain(|d| whitelisted.contains(d) || !domains.contains(d));
        }
    }
    let whitelisted: Vec<String> = whitelisted.into_iter().collect();
    sqlx::query(
        "UPDATE apps SET allowed_domains = $1, whitelisted_domains = $2, updated_at = $3, \
         pending_task_id = CASE WHEN pending_task_id = $4 THEN NULL ELSE pending_task_id END \
         WHERE app_id = $5",
    )
    .bind(to_json("apps.allowed_domains", &allowed)?)
    .bind(to_json("apps.whitelisted_domains", &whitelisted)?)
    .bind(now)
    .bind(task.task_id.to_string())
    .bind(app_id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn set_node_status(
    conn: &mut AnyConnection,
    node_id: Uuid,
    to: NodeStatusType,
    from: Option<NodeStatusType>,
    task_id: Option<Uuid>,
    now: i64,
) -> Result<()> {
    const SET: &str = "UPDATE nodes SET status = $1, status_updated_at = $2, \
         pending_task_id = CASE WHEN pending_task_id = $3 THEN NULL ELSE pending_task_id END \
         WHERE node_id = $4";
    let sql = match from {
        Some(_) => format!("{SET} AND status = $5"),
        None => SET.to_string(),
    };
    let mut q = sqlx::query(&sql)
        .bind(to.as_str())
        .bind(now)
        .bind(task_id.map(|t| t.to_string()).unwrap_or_default())
        .bind(node_id.to_string());
    if let Some(from) = from {
        q = q.bind(from.as_str());
    }
    q.execute(&mut *conn).await?;
    Ok(())
}
