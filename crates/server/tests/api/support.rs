//! Starting servers for tests and talking to them.

use std::future::pending;

use gatehouse::accounts::access::Actor;
use gatehouse::accounts::entities::user;
use gatehouse::accounts::permissions::Permission;
use gatehouse::accounts::users::{self as service, NewUser};
use gatehouse::app::Server;
use gatehouse::config::Config;
use gatehouse::state::AppState;
use gatehouse_types::Email;
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;

/// The session cookie's name: test servers keep the default `secure_cookies`, so `__Host-`.
pub const SESSION_COOKIE: &str = "__Host-gatehouse_session";
/// The flow run cookie's name.
pub const FLOW_COOKIE: &str = "__Host-gatehouse_flow";
/// The CSRF cookie's name.
pub const CSRF_COOKIE: &str = "__Host-gatehouse_csrf";

/// The message for text holding U+0000.
pub const NULL_CHARACTER_MESSAGE: &str = "Null characters are not allowed.";

/// A password every test user gets unless a test says otherwise; strong enough for the rules.
pub const PASSWORD: &str = "correct horse battery staple 42";

/// Secrets the suite has used (passwords, keys, cookie values, tokens), at least 8 characters.
static SECRETS: std::sync::Mutex<std::collections::BTreeSet<String>> = std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Notes a secret the suite used; the logs must never contain it.
pub fn remember_secret(secret: &str) {
    if secret.len() >= 8 {
        SECRETS.lock().unwrap().insert(secret.to_owned());
    }
}

/// Fields whose values are secrets, in requests and responses.
const SECRET_FIELDS: [&str; 7] = ["password", "new_password", "current_password", "key", "csrf_token", "token", "secret"];

/// Notes the values of secret-named fields anywhere in a request or response body.
pub fn remember_secrets_in(body: &Value) {
    match body {
        Value::Object(map) => {
            for (name, value) in map {
                let secret_named = SECRET_FIELDS.contains(&name.as_str());
                match value {
                    Value::String(text) if secret_named => remember_secret(text),
                    other => remember_secrets_in(other),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(remember_secrets_in),
        _ => {}
    }
}

fn log_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("gatehouse-api-tests-{}.log", std::process::id()))
}

/// Sends every log line of the suite, at debug level, to a file, and checks at exit that no
/// secret the suite used appears in it: the process then exits with status 1, failing the run.
fn capture_logs() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let file = std::fs::File::create(log_path()).expect("create the log capture file");
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .try_init()
            .expect("no other subscriber in the test process");
        // SAFETY: registering a plain function that takes no arguments with the C runtime.
        unsafe extern "C" {
            fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
        }
        assert_eq!(unsafe { atexit(check_logs_for_secrets) }, 0);
    });
}

extern "C" fn check_logs_for_secrets() {
    unsafe extern "C" {
        fn _exit(status: std::ffi::c_int) -> !;
    }
    let secrets: Vec<String> = SECRETS.lock().map(|s| s.iter().cloned().collect()).unwrap_or_default();
    let log = std::fs::read(log_path()).unwrap_or_default();
    let matcher = aho_corasick::AhoCorasick::new(&secrets).expect("secrets form a matcher");
    let mut leaks = 0;
    for found in matcher.find_iter(&log) {
        leaks += 1;
        if leaks <= 10 {
            let line_start = log[..found.start()].iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let line_end = log[found.end()..].iter().position(|b| *b == b'\n').map_or(log.len(), |i| found.end() + i);
            let line = String::from_utf8_lossy(&log[line_start..line_end]).replace(&secrets[found.pattern().as_usize()], "<SECRET>");
            eprintln!("a secret used by the suite reached the logs: {}", line.chars().take(400).collect::<String>());
        }
    }
    eprintln!("log capture: {} bytes of debug logs checked against {} secrets, {leaks} found", log.len(), secrets.len());
    if leaks > 0 {
        unsafe { _exit(1) };
    }
    let _ = std::fs::remove_file(log_path());
}

/// The database for one test: a SQLite file in `dir`, or a fresh PostgreSQL database.
pub async fn fresh_database_url(dir: &std::path::Path) -> String {
    match std::env::var("GATEHOUSE_TEST_DATABASE_URL") {
        Ok(admin_url) if !admin_url.is_empty() => {
            use sea_orm::sqlx::{Connection, Executor};
            let name = format!("gh_test_{}", uuid::Uuid::new_v4().simple());
            let mut admin = sea_orm::sqlx::PgConnection::connect(&admin_url)
                .await
                .expect("GATEHOUSE_TEST_DATABASE_URL is set but PostgreSQL cannot be reached");
            admin.execute(sea_orm::sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("create test database");
            let (base, _) = admin_url.rsplit_once('/').expect("database URL has a path");
            format!("{base}/{name}")
        }
        _ => format!("sqlite://{}", dir.join("gatehouse.sqlite3").display()),
    }
}

/// The address the server `process` reports, in its log, that it listens on: the server binds
/// port 0 itself, so no other process can take the port between choosing and binding it.
pub async fn bound_address(process: &mut std::process::Child, log_path: &std::path::Path, err_path: &std::path::Path) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let logs = std::fs::read_to_string(log_path).unwrap_or_default();
        let ready = logs
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|line| line["message"] == "gatehouse is ready");
        if let Some(line) = ready {
            return line["addr"].as_str().expect("the ready line names the address").to_owned();
        }
        let exited = process.try_wait().expect("the server's status can be read");
        assert!(
            exited.is_none() && std::time::Instant::now() < deadline,
            "server never became ready ({}): {}",
            exited.map_or("still running".to_owned(), |status| status.to_string()),
            std::fs::read_to_string(err_path).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A running server.
pub struct TestApp {
    pub base: String,
    pub metrics_base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    /// Task workers of this server, stopped with it.
    workers: std::sync::Mutex<Vec<gatehouse::tasks::worker::WorkerHandle>>,
    _dir: tempfile::TempDir,
}

/// A signed-in client: the session cookie and the CSRF token.
#[derive(Clone)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
    pub body: Value,
}

/// Configuration for a test server: random ports, a fresh database, a fixed secret.
pub async fn test_config(dir: &std::path::Path, database_url: Option<String>) -> Config {
    let mut config = Config { data_dir: dir.to_path_buf(), ..Default::default() };
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    config.secret_key = Some("test-secret-key-that-is-long-enough-0123456789".into());
    config.database.url = match database_url {
        Some(url) => url,
        None => fresh_database_url(dir).await,
    };
    // Many test servers share one PostgreSQL: a smaller pool each. SQLite keeps its default.
    if config.backend() == gatehouse::config::Backend::Postgres {
        config.database.max_connections = Some(5);
    }
    config
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_on(None, adjust).await
    }

    /// A second server process on the database of `other`, as a scaled-out deployment runs.
    pub async fn spawn_sharing(other: &TestApp, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_on(Some(other.state.config.database_url()), adjust).await
    }

    /// A server on an existing database, such as one an older release wrote.
    pub async fn spawn_on_database(database_url: String) -> Self {
        Self::spawn_on(Some(database_url), |_| {}).await
    }

    async fn spawn_on(database_url: Option<String>, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_full(database_url, adjust, gatehouse::tasks::Registry::builtin()).await
    }

    /// A server whose tasks may also run `actors`.
    pub async fn spawn_with_actors(adjust: impl FnOnce(&mut Config), actors: gatehouse::tasks::Registry) -> Self {
        Self::spawn_full(None, adjust, actors).await
    }

    async fn spawn_full(database_url: Option<String>, adjust: impl FnOnce(&mut Config), actors: gatehouse::tasks::Registry) -> Self {
        capture_logs();
        remember_secret(PASSWORD);
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path(), database_url).await;
        adjust(&mut config);
        let server = Server::bind_with(config, actors).await.expect("server starts");
        let base = format!("http://{}", server.addr());
        let metrics_base = format!("http://{}", server.metrics_addr().unwrap());
        let state = server.state.clone();
        // Limits on guessing read a stopped clock: a test stays inside a throttle window however
        // slowly the machine runs, and moves past a delay with `state.clock.advance`, not a sleep.
        state.clock.stop();
        tokio::spawn(server.run(pending()));
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { base, metrics_base, client, state, workers: Default::default(), _dir: dir }
    }

    /// This server's state as a second tenant in the same database would see it.
    pub async fn other_tenant(&self) -> AppState {
        use sea_orm::{ActiveModelTrait, Set};
        let other = gatehouse::tenants::entity::ActiveModel {
            id: Set(uuid::Uuid::new_v4()),
            slug: Set("other".into()),
            name: Set("Other".into()),
            is_default: Set(false),
            created: Set(chrono::Utc::now()),
        }
        .insert(&self.state.db)
        .await
        .expect("a second tenant");
        self.state.modified(|state| state.tenant = gatehouse::tenants::TenantId(other.id))
    }

    /// Starts a task worker beside the server, as `serve` runs one: codes leave through the queue.
    pub async fn run_worker(&self) {
        let worker = gatehouse::tasks::worker::start(self.state.clone(), 4).await.expect("worker starts");
        self.workers.lock().unwrap().push(worker);
    }

    /// Stops this server's task workers as `gatehouse worker` stops on SIGTERM: tasks still
    /// running past `tasks.shutdown_deadline` are cut off and go back to the queue.
    pub async fn stop_workers(&self) {
        let workers: Vec<_> = self.workers.lock().unwrap().drain(..).collect();
        for worker in workers {
            worker.shutdown().await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Creates a user directly through the accounts service.
    pub async fn user(&self, email: &str, adjust: impl FnOnce(&mut NewUser)) -> user::Model {
        let mut new = NewUser::with_email(Email::parse(email).unwrap());
        new.password = Some(gatehouse::accounts::password::Password::new(PASSWORD.into()));
        adjust(&mut new);
        service::create_user(&self.state, &Actor::system(), new).await.expect("create user")
    }

    pub async fn superuser(&self, email: &str) -> user::Model {
        self.user(email, |u| {
            u.is_superuser = true;
            u.is_staff = true;
        })
        .await
    }

    /// A user holding the given permissions.
    pub async fn user_with(&self, email: &str, permissions: &[&str]) -> user::Model {
        let permissions: Vec<Permission> = permissions.iter().map(|p| Permission::parse(p).unwrap()).collect();
        self.user(email, |u| u.permissions = permissions).await
    }

    pub async fn try_sign_in(&self, email: &str, password: &str) -> Response {
        remember_secret(password);
        self.client
            .post(self.url("/api/v3/auth/sign_in/"))
            .json(&serde_json::json!({ "email": email, "password": password }))
            .send()
            .await
            .unwrap()
    }

    pub async fn sign_in(&self, email: &str) -> Session {
        let response = self.try_sign_in(email, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::OK, "sign-in of {email} failed");
        session_from(response).await
    }

    /// A request as `session` (cookie plus CSRF header); `None` sends neither.
    pub async fn call(&self, session: Option<&Session>, method: Method, path: &str, body: Option<Value>) -> Response {
        if let Some(body) = &body {
            remember_secrets_in(body);
        }
        let mut request = self.client.request(method, self.url(path));
        if let Some(session) = session {
            request = request.header("cookie", &session.cookie).header("x-csrftoken", &session.csrf);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    /// A request authenticated with an API key.
    pub async fn bearer(&self, key: &str, method: Method, path: &str, body: Option<Value>) -> Response {
        remember_secret(key);
        if let Some(body) = &body {
            remember_secrets_in(body);
        }
        let mut request = self.client.request(method, self.url(path)).header("authorization", format!("Bearer {key}"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    /// Creates a token through the API as `session` and reads its key with `view_key/`.
    pub async fn create_key(&self, session: &Session, body: Value) -> (Value, String) {
        let (status, token) = json(self.post(session, "/api/v3/core/tokens/", body).await).await;
        assert_eq!(status, StatusCode::CREATED, "{token}");
        let identifier = token["identifier"].as_str().unwrap();
        let (status, view) = json(self.get(session, &format!("/api/v3/core/tokens/{identifier}/view_key/")).await).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        (token, view["key"].as_str().unwrap().to_owned())
    }

    pub async fn get(&self, session: &Session, path: &str) -> Response {
        self.call(Some(session), Method::GET, path, None).await
    }

    pub async fn post(&self, session: &Session, path: &str, body: Value) -> Response {
        self.call(Some(session), Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, session: &Session, path: &str, body: Value) -> Response {
        self.call(Some(session), Method::PATCH, path, Some(body)).await
    }

    pub async fn put(&self, session: &Session, path: &str, body: Value) -> Response {
        self.call(Some(session), Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, session: &Session, path: &str) -> Response {
        self.call(Some(session), Method::DELETE, path, None).await
    }
}

/// Reads the session cookie and CSRF token from a successful sign-in.
pub async fn session_from(response: Response) -> Session {
    remember_cookies(&response);
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{SESSION_COOKIE}=")))
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_owned();
    let body: Value = response.json().await.unwrap();
    remember_secrets_in(&body);
    let csrf = body["csrf_token"].as_str().expect("csrf token").to_owned();
    Session { cookie, csrf, body }
}

/// The status and JSON body of a response.
pub async fn json(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    remember_cookies(&response);
    let text = response.text().await.unwrap();
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    remember_secrets_in(&body);
    (status, body)
}

/// Notes the values of the cookies a response sets.
pub fn remember_cookies(response: &Response) {
    for value in response.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()) {
        if let Some((_, value)) = value.split(';').next().and_then(|pair| pair.split_once('=')) {
            remember_secret(value);
        }
    }
}

/// Asserts a 400 whose body names `field`.
pub async fn assert_field_error(response: Response, field: &str) -> Value {
    let (status, body) = json(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "expected 400 naming {field}, got {status}: {body}");
    assert!(body.get(field).and_then(Value::as_array).is_some_and(|m| !m.is_empty()), "expected an error for {field}: {body}");
    body
}

/// Asserts authentik's 403 body.
pub async fn assert_forbidden(response: Response) {
    let (status, body) = json(response).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["detail"], "You do not have permission to perform this action.");
}

/// A proptest runner for the oracles: `default_cases` cases unless the environment variable
/// `cases_variable` says otherwise, failing seeds kept beside `source_file` and replayed first.
pub fn oracle_runner(cases_variable: &str, default_cases: u32, source_file: &'static str) -> proptest::test_runner::TestRunner {
    use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
    let cases = std::env::var(cases_variable).ok().and_then(|v| v.parse().ok()).unwrap_or(default_cases);
    TestRunner::new(Config {
        cases,
        source_file: Some(source_file),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..Config::default()
    })
}

/// A local S3-compatible server: moto in server mode (`scripts/test` installs it and names it
/// in `MOTO_SERVER_BIN`). It runs under a shell that kills it when this process's end of its
/// standard input closes, so it never outlives the suite, whatever way the suite ends.
pub struct S3Server {
    pub endpoint: String,
    child: std::process::Child,
}

impl S3Server {
    /// Starts a server of its own on a random port.
    pub fn start() -> Self {
        use std::io::BufRead;
        let moto = std::env::var("MOTO_SERVER_BIN")
            .ok()
            .filter(|p| !p.is_empty())
            .or_else(|| std::env::var("HOME").ok().map(|home| format!("{home}/.cache/gatehouse-s3-venv/bin/moto_server")))
            .filter(|p| std::path::Path::new(p).exists())
            .expect("the media tests need moto's S3 server: run scripts/test, which installs it, or set MOTO_SERVER_BIN");
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(r#""$0" -H 127.0.0.1 -p 0 2>&1 & server=$!; cat >/dev/null; kill $server"#)
            .arg(&moto)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("moto's output")).lines();
        let endpoint = loop {
            let line = lines.next().expect("moto_server reports where it listens").expect("moto's output is text");
            if let Some(at) = line.find("Running on http://") {
                break line[at + "Running on ".len()..].trim().to_owned();
            }
        };
        // Keep reading its log so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { endpoint, child }
    }

    /// The server the suite shares; each test uses buckets of its own.
    pub fn shared() -> &'static S3Server {
        static SHARED: std::sync::OnceLock<S3Server> = std::sync::OnceLock::new();
        SHARED.get_or_init(S3Server::start)
    }

    /// Configures `config` to keep uploads in the bucket `bucket` of this server.
    pub fn configure(&self, config: &mut Config, bucket: &str, create_bucket: bool) {
        config.media.backend = gatehouse::config::MediaBackend::S3;
        let s3 = &mut config.media.s3;
        s3.endpoint = self.endpoint.clone();
        s3.bucket = bucket.to_owned();
        s3.region = "us-east-1".into();
        s3.path_style = true;
        s3.access_key_id = "gatehouse-test".into();
        s3.secret_access_key = S3_SECRET.into();
        s3.create_bucket = create_bucket;
        s3.timeout = gatehouse_types::DurationString::from_secs(5);
        remember_secret(S3_SECRET);
    }

    /// Stops the server, as an outage would.
    pub fn stop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The secret access key test servers use with moto, which accepts any.
const S3_SECRET: &str = "gatehouse-test-s3-secret-access-key";

/// A bucket name no other test uses.
pub fn fresh_bucket() -> String {
    format!("gh-{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

/// A valid PNG of `width` by `height` transparent pixels (stored, not compressed).
pub fn png(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.finalize().to_be_bytes());
    }
    let mut raw = Vec::new();
    for _ in 0..height {
        raw.push(0); // no filter
        raw.extend(std::iter::repeat_n(0u8, 4 * width as usize));
    }
    // A zlib stream of stored blocks (at most 65,535 bytes each) and its Adler-32.
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (index, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(index == blocks.len() - 1));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for byte in &raw {
        a = (a + u32::from(*byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    zlib.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &zlib);
    chunk(&mut out, b"IEND", &[]);
    out
}

impl TestApp {
    /// Uploads `content` as `file_name` through `/admin/file/` as `session`, with `fields` as
    /// the other parts of the form.
    pub async fn upload(&self, session: &Session, file_name: &str, content: Vec<u8>, fields: &[(&str, &str)]) -> Response {
        let mut form =
            reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(content).file_name(file_name.to_owned()));
        for (name, value) in fields {
            form = form.text(name.to_string(), value.to_string());
        }
        self.upload_form(session, form).await
    }

    /// Posts `form` as it is to `/admin/file/` as `session`.
    pub async fn upload_form(&self, session: &Session, form: reqwest::multipart::Form) -> Response {
        self.client
            .post(self.url("/api/v3/admin/file/"))
            .header("cookie", &session.cookie)
            .header("x-csrftoken", &session.csrf)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }
}
