//! Limits on guessing under concurrency: a burst of simultaneous attempts gets no more checks
//! than the same attempts one after another, in one server process or several.

use std::time::Instant;

use futures_util::future::join_all;
use gatehouse::events::entities::event;
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;

use crate::support::{PASSWORD, TestApp, json};

/// How many checks `free` free failures allow over `elapsed`: the free ones, then one more each
/// time a delay (1 s, 2 s, 4 s, …) has passed.
pub(crate) fn allowance(free: usize, elapsed: std::time::Duration) -> usize {
    let mut extra = 0;
    let mut waited = 0.0;
    let mut delay = 1.0;
    while waited + delay <= elapsed.as_secs_f64() {
        waited += delay;
        delay *= 2.0;
        extra += 1;
    }
    free + extra
}

async fn failed_sign_in_events(app: &TestApp) -> usize {
    let count = event::Entity::find().filter(event::Column::Action.eq("login_failed")).count(&app.state.db).await.unwrap();
    usize::try_from(count).unwrap()
}

#[tokio::test]
async fn concurrent_guessing_passes_the_account_limit() {
    let first = TestApp::spawn_with(|c| c.sign_in.free_failures_per_ip = 1000).await;
    let second = TestApp::spawn_sharing(&first, |c| c.sign_in.free_failures_per_ip = 1000).await;
    first.user("ada@example.com", |_| {}).await;
    let started = Instant::now();
    let attempts = (0..200).map(|i| {
        let app = if i % 2 == 0 { &first } else { &second };
        async move { app.try_sign_in("ada@example.com", &format!("wrong guess {i}")).await.status() }
    });
    let statuses = join_all(attempts).await;
    let elapsed = started.elapsed();
    let checked = statuses.iter().filter(|s| **s == StatusCode::BAD_REQUEST).count();
    let throttled = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!(checked + throttled, 200, "every attempt is either checked or throttled: {statuses:?}");
    assert!(checked >= 1, "the first guesses are checked");
    let allowed = allowance(first.state.config.sign_in.free_failures_per_account_address as usize, elapsed);
    assert!(checked <= allowed, "{checked} guesses checked in {elapsed:?}, the limit allows {allowed}");
    assert_eq!(failed_sign_in_events(&first).await, checked, "each checked guess is one login_failed event");
}

#[tokio::test]
async fn concurrent_guessing_passes_the_address_limit() {
    let app = TestApp::spawn_with(|c| c.sign_in.free_failures_per_account_address = 1000).await;
    let started = Instant::now();
    let attempts = (0..200).map(|i| {
        let app = &app;
        async move { app.try_sign_in(&format!("spray{i}@example.com"), "a guessed password").await.status() }
    });
    let statuses = join_all(attempts).await;
    let elapsed = started.elapsed();
    let checked = statuses.iter().filter(|s| **s == StatusCode::BAD_REQUEST).count();
    assert_eq!(checked + statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count(), 200, "{statuses:?}");
    let allowed = allowance(app.state.config.sign_in.free_failures_per_ip as usize, elapsed);
    assert!((1..=allowed).contains(&checked), "{checked} guesses checked in {elapsed:?}, the limit allows {allowed}");
}

/// Sends `keys` at once from one address; returns how many were looked up (401) and how long
/// it took, after checking every other answer was 429.
async fn send_keys_at_once(app: &TestApp, keys: Vec<gatehouse::tokens::key::SecretKey>) -> (usize, std::time::Duration) {
    let started = Instant::now();
    let total = keys.len();
    let attempts = keys
        .into_iter()
        .map(|key| async move { app.bearer(key.expose(), reqwest::Method::GET, "/api/v3/core/users/me/", None).await.status() });
    let statuses = join_all(attempts).await;
    let checked = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    assert_eq!(checked + statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count(), total, "{statuses:?}");
    (checked, started.elapsed())
}

#[tokio::test]
async fn concurrent_wrong_bearer_keys_sharing_a_prefix_pass_its_limit() {
    use gatehouse::tokens::key::{KeyKind, SecretKey};
    let app = TestApp::spawn().await;
    // Well-formed keys with valid checksums, completing one prefix: only the database can say
    // they are wrong.
    let known_part = SecretKey::generate(KeyKind::Api);
    let (checked, elapsed) = send_keys_at_once(&app, (0..200).map(|_| known_part.sibling()).collect()).await;
    let allowed = allowance(app.state.config.sign_in.free_failures_per_ip as usize, elapsed);
    assert!((1..=allowed).contains(&checked), "{checked} keys looked up in {elapsed:?}, the limit allows {allowed}");
}

#[tokio::test]
async fn concurrent_wrong_bearer_keys_pass_the_address_ceiling() {
    use gatehouse::tokens::key::{KeyKind, SecretKey};
    let app = TestApp::spawn_with(|c| c.sign_in.max_failures_per_ip_hour = 30).await;
    let (checked, elapsed) = send_keys_at_once(&app, (0..200).map(|_| SecretKey::generate(KeyKind::Api)).collect()).await;
    assert!((1..=30).contains(&checked), "{checked} random keys looked up in {elapsed:?}, the ceiling is 30");
}

#[tokio::test]
async fn many_simultaneous_requests_with_one_uncached_key_are_not_throttled() {
    let app = TestApp::spawn().await;
    app.superuser("root@example.com").await;
    let session = app.sign_in("root@example.com").await;
    let (_, key) = app.create_key(&session, json!({"identifier": "busy-client", "intent": "api"})).await;
    // More requests at once than the address's free failures: each would be reserved as a
    // guess if every one were checked on its own.
    app.state.auth_cache.invalidate_everything();
    let calls = (0..60).map(|_| app.bearer(&key, reqwest::Method::GET, "/api/v3/core/users/me/", None));
    let statuses: Vec<StatusCode> = join_all(calls).await.iter().map(reqwest::Response::status).collect();
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    // And a wrong key afterwards still has the whole allowance: the successes gave theirs back.
    for _ in 0..app.state.config.sign_in.free_failures_per_ip {
        let wrong = gatehouse::tokens::key::SecretKey::generate(gatehouse::tokens::key::KeyKind::Api);
        let response = app.bearer(wrong.expose(), reqwest::Method::GET, "/api/v3/core/users/me/", None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn a_full_password_queue_answers_busy_at_once_and_counts_nothing() {
    let app = TestApp::spawn_with(|c| {
        c.passwords.hash_queue = 0;
        c.sign_in.free_failures_per_account_address = 1;
        c.sign_in.free_failures_per_ip = 1000;
    })
    .await;
    let attempts = (0..40).map(|i| {
        let app = &app;
        async move { (i, app.try_sign_in(&format!("busy{i}@example.com"), "a guessed password").await) }
    });
    let responses = join_all(attempts).await;
    let mut busy = Vec::new();
    for (i, response) in responses {
        match response.status() {
            StatusCode::BAD_REQUEST => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
                let (_, body) = json(response).await;
                assert_eq!(body["detail"], "The server is busy. Try again shortly.");
                busy.push(i);
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(!busy.is_empty(), "40 simultaneous checks on {} password threads with no queue", std::thread::available_parallelism().unwrap());
    // A refused check was given back: the account's one free failure is still there, so the next
    // guess is checked (400), not throttled (429).
    use gatehouse::credentials::attempts::counter;
    for i in &busy {
        let row =
            counter::Entity::find_by_id((app.state.tenant.0, format!("account:busy{i}@example.com"))).one(&app.state.db).await.unwrap();
        assert_eq!(row.map_or(0, |r| r.failures), 0, "busy{i} was counted although never checked");
    }
    for i in busy {
        let response = app.try_sign_in(&format!("busy{i}@example.com"), "a guessed password").await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "busy{i} was counted although never checked");
    }
    // The right password still works once the burst is over.
    app.user("calm@example.com", |_| {}).await;
    assert_eq!(app.try_sign_in("calm@example.com", PASSWORD).await.status(), StatusCode::OK);
}

/// The failures each limit's bucket holds now.
async fn counted_failures(app: &TestApp) -> Vec<(String, i32)> {
    use gatehouse::credentials::attempts::counter;
    counter::Entity::find().all(&app.state.db).await.unwrap().into_iter().map(|row| (row.bucket, row.failures)).collect()
}

/// Waits until no bucket counts a failure; fails naming `what` stayed counted.
async fn wait_until_every_bucket_is_clear(app: &TestApp, what: &str) {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let counted = counted_failures(app).await;
        if counted.iter().all(|(_, failures)| *failures <= 0) {
            return;
        }
        assert!(Instant::now() < deadline, "{what} stayed counted: {counted:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The same for an API key: a key whose client went away while it was looked up is given back
/// like any key that exists. The lookup is held up by a lock on the keys' table until the
/// server has let go of the request (PostgreSQL only: SQLite has no table locks to hold a reader).
#[tokio::test]
async fn a_key_check_whose_client_stops_waiting_still_gives_its_guess_back() {
    use sea_orm::sqlx::{Connection, Executor};
    let app = TestApp::spawn().await;
    if app.state.config.backend() != gatehouse::config::Backend::Postgres {
        return;
    }
    app.superuser("root@example.com").await;
    let root = app.sign_in("root@example.com").await;
    let (_, key) = app.create_key(&root, json!({"identifier": "abandoned"})).await;
    let mut holder = sea_orm::sqlx::PgConnection::connect(&app.state.config.database_url()).await.unwrap();
    holder.execute("BEGIN; LOCK TABLE tokens IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let request = app.client.get(app.url("/api/v3/core/users/me/")).header("authorization", format!("Bearer {key}"));
    let check = tokio::spawn(request.send());
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while !counted_failures(&app).await.iter().any(|(_, failures)| *failures > 0) {
        assert!(Instant::now() < deadline && !check.is_finished(), "the key was never reserved");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    check.abort();
    assert!(check.await.is_err_and(|error| error.is_cancelled()));
    // Nothing tells when the server notices the closed connection and drops the request; the
    // lock holds the lookup until well after that.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    holder.execute("ROLLBACK").await.unwrap();
    wait_until_every_bucket_is_clear(&app, "the abandoned key check").await;
    assert_eq!(app.bearer(&key, reqwest::Method::GET, "/api/v3/core/users/me/", None).await.status(), StatusCode::OK);
}

/// A right password whose client went away while it was checked (a closed tab, a timeout) gives
/// its attempt back like any right password: the check runs to its end without the request.
/// Before, the reservation stayed counted as a failure of the address and the account for the
/// rest of the hour, and an address's dropped requests added up until every sign-in from it was
/// delayed.
#[tokio::test]
async fn a_sign_in_whose_client_stops_waiting_still_gives_its_attempt_back() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com", |_| {}).await;
    // Stop waiting once the attempt is reserved, while its password is being checked; a sign-in
    // that ended before its reservation was seen is tried again.
    let mut abandoned = false;
    for _ in 0..5 {
        let request = app.client.post(app.url("/api/v3/auth/sign_in/")).json(&json!({"email": "ada@example.com", "password": PASSWORD}));
        let sign_in = tokio::spawn(request.send());
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        let mut reserved = false;
        while !sign_in.is_finished() && Instant::now() < deadline {
            if counted_failures(&app).await.iter().any(|(_, failures)| *failures > 0) {
                reserved = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        sign_in.abort();
        if reserved && sign_in.await.is_err_and(|error| error.is_cancelled()) {
            abandoned = true;
            break;
        }
    }
    assert!(abandoned, "no sign-in was abandoned while its password was checked");
    // Every bucket is given its attempt back (the account's cleared).
    wait_until_every_bucket_is_clear(&app, "the abandoned attempt").await;
    assert_eq!(app.try_sign_in("ada@example.com", PASSWORD).await.status(), StatusCode::OK);
}
