//! The tables of applications and OAuth 2.0 providers.

/// Applications, by tenant and slug.
pub mod application {
    use sea_orm::entity::prelude::*;

    /// An application people launch, signed in by at most one provider.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "applications")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub name: String,
        pub slug: String,
        pub provider_id: Option<i64>,
        pub open_in_new_tab: bool,
        pub meta_launch_url: String,
        pub meta_icon: String,
        pub meta_description: String,
        pub meta_publisher: String,
        pub policy_engine_mode: String,
        pub group_name: String,
        pub meta_hide: bool,
        pub created: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// OAuth 2.0 / OpenID Connect providers, by tenant; `client_id` is unique in a tenant.
pub mod provider {
    use sea_orm::entity::prelude::*;

    /// A provider: who its client is, how it proves itself, where it may send people back to,
    /// and how long what it hands out lasts. The client secret is kept only as a keyed digest.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "oauth2_providers")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub tenant_id: Uuid,
        pub name: String,
        pub authentication_flow_id: Option<Uuid>,
        pub authorization_flow_id: Uuid,
        pub invalidation_flow_id: Uuid,
        /// Scope mapping ids, as a JSON array.
        pub property_mappings: Json,
        pub client_type: String,
        /// Grant type names, as a JSON array.
        pub grant_types: Json,
        pub client_id: String,
        pub client_secret_digest: Option<String>,
        pub access_code_validity: String,
        pub access_token_validity: String,
        pub refresh_token_validity: String,
        pub refresh_token_threshold: String,
        pub include_claims_in_id_token: bool,
        pub signing_key_id: Option<Uuid>,
        pub encryption_key_id: Option<Uuid>,
        /// `[{"matching_mode", "url", "redirect_uri_type"}]`.
        pub redirect_uris: Json,
        pub logout_uri: String,
        pub logout_method: String,
        pub sub_mode: String,
        pub issuer_mode: String,
        pub created: DateTimeUtc,
        pub last_updated: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
