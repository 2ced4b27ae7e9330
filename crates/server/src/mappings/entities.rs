//! The table of property mappings.

/// Property mappings of every kind, by tenant.
pub mod property_mapping {
    use sea_orm::entity::prelude::*;

    /// One mapping: its kind (`notification` for webhook mappings, `scope` for scope mappings),
    /// name and expression; a scope mapping also names its scope and describes it.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "property_mappings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub kind: String,
        pub name: String,
        pub expression: String,
        /// The scope a scope mapping answers.
        pub scope_name: Option<String>,
        /// What a consent page says about the scope; empty for scopes nobody is asked about.
        pub description: String,
        /// The identity of a mapping the server ships and keeps (authentik's `managed`).
        pub managed: Option<String>,
        pub created: DateTimeUtc,
        pub last_updated: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
