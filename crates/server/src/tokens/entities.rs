//! Tables of the tokens domain.

/// authentik's token intents, stored as authentik spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sea_orm::EnumIter, sea_orm::DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(sea_orm::sea_query::StringLen::None)")]
pub enum Intent {
    #[sea_orm(string_value = "verification")]
    Verification,
    #[sea_orm(string_value = "api")]
    Api,
    #[sea_orm(string_value = "recovery")]
    Recovery,
    #[sea_orm(string_value = "app_password")]
    AppPassword,
}

impl Intent {
    /// Parses authentik's name.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "verification" => Ok(Self::Verification),
            "api" => Ok(Self::Api),
            "recovery" => Ok(Self::Recovery),
            "app_password" => Ok(Self::AppPassword),
            other => Err(format!("\"{other}\" is not a valid choice; choose api, app_password, recovery or verification.")),
        }
    }

    /// authentik's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verification => "verification",
            Self::Api => "api",
            Self::Recovery => "recovery",
            Self::AppPassword => "app_password",
        }
    }

    /// The kind of key this intent carries.
    pub fn key_kind(self) -> crate::tokens::key::KeyKind {
        use crate::tokens::key::KeyKind;
        match self {
            Self::Verification => KeyKind::Verification,
            Self::Api => KeyKind::Api,
            Self::Recovery => KeyKind::Recovery,
            Self::AppPassword => KeyKind::AppPassword,
        }
    }
}

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
        pub intent: crate::tokens::entities::Intent,
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
