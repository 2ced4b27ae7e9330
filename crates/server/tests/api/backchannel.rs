//! Back-channel logout: an application that registered a `logout_uri` hears, server to server,
//! of every session that ends after it was given tokens through it, in a logout token it checks
//! against the provider's published keys, as a relying party library would.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

use crate::oauth::{PROVIDERS, code_with_pkce, exchange_form, single_sign_on, token_request};
use crate::support::{TestApp, json, remember_secret};

/// An application's back-channel logout endpoint: records what it is sent, answering with the
/// statuses queued in `answers` first and 200 after.
#[derive(Clone, Default)]
struct LogoutEndpoint {
    received: Arc<Mutex<Vec<(String, String)>>>,
    answers: Arc<Mutex<std::collections::VecDeque<u16>>>,
}

async fn take_notice(State(endpoint): State<LogoutEndpoint>, headers: axum::http::HeaderMap, body: String) -> axum::http::StatusCode {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    endpoint.received.lock().unwrap().push((content_type, body));
    let status = endpoint.answers.lock().unwrap().pop_front().unwrap_or(200);
    axum::http::StatusCode::from_u16(status).unwrap()
}

impl LogoutEndpoint {
    /// Listens on a random loopback port; returns the endpoint and its URL.
    async fn start() -> (Self, String) {
        let endpoint = Self::default();
        let router = axum::Router::new().route("/backchannel-logout", axum::routing::post(take_notice)).with_state(endpoint.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/backchannel-logout", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (endpoint, url)
    }

    /// The logout tokens received, once there are `count` (polled; the worker sends them).
    async fn logout_tokens(&self, count: usize) -> Vec<String> {
        for _ in 0..400 {
            let received = self.received.lock().unwrap().clone();
            if received.len() >= count {
                return received
                    .into_iter()
                    .map(|(content_type, body)| {
                        assert_eq!(content_type, "application/x-www-form-urlencoded");
                        let token = form_urlencoded::parse(body.as_bytes()).find(|(name, _)| name == "logout_token").unwrap().1;
                        token.into_owned()
                    })
                    .collect();
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("{} notices arrived, {count} expected", self.received.lock().unwrap().len());
    }
}

/// The claims of `token` once its signature checks against the wiki's published keys, for the
/// audience `client_id`.
pub(crate) async fn verified(app: &TestApp, token: &str, client_id: &str) -> Value {
    let keys: jsonwebtoken::jwk::JwkSet = app.client.get(app.url("/application/o/wiki/jwks/")).send().await.unwrap().json().await.unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwk = keys.find(header.kid.as_deref().unwrap()).expect("the token's key is published");
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    jsonwebtoken::decode::<Value>(token, &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(), &validation).unwrap().claims
}

/// How many logout notices are queued or sent.
async fn notices_queued(app: &TestApp) -> u64 {
    use gatehouse::tasks::entities::task;
    task::Entity::find().filter(task::Column::ActorName.eq(gatehouse::oauth::backchannel::ACTOR)).count(&app.state.db).await.unwrap()
}

#[tokio::test]
async fn an_application_hears_of_a_sign_out_in_a_logout_token_naming_the_session_it_was_given() {
    let (endpoint, logout_uri) = LogoutEndpoint::start().await;
    let app = TestApp::spawn().await;
    app.run_worker().await;
    let (admin, person, provider) = single_sign_on(&app, json!({"logout_uri": logout_uri, "logout_method": "backchannel"})).await;
    let client_id = provider["client_id"].as_str().unwrap();
    let secret = provider["client_secret"].as_str().unwrap();
    // A second application the person signs into registered no logout URI: it is not told.
    let implicit = crate::oauth::flow_pk(&app, &admin, "default-provider-authorization-implicit-consent").await;
    let front = crate::oauth::create_provider(&app, &admin, json!({"name": "Notes", "authorization_flow": implicit})).await;
    let (status, _) =
        json(app.post(&admin, crate::oauth::APPLICATIONS, json!({"name": "Notes", "slug": "notes", "provider": front["pk"]})).await).await;
    assert_eq!(status, StatusCode::CREATED);
    let front_code = code_with_pkce(&app, &person, front["client_id"].as_str().unwrap(), &[]).await;
    let front_pair = (front["client_id"].as_str().unwrap(), front["client_secret"].as_str().unwrap());
    let (status, _, _) = token_request(&app, Some(front_pair), &exchange_form(&front_code)).await;
    assert_eq!(status, StatusCode::OK);

    let code = code_with_pkce(&app, &person, client_id, &[("scope", "openid offline_access"), ("nonce", "n-1")]).await;
    let (status, tokens, _) = token_request(&app, Some((client_id, secret)), &exchange_form(&code)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    remember_secret(tokens["access_token"].as_str().unwrap());
    remember_secret(tokens["refresh_token"].as_str().unwrap());
    let id_claims = verified(&app, tokens["id_token"].as_str().unwrap(), client_id).await;
    let sid = id_claims["sid"].as_str().expect("an ID token given through a session names it").to_owned();
    // A refreshed ID token names the same session.
    let refresh = [("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap())];
    let (status, refreshed, _) = token_request(&app, Some((client_id, secret)), &refresh).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    remember_secret(refreshed["access_token"].as_str().unwrap());
    remember_secret(refreshed["refresh_token"].as_str().unwrap());
    assert_eq!(verified(&app, refreshed["id_token"].as_str().unwrap(), client_id).await["sid"], json!(sid));
    let document: Value =
        app.client.get(app.url("/application/o/wiki/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (document["backchannel_logout_supported"].clone(), document["backchannel_logout_session_supported"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(notices_queued(&app).await, 0, "nothing is sent while the session lives");

    // The application's tokens have long expired and been purged when the person signs out: it
    // is told all the same.
    gatehouse::oauth::entities::token::Entity::delete_many().exec(&app.state.db).await.unwrap();
    let response = app.post(&person, "/api/v3/auth/sign_out/", json!({})).await;
    assert!(response.status().is_success(), "{}", response.status());

    let notice = endpoint.logout_tokens(1).await.remove(0);
    let header = jsonwebtoken::decode_header(&notice).unwrap();
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    let claims = verified(&app, &notice, client_id).await;
    assert_eq!(claims["iss"], id_claims["iss"]);
    assert_eq!(claims["sub"], id_claims["sub"]);
    assert_eq!(claims["sid"], json!(sid));
    assert_eq!(claims["events"], json!({"http://schemas.openid.net/event/backchannel-logout": {}}));
    assert!(claims.get("nonce").is_none(), "a logout token never carries a nonce: {claims}");
    assert!(claims["jti"].as_str().is_some_and(|jti| !jti.is_empty()), "{claims}");
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!((1..=120).contains(&lifetime), "{claims}");
    // A logout token is no ID token: it does not name the application at sign-out.
    let hint = app.url(&format!("/application/o/wiki/end-session/?id_token_hint={notice}"));
    assert_eq!(crate::oauth::open_as(&app, None, &hint).await.status(), StatusCode::BAD_REQUEST);
    // One notice for the one grant of the one application listening on the back channel.
    assert_eq!(notices_queued(&app).await, 1);

    // A session that ends without having given anything tells no one.
    let again = app.sign_in("person@example.com").await;
    let response = app.post(&again, "/api/v3/auth/sign_out/", json!({})).await;
    assert!(response.status().is_success());
    assert_eq!(notices_queued(&app).await, 1);
}

#[tokio::test]
async fn sessions_an_administrator_ends_are_announced_and_a_failed_notice_is_sent_again() {
    let (endpoint, logout_uri) = LogoutEndpoint::start().await;
    let app = TestApp::spawn_with(|config| config.tasks.retry_min_backoff = "milliseconds=50".parse().unwrap()).await;
    app.run_worker().await;
    let (admin, person, provider) = single_sign_on(&app, json!({"logout_uri": logout_uri})).await;
    assert_eq!(provider["logout_method"], "backchannel", "the back channel is the default");
    let client_id = provider["client_id"].as_str().unwrap();
    let code = code_with_pkce(&app, &person, client_id, &[]).await;
    let (status, tokens, _) =
        token_request(&app, Some((client_id, provider["client_secret"].as_str().unwrap())), &exchange_form(&code)).await;
    assert_eq!(status, StatusCode::OK);
    remember_secret(tokens["access_token"].as_str().unwrap());
    let sid = verified(&app, tokens["id_token"].as_str().unwrap(), client_id).await["sid"].clone();
    // The application is down for the first attempt.
    endpoint.answers.lock().unwrap().push_back(503);

    let (status, people) = json(app.get(&admin, "/api/v3/core/users/?email=person%40example.com").await).await;
    assert_eq!(status, StatusCode::OK);
    let pk = people["results"][0]["pk"].clone();
    let (status, body) = json(app.patch(&admin, &format!("/api/v3/core/users/{pk}/"), json!({"is_active": false})).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let notices = endpoint.logout_tokens(2).await;
    // Once taken, the task is done and nothing more is sent.
    for _ in 0..400 {
        let done = gatehouse::tasks::entities::task::Entity::find()
            .filter(gatehouse::tasks::entities::task::Column::ActorName.eq(gatehouse::oauth::backchannel::ACTOR))
            .filter(gatehouse::tasks::entities::task::Column::State.eq("done"))
            .count(&app.state.db)
            .await
            .unwrap();
        if done == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(endpoint.received.lock().unwrap().len(), 2, "sent again after the failure, and only until it was taken");
    for notice in &notices {
        assert_eq!(verified(&app, notice, client_id).await["sid"], sid);
    }
    assert_eq!(notices_queued(&app).await, 1, "one task, retried");
    // A logout address that is not one, or a front channel that would never be heard, is
    // refused by name and changes nothing.
    let provider_url = format!("{PROVIDERS}{}/", provider["pk"]);
    let (status, body) = json(app.patch(&admin, &provider_url, json!({"logout_uri": "not a url"})).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["logout_uri"].is_array(), "{body}");
    let (status, body) = json(app.patch(&admin, &provider_url, json!({"logout_method": "frontchannel"})).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["logout_method"][0].as_str().unwrap().contains("backchannel"), "{body}");
    let (_, unchanged) = json(app.get(&admin, &provider_url).await).await;
    assert_eq!((unchanged["logout_uri"].as_str(), unchanged["logout_method"].as_str()), (Some(logout_uri.as_str()), Some("backchannel")));
    // Without an address, either method may be stored (nothing is sent).
    let (status, body) = json(app.patch(&admin, &provider_url, json!({"logout_uri": "", "logout_method": "frontchannel"})).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
