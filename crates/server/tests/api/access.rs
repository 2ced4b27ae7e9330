//! No way up: each road to more rights that was once open, named after it, must answer 403 and
//! change nothing. The property test in `escalation.rs` covers the roads nobody listed.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

/// A tenant with a superuser, a superuser group `Root` with a child `Ops`, a group `KeyViewers`
/// carrying `view_token_key`, a plain group, and a superuser's API key.
struct World {
    app: TestApp,
    admin: Session,
    root: String,
    ops: String,
    key_viewers: String,
    plain: String,
    admin_key: String,
}

async fn world() -> World {
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    let admin = app.sign_in("admin@example.com").await;
    let group = |body: Value| {
        let (app, admin) = (&app, &admin);
        async move {
            let (status, group) = json(app.post(admin, "/api/v3/core/groups/", body).await).await;
            assert_eq!(status, StatusCode::CREATED, "{group}");
            group["pk"].as_str().unwrap().to_owned()
        }
    };
    let root = group(json!({"name": "Root", "is_superuser": true})).await;
    let ops = group(json!({"name": "Ops", "parents": [root]})).await;
    let key_viewers = group(json!({"name": "KeyViewers", "permissions": ["authentik_core.view_token_key"]})).await;
    let plain = group(json!({"name": "Plain"})).await;
    let (_, admin_key) = app.create_key(&admin, json!({"identifier": "admin-key"})).await;
    World { app, admin, root, ops, key_viewers, plain, admin_key }
}

impl World {
    /// A signed-in user holding `permissions`, and their pk.
    async fn attacker(&self, email: &str, permissions: &[&str]) -> (Session, i64) {
        let user = self.app.user_with(email, permissions).await;
        (self.app.sign_in(email).await, user.id)
    }

    async fn is_superuser(&self, session: &Session) -> bool {
        json(self.app.get(session, "/api/v3/core/users/me/").await).await.1["user"]["is_superuser"].as_bool().unwrap()
    }

    async fn group(&self, pk: &str) -> Value {
        json(self.app.get(&self.admin, &format!("/api/v3/core/groups/{pk}/")).await).await.1
    }

    async fn user(&self, pk: i64) -> Value {
        json(self.app.get(&self.admin, &format!("/api/v3/core/users/{pk}/")).await).await.1
    }

    /// The `suspicious_request` events, once there are `at_least` of them (they are written
    /// after the refused change's transaction is gone).
    async fn suspicious_requests(&self, at_least: usize) -> Vec<Value> {
        for _ in 0..800 {
            let (_, page) = json(self.app.get(&self.admin, "/api/v3/events/events/?action=suspicious_request&page_size=100").await).await;
            let results = page["results"].as_array().cloned().unwrap_or_default();
            if results.len() >= at_least {
                return results;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("fewer than {at_least} suspicious_request events were recorded");
    }

    async fn group_count(&self) -> u64 {
        json(self.app.get(&self.admin, "/api/v3/core/groups/").await).await.1["pagination"]["count"].as_u64().unwrap()
    }
}

fn pks(list: &Value) -> Vec<Value> {
    let mut pks: Vec<Value> = list.as_array().unwrap().iter().map(|v| v.get("pk").cloned().unwrap_or_else(|| v.clone())).collect();
    pks.sort_by_key(|v| v.to_string());
    pks
}

#[tokio::test]
async fn add_group_cannot_create_a_group_under_a_superuser_group() {
    let w = world().await;
    let (session, me) = w.attacker("mallory@example.com", &["authentik_core.add_group"]).await;
    let groups_before = w.group_count().await;
    for body in [
        json!({"name": "x", "parents": [w.root], "users": [me]}),
        // Even empty: the group itself would confer superuser on whoever joins it later.
        json!({"name": "y", "parents": [w.root]}),
        json!({"name": "z", "parents": [w.ops], "users": [me]}),
        json!({"name": "w", "is_superuser": true}),
    ] {
        assert_forbidden(w.app.post(&session, "/api/v3/core/groups/", body).await).await;
    }
    assert_eq!(w.group_count().await, groups_before, "a refused create left a group behind");
    assert!(!w.is_superuser(&session).await);
    // The audit trail says who tried and why; the responses said only 403.
    let events = w.suspicious_requests(4).await;
    assert!(events.iter().all(|e| e["user"]["pk"] == me), "{events:?}");
    assert!(events.iter().all(|e| e["context"]["reason"].as_str().is_some_and(|r| r.contains("rights"))), "{events:?}");
}

#[tokio::test]
async fn change_group_cannot_reparent_a_group_or_join_a_superuser_line() {
    let w = world().await;
    let (session, me) = w.attacker("mallory@example.com", &["authentik_core.change_group"]).await;
    let plain_before = w.group(&w.plain).await;
    assert_forbidden(
        w.app.patch(&session, &format!("/api/v3/core/groups/{}/", w.plain), json!({"parents": [w.root], "users": [me]})).await,
    )
    .await;
    assert_forbidden(w.app.patch(&session, &format!("/api/v3/core/groups/{}/", w.plain), json!({"parents": [w.ops]})).await).await;
    assert_eq!(w.group(&w.plain).await, plain_before, "a refused change was applied");
    let ops_before = w.group(&w.ops).await;
    assert_forbidden(w.app.post(&session, &format!("/api/v3/core/groups/{}/add_user/", w.ops), json!({"pk": me})).await).await;
    assert_eq!(pks(&w.group(&w.ops).await["users"]), pks(&ops_before["users"]));
    assert!(!w.is_superuser(&session).await);
    // What the caller may do stays possible: joining the plain group changes no rights.
    let response = w.app.post(&session, &format!("/api/v3/core/groups/{}/add_user/", w.plain), json!({"pk": me})).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn change_user_cannot_join_a_group_under_a_superuser_group_nor_add_user_create_one() {
    let w = world().await;
    let (session, me) = w.attacker("mallory@example.com", &["authentik_core.change_user", "authentik_core.add_user"]).await;
    let me_before = w.user(me).await;
    assert_forbidden(w.app.patch(&session, &format!("/api/v3/core/users/{me}/"), json!({"groups": [w.ops]})).await).await;
    assert_forbidden(w.app.patch(&session, &format!("/api/v3/core/users/{me}/"), json!({"is_superuser": true})).await).await;
    assert_eq!(w.user(me).await, me_before, "a refused change was applied");
    let body = json!({"email": "sock@example.com", "groups": [w.ops], "password": PASSWORD});
    assert_forbidden(w.app.post(&session, "/api/v3/core/users/", body).await).await;
    let (_, found) = json(w.app.get(&w.admin, "/api/v3/core/users/?email=sock@example.com").await).await;
    assert_eq!(found["pagination"]["count"], 0, "a refused create left a user behind");
    assert_eq!(w.app.try_sign_in("sock@example.com", PASSWORD).await.status(), StatusCode::BAD_REQUEST);
    assert!(!w.is_superuser(&session).await);
}

#[tokio::test]
async fn joining_a_group_with_view_token_key_is_refused_and_keys_of_the_powerful_stay_secret() {
    let w = world().await;
    let (editor, me) = w.attacker("mallory@example.com", &["authentik_core.change_user", "authentik_core.change_group"]).await;
    assert_forbidden(w.app.patch(&editor, &format!("/api/v3/core/users/{me}/"), json!({"groups": [w.key_viewers]})).await).await;
    assert_forbidden(w.app.post(&editor, &format!("/api/v3/core/groups/{}/add_user/", w.key_viewers), json!({"pk": me})).await).await;
    assert!(pks(&w.group(&w.key_viewers).await["users"]).is_empty());

    // Someone who legitimately holds the key permissions still cannot read or replace the keys
    // of an account more powerful than themselves.
    let (holder, _) = w
        .attacker(
            "keeper@example.com",
            &["authentik_core.view_token", "authentik_core.view_token_key", "authentik_core.set_token_key", "authentik_core.change_token"],
        )
        .await;
    let (status, body) = json(w.app.get(&holder, "/api/v3/core/tokens/admin-key/view_key/").await).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(!body.to_string().contains(&w.admin_key), "the key leaked");
    assert_forbidden(w.app.post(&holder, "/api/v3/core/tokens/admin-key/rotate/", json!({})).await).await;
    let chosen = gatehouse::tokens::key::SecretKey::generate(gatehouse::tokens::key::KeyKind::Api);
    assert_forbidden(w.app.post(&holder, "/api/v3/core/tokens/admin-key/set_key/", json!({"key": chosen.expose()})).await).await;
    assert_forbidden(w.app.patch(&holder, "/api/v3/core/tokens/admin-key/", json!({"expires": null, "expiring": false})).await).await;
    // The superuser's key is untouched and still works; the chosen one does not.
    assert_eq!(w.app.bearer(&w.admin_key, reqwest::Method::GET, "/api/v3/core/users/me/", None).await.status(), StatusCode::OK);
    assert_eq!(
        w.app.bearer(chosen.expose(), reqwest::Method::GET, "/api/v3/core/users/me/", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn change_user_cannot_make_anyone_staff() {
    let w = world().await;
    let (session, me) = w.attacker("mallory@example.com", &["authentik_core.change_user", "authentik_core.view_user"]).await;
    let plain = w.app.user("plain@example.com", |_| {}).await;
    for target in [me, plain.id] {
        assert_forbidden(w.app.patch(&session, &format!("/api/v3/core/users/{target}/"), json!({"is_staff": true})).await).await;
        assert_forbidden(w.app.patch(&session, &format!("/api/v3/core/users/{target}/"), json!({"type": "service_account"})).await).await;
        assert_eq!(w.user(target).await["type"], "internal");
    }
    let (_, me_now) = json(w.app.get(&session, "/api/v3/core/users/me/").await).await;
    assert_eq!(me_now["user"]["is_staff"], false);
    // Without staff there are no API keys to hold.
    assert_field_error(w.app.post(&session, "/api/v3/core/tokens/", json!({"identifier": "mine"})).await, "intent").await;
    // What the caller holds it may hand on: change_user to the plain user is fine.
    let response =
        w.app.patch(&session, &format!("/api/v3/core/users/{}/", plain.id), json!({"permissions": ["authentik_core.view_user"]})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response =
        w.app.patch(&session, &format!("/api/v3/core/users/{}/", plain.id), json!({"permissions": ["authentik_events.view_event"]})).await;
    assert_forbidden(response).await;
}

#[tokio::test]
async fn flow_editing_permissions_are_superuser_equivalent() {
    let w = world().await;
    let binding = "authentik_flows.change_flowstagebinding";
    // Someone who may change users and groups cannot hand out flow editing, not even to
    // themselves, and not through a group.
    let (editor, me) =
        w.attacker("mallory@example.com", &["authentik_core.change_user", "authentik_core.change_group", "authentik_core.add_group"]).await;
    assert_forbidden(w.app.patch(&editor, &format!("/api/v3/core/users/{me}/"), json!({"permissions": [binding]})).await).await;
    assert_forbidden(
        w.app.post(&editor, "/api/v3/core/groups/", json!({"name": "Editors", "permissions": [binding], "users": [me]})).await,
    )
    .await;
    let (_, editors) =
        json(w.app.post(&w.admin, "/api/v3/core/groups/", json!({"name": "FlowEditors", "permissions": [binding]})).await).await;
    let editors = editors["pk"].as_str().unwrap().to_owned();
    assert_forbidden(w.app.patch(&editor, &format!("/api/v3/core/users/{me}/"), json!({"groups": [editors]})).await).await;
    assert_forbidden(w.app.post(&editor, &format!("/api/v3/core/groups/{editors}/add_user/"), json!({"pk": me})).await).await;
    // Even a holder of flow editing cannot pass it on: only superusers grant it.
    w.app.user_with("flows@example.com", &[binding, "authentik_core.change_user"]).await;
    let holder_session = w.app.sign_in("flows@example.com").await;
    assert_forbidden(w.app.patch(&holder_session, &format!("/api/v3/core/users/{me}/"), json!({"permissions": [binding]})).await).await;
    assert!(pks(&w.group(&editors).await["users"]).is_empty());
    let held = w.user(me).await["permissions"].clone();
    assert!(!held.as_array().unwrap().contains(&json!(binding)), "{held}");
    // Without the permission, the default sign-in flow's bindings cannot be touched.
    let (_, flow) = json(w.app.get(&w.admin, "/api/v3/flows/instances/default-authentication-flow/").await).await;
    let flow_pk = flow["pk"].as_str().unwrap();
    let (_, bindings) = json(w.app.get(&w.admin, &format!("/api/v3/flows/bindings/?target={flow_pk}")).await).await;
    let first = bindings["results"][0].clone();
    let path = format!("/api/v3/flows/bindings/{}/", first["pk"].as_str().unwrap());
    assert_forbidden(w.app.delete(&editor, &path).await).await;
    assert_eq!(json(w.app.get(&w.admin, &path).await).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_refused_or_failed_service_account_leaves_nothing_behind() {
    let w = world().await;
    let nothing_named = |name: &'static str| {
        let w = &w;
        async move {
            let (_, users) = json(w.app.get(&w.admin, &format!("/api/v3/core/users/?username={name}")).await).await;
            let (_, tokens) =
                json(w.app.get(&w.admin, &format!("/api/v3/core/tokens/?identifier=service-account-{name}-password")).await).await;
            (users["pagination"]["count"].as_u64(), tokens["pagination"]["count"].as_u64()) == (Some(0), Some(0))
        }
    };
    // A service account may hold API keys: making one needs staff as well as add_user.
    let (plain, _) = w.attacker("plain@example.com", &["authentik_core.add_user"]).await;
    assert_forbidden(w.app.post(&plain, "/api/v3/core/users/service_account/", json!({"name": "robot"})).await).await;
    assert!(nothing_named("robot").await);

    w.app
        .user("staff@example.com", |u| {
            u.is_staff = true;
            u.permissions = ["authentik_core.add_user", "authentik_core.add_token"]
                .into_iter()
                .map(|p| gatehouse::accounts::permissions::Permission::parse(p).unwrap())
                .collect();
        })
        .await;
    let staff = w.app.sign_in("staff@example.com").await;
    // Refused: the group needs add_group too.
    let body = json!({"name": "robot", "create_group": true});
    assert_forbidden(w.app.post(&staff, "/api/v3/core/users/service_account/", body).await).await;
    assert!(nothing_named("robot").await, "a refused service account left its account behind");
    // Failing at the group (its name is taken) leaves nothing either.
    w.app.post(&w.admin, "/api/v3/core/groups/", json!({"name": "robot"})).await;
    let body = json!({"name": "robot", "create_group": true});
    assert_field_error(w.app.post(&w.admin, "/api/v3/core/users/service_account/", body).await, "name").await;
    assert!(nothing_named("robot").await, "a failed service account left its account behind");
    // Without a group, staff holding add_user and add_token may make one; its key expires.
    let (status, created) = json(w.app.post(&staff, "/api/v3/core/users/service_account/", json!({"name": "robot"})).await).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let (_, token) = json(w.app.get(&w.admin, "/api/v3/core/tokens/service-account-robot-password/").await).await;
    assert_eq!(token["expiring"], true);
    let forever = json!({"name": "robot2", "expiring": false});
    assert_field_error(w.app.post(&staff, "/api/v3/core/users/service_account/", forever).await, "expiring").await;
    assert!(nothing_named("robot2").await);
}

#[tokio::test]
async fn flow_editing_held_through_a_group_cannot_be_pinned_to_outlive_the_group() {
    let w = world().await;
    let binding = "authentik_flows.change_flowstagebinding";
    let (_, editors) =
        json(w.app.post(&w.admin, "/api/v3/core/groups/", json!({"name": "FlowEditors", "permissions": [binding]})).await).await;
    let editors = editors["pk"].as_str().unwrap().to_owned();
    let (caller, me) =
        w.attacker("mallory@example.com", &["authentik_core.change_user", "authentik_core.change_group", "authentik_core.add_group"]).await;
    let other = w.app.user("other@example.com", |_| {}).await;
    for member in [me, other.id] {
        assert_eq!(
            w.app.post(&w.admin, &format!("/api/v3/core/groups/{editors}/add_user/"), json!({"pk": member})).await.status(),
            StatusCode::NO_CONTENT
        );
    }
    // Holding it through FlowEditors, the caller tries to pin it on itself, on another member,
    // and on a child group of FlowEditors.
    let own = json!({"permissions": ["authentik_core.change_user", "authentik_core.change_group", "authentik_core.add_group", binding]});
    assert_forbidden(w.app.patch(&caller, &format!("/api/v3/core/users/{me}/"), own).await).await;
    assert_forbidden(w.app.patch(&caller, &format!("/api/v3/core/users/{}/", other.id), json!({"permissions": [binding]})).await).await;
    assert_forbidden(
        w.app.post(&caller, "/api/v3/core/groups/", json!({"name": "Pinned", "parents": [editors], "permissions": [binding]})).await,
    )
    .await;
    // Once the superuser takes the caller out of FlowEditors, nothing is left behind.
    w.app.post(&w.admin, &format!("/api/v3/core/groups/{editors}/remove_user/"), json!({"pk": me})).await;
    let (_, me_now) = json(w.app.get(&caller, "/api/v3/core/users/me/").await).await;
    let held = me_now["user"]["system_permissions"].clone();
    assert!(!held.as_array().unwrap().contains(&json!(binding)), "{held}");
}

#[tokio::test]
async fn inactive_accounts_cannot_be_loaded_with_rights_for_a_later_reactivation() {
    let w = world().await;
    let (caller, _) = w.attacker("mallory@example.com", &["authentik_core.add_user", "authentik_core.change_user"]).await;
    let sleeper = json!({"email": "sleeper@example.com", "is_active": false, "is_superuser": true, "password": PASSWORD});
    assert_forbidden(w.app.post(&caller, "/api/v3/core/users/", sleeper).await).await;
    let sleeper = json!({"email": "sleeper@example.com", "is_active": false, "groups": [w.root], "password": PASSWORD});
    assert_forbidden(w.app.post(&caller, "/api/v3/core/users/", sleeper).await).await;
    let (_, found) = json(w.app.get(&w.admin, "/api/v3/core/users/?email=sleeper@example.com").await).await;
    assert_eq!(found["pagination"]["count"], 0);
    let dormant = w.app.user("dormant@example.com", |u| u.is_active = false).await;
    let path = format!("/api/v3/core/users/{}/", dormant.id);
    assert_forbidden(w.app.patch(&caller, &path, json!({"groups": [w.ops]})).await).await;
    assert_forbidden(w.app.patch(&caller, &path, json!({"permissions": ["authentik_events.view_event"]})).await).await;
    assert_eq!(w.user(dormant.id).await["groups"], json!([]));
}

/// Permission checks once lived in the HTTP handlers, so a domain function called from anywhere
/// else (an import, a task, a later handler) did whatever it was asked. Each of these is refused
/// to a signed-in account without rights when called directly, not through HTTP.
#[tokio::test]
async fn domain_functions_refuse_a_caller_without_the_permission_whoever_calls_them() {
    use gatehouse::accounts::access::{Actor, Rights};
    use gatehouse::db::pagination::ListParams;
    use gatehouse::error::Error;
    use gatehouse::flows::{binding_service, flow_service, stage_service, transfer};

    let app = TestApp::spawn().await;
    let nobody = app.user("nobody@example.com", |_| {}).await;
    let actor = Actor::user(nobody, Rights::default(), Default::default(), None);
    let state = &app.state;
    let params = ListParams::default();
    let flow = "default-authentication-flow";
    let stage = stage_service::list_stages(state, &Actor::system(), None, &Default::default(), &params).await.unwrap().results[0].id;
    let binding = binding_service::list_bindings(state, &Actor::system(), &Default::default(), &params).await.unwrap().results[0].id;
    let document = b"version: 1\nentries: []\n";

    let refusals: Vec<(&str, gatehouse::error::Result<()>)> = vec![
        ("list flows", flow_service::list_flows(state, &actor, &Default::default(), &params).await.map(drop)),
        ("read a flow", flow_service::get_flow(state, &actor, flow).await.map(drop)),
        ("delete a flow", flow_service::delete_flow(state, &actor, flow).await),
        ("export a flow", transfer::export(state, &actor, flow).await.map(drop)),
        ("import a flow", transfer::import(state, &actor, document, false).await.map(drop)),
        ("list stages", stage_service::list_stages(state, &actor, None, &Default::default(), &params).await.map(drop)),
        ("read a stage", stage_service::get_stage(state, &actor, stage, None).await.map(drop)),
        ("delete a stage", stage_service::delete_stage(state, &actor, stage, None).await),
        ("list bindings", binding_service::list_bindings(state, &actor, &Default::default(), &params).await.map(drop)),
        ("delete a binding", binding_service::delete_binding(state, &actor, binding).await),
        ("list tasks", gatehouse::tasks::service::list_tasks(state, &actor, &params, &Default::default()).await.map(drop)),
        ("list workers", gatehouse::tasks::service::list_workers(state, &actor).await.map(drop)),
        ("list schedules", gatehouse::tasks::service::list_schedules(state, &actor, &params, &Default::default()).await.map(drop)),
        ("list events", gatehouse::events::service::list(state, &actor, &Default::default(), &params).await.map(drop)),
    ];
    for (what, outcome) in refusals {
        assert!(matches!(outcome, Err(Error::PermissionDenied)), "{what}: {outcome:?}");
    }
    // Nothing was deleted on the way.
    assert!(flow_service::get_flow(state, &Actor::system(), flow).await.is_ok());
    assert!(stage_service::get_stage(state, &Actor::system(), stage, None).await.is_ok());
}
