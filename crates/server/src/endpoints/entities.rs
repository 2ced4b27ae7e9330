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
