//! Sign-in integrity: no session without a verified factor, whatever the flow's stages say.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::flows::{Browser, events};
use crate::support::*;

const FLOW_EDITING: &[&str] = &[
    "authentik_flows.add_flow",
    "authentik_flows.add_stage",
    "authentik_flows.add_flowstagebinding",
    "authentik_flows.change_flowstagebinding",
    "authentik_flows.view_flowstagebinding",
];

async fn created(response: reqwest::Response) -> Value {
    let (status, body) = json(response).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// Builds, as `editor`, an authentication flow `slug` of the given stages in order.
async fn build_flow(app: &TestApp, editor: &Session, slug: &str, stages: &[(&str, Value)]) {
    let body = json!({"name": slug, "slug": slug, "title": slug, "designation": "authentication"});
    let flow = created(app.post(editor, "/api/v3/flows/instances/", body).await).await;
    for (order, (kind, settings)) in stages.iter().enumerate() {
        let mut settings = settings.clone();
        settings["name"] = json!(format!("{slug}-{kind}-{order}"));
        let stage = created(app.post(editor, &format!("/api/v3/stages/{kind}/"), settings).await).await;
        let binding = json!({"target": flow["pk"], "stage": stage["pk"], "order": order * 10});
        created(app.post(editor, "/api/v3/flows/bindings/", binding).await).await;
    }
}

/// Answers the identification stage of `slug` with `identifier` and returns what comes next.
async fn identify(browser: &mut Browser<'_>, slug: &str, identifier: &str) -> Value {
    let path = format!("/api/v3/flows/executor/{slug}/");
    let (status, first) = browser.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["component"], "ak-stage-identification", "{first}");
    let (_, next) = browser.post(&path, json!({"component": "ak-stage-identification", "uid_field": identifier})).await;
    next
}

#[tokio::test]
async fn a_flow_without_a_factor_signs_no_one_in() {
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    app.user_with("editor@example.com", FLOW_EDITING).await;
    let editor = app.sign_in("editor@example.com").await;
    build_flow(&app, &editor, "backdoor", &[("identification", json!({})), ("user_login", json!({}))]).await;
    build_flow(
        &app,
        &editor,
        "remembering-backdoor",
        &[("identification", json!({})), ("user_login", json!({"remember_me_offset": "days=30"}))],
    )
    .await;

    for slug in ["backdoor", "remembering-backdoor"] {
        let mut stranger = Browser::new(&app);
        let answer = identify(&mut stranger, slug, "admin@example.com").await;
        assert_eq!(answer["component"], "ak-stage-access-denied", "{slug}: {answer}");
        assert_eq!(answer["error_message"], "This sign-in was not verified; please start again.");
        assert_eq!(stranger.me().await, StatusCode::UNAUTHORIZED, "{slug}: no session was started");
    }
    let refusals = events(&app, "suspicious_request").await;
    let about_admin: Vec<&Value> = refusals.iter().filter(|e| e["context"]["pending_user"]["username"] == "admin@example.com").collect();
    assert_eq!(about_admin.len(), 2, "{refusals:?}");
    assert_eq!(about_admin[0]["context"]["reason"], "sign-in without a verified factor");
    let logins = events(&app, "login").await;
    assert!(logins.iter().all(|e| e["user"]["username"] != "admin@example.com"), "{logins:?}");

    // The same editor's flow with a password stage between them signs the admin in.
    build_flow(&app, &editor, "proper", &[("identification", json!({})), ("password", json!({})), ("user_login", json!({}))]).await;
    let mut owner = Browser::new(&app);
    let answer = identify(&mut owner, "proper", "admin@example.com").await;
    assert_eq!(answer["component"], "ak-stage-password", "{answer}");
    let (_, done) = owner.post("/api/v3/flows/executor/proper/", json!({"component": "ak-stage-password", "password": PASSWORD})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
    assert_eq!(owner.me().await, StatusCode::OK);
}

#[tokio::test]
async fn a_factor_proven_for_one_account_does_not_sign_in_another() {
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    app.user("mallory@example.com", |_| {}).await;
    app.user_with("editor@example.com", FLOW_EDITING).await;
    let editor = app.sign_in("editor@example.com").await;
    // Mallory proves her own password, then names the admin before the login stage.
    build_flow(
        &app,
        &editor,
        "switch",
        &[("identification", json!({})), ("password", json!({})), ("identification", json!({})), ("user_login", json!({}))],
    )
    .await;
    let mut mallory = Browser::new(&app);
    let path = "/api/v3/flows/executor/switch/";
    identify(&mut mallory, "switch", "mallory@example.com").await;
    let (_, next) = mallory.post(path, json!({"component": "ak-stage-password", "password": PASSWORD})).await;
    assert_eq!(next["component"], "ak-stage-identification", "{next}");
    let (_, answer) = mallory.post(path, json!({"component": "ak-stage-identification", "uid_field": "admin@example.com"})).await;
    assert_eq!(answer["component"], "ak-stage-access-denied", "{answer}");
    assert_eq!(mallory.me().await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn pointing_the_password_binding_at_a_login_stage_signs_no_one_in() {
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    app.user_with("editor@example.com", FLOW_EDITING).await;
    let editor = app.sign_in("editor@example.com").await;
    let (_, bindings) = json(app.get(&editor, "/api/v3/flows/bindings/").await).await;
    let password_binding = bindings["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["stage_obj"]["meta_model_name"] == "authentik_stages_password.passwordstage")
        .expect("the default flow binds a password stage")
        .clone();
    let login_stage = bindings["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["stage_obj"]["meta_model_name"] == "authentik_stages_user_login.userloginstage")
        .map(|b| b["stage"].clone())
        .expect("the default flow binds a login stage");
    let path = format!("/api/v3/flows/bindings/{}/", password_binding["pk"].as_str().unwrap());
    let (status, body) = json(app.patch(&editor, &path, json!({"stage": login_stage})).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let mut stranger = Browser::new(&app);
    let answer = identify(&mut stranger, "default-authentication-flow", "admin@example.com").await;
    assert_eq!(answer["component"], "ak-stage-access-denied", "{answer}");
    assert_eq!(stranger.me().await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_json_sign_in_ends_the_session_the_request_came_with() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |_| {}).await;
    app.user("bob@example.com", |_| {}).await;
    for second_account in ["ada@example.com", "bob@example.com"] {
        let first = app.sign_in("ada@example.com").await;
        let response = app
            .client
            .post(app.url("/api/v3/auth/sign_in/"))
            .header("cookie", &first.cookie)
            .json(&json!({"email": second_account, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let second = session_from(response).await;
        assert_ne!(second.cookie, first.cookie);
        assert_eq!(app.get(&first, "/api/v3/core/users/me/").await.status(), StatusCode::UNAUTHORIZED, "{second_account}");
        let (status, me) = json(app.get(&second, "/api/v3/core/users/me/").await).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(me["user"]["email"], second_account);
    }
}

const KNOWN_BROWSER_COOKIE: &str = "__Host-gatehouse_known_browser";

/// A JSON sign-in from client address `from` (through the trusted loopback proxy), carrying
/// `cookie` when given.
async fn sign_in_from(app: &TestApp, email: &str, password: &str, from: &str, cookie: Option<&str>) -> reqwest::Response {
    remember_secret(password);
    let mut request = app
        .client
        .post(app.url("/api/v3/auth/sign_in/"))
        .header("x-forwarded-for", from)
        .json(&json!({"email": email, "password": password}));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.unwrap()
}

/// The known-browser cookie a sign-in set, as `name=value`.
fn known_browser_cookie(response: &reqwest::Response) -> String {
    remember_cookies(response);
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{KNOWN_BROWSER_COOKIE}=")))
        .and_then(|c| c.split(';').next())
        .expect("a known-browser cookie is set")
        .to_owned()
}

async fn behind_a_proxy(adjust: impl FnOnce(&mut gatehouse::config::Config)) -> TestApp {
    TestApp::spawn_with(|c| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        adjust(c);
    })
    .await
}

#[tokio::test]
async fn one_address_guessing_at_an_account_cannot_keep_its_owner_out() {
    let app = behind_a_proxy(|c| {
        c.sign_in.free_failures_per_account_address = 2;
        c.sign_in.max_failures_per_account_address_hour = 60;
    })
    .await;
    app.user("victim@example.com", |_| {}).await;
    let mut attacker_statuses = Vec::new();
    for round in 0..8 {
        let guess = sign_in_from(&app, "victim@example.com", &format!("guess number {round}"), "203.0.113.66", None).await;
        attacker_statuses.push(guess.status());
        let owner = sign_in_from(&app, "victim@example.com", PASSWORD, "198.51.100.7", None).await;
        assert_eq!(owner.status(), StatusCode::OK, "round {round}: the owner at another address gets in");
    }
    assert_eq!(&attacker_statuses[..2], [StatusCode::BAD_REQUEST; 2], "free failures are checked");
    assert!(attacker_statuses[2..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS), "{attacker_statuses:?}");
    // The guessing address waits even with the right password: it has not shown it is the owner.
    let response = sign_in_from(&app, "victim@example.com", PASSWORD, "203.0.113.66", None).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn guessing_from_many_addresses_is_capped_per_account_and_known_browsers_still_get_in() {
    let app = behind_a_proxy(|c| {
        c.sign_in.free_failures_per_account_address = 3;
        c.sign_in.max_failures_per_account_address_hour = 5;
        c.sign_in.max_failures_per_account_hour = 6;
    })
    .await;
    app.user("victim@example.com", |_| {}).await;
    app.user("mallory@example.com", |_| {}).await;
    let owner = sign_in_from(&app, "victim@example.com", PASSWORD, "198.51.100.7", None).await;
    assert_eq!(owner.status(), StatusCode::OK);
    let owner_browser = known_browser_cookie(&owner);
    let mallory = sign_in_from(&app, "mallory@example.com", PASSWORD, "203.0.113.1", None).await;
    let mallory_browser = known_browser_cookie(&mallory);

    for attacker in 1..=3 {
        for guess in 0..2 {
            let from = format!("203.0.113.{attacker}");
            let response = sign_in_from(&app, "victim@example.com", &format!("guess {attacker}.{guess}"), &from, None).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "guess {guess} from {from}");
        }
    }
    // Six failures: the account's ceiling. No new address gets another guess this hour, not even
    // with the right password, and not with a browser mark of another account.
    let fresh = sign_in_from(&app, "victim@example.com", PASSWORD, "192.0.2.10", None).await;
    assert_eq!(fresh.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = fresh.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((3000..=3600).contains(&retry_after), "until the hour ends: {retry_after}");
    let borrowed = sign_in_from(&app, "victim@example.com", PASSWORD, "203.0.113.1", Some(&mallory_browser)).await;
    assert_eq!(borrowed.status(), StatusCode::TOO_MANY_REQUESTS, "a mark is good for its own account only");
    let forged = format!("{}x", owner_browser);
    let forged = sign_in_from(&app, "victim@example.com", PASSWORD, "192.0.2.10", Some(&forged)).await;
    assert_eq!(forged.status(), StatusCode::TOO_MANY_REQUESTS, "an altered mark is no mark");

    // The owner's browser gets in from any address, and its own wrong guesses are limited too.
    let known = sign_in_from(&app, "victim@example.com", PASSWORD, "192.0.2.10", Some(&owner_browser)).await;
    assert_eq!(known.status(), StatusCode::OK);
    let renewed = known_browser_cookie(&known);
    for typo in 0..3 {
        let response = sign_in_from(&app, "victim@example.com", &format!("typo {typo}"), "192.0.2.11", Some(&renewed)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
    let held = sign_in_from(&app, "victim@example.com", PASSWORD, "192.0.2.11", Some(&renewed)).await;
    assert_eq!(held.status(), StatusCode::TOO_MANY_REQUESTS, "a known browser has its own free failures, then waits");
}

const TOKEN_BACKENDS: &[&str] = &["authentik.core.auth.InbuiltBackend", "authentik.core.auth.TokenBackend"];

/// Makes `session` look as if it started `minutes` ago.
async fn age_session(app: &TestApp, session: &Session, minutes: i64) {
    use gatehouse::sessions::entities::session as row;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    let id = session.body["session"]["uuid"].as_str().expect("the sign-in names its session").parse::<uuid::Uuid>().unwrap();
    let started = chrono::Utc::now() - chrono::TimeDelta::minutes(minutes);
    let updated = row::Entity::update_many()
        .col_expr(row::Column::Created, Expr::value(started))
        .filter(row::Column::Id.eq(id))
        .exec(&app.state.db)
        .await;
    assert_eq!(updated.unwrap().rows_affected, 1);
    app.state.auth_cache.invalidate_everything();
}

#[tokio::test]
async fn app_passwords_die_with_a_password_reset_and_never_sign_in_through_the_json_sign_in() {
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    let plain = app.user("plain@example.com", |_| {}).await;
    let admin = app.sign_in("admin@example.com").await;
    let session = app.sign_in("plain@example.com").await;
    let (_, app_password) = app.create_key(&session, json!({"identifier": "laptop-mail", "intent": "app_password"})).await;
    crate::flows::set_settings(&app, "default-authentication-password", json!({"backends": TOKEN_BACKENDS})).await;

    let json_sign_in = app.try_sign_in("plain@example.com", &app_password).await;
    assert_eq!(json_sign_in.status(), StatusCode::BAD_REQUEST, "the JSON sign-in takes the account's own password only");
    let mut mail_client = Browser::new(&app);
    let done = mail_client.sign_in("plain@example.com", &app_password).await;
    assert_eq!(done["component"], "xak-flow-redirect", "the stage that enables app passwords takes it: {done}");

    let reset =
        app.post(&admin, &format!("/api/v3/core/users/{}/set_password/", plain.id), json!({"password": "a brand new secret 77"})).await;
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get(&admin, "/api/v3/core/tokens/laptop-mail/").await.status(), StatusCode::NOT_FOUND, "the app password is gone");
    let mut after = Browser::new(&app);
    let refused = after.sign_in("plain@example.com", &app_password).await;
    assert_eq!(refused["component"], "ak-stage-password", "{refused}");
    assert_eq!(after.me().await, StatusCode::UNAUTHORIZED);
    assert_eq!(mail_client.me().await, StatusCode::UNAUTHORIZED, "its session ended with the reset");
    let password_set = events(&app, "password_set").await;
    assert_eq!(password_set[0]["context"]["app_passwords_ended"], 1, "{password_set:?}");
}

#[tokio::test]
async fn app_passwords_need_a_fresh_sign_in_to_be_created_shown_or_replaced() {
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    app.user("plain@example.com", |_| {}).await;
    let session = app.sign_in("plain@example.com").await;
    let (_, _) = app.create_key(&session, json!({"identifier": "made-fresh", "intent": "app_password"})).await;
    age_session(&app, &session, 6).await;
    let stale = app.post(&session, "/api/v3/core/tokens/", json!({"identifier": "made-stale", "intent": "app_password"})).await;
    let body = assert_field_error(stale, "intent").await;
    assert!(body["intent"][0].as_str().unwrap().contains("sign in again"), "{body}");
    assert_eq!(app.get(&session, "/api/v3/core/tokens/made-stale/").await.status(), StatusCode::NOT_FOUND, "nothing was created");
    assert_field_error(app.get(&session, "/api/v3/core/tokens/made-fresh/view_key/").await, "non_field_errors").await;
    assert_field_error(app.post(&session, "/api/v3/core/tokens/made-fresh/rotate/", json!({})).await, "non_field_errors").await;
    // Other tokens' business is unaffected by how old the session is.
    assert_eq!(app.get(&session, "/api/v3/core/tokens/made-fresh/").await.status(), StatusCode::OK);

    let again = app.sign_in("plain@example.com").await;
    let (status, shown) = json(app.get(&again, "/api/v3/core/tokens/made-fresh/view_key/").await).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert!(shown["key"].as_str().unwrap().starts_with("gatehouse_app_"));

    // Superusers are not asked again.
    let admin = app.sign_in("admin@example.com").await;
    age_session(&app, &admin, 60).await;
    let (status, body) =
        json(app.post(&admin, "/api/v3/core/tokens/", json!({"identifier": "admin-mail", "intent": "app_password"})).await).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn a_valid_key_works_from_an_address_whose_neighbours_guess_keys() {
    use gatehouse::tokens::key::{KeyKind, SecretKey};
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    let session = app.sign_in("admin@example.com").await;
    let (_, key) = app.create_key(&session, json!({"identifier": "office-ci", "intent": "api"})).await;
    let free = app.state.config.sign_in.free_failures_per_ip;
    for _ in 0..free + 5 {
        let wrong = SecretKey::generate(KeyKind::Api);
        let response = app.bearer(wrong.expose(), reqwest::Method::GET, "/api/v3/core/users/me/", None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // Nothing cached: the valid key is checked against the database like the wrong ones were.
    app.state.auth_cache.invalidate_everything();
    let response = app.bearer(&key, reqwest::Method::GET, "/api/v3/core/users/me/", None).await;
    assert_eq!(response.status(), StatusCode::OK, "someone else's guessing at the same address does not shut out a valid key");
}

#[tokio::test]
async fn answers_with_personal_data_are_never_cached() {
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    let session = app.sign_in("admin@example.com").await;
    for path in ["/api/v3/core/users/me/", "/api/v3/core/users/", "/api/v3/core/authenticated_sessions/", "/api/v3/core/tokens/"] {
        let response = app.get(&session, path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"), "{path}");
    }
    let anonymous = app.client.get(app.url("/api/v3/core/users/me/")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn service_account_identifiers_cannot_be_squatted_or_probed() {
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    app.user("plain@example.com", |_| {}).await;
    app.user_with("maker@example.com", &["authentik_core.add_user"]).await;
    let admin = app.sign_in("admin@example.com").await;
    let plain = app.sign_in("plain@example.com").await;
    let (status, _) = json(app.post(&admin, "/api/v3/core/users/service_account/", json!({"name": "backup-bot"})).await).await;
    assert_eq!(status, StatusCode::OK);

    // Taken or free, the namespace answers the same, and nothing is created.
    let mut answers = Vec::new();
    for name in ["backup-bot", "mail-bot", "MAIL-BOT"] {
        let body = json!({"identifier": format!("service-account-{name}-password"), "intent": "app_password"});
        answers.push(assert_field_error(app.post(&plain, "/api/v3/core/tokens/", body).await, "identifier").await);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    assert!(answers[0]["identifier"][0].as_str().unwrap().contains("reserved"));
    let (_, key) = app.create_key(&plain, json!({"identifier": "plain-mail", "intent": "app_password"})).await;
    assert!(key.starts_with("gatehouse_app_"));
    let renamed = app.patch(&plain, "/api/v3/core/tokens/plain-mail/", json!({"identifier": "service-account-mail-bot-password"})).await;
    assert_field_error(renamed, "identifier").await;
    let (status, body) = json(app.post(&admin, "/api/v3/core/users/service_account/", json!({"name": "mail-bot"})).await).await;
    assert_eq!(status, StatusCode::OK, "the administrator's name is still free: {body}");

    // A service account is a user, maybe a group, and a token: add_user alone is not enough.
    let maker = app.sign_in("maker@example.com").await;
    assert_forbidden(app.post(&maker, "/api/v3/core/users/service_account/", json!({"name": "robot"})).await).await;
    let (_, users) = json(app.get(&admin, "/api/v3/core/users/?username=robot").await).await;
    assert_eq!(users["pagination"]["count"], 0);
}

#[tokio::test]
async fn unbounded_and_malformed_inputs_get_a_json_error_and_change_nothing() {
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    let ada = app.user("ada@example.com", |_| {}).await;
    let admin = app.sign_in("admin@example.com").await;

    let heavy = json!({"note": "x".repeat(70 * 1024)});
    let body =
        assert_field_error(app.patch(&admin, &format!("/api/v3/core/users/{}/", ada.id), json!({"attributes": heavy})).await, "attributes")
            .await;
    assert!(body["attributes"][0].as_str().unwrap().contains("65536 bytes"), "{body}");
    let mut deep = json!(1);
    for _ in 0..17 {
        deep = json!({ "a": deep });
    }
    assert_field_error(app.post(&admin, "/api/v3/core/groups/", json!({"name": "deep", "attributes": deep})).await, "attributes").await;
    let (_, user) = json(app.get(&admin, &format!("/api/v3/core/users/{}/", ada.id)).await).await;
    assert_eq!(user["attributes"], json!({}));
    let (_, groups) = json(app.get(&admin, "/api/v3/core/groups/?search=deep").await).await;
    assert_eq!(groups["pagination"]["count"], 0);

    // A page number whose row offset does not fit 64 bits is a page that is not there.
    let (status, body) = json(app.get(&admin, "/api/v3/core/users/?page=288230376151711745&page_size=100").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["detail"], "Invalid page.");

    for path in
        ["/api/v3/core/users/?page=1&page=2", "/api/v3/core/tokens/?page_size=5&page_size=6", "/api/v3/events/events/?page=x&page=y"]
    {
        let response = app.get(&admin, path).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(response.headers()["content-type"], "application/json", "{path}");
        let body: Value = response.json().await.unwrap();
        let named = body.as_object().unwrap().keys().next().unwrap().clone();
        assert!(path.contains(&format!("{named}=")), "{path}: {body}");
        assert_eq!(body[&named][0], "Give this parameter once.");
    }
}

async fn create_user(app: &TestApp, admin: &Session, body: Value) -> (StatusCode, Value) {
    json(app.post(admin, "/api/v3/core/users/", body).await).await
}

#[tokio::test]
async fn look_alike_identifiers_cannot_sit_beside_the_accounts_they_imitate() {
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    let admin = app.sign_in("admin@example.com").await;
    let (status, body) = create_user(&app, &admin, json!({"username": "admin", "name": "Admin", "email": "root@example.com"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // The Kelvin sign is stored as the letter it stands for, so kate@ is that very account.
    let (status, kate) = create_user(&app, &admin, json!({"username": "kate", "name": "Kate", "email": "\u{212A}ate@example.com"})).await;
    assert_eq!(status, StatusCode::CREATED, "{kate}");
    assert_eq!(kate["email"], "Kate@example.com");
    let (status, body) = create_user(&app, &admin, json!({"username": "kate2", "name": "Kate", "email": "kate@example.com"})).await;
    assert_eq!((status, &body["email"][0]), (StatusCode::BAD_REQUEST, &json!("A user with this email address already exists.")));

    let cases = [
        ("email", "ａｄｍｉｎ@example.com", "already exists"),
        ("email", "admin@ex\u{0430}mple.com", "different scripts"),
        ("email", "adm\u{0131}n@example.com", "look-alike"),
        ("email", "ad\u{200B}min@example.com", "valid email"),
        ("username", "\u{0430}dmin", "different scripts"),
        ("username", "adm\u{0131}n", "look-alike"),
        ("username", "ＡＤＭＩＮ", "already exists"),
    ];
    for (field, value, expected) in cases {
        let mut body =
            json!({"username": format!("other{}", value.len()), "name": "Other", "email": format!("other{}@example.com", value.len())});
        body[field] = json!(value);
        let (status, answer) = create_user(&app, &admin, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field} {value:?}: {answer}");
        let message = answer[field][0].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{field} {value:?}: {answer}");
    }
    // Renaming into a look-alike is refused the same way.
    let renamed = app.patch(&admin, &format!("/api/v3/core/users/{}/", kate["pk"]), json!({"username": "\u{0430}dmin"})).await;
    assert_field_error(renamed, "username").await;
    // One script per part is fine, whatever the script.
    let (status, body) = create_user(&app, &admin, json!({"username": "иван", "name": "Иван", "email": "иван@example.com"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, users) = json(app.get(&admin, "/api/v3/core/users/").await).await;
    assert_eq!(users["pagination"]["count"], 4, "admin@, admin, kate and иван: {users}");

    // A compatibility spelling signs in to the account it stands for.
    assert_eq!(app.try_sign_in("ＡＤＭＩＮ@ＥＸＡＭＰＬＥ.ＣＯＭ", PASSWORD).await.status(), StatusCode::OK);

    let ascii = TestApp::spawn_with(|c| c.identifiers.ascii_only = true).await;
    ascii.superuser("admin@example.com").await;
    let root = ascii.sign_in("admin@example.com").await;
    let (status, body) = create_user(&ascii, &root, json!({"username": "jose", "name": "José", "email": "josé@example.com"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["email"][0].as_str().unwrap().contains("ASCII"), "{body}");
}

#[tokio::test]
async fn existing_accounts_are_rekeyed_and_clashes_reported() {
    use gatehouse::accounts::entities::user;
    use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder};
    use sea_orm_migration::MigratorTrait;
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await;
    let url = if url.starts_with("sqlite:") { format!("{url}?mode=rwc") } else { url };
    let db = sea_orm::Database::connect(&url).await.unwrap();
    gatehouse::db::migrations::Migrator::up(&db, Some(4)).await.unwrap();
    let tenant = uuid::Uuid::new_v4();
    let now = chrono::Utc::now();
    let insert_tenant = sea_orm::sea_query::Query::insert()
        .into_table("tenants")
        .columns(["id", "slug", "name", "is_default", "created"])
        .values_panic([tenant.into(), "t".into(), "t".into(), true.into(), now.into()])
        .to_owned();
    db.execute(&insert_tenant).await.unwrap();
    // Keys as the earlier version wrote them: lower case only.
    for (username, email) in [("ＡＤＡ", "ada@example.com"), ("ada", "ａｄａ@example.com"), ("bob", "Bob@example.com")] {
        let insert = sea_orm::sea_query::Query::insert()
            .into_table("users")
            .columns([
                "uuid",
                "tenant_id",
                "username",
                "username_key",
                "email",
                "email_key",
                "name",
                "password_change_date",
                "is_active",
                "is_superuser",
                "is_staff",
                "user_type",
                "path",
                "attributes",
                "date_joined",
                "last_updated",
            ])
            .values_panic([
                uuid::Uuid::new_v4().into(),
                tenant.into(),
                username.into(),
                username.to_lowercase().into(),
                email.into(),
                email.to_lowercase().into(),
                "".into(),
                now.into(),
                true.into(),
                false.into(),
                false.into(),
                "internal".into(),
                "users".into(),
                json!({}).into(),
                now.into(),
                now.into(),
            ])
            .to_owned();
        db.execute(&insert).await.unwrap();
    }
    gatehouse::db::migrations::Migrator::up(&db, None).await.unwrap();
    let rows = user::Entity::find().order_by_asc(user::Column::Id).all(&db).await.unwrap();
    let keys: Vec<(&str, Option<&str>)> = rows.iter().map(|u| (u.username_key.as_str(), u.email_key.as_deref())).collect();
    // ＡＤＡ and ada now read the same, as do ada@ and ａｄａ@: the older account keeps both, the
    // newer one can no longer be found by either until it is renamed (the log names both); bob is
    // simply re-keyed.
    let second = format!("\u{1}clash:{}", rows[1].id);
    assert_eq!(keys, [("ada", Some("ada@example.com")), (second.as_str(), Some(second.as_str())), ("bob", Some("bob@example.com"))]);
    assert!(rows.iter().all(|u| u.username_skeleton.is_some() && u.email_skeleton.is_some()));
    assert_eq!(rows[0].username_skeleton, rows[1].username_skeleton);
    let tenant = gatehouse::tenants::TenantId(tenant);
    for typed in ["ada", "ＡＤＡ", "ada@example.com", "ａｄａ@example.com"] {
        let found = gatehouse::accounts::users::find_user_by_identifier(&db, tenant, typed, true, true, false).await.unwrap();
        assert_eq!(found.map(|u| u.id), Some(rows[0].id), "{typed} finds the older account");
    }
}

#[tokio::test]
async fn a_password_reset_ends_known_browser_marks_and_factors_proven_before_it() {
    let app = behind_a_proxy(|c| {
        c.sign_in.free_failures_per_account_address = 3;
        c.sign_in.max_failures_per_account_address_hour = 5;
        c.sign_in.max_failures_per_account_hour = 6;
    })
    .await;
    app.superuser("admin@example.com").await;
    let victim = app.user("victim@example.com", |_| {}).await;
    let admin = app.sign_in("admin@example.com").await;
    let owner = sign_in_from(&app, "victim@example.com", PASSWORD, "198.51.100.7", None).await;
    let old_mark = known_browser_cookie(&owner);
    let reset =
        app.post(&admin, &format!("/api/v3/core/users/{}/set_password/", victim.id), json!({"password": "the new one 2026!"})).await;
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    for attacker in 1..=3 {
        for guess in 0..2 {
            sign_in_from(&app, "victim@example.com", &format!("guess {attacker}.{guess}"), &format!("203.0.113.{attacker}"), None).await;
        }
    }
    let with_old_mark = sign_in_from(&app, "victim@example.com", "the new one 2026!", "192.0.2.10", Some(&old_mark)).await;
    assert_eq!(with_old_mark.status(), StatusCode::TOO_MANY_REQUESTS, "a mark from before the reset is no mark");

    // A factor proven before the reset does not carry a run past it.
    app.user_with("editor@example.com", FLOW_EDITING).await;
    let editor = app.sign_in("editor@example.com").await;
    build_flow(
        &app,
        &editor,
        "slow",
        &[("identification", json!({})), ("password", json!({})), ("user_login", json!({"remember_me_offset": "days=1"}))],
    )
    .await;
    let mut browser = Browser::new(&app);
    identify(&mut browser, "slow", "admin@example.com").await;
    let (_, question) = browser.post("/api/v3/flows/executor/slow/", json!({"component": "ak-stage-password", "password": PASSWORD})).await;
    assert_eq!(question["component"], "ak-stage-user-login", "{question}");
    let admin_user = app.state.db.clone();
    let admin_id =
        gatehouse::accounts::users::find_user_by_identifier(&admin_user, app.state.tenant, "admin@example.com", true, false, false)
            .await
            .unwrap()
            .unwrap()
            .id;
    let root = app.sign_in("admin@example.com").await;
    let reset = app.post(&root, &format!("/api/v3/core/users/{admin_id}/set_password/"), json!({"password": "the new one 2026!"})).await;
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    let (_, answer) = browser.post("/api/v3/flows/executor/slow/", json!({"component": "ak-stage-user-login", "remember_me": true})).await;
    assert_eq!(answer["component"], "ak-stage-access-denied", "{answer}");
    assert_eq!(browser.me().await, StatusCode::UNAUTHORIZED);
}
