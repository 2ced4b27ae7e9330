//! Consent: an application whose authorization flow asks people first, through the flow pages
//! as a browser goes; what the consent stage remembers, as its mode says; the proof that brings
//! a person back from the flow, good once and only for its own request and session; and the
//! consents people see and revoke through `/api/v3/core/user_consent/` and their page.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::flows::{Browser, set_settings};
use crate::oauth::{PROVIDERS, VERIFIER, authorize_path, flow_pk, location, open_as, query_value, s256, single_sign_on};
use crate::support::{Session, TestApp, json, remember_secret};

const CONSENTS: &str = "/api/v3/core/user_consent/";
const CONSENT_STAGE: &str = "default-provider-authorization-consent";
const EXPLICIT: &str = "default-provider-authorization-explicit-consent";

/// The wiki of [`single_sign_on`] behind the explicit-consent flow, its consent stage in `mode`.
async fn consenting_wiki(app: &TestApp, mode: &str) -> (Session, Session, Value) {
    let (admin, person, provider) = single_sign_on(app, json!({})).await;
    let path = format!("{PROVIDERS}{}/", provider["pk"]);
    let (status, _) = json(app.patch(&admin, &path, json!({"authorization_flow": flow_pk(app, &admin, EXPLICIT).await})).await).await;
    assert_eq!(status, StatusCode::OK);
    set_settings(app, CONSENT_STAGE, json!({"mode": mode})).await;
    (admin, person, provider)
}

/// A browser holding `session`'s cookie.
fn browser_of<'a>(app: &'a TestApp, session: &Session) -> Browser<'a> {
    let mut browser = Browser::new(app);
    let (name, value) = session.cookie.split_once('=').unwrap();
    browser.cookies.insert(name.to_owned(), value.to_owned());
    browser
}

/// The authorization request of the wiki with PKCE and `scope`, plus `extra`.
fn request(provider: &Value, scope: &str, extra: &[(&str, &str)]) -> String {
    let challenge = s256(VERIFIER);
    let mut parameters = vec![("code_challenge", challenge.as_str()), ("code_challenge_method", "S256"), ("scope", scope)];
    parameters.extend_from_slice(extra);
    authorize_path(provider["client_id"].as_str().unwrap(), &parameters)
}

fn hidden(page: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    page.split(&marker).nth(1).unwrap_or_else(|| panic!("no {name} in {page}")).split('"').next().unwrap().to_owned()
}

fn unescape(text: &str) -> String {
    text.replace("&amp;", "&").replace("&#38;", "&").replace("&#x2f;", "/").replace("&#47;", "/")
}

/// Where a person is sent after answering a question: a path here, or the application's
/// address.
enum Answered {
    /// The flow's page with its question.
    Asked { page: String },
    /// Back at the application: the address with the code.
    Back(url::Url),
}

/// Opens `path` in `browser` and follows redirects and continue pages until the browser is back
/// at the application or a flow page asks a question.
async fn follow(app: &TestApp, browser: &mut Browser<'_>, path: &str) -> Answered {
    let mut next = path.to_owned();
    for _ in 0..6 {
        let response = browser.send(app.client.get(app.url(&next))).await;
        match response.status() {
            StatusCode::FOUND | StatusCode::SEE_OTHER => {
                let to = location(&response);
                if to.host_str() == Some("wiki.example") {
                    return Answered::Back(to);
                }
                next = format!("{}?{}", to.path(), to.query().unwrap_or_default());
            }
            StatusCode::OK => {
                let page = response.text().await.unwrap();
                match page.split(r#"http-equiv="refresh" content="0;url="#).nth(1) {
                    Some(rest) => next = unescape(rest.split('"').next().unwrap()),
                    None => return Answered::Asked { page },
                }
            }
            other => panic!("{other} at {next}: {}", response.text().await.unwrap()),
        }
    }
    panic!("too many redirects from {path}")
}

/// Answers the consent question on `page` of the flow `slug` with `token`; where that leads.
async fn allow(app: &TestApp, browser: &mut Browser<'_>, page: &str, token: &str) -> Answered {
    let (csrf, step) = (hidden(page, "csrf"), hidden(page, "step"));
    let form = format!("csrf={csrf}&step={step}&token={token}");
    let flow_page = format!("/if/flow/{EXPLICIT}/");
    let answered =
        browser.send(app.client.post(app.url(&flow_page)).header("content-type", "application/x-www-form-urlencoded").body(form)).await;
    let status = answered.status();
    let body = answered.text().await.unwrap();
    match body.split(r#"http-equiv="refresh" content="0;url="#).nth(1) {
        Some(rest) => follow(app, browser, &unescape(rest.split('"').next().unwrap())).await,
        None => {
            assert_eq!(status, StatusCode::OK, "{body}");
            Answered::Asked { page: body }
        }
    }
}

fn code_of(answered: Answered) -> String {
    match answered {
        Answered::Back(to) => {
            let code = query_value(&to, "code").unwrap_or_else(|| panic!("no code: {to}"));
            remember_secret(&code);
            code
        }
        Answered::Asked { page } => panic!("asked again: {page}"),
    }
}

fn question(answered: Answered) -> String {
    match answered {
        Answered::Asked { page } => page,
        Answered::Back(to) => panic!("not asked, sent back: {to}"),
    }
}

#[tokio::test]
async fn a_permanent_consent_is_asked_once_and_again_only_for_more() {
    let app = TestApp::spawn().await;
    let (_admin, person, provider) = consenting_wiki(&app, "permanent").await;
    let mut browser = browser_of(&app, &person);

    let page = question(follow(&app, &mut browser, &request(&provider, "openid email profile", &[])).await);
    assert!(page.contains("Wiki asks for the following permissions"), "{page}");
    assert!(page.contains("Email address") && page.contains("General Profile Information"), "{page}");
    let token = hidden(&page, "token");
    let wrong = question(allow(&app, &mut browser, &page, "not-the-token").await);
    assert!(wrong.contains("Invalid consent token"), "{wrong}");
    let (_, consents) = json(app.get(&person, CONSENTS).await).await;
    assert_eq!(consents["pagination"]["count"], 0, "a wrong token consents to nothing");
    assert_eq!(token, hidden(&wrong, "token"), "the token belongs to the run, so asking again writes nothing");
    code_of(allow(&app, &mut browser, &wrong, &hidden(&wrong, "token")).await);

    let (status, consents) = json(app.get(&person, CONSENTS).await).await;
    assert_eq!(status, StatusCode::OK);
    let consent = &consents["results"][0];
    assert_eq!((consent["permissions"].as_str(), consent["expiring"].as_bool()), (Some("email profile"), Some(false)), "{consents}");
    assert_eq!((consent["application"]["slug"].as_str(), consent["user"]["username"].as_str()), (Some("wiki"), Some("person@example.com")));

    // Remembered: straight back, for the same scopes or fewer.
    code_of(follow(&app, &mut browser, &request(&provider, "openid email profile", &[])).await);
    code_of(follow(&app, &mut browser, &request(&provider, "openid email", &[("prompt", "none")])).await);
    // More than was consented to is asked for, and only the new permission is new.
    let more = question(follow(&app, &mut browser, &request(&provider, "openid email offline_access", &[])).await);
    assert!(more.contains("already has some permissions and asks for more"), "{more}");
    code_of(allow(&app, &mut browser, &more, &hidden(&more, "token")).await);
    let (_, consents) = json(app.get(&person, CONSENTS).await).await;
    assert_eq!(consents["results"][0]["permissions"], "email profile offline_access", "consents add up");

    // Revoked, it is asked for again.
    let id = consents["results"][0]["pk"].as_i64().unwrap();
    let status = app.delete(&person, &format!("{CONSENTS}{id}/")).await.status();
    assert_eq!(status, StatusCode::NO_CONTENT);
    question(follow(&app, &mut browser, &request(&provider, "openid email", &[])).await);
}

#[tokio::test]
async fn an_always_required_consent_is_asked_every_time_and_prompt_none_is_told_so() {
    let app = TestApp::spawn().await;
    let (_admin, person, provider) = consenting_wiki(&app, "always_require").await;
    let mut browser = browser_of(&app, &person);
    for _ in 0..2 {
        let page = question(follow(&app, &mut browser, &request(&provider, "openid email", &[])).await);
        code_of(allow(&app, &mut browser, &page, &hidden(&page, "token")).await);
    }
    let (_, consents) = json(app.get(&person, CONSENTS).await).await;
    assert_eq!(consents["pagination"]["count"], 0, "nothing is remembered");
    let silent = location(&open_as(&app, Some(&person), &app.url(&request(&provider, "openid email", &[("prompt", "none")]))).await);
    assert_eq!(query_value(&silent, "error").as_deref(), Some("consent_required"), "{silent}");
}

#[tokio::test]
async fn an_expiring_consent_lapses() {
    let app = TestApp::spawn().await;
    let (_admin, person, provider) = consenting_wiki(&app, "expiring").await;
    set_settings(&app, CONSENT_STAGE, json!({"consent_expire_in": "seconds=2"})).await;
    let mut browser = browser_of(&app, &person);
    let page = question(follow(&app, &mut browser, &request(&provider, "openid email", &[])).await);
    code_of(allow(&app, &mut browser, &page, &hidden(&page, "token")).await);
    let (_, consents) = json(app.get(&person, CONSENTS).await).await;
    assert_eq!(consents["results"][0]["expiring"], true, "{consents}");
    code_of(follow(&app, &mut browser, &request(&provider, "openid email", &[])).await);
    // Poll until the consent lapses: then it is neither listed nor honoured.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, consents) = json(app.get(&person, CONSENTS).await).await;
        if consents["pagination"]["count"] == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the consent never lapsed");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    question(follow(&app, &mut browser, &request(&provider, "openid email", &[])).await);
}

/// The address the consent flow sends the person back with: the authorization request and its
/// proof, not yet followed.
async fn proof_address(app: &TestApp, browser: &mut Browser<'_>, provider: &Value) -> String {
    let page = question(follow(app, browser, &request(provider, "openid email", &[])).await);
    let (csrf, step, token) = (hidden(&page, "csrf"), hidden(&page, "step"), hidden(&page, "token"));
    let answered = browser
        .send(
            app.client
                .post(app.url(&format!("/if/flow/{EXPLICIT}/")))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("csrf={csrf}&step={step}&token={token}")),
        )
        .await
        .text()
        .await
        .unwrap();
    let address = unescape(answered.split(r#"http-equiv="refresh" content="0;url="#).nth(1).unwrap().split('"').next().unwrap());
    assert!(address.contains("flow_proof="), "{address}");
    remember_secret(address.rsplit_once("flow_proof=").unwrap().1);
    address
}

#[tokio::test]
async fn the_proof_of_consent_is_good_once_for_its_own_request_and_session() {
    let app = TestApp::spawn().await;
    let (_admin, person, provider) = consenting_wiki(&app, "always_require").await;
    let mut browser = browser_of(&app, &person);

    // Replayed: the flow is run again rather than a second code handed out.
    let address = proof_address(&app, &mut browser, &provider).await;
    code_of(follow(&app, &mut browser, &address).await);
    let replay = location(&browser.send(app.client.get(app.url(&address))).await);
    assert_eq!(replay.path(), format!("/if/flow/{EXPLICIT}/"), "a used proof is not accepted again");

    // Moved to another request (wider scopes): not accepted.
    let address = proof_address(&app, &mut browser, &provider).await;
    let widened = address.replacen("scope=openid+email", "scope=openid+email+profile", 1);
    assert_ne!(widened, address);
    let moved = location(&browser.send(app.client.get(app.url(&widened))).await);
    assert_eq!(moved.path(), format!("/if/flow/{EXPLICIT}/"), "a proof is for its own request only");

    // Carried to someone else's session: not accepted.
    app.user("other@example.com", |_| {}).await;
    let other = app.sign_in("other@example.com").await;
    let stolen = location(&open_as(&app, Some(&other), &app.url(&address)).await);
    assert_eq!(stolen.path(), format!("/if/flow/{EXPLICIT}/"), "a proof is for its own session only");
    // The person's own, untouched, still works once.
    code_of(follow(&app, &mut browser, &address).await);
}

#[tokio::test]
async fn consents_are_seen_and_revoked_by_their_owner_and_by_administrators_within_their_reach() {
    let app = TestApp::spawn().await;
    let (admin, person, provider) = consenting_wiki(&app, "permanent").await;
    for session in [&person, &admin] {
        let mut browser = browser_of(&app, session);
        let page = question(follow(&app, &mut browser, &request(&provider, "openid email", &[])).await);
        code_of(allow(&app, &mut browser, &page, &hidden(&page, "token")).await);
    }
    let (_, own) = json(app.get(&person, CONSENTS).await).await;
    assert_eq!(own["pagination"]["count"], 1, "a person sees only their own: {own}");
    let person_pk = own["results"][0]["user"]["pk"].as_i64().unwrap();
    let (_, everyone) = json(app.get(&admin, CONSENTS).await).await;
    assert_eq!(everyone["pagination"]["count"], 2);
    let admin_consent = everyone["results"].as_array().unwrap().iter().find(|c| c["user"]["pk"] != person_pk).unwrap()["pk"].clone();
    let (_, filtered) = json(app.get(&person, &format!("{CONSENTS}?user={}", everyone["results"][0]["user"]["pk"])).await).await;
    assert!(filtered["results"].as_array().unwrap().iter().all(|c| c["user"]["pk"] == person_pk), "{filtered}");
    let status = app.get(&person, &format!("{CONSENTS}{admin_consent}/")).await.status();
    assert_eq!(status, StatusCode::NOT_FOUND, "another person's consent is not shown");
    let status = app.delete(&person, &format!("{CONSENTS}{admin_consent}/")).await.status();
    assert_eq!(status, StatusCode::NOT_FOUND, "nor revoked");

    // Someone who may view and delete consents, but is no superuser, cannot revoke a
    // superuser's.
    // Viewing other people's consents also takes viewing users: each consent shows its user.
    app.user_with("auditor@example.com", &["authentik_stages_consent.view_userconsent"]).await;
    let auditor = app.sign_in("auditor@example.com").await;
    let (_, seen) = json(app.get(&auditor, CONSENTS).await).await;
    assert_eq!(seen["pagination"]["count"], 0, "{seen}");
    app.user_with(
        "helpdesk@example.com",
        &["authentik_core.view_user", "authentik_stages_consent.view_userconsent", "authentik_stages_consent.delete_userconsent"],
    )
    .await;
    let helpdesk = app.sign_in("helpdesk@example.com").await;
    let (_, seen) = json(app.get(&helpdesk, CONSENTS).await).await;
    assert_eq!(seen["pagination"]["count"], 2);
    let status = app.delete(&helpdesk, &format!("{CONSENTS}{admin_consent}/")).await.status();
    assert_eq!(status, StatusCode::FORBIDDEN, "out of reach");
    let (_, still) = json(app.get(&admin, CONSENTS).await).await;
    assert_eq!(still["pagination"]["count"], 2, "refused, nothing changed");
    let own_id = own["results"][0]["pk"].as_i64().unwrap();
    let status = app.delete(&helpdesk, &format!("{CONSENTS}{own_id}/")).await.status();
    assert_eq!(status, StatusCode::NO_CONTENT, "within reach");
    let (_, after) = json(app.get(&admin, CONSENTS).await).await;
    assert_eq!(after["pagination"]["count"], 1);
}

#[tokio::test]
async fn a_person_sees_their_applications_and_consents_on_their_page_and_revokes_one_there() {
    let app = TestApp::spawn().await;
    let (admin, person, provider) = consenting_wiki(&app, "permanent").await;
    let (status, _) =
        json(app.patch(&admin, "/api/v3/core/applications/wiki/", json!({"meta_launch_url": "https://wiki.example/"})).await).await;
    assert_eq!(status, StatusCode::OK);
    let mut browser = browser_of(&app, &person);
    let page = question(follow(&app, &mut browser, &request(&provider, "openid email", &[])).await);
    code_of(allow(&app, &mut browser, &page, &hidden(&page, "token")).await);

    let user_page = browser.send(app.client.get(app.url("/if/user/"))).await.text().await.unwrap();
    assert!(user_page.contains(r#"<a href="https://wiki.example/">Wiki</a>"#), "{user_page}");
    assert!(user_page.contains("Revoke consent for Wiki") && user_page.contains("until you revoke it"), "{user_page}");
    let action = user_page.split(r#"action="/if/user/consents/"#).nth(1).unwrap().split('"').next().unwrap();
    let path = format!("/if/user/consents/{action}");
    let post = |body: String| app.client.post(app.url(&path)).header("content-type", "application/x-www-form-urlencoded").body(body);
    let forged = browser.send(post("csrf=forged".into())).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let (_, consents) = json(app.get(&person, CONSENTS).await).await;
    assert_eq!(consents["pagination"]["count"], 1, "a forged form revokes nothing");
    let revoked = browser.send(post(format!("csrf={}", hidden(&user_page, "csrf")))).await;
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    let (_, consents) = json(app.get(&person, CONSENTS).await).await;
    assert_eq!(consents["pagination"]["count"], 0);
    let user_page = browser.send(app.client.get(app.url("/if/user/"))).await.text().await.unwrap();
    assert!(user_page.contains("You have not allowed any application"), "{user_page}");
}

#[tokio::test]
async fn the_consent_question_reads_as_authentiks_and_deny_tells_the_application() {
    let app = TestApp::spawn().await;
    let (_admin, person, provider) = consenting_wiki(&app, "permanent").await;
    let mut browser = browser_of(&app, &person);
    question(follow(&app, &mut browser, &request(&provider, "openid email profile", &[("state", "s-1")])).await);
    let (status, challenge) = browser.get(&format!("/api/v3/flows/executor/{EXPLICIT}/")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(challenge["component"], "ak-stage-consent");
    assert_eq!(
        challenge["permissions"],
        json!([{"id": "email", "name": "Email address"}, {"id": "profile", "name": "General Profile Information"}])
    );
    assert_eq!(challenge["additional_permissions"], json!([]));
    assert!(challenge["token"].as_str().is_some_and(|t| t.len() >= 32), "{challenge}");
    assert_eq!(challenge["pending_user"], "person@example.com");

    let page = question(follow(&app, &mut browser, &request(&provider, "openid email", &[("state", "s-2")])).await);
    let deny = unescape(page.split(r#"<a href=""#).find(|part| part.contains(">Deny<")).unwrap().split('"').next().unwrap());
    let declined = follow(&app, &mut browser, &deny).await;
    let Answered::Back(to) = declined else { panic!("declining sends the person back to the application") };
    assert_eq!(query_value(&to, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_value(&to, "state").as_deref(), Some("s-2"));
    assert_eq!(query_value(&to, "code"), None);
    let (_, consents) = json(app.get(&person, CONSENTS).await).await;
    assert_eq!(consents["pagination"]["count"], 0, "declining consents to nothing");
}

#[tokio::test]
async fn prompt_consent_asks_again_or_is_refused_where_no_one_can_ask() {
    let app = TestApp::spawn().await;
    let (admin, person, provider) = consenting_wiki(&app, "permanent").await;
    let mut browser = browser_of(&app, &person);
    let page = question(follow(&app, &mut browser, &request(&provider, "openid email", &[])).await);
    code_of(allow(&app, &mut browser, &page, &hidden(&page, "token")).await);
    code_of(follow(&app, &mut browser, &request(&provider, "openid email", &[])).await);
    let again = question(follow(&app, &mut browser, &request(&provider, "openid email", &[("prompt", "consent")])).await);
    code_of(allow(&app, &mut browser, &again, &hidden(&again, "token")).await);
    let mixed = location(&open_as(&app, Some(&person), &app.url(&request(&provider, "openid", &[("prompt", "none consent")]))).await);
    assert_eq!(query_value(&mixed, "error").as_deref(), Some("invalid_request"), "{mixed}");

    // Without a consent stage nobody can ask: the client is told so.
    let path = format!("{PROVIDERS}{}/", provider["pk"]);
    let implicit = flow_pk(&app, &admin, "default-provider-authorization-implicit-consent").await;
    let (status, _) = json(app.patch(&admin, &path, json!({"authorization_flow": implicit})).await).await;
    assert_eq!(status, StatusCode::OK);
    let refused = location(&open_as(&app, Some(&person), &app.url(&request(&provider, "openid", &[("prompt", "consent")]))).await);
    assert_eq!(query_value(&refused, "error").as_deref(), Some("consent_required"), "{refused}");
}

#[tokio::test]
async fn an_authorization_flow_that_signs_the_person_in_again_hands_out_a_code_at_its_end() {
    let app = TestApp::spawn().await;
    let (admin, person, provider) = single_sign_on(&app, json!({})).await;
    let flow = json!({"name": "Again", "slug": "again", "title": "Sign in again", "designation": "authorization", "authentication": "require_authenticated"});
    let (status, created) = json(app.post(&admin, "/api/v3/flows/instances/", flow).await).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    for (order, name) in
        ["default-authentication-identification", "default-authentication-password", "default-authentication-login"].iter().enumerate()
    {
        let (_, stages) = json(app.get(&admin, &format!("/api/v3/stages/all/?name={name}")).await).await;
        let binding = json!({"target": created["pk"], "stage": stages["results"][0]["pk"], "order": order});
        let (status, body) = json(app.post(&admin, "/api/v3/flows/bindings/", binding).await).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let path = format!("{PROVIDERS}{}/", provider["pk"]);
    let (status, _) = json(app.patch(&admin, &path, json!({"authorization_flow": created["pk"]})).await).await;
    assert_eq!(status, StatusCode::OK);
    let mut browser = browser_of(&app, &person);
    let before = browser.cookies.clone();
    let identify = question(follow(&app, &mut browser, &request(&provider, "openid", &[])).await);
    let form = |page: &str, fields: &str| format!("csrf={}&step={}&{fields}", hidden(page, "csrf"), hidden(page, "step"));
    let post =
        |body: String| app.client.post(app.url("/if/flow/again/")).header("content-type", "application/x-www-form-urlencoded").body(body);
    let answered = browser.send(post(form(&identify, "uid_field=person%40example.com"))).await;
    assert_eq!(answered.status(), StatusCode::SEE_OTHER);
    let password = question(follow(&app, &mut browser, "/if/flow/again/").await);
    let password_field =
        form(&password, &format!("password={}", form_urlencoded::byte_serialize(crate::support::PASSWORD.as_bytes()).collect::<String>()));
    let ended = browser.send(post(password_field)).await.text().await.unwrap();
    assert_ne!(browser.cookies.get(crate::support::SESSION_COOKIE), before.get(crate::support::SESSION_COOKIE), "signed in anew");
    let back = unescape(
        ended.split(r#"http-equiv="refresh" content="0;url="#).nth(1).unwrap_or_else(|| panic!("{ended}")).split('"').next().unwrap(),
    );
    code_of(follow(&app, &mut browser, &back).await);
}

#[tokio::test]
async fn prompt_none_is_told_when_the_authorization_flow_needs_the_person() {
    let app = TestApp::spawn().await;
    let (admin, person, provider) = single_sign_on(&app, json!({})).await;
    let flow = json!({"name": "Denied", "slug": "denied", "title": "Denied", "designation": "authorization"});
    let (_, created) = json(app.post(&admin, "/api/v3/flows/instances/", flow).await).await;
    let (_, deny) = json(app.post(&admin, "/api/v3/stages/deny/", json!({"name": "no-entry"})).await).await;
    let binding = json!({"target": created["pk"], "stage": deny["pk"], "order": 0});
    let (status, _) = json(app.post(&admin, "/api/v3/flows/bindings/", binding).await).await;
    assert_eq!(status, StatusCode::CREATED);
    let path = format!("{PROVIDERS}{}/", provider["pk"]);
    let (status, _) = json(app.patch(&admin, &path, json!({"authorization_flow": created["pk"]})).await).await;
    assert_eq!(status, StatusCode::OK);
    let silent = location(&open_as(&app, Some(&person), &app.url(&request(&provider, "openid", &[("prompt", "none")]))).await);
    assert_eq!(query_value(&silent, "error").as_deref(), Some("interaction_required"), "{silent}");
    let mut browser = browser_of(&app, &person);
    let to_flow = location(&browser.send(app.client.get(app.url(&request(&provider, "openid", &[])))).await);
    assert_eq!(to_flow.path(), "/if/flow/denied/");
    let denied = browser.send(app.client.get(app.url("/if/flow/denied/"))).await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let page = denied.text().await.unwrap();
    assert!(page.contains("Permission denied"), "the flow's deny stage stops the person: {page}");
}
