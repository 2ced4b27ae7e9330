//! `/api/v3/flows/instances/`, `/api/v3/flows/bindings/`, `/api/v3/stages/`: administering
//! flows, stages and bindings, and moving flows between servers as documents.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

const AUTH_FLOW: &str = "default-authentication-flow";

async fn admin_app() -> (TestApp, Session) {
    let app = TestApp::spawn().await;
    app.superuser("root@example.com").await;
    let session = app.sign_in("root@example.com").await;
    (app, session)
}

async fn ok(response: reqwest::Response, expected: StatusCode) -> Value {
    let (status, body) = json(response).await;
    assert_eq!(status, expected, "{body}");
    body
}

async fn count(app: &TestApp, session: &Session, path: &str) -> u64 {
    let body = ok(app.get(session, path).await, StatusCode::OK).await;
    body["pagination"]["count"].as_u64().unwrap()
}

async fn create_flow(app: &TestApp, session: &Session, slug: &str) -> Value {
    let body = json!({"name": format!("Flow {slug}"), "slug": slug, "title": "Welcome", "designation": "authentication"});
    ok(app.post(session, "/api/v3/flows/instances/", body).await, StatusCode::CREATED).await
}

async fn create_stage(app: &TestApp, session: &Session, kind: &str, body: Value) -> Value {
    ok(app.post(session, &format!("/api/v3/stages/{kind}/"), body).await, StatusCode::CREATED).await
}

async fn bind(app: &TestApp, session: &Session, flow: &Value, stage: &Value, order: i64) -> Value {
    let body = json!({"target": flow["pk"], "stage": stage["pk"], "order": order});
    ok(app.post(session, "/api/v3/flows/bindings/", body).await, StatusCode::CREATED).await
}

/// Sends `document` as authentik's upload form.
async fn upload(app: &TestApp, session: &Session, document: &str, clear: bool) -> reqwest::Response {
    let boundary = "gatehouse-test-boundary-7d1f";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"flow.yaml\"\r\nContent-Type: application/yaml\r\n\r\n\
         {document}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"clear\"\r\n\r\n{clear}\r\n--{boundary}--\r\n"
    );
    app.client
        .post(app.url("/api/v3/flows/instances/import/"))
        .header("cookie", &session.cookie)
        .header("x-csrftoken", &session.csrf)
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn export(app: &TestApp, session: &Session, slug: &str) -> String {
    let response = app.get(session, &format!("/api/v3/flows/instances/{slug}/export/")).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

async fn totals(app: &TestApp, session: &Session) -> (u64, u64, u64) {
    (
        count(app, session, "/api/v3/flows/instances/").await,
        count(app, session, "/api/v3/stages/all/").await,
        count(app, session, "/api/v3/flows/bindings/").await,
    )
}

#[tokio::test]
async fn flows_are_created_listed_changed_and_deleted_by_slug() {
    let (app, admin) = admin_app().await;
    let flow = create_flow(&app, &admin, "partner-login").await;
    assert_eq!(flow["pk"], flow["policybindingmodel_ptr_id"]);
    assert_eq!(flow["export_url"], "/api/v3/flows/instances/partner-login/export/");
    assert_eq!(flow["stages"], json!([]));
    assert_eq!(flow["policies"], json!([]));
    assert_eq!(flow["cache_count"], 0);
    assert_eq!(flow["background"], "");
    assert_eq!(flow["background_url"], "");
    assert!(flow["background_themed_urls"].is_null());
    // authentik's defaults for what was not sent.
    assert_eq!(flow["layout"], "stacked");
    assert_eq!(flow["denied_action"], "message_continue");
    assert_eq!(flow["authentication"], "none");
    assert_eq!(flow["policy_engine_mode"], "any");
    assert_eq!(flow["compatibility_mode"], false);

    let list = ok(app.get(&admin, "/api/v3/flows/instances/?designation=authentication").await, StatusCode::OK).await;
    let slugs: Vec<&str> = list["results"].as_array().unwrap().iter().map(|f| f["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["default-authentication-flow", "partner-login"], "ordered by slug");
    let invalidation = ok(app.get(&admin, "/api/v3/flows/instances/?designation=invalidation").await, StatusCode::OK).await;
    assert_eq!(invalidation["pagination"]["count"], 1);
    assert_eq!(count(&app, &admin, "/api/v3/flows/instances/?slug=partner-login").await, 1);
    assert_eq!(count(&app, &admin, "/api/v3/flows/instances/?name=Flow%20partner-login").await, 1);
    assert_eq!(count(&app, &admin, "/api/v3/flows/instances/?search=PARTNER").await, 1);
    let descending = ok(app.get(&admin, "/api/v3/flows/instances/?ordering=-slug").await, StatusCode::OK).await;
    assert_eq!(descending["results"][0]["slug"], "partner-login");
    assert_field_error(app.get(&admin, "/api/v3/flows/instances/?ordering=colour").await, "ordering").await;
    assert_field_error(app.get(&admin, "/api/v3/flows/instances/?designation=nope").await, "designation").await;

    let fetched = ok(app.get(&admin, "/api/v3/flows/instances/partner-login/").await, StatusCode::OK).await;
    assert_eq!(fetched["pk"], flow["pk"]);

    let patched = ok(
        app.patch(&admin, "/api/v3/flows/instances/partner-login/", json!({"title": "Partners", "layout": "sidebar_left"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(patched["title"], "Partners");
    assert_eq!(patched["layout"], "sidebar_left");
    assert_eq!(patched["name"], "Flow partner-login", "a patch keeps what it does not send");

    // PUT needs the required fields, and keeps optional ones it does not send.
    assert_field_error(
        app.put(&admin, "/api/v3/flows/instances/partner-login/", json!({"name": "x", "slug": "partner-login"})).await,
        "title",
    )
    .await;
    let replaced = ok(
        app.put(
            &admin,
            "/api/v3/flows/instances/partner-login/",
            json!({"name": "Partners", "slug": "partners", "title": "Hello", "designation": "enrollment", "authentication": "require_unauthenticated"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(replaced["slug"], "partners");
    assert_eq!(replaced["designation"], "enrollment");
    assert_eq!(replaced["authentication"], "require_unauthenticated");
    assert_eq!(replaced["layout"], "sidebar_left");
    assert_eq!(app.get(&admin, "/api/v3/flows/instances/partner-login/").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(ok(app.get(&admin, "/api/v3/flows/instances/partners/used_by/").await, StatusCode::OK).await, json!([]));

    assert_eq!(app.delete(&admin, "/api/v3/flows/instances/partners/").await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get(&admin, "/api/v3/flows/instances/partners/").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.delete(&admin, "/api/v3/flows/instances/partners/").await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn flow_input_is_validated_field_by_field() {
    let (app, admin) = admin_app().await;
    create_flow(&app, &admin, "taken").await;
    let base = json!({"name": "N", "slug": "fresh", "title": "T", "designation": "authentication"});
    let with = |key: &str, value: Value| {
        let mut body = base.clone();
        body[key] = value;
        body
    };
    for (field, value) in [
        ("designation", json!("sign_in")),
        ("layout", json!("diagonal")),
        ("denied_action", json!("shrug")),
        ("authentication", json!("maybe")),
        ("policy_engine_mode", json!("some")),
    ] {
        let body = assert_field_error(app.post(&admin, "/api/v3/flows/instances/", with(field, value)).await, field).await;
        assert!(body[field][0].as_str().unwrap().contains("choose one of"), "{body}");
    }
    let body = assert_field_error(app.post(&admin, "/api/v3/flows/instances/", with("designation", json!("x"))).await, "designation").await;
    assert!(body["designation"][0].as_str().unwrap().contains("stage_configuration"), "names the choices: {body}");
    for slug in ["has space", "slash/", "ünï", ""] {
        assert_field_error(app.post(&admin, "/api/v3/flows/instances/", with("slug", json!(slug))).await, "slug").await;
    }
    assert_field_error(app.post(&admin, "/api/v3/flows/instances/", with("slug", json!("x".repeat(51)))).await, "slug").await;
    assert_field_error(app.post(&admin, "/api/v3/flows/instances/", with("slug", json!("taken"))).await, "slug").await;
    assert_field_error(app.post(&admin, "/api/v3/flows/instances/", with("name", json!(" "))).await, "name").await;
    assert_field_error(app.post(&admin, "/api/v3/flows/instances/", with("colour", json!("red"))).await, "colour").await;
    assert_field_error(app.post(&admin, "/api/v3/flows/instances/", json!({"name": "N", "slug": "s", "title": "T"})).await, "designation")
        .await;
    assert_eq!(app.patch(&admin, "/api/v3/flows/instances/missing/", json!({})).await.status(), StatusCode::NOT_FOUND);
    // Renaming onto another flow's slug is refused too.
    create_flow(&app, &admin, "other").await;
    assert_field_error(app.patch(&admin, "/api/v3/flows/instances/other/", json!({"slug": "taken"})).await, "slug").await;
    assert_eq!(count(&app, &admin, "/api/v3/flows/instances/").await, 8, "six defaults and the two created");
}

#[tokio::test]
async fn the_default_flow_lists_its_stages_in_binding_order() {
    let (app, admin) = admin_app().await;
    let flow = ok(app.get(&admin, &format!("/api/v3/flows/instances/{AUTH_FLOW}/")).await, StatusCode::OK).await;
    let bindings =
        ok(app.get(&admin, &format!("/api/v3/flows/bindings/?target={}", flow["pk"].as_str().unwrap())).await, StatusCode::OK).await;
    let bound: Vec<Value> = bindings["results"].as_array().unwrap().iter().map(|b| b["stage"].clone()).collect();
    assert_eq!(flow["stages"], Value::Array(bound));
    let names: Vec<&str> = bindings["results"].as_array().unwrap().iter().map(|b| b["stage_obj"]["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "default-authentication-identification",
            "default-authentication-password",
            "default-authentication-mfa-validation",
            "default-authentication-login"
        ]
    );
    let orders: Vec<i64> = bindings["results"].as_array().unwrap().iter().map(|b| b["order"].as_i64().unwrap()).collect();
    assert_eq!(orders, [10, 20, 30, 100]);
}

#[tokio::test]
async fn bindings_are_created_filtered_changed_and_deleted() {
    let (app, admin) = admin_app().await;
    let flow = create_flow(&app, &admin, "bound").await;
    let deny = create_stage(&app, &admin, "deny", json!({"name": "no-entry"})).await;
    let logout = create_stage(&app, &admin, "user_logout", json!({"name": "bye"})).await;
    let first = bind(&app, &admin, &flow, &deny, 20).await;
    assert_eq!(first["pk"], first["policybindingmodel_ptr_id"]);
    assert_eq!(first["target"], flow["pk"]);
    assert_eq!(first["stage_obj"]["name"], "no-entry");
    assert_eq!(first["stage_obj"]["component"], "ak-stage-deny-form");
    assert_eq!(first["stage_obj"]["flow_set"][0]["slug"], "bound");
    // authentik's defaults.
    assert_eq!(first["evaluate_on_plan"], false);
    assert_eq!(first["re_evaluate_policies"], true);
    assert_eq!(first["policy_engine_mode"], "any");
    assert_eq!(first["invalid_response_action"], "retry");
    let second = ok(
        app.post(
            &admin,
            "/api/v3/flows/bindings/",
            json!({"target": flow["pk"], "stage": logout["pk"], "order": 10, "evaluate_on_plan": true, "invalid_response_action": "restart"}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;

    let flow_now = ok(app.get(&admin, "/api/v3/flows/instances/bound/").await, StatusCode::OK).await;
    assert_eq!(flow_now["stages"], json!([logout["pk"], deny["pk"]]), "in binding order");

    let target = flow["pk"].as_str().unwrap();
    let listed = ok(app.get(&admin, &format!("/api/v3/flows/bindings/?target={target}")).await, StatusCode::OK).await;
    let orders: Vec<i64> = listed["results"].as_array().unwrap().iter().map(|b| b["order"].as_i64().unwrap()).collect();
    assert_eq!(orders, [10, 20], "by target, then order");
    let filtered = |query: String| {
        let app = &app;
        let admin = &admin;
        async move { count(app, admin, &format!("/api/v3/flows/bindings/?target={target}&{query}")).await }
    };
    assert_eq!(filtered(format!("stage={}", deny["pk"].as_str().unwrap())).await, 1);
    assert_eq!(filtered("order=10".into()).await, 1);
    assert_eq!(filtered("evaluate_on_plan=true".into()).await, 1);
    assert_eq!(filtered("re_evaluate_policies=false".into()).await, 0);
    assert_eq!(filtered("invalid_response_action=restart".into()).await, 1);
    assert_eq!(filtered("policy_engine_mode=any".into()).await, 2);
    assert_eq!(filtered(format!("fsb_uuid={}", second["pk"].as_str().unwrap())).await, 1);
    assert_field_error(app.get(&admin, "/api/v3/flows/bindings/?invalid_response_action=panic").await, "invalid_response_action").await;
    assert_field_error(app.get(&admin, "/api/v3/flows/bindings/?target=not-a-uuid").await, "target").await;
    let reversed = ok(app.get(&admin, &format!("/api/v3/flows/bindings/?target={target}&ordering=-order")).await, StatusCode::OK).await;
    assert_eq!(reversed["results"][0]["order"], 20);

    // Validation.
    let missing = uuid::Uuid::new_v4();
    assert_field_error(
        app.post(&admin, "/api/v3/flows/bindings/", json!({"target": missing, "stage": deny["pk"], "order": 1})).await,
        "target",
    )
    .await;
    assert_field_error(
        app.post(&admin, "/api/v3/flows/bindings/", json!({"target": flow["pk"], "stage": missing, "order": 1})).await,
        "stage",
    )
    .await;
    assert_field_error(
        app.post(&admin, "/api/v3/flows/bindings/", json!({"target": "nope", "stage": deny["pk"], "order": 1})).await,
        "target",
    )
    .await;
    assert_field_error(app.post(&admin, "/api/v3/flows/bindings/", json!({"target": flow["pk"], "stage": deny["pk"]})).await, "order")
        .await;
    assert_field_error(
        app.post(&admin, "/api/v3/flows/bindings/", json!({"target": flow["pk"], "stage": deny["pk"], "order": 20})).await,
        "non_field_errors",
    )
    .await;
    assert_field_error(
        app.post(
            &admin,
            "/api/v3/flows/bindings/",
            json!({"target": flow["pk"], "stage": deny["pk"], "order": 30, "invalid_response_action": "panic"}),
        )
        .await,
        "invalid_response_action",
    )
    .await;
    assert_field_error(
        app.post(&admin, "/api/v3/flows/bindings/", json!({"target": flow["pk"], "stage": deny["pk"], "order": 30, "weight": 1})).await,
        "weight",
    )
    .await;

    // Changes.
    let path = format!("/api/v3/flows/bindings/{}/", first["pk"].as_str().unwrap());
    let moved = ok(app.patch(&admin, &path, json!({"order": 5})).await, StatusCode::OK).await;
    assert_eq!(moved["order"], 5);
    assert_eq!(moved["stage"], deny["pk"], "a patch keeps the stage");
    assert_field_error(app.put(&admin, &path, json!({"order": 6})).await, "target").await;
    let replaced = ok(
        app.put(&admin, &path, json!({"target": flow["pk"], "stage": deny["pk"], "order": 6, "policy_engine_mode": "all"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(replaced["policy_engine_mode"], "all");
    assert_eq!(ok(app.get(&admin, &format!("{path}used_by/")).await, StatusCode::OK).await, json!([]));
    assert_eq!(ok(app.get(&admin, &path).await, StatusCode::OK).await["order"], 6);
    assert_eq!(app.delete(&admin, &path).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get(&admin, &path).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.get(&admin, "/api/v3/flows/bindings/not-a-uuid/").await.status(), StatusCode::NOT_FOUND);

    // Deleting the flow takes its remaining binding with it.
    let second_path = format!("/api/v3/flows/bindings/{}/", second["pk"].as_str().unwrap());
    assert_eq!(app.delete(&admin, "/api/v3/flows/instances/bound/").await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get(&admin, &second_path).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.get(&admin, &format!("/api/v3/stages/user_logout/{}/", logout["pk"].as_str().unwrap())).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn stages_of_each_kind_have_their_settings_beside_the_common_fields() {
    let (app, admin) = admin_app().await;
    let password = create_stage(&app, &admin, "password", json!({"name": "pw", "failed_attempts_before_cancel": 3})).await;
    assert_eq!(password["failed_attempts_before_cancel"], 3);
    assert_eq!(password["allow_show_password"], false, "defaults fill in");
    assert_eq!(password["meta_model_name"], "authentik_stages_password.passwordstage");
    let ident = create_stage(
        &app,
        &admin,
        "identification",
        json!({"name": "who", "user_fields": ["username"], "password_stage": password["pk"], "show_matched_user": true}),
    )
    .await;
    for field in ["pk", "name", "component", "verbose_name", "verbose_name_plural", "meta_model_name", "flow_set"] {
        assert!(ident.get(field).is_some(), "stage lacks {field}: {ident}");
    }
    assert_eq!(ident["component"], "ak-stage-identification-form");
    assert_eq!(ident["verbose_name"], "Identification Stage");
    assert_eq!(ident["verbose_name_plural"], "Identification Stages");
    assert_eq!(ident["flow_set"], json!([]));
    assert_eq!(ident["user_fields"], json!(["username"]));
    assert_eq!(ident["password_stage"], password["pk"]);
    assert_eq!(ident["pretend_user_exists"], true);

    let path = format!("/api/v3/stages/identification/{}/", ident["pk"].as_str().unwrap());
    assert_eq!(ok(app.get(&admin, &path).await, StatusCode::OK).await, ident);
    // Retrieving through another kind's path finds nothing.
    assert_eq!(
        app.get(&admin, &format!("/api/v3/stages/password/{}/", ident["pk"].as_str().unwrap())).await.status(),
        StatusCode::NOT_FOUND
    );

    // PATCH merges into the stored settings; PUT replaces them, defaults filling the rest.
    let patched = ok(app.patch(&admin, &path, json!({"case_insensitive_matching": false})).await, StatusCode::OK).await;
    assert_eq!(patched["case_insensitive_matching"], false);
    assert_eq!(patched["user_fields"], json!(["username"]));
    assert_eq!(patched["password_stage"], password["pk"]);
    assert_field_error(app.put(&admin, &path, json!({"user_fields": ["email"]})).await, "name").await;
    let replaced = ok(app.put(&admin, &path, json!({"name": "who-else", "show_source_labels": true})).await, StatusCode::OK).await;
    assert_eq!(replaced["name"], "who-else");
    assert_eq!(replaced["user_fields"], json!(["email", "username"]));
    assert_eq!(replaced["password_stage"], Value::Null);
    assert_eq!(replaced["case_insensitive_matching"], true);
    assert_eq!(replaced["show_matched_user"], false);

    // Lists: per kind with settings, all kinds without.
    let idents = ok(app.get(&admin, "/api/v3/stages/identification/").await, StatusCode::OK).await;
    assert!(
        idents["results"].as_array().unwrap().iter().all(|s| s["meta_model_name"] == "authentik_stages_identification.identificationstage")
    );
    assert_eq!(idents["pagination"]["count"], 2, "the default one and this one");
    assert_eq!(count(&app, &admin, "/api/v3/stages/identification/?name=who-else").await, 1);
    assert_eq!(count(&app, &admin, "/api/v3/stages/identification/?search=ELSE").await, 1);
    let all = ok(app.get(&admin, "/api/v3/stages/all/?page_size=100").await, StatusCode::OK).await;
    assert_eq!(all["pagination"]["count"], 10, "eight default stages and the two created");
    let names: Vec<&str> = all["results"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "ordered by name");
    let mine = all["results"].as_array().unwrap().iter().find(|s| s["name"] == "who-else").unwrap();
    assert!(mine.get("user_fields").is_none(), "the common list carries no settings");
    let base = ok(app.get(&admin, &format!("/api/v3/stages/all/{}/", ident["pk"].as_str().unwrap())).await, StatusCode::OK).await;
    assert_eq!(base["name"], "who-else");
    let reverse = ok(app.get(&admin, "/api/v3/stages/all/?ordering=-name").await, StatusCode::OK).await;
    assert_eq!(reverse["results"][0]["name"], "who-else");

    let types = ok(app.get(&admin, "/api/v3/stages/all/types/").await, StatusCode::OK).await;
    let models: Vec<&str> = types.as_array().unwrap().iter().map(|t| t["model_name"].as_str().unwrap()).collect();
    for model in ["identificationstage", "passwordstage", "userloginstage", "userlogoutstage", "denystage"] {
        assert!(models.contains(&model), "{types}");
    }
    assert!(types.as_array().unwrap().iter().all(|t| t["component"].as_str().unwrap().ends_with("-form") && t["name"].is_string()));

    // Every registered kind has its API.
    for kind in ["identification", "password", "user_login", "user_logout", "deny"] {
        assert_eq!(app.get(&admin, &format!("/api/v3/stages/{kind}/")).await.status(), StatusCode::OK, "{kind}");
    }
    let login = create_stage(&app, &admin, "user_login", json!({"name": "in", "session_duration": "hours=8"})).await;
    assert_eq!(login["session_duration"], "hours=8");

    assert_eq!(app.delete(&admin, &path).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get(&admin, &path).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn stage_input_is_validated_field_by_field() {
    let (app, admin) = admin_app().await;
    let deny = create_stage(&app, &admin, "deny", json!({"name": "no"})).await;
    assert_field_error(app.post(&admin, "/api/v3/stages/password/", json!({"name": "no"})).await, "name").await;
    assert_field_error(app.post(&admin, "/api/v3/stages/password/", json!({"failed_attempts_before_cancel": 2})).await, "name").await;
    assert_field_error(app.post(&admin, "/api/v3/stages/password/", json!({"name": ""})).await, "name").await;
    assert_field_error(app.post(&admin, "/api/v3/stages/password/", json!({"name": "p", "colour": "red"})).await, "colour").await;
    assert_field_error(app.post(&admin, "/api/v3/stages/password/", json!({"name": "p", "backends": ["ldap"]})).await, "backends").await;
    assert_field_error(
        app.post(&admin, "/api/v3/stages/password/", json!({"name": "p", "allow_show_password": "yes"})).await,
        "allow_show_password",
    )
    .await;
    assert_field_error(
        app.post(&admin, "/api/v3/stages/identification/", json!({"name": "i", "user_fields": ["phone"]})).await,
        "user_fields[0]",
    )
    .await;
    assert_field_error(
        app.post(&admin, "/api/v3/stages/user_login/", json!({"name": "l", "session_duration": "forever"})).await,
        "session_duration",
    )
    .await;
    // References must name an existing password stage of this server.
    let missing = uuid::Uuid::new_v4();
    assert_field_error(
        app.post(&admin, "/api/v3/stages/identification/", json!({"name": "i", "password_stage": missing})).await,
        "password_stage",
    )
    .await;
    assert_field_error(
        app.post(&admin, "/api/v3/stages/identification/", json!({"name": "i", "password_stage": deny["pk"]})).await,
        "password_stage",
    )
    .await;
    assert_field_error(
        app.post(&admin, "/api/v3/stages/identification/", json!({"name": "i", "password_stage": "nope"})).await,
        "password_stage",
    )
    .await;
    // Renaming onto another stage's name.
    let other = create_stage(&app, &admin, "deny", json!({"name": "other"})).await;
    assert_field_error(
        app.patch(&admin, &format!("/api/v3/stages/deny/{}/", other["pk"].as_str().unwrap()), json!({"name": "no"})).await,
        "name",
    )
    .await;
    // Unknown kinds have no API.
    assert_eq!(app.get(&admin, "/api/v3/stages/captcha/").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.post(&admin, "/api/v3/stages/captcha/", json!({"name": "c"})).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.get(&admin, &format!("/api/v3/stages/captcha/{missing}/")).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.get(&admin, &format!("/api/v3/stages/all/{missing}/")).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(count(&app, &admin, "/api/v3/stages/all/").await, 10, "nothing invalid was stored");
}

#[tokio::test]
async fn deleting_a_stage_removes_its_bindings_and_clears_references_to_it() {
    let (app, admin) = admin_app().await;
    let flow = create_flow(&app, &admin, "cascade").await;
    let password = create_stage(&app, &admin, "password", json!({"name": "pw"})).await;
    let ident = create_stage(&app, &admin, "identification", json!({"name": "who", "password_stage": password["pk"]})).await;
    bind(&app, &admin, &flow, &ident, 10).await;
    let binding = bind(&app, &admin, &flow, &password, 20).await;
    let password_id = password["pk"].as_str().unwrap();

    let stage_now = ok(app.get(&admin, &format!("/api/v3/stages/password/{password_id}/")).await, StatusCode::OK).await;
    assert_eq!(stage_now["flow_set"][0]["slug"], "cascade");
    assert_eq!(stage_now["flow_set"][0]["export_url"], "/api/v3/flows/instances/cascade/export/");
    let used_by = ok(app.get(&admin, &format!("/api/v3/stages/all/{password_id}/used_by/")).await, StatusCode::OK).await;
    let actions: Vec<(&str, &str)> =
        used_by.as_array().unwrap().iter().map(|u| (u["model_name"].as_str().unwrap(), u["action"].as_str().unwrap())).collect();
    assert_eq!(actions, [("flowstagebinding", "cascade"), ("identificationstage", "set_null")]);

    assert_eq!(app.delete(&admin, &format!("/api/v3/stages/all/{password_id}/")).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&admin, &format!("/api/v3/flows/bindings/{}/", binding["pk"].as_str().unwrap())).await.status(),
        StatusCode::NOT_FOUND
    );
    let flow_now = ok(app.get(&admin, "/api/v3/flows/instances/cascade/").await, StatusCode::OK).await;
    assert_eq!(flow_now["stages"], json!([ident["pk"]]));
    let ident_now =
        ok(app.get(&admin, &format!("/api/v3/stages/identification/{}/", ident["pk"].as_str().unwrap())).await, StatusCode::OK).await;
    assert_eq!(ident_now["password_stage"], Value::Null);
    assert_eq!(ident_now["user_fields"], json!(["email", "username"]));
    assert_eq!(app.get(&admin, &format!("/api/v3/stages/all/{password_id}/")).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn changes_are_recorded_in_the_audit_trail() {
    let (app, admin) = admin_app().await;
    let flow = create_flow(&app, &admin, "audited").await;
    app.patch(&admin, "/api/v3/flows/instances/audited/", json!({"title": "Changed"})).await;
    let stage = create_stage(&app, &admin, "deny", json!({"name": "audited-deny"})).await;
    let binding = bind(&app, &admin, &flow, &stage, 1).await;
    app.delete(&admin, &format!("/api/v3/flows/bindings/{}/", binding["pk"].as_str().unwrap())).await;
    app.delete(&admin, &format!("/api/v3/stages/deny/{}/", stage["pk"].as_str().unwrap())).await;
    app.delete(&admin, "/api/v3/flows/instances/audited/").await;

    let events = ok(app.get(&admin, "/api/v3/events/events/?page_size=100&ordering=created").await, StatusCode::OK).await;
    let seen: Vec<(String, String)> = events["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("model_"))
        .map(|e| (e["action"].as_str().unwrap().to_owned(), e["context"]["model"]["model_name"].as_str().unwrap().to_owned()))
        .collect();
    for expected in [
        ("model_created", "flow"),
        ("model_updated", "flow"),
        ("model_deleted", "flow"),
        ("model_created", "denystage"),
        ("model_deleted", "denystage"),
        ("model_created", "flowstagebinding"),
        ("model_deleted", "flowstagebinding"),
    ] {
        assert!(seen.iter().any(|(a, m)| a == expected.0 && m == expected.1), "missing {expected:?} in {seen:?}");
    }
    let update = events["results"].as_array().unwrap().iter().find(|e| e["action"] == "model_updated").unwrap();
    assert_eq!(update["context"]["diff"]["title"]["new_value"], "Changed");
    assert_eq!(update["context"]["model"]["app"], "authentik_flows");
}

#[tokio::test]
async fn each_action_needs_its_permission() {
    let (app, admin) = admin_app().await;
    let flow = create_flow(&app, &admin, "guarded").await;
    let stage = create_stage(&app, &admin, "deny", json!({"name": "guarded-deny"})).await;
    let binding = bind(&app, &admin, &flow, &stage, 1).await;
    let stage_path = format!("/api/v3/stages/deny/{}/", stage["pk"].as_str().unwrap());
    let binding_path = format!("/api/v3/flows/bindings/{}/", binding["pk"].as_str().unwrap());

    app.user("nobody@example.com", |_| {}).await;
    let nobody = app.sign_in("nobody@example.com").await;
    for path in [
        "/api/v3/flows/instances/",
        "/api/v3/flows/instances/guarded/",
        "/api/v3/flows/bindings/",
        "/api/v3/stages/all/",
        &stage_path,
        &binding_path,
    ] {
        assert_forbidden(app.get(&nobody, path).await).await;
    }
    assert_forbidden(app.get(&nobody, "/api/v3/flows/instances/guarded/export/").await).await;
    assert_forbidden(
        app.post(&nobody, "/api/v3/flows/instances/", json!({"name": "n", "slug": "n", "title": "t", "designation": "recovery"})).await,
    )
    .await;
    assert_forbidden(app.post(&nobody, "/api/v3/stages/deny/", json!({"name": "x"})).await).await;
    assert_forbidden(upload(&app, &nobody, "version: 1\nentries: []\n", false).await).await;

    app.user_with(
        "viewer@example.com",
        &["authentik_flows.view_flow", "authentik_flows.view_stage", "authentik_flows.view_flowstagebinding"],
    )
    .await;
    let viewer = app.sign_in("viewer@example.com").await;
    assert_eq!(app.get(&viewer, "/api/v3/flows/instances/guarded/").await.status(), StatusCode::OK);
    assert_eq!(app.get(&viewer, &stage_path).await.status(), StatusCode::OK);
    assert_eq!(app.get(&viewer, &binding_path).await.status(), StatusCode::OK);
    assert_eq!(app.get(&viewer, "/api/v3/stages/all/").await.status(), StatusCode::OK);
    assert_forbidden(app.patch(&viewer, "/api/v3/flows/instances/guarded/", json!({"title": "x"})).await).await;
    assert_forbidden(app.delete(&viewer, "/api/v3/flows/instances/guarded/").await).await;
    assert_forbidden(app.patch(&viewer, &stage_path, json!({"deny_message": "x"})).await).await;
    assert_forbidden(app.delete(&viewer, &stage_path).await).await;
    assert_forbidden(app.patch(&viewer, &binding_path, json!({"order": 2})).await).await;
    assert_forbidden(app.delete(&viewer, &binding_path).await).await;
    assert_forbidden(app.post(&viewer, "/api/v3/flows/bindings/", json!({"target": flow["pk"], "stage": stage["pk"], "order": 5})).await)
        .await;
    assert_forbidden(app.get(&viewer, "/api/v3/flows/instances/guarded/export/").await).await;

    app.user_with("editor@example.com", &["authentik_flows.view_flow", "authentik_flows.change_flow"]).await;
    let editor = app.sign_in("editor@example.com").await;
    assert_eq!(app.patch(&editor, "/api/v3/flows/instances/guarded/", json!({"title": "x"})).await.status(), StatusCode::OK);
    assert_forbidden(app.get(&editor, "/api/v3/flows/bindings/").await).await;
    assert_forbidden(app.delete(&editor, "/api/v3/flows/instances/guarded/").await).await;

    app.user_with("exporter@example.com", &["authentik_flows.view_flow", "authentik_flows.export_flow"]).await;
    let exporter = app.sign_in("exporter@example.com").await;
    assert!(export(&app, &exporter, "guarded").await.contains("slug: guarded"));

    for (method, path) in [
        (Method::GET, "/api/v3/flows/instances/"),
        (Method::GET, "/api/v3/flows/bindings/"),
        (Method::GET, "/api/v3/stages/all/"),
        (Method::GET, "/api/v3/stages/all/types/"),
        (Method::GET, "/api/v3/stages/identification/"),
        (Method::POST, "/api/v3/flows/instances/import/"),
    ] {
        assert_eq!(app.call(None, method, path, None).await.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    // Nothing was changed by the refused calls.
    assert_eq!(ok(app.get(&admin, "/api/v3/flows/instances/guarded/").await, StatusCode::OK).await["title"], "x");
    assert_eq!(count(&app, &admin, "/api/v3/flows/bindings/").await, 10);
}

#[tokio::test]
async fn an_exported_flow_imports_as_a_copy_with_the_same_settings() {
    let (app, admin) = admin_app().await;
    // Make the identification stage name the password stage, so the copy must follow the
    // reference to the copied password stage.
    let stages = ok(app.get(&admin, "/api/v3/stages/all/?page_size=100").await, StatusCode::OK).await;
    let id_of =
        |name: &str| stages["results"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()["pk"].as_str().unwrap().to_owned();
    let ident_id = id_of("default-authentication-identification");
    let password_id = id_of("default-authentication-password");
    ok(
        app.patch(
            &admin,
            &format!("/api/v3/stages/identification/{ident_id}/"),
            json!({"password_stage": password_id, "user_fields": ["email"]}),
        )
        .await,
        StatusCode::OK,
    )
    .await;

    let response = app.get(&admin, &format!("/api/v3/flows/instances/{AUTH_FLOW}/export/")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-disposition"], format!("attachment; filename=\"{AUTH_FLOW}.yaml\""));
    assert!(response.headers()["content-type"].to_str().unwrap().contains("yaml"));
    let yaml = response.text().await.unwrap();
    let document: Value = serde_norway::from_str(&yaml).unwrap();
    assert_eq!(document["version"], 1);
    assert_eq!(document["metadata"]["name"], "Welcome to Gatehouse!");
    let entries = document["entries"].as_array().unwrap();
    assert_eq!(entries[0]["model"], "authentik_flows.flow");
    assert_eq!(entries[0]["identifiers"]["slug"], AUTH_FLOW);
    let models: Vec<&str> = entries.iter().map(|e| e["model"].as_str().unwrap()).collect();
    assert_eq!(
        models,
        [
            "authentik_flows.flow",
            "authentik_stages_password.passwordstage",
            "authentik_stages_identification.identificationstage",
            "authentik_stages_authenticator_validate.authenticatorvalidatestage",
            "authentik_stages_user_login.userloginstage",
            "authentik_flows.flowstagebinding",
            "authentik_flows.flowstagebinding",
            "authentik_flows.flowstagebinding",
            "authentik_flows.flowstagebinding",
        ],
        "named stages come before the stages naming them"
    );
    assert_eq!(entries[2]["attrs"]["password_stage"], "default-authentication-password", "references are written as names");
    assert_eq!(entries[5]["identifiers"], json!({"target": AUTH_FLOW, "stage": "default-authentication-identification", "order": 10}));

    // JSON on request, by parameter or by Accept.
    let as_json = ok(app.get(&admin, &format!("/api/v3/flows/instances/{AUTH_FLOW}/export/?format=json")).await, StatusCode::OK).await;
    assert_eq!(as_json, document);
    let accepted = app
        .client
        .get(app.url(&format!("/api/v3/flows/instances/{AUTH_FLOW}/export/")))
        .header("cookie", &admin.cookie)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.headers()["content-disposition"], format!("attachment; filename=\"{AUTH_FLOW}.json\""));
    assert_eq!(accepted.json::<Value>().await.unwrap(), document);

    let copy = yaml.replace("default-authentication-", "copied-").replace("Welcome to Gatehouse!", "Copied sign-in");
    let (status, result) = json(upload(&app, &admin, &copy, false).await).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["success"], true);
    assert!(result["logs"].as_array().unwrap().iter().any(|l| l["event"].as_str().unwrap().starts_with("Created")), "{result}");

    let original = ok(app.get(&admin, &format!("/api/v3/flows/instances/{AUTH_FLOW}/")).await, StatusCode::OK).await;
    let copied = ok(app.get(&admin, "/api/v3/flows/instances/copied-flow/").await, StatusCode::OK).await;
    assert_ne!(copied["pk"], original["pk"]);
    assert_eq!(copied["name"], "Copied sign-in");
    for field in ["title", "designation", "layout", "denied_action", "authentication", "policy_engine_mode", "compatibility_mode"] {
        if field != "title" {
            assert_eq!(copied[field], original[field], "{field}");
        }
    }
    assert_eq!(copied["stages"].as_array().unwrap().len(), 4);

    let stage = |kind: &'static str, name: &'static str| {
        let app = &app;
        let admin = &admin;
        async move {
            let list = ok(app.get(admin, &format!("/api/v3/stages/{kind}/?name={name}")).await, StatusCode::OK).await;
            assert_eq!(list["pagination"]["count"], 1, "{kind} {name}");
            list["results"][0].clone()
        }
    };
    let settings = |stage: &Value| {
        let mut stage = stage.clone();
        for base in ["pk", "name", "flow_set", "password_stage"] {
            stage.as_object_mut().unwrap().remove(base);
        }
        stage
    };
    let pairs = [
        ("identification", "default-authentication-identification", "copied-identification"),
        ("password", "default-authentication-password", "copied-password"),
        ("authenticator/validate", "default-authentication-mfa-validation", "copied-mfa-validation"),
        ("user_login", "default-authentication-login", "copied-login"),
    ];
    let mut copied_ids = Vec::new();
    for (kind, from, to) in pairs {
        let before = stage(kind, from).await;
        let after = stage(kind, to).await;
        assert_ne!(before["pk"], after["pk"]);
        assert_eq!(settings(&after), settings(&before), "{kind} settings");
        assert_eq!(after["flow_set"][0]["slug"], "copied-flow");
        copied_ids.push(after["pk"].clone());
    }
    let copied_ident = stage("identification", "copied-identification").await;
    assert_eq!(copied_ident["password_stage"], copied_ids[1], "the copy names the copied password stage");
    assert_eq!(copied_ident["user_fields"], json!(["email"]));
    assert_eq!(copied["stages"], Value::Array(copied_ids));

    let bindings =
        ok(app.get(&admin, &format!("/api/v3/flows/bindings/?target={}", copied["pk"].as_str().unwrap())).await, StatusCode::OK).await;
    let orders: Vec<i64> = bindings["results"].as_array().unwrap().iter().map(|b| b["order"].as_i64().unwrap()).collect();
    assert_eq!(orders, [10, 20, 30, 100]);

    // Importing the same document again updates in place instead of duplicating.
    let before = totals(&app, &admin).await;
    let (status, again) = json(upload(&app, &admin, &copy, false).await).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(totals(&app, &admin).await, before);
    // The original is untouched.
    assert_eq!(ok(app.get(&admin, &format!("/api/v3/flows/instances/{AUTH_FLOW}/")).await, StatusCode::OK).await, original);
}

#[tokio::test]
async fn an_import_writes_everything_or_nothing() {
    let (app, admin) = admin_app().await;
    let before = totals(&app, &admin).await;
    let flow_entry = "- model: authentik_flows.flow\n  identifiers:\n    slug: half-imported\n  attrs:\n    name: Half\n    title: Half\n    designation: authentication\n";

    // A stage entry that fails after the flow entry was written.
    let bad_setting = format!(
        "version: 1\nentries:\n{flow_entry}- model: authentik_stages_password.passwordstage\n  identifiers:\n    name: half-password\n  attrs:\n    backends: [ldap]\n"
    );
    let (status, result) = json(upload(&app, &admin, &bad_setting, false).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{result}");
    assert_eq!(result["success"], false);
    let problem = result["logs"].as_array().unwrap().iter().find(|l| l["attributes"]["field"] == "backends").expect("log names the field");
    assert_eq!(problem["log_level"], "error");
    assert_eq!(problem["attributes"]["entry"], 1);
    assert_eq!(totals(&app, &admin).await, before, "the flow written before the failure was rolled back");
    assert_eq!(app.get(&admin, "/api/v3/flows/instances/half-imported/").await.status(), StatusCode::NOT_FOUND);

    // An unknown kind of stage.
    let unknown = format!(
        "version: 1\nentries:\n{flow_entry}- model: authentik_stages_captcha.captchastage\n  identifiers:\n    name: robot-check\n"
    );
    let (status, result) = json(upload(&app, &admin, &unknown, false).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{result}");
    assert!(result["logs"].to_string().contains("authentik_stages_captcha.captchastage"), "{result}");
    assert_eq!(totals(&app, &admin).await, before);

    // A binding to a stage that exists nowhere.
    let dangling = format!(
        "version: 1\nentries:\n{flow_entry}- model: authentik_flows.flowstagebinding\n  identifiers:\n    target: half-imported\n    stage: ghost\n    order: 1\n"
    );
    let (status, result) = json(upload(&app, &admin, &dangling, false).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{result}");
    assert!(result["logs"].as_array().unwrap().iter().any(|l| l["attributes"]["field"] == "identifiers.stage"), "{result}");
    assert_eq!(totals(&app, &admin).await, before);

    // Malformed documents.
    for document in [
        "version: [1\n",
        "entries: 3\n",
        "version: 2\nentries: []\n",
        "{\"version\": 1, \"entries\": [}",
        "version: 1\nentries:\n- model: x\n  size: 3\n",
    ] {
        let (status, result) = json(upload(&app, &admin, document, false).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{document}: {result}");
        assert_eq!(result["success"], false);
        assert!(!result["logs"].as_array().unwrap().is_empty());
    }
    assert_eq!(totals(&app, &admin).await, before);
    // authentik's blueprint tags are named, with their line, instead of a parser's type error.
    let tagged =
        "version: 1\nentries:\n- model: authentik_flows.flowstagebinding\n  identifiers:\n    target: !KeyOf flow\n    order: 10\n";
    let (status, result) = json(upload(&app, &admin, tagged, false).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{result}");
    let event = result["logs"][0]["event"].as_str().unwrap();
    assert!(event.contains("YAML tag !KeyOf on line 5") && event.contains("replace the tag"), "{result}");
    assert_eq!(totals(&app, &admin).await, before);
    // A YAML alias bomb: 1.5 KB that would expand to 10^9 values is refused, naming the problem.
    let mut bomb = String::from("version: 1\nentries: []\na: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..9u8 {
        let (name, previous) = ((b'a' + level) as char, (b'a' + level - 1) as char);
        bomb.push_str(&format!("{name}: &{name} [{}]\n", vec![format!("*{previous}"); 10].join(", ")));
    }
    let (status, result) = json(upload(&app, &admin, &bomb, false).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{result}");
    assert!(result["logs"][0]["event"].as_str().unwrap().contains("expands to more than 100000 values"), "{result}");
    // So is a document over the import's size cap, and a body over the server's.
    let large = format!("version: 1\nentries: []\nmetadata: {{name: '{}'}}\n", "x".repeat(600 * 1024));
    let (status, result) = json(upload(&app, &admin, &large, false).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{result}");
    assert!(result["logs"][0]["event"].as_str().unwrap().contains("larger than 512 KiB"), "{result}");
    let huge = format!("version: 1\nentries: []\nmetadata: {{name: '{}'}}\n", "x".repeat(1024 * 1024));
    let (status, result) = json(upload(&app, &admin, &huge, false).await).await;
    assert_eq!((status, result["detail"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("Request body is too large.")));
    assert_eq!(totals(&app, &admin).await, before);
    // A form without the file.
    assert_field_error(
        app.client
            .post(app.url("/api/v3/flows/instances/import/"))
            .header("cookie", &admin.cookie)
            .header("x-csrftoken", &admin.csrf)
            .header("content-type", "multipart/form-data; boundary=b")
            .body("--b\r\nContent-Disposition: form-data; name=\"clear\"\r\n\r\ntrue\r\n--b--\r\n")
            .send()
            .await
            .unwrap(),
        "file",
    )
    .await;

    // A valid document sent as the body, in JSON.
    let body = json!({"version": 1, "entries": [
        {"model": "authentik_flows.flow", "identifiers": {"slug": "raw"}, "attrs": {"name": "Raw", "title": "Raw", "designation": "invalidation"}},
        {"model": "authentik_stages_user_logout.userlogoutstage", "identifiers": {"name": "raw-logout"}},
        {"model": "authentik_flows.flowstagebinding", "identifiers": {"target": "raw", "stage": "raw-logout", "order": 0}, "attrs": {"invalid_response_action": "restart"}},
    ]});
    let (status, result) = json(app.post(&admin, "/api/v3/flows/instances/import/", body).await).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["success"], true);
    let flow = ok(app.get(&admin, "/api/v3/flows/instances/raw/").await, StatusCode::OK).await;
    assert_eq!(flow["designation"], "invalidation");
    let binding =
        ok(app.get(&admin, &format!("/api/v3/flows/bindings/?target={}", flow["pk"].as_str().unwrap())).await, StatusCode::OK).await;
    assert_eq!(binding["results"][0]["invalid_response_action"], "restart");
    assert_eq!(binding["results"][0]["stage_obj"]["name"], "raw-logout");

    // `clear` removes the flow's bindings that the document does not bring back.
    let extra = create_stage(&app, &admin, "deny", json!({"name": "extra"})).await;
    bind(&app, &admin, &flow, &extra, 50).await;
    assert_eq!(count(&app, &admin, &format!("/api/v3/flows/bindings/?target={}", flow["pk"].as_str().unwrap())).await, 2);
    let document = "version: 1\nentries:\n- model: authentik_flows.flow\n  identifiers:\n    slug: raw\n- model: authentik_flows.flowstagebinding\n  identifiers:\n    target: raw\n    stage: raw-logout\n    order: 0\n";
    let (status, result) = json(upload(&app, &admin, document, true).await).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    let remaining =
        ok(app.get(&admin, &format!("/api/v3/flows/bindings/?target={}", flow["pk"].as_str().unwrap())).await, StatusCode::OK).await;
    assert_eq!(remaining["pagination"]["count"], 1);
    assert_eq!(remaining["results"][0]["stage_obj"]["name"], "raw-logout");
    assert_eq!(remaining["results"][0]["invalid_response_action"], "retry", "cleared bindings come back with the document's attributes");
}

#[tokio::test]
async fn every_stage_kind_is_documented_with_its_own_paths_and_schemas() {
    let app = TestApp::spawn().await;
    let schema: Value = app.client.get(app.url("/api/v3/schema/")).send().await.unwrap().json().await.unwrap();
    let paths = schema["paths"].as_object().unwrap();
    for path in [
        "/api/v3/flows/instances/",
        "/api/v3/flows/instances/{slug}/export/",
        "/api/v3/flows/instances/import/",
        "/api/v3/flows/bindings/{fsb_uuid}/",
        "/api/v3/stages/all/types/",
    ] {
        assert!(paths.contains_key(path), "schema lacks {path}");
    }
    assert!(
        !paths.keys().any(|p| p.contains("{kind}")),
        "the generic paths are replaced by one per kind: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    let mut operation_ids = std::collections::HashSet::new();
    for kind in ["identification", "password", "user_login", "user_logout", "deny"] {
        let item = &paths[&format!("/api/v3/stages/{kind}/{{stage_uuid}}/")];
        for method in ["get", "put", "patch", "delete"] {
            assert!(item.get(method).is_some(), "{kind} lacks {method}");
            assert!(operation_ids.insert(item[method]["operationId"].as_str().unwrap().to_owned()), "operation ids are unique");
        }
        assert!(paths.contains_key(&format!("/api/v3/stages/{kind}/")));
        assert!(paths.contains_key(&format!("/api/v3/stages/{kind}/{{stage_uuid}}/used_by/")));
    }
    let schemas = &schema["components"]["schemas"];
    let identification = schemas["IdentificationStage"].to_string();
    assert!(identification.contains("password_stage") && identification.contains("StageOut"), "{identification}");
    assert_eq!(schemas["UserLoginStageRequest"]["properties"]["session_duration"]["type"], "string");
    assert_eq!(schemas["PasswordStageRequest"]["required"], json!(["name"]));
    let create = &paths["/api/v3/stages/password/"]["post"];
    assert!(create["requestBody"].to_string().contains("PasswordStageRequest"), "{create}");
}
