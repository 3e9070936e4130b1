//! `/v1/tasks`: approvals.

use axum::Json;
use axum::extract::State;
use ccm_api::list::{ListResponse, PageQuery};
use ccm_api::tasks::{DecidedTask, Task, TaskResult, TaskStatusType, TaskType, TaskUpdateRequest};
use ccm_store::TaskFilter;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::list_response;
use crate::AppState;
use crate::auth::Acct;
use crate::error::ApiResult;
use crate::extract::{Json as Body, ListQuery, Path};
use crate::service::tasks;

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
}

/// One page of the selected account's tasks, newest first.
#[utoipa::path(get, path = "/v1/tasks", tag = "tasks", security(("bearer" = [])), params(TaskQuery, PageQuery),
    responses((status = 200, body = ListResponse<Task>), (status = 400, body = ccm_api::ErrorBody)))]
async fn list_tasks(
    State(s): State<AppState>,
    acct: Acct,
    ListQuery(page, q): ListQuery<TaskQuery>,
) -> ApiResult<Json<ListResponse<Task>>> {
    let filter = TaskFilter {
        status: q.status,
        task_type: q.task_type,
        entity_id: q.entity_id,
    };
    Ok(list_response(tasks::list(&s, &acct, &filter, &page).await?))
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
    Ok(Json(tasks::get(&s, &acct, task_id).await?))
}

/// Approves or denies a task (MANAGER) and applies the effect atomically: the image becomes
/// WHITELISTED or REJECTED, the domains whitelisted or dropped, the proposed attestation policy
/// applied or discarded. Answers the decided task with the reference's result fields
/// (`task_status` and the object's id). A task already decided is 409.
#[utoipa::path(patch, path = "/v1/tasks/{task_id}", tag = "tasks", security(("bearer" = [])), request_body = TaskUpdateRequest,
    params(("task_id" = Uuid, Path)),
    responses((status = 200, body = DecidedTask), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody), (status = 409, body = ccm_api::ErrorBody), (status = 422, body = ccm_api::ErrorBody)))]
async fn update_task(
    State(s): State<AppState>,
    acct: Acct,
    Path(task_id): Path<Uuid>,
    Body(req): Body<TaskUpdateRequest>,
) -> ApiResult<Json<DecidedTask>> {
    let task = tasks::decide(&s, &acct, task_id, req).await?;
    Ok(Json(tasks::decided(task)))
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
    let t = tasks::get(&s, &acct, task_id).await?;
    Ok(Json(tasks::result(&t)))
}
