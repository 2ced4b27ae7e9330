//! Schema migrations, one tree for SQLite and PostgreSQL. Column types map to the idiomatic
//! PostgreSQL types (uuid, timestamptz, jsonb, bigint identities).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// All migrations in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(Initial),
            Box::new(Tokens),
            Box::new(Tasks),
            Box::new(Flows),
            Box::new(IdentifierForms),
            Box::new(Installation),
            Box::new(SmsDevices),
            Box::new(OtpDevices),
            Box::new(EmailDevices),
            Box::new(PropertyMappings),
            Box::new(CodeHandovers),
            Box::new(MediaFiles),
            Box::new(CertificateKeyPairs),
            Box::new(Applications),
            Box::new(UserConsents),
            Box::new(ScopeMappings),
            Box::new(DeviceCodes),
            Box::new(TokenIssuers),
            Box::new(GrantNumbers),
            Box::new(ClientAssertions),
            Box::new(SessionGrants),
            Box::new(AgentConnectors),
            Box::new(Devices),
            Box::new(DeviceBindings),
            Box::new(DeviceAuthenticationTokens),
            Box::new(DeviceKeysSealed),
            Box::new(TaskIndexesPartial),
        ]
    }
}

/// Tenants, accounts, sessions, sign-in throttling and the audit trail.
struct Initial;

impl MigrationName for Initial {
    fn name(&self) -> &str {
        "m0001_initial"
    }
}

fn tenant_fk(table: &'static str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{table}_tenant"))
        .from(table, "tenant_id")
        .to("tenants", "id")
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

fn index(table: &'static str, name: &str, columns: &[&'static str], unique: bool) -> IndexCreateStatement {
    let mut statement = Index::create();
    statement.name(name).table(table);
    for column in columns {
        statement.col(*column);
    }
    if unique {
        statement.unique();
    }
    statement.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Initial {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("tenants")
                    .col(pk_uuid("id"))
                    .col(string_uniq("slug"))
                    .col(string("name"))
                    .col(boolean("is_default"))
                    .col(timestamp_with_time_zone("created"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("users")
                    .col(big_pk_auto("id"))
                    .col(uuid_uniq("uuid"))
                    .col(uuid("tenant_id"))
                    .col(string_len("username", 150))
                    .col(string_len("username_key", 150))
                    .col(string_len("email", 254))
                    .col(string_len_null("email_key", 254))
                    .col(text("name"))
                    .col(text_null("password"))
                    .col(timestamp_with_time_zone("password_change_date"))
                    .col(boolean("is_active"))
                    .col(boolean("is_superuser"))
                    .col(boolean("is_staff"))
                    .col(string_len_null("phone_number", 32))
                    .col(string_len("user_type", 32))
                    .col(text("path"))
                    .col(json_binary("attributes"))
                    .col(timestamp_with_time_zone("date_joined"))
                    .col(timestamp_with_time_zone_null("last_login"))
                    .col(timestamp_with_time_zone("last_updated"))
                    .foreign_key(&mut tenant_fk("users"))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("users", "ux_users_tenant_email", &["tenant_id", "email_key"], true)).await?;
        manager.create_index(index("users", "ux_users_tenant_username", &["tenant_id", "username_key"], true)).await?;

        manager
            .create_table(
                Table::create()
                    .table("groups")
                    .col(pk_uuid("group_uuid"))
                    .col(uuid("tenant_id"))
                    .col(text("name"))
                    .col(text("name_key"))
                    .col(boolean("is_superuser"))
                    .col(json_binary("attributes"))
                    .col(timestamp_with_time_zone("created"))
                    .foreign_key(&mut tenant_fk("groups"))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("groups", "ux_groups_tenant_name", &["tenant_id", "name_key"], true)).await?;

        manager
            .create_table(
                Table::create()
                    .table("group_parents")
                    .col(uuid("tenant_id"))
                    .foreign_key(&mut tenant_fk("group_parents"))
                    .col(uuid("group_uuid"))
                    .col(uuid("parent_uuid"))
                    .primary_key(Index::create().col("group_uuid").col("parent_uuid"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_group_parents_group")
                            .from("group_parents", "group_uuid")
                            .to("groups", "group_uuid")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_group_parents_parent")
                            .from("group_parents", "parent_uuid")
                            .to("groups", "group_uuid")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("group_members")
                    .col(uuid("tenant_id"))
                    .foreign_key(&mut tenant_fk("group_members"))
                    .col(uuid("group_uuid"))
                    .col(big_integer("user_id"))
                    .primary_key(Index::create().col("group_uuid").col("user_id"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_group_members_group")
                            .from("group_members", "group_uuid")
                            .to("groups", "group_uuid")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_group_members_user")
                            .from("group_members", "user_id")
                            .to("users", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("group_members", "ix_group_members_user", &["user_id"], false)).await?;

        manager
            .create_table(
                Table::create()
                    .table("user_permissions")
                    .col(uuid("tenant_id"))
                    .foreign_key(&mut tenant_fk("user_permissions"))
                    .col(big_integer("user_id"))
                    .col(string_len("permission", 150))
                    .primary_key(Index::create().col("user_id").col("permission"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_user_permissions_user")
                            .from("user_permissions", "user_id")
                            .to("users", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("group_permissions")
                    .col(uuid("tenant_id"))
                    .foreign_key(&mut tenant_fk("group_permissions"))
                    .col(uuid("group_uuid"))
                    .col(string_len("permission", 150))
                    .primary_key(Index::create().col("group_uuid").col("permission"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_group_permissions_group")
                            .from("group_permissions", "group_uuid")
                            .to("groups", "group_uuid")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("sessions")
                    .col(pk_uuid("id"))
                    .col(string_len_uniq("key_digest", 64))
                    .col(uuid("tenant_id"))
                    .col(big_integer("user_id"))
                    .col(timestamp_with_time_zone("created"))
                    .col(timestamp_with_time_zone("expires"))
                    .col(timestamp_with_time_zone("last_used"))
                    .col(string_len_null("last_ip", 64))
                    .col(text("user_agent"))
                    .col(json_binary("client"))
                    .foreign_key(&mut tenant_fk("sessions"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_sessions_user")
                            .from("sessions", "user_id")
                            .to("users", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("sessions", "ix_sessions_user", &["user_id"], false)).await?;
        manager.create_index(index("sessions", "ix_sessions_expires", &["expires"], false)).await?;

        manager
            .create_table(
                Table::create()
                    .table("sign_in_throttle")
                    .col(uuid("tenant_id"))
                    .col(string_len("bucket", 320))
                    .col(integer("failures"))
                    .col(timestamp_with_time_zone("window_started"))
                    .col(timestamp_with_time_zone("last_failure"))
                    .primary_key(Index::create().col("tenant_id").col("bucket"))
                    .foreign_key(&mut tenant_fk("sign_in_throttle"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("events")
                    .col(pk_uuid("event_uuid"))
                    .col(uuid("tenant_id"))
                    .col(string_len("action", 64))
                    .col(string_len("app", 128))
                    .col(big_integer_null("user_id"))
                    .col(json_binary("user"))
                    .col(json_binary("context"))
                    .col(string_len_null("client_ip", 64))
                    .col(timestamp_with_time_zone("created"))
                    .col(timestamp_with_time_zone("expires"))
                    .col(json_binary("brand"))
                    .foreign_key(&mut tenant_fk("events"))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("events", "ix_events_tenant_created", &["tenant_id", "created"], false)).await?;
        manager.create_index(index("events", "ix_events_tenant_action", &["tenant_id", "action", "created"], false)).await?;
        manager.create_index(index("events", "ix_events_user", &["user_id"], false)).await?;
        manager.create_index(index("events", "ix_events_expires", &["expires"], false)).await?;

        manager
            .create_table(
                Table::create()
                    .table("user_visits")
                    .col(pk_uuid("id"))
                    .col(uuid("tenant_id"))
                    .col(big_integer("user_id"))
                    .col(string_len("method", 16))
                    .col(text("url"))
                    .col(text_null("referrer"))
                    .col(text("user_agent"))
                    .col(string_len_null("client_ip", 64))
                    .col(timestamp_with_time_zone("created"))
                    .foreign_key(&mut tenant_fk("user_visits"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_user_visits_user")
                            .from("user_visits", "user_id")
                            .to("users", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("user_visits", "ix_user_visits_user_created", &["user_id", "created"], false)).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "user_visits",
            "events",
            "sign_in_throttle",
            "sessions",
            "group_permissions",
            "user_permissions",
            "group_members",
            "group_parents",
            "groups",
            "users",
            "tenants",
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

/// API keys and other tokens.
struct Tokens;

impl MigrationName for Tokens {
    fn name(&self) -> &str {
        "m0002_tokens"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Tokens {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("tokens")
                    .col(big_pk_auto("id"))
                    .col(uuid_uniq("token_uuid"))
                    .col(uuid_uniq("key_id"))
                    .col(uuid("tenant_id"))
                    .col(string_len("identifier", 255))
                    .col(string_len("intent", 32))
                    .col(big_integer("user_id"))
                    .col(text("name"))
                    .col(text("description"))
                    .col(text_null("managed"))
                    .col(string_len_uniq("key_digest", 64))
                    .col(text("key_sealed"))
                    .col(boolean("expiring"))
                    .col(timestamp_with_time_zone_null("expires"))
                    .col(boolean("is_active"))
                    .col(timestamp_with_time_zone_null("last_used_at"))
                    .col(timestamp_with_time_zone("created"))
                    .col(timestamp_with_time_zone("last_updated"))
                    .foreign_key(&mut tenant_fk("tokens"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_tokens_user")
                            .from("tokens", "user_id")
                            .to("users", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("tokens", "ux_tokens_tenant_identifier", &["tenant_id", "identifier"], true)).await?;
        manager.create_index(index("tokens", "ix_tokens_user", &["user_id", "is_active"], false)).await?;
        manager.create_index(index("tokens", "ix_tokens_expiring", &["expiring", "expires"], false)).await?;
        manager
            .create_table(
                Table::create()
                    .table("token_tags")
                    .col(uuid("tenant_id"))
                    .foreign_key(&mut tenant_fk("token_tags"))
                    .col(big_integer("token_id"))
                    .col(string_len("tag", 64))
                    .primary_key(Index::create().col("token_id").col("tag"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_token_tags_token")
                            .from("token_tags", "token_id")
                            .to("tokens", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("token_tags", "ix_token_tags_tag", &["tag"], false)).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("token_tags").to_owned()).await?;
        manager.drop_table(Table::drop().table("tokens").to_owned()).await?;
        Ok(())
    }
}

/// The task queue: tasks, their logs, workers and schedules.
struct Tasks;

impl MigrationName for Tasks {
    fn name(&self) -> &str {
        "m0003_tasks"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Tasks {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("tasks")
                    .col(pk_uuid("message_id"))
                    .col(uuid("tenant_id"))
                    .col(string_len("queue_name", 100))
                    .col(string_len("actor_name", 200))
                    .col(json_binary("args"))
                    .col(string_len("state", 16))
                    .col(string_len("aggregated_status", 16))
                    .col(timestamp_with_time_zone("mtime"))
                    .col(timestamp_with_time_zone("created"))
                    .col(integer("retries"))
                    .col(timestamp_with_time_zone_null("eta"))
                    .col(timestamp_with_time_zone("due"))
                    .col(json_binary_null("result"))
                    .col(timestamp_with_time_zone_null("result_expiry"))
                    .col(string_len_null("rel_obj_type", 100))
                    .col(text_null("rel_obj_id"))
                    .col(text("uid"))
                    .col(uuid_null("worker_id"))
                    .col(integer("attempt"))
                    .foreign_key(&mut tenant_fk("tasks"))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("tasks", "ix_tasks_claim", &["state", "due"], false)).await?;
        manager.create_index(index("tasks", "ix_tasks_tenant_mtime", &["tenant_id", "mtime"], false)).await?;
        manager.create_index(index("tasks", "ix_tasks_worker", &["worker_id", "state"], false)).await?;
        manager.create_index(index("tasks", "ix_tasks_rel_obj", &["rel_obj_type", "rel_obj_id"], false)).await?;
        manager
            .create_table(
                Table::create()
                    .table("task_logs")
                    .col(pk_uuid("id"))
                    .col(uuid("task_id"))
                    .col(uuid("tenant_id"))
                    .col(text("event"))
                    .col(string_len("log_level", 16))
                    .col(string_len("logger", 200))
                    .col(timestamp_with_time_zone("timestamp"))
                    .col(json_binary("attributes"))
                    .col(boolean("previous"))
                    .foreign_key(&mut tenant_fk("task_logs"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_task_logs_task")
                            .from("task_logs", "task_id")
                            .to("tasks", "message_id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("task_logs", "ix_task_logs_task", &["task_id", "previous"], false)).await?;
        manager
            .create_table(
                Table::create()
                    .table("task_workers")
                    .col(pk_uuid("worker_id"))
                    .col(string_len("hostname", 255))
                    .col(string_len("version", 64))
                    .col(timestamp_with_time_zone("started"))
                    .col(timestamp_with_time_zone("last_seen"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("task_schedules")
                    .col(pk_uuid("id"))
                    .col(uuid("tenant_id"))
                    .col(string_len("identifier", 200))
                    .col(string_len("actor_name", 200))
                    .col(json_binary("args"))
                    .col(string_len_null("rel_obj_type", 100))
                    .col(text_null("rel_obj_id"))
                    .col(string_len("crontab", 200))
                    .col(boolean("paused"))
                    .col(timestamp_with_time_zone("next_run"))
                    .col(text_null("description"))
                    .foreign_key(&mut tenant_fk("task_schedules"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("task_schedules", "ux_task_schedules_identity", &["tenant_id", "actor_name", "identifier"], true))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["task_schedules", "task_workers", "task_logs", "tasks"] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

/// Flows, stages, their bindings, and the runs of flows in progress.
struct Flows;

impl MigrationName for Flows {
    fn name(&self) -> &str {
        "m0004_flows"
    }
}

fn cascade(name: &str, from: (&'static str, &'static str), to: (&'static str, &'static str)) -> ForeignKeyCreateStatement {
    ForeignKey::create().name(name).from(from.0, from.1).to(to.0, to.1).on_delete(ForeignKeyAction::Cascade).to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Flows {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("flows")
                    .col(pk_uuid("id"))
                    .col(uuid("tenant_id"))
                    .col(string_len("slug", 50))
                    .col(text("name"))
                    .col(text("title"))
                    .col(string_len("designation", 32))
                    .col(string_len("authentication", 32))
                    .col(string_len("denied_action", 32))
                    .col(string_len("layout", 40))
                    .col(string_len("policy_engine_mode", 8))
                    .col(boolean("compatibility_mode"))
                    .col(text("background"))
                    .col(timestamp_with_time_zone("created"))
                    .col(timestamp_with_time_zone("last_updated"))
                    .foreign_key(&mut tenant_fk("flows"))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("flows", "ux_flows_slug", &["tenant_id", "slug"], true)).await?;
        manager
            .create_table(
                Table::create()
                    .table("stages")
                    .col(pk_uuid("id"))
                    .col(uuid("tenant_id"))
                    .col(text("name"))
                    .col(string_len("kind", 64))
                    .col(json_binary("settings"))
                    .col(timestamp_with_time_zone("created"))
                    .col(timestamp_with_time_zone("last_updated"))
                    .foreign_key(&mut tenant_fk("stages"))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("stages", "ux_stages_name", &["tenant_id", "name"], true)).await?;
        manager.create_index(index("stages", "ix_stages_kind", &["tenant_id", "kind"], false)).await?;
        manager
            .create_table(
                Table::create()
                    .table("flow_stage_bindings")
                    .col(pk_uuid("id"))
                    .col(uuid("tenant_id"))
                    .col(uuid("flow_id"))
                    .col(uuid("stage_id"))
                    .col(integer("binding_order"))
                    .col(boolean("evaluate_on_plan"))
                    .col(boolean("re_evaluate_policies"))
                    .col(string_len("policy_engine_mode", 8))
                    .col(string_len("invalid_response_action", 32))
                    .foreign_key(&mut tenant_fk("flow_stage_bindings"))
                    .foreign_key(&mut cascade("fk_bindings_flow", ("flow_stage_bindings", "flow_id"), ("flows", "id")))
                    .foreign_key(&mut cascade("fk_bindings_stage", ("flow_stage_bindings", "stage_id"), ("stages", "id")))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("flow_stage_bindings", "ux_bindings_flow_stage_order", &["flow_id", "stage_id", "binding_order"], true))
            .await?;
        manager.create_index(index("flow_stage_bindings", "ix_bindings_stage", &["stage_id"], false)).await?;
        manager
            .create_table(
                Table::create()
                    .table("flow_runs")
                    .col(pk_uuid("id"))
                    .col(uuid("tenant_id"))
                    .col(string_len_uniq("key_digest", 64))
                    .col(uuid("flow_id"))
                    .col(big_integer("step"))
                    .col(json_binary("plan"))
                    .col(json_binary("context"))
                    .col(timestamp_with_time_zone("created"))
                    .col(timestamp_with_time_zone("expires"))
                    .foreign_key(&mut tenant_fk("flow_runs"))
                    .foreign_key(&mut cascade("fk_flow_runs_flow", ("flow_runs", "flow_id"), ("flows", "id")))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("flow_runs", "ix_flow_runs_expires", &["expires"], false)).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["flow_runs", "flow_stage_bindings", "stages", "flows"] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

/// Identifier keys in their NFKC case-folded form, and look-alike skeletons beside them. Existing
/// accounts are re-keyed. Where several accounts' identifiers now read the same, the oldest keeps
/// the identifier; the others get a key no identifier can match (they cannot be found by it
/// until an administrator renames them) and are named in the log.
struct IdentifierForms;

impl MigrationName for IdentifierForms {
    fn name(&self) -> &str {
        "m0005_identifier_forms"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for IdentifierForms {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in ["username_skeleton", "email_skeleton"] {
            manager.alter_table(Table::alter().table("users").add_column(string_len_null(column, 1024)).to_owned()).await?;
        }
        manager.create_index(index("users", "ix_users_tenant_username_skeleton", &["tenant_id", "username_skeleton"], false)).await?;
        manager.create_index(index("users", "ix_users_tenant_email_skeleton", &["tenant_id", "email_skeleton"], false)).await?;
        rekey_users(manager.get_connection()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in ["ix_users_tenant_username_skeleton", "ix_users_tenant_email_skeleton"] {
            manager.drop_index(Index::drop().name(name).table("users").to_owned()).await?;
        }
        for column in ["username_skeleton", "email_skeleton"] {
            manager.alter_table(Table::alter().table("users").drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}

/// Recomputes every account's identifier keys and skeletons (see [`IdentifierForms`]).
async fn rekey_users(db: &SchemaManagerConnection<'_>) -> Result<(), DbErr> {
    use std::collections::HashMap;

    use sea_orm::{ConnectionTrait, FromQueryResult};

    #[derive(FromQueryResult)]
    struct Row {
        id: i64,
        tenant_id: uuid::Uuid,
        username: String,
        email: String,
        email_key: Option<String>,
    }
    let select = Query::select().columns(["id", "tenant_id", "username", "email", "email_key"]).from("users").to_owned();
    let rows = Row::find_by_statement(db.get_database_backend().build(&select)).all(db).await?;
    let mut username_keys: HashMap<(uuid::Uuid, String), Vec<i64>> = HashMap::new();
    let mut email_keys: HashMap<(uuid::Uuid, String), Vec<i64>> = HashMap::new();
    for row in &rows {
        username_keys.entry((row.tenant_id, gatehouse_types::identifier_key(&row.username))).or_default().push(row.id);
        if row.email_key.is_some() {
            email_keys.entry((row.tenant_id, gatehouse_types::identifier_key(&row.email))).or_default().push(row.id);
        }
    }
    for (keys, what) in [(&username_keys, "username"), (&email_keys, "e-mail address")] {
        for ids in keys.values().filter(|ids| ids.len() > 1) {
            tracing::warn!(
                kept_by = ids.iter().min(),
                accounts = ?ids,
                "these accounts' {what}s now read as the same: the oldest keeps it, rename the others"
            );
        }
    }
    // A key no identifier can produce: identifiers never hold control characters.
    let unmatchable = |id: i64| format!("\u{1}clash:{id}");
    let keeps = |keys: &HashMap<(uuid::Uuid, String), Vec<i64>>, tenant: uuid::Uuid, key: &str, id: i64| {
        keys.get(&(tenant, key.to_owned())).and_then(|ids| ids.iter().min()) == Some(&id)
    };
    // Keys given up are written first, so every kept key is free when it is written.
    for giving_up in [true, false] {
        for row in &rows {
            let username_key = gatehouse_types::identifier_key(&row.username);
            let email_key = row.email_key.as_ref().map(|_| gatehouse_types::identifier_key(&row.email));
            let keeps_username = keeps(&username_keys, row.tenant_id, &username_key, row.id);
            let keeps_email = email_key.as_ref().map(|key| keeps(&email_keys, row.tenant_id, key, row.id));
            let mut update = Query::update();
            update.table("users").and_where(Expr::col("id").eq(row.id));
            if giving_up {
                if !keeps_username {
                    update.value("username_key", unmatchable(row.id));
                }
                if keeps_email == Some(false) {
                    update.value("email_key", unmatchable(row.id));
                }
                if keeps_username && keeps_email != Some(false) {
                    continue;
                }
            } else {
                if keeps_username {
                    update.value("username_key", username_key);
                }
                update.value("username_skeleton", gatehouse_types::identifier_skeleton(&row.username));
                if let Some(email_key) = email_key {
                    if keeps_email == Some(true) {
                        update.value("email_key", email_key);
                    }
                    update.value("email_skeleton", gatehouse_types::identifier_skeleton(&row.email));
                }
            }
            db.execute(&update).await?;
        }
    }
    Ok(())
}

/// Facts about the installation as a whole: the fingerprint of the secret key the database was
/// set up with, so that a process started with another key stops instead of ending every
/// session and failing to read stored keys.
struct Installation;

impl MigrationName for Installation {
    fn name(&self) -> &str {
        "m0006_installation"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Installation {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("installation")
                    .col(integer("id").primary_key())
                    .col(string_len("secret_key_fingerprint", 64))
                    .col(timestamp_with_time_zone("created"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("installation").to_owned()).await
    }
}

/// Phones enrolled through SMS authenticator stages: one number once per stage, kept as
/// `hash:…` when the stage only verifies numbers.
struct SmsDevices;

impl MigrationName for SmsDevices {
    fn name(&self) -> &str {
        "m0007_sms_devices"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for SmsDevices {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("sms_devices")
                    .col(big_pk_auto("id"))
                    .col(uuid("tenant_id"))
                    .col(big_integer("user_id"))
                    .col(uuid("stage_id"))
                    .col(string_len("name", 64))
                    .col(string_len("phone_number", 80))
                    .col(boolean("confirmed"))
                    .col(timestamp_with_time_zone("created"))
                    .col(timestamp_with_time_zone("last_updated"))
                    .col(timestamp_with_time_zone_null("last_used"))
                    .foreign_key(&mut tenant_fk("sms_devices"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_sms_devices_user")
                            .from("sms_devices", "user_id")
                            .to("users", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_sms_devices_stage")
                            .from("sms_devices", "stage_id")
                            .to("stages", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("sms_devices", "ux_sms_devices_stage_phone", &["tenant_id", "stage_id", "phone_number"], true)).await?;
        manager.create_index(index("sms_devices", "ix_sms_devices_user", &["tenant_id", "user_id"], false)).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("sms_devices").to_owned()).await
    }
}

/// Authenticator apps (TOTP) and recovery codes, with the recovery codes' digests. A device
/// outlives the stage that set it up (deleting a stage must not drop people's second factors).
struct OtpDevices;

impl MigrationName for OtpDevices {
    fn name(&self) -> &str {
        "m0008_otp_devices"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for OtpDevices {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("otp_devices")
                    .col(big_pk_auto("id"))
                    .col(uuid("tenant_id"))
                    .col(big_integer("user_id"))
                    .col(uuid_null("stage_id"))
                    .col(string_len("kind", 16))
                    .col(string_len("offer", 64))
                    .col(string_len("name", 64))
                    .col(text_null("secret_sealed"))
                    .col(integer("digits"))
                    .col(big_integer("last_step"))
                    .col(boolean("confirmed"))
                    .col(timestamp_with_time_zone("created"))
                    .col(timestamp_with_time_zone("last_updated"))
                    .col(timestamp_with_time_zone_null("last_used"))
                    .foreign_key(&mut tenant_fk("otp_devices"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_otp_devices_user")
                            .from("otp_devices", "user_id")
                            .to("users", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_otp_devices_stage")
                            .from("otp_devices", "stage_id")
                            .to("stages", "id")
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("otp_devices", "ix_otp_devices_user", &["tenant_id", "user_id", "kind"], false)).await?;
        // One device per offer: a setup answered twice at once makes one device.
        manager.create_index(index("otp_devices", "ux_otp_devices_offer", &["tenant_id", "offer"], true)).await?;
        manager
            .create_table(
                Table::create()
                    .table("static_tokens")
                    .col(big_pk_auto("id"))
                    .col(big_integer("device_id"))
                    .col(string_len("digest", 64))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_static_tokens_device")
                            .from("static_tokens", "device_id")
                            .to("otp_devices", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("static_tokens", "ix_static_tokens_device_digest", &["device_id", "digest"], false)).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("static_tokens").to_owned()).await?;
        manager.drop_table(Table::drop().table("otp_devices").to_owned()).await
    }
}

/// E-mail authenticators live beside apps and recovery codes in `otp_devices`, with the address
/// the codes go to.
struct EmailDevices;

impl MigrationName for EmailDevices {
    fn name(&self) -> &str {
        "m0009_email_devices"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for EmailDevices {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table("otp_devices").add_column(string_len_null("email", 254)).to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table("otp_devices").drop_column("email").to_owned()).await
    }
}

/// Property mappings (webhook mappings of SMS stages), by tenant, names unique.
struct PropertyMappings;

impl MigrationName for PropertyMappings {
    fn name(&self) -> &str {
        "m0010_property_mappings"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for PropertyMappings {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("property_mappings")
                    .col(uuid("id").primary_key())
                    .col(uuid("tenant_id"))
                    .col(string_len("kind", 32))
                    .col(string_len("name", 200))
                    .col(text("expression"))
                    .col(timestamp_with_time_zone("created"))
                    .col(timestamp_with_time_zone("last_updated"))
                    .foreign_key(&mut tenant_fk("property_mappings"))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("property_mappings", "ux_property_mappings_name", &["tenant_id", "name"], true)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("property_mappings").to_owned()).await
    }
}

/// Whether a queued code was handed to its provider, so that no retry or rescue sends it twice.
struct CodeHandovers;

impl MigrationName for CodeHandovers {
    fn name(&self) -> &str {
        "m0011_code_handovers"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CodeHandovers {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("code_handovers")
                    .col(uuid("message_id").primary_key())
                    .col(uuid("tenant_id"))
                    .col(string_len("state", 16))
                    .col(timestamp_with_time_zone("last_updated"))
                    .foreign_key(&mut tenant_fk("code_handovers"))
                    // Purging a finished task forgets its hand-over too.
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_code_handovers_task")
                            .from("code_handovers", "message_id")
                            .to("tasks", "message_id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("code_handovers").to_owned()).await
    }
}

/// The index of uploaded files; their bytes live in the media store.
struct MediaFiles;

impl MigrationName for MediaFiles {
    fn name(&self) -> &str {
        "m0012_media_files"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for MediaFiles {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("media_files")
                    .col(uuid("id").primary_key())
                    .col(uuid("tenant_id"))
                    .col(string_len("name", 1024))
                    .col(string_len("mime_type", 64))
                    .col(big_integer("size"))
                    .col(string_len("sha256", 64))
                    .col(string_len("storage_key", 200))
                    .col(big_integer_null("created_by"))
                    .col(timestamp_with_time_zone("created"))
                    .foreign_key(&mut tenant_fk("media_files"))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("media_files", "ux_media_files_name", &["tenant_id", "name"], true)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("media_files").to_owned()).await
    }
}

/// Certificate-key pairs, their private keys sealed.
struct CertificateKeyPairs;

impl MigrationName for CertificateKeyPairs {
    fn name(&self) -> &str {
        "m0013_certificate_key_pairs"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CertificateKeyPairs {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("certificate_key_pairs")
                    .col(uuid("id").primary_key())
                    .col(uuid("tenant_id"))
                    .col(string_len("name", 255))
                    .col(text("certificate_pem"))
                    .col(text_null("private_key_sealed"))
                    .col(string_len_null("key_type", 16))
                    .col(string_len("fingerprint_sha256", 95))
                    .col(string_len("fingerprint_sha1", 59))
                    .col(timestamp_with_time_zone("cert_expiry"))
                    .col(text("cert_subject"))
                    .col(string_len_null("managed", 200))
                    .col(timestamp_with_time_zone("created"))
                    .col(timestamp_with_time_zone("last_updated"))
                    .foreign_key(&mut tenant_fk("certificate_key_pairs"))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("certificate_key_pairs", "ux_certificate_key_pairs_name", &["tenant_id", "name"], true)).await?;
        manager.create_index(index("certificate_key_pairs", "ux_certificate_key_pairs_managed", &["tenant_id", "managed"], true)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("certificate_key_pairs").to_owned()).await
    }
}

/// Applications, the OAuth 2.0 / OpenID Connect providers they sign people in with, and the codes
/// and tokens those hand out (kept as keyed digests).
struct Applications;

impl MigrationName for Applications {
    fn name(&self) -> &str {
        "m0014_applications"
    }
}

/// A reference to a flow that keeps the flow while something uses it.
fn flow_fk(table: &'static str, column: &'static str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{table}_{column}"))
        .from(table, column)
        .to("flows", "id")
        .on_delete(ForeignKeyAction::Restrict)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Applications {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("oauth2_providers")
                    .col(big_pk_auto("id"))
                    .col(uuid("tenant_id"))
                    .col(text("name"))
                    .col(uuid_null("authentication_flow_id"))
                    .col(uuid("authorization_flow_id"))
                    .col(uuid("invalidation_flow_id"))
                    .col(json_binary("property_mappings"))
                    .col(string_len("client_type", 16))
                    .col(json_binary("grant_types"))
                    .col(string_len("client_id", 255))
                    .col(string_len_null("client_secret_digest", 64))
                    .col(string_len("access_code_validity", 100))
                    .col(string_len("access_token_validity", 100))
                    .col(string_len("refresh_token_validity", 100))
                    .col(string_len("refresh_token_threshold", 100))
                    .col(boolean("include_claims_in_id_token"))
                    .col(uuid_null("signing_key_id"))
                    .col(uuid_null("encryption_key_id"))
                    .col(json_binary("redirect_uris"))
                    .col(text("logout_uri"))
                    .col(string_len("logout_method", 16))
                    .col(string_len("sub_mode", 32))
                    .col(string_len("issuer_mode", 16))
                    .col(timestamp_with_time_zone("created"))
                    .col(timestamp_with_time_zone("last_updated"))
                    .foreign_key(&mut tenant_fk("oauth2_providers"))
                    .foreign_key(&mut flow_fk("oauth2_providers", "authentication_flow_id"))
                    .foreign_key(&mut flow_fk("oauth2_providers", "authorization_flow_id"))
                    .foreign_key(&mut flow_fk("oauth2_providers", "invalidation_flow_id"))
                    // As in authentik, a deleted key leaves its providers signing with the
                    // server's managed key, which their key set then publishes.
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_oauth2_providers_signing_key")
                            .from("oauth2_providers", "signing_key_id")
                            .to("certificate_key_pairs", "id")
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_oauth2_providers_encryption_key")
                            .from("oauth2_providers", "encryption_key_id")
                            .to("certificate_key_pairs", "id")
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("oauth2_providers", "ux_oauth2_providers_client_id", &["tenant_id", "client_id"], true)).await?;
        manager
            .create_table(
                Table::create()
                    .table("applications")
                    .col(pk_uuid("id"))
                    .col(uuid("tenant_id"))
                    .col(text("name"))
                    .col(string_len("slug", 50))
                    .col(big_integer_null("provider_id"))
                    .col(boolean("open_in_new_tab"))
                    .col(text("meta_launch_url"))
                    .col(text("meta_icon"))
                    .col(text("meta_description"))
                    .col(text("meta_publisher"))
                    .col(string_len("policy_engine_mode", 8))
                    .col(text("group_name"))
                    .col(boolean("meta_hide"))
                    .col(timestamp_with_time_zone("created"))
                    .foreign_key(&mut tenant_fk("applications"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_applications_provider")
                            .from("applications", "provider_id")
                            .to("oauth2_providers", "id")
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("applications", "ux_applications_slug", &["tenant_id", "slug"], true)).await?;
        manager.create_index(index("applications", "ux_applications_provider", &["provider_id"], true)).await?;
        let provider_fk = |table: &'static str| {
            ForeignKey::create()
                .name(format!("fk_{table}_provider"))
                .from(table, "provider_id")
                .to("oauth2_providers", "id")
                .on_delete(ForeignKeyAction::Cascade)
                .to_owned()
        };
        // Ending a session (signing out, a new password, "sign out everywhere", expiry) ends
        // what applications were given through it; a session renewed by signing in again under
        // a new id takes it along.
        let session_fk = |table: &'static str| {
            ForeignKey::create()
                .name(format!("fk_{table}_session"))
                .from(table, "session_id")
                .to("sessions", "id")
                .on_delete(ForeignKeyAction::Cascade)
                .on_update(ForeignKeyAction::Cascade)
                .to_owned()
        };
        let user_fk = |table: &'static str| {
            ForeignKey::create()
                .name(format!("fk_{table}_user"))
                .from(table, "user_id")
                .to("users", "id")
                .on_delete(ForeignKeyAction::Cascade)
                .to_owned()
        };
        manager
            .create_table(
                Table::create()
                    .table("oauth2_codes")
                    .col(pk_uuid("id"))
                    .col(uuid("tenant_id"))
                    .col(big_integer("provider_id"))
                    .col(big_integer("user_id"))
                    .col(uuid_null("session_id"))
                    .col(string_len("code_digest", 64))
                    .col(text("redirect_uri"))
                    .col(boolean("redirect_uri_given"))
                    .col(text("scope"))
                    .col(text_null("nonce"))
                    .col(string_len_null("code_challenge", 128))
                    .col(timestamp_with_time_zone("auth_time"))
                    .col(timestamp_with_time_zone("expires"))
                    .col(timestamp_with_time_zone_null("used_at"))
                    .col(timestamp_with_time_zone("created"))
                    .foreign_key(&mut tenant_fk("oauth2_codes"))
                    .foreign_key(&mut provider_fk("oauth2_codes"))
                    .foreign_key(&mut user_fk("oauth2_codes"))
                    .foreign_key(&mut session_fk("oauth2_codes"))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("oauth2_codes", "ux_oauth2_codes_digest", &["code_digest"], true)).await?;
        manager.create_index(index("oauth2_codes", "ix_oauth2_codes_session", &["session_id"], false)).await?;
        manager
            .create_table(
                Table::create()
                    .table("oauth2_tokens")
                    .col(pk_uuid("id"))
                    .col(uuid("tenant_id"))
                    .col(big_integer("provider_id"))
                    .col(big_integer_null("user_id"))
                    .col(string_len("kind", 16))
                    .col(string_len("token_digest", 64))
                    .col(uuid("family_id"))
                    .col(text("scope"))
                    .col(uuid_null("session_id"))
                    .col(timestamp_with_time_zone("auth_time"))
                    .col(timestamp_with_time_zone("expires"))
                    .col(boolean("revoked"))
                    .col(timestamp_with_time_zone("created"))
                    .foreign_key(&mut tenant_fk("oauth2_tokens"))
                    .foreign_key(&mut provider_fk("oauth2_tokens"))
                    .foreign_key(&mut user_fk("oauth2_tokens"))
                    .foreign_key(&mut session_fk("oauth2_tokens"))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("oauth2_tokens", "ux_oauth2_tokens_digest", &["token_digest"], true)).await?;
        manager.create_index(index("oauth2_tokens", "ix_oauth2_tokens_family", &["family_id"], false)).await?;
        manager.create_index(index("oauth2_tokens", "ix_oauth2_tokens_session", &["session_id"], false)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("oauth2_tokens").to_owned()).await?;
        manager.drop_table(Table::drop().table("oauth2_codes").to_owned()).await?;
        manager.drop_table(Table::drop().table("applications").to_owned()).await?;
        manager.drop_table(Table::drop().table("oauth2_providers").to_owned()).await
    }
}

/// Consents people give applications at a consent stage.
struct UserConsents;

impl MigrationName for UserConsents {
    fn name(&self) -> &str {
        "m0015_user_consents"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for UserConsents {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("user_consents")
                    .col(big_pk_auto("id"))
                    .col(uuid("tenant_id"))
                    .col(big_integer("user_id"))
                    .col(uuid("application_id"))
                    .col(text("permissions"))
                    .col(timestamp_with_time_zone_null("expires"))
                    .col(timestamp_with_time_zone("created"))
                    .foreign_key(&mut tenant_fk("user_consents"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_user_consents_user")
                            .from("user_consents", "user_id")
                            .to("users", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_user_consents_application")
                            .from("user_consents", "application_id")
                            .to("applications", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("user_consents", "ux_user_consents_user_application", &["user_id", "application_id"], true)).await?;
        manager.create_index(index("user_consents", "ix_user_consents_application", &["application_id"], false)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("user_consents").to_owned()).await
    }
}

/// Scope mappings are property mappings too: the scope each answers, what a consent page says
/// about it, and which of them the server manages (authentik's defaults).
struct ScopeMappings;

impl MigrationName for ScopeMappings {
    fn name(&self) -> &str {
        "m0016_scope_mappings"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ScopeMappings {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let table = "property_mappings";
        manager.alter_table(Table::alter().table(table).add_column(string_len_null("scope_name", 255)).to_owned()).await?;
        manager.alter_table(Table::alter().table(table).add_column(text("description").default("")).to_owned()).await?;
        manager.alter_table(Table::alter().table(table).add_column(string_len_null("managed", 200)).to_owned()).await?;
        manager.create_index(index(table, "ux_property_mappings_managed", &["tenant_id", "managed"], true)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let table = "property_mappings";
        manager.drop_index(Index::drop().name("ux_property_mappings_managed").table(table).to_owned()).await?;
        for column in ["managed", "description", "scope_name"] {
            manager.alter_table(Table::alter().table(table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}

/// Device authorization requests (RFC 8628), by keyed digests of their two codes.
struct DeviceCodes;

impl MigrationName for DeviceCodes {
    fn name(&self) -> &str {
        "m0017_device_codes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for DeviceCodes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let table = "oauth2_device_codes";
        manager
            .create_table(
                Table::create()
                    .table(table)
                    .col(pk_uuid("id"))
                    .col(uuid("tenant_id"))
                    .col(big_integer("provider_id"))
                    .col(string_len("device_code_digest", 64))
                    .col(string_len("user_code_digest", 64))
                    .col(text("scope"))
                    .col(string_len("status", 16))
                    .col(big_integer_null("user_id"))
                    .col(uuid_null("session_id"))
                    .col(timestamp_with_time_zone_null("auth_time"))
                    .col(timestamp_with_time_zone_null("last_poll"))
                    .col(timestamp_with_time_zone("expires"))
                    .col(timestamp_with_time_zone("created"))
                    .foreign_key(&mut tenant_fk(table))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_oauth2_device_codes_provider")
                            .from(table, "provider_id")
                            .to("oauth2_providers", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_oauth2_device_codes_user")
                            .from(table, "user_id")
                            .to("users", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    // As codes and tokens: the device's grant ends with the session that allowed
                    // it, and follows it when it is renewed.
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_oauth2_device_codes_session")
                            .from(table, "session_id")
                            .to("sessions", "id")
                            .on_delete(ForeignKeyAction::Cascade)
                            .on_update(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager.create_index(index(table, "ux_oauth2_device_codes_device", &["device_code_digest"], true)).await?;
        manager.create_index(index(table, "ux_oauth2_device_codes_user_code", &["user_code_digest"], true)).await?;
        manager.create_index(index(table, "ix_oauth2_device_codes_session", &["session_id"], false)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("oauth2_device_codes").to_owned()).await
    }
}

/// The issuer a token was issued under (the server's address as the client reached it, or its
/// configured public URL): a relying party told of a sign-out later checks the notice's `iss`
/// against the one its ID token named.
struct TokenIssuers;

impl MigrationName for TokenIssuers {
    fn name(&self) -> &str {
        "m0018_token_issuers"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for TokenIssuers {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table("oauth2_tokens").add_column(text_null("issuer")).to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table("oauth2_tokens").drop_column("issuer").to_owned()).await
    }
}

/// Issued tokens and codes get the integer key authentik's API names them by (`pk`): a random
/// number below 2^53, so that JavaScript clients read it exactly and it says nothing about how
/// many were issued.
struct GrantNumbers;

impl MigrationName for GrantNumbers {
    fn name(&self) -> &str {
        "m0019_grant_numbers"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for GrantNumbers {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let random = match manager.get_database_backend() {
            sea_orm::DatabaseBackend::Sqlite => "abs(random() % 9007199254740990) + 1",
            _ => "floor(random() * 9007199254740990)::bigint + 1",
        };
        let connection = manager.get_connection();
        for table in ["oauth2_tokens", "oauth2_codes"] {
            manager.alter_table(Table::alter().table(table).add_column(big_integer_null("number")).to_owned()).await?;
            connection.execute_unprepared(&format!("UPDATE {table} SET number = {random}")).await?;
            // Two rows may draw the same number (PostgreSQL before 15 draws from 48 bits): they
            // draw again until every number is unique.
            let duplicates = format!("SELECT number FROM {table} GROUP BY number HAVING count(*) > 1");
            for _ in 0..100 {
                let count =
                    sea_orm::Statement::from_string(manager.get_database_backend(), format!("SELECT count(*) FROM ({duplicates}) AS d"));
                let repeated = connection.query_one_raw(count).await?.and_then(|row| row.try_get_by_index::<i64>(0).ok()).unwrap_or(0);
                if repeated == 0 {
                    break;
                }
                connection.execute_unprepared(&format!("UPDATE {table} SET number = {random} WHERE number IN ({duplicates})")).await?;
            }
            manager.create_index(index(table, &format!("ux_{table}_number"), &["number"], true)).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["oauth2_tokens", "oauth2_codes"] {
            manager.drop_index(Index::drop().name(format!("ux_{table}_number")).table(table).to_owned()).await?;
            manager.alter_table(Table::alter().table(table).drop_column("number").to_owned()).await?;
        }
        Ok(())
    }
}

/// Clients that prove themselves with signed assertions (`private_key_jwt`, RFC 7523): the key
/// pairs whose public keys a provider's client signs with, and the assertions already used, so
/// that none is accepted twice before it expires.
struct ClientAssertions;

impl MigrationName for ClientAssertions {
    fn name(&self) -> &str {
        "m0020_client_assertions"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ClientAssertions {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table("oauth2_providers").add_column(json_binary("client_keys").default("[]")).to_owned())
            .await?;
        let table = "oauth2_client_assertions";
        manager
            .create_table(
                Table::create()
                    .table(table)
                    .col(big_integer("provider_id"))
                    .col(string_len("jti_digest", 64))
                    .col(timestamp_with_time_zone("expires"))
                    .primary_key(Index::create().col("provider_id").col("jti_digest"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_oauth2_client_assertions_provider")
                            .from(table, "provider_id")
                            .to("oauth2_providers", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager.create_index(index(table, "ix_oauth2_client_assertions_expires", &["expires"], false)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("oauth2_client_assertions").to_owned()).await?;
        manager.alter_table(Table::alter().table("oauth2_providers").drop_column("client_keys").to_owned()).await
    }
}

/// Which applications were given tokens through which session, kept as long as the session
/// (tokens expire and are purged long before it ends): who to tell when it ends.
struct SessionGrants;

impl MigrationName for SessionGrants {
    fn name(&self) -> &str {
        "m0021_session_grants"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for SessionGrants {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let table = "oauth2_session_grants";
        manager
            .create_table(
                Table::create()
                    .table(table)
                    .col(pk_uuid("family_id"))
                    .col(uuid("tenant_id"))
                    .col(big_integer("provider_id"))
                    .col(big_integer("user_id"))
                    .col(uuid("session_id"))
                    .col(text("issuer"))
                    .col(timestamp_with_time_zone("created"))
                    .foreign_key(&mut tenant_fk(table))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_oauth2_session_grants_provider")
                            .from(table, "provider_id")
                            .to("oauth2_providers", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_oauth2_session_grants_user")
                            .from(table, "user_id")
                            .to("users", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    // Ends with the session, and follows it when it is renewed under a new id.
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_oauth2_session_grants_session")
                            .from(table, "session_id")
                            .to("sessions", "id")
                            .on_delete(ForeignKeyAction::Cascade)
                            .on_update(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager.create_index(index(table, "ix_oauth2_session_grants_session", &["session_id"], false)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("oauth2_session_grants").to_owned()).await
    }
}

/// The agent connector's administration: device access groups, agent connectors and the
/// enrollment tokens devices enrol with (found only by a keyed digest of their key; the sealed
/// copy is for `view_key`).
struct AgentConnectors;

impl MigrationName for AgentConnectors {
    fn name(&self) -> &str {
        "m0022_agent_connectors"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AgentConnectors {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let groups = "device_access_groups";
        manager
            .create_table(
                Table::create()
                    .table(groups)
                    .col(uuid("id").primary_key())
                    .col(uuid("tenant_id"))
                    .col(string_len("name", 255))
                    .col(json_binary("attributes"))
                    .col(timestamp_with_time_zone("created"))
                    .col(timestamp_with_time_zone("last_updated"))
                    .foreign_key(&mut tenant_fk(groups))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index(groups, "ux_device_access_groups_name", &["tenant_id", "name"], true)).await?;

        let connectors = "agent_connectors";
        manager
            .create_table(
                Table::create()
                    .table(connectors)
                    .col(uuid("id").primary_key())
                    .col(uuid("tenant_id"))
                    .col(string_len("name", 255))
                    .col(boolean("enabled"))
                    .col(string_len("snapshot_expiry", 100))
                    .col(string_len("auth_session_duration", 100))
                    .col(boolean("auth_terminate_session_on_expiry"))
                    .col(string_len("refresh_interval", 100))
                    .col(uuid_null("authorization_flow_id"))
                    .col(big_integer("nss_uid_offset"))
                    .col(big_integer("nss_gid_offset"))
                    .col(uuid_null("challenge_key_id"))
                    .col(string_len("challenge_idle_timeout", 100))
                    .col(boolean("challenge_trigger_check_in"))
                    .col(timestamp_with_time_zone("created"))
                    .col(timestamp_with_time_zone("last_updated"))
                    .foreign_key(&mut tenant_fk(connectors))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_agent_connectors_authorization_flow")
                            .from(connectors, "authorization_flow_id")
                            .to("flows", "id")
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    // A connector outlives the key its challenges were signed with: without
                    // one, the endpoint stage passes devices without a challenge, as authentik's.
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_agent_connectors_challenge_key")
                            .from(connectors, "challenge_key_id")
                            .to("certificate_key_pairs", "id")
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager.create_index(index(connectors, "ix_agent_connectors_tenant_name", &["tenant_id", "name"], false)).await?;

        let tokens = "enrollment_tokens";
        manager
            .create_table(
                Table::create()
                    .table(tokens)
                    .col(uuid("id").primary_key())
                    .col(uuid("tenant_id"))
                    .col(uuid("connector_id"))
                    .col(uuid_null("device_group_id"))
                    .col(string_len("name", 255))
                    .col(string_len("key_digest", 64))
                    .col(text("key_sealed"))
                    .col(boolean("expiring"))
                    .col(timestamp_with_time_zone_null("expires"))
                    .col(timestamp_with_time_zone("created"))
                    .col(timestamp_with_time_zone("last_updated"))
                    .foreign_key(&mut tenant_fk(tokens))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_enrollment_tokens_connector")
                            .from(tokens, "connector_id")
                            .to(connectors, "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_enrollment_tokens_device_group")
                            .from(tokens, "device_group_id")
                            .to(groups, "id")
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager.create_index(index(tokens, "ux_enrollment_tokens_key_digest", &["key_digest"], true)).await?;
        manager.create_index(index(tokens, "ix_enrollment_tokens_connector", &["connector_id"], false)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["enrollment_tokens", "agent_connectors", "device_access_groups"] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

/// Devices enrolled through agent connectors: the devices, their connections to connectors, the
/// device tokens agents call with (found only by a keyed digest) and the newest facts each
/// connection reported, kept as an expiring snapshot.
struct Devices;

impl MigrationName for Devices {
    fn name(&self) -> &str {
        "m0023_devices"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Devices {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let devices = "devices";
        manager
            .create_table(
                Table::create()
                    .table(devices)
                    .col(uuid("id").primary_key())
                    .col(uuid("tenant_id"))
                    .col(string_len("name", 255))
                    .col(string_len("identifier", 255))
                    .col(uuid_null("access_group_id"))
                    .col(boolean("expiring"))
                    .col(timestamp_with_time_zone_null("expires"))
                    .col(json_binary("attributes"))
                    .col(timestamp_with_time_zone("created"))
                    .col(timestamp_with_time_zone("last_updated"))
                    .foreign_key(&mut tenant_fk(devices))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_devices_access_group")
                            .from(devices, "access_group_id")
                            .to("device_access_groups", "id")
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager.create_index(index(devices, "ux_devices_name", &["tenant_id", "name"], true)).await?;
        manager.create_index(index(devices, "ux_devices_identifier", &["tenant_id", "identifier"], true)).await?;

        let connections = "device_connections";
        manager
            .create_table(
                Table::create()
                    .table(connections)
                    .col(uuid("id").primary_key())
                    .col(uuid("tenant_id"))
                    .col(uuid("device_id"))
                    .col(uuid("connector_id"))
                    .col(timestamp_with_time_zone("created"))
                    .foreign_key(&mut tenant_fk(connections))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_device_connections_device")
                            .from(connections, "device_id")
                            .to(devices, "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_device_connections_connector")
                            .from(connections, "connector_id")
                            .to("agent_connectors", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager.create_index(index(connections, "ux_device_connections_pair", &["device_id", "connector_id"], true)).await?;
        manager.create_index(index(connections, "ix_device_connections_connector", &["connector_id"], false)).await?;

        let tokens = "device_tokens";
        manager
            .create_table(
                Table::create()
                    .table(tokens)
                    .col(uuid("id").primary_key())
                    .col(uuid("tenant_id"))
                    .col(uuid("connection_id"))
                    .col(string_len("key_digest", 64))
                    .col(boolean("expiring"))
                    .col(timestamp_with_time_zone_null("expires"))
                    .col(timestamp_with_time_zone("created"))
                    .foreign_key(&mut tenant_fk(tokens))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_device_tokens_connection")
                            .from(tokens, "connection_id")
                            .to(connections, "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager.create_index(index(tokens, "ux_device_tokens_key_digest", &["key_digest"], true)).await?;
        manager.create_index(index(tokens, "ix_device_tokens_connection", &["connection_id"], false)).await?;

        let snapshots = "device_fact_snapshots";
        manager
            .create_table(
                Table::create()
                    .table(snapshots)
                    .col(uuid("id").primary_key())
                    .col(uuid("tenant_id"))
                    .col(uuid("connection_id"))
                    .col(json_binary("data"))
                    .col(timestamp_with_time_zone("created"))
                    .col(timestamp_with_time_zone("expires"))
                    .foreign_key(&mut tenant_fk(snapshots))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_device_fact_snapshots_connection")
                            .from(snapshots, "connection_id")
                            .to(connections, "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // One report per connection: each check-in replaces the one before.
        manager.create_index(index(snapshots, "ux_device_fact_snapshots_connection", &["connection_id"], true)).await?;
        manager.create_index(index(snapshots, "ix_device_fact_snapshots_expires", &["expires"], false)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["device_fact_snapshots", "device_tokens", "device_connections", "devices"] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

/// Who may use a device: bindings of users or groups to a device or to a device access group,
/// each optionally expiring.
struct DeviceBindings;

impl MigrationName for DeviceBindings {
    fn name(&self) -> &str {
        "m0024_device_bindings"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for DeviceBindings {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let bindings = "device_bindings";
        manager
            .create_table(
                Table::create()
                    .table(bindings)
                    .col(uuid("id").primary_key())
                    .col(uuid("tenant_id"))
                    // The target: a device or a device access group, exactly one of them.
                    .col(uuid_null("device_id"))
                    .col(uuid_null("access_group_id"))
                    // Who is bound: a user or a group, exactly one of them.
                    .col(big_integer_null("user_id"))
                    .col(uuid_null("group_id"))
                    .col(uuid_null("connector_id"))
                    .col(boolean("negate"))
                    .col(boolean("enabled"))
                    .col(integer("binding_order"))
                    .col(integer("timeout"))
                    .col(boolean("failure_result"))
                    .col(boolean("is_primary"))
                    .col(boolean("expiring"))
                    .col(timestamp_with_time_zone_null("expires"))
                    .col(timestamp_with_time_zone("created"))
                    .col(timestamp_with_time_zone("last_updated"))
                    .foreign_key(&mut tenant_fk(bindings))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_device_bindings_device")
                            .from(bindings, "device_id")
                            .to("devices", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_device_bindings_access_group")
                            .from(bindings, "access_group_id")
                            .to("device_access_groups", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_device_bindings_user")
                            .from(bindings, "user_id")
                            .to("users", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_device_bindings_group")
                            .from(bindings, "group_id")
                            .to("groups", "group_uuid")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_device_bindings_connector")
                            .from(bindings, "connector_id")
                            .to("agent_connectors", "id")
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager.create_index(index(bindings, "ix_device_bindings_device", &["device_id"], false)).await?;
        manager.create_index(index(bindings, "ix_device_bindings_access_group", &["access_group_id"], false)).await?;
        manager.create_index(index(bindings, "ix_device_bindings_user", &["user_id"], false)).await?;
        manager.create_index(index(bindings, "ix_device_bindings_group", &["group_id"], false)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("device_bindings").to_owned()).await
    }
}

/// Device authentication tokens: an agent's request to have a person sign in for its device,
/// redeemed once through the browser for a token the server signs.
struct DeviceAuthenticationTokens;

impl MigrationName for DeviceAuthenticationTokens {
    fn name(&self) -> &str {
        "m0025_device_authentication_tokens"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for DeviceAuthenticationTokens {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let table = "device_authentication_tokens";
        manager
            .create_table(
                Table::create()
                    .table(table)
                    .col(uuid("id").primary_key())
                    .col(uuid("tenant_id"))
                    .col(uuid("device_id"))
                    .col(uuid("device_token_id"))
                    .col(uuid("connector_id"))
                    // A keyed digest of what the agent's browser window must send back in
                    // `X-Authentik-Platform-Auth-DTH` (the SHA-256 of the device key).
                    .col(string_len("key_hash", 64))
                    .col(big_integer_null("user_id"))
                    .col(timestamp_with_time_zone("expires"))
                    .col(timestamp_with_time_zone_null("issued_at"))
                    .col(timestamp_with_time_zone_null("token_expires"))
                    .col(timestamp_with_time_zone("created"))
                    .foreign_key(&mut tenant_fk(table))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_device_authentication_tokens_device")
                            .from(table, "device_id")
                            .to("devices", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_device_authentication_tokens_device_token")
                            .from(table, "device_token_id")
                            .to("device_tokens", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_device_authentication_tokens_connector")
                            .from(table, "connector_id")
                            .to("agent_connectors", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_device_authentication_tokens_user")
                            .from(table, "user_id")
                            .to("users", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager.create_index(index(table, "ix_device_authentication_tokens_expires", &["expires"], false)).await?;
        manager.create_index(index(table, "ix_device_authentication_tokens_device_token", &["device_token_id"], false)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("device_authentication_tokens").to_owned()).await
    }
}

/// A sealed copy of each device key: the endpoint stage checks an agent's answer to its
/// challenge with the key itself (an HMAC keyed by it), so a digest is not enough.
struct DeviceKeysSealed;

impl MigrationName for DeviceKeysSealed {
    fn name(&self) -> &str {
        "m0026_device_keys_sealed"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for DeviceKeysSealed {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Keys issued before have no copy: their agents answer challenges once they enrol again.
        manager.alter_table(Table::alter().table("device_tokens").add_column(text_null("key_sealed")).to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table("device_tokens").drop_column("key_sealed").to_owned()).await
    }
}

/// The task indexes on the worker holding a task and on the object a task is about cover only
/// the rows that have one. A queued task has neither, so queueing one writes two index entries
/// fewer. The queries they serve name a worker, or an object's type, which implies the index's
/// condition on both databases.
struct TaskIndexesPartial;

impl MigrationName for TaskIndexesPartial {
    fn name(&self) -> &str {
        "m0027_task_indexes_partial"
    }
}

/// The two task indexes, covering every row (`partial == false`) or only the rows with a worker
/// or an object.
fn task_indexes(partial: bool) -> [IndexCreateStatement; 2] {
    let mut worker = index("tasks", "ix_tasks_worker", &["worker_id", "state"], false);
    let mut object = index("tasks", "ix_tasks_rel_obj", &["rel_obj_type", "rel_obj_id"], false);
    if partial {
        worker.and_where(Expr::col("worker_id").is_not_null());
        object.and_where(Expr::col("rel_obj_type").is_not_null());
    }
    [worker, object]
}

async fn replace_task_indexes(manager: &SchemaManager<'_>, partial: bool) -> Result<(), DbErr> {
    for statement in task_indexes(partial) {
        let name = statement.get_index_spec().get_name().unwrap_or_default().to_owned();
        manager.drop_index(Index::drop().name(&name).table("tasks").to_owned()).await?;
        manager.create_index(statement).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for TaskIndexesPartial {
    /// Each index is dropped before it is made again: on SQLite too, in one transaction, so a
    /// crash between the two leaves the old index.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        replace_task_indexes(manager, true).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        replace_task_indexes(manager, false).await
    }
}
