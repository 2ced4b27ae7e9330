//! `/api/v3/core/users/`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn superuser_creates_reads_updates_and_deletes_a_user() {
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    let admin = app.sign_in("admin@example.com").await;

    let response = app
        .post(
            &admin,
            "/api/v3/core/users/",
            json!({
                "email": "Bob@Example.com",
                "name": "Bob",
                "phone_number": "+1 (415) 555-2671",
                "attributes": {"team": "blue"},
                "is_staff": true,
                "password": PASSWORD,
            }),
        )
        .await;
    let (status, created) = json(response).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["username"], "Bob@Example.com", "username defaults to the e-mail");
    assert_eq!(created["phone_number"], "+14155552671", "phone stored in E.164");
    assert_eq!(created["type"], "internal");
    assert_eq!(created["is_active"], true);
    assert_eq!(created["is_staff"], true);
    assert_eq!(created["path"], "users");
    assert!(created["uuid"].is_string() && created["uid"].as_str().unwrap().len() == 64);
    assert!(created.get("password").is_none(), "no password field in responses");
    let pk = created["pk"].as_i64().unwrap();

    let (status, fetched) = json(app.get(&admin, &format!("/api/v3/core/users/{pk}/")).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["email"], "Bob@Example.com");
    assert_eq!(fetched["attributes"]["team"], "blue");

    // The new user can sign in with the password given at creation.
    app.sign_in("bob@example.com").await;

    let (status, patched) = json(app.patch(&admin, &format!("/api/v3/core/users/{pk}/"), json!({"name": "Robert"})).await).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["name"], "Robert");
    assert_eq!(patched["phone_number"], "+14155552671", "PATCH leaves other fields alone");

    let (status, put) = json(
        app.put(&admin, &format!("/api/v3/core/users/{pk}/"), json!({"username": "bob", "name": "Bob B", "email": "bob@example.com"}))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{put}");
    assert_eq!(put["username"], "bob");

    let response = app.delete(&admin, &format!("/api/v3/core/users/{pk}/")).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, body) = json(app.get(&admin, &format!("/api/v3/core/users/{pk}/")).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["detail"], "The requested resource does not exist.");
}

#[tokio::test]
async fn invalid_input_names_the_field_and_writes_nothing() {
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    app.user("taken@example.com", |_| {}).await;
    let admin = app.sign_in("admin@example.com").await;
    let count_before = json(app.get(&admin, "/api/v3/core/users/").await).await.1["pagination"]["count"].clone();

    for (body, field) in [
        (json!({"email": "not-an-email", "name": "x"}), "email"),
        (json!({"email": "TAKEN@example.com", "name": "x"}), "email"),
        (json!({"email": "new@example.com", "username": "has space"}), "username"),
        (json!({"email": "new@example.com", "phone_number": "12345"}), "phone_number"),
        (json!({"email": "new@example.com", "type": "robot"}), "type"),
        (json!({"email": "new@example.com", "is_active": "yes"}), "is_active"),
        (json!({"email": "new@example.com", "unexpected": 1}), "unexpected"),
        (json!({"email": "new@example.com", "password": "short"}), "password"),
        (json!({"email": "new@example.com", "password": "password123"}), "password"),
        (json!({"email": "new@example.com", "groups": ["00000000-0000-0000-0000-000000000000"]}), "groups"),
        (json!({"email": "new@example.com", "roles": ["00000000-0000-0000-0000-000000000000"]}), "roles"),
        (json!({"email": "new@example.com", "permissions": ["not a permission"]}), "permissions"),
        (json!({"name": "no email"}), "email"),
    ] {
        assert_field_error(app.post(&admin, "/api/v3/core/users/", body).await, field).await;
    }
    // Not JSON at all.
    let response = app
        .client
        .post(app.url("/api/v3/core/users/"))
        .header("cookie", &admin.cookie)
        .header("x-csrftoken", &admin.csrf)
        .header("content-type", "application/json")
        .body("{broken")
        .send()
        .await
        .unwrap();
    assert_field_error(response, "non_field_errors").await;

    let count_after = json(app.get(&admin, "/api/v3/core/users/").await).await.1["pagination"]["count"].clone();
    assert_eq!(count_before, count_after, "failed requests created nobody");

    let taken = app.user("other@example.com", |_| {}).await;
    let path = format!("/api/v3/core/users/{}/", taken.id);
    assert_field_error(app.patch(&admin, &path, json!({"email": "Taken@Example.com"})).await, "email").await;
    assert_field_error(app.put(&admin, &path, json!({"email": "x@example.com"})).await, "username").await;
    assert_field_error(app.patch(&admin, &path, json!({"password": "new password here"})).await, "password").await;
    let (_, unchanged) = json(app.get(&admin, &path).await).await;
    assert_eq!(unchanged["email"], "other@example.com");
    for missing in ["/api/v3/core/users/999999/", "/api/v3/core/users/not-a-number/"] {
        assert_eq!(app.get(&admin, missing).await.status(), StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn list_paginates_orders_searches_and_filters() {
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    for i in 0..25 {
        app.user(&format!("user{i:02}@example.com"), |u| u.name = format!("Person {i:02}")).await;
    }
    app.user("inactive@example.com", |u| u.is_active = false).await;
    let admin = app.sign_in("admin@example.com").await;

    let (status, page) = json(app.get(&admin, "/api/v3/core/users/?page=2&page_size=10&ordering=email").await).await;
    assert_eq!(status, StatusCode::OK);
    let p = &page["pagination"];
    assert_eq!((p["count"].as_u64(), p["current"].as_u64(), p["total_pages"].as_u64()), (Some(27), Some(2), Some(3)));
    assert_eq!((p["next"].as_u64(), p["previous"].as_u64()), (Some(3), Some(1)));
    assert_eq!((p["start_index"].as_u64(), p["end_index"].as_u64()), (Some(11), Some(20)));
    assert_eq!(page["results"].as_array().unwrap().len(), 10);
    assert_eq!(page["results"][0]["email"], "user08@example.com");

    let (_, descending) = json(app.get(&admin, "/api/v3/core/users/?ordering=-email&page_size=1").await).await;
    assert_eq!(descending["results"][0]["email"], "user24@example.com");

    let (_, found) = json(app.get(&admin, "/api/v3/core/users/?search=PERSON%2017").await).await;
    assert_eq!(found["pagination"]["count"], 1);
    assert_eq!(found["results"][0]["email"], "user17@example.com");

    let (_, literal) = json(app.get(&admin, "/api/v3/core/users/?search=%25").await).await;
    assert_eq!(literal["pagination"]["count"], 0, "a % in the search term is literal");

    let (_, inactive) = json(app.get(&admin, "/api/v3/core/users/?is_active=false").await).await;
    assert_eq!(inactive["pagination"]["count"], 1);
    let (_, by_email) = json(app.get(&admin, "/api/v3/core/users/?email=USER03@example.com").await).await;
    assert_eq!(by_email["results"][0]["name"], "Person 03");

    assert_field_error(app.get(&admin, "/api/v3/core/users/?ordering=password").await, "ordering").await;
    assert_field_error(app.get(&admin, "/api/v3/core/users/?is_active=maybe").await, "is_active").await;
    assert_field_error(app.get(&admin, "/api/v3/core/users/?page_size=-1").await, "page_size").await;
    let (status, body) = json(app.get(&admin, "/api/v3/core/users/?page=99").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["detail"], "Invalid page.");
}

#[tokio::test]
async fn plain_users_see_only_themselves() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@example.com", |_| {}).await;
    let bob = app.user("bob@example.com", |_| {}).await;
    let session = app.sign_in("alice@example.com").await;

    assert_forbidden(app.get(&session, "/api/v3/core/users/").await).await;
    assert_forbidden(app.get(&session, &format!("/api/v3/core/users/{}/", bob.id)).await).await;
    let (status, own) = json(app.get(&session, &format!("/api/v3/core/users/{}/", alice.id)).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(own["email"], "alice@example.com");
    assert_forbidden(app.post(&session, "/api/v3/core/users/", json!({"email": "x@example.com"})).await).await;
    assert_forbidden(app.patch(&session, &format!("/api/v3/core/users/{}/", alice.id), json!({"name": "x"})).await).await;
    assert_forbidden(app.delete(&session, &format!("/api/v3/core/users/{}/", bob.id)).await).await;
    assert_forbidden(
        app.post(&session, &format!("/api/v3/core/users/{}/set_password/", bob.id), json!({"password": "new strong passphrase 9"})).await,
    )
    .await;

    let (status, me) = json(app.get(&session, "/api/v3/core/users/me/").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["user"]["email"], "alice@example.com");
    assert_eq!(me["user"]["is_superuser"], false);
    assert_eq!(me["user"]["system_permissions"], json!([]));
}

#[tokio::test]
async fn permissions_grant_exactly_what_they_name() {
    let app = TestApp::spawn().await;
    app.superuser("root@example.com").await;
    let target = app.user("target@example.com", |_| {}).await;
    app.user_with("viewer@example.com", &["authentik_core.view_user"]).await;
    let editor = app.user_with("editor@example.com", &["authentik_core.view_user", "authentik_core.change_user"]).await;
    let viewer = app.sign_in("viewer@example.com").await;
    let editor_session = app.sign_in("editor@example.com").await;

    assert_eq!(app.get(&viewer, "/api/v3/core/users/").await.status(), StatusCode::OK);
    assert_forbidden(app.patch(&viewer, &format!("/api/v3/core/users/{}/", target.id), json!({"name": "x"})).await).await;

    let path = format!("/api/v3/core/users/{}/", target.id);
    assert_eq!(app.patch(&editor_session, &path, json!({"name": "Edited"})).await.status(), StatusCode::OK);
    // change_user is not a way up: no granting superuser or permissions, to others or oneself,
    // and no touching superusers.
    assert_forbidden(app.patch(&editor_session, &path, json!({"is_superuser": true})).await).await;
    assert_forbidden(
        app.patch(&editor_session, &format!("/api/v3/core/users/{}/", editor.id), json!({"permissions": ["authentik_core.delete_user"]}))
            .await,
    )
    .await;
    let root = json(app.get(&viewer, "/api/v3/core/users/?email=root@example.com").await).await.1["results"][0]["pk"].as_i64().unwrap();
    assert_forbidden(app.patch(&editor_session, &format!("/api/v3/core/users/{root}/"), json!({"name": "pwned"})).await).await;

    let (_, me) = json(app.get(&editor_session, "/api/v3/core/users/me/").await).await;
    assert_eq!(me["user"]["system_permissions"], json!(["authentik_core.change_user", "authentik_core.view_user"]));
}

#[tokio::test]
async fn set_password_applies_the_rules_and_records_an_event() {
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    let user = app.user("carol@example.com", |u| u.name = "Carol".into()).await;
    let admin = app.sign_in("admin@example.com").await;
    let path = format!("/api/v3/core/users/{}/set_password/", user.id);

    assert_field_error(app.post(&admin, &path, json!({"password": "abc"})).await, "password").await;
    assert_field_error(app.post(&admin, &path, json!({"password": "carol@example.com"})).await, "password").await;
    assert_field_error(app.post(&admin, &path, json!({})).await, "password").await;

    let new_password = "a much longer passphrase that nobody guesses ".repeat(2);
    assert_eq!(app.post(&admin, &path, json!({"password": new_password})).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.try_sign_in("carol@example.com", PASSWORD).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.try_sign_in("carol@example.com", &new_password).await.status(), StatusCode::OK);

    let (_, events) = json(app.get(&admin, "/api/v3/events/events/?action=password_set").await).await;
    assert_eq!(events["pagination"]["count"], 1);
    assert_eq!(events["results"][0]["context"]["model"]["pk"], json!(user.id));
    assert!(!events.to_string().contains("passphrase"), "the password never reaches an event");
}

#[tokio::test]
async fn changes_are_audited_with_a_diff_and_the_actor() {
    let app = TestApp::spawn().await;
    let admin_user = app.superuser("admin@example.com").await;
    let user = app.user("dave@example.com", |_| {}).await;
    let admin = app.sign_in("admin@example.com").await;
    app.patch(&admin, &format!("/api/v3/core/users/{}/", user.id), json!({"name": "Dave", "is_staff": true})).await;

    let (_, events) = json(app.get(&admin, "/api/v3/events/events/?action=model_updated").await).await;
    let event = &events["results"][0];
    assert_eq!(event["user"]["pk"], json!(admin_user.id));
    assert_eq!(event["context"]["model"]["model_name"], "user");
    assert_eq!(event["context"]["diff"]["name"], json!({"previous_value": "", "new_value": "Dave"}));
    assert_eq!(event["context"]["diff"]["is_staff"]["new_value"], true);
    assert!(event["context"]["diff"].get("email").is_none(), "unchanged fields are not in the diff");
    assert!(event["client_ip"].as_str().is_some_and(|ip| ip == "127.0.0.1"));

    let (_, created) = json(app.get(&admin, "/api/v3/events/events/?action=model_created").await).await;
    assert!(created["results"].as_array().unwrap().iter().any(|e| e["context"]["model"]["pk"] == json!(user.id)));
    let text = created.to_string();
    assert!(!text.contains("argon2") && !text.contains(PASSWORD), "no password or hash in events");
}

#[tokio::test]
async fn unauthenticated_requests_get_401_with_a_challenge() {
    let app = TestApp::spawn().await;
    let response = app.client.get(app.url("/api/v3/core/users/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get("www-authenticate").is_some());
    let body: Value = response.json().await.unwrap();
    assert!(body["detail"].is_string());
    let response = app.client.get(app.url("/api/v3/core/users/me/")).header("cookie", "gatehouse_session=forged").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn tenants_never_see_each_others_data() {
    use gatehouse::accounts::access::{Actor, Rights};
    use gatehouse::accounts::groups::{self, NewGroup};
    use gatehouse::accounts::users::{self as service, NewUser};
    use gatehouse::events::entities::event;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    // A second tenant in the same database; its users may reuse addresses of the first.
    let other_state = app.other_tenant().await;
    let other = other_state.tenant;
    let mut new = NewUser::with_email(gatehouse_types::Email::parse("admin@example.com").unwrap());
    new.password = Some(gatehouse::accounts::password::Password::new("another tenant's own password 5".into()));
    new.is_superuser = true;
    let outsider = service::create_user(&other_state, &Actor::system(), new).await.expect("same address, other tenant");
    // The outsider acts in their own tenant, so that events carrying their pk exist.
    let outsider_actor = Actor::user(outsider.clone(), Rights::all(), Default::default(), Some(chrono::Utc::now()));
    let group = groups::create_group(
        &other_state,
        &outsider_actor,
        NewGroup { name: "Outsiders".into(), users: vec![outsider.id], attributes: json!({}), ..Default::default() },
    )
    .await
    .unwrap();
    let outsider_events = event::Entity::find().filter(event::Column::UserId.eq(outsider.id)).all(&app.state.db).await.unwrap();
    assert!(!outsider_events.is_empty() && outsider_events.iter().all(|e| e.tenant_id == other.0), "{outsider_events:?}");

    let admin = app.sign_in("admin@example.com").await;
    let (_, users) = json(app.get(&admin, "/api/v3/core/users/").await).await;
    assert_eq!(users["pagination"]["count"], 1);
    assert_eq!(app.get(&admin, &format!("/api/v3/core/users/{}/", outsider.id)).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.get(&admin, &format!("/api/v3/core/groups/{}/", group.group_uuid)).await.status(), StatusCode::NOT_FOUND);
    let (_, groups) = json(app.get(&admin, "/api/v3/core/groups/").await).await;
    assert_eq!(groups["pagination"]["count"], 0);
    let (_, events) = json(app.get(&admin, "/api/v3/events/events/?page_size=100").await).await;
    let events = events["results"].as_array().unwrap();
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e["user"]["pk"] != json!(outsider.id)), "{events:?}");
    assert_eq!(app.try_sign_in("admin@example.com", "another tenant's own password 5").await.status(), StatusCode::BAD_REQUEST);
    // Adding the other tenant's user to a group here is refused as if it did not exist.
    let (_, local) = json(app.post(&admin, "/api/v3/core/groups/", json!({"name": "Local"})).await).await;
    let add =
        app.post(&admin, &format!("/api/v3/core/groups/{}/add_user/", local["pk"].as_str().unwrap()), json!({"pk": outsider.id})).await;
    assert_eq!(add.status(), StatusCode::NOT_FOUND);
    assert_field_error(app.post(&admin, "/api/v3/core/groups/", json!({"name": "Mixed", "users": [outsider.id]})).await, "users").await;
}

#[tokio::test]
async fn set_password_ends_the_users_other_sessions_in_every_process() {
    let app = TestApp::spawn().await;
    // On SQLite, which one process serves, a second process runs with its cache off; on
    // PostgreSQL its cache keeps checks for an hour, so only the invalidation message ends them.
    let postgres = std::env::var("GATEHOUSE_TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty());
    let other = TestApp::spawn_sharing(&app, |c| {
        c.sessions.cache_ttl = if postgres { "hours=1" } else { "seconds=0" }.parse().unwrap();
    })
    .await;
    app.superuser("admin@example.com").await;
    let carol = app.user_with("carol@example.com", &["authentik_core.reset_user_password"]).await;
    let admin = app.sign_in("admin@example.com").await;
    let stolen = app.sign_in("carol@example.com").await;
    let here = app.sign_in("carol@example.com").await;
    // Both processes have the sessions in their caches.
    for session in [&stolen, &here] {
        assert_eq!(me(&app, session).await, StatusCode::OK);
        assert_eq!(me(&other, session).await, StatusCode::OK);
    }
    let path = format!("/api/v3/core/users/{}/set_password/", carol.id);
    let new_password = "a much longer passphrase that nobody guesses ".repeat(2);
    // A change of one's own password keeps the session it was made with and ends the others.
    assert_eq!(app.post(&here, &path, json!({"password": new_password})).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(me(&app, &here).await, StatusCode::OK);
    for server in [&app, &other] {
        let mut status = me(server, &stolen).await;
        // The other process learns of it through the database's notification.
        for _ in 0..800 {
            if status == StatusCode::UNAUTHORIZED {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            status = me(server, &stolen).await;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED, "a session survived the password change");
    }
    // A reset by someone else ends every session of the user.
    assert_eq!(app.post(&admin, &path, json!({"password": new_password.clone() + "!"})).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(me(&app, &here).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&app, &admin).await, StatusCode::OK);
}

async fn me(app: &TestApp, session: &Session) -> StatusCode {
    app.get(session, "/api/v3/core/users/me/").await.status()
}

/// `GET me` is rendered once per cached check and then answered with the same bytes: a change
/// to the account, its groups or its rights must reach the next answer, through a session and
/// through a key, even with checks kept for an hour.
#[tokio::test]
async fn the_own_view_follows_changes_to_the_account_through_session_and_key() {
    let app = TestApp::spawn_with(|c| c.sessions.cache_ttl = "hours=1".parse().unwrap()).await;
    app.superuser("admin@example.com").await;
    let grace = app
        .user("grace@example.com", |u| {
            u.name = "Grace".into();
            u.is_staff = true;
        })
        .await;
    let admin = app.sign_in("admin@example.com").await;
    let session = app.sign_in("grace@example.com").await;
    let (_, key) = app.create_key(&session, json!({"identifier": "grace-own-view"})).await;
    let by_session = || async { json(app.get(&session, "/api/v3/core/users/me/").await).await };
    let by_key = || async { json(app.bearer(&key, reqwest::Method::GET, "/api/v3/core/users/me/", None).await).await };
    for (status, me) in [by_session().await, by_key().await, by_session().await, by_key().await] {
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!((me["user"]["name"].as_str(), me["users"][0]["name"].as_str()), (Some("Grace"), Some("Grace")));
        assert_eq!(me["user"]["system_permissions"], json!([]));
    }

    let path = format!("/api/v3/core/users/{}/", grace.id);
    let changed = app.patch(&admin, &path, json!({"name": "Grace Hopper", "permissions": ["authentik_core.view_user"]})).await;
    assert_eq!(changed.status(), StatusCode::OK);
    let (_, group) = json(app.post(&admin, "/api/v3/core/groups/", json!({"name": "Navy", "users": [grace.id]})).await).await;
    for (status, me) in [by_session().await, by_key().await] {
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me["user"]["name"], "Grace Hopper");
        assert_eq!(me["users"][0]["name"], "Grace Hopper");
        assert_eq!(me["user"]["system_permissions"], json!(["authentik_core.view_user"]));
        assert_eq!(me["user"]["groups"], json!([{"pk": group["pk"], "name": "Navy"}]));
    }
    let response = app.get(&session, "/api/v3/core/users/me/").await;
    assert_eq!(response.headers()["content-type"], "application/json");
}
