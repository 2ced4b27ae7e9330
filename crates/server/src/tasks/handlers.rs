//! `/api/v3/tasks/`: tasks, their status counts, workers and schedules.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::Utc;
use sea_orm::{ColumnTrait, EntityTrait, Order, QueryFilter, QueryOrder, QuerySelect};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::api::{GlobalTaskStatus, ScheduleOut, ScheduleWrite, TaskOut, WorkerOut};
use super::entities::{schedule, task, task_log, worker};
use super::queue;
use super::schedules;
use crate::db::pagination::{ListParams, Paginated, fetch_page, ilike, parse_bool};
use crate::error::{Error, Result};
use crate::http::auth::Principal;
use crate::http::json::ApiJson;
use crate::state::AppState;

/// Permissions of this module.
pub mod names {
    pub const VIEW_TASK: &str = "authentik_tasks.view_task";
    pub const RETRY_TASK: &str = "authentik_tasks.retry_task";
    pub const VIEW_SCHEDULE: &str = "authentik_tasks_schedules.view_schedule";
    pub const CHANGE_SCHEDULE: &str = "authentik_tasks_schedules.change_schedule";
    pub const SEND_SCHEDULE: &str = "authentik_tasks_schedules.send_schedule";
}

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tasks))
        .routes(routes!(task_status))
        .routes(routes!(retrieve_task))
        .routes(routes!(retry_task))
        .routes(routes!(list_workers))
        .routes(routes!(list_schedules))
        .routes(routes!(retrieve_schedule, update_schedule, partial_update_schedule))
        .routes(routes!(send_schedule))
}

/// Filters of the task list.
#[derive(Debug, Default, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskFilter {
    pub queue_name: Option<String>,
    pub actor_name: Option<String>,
    pub state: Option<String>,
    pub aggregated_status: Option<String>,
    pub rel_obj_id: Option<String>,
    #[serde(rename = "rel_obj_id__isnull")]
    #[param(rename = "rel_obj_id__isnull")]
    pub rel_obj_id_isnull: Option<String>,
}

const AGGREGATED: [&str; 10] =
    ["queued", "consumed", "preprocess", "running", "postprocess", "rejected", "done", "info", "warning", "error"];

async fn logs_of(state: &AppState, ids: &[Uuid]) -> Result<HashMap<Uuid, Vec<task_log::Model>>> {
    let mut by_task: HashMap<Uuid, Vec<task_log::Model>> = HashMap::new();
    let logs = task_log::Entity::find()
        .filter(task_log::Column::TaskId.is_in(ids.iter().copied()))
        .order_by_asc(task_log::Column::Timestamp)
        .all(&state.db)
        .await?;
    for log in logs {
        by_task.entry(log.task_id).or_default().push(log);
    }
    Ok(by_task)
}

#[utoipa::path(get, path = "/api/v3/tasks/tasks/", tag = "tasks", params(ListParams, TaskFilter),
    responses((status = 200, description = "A page of tasks, newest first"), (status = 403, description = "Permission denied")))]
async fn list_tasks(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<ListParams>,
    Query(filter): Query<TaskFilter>,
) -> Result<Json<Paginated<TaskOut>>> {
    principal.require(names::VIEW_TASK)?;
    let page = params.page_request(&state.config.api)?;
    let mut select = task::Entity::find().filter(task::Column::TenantId.eq(state.tenant.0));
    if let Some(queue_name) = filter.queue_name.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(task::Column::QueueName.eq(queue_name));
    }
    if let Some(actor) = filter.actor_name.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(task::Column::ActorName.eq(actor));
    }
    if let Some(value) = filter.state.as_deref().filter(|v| !v.is_empty()) {
        if !queue::states::ALL.contains(&value) {
            return Err(Error::field("state", format!("\"{value}\" is not a valid choice.")));
        }
        select = select.filter(task::Column::State.eq(value));
    }
    if let Some(value) = filter.aggregated_status.as_deref().filter(|v| !v.is_empty()) {
        if !AGGREGATED.contains(&value) {
            return Err(Error::field("aggregated_status", format!("\"{value}\" is not a valid choice.")));
        }
        select = select.filter(task::Column::AggregatedStatus.eq(value));
    }
    if let Some(value) = filter.rel_obj_id.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(task::Column::RelObjId.eq(value));
    }
    if let Some(value) = filter.rel_obj_id_isnull.as_deref().filter(|v| !v.is_empty()) {
        select = if parse_bool("rel_obj_id__isnull", value)? {
            select.filter(task::Column::RelObjId.is_null())
        } else {
            select.filter(task::Column::RelObjId.is_not_null())
        };
    }
    if let Some(pattern) = params.search_pattern() {
        use sea_orm::sea_query::ExprTrait;
        select = select.filter(ilike(task::Column::ActorName, &pattern).or(ilike(task::Column::Uid, &pattern)));
    }
    let select = params.apply_ordering(
        select,
        &[
            ("mtime", task::Column::Mtime),
            ("actor_name", task::Column::ActorName),
            ("state", task::Column::State),
            ("created", task::Column::Created),
        ],
        (task::Column::Mtime, Order::Desc),
        task::Column::MessageId,
    )?;
    let page = fetch_page(&state.db, select, page).await?;
    let ids: Vec<Uuid> = page.results.iter().map(|t| t.message_id).collect();
    let mut logs = logs_of(&state, &ids).await?;
    Ok(Json(page.map(|t| {
        let task_logs = logs.remove(&t.message_id).unwrap_or_default();
        TaskOut::new(t, task_logs)
    })))
}

#[utoipa::path(get, path = "/api/v3/tasks/tasks/status/", tag = "tasks",
    responses((status = 200, body = GlobalTaskStatus), (status = 403, description = "Permission denied")))]
async fn task_status(State(state): State<AppState>, principal: Principal) -> Result<Json<GlobalTaskStatus>> {
    principal.require(names::VIEW_TASK)?;
    // One grouped count instead of a query per status.
    let counts: Vec<(String, i64)> = task::Entity::find()
        .select_only()
        .column(task::Column::AggregatedStatus)
        .column_as(task::Column::MessageId.count(), "count")
        .filter(task::Column::TenantId.eq(state.tenant.0))
        .group_by(task::Column::AggregatedStatus)
        .into_tuple()
        .all(&state.db)
        .await?;
    let mut status = GlobalTaskStatus::default();
    for (value, count) in counts {
        let slot = match value.as_str() {
            "queued" => &mut status.queued,
            "consumed" => &mut status.consumed,
            "preprocess" => &mut status.preprocess,
            "running" => &mut status.running,
            "postprocess" => &mut status.postprocess,
            "rejected" => &mut status.rejected,
            "done" => &mut status.done,
            "info" => &mut status.info,
            "warning" => &mut status.warning,
            "error" => &mut status.error,
            _ => continue,
        };
        *slot = u64::try_from(count).unwrap_or(0);
    }
    Ok(Json(status))
}

#[utoipa::path(get, path = "/api/v3/tasks/tasks/{message_id}/", tag = "tasks", params(("message_id" = Uuid, Path, description = "Task id")),
    responses((status = 200, body = TaskOut), (status = 404, description = "Not found")))]
async fn retrieve_task(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<TaskOut>> {
    principal.require(names::VIEW_TASK)?;
    let id = Uuid::parse_str(&id).map_err(|_| Error::NotFound)?;
    let task =
        task::Entity::find_by_id(id).filter(task::Column::TenantId.eq(state.tenant.0)).one(&state.db).await?.ok_or(Error::NotFound)?;
    let logs = logs_of(&state, &[id]).await?.remove(&id).unwrap_or_default();
    Ok(Json(TaskOut::new(task, logs)))
}

#[utoipa::path(post, path = "/api/v3/tasks/tasks/{message_id}/retry/", tag = "tasks", params(("message_id" = Uuid, Path, description = "Task id")),
    responses((status = 204, description = "Task retried successfully"), (status = 400, description = "Task is not in a retryable state"),
        (status = 404, description = "Task not found")))]
async fn retry_task(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    principal.require(names::RETRY_TASK)?;
    let id = Uuid::parse_str(&id).map_err(|_| Error::NotFound)?;
    queue::retry_rejected(&state, state.tenant, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v3/tasks/workers", tag = "tasks",
    responses((status = 200, body = [WorkerOut]), (status = 403, description = "Permission denied")))]
async fn list_workers(State(state): State<AppState>, principal: Principal) -> Result<Json<Vec<WorkerOut>>> {
    principal.require(names::VIEW_TASK)?;
    let cutoff = Utc::now() - state.config.tasks.worker_timeout.to_chrono();
    let version = env!("CARGO_PKG_VERSION");
    let workers = worker::Entity::find().order_by_asc(worker::Column::Started).all(&state.db).await?;
    Ok(Json(
        workers
            .into_iter()
            .map(|w| WorkerOut {
                worker_id: w.worker_id.to_string(),
                version_matching: w.version == version,
                version: w.version,
                hostname: w.hostname,
                alive: w.last_seen > cutoff,
                last_seen: w.last_seen,
            })
            .collect(),
    ))
}

/// Filters of the schedule list.
#[derive(Debug, Default, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScheduleFilter {
    pub actor_name: Option<String>,
    pub paused: Option<String>,
    pub rel_obj_id: Option<String>,
}

async fn render_schedule(state: &AppState, item: schedule::Model) -> Result<ScheduleOut> {
    let status = schedules::last_status(state, &item).await?;
    Ok(ScheduleOut::new(item, status))
}

#[utoipa::path(get, path = "/api/v3/tasks/schedules/", tag = "tasks", params(ListParams, ScheduleFilter),
    responses((status = 200, description = "A page of schedules"), (status = 403, description = "Permission denied")))]
async fn list_schedules(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<ListParams>,
    Query(filter): Query<ScheduleFilter>,
) -> Result<Json<Paginated<ScheduleOut>>> {
    principal.require(names::VIEW_SCHEDULE)?;
    let page = params.page_request(&state.config.api)?;
    let mut select = schedule::Entity::find().filter(schedule::Column::TenantId.eq(state.tenant.0));
    if let Some(actor) = filter.actor_name.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(schedule::Column::ActorName.eq(actor));
    }
    if let Some(paused) = filter.paused.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(schedule::Column::Paused.eq(parse_bool("paused", paused)?));
    }
    if let Some(value) = filter.rel_obj_id.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(schedule::Column::RelObjId.eq(value));
    }
    if let Some(pattern) = params.search_pattern() {
        use sea_orm::sea_query::ExprTrait;
        select = select.filter(ilike(schedule::Column::ActorName, &pattern).or(ilike(schedule::Column::Identifier, &pattern)));
    }
    let select = params.apply_ordering(
        select,
        &[
            ("next_run", schedule::Column::NextRun),
            ("actor_name", schedule::Column::ActorName),
            ("identifier", schedule::Column::Identifier),
        ],
        (schedule::Column::NextRun, Order::Asc),
        schedule::Column::Id,
    )?;
    let page = fetch_page(&state.db, select, page).await?;
    let mut results = Vec::with_capacity(page.results.len());
    for item in page.results {
        results.push(render_schedule(&state, item).await?);
    }
    Ok(Json(Paginated { pagination: page.pagination, results }))
}

async fn schedule_of(state: &AppState, id: &str) -> Result<schedule::Model> {
    let id = Uuid::parse_str(id).map_err(|_| Error::NotFound)?;
    schedules::find(state, state.tenant, id).await?.ok_or(Error::NotFound)
}

#[utoipa::path(get, path = "/api/v3/tasks/schedules/{id}/", tag = "tasks", params(("id" = Uuid, Path, description = "Schedule id")),
    responses((status = 200, body = ScheduleOut), (status = 404, description = "Not found")))]
async fn retrieve_schedule(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<ScheduleOut>> {
    principal.require(names::VIEW_SCHEDULE)?;
    let item = schedule_of(&state, &id).await?;
    Ok(Json(render_schedule(&state, item).await?))
}

async fn write_schedule(state: AppState, principal: Principal, id: String, body: ScheduleWrite, full: bool) -> Result<Json<ScheduleOut>> {
    principal.require(names::CHANGE_SCHEDULE)?;
    let item = schedule_of(&state, &id).await?;
    if full && body.crontab.is_none() {
        return Err(Error::field("crontab", "This field is required."));
    }
    if body.rel_obj_id.is_some() {
        return Err(Error::field("rel_obj_id", "The related object of a schedule cannot be changed."));
    }
    let updated = schedules::update(&state, item, body.crontab, body.paused).await?;
    Ok(Json(render_schedule(&state, updated).await?))
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
    responses((status = 204, description = "Schedule sent successfully"), (status = 404, description = "Schedule not found")))]
async fn send_schedule(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    principal.require(names::SEND_SCHEDULE)?;
    let item = schedule_of(&state, &id).await?;
    schedules::send_now(&state, &item).await?;
    Ok(StatusCode::NO_CONTENT)
}
