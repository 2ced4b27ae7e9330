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

/// Sign-in failure counters, shared by every server process.
pub mod throttle {
    use sea_orm::entity::prelude::*;

    /// Failures of one bucket (an account or a client address) in the current window.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sign_in_throttle")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub bucket: String,
        pub failures: i32,
        pub window_started: DateTimeUtc,
        pub last_failure: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
