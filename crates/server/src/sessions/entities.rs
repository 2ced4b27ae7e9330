//! Tables of the sessions domain.

/// Server-side sessions.
pub mod session {
    use sea_orm::entity::prelude::*;

    /// A signed-in session. The cookie holds a random key; only its keyed digest is stored.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub key_digest: String,
        pub tenant_id: Uuid,
        pub user_id: i64,
        pub created: DateTimeUtc,
        pub expires: DateTimeUtc,
        pub last_used: DateTimeUtc,
        pub last_ip: Option<String>,
        pub user_agent: String,
        /// The user agent parsed into browser, OS and device, and the location when known.
        pub client: Json,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
