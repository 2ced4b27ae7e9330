//! The agent connector's administration through `/api/v3/endpoints/`: agent connectors, device
//! access groups and enrollment tokens, their permissions, validation and audit trail.

use gatehouse::endpoints::entities::enrollment_token;
use gatehouse::tokens::key::SecretKey;
use reqwest::StatusCode;
use sea_orm::EntityTrait;
use serde_json::{Value, json};

use crate::support::{TestApp, assert_field_error, assert_forbidden, json, remember_secret};

const CONNECTORS: &str = "/api/v3/endpoints/agents/connectors/";
const TOKENS: &str = "/api/v3/endpoints/agents/enrollment_tokens/";
const GROUPS: &str = "/api/v3/endpoints/device_access_groups/";

fn id(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap_or_else(|| panic!("{field} in {value}")).to_owned()
}

#[tokio::test]
async fn an_agent_connector_is_created_with_authentiks_defaults_and_changed_field_by_field() {
    let app = TestApp::spawn().await;
    app.superuser("root@example.com").await;
    let admin = app.sign_in("root@example.com").await;

    let (status, created) = json(app.post(&admin, CONNECTORS, json!({"name": "Laptops"})).await).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    for (field, expected) in [
        ("enabled", json!(true)),
        // Durations read back in canonical form: authentik's default "hours=24" is a day.
        ("snapshot_expiry", json!("days=1")),
        ("auth_session_duration", json!("hours=8")),
        ("auth_terminate_session_on_expiry", json!(false)),
        ("refresh_interval", json!("minutes=30")),
        ("authorization_flow", Value::Null),
        ("nss_uid_offset", json!(1000)),
        ("nss_gid_offset", json!(1000)),
        ("challenge_key", Value::Null),
        ("challenge_idle_timeout", json!("seconds=5")),
        ("challenge_trigger_check_in", json!(false)),
        ("jwt_federation_providers", json!([])),
        ("component", json!("ak-endpoints-connector-agent-form")),
        ("meta_model_name", json!("authentik_endpoints_connectors_agent.agentconnector")),
    ] {
        assert_eq!(created[field], expected, "{field} in {created}");
    }
    let path = format!("{CONNECTORS}{}/", id(&created, "connector_uuid"));

    // A flow and a key that can sign challenges may be chosen; durations come back canonical.
    let (_, flows) = json(app.get(&admin, "/api/v3/flows/instances/?slug=default-authentication-flow").await).await;
    let flow = flows["results"][0]["pk"].clone();
    let (status, pair) = json(
        app.post(
            &admin,
            "/api/v3/crypto/certificatekeypairs/generate/",
            json!({"common_name": "challenges", "validity_days": 30, "alg": "ecdsa"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    let change = json!({"authorization_flow": flow, "challenge_key": pair["pk"], "refresh_interval": "seconds=90", "nss_uid_offset": 2000, "enabled": false});
    let (status, changed) = json(app.patch(&admin, &path, change).await).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(
        (
            &changed["authorization_flow"],
            &changed["challenge_key"],
            &changed["refresh_interval"],
            &changed["nss_uid_offset"],
            &changed["enabled"]
        ),
        (&flow, &pair["pk"], &json!("minutes=1;seconds=30"), &json!(2000), &json!(false)),
    );
    assert_eq!(changed["nss_gid_offset"], 1000, "a patch keeps what it does not name");
    let (_, listed) = json(app.get(&admin, &format!("{CONNECTORS}?enabled=false&search=lap")).await).await;
    assert_eq!(listed["pagination"]["count"], 1, "{listed}");
    // Clearing the key sets it back to none.
    let (_, cleared) = json(app.patch(&admin, &path, json!({"challenge_key": null})).await).await;
    assert_eq!(cleared["challenge_key"], Value::Null);

    // Every change is in the audit trail.
    let events = crate::flows::events(&app, "model_updated").await;
    assert!(events.iter().any(|e| e["context"]["model"]["model_name"] == "agentconnector"), "{events:?}");
}

#[tokio::test]
async fn agent_connector_input_is_refused_field_by_field() {
    let app = TestApp::spawn().await;
    app.superuser("root@example.com").await;
    let admin = app.sign_in("root@example.com").await;
    for (body, field) in [
        (json!({}), "name"),
        (json!({"name": "  "}), "name"),
        (json!({"name": "x", "refresh_interval": "fortnights=1"}), "refresh_interval"),
        (json!({"name": "x", "snapshot_expiry": "seconds=0"}), "snapshot_expiry"),
        (json!({"name": "x", "refresh_interval": "milliseconds=500"}), "refresh_interval"),
        (json!({"name": "x", "nss_uid_offset": -1}), "nss_uid_offset"),
        (json!({"name": "x", "nss_gid_offset": 2_147_483_648_i64}), "nss_gid_offset"),
        (json!({"name": "x", "authorization_flow": uuid::Uuid::new_v4()}), "authorization_flow"),
        (json!({"name": "x", "challenge_key": uuid::Uuid::new_v4()}), "challenge_key"),
        (json!({"name": "x", "jwt_federation_providers": [1]}), "jwt_federation_providers"),
        (json!({"name": "x", "unknown_setting": true}), "unknown_setting"),
    ] {
        let problem = assert_field_error(app.post(&admin, CONNECTORS, body.clone()).await, field).await;
        assert!(!problem.to_string().contains("panicked"), "{body}: {problem}");
    }
    // A certificate without its key cannot sign challenges.
    let (_, pair) = json(
        app.post(
            &admin,
            "/api/v3/crypto/certificatekeypairs/generate/",
            json!({"common_name": "full", "validity_days": 30, "alg": "ecdsa"}),
        )
        .await,
    )
    .await;
    let (_, certificate) =
        json(app.get(&admin, &format!("/api/v3/crypto/certificatekeypairs/{}/view_certificate/", id(&pair, "pk"))).await).await;
    let (status, bare) = json(
        app.post(&admin, "/api/v3/crypto/certificatekeypairs/", json!({"name": "bare", "certificate_data": certificate["data"]})).await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{bare}");
    assert_field_error(app.post(&admin, CONNECTORS, json!({"name": "x", "challenge_key": bare["pk"]})).await, "challenge_key").await;
    // Nothing was stored by any refused request.
    let (_, listed) = json(app.get(&admin, CONNECTORS).await).await;
    assert_eq!(listed["pagination"]["count"], 0, "{listed}");
}

#[tokio::test]
async fn enrollment_token_keys_are_shown_only_through_view_key_and_each_view_is_recorded() {
    let app = TestApp::spawn().await;
    app.superuser("root@example.com").await;
    let admin = app.sign_in("root@example.com").await;
    let (_, connector) = json(app.post(&admin, CONNECTORS, json!({"name": "Laptops"})).await).await;
    let (_, group) = json(app.post(&admin, GROUPS, json!({"name": "Finance", "attributes": {"site": "HQ"}})).await).await;

    let body = json!({"name": "Spring rollout", "connector": connector["connector_uuid"], "device_group": group["pbm_uuid"]});
    let (status, token) = json(app.post(&admin, TOKENS, body).await).await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    assert_eq!(token["device_group_obj"]["name"], "Finance", "{token}");
    assert_eq!(token["expiring"], true);
    let expires = chrono::DateTime::parse_from_rfc3339(token["expires"].as_str().unwrap()).unwrap();
    assert!(expires > chrono::Utc::now(), "an expiring token without a date gets the default lifetime");
    assert!(token.get("key").is_none(), "{token}");
    let path = format!("{TOKENS}{}/", id(&token, "token_uuid"));
    let (_, retrieved) = json(app.get(&admin, &path).await).await;
    assert!(retrieved.get("key").is_none(), "{retrieved}");

    let (status, viewed) = json(app.get(&admin, &format!("{path}view_key/")).await).await;
    assert_eq!(status, StatusCode::OK, "{viewed}");
    let key = viewed["key"].as_str().unwrap().to_owned();
    remember_secret(&key);
    assert!(SecretKey::parse(&key).is_ok(), "the key is in Gatehouse's checksummed format");
    assert!(key.starts_with("gatehouse_enr_"), "{key}");
    // Stored only as a digest and a sealed copy.
    let stored = enrollment_token::Entity::find().all(&app.state.db).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].key_digest, gatehouse::endpoints::enrollment::key_digest(&app.state.secret, &key), "found by its keyed digest");
    assert_ne!(stored[0].key_sealed, key, "kept sealed");
    let opened = gatehouse::tokens::seal::open(&app.state.secret, stored[0].id, &stored[0].key_sealed).unwrap();
    assert_eq!(opened, key);
    let events = crate::flows::events(&app, "secret_view").await;
    assert!(events.iter().any(|e| e["context"]["model"]["model_name"] == "enrollmenttoken"), "{events:?}");

    // A patch may end the expiry; a connector that is not there is refused.
    let (_, forever) = json(app.patch(&admin, &path, json!({"expiring": false})).await).await;
    assert_eq!((&forever["expiring"], &forever["expires"]), (&json!(false), &Value::Null), "{forever}");
    assert_field_error(app.patch(&admin, &path, json!({"connector": uuid::Uuid::new_v4()})).await, "connector").await;
    assert_field_error(app.post(&admin, TOKENS, json!({"name": "no connector"})).await, "connector").await;
    assert_field_error(
        app.post(&admin, TOKENS, json!({"name": "x", "connector": connector["connector_uuid"], "device_group": uuid::Uuid::new_v4()}))
            .await,
        "device_group",
    )
    .await;

    // The group's and the connector's used_by list the token; deleting the group leaves the token
    // without one, deleting the connector takes the token with it.
    let (_, used) = json(app.get(&admin, &format!("{GROUPS}{}/used_by/", id(&group, "pbm_uuid"))).await).await;
    assert_eq!(used[0]["action"], "set_null", "{used}");
    let (_, used) = json(app.get(&admin, &format!("{CONNECTORS}{}/used_by/", id(&connector, "connector_uuid"))).await).await;
    assert_eq!((&used[0]["name"], &used[0]["action"]), (&json!("Spring rollout"), &json!("cascade")), "{used}");
    let (status, _) = json(app.delete(&admin, &format!("{GROUPS}{}/", id(&group, "pbm_uuid"))).await).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, orphan) = json(app.get(&admin, &path).await).await;
    assert_eq!((&orphan["device_group"], &orphan["device_group_obj"]), (&Value::Null, &Value::Null), "{orphan}");
    let (status, _) = json(app.delete(&admin, &format!("{CONNECTORS}{}/", id(&connector, "connector_uuid"))).await).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = json(app.get(&admin, &path).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn endpoint_administration_follows_its_permissions() {
    let app = TestApp::spawn().await;
    app.superuser("root@example.com").await;
    let admin = app.sign_in("root@example.com").await;
    let (_, connector) = json(app.post(&admin, CONNECTORS, json!({"name": "Laptops"})).await).await;
    let (_, token) = json(app.post(&admin, TOKENS, json!({"name": "t", "connector": connector["connector_uuid"]})).await).await;
    let token_path = format!("{TOKENS}{}/", id(&token, "token_uuid"));

    // Nobody without a permission sees or changes anything.
    app.user("plain@example.com", |_| {}).await;
    let plain = app.sign_in("plain@example.com").await;
    for path in [CONNECTORS, TOKENS, GROUPS] {
        assert_forbidden(app.get(&plain, path).await).await;
    }
    assert_forbidden(app.post(&plain, GROUPS, json!({"name": "g"})).await).await;
    assert_forbidden(app.get(&plain, &format!("{token_path}view_key/")).await).await;

    // Seeing tokens is not reading their keys: that takes its own permission, asked before the
    // token is looked up (so unknown ids answer the same).
    app.user_with(
        "viewer@example.com",
        &["authentik_endpoints_connectors_agent.view_enrollmenttoken", "authentik_endpoints_connectors_agent.view_agentconnector"],
    )
    .await;
    let viewer = app.sign_in("viewer@example.com").await;
    let (status, _) = json(app.get(&viewer, &token_path).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_forbidden(app.get(&viewer, &format!("{token_path}view_key/")).await).await;
    assert_forbidden(app.get(&viewer, &format!("{TOKENS}{}/view_key/", uuid::Uuid::new_v4())).await).await;
    assert_forbidden(app.patch(&viewer, &token_path, json!({"name": "renamed"})).await).await;
    assert_forbidden(app.delete(&viewer, &format!("{CONNECTORS}{}/", id(&connector, "connector_uuid"))).await).await;

    app.user_with("keyholder@example.com", &["authentik_endpoints_connectors_agent.view_enrollment_token_key"]).await;
    let keyholder = app.sign_in("keyholder@example.com").await;
    let (status, viewed) = json(app.get(&keyholder, &format!("{token_path}view_key/")).await).await;
    assert_eq!(status, StatusCode::OK, "{viewed}");
    remember_secret(viewed["key"].as_str().unwrap());

    // Choosing a challenge key means seeing key pairs.
    app.user_with(
        "operator@example.com",
        &["authentik_endpoints_connectors_agent.view_agentconnector", "authentik_endpoints_connectors_agent.change_agentconnector"],
    )
    .await;
    let operator = app.sign_in("operator@example.com").await;
    let path = format!("{CONNECTORS}{}/", id(&connector, "connector_uuid"));
    let (status, renamed) = json(app.patch(&operator, &path, json!({"name": "Desktops"})).await).await;
    assert_eq!((status, &renamed["name"]), (StatusCode::OK, &json!("Desktops")));
    assert_forbidden(app.patch(&operator, &path, json!({"challenge_key": uuid::Uuid::new_v4()})).await).await;
}

#[tokio::test]
async fn device_access_group_names_are_unique_and_attributes_are_objects() {
    let app = TestApp::spawn().await;
    app.superuser("root@example.com").await;
    let admin = app.sign_in("root@example.com").await;
    let (status, group) = json(app.post(&admin, GROUPS, json!({"name": "Kiosks"})).await).await;
    assert_eq!((status, &group["attributes"]), (StatusCode::CREATED, &json!({})), "{group}");
    assert_field_error(app.post(&admin, GROUPS, json!({"name": "Kiosks"})).await, "name").await;
    assert_field_error(app.post(&admin, GROUPS, json!({"name": "Other", "attributes": [1, 2]})).await, "attributes").await;
    let path = format!("{GROUPS}{}/", id(&group, "pbm_uuid"));
    assert_field_error(app.put(&admin, &path, json!({"attributes": {}})).await, "name").await;
    let (status, changed) = json(app.put(&admin, &path, json!({"name": "Lobby kiosks", "attributes": {"floor": 0}})).await).await;
    assert_eq!((status, &changed["attributes"]["floor"]), (StatusCode::OK, &json!(0)), "{changed}");
    let (_, found) = json(app.get(&admin, &format!("{GROUPS}?name=Lobby%20kiosks")).await).await;
    assert_eq!(found["results"][0]["pbm_uuid"], group["pbm_uuid"], "{found}");
    let (status, _) = json(app.get(&admin, &format!("{GROUPS}not-a-uuid/")).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

const BINDINGS: &str = "/api/v3/endpoints/device_bindings/";

#[tokio::test]
async fn device_bindings_admit_one_user_or_one_group_and_are_checked_field_by_field() {
    let app = TestApp::spawn().await;
    app.superuser("root@example.com").await;
    let admin = app.sign_in("root@example.com").await;
    let (_, group) = json(app.post(&admin, GROUPS, json!({"name": "Kiosks"})).await).await;
    let target = id(&group, "pbm_uuid");
    let ada = app.user("ada@example.com", |_| {}).await;
    let (_, people) = json(app.post(&admin, "/api/v3/core/groups/", json!({"name": "kiosk-staff"})).await).await;

    let (status, for_ada) = json(app.post(&admin, BINDINGS, json!({"target": target, "user": ada.id, "order": 0})).await).await;
    assert_eq!(status, StatusCode::CREATED, "{for_ada}");
    assert_eq!((&for_ada["target"], &for_ada["user_obj"]["pk"], &for_ada["group_obj"]), (&json!(target), &json!(ada.id), &Value::Null));
    assert_eq!((&for_ada["enabled"], &for_ada["negate"], &for_ada["expiring"]), (&json!(true), &json!(false), &json!(false)));
    assert_eq!((&for_ada["policy"], &for_ada["policy_obj"], &for_ada["connector"]), (&Value::Null, &Value::Null, &Value::Null));
    let (status, for_staff) =
        json(app.post(&admin, BINDINGS, json!({"target": target, "group": people["pk"], "order": 1, "negate": true})).await).await;
    assert_eq!(status, StatusCode::CREATED, "{for_staff}");
    assert_eq!((&for_staff["group_obj"]["name"], &for_staff["negate"]), (&json!("kiosk-staff"), &json!(true)));

    // Exactly one subject, no policy, a target that exists, an order.
    assert_field_error(app.post(&admin, BINDINGS, json!({"target": target, "order": 0})).await, "user").await;
    assert_field_error(
        app.post(&admin, BINDINGS, json!({"target": target, "user": ada.id, "group": people["pk"], "order": 0})).await,
        "user",
    )
    .await;
    assert_field_error(
        app.post(&admin, BINDINGS, json!({"target": target, "user": ada.id, "order": 0, "policy": uuid::Uuid::new_v4()})).await,
        "policy",
    )
    .await;
    assert_field_error(app.post(&admin, BINDINGS, json!({"target": uuid::Uuid::new_v4(), "user": ada.id, "order": 0})).await, "target")
        .await;
    assert_field_error(app.post(&admin, BINDINGS, json!({"target": target, "user": ada.id})).await, "order").await;
    assert_field_error(app.post(&admin, BINDINGS, json!({"target": target, "user": 999_999, "order": 0})).await, "user").await;
    assert_field_error(app.post(&admin, BINDINGS, json!({"target": target, "user": ada.id, "order": 0, "timeout": -1})).await, "timeout")
        .await;

    let (_, listed) = json(app.get(&admin, &format!("{BINDINGS}?target={target}")).await).await;
    assert_eq!(listed["pagination"]["count"], 2, "{listed}");
    let (_, elsewhere) = json(app.get(&admin, &format!("{BINDINGS}?target={}", uuid::Uuid::new_v4())).await).await;
    assert_eq!(elsewhere["pagination"]["count"], 0);
    let (_, with_policy) = json(app.get(&admin, &format!("{BINDINGS}?policy__isnull=false")).await).await;
    assert_eq!(with_policy["pagination"]["count"], 0);

    let path = format!("{BINDINGS}{}/", id(&for_ada, "pk"));
    let (status, changed) =
        json(app.patch(&admin, &path, json!({"enabled": false, "expiring": true, "expires": "2031-01-01T00:00:00Z"})).await).await;
    assert_eq!((status, &changed["enabled"], &changed["expiring"]), (StatusCode::OK, &json!(false), &json!(true)), "{changed}");
    // Moving the binding from a user to a group needs the user cleared.
    assert_field_error(app.patch(&admin, &path, json!({"group": people["pk"]})).await, "user").await;
    let (status, moved) = json(app.patch(&admin, &path, json!({"group": people["pk"], "user": null})).await).await;
    assert_eq!((status, &moved["user"], &moved["group"]), (StatusCode::OK, &Value::Null, &people["pk"]), "{moved}");
    assert_field_error(app.put(&admin, &path, json!({"target": target, "group": people["pk"]})).await, "order").await;
    let (status, _) = json(app.delete(&admin, &path).await).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = json(app.get(&admin, &path).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Deleting the target deletes its bindings.
    let (status, _) = json(app.delete(&admin, &format!("{GROUPS}{target}/")).await).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, left) = json(app.get(&admin, BINDINGS).await).await;
    assert_eq!(left["pagination"]["count"], 0, "{left}");
}

#[tokio::test]
async fn a_device_binding_cannot_admit_an_account_more_powerful_than_its_author() {
    let app = TestApp::spawn().await;
    let root = app.superuser("root@example.com").await;
    let admin = app.sign_in("root@example.com").await;
    let (_, group) = json(app.post(&admin, GROUPS, json!({"name": "Servers"})).await).await;
    let target = id(&group, "pbm_uuid");
    let (_, admins) = json(app.post(&admin, "/api/v3/core/groups/", json!({"name": "admins", "is_superuser": true})).await).await;
    let plain = app.user("plain@example.com", |_| {}).await;
    let binding_permissions = [
        "authentik_endpoints.view_deviceuserbinding",
        "authentik_endpoints.add_deviceuserbinding",
        "authentik_endpoints.change_deviceuserbinding",
        "authentik_endpoints.delete_deviceuserbinding",
    ];
    app.user_with("operator@example.com", &binding_permissions).await;
    let operator = app.sign_in("operator@example.com").await;

    assert_forbidden(app.post(&operator, BINDINGS, json!({"target": target, "user": root.id, "order": 0})).await).await;
    assert_forbidden(app.post(&operator, BINDINGS, json!({"target": target, "group": admins["pk"], "order": 0})).await).await;
    // Nor through a group that confers nothing but holds a superuser, or has one below it.
    let (_, holding_root) =
        json(app.post(&admin, "/api/v3/core/groups/", json!({"name": "everyone", "users": [root.id, plain.id]})).await).await;
    assert_forbidden(app.post(&operator, BINDINGS, json!({"target": target, "group": holding_root["pk"], "order": 0})).await).await;
    let (_, team) = json(app.post(&admin, "/api/v3/core/groups/", json!({"name": "team"})).await).await;
    let (status, _) =
        json(app.post(&admin, "/api/v3/core/groups/", json!({"name": "team-admins", "is_superuser": true, "parents": [team["pk"]]})).await)
            .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_forbidden(app.post(&operator, BINDINGS, json!({"target": target, "group": team["pk"], "order": 0})).await).await;
    // A negated binding admits everyone else: superusers only.
    assert_forbidden(app.post(&operator, BINDINGS, json!({"target": target, "user": plain.id, "order": 0, "negate": true})).await).await;
    let (status, _) = json(app.post(&admin, BINDINGS, json!({"target": target, "user": plain.id, "order": 5, "negate": true})).await).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, for_plain) = json(app.post(&operator, BINDINGS, json!({"target": target, "user": plain.id, "order": 0})).await).await;
    assert_eq!(status, StatusCode::CREATED, "{for_plain}");
    // Nor turn a binding it may change into one it could not make, nor undo a superuser's.
    let path = format!("{BINDINGS}{}/", id(&for_plain, "pk"));
    assert_forbidden(app.patch(&operator, &path, json!({"user": root.id})).await).await;
    let (_, for_root) = json(app.post(&admin, BINDINGS, json!({"target": target, "user": root.id, "order": 1})).await).await;
    let root_path = format!("{BINDINGS}{}/", id(&for_root, "pk"));
    assert_forbidden(app.patch(&operator, &root_path, json!({"enabled": false})).await).await;
    assert_forbidden(app.delete(&operator, &root_path).await).await;
    let (_, kept) = json(app.get(&admin, &root_path).await).await;
    assert_eq!((&kept["user"], &kept["enabled"]), (&json!(root.id), &json!(true)), "{kept}");
    let (_, bound) = json(app.get(&admin, &path).await).await;
    assert_eq!(bound["user"], json!(plain.id), "a refused change writes nothing");
    let (_, all) = json(app.get(&admin, &format!("{BINDINGS}?target={target}")).await).await;
    assert_eq!(all["pagination"]["count"], 3, "only the plain user's, root's and the superuser's negated binding: {all}");

    // Without the permissions, nothing at all.
    app.user("nobody@example.com", |_| {}).await;
    let nobody = app.sign_in("nobody@example.com").await;
    assert_forbidden(app.get(&nobody, BINDINGS).await).await;
    assert_forbidden(app.post(&nobody, BINDINGS, json!({"target": target, "user": plain.id, "order": 0})).await).await;
}

#[tokio::test]
async fn connectors_of_every_kind_are_listed_read_and_deleted_through_one_path() {
    let app = TestApp::spawn().await;
    app.superuser("root@example.com").await;
    let admin = app.sign_in("root@example.com").await;
    let (_, created) = json(app.post(&admin, CONNECTORS, json!({"name": "Laptops"})).await).await;
    let (status, all) = json(app.get(&admin, "/api/v3/endpoints/connectors/").await).await;
    assert_eq!((status, &all["pagination"]["count"]), (StatusCode::OK, &json!(1)), "{all}");
    let listed = &all["results"][0];
    assert_eq!((&listed["name"], &listed["component"]), (&json!("Laptops"), &json!("ak-endpoints-connector-agent-form")));
    assert!(listed.get("refresh_interval").is_none(), "the generic shape, not the agent connector's: {listed}");
    let (_, types) = json(app.get(&admin, "/api/v3/endpoints/connectors/types/").await).await;
    assert_eq!(types[0]["model_name"], "agentconnector", "{types}");
    let path = format!("/api/v3/endpoints/connectors/{}/", id(&created, "connector_uuid"));
    let (status, one) = json(app.get(&admin, &path).await).await;
    assert_eq!((status, &one["connector_uuid"]), (StatusCode::OK, &created["connector_uuid"]));
    let (status, used) = json(app.get(&admin, &format!("{path}used_by/")).await).await;
    assert_eq!((status, used), (StatusCode::OK, json!([])));
    app.user("plain@example.com", |_| {}).await;
    let plain = app.sign_in("plain@example.com").await;
    assert_forbidden(app.get(&plain, "/api/v3/endpoints/connectors/").await).await;
    assert_forbidden(app.delete(&plain, &path).await).await;
    let (status, _) = json(app.delete(&admin, &path).await).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = json(app.get(&admin, &format!("{CONNECTORS}{}/", id(&created, "connector_uuid"))).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
