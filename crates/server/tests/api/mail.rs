//! E-mail authenticators: codes sent over SMTP to a local relay that speaks the protocol on
//! loopback (greeting, EHLO, AUTH PLAIN, MAIL, RCPT, DATA), setting an address up through the
//! setup stage, signing in with a code by e-mail, relays that refuse or are not there, and the
//! device APIs.

use std::sync::{Arc, Mutex};

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::flows::{Browser, SIGN_IN, events};
use crate::mfa::{errors, executor, password_step, require_mfa};
use crate::support::*;

const SETUP: &str = "ak-stage-authenticator-email";
const VALIDATE: &str = "ak-stage-authenticator-validate";

/// One message the relay took.
#[derive(Debug, Clone)]
struct Mail {
    /// The `AUTH PLAIN` user name and password, when the client authenticated.
    credentials: Option<(String, String)>,
    recipients: Vec<String>,
    data: String,
}

/// How the relay answers `RCPT TO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mood {
    Accepting,
    Refusing,
}

/// A mail relay on loopback: it records every message and accepts or refuses recipients.
struct Relay {
    port: u16,
    mail: Arc<Mutex<Vec<Mail>>>,
    mood: Arc<Mutex<Mood>>,
}

impl Relay {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mail = Arc::new(Mutex::new(Vec::new()));
        let mood = Arc::new(Mutex::new(Mood::Accepting));
        let (kept, told) = (mail.clone(), mood.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (kept, told) = (kept.clone(), told.clone());
                tokio::spawn(async move { converse(stream, kept, told).await });
            }
        });
        Self { port, mail, mood }
    }

    fn set_mood(&self, mood: Mood) {
        *self.mood.lock().unwrap() = mood;
    }

    fn messages(&self) -> Vec<Mail> {
        self.mail.lock().unwrap().clone()
    }

    /// The code in the last message.
    fn last_code(&self) -> String {
        let last = self.messages().pop().expect("a message was sent");
        let start =
            last.data.find("authenticate in Gatehouse: ").expect("the message carries a code") + "authenticate in Gatehouse: ".len();
        let code: String = last.data[start..].chars().take_while(char::is_ascii_digit).collect();
        assert_eq!(code.len(), 6, "{}", last.data);
        code
    }
}

/// One SMTP conversation, as far as a client sending one message needs it.
async fn converse(stream: tokio::net::TcpStream, kept: Arc<Mutex<Vec<Mail>>>, mood: Arc<Mutex<Mood>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut say = async |text: &str| write.write_all(format!("{text}\r\n").as_bytes()).await.is_ok();
    if !say("220 relay.test ESMTP").await {
        return;
    }
    let mut mail = Mail { credentials: None, recipients: Vec::new(), data: String::new() };
    while let Ok(Some(line)) = lines.next_line().await {
        let upper = line.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            "250-relay.test\r\n250-AUTH PLAIN\r\n250 8BITMIME".to_owned()
        } else if upper.starts_with("AUTH PLAIN ") {
            let decoded = base64::engine::general_purpose::STANDARD.decode(line[11..].trim()).unwrap_or_default();
            let parts: Vec<String> = decoded.split(|b| *b == 0).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
            mail.credentials = Some((parts.get(1).cloned().unwrap_or_default(), parts.get(2).cloned().unwrap_or_default()));
            "235 2.7.0 Authentication successful".to_owned()
        } else if upper.starts_with("MAIL FROM") {
            "250 2.1.0 Ok".to_owned()
        } else if upper.starts_with("RCPT TO") {
            if *mood.lock().unwrap() == Mood::Refusing {
                "550 5.7.1 Relaying denied for +41446681800".to_owned()
            } else {
                mail.recipients.push(line[8..].trim().trim_start_matches('<').trim_end_matches('>').to_owned());
                "250 2.1.5 Ok".to_owned()
            }
        } else if upper == "DATA" {
            if !say("354 End data with <CR><LF>.<CR><LF>").await {
                return;
            }
            while let Ok(Some(line)) = lines.next_line().await {
                if line == "." {
                    break;
                }
                mail.data.push_str(&line);
                mail.data.push('\n');
            }
            kept.lock().unwrap().push(mail.clone());
            "250 2.0.0 Ok: queued".to_owned()
        } else if upper == "QUIT" {
            say("221 2.0.0 Bye").await;
            return;
        } else if upper.starts_with("RSET") || upper.starts_with("NOOP") {
            "250 2.0.0 Ok".to_owned()
        } else {
            "502 5.5.2 Command not recognized".to_owned()
        };
        if !say(&reply).await {
            return;
        }
    }
}

/// A server with a superuser session and a relay; e-mail stages made by `email_setup_flow` use
/// the relay directly, and the server's own relay settings point at it too.
async fn spawn_with_relay() -> (TestApp, Relay, Session) {
    let relay = Relay::start().await;
    let port = relay.port;
    let app = TestApp::spawn_with(|config| {
        config.email.host = "127.0.0.1".into();
        config.email.port = port;
        config.email.from = "Gatehouse <gatehouse@example.com>".into();
    })
    .await;
    app.run_worker().await;
    app.superuser("admin@example.com").await;
    let admin = app.sign_in("admin@example.com").await;
    (app, relay, admin)
}

/// An e-mail setup stage sending through `relay` as `relay-user`, with `settings` on top, bound
/// alone to a new configuration flow `slug`.
async fn email_setup_flow(app: &TestApp, admin: &Session, relay: &Relay, slug: &str, settings: Value) -> Value {
    let mut body = json!({"host": "127.0.0.1", "port": relay.port, "username": "relay-user", "password": "relay-secret-1", "from_address": "Gatehouse <gatehouse@example.com>"});
    body.as_object_mut().unwrap().extend(settings.as_object().unwrap().clone());
    crate::authenticators::setup_flow(app, admin, slug, "email", body).await
}

/// `email` signs in and sets up its address through the flow `slug`; returns the device's id.
async fn set_up_address(app: &TestApp, relay: &Relay, email: &str, slug: &str) -> i64 {
    let mut browser = Browser::new(app);
    browser.sign_in(email, PASSWORD).await;
    browser.get(&executor(slug)).await;
    let (_, asked) = browser.post(&executor(slug), json!({"component": SETUP})).await;
    assert_eq!(asked["component"], SETUP, "{asked}");
    let (_, done) = browser.post(&executor(slug), json!({"component": SETUP, "code": relay.last_code()})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
    let (_, devices) = browser.get("/api/v3/authenticators/email/").await;
    devices["results"][0]["pk"].as_i64().unwrap()
}

#[tokio::test]
async fn an_address_is_set_up_by_the_code_mailed_to_it_and_then_signs_in() {
    let (app, relay, admin) = spawn_with_relay().await;
    email_setup_flow(&app, &admin, &relay, "email-setup", json!({"subject": "Your code"})).await;
    app.user("olga@example.com", |_| {}).await;

    let mut olga = Browser::new(&app);
    olga.sign_in("olga@example.com", PASSWORD).await;
    let (status, offered) = olga.get(&executor("email-setup")).await;
    assert_eq!((status, offered["component"].as_str()), (StatusCode::OK, Some(SETUP)), "{offered}");
    assert_eq!(offered["email_required"], false, "the account's address is used: {offered}");
    assert_eq!(offered["email"], "o…@example.com", "{offered}");
    assert!(relay.messages().is_empty(), "showing the question sends nothing");

    // A typed address does not redirect the code away from the account's own.
    let (_, asked) = olga.post(&executor("email-setup"), json!({"component": SETUP, "email": "mallory@example.net"})).await;
    assert_eq!(asked["component"], SETUP, "{asked}");
    let mail = relay.messages().pop().unwrap();
    assert_eq!(mail.recipients, vec!["olga@example.com".to_owned()]);
    assert_eq!(mail.credentials, Some(("relay-user".into(), "relay-secret-1".into())), "the stage's credentials are used");
    assert!(mail.data.contains("Subject: Your code"), "{}", mail.data);
    assert!(mail.data.contains("From: Gatehouse <gatehouse@example.com>"), "{}", mail.data);
    let code = relay.last_code();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (_, refused) = olga.post(&executor("email-setup"), json!({"component": SETUP, "code": wrong})).await;
    assert!(errors(&refused, "code").contains("Code does not match"), "{refused}");
    let (_, done) = olga.post(&executor("email-setup"), json!({"component": SETUP, "code": code})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");

    let (_, devices) = olga.get("/api/v3/authenticators/email/").await;
    assert_eq!(devices["pagination"]["count"], 1, "{devices}");
    assert_eq!(devices["results"][0]["email"], "olga@example.com");
    assert_eq!(devices["results"][0]["name"], "Email Device");
    let device = devices["results"][0]["pk"].as_i64().unwrap();
    let (_, all) = olga.get("/api/v3/authenticators/all/").await;
    assert_eq!(all[0]["type"], "authentik_stages_authenticator_email.EmailDevice", "{all}");
    assert_eq!(all[0]["extra_description"], "o…@example.com", "{all}");

    // At sign-in the code goes to the device's address, and only the new code passes.
    require_mfa(&app, &admin, json!({"device_classes": ["email"], "not_configured_action": "deny"})).await;
    let mut again = Browser::new(&app);
    let challenge = password_step(&mut again, "olga@example.com").await;
    assert_eq!(challenge["component"], VALIDATE, "{challenge}");
    assert_eq!(
        challenge["device_challenges"],
        json!([{"device_class": "email", "device_uid": device.to_string(), "challenge": {"email": "o…@example.com"}, "last_used": null}])
    );
    let selected = json!({"device_class": "email", "device_uid": device.to_string(), "challenge": {}, "last_used": null});
    let (_, asked) = again.post(SIGN_IN, json!({"component": VALIDATE, "selected_challenge": selected})).await;
    assert_eq!(asked["component"], VALIDATE, "{asked}");
    assert_eq!(relay.messages().len(), 2);
    assert_eq!(relay.messages()[1].recipients, vec!["olga@example.com".to_owned()]);
    let sign_in_code = relay.last_code();
    if sign_in_code != code {
        let (_, old) = again.post(SIGN_IN, json!({"component": VALIDATE, "code": code})).await;
        assert!(errors(&old, "code").contains("Code does not match"), "the setup code does not sign in: {old}");
    }
    assert_eq!(again.me().await, StatusCode::UNAUTHORIZED);
    let (_, done) = again.post(SIGN_IN, json!({"component": VALIDATE, "code": sign_in_code})).await;
    assert_eq!(done["component"], "xak-flow-redirect", "{done}");
    assert_eq!(again.me().await, StatusCode::OK);
    let (_, all) = again.get("/api/v3/authenticators/all/").await;
    assert!(all[0]["last_used"].is_string(), "the device's use is noted: {all}");

    // The person's page lists the address masked and removes it.
    let page = again.send(app.client.get(app.url("/if/user/"))).await.text().await.unwrap();
    assert!(page.contains("Codes by e-mail to o…@example.com"), "{page}");
    let csrf = page.split(r#"name="csrf" value=""#).nth(1).unwrap().split('"').next().unwrap().to_owned();
    let remove = app
        .client
        .post(app.url(&format!("/if/user/devices/email/{device}/remove/")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"));
    assert_eq!(again.send(remove).await.status(), StatusCode::SEE_OTHER);
    let (_, devices) = again.get("/api/v3/authenticators/email/").await;
    assert_eq!(devices["pagination"]["count"], 0, "{devices}");
}

#[tokio::test]
async fn a_code_is_asked_for_only_after_one_was_sent() {
    let (app, relay, admin) = spawn_with_relay().await;
    email_setup_flow(&app, &admin, &relay, "email-setup", json!({})).await;
    app.user("ivan@example.com", |_| {}).await;
    let mut ivan = Browser::new(&app);
    ivan.sign_in("ivan@example.com", PASSWORD).await;
    ivan.get(&executor("email-setup")).await;
    let (_, refused) = ivan.post(&executor("email-setup"), json!({"component": SETUP, "code": "123456"})).await;
    assert!(errors(&refused, "code").contains("Ask for a code first"), "{refused}");
    assert!(relay.messages().is_empty());
    let (_, asked) = ivan.post(&executor("email-setup"), json!({"component": SETUP})).await;
    assert_eq!(asked["component"], SETUP, "{asked}");
    for empty in [json!({}), json!({"code": ""}), json!({"code": "  "})] {
        let mut body = empty.clone();
        body["component"] = json!(SETUP);
        let (_, refused) = ivan.post(&executor("email-setup"), body).await;
        assert!(errors(&refused, "code").contains("required"), "{empty}: {refused}");
    }
    assert_eq!(relay.messages().len(), 1, "an empty answer sends no new code");
    let (_, devices) = ivan.get("/api/v3/authenticators/email/").await;
    assert_eq!(devices["pagination"]["count"], 0, "nothing is set up before the code: {devices}");
}

#[tokio::test]
async fn a_relay_that_refuses_or_is_not_there_is_recorded_and_the_person_told_to_try_later() {
    let (app, relay, admin) = spawn_with_relay().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    email_setup_flow(&app, &admin, &relay, "refused", json!({})).await;
    email_setup_flow(&app, &admin, &relay, "absent", json!({"port": closed})).await;
    // The relay offers no STARTTLS, so a stage that requires it sends nothing in clear.
    email_setup_flow(&app, &admin, &relay, "starttls", json!({"use_tls": true})).await;
    email_setup_flow(&app, &admin, &relay, "global", json!({"use_global_settings": true, "host": "unused.invalid"})).await;
    app.user("olga@example.com", |_| {}).await;
    let mut olga = Browser::new(&app);
    olga.sign_in("olga@example.com", PASSWORD).await;

    for (slug, mood) in [("refused", Mood::Refusing), ("absent", Mood::Accepting), ("starttls", Mood::Accepting)] {
        relay.set_mood(mood);
        olga.get(&executor(slug)).await;
        let (_, refused) = olga.post(&executor(slug), json!({"component": SETUP})).await;
        assert!(errors(&refused, "email").contains("We could not send the code. Try again later."), "{slug}: {refused}");
        assert!(!refused.to_string().contains("Relaying denied"), "the relay's answer stays in the audit trail: {refused}");
    }
    assert!(relay.messages().is_empty(), "nothing was delivered, least of all in clear to a relay without STARTTLS");
    let recorded = events(&app, "configuration_error").await;
    assert_eq!(recorded.len(), 3, "{recorded:?}");
    let refusal = recorded.iter().find(|e| e["context"]["status_code"] == 550).unwrap_or_else(|| panic!("{recorded:?}"));
    assert_eq!(refusal["context"]["message"], "Error sending Email");
    assert!(refusal["context"]["response"].as_str().unwrap().contains("Relaying denied for +•••••••••00"), "{refusal}");

    // Sends the relay did not take are given back: the limit still allows the hour's sends.
    olga.get(&executor("global")).await;
    for _ in 0..3 {
        let (_, asked) = olga.post(&executor("global"), json!({"component": SETUP})).await;
        assert_eq!(asked["component"], SETUP, "{asked}");
        olga.get(&executor("global")).await;
    }
    let mail = relay.messages().pop().unwrap();
    assert_eq!(mail.credentials, None, "the server's relay settings hold no credentials");
    assert!(mail.data.contains("From: Gatehouse <gatehouse@example.com>"), "{}", mail.data);
}

#[tokio::test]
async fn e_mail_stage_settings_are_checked_and_the_relay_password_never_shown() {
    let (app, relay, admin) = spawn_with_relay().await;
    let stage = email_setup_flow(&app, &admin, &relay, "email-setup", json!({})).await;
    assert!(stage.get("password").is_none(), "{stage}");
    assert_eq!(stage["token_expiry"], "minutes=5", "{stage}");
    remember_secret("relay-secret-1");
    for (settings, field) in [
        (json!({"host": ""}), "host"),
        (json!({"port": 0}), "port"),
        (json!({"port": 70000}), "port"),
        (json!({"use_tls": true, "use_ssl": true}), "use_ssl"),
        (json!({"from_address": "nobody"}), "from_address"),
        (json!({"token_expiry": "minutes=11"}), "token_expiry"),
        (json!({"token_expiry": "fortnights=1"}), "token_expiry"),
        (json!({"template": "email/other.html"}), "template"),
        (json!({"timeout": 0}), "timeout"),
    ] {
        let mut body = json!({"name": "bad"});
        body.as_object_mut().unwrap().extend(settings.as_object().unwrap().clone());
        assert_field_error(app.post(&admin, "/api/v3/stages/authenticator/email/", body).await, field).await;
    }
    let path = format!("/api/v3/stages/authenticator/email/{}/", stage["pk"].as_str().unwrap());
    let (status, changed) = json(app.patch(&admin, &path, json!({"subject": "Sign-in code"})).await).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert!(changed.get("password").is_none(), "{changed}");
    // The password is kept through the partial update: the relay still receives it.
    app.user("olga@example.com", |_| {}).await;
    set_up_address(&app, &relay, "olga@example.com", "email-setup").await;
    assert_eq!(relay.messages()[0].credentials, Some(("relay-user".into(), "relay-secret-1".into())));
    assert!(relay.messages()[0].data.contains("Subject: Sign-in code"));
}

#[tokio::test]
async fn addresses_of_more_powerful_accounts_are_masked_and_their_devices_out_of_reach() {
    let (app, relay, admin) = spawn_with_relay().await;
    email_setup_flow(&app, &admin, &relay, "email-setup", json!({})).await;
    let boss = app.user_with("boss@example.com", &["authentik_core.view_user", "authentik_core.change_user"]).await;
    // Signed in before the device exists: with it, the password alone no longer signs in.
    let boss_session = app.sign_in(&boss.email).await;
    let boss_device = set_up_address(&app, &relay, &boss.email, "email-setup").await;
    let helper = app
        .user_with(
            "helper@example.com",
            &["authentik_stages_authenticator_email.view_emaildevice", "authentik_stages_authenticator_email.delete_emaildevice"],
        )
        .await;
    let helper = app.sign_in(&helper.email).await;
    let (_, listed) = json(app.get(&helper, "/api/v3/authenticators/admin/email/").await).await;
    let shown = listed["results"].as_array().unwrap().iter().find(|d| d["pk"] == boss_device).unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(shown["email"], "b…@example.com", "{listed}");
    assert_forbidden(app.delete(&helper, &format!("/api/v3/authenticators/admin/email/{boss_device}/")).await).await;
    let (_, listed) = json(app.get(&admin, "/api/v3/authenticators/admin/email/").await).await;
    assert_eq!(listed["results"][0]["email"], "boss@example.com", "a superuser sees every address");
    let (status, _) = json(app.post(&admin, "/api/v3/authenticators/admin/email/", json!({"name": "x"})).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, renamed) =
        json(app.patch(&boss_session, &format!("/api/v3/authenticators/email/{boss_device}/"), json!({"name": "Work"})).await).await;
    assert_eq!((status, &renamed["name"]), (StatusCode::OK, &json!("Work")), "{renamed}");
    assert_eq!(app.delete(&boss_session, &format!("/api/v3/authenticators/email/{boss_device}/")).await.status(), StatusCode::NO_CONTENT);
}
