//! `/api/v3/tasks/`: tasks, their status counts, workers and schedules.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::api::{GlobalTaskStatus, ScheduleOut, ScheduleWrite, TaskOut, WorkerOut};
use super::model::AggregatedStatus;
use super::service::{self, ScheduleFilter, TaskFilter};
use crate::db::pagination::{ListParams, Paginated};
use crate::error::{Error, Result};
use crate::http::auth::Principal;
use crate::http::json::ApiJson;
use crate::http::query::ApiQuery;
use crate::state::AppState;

pub use super::service::names;

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tasks))
        .routes(routes!(task_status))
        .routes(routes!(retrieve_task))
        .routes(routes!(retry_task))
        .routes(routes!(list_workers))
        .route("/api/v3/tasks/workers", axum::routing::get(list_workers))
        .routes(routes!(list_schedules))
        .routes(routes!(retrieve_schedule, update_schedule, partial_update_schedule))
        .routes(routes!(send_schedule))
}

#[utoipa::path(get, path = "/api/v3/tasks/tasks/", tag = "tasks", params(ListParams, TaskFilter),
    responses((status = 200, description = "A page of tasks, newest first", body = Paginated<TaskOut>), (status = 403, description = "Permission denied")))]
async fn list_tasks(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(filter): ApiQuery<TaskFilter>,
) -> Result<Json<Paginated<TaskOut>>> {
    let page = service::list_tasks(&state, &principal.actor(), &params, &filter).await?;
    Ok(Json(page.map(|(task, logs)| TaskOut::new(task, logs))))
}

#[utoipa::path(get, path = "/api/v3/tasks/tasks/status/", tag = "tasks",
    responses((status = 200, body = GlobalTaskStatus), (status = 403, description = "Permission denied")))]
async fn task_status(State(state): State<AppState>, principal: Principal) -> Result<Json<GlobalTaskStatus>> {
    let mut status = GlobalTaskStatus::default();
    for (value, count) in service::status_counts(&state, &principal.actor()).await? {
        let slot = match value {
            AggregatedStatus::Queued => &mut status.queued,
            AggregatedStatus::Consumed => &mut status.consumed,
            AggregatedStatus::Preprocess => &mut status.preprocess,
            AggregatedStatus::Running => &mut status.running,
            AggregatedStatus::Postprocess => &mut status.postprocess,
            AggregatedStatus::Rejected => &mut status.rejected,
            AggregatedStatus::Done => &mut status.done,
            AggregatedStatus::Info => &mut status.info,
            AggregatedStatus::Warning => &mut status.warning,
            AggregatedStatus::Error => &mut status.error,
        };
        *slot = count;
    }
    Ok(Json(status))
}

#[utoipa::path(get, path = "/api/v3/tasks/tasks/{message_id}/", tag = "tasks", params(("message_id" = Uuid, Path, description = "Task id")),
    responses((status = 200, body = TaskOut), (status = 404, description = "Not found")))]
async fn retrieve_task(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<TaskOut>> {
    let id = Uuid::parse_str(&id).map_err(|_| Error::NotFound)?;
    let (task, logs) = service::find_task(&state, &principal.actor(), id).await?;
    Ok(Json(TaskOut::new(task, logs)))
}

#[utoipa::path(post, path = "/api/v3/tasks/tasks/{message_id}/retry/", tag = "tasks", params(("message_id" = Uuid, Path, description = "Task id")),
    responses((status = 204, description = "Task retried successfully"), (status = 400, description = "Task is not in a retryable state"),
        (status = 404, description = "Task not found")))]
async fn retry_task(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    let id = Uuid::parse_str(&id).map_err(|_| Error::NotFound)?;
    service::retry_task(&state, &principal.actor(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Answers with and without the trailing slash: authentik's clients have used both.
#[utoipa::path(get, path = "/api/v3/tasks/workers/", tag = "tasks",
    responses((status = 200, body = [WorkerOut]), (status = 403, description = "Permission denied")))]
async fn list_workers(State(state): State<AppState>, principal: Principal) -> Result<Json<Vec<WorkerOut>>> {
    let version = env!("CARGO_PKG_VERSION");
    let workers = service::list_workers(&state, &principal.actor()).await?;
    Ok(Json(
        workers
            .into_iter()
            .map(|(w, alive)| WorkerOut {
                worker_id: w.worker_id.to_string(),
                version_matching: w.version == version,
                version: w.version,
                hostname: w.hostname,
                alive,
                last_seen: w.last_seen,
            })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v3/tasks/schedules/", tag = "tasks", params(ListParams, ScheduleFilter),
    responses((status = 200, description = "A page of schedules", body = Paginated<ScheduleOut>), (status = 403, description = "Permission denied")))]
async fn list_schedules(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(filter): ApiQuery<ScheduleFilter>,
) -> Result<Json<Paginated<ScheduleOut>>> {
    let page = service::list_schedules(&state, &principal.actor(), &params, &filter).await?;
    Ok(Json(page.map(|(item, status)| ScheduleOut::new(item, status))))
}

/// A schedule id from the path; one that is not a UUID names no schedule.
fn schedule_id(id: &str) -> Result<Uuid> {
    Uuid::parse_str(id).map_err(|_| Error::NotFound)
}

#[utoipa::path(get, path = "/api/v3/tasks/schedules/{id}/", tag = "tasks", params(("id" = Uuid, Path, description = "Schedule id")),
    responses((status = 200, body = ScheduleOut), (status = 404, description = "Not found")))]
async fn retrieve_schedule(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<ScheduleOut>> {
    let (item, status) = service::find_schedule(&state, &principal.actor(), schedule_id(&id)?).await?;
    Ok(Json(ScheduleOut::new(item, status)))
}

async fn write_schedule(state: AppState, principal: Principal, id: String, body: ScheduleWrite, full: bool) -> Result<Json<ScheduleOut>> {
    let (item, status) = service::update_schedule(&state, &principal.actor(), schedule_id(&id)?, body, full).await?;
    Ok(Json(ScheduleOut::new(item, status)))
}

#[utoipa::path(put, path = "/api/v3/tasks/schedules/{id}/", tag = "tasks", params(("id" = Uuid, Path, description = "Schedule id")),
    request_body = ScheduleWrite, responses((status = 200, body = ScheduleOut), (status = 400, description = "Invalid crontab")))]
async fn update_schedule(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ScheduleWrite>,
) -> Result<Json<ScheduleOut>> {
    write_schedule(state, principal, id, body, true).await
}

#[utoipa::path(patch, path = "/api/v3/tasks/schedules/{id}/", tag = "tasks", params(("id" = Uuid, Path, description = "Schedule id")),
    request_body = ScheduleWrite, responses((status = 200, body = ScheduleOut), (status = 400, description = "Invalid crontab")))]
async fn partial_update_schedule(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ScheduleWrite>,
) -> Result<Json<ScheduleOut>> {
    write_schedule(state, principal, id, body, false).await
}

#[utoipa::path(post, path = "/api/v3/tasks/schedules/{id}/send/", tag = "tasks", params(("id" = Uuid, Path, description = "Schedule id")),
    responses((status = 204, description = "Schedule sent successfully"), (status = 404, description = "Schedule not found"),
        (status = 409, description = "The schedule's previous task is still queued or running")))]
async fn send_schedule(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    service::send_schedule(&state, &principal.actor(), schedule_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
