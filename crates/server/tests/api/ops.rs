//! Health checks, metrics, the OpenAPI document, Swagger UI and HTTP conventions.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn health_checks_answer() {
    let app = TestApp::spawn().await;
    for path in ["/-/health/live/", "/-/health/ready/"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{path}");
    }
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener() {
    let app = TestApp::spawn().await;
    app.user("sam@example.com", |_| {}).await;
    app.sign_in("sam@example.com").await;
    app.try_sign_in("sam@example.com", "definitely wrong password").await;
    let response = app.client.get(format!("{}/metrics", app.metrics_base)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    for needle in [
        "gatehouse_http_requests_total{method=\"POST\",route=\"/api/v3/auth/sign_in/\",status=\"200\"}",
        "gatehouse_http_request_duration_seconds_bucket",
        "gatehouse_sign_ins_total{outcome=\"success\"}",
        "gatehouse_sign_ins_total{outcome=\"failed\"}",
        "gatehouse_db_pool_connections{state=\"open\"}",
        "gatehouse_auth_cache_checks_total{answer=\"memory\"}",
        "gatehouse_auth_cache_checks_total{answer=\"database\"}",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}");
    }
    assert_eq!(app.client.get(app.url("/metrics")).send().await.unwrap().status(), StatusCode::NOT_FOUND, "not on the public listener");
}

#[tokio::test]
async fn openapi_document_and_swagger_ui_are_served() {
    let app = TestApp::spawn().await;
    let schema: Value = app.client.get(app.url("/api/v3/schema/")).send().await.unwrap().json().await.unwrap();
    assert!(schema["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v3/core/users/",
        "/api/v3/core/users/{id}/",
        "/api/v3/core/users/me/",
        "/api/v3/core/users/{id}/set_password/",
        "/api/v3/core/groups/",
        "/api/v3/core/groups/{group_uuid}/add_user/",
        "/api/v3/events/events/",
        "/api/v3/auth/sign_in/",
        "/api/v3/core/users/service_account/",
        "/api/v3/core/tokens/",
        "/api/v3/core/tokens/{identifier}/",
        "/api/v3/core/tokens/{identifier}/view_key/",
        "/api/v3/core/tokens/{identifier}/set_key/",
        "/api/v3/core/tokens/{identifier}/rotate/",
        "/api/v3/core/tokens/{identifier}/used_by/",
        "/api/v3/core/authenticated_sessions/",
    ] {
        assert!(schema["paths"].get(path).is_some(), "schema lacks {path}");
    }
    assert!(schema["components"]["securitySchemes"].get("authentik").is_some());
    let page = app.client.get(app.url("/api/v3/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("swagger"));
    let initializer = app.client.get(app.url("/api/v3/swagger-initializer.js")).send().await.unwrap();
    assert_eq!(initializer.status(), StatusCode::OK);
    assert!(initializer.text().await.unwrap().contains("/api/v3/schema/"));
}

#[tokio::test]
async fn conventions_hold_for_errors_limits_and_headers() {
    let app = TestApp::spawn_with(|c| c.server.max_body_bytes = 4096).await;
    app.superuser("admin@example.com").await;
    let admin = app.sign_in("admin@example.com").await;

    let (status, body) = json(app.client.get(app.url("/api/v3/no/such/thing/")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"detail": "The requested resource does not exist."}));

    let big = json!({"name": "x".repeat(10_000)});
    let (status, body) = json(app.post(&admin, "/api/v3/core/groups/", big).await).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body["detail"].is_string());

    let (status, body) = json(app.call(Some(&admin), reqwest::Method::PATCH, "/api/v3/core/users/me/", Some(json!({}))).await).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(body["detail"].is_string());

    let response = app.client.get(app.url("/api/v3/core/users/me/")).header("x-request-id", "trace-123").send().await.unwrap();
    assert_eq!(response.headers().get("x-request-id").unwrap(), "trace-123");
    assert_eq!(response.headers().get("x-frame-options").unwrap(), "DENY");
    assert_eq!(response.headers().get("x-content-type-options").unwrap(), "nosniff");
    assert!(response.headers().get("content-security-policy").is_some());
    let generated = app.client.get(app.url("/-/health/live/")).send().await.unwrap();
    assert_eq!(generated.headers().get("x-request-id").unwrap().len(), 32);
}

/// authentik's official client validates every response against its models: a paginated list
/// without `autocomplete`, a `users/me` without `is_current` or a missing path fails the call.
#[tokio::test]
async fn authentik_clients_rejected_lists_without_autocomplete() {
    let app = TestApp::spawn().await;
    app.superuser("root@example.com").await;
    let root = app.sign_in("root@example.com").await;
    let lists = [
        "/api/v3/core/users/",
        "/api/v3/core/groups/",
        "/api/v3/core/tokens/",
        "/api/v3/core/authenticated_sessions/",
        "/api/v3/events/events/",
        "/api/v3/flows/instances/",
        "/api/v3/flows/bindings/",
        "/api/v3/stages/all/",
        "/api/v3/stages/password/",
        "/api/v3/tasks/tasks/",
        "/api/v3/tasks/schedules/",
    ];
    let (_, document) = json(app.client.get(app.url("/api/v3/schema/")).send().await.unwrap()).await;
    for path in lists {
        let (status, body) = json(app.get(&root, path).await).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["autocomplete"], json!({}), "{path}: {body}");
        assert!(body["pagination"]["count"].is_u64() && body["results"].is_array(), "{path}");
        // The document says so too, so generated clients expect the page object.
        let schema = &document["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
        let name = schema["$ref"].as_str().unwrap_or_else(|| panic!("{path}: {schema}")).rsplit('/').next().unwrap();
        let component = &document["components"]["schemas"][name];
        let required: Vec<&str> = component["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        for field in ["pagination", "results", "autocomplete"] {
            assert!(required.contains(&field), "{path}: {name} does not require {field}: {component}");
        }
    }

    let (_, me) = json(app.get(&root, "/api/v3/core/users/me/").await).await;
    assert_eq!(me["user"]["is_current"], true, "{me}");

    for path in ["/api/v3/tasks/workers/", "/api/v3/tasks/workers"] {
        let (status, workers) = json(app.get(&root, path).await).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(workers.as_array().unwrap().iter().all(|w| w["worker_id"].is_string() && w["version_matching"].is_boolean()));
    }

    // Anyone may read what the front end may offer; only what exists is offered.
    let (status, config) = json(app.client.get(app.url("/api/v3/root/config/")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config["capabilities"], json!([]), "no GeoIP database, no media storage, no impersonation");
    assert_eq!(config["error_reporting"]["enabled"], false);
    assert_eq!(config["cache_timeout"], app.state.config.sessions.cache_ttl.to_std().as_secs());
    for field in ["cache_timeout_flows", "cache_timeout_policies"] {
        assert!(config[field].is_i64(), "{field}: {config}");
    }

    assert_eq!(app.client.get(app.url("/api/v3/admin/version/")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let (status, version) = json(app.get(&root, "/api/v3/admin/version/").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(version["version_current"], env!("CARGO_PKG_VERSION"));
    assert_eq!(version["outdated"], false);
    assert!(version["build_hash"].is_string() && version["version_latest_valid"].is_boolean());
}

/// PostgreSQL refuses text holding U+0000, and a query that carried one answered 500; such text
/// is now refused at the door, naming the field.
#[tokio::test]
async fn null_characters_made_postgresql_queries_fail_with_500() {
    let app = TestApp::spawn().await;
    app.superuser("root@example.com").await;
    let root = app.sign_in("root@example.com").await;
    let refusal = crate::support::NULL_CHARACTER_MESSAGE;

    let (status, body) = json(app.try_sign_in("a\u{0}@example.com", "whatever it is").await).await;
    assert_eq!((status, &body), (StatusCode::BAD_REQUEST, &json!({"email": [refusal]})));
    let (status, body) = json(app.post(&root, "/api/v3/core/groups/", json!({"name": "a\u{0}b"})).await).await;
    assert_eq!((status, &body), (StatusCode::BAD_REQUEST, &json!({"name": [refusal]})));
    let (status, body) =
        json(app.post(&root, "/api/v3/core/groups/", json!({"name": "ok", "attributes": {"deep": ["x", "\u{0}"]}})).await).await;
    assert_eq!((status, &body), (StatusCode::BAD_REQUEST, &json!({"attributes.deep.1": [refusal]})));
    for path in ["/api/v3/core/groups/?search=a%00b", "/api/v3/tasks/schedules/?search=%00", "/api/v3/core/users/?username=x%00"] {
        let (status, body) = json(app.get(&root, path).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(body.as_object().unwrap().values().all(|m| m == &json!([refusal])), "{path}: {body}");
    }
    for path in ["/api/v3/flows/instances/a%00b/", "/api/v3/core/tokens/a%00b/"] {
        assert_eq!(app.get(&root, path).await.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // Nothing was written.
    let (_, groups) = json(app.get(&root, "/api/v3/core/groups/").await).await;
    assert_eq!(groups["pagination"]["count"], 0);
}

/// SQLite stored other control characters where PostgreSQL refused only U+0000: a name with an
/// escape sequence or a backspace in it could then be shown to an administrator's terminal. Every
/// control character is refused like U+0000, except line breaks and tabs in values.
#[tokio::test]
async fn control_characters_were_stored_in_names_keys_and_searches() {
    let app = TestApp::spawn().await;
    app.superuser("root@example.com").await;
    let root = app.sign_in("root@example.com").await;
    let refusal = "Control characters are not allowed.";

    for name in ["evil\u{1b}[2J", "back\u{8}space", "del\u{7f}", "c1\u{85}next", "line\nbreak"] {
        let (status, body) = json(app.post(&root, "/api/v3/core/groups/", json!({"name": name})).await).await;
        assert_eq!((status, &body), (StatusCode::BAD_REQUEST, &json!({"name": [refusal]})), "{name:?}");
    }
    let (status, body) = json(app.post(&root, "/api/v3/core/groups/", json!({"name": "ok", "attributes": {"key\u{7}": 1}})).await).await;
    assert_eq!((status, &body), (StatusCode::BAD_REQUEST, &json!({"attributes": [refusal]})), "JSON keys are names");
    let (status, body) = json(app.try_sign_in("ada\u{1}@example.com", "whatever it is").await).await;
    assert_eq!((status, &body), (StatusCode::BAD_REQUEST, &json!({"email": [refusal]})));
    for path in ["/api/v3/core/groups/?search=a%1Bb", "/api/v3/core/users/?username=x%7F", "/api/v3/events/events/?action=%0A"] {
        let (status, body) = json(app.get(&root, path).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(body.as_object().unwrap().values().all(|m| m == &json!([refusal])), "{path}: {body}");
    }
    assert_eq!(app.get(&root, "/api/v3/core/tokens/a%1Bb/").await.status(), StatusCode::NOT_FOUND);

    // Line breaks and tabs stay welcome where text may span lines.
    let description = "first line\nsecond line\twith a tab";
    let body = json!({"name": "multi", "attributes": {"note": description}});
    let (status, created) = json(app.post(&root, "/api/v3/core/groups/", body).await).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["attributes"]["note"], description);
    let (_, groups) = json(app.get(&root, "/api/v3/core/groups/").await).await;
    assert_eq!(groups["pagination"]["count"], 1, "only the group with line breaks in a value");
}
