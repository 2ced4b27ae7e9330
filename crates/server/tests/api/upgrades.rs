//! Upgrades: a database written under the first release's schema, with data in it, is migrated
//! step by step to the current schema, on SQLite and PostgreSQL, and nothing is lost.
//!
//! Each step's tables are seeded right after the migration that creates them, with rows as the
//! release of that step wrote them (raw rows, not today's services), so a later migration that
//! rewrites, moves or drops data meets real rows. A new migration that reshapes existing data
//! should add rows here that exercise it.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use gatehouse::accounts::password::{self, Password};
use gatehouse::config::Config;
use gatehouse::db::migrations::Migrator;
use gatehouse::secret::ServerSecret;
use gatehouse::tokens::key::{KeyKind, SecretKey};
use reqwest::{Method, StatusCode};
use sea_orm::sea_query::{Query, SimpleExpr};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, Value as DbValue};
use sea_orm_migration::MigratorTrait;
use serde_json::json;
use uuid::Uuid;

use crate::support::{PASSWORD, Session, TestApp, json, remember_secret, test_config};

/// Inserts one row given as column–value pairs.
async fn insert(db: &DatabaseConnection, table: &'static str, row: Vec<(&'static str, DbValue)>) {
    let (columns, values): (Vec<&'static str>, Vec<SimpleExpr>) = row.into_iter().map(|(column, value)| (column, value.into())).unzip();
    let statement = Query::insert().into_table(table).columns(columns).values_panic(values).to_owned();
    db.execute(&statement).await.unwrap_or_else(|error| panic!("seed a row of {table}: {error}"));
}

/// Every table of the database with its number of rows.
async fn row_counts(db: &DatabaseConnection) -> BTreeMap<String, i64> {
    let backend = db.get_database_backend();
    let list = match backend {
        sea_orm::DbBackend::Sqlite => "SELECT name AS name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        _ => "SELECT tablename::text AS name FROM pg_tables WHERE schemaname = 'public'",
    };
    let mut counts = BTreeMap::new();
    for row in db.query_all_raw(Statement::from_string(backend, list)).await.unwrap() {
        let name: String = row.try_get("", "name").unwrap();
        let count = db
            .query_one_raw(Statement::from_string(backend, format!("SELECT COUNT(*) AS n FROM \"{name}\"")))
            .await
            .unwrap()
            .expect("a count");
        counts.insert(name, count.try_get::<i64>("", "n").unwrap());
    }
    counts
}

/// What the seeded rows must still do once the server runs on the migrated database.
struct Seeded {
    admin_email: &'static str,
    member_email: &'static str,
    member_session: Session,
    group_name: &'static str,
    api_key: String,
    token_identifier: &'static str,
    task_id: Uuid,
    flow_slug: &'static str,
}

async fn seed_initial(db: &DatabaseConnection, secret: &ServerSecret, tenant: Uuid) -> (Session, Uuid) {
    let now = Utc::now();
    insert(
        db,
        "tenants",
        vec![
            ("id", tenant.into()),
            ("slug", "default".into()),
            ("name", "Default".into()),
            ("is_default", true.into()),
            ("created", now.into()),
        ],
    )
    .await;
    let hash = password::hash(&Password::new(PASSWORD.into())).unwrap();
    for (id, email, superuser) in
        [(1_i64, "admin@example.com", true), (2, "member@example.com", false), (3, "Old.Timer@Example.com", false)]
    {
        let username = email.split('@').next().unwrap();
        insert(
            db,
            "users",
            vec![
                ("id", id.into()),
                ("uuid", Uuid::new_v4().into()),
                ("tenant_id", tenant.into()),
                ("username", username.into()),
                ("username_key", username.to_lowercase().into()),
                ("email", email.into()),
                ("email_key", email.to_lowercase().into()),
                ("name", format!("Seeded {username}").into()),
                ("password", hash.clone().into()),
                ("password_change_date", now.into()),
                ("is_active", true.into()),
                ("is_superuser", superuser.into()),
                ("is_staff", superuser.into()),
                ("phone_number", DbValue::String(None)),
                ("user_type", "internal".into()),
                ("path", "users".into()),
                ("attributes", json!({ "seeded": true }).into()),
                ("date_joined", now.into()),
                ("last_login", DbValue::ChronoDateTimeUtc(None)),
                ("last_updated", now.into()),
            ],
        )
        .await;
    }
    let (parent, group) = (Uuid::new_v4(), Uuid::new_v4());
    for (uuid, name) in [(parent, "Everyone"), (group, "Operators")] {
        insert(
            db,
            "groups",
            vec![
                ("group_uuid", uuid.into()),
                ("tenant_id", tenant.into()),
                ("name", name.into()),
                ("name_key", name.to_lowercase().into()),
                ("is_superuser", false.into()),
                ("attributes", json!({}).into()),
                ("created", now.into()),
            ],
        )
        .await;
    }
    insert(db, "group_parents", vec![("tenant_id", tenant.into()), ("group_uuid", group.into()), ("parent_uuid", parent.into())]).await;
    insert(db, "group_members", vec![("tenant_id", tenant.into()), ("group_uuid", group.into()), ("user_id", 2_i64.into())]).await;
    insert(
        db,
        "group_permissions",
        vec![("tenant_id", tenant.into()), ("group_uuid", group.into()), ("permission", "authentik_core.view_user".into())],
    )
    .await;
    insert(
        db,
        "user_permissions",
        vec![("tenant_id", tenant.into()), ("user_id", 2_i64.into()), ("permission", "authentik_core.view_group".into())],
    )
    .await;

    let session_key = "seeded-session-key-0123456789abcdefghijklmnop";
    remember_secret(session_key);
    let session_id = Uuid::new_v4();
    insert(
        db,
        "sessions",
        vec![
            ("id", session_id.into()),
            ("key_digest", secret.digest("session", session_key.as_bytes()).into()),
            ("tenant_id", tenant.into()),
            ("user_id", 2_i64.into()),
            ("created", now.into()),
            ("expires", (now + Duration::days(1)).into()),
            ("last_used", now.into()),
            ("last_ip", "192.0.2.7".into()),
            ("user_agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0".into()),
            ("client", json!({}).into()),
        ],
    )
    .await;
    insert(
        db,
        "events",
        vec![
            ("event_uuid", Uuid::new_v4().into()),
            ("tenant_id", tenant.into()),
            ("action", "login".into()),
            ("app", "gatehouse.accounts".into()),
            ("user_id", 2_i64.into()),
            ("user", json!({ "pk": 2, "username": "member", "email": "member@example.com" }).into()),
            ("context", json!({ "seeded": "before the upgrade" }).into()),
            ("client_ip", "192.0.2.7".into()),
            ("created", now.into()),
            ("expires", (now + Duration::days(365)).into()),
            ("brand", json!({}).into()),
        ],
    )
    .await;
    insert(
        db,
        "user_visits",
        vec![
            ("id", Uuid::new_v4().into()),
            ("tenant_id", tenant.into()),
            ("user_id", 2_i64.into()),
            ("method", "GET".into()),
            ("url", "/if/user/".into()),
            ("referrer", DbValue::String(None)),
            ("user_agent", "Mozilla/5.0".into()),
            ("client_ip", "192.0.2.7".into()),
            ("created", now.into()),
        ],
    )
    .await;
    let csrf = gatehouse::sessions::service::csrf_token(secret, session_id);
    let session = Session { cookie: format!("{}={session_key}", crate::support::SESSION_COOKIE), csrf, body: json!({}) };
    (session, group)
}

async fn seed_token(db: &DatabaseConnection, secret: &ServerSecret, tenant: Uuid, identifier: &str) -> String {
    let key = SecretKey::generate(KeyKind::Api);
    remember_secret(key.expose());
    let token_uuid = Uuid::new_v4();
    let now = Utc::now();
    insert(
        db,
        "tokens",
        vec![
            ("id", 1_i64.into()),
            ("token_uuid", token_uuid.into()),
            ("key_id", Uuid::new_v4().into()),
            ("tenant_id", tenant.into()),
            ("identifier", identifier.into()),
            ("intent", "api".into()),
            ("user_id", 1_i64.into()),
            ("name", "deploy".into()),
            ("description", "made before the upgrade".into()),
            ("managed", DbValue::String(None)),
            ("key_digest", secret.digest("token-key", key.expose().as_bytes()).into()),
            ("key_sealed", gatehouse::tokens::seal::seal(secret, token_uuid, key.expose()).unwrap().into()),
            ("expiring", false.into()),
            ("expires", DbValue::ChronoDateTimeUtc(None)),
            ("is_active", true.into()),
            ("last_used_at", DbValue::ChronoDateTimeUtc(None)),
            ("created", now.into()),
            ("last_updated", now.into()),
        ],
    )
    .await;
    insert(db, "token_tags", vec![("tenant_id", tenant.into()), ("token_id", 1_i64.into()), ("tag", "ci".into())]).await;
    key.expose().to_owned()
}

async fn seed_task(db: &DatabaseConnection, tenant: Uuid) -> Uuid {
    let id = Uuid::new_v4();
    let later = Utc::now() + Duration::days(30);
    insert(
        db,
        "tasks",
        vec![
            ("message_id", id.into()),
            ("tenant_id", tenant.into()),
            ("queue_name", "default".into()),
            ("actor_name", "gatehouse.events.purge".into()),
            ("args", json!({}).into()),
            ("state", "queued".into()),
            ("aggregated_status", "queued".into()),
            ("mtime", Utc::now().into()),
            ("created", Utc::now().into()),
            ("retries", 0_i32.into()),
            ("eta", later.into()),
            ("due", later.into()),
            ("result", DbValue::Json(None)),
            ("result_expiry", DbValue::ChronoDateTimeUtc(None)),
            ("rel_obj_type", DbValue::String(None)),
            ("rel_obj_id", DbValue::String(None)),
            ("uid", "seeded".into()),
            ("worker_id", DbValue::Uuid(None)),
            ("attempt", 0_i32.into()),
        ],
    )
    .await;
    id
}

async fn seed_flow(db: &DatabaseConnection, tenant: Uuid, slug: &str) -> Uuid {
    let now = Utc::now();
    let id = Uuid::new_v4();
    insert(
        db,
        "flows",
        vec![
            ("id", id.into()),
            ("tenant_id", tenant.into()),
            ("slug", slug.into()),
            ("name", "Seeded sign-in".into()),
            ("title", "Welcome back".into()),
            ("designation", "authentication".into()),
            ("authentication", "none".into()),
            ("denied_action", "message_continue".into()),
            ("layout", "stacked".into()),
            ("policy_engine_mode", "any".into()),
            ("compatibility_mode", false.into()),
            ("background", "".into()),
            ("created", now.into()),
            ("last_updated", now.into()),
        ],
    )
    .await;
    id
}

/// An OAuth2 provider as the release before scope mappings wrote it: offering no mapping, since
/// none could be chosen, and giving the built-in claims.
async fn seed_provider(db: &DatabaseConnection, tenant: Uuid, flow: Uuid) {
    let now = Utc::now();
    insert(
        db,
        "oauth2_providers",
        vec![
            ("tenant_id", tenant.into()),
            ("name", "Seeded wiki".into()),
            ("authorization_flow_id", flow.into()),
            ("invalidation_flow_id", flow.into()),
            ("property_mappings", json!([]).into()),
            ("client_type", "confidential".into()),
            ("grant_types", json!(["authorization_code"]).into()),
            ("client_id", "seeded-client".into()),
            ("access_code_validity", "minutes=1".into()),
            ("access_token_validity", "hours=1".into()),
            ("refresh_token_validity", "days=30".into()),
            ("refresh_token_threshold", "seconds=0".into()),
            ("include_claims_in_id_token", true.into()),
            ("redirect_uris", json!([]).into()),
            ("logout_uri", "".into()),
            ("logout_method", "backchannel".into()),
            ("sub_mode", "hashed_user_id".into()),
            ("issuer_mode", "per_provider".into()),
            ("created", now.into()),
            ("last_updated", now.into()),
        ],
    )
    .await;
}

/// Access tokens of the seeded provider for the admin, as the release before grant numbers wrote
/// them: without the number the API names them by.
async fn seed_oauth_tokens(db: &DatabaseConnection, admin_email: &str) {
    let id_of = |sql: String| async move {
        let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap().unwrap();
        row.try_get_by_index::<i64>(0).unwrap()
    };
    let provider = id_of("SELECT id FROM oauth2_providers WHERE client_id = 'seeded-client'".to_owned()).await;
    let admin = id_of(format!("SELECT id FROM users WHERE email = '{admin_email}'")).await;
    let tenant_sql = format!("SELECT tenant_id FROM users WHERE id = {admin}");
    let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), tenant_sql)).await.unwrap().unwrap();
    let tenant: Uuid = row.try_get_by_index(0).unwrap();
    let now = Utc::now();
    for n in 0..3 {
        insert(
            db,
            "oauth2_tokens",
            vec![
                ("id", Uuid::new_v4().into()),
                ("tenant_id", tenant.into()),
                ("provider_id", provider.into()),
                ("user_id", admin.into()),
                ("kind", "access".into()),
                ("token_digest", format!("{n:064}").into()),
                ("family_id", Uuid::new_v4().into()),
                ("scope", "openid".into()),
                ("auth_time", now.into()),
                ("expires", (now + Duration::hours(1)).into()),
                ("revoked", false.into()),
                ("created", now.into()),
            ],
        )
        .await;
    }
}

/// Applies the migrations one at a time from the first, seeding each step's tables as it comes,
/// and checks that no migration makes any table lose a row.
async fn upgrade_from_first_release(config: &Config) -> Seeded {
    let secret = ServerSecret::load(config).unwrap();
    let db = gatehouse::db::connect(config).await.unwrap();
    let tenant = Uuid::new_v4();
    let names: Vec<String> = Migrator::migrations().iter().map(|m| m.name().to_owned()).collect();
    let mut seeded = Seeded {
        admin_email: "admin@example.com",
        member_email: "member@example.com",
        member_session: Session { cookie: String::new(), csrf: String::new(), body: json!({}) },
        group_name: "Operators",
        api_key: String::new(),
        token_identifier: "seeded-deploy-key",
        task_id: Uuid::nil(),
        flow_slug: "seeded-sign-in",
    };
    let mut flow = Uuid::nil();
    for name in &names {
        let before = row_counts(&db).await;
        Migrator::up(&db, Some(1)).await.unwrap_or_else(|error| panic!("{name} fails on a database with data: {error}"));
        let after = row_counts(&db).await;
        for (table, rows) in &before {
            let now = after.get(table).copied();
            assert!(now.is_some_and(|now| now >= *rows), "{name} lost rows of {table}: {rows} before, {now:?} after");
        }
        match name.as_str() {
            "m0001_initial" => (seeded.member_session, _) = seed_initial(&db, &secret, tenant).await,
            "m0002_tokens" => seeded.api_key = seed_token(&db, &secret, tenant, seeded.token_identifier).await,
            "m0003_tasks" => seeded.task_id = seed_task(&db, tenant).await,
            "m0004_flows" => flow = seed_flow(&db, tenant, seeded.flow_slug).await,
            "m0014_applications" => {
                seed_provider(&db, tenant, flow).await;
                seed_oauth_tokens(&db, seeded.admin_email).await;
            }
            _ => {}
        }
    }
    assert!(Migrator::get_pending_migrations(&db).await.unwrap().is_empty());
    let seeded_tables = ["users", "groups", "group_members", "sessions", "events", "tokens", "tasks", "flows"];
    let counts = row_counts(&db).await;
    for table in seeded_tables {
        assert!(counts[table] > 0, "{table} was seeded");
    }
    db.close().await.unwrap();
    seeded
}

#[tokio::test]
async fn every_migration_from_the_first_release_keeps_every_account_session_key_task_and_flow() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path(), None).await;
    let seeded = upgrade_from_first_release(&config).await;

    let app = TestApp::spawn_on_database(config.database_url()).await;

    // Passwords hashed before the upgrade still sign in.
    let admin = app.sign_in(seeded.admin_email).await;
    assert_eq!(app.sign_in("old.timer@example.com").await.body["user"]["email"], "Old.Timer@Example.com");

    // Sessions opened before the upgrade go on, with their groups and permissions.
    let (status, me) = json(app.get(&seeded.member_session, "/api/v3/core/users/me/").await).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user"]["email"], seeded.member_email);
    assert_eq!(me["user"]["system_permissions"], json!(["authentik_core.view_group", "authentik_core.view_user"]), "{me}");
    let groups: Vec<&str> = me["user"]["groups"].as_array().unwrap().iter().filter_map(|g| g["name"].as_str()).collect();
    assert_eq!(groups, [seeded.group_name]);
    let (status, users) = json(app.get(&seeded.member_session, "/api/v3/core/users/?ordering=pk").await).await;
    assert_eq!(status, StatusCode::OK, "view_user through the group: {users}");
    assert_eq!(users["pagination"]["count"], 3);
    assert_eq!(users["results"][1]["attributes"]["seeded"], true, "{users}");
    let (status, group_list) = json(app.get(&seeded.member_session, "/api/v3/core/groups/?name=Operators").await).await;
    assert_eq!(status, StatusCode::OK, "view_group held directly: {group_list}");
    assert_eq!(group_list["results"][0]["parents"].as_array().map(Vec::len), Some(1));

    // API keys made before the upgrade still authenticate and can still be read back.
    let (status, me) = json(app.bearer(&seeded.api_key, Method::GET, "/api/v3/core/users/me/", None).await).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user"]["email"], seeded.admin_email);
    let (status, view) = json(app.get(&admin, &format!("/api/v3/core/tokens/{}/view_key/", seeded.token_identifier)).await).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["key"], seeded.api_key);

    // Queued tasks, flows and the audit trail are all there.
    let (status, task) = json(app.get(&admin, &format!("/api/v3/tasks/tasks/{}/", seeded.task_id)).await).await;
    assert_eq!(status, StatusCode::OK, "{task}");
    assert_eq!(task["state"], "queued");
    let (status, flow) = json(app.get(&admin, &format!("/api/v3/flows/instances/{}/", seeded.flow_slug)).await).await;
    assert_eq!(status, StatusCode::OK, "{flow}");
    assert_eq!(flow["title"], "Welcome back");
    // A provider made before scope mappings existed offers the shipped defaults, and so keeps
    // giving the claims it gave; one made now without mappings stays without.
    let (status, providers) = json(app.get(&admin, "/api/v3/providers/oauth2/?client_id=seeded-client").await).await;
    assert_eq!(status, StatusCode::OK, "{providers}");
    assert_eq!(providers["results"][0]["property_mappings"].as_array().map(Vec::len), Some(4), "{providers}");
    // Tokens issued before they had numbers got distinct ones, and are listed and read by them.
    let (status, tokens) = json(app.get(&admin, "/api/v3/oauth2/access_tokens/").await).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let numbers: std::collections::BTreeSet<i64> =
        tokens["results"].as_array().unwrap().iter().map(|t| t["pk"].as_i64().unwrap()).collect();
    assert_eq!(numbers.len(), 3, "{tokens}");
    let first = numbers.iter().next().unwrap();
    assert_eq!(app.get(&admin, &format!("/api/v3/oauth2/access_tokens/{first}/")).await.status(), StatusCode::OK);
    let (status, events) = json(app.get(&admin, "/api/v3/events/events/?action=login&ordering=created").await).await;
    assert_eq!(status, StatusCode::OK, "{events}");
    assert_eq!(events["results"][0]["context"]["seeded"], "before the upgrade");
}
