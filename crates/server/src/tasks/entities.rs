//! Tables of the task queue.

/// Tasks: one row per message, kept across retries.
pub mod task {
    use sea_orm::entity::prelude::*;

    /// A task.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "tasks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub message_id: Uuid,
        pub tenant_id: Uuid,
        pub queue_name: String,
        pub actor_name: String,
        pub args: Json,
        pub state: String,
        pub aggregated_status: String,
        pub mtime: DateTimeUtc,
        pub created: DateTimeUtc,
        pub retries: i32,
        pub eta: Option<DateTimeUtc>,
        /// When the task may run: its eta, or when it was queued. Claims walk an index on it.
        pub due: DateTimeUtc,
        pub result: Option<Json>,
        pub result_expiry: Option<DateTimeUtc>,
        pub rel_obj_type: Option<String>,
        pub rel_obj_id: Option<String>,
        pub uid: String,
        /// The worker that claimed the current attempt.
        pub worker_id: Option<Uuid>,
        /// Counts claims; a rescue or a finish only touches the attempt it read.
        pub attempt: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Log entries of tasks.
pub mod task_log {
    use sea_orm::entity::prelude::*;

    /// One log entry; `previous` marks entries of earlier attempts.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "task_logs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub task_id: Uuid,
        pub tenant_id: Uuid,
        pub event: String,
        pub log_level: String,
        pub logger: String,
        pub timestamp: DateTimeUtc,
        pub attributes: Json,
        pub previous: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Worker processes.
pub mod worker {
    use sea_orm::entity::prelude::*;

    /// A worker and its heartbeat.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "task_workers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub worker_id: Uuid,
        pub hostname: String,
        pub version: String,
        pub started: DateTimeUtc,
        pub last_seen: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Cron schedules.
pub mod schedule {
    use sea_orm::entity::prelude::*;

    /// A schedule that sends a task whenever its crontab comes due.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "task_schedules")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub identifier: String,
        pub actor_name: String,
        pub args: Json,
        pub rel_obj_type: Option<String>,
        pub rel_obj_id: Option<String>,
        pub crontab: String,
        pub paused: bool,
        pub next_run: DateTimeUtc,
        pub description: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
