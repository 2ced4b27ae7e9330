//! Scope mappings through `/api/v3/propertymappings/provider/scope/`: authentik's defaults
//! shipped, administrators' own written in CEL under their permissions, and the claims tokens
//! and userinfo answers carry coming from the mappings a provider offers.

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::oauth::{PROVIDERS, code_with_pkce, exchange_form, single_sign_on, token_request};
use crate::support::{TestApp, assert_field_error, assert_forbidden, json, remember_secret};

const SCOPES: &str = "/api/v3/propertymappings/provider/scope/";

/// The claims of a JWT, unverified (the OpenID tests verify signatures).
fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// Signs the person in to the wiki with `scope`: the token answer and the userinfo answer.
async fn sign_in_with(app: &TestApp, person: &crate::support::Session, provider: &Value, scope: &str) -> (Value, Value) {
    let client_id = provider["client_id"].as_str().unwrap();
    let code = code_with_pkce(app, person, client_id, &[("scope", scope)]).await;
    let secret = provider["client_secret"].as_str().unwrap();
    let (status, tokens, _) = token_request(app, Some((client_id, secret)), &exchange_form(&code)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    remember_secret(access);
    let info = app.client.get(app.url("/application/o/userinfo/")).bearer_auth(access).send().await.unwrap();
    assert_eq!(info.status(), StatusCode::OK);
    (tokens, info.json().await.unwrap())
}

#[tokio::test]
async fn authentiks_default_mappings_are_shipped_and_given_to_new_providers() {
    let app = TestApp::spawn().await;
    let (admin, _person, provider) = single_sign_on(&app, json!({})).await;
    let (status, page) = json(app.get(&admin, &format!("{SCOPES}?managed__isnull=false&ordering=scope_name")).await).await;
    assert_eq!(status, StatusCode::OK);
    let scopes: Vec<&str> = page["results"].as_array().unwrap().iter().map(|m| m["scope_name"].as_str().unwrap()).collect();
    assert_eq!(scopes, ["email", "entitlements", "offline_access", "openid", "profile"]);
    let email = page["results"].as_array().unwrap().iter().find(|m| m["scope_name"] == "email").unwrap();
    assert_eq!(email["managed"], "goauthentik.io/providers/oauth2/scope-email");
    assert_eq!(email["meta_model_name"], "authentik_providers_oauth2.scopemapping");
    assert_eq!(email["description"], "Email address");
    // authentik's clients repeat `managed` for several names.
    let two = format!(
        "{SCOPES}?managed=goauthentik.io/providers/oauth2/scope-email&managed=goauthentik.io/providers/oauth2/scope-profile&ordering=name"
    );
    let (status, page) = json(app.get(&admin, &two).await).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let names: Vec<&str> = page["results"].as_array().unwrap().iter().map(|m| m["scope_name"].as_str().unwrap()).collect();
    assert_eq!(names, ["email", "profile"]);
    assert_field_error(app.get(&admin, &format!("{SCOPES}?managed=x&page=1&page=2")).await, "page").await;
    assert_field_error(app.get(&admin, &format!("{SCOPES}?managed__isnull=perhaps")).await, "managed__isnull").await;
    let (_, page) = json(app.get(&admin, &format!("{SCOPES}?managed__isnull=false&ordering=scope_name")).await).await;
    let offered = provider["property_mappings"].as_array().unwrap();
    assert_eq!(offered.len(), 4, "openid, email, profile and offline_access by default: {provider}");
    assert!(
        !offered.iter().any(|id| page["results"].as_array().unwrap().iter().any(|m| m["pk"] == *id && m["scope_name"] == "entitlements"))
    );
    let (_, used) = json(app.get(&admin, &format!("{SCOPES}{}/used_by/", email["pk"].as_str().unwrap())).await).await;
    assert_eq!(used[0]["pk"], provider["pk"].to_string());
    assert_eq!(used[0]["action"], "cascade_many");

    let (_, discovery) = json(app.client.get(app.url("/application/o/wiki/.well-known/openid-configuration")).send().await.unwrap()).await;
    assert_eq!(discovery["scopes_supported"], json!(["openid", "email", "offline_access", "profile"]), "{discovery}");
}

#[tokio::test]
async fn a_mapping_of_ones_own_adds_claims_and_what_no_mapping_answers_is_not_granted() {
    let app = TestApp::spawn().await;
    let (admin, person, provider) = single_sign_on(&app, json!({})).await;
    let mapping = json!({
        "name": "Team",
        "scope_name": "team",
        "description": "Your team",
        // `sub` and `iss` are the server's to say: a mapping's attempt is left out.
        "expression": r#"{"team": "blue-" + user.username, "is_member": "blue" in ["blue"], "scopes_seen": scopes, "app": application.slug, "sub": "forged", "iss": "https://evil.example/"}"#,
    });
    let (status, created) = json(app.post(&admin, SCOPES, mapping).await).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["managed"], Value::Null);
    let failing = json!({"name": "Broken", "scope_name": "broken", "expression": "nobody.knows"});
    let (status, broken) = json(app.post(&admin, SCOPES, failing).await).await;
    assert_eq!(status, StatusCode::CREATED);
    let path = format!("{PROVIDERS}{}/", provider["pk"]);
    let mut offered = provider["property_mappings"].as_array().unwrap().clone();
    offered.extend([created["pk"].clone(), broken["pk"].clone()]);
    let (status, changed) = json(app.patch(&admin, &path, json!({"property_mappings": offered})).await).await;
    assert_eq!(status, StatusCode::OK, "{changed}");

    let (tokens, info) = sign_in_with(&app, &person, &provider, "openid team broken email unknown").await;
    assert_eq!(tokens["scope"], "openid team broken email", "what no mapping answers is left out: {tokens}");
    let claims = payload(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["team"], "blue-person@example.com", "{claims}");
    assert_eq!(claims["is_member"], true);
    assert_eq!(claims["app"], "wiki");
    assert_eq!(claims["scopes_seen"], json!(["openid", "team", "broken", "email"]));
    assert_eq!(claims["email"], "person@example.com");
    assert_ne!(claims["sub"], "forged");
    assert_eq!(claims["iss"], app.url("/application/o/wiki/"));
    assert_eq!(info["team"], "blue-person@example.com", "{info}");
    assert_ne!(info["sub"], "forged");
    assert_eq!(info["sub"], claims["sub"]);
    assert!(info.get("preferred_username").is_none(), "profile was not asked for");

    // Taken off the provider, a mapping's scope is no longer granted nor its claims given.
    let status = app.delete(&admin, &format!("{SCOPES}{}/", created["pk"].as_str().unwrap())).await.status();
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, now) = json(app.get(&admin, &path).await).await;
    assert!(!now["property_mappings"].as_array().unwrap().contains(&created["pk"]), "{now}");
    let (tokens, info) = sign_in_with(&app, &person, &provider, "openid team").await;
    assert_eq!(tokens["scope"], "openid");
    assert!(info.get("team").is_none());
}

#[tokio::test]
async fn scope_mappings_are_checked_field_by_field_and_need_their_permissions() {
    let app = TestApp::spawn().await;
    let (admin, person, provider) = single_sign_on(&app, json!({})).await;
    let good = json!({"name": "Team", "scope_name": "team", "expression": "{}"});
    for (field, body) in [
        ("expression", json!({"name": "A", "scope_name": "a", "expression": "1 +"})),
        ("expression", json!({"name": "A", "scope_name": "a"})),
        ("scope_name", json!({"name": "A", "scope_name": "two words", "expression": "{}"})),
        ("scope_name", json!({"name": "A", "scope_name": " ", "expression": "{}"})),
        ("name", json!({"scope_name": "a", "expression": "{}"})),
        ("description", json!({"name": "A", "scope_name": "a", "expression": "{}", "description": "x".repeat(1001)})),
    ] {
        assert_field_error(app.post(&admin, SCOPES, body).await, field).await;
    }
    let (status, created) = json(app.post(&admin, SCOPES, good.clone()).await).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_field_error(app.post(&admin, SCOPES, good).await, "name").await;
    let (_, all) = json(app.get(&admin, SCOPES).await).await;
    assert_eq!(all["pagination"]["count"], 6, "five shipped and one of our own, nothing invalid stored");

    // Without the permissions: nothing seen, made or changed, and no mapping chosen for a
    // provider.
    assert_forbidden(app.get(&person, SCOPES).await).await;
    assert_forbidden(app.post(&person, SCOPES, json!({"name": "B", "scope_name": "b", "expression": "{}"})).await).await;
    let path = format!("{SCOPES}{}/", created["pk"].as_str().unwrap());
    assert_forbidden(app.patch(&person, &path, json!({"expression": "{\"x\": 1}"})).await).await;
    assert_forbidden(app.delete(&person, &path).await).await;
    app.user_with(
        "integrator@example.com",
        &["authentik_providers_oauth2.change_oauth2provider", "authentik_providers_oauth2.view_oauth2provider"],
    )
    .await;
    let integrator = app.sign_in("integrator@example.com").await;
    let provider_path = format!("{PROVIDERS}{}/", provider["pk"]);
    assert_field_error(app.patch(&integrator, &provider_path, json!({"property_mappings": [created["pk"]]})).await, "property_mappings")
        .await;
    let missing = uuid::Uuid::new_v4();
    assert_field_error(app.patch(&admin, &provider_path, json!({"property_mappings": [missing]})).await, "property_mappings").await;
    let (_, after) = json(app.get(&admin, &provider_path).await).await;
    assert_eq!(after["property_mappings"], provider["property_mappings"], "refused changes leave the provider as it was");

    // A partial update keeps the other fields; a full one needs them all.
    let (status, patched) = json(app.patch(&admin, &path, json!({"description": "Your team"})).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((patched["description"].as_str(), patched["scope_name"].as_str()), (Some("Your team"), Some("team")));
    assert_field_error(app.put(&admin, &path, json!({"name": "Team"})).await, "expression").await;
}
