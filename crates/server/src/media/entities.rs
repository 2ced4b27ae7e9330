//! The index of uploaded files.

/// One uploaded file: its name (unique per tenant), type, size, digest and the storage key its
/// bytes live under.
pub mod media_file {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "media_files")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub name: String,
        /// The MIME type found in the content (an `ImageKind`).
        pub mime_type: String,
        pub size: i64,
        /// SHA-256 of the content, hex: the `ETag`.
        pub sha256: String,
        /// Where the bytes are in the store: `media/<tenant>/<id>`, never derived from the name.
        pub storage_key: String,
        pub created_by: Option<i64>,
        pub created: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
