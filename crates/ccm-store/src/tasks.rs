//! Approval tasks: creation (with the account's approval policy), decisions and their effects.

use std::collections::{BTreeSet, HashMap};

use ccm_api::accounts::ApprovalPolicy;
use ccm_api::tasks::{
    ApprovalInfo, ApprovalStatus, RequesterInfo, Task, TaskStatus, TaskStatusType, TaskType,
};
use serde_json::json;
use sqlx::AnyConnection;
use uuid::Uuid;

use crate::util::{enum_value, json, opt_uuid, to_json, uuid};
use crate::{Actor, Error, Result, Store, audit};

/// Filters for [`Store::list_tasks`].
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only tasks in this status.
    pub status: Option<TaskStatusType>,
    /// Only tasks of this type.
    pub task_type: Option<TaskType>,
    /// Only tasks about this object.
    pub entity_id: Option<Uuid>,
    /// At most this many (newest first).
    pub limit: i64,
    /// Skip this many.
    pub offset: i64,
}

pub(crate) struct NewTask<'a> {
    pub acct_id: Uuid,
    pub task_id: Uuid,
    pub entity_id: Uuid,
    pub task_type: TaskType,
    pub description: String,
    pub requester: &'a Actor,
    pub domains_added: Vec<String>,
    /// JSON of what the task proposes (POLICY_CHANGE: the app's new `advanced_settings`).
    pub proposal: Option<String>,
}

/// Inserts a task. Under the AUTO_APPROVE policy it is approved at once (by `system`) and its
/// effect applied; returns whether that happened. The entity must already exist.
pub(crate) async fn create(conn: &mut AnyConnection, t: NewTask<'_>, now: i64) -> Result<bool> {
    let (policy,): (String,) =
        sqlx::query_as("SELECT approval_policy FROM accounts WHERE acct_id = $1")
            .bind(t.acct_id.to_string())
            .fetch_one(&mut *conn)
            .await?;
    let auto = enum_value("accounts.approval_policy", &policy, ApprovalPolicy::parse)?
        == ApprovalPolicy::AutoApprove;
    let status = if auto {
        TaskStatusType::Success
    } else {
        TaskStatusType::Inprogress
    };
    sqlx::query(
        "INSERT INTO tasks (task_id, acct_id, entity_id, task_type, status, description, \
         requester_user_id, requester_name, requester_type, domains_added, created_at, status_updated_at, \
         proposal) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'USER', $9, $10, $10, $11)",
    )
    .bind(t.task_id.to_string())
    .bind(t.acct_id.to_string())
    .bind(t.entity_id.to_string())
    .bind(t.task_type.as_str())
    .bind(status.as_str())
    .bind(&t.description)
    .bind(t.requester.user_id.map(|u| u.to_string()))
    .bind(&t.requester.name)
    .bind(to_json("tasks.domains_added", &t.domains_added)?)
    .bind(now)
    .bind(&t.proposal)
    .execute(&mut *conn)
    .await?;
    audit::append(
        conn,
        now,
        t.requester,
        Some(t.acct_id),
        "task.create",
        "task",
        Some(t.task_id),
        json!({"task_type": t.task_type.as_str(), "entity_id": t.entity_id, "domains_added": t.domains_added}),
    )
    .await?;
    if auto {
        let system = Actor::system();
        record_decision(
            conn,
            t.task_id,
            &system,
            ApprovalStatus::Approved,
            None,
            now,
        )
        .await?;
        apply_effect(
            conn,
            t.task_type,
            t.task_id,
            t.entity_id,
            ApprovalStatus::Approved,
            &t.domains_added,
            now,
        )
        .await?;
        audit::append(
            conn,
            now,
            &system,
            Some(t.acct_id),
            "task.approve",
            "task",
            Some(t.task_id),
            json!({"policy": "AUTO_APPROVE", "entity_id": t.entity_id}),
        )
        .await?;
    }
    Ok(auto)
}

async fn record_decision(
    conn: &mut AnyConnection,
    task_id: Uuid,
    actor: &Actor,
    decision: ApprovalStatus,
    reason: Option<&str>,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO task_approvals (task_id, user_id, user_name, status, denial_reason, decided_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(task_id.to_string())
    .bind(actor.user_id.map(|u| u.to_string()))
    .bind(&actor.name)
    .bind(decision.as_str())
    .bind(reason)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Applies a decision to the task's object.
async fn apply_effect(
    conn: &mut AnyConnection,
    task_type: TaskType,
    task_id: Uuid,
    entity_id: Uuid,
    decision: ApprovalStatus,
    domains: &[String],
    now: i64,
) -> Result<()> {
    match task_type {
        TaskType::BuildWhitelist => {
            let status = match decision {
                ApprovalStatus::Approved => "WHITELISTED",
                ApprovalStatus::Denied => "REJECTED",
            };
            sqlx::query(
                "UPDATE builds SET status = $1, status_updated_at = $2, updated_at = $2, \
                 pending_task_id = CASE WHEN pending_task_id = $3 THEN NULL ELSE pending_task_id END \
                 WHERE build_id = $4",
            )
            .bind(status)
            .bind(now)
            .bind(task_id.to_string())
            .bind(entity_id.to_string())
            .execute(&mut *conn)
            .await?;
            if decision == ApprovalStatus::Denied {
                crate::certificates::revoke_where(
                    conn,
                    "build_id",
                    &entity_id.to_string(),
                    "the image was rejected",
                    now,
                )
                .await?;
            }
        }
        TaskType::DomainWhitelist => {
            let row: Option<(String, String)> = sqlx::query_as(
                "SELECT allowed_domains, whitelisted_domains FROM apps WHERE app_id = $1",
            )
            .bind(entity_id.to_string())
            .fetch_optional(&mut *conn)
            .await?;
            let Some((allowed, whitelisted)) = row else {
                return Ok(());
            };
            let mut allowed: Vec<String> = json("apps.allowed_domains", &allowed)?;
            let mut whitelisted: BTreeSet<String> = json("apps.whitelisted_domains", &whitelisted)?;
            match decision {
                ApprovalStatus::Approved => {
                    whitelisted.extend(domains.iter().filter(|d| allowed.contains(d)).cloned());
                }
                ApprovalStatus::Denied => {
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
            .bind(task_id.to_string())
            .bind(entity_id.to_string())
            .execute(&mut *conn)
            .await?;
        }
        TaskType::NodeAttestation => match decision {
            ApprovalStatus::Approved => {
                sqlx::query(
                    "UPDATE nodes SET status = 'PROVISIONED', status_updated_at = $1, pending_task_id = NULL \
                     WHERE node_id = $2 AND status = 'INPROGRESS'",
                )
                .bind(now)
                .bind(entity_id.to_string())
                .execute(&mut *conn)
                .await?;
            }
            ApprovalStatus::Denied => {
                sqlx::query(
                    "UPDATE nodes SET status = 'DEACTIVATED', status_updated_at = $1, pending_task_id = NULL \
                     WHERE node_id = $2",
                )
                .bind(now)
                .bind(entity_id.to_string())
                .execute(&mut *conn)
                .await?;
                crate::nodes::revoke_node_certificates(
                    conn,
                    entity_id,
                    "the node's attestation was denied",
                    now,
                )
                .await?;
            }
        },
        TaskType::PolicyChange => {
            // Its effect is decided by the manager's service layer ([`TaskEffect`]); a policy
            // change is never applied without that decision.
            return Err(Error::InvalidState(
                "a policy change is decided through the manager's task service".into(),
            ));
        }
        TaskType::CertificateIssuance => match decision {
            ApprovalStatus::Approved => {
                return Err(Error::InvalidState(
                    "a certificate is issued when its image and domains are approved; approve \
                     those tasks instead"
                        .into(),
                ));
            }
            ApprovalStatus::Denied => {
                crate::certificates::reject_for_task(
                    conn,
                    task_id,
                    "the certificate request was denied",
                    now,
                )
                .await?;
            }
        },
    }
    Ok(())
}

/// The effect of a decision on a task, as the manager's service layer decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEffect {
    /// The store's own effect for the task's type (images, domains, nodes, certificates).
    ByType,
    /// POLICY_CHANGE approved: the app gets these settings.
    SetAppPolicy(ccm_api::apps::AdvancedSettings),
    /// POLICY_CHANGE denied: the proposal is discarded and the app keeps its settings.
    DiscardAppPolicy,
}

#[derive(sqlx::FromRow)]
struct TaskRow {
    task_id: String,
    acct_id: String,
    entity_id: String,
    task_type: String,
    status: String,
    description: String,
    requester_user_id: Option<String>,
    requester_name: String,
    requester_type: String,
    domains_added: String,
    created_at: i64,
    status_updated_at: i64,
    proposal: Option<String>,
}

const TASK_COLS: &str = "task_id, acct_id, entity_id, task_type, status, description, requester_user_id, \
     requester_name, requester_type, domains_added, created_at, status_updated_at, proposal";

#[derive(sqlx::FromRow)]
struct ApprovalRow {
    task_id: String,
    user_id: Option<String>,
    user_name: String,
    status: String,
    denial_reason: Option<String>,
    decided_at: i64,
}

impl ApprovalRow {
    fn into_info(self) -> Result<(Uuid, ApprovalInfo)> {
        Ok((
            uuid("task_approvals.task_id", &self.task_id)?,
            ApprovalInfo {
                user_id: opt_uuid("task_approvals.user_id", self.user_id.as_deref())?,
                user_name: self.user_name,
                status: enum_value("task_approvals.status", &self.status, ApprovalStatus::parse)?,
                denial_reason: self.denial_reason,
                decided_at: self.decided_at,
            },
        ))
    }
}

impl TaskRow {
    fn into_task(self, approvals: Vec<ApprovalInfo>) -> Result<Task> {
        Ok(Task {
            task_id: uuid("tasks.task_id", &self.task_id)?,
            acct_id: uuid("tasks.acct_id", &self.acct_id)?,
            entity_id: uuid("tasks.entity_id", &self.entity_id)?,
            task_type: enum_value("tasks.task_type", &self.task_type, TaskType::parse)?,
            status: TaskStatus {
                created_at: self.created_at,
                status_updated_at: self.status_updated_at,
                status: enum_value("tasks.status", &self.status, TaskStatusType::parse)?,
            },
            requester_info: RequesterInfo {
                user_id: opt_uuid("tasks.requester_user_id", self.requester_user_id.as_deref())?,
                requester_name: self.requester_name,
                requester_type: self.requester_type,
            },
            description: self.description,
            approvals,
            domains_added: json("tasks.domains_added", &self.domains_added)?,
            proposed_policy: self
                .proposal
                .as_deref()
                .map(|p| json("tasks.proposal", p))
                .transpose()?,
        })
    }
}

async fn load_task(conn: &mut AnyConnection, acct_id: Uuid, task_id: Uuid) -> Result<Option<Task>> {
    let row: Option<TaskRow> = sqlx::query_as(&format!(
        "SELECT {TASK_COLS} FROM tasks WHERE task_id = $1 AND acct_id = $2"
    ))
    .bind(task_id.to_string())
    .bind(acct_id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let approvals: Vec<ApprovalRow> = sqlx::query_as(
        "SELECT task_id, user_id, user_name, status, denial_reason, decided_at FROM task_approvals \
         WHERE task_id = $1 ORDER BY decided_at",
    )
    .bind(task_id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let approvals = approvals
        .into_iter()
        .map(|a| a.into_info().map(|(_, a)| a))
        .collect::<Result<_>>()?;
    row.into_task(approvals).map(Some)
}

impl Store {
    /// Lists an account's tasks, newest first.
    pub async fn list_tasks(&self, acct_id: Uuid, f: &TaskFilter) -> Result<Vec<Task>> {
        let mut sql = format!("SELECT {TASK_COLS} FROM tasks WHERE acct_id = $1");
        let mut binds: Vec<String> = vec![acct_id.to_string()];
        if let Some(s) = f.status {
            binds.push(s.as_str().to_string());
            sql.push_str(&format!(" AND status = ${}", binds.len()));
        }
        if let Some(t) = f.task_type {
            binds.push(t.as_str().to_string());
            sql.push_str(&format!(" AND task_type = ${}", binds.len()));
        }
        if let Some(e) = f.entity_id {
            binds.push(e.to_string());
            sql.push_str(&format!(" AND entity_id = ${}", binds.len()));
        }
        sql.push_str(&format!(
            " ORDER BY created_at DESC, task_id LIMIT ${} OFFSET ${}",
            binds.len() + 1,
            binds.len() + 2
        ));
        let mut q = sqlx::query_as::<_, TaskRow>(&sql);
        for b in &binds {
            q = q.bind(b);
        }
        let rows = q.bind(f.limit).bind(f.offset).fetch_all(&self.pool).await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let approvals: Vec<ApprovalRow> = sqlx::query_as(
            "SELECT a.task_id, a.user_id, a.user_name, a.status, a.denial_reason, a.decided_at \
             FROM task_approvals a JOIN tasks t ON t.task_id = a.task_id WHERE t.acct_id = $1 \
             ORDER BY a.decided_at",
        )
        .bind(acct_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut by_task: HashMap<Uuid, Vec<ApprovalInfo>> = HashMap::new();
        for a in approvals {
            let (task, info) = a.into_info()?;
            by_task.entry(task).or_default().push(info);
        }
        rows.into_iter()
            .map(|r| {
                let id = uuid("tasks.task_id", &r.task_id)?;
                r.into_task(by_task.remove(&id).unwrap_or_default())
            })
            .collect()
    }

    /// A task of an account.
    pub async fn get_task(&self, acct_id: Uuid, task_id: Uuid) -> Result<Option<Task>> {
        let mut conn = self.pool.acquire().await?;
        load_task(&mut conn, acct_id, task_id).await
    }

    /// Decides a task and applies its effect, atomically. A task that is no longer INPROGRESS
    /// gives [`Error::InvalidState`]; of two simultaneous decisions exactly one wins.
    pub async fn decide_task(
        &self,
        acct_id: Uuid,
        task_id: Uuid,
        decision: ApprovalStatus,
        denial_reason: Option<&str>,
        actor: &Actor,
        now: i64,
    ) -> Result<Task> {
        self.decide_task_with(
            acct_id,
            task_id,
            decision,
            denial_reason,
            TaskEffect::ByType,
            actor,
            now,
        )
        .await
    }

    /// [`Store::decide_task`] with the effect the caller decided: the decision, its effect and
    /// the audit entries commit together. An effect that does not fit the task's type (or an app
    /// no longer waiting for its policy change) gives [`Error::InvalidState`] and changes
    /// nothing.
    #[allow(clippy::too_many_arguments)]
    pub async fn decide_task_with(
        &self,
        acct_id: Uuid,
        task_id: Uuid,
        decision: ApprovalStatus,
        denial_reason: Option<&str>,
        effect: TaskEffect,
        actor: &Actor,
        now: i64,
    ) -> Result<Task> {
        let mut w = self.begin_write().await?;
        let new_status = match decision {
            ApprovalStatus::Approved => TaskStatusType::Success,
            ApprovalStatus::Denied => TaskStatusType::Denied,
        };
        let row: Option<(String, String, String)> = sqlx::query_as(
            "UPDATE tasks SET status = $1, status_updated_at = $2 \
             WHERE task_id = $3 AND acct_id = $4 AND status = 'INPROGRESS' \
             RETURNING task_type, entity_id, domains_added",
        )
        .bind(new_status.as_str())
        .bind(now)
        .bind(task_id.to_string())
        .bind(acct_id.to_string())
        .fetch_optional(&mut *w.tx)
        .await?;
        let Some((task_type, entity_id, domains)) = row else {
            let current: Option<(String,)> =
                sqlx::query_as("SELECT status FROM tasks WHERE task_id = $1 AND acct_id = $2")
                    .bind(task_id.to_string())
                    .bind(acct_id.to_string())
                    .fetch_optional(&mut *w.tx)
                    .await?;
            return Err(match current {
                None => Error::NotFound("task"),
                Some((s,)) => {
                    Error::InvalidState(format!("task was already decided: its status is {s}"))
                }
            });
        };
        let task_type = enum_value("tasks.task_type", &task_type, TaskType::parse)?;
        let entity_id = uuid("tasks.entity_id", &entity_id)?;
        let domains: Vec<String> = json("tasks.domains_added", &domains)?;
        record_decision(&mut w.tx, task_id, actor, decision, denial_reason, now).await?;
        match (effect, task_type) {
            (TaskEffect::ByType, _) => {
                apply_effect(
                    &mut w.tx, task_type, task_id, entity_id, decision, &domains, now,
                )
                .await?;
            }
            (TaskEffect::SetAppPolicy(settings), TaskType::PolicyChange) => {
                crate::apps::settle_policy_change(
                    &mut w.tx,
                    task_id,
                    entity_id,
                    Some(&settings),
                    actor,
                    now,
                )
                .await?;
            }
            (TaskEffect::DiscardAppPolicy, TaskType::PolicyChange) => {
                crate::apps::settle_policy_change(&mut w.tx, task_id, entity_id, None, actor, now)
                    .await?;
            }
            (TaskEffect::SetAppPolicy(_) | TaskEffect::DiscardAppPolicy, other) => {
                return Err(Error::InvalidState(format!(
                    "a policy effect does not apply to a {} task",
                    other.as_str()
                )));
            }
        }
        let action = match decision {
            ApprovalStatus::Approved => "task.approve",
            ApprovalStatus::Denied => "task.deny",
        };
        audit::append(
            &mut w.tx,
            now,
            actor,
            Some(acct_id),
            action,
            "task",
            Some(task_id),
            json!({"task_type": task_type.as_str(), "entity_id": entity_id, "denial_reason": denial_reason}),
        )
        .await?;
        let task = load_task(&mut w.tx, acct_id, task_id)
            .await?
            .ok_or(Error::NotFound("task"))?;
        w.commit().await?;
        Ok(task)
    }
}
