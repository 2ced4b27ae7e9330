//! Ending sessions and dropping cached checks when something changes who may do what.

use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::cache::Affected;
use crate::error::Result;
use crate::sessions::entities::session;
use crate::state::AppState;
use crate::tenants::TenantId;

/// Commits a change that can end sessions or keys or change what a user may do, naming what it
/// `affects`: other processes learn of it through the transaction, this one marks it once the
/// change is visible.
pub async fn commit_invalidating(state: &AppState, txn: DatabaseTransaction, affected: Affected) -> Result<()> {
    if !affected.is_empty() {
        super::cache::notify_others(&txn, &affected).await?;
    }
    txn.commit().await?;
    if !affected.is_empty() {
        state.auth_cache.invalidate(&affected);
    }
    Ok(())
}

/// What must happen, inside the transaction that ends sessions, before their rows go: what was
/// given through them (tokens held by applications) goes with them, and whoever must be told is
/// told from the same transaction, so that a sign-out that rolls back tells no one and one that
/// commits cannot be forgotten.
#[async_trait::async_trait]
pub trait SessionsEnding: Send + Sync {
    /// Called with the ids of the sessions about to end, on the ending transaction.
    async fn ending(&self, txn: &DatabaseTransaction, state: &AppState, sessions: &[Uuid]) -> Result<()>;
}

/// Ends the sessions `ids` of the tenant (those that exist), on the caller's transaction, after
/// [`AppState::sessions_ending`] has seen them; returns how many ended. The caller commits with
/// [`commit_invalidating`], naming the sessions or their users.
pub async fn end_these(txn: &DatabaseTransaction, state: &AppState, ids: &[Uuid]) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    state.sessions_ending.ending(txn, state, ids).await?;
    let ended = session::Entity::delete_many()
        .filter(session::Column::TenantId.eq(state.tenant.0))
        .filter(session::Column::Id.is_in(ids.iter().copied()))
        .exec(txn)
        .await?
        .rows_affected;
    Ok(ended)
}

/// Ends every session of a user, optionally keeping one, like [`end_these`]; returns how many
/// ended. The caller commits with [`commit_invalidating`], naming the user.
pub async fn end_sessions(txn: &DatabaseTransaction, state: &AppState, user_id: i64, keep: Option<Uuid>) -> Result<u64> {
    let mut query = session::Entity::find()
        .select_only()
        .column(session::Column::Id)
        .filter(session::Column::TenantId.eq(state.tenant.0))
        .filter(session::Column::UserId.eq(user_id));
    if let Some(keep) = keep {
        query = query.filter(session::Column::Id.ne(keep));
    }
    let ids: Vec<Uuid> = query.into_tuple().all(txn).await?;
    end_these(txn, state, &ids).await
}

/// Deletes every app password of a user, on the caller's transaction: a new password ends the
/// ones made under the old. Returns how many ended.
pub async fn end_app_passwords(db: &impl ConnectionTrait, tenant: TenantId, user_id: i64) -> Result<u64> {
    use crate::tokens::entities::{Intent, token};
    let ended = token::Entity::delete_many()
        .filter(token::Column::TenantId.eq(tenant.0))
        .filter(token::Column::UserId.eq(user_id))
        .filter(token::Column::Intent.eq(Intent::AppPassword))
        .exec(db)
        .await?
        .rows_affected;
    Ok(ended)
}
