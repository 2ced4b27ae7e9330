//! Applications and OAuth 2.0 / OpenID Connect providers through `/api/v3/core/applications/`
//! and `/api/v3/providers/oauth2/`, and the key set a provider publishes, checked with the
//! `jsonwebtoken` crate as a relying party would.

use gatehouse::oauth::entities::provider;
use reqwest::StatusCode;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};

use crate::support::{Session, TestApp, assert_field_error, assert_forbidden, json, remember_secret};

pub(crate) const PROVIDERS: &str = "/api/v3/providers/oauth2/";
pub(crate) const APPLICATIONS: &str = "/api/v3/core/applications/";

pub(crate) async fn flow_pk(app: &TestApp, session: &Session, slug: &str) -> String {
    let (status, flow) = json(app.get(session, &format!("/api/v3/flows/instances/{slug}/")).await).await;
    assert_eq!(status, StatusCode::OK, "{flow}");
    flow["pk"].as_str().unwrap().to_owned()
}

/// A provider request with the required fields and `extra` on top.
async fn provider_request(app: &TestApp, session: &Session, extra: Value) -> Value {
    let mut request = json!({
        "name": "Wiki",
        "authorization_flow": flow_pk(app, session, "default-authentication-flow").await,
        "invalidation_flow": flow_pk(app, session, "default-invalidation-flow").await,
        "redirect_uris": [{"matching_mode": "strict", "url": "https://wiki.example/oauth/callback"}],
    });
    request.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    request
}

pub(crate) async fn create_provider(app: &TestApp, session: &Session, extra: Value) -> Value {
    let request = provider_request(app, session, extra).await;
    let (status, created) = json(app.post(session, PROVIDERS, request).await).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    if let Some(secret) = created["client_secret"].as_str() {
        remember_secret(secret);
    }
    created
}

async fn provider_count(app: &TestApp) -> u64 {
    provider::Entity::find().count(&app.state.db).await.unwrap()
}

#[tokio::test]
async fn a_client_secret_is_shown_once_and_kept_only_as_a_digest() {
    let app = TestApp::spawn().await;
    app.superuser("root@example.com").await;
    let admin = app.sign_in("root@example.com").await;
    let created = create_provider(&app, &admin, json!({})).await;
    let secret = created["client_secret"].as_str().expect("a generated secret").to_owned();
    assert!(secret.len() >= 60, "{secret}");
    assert_eq!(created["client_type"], "confidential");
    assert_eq!(created["grant_types"], json!(["authorization_code", "refresh_token"]));
    assert_eq!(created["access_code_validity"], "minutes=1");
    assert_eq!(created["sub_mode"], "hashed_user_id");
    assert_eq!(created["issuer_mode"], "per_provider");
    assert_eq!(created["meta_model_name"], "authentik_providers_oauth2.oauth2provider");
    assert_eq!(created["assigned_application_slug"], Value::Null);
    let id = created["pk"].as_i64().unwrap();

    // Never again in an answer, and not stored as given.
    let (_, read) = json(app.get(&admin, &format!("{PROVIDERS}{id}/")).await).await;
    assert_eq!(read["client_secret"], Value::Null);
    assert_eq!(read["client_id"], created["client_id"]);
    let stored = provider::Entity::find_by_id(id).one(&app.state.db).await.unwrap().unwrap();
    let digest = stored.client_secret_digest.clone().expect("a digest");
    assert!(!digest.contains(&secret) && digest.len() == 64, "{digest}");
    assert!(gatehouse::oauth::providers::client_secret_matches(&app.state.secret, &stored, &secret));
    assert!(!gatehouse::oauth::providers::client_secret_matches(&app.state.secret, &stored, &format!("{secret}x")));

    // Rotation hands out a new secret once; the old one stops matching.
    let (status, rotated) = json(app.post(&admin, &format!("{PROVIDERS}{id}/rotate_client_secret/"), json!({})).await).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    remember_secret(&new_secret);
    assert_ne!(new_secret, secret);
    let stored = provider::Entity::find_by_id(id).one(&app.state.db).await.unwrap().unwrap();
    assert!(gatehouse::oauth::providers::client_secret_matches(&app.state.secret, &stored, &new_secret));
    assert!(!gatehouse::oauth::providers::client_secret_matches(&app.state.secret, &stored, &secret));

    // A public client has none, and nothing to rotate.
    let public = create_provider(&app, &admin, json!({"name": "SPA", "client_type": "public"})).await;
    assert_eq!(public["client_secret"], Value::Null);
    let response = app.post(&admin, &format!("{PROVIDERS}{}/rotate_client_secret/", public["pk"]), json!({})).await;
    assert_field_error(response, "client_type").await;

    // The audit trail says a secret was set or replaced, never what it is.
    let (_, events) = json(app.get(&admin, "/api/v3/events/events/?action=model_updated").await).await;
    let text = events.to_string();
    assert!(text.contains("replaced") && !text.contains(&new_secret) && !text.contains(&digest), "{text}");
}

#[tokio::test]
async fn provider_input_is_checked_field_by_field_and_a_refused_request_writes_nothing() {
    let app = TestApp::spawn().await;
    app.superuser("root@example.com").await;
    let admin = app.sign_in("root@example.com").await;
    let cases = [
        (json!({"grant_types": ["implicit"]}), "grant_types"),
        (json!({"client_type": "public", "grant_types": ["client_credentials"]}), "grant_types"),
        (json!({"redirect_uris": [{"matching_mode": "strict", "url": "https://wiki.example/cb#fragment"}]}), "redirect_uris"),
        (json!({"redirect_uris": [{"matching_mode": "strict", "url": "javascript:alert(1)"}]}), "redirect_uris"),
        (json!({"redirect_uris": [{"matching_mode": "regex", "url": "(unclosed"}]}), "redirect_uris"),
        (json!({"access_code_validity": "hours=1"}), "access_code_validity"),
        (json!({"access_token_validity": "seconds=0"}), "access_token_validity"),
        (json!({"refresh_token_validity": "fortnights=2"}), "refresh_token_validity"),
        (json!({"authorization_flow": "00000000-0000-0000-0000-000000000000"}), "authorization_flow"),
        (json!({"encryption_key": "00000000-0000-0000-0000-000000000000"}), "encryption_key"),
        (json!({"signing_key": "00000000-0000-0000-0000-000000000000"}), "signing_key"),
        (json!({"property_mappings": ["00000000-0000-0000-0000-000000000000"]}), "property_mappings"),
        (json!({"client_secret": "too-short"}), "client_secret"),
        (json!({"client_type": "public", "client_secret": "a-secret-a-public-client-cannot-keep-0123"}), "client_secret"),
        (json!({"client_id": "has space"}), "client_id"),
        (json!({"logout_uri": "javascript:alert(1)"}), "logout_uri"),
        (json!({"name": "  "}), "name"),
    ];
    for (extra, field) in cases {
        let request = provider_request(&app, &admin, extra).await;
        assert_field_error(app.post(&admin, PROVIDERS, request).await, field).await;
    }
    // Required fields are named, every one of them.
    let body = assert_field_error(app.post(&admin, PROVIDERS, json!({})).await, "name").await;
    for field in ["authorization_flow", "invalidation_flow", "redirect_uris"] {
        assert!(body.get(field).is_some(), "{field} in {body}");
    }
    assert_eq!(provider_count(&app).await, 0);

    // A client id is unique; the clash names it and the first provider is unchanged.
    let first = create_provider(&app, &admin, json!({"client_id": "wiki"})).await;
    let request = provider_request(&app, &admin, json!({"client_id": "wiki", "name": "Other"})).await;
    assert_field_error(app.post(&admin, PROVIDERS, request).await, "client_id").await;
    assert_eq!(provider_count(&app).await, 1);

    // A refused change leaves the provider as it was.
    let id = first["pk"].as_i64().unwrap();
    let response = app.patch(&admin, &format!("{PROVIDERS}{id}/"), json!({"name": "Renamed", "grant_types": ["hybrid"]})).await;
    assert_field_error(response, "grant_types").await;
    let (_, read) = json(app.get(&admin, &format!("{PROVIDERS}{id}/")).await).await;
    assert_eq!(read["name"], "Wiki");

    // PATCH keeps what it does not name; PUT needs every required field.
    let (status, patched) =
        json(app.patch(&admin, &format!("{PROVIDERS}{id}/"), json!({"access_token_validity": "minutes=90"})).await).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["access_token_validity"], "hours=1;minutes=30");
    assert_eq!(patched["redirect_uris"], first["redirect_uris"]);
    assert_eq!(patched["client_secret"], Value::Null, "a change that sets no secret shows none");
    assert_field_error(app.put(&admin, &format!("{PROVIDERS}{id}/"), json!({"name": "Only a name"})).await, "redirect_uris").await;
}

#[tokio::test]
async fn an_application_shows_its_provider_and_each_provider_serves_one_application() {
    let app = TestApp::spawn().await;
    app.superuser("root@example.com").await;
    let admin = app.sign_in("root@example.com").await;
    let provider = create_provider(&app, &admin, json!({})).await;
    let request = json!({"name": "Wiki", "slug": "wiki", "provider": provider["pk"], "meta_launch_url": "https://wiki.example/"});
    let (status, created) = json(app.post(&admin, APPLICATIONS, request).await).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["provider_obj"]["name"], "Wiki");
    assert_eq!(created["provider_obj"]["assigned_application_slug"], "wiki");
    assert_eq!(created["launch_url"], "https://wiki.example/");
    assert_eq!(created["policy_engine_mode"], "any");
    assert_eq!(created["pk"], created["pbm_uuid"]);

    let (_, read) = json(app.get(&admin, &format!("{PROVIDERS}{}/", provider["pk"])).await).await;
    assert_eq!((read["assigned_application_slug"].as_str(), read["assigned_application_name"].as_str()), (Some("wiki"), Some("Wiki")));
    let (_, used) = json(app.get(&admin, &format!("{PROVIDERS}{}/used_by/", provider["pk"])).await).await;
    assert_eq!(used[0]["model_name"], "application");

    // One application per provider; slugs are unique and URL-safe; launch URLs are web URLs.
    let clash = json!({"name": "Wiki 2", "slug": "wiki-2", "provider": provider["pk"]});
    assert_field_error(app.post(&admin, APPLICATIONS, clash).await, "provider").await;
    assert_field_error(app.post(&admin, APPLICATIONS, json!({"name": "Again", "slug": "wiki"})).await, "slug").await;
    assert_field_error(app.post(&admin, APPLICATIONS, json!({"name": "Bad", "slug": "not a slug"})).await, "slug").await;
    let script = json!({"name": "Script", "slug": "script", "meta_launch_url": "javascript:alert(1)"});
    assert_field_error(app.post(&admin, APPLICATIONS, script).await, "meta_launch_url").await;
    assert_field_error(
        app.post(&admin, APPLICATIONS, json!({"name": "Nowhere", "slug": "nowhere", "provider": 999_999})).await,
        "provider",
    )
    .await;

    // Retrieved and changed by slug; the list filters and searches.
    let (status, changed) = json(app.patch(&admin, &format!("{APPLICATIONS}wiki/"), json!({"group": "Docs"})).await).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["group"], "Docs");
    let (_, found) = json(app.get(&admin, &format!("{APPLICATIONS}?search=wik")).await).await;
    assert_eq!(found["pagination"]["count"], 1);
    let (_, none) = json(app.get(&admin, &format!("{APPLICATIONS}?group=Other")).await).await;
    assert_eq!(none["pagination"]["count"], 0);

    // Deleting the provider leaves the application without one.
    let response = app.delete(&admin, &format!("{PROVIDERS}{}/", provider["pk"])).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (_, read) = json(app.get(&admin, &format!("{APPLICATIONS}wiki/")).await).await;
    assert_eq!((read["provider"].clone(), read["provider_obj"].clone()), (Value::Null, Value::Null));
    let response = app.delete(&admin, &format!("{APPLICATIONS}wiki/")).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get(&admin, &format!("{APPLICATIONS}wiki/")).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn providers_and_applications_are_changed_only_with_their_permissions() {
    let app = TestApp::spawn().await;
    app.superuser("root@example.com").await;
    let admin = app.sign_in("root@example.com").await;
    let provider = create_provider(&app, &admin, json!({})).await;
    let (status, _) = json(app.post(&admin, APPLICATIONS, json!({"name": "Wiki", "slug": "wiki"})).await).await;
    assert_eq!(status, StatusCode::CREATED);

    // Anyone signed in sees the applications they may launch, and nothing of providers.
    app.user_with("plain@example.com", &[]).await;
    let plain = app.sign_in("plain@example.com").await;
    let (status, listed) = json(app.get(&plain, APPLICATIONS).await).await;
    assert_eq!((status, listed["pagination"]["count"].as_u64()), (StatusCode::OK, Some(1)), "{listed}");
    assert_forbidden(app.get(&plain, PROVIDERS).await).await;
    assert_forbidden(app.get(&plain, &format!("{PROVIDERS}{}/", provider["pk"])).await).await;
    assert_forbidden(app.post(&plain, APPLICATIONS, json!({"name": "Mine", "slug": "mine"})).await).await;
    assert_forbidden(app.patch(&plain, &format!("{APPLICATIONS}wiki/"), json!({"name": "Taken over"})).await).await;
    assert_forbidden(app.delete(&plain, &format!("{APPLICATIONS}wiki/")).await).await;
    let request = provider_request(&app, &admin, json!({"name": "Mine"})).await;
    assert_forbidden(app.post(&plain, PROVIDERS, request).await).await;

    // Adding providers does not reach the signing keys, nor linking applications to them
    // without seeing providers.
    app.user_with("builder@example.com", &["authentik_providers_oauth2.add_oauth2provider", "authentik_core.add_application"]).await;
    let builder = app.sign_in("builder@example.com").await;
    let key = gatehouse::crypto::service::ensure_managed_jwt_key(&app.state, app.state.tenant).await.unwrap();
    let request = provider_request(&app, &admin, json!({"name": "Signed", "signing_key": key.id})).await;
    assert_forbidden(app.post(&builder, PROVIDERS, request).await).await;
    let request = provider_request(&app, &admin, json!({"name": "Unsigned"})).await;
    let (status, own) = json(app.post(&builder, PROVIDERS, request).await).await;
    assert_eq!(status, StatusCode::CREATED, "{own}");
    remember_secret(own["client_secret"].as_str().unwrap());
    let linked = json!({"name": "Linked", "slug": "linked", "provider": own["pk"]});
    assert_forbidden(app.post(&builder, APPLICATIONS, linked).await).await;
    let (status, _) = json(app.post(&builder, APPLICATIONS, json!({"name": "Unlinked", "slug": "unlinked"})).await).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_forbidden(app.patch(&builder, &format!("{PROVIDERS}{}/", own["pk"]), json!({"name": "Changed"})).await).await;
    assert_eq!(provider_count(&app).await, 2);
}

#[tokio::test]
async fn a_flow_a_provider_uses_cannot_be_deleted_from_under_it() {
    let app = TestApp::spawn().await;
    app.superuser("root@example.com").await;
    let admin = app.sign_in("root@example.com").await;
    let flow = json!({"name": "Consent", "slug": "consent", "title": "Consent", "designation": "authorization"});
    let (status, created) = json(app.post(&admin, "/api/v3/flows/instances/", flow).await).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    create_provider(&app, &admin, json!({"authorization_flow": created["pk"]})).await;
    let body = assert_field_error(app.delete(&admin, "/api/v3/flows/instances/consent/").await, "non_field_errors").await;
    assert!(body.to_string().contains("provider"), "{body}");
    assert_eq!(app.get(&admin, "/api/v3/flows/instances/consent/").await.status(), StatusCode::OK);
}

/// The key set of the application `slug`'s provider, checked for the headers relying parties
/// in browsers need.
async fn key_set(app: &TestApp, slug: &str) -> jsonwebtoken::jwk::JwkSet {
    let response = app.client.get(app.url(&format!("/application/o/{slug}/jwks/"))).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_provider_publishes_the_key_that_signs_its_tokens() {
    let app = TestApp::spawn().await;
    app.superuser("root@example.com").await;
    let admin = app.sign_in("root@example.com").await;
    let generation = json!({"common_name": "sso.example", "validity_days": 30, "alg": "rsa"});
    let (status, pair) = json(app.post(&admin, "/api/v3/crypto/certificatekeypairs/generate/", generation).await).await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    let provider = create_provider(&app, &admin, json!({"signing_key": pair["pk"]})).await;
    assert_eq!(provider["signing_key"], pair["pk"]);
    let (status, _) = json(app.post(&admin, APPLICATIONS, json!({"name": "Wiki", "slug": "wiki", "provider": provider["pk"]})).await).await;
    assert_eq!(status, StatusCode::CREATED);

    let keys = key_set(&app, "wiki").await;
    assert_eq!(keys.keys.len(), 1);
    let jwk = &keys.keys[0];
    assert!(matches!(jwk.algorithm, jsonwebtoken::jwk::AlgorithmParameters::RSA(_)), "{jwk:?}");
    // The certificate in the key is the pair's.
    let (_, certificate) =
        json(app.get(&admin, &format!("/api/v3/crypto/certificatekeypairs/{}/view_certificate/", pair["pk"].as_str().unwrap())).await)
            .await;
    let der = pem::parse(certificate["data"].as_str().unwrap()).unwrap().into_contents();
    use base64::Engine;
    assert_eq!(jwk.common.x509_chain.as_ref().unwrap()[0], base64::engine::general_purpose::STANDARD.encode(&der));

    // What the server signs with the pair verifies against the published key alone.
    let stored = gatehouse::crypto::service::pair_by_id(
        &app.state.db,
        app.state.tenant,
        uuid::Uuid::parse_str(pair["pk"].as_str().unwrap()).unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    let signer = gatehouse::crypto::jwt::Signer::for_pair(&app.state.secret, &stored).unwrap().unwrap();
    let token = signer.sign(&json!({"sub": "x", "exp": 4_000_000_000u64}), "JWT").unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    jsonwebtoken::decode::<Value>(&token, &key, &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256)).expect("verifies");

    // The pair shows what it signs for; deleting it leaves the provider on the managed key.
    let (_, used) =
        json(app.get(&admin, &format!("/api/v3/crypto/certificatekeypairs/{}/used_by/", pair["pk"].as_str().unwrap())).await).await;
    assert_eq!(used[0]["model_name"], "oauth2provider", "{used}");
    let response = app.delete(&admin, &format!("/api/v3/crypto/certificatekeypairs/{}/", pair["pk"].as_str().unwrap())).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (_, read) = json(app.get(&admin, &format!("{PROVIDERS}{}/", provider["pk"])).await).await;
    assert_eq!(read["signing_key"], Value::Null);
    let keys = key_set(&app, "wiki").await;
    assert!(matches!(keys.keys[0].algorithm, jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_)), "{:?}", keys.keys[0]);

    // No key set for what has no provider.
    let (status, _) = json(app.post(&admin, APPLICATIONS, json!({"name": "Plain", "slug": "plain"})).await).await;
    assert_eq!(status, StatusCode::CREATED);
    for slug in ["plain", "missing"] {
        let response = app.client.get(app.url(&format!("/application/o/{slug}/jwks/"))).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{slug}");
    }
}

/// A person, a confidential provider for `https://wiki.example/oauth/callback` on the implicit
/// consent flow, and its application `wiki`: the admin session, the person's session, the
/// provider as created (with its secret).
pub(crate) async fn single_sign_on(app: &TestApp, extra: Value) -> (Session, Session, Value) {
    app.superuser("root@example.com").await;
    let admin = app.sign_in("root@example.com").await;
    app.user("person@example.com", |u| u.name = "Pat Person".into()).await;
    let person = app.sign_in("person@example.com").await;
    let mut settings = json!({
        "authorization_flow": flow_pk(app, &admin, "default-provider-authorization-implicit-consent").await,
        "grant_types": ["authorization_code", "refresh_token"],
    });
    settings.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let provider = create_provider(app, &admin, settings).await;
    let (status, _) = json(app.post(&admin, APPLICATIONS, json!({"name": "Wiki", "slug": "wiki", "provider": provider["pk"]})).await).await;
    assert_eq!(status, StatusCode::CREATED);
    (admin, person, provider)
}

/// The browser's part: the authorization URL opened with `session`'s cookie; the redirect it
/// answers with.
pub(crate) async fn open_as(app: &TestApp, session: Option<&Session>, url: &str) -> reqwest::Response {
    let mut request = app.client.get(url);
    if let Some(session) = session {
        request = request.header("cookie", &session.cookie);
    }
    request.send().await.unwrap()
}

pub(crate) fn location(response: &reqwest::Response) -> url::Url {
    assert_eq!(response.status(), StatusCode::FOUND, "expected a redirect");
    url::Url::parse(response.headers()["location"].to_str().unwrap())
        .or_else(|_| url::Url::parse("http://server.invalid").unwrap().join(response.headers()["location"].to_str().unwrap()))
        .unwrap()
}

pub(crate) fn query_value(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(n, _)| n == name).map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn a_relying_party_signs_a_person_in_with_code_and_pkce_then_refreshes() {
    use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims};
    use openidconnect::{
        AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope,
        TokenResponse,
    };
    let app = TestApp::spawn().await;
    let (_admin, person, provider) = single_sign_on(&app, json!({})).await;
    let http = openidconnect::reqwest::Client::builder().redirect(openidconnect::reqwest::redirect::Policy::none()).build().unwrap();
    let issuer = IssuerUrl::new(app.url("/application/o/wiki/")).unwrap();
    let metadata = CoreProviderMetadata::discover_async(issuer, &http).await.expect("discovery and the key set");
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(provider["client_id"].as_str().unwrap().into()),
        Some(ClientSecret::new(provider["client_secret"].as_str().unwrap().into())),
    )
    .set_redirect_uri(RedirectUrl::new("https://wiki.example/oauth/callback".into()).unwrap());

    // The browser's round trip, then the code for tokens.
    let sign_in = || async {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (authorize_url, csrf, nonce) = client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new("offline_access".into()))
            .set_pkce_challenge(challenge)
            .url();
        let back = location(&open_as(&app, Some(&person), authorize_url.as_str()).await);
        assert_eq!((back.host_str(), back.path()), (Some("wiki.example"), "/oauth/callback"), "{back}");
        assert_eq!(query_value(&back, "state").as_deref(), Some(csrf.secret().as_str()));
        assert_eq!(query_value(&back, "iss").as_deref(), Some(app.url("/application/o/wiki/").as_str()));
        let code = query_value(&back, "code").expect("a code");
        remember_secret(&code);
        let verifier_text = verifier.secret().clone();
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.clone()))
            .unwrap()
            .set_pkce_verifier(verifier)
            .request_async(&http)
            .await
            .expect("tokens for the code");
        remember_secret(tokens.access_token().secret());
        if let Some(refresh) = tokens.refresh_token() {
            remember_secret(refresh.secret());
        }
        (code, verifier_text, nonce, tokens)
    };
    let (code, verifier, nonce, tokens) = sign_in().await;
    let id_token = tokens.id_token().expect("an ID token");
    let claims = id_token.claims(&client.id_token_verifier(), &nonce).expect("the ID token verifies against the published key");
    assert_eq!(claims.email().map(|e| e.as_str()), Some("person@example.com"));
    assert_eq!(claims.preferred_username().map(|u| u.as_str()), Some("person@example.com"));
    let expected_hash = openidconnect::AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&client.id_token_verifier()).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&expected_hash));
    let subject = claims.subject().as_str().to_owned();
    assert_eq!(subject.len(), 64, "a keyed hash of the user: {subject}");

    let userinfo = |token: openidconnect::AccessToken| {
        let client = &client;
        let http = &http;
        async move {
            let claims: Result<CoreUserInfoClaims, _> = client.user_info(token, None).unwrap().request_async(http).await;
            claims
        }
    };
    let info = userinfo(tokens.access_token().clone()).await.expect("userinfo");
    assert_eq!(info.subject().as_str(), subject);
    assert_eq!(info.email().map(|e| e.as_str()), Some("person@example.com"));
    assert_eq!(info.name().and_then(|n| n.get(None)).map(|n| n.as_str()), Some("Pat Person"));

    // The code once more, verifier and all: refused, and what it gave is withdrawn.
    let again = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(openidconnect::PkceCodeVerifier::new(verifier))
        .request_async(&http)
        .await;
    assert!(format!("{again:?}").contains("invalid_grant"), "{again:?}");
    assert!(userinfo(tokens.access_token().clone()).await.is_err(), "an access token outlived the replay of its code");
    let refresh = tokens.refresh_token().expect("a refresh token for offline_access").clone();
    assert!(client.exchange_refresh_token(&refresh).unwrap().request_async(&http).await.is_err(), "a refresh token outlived the replay");

    // Refresh rotates: the new refresh token works, the old one once more revokes the family.
    let (_, _, _, tokens) = sign_in().await;
    let refresh = tokens.refresh_token().expect("a refresh token for offline_access").clone();
    let renewed = client.exchange_refresh_token(&refresh).unwrap().request_async(&http).await.expect("refreshed");
    remember_secret(renewed.access_token().secret());
    let second = renewed.refresh_token().expect("a rotated refresh token").clone();
    remember_secret(second.secret());
    assert_ne!(second.secret(), refresh.secret());
    assert!(userinfo(renewed.access_token().clone()).await.is_ok());
    let replayed = client.exchange_refresh_token(&refresh).unwrap().request_async(&http).await;
    assert!(format!("{replayed:?}").contains("invalid_grant"), "{replayed:?}");
    assert!(userinfo(renewed.access_token().clone()).await.is_err(), "the family's access token still works after a refresh token replay");
    assert!(client.exchange_refresh_token(&second).unwrap().request_async(&http).await.is_err(), "the newest refresh token survived");

    // The sign-in is on record.
    let events = gatehouse::events::entities::event::Entity::find().all(&app.state.db).await.unwrap();
    assert!(events.iter().any(|e| e.action == "authorize_application"), "no authorize_application event");
}

/// The token endpoint's answer to `form` as the client authenticated with `basic`.
pub(crate) async fn token_request(
    app: &TestApp,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let mut request = app.client.post(app.url("/application/o/token/")).form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, response.json().await.unwrap_or(Value::Null), headers)
}

/// An authorization request of `client_id` for the wiki's callback and `openid`; `extra` adds
/// parameters or replaces these (an empty value leaves one out).
pub(crate) fn authorize_path(client_id: &str, extra: &[(&str, &str)]) -> String {
    let mut parameters: Vec<(&str, &str)> = vec![
        ("client_id", client_id),
        ("response_type", "code"),
        ("scope", "openid"),
        ("redirect_uri", "https://wiki.example/oauth/callback"),
    ];
    for (name, value) in extra {
        parameters.retain(|(n, _)| n != name);
        if !value.is_empty() {
            parameters.push((name, value));
        }
    }
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in parameters {
        query.append_pair(name, value);
    }
    format!("/application/o/authorize/?{}", query.finish())
}

pub(crate) const VERIFIER: &str = "a-verifier-of-forty-three-characters-or-more-0123";

pub(crate) fn s256(verifier: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

#[tokio::test]
async fn every_wrong_authorization_or_token_request_is_refused_without_handing_anything_out() {
    let app = TestApp::spawn().await;
    let (admin, person, provider) = single_sign_on(&app, json!({})).await;
    let client_id = provider["client_id"].as_str().unwrap().to_owned();
    let secret = provider["client_secret"].as_str().unwrap().to_owned();
    let challenge = s256(VERIFIER);
    let pkce = [("code_challenge", challenge.as_str()), ("code_challenge_method", "S256"), ("state", "xyz")];

    // Not signed in: off to the sign-in flow, with the way back.
    let response = open_as(&app, None, &app.url(&authorize_path(&client_id, &pkce))).await;
    let to = location(&response);
    assert_eq!(to.path(), "/if/flow/default-authentication-flow/");
    assert!(query_value(&to, "next").unwrap().starts_with("/application/o/authorize/?client_id="), "{to}");
    let silent = location(
        &open_as(&app, None, &app.url(&authorize_path(&client_id, &[pkce[0], pkce[1], ("prompt", "none"), ("state", "s")]))).await,
    );
    assert_eq!((query_value(&silent, "error").as_deref(), query_value(&silent, "state").as_deref()), (Some("login_required"), Some("s")));

    // An unknown client or an unregistered redirect URI gets a page, never a redirect.
    for path in [
        authorize_path("unknown-client", &pkce),
        authorize_path(&client_id, &pkce).replace("wiki.example%2Foauth", "evil.example%2Foauth"),
        authorize_path(&client_id, &pkce).replace("callback", "callback%2Fextra"),
    ] {
        let response = open_as(&app, Some(&person), &app.url(&path)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        assert!(response.headers().get("location").is_none(), "{path}");
    }

    // Other mistakes go back to the client as errors.
    for (extra, error) in [
        (vec![("code_challenge", challenge.as_str()), ("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge", challenge.as_str())], "invalid_request"),
        (vec![("code_challenge", "short"), ("code_challenge_method", "S256")], "invalid_request"),
        (vec![("response_type", "token")], "unsupported_response_type"),
        (vec![("code_challenge", challenge.as_str()), ("code_challenge_method", "S256"), ("max_age", "soon")], "invalid_request"),
        (vec![("response_mode", "fragment")], "invalid_request"),
        // A confidential client without PKCE needs the openid scope and a nonce.
        (vec![], "invalid_request"),
    ] {
        let response = open_as(&app, Some(&person), &app.url(&authorize_path(&client_id, &extra))).await;
        let back = location(&response);
        assert_eq!(query_value(&back, "error").as_deref(), Some(error), "{extra:?}: {back}");
        assert!(query_value(&back, "code").is_none());
    }

    // A code for the rest.
    let code_for = |extra: &'static [(&'static str, &'static str)]| {
        let app = &app;
        let person = &person;
        let client_id = client_id.clone();
        let challenge = challenge.clone();
        async move {
            let mut parameters = vec![("code_challenge", challenge.as_str()), ("code_challenge_method", "S256")];
            parameters.extend_from_slice(extra);
            let back = location(&open_as(app, Some(person), &app.url(&authorize_path(&client_id, &parameters))).await);
            let code = query_value(&back, "code").unwrap_or_else(|| panic!("no code: {back}"));
            remember_secret(&code);
            code
        }
    };
    let redirect = "https://wiki.example/oauth/callback";

    // The wrong secret, or none: 401 with a challenge, and the code still unused.
    let code = code_for(&[]).await;
    let exchange = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", redirect), ("code_verifier", VERIFIER)];
    let (status, body, headers) = token_request(&app, Some((&client_id, "not-the-secret")), &exchange).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
    assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    assert_eq!(headers["cache-control"], "no-store");
    let (status, body, _) = token_request(&app, None, &[&exchange[..], &[("client_id", client_id.as_str())]].concat()).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
    // Secret in the body (client_secret_post) works as well as basic.
    let (status, body, _) =
        token_request(&app, None, &[&exchange[..], &[("client_id", client_id.as_str()), ("client_secret", secret.as_str())]].concat())
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    remember_secret(body["access_token"].as_str().unwrap());

    // A wrong or missing verifier, or another redirect URI, burns the code without tokens.
    for wrong in [
        vec![("code_verifier", "another-verifier-of-forty-three-characters-012345")],
        vec![],
        vec![("code_verifier", VERIFIER), ("redirect_uri_override", "")],
    ] {
        let code = code_for(&[]).await;
        let mut form = vec![("grant_type", "authorization_code"), ("code", code.as_str())];
        if wrong.iter().any(|(n, _)| *n == "redirect_uri_override") {
            form.push(("redirect_uri", "https://wiki.example/other"));
            form.push(("code_verifier", VERIFIER));
        } else {
            form.push(("redirect_uri", redirect));
            form.extend(wrong.iter().copied());
        }
        let (status, body, _) = token_request(&app, Some((&client_id, &secret)), &form).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{form:?}");
        assert!(body.get("access_token").is_none());
        let right =
            [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", redirect), ("code_verifier", VERIFIER)];
        let (status, _, _) = token_request(&app, Some((&client_id, &secret)), &right).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "a code survived a failed exchange");
    }

    // An expired code.
    let code = code_for(&[]).await;
    use sea_orm::{ColumnTrait, QueryFilter, sea_query::Expr};
    gatehouse::oauth::entities::code::Entity::update_many()
        .col_expr(gatehouse::oauth::entities::code::Column::Expires, Expr::value(chrono::Utc::now() - chrono::TimeDelta::seconds(1)))
        .filter(gatehouse::oauth::entities::code::Column::UsedAt.is_null())
        .exec(&app.state.db)
        .await
        .unwrap();
    let exchange = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", redirect), ("code_verifier", VERIFIER)];
    let (_, body, _) = token_request(&app, Some((&client_id, &secret)), &exchange).await;
    assert_eq!(body["error"], "invalid_grant");

    // Grants the client does not have, and ones nobody has.
    let (_, body, _) = token_request(&app, Some((&client_id, &secret)), &[("grant_type", "client_credentials")]).await;
    assert_eq!(body["error"], "unauthorized_client");
    let (_, body, _) = token_request(&app, Some((&client_id, &secret)), &[("grant_type", "password"), ("username", "x")]).await;
    assert_eq!(body["error"], "unsupported_grant_type");

    // userinfo without a token, or with a made-up one.
    let response = app.client.get(app.url("/application/o/userinfo/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = app.client.get(app.url("/application/o/userinfo/")).bearer_auth("made-up").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));

    // A public client must use PKCE.
    let public = create_provider(
        &app,
        &admin,
        json!({"name": "SPA", "client_type": "public", "client_id": "spa",
               "authorization_flow": flow_pk(&app, &admin, "default-provider-authorization-implicit-consent").await}),
    )
    .await;
    let (status, _) = json(app.post(&admin, APPLICATIONS, json!({"name": "SPA", "slug": "spa", "provider": public["pk"]})).await).await;
    assert_eq!(status, StatusCode::CREATED);
    let back = location(&open_as(&app, Some(&person), &app.url(&authorize_path("spa", &[]))).await);
    assert_eq!(query_value(&back, "error").as_deref(), Some("invalid_request"), "{back}");

    // An authorization flow with stages is not skipped: the person is sent through it, and no
    // code comes back until they finish it.
    let wiki = provider["pk"].as_i64().unwrap();
    let sign_in_flow = flow_pk(&app, &admin, "default-authentication-flow").await;
    let (status, _) = json(app.patch(&admin, &format!("{PROVIDERS}{wiki}/"), json!({"authorization_flow": sign_in_flow})).await).await;
    assert_eq!(status, StatusCode::OK);
    let through = location(&open_as(&app, Some(&person), &app.url(&authorize_path(&client_id, &pkce))).await);
    assert_eq!(through.path(), "/if/flow/default-authentication-flow/");
    assert_eq!(query_value(&through, "code"), None);
}

/// A code for `client_id` with PKCE, as the signed-in `session`.
pub(crate) async fn code_with_pkce(app: &TestApp, session: &Session, client_id: &str, extra: &[(&str, &str)]) -> String {
    let challenge = s256(VERIFIER);
    let mut parameters = vec![("code_challenge", challenge.as_str()), ("code_challenge_method", "S256")];
    parameters.extend_from_slice(extra);
    let back = location(&open_as(app, Some(session), &app.url(&authorize_path(client_id, &parameters))).await);
    let code = query_value(&back, "code").unwrap_or_else(|| panic!("no code: {back}"));
    remember_secret(&code);
    code
}

pub(crate) fn exchange_form(code: &str) -> Vec<(&str, &str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", "https://wiki.example/oauth/callback"),
        ("code_verifier", VERIFIER),
    ]
}

async fn userinfo_status(app: &TestApp, access_token: &str) -> StatusCode {
    app.client.get(app.url("/application/o/userinfo/")).bearer_auth(access_token).send().await.unwrap().status()
}

#[tokio::test]
async fn tokens_end_with_the_session_they_were_given_through() {
    let app = TestApp::spawn().await;
    let (_admin, person, provider) = single_sign_on(&app, json!({})).await;
    let (client_id, secret) = (provider["client_id"].as_str().unwrap(), provider["client_secret"].as_str().unwrap());
    let code = code_with_pkce(&app, &person, client_id, &[("scope", "openid offline_access")]).await;
    let (status, tokens, _) = token_request(&app, Some((client_id, secret)), &exchange_form(&code)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let (access, refresh) = (tokens["access_token"].as_str().unwrap(), tokens["refresh_token"].as_str().unwrap());
    remember_secret(access);
    remember_secret(refresh);
    assert_eq!(userinfo_status(&app, access).await, StatusCode::OK);

    // Signing out of Gatehouse ends what the application holds.
    let response = app.post(&person, "/api/v3/auth/sign_out/", json!({})).await;
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(userinfo_status(&app, access).await, StatusCode::UNAUTHORIZED);
    let (status, body, _) =
        token_request(&app, Some((client_id, secret)), &[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
}

#[tokio::test]
async fn a_code_is_good_only_for_the_client_it_was_issued_to() {
    let app = TestApp::spawn().await;
    let (admin, person, provider) = single_sign_on(&app, json!({})).await;
    let implicit = flow_pk(&app, &admin, "default-provider-authorization-implicit-consent").await;
    let other = create_provider(&app, &admin, json!({"name": "Other", "authorization_flow": implicit})).await;
    let (status, _) = json(app.post(&admin, APPLICATIONS, json!({"name": "Other", "slug": "other", "provider": other["pk"]})).await).await;
    assert_eq!(status, StatusCode::CREATED);
    let (client_id, secret) = (provider["client_id"].as_str().unwrap(), provider["client_secret"].as_str().unwrap());
    let code = code_with_pkce(&app, &person, client_id, &[]).await;
    let stolen =
        token_request(&app, Some((other["client_id"].as_str().unwrap(), other["client_secret"].as_str().unwrap())), &exchange_form(&code))
            .await;
    assert_eq!((stolen.0, stolen.1["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    // The rightful client still redeems it.
    let (status, tokens, _) = token_request(&app, Some((client_id, secret)), &exchange_form(&code)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    remember_secret(tokens["access_token"].as_str().unwrap());

    // Without redirect_uri in the request (one registered URI), the exchange needs none either.
    let challenge = s256(VERIFIER);
    let back = location(
        &open_as(
            &app,
            Some(&person),
            &app.url(&authorize_path(
                client_id,
                &[("redirect_uri", ""), ("code_challenge", &challenge), ("code_challenge_method", "S256")],
            )),
        )
        .await,
    );
    let code = query_value(&back, "code").expect("a code for the only registered URI");
    remember_secret(&code);
    let form = [("grant_type", "authorization_code"), ("code", code.as_str()), ("code_verifier", VERIFIER)];
    let (status, tokens, _) = token_request(&app, Some((client_id, secret)), &form).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    remember_secret(tokens["access_token"].as_str().unwrap());

    // A confidential client using the openid nonce instead of PKCE.
    let back = location(&open_as(&app, Some(&person), &app.url(&authorize_path(client_id, &[("nonce", "n-0S6_WzA2Mj")]))).await);
    let code = query_value(&back, "code").expect("a code with a nonce");
    remember_secret(&code);
    let form = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", "https://wiki.example/oauth/callback")];
    let (status, tokens, _) = token_request(&app, Some((client_id, secret)), &form).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    remember_secret(tokens["access_token"].as_str().unwrap());
}

#[tokio::test]
async fn a_loose_redirect_pattern_still_sends_people_only_somewhere_safe() {
    let app = TestApp::spawn().await;
    let pattern = json!({"redirect_uris": [{"matching_mode": "regex", "url": r"https://[a-z]+\.wiki\.example/cb.*"}]});
    let (_admin, person, provider) = single_sign_on(&app, pattern).await;
    let client_id = provider["client_id"].as_str().unwrap();
    let challenge = s256(VERIFIER);
    let pkce = [("code_challenge", challenge.as_str()), ("code_challenge_method", "S256")];
    let to = |uri: &'static str| [pkce.as_slice(), &[("redirect_uri", uri)]].concat();
    let back =
        location(&open_as(&app, Some(&person), &app.url(&authorize_path(client_id, &to("https://eu.wiki.example/cb?tenant=7")))).await);
    assert_eq!((back.host_str(), query_value(&back, "tenant").as_deref()), (Some("eu.wiki.example"), Some("7")));
    assert!(query_value(&back, "code").is_some());
    for unsafe_uri in
        ["https://eu.wiki.example/cb?code=forged", "https://eu.wiki.example/cb#fragment", "https://eu.wiki.example/cb?state=x"]
    {
        let response = open_as(&app, Some(&person), &app.url(&authorize_path(client_id, &to(unsafe_uri)))).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{unsafe_uri}");
        assert!(response.headers().get("location").is_none(), "{unsafe_uri}");
    }
}

#[tokio::test]
async fn the_authorization_flow_decides_who_may_use_the_application() {
    let app = TestApp::spawn().await;
    let (admin, person, provider) = single_sign_on(&app, json!({})).await;
    let flow = json!({"name": "Superusers", "slug": "superusers", "title": "Superusers", "designation": "authorization", "authentication": "require_superuser"});
    let (status, created) = json(app.post(&admin, "/api/v3/flows/instances/", flow).await).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let path = format!("{PROVIDERS}{}/", provider["pk"]);
    let (status, _) = json(app.patch(&admin, &path, json!({"authorization_flow": created["pk"]})).await).await;
    assert_eq!(status, StatusCode::OK);
    let challenge = s256(VERIFIER);
    let request =
        authorize_path(provider["client_id"].as_str().unwrap(), &[("code_challenge", &challenge), ("code_challenge_method", "S256")]);
    let refused = open_as(&app, Some(&person), &app.url(&request)).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(refused.headers().get("location").is_none());
    let allowed = location(&open_as(&app, Some(&admin), &app.url(&request)).await);
    assert!(query_value(&allowed, "code").is_some(), "{allowed}");
    remember_secret(&query_value(&allowed, "code").unwrap());
}

#[tokio::test]
async fn prompt_login_sends_a_signed_in_person_to_sign_in_again_first() {
    let app = TestApp::spawn().await;
    let (_admin, person, provider) = single_sign_on(&app, json!({})).await;
    let client_id = provider["client_id"].as_str().unwrap();
    let challenge = s256(VERIFIER);
    let request = authorize_path(client_id, &[("code_challenge", &challenge), ("code_challenge_method", "S256"), ("prompt", "login")]);
    let to = location(&open_as(&app, Some(&person), &app.url(&request)).await);
    assert_eq!(to.path(), "/if/flow/default-authentication-flow/");
    let next = query_value(&to, "next").unwrap();
    assert!(!next.contains("prompt=login") && next.contains("max_age=60"), "{next}");
    // Signed in again, the request goes through.
    let fresh = app.sign_in("person@example.com").await;
    let back = location(&open_as(&app, Some(&fresh), &app.url(&next)).await);
    let code = query_value(&back, "code").unwrap_or_else(|| panic!("no code: {back}"));
    remember_secret(&code);
}

#[tokio::test]
async fn a_client_proves_itself_for_a_token_of_its_own() {
    let app = TestApp::spawn().await;
    let (_admin, _person, provider) = single_sign_on(&app, json!({"grant_types": ["client_credentials"]})).await;
    let (client_id, secret) = (provider["client_id"].as_str().unwrap(), provider["client_secret"].as_str().unwrap());
    let (status, tokens, _) = token_request(&app, Some((client_id, secret)), &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    remember_secret(access);
    assert!(tokens.get("refresh_token").is_none() && tokens.get("id_token").is_none(), "{tokens}");
    let keys = key_set(&app, "wiki").await;
    let key = jsonwebtoken::DecodingKey::from_jwk(&keys.keys[0]).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[client_id]);
    let claims = jsonwebtoken::decode::<Value>(access, &key, &validation).expect("a token the key set verifies").claims;
    assert_eq!(claims["sub"], client_id);
    // It names no user.
    assert_eq!(userinfo_status(&app, access).await, StatusCode::UNAUTHORIZED);
    let (_, body, _) = token_request(&app, Some((client_id, secret)), &[("grant_type", "client_credentials"), ("scope", "email")]).await;
    assert_eq!(body["error"], "invalid_scope");
    let (_, body, _) = token_request(&app, Some((client_id, "wrong")), &[("grant_type", "client_credentials")]).await;
    assert_eq!(body["error"], "invalid_client");
}

#[tokio::test]
async fn the_configured_public_address_names_the_issuer_whatever_the_host() {
    let app = TestApp::spawn_with(|config| config.server.public_url = Some("https://id.example.com/".into())).await;
    let (admin, _person, _provider) = single_sign_on(&app, json!({})).await;
    let response = app
        .client
        .get(app.url("/application/o/wiki/.well-known/openid-configuration"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["issuer"], "https://id.example.com/application/o/wiki/");
    assert_eq!(document["token_endpoint"], "https://id.example.com/application/o/token/");
    assert_eq!(document["code_challenge_methods_supported"], json!(["S256"]));
    // Application slugs that are endpoints' names are refused.
    assert_field_error(app.post(&admin, APPLICATIONS, json!({"name": "Token", "slug": "token"})).await, "slug").await;
}

/// The introspection endpoint's answer about `token` to the client `basic`.
pub(crate) async fn introspection(app: &TestApp, basic: (&str, &str), token: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url("/application/o/introspect/"))
        .basic_auth(basic.0, Some(basic.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_client_introspects_and_revokes_only_its_own_tokens() {
    let app = TestApp::spawn().await;
    let (admin, person, provider) = single_sign_on(&app, json!({})).await;
    let implicit = flow_pk(&app, &admin, "default-provider-authorization-implicit-consent").await;
    let other = create_provider(&app, &admin, json!({"name": "Other", "authorization_flow": implicit})).await;
    let (status, _) = json(app.post(&admin, APPLICATIONS, json!({"name": "Other", "slug": "other", "provider": other["pk"]})).await).await;
    assert_eq!(status, StatusCode::CREATED);
    let wiki = (provider["client_id"].as_str().unwrap(), provider["client_secret"].as_str().unwrap());
    let other = (other["client_id"].as_str().unwrap(), other["client_secret"].as_str().unwrap());
    let code = code_with_pkce(&app, &person, wiki.0, &[("scope", "openid offline_access")]).await;
    let (_, tokens, _) = token_request(&app, Some(wiki), &exchange_form(&code)).await;
    let (access, refresh) = (tokens["access_token"].as_str().unwrap(), tokens["refresh_token"].as_str().unwrap());
    remember_secret(access);
    remember_secret(refresh);

    let (status, about) = introspection(&app, wiki, access).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((about["active"].as_bool(), about["token_type"].as_str()), (Some(true), Some("Bearer")), "{about}");
    assert_eq!((about["client_id"].as_str(), about["username"].as_str()), (Some(wiki.0), Some("person@example.com")));
    assert_eq!(about["scope"], "openid offline_access");
    let (_, about) = introspection(&app, wiki, refresh).await;
    assert_eq!((about["active"].as_bool(), about.get("token_type")), (Some(true), None), "{about}");
    // Another client learns nothing, nor does anyone about a made-up token or with a wrong secret.
    assert_eq!(introspection(&app, other, access).await.1, json!({"active": false}));
    assert_eq!(introspection(&app, wiki, "made-up").await.1, json!({"active": false}));
    assert_eq!(introspection(&app, (wiki.0, "wrong"), access).await.0, StatusCode::UNAUTHORIZED);

    // Another client's revocation is answered alike and changes nothing.
    assert_eq!(revocation(&app, other, access).await, StatusCode::OK);
    assert_eq!(userinfo_status(&app, access).await, StatusCode::OK);
    // The access token alone: the refresh token still works.
    assert_eq!(revocation(&app, wiki, access).await, StatusCode::OK);
    assert_eq!(userinfo_status(&app, access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(introspection(&app, wiki, access).await.1, json!({"active": false}));
    let (status, renewed, _) = token_request(&app, Some(wiki), &[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    let (new_access, new_refresh) = (renewed["access_token"].as_str().unwrap(), renewed["refresh_token"].as_str().unwrap());
    remember_secret(new_access);
    remember_secret(new_refresh);
    // A refresh token takes what was issued with it along.
    assert_eq!(revocation(&app, wiki, new_refresh).await, StatusCode::OK);
    assert_eq!(userinfo_status(&app, new_access).await, StatusCode::UNAUTHORIZED);
    let (_, body, _) = token_request(&app, Some(wiki), &[("grant_type", "refresh_token"), ("refresh_token", new_refresh)]).await;
    assert_eq!(body["error"], "invalid_grant");
}

/// The revocation endpoint's status for `token` revoked by the client `basic`.
async fn revocation(app: &TestApp, basic: (&str, &str), token: &str) -> StatusCode {
    app.client
        .post(app.url("/application/o/revoke/"))
        .basic_auth(basic.0, Some(basic.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn signing_out_from_an_application_goes_back_only_to_an_address_it_registered() {
    let app = TestApp::spawn().await;
    let logout = json!({"redirect_uris": [
        {"matching_mode": "strict", "url": "https://wiki.example/oauth/callback"},
        {"matching_mode": "strict", "url": "https://wiki.example/signed-out", "redirect_uri_type": "logout"},
    ]});
    let (_admin, person, provider) = single_sign_on(&app, logout).await;
    let (client_id, secret) = (provider["client_id"].as_str().unwrap(), provider["client_secret"].as_str().unwrap());
    let code = code_with_pkce(&app, &person, client_id, &[]).await;
    let (_, tokens, _) = token_request(&app, Some((client_id, secret)), &exchange_form(&code)).await;
    let id_token = tokens["id_token"].as_str().unwrap().to_owned();
    remember_secret(tokens["access_token"].as_str().unwrap());
    let end_session = |query: &[(&str, &str)]| {
        let mut serializer = form_urlencoded::Serializer::new(String::new());
        for (name, value) in query {
            serializer.append_pair(name, value);
        }
        app.url(&format!("/application/o/wiki/end-session/?{}", serializer.finish()))
    };

    // The registered address with a hint the provider issued: off to sign out, then back.
    let response = open_as(
        &app,
        Some(&person),
        &end_session(&[("id_token_hint", &id_token), ("post_logout_redirect_uri", "https://wiki.example/signed-out"), ("state", "s1")]),
    )
    .await;
    let to = location(&response);
    assert_eq!(to.path(), "/if/flow/default-invalidation-flow/");
    let next = query_value(&to, "next").unwrap();
    assert!(next.starts_with("/application/o/wiki/end-session/return/?"), "{next}");
    let back = location(&open_as(&app, None, &app.url(&next)).await);
    assert_eq!(back.as_str(), "https://wiki.example/signed-out?state=s1");

    // Anything else gets a page and goes nowhere.
    // A signature changed in its middle: well-formed, but not the provider's.
    let (head, signature) = id_token.rsplit_once('.').unwrap();
    let middle = signature.len() / 2;
    let flipped = if &signature[middle..=middle] == "A" { "B" } else { "A" };
    let forged = format!("{head}.{}{flipped}{}", &signature[..middle], &signature[middle + 1..]);
    for query in [
        vec![("id_token_hint", id_token.as_str()), ("post_logout_redirect_uri", "https://evil.example/")],
        vec![("id_token_hint", id_token.as_str()), ("post_logout_redirect_uri", "https://wiki.example/oauth/callback")],
        vec![("post_logout_redirect_uri", "https://wiki.example/signed-out")],
        vec![("id_token_hint", forged.as_str()), ("post_logout_redirect_uri", "https://wiki.example/signed-out")],
        vec![("client_id", "someone-else"), ("post_logout_redirect_uri", "https://wiki.example/signed-out")],
    ] {
        let response = open_as(&app, Some(&person), &end_session(&query)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query:?}");
        assert!(response.headers().get("location").is_none(), "{query:?}");
    }
    let response = open_as(&app, None, &app.url("/application/o/wiki/end-session/return/?to=https%3A%2F%2Fevil.example%2F")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // Without an address, people end on Gatehouse's front door.
    let to = location(&open_as(&app, Some(&person), &end_session(&[])).await);
    assert_eq!(query_value(&to, "next").as_deref(), Some("/"));
    // The discovery document names the endpoint.
    let document: Value =
        app.client.get(app.url("/application/o/wiki/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(document["end_session_endpoint"], app.url("/application/o/wiki/end-session/"));
}

#[tokio::test]
async fn form_post_hands_the_code_over_in_a_form_only_the_application_may_receive() {
    let app = TestApp::spawn().await;
    let (_admin, person, provider) = single_sign_on(&app, json!({})).await;
    let (client_id, secret) = (provider["client_id"].as_str().unwrap(), provider["client_secret"].as_str().unwrap());
    let challenge = s256(VERIFIER);
    let request = authorize_path(
        client_id,
        &[("code_challenge", &challenge), ("code_challenge_method", "S256"), ("response_mode", "form_post"), ("state", "st")],
    );
    let response = open_as(&app, Some(&person), &app.url(&request)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let policy = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("form-action https://wiki.example;"), "{policy}");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let page = response.text().await.unwrap();
    assert!(page.contains(r#"<form method="post" action="https://wiki.example/oauth/callback">"#), "{page}");
    assert!(!page.contains("<script"), "no script on the page");
    let field = |name: &str| {
        let marker = format!(r#"name="{name}" value=""#);
        let start = page.find(&marker).unwrap_or_else(|| panic!("no {name} in {page}")) + marker.len();
        page[start..start + page[start..].find('"').unwrap()].to_owned()
    };
    assert_eq!(field("state"), "st");
    let code = field("code");
    remember_secret(&code);
    let (status, tokens, _) = token_request(&app, Some((client_id, secret)), &exchange_form(&code)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    remember_secret(tokens["access_token"].as_str().unwrap());
    // Errors come the same way.
    let refused =
        authorize_path(client_id, &[("response_mode", "form_post"), ("code_challenge", &challenge), ("code_challenge_method", "plain")]);
    let page = open_as(&app, Some(&person), &app.url(&refused)).await.text().await.unwrap();
    assert!(page.contains(r#"name="error" value="invalid_request""#), "{page}");
}

#[tokio::test]
async fn tokens_follow_the_person_signing_in_again_but_not_someone_else_or_an_expired_session() {
    let app = TestApp::spawn().await;
    let (_admin, person, provider) = single_sign_on(&app, json!({})).await;
    let wiki = (provider["client_id"].as_str().unwrap(), provider["client_secret"].as_str().unwrap());
    let tokens_for = |session: Session| {
        let app = &app;
        async move {
            let code = code_with_pkce(app, &session, wiki.0, &[("scope", "openid offline_access")]).await;
            let (status, tokens, _) = token_request(app, Some(wiki), &exchange_form(&code)).await;
            assert_eq!(status, StatusCode::OK, "{tokens}");
            let access = tokens["access_token"].as_str().unwrap().to_owned();
            remember_secret(&access);
            remember_secret(tokens["refresh_token"].as_str().unwrap());
            access
        }
    };
    let sign_in_on = |session: &Session, email: &str| {
        let request = app
            .client
            .post(app.url("/api/v3/auth/sign_in/"))
            .header("cookie", &session.cookie)
            .json(&json!({"email": email, "password": crate::support::PASSWORD}));
        async move { crate::support::session_from(request.send().await.unwrap()).await }
    };

    // The same person signing in again on the same browser (prompt=login, a step up): the
    // application keeps what it was given.
    let access = tokens_for(person.clone()).await;
    let again = sign_in_on(&person, "person@example.com").await;
    assert_eq!(userinfo_status(&app, &access).await, StatusCode::OK);
    assert_ne!(app.get(&person, "/api/v3/core/users/me/").await.status(), StatusCode::OK, "the old session key ended");

    // Someone else signing in on that browser ends it.
    app.user("other@example.com", |_| {}).await;
    sign_in_on(&again, "other@example.com").await;
    assert_eq!(userinfo_status(&app, &access).await, StatusCode::UNAUTHORIZED);

    // A session past its expiry ends its tokens even before it is purged.
    let fresh = app.sign_in("person@example.com").await;
    let access = tokens_for(fresh).await;
    use sea_orm::sea_query::Expr;
    gatehouse::sessions::entities::session::Entity::update_many()
        .col_expr(gatehouse::sessions::entities::session::Column::Expires, Expr::value(chrono::Utc::now() - chrono::TimeDelta::seconds(1)))
        .exec(&app.state.db)
        .await
        .unwrap();
    assert_eq!(userinfo_status(&app, &access).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn malformed_client_credentials_and_hosts_are_refused_plainly() {
    let app = TestApp::spawn().await;
    single_sign_on(&app, json!({})).await;
    // Basic credentials that are not base64 of "id:secret": invalid_client, with the challenge.
    for header in ["Basic !!!not-base64!!!", "Basic bm8tY29sb24"] {
        let response = app
            .client
            .post(app.url("/application/o/token/"))
            .header("authorization", header)
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{header}");
        assert!(response.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
        assert_eq!(response.json::<Value>().await.unwrap()["error"], "invalid_client");
    }
    // A body that is not a form: invalid_request.
    let response =
        app.client.post(app.url("/application/o/token/")).json(&json!({"grant_type": "authorization_code"})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.json::<Value>().await.unwrap()["error"], "invalid_request");
    // Without a configured address, a Host that is not a host name names nothing.
    let response = app
        .client
        .get(app.url("/application/o/wiki/.well-known/openid-configuration"))
        .header("host", "evil.example/path")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}
