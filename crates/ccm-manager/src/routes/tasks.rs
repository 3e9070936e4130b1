//! `/v1/tasks`: approvals.

use axum::Json;
use axum::extract::State;
use ccm_api::accounts::AccessRole;
use ccm_api::tasks::{
    ApprovalStatus, Task, TaskResult, TaskStatusType, TaskType, TaskUpdateRequest,
};
use ccm_store::TaskFilter;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Acct;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json as Body, Path, Query};
use crate::validate::Checker;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tasks))
        .routes(routes!(get_task, update_task))
        .routes(routes!(task_status))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct TaskQuery {
    /// Only tasks in this status.
    status: Option<TaskStatusType>,
    /// Only tasks of this type.
    task_type: Option<TaskType>,
    /// Only tasks about this object.
    entity_id: Option<Uuid>,
    /// Page size (default 100, at most 1000).
    limit: Option<i64>,
    /// Entries to skip.
    offset: Option<i64>,
}

/// The selected account's tasks, newest first.
#[utoipa::path(get, path = "/v1/tasks", tag = "tasks", security(("bearer" = [])), params(TaskQuery),
    responses((status = 200, body = [Task]), (status = 400, body = ccm_api::ErrorBody)))]
async fn list_tasks(
    State(s): State<AppState>,
    acct: Acct,
    Query(q): Query<TaskQuery>,
) -> ApiResult<Json<Vec<Task>>> {
    let mut c = Checker::new();
    if let Some(l) = q.limit {
        c.range("limit", l, 1, 1000);
    }
    if let Some(o) = q.offset {
        c.range("offset", o, 0, i64::MAX);
    }
    c.finish()?;
    let filter = TaskFilter {
        status: q.status,
        task_type: q.task_type,
        entity_id: q.entity_id,
        limit: q.limit.unwrap_or(100),
        offset: q.offset.unwrap_or(0),
    };
    Ok(Json(s.store.list_tasks(acct.acct_id, &filter).await?))
}

/// A task of the selected account.
#[utoipa::path(get, path = "/v1/tasks/{task_id}", tag = "tasks", security(("bearer" = [])),
    params(("task_id" = Uuid, Path)),
    responses((status = 200, body = Task), (status = 404, body = ccm_api::ErrorBody)))]
async fn get_task(
    State(s): State<AppState>,
    acct: Acct,
    Path(task_id): Path<Uuid>,
) -> ApiResult<Json<Task>> {
    s.store
        .get_task(acct.acct_id, task_id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("task"))
}

/// Approves or denies a task (MANAGER) and applies the effect atomically: the image becomes
/// WHITELISTED or REJECTED, the domains whitelisted or dropped. A task already decided is 409.
#[utoipa::path(patch, path = "/v1/tasks/{task_id}", tag = "tasks", security(("bearer" = [])), request_body = TaskUpdateRequest,
    params(("task_id" = Uuid, Path)),
    responses((status = 200, body = Task), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody), (status = 409, body = ccm_api::ErrorBody), (status = 422, body = ccm_api::ErrorBody)))]
async fn update_task(
    State(s): State<AppState>,
    acct: Acct,
    Path(task_id): Path<Uuid>,
    Body(req): Body<TaskUpdateRequest>,
) -> ApiResult<Json<Task>> {
    Ok(Json(decide(&s, &acct, task_id, req).await?))
}

/// Validates and applies a decision on a task (MANAGER). Shared by the API and the console.
pub(crate) async fn decide(
    s: &AppState,
    acct: &Acct,
    task_id: Uuid,
    req: TaskUpdateRequest,
) -> ApiResult<Task> {
    acct.require(AccessRole::Manager)?;
    let mut c = Checker::new();
    if let Some(r) = &req.denial_reason {
        if req.status == ApprovalStatus::Approved {
            c.err("denial_reason", "only a denial has a reason");
        }
        c.text("denial_reason", r, 1, 1024, true);
    }
    c.finish()?;
    let task = s
        .store
        .decide_task(
            acct.acct_id,
            task_id,
            req.status,
            req.denial_reason.as_deref(),
            &acct.actor(),
            s.clock.now(),
        )
        .await?;
    if req.status == ApprovalStatus::Approved
        && matches!(
            task.task_type,
            TaskType::BuildWhitelist | TaskType::DomainWhitelist
        )
    {
        // Certificate requests that waited for this approval are issued now.
        if let Err(e) = crate::service::issuance::process_pending(s, Some(acct.acct_id)).await {
            tracing::warn!(error = ?e, "issuing pending certificates after an approval failed");
        }
    }
    Ok(task)
}

/// The status and result of a task.
#[utoipa::path(get, path = "/v1/tasks/status/{task_id}", tag = "tasks", security(("bearer" = [])),
    params(("task_id" = Uuid, Path)),
    responses((status = 200, body = TaskResult), (status = 404, body = ccm_api::ErrorBody)))]
async fn task_status(
    State(s): State<AppState>,
    acct: Acct,
    Path(task_id): Path<Uuid>,
) -> ApiResult<Json<TaskResult>> {
    let t = s
        .store
        .get_task(acct.acct_id, task_id)
        .await?
        .ok_or_else(|| ApiError::not_found("task"))?;
    let of = |ty: TaskType| (t.task_type == ty).then_some(t.entity_id);
    Ok(Json(TaskResult {
        task_id: t.task_id,
        task_type: t.task_type,
        build_id: of(TaskType::BuildWhitelist),
        app_id: of(TaskType::DomainWhitelist),
        node_id: of(TaskType::NodeAttestation),
        certificate_id: of(TaskType::CertificateIssuance),
        task_status: t.status,
    }))
}
