//! Tables of the audit trail.

/// Audit events.
pub mod event {
    use sea_orm::entity::prelude::*;

    /// Something that happened, who did it and from where.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_uuid: Uuid,
        pub tenant_id: Uuid,
        pub action: String,
        pub app: String,
        pub user_id: Option<i64>,
        /// The acting user as it was then (`pk`, `email`, `username`).
        pub user: Json,
        pub context: Json,
        pub client_ip: Option<String>,
        pub created: DateTimeUtc,
        pub expires: DateTimeUtc,
        pub brand: Json,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Pages visited by signed-in users.
pub mod visit {
    use sea_orm::entity::prelude::*;

    /// One request of a signed-in user.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "user_visits")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub user_id: i64,
        pub method: String,
        pub url: String,
        pub referrer: Option<String>,
        pub user_agent: String,
        pub client_ip: Option<String>,
        pub created: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
