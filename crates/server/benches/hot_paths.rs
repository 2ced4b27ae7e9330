//! Benchmarks of the hot paths: the password hash (the only real cost of a sign-in), the session
//! check every cookie-authenticated request pays, and the keyed digest behind it.
//!
//! Run with `cargo bench -p gatehouse --bench hot_paths`.

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse::accounts::access::Actor;
use gatehouse::accounts::password::{self, Password};
use gatehouse::accounts::users::{self as service, NewUser};
use gatehouse::config::Config;
use gatehouse::events::client::ClientInfo;
use gatehouse::secret::ServerSecret;
use gatehouse::sessions;
use gatehouse_types::Email;

fn password_hash(c: &mut Criterion) {
    let password = Password::new("correct horse battery staple 42".into());
    let stored = password::hash(&password).unwrap();
    let mut group = c.benchmark_group("password");
    group.sample_size(30);
    group.bench_function("argon2id_hash", |b| b.iter(|| password::hash(&password).unwrap()));
    group.bench_function("argon2id_verify", |b| b.iter(|| password::verify(&password, &stored)));
    group.finish();
}

fn session_check(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        secret_key: Some("benchmark-secret-key-long-enough-0123456789".into()),
        ..Default::default()
    };
    let client = ClientInfo { ip: Some("127.0.0.1".parse().unwrap()), user_agent: "bench".into(), known_browser: None };
    // The check on the database (the in-process cache off), then the same check answered from
    // the cache: the second is a map lookup and says nothing about the database's cost.
    let mut uncached_config = config.clone();
    uncached_config.sessions.cache_ttl = "seconds=0".parse().unwrap();
    let (state, key) = runtime.block_on(async {
        let state = gatehouse::app::build_state(uncached_config).await.unwrap();
        let user =
            service::create_user(&state, &Actor::system(), NewUser::with_email(Email::parse("bench@example.com").unwrap())).await.unwrap();
        let session = sessions::service::create(&state.db, &state, &user, &client, chrono::TimeDelta::days(1)).await.unwrap();
        (state, session.key)
    });
    c.bench_function("session_check_uncached_sqlite", |b| {
        b.to_async(&runtime).iter(|| async {
            let found = sessions::service::authenticate(&state, &key, &client).await.unwrap();
            assert!(found.is_some());
        })
    });
    let cached_dir = tempfile::tempdir().unwrap();
    let cached_config = Config { data_dir: cached_dir.path().to_path_buf(), ..config };
    let (cached, cached_key) = runtime.block_on(async {
        let state = gatehouse::app::build_state(cached_config).await.unwrap();
        let user =
            service::create_user(&state, &Actor::system(), NewUser::with_email(Email::parse("bench@example.com").unwrap())).await.unwrap();
        let session = sessions::service::create(&state.db, &state, &user, &client, chrono::TimeDelta::days(1)).await.unwrap();
        (state, session.key)
    });
    c.bench_function("session_check_cached", |b| {
        b.to_async(&runtime).iter(|| async {
            let found = sessions::service::authenticate(&cached, &cached_key, &client).await.unwrap();
            assert!(found.is_some());
        })
    });
    let secret = ServerSecret::from_bytes(b"benchmark-secret-key-long-enough-0123456789");
    c.bench_function("session_key_digest", |b| b.iter(|| secret.digest("session", key.as_bytes())));
}

/// A state on `url` (SQLite in `dir` when `None`) with one staff user and one API key.
fn state_with_key(
    runtime: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    url: Option<String>,
    cache: bool,
) -> (gatehouse::state::AppState, String) {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        secret_key: Some("benchmark-secret-key-long-enough-0123456789".into()),
        ..Default::default()
    };
    if let Some(url) = url {
        config.database.url = url;
    }
    if !cache {
        config.sessions.cache_ttl = "seconds=0".parse().unwrap();
    }
    runtime.block_on(async {
        let state = gatehouse::app::build_state(config).await.unwrap();
        let email = format!("bench-{}@example.com", uuid::Uuid::new_v4().simple());
        let mut new = NewUser::with_email(Email::parse(&email).unwrap());
        new.is_staff = true;
        let user = service::create_user(&state, &Actor::system(), new).await.unwrap();
        let token = gatehouse::tokens::service::NewToken {
            identifier: format!("bench-{}", uuid::Uuid::new_v4().simple()),
            intent: gatehouse::tokens::service::Intent::Api,
            user_id: user.id,
            name: String::new(),
            description: String::new(),
            managed: None,
            expiring: false,
            expires: None,
            tags: Vec::new(),
        };
        let (_, key) = gatehouse::tokens::service::create(&state, &Actor::system(), token).await.unwrap();
        (state, key.expose().to_owned())
    })
}

fn api_key_check(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cached, key) = state_with_key(&runtime, dir.path(), None, true);
    c.bench_function("api_key_check_cached", |b| {
        b.to_async(&runtime).iter(|| async {
            assert!(
                gatehouse::tokens::service::authenticate(&cached, &key, Some(std::net::Ipv4Addr::LOCALHOST.into()))
                    .await
                    .unwrap()
                    .is_some()
            )
        })
    });
    c.bench_function("api_key_parse_and_checksum", |b| b.iter(|| gatehouse::tokens::key::SecretKey::parse(&key).unwrap()));
    let uncached_dir = tempfile::tempdir().unwrap();
    let (uncached, key) = state_with_key(&runtime, uncached_dir.path(), None, false);
    c.bench_function("api_key_check_uncached_sqlite", |b| {
        b.to_async(&runtime).iter(|| async {
            assert!(
                gatehouse::tokens::service::authenticate(&uncached, &key, Some(std::net::Ipv4Addr::LOCALHOST.into()))
                    .await
                    .unwrap()
                    .is_some()
            )
        })
    });
    // PostgreSQL when a database is named: GATEHOUSE_BENCH_DATABASE_URL=postgres://... (it gets
    // migrated and a benchmark user added).
    if let Ok(url) = std::env::var("GATEHOUSE_BENCH_DATABASE_URL") {
        let pg_dir = tempfile::tempdir().unwrap();
        let (postgres, key) = state_with_key(&runtime, pg_dir.path(), Some(url), false);
        c.bench_function("api_key_check_uncached_postgres", |b| {
            b.to_async(&runtime).iter(|| async {
                assert!(
                    gatehouse::tokens::service::authenticate(&postgres, &key, Some(std::net::Ipv4Addr::LOCALHOST.into()))
                        .await
                        .unwrap()
                        .is_some()
                )
            })
        });
    }
}

criterion_group!(benches, password_hash, session_check, api_key_check);
criterion_main!(benches);
