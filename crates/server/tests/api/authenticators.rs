//! Authenticator apps (TOTP) and recovery codes: setting them up through their stages, signing
//! in with them after the password, each code accepted once, and their device APIs. The app is
//! played by `totp-rs` reading the `otpauth://` address the server hands out, as a phone's app
//! would.

use reqwest::StatusCode;
use sea_orm::{EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::flows::{Browser, SIGN_IN};
use crate::mfa::{errors, executor, password_step, require_mfa};
use crate::support::*;

const VALIDATE: &str = "ak-stage-authenticator-validate";

/// A setup stage of `kind` (`sms`, `totp` or `static`) with `settings`, bound alone to a new
/// configuration flow `slug`.
pub(crate) async fn setup_flow(app: &TestApp, admin: &Session, slug: &str, kind: &str, settings: Value) -> Value {
    let mut body = json!({"name": format!("{slug}-stage")});
    body.as_object_mut().unwrap().extend(settings.as_object().unwrap().clone());
    let (status, stage) = json(app.post(admin, &format!("/api/v3/stages/authenticator/{kind}/"), body).await).await;
    assert_eq!(status, StatusCode::CREATED, "{stage}");
    let flow = json!({"name": slug, "slug": slug, "title": "Set up", "designation": "stage_configuration", "authentication": "require_authenticated"});
    let (status, flow) = json(app.post(admin, "/api/v3/flows/instances/", flow).await).await;
    assert_eq!(status, StatusCode::CREATED, "{flow}");
    let binding = json!({"target": flow["pk"], "stage": stage["pk"], "order": 0});
    let (status, binding) = json(app.post(admin, "/api/v3/flows/bindings/", binding).await).await;
    assert_eq!(status, StatusCode::CREATED, "{binding}");
    stage
}

async fn spawn() -> (TestApp, Session) {
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    let admin = app.sign_in("admin@example.com").await;
    (app, admin)
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// The app a person scanned the code into.
struct App(totp_rs::TOTP);

impl App {
    fn scan(config_url: &str) -> Self {
        let totp = totp_rs::TOTP::from_url(config_url).unwrap_or_else(|e| panic!("{config_url}: {e}"));
        remember_secret(&totp.get_secret_base32());
        Self(totp)
    }
    /// The code `steps` time steps from now.
    fn code(&self, steps: i64) -> String {
        self.0.generate(now().checked_add_signed(steps * 30).unwrap())
    }
}

/// `email` sets up an authenticator app through the flow `slug` and confirms it.
async fn set_up_app(app: &TestApp, email: &str, slug: &str) -> App {
    let mut browser = Browser::new(app);
    browser.sign_in(email, PASSWORD).await;
    let (status, challenge) = browser.get(&executor(slug)).await;
    assert_eq!((status, challenge["component"].as_str()), (StatusCode::OK, Some("ak-stage-authenticator-totp")), "{challenge}");
    let authenticator = App::scan(challenge["config_url"].as_str().unwrap());
    let (_, done) = browser.post(&executor(slug), json!({"component": "ak-stage-authenticator-totp", "code": authenticator.code(0)})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
    authenticator
}

/// `email` sets up recovery codes through the flow `slug`; returns them.
async fn set_up_codes(app: &TestApp, email: &str, slug: &str) -> Vec<String> {
    set_up_codes_signing_in_with(app, email, slug, None).await
}

/// As [`set_up_codes`], answering the sign-in's validation stage with `second_factor`.
async fn set_up_codes_signing_in_with(app: &TestApp, email: &str, slug: &str, second_factor: Option<&str>) -> Vec<String> {
    let mut browser = Browser::new(app);
    let signed_in = browser.sign_in(email, PASSWORD).await;
    if let Some(code) = second_factor {
        assert_eq!(signed_in["component"], VALIDATE, "{signed_in}");
        let (_, done) = browser.post(SIGN_IN, json!({"component": VALIDATE, "code": code})).await;
        assert_eq!(done["component"], "xak-flow-redirect", "{done}");
    }
    let (_, challenge) = browser.get(&executor(slug)).await;
    assert_eq!(challenge["component"], "ak-stage-authenticator-static", "{challenge}");
    let codes: Vec<String> = challenge["codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    codes.iter().for_each(|code| remember_secret(code));
    let (_, done) = browser.post(&executor(slug), json!({"component": "ak-stage-authenticator-static"})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
    codes
}

/// A server where olga@example.com has an authenticator app (set up through the flow
/// `app-setup`) and piet@example.com has no device.
async fn olga_with_an_app_and_piet_without() -> (TestApp, Session) {
    let (app, admin) = spawn().await;
    setup_flow(&app, &admin, "app-setup", "totp", json!({})).await;
    app.user("olga@example.com", |_| {}).await;
    app.user("piet@example.com", |_| {}).await;
    set_up_app(&app, "olga@example.com", "app-setup").await;
    (app, admin)
}

/// Signs `email` in with the password, then answers the validation stage with `code`.
async fn sign_in_with(app: &TestApp, email: &str, code: &str) -> (Value, StatusCode) {
    let mut browser = Browser::new(app);
    let asked = password_step(&mut browser, email).await;
    assert_eq!(asked["component"], VALIDATE, "{asked}");
    let (_, answer) = browser.post(SIGN_IN, json!({"component": VALIDATE, "code": code})).await;
    (answer, browser.me().await)
}

#[tokio::test]
async fn an_authenticator_app_is_set_up_with_a_code_and_each_code_signs_in_once() {
    let (app, admin) = spawn().await;
    setup_flow(&app, &admin, "app-setup", "totp", json!({"digits": "6"})).await;
    app.user("olga@example.com", |_| {}).await;

    // Setting up: the same secret while the run lasts, a wrong code refused, the right one kept.
    let mut olga = Browser::new(&app);
    olga.sign_in("olga@example.com", PASSWORD).await;
    let (_, first) = olga.get(&executor("app-setup")).await;
    let (_, again) = olga.get(&executor("app-setup")).await;
    assert_eq!(first["config_url"], again["config_url"], "reloading shows the code already scanned");
    let url = first["config_url"].as_str().unwrap();
    assert!(url.starts_with("otpauth://totp/Gatehouse:olga%40example.com?"), "{url}");
    let authenticator = App::scan(url);
    let wrong = if authenticator.code(0) == "000000" { "111111" } else { "000000" };
    let (_, refused) = olga.post(&executor("app-setup"), json!({"component": "ak-stage-authenticator-totp", "code": wrong})).await;
    assert!(errors(&refused, "code").contains("Code does not match"), "{refused}");
    let confirming = authenticator.code(0);
    let (_, done) = olga.post(&executor("app-setup"), json!({"component": "ak-stage-authenticator-totp", "code": confirming})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
    let (_, devices) = olga.get("/api/v3/authenticators/totp/").await;
    assert_eq!(devices["pagination"]["count"], 1, "{devices}");
    assert_eq!(devices["results"][0]["name"], "TOTP Device");
    let device = devices["results"][0]["pk"].clone();
    let stored =
        gatehouse::mfa::entities::otp_device::Entity::find_by_id(device.as_i64().unwrap()).one(&app.state.db).await.unwrap().unwrap();
    let sealed = stored.secret_sealed.unwrap();
    let opened = gatehouse::mfa::totp::TotpSecret::open(&app.state.secret, stored.user_id, &sealed).unwrap();
    assert_eq!(opened.base32(), authenticator.0.get_secret_base32(), "the kept secret is the one offered");
    assert!(gatehouse::mfa::totp::TotpSecret::open(&app.state.secret, stored.user_id + 1, &sealed).is_err(), "sealed for her account");
    let other_secret = gatehouse::secret::ServerSecret::from_bytes(b"another server's secret key, long enough");
    assert!(gatehouse::mfa::totp::TotpSecret::open(&other_secret, stored.user_id, &sealed).is_err(), "sealed with the server secret");

    require_mfa(&app, &admin, json!({"device_classes": ["totp"], "not_configured_action": "deny"})).await;
    let mut browser = Browser::new(&app);
    let asked = password_step(&mut browser, "olga@example.com").await;
    assert_eq!(asked["device_challenges"][0]["device_class"], "totp", "{asked}");
    assert_eq!(asked["device_challenges"][0]["device_uid"], device.to_string());
    // The code that confirmed the app was taken then, and does not sign in now.
    let (_, replayed) = browser.post(SIGN_IN, json!({"component": VALIDATE, "code": confirming})).await;
    assert!(errors(&replayed, "code").contains("used already"), "{replayed}");
    assert_eq!(browser.me().await, StatusCode::UNAUTHORIZED);
    let next = authenticator.code(1);
    let (_, done) = browser.post(SIGN_IN, json!({"component": VALIDATE, "code": next})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "the next step's code signs in: {done}");
    assert_eq!(browser.me().await, StatusCode::OK);

    // Once used, that code is refused in every other run.
    let (answer, me) = sign_in_with(&app, "olga@example.com", &next).await;
    assert!(errors(&answer, "code").contains("used already"), "{answer}");
    assert_eq!(me, StatusCode::UNAUTHORIZED);
    let (_, all) = olga.get("/api/v3/authenticators/all/").await;
    let listed = all.as_array().unwrap().iter().find(|d| d["type"] == "authentik_stages_authenticator_totp.TOTPDevice").unwrap();
    assert!(listed["last_used"].is_string(), "the use is noted: {all}");
    assert_eq!(listed["meta_model_name"], "authentik_stages_authenticator_totp.totpdevice");
}

/// Two sign-ins with the same code at once: one gets in.
#[tokio::test]
async fn the_same_app_code_sent_twice_at_once_signs_in_once() {
    let (app, admin) = spawn().await;
    setup_flow(&app, &admin, "app-setup", "totp", json!({})).await;
    app.user("olga@example.com", |_| {}).await;
    let authenticator = set_up_app(&app, "olga@example.com", "app-setup").await;
    require_mfa(&app, &admin, json!({"device_classes": ["totp"], "not_configured_action": "deny"})).await;
    let mut first = Browser::new(&app);
    let mut second = Browser::new(&app);
    password_step(&mut first, "olga@example.com").await;
    password_step(&mut second, "olga@example.com").await;
    let code = authenticator.code(1);
    let answer = json!({"component": VALIDATE, "code": code});
    let ((_, one), (_, two)) = tokio::join!(first.post(SIGN_IN, answer.clone()), second.post(SIGN_IN, answer.clone()));
    let signed_in = [&one, &two].iter().filter(|c| c["component"] == "xak-flow-redirect").count();
    assert_eq!(signed_in, 1, "{one} {two}");
}

#[tokio::test]
async fn recovery_codes_are_shown_until_saved_kept_as_digests_and_each_works_once() {
    let (app, admin) = spawn().await;
    let stage = setup_flow(&app, &admin, "codes-setup", "static", json!({})).await;
    assert_eq!((stage["token_count"].as_i64(), stage["token_length"].as_i64()), (Some(10), Some(12)), "{stage}");
    app.user("olga@example.com", |_| {}).await;

    let mut olga = Browser::new(&app);
    olga.sign_in("olga@example.com", PASSWORD).await;
    let (_, shown) = olga.get(&executor("codes-setup")).await;
    let (_, reloaded) = olga.get(&executor("codes-setup")).await;
    assert_eq!(shown["codes"], reloaded["codes"], "the same codes until they are saved");
    let codes: Vec<String> = shown["codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    codes.iter().for_each(|code| remember_secret(code));
    assert_eq!(codes.len(), 10);
    assert!(codes.iter().all(|c| c.len() == 12 && !c.contains(['0', '1', 'i', 'l', 'o'])), "{codes:?}");
    let (_, done) = olga.post(&executor("codes-setup"), json!({"component": "ak-stage-authenticator-static"})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
    let (_, devices) = olga.get("/api/v3/authenticators/static/").await;
    assert_eq!(devices["results"][0]["token_set"], json!([]), "codes are never shown again: {devices}");
    let kept = gatehouse::mfa::entities::static_token::Entity::find().all(&app.state.db).await.unwrap();
    assert_eq!(kept.len(), 10);
    assert!(kept.iter().all(|t| !codes.contains(&t.digest)), "only digests are kept");

    require_mfa(&app, &admin, json!({"device_classes": ["static"], "not_configured_action": "deny"})).await;
    // Typed as people type them: upper case, with a dash.
    let typed = format!("{}-{}", codes[3][..6].to_uppercase(), &codes[3][6..]);
    let (done, me) = sign_in_with(&app, "olga@example.com", &typed).await;
    assert_eq!((done["component"].as_str(), me), (Some("xak-flow-redirect"), StatusCode::OK), "{done}");
    let (again, me) = sign_in_with(&app, "olga@example.com", &codes[3]).await;
    assert!(errors(&again, "code").contains("Code does not match"), "a code works once: {again}");
    assert_eq!(me, StatusCode::UNAUTHORIZED);
    assert_eq!(gatehouse::mfa::entities::static_token::Entity::find().all(&app.state.db).await.unwrap().len(), 9);

    // Setting up again replaces the set: the old codes stop working.
    let new_codes = set_up_codes_signing_in_with(&app, "olga@example.com", "codes-setup", Some(&codes[5])).await;
    let (old, me) = sign_in_with(&app, "olga@example.com", &codes[4]).await;
    assert!(errors(&old, "code").contains("Code does not match"), "{old}");
    assert_eq!(me, StatusCode::UNAUTHORIZED);
    let (fresh, me) = sign_in_with(&app, "olga@example.com", &new_codes[0]).await;
    assert_eq!((fresh["component"].as_str(), me), (Some("xak-flow-redirect"), StatusCode::OK), "{fresh}");
}

#[tokio::test]
async fn a_recovery_code_set_with_no_code_left_is_not_offered_at_sign_in() {
    let (app, admin) = spawn().await;
    setup_flow(&app, &admin, "codes-setup", "static", json!({})).await;
    app.user("olga@example.com", |_| {}).await;
    app.user("ivan@example.com", |_| {}).await;
    set_up_codes_signing_in_with(&app, "olga@example.com", "codes-setup", None).await;
    set_up_codes_signing_in_with(&app, "ivan@example.com", "codes-setup", None).await;
    require_mfa(&app, &admin, json!({"device_classes": ["static"], "not_configured_action": "deny"})).await;
    let mut browser = Browser::new(&app);
    let asked = password_step(&mut browser, "olga@example.com").await;
    assert_eq!(asked["component"], VALIDATE, "a set with codes left is offered: {asked}");
    assert_eq!(asked["device_challenges"][0]["device_class"], "static", "{asked}");
    // Every code of olga's set used (removed here rather than typed ten times); ivan keeps his.
    let olga_set: i64 = asked["device_challenges"][0]["device_uid"].as_str().unwrap().parse().unwrap();
    use sea_orm::ColumnTrait;
    gatehouse::mfa::entities::static_token::Entity::delete_many()
        .filter(gatehouse::mfa::entities::static_token::Column::DeviceId.eq(olga_set))
        .exec(&app.state.db)
        .await
        .unwrap();
    let mut browser = Browser::new(&app);
    let refused = password_step(&mut browser, "olga@example.com").await;
    assert_eq!(refused["component"], "ak-stage-access-denied", "an empty set is no device: {refused}");
    assert_eq!(browser.me().await, StatusCode::UNAUTHORIZED);
    let mut browser = Browser::new(&app);
    assert_eq!(password_step(&mut browser, "ivan@example.com").await["component"], VALIDATE, "another set with codes left still is");
}

#[tokio::test]
async fn a_code_check_that_fails_part_way_still_counts_the_guess() {
    let (app, admin) = spawn().await;
    setup_flow(&app, &admin, "app-setup", "totp", json!({})).await;
    app.user("olga@example.com", |_| {}).await;
    set_up_app(&app, "olga@example.com", "app-setup").await;
    require_mfa(&app, &admin, json!({"device_classes": ["totp"], "not_configured_action": "deny"})).await;
    // The app's secret no longer opens (a restored database with another secret key, say): every
    // answer fails while it is compared, which must not make guessing free.
    gatehouse::mfa::entities::otp_device::Entity::update_many()
        .col_expr(gatehouse::mfa::entities::otp_device::Column::SecretSealed, sea_orm::sea_query::Expr::value("not-a-sealed-secret"))
        .exec(&app.state.db)
        .await
        .unwrap();
    let mut browser = Browser::new(&app);
    password_step(&mut browser, "olga@example.com").await;
    let mut refused = String::new();
    for _ in 0..10 {
        let (_, answer) = browser.post(SIGN_IN, json!({"component": VALIDATE, "code": "123456"})).await;
        refused = errors(&answer, "code");
        if refused.contains("Too many wrong codes") {
            break;
        }
    }
    assert!(refused.contains("Too many wrong codes"), "{refused}");
}

/// Wrong codes sent at once from many runs, through two server processes, get no more
/// comparisons than the same codes one after another would: each is let through and counted
/// under the account's lock, and each compared one is counted.
#[tokio::test]
async fn concurrent_wrong_codes_through_two_processes_stay_within_the_code_limit() {
    let (app, admin) = spawn().await;
    setup_flow(&app, &admin, "app-setup", "totp", json!({})).await;
    let olga = app.user("olga@example.com", |_| {}).await;
    let authenticator = set_up_app(&app, "olga@example.com", "app-setup").await;
    let second = TestApp::spawn_sharing(&app, |_| {}).await;
    let mut browsers = Vec::new();
    for run in 0..24 {
        let mut browser = Browser::new(if run % 2 == 0 { &app } else { &second });
        let asked = password_step(&mut browser, "olga@example.com").await;
        assert_eq!(asked["component"], VALIDATE, "{asked}");
        browsers.push(browser);
    }
    let accepted: Vec<String> = (-1..=1).map(|steps| authenticator.code(steps)).collect();
    let wrong = ["000000", "111111", "222222", "333333"].into_iter().find(|code| !accepted.iter().any(|a| a == code)).unwrap();
    let started = std::time::Instant::now();
    let answers = futures_util::future::join_all(
        browsers.iter_mut().map(|browser| async move { browser.post(SIGN_IN, json!({"component": VALIDATE, "code": wrong})).await.1 }),
    )
    .await;
    let elapsed = started.elapsed();
    let refusals: Vec<String> = answers.iter().map(|answer| errors(answer, "code")).collect();
    let compared = refusals.iter().filter(|refusal| refusal.contains("Code does not match")).count();
    let throttled = refusals.iter().filter(|refusal| refusal.contains("Too many wrong codes")).count();
    assert_eq!(compared + throttled, answers.len(), "every answer is compared or throttled: {refusals:?}");
    let allowed = crate::guessing::allowance(5, elapsed);
    assert!((1..=allowed).contains(&compared), "{compared} wrong codes compared in {elapsed:?}, the limit allows {allowed}");
    use gatehouse::credentials::attempts::counter;
    use sea_orm::ColumnTrait;
    let bucket =
        counter::Entity::find().filter(counter::Column::Bucket.eq(format!("codes:user:{}", olga.id))).one(&app.state.db).await.unwrap();
    assert_eq!(bucket.map(|row| row.failures), Some(i32::try_from(compared).unwrap()), "each compared code is counted once");
}

#[tokio::test]
async fn wrong_app_and_recovery_codes_count_toward_one_limit_per_account() {
    let (app, admin) = spawn().await;
    setup_flow(&app, &admin, "app-setup", "totp", json!({})).await;
    setup_flow(&app, &admin, "codes-setup", "static", json!({})).await;
    app.user("olga@example.com", |_| {}).await;
    let authenticator = set_up_app(&app, "olga@example.com", "app-setup").await;
    let codes = set_up_codes_signing_in_with(&app, "olga@example.com", "codes-setup", Some(&authenticator.code(1))).await;
    require_mfa(&app, &admin, json!({"device_classes": ["totp", "static"], "not_configured_action": "deny"})).await;

    let mut browser = Browser::new(&app);
    let asked = password_step(&mut browser, "olga@example.com").await;
    let classes: Vec<&str> = asked["device_challenges"].as_array().unwrap().iter().map(|c| c["device_class"].as_str().unwrap()).collect();
    assert_eq!(classes, ["totp", "static"], "{asked}");
    let wrong_app = if authenticator.code(1) == "000000" { "111111" } else { "000000" };
    let mut refused = String::new();
    for attempt in 0..40 {
        let wrong = if attempt % 2 == 0 { wrong_app.to_owned() } else { "abcdefghjkmn".to_owned() };
        let (_, answer) = browser.post(SIGN_IN, json!({"component": VALIDATE, "code": wrong})).await;
        refused = errors(&answer, "code");
        if refused.contains("Too many wrong codes") {
            break;
        }
        app.state.clock.advance(chrono::TimeDelta::seconds(60));
    }
    assert!(refused.contains("Too many wrong codes"), "{refused}");
    // Past the limit, even a right code waits, in this run and in a new one.
    let (answer, me) = sign_in_with(&app, "olga@example.com", &codes[0]).await;
    assert!(errors(&answer, "code").contains("Too many wrong codes"), "{answer}");
    assert_eq!(me, StatusCode::UNAUTHORIZED);
    assert_eq!(gatehouse::mfa::entities::static_token::Entity::find().all(&app.state.db).await.unwrap().len(), 10, "no code was used up");
}

#[tokio::test]
async fn the_password_alone_does_not_add_an_app_to_an_account_that_has_recovery_codes() {
    let (app, admin) = spawn().await;
    let app_stage = setup_flow(&app, &admin, "app-setup", "totp", json!({})).await;
    setup_flow(&app, &admin, "codes-setup", "static", json!({})).await;
    app.user("olga@example.com", |_| {}).await;
    set_up_codes(&app, "olga@example.com", "codes-setup").await;
    let flow = json!({"name": "password-then-app", "slug": "password-then-app", "title": "Sign in", "designation": "authentication"});
    let (_, flow) = json(app.post(&admin, "/api/v3/flows/instances/", flow).await).await;
    for (name, order) in [("default-authentication-identification", 10), ("default-authentication-password", 20)] {
        let (_, stages) = json(app.get(&admin, &format!("/api/v3/stages/all/?name={name}")).await).await;
        let binding = json!({"target": flow["pk"], "stage": stages["results"][0]["pk"], "order": order});
        assert_eq!(app.post(&admin, "/api/v3/flows/bindings/", binding).await.status(), StatusCode::CREATED);
    }
    let binding = json!({"target": flow["pk"], "stage": app_stage["pk"], "order": 30});
    assert_eq!(app.post(&admin, "/api/v3/flows/bindings/", binding).await.status(), StatusCode::CREATED);
    let mut browser = Browser::new(&app);
    let path = executor("password-then-app");
    browser.get(&path).await;
    browser.post(&path, json!({"component": "ak-stage-identification", "uid_field": "olga@example.com"})).await;
    let (_, answer) = browser.post(&path, json!({"component": "ak-stage-password", "password": PASSWORD})).await;
    assert_eq!(answer["component"], "ak-stage-access-denied", "{answer}");
    let (_, apps) = json(app.get(&admin, "/api/v3/authenticators/admin/totp/").await).await;
    assert_eq!(apps["pagination"]["count"], 0, "{apps}");
}

#[tokio::test]
async fn app_and_recovery_devices_follow_the_access_rule_and_cannot_be_made_by_administrators() {
    let (app, admin) = spawn().await;
    setup_flow(&app, &admin, "app-setup", "totp", json!({})).await;
    setup_flow(&app, &admin, "codes-setup", "static", json!({})).await;
    app.user("olga@example.com", |_| {}).await;
    app.user("piet@example.com", |_| {}).await;
    let olga = app.sign_in("olga@example.com").await;
    let piet = app.sign_in("piet@example.com").await;
    let olgas_app = set_up_app(&app, "olga@example.com", "app-setup").await;
    set_up_app(&app, "admin@example.com", "app-setup").await;
    set_up_codes_signing_in_with(&app, "olga@example.com", "codes-setup", Some(&olgas_app.code(1))).await;
    let (_, mine) = json(app.get(&olga, "/api/v3/authenticators/totp/").await).await;
    let olga_app = mine["results"][0]["pk"].clone();
    // The superuser sees everyone's through the same path; its own is the one it owns.
    let (_, all) = json(app.get(&admin, "/api/v3/authenticators/totp/").await).await;
    let admin_app = all["results"].as_array().unwrap().iter().find(|d| d["user"]["email"] == "admin@example.com").unwrap()["pk"].clone();
    assert_ne!(admin_app, olga_app);

    let (status, renamed) =
        json(app.patch(&olga, &format!("/api/v3/authenticators/totp/{olga_app}/"), json!({"name": "Phone app"})).await).await;
    assert_eq!((status, renamed["name"].as_str()), (StatusCode::OK, Some("Phone app")), "{renamed}");
    assert_eq!(app.get(&piet, &format!("/api/v3/authenticators/totp/{olga_app}/")).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.delete(&piet, &format!("/api/v3/authenticators/totp/{olga_app}/")).await.status(), StatusCode::NOT_FOUND);
    assert_forbidden(app.get(&piet, "/api/v3/authenticators/admin/static/").await).await;
    for kind in ["totp", "static"] {
        let (status, refused) = json(app.post(&admin, &format!("/api/v3/authenticators/admin/{kind}/"), json!({"name": "x"})).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{kind}");
        assert!(refused["non_field_errors"].to_string().contains("set up by their owners"), "{refused}");
    }

    let helpdesk = app
        .user_with(
            "helpdesk@example.com",
            &["authentik_stages_authenticator_totp.view_totpdevice", "authentik_stages_authenticator_totp.delete_totpdevice"],
        )
        .await;
    let helpdesk = app.sign_in(&helpdesk.email).await;
    let (_, listed) = json(app.get(&helpdesk, "/api/v3/authenticators/admin/totp/").await).await;
    assert_eq!(listed["pagination"]["count"], 2, "{listed}");
    assert_forbidden(app.get(&helpdesk, "/api/v3/authenticators/admin/static/").await).await;
    assert_forbidden(app.patch(&helpdesk, &format!("/api/v3/authenticators/admin/totp/{olga_app}/"), json!({"name": "x"})).await).await;
    assert_forbidden(app.delete(&helpdesk, &format!("/api/v3/authenticators/admin/totp/{admin_app}/")).await).await;
    assert_eq!(app.delete(&helpdesk, &format!("/api/v3/authenticators/admin/totp/{olga_app}/")).await.status(), StatusCode::NO_CONTENT);
    let (_, left) = json(app.get(&admin, "/api/v3/authenticators/admin/totp/").await).await;
    assert_eq!(left["pagination"]["count"], 1, "{left}");
    assert_eq!(left["results"][0]["pk"], admin_app);
    // Her recovery codes stay, and she deletes them herself.
    let (_, codes) = json(app.get(&olga, "/api/v3/authenticators/static/").await).await;
    let set = codes["results"][0]["pk"].clone();
    assert_eq!(app.delete(&olga, &format!("/api/v3/authenticators/static/{set}/")).await.status(), StatusCode::NO_CONTENT);
    let tokens = gatehouse::mfa::entities::static_token::Entity::find()
        .filter(sea_orm::ColumnTrait::eq(&gatehouse::mfa::entities::static_token::Column::DeviceId, set.as_i64().unwrap()))
        .all(&app.state.db)
        .await
        .unwrap();
    assert!(tokens.is_empty(), "the codes went with the set");
}

#[tokio::test]
async fn setup_stage_settings_are_checked() {
    let (app, admin) = spawn().await;
    let (status, refused) = json(app.post(&admin, "/api/v3/stages/authenticator/totp/", json!({"name": "t", "digits": "7"})).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused.get("digits").is_some(), "{refused}");
    let (status, refused) =
        json(app.post(&admin, "/api/v3/stages/authenticator/static/", json!({"name": "s", "token_length": 6, "token_count": 0})).await)
            .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused.get("token_length").is_some() && refused.get("token_count").is_some(), "{refused}");
    let (status, stage) = json(app.post(&admin, "/api/v3/stages/authenticator/totp/", json!({"name": "t", "digits": "8"})).await).await;
    assert_eq!((status, stage["digits"].as_str()), (StatusCode::CREATED, Some("8")), "{stage}");
    assert_eq!(stage["component"], "ak-stage-authenticator-totp-form");
    let (status, validate) = json(
        app.post(&admin, "/api/v3/stages/authenticator/validate/", json!({"name": "v", "device_classes": ["totp", "static", "webauthn"]}))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(validate["device_classes"].to_string().contains("webauthn"), "{validate}");
    let (status, validate) = json(
        app.post(
            &admin,
            "/api/v3/stages/authenticator/validate/",
            json!({"name": "v", "device_classes": ["totp"], "not_configured_action": "configure", "configuration_stages": [stage["pk"]]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "a TOTP setup stage can be named: {validate}");
}

/// The user page lists one's own authenticators, renames and removes them by forms carrying the
/// session's token; another person's device is not found there.
#[tokio::test]
async fn the_user_page_renames_and_removes_ones_own_authenticators_only() {
    let (app, admin) = spawn().await;
    setup_flow(&app, &admin, "codes-setup", "static", json!({})).await;
    app.user("olga@example.com", |_| {}).await;
    app.user("piet@example.com", |_| {}).await;
    let piet_session = app.sign_in("piet@example.com").await;
    let olgas_codes = set_up_codes(&app, "olga@example.com", "codes-setup").await;
    set_up_codes(&app, "piet@example.com", "codes-setup").await;
    let (_, piets) = json(app.get(&piet_session, "/api/v3/authenticators/static/").await).await;
    let piets_set = piets["results"][0]["pk"].as_i64().unwrap();

    let mut olga = Browser::new(&app);
    let asked = olga.sign_in("olga@example.com", PASSWORD).await;
    assert_eq!(asked["component"], VALIDATE, "{asked}");
    olga.post(SIGN_IN, json!({"component": VALIDATE, "code": olgas_codes[0]})).await;
    let page = olga.send(app.client.get(app.url("/if/user/"))).await.text().await.unwrap();
    assert!(page.contains("Recovery codes · added"), "{page}");
    let own_form = page.split(r#"action="/if/user/devices/static/"#).nth(1).unwrap();
    let own_set: i64 = own_form.split('/').next().unwrap().parse().unwrap();
    let csrf = page.split(r#"name="csrf" value=""#).nth(1).unwrap().split('"').next().unwrap().to_owned();
    let form =
        |path: String, body: String| app.client.post(app.url(&path)).header("content-type", "application/x-www-form-urlencoded").body(body);
    let forged = olga.send(form(format!("/if/user/devices/static/{own_set}/remove/"), "csrf=forged".into())).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let others = olga.send(form(format!("/if/user/devices/static/{piets_set}/remove/"), format!("csrf={csrf}"))).await;
    assert_eq!(others.status(), StatusCode::NOT_FOUND);
    let wrong_kind = olga.send(form(format!("/if/user/devices/totp/{own_set}/remove/"), format!("csrf={csrf}"))).await;
    assert_eq!(wrong_kind.status(), StatusCode::NOT_FOUND);
    let renamed =
        olga.send(form(format!("/if/user/devices/static/{own_set}/rename/"), format!("csrf={csrf}&name=Paper+in+the+drawer"))).await;
    assert_eq!(renamed.status(), StatusCode::SEE_OTHER);
    let blank = olga.send(form(format!("/if/user/devices/static/{own_set}/rename/"), format!("csrf={csrf}&name=+"))).await;
    assert_eq!(blank.status(), StatusCode::BAD_REQUEST);
    let others = olga.send(form(format!("/if/user/devices/static/{piets_set}/rename/"), format!("csrf={csrf}&name=Mine"))).await;
    assert_eq!(others.status(), StatusCode::NOT_FOUND);
    let names: Vec<String> =
        gatehouse::mfa::entities::otp_device::Entity::find().all(&app.state.db).await.unwrap().into_iter().map(|d| d.name).collect();
    assert!(names.contains(&"Paper in the drawer".to_owned()) && names.contains(&"Static Token".to_owned()), "{names:?}");
    let removed = olga.send(form(format!("/if/user/devices/static/{own_set}/remove/"), format!("csrf={csrf}"))).await;
    assert_eq!(removed.status(), StatusCode::SEE_OTHER);
    let left: Vec<i64> =
        gatehouse::mfa::entities::otp_device::Entity::find().all(&app.state.db).await.unwrap().iter().map(|d| d.id).collect();
    assert_eq!(left, [piets_set], "only her own set went");
}

/// A setup answered twice at once (a double click) makes one device: otherwise each copy of the
/// app would take every code once more, and each copy of a code set would hold every code twice.
#[tokio::test]
async fn a_setup_answered_twice_at_once_makes_one_device() {
    let (app, admin) = spawn().await;
    setup_flow(&app, &admin, "app-setup", "totp", json!({})).await;
    setup_flow(&app, &admin, "codes-setup", "static", json!({})).await;
    app.user("olga@example.com", |_| {}).await;
    let mut olga = Browser::new(&app);
    olga.sign_in("olga@example.com", PASSWORD).await;
    let (_, challenge) = olga.get(&executor("app-setup")).await;
    let authenticator = App::scan(challenge["config_url"].as_str().unwrap());
    let answer = json!({"component": "ak-stage-authenticator-totp", "code": authenticator.code(0)});
    let mut twin = Browser::new(&app);
    twin.cookies = olga.cookies.clone();
    let (app_path, codes_path) = (executor("app-setup"), executor("codes-setup"));
    // Whether the two overlapped is up to the scheduler: each goes on, or hears that the form was
    // answered already; nothing fails, and one goes on.
    let settled = |answer: &(StatusCode, Value)| {
        answer.0 == StatusCode::OK || (answer.0 == StatusCode::BAD_REQUEST && answer.1.to_string().contains("already submitted"))
    };
    let (one, two) = tokio::join!(olga.post(&app_path, answer.clone()), twin.post(&app_path, answer.clone()));
    assert!(settled(&one) && settled(&two), "{one:?} {two:?}");
    assert!([&one.1, &two.1].iter().any(|c| c["component"] == "xak-flow-redirect"), "{one:?} {two:?}");
    olga.get(&codes_path).await;
    let confirm = json!({"component": "ak-stage-authenticator-static"});
    twin.cookies = olga.cookies.clone();
    let (one, two) = tokio::join!(olga.post(&codes_path, confirm.clone()), twin.post(&codes_path, confirm.clone()));
    assert!(settled(&one) && settled(&two), "{one:?} {two:?}");
    let devices = gatehouse::mfa::entities::otp_device::Entity::find().all(&app.state.db).await.unwrap();
    let kinds: Vec<&str> = devices.iter().map(|d| d.kind.as_str()).collect();
    assert_eq!(kinds, ["totp", "static"], "one of each");
    assert_eq!(gatehouse::mfa::entities::static_token::Entity::find().all(&app.state.db).await.unwrap().len(), 10);
}

/// Deleting a setup stage leaves the devices it set up: people keep their second factor.
#[tokio::test]
async fn deleting_a_setup_stage_keeps_the_devices_it_set_up() {
    let (app, admin) = spawn().await;
    let stage = setup_flow(&app, &admin, "app-setup", "totp", json!({})).await;
    app.user("olga@example.com", |_| {}).await;
    let authenticator = set_up_app(&app, "olga@example.com", "app-setup").await;
    let deleted = app.delete(&admin, &format!("/api/v3/stages/authenticator/totp/{}/", stage["pk"].as_str().unwrap())).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    require_mfa(&app, &admin, json!({"device_classes": ["totp"], "not_configured_action": "skip"})).await;
    let mut browser = Browser::new(&app);
    let asked = password_step(&mut browser, "olga@example.com").await;
    assert_eq!(asked["component"], VALIDATE, "she still has her app: {asked}");
    let (_, done) = browser.post(SIGN_IN, json!({"component": VALIDATE, "code": authenticator.code(1)})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
}

/// The user page's forms reach only the signed-in person's own devices, whatever permissions
/// they hold: managing other people's is the admin API's job, under the access rule.
#[tokio::test]
async fn the_user_page_reaches_only_ones_own_devices_even_with_permissions() {
    let (app, admin) = spawn().await;
    setup_flow(&app, &admin, "app-setup", "totp", json!({})).await;
    app.user("olga@example.com", |_| {}).await;
    set_up_app(&app, "olga@example.com", "app-setup").await;
    let olga_app = gatehouse::mfa::entities::otp_device::Entity::find().one(&app.state.db).await.unwrap().unwrap().id;
    let helpdesk = app
        .user_with(
            "helpdesk@example.com",
            &[
                "authentik_stages_authenticator_totp.view_totpdevice",
                "authentik_stages_authenticator_totp.change_totpdevice",
                "authentik_stages_authenticator_totp.delete_totpdevice",
            ],
        )
        .await;
    let mut browser = Browser::new(&app);
    browser.sign_in(&helpdesk.email, PASSWORD).await;
    let page = browser.send(app.client.get(app.url("/if/user/"))).await.text().await.unwrap();
    assert!(!page.contains("TOTP Device"), "her device is not on his page");
    let csrf = page.split(r#"name="csrf" value=""#).nth(1).unwrap().split('"').next().unwrap().to_owned();
    for action in ["rename", "remove"] {
        let request = app
            .client
            .post(app.url(&format!("/if/user/devices/totp/{olga_app}/{action}/")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={csrf}&name=Mine"));
        assert_eq!(browser.send(request).await.status(), StatusCode::NOT_FOUND, "{action}");
    }
    let device = gatehouse::mfa::entities::otp_device::Entity::find_by_id(olga_app).one(&app.state.db).await.unwrap().unwrap();
    assert_eq!(device.name, "TOTP Device");
}

/// An account that proved only its password may set up its first app, and having set it up
/// (which proves the app is at hand) may add recovery codes in the same run.
#[tokio::test]
async fn setting_up_an_app_after_the_password_lets_the_same_run_add_recovery_codes() {
    let (app, admin) = spawn().await;
    let app_stage = setup_flow(&app, &admin, "app-setup", "totp", json!({})).await;
    let codes_stage = setup_flow(&app, &admin, "codes-setup", "static", json!({})).await;
    require_mfa(
        &app,
        &admin,
        json!({"device_classes": ["totp", "static"], "not_configured_action": "configure", "configuration_stages": [app_stage["pk"]]}),
    )
    .await;
    // The codes stage follows the validation stage in the default flow.
    let (_, flows) = json(app.get(&admin, "/api/v3/flows/instances/?slug=default-authentication-flow").await).await;
    let binding = json!({"target": flows["results"][0]["pk"], "stage": codes_stage["pk"], "order": 40});
    assert_eq!(app.post(&admin, "/api/v3/flows/bindings/", binding).await.status(), StatusCode::CREATED);
    app.user("olga@example.com", |_| {}).await;
    let mut browser = Browser::new(&app);
    let asked = password_step(&mut browser, "olga@example.com").await;
    assert_eq!(asked["component"], "ak-stage-authenticator-totp", "sent to set up an app: {asked}");
    let authenticator = App::scan(asked["config_url"].as_str().unwrap());
    let (_, codes) = browser.post(SIGN_IN, json!({"component": "ak-stage-authenticator-totp", "code": authenticator.code(0)})).await;
    assert_eq!(codes["component"], "ak-stage-authenticator-static", "{codes}");
    codes["codes"].as_array().unwrap().iter().for_each(|c| remember_secret(c.as_str().unwrap()));
    let (_, done) = browser.post(SIGN_IN, json!({"component": "ak-stage-authenticator-static"})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
    assert_eq!(browser.me().await, StatusCode::OK);
    assert_eq!(gatehouse::mfa::entities::otp_device::Entity::find().all(&app.state.db).await.unwrap().len(), 2);
}

/// The JSON sign-in takes a password alone only where the sign-in flow would: never from an
/// account with a device to prove, and from nobody once the validation stage requires one of
/// everybody. A wrong password hears the usual answer, so nothing is learned about the account.
#[tokio::test]
async fn the_json_sign_in_takes_no_password_alone_where_the_flow_asks_for_a_second_factor() {
    let (app, admin) = olga_with_an_app_and_piet_without().await;

    let refused = app.try_sign_in("olga@example.com", PASSWORD).await;
    assert!(!refused.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap().contains("gatehouse_session")));
    let (status, body) = json(refused).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["non_field_errors"].to_string().contains("second factor"), "{body}");
    let (status, wrong) = json(app.try_sign_in("olga@example.com", "not her password at all").await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!wrong.to_string().contains("second factor"), "a wrong password learns nothing: {wrong}");
    assert_eq!(app.try_sign_in("piet@example.com", PASSWORD).await.status(), StatusCode::OK, "no device, nothing required");

    require_mfa(&app, &admin, json!({"not_configured_action": "configure"})).await;
    let (status, body) = json(app.try_sign_in("piet@example.com", PASSWORD).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "required of everybody: {body}");
    let mut piet = Browser::new(&app);
    let asked = password_step(&mut piet, "piet@example.com").await;
    assert_eq!(asked["component"], "ak-stage-authenticator-totp", "the flow sends him to set up an app: {asked}");
}

/// The guard behind a double click, whatever the timing: the same offer enrolled twice makes one
/// device, and the second enrolment answers with it.
#[tokio::test]
async fn the_same_offer_enrolled_twice_makes_one_device() {
    use gatehouse::accounts::access::{Actor, Rights};
    use gatehouse::mfa::otp_devices;
    use gatehouse::mfa::totp::{Digits, TotpSecret};
    let (app, admin) = spawn().await;
    let stage = setup_flow(&app, &admin, "app-setup", "totp", json!({})).await;
    let stage = uuid::Uuid::parse_str(stage["pk"].as_str().unwrap()).unwrap();
    let olga = app.user("olga@example.com", |_| {}).await;
    let actor = Actor::user(olga, Rights::default(), Default::default(), None);
    let secret = TotpSecret::generate();
    let first = otp_devices::enrol_totp(&app.state, &actor, stage, "offer-app", &secret, Digits::Six, 1).await.unwrap();
    let second = otp_devices::enrol_totp(&app.state, &actor, stage, "offer-app", &secret, Digits::Six, 1).await.unwrap();
    assert_eq!(first.id, second.id);
    let codes = gatehouse::mfa::recovery::new_codes(10, 12);
    let first = otp_devices::enrol_static(&app.state, &actor, stage, "offer-codes", &codes).await.unwrap();
    let second = otp_devices::enrol_static(&app.state, &actor, stage, "offer-codes", &codes).await.unwrap();
    assert_eq!(first.id, second.id);
    assert_eq!(gatehouse::mfa::entities::otp_device::Entity::find().all(&app.state.db).await.unwrap().len(), 2);
    assert_eq!(gatehouse::mfa::entities::static_token::Entity::find().all(&app.state.db).await.unwrap().len(), 10);
    // Another person's offer id is not hers.
    let piet = app.user("piet@example.com", |_| {}).await;
    let piet = Actor::user(piet, Rights::default(), Default::default(), None);
    let refused = otp_devices::enrol_totp(&app.state, &piet, stage, "offer-app", &secret, Digits::Six, 1).await;
    assert!(refused.is_err(), "{refused:?}");
}

/// An account with an authenticator never signs in with its password alone, whatever flow it
/// runs: one without a validation stage is refused at the login stage.
#[tokio::test]
async fn an_account_with_an_authenticator_never_signs_in_with_the_password_alone_whatever_the_flow() {
    let (app, admin) = olga_with_an_app_and_piet_without().await;
    let flow = json!({"name": "password-only", "slug": "password-only", "title": "Sign in", "designation": "authentication"});
    let (_, flow) = json(app.post(&admin, "/api/v3/flows/instances/", flow).await).await;
    for (name, order) in
        [("default-authentication-identification", 10), ("default-authentication-password", 20), ("default-authentication-login", 30)]
    {
        let (_, stages) = json(app.get(&admin, &format!("/api/v3/stages/all/?name={name}")).await).await;
        let binding = json!({"target": flow["pk"], "stage": stages["results"][0]["pk"], "order": order});
        assert_eq!(app.post(&admin, "/api/v3/flows/bindings/", binding).await.status(), StatusCode::CREATED);
    }
    let through = |email: &'static str| {
        let app = &app;
        async move {
            let mut browser = Browser::new(app);
            let path = executor("password-only");
            browser.get(&path).await;
            browser.post(&path, json!({"component": "ak-stage-identification", "uid_field": email})).await;
            let (_, end) = browser.post(&path, json!({"component": "ak-stage-password", "password": PASSWORD})).await;
            (end, browser.me().await)
        }
    };
    let (end, me) = through("olga@example.com").await;
    assert_eq!(end["component"], "ak-stage-access-denied", "{end}");
    assert!(end["error_message"].to_string().contains("second factor"), "{end}");
    assert_eq!(me, StatusCode::UNAUTHORIZED);
    let (end, me) = through("piet@example.com").await;
    assert_eq!((end["component"].as_str(), me), (Some("xak-flow-redirect"), StatusCode::OK), "no device, no second factor: {end}");
}

/// The login stage trusts what the validation stage of the same request found about the
/// account's devices: a stage that checks only phones, and skips an account without one, must
/// still leave an account with an authenticator app short of a session.
#[tokio::test]
async fn a_validation_stage_that_skips_a_device_class_it_does_not_check_never_lets_the_password_alone_in() {
    let (app, admin) = olga_with_an_app_and_piet_without().await;
    require_mfa(&app, &admin, json!({"device_classes": ["sms"], "not_configured_action": "skip"})).await;

    let end = password_step(&mut Browser::new(&app), "olga@example.com").await;
    assert_eq!(end["component"], "ak-stage-access-denied", "{end}");
    assert!(end["error_message"].to_string().contains("second factor"), "{end}");
    let mut piet = Browser::new(&app);
    let end = password_step(&mut piet, "piet@example.com").await;
    assert_eq!((end["component"].as_str(), piet.me().await), (Some("xak-flow-redirect"), StatusCode::OK), "no device: {end}");
}

/// A sign-in flow made before the validation stage existed gets it at the next start, unless it
/// has a validation stage of its own; either way the stage exists for the "require MFA" switch.
#[tokio::test]
async fn an_older_sign_in_flow_gets_the_validation_stage_at_the_next_start() {
    let (app, admin) = spawn().await;
    let (_, found) = json(app.get(&admin, "/api/v3/stages/authenticator/validate/?name=default-authentication-mfa-validation").await).await;
    let pk = found["results"][0]["pk"].as_str().unwrap().to_owned();
    // An older database: the sign-in flow without it.
    assert_eq!(app.delete(&admin, &format!("/api/v3/stages/authenticator/validate/{pk}/")).await.status(), StatusCode::NO_CONTENT);
    let restarted = TestApp::spawn_sharing(&app, |_| {}).await;
    let (_, found) = json(app.get(&admin, "/api/v3/stages/authenticator/validate/?name=default-authentication-mfa-validation").await).await;
    let stage = &found["results"][0];
    assert_eq!(stage["not_configured_action"], "skip", "{found}");
    assert_eq!(stage["configuration_stages"].as_array().map(Vec::len), Some(1), "names the app setup stage: {stage}");
    let bound: Vec<&str> = stage["flow_set"].as_array().unwrap().iter().map(|f| f["slug"].as_str().unwrap()).collect();
    assert_eq!(bound, ["default-authentication-flow"]);
    drop(restarted);

    // With a validation stage of the flow's own, the default one is made but not bound beside it.
    let own = json!({"name": "own-validation", "device_classes": ["totp"], "not_configured_action": "skip"});
    let (_, own) = json(app.post(&admin, "/api/v3/stages/authenticator/validate/", own).await).await;
    let (_, flows) = json(app.get(&admin, "/api/v3/flows/instances/?slug=default-authentication-flow").await).await;
    let binding = json!({"target": flows["results"][0]["pk"], "stage": own["pk"], "order": 35});
    assert_eq!(app.post(&admin, "/api/v3/flows/bindings/", binding).await.status(), StatusCode::CREATED);
    let pk = stage["pk"].as_str().unwrap().to_owned();
    assert_eq!(app.delete(&admin, &format!("/api/v3/stages/authenticator/validate/{pk}/")).await.status(), StatusCode::NO_CONTENT);
    let _restarted = TestApp::spawn_sharing(&app, |_| {}).await;
    let (_, found) = json(app.get(&admin, "/api/v3/stages/authenticator/validate/?name=default-authentication-mfa-validation").await).await;
    assert_eq!(found["pagination"]["count"], 1, "{found}");
    assert_eq!(found["results"][0]["flow_set"], json!([]), "not bound beside the flow's own: {found}");
}

/// The cookie of a browser that proved `email`'s app at the default validation stage: the
/// browser's memory of the app.
async fn remembered_cookie(app: &TestApp, email: &str, authenticator: &App) -> (String, String) {
    let mut browser = Browser::new(app);
    let asked = password_step(&mut browser, email).await;
    assert_eq!(asked["component"], VALIDATE, "{asked}");
    let (_, done) = browser.post(SIGN_IN, json!({"component": VALIDATE, "code": authenticator.code(1)})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
    browser.cookies.into_iter().find(|(name, _)| name.ends_with("gatehouse_mfa")).expect("the browser remembers the app")
}

/// A browser with no session, carrying `cookie`.
fn browser_with<'a>(app: &'a TestApp, cookie: &(String, String)) -> Browser<'a> {
    let mut browser = Browser::new(app);
    browser.cookies.insert(cookie.0.clone(), cookie.1.clone());
    browser
}

#[tokio::test]
async fn last_auth_threshold_lets_the_same_account_through_in_the_same_browser_only() {
    let (app, admin) = spawn().await;
    setup_flow(&app, &admin, "app-setup", "totp", json!({})).await;
    let olga = app.user("olga@example.com", |_| {}).await;
    app.user("piet@example.com", |_| {}).await;
    let olgas_app = set_up_app(&app, "olga@example.com", "app-setup").await;
    set_up_app(&app, "piet@example.com", "app-setup").await;
    require_mfa(&app, &admin, json!({"device_classes": ["totp"], "not_configured_action": "deny", "last_auth_threshold": "hours=12"}))
        .await;
    let memory = remembered_cookie(&app, "olga@example.com", &olgas_app).await;

    let mut remembered = browser_with(&app, &memory);
    let passed = password_step(&mut remembered, "olga@example.com").await;
    assert_eq!(passed["component"], "xak-flow-redirect", "the remembered app is not asked for again: {passed}");
    assert_eq!(remembered.me().await, StatusCode::OK);

    // The memory vouches for nobody else: another account in the same browser is asked.
    let mut shared = browser_with(&app, &memory);
    let asked = password_step(&mut shared, "piet@example.com").await;
    assert_eq!(asked["component"], VALIDATE, "another account's memory let piet through: {asked}");
    assert_eq!(shared.me().await, StatusCode::UNAUTHORIZED);

    // A forged or altered memory counts for nothing.
    let mut forged = browser_with(&app, &(memory.0.clone(), format!("x{}", memory.1)));
    assert_eq!(password_step(&mut forged, "olga@example.com").await["component"], VALIDATE);

    // Without a threshold, or once the device is gone, the memory no longer lets anyone through.
    require_mfa(&app, &admin, json!({"last_auth_threshold": "seconds=0"})).await;
    assert_eq!(password_step(&mut browser_with(&app, &memory), "olga@example.com").await["component"], VALIDATE);
    require_mfa(&app, &admin, json!({"last_auth_threshold": "hours=12"})).await;
    assert_eq!(password_step(&mut browser_with(&app, &memory), "olga@example.com").await["component"], "xak-flow-redirect");
    // A password reset forgets it too: after a compromise, a copied cookie must not outlive the reset.
    let reset = app.post(&admin, &format!("/api/v3/core/users/{}/set_password/", olga.id), json!({"password": PASSWORD})).await;
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert_eq!(password_step(&mut browser_with(&app, &memory), "olga@example.com").await["component"], VALIDATE);
    let (_, apps) = json(app.get(&admin, "/api/v3/authenticators/admin/totp/").await).await;
    let olgas = apps["results"].as_array().unwrap().iter().find(|d| d["user"]["email"] == "olga@example.com").unwrap()["pk"].clone();
    assert_eq!(app.delete(&admin, &format!("/api/v3/authenticators/admin/totp/{olgas}/")).await.status(), StatusCode::NO_CONTENT);
    let denied = password_step(&mut browser_with(&app, &memory), "olga@example.com").await;
    assert_eq!(denied["component"], "ak-stage-access-denied", "a removed device is not remembered: {denied}");
}

/// A sign-in with an authenticator app through the default flow costs a known number of
/// statements. The password answer: the run with its account (one statement), the guess and its
/// settlement, the account's phones and other devices (to ask for a code), the run's step. The
/// code answer: the run with its account, its apps and recovery codes (no phones: no code was
/// sent), the guess's bucket and the app's time step in one transaction (a right answer is not
/// counted), then the sign-in's writes (last login, session, event) and the run's end.
#[tokio::test]
async fn a_sign_in_with_an_app_takes_a_known_number_of_statements() {
    let (app, admin) = spawn().await;
    setup_flow(&app, &admin, "app-setup", "totp", json!({"digits": "6"})).await;
    for email in ["warm@example.com", "olga@example.com"] {
        app.user(email, |_| {}).await;
    }
    let warm = set_up_app(&app, "warm@example.com", "app-setup").await;
    let olga = set_up_app(&app, "olga@example.com", "app-setup").await;
    let (answer, me) = sign_in_with(&app, "warm@example.com", &warm.code(1)).await;
    assert_eq!(
        (answer["component"].as_str(), me),
        (Some("xak-flow-redirect"), StatusCode::OK),
        "the first sign-in reads the plan: {answer}"
    );

    let statements = || app.state.statements.run();
    let mut browser = Browser::new(&app);
    let before = statements();
    browser.get(SIGN_IN).await;
    browser.post(SIGN_IN, json!({"component": "ak-stage-identification", "uid_field": "olga@example.com"})).await;
    let identified = statements() - before;
    let before = statements();
    let (_, asked) = browser.post(SIGN_IN, json!({"component": "ak-stage-password", "password": PASSWORD})).await;
    assert_eq!(asked["component"], VALIDATE, "{asked}");
    let answered_password = statements() - before;
    let before = statements();
    let (_, done) = browser.post(SIGN_IN, json!({"component": VALIDATE, "code": olga.code(1)})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
    let answered_code = statements() - before;
    assert_eq!((identified, answered_password, answered_code), (2, 6, 8));
    assert_eq!(browser.me().await, StatusCode::OK);
}
