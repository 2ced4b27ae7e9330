//! Tables of the tokens domain.

/// Tokens: API keys, app passwords, recovery and verification links.
pub mod token {
    use sea_orm::entity::prelude::*;

    /// A token. The key itself is never stored: only its keyed digest (for lookup) and a sealed
    /// copy (for `view_key/`) that only the server secret opens. Its `Debug` leaves both out.
    #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tokens")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub token_uuid: Uuid,
        pub key_id: Uuid,
        pub tenant_id: Uuid,
        pub identifier: String,
        pub intent: crate::tokens::service::Intent,
        pub user_id: i64,
        pub name: String,
        pub description: String,
        pub managed: Option<String>,
        pub key_digest: String,
        pub key_sealed: String,
        pub expiring: bool,
        pub expires: Option<DateTimeUtc>,
        pub is_active: bool,
        pub last_used_at: Option<DateTimeUtc>,
        pub created: DateTimeUtc,
        pub last_updated: DateTimeUtc,
    }

    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Token")
                .field("id", &self.id)
                .field("key_id", &self.key_id)
                .field("identifier", &self.identifier)
                .field("intent", &self.intent)
                .field("user_id", &self.user_id)
                .field("expiring", &self.expiring)
                .field("expires", &self.expires)
                .field("is_active", &self.is_active)
                .finish_non_exhaustive()
        }
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Tags on tokens.
pub mod token_tag {
    use sea_orm::entity::prelude::*;

    /// `token_id` carries `tag`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "token_tags")]
    pub struct Model {
        pub tenant_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub tag: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
