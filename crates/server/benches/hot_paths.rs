//! Benchmarks of the hot paths: the password hash (the only real cost of a sign-in), the session
//! check every cookie-authenticated request pays, and the keyed digest behind it.
//!
//! Run with `cargo bench -p gatehouse --bench hot_paths`.

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse::accounts::password::{self, Password};
use gatehouse::accounts::service::{self, Actor, NewUser};
use gatehouse::config::Config;
use gatehouse::http::client::ClientInfo;
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
    let client = ClientInfo { ip: Some("127.0.0.1".parse().unwrap()), user_agent: "bench".into() };
    let (state, key) = runtime.block_on(async {
        let state = gatehouse::app::build_state(config).await.unwrap();
        let user =
            service::create_user(&state, &Actor::system(), NewUser::with_email(Email::parse("bench@example.com").unwrap())).await.unwrap();
        let session = sessions::service::create(&state.db, &state, &user, &client).await.unwrap();
        (state, session.key)
    });
    c.bench_function("session_check_sqlite", |b| {
        b.to_async(&runtime).iter(|| async {
            let found = sessions::service::authenticate(&state, &key, &client).await.unwrap();
            assert!(found.is_some());
        })
    });
    let secret = ServerSecret::from_bytes(b"benchmark-secret-key-long-enough-0123456789");
    c.bench_function("session_key_digest", |b| b.iter(|| secret.digest("session", key.as_bytes())));
}

criterion_group!(benches, password_hash, session_check);
criterion_main!(benches);
