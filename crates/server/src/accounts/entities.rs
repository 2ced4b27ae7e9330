//! Tables of the accounts domain.

/// Users.
pub mod user {
    use sea_orm::entity::prelude::*;

    /// A user account. Its `Debug` leaves out the password hash.
    #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub uuid: Uuid,
        pub tenant_id: Uuid,
        pub username: String,
        /// The username's key (`gatehouse_types::identifier_key`), unique per tenant.
        pub username_key: String,
        /// The TR39 skeleton of the username: no two accounts of a tenant share one.
        pub username_skeleton: Option<String>,
        pub email: String,
        /// The e-mail's key, unique per tenant; `None` for accounts without an address.
        pub email_key: Option<String>,
        /// The TR39 skeleton of the e-mail address.
        pub email_skeleton: Option<String>,
        pub name: String,
        /// PHC string (argon2id) or an imported Django hash; `None` means no usable password.
        pub password: Option<String>,
        pub password_change_date: DateTimeUtc,
        pub is_active: bool,
        pub is_superuser: bool,
        pub is_staff: bool,
        pub phone_number: Option<String>,
        pub user_type: crate::accounts::UserType,
        pub path: String,
        pub attributes: Json,
        pub date_joined: DateTimeUtc,
        pub last_login: Option<DateTimeUtc>,
        pub last_updated: DateTimeUtc,
    }

    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("User")
                .field("id", &self.id)
                .field("uuid", &self.uuid)
                .field("username", &self.username)
                .field("is_active", &self.is_active)
                .field("is_superuser", &self.is_superuser)
                .field("is_staff", &self.is_staff)
                .field("user_type", &self.user_type)
                .finish_non_exhaustive()
        }
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Groups.
pub mod group {
    use sea_orm::entity::prelude::*;

    /// A group of users.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "groups")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub group_uuid: Uuid,
        pub tenant_id: Uuid,
        pub name: String,
        pub name_key: String,
        pub is_superuser: bool,
        pub attributes: Json,
        pub created: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Group hierarchy: a group's parents.
pub mod group_parent {
    use sea_orm::entity::prelude::*;

    /// `group_uuid` inherits from `parent_uuid`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "group_parents")]
    pub struct Model {
        pub tenant_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub group_uuid: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub parent_uuid: Uuid,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Group membership.
pub mod group_member {
    use sea_orm::entity::prelude::*;

    /// `user_id` is a member of `group_uuid`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "group_members")]
    pub struct Model {
        pub tenant_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub group_uuid: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Permissions granted to users.
pub mod user_permission {
    use sea_orm::entity::prelude::*;

    /// `user_id` holds `permission`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "user_permissions")]
    pub struct Model {
        pub tenant_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub permission: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Permissions granted to groups.
pub mod group_permission {
    use sea_orm::entity::prelude::*;

    /// Members of `group_uuid` hold `permission`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "group_permissions")]
    pub struct Model {
        pub tenant_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub group_uuid: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub permission: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
