//! The flow executor through `/api/v3/flows/executor/{slug}/`, and the flow pages: every stage,
//! every error path.

use std::collections::BTreeMap;

use gatehouse::flows::entities::{binding, flow, stage};
use reqwest::StatusCode;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, Set};
use serde_json::{Value, json};

use crate::support::{FLOW_COOKIE, PASSWORD, SESSION_COOKIE, TestApp, json};

pub(crate) const SIGN_IN: &str = "/api/v3/flows/executor/default-authentication-flow/";

/// A client that keeps cookies the way a browser does (by name, removed at `Max-Age=0`).
pub(crate) struct Browser<'a> {
    app: &'a TestApp,
    pub(crate) cookies: BTreeMap<String, String>,
    user_agent: &'static str,
}

impl<'a> Browser<'a> {
    pub(crate) fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            cookies: BTreeMap::new(),
            user_agent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn keep(&mut self, response: &reqwest::Response) {
        crate::support::remember_cookies(response);
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    pub(crate) async fn send(&mut self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let response = request.header("cookie", self.cookie_header()).header("user-agent", self.user_agent).send().await.unwrap();
        self.keep(&response);
        response
    }

    pub(crate) async fn get(&mut self, path: &str) -> (StatusCode, Value) {
        let request = self.app.client.get(self.app.url(path));
        json(self.send(request).await).await
    }

    pub(crate) async fn post(&mut self, path: &str, body: Value) -> (StatusCode, Value) {
        crate::support::remember_secrets_in(&body);
        let request = self.app.client.post(self.app.url(path)).json(&body);
        json(self.send(request).await).await
    }

    pub(crate) async fn post_raw(&mut self, path: &str, content_type: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
        let request = self.app.client.post(self.app.url(path)).header("content-type", content_type).body(body);
        json(self.send(request).await).await
    }

    /// Identification then password through the default flow; returns the last challenge.
    pub(crate) async fn sign_in(&mut self, identifier: &str, password: &str) -> Value {
        let (status, first) = self.get(SIGN_IN).await;
        assert_eq!(status, StatusCode::OK, "{first}");
        assert_eq!(first["component"], "ak-stage-identification");
        let (_, second) = self.post(SIGN_IN, json!({"component": "ak-stage-identification", "uid_field": identifier})).await;
        assert_eq!(second["component"], "ak-stage-password", "{second}");
        let (status, last) = self.post(SIGN_IN, json!({"component": "ak-stage-password", "password": password})).await;
        assert_eq!(status, StatusCode::OK, "{last}");
        last
    }

    pub(crate) async fn me(&mut self) -> StatusCode {
        let request = self.app.client.get(self.app.url("/api/v3/core/users/me/"));
        self.send(request).await.status()
    }
}

/// The `Set-Cookie` header that carries the session cookie.
fn session_set_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with(&format!("{SESSION_COOKIE}=")))
        .expect("a session cookie is set")
}

fn errors_of(challenge: &Value, field: &str) -> Vec<String> {
    challenge["response_errors"][field]
        .as_array()
        .unwrap_or_else(|| panic!("no response_errors for {field} in {challenge}"))
        .iter()
        .map(|e| e["string"].as_str().unwrap().to_owned())
        .collect()
}

async fn default_stage(app: &TestApp, name: &str) -> stage::Model {
    stage::Entity::find().filter(stage::Column::Name.eq(name)).one(&app.state.db).await.unwrap().expect("default stage")
}

pub(crate) async fn set_settings(app: &TestApp, name: &str, changes: Value) {
    let stage = default_stage(app, name).await;
    let mut settings = stage.settings.clone();
    for (key, value) in changes.as_object().unwrap() {
        settings[key] = value.clone();
    }
    let mut model = stage.into_active_model();
    model.settings = Set(settings);
    model.update(&app.state.db).await.unwrap();
    // Written behind the server's back: tell it, as its own stage changes do.
    app.state.flow_plans.invalidate();
}

pub(crate) async fn events(app: &TestApp, action: &str) -> Vec<Value> {
    let admin = app.superuser(&format!("auditor-{}@example.com", uuid::Uuid::new_v4().simple())).await;
    let session = app.sign_in(&admin.email).await;
    let (_, page) = json(app.get(&session, &format!("/api/v3/events/events/?action={action}")).await).await;
    page["results"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_json_client_signs_in_through_identification_password_and_login() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |u| u.username = Some("ada".into())).await;
    let mut browser = Browser::new(&app);
    assert_eq!(browser.me().await, StatusCode::UNAUTHORIZED);
    let (status, first) = browser.get(&format!("{SIGN_IN}?query=next%3D%252Fif%252Fuser%252F")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["component"], "ak-stage-identification");
    assert_eq!(first["user_fields"], json!(["email", "username"]));
    assert_eq!(first["flow_info"]["title"], "Welcome to Gatehouse!");
    assert_eq!(first["flow_designation"], "authentication");
    assert!(browser.cookies.contains_key(FLOW_COOKIE), "the run is found by its cookie");

    // The username works as well as the e-mail address, in any case.
    let (_, password) = browser.post(SIGN_IN, json!({"component": "ak-stage-identification", "uid_field": "ADA"})).await;
    assert_eq!(password["component"], "ak-stage-password");
    assert_eq!(password["pending_user"], "ADA");
    let (_, done) = browser.post(SIGN_IN, json!({"component": "ak-stage-password", "password": PASSWORD})).await;
    assert_eq!(done["component"], "xak-flow-redirect");
    assert_eq!(done["to"], "/if/user/");
    assert!(!browser.cookies.contains_key(FLOW_COOKIE), "a finished run's cookie is removed");
    assert!(browser.cookies.contains_key(SESSION_COOKIE));
    assert_eq!(browser.me().await, StatusCode::OK);

    let logins = events(&app, "login").await;
    let login = logins.iter().find(|e| e["user"]["email"] == "ada@example.com").expect("login event");
    assert_eq!(login["context"]["client"]["browser"]["family"], "Chrome");
}

#[tokio::test]
async fn a_wrong_password_is_answered_with_the_same_challenge_and_logged() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |_| {}).await;
    let mut browser = Browser::new(&app);
    let challenge = browser.sign_in("ada@example.com", "not the password").await;
    assert_eq!(challenge["component"], "ak-stage-password");
    assert_eq!(errors_of(&challenge, "password"), ["Invalid password."]);
    assert_eq!(browser.me().await, StatusCode::UNAUTHORIZED);
    // The right password still works in the same run.
    let (_, done) = browser.post(SIGN_IN, json!({"password": PASSWORD})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");

    let failed = events(&app, "login_failed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["context"]["username"], "ada@example.com");
    assert!(failed[0]["context"]["client"]["browser"].is_object(), "{}", failed[0]);
    assert!(!failed[0].to_string().contains("not the password"), "the password never reaches the audit trail");
}

#[tokio::test]
async fn unknown_accounts_walk_the_same_stages_and_fail_the_same_way() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |_| {}).await;
    let mut known = Browser::new(&app);
    let mut unknown = Browser::new(&app);
    let known_failure = known.sign_in("ada@example.com", "wrong password").await;
    let unknown_failure = unknown.sign_in("nobody@example.com", "wrong password").await;
    let strip = |mut challenge: Value| {
        challenge.as_object_mut().unwrap().remove("pending_user");
        challenge
    };
    assert_eq!(strip(known_failure), strip(unknown_failure));
    let failed = events(&app, "login_failed").await;
    assert!(failed.iter().any(|e| e["context"]["username"] == "nobody@example.com"));
}

#[tokio::test]
async fn empty_and_malformed_responses_never_advance() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |_| {}).await;
    let mut browser = Browser::new(&app);
    browser.get(SIGN_IN).await;

    let (status, body) = browser.post_raw(SIGN_IN, "application/json", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["non_field_errors"][0].as_str().unwrap().contains("empty"), "{body}");
    let (status, body) = browser.post_raw(SIGN_IN, "application/json", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["non_field_errors"][0].as_str().unwrap().contains("JSON"), "{body}");
    let (status, body) = browser.post_raw(SIGN_IN, "application/json", "[1, 2]").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = browser.post(SIGN_IN, json!({"uid_field": ["ada@example.com"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["uid_field"].is_array(), "the field is named: {body}");
    let (status, body) = browser.post_raw(SIGN_IN, "application/x-www-form-urlencoded", "uid_field=ada%40example.com").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = browser.post(SIGN_IN, json!({"uid_field": "x".repeat(20_000)})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // An empty object is an answer, but not a good one.
    let (status, challenge) = browser.post(SIGN_IN, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(challenge["component"], "ak-stage-identification");
    assert_eq!(errors_of(&challenge, "uid_field"), ["This field is required."]);
    let (_, challenge) = browser.post(SIGN_IN, json!({"uid_field": "   "})).await;
    assert_eq!(challenge["component"], "ak-stage-identification");

    // An empty password never passes, not even for an account without one.
    app.user("nopass@example.com", |u| u.password = None).await;
    let mut other = Browser::new(&app);
    let challenge = other.sign_in("nopass@example.com", "").await;
    assert_eq!(errors_of(&challenge, "password"), ["This field is required."]);
    let (_, challenge) = other.post(SIGN_IN, json!({"component": "ak-stage-password"})).await;
    assert_eq!(challenge["component"], "ak-stage-password");
    assert_eq!(other.me().await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_later_stage_cannot_be_answered_first_and_answers_cannot_be_replayed() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |_| {}).await;
    let mut browser = Browser::new(&app);
    browser.get(SIGN_IN).await;
    // A password answer while identification is current is refused without advancing.
    let (_, challenge) = browser.post(SIGN_IN, json!({"component": "ak-stage-password", "password": PASSWORD})).await;
    assert_eq!(challenge["component"], "ak-stage-identification");
    assert!(errors_of(&challenge, "component")[0].contains("ak-stage-identification"));
    // Answering without ever starting the flow starts it and applies nothing.
    let mut stranger = Browser::new(&app);
    let (_, challenge) = stranger.post(SIGN_IN, json!({"component": "ak-stage-password", "password": PASSWORD})).await;
    assert_eq!(challenge["component"], "ak-stage-identification");
    // With secure cookies on, an answer that came without any cookie says why the sign-in
    // starts again (over plain HTTP the browser drops the cookie), rather than going in circles.
    assert!(errors_of(&challenge, "non_field_errors")[0].contains("did not send back this sign-in's cookie"), "{challenge}");
    assert!(errors_of(&challenge, "non_field_errors")[0].contains("server.secure_cookies"), "{challenge}");
    // A cookie naming a run that is gone gets the plain message.
    let mut late = Browser::new(&app);
    late.cookies.insert(FLOW_COOKIE.to_owned(), "a-run-that-ended-long-ago".into());
    let (_, challenge) = late.post(SIGN_IN, json!({"component": "ak-stage-password", "password": PASSWORD})).await;
    assert_eq!(challenge["component"], "ak-stage-identification");
    assert!(errors_of(&challenge, "non_field_errors")[0].contains("expired or was already used"), "{challenge}");

    // Replaying the password answer with the finished run's cookie does not sign in again.
    browser.post(SIGN_IN, json!({"uid_field": "ada@example.com"})).await;
    let old_flow_cookie = browser.cookies[FLOW_COOKIE].clone();
    let (_, done) = browser.post(SIGN_IN, json!({"password": PASSWORD})).await;
    assert_eq!(done["component"], "xak-flow-redirect");
    let mut replayer = Browser::new(&app);
    replayer.cookies.insert(FLOW_COOKIE.to_owned(), old_flow_cookie);
    let (_, challenge) = replayer.post(SIGN_IN, json!({"component": "ak-stage-password", "password": PASSWORD})).await;
    assert_eq!(challenge["component"], "ak-stage-identification");
    assert!(!replayer.cookies.contains_key(SESSION_COOKIE));
    assert_eq!(replayer.me().await, StatusCode::UNAUTHORIZED);
}

async fn stored_runs(app: &TestApp) -> u64 {
    use sea_orm::PaginatorTrait;
    gatehouse::flows::entities::run::Entity::find().count(&app.state.db).await.unwrap()
}

#[tokio::test]
async fn opening_a_flow_stores_nothing_until_the_first_answer() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |_| {}).await;
    for _ in 0..20 {
        let (status, challenge) = Browser::new(&app).get(SIGN_IN).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(challenge["component"], "ak-stage-identification");
    }
    let mut browser = Browser::new(&app);
    browser.get(SIGN_IN).await;
    let ticket = browser.cookies[FLOW_COOKIE].clone();
    for _ in 0..5 {
        let (_, challenge) = browser.get(SIGN_IN).await;
        assert_eq!(challenge["component"], "ak-stage-identification");
        assert_eq!(browser.cookies[FLOW_COOKIE], ticket, "a reload continues the same run");
    }
    assert_eq!(stored_runs(&app).await, 0, "a flood of page loads writes no run");

    let (_, challenge) = browser.post(SIGN_IN, json!({"component": "ak-stage-identification", "uid_field": "ada@example.com"})).await;
    assert_eq!(challenge["component"], "ak-stage-password", "{challenge}");
    assert_eq!(stored_runs(&app).await, 1, "the first answer stores the run");
    assert_ne!(browser.cookies[FLOW_COOKIE], ticket, "the stored run is found by a new key");
    let (_, done) = browser.post(SIGN_IN, json!({"component": "ak-stage-password", "password": PASSWORD})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
    assert_eq!(browser.me().await, StatusCode::OK);
    let kept = gatehouse::flows::entities::run::Entity::find().all(&app.state.db).await.unwrap();
    assert_eq!(kept.len(), 1, "a finished run keeps its identity until it would have expired");
    assert_eq!((kept[0].plan.clone(), kept[0].context.clone()), (json!({}), json!({})), "and nothing else");

    // Replaying the first answer with the run's ticket applies nothing: the flow starts again.
    let mut replayer = Browser::new(&app);
    replayer.cookies.insert(FLOW_COOKIE.to_owned(), ticket.clone());
    let (_, again) = replayer.post(SIGN_IN, json!({"component": "ak-stage-identification", "uid_field": "ada@example.com"})).await;
    assert_eq!(again["component"], "ak-stage-identification", "{again}");
    assert!(errors_of(&again, "non_field_errors")[0].contains("already submitted"), "{again}");
    assert_ne!(replayer.cookies[FLOW_COOKIE], ticket);
    assert_eq!(stored_runs(&app).await, 1);
}

async fn user_fields_asked(app: &TestApp) -> Value {
    Browser::new(app).get(SIGN_IN).await.1["user_fields"].clone()
}

/// Two server processes on one database: a stage changed through one is asked by the other,
/// although both keep plans in memory. On SQLite, which one process serves, a second process
/// must run with the plan cache off.
#[tokio::test]
async fn a_stage_changed_through_one_server_is_asked_by_the_other() {
    let postgres = std::env::var("GATEHOUSE_TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty());
    // On PostgreSQL plans are kept for an hour, so only the change message can refresh them.
    let caches = |c: &mut gatehouse::config::Config| {
        c.flows.plan_cache_ttl = if postgres { "hours=1" } else { "seconds=0" }.parse().unwrap();
    };
    let first = TestApp::spawn_with(caches).await;
    let second = TestApp::spawn_sharing(&first, caches).await;
    first.superuser("admin@example.com").await;
    let admin = second.sign_in("admin@example.com").await;
    for app in [&first, &second] {
        assert_eq!(user_fields_asked(app).await, json!(["email", "username"]), "both servers have the plan");
    }
    let stage = default_stage(&first, "default-authentication-identification").await;
    let path = format!("/api/v3/stages/identification/{}/", stage.id);
    let (status, changed) = json(second.patch(&admin, &path, json!({"user_fields": ["email"]})).await).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(user_fields_asked(&second).await, json!(["email"]), "the server that made the change asks the new question at once");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while user_fields_asked(&first).await != json!(["email"]) {
        assert!(std::time::Instant::now() < deadline, "the other server kept the old plan");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_flow_opened_with_a_next_too_long_for_a_ticket_is_stored_at_once_and_still_goes_there() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |_| {}).await;
    // Quotes double in the ticket's JSON: 2,000 of them cannot travel in a cookie.
    let next = format!("/{}", "\"".repeat(2000));
    let mut browser = Browser::new(&app);
    let (status, first) = browser.get(&format!("{SIGN_IN}?query=next%3D%252F{}", "%2522".repeat(2000))).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(!browser.cookies[FLOW_COOKIE].contains('.'), "the run is found by a key, not a ticket");
    assert_eq!(stored_runs(&app).await, 1);
    browser.post(SIGN_IN, json!({"component": "ak-stage-identification", "uid_field": "ada@example.com"})).await;
    let (_, done) = browser.post(SIGN_IN, json!({"component": "ak-stage-password", "password": PASSWORD})).await;
    assert_eq!(done["to"], next, "{done}");
}

#[tokio::test]
async fn a_flow_ticket_answered_twice_stores_one_run_and_the_second_answer_starts_over() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |_| {}).await;
    app.user("eve@example.com", |_| {}).await;
    let mut first = Browser::new(&app);
    first.get(SIGN_IN).await;
    let mut second = Browser::new(&app);
    second.cookies.insert(FLOW_COOKIE.to_owned(), first.cookies[FLOW_COOKIE].clone());
    let (_, challenge) = first.post(SIGN_IN, json!({"component": "ak-stage-identification", "uid_field": "ada@example.com"})).await;
    assert_eq!(challenge["component"], "ak-stage-password", "{challenge}");
    let ticket = second.cookies[FLOW_COOKIE].clone();
    let (status, lost) = second.post(SIGN_IN, json!({"component": "ak-stage-identification", "uid_field": "eve@example.com"})).await;
    assert_eq!(status, StatusCode::OK, "{lost}");
    assert_eq!(lost["component"], "ak-stage-identification", "the second answer is not applied: {lost}");
    assert!(errors_of(&lost, "non_field_errors")[0].contains("already submitted"), "{lost}");
    assert_eq!(stored_runs(&app).await, 1);
    // The spent ticket is replaced, so a browser that missed the first reply is not stuck.
    assert_ne!(second.cookies[FLOW_COOKIE], ticket);
    let (_, asked) = second.post(SIGN_IN, json!({"component": "ak-stage-identification", "uid_field": "eve@example.com"})).await;
    assert_eq!(asked["component"], "ak-stage-password", "{asked}");
    assert_eq!(stored_runs(&app).await, 2);
    // The run that was stored is the first answer's: ada's password signs in.
    let (_, done) = first.post(SIGN_IN, json!({"component": "ak-stage-password", "password": PASSWORD})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
}

#[tokio::test]
async fn a_forged_flow_ticket_or_one_for_a_flow_that_changed_starts_over() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |_| {}).await;
    let answer = json!({"component": "ak-stage-identification", "uid_field": "ada@example.com"});

    let mut forger = Browser::new(&app);
    forger.get(SIGN_IN).await;
    let ticket = forger.cookies[FLOW_COOKIE].clone();
    let (payload, mac) = ticket.split_once('.').expect("an unstored run's cookie is a signed ticket");
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&engine.decode(payload).unwrap()).unwrap();
    claims["n"] = json!("/elsewhere/");
    let forged = format!("{}.{mac}", engine.encode(serde_json::to_vec(&claims).unwrap()));
    forger.cookies.insert(FLOW_COOKIE.to_owned(), forged.clone());
    let (_, challenge) = forger.post(SIGN_IN, answer.clone()).await;
    assert_eq!(challenge["component"], "ak-stage-identification", "a forged ticket applies nothing: {challenge}");
    assert!(errors_of(&challenge, "non_field_errors")[0].contains("expired or was already used"), "{challenge}");
    assert_ne!(forger.cookies[FLOW_COOKIE], forged, "a new ticket replaces the forged one");

    let mut browser = Browser::new(&app);
    browser.get(SIGN_IN).await;
    set_settings(&app, "default-authentication-identification", json!({"user_fields": ["email"]})).await;
    let (_, challenge) = browser.post(SIGN_IN, answer).await;
    assert_eq!(challenge["component"], "ak-stage-identification", "an answer to the old plan is not applied: {challenge}");
    assert_eq!(challenge["user_fields"], json!(["email"]), "the new plan is asked");
    assert!(errors_of(&challenge, "non_field_errors")[0].contains("expired or was already used"), "{challenge}");
    assert_eq!(stored_runs(&app).await, 0);
}

#[tokio::test]
async fn an_expired_or_tampered_run_restarts_cleanly() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |_| {}).await;
    let mut browser = Browser::new(&app);
    browser.get(SIGN_IN).await;
    browser.post(SIGN_IN, json!({"uid_field": "ada@example.com"})).await;
    // The run's lifetime ends (moved in the database rather than waited for).
    {
        use gatehouse::flows::entities::run;
        use sea_orm::{EntityTrait, sea_query::Expr};
        let ended = run::Entity::update_many()
            .col_expr(run::Column::Expires, Expr::val(chrono::Utc::now() - chrono::TimeDelta::seconds(1)))
            .exec(&app.state.db)
            .await
            .unwrap();
        assert_eq!(ended.rows_affected, 1);
    }
    let (status, challenge) = browser.post(SIGN_IN, json!({"password": PASSWORD})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(challenge["component"], "ak-stage-identification", "{challenge}");
    assert!(errors_of(&challenge, "non_field_errors")[0].contains("expired"));
    assert_eq!(browser.me().await, StatusCode::UNAUTHORIZED);

    let mut tampered = Browser::new(&app);
    tampered.cookies.insert(FLOW_COOKIE.to_owned(), "forged-value".into());
    let (status, challenge) = tampered.get(SIGN_IN).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(challenge["component"], "ak-stage-identification");
    assert_ne!(tampered.cookies[FLOW_COOKIE], "forged-value", "a new run gets a new cookie");
}

#[tokio::test]
async fn next_is_honoured_only_for_same_origin_paths() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |_| {}).await;
    for (next, expected) in [
        ("%2Fapi%2Fv3%2Fcore%2Fusers%2Fme%2F", "/api/v3/core/users/me/"),
        ("https%3A%2F%2Fevil.example%2F", "/"),
        ("%2F%2Fevil.example%2F", "/"),
        ("%2F%5Cevil.example", "/"),
        ("javascript%3Aalert(1)", "/"),
    ] {
        let mut browser = Browser::new(&app);
        let query = form_urlencoded::byte_serialize(format!("next={}", percent_decode(next)).as_bytes()).collect::<String>();
        browser.get(&format!("{SIGN_IN}?query={query}")).await;
        browser.post(SIGN_IN, json!({"uid_field": "ada@example.com"})).await;
        let (_, done) = browser.post(SIGN_IN, json!({"password": PASSWORD})).await;
        assert_eq!(done["to"], expected, "next={next}");
    }
}

fn percent_decode(text: &str) -> String {
    form_urlencoded::parse(format!("x={text}").as_bytes()).next().unwrap().1.into_owned()
}

async fn add_flow(app: &TestApp, slug: &str, authentication: &str, stages: &[&str]) -> flow::Model {
    let now = chrono::Utc::now();
    let flow = flow::ActiveModel {
        id: Set(uuid::Uuid::new_v4()),
        tenant_id: Set(app.state.tenant.0),
        slug: Set(slug.into()),
        name: Set(slug.into()),
        title: Set(format!("Flow {slug}")),
        designation: Set("authentication".into()),
        authentication: Set(authentication.into()),
        denied_action: Set("message".into()),
        layout: Set("stacked".into()),
        policy_engine_mode: Set("any".into()),
        compatibility_mode: Set(false),
        background: Set(String::new()),
        created: Set(now),
        last_updated: Set(now),
    }
    .insert(&app.state.db)
    .await
    .unwrap();
    for (order, name) in stages.iter().enumerate() {
        bind(app, &flow, name, order as i32 * 10, "retry").await;
    }
    flow
}

async fn bind(app: &TestApp, flow: &flow::Model, stage_name: &str, order: i32, action: &str) {
    let stage = default_stage(app, stage_name).await;
    binding::ActiveModel {
        id: Set(uuid::Uuid::new_v4()),
        tenant_id: Set(app.state.tenant.0),
        flow_id: Set(flow.id),
        stage_id: Set(stage.id),
        binding_order: Set(order),
        evaluate_on_plan: Set(false),
        re_evaluate_policies: Set(true),
        policy_engine_mode: Set("any".into()),
        invalid_response_action: Set(action.into()),
    }
    .insert(&app.state.db)
    .await
    .unwrap();
    app.state.flow_plans.invalidate();
}

#[tokio::test]
async fn an_answer_that_ends_a_flow_at_once_cannot_be_replayed_with_its_ticket() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |_| {}).await;
    add_flow(&app, "one-question", "none", &["default-authentication-identification"]).await;
    let path = "/api/v3/flows/executor/one-question/";
    let mut browser = Browser::new(&app);
    browser.get(path).await;
    let ticket = browser.cookies[FLOW_COOKIE].clone();
    let answer = json!({"component": "ak-stage-identification", "uid_field": "ada@example.com"});
    let (_, done) = browser.post(path, answer.clone()).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
    let mut replayer = Browser::new(&app);
    replayer.cookies.insert(FLOW_COOKIE.to_owned(), ticket);
    let (_, again) = replayer.post(path, answer).await;
    assert_eq!(again["component"], "ak-stage-identification", "the answer is applied once: {again}");
    assert!(errors_of(&again, "non_field_errors")[0].contains("already submitted"), "{again}");
}

#[tokio::test]
async fn a_flow_whose_requirement_is_not_met_answers_access_denied_with_the_reason() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |_| {}).await;
    app.superuser("root@example.com").await;
    add_flow(&app, "admins-only", "require_superuser", &["default-invalidation-logout"]).await;
    add_flow(&app, "members-only", "require_authenticated", &["default-invalidation-logout"]).await;
    add_flow(&app, "guests-only", "require_unauthenticated", &["default-authentication-identification"]).await;

    let mut anonymous = Browser::new(&app);
    let (status, denied) = anonymous.get("/api/v3/flows/executor/members-only/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(denied["component"], "ak-stage-access-denied");
    assert!(denied["error_message"].as_str().unwrap().contains("signed in"), "{denied}");
    let (_, challenge) = anonymous.get("/api/v3/flows/executor/guests-only/").await;
    assert_eq!(challenge["component"], "ak-stage-identification");

    let mut ada = Browser::new(&app);
    ada.sign_in("ada@example.com", PASSWORD).await;
    let (_, denied) = ada.get("/api/v3/flows/executor/admins-only/").await;
    assert_eq!(denied["component"], "ak-stage-access-denied");
    assert!(denied["error_message"].as_str().unwrap().contains("superuser"));
    let (_, denied) = ada.get("/api/v3/flows/executor/guests-only/").await;
    assert_eq!(denied["component"], "ak-stage-access-denied");
    assert_eq!(ada.me().await, StatusCode::OK, "a denied flow changes nothing");

    let mut root = Browser::new(&app);
    root.sign_in("root@example.com", PASSWORD).await;
    let (_, admitted) = root.get("/api/v3/flows/executor/admins-only/").await;
    assert_eq!(admitted["component"], "ak-stage-user-logout", "{admitted}");

    let (status, body) = anonymous.get("/api/v3/flows/executor/no-such-flow/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["detail"].is_string());
}

#[tokio::test]
async fn require_superuser_flows_admit_superusers_through_groups() {
    use gatehouse::accounts::access::Actor;
    use gatehouse::accounts::groups::{NewGroup, create_group};
    let app = TestApp::spawn().await;
    let system = Actor::system();
    let admins = NewGroup { name: "Admins".into(), is_superuser: true, attributes: json!({}), ..Default::default() };
    let admins = create_group(&app.state, &system, admins).await.unwrap();
    let team = NewGroup { name: "Team".into(), parents: vec![admins.group_uuid], attributes: json!({}), ..Default::default() };
    let team = create_group(&app.state, &system, team).await.unwrap();
    app.user("grace@example.com", |u| u.groups = vec![team.group_uuid]).await;
    add_flow(&app, "admins-only", "require_superuser", &["default-invalidation-logout"]).await;
    let mut grace = Browser::new(&app);
    grace.sign_in("grace@example.com", PASSWORD).await;
    let (_, admitted) = grace.get("/api/v3/flows/executor/admins-only/").await;
    assert_eq!(admitted["component"], "ak-stage-user-logout", "{admitted}");
}

#[tokio::test]
async fn the_invalidation_flow_signs_out() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |_| {}).await;
    let mut browser = Browser::new(&app);
    browser.sign_in("ada@example.com", PASSWORD).await;
    assert_eq!(browser.me().await, StatusCode::OK);
    let session_cookie = browser.cookies[SESSION_COOKIE].clone();
    // Opening the flow only asks.
    let (_, question) = browser.get("/api/v3/flows/executor/default-invalidation-flow/").await;
    assert_eq!(question["component"], "ak-stage-user-logout", "{question}");
    assert_eq!(question["pending_user"], "ada@example.com");
    assert_eq!(browser.me().await, StatusCode::OK, "still signed in");
    // Answering signs out.
    let (_, done) = browser.post("/api/v3/flows/executor/default-invalidation-flow/", json!({})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
    assert_eq!(done["to"], "/");
    assert!(!browser.cookies.contains_key(SESSION_COOKIE), "the session cookie is removed");
    // The session itself ended, not just the cookie.
    browser.cookies.insert(SESSION_COOKIE.to_owned(), session_cookie);
    assert_eq!(browser.me().await, StatusCode::UNAUTHORIZED);
    assert_eq!(events(&app, "logout").await.len(), 1);
}

/// Any site can make a browser open a link, and same-site-lax cookies go with a top-level GET:
/// opening the sign-out page only shows a form, and only its POST, with the run's form token,
/// signs out.
#[tokio::test]
async fn a_plain_get_of_the_sign_out_page_signed_people_out() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |_| {}).await;
    let mut browser = Browser::new(&app);
    browser.sign_in("ada@example.com", PASSWORD).await;
    let location = "/if/flow/default-invalidation-flow/";
    let page = browser.send(app.client.get(app.url(location))).await;
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(page.contains("Sign out ada@example.com?") && page.contains(r#"method="post""#), "{page}");
    assert_eq!(browser.me().await, StatusCode::OK, "a GET signs nobody out");
    assert!(events(&app, "logout").await.is_empty());

    let csrf = page.split(r#"name="csrf" value=""#).nth(1).unwrap().split('"').next().unwrap().to_owned();
    let step = page.split(r#"name="step" value=""#).nth(1).unwrap().split('"').next().unwrap().to_owned();
    let post = |body: String| app.client.post(app.url(location)).header("content-type", "application/x-www-form-urlencoded").body(body);
    // A form posted from elsewhere has no valid token for this browser's run.
    let forged = browser.send(post(format!("csrf=forged&step={step}"))).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(browser.me().await, StatusCode::OK);
    let confirmed = browser.send(post(format!("csrf={csrf}&step={step}"))).await;
    assert_eq!(confirmed.status(), StatusCode::SEE_OTHER);
    assert_eq!(browser.me().await, StatusCode::UNAUTHORIZED);
    assert_eq!(events(&app, "logout").await.len(), 1);
}

#[tokio::test]
async fn too_many_wrong_passwords_end_the_run_and_the_rate_limit_holds() {
    let app = TestApp::spawn_with(|c| {
        c.sign_in.free_failures_per_account_address = 3;
    })
    .await;
    app.user("ada@example.com", |u| u.username = Some("ada".into())).await;
    set_settings(&app, "default-authentication-password", json!({"failed_attempts_before_cancel": 3})).await;
    let mut browser = Browser::new(&app);
    let first = browser.sign_in("ada@example.com", "wrong 1").await;
    assert_eq!(errors_of(&first, "password"), ["Invalid password."]);
    let (_, second) = browser.post(SIGN_IN, json!({"password": "wrong 2"})).await;
    assert_eq!(errors_of(&second, "password"), ["Invalid password."]);
    let (_, third) = browser.post(SIGN_IN, json!({"password": "wrong 3"})).await;
    assert_eq!(third["component"], "ak-stage-access-denied", "{third}");
    assert!(!browser.cookies.contains_key(FLOW_COOKIE));

    // The account is now throttled, whatever name it is typed as: even the right password is
    // refused for a while, with a reason.
    let mut again = Browser::new(&app);
    let throttled = again.sign_in("ADA", PASSWORD).await;
    assert_eq!(throttled["component"], "ak-stage-password");
    assert!(errors_of(&throttled, "password")[0].starts_with("Too many failed attempts"), "{throttled}");
    assert_eq!(again.me().await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_restart_action_sends_an_invalid_answer_back_to_the_first_stage() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |_| {}).await;
    let flow = add_flow(&app, "strict", "none", &["default-authentication-identification"]).await;
    bind(&app, &flow, "default-authentication-password", 20, "restart").await;
    bind(&app, &flow, "default-authentication-login", 30, "retry").await;
    let path = "/api/v3/flows/executor/strict/";
    let mut browser = Browser::new(&app);
    browser.get(path).await;
    browser.post(path, json!({"uid_field": "ada@example.com"})).await;
    let (_, challenge) = browser.post(path, json!({"password": "wrong"})).await;
    assert_eq!(challenge["component"], "ak-stage-identification", "{challenge}");
    assert_eq!(challenge["pending_user_identifier"], Value::Null, "a restart forgets the context");
    browser.post(path, json!({"uid_field": "ada@example.com"})).await;
    let (_, done) = browser.post(path, json!({"password": PASSWORD})).await;
    assert_eq!(done["component"], "xak-flow-redirect");
}

#[tokio::test]
async fn identification_can_check_the_password_on_the_same_form() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |_| {}).await;
    let password_stage = default_stage(&app, "default-authentication-password").await;
    set_settings(&app, "default-authentication-identification", json!({"password_stage": password_stage.id})).await;
    let flow = add_flow(&app, "one-step", "none", &["default-authentication-identification"]).await;
    bind(&app, &flow, "default-authentication-login", 100, "retry").await;
    let path = "/api/v3/flows/executor/one-step/";
    let mut browser = Browser::new(&app);
    let (_, challenge) = browser.get(path).await;
    assert_eq!(challenge["password_fields"], true);
    let (_, challenge) = browser.post(path, json!({"uid_field": "ada@example.com", "password": "wrong"})).await;
    assert_eq!(challenge["component"], "ak-stage-identification");
    assert_eq!(errors_of(&challenge, "non_field_errors"), ["Invalid password."]);
    let (_, challenge) = browser.post(path, json!({"uid_field": "ada@example.com"})).await;
    assert_eq!(errors_of(&challenge, "password"), ["This field is required."]);
    let (_, done) = browser.post(path, json!({"uid_field": "ada@example.com", "password": PASSWORD})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
    assert_eq!(browser.me().await, StatusCode::OK);
}

#[tokio::test]
async fn user_login_settings_shape_the_session() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |_| {}).await;
    set_settings(
        &app,
        "default-authentication-login",
        json!({"session_duration": "hours=2", "terminate_other_sessions": true, "remember_me_offset": "days=30"}),
    )
    .await;
    let mut first = Browser::new(&app);
    let challenge = first.sign_in("ada@example.com", PASSWORD).await;
    assert_eq!(challenge["component"], "ak-stage-user-login", "a remember-me offset asks first");
    let request = app.client.post(app.url(SIGN_IN)).json(&json!({"component": "ak-stage-user-login", "remember_me": true}));
    let response = first.send(request).await;
    let session_cookie = session_set_cookie(&response);
    let max_age: i64 = session_cookie.split("Max-Age=").nth(1).unwrap().split(';').next().unwrap().parse().unwrap();
    let expected = 2 * 3600 + 30 * 86_400;
    assert!((expected - 5..=expected).contains(&max_age), "{session_cookie}");
    assert_eq!(first.me().await, StatusCode::OK);

    // Signing in elsewhere ends the other sessions.
    let mut second = Browser::new(&app);
    second.sign_in("ada@example.com", PASSWORD).await;
    let (_, done) = second.post(SIGN_IN, json!({"remember_me": false})).await;
    assert_eq!(done["component"], "xak-flow-redirect");
    assert_eq!(second.me().await, StatusCode::OK);
    assert_eq!(first.me().await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_browser_session_cookie_has_no_max_age_by_default() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |_| {}).await;
    let mut browser = Browser::new(&app);
    browser.get(SIGN_IN).await;
    browser.post(SIGN_IN, json!({"uid_field": "ada@example.com"})).await;
    let request = app.client.post(app.url(SIGN_IN)).json(&json!({"password": PASSWORD}));
    let response = browser.send(request).await;
    let cookie = session_set_cookie(&response);
    assert!(!cookie.contains("Max-Age"), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
}

#[tokio::test]
async fn app_passwords_work_in_the_password_stage_only_where_the_token_backend_is_on() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |_| {}).await;
    let session = app.sign_in("ada@example.com").await;
    let (_, key) = app.create_key(&session, json!({"identifier": "laptop-mail", "intent": "app_password"})).await;
    let mut browser = Browser::new(&app);
    let refused = browser.sign_in("ada@example.com", &key).await;
    assert_eq!(errors_of(&refused, "password"), ["Invalid password."], "the default stage checks the password only");

    let both = json!({"backends": ["authentik.core.auth.InbuiltBackend", "authentik.core.auth.TokenBackend"]});
    set_settings(&app, "default-authentication-password", both).await;
    let mut other = Browser::new(&app);
    let done = other.sign_in("ada@example.com", &key).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
}

#[tokio::test]
async fn a_deny_stage_ends_the_flow_with_its_message() {
    let app = TestApp::spawn().await;
    let now = chrono::Utc::now();
    stage::ActiveModel {
        id: Set(uuid::Uuid::new_v4()),
        tenant_id: Set(app.state.tenant.0),
        name: Set("closed".into()),
        kind: Set("deny".into()),
        settings: Set(json!({"deny_message": "Sign-ups are closed."})),
        created: Set(now),
        last_updated: Set(now),
    }
    .insert(&app.state.db)
    .await
    .unwrap();
    add_flow(&app, "closed-door", "none", &["closed"]).await;
    let mut browser = Browser::new(&app);
    let (_, denied) = browser.get("/api/v3/flows/executor/closed-door/").await;
    assert_eq!(denied["component"], "ak-stage-access-denied");
    assert_eq!(denied["error_message"], "Sign-ups are closed.");
}

#[tokio::test]
async fn pages_render_the_flow_with_a_form_and_refuse_forged_posts() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |_| {}).await;
    let mut browser = Browser::new(&app);
    let response = browser.send(app.client.get(app.url("/"))).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, "/if/flow/default-authentication-flow/?next=%2Fif%2Fuser%2F");

    let response = browser.send(app.client.get(app.url(&location))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let csp = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'none'") && csp.contains("style-src 'self'") && !csp.contains("unsafe"), "{csp}");
    assert_eq!(response.headers()["x-frame-options"], "DENY");
    assert!(response.headers().get("strict-transport-security").is_none(), "no HSTS over plain HTTP");
    let page = response.text().await.unwrap();
    assert!(page.contains(r#"<label for="uid_field">E-mail or username</label>"#), "{page}");
    assert!(page.contains(r#"autocomplete="username""#));
    assert!(!page.contains("<script"));
    let csrf = page.split(r#"name="csrf" value=""#).nth(1).unwrap().split('"').next().unwrap().to_owned();
    let step = page.split(r#"name="step" value=""#).nth(1).unwrap().split('"').next().unwrap().to_owned();

    let post = |body: String| app.client.post(app.url(&location)).header("content-type", "application/x-www-form-urlencoded").body(body);
    let forged = browser.send(post(format!("csrf=forged&step={step}&uid_field=ada%40example.com"))).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let stale = browser.send(post(format!("csrf={csrf}&step=999&uid_field=ada%40example.com"))).await;
    assert_eq!(stale.status(), StatusCode::OK);
    assert!(stale.text().await.unwrap().contains("already submitted"), "a stale form is not applied");
    let answered = browser.send(post(format!("csrf={csrf}&step={step}&uid_field=ada%40example.com"))).await;
    assert_eq!(answered.status(), StatusCode::SEE_OTHER, "a good answer is followed by a redirect");
    let password_page = browser.send(app.client.get(app.url(&location))).await.text().await.unwrap();
    assert!(password_page.contains(r#"autocomplete="current-password""#), "{password_page}");

    let missing = browser.send(app.client.get(app.url("/if/flow/no-such-flow/"))).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(missing.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let user_page = browser.send(app.client.get(app.url("/if/user/"))).await;
    assert_eq!(user_page.status(), StatusCode::SEE_OTHER, "the user page sends strangers to sign in");
}

#[tokio::test]
async fn hsts_is_sent_when_a_trusted_proxy_says_https() {
    let app = TestApp::spawn_with(|c| c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let response =
        app.client.get(app.url("/if/flow/default-authentication-flow/")).header("x-forwarded-proto", "https").send().await.unwrap();
    assert!(response.headers()["strict-transport-security"].to_str().unwrap().starts_with("max-age="));
    let plain = app.client.get(app.url("/if/flow/default-authentication-flow/")).send().await.unwrap();
    assert!(plain.headers().get("strict-transport-security").is_none());
}

#[tokio::test]
async fn what_people_type_is_escaped_on_the_pages() {
    let app = TestApp::spawn().await;
    let mut browser = Browser::new(&app);
    let location = "/if/flow/default-authentication-flow/";
    let page = browser.send(app.client.get(app.url(location))).await.text().await.unwrap();
    let csrf = page.split(r#"name="csrf" value=""#).nth(1).unwrap().split('"').next().unwrap().to_owned();
    let step = page.split(r#"name="step" value=""#).nth(1).unwrap().split('"').next().unwrap().to_owned();
    let hostile = r#""><script>alert(1)</script>"#;
    let body = format!("csrf={csrf}&step={step}&uid_field={}", form_urlencoded::byte_serialize(hostile.as_bytes()).collect::<String>());
    let answered =
        browser.send(app.client.post(app.url(location)).header("content-type", "application/x-www-form-urlencoded").body(body)).await;
    assert_eq!(answered.status(), StatusCode::SEE_OTHER);
    let password_page = browser.send(app.client.get(app.url(location))).await.text().await.unwrap();
    assert!(password_page.contains("Signing in as &#34;&#62;&#60;script&#62;alert(1)&#60;/script&#62;"), "{password_page}");
    assert!(!password_page.contains("<script>"));
}

#[tokio::test]
async fn cancel_ends_the_run_and_its_answers_are_not_applied() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |_| {}).await;
    let mut browser = Browser::new(&app);
    browser.get(SIGN_IN).await;
    browser.post(SIGN_IN, json!({"uid_field": "ada@example.com"})).await;
    let old_flow_cookie = browser.cookies[FLOW_COOKIE].clone();
    let response = browser.send(app.client.get(app.url("/flows/-/cancel/"))).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/");
    assert!(!browser.cookies.contains_key(FLOW_COOKIE), "the flow cookie is removed");
    browser.cookies.insert(FLOW_COOKIE.to_owned(), old_flow_cookie);
    let (_, challenge) = browser.post(SIGN_IN, json!({"password": PASSWORD})).await;
    assert_eq!(challenge["component"], "ak-stage-identification", "the cancelled run is gone: {challenge}");
    assert_eq!(browser.me().await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn user_page_forms_need_the_session_token() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |_| {}).await;
    let mut browser = Browser::new(&app);
    browser.sign_in("ada@example.com", PASSWORD).await;
    let form = |path: &str, body: &str| {
        app.client.post(app.url(path)).header("content-type", "application/x-www-form-urlencoded").body(body.to_owned())
    };
    let forged = browser.send(form("/if/user/sessions/end-others/", "csrf=forged")).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let page = browser.send(app.client.get(app.url("/if/user/"))).await.text().await.unwrap();
    let csrf = page.split(r#"name="csrf" value=""#).nth(1).unwrap().split('"').next().unwrap().to_owned();
    let unknown = browser.send(form(&format!("/if/user/sessions/{}/end/", uuid::Uuid::new_v4()), &format!("csrf={csrf}"))).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(browser.me().await, StatusCode::OK, "refused forms end nothing");

    let mut stranger = Browser::new(&app);
    let response = stranger.send(form("/if/user/sessions/end-others/", &format!("csrf={csrf}"))).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "strangers are sent to sign in");
    assert!(response.headers()["location"].to_str().unwrap().starts_with("/if/flow/default-authentication-flow/"));
}

/// What a sign-in through the default flow costs the database, request by request, once the
/// flow's plan is in memory: a change that adds a statement to every sign-in shows here.
/// Opening the flow reads nothing (the run lives in its ticket); identifying reads the account
/// and stores the run; the password answer reads the run with its account, reserves and settles
/// a guess, asks in one statement which kinds of device the account has for the validation stage
/// (the login stage takes its answer), and writes the last login, the session, its event and the
/// run's end. The JSON sign-in costs the same but for the run and the validation stage.
#[tokio::test]
async fn a_sign_in_through_the_default_flow_takes_a_known_number_of_statements() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |_| {}).await;
    let statements = || app.state.statements.run();
    let signed_in = Browser::new(&app).sign_in("ada@example.com", PASSWORD).await;
    assert_eq!(signed_in["component"], "xak-flow-redirect", "the first sign-in reads the plan into memory: {signed_in}");

    let mut browser = Browser::new(&app);
    let before = statements();
    let (_, first) = browser.get(SIGN_IN).await;
    assert_eq!(first["component"], "ak-stage-identification");
    let opened = statements() - before;
    let before = statements();
    let (_, second) = browser.post(SIGN_IN, json!({"component": "ak-stage-identification", "uid_field": "ada@example.com"})).await;
    assert_eq!(second["component"], "ak-stage-password");
    let identified = statements() - before;
    let before = statements();
    let (_, done) = browser.post(SIGN_IN, json!({"component": "ak-stage-password", "password": PASSWORD})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
    let answered = statements() - before;
    assert_eq!((opened, identified, answered), (0, 2, 8));
    assert_eq!(browser.me().await, StatusCode::OK);

    // The JSON sign-in follows the sign-in flow's rule on second factors, read from the plan in
    // memory: reading the account, the guess, the device question and the three writes.
    let before = statements();
    let response = app
        .client
        .post(app.url("/api/v3/auth/sign_in/"))
        .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(statements() - before, 7);
}
