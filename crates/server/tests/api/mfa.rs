//! Multi-factor devices: enrolling a phone through an SMS authenticator stage, with a local HTTP
//! server playing Twilio and a generic webhook, and the device APIs with their access rules.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus, Uri};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::flows::{Browser, SIGN_IN, events};
use crate::support::*;

/// One request the provider received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    authorization: String,
    content_type: String,
    body: String,
}

/// A local HTTP server playing an SMS provider: it records every request as it arrives, waits
/// `delay` if one is set, and answers with the next status in `answers`, or once they are used
/// up, the status set in `status` (201 by default).
struct FakeProvider {
    base: String,
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<Mutex<u16>>,
    answers: Arc<Mutex<std::collections::VecDeque<u16>>>,
    delay: Arc<Mutex<std::time::Duration>>,
}

/// What the fake provider shares with its handler.
#[derive(Clone)]
struct Recorder {
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<Mutex<u16>>,
    answers: Arc<Mutex<std::collections::VecDeque<u16>>>,
    delay: Arc<Mutex<std::time::Duration>>,
}

async fn record(State(recorder): State<Recorder>, uri: Uri, headers: HeaderMap, body: String) -> (AxumStatus, String) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    recorder.received.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body,
    });
    let delay = *recorder.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let next = recorder.answers.lock().unwrap().pop_front();
    let status = next.unwrap_or_else(|| *recorder.status.lock().unwrap());
    (AxumStatus::from_u16(status).unwrap(), r#"{"sid": "SM0123", "message": "provider says: account suspended"}"#.to_owned())
}

impl FakeProvider {
    async fn start() -> Self {
        let recorder = Recorder {
            received: Arc::new(Mutex::new(Vec::new())),
            status: Arc::new(Mutex::new(201)),
            answers: Arc::default(),
            delay: Arc::new(Mutex::new(std::time::Duration::ZERO)),
        };
        let router = axum::Router::new().fallback(record).with_state(recorder.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self { base, received: recorder.received, status: recorder.status, answers: recorder.answers, delay: recorder.delay }
    }

    fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The code in the last message: the generic payload's `Body`, or the end of Twilio's `Body`.
    fn last_code(&self) -> String {
        let last = self.requests().pop().expect("a message was sent");
        if last.content_type.starts_with("application/json") {
            let payload: Value = serde_json::from_str(&last.body).unwrap();
            return payload["Body"].as_str().unwrap().to_owned();
        }
        let body = form_urlencoded::parse(last.body.as_bytes()).find(|(name, _)| name == "Body").unwrap().1.into_owned();
        body.rsplit(' ').next().unwrap().to_owned()
    }
}

/// An SMS setup stage made through the API, bound alone to a new configuration flow `slug`.
async fn sms_setup_flow(app: &TestApp, admin: &Session, slug: &str, settings: Value) -> Value {
    crate::authenticators::setup_flow(app, admin, slug, "sms", settings).await
}

/// A generic webhook on `provider` with bearer credentials: an SMS stage's settings.
fn generic_webhook(provider: &FakeProvider) -> Value {
    json!({"provider": "generic", "account_sid": format!("{}/send", provider.base), "from_number": "G", "auth": "t", "auth_type": "bearer"})
}

/// A new account `email`, signed in, at the first question of the flow `slug`.
async fn person_at<'a>(app: &'a TestApp, email: &str, slug: &str) -> Browser<'a> {
    app.user(email, |_| {}).await;
    let mut browser = Browser::new(app);
    browser.sign_in(email, PASSWORD).await;
    browser.get(&executor(slug)).await;
    browser
}

pub(crate) fn executor(slug: &str) -> String {
    format!("/api/v3/flows/executor/{slug}/")
}

async fn spawn_with_provider() -> (TestApp, FakeProvider, Session) {
    let (app, provider, admin) = spawn_with_provider_and(|_| {}).await;
    app.run_worker().await;
    (app, provider, admin)
}

/// [`spawn_with_provider`] with `adjust` applied to the configuration, and no task worker yet.
async fn spawn_with_provider_and(adjust: impl FnOnce(&mut gatehouse::config::Config)) -> (TestApp, FakeProvider, Session) {
    let provider = FakeProvider::start().await;
    let base = provider.base.clone();
    let app = TestApp::spawn_with(|config| {
        config.sms.twilio_base_url = base;
        adjust(config);
    })
    .await;
    app.superuser("admin@example.com").await;
    let admin = app.sign_in("admin@example.com").await;
    (app, provider, admin)
}

pub(crate) fn errors(challenge: &Value, field: &str) -> String {
    challenge["response_errors"][field].to_string()
}

#[tokio::test]
async fn a_phone_is_enrolled_through_a_generic_webhook_with_a_bearer_token() {
    let (app, provider, admin) = spawn_with_provider().await;
    let stage = sms_setup_flow(
        &app,
        &admin,
        "phone-setup",
        json!({"provider": "generic", "account_sid": format!("{}/hooks/sms", provider.base), "from_number": "Gatehouse",
               "auth": "webhook-bearer-secret", "auth_type": "bearer"}),
    )
    .await;
    assert!(stage.get("auth").is_none() && stage.get("auth_password").is_none(), "secrets are write-only: {stage}");
    assert_eq!(stage["component"], "ak-stage-authenticator-sms-form");

    app.user("olga@example.com", |_| {}).await;
    let mut olga = Browser::new(&app);
    olga.sign_in("olga@example.com", PASSWORD).await;
    let (status, challenge) = olga.get(&executor("phone-setup")).await;
    assert_eq!(status, StatusCode::OK, "{challenge}");
    assert_eq!(challenge["component"], "ak-stage-authenticator-sms");
    assert_eq!(challenge["phone_number_required"], true);

    for bad in ["0446681800", "+1 555", "call me maybe"] {
        let (_, challenge) =
            olga.post(&executor("phone-setup"), json!({"component": "ak-stage-authenticator-sms", "phone_number": bad})).await;
        assert!(errors(&challenge, "phone_number").contains("international format"), "{bad}: {challenge}");
    }
    assert!(provider.requests().is_empty(), "nothing is sent for a number that does not parse");

    let (_, challenge) =
        olga.post(&executor("phone-setup"), json!({"component": "ak-stage-authenticator-sms", "phone_number": "+41 44 668 18 00"})).await;
    assert_eq!(challenge["phone_number_required"], false, "{challenge}");
    let sent = provider.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, "/hooks/sms");
    assert_eq!(sent[0].authorization, "Bearer webhook-bearer-secret");
    assert!(sent[0].content_type.starts_with("application/json"));
    let payload: Value = serde_json::from_str(&sent[0].body).unwrap();
    let code = provider.last_code();
    assert_eq!(code.len(), 6);
    assert_eq!(
        payload,
        json!({"From": "Gatehouse", "To": "+41446681800", "Body": code, "Message": format!("Use this code to authenticate in Gatehouse: {code}")})
    );

    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (_, challenge) = olga.post(&executor("phone-setup"), json!({"component": "ak-stage-authenticator-sms", "code": wrong})).await;
    assert!(errors(&challenge, "code").contains("Code does not match"), "{challenge}");
    let (status, done) = olga.post(&executor("phone-setup"), json!({"component": "ak-stage-authenticator-sms", "code": code})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");

    let (_, devices) = olga.get("/api/v3/authenticators/sms/").await;
    assert_eq!(devices["pagination"]["count"], 1, "{devices}");
    assert_eq!(devices["results"][0]["phone_number"], "+41446681800");
    assert_eq!(devices["results"][0]["user"]["email"], "olga@example.com");
    let (_, all) = olga.get("/api/v3/authenticators/all/").await;
    assert_eq!(all[0]["type"], "authentik_stages_authenticator_sms.SMSDevice", "{all}");
    assert_eq!(all[0]["extra_description"], "…00");
    assert_eq!(all[0]["confirmed"], true);

    // The code was used: in a new run, with a new code sent to another number, it is wrong.
    let (_, again) = olga.get(&executor("phone-setup")).await;
    assert_eq!(again["phone_number_required"], true, "a new run starts from the number: {again}");
    let (_, replay) = olga.post(&executor("phone-setup"), json!({"component": "ak-stage-authenticator-sms", "code": code})).await;
    assert!(errors(&replay, "phone_number").contains("required"), "{replay}");
    olga.post(&executor("phone-setup"), json!({"component": "ak-stage-authenticator-sms", "phone_number": "+41446681801"})).await;
    let second_code = provider.last_code();
    if second_code != code {
        let (_, replay) = olga.post(&executor("phone-setup"), json!({"component": "ak-stage-authenticator-sms", "code": code})).await;
        assert!(errors(&replay, "code").contains("Code does not match"), "a used code in another run: {replay}");
    }
    olga.get("/flows/-/cancel/").await;
    olga.get(&executor("phone-setup")).await;
    // The same number cannot be enrolled twice on the stage.
    let (_, twice) =
        olga.post(&executor("phone-setup"), json!({"component": "ak-stage-authenticator-sms", "phone_number": "+41446681800"})).await;
    assert!(errors(&twice, "phone_number").contains("cannot be used here"), "{twice}");
    assert_eq!(provider.requests().len(), 2, "no code is sent to a number enrolled already");
}

#[tokio::test]
async fn twilio_gets_its_form_with_basic_auth_and_verify_only_keeps_a_keyed_digest() {
    let (app, provider, admin) = spawn_with_provider().await;
    sms_setup_flow(
        &app,
        &admin,
        "prove-phone",
        json!({"provider": "twilio", "account_sid": "AC0123456789abcdef", "from_number": "+15005550006", "auth": "twilio-auth-token", "verify_only": true}),
    )
    .await;
    let mut piet = person_at(&app, "piet@example.com", "prove-phone").await;
    piet.post(&executor("prove-phone"), json!({"component": "ak-stage-authenticator-sms", "phone_number": "+31 20 794 0000"})).await;
    let sent = provider.requests();
    assert_eq!(sent[0].path, "/2010-04-01/Accounts/AC0123456789abcdef/Messages.json");
    use base64::Engine;
    let credentials = base64::engine::general_purpose::STANDARD.encode("AC0123456789abcdef:twilio-auth-token");
    assert_eq!(sent[0].authorization, format!("Basic {credentials}"));
    assert_eq!(sent[0].content_type, "application/x-www-form-urlencoded");
    let form: Vec<(String, String)> = form_urlencoded::parse(sent[0].body.as_bytes()).into_owned().collect();
    let code = provider.last_code();
    assert_eq!(
        form,
        vec![
            ("To".into(), "+31207940000".into()),
            ("From".into(), "+15005550006".into()),
            ("Body".into(), format!("Use this code to authenticate in Gatehouse: {code}"))
        ]
    );
    let (_, done) = piet.post(&executor("prove-phone"), json!({"component": "ak-stage-authenticator-sms", "code": code})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
    let (_, devices) = piet.get("/api/v3/authenticators/sms/").await;
    let kept = devices["results"][0]["phone_number"].as_str().unwrap().to_owned();
    assert!(kept.starts_with("hash:") && kept.len() == 5 + 64, "{kept}");
    assert!(!kept.contains("31207940000"));

    // The number is proven on this stage: nobody can enrol it again there, the digest notwithstanding.
    let mut otto = person_at(&app, "otto@example.com", "prove-phone").await;
    let (_, taken) =
        otto.post(&executor("prove-phone"), json!({"component": "ak-stage-authenticator-sms", "phone_number": "+31207940000"})).await;
    assert!(errors(&taken, "phone_number").contains("cannot be used here"), "{taken}");
}

#[tokio::test]
async fn a_provider_that_refuses_is_recorded_and_the_person_told_to_try_later() {
    let (app, provider, admin) = spawn_with_provider().await;
    sms_setup_flow(
        &app,
        &admin,
        "phone-setup",
        json!({"provider": "generic", "account_sid": format!("{}/send", provider.base), "from_number": "Gatehouse", "auth": "user", "auth_password": "webhook-basic-password"}),
    )
    .await;
    let mut olga = person_at(&app, "olga@example.com", "phone-setup").await;
    // A refusal (400), a failure (500) and a request to try later (503) alike are told at once.
    for (sends, refusal) in [(1, 400), (2, 500), (3, 503)] {
        *provider.status.lock().unwrap() = refusal;
        let (_, challenge) =
            olga.post(&executor("phone-setup"), json!({"component": "ak-stage-authenticator-sms", "phone_number": "+41446681800"})).await;
        assert!(errors(&challenge, "phone_number").contains("We could not send the code. Try again later."), "{refusal}: {challenge}");
        assert!(!challenge.to_string().contains("suspended"), "the provider's answer is not shown: {challenge}");
        assert_eq!(challenge["phone_number_required"], true);
        let recorded = events(&app, "configuration_error").await;
        assert_eq!(recorded.len(), sends, "{recorded:?}");
        let this = recorded.iter().find(|e| e["context"]["status_code"] == refusal).expect("the refusal is recorded");
        assert!(this["context"]["response"].as_str().unwrap().contains("account suspended"));
        assert!(!this.to_string().contains("webhook-basic-password"));
    }
    // A code the person was told was not sent never arrives later: the 503's retry was withdrawn.
    let tasks = code_tasks(&app, &admin).await;
    assert_eq!(tasks.len(), 3);
    assert!(tasks.iter().all(|task| task["state"] == "rejected"), "{tasks:?}");
    assert!(logged(&tasks[0], "Withdrawn"), "{tasks:?}");
    assert_eq!(provider.requests().len(), 3);

    // Once the provider recovers, the same number gets a code: a failed send is not counted.
    *provider.status.lock().unwrap() = 200;
    let (_, challenge) =
        olga.post(&executor("phone-setup"), json!({"component": "ak-stage-authenticator-sms", "phone_number": "+41446681800"})).await;
    assert_eq!(challenge["phone_number_required"], false, "{challenge}");
}

#[tokio::test]
async fn sends_to_one_account_are_limited_and_the_limit_says_when_to_retry() {
    let (app, provider, admin) = spawn_with_provider().await;
    sms_setup_flow(&app, &admin, "phone-setup", generic_webhook(&provider)).await;
    app.user("olga@example.com", |_| {}).await;
    let mut olga = Browser::new(&app);
    olga.sign_in("olga@example.com", PASSWORD).await;
    let limit = gatehouse::mfa::delivery::SENDS_PER_ACCOUNT_HOUR as usize;
    for attempt in 0..=limit {
        // A new run each time: a limit that reset per run would be no limit.
        let (_, _) = olga.get("/flows/-/cancel/").await;
        olga.get(&executor("phone-setup")).await;
        let number = format!("+4144668{:04}", 1000 + attempt);
        let (_, challenge) =
            olga.post(&executor("phone-setup"), json!({"component": "ak-stage-authenticator-sms", "phone_number": number})).await;
        if attempt < limit {
            assert_eq!(challenge["phone_number_required"], false, "send {attempt}: {challenge}");
        } else {
            assert!(errors(&challenge, "phone_number").contains("Too many codes were sent. Try again in"), "{challenge}");
        }
    }
    assert_eq!(provider.requests().len(), limit);
}

#[tokio::test]
async fn wrong_codes_count_per_account_across_runs_and_new_codes() {
    let (app, provider, admin) = spawn_with_provider().await;
    sms_setup_flow(&app, &admin, "phone-setup", generic_webhook(&provider)).await;
    app.user("olga@example.com", |_| {}).await;
    let mut olga = Browser::new(&app);
    olga.sign_in("olga@example.com", PASSWORD).await;
    let mut throttled = false;
    for round in 0..4 {
        olga.get("/flows/-/cancel/").await;
        olga.get(&executor("phone-setup")).await;
        olga.post(
            &executor("phone-setup"),
            json!({"component": "ak-stage-authenticator-sms", "phone_number": format!("+4144668{:04}", 2000 + round)}),
        )
        .await;
        let code = provider.last_code();
        let wrong = if code == "000000" { "111111" } else { "000000" };
        for _ in 0..2 {
            let (_, challenge) =
                olga.post(&executor("phone-setup"), json!({"component": "ak-stage-authenticator-sms", "code": wrong})).await;
            if errors(&challenge, "code").contains("Too many wrong codes") {
                throttled = true;
                // Even the right code waits now: the limit is reserved before comparing.
                let (_, right) =
                    olga.post(&executor("phone-setup"), json!({"component": "ak-stage-authenticator-sms", "code": code})).await;
                assert!(errors(&right, "code").contains("Too many wrong codes"), "{right}");
            }
        }
    }
    assert!(throttled, "eight wrong codes over four runs and four codes were never throttled");
    let (_, devices) = olga.get("/api/v3/authenticators/sms/").await;
    assert_eq!(devices["pagination"]["count"], 0);
}

/// A confirmed device of `email`, enrolled through the flow.
async fn enrolled(app: &TestApp, provider: &FakeProvider, email: &str, number: &str) -> i64 {
    let mut browser = Browser::new(app);
    browser.sign_in(email, PASSWORD).await;
    browser.get(&executor("phone-setup")).await;
    browser.post(&executor("phone-setup"), json!({"component": "ak-stage-authenticator-sms", "phone_number": number})).await;
    let code = provider.last_code();
    let (_, done) = browser.post(&executor("phone-setup"), json!({"component": "ak-stage-authenticator-sms", "code": code})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
    let (_, devices) = browser.get("/api/v3/authenticators/sms/").await;
    let stored = gatehouse_types::PhoneNumber::parse(number).unwrap();
    let device =
        devices["results"].as_array().unwrap().iter().find(|d| d["phone_number"] == stored.as_str()).expect("the new device is listed");
    device["pk"].as_i64().unwrap()
}

#[tokio::test]
async fn devices_are_their_owners_and_administrators_need_the_permissions_and_the_owners_rights() {
    let (app, provider, admin) = spawn_with_provider().await;
    sms_setup_flow(&app, &admin, "phone-setup", generic_webhook(&provider)).await;
    app.user("olga@example.com", |_| {}).await;
    app.user("piet@example.com", |_| {}).await;
    // Signed in before she has a phone: with one, the password alone no longer signs her in.
    let olga = app.sign_in("olga@example.com").await;
    let piet = app.sign_in("piet@example.com").await;
    let olga_phone = enrolled(&app, &provider, "olga@example.com", "+41446681800").await;
    let admin_phone = enrolled(&app, &provider, "admin@example.com", "+41446681801").await;

    // The owner renames and sees; another person does not even find it.
    let (status, renamed) =
        json(app.patch(&olga, &format!("/api/v3/authenticators/sms/{olga_phone}/"), json!({"name": "Work phone"})).await).await;
    assert_eq!((status, renamed["name"].as_str()), (StatusCode::OK, Some("Work phone")), "{renamed}");
    let (_, blank) = json(app.put(&olga, &format!("/api/v3/authenticators/sms/{olga_phone}/"), json!({"name": "  "})).await).await;
    assert!(blank["name"].to_string().contains("blank"), "{blank}");
    assert_eq!(app.get(&piet, &format!("/api/v3/authenticators/sms/{olga_phone}/")).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.delete(&piet, &format!("/api/v3/authenticators/sms/{olga_phone}/")).await.status(), StatusCode::NOT_FOUND);
    let (_, pieces) = json(app.get(&piet, "/api/v3/authenticators/sms/").await).await;
    assert_eq!(pieces["pagination"]["count"], 0);
    assert_forbidden(app.get(&piet, "/api/v3/authenticators/admin/sms/").await).await;
    let (status, refused) = json(app.post(&admin, "/api/v3/authenticators/admin/sms/", json!({"name": "x"})).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused["non_field_errors"].to_string().contains("enrolled by their owners"), "{refused}");

    // A helpdesk account with the device permissions manages olga's phone, not the superuser's.
    let helpdesk = app
        .user_with(
            "helpdesk@example.com",
            &[
                "authentik_stages_authenticator_sms.view_smsdevice",
                "authentik_stages_authenticator_sms.change_smsdevice",
                "authentik_stages_authenticator_sms.delete_smsdevice",
            ],
        )
        .await;
    let helpdesk = app.sign_in(&helpdesk.email).await;
    let (_, listed) = json(app.get(&helpdesk, "/api/v3/authenticators/admin/sms/?ordering=name").await).await;
    assert_eq!(listed["pagination"]["count"], 2, "{listed}");
    let numbers: Vec<&str> = listed["results"].as_array().unwrap().iter().map(|d| d["phone_number"].as_str().unwrap()).collect();
    assert!(numbers.contains(&"+41446681800"), "{numbers:?}");
    assert!(numbers.contains(&"…01"), "a more powerful account's number is masked: {numbers:?}");
    assert_forbidden(app.get(&helpdesk, &format!("/api/v3/authenticators/admin/sms/{admin_phone}/")).await).await;
    assert_forbidden(app.delete(&helpdesk, &format!("/api/v3/authenticators/admin/sms/{admin_phone}/")).await).await;
    assert_eq!(app.delete(&helpdesk, &format!("/api/v3/authenticators/admin/sms/{olga_phone}/")).await.status(), StatusCode::NO_CONTENT);
    let (_, left) = json(app.get(&admin, "/api/v3/authenticators/admin/sms/").await).await;
    assert_eq!(left["pagination"]["count"], 1, "only olga's phone went: {left}");
    assert_eq!(left["results"][0]["pk"], admin_phone);
    assert_eq!(events(&app, "model_deleted").await.iter().filter(|e| e["context"]["model"]["model_name"] == "smsdevice").count(), 1);
}

#[tokio::test]
async fn sms_stage_settings_are_checked_and_secrets_kept_on_partial_updates() {
    let (app, _provider, admin) = spawn_with_provider().await;
    let (status, refused) =
        json(app.post(&admin, "/api/v3/stages/authenticator/sms/", json!({"name": "sms", "provider": "carrier-pigeon"})).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused.get("provider").is_some(), "{refused}");
    let (status, refused) =
        json(app.post(&admin, "/api/v3/stages/authenticator/sms/", json!({"name": "sms", "provider": "generic"})).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    for field in ["account_sid", "from_number", "auth"] {
        assert!(refused.get(field).is_some(), "{field}: {refused}");
    }
    let (status, stage) = json(
        app.post(
            &admin,
            "/api/v3/stages/authenticator/sms/",
            json!({"name": "sms", "provider": "twilio", "account_sid": "AC1", "from_number": "+15005550006", "auth": "kept-secret-token"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{stage}");
    let path = format!("/api/v3/stages/authenticator/sms/{}/", stage["pk"].as_str().unwrap());
    let (status, patched) = json(app.patch(&admin, &path, json!({"friendly_name": "Text message"})).await).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert!(patched.get("auth").is_none());
    let stored = gatehouse::flows::stage_service::get_stage(
        &app.state,
        &gatehouse::accounts::access::Actor::system(),
        stage["pk"].as_str().unwrap().parse().unwrap(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(stored.settings["auth"], "kept-secret-token", "a partial update keeps the write-only secret");
    let (_, listed) = json(app.get(&admin, "/api/v3/stages/all/").await).await;
    assert!(!listed.to_string().contains("kept-secret-token"));
    // A full update cannot send back a secret it was never shown: one left out is kept.
    let full = json!({"name": "sms", "provider": "twilio", "account_sid": "AC1", "from_number": "+15005550007"});
    let (status, replaced) = json(app.put(&admin, &path, full).await).await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    let stored = gatehouse::flows::stage_service::get_stage(
        &app.state,
        &gatehouse::accounts::access::Actor::system(),
        stage["pk"].as_str().unwrap().parse().unwrap(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        (stored.settings["auth"].as_str(), stored.settings["from_number"].as_str()),
        (Some("kept-secret-token"), Some("+15005550007"))
    );
    // The audit trail records the changes without the secret.
    for action in ["model_created", "model_updated"] {
        let recorded = events(&app, action).await;
        assert!(recorded.iter().any(|e| e["context"]["model"]["name"] == "sms"), "{action}: {recorded:?}");
        assert!(!serde_json::to_string(&recorded).unwrap().contains("kept-secret-token"), "{action} records the provider's secret");
    }
    let schema: Value = app.client.get(app.url("/api/v3/schema/")).send().await.unwrap().json().await.unwrap();
    assert!(schema["paths"].get("/api/v3/stages/authenticator/sms/").is_some(), "the stage kind is documented at authentik's path");
    assert!(schema["components"]["schemas"]["AuthenticatorSmsStage"]["allOf"][1]["properties"].get("auth").is_none());
    assert!(schema["components"]["schemas"]["AuthenticatorSmsStageRequest"]["properties"].get("auth").is_some());
}

/// A flow that identifies someone and then offers phone setup must not let a stranger who only
/// typed an address enrol a phone on that account.
#[tokio::test]
async fn a_phone_cannot_be_enrolled_on_an_account_that_was_only_identified() {
    let (app, provider, admin) = spawn_with_provider().await;
    let stage = sms_setup_flow(
        &app,
        &admin,
        "identify-then-phone",
        json!({"provider": "generic", "account_sid": format!("{}/send", provider.base), "from_number": "G", "auth": "t", "auth_type": "bearer"}),
    )
    .await;
    let flow = json!({"authentication": "none"});
    let (status, body) = json(app.patch(&admin, "/api/v3/flows/instances/identify-then-phone/", flow).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, stages) = json(app.get(&admin, "/api/v3/stages/all/?name=default-authentication-identification").await).await;
    let identification = stages["results"][0]["pk"].clone();
    let (_, flows) = json(app.get(&admin, "/api/v3/flows/instances/?slug=identify-then-phone").await).await;
    let binding = json!({"target": flows["results"][0]["pk"], "stage": identification, "order": -10});
    let (status, body) = json(app.post(&admin, "/api/v3/flows/bindings/", binding).await).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(stage["component"], "ak-stage-authenticator-sms-form");

    app.user("olga@example.com", |_| {}).await;
    let mut stranger = Browser::new(&app);
    let (_, first) = stranger.get(&executor("identify-then-phone")).await;
    assert_eq!(first["component"], "ak-stage-identification", "{first}");
    let (_, second) = stranger
        .post(&executor("identify-then-phone"), json!({"component": "ak-stage-identification", "uid_field": "olga@example.com"}))
        .await;
    assert_eq!(second["component"], "ak-stage-authenticator-sms", "{second}");
    let (_, answer) = stranger
        .post(&executor("identify-then-phone"), json!({"component": "ak-stage-authenticator-sms", "phone_number": "+41446681800"}))
        .await;
    assert_eq!(answer["component"], "ak-stage-access-denied", "{answer}");
    assert!(provider.requests().is_empty(), "no code went to the stranger's phone");
    let olga = app.sign_in("olga@example.com").await;
    let (_, devices) = json(app.get(&olga, "/api/v3/authenticators/sms/").await).await;
    assert_eq!(devices["pagination"]["count"], 0);
}

/// The default authentication flow's validation stage (after the password), changed to
/// `settings`.
pub(crate) async fn require_mfa(app: &TestApp, admin: &Session, settings: Value) {
    let (_, stages) = json(app.get(admin, "/api/v3/stages/authenticator/validate/?name=default-authentication-mfa-validation").await).await;
    let pk = stages["results"][0]["pk"].as_str().unwrap_or_else(|| panic!("the default validation stage: {stages}")).to_owned();
    let (status, stage) = json(app.patch(admin, &format!("/api/v3/stages/authenticator/validate/{pk}/"), settings).await).await;
    assert_eq!(status, StatusCode::OK, "{stage}");
}

/// Identification and password through the default flow; returns the challenge after them.
pub(crate) async fn password_step(browser: &mut Browser<'_>, email: &str) -> Value {
    browser.get(SIGN_IN).await;
    browser.post(SIGN_IN, json!({"component": "ak-stage-identification", "uid_field": email})).await;
    let (_, next) = browser.post(SIGN_IN, json!({"component": "ak-stage-password", "password": PASSWORD})).await;
    next
}

async fn phone_setup_stage(app: &TestApp, admin: &Session, provider: &FakeProvider) -> Value {
    sms_setup_flow(
        app,
        admin,
        "phone-setup",
        json!({"provider": "generic", "account_sid": format!("{}/send", provider.base), "from_number": "G", "auth": "t", "auth_type": "bearer"}),
    )
    .await
}

#[tokio::test]
async fn after_the_password_a_code_sent_to_the_phone_signs_in_and_nothing_else_does() {
    let (app, provider, admin) = spawn_with_provider().await;
    phone_setup_stage(&app, &admin, &provider).await;
    app.user("olga@example.com", |_| {}).await;
    let phone = enrolled(&app, &provider, "olga@example.com", "+41446681800").await;
    let enrolment_code = provider.last_code();
    require_mfa(&app, &admin, json!({"device_classes": ["sms"], "not_configured_action": "deny"})).await;

    let mut olga = Browser::new(&app);
    let challenge = password_step(&mut olga, "olga@example.com").await;
    assert_eq!(challenge["component"], "ak-stage-authenticator-validate", "{challenge}");
    assert_eq!(
        challenge["device_challenges"],
        json!([{"device_class": "sms", "device_uid": phone.to_string(), "challenge": {}, "last_used": null}])
    );
    let sent_before = provider.requests().len();

    // Nothing but the code passes: empty, malformed and early answers, and codes sent for other purposes.
    for answer in [
        json!({"component": "ak-stage-authenticator-validate", "code": "123456"}),
        json!({"component": "ak-stage-authenticator-validate", "selected_challenge": "sms"}),
        json!({"component": "ak-stage-authenticator-validate", "selected_challenge": {"device_class": "totp", "device_uid": phone.to_string(), "challenge": {}, "last_used": null}}),
        json!({"component": "ak-stage-authenticator-validate", "selected_challenge": {"device_class": "sms", "device_uid": "999", "challenge": {}, "last_used": null}}),
    ] {
        let (_, refused) = olga.post(SIGN_IN, answer.clone()).await;
        assert_eq!(refused["component"], "ak-stage-authenticator-validate", "{answer}: {refused}");
        assert!(refused["response_errors"].is_object(), "{answer}: {refused}");
        assert_eq!(olga.me().await, StatusCode::UNAUTHORIZED, "{answer} signed in");
    }
    assert_eq!(provider.requests().len(), sent_before, "no code goes out for a refused selection");

    let selected = json!({"device_class": "sms", "device_uid": phone.to_string(), "challenge": {}, "last_used": null});
    let (_, asked) = olga.post(SIGN_IN, json!({"component": "ak-stage-authenticator-validate", "selected_challenge": selected})).await;
    assert_eq!(asked["component"], "ak-stage-authenticator-validate", "{asked}");
    assert_eq!(provider.requests().len(), sent_before + 1);
    assert_eq!(serde_json::from_str::<Value>(&provider.requests().last().unwrap().body).unwrap()["To"], "+41446681800");
    let code = provider.last_code();
    if code != enrolment_code {
        let (_, other) = olga.post(SIGN_IN, json!({"component": "ak-stage-authenticator-validate", "code": enrolment_code})).await;
        assert!(errors(&other, "code").contains("Code does not match"), "a code sent for another purpose: {other}");
    }
    let sent_now = provider.requests().len();
    for empty in [json!({"code": ""}), json!({"code": null}), json!({})] {
        let mut answer = empty.clone();
        answer["component"] = json!("ak-stage-authenticator-validate");
        let (_, refused) = olga.post(SIGN_IN, answer).await;
        assert!(errors(&refused, "code").contains("required"), "{empty}: {refused}");
        assert_eq!(olga.me().await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(provider.requests().len(), sent_now, "an empty answer sends no new code");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (_, refused) = olga.post(SIGN_IN, json!({"component": "ak-stage-authenticator-validate", "code": wrong})).await;
    assert!(errors(&refused, "code").contains("Code does not match"), "{refused}");
    assert_eq!(olga.me().await, StatusCode::UNAUTHORIZED);
    let (_, done) = olga.post(SIGN_IN, json!({"component": "ak-stage-authenticator-validate", "code": code})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
    assert_eq!(olga.me().await, StatusCode::OK);
    let (_, devices) = olga.get("/api/v3/authenticators/sms/").await;
    assert!(devices["results"][0]["pk"] == phone, "{devices}");
    let (_, all) = olga.get("/api/v3/authenticators/all/").await;
    assert!(all[0]["last_used"].is_string(), "the device's use is noted: {all}");
}

#[tokio::test]
async fn without_a_device_the_validation_stage_skips_denies_or_sends_to_setup() {
    let (app, provider, admin) = spawn_with_provider().await;
    let setup = phone_setup_stage(&app, &admin, &provider).await;
    app.user("olga@example.com", |_| {}).await;
    require_mfa(&app, &admin, json!({"not_configured_action": "deny"})).await;
    let mut olga = Browser::new(&app);
    let denied = password_step(&mut olga, "olga@example.com").await;
    assert_eq!(denied["component"], "ak-stage-access-denied", "{denied}");
    assert!(denied["error_message"].to_string().contains("No authenticator is set up"), "{denied}");
    assert_eq!(olga.me().await, StatusCode::UNAUTHORIZED);

    let (_, stages) = json(app.get(&admin, "/api/v3/stages/authenticator/validate/").await).await;
    let path = format!("/api/v3/stages/authenticator/validate/{}/", stages["results"][0]["pk"].as_str().unwrap());
    let (status, body) =
        json(app.patch(&admin, &path, json!({"not_configured_action": "configure", "configuration_stages": []})).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "configure needs a setup stage: {body}");
    let (status, body) =
        json(app.patch(&admin, &path, json!({"not_configured_action": "configure", "configuration_stages": [setup["pk"]]})).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut olga = Browser::new(&app);
    let setup_challenge = password_step(&mut olga, "olga@example.com").await;
    assert_eq!(setup_challenge["component"], "ak-stage-authenticator-sms", "{setup_challenge}");
    olga.post(SIGN_IN, json!({"component": "ak-stage-authenticator-sms", "phone_number": "+41446681800"})).await;
    let code = provider.last_code();
    let (_, done) = olga.post(SIGN_IN, json!({"component": "ak-stage-authenticator-sms", "code": code})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
    assert_eq!(olga.me().await, StatusCode::OK);
    let (_, devices) = olga.get("/api/v3/authenticators/sms/").await;
    assert_eq!(devices["pagination"]["count"], 1);

    let (status, _) = json(app.patch(&admin, &path, json!({"not_configured_action": "skip"})).await).await;
    assert_eq!(status, StatusCode::OK);
    app.user("piet@example.com", |_| {}).await;
    let mut piet = Browser::new(&app);
    let skipped = password_step(&mut piet, "piet@example.com").await;
    assert_eq!(skipped["component"], "xak-flow-redirect", "{skipped}");
}

#[tokio::test]
async fn a_verify_only_phone_does_not_pass_the_validation_stage() {
    let (app, provider, admin) = spawn_with_provider().await;
    sms_setup_flow(
        &app,
        &admin,
        "phone-setup",
        json!({"provider": "generic", "account_sid": format!("{}/send", provider.base), "from_number": "G", "auth": "t", "auth_type": "bearer", "verify_only": true}),
    )
    .await;
    app.user("olga@example.com", |_| {}).await;
    enrolled_verify_only(&app, &provider, "olga@example.com").await;
    require_mfa(&app, &admin, json!({"not_configured_action": "deny"})).await;
    let mut olga = Browser::new(&app);
    let denied = password_step(&mut olga, "olga@example.com").await;
    assert_eq!(denied["component"], "ak-stage-access-denied", "{denied}");
    assert_eq!(olga.me().await, StatusCode::UNAUTHORIZED);
}

async fn enrolled_verify_only(app: &TestApp, provider: &FakeProvider, email: &str) {
    let mut browser = Browser::new(app);
    browser.sign_in(email, PASSWORD).await;
    browser.get(&executor("phone-setup")).await;
    browser.post(&executor("phone-setup"), json!({"component": "ak-stage-authenticator-sms", "phone_number": "+41446681800"})).await;
    let code = provider.last_code();
    let (_, done) = browser.post(&executor("phone-setup"), json!({"component": "ak-stage-authenticator-sms", "code": code})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
}

#[tokio::test]
async fn validation_settings_refuse_what_is_not_served() {
    let (app, _provider, admin) = spawn_with_provider().await;
    for (settings, field) in [
        (json!({"device_classes": ["webauthn"]}), "device_classes"),
        (json!({"device_classes": ["duo"]}), "device_classes"),
        (json!({"device_classes": []}), "device_classes"),
        (json!({"device_classes": ["carrier-pigeon"]}), "device_classes"),
        (json!({"last_auth_threshold": "days=31"}), "last_auth_threshold"),
        (json!({"not_configured_action": "configure"}), "configuration_stages"),
        (json!({"not_configured_action": "shrug"}), "not_configured_action"),
    ] {
        let mut body = json!({"name": "validation"});
        body.as_object_mut().unwrap().extend(settings.as_object().unwrap().clone());
        let (status, refused) = json(app.post(&admin, "/api/v3/stages/authenticator/validate/", body).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{settings}");
        assert!(refused.as_object().unwrap().keys().any(|key| key.starts_with(field)), "{settings}: {refused}");
    }
}

/// A validation stage placed before the password must not become a way in with a phone alone,
/// nor let a stranger who typed an address make codes go to that account's phone.
#[tokio::test]
async fn the_second_factor_never_stands_in_for_the_first() {
    let (app, provider, admin) = spawn_with_provider().await;
    phone_setup_stage(&app, &admin, &provider).await;
    app.user("olga@example.com", |_| {}).await;
    enrolled(&app, &provider, "olga@example.com", "+41446681800").await;
    let sent = provider.requests().len();
    let (status, validate) = json(app.post(&admin, "/api/v3/stages/authenticator/validate/", json!({"name": "early-mfa"})).await).await;
    assert_eq!(status, StatusCode::CREATED, "{validate}");
    let flow = json!({"name": "phone-only", "slug": "phone-only", "title": "Phone only", "designation": "authentication"});
    let (status, flow) = json(app.post(&admin, "/api/v3/flows/instances/", flow).await).await;
    assert_eq!(status, StatusCode::CREATED, "{flow}");
    for (name, order) in [("default-authentication-identification", 10), ("early-mfa", 20), ("default-authentication-login", 100)] {
        let (_, stages) = json(app.get(&admin, &format!("/api/v3/stages/all/?name={name}")).await).await;
        let binding = json!({"target": flow["pk"], "stage": stages["results"][0]["pk"], "order": order});
        let (status, body) = json(app.post(&admin, "/api/v3/flows/bindings/", binding).await).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let mut stranger = Browser::new(&app);
    stranger.get(&executor("phone-only")).await;
    let (_, answer) =
        stranger.post(&executor("phone-only"), json!({"component": "ak-stage-identification", "uid_field": "olga@example.com"})).await;
    assert_eq!(answer["component"], "ak-stage-access-denied", "{answer}");
    assert_eq!(provider.requests().len(), sent, "no code went to olga's phone");
    assert_eq!(stranger.me().await, StatusCode::UNAUTHORIZED);
}

/// A flow that offers phone setup after the password: an account's first phone can be set up
/// there, but someone holding only the password cannot add a phone to an account that has one.
#[tokio::test]
async fn the_password_alone_does_not_add_a_phone_to_an_account_that_has_one() {
    let (app, provider, admin) = spawn_with_provider().await;
    let setup = phone_setup_stage(&app, &admin, &provider).await;
    let flow = json!({"name": "password-then-phone", "slug": "password-then-phone", "title": "Sign in", "designation": "authentication"});
    let (status, flow) = json(app.post(&admin, "/api/v3/flows/instances/", flow).await).await;
    assert_eq!(status, StatusCode::CREATED, "{flow}");
    for (stage, order) in [(json!(null), 10), (json!(null), 20), (setup["pk"].clone(), 30)] {
        let stage = if stage.is_null() {
            let name = if order == 10 { "default-authentication-identification" } else { "default-authentication-password" };
            let (_, stages) = json(app.get(&admin, &format!("/api/v3/stages/all/?name={name}")).await).await;
            stages["results"][0]["pk"].clone()
        } else {
            stage
        };
        let (status, body) =
            json(app.post(&admin, "/api/v3/flows/bindings/", json!({"target": flow["pk"], "stage": stage, "order": order})).await).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let through = |email: &'static str, number: &'static str| {
        let app = &app;
        let provider = &provider;
        async move {
            let mut browser = Browser::new(app);
            let path = executor("password-then-phone");
            browser.get(&path).await;
            browser.post(&path, json!({"component": "ak-stage-identification", "uid_field": email})).await;
            let (_, asked) = browser.post(&path, json!({"component": "ak-stage-password", "password": PASSWORD})).await;
            assert_eq!(asked["component"], "ak-stage-authenticator-sms", "{asked}");
            let (_, answer) = browser.post(&path, json!({"component": "ak-stage-authenticator-sms", "phone_number": number})).await;
            if answer["phone_number_required"] == false {
                let code = provider.last_code();
                browser.post(&path, json!({"component": "ak-stage-authenticator-sms", "code": code})).await.1
            } else {
                answer
            }
        }
    };
    app.user("olga@example.com", |_| {}).await;
    let first = through("olga@example.com", "+41446681800").await;
    assert_eq!(first["component"], "xak-flow-redirect", "the first phone can be set up after the password: {first}");
    let sent = provider.requests().len();
    let second = through("olga@example.com", "+41446681899").await;
    assert_eq!(second["component"], "ak-stage-access-denied", "{second}");
    assert_eq!(provider.requests().len(), sent, "no code went to the new number");
    let (_, devices) = json(app.get(&admin, "/api/v3/authenticators/admin/sms/").await).await;
    assert_eq!(devices["pagination"]["count"], 1, "{devices}");
}

/// Codes sent to a number while pretending to set it up on another stage do not use up its
/// owner's codes for signing in.
#[tokio::test]
async fn setup_codes_sent_to_someone_elses_number_do_not_block_their_sign_in() {
    let (app, provider, admin) = spawn_with_provider().await;
    phone_setup_stage(&app, &admin, &provider).await;
    sms_setup_flow(
        &app,
        &admin,
        "prove-phone",
        json!({"provider": "generic", "account_sid": format!("{}/send", provider.base), "from_number": "G", "auth": "t", "auth_type": "bearer", "verify_only": true}),
    )
    .await;
    app.user("olga@example.com", |_| {}).await;
    app.user("mallory@example.com", |_| {}).await;
    let phone = enrolled(&app, &provider, "olga@example.com", "+41446681800").await;

    let mut mallory = Browser::new(&app);
    mallory.sign_in("mallory@example.com", PASSWORD).await;
    let mut refused = false;
    for _ in 0..=gatehouse::mfa::delivery::SENDS_PER_DESTINATION_HOUR {
        mallory.get("/flows/-/cancel/").await;
        mallory.get(&executor("prove-phone")).await;
        let (_, answer) = mallory
            .post(&executor("prove-phone"), json!({"component": "ak-stage-authenticator-sms", "phone_number": "+41446681800"}))
            .await;
        refused |= errors(&answer, "phone_number").contains("Too many codes");
    }
    assert!(refused, "sends to one number are limited");
    require_mfa(&app, &admin, json!({"not_configured_action": "deny"})).await;

    let mut olga = Browser::new(&app);
    password_step(&mut olga, "olga@example.com").await;
    let selected = json!({"device_class": "sms", "device_uid": phone.to_string(), "challenge": {}, "last_used": null});
    let (_, asked) = olga.post(SIGN_IN, json!({"component": "ak-stage-authenticator-validate", "selected_challenge": selected})).await;
    assert!(asked["response_errors"].is_null(), "olga's sign-in code was refused: {asked}");
    let code = provider.last_code();
    let (_, done) = olga.post(SIGN_IN, json!({"component": "ak-stage-authenticator-validate", "code": code})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
}

#[tokio::test]
async fn setup_stages_named_by_a_validation_stage_must_exist_and_leave_its_list_when_deleted() {
    let (app, provider, admin) = spawn_with_provider().await;
    let setup = phone_setup_stage(&app, &admin, &provider).await;
    let bogus = uuid::Uuid::new_v4().to_string();
    let body = json!({"name": "v", "not_configured_action": "configure", "configuration_stages": [bogus]});
    let (status, refused) = json(app.post(&admin, "/api/v3/stages/authenticator/validate/", body).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused["configuration_stages"].to_string().contains(&bogus), "{refused}");
    let (_, stages) = json(app.get(&admin, "/api/v3/stages/all/?name=default-authentication-password").await).await;
    let password = stages["results"][0]["pk"].clone();
    let body = json!({"name": "v", "not_configured_action": "configure", "configuration_stages": [password]});
    let (status, _) = json(app.post(&admin, "/api/v3/stages/authenticator/validate/", body).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a password stage sets up no authenticator");
    let body = json!({"name": "v", "not_configured_action": "configure", "configuration_stages": [setup["pk"]]});
    let (status, validate) = json(app.post(&admin, "/api/v3/stages/authenticator/validate/", body).await).await;
    assert_eq!(status, StatusCode::CREATED, "{validate}");
    let path = format!("/api/v3/stages/authenticator/sms/{}/", setup["pk"].as_str().unwrap());
    assert_eq!(app.delete(&admin, &path).await.status(), StatusCode::NO_CONTENT);
    let (_, after) =
        json(app.get(&admin, &format!("/api/v3/stages/authenticator/validate/{}/", validate["pk"].as_str().unwrap())).await).await;
    assert_eq!(after["configuration_stages"], json!([]), "{after}");
}

/// A webhook mapping made through the API with `expression`; its pk.
async fn webhook_mapping(app: &TestApp, admin: &Session, name: &str, expression: &str) -> String {
    let body = json!({"name": name, "expression": expression});
    let (status, mapping) = json(app.post(admin, "/api/v3/propertymappings/notification/", body).await).await;
    assert_eq!(status, StatusCode::CREATED, "{mapping}");
    mapping["pk"].as_str().unwrap().to_owned()
}

/// `olga@example.com` (created here) asks the flow `slug` to send a code to `number`.
async fn ask_for_code(app: &TestApp, slug: &str, number: &str) -> Value {
    let mut olga = Browser::new(app);
    olga.sign_in("olga@example.com", PASSWORD).await;
    olga.get(&executor(slug)).await;
    let (_, challenge) = olga.post(&executor(slug), json!({"component": "ak-stage-authenticator-sms", "phone_number": number})).await;
    challenge
}

#[tokio::test]
async fn a_webhook_mapping_shapes_what_the_provider_receives_but_never_where_twilio_sends() {
    let (app, provider, admin) = spawn_with_provider().await;
    let generic = webhook_mapping(
        &app,
        &admin,
        "chat-relay",
        r#"{"recipient": payload.To, "text": "Hello " + user.username + ", your code is " + code, "via": client.user_agent != ""}"#,
    )
    .await;
    let twilio =
        webhook_mapping(&app, &admin, "twilio-text", r#"{"Body": "Code: " + code, "To": "+15005550006", "From": stage.from_number}"#).await;
    sms_setup_flow(
        &app,
        &admin,
        "generic-setup",
        json!({"provider": "generic", "account_sid": format!("{}/relay", provider.base), "from_number": "G", "auth": "t", "auth_type": "bearer", "mapping": generic}),
    )
    .await;
    sms_setup_flow(
        &app,
        &admin,
        "twilio-setup",
        json!({"account_sid": "AC1", "from_number": "+15005550001", "auth": "t", "mapping": twilio}),
    )
    .await;
    app.user("olga@example.com", |_| {}).await;

    let asked = ask_for_code(&app, "generic-setup", "+41446681800").await;
    assert_eq!(asked["phone_number_required"], false, "{asked}");
    let sent: Value = serde_json::from_str(&provider.requests()[0].body).unwrap();
    let code = sent["text"].as_str().unwrap().rsplit(' ').next().unwrap().to_owned();
    assert_eq!(code.len(), 6, "{sent}");
    assert_eq!(sent, json!({"recipient": "+41446681800", "text": format!("Hello olga@example.com, your code is {code}"), "via": true}));

    ask_for_code(&app, "twilio-setup", "+41446681801").await;
    let form: Vec<(String, String)> = form_urlencoded::parse(provider.requests()[1].body.as_bytes()).into_owned().collect();
    assert!(form.contains(&("To".into(), "+41446681801".into())), "a mapping cannot send the code elsewhere: {form:?}");
    assert!(!form.iter().any(|(name, value)| name == "To" && value == "+15005550006"), "{form:?}");
    assert!(form.contains(&("From".into(), "+15005550001".into())), "{form:?}");
    assert!(form.iter().any(|(name, value)| name == "Body" && value.starts_with("Code: ")), "{form:?}");
}

#[tokio::test]
async fn a_webhook_mapping_that_fails_sends_nothing_and_is_recorded_and_a_deleted_one_leaves_its_stages() {
    let (app, provider, admin) = spawn_with_provider().await;
    let failing = webhook_mapping(&app, &admin, "failing", "payload.Body + 1").await;
    let not_an_object = webhook_mapping(&app, &admin, "text", r#""just text " + code"#).await;
    let doomed = webhook_mapping(&app, &admin, "doomed", r#"{"mapped": true}"#).await;
    let mut stages = Vec::new();
    for (slug, mapping) in [("failing-setup", &failing), ("text-setup", &not_an_object), ("doomed-setup", &doomed)] {
        stages.push(
            sms_setup_flow(
                &app,
                &admin,
                slug,
                json!({"provider": "generic", "account_sid": format!("{}/send", provider.base), "from_number": "G", "auth": "t", "mapping": mapping}),
            )
            .await,
        );
    }
    app.user("olga@example.com", |_| {}).await;
    for slug in ["failing-setup", "text-setup"] {
        let refused = ask_for_code(&app, slug, "+41446681800").await;
        assert!(errors(&refused, "phone_number").contains("We could not send the code. Try again later."), "{slug}: {refused}");
    }
    assert!(provider.requests().is_empty(), "nothing is sent when the mapping fails");
    let recorded = events(&app, "configuration_error").await;
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert!(recorded.iter().all(|e| e["context"]["message"] == "Error evaluating the SMS webhook mapping"), "{recorded:?}");
    let errors_seen: Vec<String> = recorded.iter().map(|e| e["context"]["error"].as_str().unwrap_or_default().to_owned()).collect();
    assert!(errors_seen.iter().any(|e| e.contains("must give an object")), "{errors_seen:?}");
    // The evaluator's error repeats the message with the code: the audit trail keeps it masked.
    assert!(errors_seen.iter().any(|e| e.contains("Unsupported binary operator")), "{errors_seen:?}");
    assert!(errors_seen.iter().all(|e| !holds_a_code(e)), "a code reached the audit trail: {errors_seen:?}");

    // Deleting a mapping clears it from the stages naming it (authentik's SET_NULL): they send
    // the default payload again and stay editable.
    let (_, used) = json(app.get(&admin, &format!("/api/v3/propertymappings/notification/{doomed}/used_by/")).await).await;
    assert_eq!(used.as_array().map(Vec::len), Some(1), "{used}");
    assert_eq!((&used[0]["name"], &used[0]["action"]), (&json!("doomed-setup-stage"), &json!("set_null")), "{used}");
    assert_eq!(app.delete(&admin, &format!("/api/v3/propertymappings/notification/{doomed}/")).await.status(), StatusCode::NO_CONTENT);
    let stage_path = format!("/api/v3/stages/authenticator/sms/{}/", stages[2]["pk"].as_str().unwrap());
    let (status, stage) = json(app.patch(&admin, &stage_path, json!({"from_number": "Gatehouse"})).await).await;
    assert_eq!((status, &stage["mapping"]), (StatusCode::OK, &Value::Null), "{stage}");
    let asked = ask_for_code(&app, "doomed-setup", "+41446681800").await;
    assert_eq!(asked["phone_number_required"], false, "{asked}");
    let sent: Value = serde_json::from_str(&provider.requests()[0].body).unwrap();
    assert_eq!(sent["From"], "Gatehouse", "{sent}");
}

/// Whether `text` holds six digits in a row (a code).
fn holds_a_code(text: &str) -> bool {
    text.as_bytes().windows(6).any(|w| w.iter().all(u8::is_ascii_digit))
}

#[tokio::test]
async fn webhook_mappings_are_checked_and_need_their_permissions() {
    let (app, _provider, admin) = spawn_with_provider().await;
    for (body, field) in [
        (json!({"name": "x", "expression": "1 +"}), "expression"),
        (json!({"name": "x", "expression": ""}), "expression"),
        (json!({"name": "x", "expression": "1 + ".repeat(2000) + "1"}), "expression"),
        (json!({"name": "", "expression": "payload"}), "name"),
        (json!({"expression": "payload"}), "name"),
        (json!({"name": "x", "expression": "payload", "surprise": 1}), "surprise"),
    ] {
        assert_field_error(app.post(&admin, "/api/v3/propertymappings/notification/", body).await, field).await;
    }
    let pk = webhook_mapping(&app, &admin, "first", "payload").await;
    assert_field_error(
        app.post(&admin, "/api/v3/propertymappings/notification/", json!({"name": "first", "expression": "payload"})).await,
        "name",
    )
    .await;
    let path = format!("/api/v3/propertymappings/notification/{pk}/");
    let (status, changed) = json(app.patch(&admin, &path, json!({"expression": "{'Body': code}"})).await).await;
    assert_eq!(
        (status, &changed["name"], &changed["expression"]),
        (StatusCode::OK, &json!("first"), &json!("{'Body': code}")),
        "{changed}"
    );
    assert_field_error(app.put(&admin, &path, json!({"name": "first"})).await, "expression").await;
    let (_, listed) = json(app.get(&admin, "/api/v3/propertymappings/notification/?search=fir").await).await;
    assert_eq!(listed["pagination"]["count"], 1, "{listed}");
    let missing = uuid::Uuid::new_v4();
    let body = json!({"name": "with-missing", "account_sid": "AC1", "from_number": "+15005550001", "auth": "t", "mapping": missing});
    assert_field_error(app.post(&admin, "/api/v3/stages/authenticator/sms/", body).await, "mapping").await;

    app.user_with("viewer@example.com", &["authentik_events.view_notificationwebhookmapping"]).await;
    let viewer = app.sign_in("viewer@example.com").await;
    let (status, _) = json(app.get(&viewer, &path).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_forbidden(app.patch(&viewer, &path, json!({"name": "mine"})).await).await;
    assert_forbidden(app.delete(&viewer, &path).await).await;
    assert_forbidden(app.post(&viewer, "/api/v3/propertymappings/notification/", json!({"name": "n", "expression": "payload"})).await)
        .await;
    app.user("nobody@example.com", |_| {}).await;
    let nobody = app.sign_in("nobody@example.com").await;
    assert_forbidden(app.get(&nobody, "/api/v3/propertymappings/notification/").await).await;
    let (_, after) = json(app.get(&admin, &path).await).await;
    assert_eq!(after["name"], "first", "a refused change left it as it was");
}

/// The tasks that sent codes, newest first, with their logs.
async fn code_tasks(app: &TestApp, admin: &Session) -> Vec<Value> {
    let (status, list) = json(app.get(admin, "/api/v3/tasks/tasks/?actor_name=gatehouse.send_code&ordering=-mtime").await).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["results"].as_array().unwrap().clone()
}

/// Whether a task logged an entry containing `text`.
fn logged(task: &Value, text: &str) -> bool {
    task["logs"].as_array().unwrap().iter().any(|entry| entry["event"].as_str().unwrap_or_default().contains(text))
}

/// Polls `check` until it holds, failing after ten seconds.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn duration(text: &str) -> gatehouse_types::DurationString {
    gatehouse_types::DurationString::parse(text).unwrap()
}

#[tokio::test]
async fn a_provider_that_answers_too_late_is_not_asked_again_and_its_code_still_works() {
    let (app, provider, admin) = spawn_with_provider_and(|config| config.sms.send_timeout = duration("seconds=1")).await;
    app.run_worker().await;
    sms_setup_flow(
        &app,
        &admin,
        "phone-setup",
        json!({"provider": "twilio", "account_sid": "AC1", "from_number": "+15005550006", "auth": "t"}),
    )
    .await;
    *provider.delay.lock().unwrap() = std::time::Duration::from_secs(3);
    let mut olga = person_at(&app, "olga@example.com", "phone-setup").await;
    // The provider may have taken the message: the code is kept, and the person asked for it.
    let (_, challenge) =
        olga.post(&executor("phone-setup"), json!({"component": "ak-stage-authenticator-sms", "phone_number": "+41446681800"})).await;
    assert_eq!(challenge["phone_number_required"], false, "{challenge}");
    eventually("the failure is recorded", || async { !events(&app, "configuration_error").await.is_empty() }).await;
    let recorded = events(&app, "configuration_error").await;
    assert_eq!(recorded[0]["context"]["response"], "the provider did not answer in time");
    // Asking again could send the code twice.
    eventually("the task ends", || async { code_tasks(&app, &admin).await[0]["state"] == "rejected" }).await;
    assert_eq!(code_tasks(&app, &admin).await[0]["retries"], 0);
    assert_eq!(provider.requests().len(), 1);
    let (_, done) =
        olga.post(&executor("phone-setup"), json!({"component": "ak-stage-authenticator-sms", "code": provider.last_code()})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
}

#[tokio::test]
async fn a_code_still_on_its_way_when_the_request_stops_waiting_is_retried_by_the_queue_and_sent_once() {
    let (app, provider, admin) = spawn_with_provider_and(|config| {
        config.sms.send_timeout = duration("seconds=1");
        config.tasks.retry_min_backoff = duration("milliseconds=50");
    })
    .await;
    sms_setup_flow(&app, &admin, "phone-setup", generic_webhook(&provider)).await;
    let mut olga = person_at(&app, "olga@example.com", "phone-setup").await;
    // No worker is free yet: the request stops waiting and says the code is on its way.
    let (_, challenge) =
        olga.post(&executor("phone-setup"), json!({"component": "ak-stage-authenticator-sms", "phone_number": "+41446681800"})).await;
    assert_eq!(challenge["phone_number_required"], false, "{challenge}");
    assert!(provider.requests().is_empty());

    // The provider asks to try later once; the queue does, and the code arrives once.
    provider.answers.lock().unwrap().push_back(503);
    app.run_worker().await;
    eventually("the code is sent", || async { code_tasks(&app, &admin).await[0]["state"] == "done" }).await;
    assert_eq!(provider.requests().len(), 2);
    assert_eq!(events(&app, "configuration_error").await.len(), 1);
    let code = provider.last_code();
    let listed = serde_json::to_string(&code_tasks(&app, &admin).await).unwrap();
    assert!(!listed.contains(&code) && !listed.contains("41446681800"), "a queued letter is sealed: {listed}");

    let (_, done) = olga.post(&executor("phone-setup"), json!({"component": "ak-stage-authenticator-sms", "code": code})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
}

#[tokio::test]
async fn a_worker_stopped_while_handing_a_code_over_never_sends_it_again() {
    let (app, provider, admin) = spawn_with_provider_and(|config| {
        config.sms.send_timeout = duration("seconds=5");
        config.tasks.shutdown_deadline = duration("milliseconds=50");
    })
    .await;
    app.run_worker().await;
    sms_setup_flow(&app, &admin, "phone-setup", generic_webhook(&provider)).await;
    *provider.delay.lock().unwrap() = std::time::Duration::from_secs(3);
    let mut olga = person_at(&app, "olga@example.com", "phone-setup").await;
    let path = executor("phone-setup");
    let asking = olga.post(&path, json!({"component": "ak-stage-authenticator-sms", "phone_number": "+41446681800"}));
    let crash = async {
        eventually("the provider is asked", || async { !provider.requests().is_empty() }).await;
        // The worker stops mid-send: its task goes back to the queue, and another worker takes it.
        app.stop_workers().await;
        app.run_worker().await;
    };
    let ((_, challenge), ()) = tokio::join!(asking, crash);
    // Whether the cut-off attempt reached the provider is unknown: the code is kept.
    assert_eq!(challenge["phone_number_required"], false, "{challenge}");
    eventually("the second attempt ends", || async { code_tasks(&app, &admin).await[0]["state"] == "rejected" }).await;
    let tasks = code_tasks(&app, &admin).await;
    assert!(logged(&tasks[0], "not sent twice"), "{tasks:?}");
    assert_eq!(provider.requests().len(), 1);
}
