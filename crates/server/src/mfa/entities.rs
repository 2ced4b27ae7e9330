//! Tables of the multi-factor domain.

/// Phones enrolled through an SMS authenticator stage.
pub mod sms_device {
    use sea_orm::entity::prelude::*;

    /// One phone of one account, enrolled through one stage. `phone_number` is the E.164 number,
    /// or `hash:` and a keyed digest of it when the stage only verifies numbers.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sms_devices")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub tenant_id: Uuid,
        pub user_id: i64,
        pub stage_id: Uuid,
        pub name: String,
        pub phone_number: String,
        pub confirmed: bool,
        pub created: DateTimeUtc,
        pub last_updated: DateTimeUtc,
        pub last_used: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
