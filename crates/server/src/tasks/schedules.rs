//! Cron schedules. Each due occurrence is sent by exactly one scheduler, whichever process gets
//! there first: advancing `next_run` is a conditional update on the value that was read, in the
//! same transaction as the enqueue, so a second scheduler finds nothing to advance.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use croner::Cron;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, Set};
use serde_json::json;
use uuid::Uuid;

use super::entities::{schedule, task};
use super::model::TaskState;
use super::queue::{self, Enqueue};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::tenants::TenantId;

/// The related-object type of tasks sent by schedules.
pub const REL_OBJ_TYPE: &str = "authentik_tasks_schedules.schedule";

/// Gatehouse's own schedules: (identifier, actor, crontab).
const BUILTIN: [(&str, &str, &str); 4] = [
    ("purge-expired", "gatehouse.purge_expired", "2-59/5 * * * *"),
    ("purge-finished-tasks", "gatehouse.purge_finished_tasks", "17 3 * * *"),
    ("clean-workers", "gatehouse.clean_workers", "43 4 * * *"),
    ("rotate-signing-key", "gatehouse.rotate_signing_key", "29 2 * * *"),
];

/// A crontab, parsed; five fields (minute hour day month weekday) or six with seconds first.
pub fn parse_crontab(text: &str) -> Result<Cron, String> {
    let fields = text.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!("'{text}' is not a crontab: expected five fields, e.g. '*/15 * * * *'."));
    }
    Cron::from_str(text.trim()).map_err(|e| format!("'{text}' is not a valid crontab: {e}."))
}

/// The first occurrence after `after`.
pub fn next_after(cron: &Cron, after: DateTime<Utc>) -> Result<DateTime<Utc>> {
    cron.find_next_occurrence(&after, false).map_err(|e| Error::internal(format!("no next occurrence: {e}")))
}

/// Creates the built-in schedules of a tenant when missing.
pub async fn ensure_builtin(state: &AppState, tenant: TenantId) -> Result<()> {
    for (identifier, actor, crontab) in BUILTIN {
        let exists = schedule::Entity::find()
            .filter(schedule::Column::TenantId.eq(tenant.0))
            .filter(schedule::Column::ActorName.eq(actor))
            .filter(schedule::Column::Identifier.eq(identifier))
            .one(&state.db)
            .await?;
        if exists.is_some() {
            continue;
        }
        let cron = parse_crontab(crontab).map_err(Error::internal)?;
        let inserted = schedule::ActiveModel {
            id: Set(Uuid::new_v4()),
            tenant_id: Set(tenant.0),
            identifier: Set(identifier.to_owned()),
            actor_name: Set(actor.to_owned()),
            args: Set(json!({})),
            rel_obj_type: Set(None),
            rel_obj_id: Set(None),
            crontab: Set(crontab.to_owned()),
            paused: Set(false),
            next_run: Set(next_after(&cron, Utc::now())?),
            description: Set(Some(format!("Gatehouse: {actor}"))),
        }
        .insert(&state.db)
        .await;
        // Another process created it at the same moment: fine.
        if let Err(error) = inserted {
            tracing::debug!(%error, "built-in schedule already created");
        }
    }
    Ok(())
}

/// Sends every due schedule once, unless its previous task is still pending or running.
pub async fn send_due(state: &AppState) -> Result<u32> {
    let now = Utc::now();
    let due = schedule::Entity::find()
        .filter(schedule::Column::Paused.eq(false))
        .filter(schedule::Column::NextRun.lte(now))
        .all(&state.db)
        .await?;
    let mut sent = 0;
    for item in due {
        if send_occurrence(state, &item, now).await? {
            sent += 1;
        }
    }
    Ok(sent)
}

/// Sends the occurrence of `item` (the schedule as this scheduler read it) that was due at
/// `item.next_run`, and moves `next_run` on. Only the first scheduler to move it sends: the move
/// is conditional on the value read, so a scheduler that read the same row finds it moved and
/// sends nothing, even when the first one's task has already finished. Returns whether a task
/// was sent.
pub async fn send_occurrence(state: &AppState, item: &schedule::Model, now: DateTime<Utc>) -> Result<bool> {
    let Ok(cron) = parse_crontab(&item.crontab) else { return Ok(false) };
    let txn = crate::db::begin_write(&state.db).await?;
    let next = next_after(&cron, std::cmp::max(item.next_run, now))?;
    let advanced = schedule::Entity::update_many()
        .col_expr(schedule::Column::NextRun, Expr::val(next))
        .filter(schedule::Column::Id.eq(item.id))
        .filter(schedule::Column::NextRun.eq(item.next_run))
        .exec(&txn)
        .await?;
    if advanced.rows_affected != 1 {
        txn.rollback().await?;
        return Ok(false);
    }
    let sent = send_unless_pending(&txn, state, item).await?.is_some();
    txn.commit().await?;
    queue::wake_local_workers(state);
    Ok(sent)
}

fn request(item: &schedule::Model) -> Enqueue {
    Enqueue {
        actor: item.actor_name.clone(),
        args: item.args.clone(),
        delay: None,
        rel_obj: Some((REL_OBJ_TYPE.to_owned(), item.id.to_string())),
        uid: Some(item.identifier.clone()),
    }
}

/// Sends a schedule in the caller's transaction (which wakes the workers after committing)
/// unless its previous task is still queued or running: one task of a schedule at a time, for
/// the scheduler and for a send by hand alike. A per-schedule lock serialises the two.
pub async fn send_unless_pending(txn: &DatabaseTransaction, state: &AppState, item: &schedule::Model) -> Result<Option<task::Model>> {
    crate::db::lock_for_update(txn, &format!("schedule:{}", item.id), item.tenant_id).await?;
    let pending = task::Entity::find()
        .filter(task::Column::RelObjType.eq(REL_OBJ_TYPE))
        .filter(task::Column::RelObjId.eq(item.id.to_string()))
        .filter(task::Column::State.is_not_in([TaskState::Done, TaskState::Rejected]))
        .one(txn)
        .await?;
    if pending.is_some() {
        return Ok(None);
    }
    Ok(Some(queue::enqueue(txn, state, TenantId(item.tenant_id), request(item)).await?))
}

/// A schedule of the tenant.
pub async fn find(state: &AppState, tenant: TenantId, id: Uuid) -> Result<Option<schedule::Model>> {
    Ok(schedule::Entity::find_by_id(id).filter(schedule::Column::TenantId.eq(tenant.0)).one(&state.db).await?)
}

/// Changes the crontab and pause flag; a new crontab recomputes `next_run`.
pub async fn update(
    db: &impl ConnectionTrait,
    item: schedule::Model,
    crontab: Option<String>,
    paused: Option<bool>,
) -> Result<schedule::Model> {
    let mut model = item.clone().into_active_model();
    if let Some(crontab) = crontab {
        let cron = parse_crontab(&crontab).map_err(|m| Error::field("crontab", m))?;
        let next = next_after(&cron, Utc::now())
            .map_err(|_| Error::field("crontab", format!("'{crontab}' never comes: it names no date that exists.")))?;
        model.next_run = Set(next);
        model.crontab = Set(crontab.trim().to_owned());
    }
    if let Some(paused) = paused {
        model.paused = Set(paused);
    }
    Ok(model.update(db).await?)
}

/// The aggregated status of the newest task a schedule sent.
pub async fn last_status(state: &AppState, item: &schedule::Model) -> Result<Option<String>> {
    use sea_orm::QueryOrder;
    Ok(task::Entity::find()
        .filter(task::Column::RelObjType.eq(REL_OBJ_TYPE))
        .filter(task::Column::RelObjId.eq(item.id.to_string()))
        .order_by_desc(task::Column::Created)
        .one(&state.db)
        .await?
        .map(|t| t.aggregated_status))
}

use sea_orm::IntoActiveModel;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crontabs_are_parsed_and_bad_ones_named() {
        let cron = parse_crontab("*/15 * * * *").unwrap();
        let start = DateTime::parse_from_rfc3339("2026-01-01T10:07:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(next_after(&cron, start).unwrap().to_rfc3339(), "2026-01-01T10:15:00+00:00");
        for bad in ["", "* * *", "61 * * * *", "every minute", "* * * * * * * *"] {
            assert!(parse_crontab(bad).is_err(), "{bad}");
        }
        for (_, _, crontab) in BUILTIN {
            assert!(parse_crontab(crontab).is_ok(), "{crontab}");
        }
    }
}
