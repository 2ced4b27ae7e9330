//! `/api/v3/core/tokens/`, API keys as bearer credentials, app passwords, service accounts.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;
use gatehouse::tokens::key::{KeyKind, SecretKey, record_locator};

async fn staff_app() -> (TestApp, Session) {
    staff_app_with(|_| {}).await
}

async fn staff_app_with(adjust: impl FnOnce(&mut gatehouse::config::Config)) -> (TestApp, Session) {
    let app = TestApp::spawn_with(|c| {
        c.tokens.last_used_flush = "milliseconds=100".parse().unwrap();
        adjust(c);
    })
    .await;
    app.user("staff@example.com", |u| u.is_staff = true).await;
    let session = app.sign_in("staff@example.com").await;
    (app, session)
}

async fn me_with(app: &TestApp, key: &str) -> StatusCode {
    app.bearer(key, Method::GET, "/api/v3/core/users/me/", None).await.status()
}

#[tokio::test]
async fn staff_create_a_key_read_it_once_and_call_the_api_with_it() {
    let (app, staff) = staff_app().await;
    let (status, token) = json(
        app.post(
            &staff,
            "/api/v3/core/tokens/",
            json!({"identifier": "deploy-prod", "description": "CI", "name": "Deploy", "tags": ["ci", "Prod"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    for field in
        ["pk", "identifier", "intent", "user", "user_obj", "description", "expires", "expiring", "key_id", "is_active", "last_used_at"]
    {
        assert!(token.get(field).is_some(), "token lacks {field}");
    }
    assert_eq!(token["intent"], "api", "intent defaults to api");
    assert_eq!(token["expiring"], true);
    assert!(token["expires"].is_string(), "expiring tokens get the default lifetime");
    assert_eq!(token["masked_identifier"], "****prod");
    assert_eq!(token["tags"], json!(["ci", "prod"]));
    assert_eq!(token["user_obj"]["email"], "staff@example.com");
    assert!(token.get("key").is_none(), "creation does not show the key");

    let (status, view) = json(app.get(&staff, "/api/v3/core/tokens/deploy-prod/view_key/").await).await;
    assert_eq!(status, StatusCode::OK);
    let key = view["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("gatehouse_api_"));
    assert_eq!(SecretKey::parse(&key).unwrap().kind(), KeyKind::Api);

    let response = app.bearer(&key, Method::GET, "/api/v3/core/users/me/", None).await;
    let (status, me) = json(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["user"]["email"], "staff@example.com");
    // Bearer requests need no CSRF token.
    let (status, _) =
        json(app.bearer(&key, Method::PATCH, "/api/v3/core/tokens/deploy-prod/", Some(json!({"description": "from the key"}))).await).await;
    assert_eq!(status, StatusCode::OK);

    // The use lands in last_used_at without a write per request.
    let mut last_used = Value::Null;
    for _ in 0..400 {
        let (_, token) = json(app.get(&staff, "/api/v3/core/tokens/deploy-prod/").await).await;
        last_used = token["last_used_at"].clone();
        if last_used.is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(last_used.is_string(), "last_used_at was never recorded");

    let (_, views) = json(app.get(&staff, "/api/v3/core/users/me/").await).await;
    assert_eq!(views["user"]["email"], "staff@example.com");
    let admin = {
        app.superuser("admin@example.com").await;
        app.sign_in("admin@example.com").await
    };
    let (_, events) = json(app.get(&admin, "/api/v3/events/events/?action=secret_view").await).await;
    assert_eq!(events["pagination"]["count"], 1);
    assert_eq!(events["results"][0]["context"]["model"]["name"], "deploy-prod");
    let everything = json(app.get(&admin, "/api/v3/events/events/?page_size=100").await).await.1.to_string();
    assert!(!everything.contains(&key), "no event holds the key");
}

#[tokio::test]
async fn keys_switched_off_rotated_expired_or_deleted_stop_working_at_once() {
    // Checks stay cached for an hour, so that nothing but the checks themselves can end a key.
    let (app, staff) = staff_app_with(|c| c.sessions.cache_ttl = "hours=1".parse().unwrap()).await;
    let (_, key) = app.create_key(&staff, json!({"identifier": "k1"})).await;
    assert_eq!(me_with(&app, &key).await, StatusCode::OK);

    assert_eq!(app.patch(&staff, "/api/v3/core/tokens/k1/", json!({"is_active": false})).await.status(), StatusCode::OK);
    assert_eq!(me_with(&app, &key).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.patch(&staff, "/api/v3/core/tokens/k1/", json!({"is_active": true})).await.status(), StatusCode::OK);
    assert_eq!(me_with(&app, &key).await, StatusCode::OK);

    assert_eq!(app.post(&staff, "/api/v3/core/tokens/k1/rotate/", json!({})).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(me_with(&app, &key).await, StatusCode::UNAUTHORIZED, "the old key is gone");
    let (_, view) = json(app.get(&staff, "/api/v3/core/tokens/k1/view_key/").await).await;
    let rotated = view["key"].as_str().unwrap().to_owned();
    assert_ne!(rotated, key);
    assert_eq!(me_with(&app, &rotated).await, StatusCode::OK);

    let supplied = SecretKey::generate(KeyKind::Api);
    let (status, body) = json(app.post(&staff, "/api/v3/core/tokens/k1/set_key/", json!({"key": supplied.expose()})).await).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(me_with(&app, &rotated).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me_with(&app, supplied.expose()).await, StatusCode::OK);
    for bad in
        [json!({"key": ""}), json!({"key": "password123"}), json!({"key": SecretKey::generate(KeyKind::AppPassword).expose()}), json!({})]
    {
        assert_field_error(app.post(&staff, "/api/v3/core/tokens/k1/set_key/", bad).await, "key").await;
    }
    assert_eq!(me_with(&app, supplied.expose()).await, StatusCode::OK, "failed set_key calls changed nothing");

    // Expiry is enforced when the key is checked, cached or not.
    // Five seconds leave a loaded machine time to create and use the key before it expires.
    let expires = chrono::Utc::now() + chrono::TimeDelta::seconds(5);
    let (_, short) = app.create_key(&staff, json!({"identifier": "short", "expires": expires.to_rfc3339()})).await;
    assert_eq!(me_with(&app, &short).await, StatusCode::OK);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while me_with(&app, &short).await == StatusCode::OK {
        assert!(std::time::Instant::now() < deadline, "the key outlived its expiry");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(chrono::Utc::now() >= expires, "the key stopped working before it expired");
    assert_eq!(me_with(&app, &short).await, StatusCode::UNAUTHORIZED);
    // Uncached, with its expiry already past in the database.
    let (_, stale) = app.create_key(&staff, json!({"identifier": "stale"})).await;
    {
        use gatehouse::tokens::entities::token as row;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        row::Entity::update_many()
            .col_expr(row::Column::Expires, sea_orm::sea_query::Expr::val(Some(chrono::Utc::now() - chrono::TimeDelta::seconds(1))))
            .filter(row::Column::Identifier.eq("stale"))
            .exec(&app.state.db)
            .await
            .unwrap();
    }
    assert_eq!(me_with(&app, &stale).await, StatusCode::UNAUTHORIZED);

    assert_eq!(app.delete(&staff, "/api/v3/core/tokens/k1/").await.status(), StatusCode::NO_CONTENT);
    assert_eq!(me_with(&app, supplied.expose()).await, StatusCode::UNAUTHORIZED);

    // Taking the staff flag away switches off the owner's API keys; giving it back restores them.
    let (_, staff_key) = app.create_key(&staff, json!({"identifier": "staff-only"})).await;
    assert_eq!(me_with(&app, &staff_key).await, StatusCode::OK);
    app.superuser("root@example.com").await;
    let root = app.sign_in("root@example.com").await;
    let staff_pk = json(app.get(&staff, "/api/v3/core/users/me/").await).await.1["user"]["pk"].as_i64().unwrap();
    app.patch(&root, &format!("/api/v3/core/users/{staff_pk}/"), json!({"is_staff": false})).await;
    assert_eq!(me_with(&app, &staff_key).await, StatusCode::UNAUTHORIZED);
    app.patch(&root, &format!("/api/v3/core/users/{staff_pk}/"), json!({"is_staff": true})).await;
    assert_eq!(me_with(&app, &staff_key).await, StatusCode::OK);

    // Disabling the owner switches off their keys too.
    let (_, owned) = app.create_key(&staff, json!({"identifier": "owned"})).await;
    assert_eq!(me_with(&app, &owned).await, StatusCode::OK);
    app.patch(&root, &format!("/api/v3/core/users/{staff_pk}/"), json!({"is_active": false})).await;
    assert_eq!(me_with(&app, &owned).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn every_bad_bearer_credential_gets_the_same_401() {
    let (app, staff) = staff_app().await;
    let (_, key) = app.create_key(&staff, json!({"identifier": "good"})).await;
    let (_, inactive) = app.create_key(&staff, json!({"identifier": "off"})).await;
    app.patch(&staff, "/api/v3/core/tokens/off/", json!({"is_active": false})).await;
    let (_, app_password) = app.create_key(&staff, json!({"identifier": "app-pw", "intent": "app_password"})).await;
    let mut typo = key.clone().into_bytes();
    typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let unknown = SecretKey::generate(KeyKind::Api).expose().to_owned();
    let mut bodies = Vec::new();
    for header in [
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        "Basic dXNlcjpwYXNz".to_owned(),
        "Bearer not-a-key".to_owned(),
        format!("Bearer {typo}"),
        format!("Bearer {unknown}"),
        format!("Bearer {inactive}"),
        format!("Bearer {app_password}"),
    ] {
        let response = app.client.get(app.url("/api/v3/core/users/me/")).header("authorization", &header).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{header}");
        assert!(response.headers().get("www-authenticate").unwrap().to_str().unwrap().starts_with("Bearer"));
        bodies.push(response.text().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    assert!(bodies.iter().all(|b| !b.contains("gatehouse_")), "no key is echoed");
    let lowercase =
        app.client.get(app.url("/api/v3/core/users/me/")).header("authorization", format!("bearer {key}")).send().await.unwrap();
    assert_eq!(lowercase.status(), StatusCode::OK, "the scheme is case-insensitive");
}

#[tokio::test]
async fn failed_bearer_credentials_are_limited_per_address() {
    let app = TestApp::spawn_with(|c| {
        c.sign_in.free_failures_per_ip = 3;
        c.sign_in.max_failures_per_ip_hour = 60;
    })
    .await;
    let failures_counted = || async {
        let metrics = app.client.get(format!("{}/metrics", app.metrics_base)).send().await.unwrap().text().await.unwrap();
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("gatehouse_auth_failures_total{kind=\"bearer\"} "))
            .map_or(0.0, |value| value.trim().parse::<f64>().unwrap())
    };
    let counted_before = failures_counted().await;
    // A key that is not even well formed is refused without a lookup, and costs no attempt.
    for _ in 0..10 {
        assert_eq!(me_with(&app, "gatehouse_api_guess").await, StatusCode::UNAUTHORIZED);
    }
    // Completing a partly known key: the guesses share its prefix.
    let known_part = gatehouse::tokens::key::SecretKey::generate(gatehouse::tokens::key::KeyKind::Api);
    let guess = || known_part.sibling().expose().to_owned();
    for _ in 0..3 {
        assert_eq!(me_with(&app, &guess()).await, StatusCode::UNAUTHORIZED);
    }
    let response = app.bearer(&guess(), Method::GET, "/api/v3/core/users/me/", None).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("retry-after").is_some());
    // Thirteen keys were refused (the throttled attempt was not checked). The metric is shared by
    // every server in this test process, so it grows by at least that.
    let counted = failures_counted().await - counted_before;
    assert!(counted >= 13.0, "{counted}");
}

#[tokio::test]
async fn only_staff_hold_api_keys_and_owners_never_change() {
    let (app, staff) = staff_app().await;
    let plain = app.user("plain@example.com", |_| {}).await;
    let plain_session = app.sign_in("plain@example.com").await;
    assert_field_error(app.post(&plain_session, "/api/v3/core/tokens/", json!({"identifier": "mine"})).await, "intent").await;
    // App passwords are for everyone.
    let (_, app_password) = app.create_key(&plain_session, json!({"identifier": "laptop", "intent": "app_password"})).await;
    assert!(app_password.starts_with("gatehouse_app_"));

    for (body, field) in [
        (json!({"identifier": "x", "intent": "recovery"}), "intent"),
        (json!({"identifier": "x", "intent": "root"}), "intent"),
        (json!({"identifier": "has space"}), "identifier"),
        (json!({}), "identifier"),
        (json!({"identifier": "x", "expires": "2001-01-01T00:00:00Z"}), "expires"),
        (json!({"identifier": "x", "tags": ["no spaces allowed"]}), "tags"),
        (json!({"identifier": "x", "key": "chosen"}), "key"),
    ] {
        assert_field_error(app.post(&staff, "/api/v3/core/tokens/", body).await, field).await;
    }
    app.create_key(&staff, json!({"identifier": "taken"})).await;
    assert_field_error(app.post(&staff, "/api/v3/core/tokens/", json!({"identifier": "taken"})).await, "identifier").await;

    // Only superusers create tokens for someone else.
    let response =
        app.post(&staff, "/api/v3/core/tokens/", json!({"identifier": "for-plain", "user": plain.id, "intent": "app_password"})).await;
    assert_forbidden(response).await;
    app.superuser("admin@example.com").await;
    let admin = app.sign_in("admin@example.com").await;
    assert_field_error(app.post(&admin, "/api/v3/core/tokens/", json!({"identifier": "for-plain", "user": plain.id})).await, "intent")
        .await;
    let (status, _) = json(
        app.post(&admin, "/api/v3/core/tokens/", json!({"identifier": "for-plain", "user": plain.id, "intent": "app_password"})).await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    assert_field_error(app.patch(&staff, "/api/v3/core/tokens/taken/", json!({"user": plain.id})).await, "user").await;
    assert_field_error(app.patch(&staff, "/api/v3/core/tokens/taken/", json!({"intent": "app_password"})).await, "intent").await;
    assert_field_error(app.put(&staff, "/api/v3/core/tokens/taken/", json!({"description": "no identifier"})).await, "identifier").await;
    let (_, token) = json(app.get(&staff, "/api/v3/core/tokens/taken/").await).await;
    assert_eq!(token["user_obj"]["email"], "staff@example.com");
}

#[tokio::test]
async fn tokens_are_private_to_their_owner_unless_permitted() {
    let (app, staff) = staff_app().await;
    app.create_key(&staff, json!({"identifier": "staff-key"})).await;
    app.user("other@example.com", |u| u.is_staff = true).await;
    let other = app.sign_in("other@example.com").await;
    app.create_key(&other, json!({"identifier": "other-key"})).await;

    let (_, own) = json(app.get(&staff, "/api/v3/core/tokens/").await).await;
    assert_eq!(own["pagination"]["count"], 1);
    assert_eq!(own["results"][0]["identifier"], "staff-key");
    for path in ["/api/v3/core/tokens/other-key/", "/api/v3/core/tokens/other-key/view_key/", "/api/v3/core/tokens/other-key/used_by/"] {
        assert_eq!(app.get(&staff, path).await.status(), StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(app.delete(&staff, "/api/v3/core/tokens/other-key/").await.status(), StatusCode::NOT_FOUND);

    app.user_with("auditor@example.com", &["authentik_core.view_token"]).await;
    let auditor = app.sign_in("auditor@example.com").await;
    let (_, all) = json(app.get(&auditor, "/api/v3/core/tokens/").await).await;
    assert_eq!(all["pagination"]["count"], 2);
    assert_eq!(app.get(&auditor, "/api/v3/core/tokens/other-key/").await.status(), StatusCode::OK);
    assert_forbidden(app.get(&auditor, "/api/v3/core/tokens/other-key/view_key/").await).await;
    assert_forbidden(app.patch(&auditor, "/api/v3/core/tokens/other-key/", json!({"description": "x"})).await).await;
    assert_forbidden(app.delete(&auditor, "/api/v3/core/tokens/other-key/").await).await;
    let (status, used_by) = json(app.get(&auditor, "/api/v3/core/tokens/other-key/used_by/").await).await;
    assert_eq!((status, used_by), (StatusCode::OK, json!([])));
}

#[tokio::test]
async fn tokens_are_filtered_ordered_and_carry_smarter_fields() {
    let (app, staff) = staff_app().await;
    app.create_key(&staff, json!({"identifier": "b-key", "tags": ["ci"], "description": "builds"})).await;
    // Keys that never expire are made by superusers only.
    app.superuser("root@example.com").await;
    let root = app.sign_in("root@example.com").await;
    let staff_pk = json(app.get(&staff, "/api/v3/core/users/me/").await).await.1["user"]["pk"].as_i64().unwrap();
    app.create_key(&root, json!({"identifier": "a-key", "tags": ["ops"], "expiring": false, "user": staff_pk})).await;
    app.create_key(&staff, json!({"identifier": "c-pass", "intent": "app_password"})).await;
    let (_, tagged) = json(app.get(&staff, "/api/v3/core/tokens/?tag=CI").await).await;
    assert_eq!(tagged["pagination"]["count"], 1);
    assert_eq!(tagged["results"][0]["identifier"], "b-key");
    let (_, api) = json(app.get(&staff, "/api/v3/core/tokens/?intent=api&ordering=-identifier").await).await;
    let identifiers: Vec<&str> = api["results"].as_array().unwrap().iter().map(|t| t["identifier"].as_str().unwrap()).collect();
    assert_eq!(identifiers, ["b-key", "a-key"]);
    let (_, never) = json(app.get(&staff, "/api/v3/core/tokens/?expiring=false").await).await;
    assert_eq!(never["results"][0]["identifier"], "a-key");
    assert!(never["results"][0]["expires"].is_null());
    let (_, by_owner) = json(app.get(&staff, "/api/v3/core/tokens/?user__username=STAFF@example.com").await).await;
    assert_eq!(by_owner["pagination"]["count"], 3);
    let (_, searched) = json(app.get(&staff, "/api/v3/core/tokens/?search=build").await).await;
    assert_eq!(searched["pagination"]["count"], 1);
    assert_field_error(app.get(&staff, "/api/v3/core/tokens/?intent=root").await, "intent").await;
    assert_field_error(app.get(&staff, "/api/v3/core/tokens/?ordering=key_digest").await, "ordering").await;

    let token = &tagged["results"][0];
    let locator = token["record_locator"].as_str().unwrap();
    assert_eq!(token["hashed_id"], locator);
    let id = gatehouse::tokens::key::parse_record_locator(locator).unwrap();
    assert_eq!(record_locator(id), locator);
    assert_eq!(token["masked_identifier"], "****-key");
}

#[tokio::test]
async fn the_live_key_limit_holds_under_concurrent_creation() {
    let app = TestApp::spawn_with(|c| c.tokens.max_live_per_user = 3).await;
    app.user("staff@example.com", |u| u.is_staff = true).await;
    let staff = app.sign_in("staff@example.com").await;
    let attempts = (0..8).map(|i| {
        let app = &app;
        let staff = &staff;
        async move { app.post(staff, "/api/v3/core/tokens/", json!({"identifier": format!("race-{i}")})).await.status() }
    });
    let statuses = futures_util::future::join_all(attempts).await;
    let created = statuses.iter().filter(|s| **s == StatusCode::CREATED).count();
    assert_eq!(created, 3, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == StatusCode::CREATED || *s == StatusCode::BAD_REQUEST), "{statuses:?}");
    let (_, list) = json(app.get(&staff, "/api/v3/core/tokens/").await).await;
    assert_eq!(list["pagination"]["count"], 3);
    // Switching one off frees a place.
    let first = list["results"][0]["identifier"].as_str().unwrap().to_owned();
    app.patch(&staff, &format!("/api/v3/core/tokens/{first}/"), json!({"is_active": false})).await;
    assert_eq!(app.post(&staff, "/api/v3/core/tokens/", json!({"identifier": "after"})).await.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn no_key_is_stored_or_shown_except_by_view_key() {
    let (app, staff) = staff_app().await;
    let (token, key) = app.create_key(&staff, json!({"identifier": "secret-check"})).await;
    assert!(!token.to_string().contains(&key));
    for path in ["/api/v3/core/tokens/", "/api/v3/core/tokens/secret-check/", "/api/v3/core/users/me/"] {
        let text = app.get(&staff, path).await.text().await.unwrap();
        assert!(!text.contains(&key), "{path} shows the key");
    }
    let patched = app.patch(&staff, "/api/v3/core/tokens/secret-check/", json!({"name": "renamed"})).await.text().await.unwrap();
    assert!(!patched.contains(&key));
    assert_eq!(me_with(&app, &key).await, StatusCode::OK);

    // The stored rows hold no key, in any table.
    let url = app.state.config.database_url();
    let dump = if url.starts_with("postgres") {
        use sea_orm::{ConnectionTrait, Statement};
        let mut text = String::new();
        let tables_sql = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()";
        let tables = app.state.db.query_all_raw(Statement::from_string(app.state.db.get_database_backend(), tables_sql)).await.unwrap();
        let tables: Vec<String> = tables.iter().map(|row| row.try_get::<String>("", "tablename").unwrap()).collect();
        assert!(tables.len() > 10, "{tables:?}");
        for table in tables {
            let sql = format!("SELECT coalesce(string_agg(t::text, ' '), '') AS dump FROM \"{table}\" t");
            let row = app.state.db.query_one_raw(Statement::from_string(app.state.db.get_database_backend(), sql)).await.unwrap().unwrap();
            text.push_str(&row.try_get::<String>("", "dump").unwrap());
        }
        text.into_bytes()
    } else {
        let path = url.trim_start_matches("sqlite://").to_owned();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
        bytes
    };
    let identifier = b"secret-check";
    assert!(dump.windows(identifier.len()).any(|w| w == identifier), "the dump holds the tokens table");
    let needle = key.as_bytes();
    assert!(!dump.windows(needle.len()).any(|w| w == needle), "the database holds the key");
    let random_part = &key.as_bytes()[14..40];
    assert!(!dump.windows(random_part.len()).any(|w| w == random_part), "the database holds part of the key");
}

#[tokio::test]
async fn service_accounts_get_an_app_password() {
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    let admin = app.sign_in("admin@example.com").await;
    let (status, created) =
        json(app.post(&admin, "/api/v3/core/users/service_account/", json!({"name": "backup-bot", "create_group": true})).await).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["username"], "backup-bot");
    assert!(created["token"].as_str().unwrap().starts_with("gatehouse_app_"));
    assert!(created["group_pk"].is_string());
    let (_, user) = json(app.get(&admin, &format!("/api/v3/core/users/{}/", created["user_pk"])).await).await;
    assert_eq!(user["type"], "service_account");
    assert_eq!(user["uid"], created["user_uid"]);
    // A service account does not sign in interactively, not even with its app password.
    assert_eq!(app.try_sign_in("backup-bot", created["token"].as_str().unwrap()).await.status(), StatusCode::BAD_REQUEST);

    assert_field_error(app.post(&admin, "/api/v3/core/users/service_account/", json!({"name": "backup-bot"})).await, "name").await;
    assert_field_error(app.post(&admin, "/api/v3/core/users/service_account/", json!({"name": "bad name"})).await, "name").await;
    assert_field_error(app.post(&admin, "/api/v3/core/users/service_account/", json!({})).await, "name").await;
    let (_, count) = json(app.get(&admin, "/api/v3/core/users/?type=service_account").await).await;
    assert_eq!(count["pagination"]["count"], 1, "failed requests created no account");
    app.user("plain@example.com", |_| {}).await;
    let plain = app.sign_in("plain@example.com").await;
    assert_forbidden(app.post(&plain, "/api/v3/core/users/service_account/", json!({"name": "sneaky"})).await).await;
}

/// Concurrent changes must queue for the database, never fail: on SQLite a transaction that
/// reads before it writes has to take the write lock up front.
#[tokio::test]
async fn concurrent_changes_all_succeed() {
    let (app, staff) = staff_app().await;
    let mut before = Vec::new();
    for i in 0..4 {
        before.push(app.create_key(&staff, json!({"identifier": format!("busy-{i}")})).await.1);
    }
    let changes = (0..40).map(|n| {
        let app = &app;
        let staff = &staff;
        async move {
            // Rotation reads (is the new key taken?) before it writes.
            let path = format!("/api/v3/core/tokens/busy-{}/rotate/", n % 4);
            app.post(staff, &path, json!({})).await.status()
        }
    });
    let statuses = futures_util::future::join_all(changes).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::NO_CONTENT), "{statuses:?}");
    // Every rotation took effect: the first keys are gone, each token's last key works.
    for (i, old_key) in before.iter().enumerate() {
        assert_eq!(me_with(&app, old_key).await, StatusCode::UNAUTHORIZED);
        let (_, view) = json(app.get(&staff, &format!("/api/v3/core/tokens/busy-{i}/view_key/")).await).await;
        let current = view["key"].as_str().unwrap();
        assert_ne!(current, old_key);
        assert_eq!(me_with(&app, current).await, StatusCode::OK);
    }
}

/// A key in Gatehouse's format with a chosen random part and a valid checksum.
fn chosen_key(body: &str) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let head = format!("gatehouse_api_{body}");
    let mut value = crc32fast::hash(head.as_bytes());
    let mut digits = [b'0'; 6];
    for digit in digits.iter_mut().rev() {
        *digit = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    format!("{head}{}", String::from_utf8_lossy(&digits))
}

#[tokio::test]
async fn keys_of_non_superusers_always_expire_within_the_maximum_lifetime() {
    let (app, staff) = staff_app().await;
    let forever = json!({"identifier": "forever", "expiring": false});
    assert_field_error(app.post(&staff, "/api/v3/core/tokens/", forever).await, "expiring").await;
    let far = (chrono::Utc::now() + chrono::TimeDelta::days(400)).to_rfc3339();
    assert_field_error(app.post(&staff, "/api/v3/core/tokens/", json!({"identifier": "far", "expires": far})).await, "expires").await;
    let (_, list) = json(app.get(&staff, "/api/v3/core/tokens/").await).await;
    assert_eq!(list["pagination"]["count"], 0, "a refused key was created: {list}");

    let (token, _) = app.create_key(&staff, json!({"identifier": "ok"})).await;
    let expires = chrono::DateTime::parse_from_rfc3339(token["expires"].as_str().unwrap()).unwrap();
    assert!(expires <= chrono::Utc::now() + chrono::TimeDelta::days(365));
    assert_field_error(app.patch(&staff, "/api/v3/core/tokens/ok/", json!({"expiring": false})).await, "expiring").await;
    assert_field_error(app.patch(&staff, "/api/v3/core/tokens/ok/", json!({"expires": far})).await, "expires").await;
    let (_, after) = json(app.get(&staff, "/api/v3/core/tokens/ok/").await).await;
    assert_eq!((&after["expiring"], &after["expires"]), (&token["expiring"], &token["expires"]), "a refused change was applied");
    // The bound counts from the token's creation: a key made 300 days ago cannot be stretched
    // 100 days from now, so a leaked key cannot keep renewing itself.
    {
        use gatehouse::tokens::entities::token as row;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        row::Entity::update_many()
            .col_expr(row::Column::Created, sea_orm::sea_query::Expr::value(chrono::Utc::now() - chrono::TimeDelta::days(300)))
            .filter(row::Column::Identifier.eq("ok"))
            .exec(&app.state.db)
            .await
            .unwrap();
    }
    let stretched = (chrono::Utc::now() + chrono::TimeDelta::days(100)).to_rfc3339();
    assert_field_error(app.patch(&staff, "/api/v3/core/tokens/ok/", json!({"expires": stretched})).await, "expires").await;
    let within = (chrono::Utc::now() + chrono::TimeDelta::days(30)).to_rfc3339();
    assert_eq!(app.patch(&staff, "/api/v3/core/tokens/ok/", json!({"expires": within})).await.status(), StatusCode::OK);

    // Superusers may make keys that never expire.
    app.superuser("root@example.com").await;
    let root = app.sign_in("root@example.com").await;
    let (forever, _) = app.create_key(&root, json!({"identifier": "root-forever", "expiring": false})).await;
    assert!(forever["expires"].is_null());
}

#[tokio::test]
async fn set_key_refuses_chosen_keys_without_entropy_and_keys_in_use() {
    let (app, staff) = staff_app().await;
    let (_, first) = app.create_key(&staff, json!({"identifier": "first"})).await;
    let (_, second) = app.create_key(&staff, json!({"identifier": "second"})).await;
    for weak in [chosen_key(&"a".repeat(43)), chosen_key(&"0123456789abcdefghi".repeat(3)[..43])] {
        let body = assert_field_error(app.post(&staff, "/api/v3/core/tokens/first/set_key/", json!({"key": weak})).await, "key").await;
        assert!(!body.to_string().contains(&weak), "the error echoes the key");
        assert_eq!(me_with(&app, &weak).await, StatusCode::UNAUTHORIZED);
    }
    assert_field_error(app.post(&staff, "/api/v3/core/tokens/first/set_key/", json!({"key": second})).await, "key").await;
    assert_eq!(me_with(&app, &first).await, StatusCode::OK, "a refused key change was applied");
    let strong = chosen_key("q8Xz3LmP0vKd7RwT2bYh9NcF4jGs6A1eU5oIyEtHnBr");
    assert_eq!(app.post(&staff, "/api/v3/core/tokens/first/set_key/", json!({"key": strong})).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(me_with(&app, &strong).await, StatusCode::OK);
}
