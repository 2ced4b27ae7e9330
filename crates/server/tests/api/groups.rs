//! `/api/v3/core/groups/`.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

/// Every group's name, as the superuser sees them.
async fn group_names(app: &TestApp, admin: &Session) -> Vec<String> {
    let (_, list) = json(app.get(admin, "/api/v3/core/groups/?page_size=100").await).await;
    list["results"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn groups_crud_and_membership() {
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    let member = app.user("member@example.com", |_| {}).await;
    let admin = app.sign_in("admin@example.com").await;

    let (status, parent) = json(app.post(&admin, "/api/v3/core/groups/", json!({"name": "Engineering"})).await).await;
    assert_eq!(status, StatusCode::CREATED, "{parent}");
    let parent_pk = parent["pk"].as_str().unwrap().to_owned();
    assert!(parent["num_pk"].is_i64());

    let (status, child) = json(
        app.post(
            &admin,
            "/api/v3/core/groups/",
            json!({"name": "Backend", "parents": [parent_pk], "users": [member.id], "attributes": {"floor": 3}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{child}");
    let child_pk = child["pk"].as_str().unwrap().to_owned();
    assert_eq!(child["parents"], json!([parent_pk]));
    assert_eq!(child["users"], json!([member.id]));
    assert_eq!(child["users_obj"][0]["username"], "member@example.com");

    let (_, parent_again) = json(app.get(&admin, &format!("/api/v3/core/groups/{parent_pk}/")).await).await;
    assert_eq!(parent_again["children"], json!([child_pk]));

    // The user's representation lists the group.
    let (_, user) = json(app.get(&admin, &format!("/api/v3/core/users/{}/", member.id)).await).await;
    assert_eq!(user["groups"], json!([child_pk]));
    assert_eq!(user["groups_obj"][0]["name"], "Backend");

    let remove = app.post(&admin, &format!("/api/v3/core/groups/{child_pk}/remove_user/"), json!({"pk": member.id})).await;
    assert_eq!(remove.status(), StatusCode::NO_CONTENT);
    let (_, after_remove) = json(app.get(&admin, &format!("/api/v3/core/groups/{child_pk}/")).await).await;
    assert_eq!(after_remove["users"], json!([]));
    let add = app.post(&admin, &format!("/api/v3/core/groups/{child_pk}/add_user/"), json!({"pk": member.id})).await;
    assert_eq!(add.status(), StatusCode::NO_CONTENT);
    let missing = app.post(&admin, &format!("/api/v3/core/groups/{child_pk}/add_user/"), json!({"pk": 424242})).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_field_error(app.post(&admin, &format!("/api/v3/core/groups/{child_pk}/add_user/"), json!({})).await, "pk").await;

    let (_, filtered) = json(app.get(&admin, &format!("/api/v3/core/groups/?members_by_pk={}", member.id)).await).await;
    assert_eq!(filtered["pagination"]["count"], 1);
    let (_, searched) = json(app.get(&admin, "/api/v3/core/groups/?search=engin").await).await;
    assert_eq!(searched["results"][0]["name"], "Engineering");

    // A group cannot become its own ancestor.
    assert_field_error(app.patch(&admin, &format!("/api/v3/core/groups/{parent_pk}/"), json!({"parents": [child_pk]})).await, "parents")
        .await;
    assert_field_error(app.post(&admin, "/api/v3/core/groups/", json!({"name": "engineering"})).await, "name").await;
    assert_field_error(app.post(&admin, "/api/v3/core/groups/", json!({})).await, "name").await;
    assert_field_error(app.post(&admin, "/api/v3/core/groups/", json!({"name": "X", "users": [987654]})).await, "users").await;
    let (_, parent_after) = json(app.get(&admin, &format!("/api/v3/core/groups/{parent_pk}/")).await).await;
    assert_eq!(parent_after["parents"], json!([]), "the refused edit left no cycle behind");
    let mut names = group_names(&app, &admin).await;
    names.sort();
    assert_eq!(names, ["Backend", "Engineering"], "refused creates left nothing behind");

    let (status, renamed) = json(app.patch(&admin, &format!("/api/v3/core/groups/{child_pk}/"), json!({"name": "Platform"})).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(renamed["name"], "Platform");
    assert_eq!(renamed["users"], json!([member.id]), "PATCH keeps members");

    assert_eq!(app.delete(&admin, &format!("/api/v3/core/groups/{child_pk}/")).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get(&admin, &format!("/api/v3/core/groups/{child_pk}/")).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.get(&admin, "/api/v3/core/groups/not-a-uuid/").await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn group_permissions_and_superuser_flag_flow_to_members() {
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    let member = app.user("member@example.com", |_| {}).await;
    let admin = app.sign_in("admin@example.com").await;
    let session = app.sign_in("member@example.com").await;
    assert_forbidden(app.get(&session, "/api/v3/events/events/").await).await;

    let (_, auditors) =
        json(app.post(&admin, "/api/v3/core/groups/", json!({"name": "Auditors", "permissions": ["authentik_events.view_event"]})).await)
            .await;
    let (_, nested) =
        json(app.post(&admin, "/api/v3/core/groups/", json!({"name": "Junior auditors", "parents": [auditors["pk"]]})).await).await;
    app.post(&admin, &format!("/api/v3/core/groups/{}/add_user/", nested["pk"].as_str().unwrap()), json!({"pk": member.id})).await;
    assert_eq!(app.get(&session, "/api/v3/events/events/").await.status(), StatusCode::OK, "inherited from the parent group");

    let (_, admins) =
        json(app.post(&admin, "/api/v3/core/groups/", json!({"name": "Admins", "is_superuser": true, "users": [member.id]})).await).await;
    assert_eq!(admins["is_superuser"], true);
    let (_, me) = json(app.get(&session, "/api/v3/core/users/me/").await).await;
    assert_eq!(me["user"]["is_superuser"], true);
    assert_eq!(app.get(&session, "/api/v3/core/users/").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn only_superusers_hand_out_privileges_through_groups() {
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    let editor = app
        .user_with("editor@example.com", &["authentik_core.add_group", "authentik_core.change_group", "authentik_core.view_group"])
        .await;
    let admin = app.sign_in("admin@example.com").await;
    let session = app.sign_in("editor@example.com").await;

    assert_eq!(app.post(&session, "/api/v3/core/groups/", json!({"name": "Plain"})).await.status(), StatusCode::CREATED);
    assert_forbidden(app.post(&session, "/api/v3/core/groups/", json!({"name": "Root", "is_superuser": true})).await).await;
    assert_forbidden(app.post(&session, "/api/v3/core/groups/", json!({"name": "P", "permissions": ["authentik_core.view_user"]})).await)
        .await;
    let (_, admins) = json(app.post(&admin, "/api/v3/core/groups/", json!({"name": "Admins", "is_superuser": true})).await).await;
    let admins_pk = admins["pk"].as_str().unwrap();
    assert_forbidden(app.post(&session, &format!("/api/v3/core/groups/{admins_pk}/add_user/"), json!({"pk": editor.id})).await).await;
    assert_forbidden(app.patch(&session, &format!("/api/v3/core/groups/{admins_pk}/"), json!({"name": "Renamed"})).await).await;
    let (_, admins_after) = json(app.get(&admin, &format!("/api/v3/core/groups/{admins_pk}/")).await).await;
    assert_eq!(admins_after["name"], "Admins", "the refused rename did not happen");
    assert_eq!(admins_after["users"], json!([]), "the refused membership did not happen");
    let mut names = group_names(&app, &admin).await;
    names.sort();
    assert_eq!(names, ["Admins", "Plain"], "refused creates left nothing behind");

    let plain = app.user("plain@example.com", |_| {}).await;
    let plain_session = app.sign_in("plain@example.com").await;
    assert_forbidden(app.get(&plain_session, "/api/v3/core/groups/").await).await;
    assert_forbidden(app.post(&plain_session, "/api/v3/core/groups/", json!({"name": "Mine"})).await).await;
    assert_forbidden(app.delete(&plain_session, &format!("/api/v3/core/groups/{admins_pk}/")).await).await;
    assert_eq!(group_names(&app, &admin).await.len(), 2, "the refused create and delete changed nothing");
    let (_, editor_after) = json(app.get(&admin, &format!("/api/v3/core/users/{}/", editor.id)).await).await;
    assert_eq!(editor_after["is_superuser"], false);
    let (_, me) = json(app.get(&plain_session, "/api/v3/core/users/me/").await).await;
    assert_eq!(me["user"]["pk"], plain.id);
    assert_eq!(me["user"]["is_superuser"], false);
}

#[tokio::test]
async fn permission_names_are_listed_and_unknown_ones_refused() {
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    let member = app.user("member@example.com", |_| {}).await;
    let admin = app.sign_in("admin@example.com").await;
    let plain = app.sign_in("member@example.com").await;

    // Anyone signed in may read the list; it pages like every list.
    let (status, all) = json(app.get(&plain, "/api/v3/rbac/permissions/?page_size=100").await).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let results = all["results"].as_array().unwrap();
    assert_eq!(all["pagination"]["count"], results.len());
    let view_user = results.iter().find(|p| p["codename"] == "view_user").expect("view_user is listed");
    assert_eq!(view_user["app_label"], "authentik_core");
    assert_eq!(view_user["model"], "user");
    assert_eq!(view_user["name"], "Can view User");
    for field in ["id", "name", "codename", "model", "app_label", "app_label_verbose", "model_verbose"] {
        assert!(results.iter().all(|p| p.get(field).is_some()), "{field}");
    }
    let (_, tokens) =
        json(app.get(&plain, "/api/v3/rbac/permissions/?content_type__app_label=authentik_core&content_type__model=token").await).await;
    let codenames: Vec<&str> = tokens["results"].as_array().unwrap().iter().map(|p| p["codename"].as_str().unwrap()).collect();
    assert!(
        codenames.contains(&"view_token_key") && codenames.iter().all(|c| c.ends_with("token") || c.ends_with("token_key")),
        "{codenames:?}"
    );
    let (_, searched) = json(app.get(&plain, "/api/v3/rbac/permissions/?search=retry").await).await;
    assert_eq!(searched["results"][0]["codename"], "retry_task", "{searched}");
    let id = view_user["id"].as_u64().unwrap();
    let (status, one) = json(app.get(&plain, &format!("/api/v3/rbac/permissions/{id}/")).await).await;
    assert_eq!((status, &one["codename"]), (StatusCode::OK, &json!("view_user")));
    assert_eq!(app.get(&plain, "/api/v3/rbac/permissions/99999/").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.get(&plain, "/api/v3/rbac/permissions/?page=99").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.client.get(app.url("/api/v3/rbac/permissions/")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    // An unknown name is refused, named, and nothing is written.
    let body = assert_field_error(
        app.post(&admin, "/api/v3/core/groups/", json!({"name": "Pilots", "permissions": ["authentik_core.fly_to_moon"]})).await,
        "permissions",
    )
    .await;
    assert!(body.to_string().contains("authentik_core.fly_to_moon"), "{body}");
    assert!(group_names(&app, &admin).await.is_empty());
    let path = format!("/api/v3/core/users/{}/", member.id);
    assert_field_error(
        app.patch(&admin, &path, json!({"permissions": ["authentik_events.view_event", "authentik_core.fly_to_moon"]})).await,
        "permissions",
    )
    .await;
    let (_, after) = json(app.get(&admin, &path).await).await;
    assert_eq!(after["permissions"], json!([]), "{after}");
}
