//! `/api/v3/events/events/` and the visit history.

use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

use crate::support::*;
use gatehouse::events::entities::{event, visit};

#[tokio::test]
async fn events_are_listed_filtered_and_retrieved() {
    let app = TestApp::spawn().await;
    let admin_user = app.superuser("admin@example.com").await;
    app.user("olga@example.com", |_| {}).await;
    app.try_sign_in("olga@example.com", "not her password at all").await;
    app.sign_in("olga@example.com").await;
    let admin = app.sign_in("admin@example.com").await;

    let (status, all) = json(app.get(&admin, "/api/v3/events/events/").await).await;
    assert_eq!(status, StatusCode::OK);
    let results = all["results"].as_array().unwrap();
    assert!(results.len() >= 5, "{all}");
    let created: Vec<&str> = results.iter().map(|e| e["created"].as_str().unwrap()).collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "newest first");
    assert!(created[0].ends_with('Z'));
    for event in results {
        for field in ["pk", "user", "action", "app", "context", "client_ip", "created", "expires", "brand"] {
            assert!(event.get(field).is_some(), "event lacks {field}: {event}");
        }
    }

    let (_, failed) = json(app.get(&admin, "/api/v3/events/events/?action=login_failed").await).await;
    assert_eq!(failed["pagination"]["count"], 1);
    let (_, logins) = json(app.get(&admin, &format!("/api/v3/events/events/?action=login&user={}", admin_user.id)).await).await;
    assert_eq!(logins["pagination"]["count"], 1);
    let (_, several) = json(app.get(&admin, "/api/v3/events/events/?actions=login,login_failed").await).await;
    assert_eq!(several["pagination"]["count"], 3);
    let (_, by_name) = json(app.get(&admin, "/api/v3/events/events/?username=olga").await).await;
    let olgas = by_name["results"].as_array().unwrap();
    let olgas_actions: Vec<&str> = olgas.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(olgas_actions.contains(&"login") && olgas_actions.contains(&"login_failed"), "{by_name}");
    assert!(olgas.iter().all(|e| e["user"]["username"] == "olga@example.com"), "{by_name}");
    let (_, future) = json(app.get(&admin, "/api/v3/events/events/?created__gt=2100-01-01T00:00:00Z").await).await;
    assert_eq!(future["pagination"]["count"], 0);
    let (_, past) = json(app.get(&admin, "/api/v3/events/events/?created__lt=2100-01-01T00:00:00Z&page_size=2").await).await;
    assert_eq!(past["pagination"]["count"], all["pagination"]["count"]);
    assert_eq!(past["results"].as_array().unwrap().len(), 2);

    let pk = results[0]["pk"].as_str().unwrap();
    let (status, one) = json(app.get(&admin, &format!("/api/v3/events/events/{pk}/")).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["pk"], pk);
    assert_eq!(app.get(&admin, "/api/v3/events/events/00000000-0000-0000-0000-000000000000/").await.status(), StatusCode::NOT_FOUND);

    assert_field_error(app.get(&admin, "/api/v3/events/events/?created__gt=yesterday").await, "created__gt").await;
    assert_field_error(app.get(&admin, "/api/v3/events/events/?client_ip=999.1.1.1").await, "client_ip").await;
    assert_field_error(app.get(&admin, "/api/v3/events/events/?user=abc").await, "user").await;
}

#[tokio::test]
async fn events_expire_after_the_configured_retention() {
    let app = TestApp::spawn_with(|c| c.events.retention = "days=30".parse().unwrap()).await;
    app.superuser("admin@example.com").await;
    let admin = app.sign_in("admin@example.com").await;
    let (_, events) = json(app.get(&admin, "/api/v3/events/events/?action=login").await).await;
    let event = &events["results"][0];
    let created = chrono::DateTime::parse_from_rfc3339(event["created"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(event["expires"].as_str().unwrap()).unwrap();
    assert_eq!((expires - created).num_days(), 30);
    assert_eq!(gatehouse::events::service::purge_expired(&app.state.db).await.unwrap(), 0, "nothing has expired yet");

    // One event reaches its expiry: the purge removes it and nothing else.
    let pk: uuid::Uuid = event["pk"].as_str().unwrap().parse().unwrap();
    let before = event::Entity::find().count(&app.state.db).await.unwrap();
    event::Entity::update_many()
        .col_expr(event::Column::Expires, sea_orm::sea_query::Expr::val(chrono::Utc::now() - chrono::TimeDelta::seconds(1)))
        .filter(event::Column::EventUuid.eq(pk))
        .exec(&app.state.db)
        .await
        .unwrap();
    assert_eq!(gatehouse::events::service::purge_expired(&app.state.db).await.unwrap(), 1);
    assert_eq!(app.get(&admin, &format!("/api/v3/events/events/{pk}/")).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(event::Entity::find().count(&app.state.db).await.unwrap(), before - 1);
}

#[tokio::test]
async fn plain_users_cannot_read_events() {
    let app = TestApp::spawn().await;
    app.user("pat@example.com", |_| {}).await;
    let session = app.sign_in("pat@example.com").await;
    assert_forbidden(app.get(&session, "/api/v3/events/events/").await).await;
}

#[tokio::test]
async fn visits_are_recorded_off_the_request_path_when_enabled() {
    let app = TestApp::spawn_with(|c| c.events.record_visits = true).await;
    let user = app.user("quinn@example.com", |_| {}).await;
    let session = app.sign_in("quinn@example.com").await;
    for _ in 0..3 {
        let response = app
            .client
            .get(app.url("/api/v3/core/users/me/?token=should-not-be-stored"))
            .header("cookie", &session.cookie)
            .header("referer", "http://127.0.0.1/somewhere")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let mut stored = 0;
    for _ in 0..200 {
        stored = visit::Entity::find().filter(visit::Column::UserId.eq(user.id)).count(&app.state.db).await.unwrap();
        if stored == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(stored, 3);
    let visits = visit::Entity::find().filter(visit::Column::UserId.eq(user.id)).all(&app.state.db).await.unwrap();
    assert!(visits.iter().all(|v| v.url == "/api/v3/core/users/me/" && v.referrer.as_deref() == Some("http://127.0.0.1/somewhere")));
}

#[tokio::test]
async fn visits_are_not_recorded_by_default() {
    let app = TestApp::spawn().await;
    app.user("rita@example.com", |_| {}).await;
    let session = app.sign_in("rita@example.com").await;
    // With no recorder nothing can queue a visit, so no wait is needed before counting.
    assert!(app.state.visits.is_none(), "the visit recorder runs only when enabled");
    assert_eq!(app.get(&session, "/api/v3/core/users/me/").await.status(), StatusCode::OK);
    assert_eq!(visit::Entity::find().count(&app.state.db).await.unwrap(), 0);
    assert!(event::Entity::find().count(&app.state.db).await.unwrap() >= 1);
}

/// An event quoting the outside (a provider's answer with a NUL in it) is still recorded: the
/// NUL, which PostgreSQL refuses in `jsonb`, is replaced.
#[tokio::test]
async fn an_event_quoting_a_nul_character_is_still_recorded() {
    use gatehouse::events::{Action, EventRecord};
    let app = TestApp::spawn().await;
    let record = EventRecord::new(Action::ConfigurationError).with("body\u{0}", serde_json::json!("bad\u{0}byte"));
    let stored = gatehouse::events::service::record(&app.state.db, &app.state, record).await.unwrap();
    let row = event::Entity::find_by_id(stored.event_uuid).one(&app.state.db).await.unwrap().unwrap();
    assert_eq!(row.context["body\u{fffd}"], "bad\u{fffd}byte");
}
