//! Clients that authenticate with a signed assertion (`private_key_jwt`, RFC 7523): the
//! provider names the certificate, the client signs with its private key, and each assertion
//! is accepted once, only for this server, only from that client.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::oauth::{create_provider, flow_pk, token_request};
use crate::support::{Session, TestApp, assert_field_error, json};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A pair generated through the API: (its pk, its private key in PEM, its key id).
async fn key_pair(app: &TestApp, admin: &Session, name: &str, alg: &str) -> (String, String, String) {
    let generation = json!({"common_name": name, "validity_days": 30, "alg": alg});
    let (status, pair) = json(app.post(admin, "/api/v3/crypto/certificatekeypairs/generate/", generation).await).await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    let pk = pair["pk"].as_str().unwrap().to_owned();
    let (_, key) = json(app.get(admin, &format!("/api/v3/crypto/certificatekeypairs/{pk}/view_private_key/")).await).await;
    let kid = pair["fingerprint_sha256"].as_str().unwrap().replace(':', "")[..32].to_owned();
    (pk, key["data"].as_str().unwrap().to_owned(), kid)
}

/// An assertion signed with `pem` (EC P-256 or RSA, by `algorithm`) carrying `claims`.
fn sign(pem: &str, algorithm: jsonwebtoken::Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let pkcs8 = pem::parse(pem).unwrap().into_contents();
    let key = match algorithm {
        jsonwebtoken::Algorithm::RS256 => {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            use rsa::pkcs8::DecodePrivateKey;
            let key = rsa::RsaPrivateKey::from_pkcs8_der(&pkcs8).unwrap();
            jsonwebtoken::EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes())
        }
        _ => jsonwebtoken::EncodingKey::from_ec_der(&pkcs8),
    };
    let mut header = jsonwebtoken::Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// The claims a well-made assertion of `client_id` for `audience` carries, with a fresh `jti`.
fn claims(client_id: &str, audience: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"iss": client_id, "sub": client_id, "aud": audience, "iat": now, "exp": now + 120, "jti": uuid::Uuid::new_v4().to_string()})
}

async fn with_assertion(app: &TestApp, assertion: &str, extra: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut form = vec![("grant_type", "client_credentials"), ("client_assertion_type", ASSERTION_TYPE), ("client_assertion", assertion)];
    form.extend_from_slice(extra);
    let (status, body, _) = token_request(app, None, &form).await;
    (status, body)
}

#[tokio::test]
async fn a_client_proves_itself_with_an_assertion_signed_by_its_own_key_once() {
    let app = TestApp::spawn().await;
    app.superuser("root@example.com").await;
    let admin = app.sign_in("root@example.com").await;
    let (ec, ec_pem, ec_kid) = key_pair(&app, &admin, "client.example", "ecdsa").await;
    let (rsa, rsa_pem, _) = key_pair(&app, &admin, "client-rsa.example", "rsa").await;
    let (_, stranger_pem, _) = key_pair(&app, &admin, "stranger.example", "ecdsa").await;
    let provider = create_provider(
        &app,
        &admin,
        json!({"name": "Service", "grant_types": ["client_credentials"], "client_keys": [ec, rsa],
               "authorization_flow": flow_pk(&app, &admin, "default-provider-authorization-implicit-consent").await}),
    )
    .await;
    assert_eq!(provider["client_keys"], json!([ec, rsa]));
    let client_id = provider["client_id"].as_str().unwrap();
    let (status, _) =
        json(app.post(&admin, crate::oauth::APPLICATIONS, json!({"name": "Service", "slug": "service", "provider": provider["pk"]})).await)
            .await;
    assert_eq!(status, StatusCode::CREATED);
    let token_endpoint = app.url("/application/o/token/");

    // Signed with either key (named or not), for the token endpoint or the issuer: a token.
    let es256 = jsonwebtoken::Algorithm::ES256;
    let first = sign(&ec_pem, es256, Some(&ec_kid), &claims(client_id, &token_endpoint));
    let (status, body) = with_assertion(&app, &first, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["access_token"].is_string());
    crate::support::remember_secret(body["access_token"].as_str().unwrap());
    let by_issuer = sign(&rsa_pem, jsonwebtoken::Algorithm::RS256, None, &claims(client_id, &app.url("/application/o/service/")));
    let (status, body) = with_assertion(&app, &by_issuer, &[("client_id", client_id)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    crate::support::remember_secret(body["access_token"].as_str().unwrap());

    // The same assertion twice: the second is refused.
    let (status, body) = with_assertion(&app, &first, &[]).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));

    // Everything else is refused as invalid_client.
    let now = chrono::Utc::now().timestamp();
    let mut cases: Vec<(&str, String)> = Vec::new();
    let mut with = |name: &'static str, change: &dyn Fn(&mut Value)| {
        let mut made = claims(client_id, &token_endpoint);
        change(&mut made);
        cases.push((name, sign(&ec_pem, es256, None, &made)));
    };
    with("another audience", &|c| c["aud"] = json!("https://elsewhere.example/token"));
    with("expired", &|c| c["exp"] = json!(now - 300));
    with("good for days", &|c| c["exp"] = json!(now + 3 * 24 * 3600));
    with("another subject", &|c| c["sub"] = json!("someone-else"));
    with("no jti", &|c| {
        c.as_object_mut().unwrap().remove("jti");
    });
    cases.push(("a stranger's key", sign(&stranger_pem, es256, None, &claims(client_id, &token_endpoint))));
    cases.push(("the wrong key id", sign(&rsa_pem, jsonwebtoken::Algorithm::RS256, Some(&ec_kid), &claims(client_id, &token_endpoint))));
    let forged = {
        let good = sign(&ec_pem, es256, None, &claims(client_id, &token_endpoint));
        format!("{}.{}.", base64_url(br#"{"alg":"none","typ":"JWT"}"#), good.split('.').nth(1).unwrap())
    };
    cases.push(("alg none", forged));
    cases.push(("not a JWT", "not-a-jwt".to_owned()));
    for (name, assertion) in &cases {
        let (status, body) = with_assertion(&app, assertion, &[]).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "{name}: {body}");
    }

    // Mixed or half-given client authentication is a bad request.
    let fresh = sign(&ec_pem, es256, None, &claims(client_id, &token_endpoint));
    let (status, body) = with_assertion(&app, &fresh, &[("client_secret", "x")]).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{body}");
    let (status, body, _) = token_request(&app, None, &[("grant_type", "client_credentials"), ("client_assertion", &fresh)]).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{body}");
    let (status, body) = with_assertion(&app, &fresh, &[("client_id", "someone-else")]).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{body}");

    // Discovery says so, with the algorithms it takes.
    let document: Value =
        app.client.get(app.url("/application/o/service/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert!(document["token_endpoint_auth_methods_supported"].as_array().unwrap().contains(&json!("private_key_jwt")), "{document}");
    assert!(document["token_endpoint_auth_signing_alg_values_supported"].as_array().unwrap().contains(&json!("ES256")));
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn client_keys_are_checked_and_a_public_client_cannot_have_them() {
    let app = TestApp::spawn().await;
    app.superuser("root@example.com").await;
    let admin = app.sign_in("root@example.com").await;
    let implicit = flow_pk(&app, &admin, "default-provider-authorization-implicit-consent").await;
    let invalidation = flow_pk(&app, &admin, "default-invalidation-flow").await;
    let base = json!({"name": "Bad", "authorization_flow": implicit, "invalidation_flow": invalidation, "redirect_uris": []});
    let with = |extra: Value| {
        let mut request = base.clone();
        request.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        request
    };
    let unknown = uuid::Uuid::new_v4();
    assert_field_error(app.post(&admin, crate::oauth::PROVIDERS, with(json!({"client_keys": [unknown]}))).await, "client_keys").await;
    let (pair, _, _) = key_pair(&app, &admin, "public.example", "ecdsa").await;
    let public = with(json!({"client_type": "public", "client_keys": [pair]}));
    assert_field_error(app.post(&admin, crate::oauth::PROVIDERS, public).await, "client_keys").await;
    // Naming keys takes seeing them.
    app.user_with("builder@example.com", &["authentik_providers_oauth2.add_oauth2provider", "authentik_flows.view_flow"]).await;
    let builder = app.sign_in("builder@example.com").await;
    let response = app.post(&builder, crate::oauth::PROVIDERS, with(json!({"client_keys": [pair]}))).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let (_, providers) = json(app.get(&admin, crate::oauth::PROVIDERS).await).await;
    assert_eq!(providers["pagination"]["count"], 0, "nothing refused was stored");
}
