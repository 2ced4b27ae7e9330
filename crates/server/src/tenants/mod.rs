//! Tenants: every row of tenant data belongs to one. A default tenant is created on first start.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use crate::error::Result;

/// The tenant table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// A tenant.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tenants")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub slug: String,
        pub name: String,
        pub is_default: bool,
        pub created: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The identifier every tenant-scoped query filters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TenantId(pub Uuid);

/// Returns the default tenant, creating it when none exists.
pub async fn ensure_default(db: &impl ConnectionTrait) -> Result<TenantId> {
    if let Some(tenant) = entity::Entity::find().filter(entity::Column::IsDefault.eq(true)).one(db).await? {
        return Ok(TenantId(tenant.id));
    }
    let id = Uuid::new_v4();
    let inserted = entity::ActiveModel {
        id: Set(id),
        slug: Set("default".into()),
        name: Set("Default".into()),
        is_default: Set(true),
        created: Set(Utc::now()),
    }
    .insert(db)
    .await;
    match inserted {
        Ok(_) => Ok(TenantId(id)),
        // Another process created it at the same moment (unique slug): use that one.
        Err(_) => {
            let tenant = entity::Entity::find()
                .filter(entity::Column::IsDefault.eq(true))
                .one(db)
                .await?
                .ok_or_else(|| crate::error::Error::internal("default tenant missing after concurrent creation"))?;
            Ok(TenantId(tenant.id))
        }
    }
}
