//! Rotating the managed signing key: the daily task replaces it when it is due, the replaced key
//! stays published while what it signed may live, and a provider with its own key is untouched.

use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::backchannel::verified;
use crate::oauth::{APPLICATIONS, code_with_pkce, create_provider, exchange_form, open_as, single_sign_on, token_request};
use crate::support::{Session, TestApp, json, remember_secret};

/// The key ids `slug`'s key set publishes, in order.
async fn published(app: &TestApp, slug: &str) -> Vec<String> {
    let keys: Value = app.client.get(app.url(&format!("/application/o/{slug}/jwks/"))).send().await.unwrap().json().await.unwrap();
    keys["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

/// A fresh ID token for `person` from the wiki.
async fn id_token(app: &TestApp, person: &Session, provider: &Value) -> String {
    let (client_id, secret) = (provider["client_id"].as_str().unwrap(), provider["client_secret"].as_str().unwrap());
    let code = code_with_pkce(app, person, client_id, &[]).await;
    let (status, tokens, _) = token_request(app, Some((client_id, secret)), &exchange_form(&code)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    remember_secret(tokens["access_token"].as_str().unwrap());
    tokens["id_token"].as_str().unwrap().to_owned()
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// Sends the built-in rotation schedule and waits for the `count`th rotation task to finish;
/// returns its result.
async fn run_rotation(app: &TestApp, admin: &Session, count: usize) -> Value {
    use gatehouse::tasks::entities::task;
    let (_, schedules) = json(app.get(admin, "/api/v3/tasks/schedules/?actor_name=gatehouse.rotate_signing_key").await).await;
    let schedule = schedules["results"][0]["id"].as_str().expect("the built-in schedule exists").to_owned();
    assert_eq!(schedules["results"][0]["identifier"], "rotate-signing-key");
    assert_eq!(app.post(admin, &format!("/api/v3/tasks/schedules/{schedule}/send/"), json!({})).await.status(), StatusCode::NO_CONTENT);
    for _ in 0..400 {
        let done: Vec<task::Model> = task::Entity::find()
            .filter(task::Column::ActorName.eq("gatehouse.rotate_signing_key"))
            .filter(task::Column::State.eq("done"))
            .all(&app.state.db)
            .await
            .unwrap();
        if done.len() >= count {
            let newest = done.into_iter().max_by_key(|t| t.mtime).unwrap();
            return newest.result.expect("the rotation task keeps its result");
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the rotation task did not finish");
}

#[tokio::test]
async fn a_replaced_signing_key_stays_published_until_what_it_signed_has_expired() {
    let app = TestApp::spawn_with(|config| config.tokens.signing_key_rotation = "milliseconds=1".parse().unwrap()).await;
    app.run_worker().await;
    let (admin, person, provider) = single_sign_on(&app, json!({})).await;
    // A provider with its own key is not affected by the managed key's rotation.
    let generation = json!({"common_name": "own.example", "validity_days": 30, "alg": "rsa"});
    let (status, pair) = json(app.post(&admin, "/api/v3/crypto/certificatekeypairs/generate/", generation).await).await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    let own = create_provider(&app, &admin, json!({"name": "Own", "signing_key": pair["pk"]})).await;
    let (status, _) = json(app.post(&admin, APPLICATIONS, json!({"name": "Own", "slug": "own", "provider": own["pk"]})).await).await;
    assert_eq!(status, StatusCode::CREATED);
    let own_keys = published(&app, "own").await;

    let before = id_token(&app, &person, &provider).await;
    let old = kid(&before);
    assert_eq!(published(&app, "wiki").await, vec![old.clone()]);

    let result = run_rotation(&app, &admin, 1).await;
    assert_eq!(result["rotated"], true, "{result}");
    let keys = published(&app, "wiki").await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[1], old, "the replaced key is still published, after the new one");
    assert_eq!(result["kid"], json!(keys[0]));
    // What the replaced key signed still verifies; what is signed now uses the new key.
    let client_id = provider["client_id"].as_str().unwrap();
    assert_eq!(verified(&app, &before, client_id).await["aud"], client_id);
    let after = id_token(&app, &person, &provider).await;
    assert_eq!(kid(&after), keys[0]);
    verified(&app, &after, client_id).await;
    // An ID token the replaced key signed still names the application at sign-out.
    let hint = app.url(&format!("/application/o/wiki/end-session/?id_token_hint={before}"));
    assert_eq!(open_as(&app, Some(&person), &hint).await.status(), StatusCode::FOUND);
    assert_eq!(published(&app, "own").await, own_keys);

    // Due again at once, but the replaced key may still verify live tokens, however short the
    // provider's tokens are made now: nothing changes.
    let provider_path = format!("{}{}/", crate::oauth::PROVIDERS, provider["pk"]);
    let (status, _) = json(app.patch(&admin, &provider_path, json!({"access_token_validity": "seconds=1"})).await).await;
    assert_eq!(status, StatusCode::OK);
    let result = run_rotation(&app, &admin, 2).await;
    assert_eq!(result["rotated"], false, "{result}");
    assert!(result["previous_needed_until"].is_string(), "{result}");
    assert_eq!(published(&app, "wiki").await, keys);
    // The rotation is on record.
    let (_, events) = json(app.get(&admin, "/api/v3/events/events/?action=secret_rotate").await).await;
    assert_eq!(events["pagination"]["count"], 1, "{events}");
}
