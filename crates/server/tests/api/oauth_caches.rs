//! What the token, introspection and userinfo endpoints keep in memory (clients, opened signing
//! keys, live access tokens) never outlives a change: each test first makes the server remember,
//! then changes something and expects the change to count on the very next request, and across
//! two server processes on PostgreSQL.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::oauth::{APPLICATIONS, PROVIDERS, code_with_pkce, exchange_form, introspection, single_sign_on, token_request};
use crate::support::{Session, TestApp, json, remember_secret};

/// A client-credentials token for `client`; the status and the token's text.
async fn client_token(app: &TestApp, client: (&str, &str)) -> (StatusCode, String) {
    let (status, body, _) = token_request(app, Some(client), &[("grant_type", "client_credentials")]).await;
    let token = body["access_token"].as_str().unwrap_or_default().to_owned();
    if !token.is_empty() {
        remember_secret(&token);
    }
    (status, token)
}

/// The header and payload of a compact JWS, unchecked.
fn parts(jwt: &str) -> (Value, Value) {
    use base64::Engine;
    let decode =
        |part: &str| -> Value { serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap() };
    let mut pieces = jwt.split('.');
    (decode(pieces.next().unwrap()), decode(pieces.next().unwrap()))
}

/// Whether introspection by `client` calls `token` active.
async fn active(app: &TestApp, client: (&str, &str), token: &str) -> bool {
    let (status, answer) = introspection(app, client, token).await;
    assert_eq!(status, StatusCode::OK);
    answer["active"].as_bool().unwrap()
}

async fn userinfo(app: &TestApp, token: &str) -> StatusCode {
    app.client.get(app.url("/application/o/userinfo/")).bearer_auth(token).send().await.unwrap().status()
}

/// A fresh access token for `person` from the wiki.
async fn access_token(app: &TestApp, person: &Session, client: (&str, &str)) -> String {
    let code = code_with_pkce(app, person, client.0, &[("scope", "openid offline_access")]).await;
    let (status, tokens, _) = token_request(app, Some(client), &exchange_form(&code)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    remember_secret(&access);
    if let Some(refresh) = tokens["refresh_token"].as_str() {
        remember_secret(refresh);
    }
    access
}

/// A new key pair of `alg`; its key id as tokens carry it.
async fn new_key_pair(app: &TestApp, admin: &Session, alg: &str) -> (Value, String) {
    let generation = json!({"common_name": format!("{alg}.example"), "validity_days": 30, "alg": alg});
    let (status, pair) = json(app.post(admin, "/api/v3/crypto/certificatekeypairs/generate/", generation).await).await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    let kid = pair["fingerprint_sha256"].as_str().unwrap().replace(':', "")[..32].to_lowercase();
    (pair, kid)
}

#[tokio::test]
async fn a_client_remembered_by_the_token_endpoint_follows_every_change_to_it_at_once() {
    let app = TestApp::spawn().await;
    let (admin, _person, provider) = single_sign_on(&app, json!({"grant_types": ["client_credentials"]})).await;
    let client_id = provider["client_id"].as_str().unwrap().to_owned();
    let old_secret = provider["client_secret"].as_str().unwrap().to_owned();
    let provider_path = format!("{PROVIDERS}{}/", provider["pk"]);
    let (status, first) = client_token(&app, (&client_id, &old_secret)).await;
    assert_eq!(status, StatusCode::OK);
    let (header, claims) = parts(&first);
    assert_eq!(claims["iss"], app.url("/application/o/wiki/"));

    // A new secret: the old one is refused on the next request.
    let (status, rotated) = json(app.post(&admin, &format!("{provider_path}rotate_client_secret/"), json!({})).await).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    remember_secret(&new_secret);
    assert_eq!(client_token(&app, (&client_id, &old_secret)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(client_token(&app, (&client_id, &new_secret)).await.0, StatusCode::OK);

    // A new signing key signs the next token; a renamed application names the next issuer.
    let (pair, kid) = new_key_pair(&app, &admin, "ecdsa").await;
    assert_ne!(header["kid"].as_str(), Some(kid.as_str()));
    let (status, body) = json(app.patch(&admin, &provider_path, json!({"signing_key": pair["pk"]})).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = json(app.patch(&admin, &format!("{APPLICATIONS}wiki/"), json!({"slug": "handbook"})).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, next) = client_token(&app, (&client_id, &new_secret)).await;
    let (header, claims) = parts(&next);
    assert_eq!((header["kid"].as_str(), header["alg"].as_str()), (Some(kid.as_str()), Some("ES256")));
    assert_eq!(claims["iss"], app.url("/application/o/handbook/"));
    // What the new key signed is what the provider publishes.
    let keys: Value = app.client.get(app.url("/application/o/handbook/jwks/")).send().await.unwrap().json().await.unwrap();
    assert_eq!(keys["keys"][0]["kid"].as_str(), Some(kid.as_str()), "{keys}");
    // Deleting that pair gives the provider the managed key back, at once.
    let response = app.delete(&admin, &format!("/api/v3/crypto/certificatekeypairs/{}/", pair["pk"].as_str().unwrap())).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, managed) = client_token(&app, (&client_id, &new_secret)).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(parts(&managed).0["kid"].as_str(), Some(kid.as_str()));

    // A deleted provider's client is unknown at once.
    assert_eq!(app.delete(&admin, &provider_path).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(client_token(&app, (&client_id, &new_secret)).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_remembered_access_token_is_refused_at_once_whatever_ends_it() {
    let app = TestApp::spawn().await;
    let (admin, person, provider) = single_sign_on(&app, json!({})).await;
    let client = (provider["client_id"].as_str().unwrap(), provider["client_secret"].as_str().unwrap());

    // Deleted through the issued-token API.
    let access = access_token(&app, &person, client).await;
    assert!(active(&app, client, &access).await);
    assert_eq!(userinfo(&app, &access).await, StatusCode::OK);
    let (_, listed) = json(app.get(&person, "/api/v3/oauth2/access_tokens/").await).await;
    let pk = listed["results"][0]["pk"].as_i64().unwrap();
    assert_eq!(app.delete(&person, &format!("/api/v3/oauth2/access_tokens/{pk}/")).await.status(), StatusCode::NO_CONTENT);
    assert!(!active(&app, client, &access).await, "deleted");
    assert_eq!(userinfo(&app, &access).await, StatusCode::UNAUTHORIZED);

    // Its code replayed: what the code gave is withdrawn.
    let code = code_with_pkce(&app, &person, client.0, &[]).await;
    let (status, tokens, _) = token_request(&app, Some(client), &exchange_form(&code)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    remember_secret(&access);
    assert!(active(&app, client, &access).await);
    let (_, replay, _) = token_request(&app, Some(client), &exchange_form(&code)).await;
    assert_eq!(replay["error"], "invalid_grant");
    assert!(!active(&app, client, &access).await, "withdrawn after the replay");

    // Its user deactivated.
    let access = access_token(&app, &person, client).await;
    assert!(active(&app, client, &access).await);
    assert_eq!(userinfo(&app, &access).await, StatusCode::OK);
    let (_, people) = json(app.get(&admin, "/api/v3/core/users/?email=person%40example.com").await).await;
    let user_pk = people["results"][0]["pk"].clone();
    let (status, body) = json(app.patch(&admin, &format!("/api/v3/core/users/{user_pk}/"), json!({"is_active": false})).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!active(&app, client, &access).await, "its user deactivated");
    assert_eq!(userinfo(&app, &access).await, StatusCode::UNAUTHORIZED);
}

/// Two server processes on one database: a change through one counts at the other, although
/// both keep clients, keys and tokens in memory. On SQLite, which one process serves, the
/// processes run with the cache off.
#[tokio::test]
async fn a_change_through_one_server_counts_at_the_other_although_both_remember() {
    let postgres = std::env::var("GATEHOUSE_TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty());
    // On PostgreSQL entries are kept for an hour, so only the change message can drop them.
    let caches = |c: &mut gatehouse::config::Config| {
        c.tokens.oauth_cache_ttl = if postgres { "hours=1" } else { "seconds=0" }.parse().unwrap();
    };
    let first = TestApp::spawn_with(caches).await;
    let second = TestApp::spawn_sharing(&first, caches).await;
    let (_admin, person, provider) = single_sign_on(&first, json!({"grant_types": ["authorization_code", "client_credentials"]})).await;
    let client_id = provider["client_id"].as_str().unwrap().to_owned();
    let secret = provider["client_secret"].as_str().unwrap().to_owned();
    let client = (client_id.as_str(), secret.as_str());
    let access = access_token(&first, &person, client).await;
    assert!(active(&first, client, &access).await);
    let eventually = |what: &'static str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        move || {
            assert!(std::time::Instant::now() < deadline, "the other server still remembers: {what}");
        }
    };

    // The token revoked through the second server.
    let response = second
        .client
        .post(second.url("/application/o/revoke/"))
        .basic_auth(client.0, Some(client.1))
        .form(&[("token", &access)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let check = eventually("a revoked token");
    while active(&first, client, &access).await {
        check();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // The managed key rotated by the second server signs the first server's next token (the
    // first server opens its key again only now, after the revocation dropped what it held).
    let (_, before) = client_token(&first, client).await;
    let managed_kid = parts(&before).0["kid"].as_str().unwrap().to_owned();
    let rotation = gatehouse::crypto::service::rotate_managed_jwt_key(
        &second.state,
        second.state.tenant,
        gatehouse::crypto::service::Replaced::RetiredNow,
    )
    .await
    .unwrap();
    let rotated_kid = gatehouse::crypto::jwt::key_id(&rotation.active);
    assert_ne!(rotated_kid, managed_kid);
    let check = eventually("a replaced signing key");
    loop {
        let (status, token) = client_token(&first, client).await;
        assert_eq!(status, StatusCode::OK);
        if parts(&token).0["kid"].as_str() == Some(rotated_kid.as_str()) {
            break;
        }
        check();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // The client secret rotated through the second server.
    let second_admin = second.sign_in("root@example.com").await;
    let path = format!("{PROVIDERS}{}/rotate_client_secret/", provider["pk"]);
    let (status, rotated) = json(second.post(&second_admin, &path, json!({})).await).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    remember_secret(rotated["client_secret"].as_str().unwrap());
    let check = eventually("a replaced client secret");
    while client_token(&first, client).await.0 == StatusCode::OK {
        check();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn client_credentials_grants_arriving_together_are_each_stored_once() {
    use gatehouse::oauth::entities::token;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let app = TestApp::spawn().await;
    let (_admin, _person, provider) = single_sign_on(&app, json!({"grant_types": ["client_credentials"]})).await;
    let client = (provider["client_id"].as_str().unwrap(), provider["client_secret"].as_str().unwrap());
    let grants = futures_util::future::join_all((0..60).map(|_| client_token(&app, client))).await;
    let mut tokens = std::collections::HashSet::new();
    for (status, token) in grants {
        assert_eq!(status, StatusCode::OK);
        assert!(tokens.insert(token), "every grant has its own token");
    }
    let stored =
        token::Entity::find().filter(token::Column::ProviderId.eq(provider["pk"].as_i64().unwrap())).count(&app.state.db).await.unwrap();
    assert_eq!(stored, 60);
    for token in tokens.iter().take(5) {
        assert!(active(&app, client, token).await, "a stored token introspects");
    }
}

#[tokio::test]
async fn a_row_that_cannot_be_written_fails_alone_in_its_batch() {
    use gatehouse::oauth::entities::token;
    use sea_orm::{ActiveValue::Set, EntityTrait, PaginatorTrait};
    let app = TestApp::spawn().await;
    let (_admin, _person, provider) = single_sign_on(&app, json!({})).await;
    let row = |id: uuid::Uuid| token::ActiveModel {
        id: Set(id),
        tenant_id: Set(app.state.tenant.0),
        provider_id: Set(provider["pk"].as_i64().unwrap()),
        user_id: Set(None),
        kind: Set("access".into()),
        token_digest: Set(id.simple().to_string()),
        family_id: Set(id),
        scope: Set(String::new()),
        session_id: Set(None),
        auth_time: Set(chrono::Utc::now()),
        expires: Set(chrono::Utc::now() + chrono::TimeDelta::hours(1)),
        revoked: Set(false),
        created: Set(chrono::Utc::now()),
        issuer: Set(None),
        number: Set(Some(id.as_u128() as i64 & ((1 << 53) - 1))),
    };
    let taken = uuid::Uuid::new_v4();
    app.state.issued_tokens.insert(row(taken)).await.expect("the first row is written");
    // Many rows at once, so that they share batches; one of them repeats a stored id.
    let ids: Vec<uuid::Uuid> = (0..40).map(|i| if i == 20 { taken } else { uuid::Uuid::new_v4() }).collect();
    let written = futures_util::future::join_all(ids.iter().map(|id| app.state.issued_tokens.insert(row(*id)))).await;
    for (id, result) in ids.iter().zip(&written) {
        assert_eq!(result.is_ok(), *id != taken, "{id}: {result:?}");
    }
    assert_eq!(token::Entity::find().count(&app.state.db).await.unwrap(), 40, "the 39 good rows and the first");
}
