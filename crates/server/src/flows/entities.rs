//! Tables of the flows domain.

/// Flows: an ordered set of stages that together sign someone in, out, up, and so on.
pub mod flow {
    use sea_orm::entity::prelude::*;

    /// A flow.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "flows")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub slug: String,
        pub name: String,
        pub title: String,
        pub designation: String,
        pub authentication: String,
        pub denied_action: String,
        pub layout: String,
        pub policy_engine_mode: String,
        pub compatibility_mode: bool,
        pub background: String,
        pub created: DateTimeUtc,
        pub last_updated: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Stages: one question each. The kind names the implementation, `settings` its configuration.
pub mod stage {
    use sea_orm::entity::prelude::*;

    /// A stage.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "stages")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub name: String,
        pub kind: String,
        pub settings: Json,
        pub created: DateTimeUtc,
        pub last_updated: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Which stages a flow runs, in which order.
pub mod binding {
    use sea_orm::entity::prelude::*;

    /// A stage bound to a flow.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "flow_stage_bindings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub flow_id: Uuid,
        pub stage_id: Uuid,
        pub binding_order: i32,
        pub evaluate_on_plan: bool,
        pub re_evaluate_policies: bool,
        pub policy_engine_mode: String,
        pub invalid_response_action: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(belongs_to = "super::stage::Entity", from = "Column::StageId", to = "super::stage::Column::Id")]
        Stage,
    }

    impl Related<super::stage::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Stage.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// Flows in progress: the plan and its context, found by the digest of the browser's flow cookie.
pub mod run {
    use sea_orm::entity::prelude::*;

    /// A flow run.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "flow_runs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub key_digest: String,
        pub flow_id: Uuid,
        /// Bumped on every change, so that two responses to the same challenge cannot both apply.
        pub step: i64,
        pub plan: Json,
        pub context: Json,
        pub created: DateTimeUtc,
        pub expires: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Consents people gave applications through a consent stage: which permissions (scopes) and
/// until when.
pub mod user_consent {
    use sea_orm::entity::prelude::*;

    /// One person's consent to one application.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "user_consents")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub tenant_id: Uuid,
        pub user_id: i64,
        pub application_id: Uuid,
        /// The permissions consented to, separated by spaces.
        pub permissions: String,
        /// When the consent lapses; `None` for a permanent one.
        pub expires: Option<DateTimeUtc>,
        pub created: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
