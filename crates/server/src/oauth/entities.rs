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
        /// Key pairs (by id, as a JSON list) whose public keys verify the client's assertions
        /// (`private_key_jwt`).
        pub client_keys: Json,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl Model {
        /// The registered redirect URIs.
        pub fn redirect_uris(&self) -> Vec<crate::oauth::model::RedirectUri> {
            serde_json::from_value(self.redirect_uris.clone()).unwrap_or_default()
        }

        /// The grants the provider answers.
        pub fn grant_types(&self) -> Vec<crate::oauth::model::GrantType> {
            serde_json::from_value(self.grant_types.clone()).unwrap_or_default()
        }

        /// The scope mappings.
        pub fn property_mappings(&self) -> Vec<Uuid> {
            serde_json::from_value(self.property_mappings.clone()).unwrap_or_default()
        }

        /// The key pairs whose public keys the client signs its assertions with.
        pub fn client_keys(&self) -> Vec<Uuid> {
            serde_json::from_value(self.client_keys.clone()).unwrap_or_default()
        }
    }
}

/// Authorization codes, by keyed digest: each single use, short-lived, bound to its client,
/// redirect URI and PKCE challenge.
pub mod code {
    use sea_orm::entity::prelude::*;

    /// One authorization code handed to a client through the browser.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "oauth2_codes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub provider_id: i64,
        pub user_id: i64,
        pub session_id: Option<Uuid>,
        pub code_digest: String,
        pub redirect_uri: String,
        /// Whether the authorization request named the redirect URI (the token request must then
        /// name it too).
        pub redirect_uri_given: bool,
        /// Granted scopes, separated by spaces.
        pub scope: String,
        pub nonce: Option<String>,
        /// The S256 PKCE challenge.
        pub code_challenge: Option<String>,
        pub auth_time: DateTimeUtc,
        pub expires: DateTimeUtc,
        pub used_at: Option<DateTimeUtc>,
        pub created: DateTimeUtc,
        /// The key the API names it by (`pk`), see [`crate::oauth::issued::new_number`];
        /// `None` only for a row a process older than the column wrote.
        pub number: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Access and refresh tokens, by keyed digest. Tokens issued from one authorization code share a
/// family, revoked together when the code or a used refresh token is replayed.
pub mod token {
    use sea_orm::entity::prelude::*;

    /// One issued token.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "oauth2_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub provider_id: i64,
        pub user_id: Option<i64>,
        /// `access` or `refresh`.
        pub kind: String,
        pub token_digest: String,
        pub family_id: Uuid,
        pub scope: String,
        pub session_id: Option<Uuid>,
        pub auth_time: DateTimeUtc,
        pub expires: DateTimeUtc,
        /// Revoked, or (a refresh token) used.
        pub revoked: bool,
        pub created: DateTimeUtc,
        /// The `iss` its tokens carry; `None` for tokens issued before it was kept.
        pub issuer: Option<String>,
        /// The key the API names it by (`pk`), see [`crate::oauth::issued::new_number`];
        /// `None` only for a row a process older than the column wrote.
        pub number: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Device authorization requests (RFC 8628): a device shows a user code, a person enters it on
/// their own browser and allows or denies, and the device polls with its device code. Both codes
/// are kept as keyed digests only.
pub mod device_code {
    use sea_orm::entity::prelude::*;

    /// One device's request.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "oauth2_device_codes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub provider_id: i64,
        pub device_code_digest: String,
        pub user_code_digest: String,
        /// Granted scopes, separated by spaces.
        pub scope: String,
        /// `pending`, `approved`, `denied` or `used`.
        pub status: String,
        /// Who allowed or denied it, through which session, signed in when.
        pub user_id: Option<i64>,
        pub session_id: Option<Uuid>,
        pub auth_time: Option<DateTimeUtc>,
        /// When the device last asked, for `slow_down`.
        pub last_poll: Option<DateTimeUtc>,
        pub expires: DateTimeUtc,
        pub created: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Client assertions already used (RFC 7523 §3: a `jti` is accepted once), kept by keyed digest
/// until they expire.
pub mod client_assertion {
    use sea_orm::entity::prelude::*;

    /// One used assertion.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "oauth2_client_assertions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub provider_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub jti_digest: String,
        pub expires: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The grants (token families) given through a session, with the issuer their tokens name:
/// kept as long as the session, so that its end can be told to each application even after
/// every token has expired.
pub mod session_grant {
    use sea_orm::entity::prelude::*;

    /// One grant.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "oauth2_session_grants")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub family_id: Uuid,
        pub tenant_id: Uuid,
        pub provider_id: i64,
        pub user_id: i64,
        pub session_id: Uuid,
        pub issuer: String,
        pub created: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
