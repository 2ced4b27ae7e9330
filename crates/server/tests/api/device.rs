//! The device authorization grant (RFC 8628): a device asks for codes at
//! `/application/o/device/`, a person enters the user code on `/if/device/` and allows or
//! denies, and the device polls the token endpoint; once by hand with every answer on the way,
//! once with the `openidconnect` crate as the device.

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::oauth::{PROVIDERS, single_sign_on, token_request};
use crate::support::{Session, TestApp, json, remember_secret};

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The wiki of [`single_sign_on`] as a public client `tv` that may use the device grant.
async fn television(app: &TestApp) -> (Session, Session, Value) {
    let (admin, person, provider) = single_sign_on(app, json!({"client_type": "public", "client_id": "tv"})).await;
    let path = format!("{PROVIDERS}{}/", provider["pk"]);
    let grants = json!({"grant_types": ["authorization_code", "refresh_token", DEVICE_GRANT]});
    let (status, changed) = json(app.patch(&admin, &path, grants).await).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    (admin, person, changed)
}

async fn ask_for_codes(app: &TestApp, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let response = app.client.post(app.url("/application/o/device/")).form(form).send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    if let Some(code) = body["device_code"].as_str() {
        remember_secret(code);
    }
    (status, body)
}

async fn poll(app: &TestApp, device_code: &str) -> (StatusCode, Value) {
    let (status, body, _) =
        token_request(app, None, &[("grant_type", DEVICE_GRANT), ("device_code", device_code), ("client_id", "tv")]).await;
    for name in ["access_token", "refresh_token", "id_token"] {
        if let Some(token) = body[name].as_str() {
            remember_secret(token);
        }
    }
    (status, body)
}

fn hidden(page: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    page.split(&marker).nth(1).unwrap_or_else(|| panic!("no {name} in {page}")).split('"').next().unwrap().to_owned()
}

/// The person as a browser on the device pages: posts `form` to `path` with the page's CSRF token.
async fn post_page(app: &TestApp, person: &Session, path: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
    let page = app.client.get(app.url("/if/device/")).header("cookie", &person.cookie).send().await.unwrap().text().await.unwrap();
    let mut form = vec![("csrf", hidden(&page, "csrf"))];
    form.extend(fields.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let response = app.client.post(app.url(path)).header("cookie", &person.cookie).form(&form).send().await.unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

/// The person enters `user_code` and answers `decision` (`allow` or `deny`).
async fn answer(app: &TestApp, person: &Session, user_code: &str, decision: &str) -> String {
    let (status, confirm) = post_page(app, person, "/if/device/", &[("user_code", user_code)]).await;
    assert_eq!(status, StatusCode::OK, "{confirm}");
    let (status, done) =
        post_page(app, person, "/if/device/confirm/", &[("user_code", &hidden(&confirm, "user_code")), ("decision", decision)]).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    done
}

#[tokio::test]
async fn a_device_polls_until_a_person_allows_it_then_gets_its_tokens_once() {
    let app = TestApp::spawn().await;
    let (_admin, person, _provider) = television(&app).await;
    let (status, codes) = ask_for_codes(&app, &[("client_id", "tv"), ("scope", "openid email offline_access")]).await;
    assert_eq!(status, StatusCode::OK, "{codes}");
    let user_code = codes["user_code"].as_str().unwrap();
    assert!(user_code.len() == 9 && user_code.as_bytes()[4] == b'-', "{user_code}");
    assert_eq!(codes["verification_uri"], app.url("/if/device/"));
    assert_eq!(codes["verification_uri_complete"], format!("{}?code={user_code}", app.url("/if/device/")));
    assert_eq!((codes["expires_in"].as_i64(), codes["interval"].as_i64()), (Some(600), Some(5)));
    let device_code = codes["device_code"].as_str().unwrap();

    assert_eq!(poll(&app, device_code).await.1["error"], "authorization_pending");
    assert_eq!(poll(&app, device_code).await.1["error"], "slow_down", "polled again at once");

    // The person opens the complete address, sees the code filled in, and allows the device.
    let entry = app.client.get(app.url(&format!("/if/device/?code={user_code}"))).header("cookie", &person.cookie).send().await.unwrap();
    assert!(entry.text().await.unwrap().contains(&format!(r#"value="{user_code}""#)));
    let (status, confirm) = post_page(&app, &person, "/if/device/", &[("user_code", &user_code.to_lowercase().replace('-', " "))]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(confirm.contains("Wiki asks to sign in on a device as you") && confirm.contains("Email address"), "{confirm}");
    let done = answer(&app, &person, user_code, "allow").await;
    assert!(done.contains("Device allowed"), "{done}");

    let (status, tokens) = poll(&app, device_code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["scope"], "openid email offline_access");
    assert!(tokens["refresh_token"].is_string());
    let claims = tokens["id_token"].as_str().unwrap().split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    assert_eq!((claims["aud"].as_str(), claims["email"].as_str()), (Some("tv"), Some("person@example.com")));
    let (status, again) = poll(&app, device_code).await;
    assert_eq!((status, again["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "a device code is good once");
    // The code is spent: entering it again finds nothing.
    let (status, page) = post_page(&app, &person, "/if/device/", &[("user_code", user_code)]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("not valid or has expired"), "{page}");
    let events = crate::flows::events(&app, "authorize_application").await;
    assert!(events.iter().any(|e| e["context"]["device"] == true), "{events:?}");
}

#[tokio::test]
async fn a_denied_or_expired_device_gets_nothing_and_wrong_codes_are_slowed() {
    use gatehouse::oauth::entities::device_code;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

    let app = TestApp::spawn().await;
    let (admin, person, provider) = television(&app).await;
    let (_, denied) = ask_for_codes(&app, &[("client_id", "tv"), ("scope", "openid")]).await;
    let done = answer(&app, &person, denied["user_code"].as_str().unwrap(), "deny").await;
    assert!(done.contains("Device denied"), "{done}");
    assert_eq!(poll(&app, denied["device_code"].as_str().unwrap()).await.1["error"], "access_denied");

    let (_, lapsed) = ask_for_codes(&app, &[("client_id", "tv")]).await;
    device_code::Entity::update_many()
        .col_expr(device_code::Column::Expires, sea_orm::sea_query::Expr::value(chrono::Utc::now() - chrono::TimeDelta::seconds(1)))
        .filter(device_code::Column::Status.eq("pending"))
        .exec(&app.state.db)
        .await
        .unwrap();
    assert_eq!(poll(&app, lapsed["device_code"].as_str().unwrap()).await.1["error"], "expired_token");
    let (status, page) = post_page(&app, &person, "/if/device/", &[("user_code", lapsed["user_code"].as_str().unwrap())]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a lapsed code cannot be allowed: {page}");
    assert_eq!(poll(&app, "made-up").await.1["error"], "invalid_grant");

    // An authorization flow with stages a device sign-in cannot take (a deny stage here) keeps
    // the device out.
    let flow = json!({"name": "Denied", "slug": "denied", "title": "Denied", "designation": "authorization"});
    let (_, created) = json(app.post(&admin, "/api/v3/flows/instances/", flow).await).await;
    let (_, deny) = json(app.post(&admin, "/api/v3/stages/deny/", json!({"name": "no-entry"})).await).await;
    let binding = json!({"target": created["pk"], "stage": deny["pk"], "order": 0});
    assert_eq!(json(app.post(&admin, "/api/v3/flows/bindings/", binding).await).await.0, StatusCode::CREATED);
    let provider_path = format!("{PROVIDERS}{}/", provider["pk"]);
    assert_eq!(json(app.patch(&admin, &provider_path, json!({"authorization_flow": created["pk"]})).await).await.0, StatusCode::OK);
    let (_, blocked) = ask_for_codes(&app, &[("client_id", "tv")]).await;
    let (status, confirm) = post_page(&app, &person, "/if/device/", &[("user_code", blocked["user_code"].as_str().unwrap())]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, refused) =
        post_page(&app, &person, "/if/device/confirm/", &[("user_code", &hidden(&confirm, "user_code")), ("decision", "allow")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused.contains("sign in to it from a browser"), "{refused}");
    assert_eq!(poll(&app, blocked["device_code"].as_str().unwrap()).await.1["error"], "authorization_pending");

    // Guessing user codes: the first wrong ones (the lapsed code above was one) are told so,
    // then the person must wait.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(post_page(&app, &person, "/if/device/", &[("user_code", "BCDF-GHJK")]).await.0);
    }
    assert_eq!(statuses[..4], [StatusCode::BAD_REQUEST; 4], "{statuses:?}");
    assert_eq!(statuses[4..], [StatusCode::TOO_MANY_REQUESTS; 2], "{statuses:?}");

    // A forged form, a stranger and a client without the grant get nothing.
    let forged =
        app.client.post(app.url("/if/device/")).header("cookie", &person.cookie).form(&[("csrf", "forged"), ("user_code", "BCDF-GHJK")]);
    assert_eq!(forged.send().await.unwrap().status(), StatusCode::FORBIDDEN);
    let stranger = app.client.get(app.url("/if/device/?code=BCDF-GHJK")).send().await.unwrap();
    assert_eq!(stranger.status(), StatusCode::FOUND);
    assert!(stranger.headers()["location"].to_str().unwrap().contains("next=%2Fif%2Fdevice%2F%3Fcode%3DBCDF-GHJK"));
    let path = format!("{PROVIDERS}{}/", provider["pk"]);
    let (status, _) = json(app.patch(&admin, &path, json!({"grant_types": ["authorization_code"]})).await).await;
    assert_eq!(status, StatusCode::OK);
    let (status, refused) = ask_for_codes(&app, &[("client_id", "tv")]).await;
    assert_eq!((status, refused["error"].as_str()), (StatusCode::BAD_REQUEST, Some("unauthorized_client")));
    let (_, discovery) = json(app.client.get(app.url("/application/o/wiki/.well-known/openid-configuration")).send().await.unwrap()).await;
    assert!(discovery.get("device_authorization_endpoint").is_none(), "{discovery}");
    let (status, unknown) = ask_for_codes(&app, &[("client_id", "nobody")]).await;
    assert_eq!((status, unknown["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
}

#[tokio::test]
async fn the_openidconnect_crate_signs_a_device_in() {
    use openidconnect::core::{CoreClient, CoreDeviceAuthorizationResponse, CoreProviderMetadata};
    use openidconnect::{ClientId, DeviceAuthorizationUrl, IssuerUrl, Nonce, OAuth2TokenResponse, Scope, TokenResponse};

    let app = TestApp::spawn().await;
    let (_admin, person, _provider) = television(&app).await;
    let http = openidconnect::reqwest::Client::builder().redirect(openidconnect::reqwest::redirect::Policy::none()).build().unwrap();
    let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(app.url("/application/o/wiki/")).unwrap(), &http).await.unwrap();
    let (_, discovery) = json(app.client.get(app.url("/application/o/wiki/.well-known/openid-configuration")).send().await.unwrap()).await;
    let endpoint = discovery["device_authorization_endpoint"].as_str().expect("the device endpoint is published").to_owned();
    let client = CoreClient::from_provider_metadata(metadata, ClientId::new("tv".into()), None)
        .set_device_authorization_url(DeviceAuthorizationUrl::new(endpoint).unwrap());
    let details: CoreDeviceAuthorizationResponse =
        client.exchange_device_code().add_scope(Scope::new("email".into())).request_async(&http).await.expect("device codes");
    remember_secret(details.device_code().secret());
    answer(&app, &person, details.user_code().secret(), "allow").await;
    let tokens = client
        .exchange_device_access_token(&details)
        .unwrap()
        .request_async(&http, tokio::time::sleep, Some(std::time::Duration::from_secs(60)))
        .await
        .expect("tokens for the device");
    remember_secret(tokens.access_token().secret());
    let id_token = tokens.id_token().expect("an ID token for openid");
    let claims = id_token.claims(&client.id_token_verifier(), |_: Option<&Nonce>| Ok(())).expect("verified against the key set");
    assert_eq!(claims.email().map(|e| e.as_str()), Some("person@example.com"));
}
