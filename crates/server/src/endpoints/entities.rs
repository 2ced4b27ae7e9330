//! The tables of the endpoints domain.

/// Groups of devices that policies and enrollment tokens name (authentik's `DeviceAccessGroup`).
pub mod access_group {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "device_access_groups")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub name: String,
        pub attributes: Json,
        pub created: DateTimeUtc,
        pub last_updated: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Agent connectors: how agents on devices talk to this server. Durations are stored in their
/// canonical duration-string form (`hours=8`).
pub mod connector {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "agent_connectors")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub name: String,
        pub enabled: bool,
        pub snapshot_expiry: String,
        pub auth_session_duration: String,
        pub auth_terminate_session_on_expiry: bool,
        pub refresh_interval: String,
        pub authorization_flow_id: Option<Uuid>,
        pub nss_uid_offset: i64,
        pub nss_gid_offset: i64,
        pub challenge_key_id: Option<Uuid>,
        pub challenge_idle_timeout: String,
        pub challenge_trigger_check_in: bool,
        pub created: DateTimeUtc,
        pub last_updated: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Enrollment tokens: found only by a keyed digest of their key; the sealed copy is opened only
/// for `view_key`.
pub mod enrollment_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "enrollment_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub connector_id: Uuid,
        pub device_group_id: Option<Uuid>,
        pub name: String,
        pub key_digest: String,
        pub key_sealed: String,
        pub expiring: bool,
        pub expires: Option<DateTimeUtc>,
        pub created: DateTimeUtc,
        pub last_updated: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Enrolled devices, known by their serial (`identifier`) and a unique name.
pub mod device {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "devices")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub name: String,
        pub identifier: String,
        pub access_group_id: Option<Uuid>,
        pub expiring: bool,
        pub expires: Option<DateTimeUtc>,
        pub attributes: Json,
        pub created: DateTimeUtc,
        pub last_updated: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A device's link to a connector it enrolled through.
pub mod connection {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "device_connections")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub device_id: Uuid,
        pub connector_id: Uuid,
        pub created: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Device tokens: what an agent calls with, found by a keyed digest of the key (which is shown
/// once, to the agent that enrolled); a sealed copy lets the endpoint stage check answers keyed
/// by it.
pub mod device_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "device_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub connection_id: Uuid,
        pub key_digest: String,
        /// The key sealed under the server secret, for checking answers to endpoint-stage
        /// challenges; absent for keys issued before copies were kept.
        pub key_sealed: Option<String>,
        pub expiring: bool,
        pub expires: Option<DateTimeUtc>,
        pub created: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// What an agent reported at its newest check-in, one per connection, kept until it expires.
pub mod snapshot {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "device_fact_snapshots")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub connection_id: Uuid,
        pub data: Json,
        pub created: DateTimeUtc,
        pub expires: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Who may use a device: a user or a group bound to a device or to a device access group.
pub mod binding {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "device_bindings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub device_id: Option<Uuid>,
        pub access_group_id: Option<Uuid>,
        pub user_id: Option<i64>,
        pub group_id: Option<Uuid>,
        pub connector_id: Option<Uuid>,
        pub negate: bool,
        pub enabled: bool,
        pub binding_order: i32,
        pub timeout: i32,
        pub failure_result: bool,
        pub is_primary: bool,
        pub expiring: bool,
        pub expires: Option<DateTimeUtc>,
        pub created: DateTimeUtc,
        pub last_updated: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// An agent's request to have a person sign in for its device (authentik's
/// `DeviceAuthenticationToken`): redeemed once, through the browser, for a signed token.
pub mod authentication_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "device_authentication_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub device_id: Uuid,
        pub device_token_id: Uuid,
        pub connector_id: Uuid,
        pub key_hash: String,
        pub user_id: Option<i64>,
        pub expires: DateTimeUtc,
        pub issued_at: Option<DateTimeUtc>,
        pub token_expires: Option<DateTimeUtc>,
        pub created: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
