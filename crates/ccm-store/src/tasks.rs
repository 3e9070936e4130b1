//! Approval tasks: creation (with the account's approval policy) and decisions, each written
//! with the effect the service layer decided for it ([`Effect`]).

use std::collections::HashMap;

use ccm_api::accounts::ApprovalPolicy;
use ccm_api::tasks::{
    ApprovalInfo, ApprovalStatus, RequesterInfo, RequesterType, Task, TaskStatus, TaskStatusType,
    TaskType,
};
use serde_json::json;
use sqlx::AnyConnection;
use uuid::Uuid;

use crate::effects::{self, Effect, Subject, TaskRef};
use crate::paging::{Bind, Key, ListSpec};
use crate::util::{enum_value, json, opt_uuid, to_json, uuid};
use crate::{Actor, Error, Page, PageRequest, Result, Store, audit};

/// Filters for [`Store::list_tasks`].
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only tasks in this status.
    pub status: Option<TaskStatusType>,
    /// Only tasks of this type.
    pub task_type: Option<TaskType>,
    /// Only tasks about this object.
    pub entity_id: Option<Uuid>,
}

pub(crate) struct NewTask<'a> {
    pub acct_id: Uuid,
    pub task_id: Uuid,
    pub entity_id: Uuid,
    pub task_type: TaskType,
    pub description: String,
    pub requester: &'a Actor,
    /// Who asks: a user (or API key), or the system for an enrolling node.
    pub requester_type: RequesterType,
    pub domains_added: Vec<String>,
    /// JSON of what the task proposes (POLICY_CHANGE: the app's new `advanced_settings`).
    pub proposal: Option<String>,
    /// What approving the task does, as the service decided it: written at once under the
    /// AUTO_APPROVE policy. `None`: the task must be decided by a person, and an account that
    /// approves automatically refuses it.
    pub on_approve: Option<&'a Effect>,
}

/// The object a task is about.
fn subject(task_type: TaskType, entity_id: Uuid) -> Subject {
    match task_type {
        TaskType::BuildWhitelist => Subject::Image(entity_id),
        TaskType::DomainWhitelist | TaskType::PolicyChange => Subject::App(entity_id),
        TaskType::NodeAttestation => Subject::Node(entity_id),
        TaskType::CertificateIssuance => Subject::CertificateRequest(entity_id),
    }
}

/// Inserts a task. Under the AUTO_APPROVE policy it is approved at once (by `system`) and its
/// `on_approve` effect written; returns whether that happened. The entity must already exist.
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
         proposal) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12)",
    )
    .bind(t.task_id.to_string())
    .bind(t.acct_id.to_string())
    .bind(t.entity_id.to_string())
    .bind(t.task_type.as_str())
    .bind(status.as_str())
    .bind(&t.description)
    .bind(t.requester.user_id.map(|u| u.to_string()))
    .bind(&t.requester.name)
    .bind(t.requester_type.as_str())
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
        let Some(effect) = t.on_approve else {
            return Err(Error::InvalidState(
                "the account's approval policy changed; repeat the request".into(),
            ));
        };
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
        let task = TaskRef {
            task_id: t.task_id,
            domains: &t.domains_added,
        };
        let about = subject(t.task_type, t.entity_id);
        effects::write(conn, about, Some(task), effect, &system, now).await?;
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

/// A decision on a task, with what it does as the service decided it.
#[derive(Debug, Clone, Copy)]
pub struct TaskDecision<'a> {
    /// Approved or denied.
    pub status: ApprovalStatus,
    /// Why it was denied, when it was.
    pub denial_reason: Option<&'a str>,
    /// What the decision does, written in the transaction that records it.
    pub effect: &'a Effect,
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
                requester_type: enum_value(
                    "tasks.requester_type",
                    &self.requester_type,
                    RequesterType::parse,
                )?,
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
    /// One page of an account's tasks, newest first.
    pub async fn list_tasks(
        &self,
        acct_id: Uuid,
        f: &TaskFilter,
        req: &PageRequest,
    ) -> Result<Page<Task>> {
        let mut filters = Vec::new();
        if let Some(s) = f.status {
            filters.push(("status", Bind::Text(s.as_str().to_string())));
        }
        if let Some(t) = f.task_type {
            filters.push(("task_type", Bind::Text(t.as_str().to_string())));
        }
        if let Some(e) = f.entity_id {
            filters.push(("entity_id", Bind::Text(e.to_string())));
        }
        let spec = ListSpec {
            name: "tasks",
            select: format!("SELECT {TASK_COLS} FROM tasks"),
            count_from: "tasks",
            key: "created_at",
            text_key: false,
            id: "task_id",
            desc: true,
            scope: vec![("acct_id", Bind::Text(acct_id.to_string()))],
            filters,
            counts: Some(&crate::counts::TASKS),
        };
        let page = spec
            .fetch::<TaskRow>(&self.pool, req, |r| {
                (Key::Int(r.created_at), r.task_id.clone())
            })
            .await?;
        let mut by_task = self.approvals_of(&page.items).await?;
        page.try_map(|r| {
            let id = uuid("tasks.task_id", &r.task_id)?;
            r.into_task(by_task.remove(&id).unwrap_or_default())
        })
    }

    /// The approvals of these tasks, by task.
    async fn approvals_of(&self, rows: &[TaskRow]) -> Result<HashMap<Uuid, Vec<ApprovalInfo>>> {
        let mut by_task: HashMap<Uuid, Vec<ApprovalInfo>> = HashMap::new();
        if rows.is_empty() {
            return Ok(by_task);
        }
        let sql = format!(
            "SELECT task_id, user_id, user_name, status, denial_reason, decided_at \
             FROM task_approvals WHERE task_id IN ({}) ORDER BY decided_at",
            self.backend.params(1, rows.len())
        );
        let mut q = sqlx::query_as::<_, ApprovalRow>(&sql);
        for r in rows {
            q = q.bind(r.task_id.clone());
        }
        for a in q.fetch_all(&self.pool).await? {
            let (task, info) = a.into_info()?;
            by_task.entry(task).or_default().push(info);
        }
        Ok(by_task)
    }

    /// A task of an account.
    pub async fn get_task(&self, acct_id: Uuid, task_id: Uuid) -> Result<Option<Task>> {
        let mut conn = self.pool.acquire().await?;
        load_task(&mut conn, acct_id, task_id).await
    }

    /// Decides a task: records the decision, writes its effect and appends the audit entry in
    /// one transaction. A task that is no longer INPROGRESS gives [`Error::InvalidState`] (of two
    /// simultaneous decisions exactly one wins); so does an effect that does not fit the task's
    /// object, and then nothing changes.
    pub async fn decide_task(
        &self,
        acct_id: Uuid,
        task_id: Uuid,
        d: TaskDecision<'_>,
        actor: &Actor,
        now: i64,
    ) -> Result<Task> {
        let (decision, denial_reason) = (d.status, d.denial_reason);
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
        let task = TaskRef {
            task_id,
            domains: &domains,
        };
        let about = subject(task_type, entity_id);
        effects::write(&mut w.tx, about, Some(task), d.effect, actor, now).await?;
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
