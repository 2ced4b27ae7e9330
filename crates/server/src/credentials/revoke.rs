//! Ending sessions and dropping cached checks when something changes who may do what.

use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::error::Result;
use crate::sessions::entities::session;
use crate::state::AppState;
use crate::tenants::TenantId;

/// Makes the transaction on `txn` invalidate other processes' cached checks when it commits; the
/// caller invalidates this process's cache after the commit.
pub async fn invalidate_in(txn: &impl ConnectionTrait) -> Result<()> {
    super::cache::notify_others(txn).await?;
    Ok(())
}

/// Commits a change that can end sessions or keys or change what a user may do: other processes
/// learn of it through the transaction, this one drops its cache once the change is visible.
pub async fn commit_invalidating(state: &AppState, txn: DatabaseTransaction) -> Result<()> {
    invalidate_in(&txn).await?;
    txn.commit().await?;
    state.auth_cache.invalidate();
    Ok(())
}

/// Ends every session of a user, optionally keeping one; returns how many ended. Runs on the
/// caller's transaction; the caller commits with [`commit_invalidating`].
pub async fn end_sessions(db: &impl ConnectionTrait, tenant: TenantId, user_id: i64, keep: Option<Uuid>) -> Result<u64> {
    let mut delete =
        session::Entity::delete_many().filter(session::Column::TenantId.eq(tenant.0)).filter(session::Column::UserId.eq(user_id));
    if let Some(keep) = keep {
        delete = delete.filter(session::Column::Id.ne(keep));
    }
    let ended = delete.exec(db).await?.rows_affected;
    invalidate_in(db).await?;
    Ok(ended)
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
