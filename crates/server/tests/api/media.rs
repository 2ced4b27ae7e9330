//! Uploaded files through `/api/v3/admin/file/` and `/files/media/`, kept in the local
//! directory and in a real S3-compatible server (moto) on loopback.

use gatehouse::accounts::access::Actor;
use gatehouse::config::Config;
use gatehouse::media::service::{self, FilePart, Upload};
use reqwest::StatusCode;
use sea_orm::EntityTrait;
use serde_json::{Value, json};

use crate::support::{S3Server, Session, TestApp, fresh_bucket, json, png};

/// An SVG that would run script if a browser ran it as a document.
const SCRIPTED_SVG: &str =
    r#"<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script><rect width="4" height="4"/></svg>"#;

/// Every file name the index lists.
async fn listed(app: &TestApp, session: &Session) -> Vec<String> {
    let (status, body) = json(app.get(session, "/api/v3/admin/file/").await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_owned()).collect()
}

/// Every object the store holds, listed or not.
async fn stored_objects(app: &TestApp) -> Vec<String> {
    app.state.media.keys("media").await.expect("the store lists its objects")
}

/// How many files the local media directory holds.
fn objects_on_disk(app: &TestApp) -> usize {
    let root = app.state.config.media.directory(&app.state.config.data_dir);
    walk(&root)
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map(|entries| entries.flatten().map(|e| if e.path().is_dir() { walk(&e.path()) } else { 1 }).sum()).unwrap_or(0)
}

/// Upload, list, serve (with its headers and revalidation), `used_by`, delete: on whichever
/// store `app` has.
async fn upload_list_serve_use_and_delete(app: &TestApp) {
    app.superuser("admin@example.com").await;
    let admin = app.sign_in("admin@example.com").await;
    let logo = png(3, 2);
    let (status, body) = json(app.upload(&admin, "logo.png", logo.clone(), &[("name", "brand/logo.png"), ("usage", "media")]).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"name": "brand/logo.png", "mime_type": "image/png", "url": "/files/media/brand/logo.png"}));
    // Without a name the file's own name is used.
    let (status, body) = json(app.upload(&admin, "mark.svg", SCRIPTED_SVG.as_bytes().to_vec(), &[]).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(listed(app, &admin).await, ["brand/logo.png", "mark.svg"]);
    let (_, found) = json(app.get(&admin, "/api/v3/admin/file/?search=LOGO").await).await;
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");

    // Served to anyone, with the type found at upload and headers under which nothing runs.
    let served = app.client.get(app.url("/files/media/brand/logo.png")).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    let headers = served.headers().clone();
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers["cache-control"].to_str().unwrap().starts_with("public"));
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(served.bytes().await.unwrap().as_ref(), logo.as_slice());
    let again = app.client.get(app.url("/files/media/brand/logo.png")).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert!(again.bytes().await.unwrap().is_empty());
    let svg = app.client.get(app.url("/files/media/mark.svg")).send().await.unwrap();
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    let policy = svg.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("sandbox") && policy.contains("default-src 'none'") && !policy.contains("script-src"), "{policy}");
    // `..%2f` reaches the handler as `../` (a bare `..` would be resolved by the client first).
    for missing in
        ["/files/media/nothing.png", "/files/media/..%2fsecret_key", "/files/media/brand/..%2f..%2fsecret_key", "/files/media/brand/"]
    {
        let response = app.client.get(app.url(missing)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{missing}");
        assert_eq!(response.text().await.unwrap(), "Not found.", "{missing} reached the file handler");
    }

    // A flow showing the file as its background uses it; its URL resolves to the served file.
    let (status, flow) =
        json(app.post(&admin, "/api/v3/flows/instances/", json!({"name": "Branded", "slug": "branded", "title": "Hello", "designation": "authentication", "background": "brand/logo.png"})).await).await;
    assert_eq!(status, StatusCode::CREATED, "{flow}");
    assert_eq!(flow["background_url"], "/files/media/brand/logo.png");
    let (status, used) = json(app.get(&admin, "/api/v3/admin/file/used_by/?name=brand/logo.png").await).await;
    assert_eq!(status, StatusCode::OK, "{used}");
    assert_eq!(
        used,
        json!([{"app": "authentik_flows", "model_name": "flow", "pk": flow["pk"], "name": "Branded", "action": "left_dangling"}])
    );
    let (_, unused) = json(app.get(&admin, "/api/v3/admin/file/used_by/?name=mark.svg").await).await;
    assert_eq!(unused, json!([]));

    // Deleting takes the file out of the list, the URL and the store.
    let key = service::find(&app.state.db, app.state.tenant, &gatehouse::media::name::FileName::parse("brand/logo.png").unwrap())
        .await
        .unwrap()
        .unwrap()
        .storage_key;
    let deleted = app.delete(&admin, "/api/v3/admin/file/?name=brand/logo.png&usage=media").await;
    assert_eq!(deleted.status(), StatusCode::OK);
    assert_eq!(listed(app, &admin).await, ["mark.svg"]);
    assert_eq!(app.client.get(app.url("/files/media/brand/logo.png")).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert!(matches!(app.state.media.get(&key).await, Err(gatehouse::media::store::StoreError::Missing)));
    assert_eq!(app.get(&admin, "/api/v3/admin/file/used_by/?name=brand/logo.png").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.delete(&admin, "/api/v3/admin/file/?name=brand/logo.png").await.status(), StatusCode::NOT_FOUND);

    // Both changes are in the audit trail.
    let (_, events) = json(app.get(&admin, "/api/v3/events/events/?ordering=created&page_size=100").await).await;
    let about_logo: Vec<&Value> =
        events["results"].as_array().unwrap().iter().filter(|e| e["context"]["model"]["name"] == "brand/logo.png").collect();
    let actions: Vec<&str> = about_logo.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["model_created", "model_deleted"]);
    assert_eq!(about_logo[0]["user"]["email"], "admin@example.com");
}

#[tokio::test]
async fn files_are_uploaded_listed_served_used_and_deleted_in_the_local_directory() {
    let app = TestApp::spawn().await;
    upload_list_serve_use_and_delete(&app).await;
    assert_eq!(stored_objects(&app).await.len(), 1, "only mark.svg is left");
    assert_eq!(objects_on_disk(&app), 1, "and it is on disk");
}

#[tokio::test]
async fn files_are_uploaded_listed_served_used_and_deleted_in_an_s3_bucket() {
    let s3 = S3Server::shared();
    let bucket = fresh_bucket();
    let app = TestApp::spawn_with(|config| s3.configure(config, &bucket, true)).await;
    upload_list_serve_use_and_delete(&app).await;
    assert_eq!(stored_objects(&app).await.len(), 1, "only mark.svg is left in the bucket");
    assert_eq!(objects_on_disk(&app), 0, "nothing is kept locally with S3");
}

/// Each bad upload gets a 400 naming the field; afterwards only the good file is listed and
/// stored.
async fn bad_uploads_are_refused_by_field(app: &TestApp) {
    app.superuser("admin@example.com").await;
    let admin = app.sign_in("admin@example.com").await;
    let (status, _) = json(app.upload(&admin, "logo.png", png(1, 1), &[]).await).await;
    assert_eq!(status, StatusCode::OK);
    let before = stored_objects(app).await;
    let html = b"<html><script>alert(1)</script></html>".to_vec();
    let too_large = png(64, 64);
    assert!(too_large.len() > 4096);
    // (file name, content, other fields, the field named, what its message says)
    type Case<'a> = (&'a str, Vec<u8>, Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        ("too-large.png", too_large, vec![], "file", "exceeds maximum allowed size (4096 bytes)"),
        ("page.png", html.clone(), vec![], "file", "not an image of an accepted type"),
        ("page.html", html, vec![], "file", "not an image of an accepted type"),
        ("empty.png", Vec::new(), vec![], "file", "empty"),
        ("photo.jpg", png(1, 1), vec![], "name", "must end in .png"),
        ("x.png", png(1, 1), vec![("name", "../secret_key.png")], "name", "Parent directory"),
        ("x.png", png(1, 1), vec![("name", "/etc/logo.png")], "name", "Absolute paths"),
        ("x.png", png(1, 1), vec![("name", ".hidden.png")], "name", "cannot start with '.'"),
        ("x.png", png(1, 1), vec![("name", "a b.png")], "name", "can only contain"),
        ("x.png", png(1, 1), vec![("name", "logo")], "name", "extension"),
        ("logo.png", png(2, 2), vec![], "name", "already exists"),
        ("x.png", png(1, 1), vec![("usage", "reports")], "usage", "not a valid choice"),
    ];
    for (file_name, content, fields, field, message) in cases {
        let (status, body) = json(app.upload(&admin, file_name, content, &fields).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{file_name} {fields:?}: {body}");
        let said = body[field][0].as_str().unwrap_or_else(|| panic!("{file_name} {fields:?} names {field}: {body}"));
        assert!(said.contains(message), "{file_name} {fields:?}: {said}");
    }
    // A file part without a name of its own, and no name field.
    let form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(png(1, 1)));
    let (status, body) = json(app.upload_form(&admin, form).await).await;
    assert_eq!(
        (status, body["name"][0].as_str()),
        (StatusCode::BAD_REQUEST, Some("This field is required when the file has no name.")),
        "{body}"
    );
    // No file part at all, and a body that is not a form.
    let form = reqwest::multipart::Form::new().text("name", "nothing.png");
    let (status, body) = json(app.upload_form(&admin, form).await).await;
    assert_eq!((status, body["file"][0].as_str()), (StatusCode::BAD_REQUEST, Some("No file was submitted.")), "{body}");
    let (status, body) = json(app.post(&admin, "/api/v3/admin/file/", json!({"file": "x"})).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["non_field_errors"][0].as_str().unwrap().contains("multipart/form-data"), "{body}");
    // Deleting needs a valid name.
    let (status, body) = json(app.delete(&admin, "/api/v3/admin/file/?name=../x.png").await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["name"][0].as_str().unwrap().contains("Parent directory"), "{body}");
    let (status, body) = json(app.delete(&admin, "/api/v3/admin/file/").await).await;
    assert_eq!((status, body["name"][0].as_str()), (StatusCode::BAD_REQUEST, Some("This field is required.")), "{body}");

    assert_eq!(listed(app, &admin).await, ["logo.png"]);
    assert_eq!(stored_objects(app).await, before, "a refused upload leaves nothing in the store");
    let served = app.client.get(app.url("/files/media/logo.png")).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(served.as_ref(), png(1, 1).as_slice(), "the refused duplicate did not replace the file");
}

fn small_uploads(config: &mut Config) {
    config.media.max_upload_bytes = 4096;
}

#[tokio::test]
async fn bad_uploads_get_a_400_naming_the_field_and_leave_nothing_behind_on_disk() {
    let app = TestApp::spawn_with(small_uploads).await;
    bad_uploads_are_refused_by_field(&app).await;
}

#[tokio::test]
async fn bad_uploads_get_a_400_naming_the_field_and_leave_nothing_behind_in_s3() {
    let s3 = S3Server::shared();
    let bucket = fresh_bucket();
    let app = TestApp::spawn_with(|config| {
        small_uploads(config);
        s3.configure(config, &bucket, true);
    })
    .await;
    bad_uploads_are_refused_by_field(&app).await;
}

#[tokio::test]
async fn a_file_past_the_limit_is_not_read_on_and_a_body_past_it_is_refused() {
    let app = TestApp::spawn_with(small_uploads).await;
    app.superuser("admin@example.com").await;
    let admin = app.sign_in("admin@example.com").await;
    // The file part is read up to the limit, then refused by name.
    let (status, body) = json(app.upload(&admin, "huge.png", vec![0u8; 200 * 1024], &[]).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["file"][0].as_str().unwrap().contains("exceeds maximum allowed size"), "{body}");
    // Anything else past the limit and its framing allowance ends the request.
    let huge_name = "a".repeat(100 * 1024);
    let response = app.upload(&admin, "logo.png", png(1, 1), &[("name", &huge_name)]).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(listed(&app, &admin).await, Vec::<String>::new());
    assert_eq!(stored_objects(&app).await, Vec::<String>::new());
}

#[tokio::test]
async fn only_holders_of_the_media_permissions_list_upload_or_delete_files() {
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    app.user_with("viewer@example.com", &["authentik_rbac.view_media_files"]).await;
    app.user_with("flow-viewer@example.com", &["authentik_rbac.view_media_files", "authentik_flows.view_flow"]).await;
    app.user("nobody@example.com", |_| {}).await;
    let admin = app.sign_in("admin@example.com").await;
    let viewer = app.sign_in("viewer@example.com").await;
    let nobody = app.sign_in("nobody@example.com").await;
    assert_eq!(app.upload(&admin, "logo.png", png(1, 1), &[]).await.status(), StatusCode::OK);

    let flow_viewer = app.sign_in("flow-viewer@example.com").await;
    assert_eq!(listed(&app, &viewer).await, ["logo.png"]);
    // What uses a file names flows: that needs seeing flows too.
    crate::support::assert_forbidden(app.get(&viewer, "/api/v3/admin/file/used_by/?name=logo.png").await).await;
    assert_eq!(app.get(&flow_viewer, "/api/v3/admin/file/used_by/?name=logo.png").await.status(), StatusCode::OK);
    crate::support::assert_forbidden(app.upload(&viewer, "other.png", png(1, 1), &[]).await).await;
    crate::support::assert_forbidden(app.delete(&viewer, "/api/v3/admin/file/?name=logo.png").await).await;
    crate::support::assert_forbidden(app.get(&nobody, "/api/v3/admin/file/").await).await;
    crate::support::assert_forbidden(app.get(&nobody, "/api/v3/admin/file/used_by/?name=logo.png").await).await;
    let anonymous = app.client.get(app.url("/api/v3/admin/file/")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(listed(&app, &admin).await, ["logo.png"]);
    // The files themselves are public: sign-in pages show them before anyone signs in.
    assert_eq!(app.client.get(app.url("/files/media/logo.png")).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn a_tenant_never_overwrites_or_serves_another_tenants_file() {
    let app = TestApp::spawn().await;
    let other_state = app.other_tenant().await;
    let theirs = png(5, 5);
    let upload = Upload { file: FilePart::Content(theirs.clone().into()), file_name: Some("logo.png".into()), ..Default::default() };
    service::upload(&other_state, &Actor::system(), upload).await.unwrap();

    app.superuser("admin@example.com").await;
    let admin = app.sign_in("admin@example.com").await;
    assert_eq!(listed(&app, &admin).await, Vec::<String>::new());
    assert_eq!(app.client.get(app.url("/files/media/logo.png")).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let ours = png(1, 1);
    assert_eq!(app.upload(&admin, "logo.png", ours.clone(), &[]).await.status(), StatusCode::OK);
    let served = app.client.get(app.url("/files/media/logo.png")).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(served.as_ref(), ours.as_slice());
    let (_, still_theirs) = service::open(&other_state, "logo.png").await.unwrap();
    assert_eq!(still_theirs.as_ref(), theirs.as_slice());
}

#[tokio::test]
async fn a_missing_bucket_is_created_when_allowed_and_named_when_not() {
    let s3 = S3Server::shared();
    let bucket = fresh_bucket();
    let app = TestApp::spawn_with(|config| s3.configure(config, &bucket, false)).await;
    app.superuser("admin@example.com").await;
    let admin = app.sign_in("admin@example.com").await;
    let (status, body) = json(app.upload(&admin, "logo.png", png(1, 1), &[]).await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["detail"], format!("File storage is unavailable: the bucket {bucket} does not exist. Try again later."));
    assert_eq!(listed(&app, &admin).await, Vec::<String>::new());
    let (_, events) = json(app.get(&admin, "/api/v3/events/events/?action=configuration_error").await).await;
    let message = events["results"][0]["context"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains(&bucket) && message.contains("does not exist"), "{events}");

    // A server allowed to create it does so at start, and uploads work.
    let creating = TestApp::spawn_with(|config| s3.configure(config, &bucket, true)).await;
    creating.superuser("admin@example.com").await;
    let admin = creating.sign_in("admin@example.com").await;
    assert_eq!(creating.upload(&admin, "logo.png", png(1, 1), &[]).await.status(), StatusCode::OK);
    let served = creating.client.get(creating.url("/files/media/logo.png")).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_store_that_is_down_answers_503_and_nothing_is_half_written() {
    let mut s3 = S3Server::start();
    let bucket = fresh_bucket();
    let app = TestApp::spawn_with(|config| s3.configure(config, &bucket, true)).await;
    app.superuser("admin@example.com").await;
    let admin = app.sign_in("admin@example.com").await;
    assert_eq!(app.upload(&admin, "kept.png", png(1, 1), &[]).await.status(), StatusCode::OK);
    s3.stop();

    let (status, body) = json(app.upload(&admin, "lost.png", png(1, 1), &[]).await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["detail"], "File storage is unavailable. Try again later.");
    assert_eq!(listed(&app, &admin).await, ["kept.png"], "the failed upload is not listed");
    let rows = gatehouse::media::entities::media_file::Entity::find().all(&app.state.db).await.unwrap();
    assert_eq!(rows.len(), 1, "and not in the index");
    let served = app.client.get(app.url("/files/media/kept.png")).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(served.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn uploads_racing_for_one_name_keep_one_file_and_leave_no_stray_bytes() {
    let s3 = S3Server::shared();
    let bucket = fresh_bucket();
    let app = TestApp::spawn_with(|config| s3.configure(config, &bucket, true)).await;
    app.superuser("admin@example.com").await;
    let admin = app.sign_in("admin@example.com").await;
    let racers = (1..=8).map(|size| app.upload(&admin, "same.png", png(size, size), &[]));
    let statuses: Vec<StatusCode> = futures_util::future::join_all(racers).await.iter().map(|r| r.status()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == StatusCode::OK || *s == StatusCode::BAD_REQUEST), "{statuses:?}");
    assert_eq!(listed(&app, &admin).await, ["same.png"]);
    assert_eq!(stored_objects(&app).await.len(), 1, "the losers' bytes were taken back");
    let row = gatehouse::media::entities::media_file::Entity::find().one(&app.state.db).await.unwrap().unwrap();
    let served = app.client.get(app.url("/files/media/same.png")).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(served.len() as i64, row.size, "the listed file is the stored one");
}

#[tokio::test]
async fn a_listed_file_whose_bytes_are_gone_answers_503_not_404() {
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    let admin = app.sign_in("admin@example.com").await;
    assert_eq!(app.upload(&admin, "logo.png", png(1, 1), &[]).await.status(), StatusCode::OK);
    let root = app.state.config.media.directory(&app.state.config.data_dir);
    for key in stored_objects(&app).await {
        std::fs::remove_file(root.join(key)).unwrap();
    }
    let served = app.client.get(app.url("/files/media/logo.png")).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = served.json().await.unwrap();
    assert_eq!(body["detail"], "File storage is unavailable. Try again later.");
}
