//! The API shapes of tasks, workers and schedules (authentik's).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::entities::{schedule, task, task_log};

/// authentik's `LogEvent`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogEvent {
    pub timestamp: DateTime<Utc>,
    pub log_level: String,
    pub logger: String,
    pub event: String,
    pub attributes: Value,
}

impl From<task_log::Model> for LogEvent {
    fn from(log: task_log::Model) -> Self {
        Self { timestamp: log.timestamp, log_level: log.log_level, logger: log.logger, event: log.event, attributes: log.attributes }
    }
}

/// authentik's `Task`, plus the arguments, result and attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskOut {
    pub message_id: Uuid,
    pub queue_name: String,
    pub actor_name: String,
    pub state: String,
    pub mtime: DateTime<Utc>,
    pub retries: i32,
    pub eta: Option<DateTime<Utc>>,
    pub rel_obj_app_label: String,
    pub rel_obj_model: String,
    pub rel_obj_id: Option<String>,
    pub uid: String,
    pub logs: Vec<LogEvent>,
    pub previous_logs: Vec<LogEvent>,
    pub aggregated_status: String,
    pub description: Option<String>,
    /// Gatehouse: the arguments, secrets masked.
    pub args: Value,
    /// Gatehouse: the stored result, if the actor keeps one.
    pub result: Option<Value>,
    pub result_expiry: Option<DateTime<Utc>>,
    /// Gatehouse: how many times the task was claimed.
    pub attempt: i32,
}

impl TaskOut {
    /// Builds the representation from a task and its logs (oldest first).
    pub fn new(task: task::Model, logs: Vec<task_log::Model>) -> Self {
        let (previous, current): (Vec<_>, Vec<_>) = logs.into_iter().partition(|l| l.previous);
        let (app_label, model) = match task.rel_obj_type.as_deref().and_then(|t| t.split_once('.')) {
            Some((app, model)) => (app.to_owned(), model.to_owned()),
            None => (String::new(), String::new()),
        };
        Self {
            message_id: task.message_id,
            queue_name: task.queue_name,
            description: Some(task.actor_name.clone()),
            actor_name: task.actor_name,
            state: task.state,
            mtime: task.mtime,
            retries: task.retries,
            eta: task.eta,
            rel_obj_app_label: app_label,
            rel_obj_model: model,
            rel_obj_id: task.rel_obj_id,
            uid: task.uid,
            logs: current.into_iter().map(LogEvent::from).collect(),
            previous_logs: previous.into_iter().map(LogEvent::from).collect(),
            aggregated_status: task.aggregated_status,
            args: super::actors::mask(task.args),
            result: task.result,
            result_expiry: task.result_expiry,
            attempt: task.attempt,
        }
    }
}

/// authentik's `GlobalTaskStatus`.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct GlobalTaskStatus {
    pub queued: u64,
    pub consumed: u64,
    pub preprocess: u64,
    pub running: u64,
    pub postprocess: u64,
    pub rejected: u64,
    pub done: u64,
    pub info: u64,
    pub warning: u64,
    pub error: u64,
}

/// authentik's `Worker`, plus liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerOut {
    pub worker_id: String,
    pub version: String,
    pub version_matching: bool,
    /// Gatehouse: the host it runs on.
    pub hostname: String,
    /// Gatehouse: heart-beating within `tasks.worker_timeout`.
    pub alive: bool,
    pub last_seen: DateTime<Utc>,
}

/// authentik's `Schedule`, plus the actor's arguments.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleOut {
    pub id: Uuid,
    pub identifier: Option<String>,
    pub uid: String,
    pub actor_name: String,
    pub rel_obj_app_label: String,
    pub rel_obj_model: String,
    pub rel_obj_id: Option<String>,
    pub crontab: String,
    pub paused: bool,
    pub next_run: DateTime<Utc>,
    pub description: Option<String>,
    pub last_task_status: Option<String>,
}

impl ScheduleOut {
    /// Builds the representation.
    pub fn new(item: schedule::Model, last_task_status: Option<String>) -> Self {
        Self {
            id: item.id,
            uid: format!("{}:{}", item.actor_name, item.identifier),
            identifier: Some(item.identifier),
            actor_name: item.actor_name,
            rel_obj_app_label: String::new(),
            rel_obj_model: String::new(),
            rel_obj_id: item.rel_obj_id,
            crontab: item.crontab,
            paused: item.paused,
            next_run: item.next_run,
            description: item.description,
            last_task_status,
        }
    }
}

/// authentik's `ScheduleRequest` / `PatchedScheduleRequest`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleWrite {
    pub rel_obj_id: Option<Option<String>>,
    pub crontab: Option<String>,
    pub paused: Option<bool>,
}
