//! The queries behind the task administration: tasks with their logs, status counts, workers
//! and schedules.

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::{ColumnTrait, EntityTrait, Order, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::api::ScheduleWrite;
use super::entities::{schedule, task, task_log, worker};
use super::model::{AggregatedStatus, TaskState};
use super::{queue, schedules};
use crate::accounts::access::Actor;
use crate::db::pagination::{ListParams, Paginated, fetch_page, ilike, parse_bool};
use crate::error::{Error, Result};
use crate::events::{self, Action, ModelRef};
use crate::state::AppState;
use serde_json::json;

/// Permissions of this module.
pub mod names {
    pub const VIEW_TASK: &str = "authentik_tasks.view_task";
    pub const RETRY_TASK: &str = "authentik_tasks.retry_task";
    pub const VIEW_SCHEDULE: &str = "authentik_tasks_schedules.view_schedule";
    pub const CHANGE_SCHEDULE: &str = "authentik_tasks_schedules.change_schedule";
    pub const SEND_SCHEDULE: &str = "authentik_tasks_schedules.send_schedule";
}

/// How a schedule appears in the audit trail.
fn schedule_ref(item: &schedule::Model) -> ModelRef {
    ModelRef { app: "authentik_tasks_schedules", model_name: "schedule", pk: json!(item.id), name: item.identifier.clone() }
}

/// What of a schedule the audit trail compares.
fn schedule_audit(item: &schedule::Model) -> serde_json::Value {
    json!({"crontab": item.crontab, "paused": item.paused, "next_run": item.next_run})
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

/// Filters of the schedule list.
#[derive(Debug, Default, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScheduleFilter {
    pub actor_name: Option<String>,
    pub paused: Option<String>,
    pub rel_obj_id: Option<String>,
}

/// A task with its logs, oldest first (see [`queue::with_queued_entry`]).
pub type TaskWithLogs = (task::Model, Vec<task_log::Model>);

/// A schedule with the aggregated status of the newest task it sent.
pub type ScheduleWithStatus = (schedule::Model, Option<String>);

/// The logs of several tasks in one query, by task.
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

/// One page of the tenant's tasks, newest first unless ordered otherwise, with their logs.
pub async fn list_tasks(state: &AppState, actor: &Actor, params: &ListParams, filter: &TaskFilter) -> Result<Paginated<TaskWithLogs>> {
    actor.require(names::VIEW_TASK)?;
    let page = params.page_request(&state.config.api)?;
    let mut select = task::Entity::find().filter(task::Column::TenantId.eq(state.tenant.0));
    if let Some(queue_name) = filter.queue_name.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(task::Column::QueueName.eq(queue_name));
    }
    if let Some(actor) = filter.actor_name.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(task::Column::ActorName.eq(actor));
    }
    if let Some(value) = filter.state.as_deref().filter(|v| !v.is_empty()) {
        let value = TaskState::parse(value).ok_or_else(|| Error::field("state", format!("\"{value}\" is not a valid choice.")))?;
        select = select.filter(task::Column::State.eq(value));
    }
    if let Some(value) = filter.aggregated_status.as_deref().filter(|v| !v.is_empty()) {
        let value = AggregatedStatus::parse(value)
            .ok_or_else(|| Error::field("aggregated_status", format!("\"{value}\" is not a valid choice.")))?;
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
    let mut logs = logs_of(state, &ids).await?;
    Ok(page.map(|t| {
        let task_logs = queue::with_queued_entry(&t, logs.remove(&t.message_id).unwrap_or_default());
        (t, task_logs)
    }))
}

/// How many of the tenant's tasks have each aggregated status; statuses without tasks are left
/// out.
pub async fn status_counts(state: &AppState, actor: &Actor) -> Result<Vec<(AggregatedStatus, u64)>> {
    actor.require(names::VIEW_TASK)?;
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
    // A value this server does not know (written by a newer version) is not counted.
    Ok(counts
        .into_iter()
        .filter_map(|(status, count)| Some((AggregatedStatus::parse(&status)?, u64::try_from(count).unwrap_or(0))))
        .collect())
}

/// One of the tenant's tasks with its logs.
pub async fn find_task(state: &AppState, actor: &Actor, id: Uuid) -> Result<TaskWithLogs> {
    actor.require(names::VIEW_TASK)?;
    let task =
        task::Entity::find_by_id(id).filter(task::Column::TenantId.eq(state.tenant.0)).one(&state.db).await?.ok_or(Error::NotFound)?;
    let logs = queue::with_queued_entry(&task, logs_of(state, &[id]).await?.remove(&id).unwrap_or_default());
    Ok((task, logs))
}

/// Every registered worker, oldest first, with whether it heart-beat within
/// `tasks.worker_timeout`.
pub async fn list_workers(state: &AppState, actor: &Actor) -> Result<Vec<(worker::Model, bool)>> {
    actor.require(names::VIEW_TASK)?;
    let cutoff = Utc::now() - state.config.tasks.worker_timeout.to_chrono();
    let workers = worker::Entity::find().order_by_asc(worker::Column::Started).all(&state.db).await?;
    Ok(workers
        .into_iter()
        .map(|w| {
            let alive = w.last_seen > cutoff;
            (w, alive)
        })
        .collect())
}

async fn with_status(state: &AppState, item: schedule::Model) -> Result<ScheduleWithStatus> {
    let status = schedules::last_status(state, &item).await?;
    Ok((item, status))
}

async fn schedule_of(state: &AppState, id: Uuid) -> Result<schedule::Model> {
    schedules::find(state, state.tenant, id).await?.ok_or(Error::NotFound)
}

/// One page of the tenant's schedules, soonest first unless ordered otherwise.
pub async fn list_schedules(
    state: &AppState,
    actor: &Actor,
    params: &ListParams,
    filter: &ScheduleFilter,
) -> Result<Paginated<ScheduleWithStatus>> {
    actor.require(names::VIEW_SCHEDULE)?;
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
        results.push(with_status(state, item).await?);
    }
    Ok(Paginated { pagination: page.pagination, results, autocomplete: page.autocomplete })
}

/// One of the tenant's schedules.
pub async fn find_schedule(state: &AppState, actor: &Actor, id: Uuid) -> Result<ScheduleWithStatus> {
    actor.require(names::VIEW_SCHEDULE)?;
    let item = schedule_of(state, id).await?;
    with_status(state, item).await
}

/// Changes a schedule's crontab and pause flag. A full update (`full`) must name the crontab;
/// the related object cannot be changed.
pub async fn update_schedule(state: &AppState, actor: &Actor, id: Uuid, body: ScheduleWrite, full: bool) -> Result<ScheduleWithStatus> {
    actor.require(names::CHANGE_SCHEDULE)?;
    let item = schedule_of(state, id).await?;
    if full && body.crontab.is_none() {
        return Err(Error::field("crontab", "This field is required."));
    }
    if body.rel_obj_id.is_some() {
        return Err(Error::field("rel_obj_id", "The related object of a schedule cannot be changed."));
    }
    let txn = crate::db::begin_write(&state.db).await?;
    let updated = schedules::update(&txn, item.clone(), body.crontab, body.paused).await?;
    let diff = events::service::diff(&schedule_audit(&item), &schedule_audit(&updated));
    events::service::record(&txn, state, actor.event(Action::ModelUpdated).about(&schedule_ref(&updated)).with("diff", diff)).await?;
    txn.commit().await?;
    with_status(state, updated).await
}

/// Sends a schedule's task now, whatever its crontab says.
pub async fn send_schedule(state: &AppState, actor: &Actor, id: Uuid) -> Result<()> {
    actor.require(names::SEND_SCHEDULE)?;
    let item = schedule_of(state, id).await?;
    let txn = crate::db::begin_write(&state.db).await?;
    let Some(sent) = schedules::send_unless_pending(&txn, state, &item).await? else {
        return Err(Error::Conflict("The schedule's previous task is still queued or running; wait for it to finish.".into()));
    };
    let event = actor.event(Action::ModelUpdated).about(&schedule_ref(&item)).with("sent", json!({"task": sent.message_id}));
    events::service::record(&txn, state, event).await?;
    txn.commit().await?;
    super::queue::wake_local_workers(state);
    Ok(())
}

/// Puts a rejected task back in the queue by hand, recording who did.
pub async fn retry_task(state: &AppState, actor: &Actor, id: Uuid) -> Result<()> {
    actor.require(names::RETRY_TASK)?;
    let task = ModelRef { app: "authentik_tasks", model_name: "task", pk: json!(id), name: id.to_string() };
    let audit = actor.event(Action::ModelUpdated).about(&task);
    super::queue::retry_rejected(state, state.tenant, id, audit).await
}

#[cfg(test)]
mod tests {
    use super::names;

    #[test]
    fn the_task_permissions_are_in_the_catalogue() {
        for name in [names::VIEW_TASK, names::RETRY_TASK, names::VIEW_SCHEDULE, names::CHANGE_SCHEDULE, names::SEND_SCHEDULE] {
            assert!(crate::accounts::permissions::known(name).is_some(), "{name} is missing from the catalogue");
        }
    }
}
