//! Gatehouse's own actors. Each is idempotent: running it twice does no harm, as at-least-once
//! delivery requires.

use chrono::Utc;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use super::actors::{ActorResult, TaskContext};
use super::entities::{task, worker};
use super::model::TaskState;

/// Removes expired sessions, events past retention, expired single-use tokens, flow runs past
/// their lifetime, lapsed consents, expired authorization codes, OAuth tokens and used client assertions, failure counters of windows long
/// over, device facts and device authentication requests past their expiry and task results past their expiry.
pub async fn purge_expired(context: TaskContext, _args: Value) -> ActorResult {
    let db = &context.state.db;
    let sessions = crate::sessions::service::purge_expired(db).await?;
    let events = crate::events::service::purge_expired(db).await?;
    let tokens = crate::tokens::service::purge_expired(db).await?;
    let flow_runs = crate::flows::run::purge_expired(db).await?;
    let oauth_grants = crate::oauth::grants::purge_expired(db).await?;
    let client_assertions = crate::oauth::assertions::purge_expired(db).await?;
    let consents = crate::flows::consents::purge_lapsed(db).await?;
    let attempt_counters = crate::credentials::attempts::purge_stale(db, Utc::now()).await?;
    let device_facts = crate::endpoints::devices::purge_expired(db).await?;
    let device_authentications = crate::endpoints::device_auth::purge_expired(db).await?;
    let results = task::Entity::update_many()
        .col_expr(task::Column::Result, sea_orm::sea_query::Expr::val(Option::<Value>::None))
        .col_expr(task::Column::ResultExpiry, sea_orm::sea_query::Expr::val(Option::<chrono::DateTime<Utc>>::None))
        .filter(task::Column::ResultExpiry.lt(Utc::now()))
        .exec(db)
        .await
        .map_err(crate::error::Error::from)?
        .rows_affected;
    let counts = json!({"sessions": sessions, "events": events, "tokens": tokens, "flow_runs": flow_runs, "oauth_grants": oauth_grants, "client_assertions": client_assertions, "consents": consents, "attempt_counters": attempt_counters, "device_facts": device_facts, "device_authentications": device_authentications, "task_results": results});
    context.log("info", "Expired rows removed", counts.clone()).await?;
    Ok(Some(counts))
}

/// Removes finished (done or rejected) tasks older than `tasks.finished_retention`, whether or
/// not they kept a result (authentik's purge skips those without one).
pub async fn purge_finished_tasks(context: TaskContext, _args: Value) -> ActorResult {
    let cutoff = Utc::now() - context.state.config.tasks.finished_retention.to_chrono();
    let removed = task::Entity::delete_many()
        .filter(task::Column::State.is_in([TaskState::Done, TaskState::Rejected]))
        .filter(task::Column::Mtime.lt(cutoff))
        .exec(&context.state.db)
        .await
        .map_err(crate::error::Error::from)?
        .rows_affected;
    context.log("info", "Finished tasks removed", json!({"count": removed})).await?;
    Ok(None)
}

/// Removes workers not seen for a day.
pub async fn clean_workers(context: TaskContext, _args: Value) -> ActorResult {
    let cutoff = Utc::now() - chrono::TimeDelta::days(1);
    let removed = worker::Entity::delete_many()
        .filter(worker::Column::LastSeen.lt(cutoff))
        .exec(&context.state.db)
        .await
        .map_err(crate::error::Error::from)?
        .rows_affected;
    context.log("info", "Stale workers removed", json!({"count": removed})).await?;
    Ok(None)
}
