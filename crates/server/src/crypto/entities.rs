//! The table of certificate-key pairs.

/// Certificates with their optional private keys, by tenant.
pub mod key_pair {
    use sea_orm::entity::prelude::*;

    /// One certificate and, when imported or generated with it, its private key, sealed with the
    /// server secret and bound to the row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "certificate_key_pairs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub name: String,
        pub certificate_pem: String,
        pub private_key_sealed: Option<String>,
        pub key_type: Option<String>,
        pub fingerprint_sha256: String,
        pub fingerprint_sha1: String,
        pub cert_expiry: DateTimeUtc,
        pub cert_subject: String,
        /// Set on pairs the server creates and keeps itself (`goauthentik.io/crypto/jwt-managed`).
        pub managed: Option<String>,
        pub created: DateTimeUtc,
        pub last_updated: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
