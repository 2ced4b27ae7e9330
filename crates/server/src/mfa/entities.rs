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

/// Authenticator apps and recovery-code sets, told apart by `kind`.
pub mod otp_device {
    use sea_orm::entity::prelude::*;

    /// One authenticator app (`totp`: the sealed shared secret, its digits, and the last time
    /// step a code was accepted for, so that no code is taken twice) or one set of recovery
    /// codes (`static`: the codes are rows of `static_tokens`), of one account.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "otp_devices")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub tenant_id: Uuid,
        pub user_id: i64,
        /// The stage that set it up, while that stage exists.
        pub stage_id: Option<Uuid>,
        pub kind: String,
        /// The id of the secret or code set offered by the setup stage: unique, so that a setup
        /// answered twice makes one device.
        pub offer: String,
        pub name: String,
        pub secret_sealed: Option<String>,
        /// Where an e-mail authenticator's codes go.
        pub email: Option<String>,
        pub digits: i32,
        pub last_step: i64,
        pub confirmed: bool,
        pub created: DateTimeUtc,
        pub last_updated: DateTimeUtc,
        pub last_used: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Recovery codes not yet used, as keyed digests.
pub mod static_token {
    use sea_orm::entity::prelude::*;

    /// One unused recovery code of a `static` device; using it deletes the row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "static_tokens")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub device_id: i64,
        pub digest: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Codes on their way through the task queue: whether the task sending one handed it to the
/// provider.
pub mod code_handover {
    use sea_orm::entity::prelude::*;

    /// One task's hand-over of a code to its provider. `state` is a
    /// [`Handover`](crate::mfa::outbox::Handover).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "code_handovers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub message_id: Uuid,
        pub tenant_id: Uuid,
        pub state: String,
        pub last_updated: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
