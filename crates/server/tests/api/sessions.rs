//! Sign-in, sign-out, sessions, CSRF and throttling.

use reqwest::{Method, StatusCode};
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set};
use serde_json::{Value, json};

use crate::support::*;
use gatehouse::accounts::entities::user;

#[tokio::test]
async fn sign_in_sets_hardened_cookies_and_sign_out_ends_the_session() {
    let app = TestApp::spawn().await;
    app.user("erin@example.com", |_| {}).await;
    let response = app.try_sign_in("ERIN@example.com", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    let cookies: Vec<String> = response.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    let session_cookie = cookies.iter().find(|c| c.starts_with(&format!("{SESSION_COOKIE}="))).unwrap();
    for flag in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(session_cookie.contains(flag), "{session_cookie} lacks {flag}");
    }
    let csrf_cookie = cookies.iter().find(|c| c.starts_with(&format!("{CSRF_COOKIE}="))).unwrap();
    assert!(!csrf_cookie.contains("HttpOnly"), "scripts must be able to read the CSRF cookie");
    assert_eq!(response.headers().get("cache-control").unwrap(), "no-store");
    let session = session_from(response).await;
    assert_eq!(session.body["user"]["email"], "erin@example.com");

    assert_eq!(app.get(&session, "/api/v3/core/users/me/").await.status(), StatusCode::OK);
    assert_eq!(app.post(&session, "/api/v3/auth/sign_out/", json!({})).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get(&session, "/api/v3/core/users/me/").await.status(), StatusCode::UNAUTHORIZED);
}

/// A sibling subdomain can set a cookie for the parent domain, but never one named `__Host-`:
/// secure servers name their cookies that way and read no other name.
#[tokio::test]
async fn cookie_names_without_the_host_prefix_could_be_planted_by_a_sibling_subdomain() {
    let app = TestApp::spawn().await;
    app.user("erin@example.com", |_| {}).await;
    let response = app.try_sign_in("erin@example.com", PASSWORD).await;
    let cookies: Vec<String> = response.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    assert_eq!(cookies.len(), 3, "session, CSRF token and known-browser mark: {cookies:?}");
    for cookie in &cookies {
        assert!(cookie.starts_with("__Host-gatehouse_"), "{cookie}");
        assert!(cookie.contains("; Secure") && cookie.contains("; Path=/") && !cookie.to_lowercase().contains("domain="), "{cookie}");
    }
    let session = session_from(response).await;
    let key = session.cookie.split_once('=').unwrap().1.to_owned();
    let planted = |name: &str| app.client.get(app.url("/api/v3/core/users/me/")).header("cookie", format!("{name}={key}")).send();
    assert_eq!(planted("gatehouse_session").await.unwrap().status(), StatusCode::UNAUTHORIZED, "the unprefixed name is not read");
    assert_eq!(planted(SESSION_COOKIE).await.unwrap().status(), StatusCode::OK);

    // Over plain HTTP (secure cookies off, for development) there is no prefix to use.
    let plain = TestApp::spawn_with(|c| c.server.secure_cookies = false).await;
    plain.user("erin@example.com", |_| {}).await;
    let response = plain.try_sign_in("erin@example.com", PASSWORD).await;
    let cookie = response.headers().get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(cookie.starts_with("gatehouse_session=") && !cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn cookie_authenticated_unsafe_requests_need_the_csrf_token() {
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    let session = app.sign_in("admin@example.com").await;
    let without = app
        .client
        .post(app.url("/api/v3/core/groups/"))
        .header("cookie", &session.cookie)
        .json(&json!({"name": "No token"}))
        .send()
        .await
        .unwrap();
    let (status, body) = json(without).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["detail"].as_str().unwrap().contains("CSRF"));
    let mut wrong = session.clone();
    wrong.csrf = "forged-token".into();
    assert_eq!(app.post(&wrong, "/api/v3/core/groups/", json!({"name": "Wrong token"})).await.status(), StatusCode::FORBIDDEN);
    // Another session's token does not fit this one.
    let other = app.sign_in("admin@example.com").await;
    wrong.csrf = other.csrf.clone();
    assert_eq!(app.post(&wrong, "/api/v3/core/groups/", json!({"name": "Other token"})).await.status(), StatusCode::FORBIDDEN);
    let (_, groups) = json(app.get(&session, "/api/v3/core/groups/").await).await;
    assert_eq!(groups["pagination"]["count"], 0, "no refused request wrote anything");
    // Safe methods need no token.
    let get = app.client.get(app.url("/api/v3/core/groups/")).header("cookie", &session.cookie).send().await.unwrap();
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(app.post(&session, "/api/v3/core/groups/", json!({"name": "With token"})).await.status(), StatusCode::CREATED);
    // A sign-in must be JSON, which a cross-site form cannot send.
    let form = app
        .client
        .post(app.url("/api/v3/auth/sign_in/"))
        .form(&[("email", "admin@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_field_error(form, "non_field_errors").await;
}

#[tokio::test]
async fn failures_look_the_same_whatever_was_wrong() {
    let app = TestApp::spawn().await;
    app.user("frank@example.com", |_| {}).await;
    app.user("inactive@example.com", |u| u.is_active = false).await;
    app.user("robot@example.com", |u| u.user_type = gatehouse::accounts::UserType::ServiceAccount).await;
    let mut bodies = Vec::new();
    for (email, password) in [
        ("frank@example.com", "wrong password entirely"),
        ("nobody@example.com", PASSWORD),
        ("inactive@example.com", PASSWORD),
        ("robot@example.com", PASSWORD),
        ("", PASSWORD),
    ] {
        let (status, body) = json(app.try_sign_in(email, password).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        bodies.push(body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    assert_eq!(bodies[0], json!({"non_field_errors": ["Invalid e-mail or password."]}));
    assert_field_error(app.client.post(app.url("/api/v3/auth/sign_in/")).json(&json!({"email": "x"})).send().await.unwrap(), "password")
        .await;
}

#[tokio::test]
async fn repeated_failures_are_throttled_per_account() {
    let app = TestApp::spawn_with(|c| {
        c.sign_in.free_failures_per_account_address = 3;
        c.sign_in.max_failures_per_account_hour = 60;
    })
    .await;
    app.user("grace@example.com", |_| {}).await;
    for _ in 0..3 {
        assert_eq!(app.try_sign_in("grace@example.com", "not the password at all").await.status(), StatusCode::BAD_REQUEST);
    }
    let throttled = app.try_sign_in("grace@example.com", PASSWORD).await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS, "even the right password waits");
    let retry_after: u64 = throttled.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    // Unknown accounts are throttled the same way, so throttling reveals nothing.
    for _ in 0..3 {
        app.try_sign_in("ghost@example.com", "whatever it is").await;
    }
    assert_eq!(app.try_sign_in("ghost@example.com", "whatever it is").await.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another account from the same address is not affected.
    app.user("heidi@example.com", |_| {}).await;
    assert_eq!(app.try_sign_in("heidi@example.com", PASSWORD).await.status(), StatusCode::OK);
    // Once the delay has passed, the right password works and clears the counter.
    app.state.clock.advance(chrono::TimeDelta::seconds(retry_after as i64));
    assert_eq!(app.try_sign_in("grace@example.com", PASSWORD).await.status(), StatusCode::OK);
    assert_eq!(app.try_sign_in("grace@example.com", "not the password at all").await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.try_sign_in("grace@example.com", PASSWORD).await.status(), StatusCode::OK);
}

/// A right password clears the account's failures at its address. Failures that come later
/// start a window of their own: the hour of the cleared window ending does not wipe them.
#[tokio::test]
async fn failures_after_a_cleared_account_count_in_a_window_of_their_own() {
    let app = TestApp::spawn_with(|c| c.sign_in.free_failures_per_account_address = 1).await;
    app.user("kim@example.com", |_| {}).await;
    let wrong = "not the password at all";
    assert_eq!(app.try_sign_in("kim@example.com", wrong).await.status(), StatusCode::BAD_REQUEST);
    app.state.clock.advance(chrono::TimeDelta::seconds(1));
    assert_eq!(app.try_sign_in("kim@example.com", PASSWORD).await.status(), StatusCode::OK);
    app.state.clock.advance(chrono::TimeDelta::minutes(50));
    let retry_after = |response: &reqwest::Response| -> i64 {
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        response.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap()
    };
    // Three failures, each after the delay the previous one set (1 s, then 2 s).
    assert_eq!(app.try_sign_in("kim@example.com", wrong).await.status(), StatusCode::BAD_REQUEST);
    for expected_wait in [1, 2] {
        let waited = retry_after(&app.try_sign_in("kim@example.com", wrong).await);
        assert_eq!(waited, expected_wait);
        app.state.clock.advance(chrono::TimeDelta::seconds(waited));
        assert_eq!(app.try_sign_in("kim@example.com", wrong).await.status(), StatusCode::BAD_REQUEST);
    }
    // An hour after the clearing, eleven minutes after these failures: they still count.
    app.state.clock.advance(chrono::TimeDelta::minutes(11));
    assert_eq!(app.try_sign_in("kim@example.com", wrong).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        retry_after(&app.try_sign_in("kim@example.com", wrong).await),
        8,
        "after four failures since the clearing, the next attempt waits 8 s"
    );
}

#[tokio::test]
async fn repeated_failures_are_throttled_per_client_address() {
    let app = TestApp::spawn_with(|c| {
        c.sign_in.free_failures_per_ip = 4;
        c.sign_in.max_failures_per_ip_hour = 60;
    })
    .await;
    app.user("ivan@example.com", |_| {}).await;
    for i in 0..4 {
        app.try_sign_in(&format!("spray{i}@example.com"), "password spraying").await;
    }
    assert_eq!(app.try_sign_in("ivan@example.com", PASSWORD).await.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn sessions_are_listed_and_revoked() {
    let app = TestApp::spawn().await;
    app.user("judy@example.com", |_| {}).await;
    let first = app.sign_in("judy@example.com").await;
    let second = app.sign_in("judy@example.com").await;
    let third = app.sign_in("judy@example.com").await;

    let (status, list) = json(app.get(&first, "/api/v3/core/authenticated_sessions/").await).await;
    assert_eq!(status, StatusCode::OK);
    let results = list["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results.iter().filter(|s| s["current"] == true).count(), 1);
    assert!(results.iter().all(|s| s.get("key_digest").is_none()));

    let second_id = second.body["session"]["uuid"].as_str().unwrap();
    assert_eq!(app.delete(&first, &format!("/api/v3/core/authenticated_sessions/{second_id}/")).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get(&second, "/api/v3/core/users/me/").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.delete(&first, &format!("/api/v3/core/authenticated_sessions/{second_id}/")).await.status(), StatusCode::NOT_FOUND);

    // Someone else's session cannot be revoked.
    app.user("mallory@example.com", |_| {}).await;
    let mallory = app.sign_in("mallory@example.com").await;
    let third_id = third.body["session"]["uuid"].as_str().unwrap();
    assert_eq!(app.delete(&mallory, &format!("/api/v3/core/authenticated_sessions/{third_id}/")).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.get(&third, "/api/v3/core/users/me/").await.status(), StatusCode::OK);

    let (_, revoked) = json(app.post(&first, "/api/v3/core/authenticated_sessions/revoke_others/", json!({})).await).await;
    assert_eq!(revoked["revoked"], 1);
    assert_eq!(app.get(&third, "/api/v3/core/users/me/").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.get(&first, "/api/v3/core/users/me/").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn disabling_or_deleting_a_user_ends_all_their_sessions() {
    let app = TestApp::spawn().await;
    app.superuser("admin@example.com").await;
    let karl = app.user("karl@example.com", |_| {}).await;
    let liz = app.user("liz@example.com", |_| {}).await;
    let admin = app.sign_in("admin@example.com").await;
    let karl_sessions = [app.sign_in("karl@example.com").await, app.sign_in("karl@example.com").await];
    let liz_session = app.sign_in("liz@example.com").await;

    let response = app.patch(&admin, &format!("/api/v3/core/users/{}/", karl.id), json!({"is_active": false})).await;
    assert_eq!(response.status(), StatusCode::OK);
    for session in &karl_sessions {
        assert_eq!(app.get(session, "/api/v3/core/users/me/").await.status(), StatusCode::UNAUTHORIZED);
    }
    let (_, list) = json(app.get(&admin, &format!("/api/v3/core/users/{}/", karl.id)).await).await;
    assert_eq!(list["is_active"], false);
    assert_eq!(app.try_sign_in("karl@example.com", PASSWORD).await.status(), StatusCode::BAD_REQUEST);

    assert_eq!(app.delete(&admin, &format!("/api/v3/core/users/{}/", liz.id)).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get(&liz_session, "/api/v3/core/users/me/").await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bearer_credentials_that_do_not_exist_are_refused() {
    let app = TestApp::spawn().await;
    app.user("mike@example.com", |_| {}).await;
    let session = app.sign_in("mike@example.com").await;
    let response = app
        .client
        .request(Method::GET, app.url("/api/v3/core/users/me/"))
        .header("authorization", "Bearer not-a-real-key")
        .header("cookie", &session.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get("www-authenticate").unwrap().to_str().unwrap().starts_with("Bearer"));
}

#[tokio::test]
async fn imported_django_hashes_sign_in_and_are_upgraded() {
    let app = TestApp::spawn().await;
    let user = app.user("nina@example.com", |u| u.password = None).await;
    // Django's PBKDF2PasswordHasher format, as an imported account would carry it.
    let django = {
        use base64::Engine;
        let mut derived = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(PASSWORD.as_bytes(), b"importedsalt", 10_000, &mut derived);
        format!("pbkdf2_sha256$10000$importedsalt${}", base64::engine::general_purpose::STANDARD.encode(derived))
    };
    let mut model = user.into_active_model();
    model.password = Set(Some(django.clone()));
    let user = model.update(&app.state.db).await.unwrap();

    assert_eq!(app.try_sign_in("nina@example.com", "wrong guess, not it").await.status(), StatusCode::BAD_REQUEST);
    let stored = user::Entity::find_by_id(user.id).one(&app.state.db).await.unwrap().unwrap().password.unwrap();
    assert_eq!(stored, django, "a failed sign-in does not touch the hash");
    app.sign_in("nina@example.com").await;
    let upgraded = user::Entity::find_by_id(user.id).one(&app.state.db).await.unwrap().unwrap().password.unwrap();
    assert!(upgraded.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{upgraded}");
    app.sign_in("nina@example.com").await;
}

#[tokio::test]
async fn sign_in_records_client_data_and_trusted_proxy_addresses() {
    let app = TestApp::spawn_with(|c| c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    app.superuser("admin@example.com").await;
    let ua = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15";
    let response = app
        .client
        .post(app.url("/api/v3/auth/sign_in/"))
        .header("user-agent", ua)
        .header("x-forwarded-for", "203.0.113.50")
        .json(&json!({"email": "admin@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let admin = session_from(response).await;
    app.client
        .post(app.url("/api/v3/auth/sign_in/"))
        .header("user-agent", ua)
        .header("x-forwarded-for", "198.51.100.9")
        .json(&json!({"email": "admin@example.com", "password": "a wrong password here"}))
        .send()
        .await
        .unwrap();

    let (_, logins) = json(app.get(&admin, "/api/v3/events/events/?action=login").await).await;
    let login = &logins["results"][0];
    assert_eq!(login["client_ip"], "203.0.113.50");
    assert_eq!(login["context"]["client"]["browser"]["family"], "Safari");
    assert_eq!(login["context"]["client"]["os"]["family"], "Mac OSX");
    assert_eq!(login["context"]["client"]["device"]["category"], "pc");
    let (_, failures) = json(app.get(&admin, "/api/v3/events/events/?action=login_failed&client_ip=198.51.100.9").await).await;
    assert_eq!(failures["pagination"]["count"], 1);
    assert_eq!(failures["results"][0]["context"]["username"], "admin@example.com");
    assert!(!failures.to_string().contains("a wrong password here"));

    // Entries the proxy did not write cannot choose the address: one that does not parse ends the
    // walk at the last trusted hop; one with a port counts as its address.
    for forwarded in ["203.0.113.77, unknown", "203.0.113.77, 198.51.100.20:5555"] {
        let response = app
            .client
            .post(app.url("/api/v3/auth/sign_in/"))
            .header("x-forwarded-for", forwarded)
            .json(&json!({"email": "admin@example.com", "password": "a wrong password here"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
    for (address, count) in [("203.0.113.77", 0), ("127.0.0.1", 1), ("198.51.100.20", 1)] {
        let (_, failures) = json(app.get(&admin, &format!("/api/v3/events/events/?action=login_failed&client_ip={address}")).await).await;
        assert_eq!(failures["pagination"]["count"], count, "failures from {address}");
    }

    let (_, sessions) = json(app.get(&admin, "/api/v3/core/authenticated_sessions/").await).await;
    assert_eq!(sessions["results"][0]["last_ip"], "203.0.113.50");
    // authentik's shape of a parsed user agent.
    let agent = &sessions["results"][0]["user_agent"];
    assert_eq!(agent["user_agent"]["family"], "Safari");
    assert_eq!((agent["user_agent"]["major"].as_str(), agent["user_agent"]["minor"].as_str()), (Some("17"), Some("1")));
    assert_eq!(agent["os"]["family"], "Mac OSX");
    assert_eq!(agent["device"]["family"], "pc");
    assert_eq!(agent["string"], ua);
    assert!(sessions["results"][0]["geo_ip"].is_null() && sessions["results"][0]["asn"].is_null());
}

/// Two server processes on one database, as a scaled-out deployment runs them: a revocation
/// through one is honoured by the other, although both cache session checks. On SQLite, which
/// one process serves, a second process must run with the cache off.
#[tokio::test]
async fn revocation_through_one_server_reaches_the_other() {
    let postgres = std::env::var("GATEHOUSE_TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty());
    // On PostgreSQL the caches keep checks for an hour, so only the invalidation message can make
    // a server refuse what it has cached.
    let caches = |c: &mut gatehouse::config::Config| {
        c.sessions.cache_ttl = if postgres { "hours=1" } else { "seconds=0" }.parse().unwrap();
    };
    let first = TestApp::spawn_with(caches).await;
    let second = TestApp::spawn_sharing(&first, caches).await;
    assert_eq!(first.state.config.backend() == gatehouse::config::Backend::Postgres, postgres);
    first.superuser("admin@example.com").await;
    let victim = first.user("victor@example.com", |_| {}).await;
    let admin = first.sign_in("admin@example.com").await;
    let session = first.sign_in("victor@example.com").await;
    let other_session = second.sign_in("victor@example.com").await;
    // Both servers have now checked (and cached) both sessions.
    for app in [&first, &second] {
        for s in [&session, &other_session] {
            assert_eq!(app.get(s, "/api/v3/core/users/me/").await.status(), StatusCode::OK);
        }
    }

    // Sign-out through the second server; the first must refuse that session.
    assert_eq!(second.post(&other_session, "/api/v3/auth/sign_out/", json!({})).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(eventually_refused(&first, &other_session).await, StatusCode::UNAUTHORIZED);

    // An API key switched off through one server stops working on the other, and so does a
    // rotated-away key.
    let (_, key) = first.create_key(&admin, json!({"identifier": "shared-key"})).await;
    for app in [&first, &second] {
        assert_eq!(app.bearer(&key, reqwest::Method::GET, "/api/v3/core/users/me/", None).await.status(), StatusCode::OK);
    }
    let response = second.patch(&admin, "/api/v3/core/tokens/shared-key/", json!({"is_active": false})).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(eventually_refused_key(&first, &key).await, StatusCode::UNAUTHORIZED);
    second.patch(&admin, "/api/v3/core/tokens/shared-key/", json!({"is_active": true})).await;
    assert_eq!(first.bearer(&key, reqwest::Method::GET, "/api/v3/core/users/me/", None).await.status(), StatusCode::OK);
    assert_eq!(second.post(&admin, "/api/v3/core/tokens/shared-key/rotate/", json!({})).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(eventually_refused_key(&first, &key).await, StatusCode::UNAUTHORIZED);

    // Disabling the user through the first server ends the session on the second.
    let response = first.patch(&admin, &format!("/api/v3/core/users/{}/", victim.id), json!({"is_active": false})).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(eventually_refused(&second, &session).await, StatusCode::UNAUTHORIZED);
}

async fn eventually_refused_key(app: &TestApp, key: &str) -> StatusCode {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let status = app.bearer(key, reqwest::Method::GET, "/api/v3/core/users/me/", None).await.status();
        if status != StatusCode::OK || std::time::Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A change drops only the cached checks it can affect, in every process: a permission given to
/// a group reaches at once the members of the groups below it, a disabled account is refused
/// at once, and meanwhile everyone else's requests are still answered from memory. On SQLite,
/// which one process serves, only the first process caches.
#[tokio::test]
async fn a_change_drops_only_the_cached_checks_it_reaches_in_every_process() {
    let postgres = std::env::var("GATEHOUSE_TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty());
    let an_hour = |c: &mut gatehouse::config::Config| c.sessions.cache_ttl = "hours=1".parse().unwrap();
    let first = TestApp::spawn_with(an_hour).await;
    let second = if postgres { Some(TestApp::spawn_sharing(&first, an_hour).await) } else { None };
    let servers: Vec<&TestApp> = std::iter::once(&first).chain(second.as_ref()).collect();
    first.superuser("admin@example.com").await;
    let dave = first.user("dave@example.com", |_| {}).await;
    first.user("alice@example.com", |_| {}).await;
    let bob = first.user("bob@example.com", |_| {}).await;
    let carol = first.user("carol@example.com", |_| {}).await;
    let admin = first.sign_in("admin@example.com").await;
    let dave_session = first.sign_in("dave@example.com").await;
    let alice = first.sign_in("alice@example.com").await;
    let bob_session = first.sign_in("bob@example.com").await;
    let carol_session = first.sign_in("carol@example.com").await;
    let (_, parent) = json(first.post(&admin, "/api/v3/core/groups/", json!({"name": "Staff"})).await).await;
    let child = json!({"name": "Night shift", "parents": [parent["pk"]], "users": [carol.id]});
    assert_eq!(first.post(&admin, "/api/v3/core/groups/", child).await.status(), StatusCode::CREATED);
    // Every listener is connected once a change through the first server reaches the others.
    first.patch(&admin, &format!("/api/v3/core/users/{}/", dave.id), json!({"is_active": false})).await;
    for server in &servers {
        assert_eq!(eventually_refused(server, &dave_session).await, StatusCode::UNAUTHORIZED);
    }
    for server in &servers {
        for session in [&alice, &bob_session, &carol_session] {
            assert_eq!(server.get(session, "/api/v3/core/users/me/").await.status(), StatusCode::OK);
        }
        assert_eq!(users_list(server, &carol_session).await, StatusCode::FORBIDDEN);
    }

    // A permission given to the parent group reaches the member of the group below it.
    let path = format!("/api/v3/core/groups/{}/", parent["pk"].as_str().unwrap());
    let response = first.patch(&admin, &path, json!({"permissions": ["authentik_core.view_user"]})).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(users_list(&first, &carol_session).await, StatusCode::OK, "at once in the process that made the change");
    for server in &servers {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while users_list(server, &carol_session).await != StatusCode::OK && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(users_list(server, &carol_session).await, StatusCode::OK, "the group's new permission reached every process");
        for session in [&alice, &bob_session] {
            assert_eq!(answered_from_memory(server, session).await, (1, 0), "a check the change could not affect stayed cached");
        }
    }

    // A disabled account is refused everywhere; the others' checks stay cached.
    let response = first.patch(&admin, &format!("/api/v3/core/users/{}/", bob.id), json!({"is_active": false})).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(first.get(&bob_session, "/api/v3/core/users/me/").await.status(), StatusCode::UNAUTHORIZED);
    for server in &servers {
        assert_eq!(eventually_refused(server, &bob_session).await, StatusCode::UNAUTHORIZED);
        assert_eq!(answered_from_memory(server, &alice).await, (1, 0));
        assert_eq!(answered_from_memory(server, &carol_session).await, (1, 0));
    }
}

/// A session or key check the cache cannot answer reads the credential with its user in one
/// statement and the user's rights and groups in another, however deep the groups go; one the
/// cache answers reads nothing.
#[tokio::test]
async fn an_uncached_check_takes_two_statements_and_a_cached_one_none() {
    let app = TestApp::spawn_with(|c| c.sessions.cache_ttl = "hours=1".parse().unwrap()).await;
    app.superuser("admin@example.com").await;
    let grace = app
        .user("grace@example.com", |u| {
            u.is_staff = true;
            u.permissions = vec![gatehouse::accounts::permissions::Permission::parse("authentik_core.view_user").unwrap()];
        })
        .await;
    let admin = app.sign_in("admin@example.com").await;
    let group = |body: Value| {
        let request = app.post(&admin, "/api/v3/core/groups/", body);
        async move { json(request.await).await.1["pk"].clone() }
    };
    let top = group(json!({"name": "Top", "permissions": ["authentik_events.view_event"]})).await;
    let middle = group(json!({"name": "Middle", "parents": [top]})).await;
    let bottom =
        group(json!({"name": "Bottom", "parents": [middle], "users": [grace.id], "permissions": ["authentik_core.view_group"]})).await;
    let session = app.sign_in("grace@example.com").await;
    let (_, key) = app.create_key(&session, json!({"identifier": "grace-key"})).await;
    let statements = || app.state.statements.run();

    app.state.auth_cache.invalidate_everything();
    let before = statements();
    let (status, me) = json(app.get(&session, "/api/v3/core/users/me/").await).await;
    assert_eq!((status, statements() - before), (StatusCode::OK, 2), "{me}");
    assert_eq!(me["user"]["groups"], json!([{"pk": bottom, "name": "Bottom"}]), "its own group, not the ones above");
    assert_eq!(me["user"]["is_superuser"], false);
    let before = statements();
    assert_eq!(app.get(&session, "/api/v3/core/users/me/").await.status(), StatusCode::OK);
    assert_eq!(statements() - before, 0, "answered from memory");
    // The check of a key also reserves a guess against the caller's address and settles it.
    let before = statements();
    assert_eq!(app.bearer(&key, Method::GET, "/api/v3/core/users/me/", None).await.status(), StatusCode::OK);
    assert_eq!(statements() - before, 2 + 2);
    let before = statements();
    assert_eq!(app.bearer(&key, Method::GET, "/api/v3/core/users/me/", None).await.status(), StatusCode::OK);
    assert_eq!(statements() - before, 0, "answered from memory");
    // What the user holds of its own and through all three groups, read in those two statements.
    for (path, status) in
        [("/api/v3/core/users/", StatusCode::OK), ("/api/v3/events/events/", StatusCode::OK), ("/api/v3/core/groups/", StatusCode::OK)]
    {
        assert_eq!(app.get(&session, path).await.status(), status, "{path}");
    }
}

async fn users_list(server: &TestApp, session: &Session) -> StatusCode {
    server.get(session, "/api/v3/core/users/").await.status()
}

/// `GET me` with `session`, which must succeed; how many checks it answered from memory and how
/// many it read from the database.
async fn answered_from_memory(server: &TestApp, session: &Session) -> (u64, u64) {
    let before = server.state.auth_cache.stats();
    assert_eq!(server.get(session, "/api/v3/core/users/me/").await.status(), StatusCode::OK);
    let after = server.state.auth_cache.stats();
    (after.hits - before.hits, after.misses - before.misses)
}

/// Notifications between processes are asynchronous (they arrive within milliseconds); this
/// allows them 20 s on a loaded machine and returns the last status seen.
async fn eventually_refused(app: &TestApp, session: &Session) -> StatusCode {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let status = app.get(session, "/api/v3/core/users/me/").await.status();
        if status != StatusCode::OK || std::time::Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn expired_sessions_are_refused_and_purged() {
    use gatehouse::sessions::entities::session;
    use sea_orm::{ColumnTrait, QueryFilter};
    // The cache is off here because the expiry is moved in the database behind the server's back.
    let app = TestApp::spawn_with(|c| c.sessions.cache_ttl = "seconds=0".parse().unwrap()).await;
    app.user("olivia@example.com", |_| {}).await;
    let session = app.sign_in("olivia@example.com").await;
    assert_eq!(app.get(&session, "/api/v3/core/users/me/").await.status(), StatusCode::OK);
    let id: uuid::Uuid = session.body["session"]["uuid"].as_str().unwrap().parse().unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(session.body["session"]["expires"].as_str().unwrap()).unwrap();
    let lifetime = expires.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!((lifetime.num_hours() - 24).abs() <= 1, "sessions.duration defaults to a day");
    let row = session::Entity::find_by_id(id).one(&app.state.db).await.unwrap().unwrap();
    let mut expired = row.into_active_model();
    expired.expires = Set(chrono::Utc::now() - chrono::TimeDelta::seconds(1));
    expired.update(&app.state.db).await.unwrap();
    assert_eq!(app.get(&session, "/api/v3/core/users/me/").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(gatehouse::sessions::service::purge_expired(&app.state.db).await.unwrap(), 1);
    assert!(session::Entity::find().filter(session::Column::Id.eq(id)).one(&app.state.db).await.unwrap().is_none());
}
