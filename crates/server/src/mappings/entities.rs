//! The table of property mappings.

/// Property mappings of every kind, by tenant.
pub mod property_mapping {
    use sea_orm::entity::prelude::*;

    /// One mapping: its kind (`notification` for webhook mappings), name and expression.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "property_mappings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub kind: String,
        pub name: String,
        pub expression: String,
        pub created: DateTimeUtc,
        pub last_updated: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
