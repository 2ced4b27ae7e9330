//! What every administrative change of flows, stages and bindings shares: its audit record and
//! the messages of references and unique values that do not hold.

use sea_orm::ConnectionTrait;
use serde_json::Value;

use crate::accounts::access::Actor;
use crate::error::{Error, Result};
use crate::events::{self, Action, ModelRef};
use crate::state::AppState;

/// The "does not exist" message of a bad reference, as DRF words it.
pub fn missing_pk(pk: impl std::fmt::Display) -> String {
    format!("Invalid pk \"{pk}\" - object does not exist.")
}

/// Records a change in the audit trail, with the difference of the values unless it deleted.
pub(super) async fn audit(
    db: &impl ConnectionTrait,
    state: &AppState,
    actor: &Actor,
    action: Action,
    about: ModelRef,
    before: Value,
    after: Value,
) -> Result<()> {
    let mut record = actor.event(action).about(&about);
    if action != Action::ModelDeleted {
        record = record.with("diff", events::service::diff(&before, &after));
    }
    events::service::record(db, state, record).await?;
    Ok(())
}

/// A unique constraint that failed as a validation error on `field`; any other error as it is.
pub(super) fn unique_violation(error: sea_orm::DbErr, field: &str, message: &str) -> Error {
    match error.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => Error::field(field, message),
        _ => error.into(),
    }
}
