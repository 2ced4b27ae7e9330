//! Consents people gave applications at a consent stage, kept so the stage does not ask again
//! while they hold: finding the one that holds, recording a new one, and forgetting them.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use super::entities::user_consent;
use crate::error::Result;
use crate::tenants::TenantId;

/// Holding, or lapsed for good: a consent past its expiry is as good as none.
fn holding() -> Condition {
    Condition::any().add(user_consent::Column::Expires.is_null()).add(user_consent::Column::Expires.gt(Utc::now()))
}

/// The consent `user` gave `application` that still holds, if any.
pub async fn holding_consent(
    db: &impl ConnectionTrait,
    tenant: TenantId,
    user: i64,
    application: Uuid,
) -> Result<Option<user_consent::Model>> {
    Ok(user_consent::Entity::find()
        .filter(user_consent::Column::TenantId.eq(tenant.0))
        .filter(user_consent::Column::UserId.eq(user))
        .filter(user_consent::Column::ApplicationId.eq(application))
        .filter(holding())
        .one(db)
        .await?)
}

/// The permissions a consent covers.
pub fn permissions_of(consent: &user_consent::Model) -> Vec<&str> {
    consent.permissions.split(' ').filter(|p| !p.is_empty()).collect()
}

/// Records that `user` consents to `permissions` for `application` until `expires` (for good
/// with `None`), replacing what they consented to before.
pub async fn record(
    db: &impl ConnectionTrait,
    tenant: TenantId,
    user: i64,
    application: Uuid,
    permissions: &[String],
    expires: Option<DateTime<Utc>>,
) -> Result<()> {
    let row = user_consent::ActiveModel {
        tenant_id: Set(tenant.0),
        user_id: Set(user),
        application_id: Set(application),
        permissions: Set(permissions.join(" ")),
        expires: Set(expires),
        created: Set(Utc::now()),
        ..Default::default()
    };
    user_consent::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([user_consent::Column::UserId, user_consent::Column::ApplicationId])
                .update_columns([user_consent::Column::Permissions, user_consent::Column::Expires, user_consent::Column::Created])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Which consents to list.
#[derive(Debug, Default, Clone)]
pub struct ConsentQuery {
    pub user: Option<i64>,
    pub application: Option<Uuid>,
}

/// The consents that hold, newest first, as `query` narrows them.
pub fn select_holding(tenant: TenantId, query: &ConsentQuery) -> sea_orm::Select<user_consent::Entity> {
    let mut select = user_consent::Entity::find().filter(user_consent::Column::TenantId.eq(tenant.0)).filter(holding());
    if let Some(user) = query.user {
        select = select.filter(user_consent::Column::UserId.eq(user));
    }
    if let Some(application) = query.application {
        select = select.filter(user_consent::Column::ApplicationId.eq(application));
    }
    select
}

/// The consent `id`, if it still holds.
pub async fn find_holding(db: &impl ConnectionTrait, tenant: TenantId, id: i64) -> Result<Option<user_consent::Model>> {
    Ok(select_holding(tenant, &ConsentQuery::default()).filter(user_consent::Column::Id.eq(id)).one(db).await?)
}

/// Forgets the consent `id`; `false` when it was gone already.
pub async fn forget(db: &impl ConnectionTrait, tenant: TenantId, id: i64) -> Result<bool> {
    let deleted = user_consent::Entity::delete_many()
        .filter(user_consent::Column::TenantId.eq(tenant.0))
        .filter(user_consent::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected == 1)
}

/// Deletes consents past their expiry; returns how many.
pub async fn purge_lapsed(db: &impl ConnectionTrait) -> Result<u64> {
    Ok(user_consent::Entity::delete_many().filter(user_consent::Column::Expires.lte(Utc::now())).exec(db).await?.rows_affected)
}
