//! The tokens and codes providers issued, through `/api/v3/oauth2/access_tokens/`,
//! `/refresh_tokens/` and `/authorization_codes/`: everyone sees and deletes their own, others
//! only with the permissions and never above their own rights, and a deleted token stops working.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::oauth::{code_with_pkce, exchange_form, single_sign_on, token_request};
use crate::support::{Session, TestApp, json, remember_secret};

const ACCESS_TOKENS: &str = "/api/v3/oauth2/access_tokens/";
const REFRESH_TOKENS: &str = "/api/v3/oauth2/refresh_tokens/";
const CODES: &str = "/api/v3/oauth2/authorization_codes/";

/// The page `path` answers `session` with, checked to be one.
async fn page(app: &TestApp, session: &Session, path: &str) -> Value {
    let (status, body) = json(app.get(session, path).await).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

/// The payload of a compact JWS, unchecked (the signature is checked elsewhere).
fn payload(jwt: &str) -> Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// Tokens for `session` from the wiki with `offline_access`: (access, refresh, ID token claims).
async fn tokens_for(app: &TestApp, session: &Session, provider: &Value) -> (String, String, Value) {
    let (client_id, secret) = (provider["client_id"].as_str().unwrap(), provider["client_secret"].as_str().unwrap());
    let code = code_with_pkce(app, session, client_id, &[("scope", "openid offline_access")]).await;
    let (status, tokens, _) = token_request(app, Some((client_id, secret)), &exchange_form(&code)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let (access, refresh) = (tokens["access_token"].as_str().unwrap().to_owned(), tokens["refresh_token"].as_str().unwrap().to_owned());
    remember_secret(&access);
    remember_secret(&refresh);
    (access, refresh, payload(tokens["id_token"].as_str().unwrap()))
}

#[tokio::test]
async fn people_see_and_delete_their_own_tokens_and_a_deleted_token_stops_working() {
    let app = TestApp::spawn().await;
    let (admin, person, provider) = single_sign_on(&app, json!({})).await;
    let (client_id, secret) = (provider["client_id"].as_str().unwrap(), provider["client_secret"].as_str().unwrap());
    let (access, refresh, id_claims) = tokens_for(&app, &person, &provider).await;
    // A code not exchanged yet is listed; an exchanged one is spent and is not.
    let pending = code_with_pkce(&app, &person, client_id, &[]).await;

    let own = page(&app, &person, ACCESS_TOKENS).await;
    assert_eq!(own["pagination"]["count"], 1, "{own}");
    let token = &own["results"][0];
    let pk = token["pk"].as_i64().unwrap();
    assert!((1..(1i64 << 53)).contains(&pk), "{token}");
    assert_eq!(token["provider"]["pk"], provider["pk"]);
    assert_eq!(token["provider"]["assigned_application_slug"], "wiki");
    assert_eq!(token["user"]["email"], "person@example.com");
    assert_eq!(token["scope"], json!(["openid", "offline_access"]));
    assert_eq!((token["is_expired"].clone(), token["revoked"].clone()), (json!(false), json!(false)));
    let claims: Value = serde_json::from_str(token["id_token"].as_str().unwrap()).unwrap();
    for name in ["iss", "sub", "aud", "sid", "auth_time"] {
        assert_eq!(claims[name], id_claims[name], "{name}: {claims} against {id_claims}");
    }
    let text = own.to_string();
    assert!(!text.contains(&access), "the token itself is never shown: {text}");
    let (status, one) = json(app.get(&person, &format!("{ACCESS_TOKENS}{pk}/")).await).await;
    assert_eq!((status, one["pk"].as_i64()), (StatusCode::OK, Some(pk)));
    let (status, used_by) = json(app.get(&person, &format!("{ACCESS_TOKENS}{pk}/used_by/")).await).await;
    assert_eq!((status, used_by), (StatusCode::OK, json!([])));

    let refreshes = page(&app, &person, REFRESH_TOKENS).await;
    assert_eq!(refreshes["pagination"]["count"], 1, "{refreshes}");
    let refresh_pk = refreshes["results"][0]["pk"].as_i64().unwrap();
    assert_ne!(refresh_pk, pk);
    let codes = page(&app, &person, CODES).await;
    assert_eq!(codes["pagination"]["count"], 1, "{codes}");
    assert!(codes["results"][0].get("id_token").is_none() && codes["results"][0].get("revoked").is_none(), "{codes}");
    assert!(!codes.to_string().contains(&pending));

    // Deleting the access token ends it at once; deleting the refresh token ends refreshing.
    let response = app.delete(&person, &format!("{ACCESS_TOKENS}{pk}/")).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let userinfo = app.client.get(app.url("/application/o/userinfo/")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(userinfo.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.delete(&person, &format!("{ACCESS_TOKENS}{pk}/")).await.status(), StatusCode::NOT_FOUND, "gone");
    assert_eq!(app.delete(&person, &format!("{REFRESH_TOKENS}{refresh_pk}/")).await.status(), StatusCode::NO_CONTENT);
    let (status, body, _) =
        token_request(&app, Some((client_id, secret)), &[("grant_type", "refresh_token"), ("refresh_token", &refresh)]).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    // A code deleted before the exchange cannot be exchanged.
    let code_pk = codes["results"][0]["pk"].as_i64().unwrap();
    assert_eq!(app.delete(&person, &format!("{CODES}{code_pk}/")).await.status(), StatusCode::NO_CONTENT);
    let (status, body, _) = token_request(&app, Some((client_id, secret)), &exchange_form(&pending)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));

    // Every deletion is on record with its user.
    let (_, events) = json(app.get(&admin, "/api/v3/events/events/?action=model_deleted").await).await;
    let deleted: Vec<&str> =
        events["results"].as_array().unwrap().iter().filter_map(|e| e["context"]["model"]["model_name"].as_str()).collect();
    for model in ["accesstoken", "refreshtoken", "authorizationcode"] {
        assert!(deleted.contains(&model), "{model}: {deleted:?}");
    }

    // Bad input is named; a path that is no number names nothing.
    let (status, body) = json(app.get(&person, &format!("{ACCESS_TOKENS}?ordering=digest")).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["ordering"].is_array(), "{body}");
    let (status, body) = json(app.get(&person, &format!("{ACCESS_TOKENS}?user=me")).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["user"].is_array(), "{body}");
    assert_eq!(app.get(&person, &format!("{ACCESS_TOKENS}not-a-number/")).await.status(), StatusCode::NOT_FOUND);
    // Without a session or key, nothing.
    let anonymous = app.client.get(app.url(ACCESS_TOKENS)).send().await.unwrap();
    assert!(matches!(anonymous.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN), "{}", anonymous.status());
}

#[tokio::test]
async fn other_peoples_tokens_are_seen_with_permission_and_deleted_only_below_the_callers_rights() {
    let app = TestApp::spawn().await;
    let (admin, person, provider) = single_sign_on(&app, json!({})).await;
    let (person_access, _, _) = tokens_for(&app, &person, &provider).await;
    tokens_for(&app, &admin, &provider).await;

    // Superusers see everyone's, and filter by person and provider.
    let all = page(&app, &admin, ACCESS_TOKENS).await;
    assert_eq!(all["pagination"]["count"], 2, "{all}");
    let people = page(&app, &admin, "/api/v3/core/users/?email=person%40example.com").await;
    let person_pk = people["results"][0]["pk"].as_i64().unwrap();
    let theirs = page(&app, &admin, &format!("{ACCESS_TOKENS}?user={person_pk}")).await;
    assert_eq!(theirs["pagination"]["count"], 1);
    let person_token = theirs["results"][0]["pk"].as_i64().unwrap();
    let none = page(&app, &admin, &format!("{ACCESS_TOKENS}?provider={}", provider["pk"].as_i64().unwrap() + 1)).await;
    assert_eq!(none["pagination"]["count"], 0);
    let admin_token = all["results"].as_array().unwrap().iter().map(|t| t["pk"].as_i64().unwrap()).find(|pk| *pk != person_token).unwrap();

    // Someone else sees only their own: not by filter, not by number.
    app.user("bystander@example.com", |_| {}).await;
    let bystander = app.sign_in("bystander@example.com").await;
    assert_eq!(page(&app, &bystander, ACCESS_TOKENS).await["pagination"]["count"], 0);
    assert_eq!(page(&app, &bystander, &format!("{ACCESS_TOKENS}?user={person_pk}")).await["pagination"]["count"], 0);
    assert_eq!(app.get(&bystander, &format!("{ACCESS_TOKENS}{person_token}/")).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.delete(&bystander, &format!("{ACCESS_TOKENS}{person_token}/")).await.status(), StatusCode::NOT_FOUND);
    // The view permission alone does not show people: each token shows its user.
    app.user_with("auditor@example.com", &["authentik_providers_oauth2.view_accesstoken"]).await;
    let auditor = app.sign_in("auditor@example.com").await;
    assert_eq!(page(&app, &auditor, ACCESS_TOKENS).await["pagination"]["count"], 0);

    // A helpdesk that may view and delete tokens deletes a person's, never a superuser's.
    app.user_with(
        "helpdesk@example.com",
        &["authentik_core.view_user", "authentik_providers_oauth2.view_accesstoken", "authentik_providers_oauth2.delete_accesstoken"],
    )
    .await;
    let helpdesk = app.sign_in("helpdesk@example.com").await;
    assert_eq!(page(&app, &helpdesk, ACCESS_TOKENS).await["pagination"]["count"], 2);
    assert_eq!(page(&app, &helpdesk, REFRESH_TOKENS).await["pagination"]["count"], 0, "each kind has its own permission");
    assert_eq!(app.delete(&helpdesk, &format!("{ACCESS_TOKENS}{admin_token}/")).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(page(&app, &admin, ACCESS_TOKENS).await["pagination"]["count"], 2, "refused, nothing changed");
    assert_eq!(app.delete(&helpdesk, &format!("{ACCESS_TOKENS}{person_token}/")).await.status(), StatusCode::NO_CONTENT);
    let userinfo = app.client.get(app.url("/application/o/userinfo/")).bearer_auth(&person_access).send().await.unwrap();
    assert_eq!(userinfo.status(), StatusCode::UNAUTHORIZED);
    // Seeing is not deleting.
    app.user_with("viewer@example.com", &["authentik_core.view_user", "authentik_providers_oauth2.view_accesstoken"]).await;
    let viewer = app.sign_in("viewer@example.com").await;
    assert_eq!(page(&app, &viewer, ACCESS_TOKENS).await["pagination"]["count"], 1);
    assert_eq!(app.delete(&viewer, &format!("{ACCESS_TOKENS}{admin_token}/")).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(page(&app, &admin, ACCESS_TOKENS).await["pagination"]["count"], 1, "refused, nothing changed");
}
