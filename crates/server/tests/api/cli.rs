//! The `gatehouse` binary: configuration precedence and errors, user creation, serve,
//! healthcheck, graceful shutdown, and that secrets never reach the logs.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// A command with a clean `GATEHOUSE_*` environment and the given data directory.
fn gatehouse(dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("GATEHOUSE_") {
            command.env_remove(key);
        }
    }
    command.env("GATEHOUSE_DATA_DIR", dir).current_dir(dir);
    command
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn configuration_precedence_is_defaults_then_file_then_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gatehouse.toml");
    std::fs::write(
        &file,
        "secret_key = \"file-secret-that-is-long-enough-for-the-rules\"\n[server]\nlisten = \"127.0.0.1:9100\"\n[sessions]\nduration = \"hours=2\"\n[database]\nurl = \"postgres://gh:hunter2hunter2@db.internal/gatehouse\"\n",
    )
    .unwrap();
    let output = gatehouse(dir.path())
        .args(["--config", file.to_str().unwrap(), "config", "show"])
        .env("GATEHOUSE_SERVER__LISTEN", "127.0.0.1:9200")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let shown = stdout(&output);
    assert!(shown.contains("listen = \"127.0.0.1:9200\""), "environment beats the file:\n{shown}");
    assert!(shown.contains("duration = \"hours=2\""), "the file beats the defaults:\n{shown}");
    assert!(shown.contains("min_length = 8"), "defaults fill the rest:\n{shown}");
    assert!(!shown.contains("hunter2") && !shown.contains("file-secret"), "secrets are redacted:\n{shown}");
    assert!(shown.contains("postgres://gh:********@db.internal/gatehouse"));

    // GATEHOUSE_CONFIG names the file too.
    let output = gatehouse(dir.path()).args(["config", "show"]).env("GATEHOUSE_CONFIG", &file).output().unwrap();
    assert!(stdout(&output).contains("listen = \"127.0.0.1:9100\""));
}

#[test]
fn invalid_configuration_stops_with_the_key_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[(&str, &str)], &str); 10] = [
        (&[("GATEHOUSE_SESSIONS__DURATION", "months=1")], "sessions.duration"),
        (&[("GATEHOUSE_SESSIONS__DURATION", "")], "hours=3;minutes=1"),
        (&[("GATEHOUSE_SERVER__LISTEN", "not-an-address")], "server.listen"),
        (&[("GATEHOUSE_PASSWORDS__MIN_LENGTH", "4")], "passwords.min_length"),
        (&[("GATEHOUSE_DATABASE__URL", "postgres://localhost/gatehouse")], "secret_key"),
        (
            &[("GATEHOUSE_SERVER__LISTN", "127.0.0.1:1")],
            "unknown setting server.listn (from the environment variable GATEHOUSE_SERVER__LISTN); did you mean server.listen (GATEHOUSE_SERVER__LISTEN)?",
        ),
        (
            &[("GATEHOUSE_SERVER_LISTEN", "127.0.0.1:1")],
            "unknown setting server_listen (from the environment variable GATEHOUSE_SERVER_LISTEN); did you mean server.listen (GATEHOUSE_SERVER__LISTEN)?",
        ),
        (&[("GATEHOUSE_LOG__LEVEL", "loud")], "log.level: 'loud' names no level"),
        (&[("GATEHOUSE_LOG__LEVEL", "info,gatehouse=noisy")], "'gatehouse=noisy' names no level"),
        (&[("GATEHOUSE_SERVER__LISTEN", "localhost:9000")], "server.listen: invalid socket address syntax: use an IP address and a port"),
    ];
    for (env, expected) in cases {
        let mut command = gatehouse(dir.path());
        command.args(["serve"]);
        for (key, value) in env {
            command.env(key, value);
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{env:?}");
        let message = stderr(&output);
        assert!(message.contains(expected), "{env:?}: {message}");
    }
    for (toml, expected) in [
        ("listen = \"127.0.0.1:9000\"\n", "unknown setting listen (in FILE); did you mean server.listen?"),
        ("[sever]\nlisten = \"127.0.0.1:9000\"\n", "unknown setting sever (in FILE); did you mean server?"),
        ("[server]\nlisten = \"127.0.0.1:9000\"\nfrobnicate = true\n", "unknown setting server.frobnicate (in FILE)"),
    ] {
        let file = dir.path().join("gatehouse.toml");
        std::fs::write(&file, toml).unwrap();
        let output = gatehouse(dir.path()).args(["--config", file.to_str().unwrap(), "config", "show"]).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{toml}");
        let expected = expected.replace("FILE", &file.display().to_string());
        assert_eq!(stderr(&output).trim_end(), format!("gatehouse: invalid configuration: {expected}"), "{toml}");
    }
    let missing = gatehouse(dir.path()).args(["--config", "/nonexistent/gatehouse.toml", "config", "show"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("does not exist"));
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_create_users_sign_in_and_shut_down_without_leaking_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(dir.path()).await;
    let postgres = database_url.starts_with("postgres");
    let log_path = dir.path().join("serve.log");
    let configure = |command: &mut Command| {
        command
            .env("GATEHOUSE_DATABASE__URL", &database_url)
            .env("GATEHOUSE_SERVER__LISTEN", "127.0.0.1:0")
            .env("GATEHOUSE_SERVER__METRICS_LISTEN", "127.0.0.1:0")
            .env("GATEHOUSE_LOG__FORMAT", "json")
            .env("GATEHOUSE_LOG__LEVEL", "debug");
        if postgres {
            command.env("GATEHOUSE_SECRET_KEY", "cli-test-secret-key-long-enough-0123456789");
        }
    };

    let mut serve = gatehouse(dir.path());
    configure(&mut serve);
    let mut child = serve
        .arg("serve")
        .stdout(Stdio::from(std::fs::File::create(&log_path).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(dir.path().join("serve.err")).unwrap()))
        .spawn()
        .unwrap();
    let base = format!("http://{}", bound_address(&mut child, &log_path, &dir.path().join("serve.err")).await);
    let mut ready = false;
    for _ in 0..100 {
        let mut check = gatehouse(dir.path());
        configure(&mut check);
        if check.args(["healthcheck", "--url", &base]).status().unwrap().success() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "server never became ready: {}", std::fs::read_to_string(dir.path().join("serve.err")).unwrap_or_default());
    if !postgres {
        let secret = dir.path().join("secret_key");
        assert!(secret.exists(), "the SQLite setup generates its secret key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    let admin_password = "bootstrap passphrase for the admin 7";
    let mut create = gatehouse(dir.path());
    configure(&mut create);
    let output = create
        .args(["create-superuser", "--email", "root@example.com", "--name", "Root"])
        .env("GATEHOUSE_BOOTSTRAP_PASSWORD", admin_password)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("created superuser root@example.com"));

    let user_password = "password read from standard input 3";
    let mut create = gatehouse(dir.path());
    configure(&mut create);
    let mut child_create = create
        .args(["create-user", "--email", "user@example.com", "--staff"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child_create.stdin.take().unwrap(), "{user_password}").unwrap();
    let output = child_create.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));

    let mut duplicate = gatehouse(dir.path());
    configure(&mut duplicate);
    let output =
        duplicate.args(["create-user", "--email", "USER@example.com"]).env("GATEHOUSE_BOOTSTRAP_PASSWORD", user_password).output().unwrap();
    assert!(!output.status.success());
    assert!(stderr(&output).contains("email"), "{}", stderr(&output));
    let mut weak = gatehouse(dir.path());
    configure(&mut weak);
    let output =
        weak.args(["create-user", "--email", "weak@example.com"]).env("GATEHOUSE_BOOTSTRAP_PASSWORD", "password").output().unwrap();
    assert!(!output.status.success());
    assert!(stderr(&output).contains("password"));

    let client = reqwest::Client::new();
    let sign_in = |email: &'static str, password: &'static str| {
        client.post(format!("{base}/api/v3/auth/sign_in/")).json(&json!({"email": email, "password": password})).send()
    };
    let response = sign_in("root@example.com", admin_password).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let admin = session_from(response).await;
    assert_eq!(admin.body["user"]["name"], "Root");
    assert_eq!(sign_in("user@example.com", user_password).await.unwrap().status(), StatusCode::OK);
    assert_eq!(sign_in("user@example.com", "a wrong password attempt").await.unwrap().status(), StatusCode::BAD_REQUEST);
    let me = client.get(format!("{base}/api/v3/core/users/me/")).header("cookie", &admin.cookie).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let set = client
        .post(format!("{base}/api/v3/core/users/2/set_password/"))
        .header("cookie", &admin.cookie)
        .header("x-csrftoken", &admin.csrf)
        .json(&json!({"password": "another secret passphrase 11"}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::NO_CONTENT);
    assert_eq!(sign_in("user@example.com", user_password).await.unwrap().status(), StatusCode::BAD_REQUEST, "the old password still works");
    assert_eq!(sign_in("user@example.com", "another secret passphrase 11").await.unwrap().status(), StatusCode::OK);

    // An API key from the command line, printed once, works against the running server.
    let mut token = gatehouse(dir.path());
    configure(&mut token);
    let output = token
        .args(["token", "create", "--user", "root@example.com", "--identifier", "cli-key", "--expires-in", "days=30"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let cli_key = stdout(&output).trim().to_owned();
    let thirty_days = (chrono::Utc::now() + chrono::TimeDelta::days(30)).format("expires %Y-%m-").to_string();
    assert!(stderr(&output).contains(&thirty_days), "the expiry is shown: {}", stderr(&output));
    assert!(cli_key.starts_with("gatehouse_api_"), "{cli_key}");
    let me = client.get(format!("{base}/api/v3/core/users/me/")).bearer_auth(&cli_key).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let mut refused = gatehouse(dir.path());
    configure(&mut refused);
    let output = refused
        .args(["token", "create", "--user", "user@example.com", "--identifier", "not-staff", "--intent", "recovery"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--intent"));
    let mut missing = gatehouse(dir.path());
    configure(&mut missing);
    let output = missing.args(["token", "create", "--user", "nobody@example.com", "--identifier", "x"]).output().unwrap();
    assert!(!output.status.success());
    assert!(stderr(&output).contains("no user"));

    // SIGTERM: the server stops accepting, finishes, and exits cleanly.
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut exited = None;
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exited = exited.expect("server exits after SIGTERM");
    assert!(exited.success(), "exit status {exited:?}");
    let mut check = gatehouse(dir.path());
    configure(&mut check);
    assert!(!check.args(["healthcheck", "--url", &base]).status().unwrap().success(), "healthcheck fails once stopped");

    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(logs.contains("create-superuser --email admin@example.com"), "first start tells how to create a superuser");
    assert!(!logs.contains("notification listener"), "a clean shutdown is not a listener failure");
    assert!(!logs.contains("cookies are Secure"), "no cookie warning on loopback");
    assert!(logs.contains("\"route\":\"/api/v3/auth/sign_in/\""), "one line per request");
    assert!(logs.contains("\"request_id\""));
    let key_line = logs.lines().find(|l| l.contains("\"key_id\":\"")).expect("requests with an API key log the key id");
    assert!(key_line.contains("\"user\":1"), "{key_line}");
    let session_key = admin.cookie.split_once('=').unwrap().1;
    for secret in
        [admin_password, user_password, "a wrong password attempt", "another secret passphrase 11", session_key, &admin.csrf, &cli_key]
    {
        assert!(!logs.contains(secret), "a secret reached the log");
    }
    for line in logs.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
    }
}

/// Starts `serve` with `configure` applied and waits for the address it reports.
async fn start_serve(dir: &Path, name: &str, configure: impl Fn(&mut Command)) -> (std::process::Child, String) {
    let log_path = dir.join(format!("{name}.log"));
    let err_path = dir.join(format!("{name}.err"));
    let mut serve = gatehouse(dir);
    configure(&mut serve);
    let mut child = serve
        .arg("serve")
        .stdout(Stdio::from(std::fs::File::create(&log_path).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err_path).unwrap()))
        .spawn()
        .unwrap();
    let base = format!("http://{}", bound_address(&mut child, &log_path, &err_path).await);
    (child, base)
}

/// A server on `database_url` with a fixed key, ports of its own choosing and JSON logs at info.
fn server_environment(command: &mut Command, database_url: &str) {
    command
        .env("GATEHOUSE_DATABASE__URL", database_url)
        .env("GATEHOUSE_SECRET_KEY", "cli-test-secret-key-long-enough-0123456789")
        .env("GATEHOUSE_SERVER__LISTEN", "127.0.0.1:0")
        .env("GATEHOUSE_SERVER__METRICS_LISTEN", "127.0.0.1:0")
        .env("GATEHOUSE_LOG__FORMAT", "json")
        .env("GATEHOUSE_LOG__LEVEL", "info");
}

fn stop(mut child: std::process::Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn unattended_bootstrap_idempotent_create_and_a_password_reset_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(dir.path()).await;
    let configure = |command: &mut Command| server_environment(command, &database_url);
    let first_password = "the first administrator's passphrase 8";
    let password_file = dir.path().join("bootstrap-password");
    std::fs::write(&password_file, format!("{first_password}\n")).unwrap();
    let (first, base) = start_serve(dir.path(), "first", |command| {
        configure(command);
        command.env("GATEHOUSE_BOOTSTRAP_EMAIL", "root@example.com").env("GATEHOUSE_BOOTSTRAP_PASSWORD_FILE", &password_file);
    })
    .await;
    // A second process started the same way later finds the superuser and creates nobody.
    let (second, _) = start_serve(dir.path(), "second", |command| {
        configure(command);
        command.env("GATEHOUSE_BOOTSTRAP_EMAIL", "other@example.com").env("GATEHOUSE_BOOTSTRAP_PASSWORD", first_password);
    })
    .await;
    let client = reqwest::Client::new();
    let sign_in = |email: &'static str, password: &str| {
        client.post(format!("{base}/api/v3/auth/sign_in/")).json(&json!({"email": email, "password": password})).send()
    };
    let response = sign_in("root@example.com", first_password).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the bootstrap password file's line break is not part of the password");
    let root = session_from(response).await;
    let me = client.get(format!("{base}/api/v3/core/users/me/")).header("cookie", &root.cookie).send().await.unwrap();
    let (_, me) = json(me).await;
    assert_eq!(me["user"]["is_superuser"], true, "{me}");
    assert_eq!(sign_in("other@example.com", first_password).await.unwrap().status(), StatusCode::BAD_REQUEST);
    stop(second);

    // create-superuser --if-missing: nothing to do for an existing superuser (no password asked),
    // an error for someone else's address, a new superuser otherwise.
    let run = |args: &[&str], password: Option<&str>| {
        let mut command = gatehouse(dir.path());
        configure(&mut command);
        if let Some(password) = password {
            command.env("GATEHOUSE_BOOTSTRAP_PASSWORD", password);
        }
        command.args(args).stdin(Stdio::null()).output().unwrap()
    };
    let output = run(&["create-superuser", "--email", "ROOT@example.com", "--if-missing"], None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("superuser root@example.com exists"), "{}", stdout(&output));
    let output = run(&["create-user", "--email", "plain@example.com"], Some("a plain user's passphrase 4"));
    assert!(output.status.success(), "{}", stderr(&output));
    let output = run(&["create-superuser", "--email", "plain@example.com", "--if-missing"], None);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("not a superuser"), "{}", stderr(&output));
    let output = run(&["create-superuser", "--email", "second-admin@example.com", "--if-missing"], Some("the second admin's passphrase 6"));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("created superuser second-admin@example.com"));
    assert_eq!(sign_in("second-admin@example.com", "the second admin's passphrase 6").await.unwrap().status(), StatusCode::OK);

    // set-password: the locked-out administrator gets a new password; their sessions end.
    let new_password = "a fresh passphrase for the administrator 3";
    let output = run(&["set-password", "--email", "root@example.com"], Some(new_password));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("password set for root@example.com"));
    // The server learns of it through PostgreSQL's notification; on SQLite, which has none, when
    // its cached check expires (sessions.cache_ttl, 10 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let me = client.get(format!("{base}/api/v3/core/users/me/")).header("cookie", &root.cookie).send().await.unwrap();
        if me.status() == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the old session survived the reset");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sign_in("root@example.com", first_password).await.unwrap().status(), StatusCode::BAD_REQUEST);
    assert_eq!(sign_in("root@example.com", new_password).await.unwrap().status(), StatusCode::OK);
    let output = run(&["set-password", "--email", "nobody@example.com"], Some(new_password));
    assert!(!output.status.success());
    assert!(stderr(&output).contains("no user with the e-mail address nobody@example.com"), "{}", stderr(&output));
    let output = run(&["set-password", "--email", "root@example.com"], Some("short"));
    assert!(!output.status.success());
    assert!(stderr(&output).contains("password"), "{}", stderr(&output));
    assert_eq!(sign_in("root@example.com", new_password).await.unwrap().status(), StatusCode::OK, "a refused reset changed nothing");

    // healthcheck says why it fails, and asks a URL's own path when it has one.
    let output = run(&["healthcheck", "--url", &format!("{base}/-/health/live/")], None);
    assert!(output.status.success(), "{}", stderr(&output));
    let output = run(&["healthcheck", "--url", &format!("{base}/no/such/page/")], None);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("answered 404"), "{}", stderr(&output));
    stop(first);
    let output = run(&["healthcheck", "--url", &base], None);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("cannot connect to"), "{}", stderr(&output));
}

#[test]
fn a_bootstrap_address_without_a_password_stops_the_start_with_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let output = gatehouse(dir.path())
        .arg("serve")
        .env("GATEHOUSE_SERVER__LISTEN", "127.0.0.1:0")
        .env("GATEHOUSE_SERVER__METRICS_LISTEN", "127.0.0.1:0")
        .env("GATEHOUSE_BOOTSTRAP_EMAIL", "root@example.com")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(stderr(&output).contains("set GATEHOUSE_BOOTSTRAP_PASSWORD or GATEHOUSE_BOOTSTRAP_PASSWORD_FILE"), "{}", stderr(&output));
}

#[test]
fn an_unreachable_postgresql_is_named_with_its_address_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let output = gatehouse(dir.path())
        .arg("migrate")
        .env("GATEHOUSE_DATABASE__URL", "postgres://gatehouse@127.0.0.1:1/gatehouse")
        .env("GATEHOUSE_SECRET_KEY", "cli-test-secret-key-long-enough-0123456789")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("cannot reach PostgreSQL at 127.0.0.1:1: connection refused"), "{message}");
    assert!(!message.contains("pool timed out"), "{message}");
}

#[tokio::test]
async fn a_missing_postgresql_role_or_database_says_how_to_create_it() {
    let Ok(admin_url) = std::env::var("GATEHOUSE_TEST_DATABASE_URL") else { return };
    if admin_url.is_empty() {
        return; // PostgreSQL only; the suite runs on it in scripts/test and CI.
    }
    let dir = tempfile::tempdir().unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let authority = base.rsplit_once('@').map_or(base.trim_start_matches("postgres://"), |(_, host)| host);
    for (url, expected) in [
        (format!("postgres://no_such_role_here@{authority}/postgres"), "createuser no_such_role_here"),
        (format!("{base}/no_such_database_here"), "createdb --owner"),
    ] {
        let output = gatehouse(dir.path())
            .arg("migrate")
            .env("GATEHOUSE_DATABASE__URL", &url)
            .env("GATEHOUSE_SECRET_KEY", "cli-test-secret-key-long-enough-0123456789")
            .output()
            .unwrap();
        assert!(!output.status.success());
        assert!(stderr(&output).contains(expected), "{url}: {}", stderr(&output));
    }
}

#[tokio::test]
async fn a_process_with_another_secret_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(dir.path()).await;
    let created = std::cell::Cell::new(0);
    let with_key = |command: &str, key: &str| {
        created.set(created.get() + 1);
        let email = format!("someone{}@example.com", created.get());
        gatehouse(dir.path())
            .arg(command)
            .env("GATEHOUSE_DATABASE__URL", &database_url)
            .env("GATEHOUSE_SECRET_KEY", key)
            .env("GATEHOUSE_BOOTSTRAP_PASSWORD", "a passphrase nobody guesses 2")
            .args(if command == "create-user" { vec!["--email", email.as_str()] } else { vec![] })
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let original = "the-original-secret-key-long-enough-0123456789";
    let stray = "a-stray-key-in-a-migration-job-0123456789";
    // A migration only checks: a migration job with a stray key neither fails nor pins its key.
    for key in [original, stray] {
        let output = with_key("migrate", key);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    // The first command that writes with a key records it.
    let output = with_key("create-user", original);
    assert!(output.status.success(), "{}", stderr(&output));
    for command in ["migrate", "create-user"] {
        let output = with_key(command, "a-different-secret-key-long-enough-0123456789");
        assert!(!output.status.success(), "{command} started with another key");
        let message = stderr(&output);
        assert!(message.contains("is not the one this database was set up with"), "{command}: {message}");
        assert!(message.contains("GATEHOUSE_SECRET_KEY") && !message.contains("a-different-secret"), "{command}: {message}");
    }
    let output = with_key("create-user", original);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[tokio::test(flavor = "multi_thread")]
async fn secure_cookies_on_a_listener_other_hosts_reach_warn_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(dir.path()).await;
    let (server, _) = start_serve(dir.path(), "public", |command| {
        server_environment(command, &database_url);
        command.env("GATEHOUSE_SERVER__LISTEN", "0.0.0.0:0");
    })
    .await;
    stop(server);
    let logs = std::fs::read_to_string(dir.path().join("public.log")).unwrap();
    let warning = logs.lines().find(|line| line.contains("cookies are Secure")).expect("a warning about secure cookies");
    assert!(warning.contains("\"level\":\"WARN\"") && warning.contains("server.secure_cookies"), "{warning}");
}

#[test]
fn every_command_uses_one_data_directory_whatever_its_working_directory() {
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let config = home.path().join("gatehouse.toml");
    std::fs::write(&config, "data_dir = \"state\"\n").unwrap();
    let run = |cwd: &Path, args: &[&str]| {
        let mut command = Command::new(BIN);
        for (key, _) in std::env::vars() {
            if key.starts_with("GATEHOUSE_") {
                command.env_remove(key);
            }
        }
        command.current_dir(cwd).env("GATEHOUSE_BOOTSTRAP_PASSWORD", "a passphrase nobody guesses 2").args(args).output().unwrap()
    };
    // Without a database, a command other than serve or migrate creates none and says where it
    // looked.
    let output = run(elsewhere.path(), &["create-user", "--email", "lost@example.com"]);
    assert!(!output.status.success());
    let expected = elsewhere.path().join("data").join("gatehouse.sqlite3");
    assert!(stderr(&output).contains(&format!("there is no database at {}", expected.display())), "{}", stderr(&output));
    assert!(!elsewhere.path().join("data").join("gatehouse.sqlite3").exists(), "a second database appeared");

    // A relative data_dir in the configuration file is relative to the file, not to the caller.
    let config_arg = config.to_str().unwrap();
    let output = run(elsewhere.path(), &["--config", config_arg, "migrate"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let database = home.path().join("state").join("gatehouse.sqlite3");
    assert!(database.exists(), "the database is beside the configuration file");
    assert!(stderr(&output).contains(&format!("database: SQLite {}", database.display())), "{}", stderr(&output));
    let output = run(elsewhere.path(), &["--config", config_arg, "create-user", "--email", "found@example.com"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains(&format!("database: SQLite {}", database.display())), "{}", stderr(&output));
    assert!(!elsewhere.path().join("state").exists());
}

#[tokio::test]
async fn secrets_can_come_from_files_beside_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(dir.path()).await;
    std::fs::write(dir.path().join("key.txt"), "a-secret-key-read-from-a-file-0123456789\n").unwrap();
    std::fs::write(dir.path().join("database.txt"), format!("{database_url}\n")).unwrap();
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(&config, "secret_key_file = \"key.txt\"\n[database]\nurl_file = \"database.txt\"\n").unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let run = |args: &[&str], extra: &[(&str, &str)]| {
        let mut command = gatehouse(elsewhere.path());
        command.arg("--config").arg(&config).args(args);
        for (key, value) in extra {
            command.env(key, value);
        }
        command.output().unwrap()
    };
    let output = run(&["config", "show"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!stdout(&output).contains("a-secret-key-read-from-a-file"), "the key is redacted");
    assert!(stdout(&output).contains("secret_key = \"********\""), "{}", stdout(&output));
    let output = run(&["migrate"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    // The URL came from its file: the database is the one it names, not the default one.
    if let Some(path) = database_url.strip_prefix("sqlite://") {
        assert!(Path::new(path).exists(), "the database from url_file was not created");
        assert!(!elsewhere.path().join("gatehouse.sqlite3").exists(), "the default database was used");
    }
    // The key came from its file: a command that writes with it records it, and another key
    // (named by its own file) is then refused, with the file named.
    let output =
        run(&["create-user", "--email", "keyed@example.com"], &[("GATEHOUSE_BOOTSTRAP_PASSWORD", "a passphrase nobody guesses 2")]);
    assert!(output.status.success(), "{}", stderr(&output));
    let other_key = dir.path().join("other-key.txt");
    std::fs::write(&other_key, "another-secret-key-from-a-file-0123456789\n").unwrap();
    let output = run(&["migrate"], &[("GATEHOUSE_SECRET_KEY_FILE", other_key.to_str().unwrap())]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains(&format!("the file {} (secret_key_file)", other_key.display())), "{}", stderr(&output));
    let output = run(&["migrate"], &[("GATEHOUSE_SECRET_KEY", "a-secret-key-from-the-environment-0123456789")]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("secret_key and secret_key_file are both set"), "{}", stderr(&output));
    let output = run(&["config", "show"], &[("GATEHOUSE_SECRET_KEY_FILE", "/nonexistent/key")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("secret_key_file: cannot read /nonexistent/key"), "{}", stderr(&output));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bootstrap_address_that_belongs_to_another_account_is_reported_and_the_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(dir.path()).await;
    let configure = |command: &mut Command| {
        server_environment(command, &database_url);
        command.env("GATEHOUSE_BOOTSTRAP_PASSWORD", "a passphrase nobody guesses 2");
    };
    for args in [&["migrate"][..], &["create-user", "--email", "plain@example.com"][..]] {
        let mut command = gatehouse(dir.path());
        configure(&mut command);
        let output = command.args(args).stdin(Stdio::null()).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    }
    let (server, base) = start_serve(dir.path(), "leftover", |command| {
        configure(command);
        command.env("GATEHOUSE_BOOTSTRAP_EMAIL", "plain@example.com");
    })
    .await;
    let live = reqwest::get(format!("{base}/-/health/live/")).await.unwrap();
    assert!(live.status().is_success(), "{}", live.status());
    stop(server);
    let logs = std::fs::read_to_string(dir.path().join("leftover.log")).unwrap();
    let warning = logs.lines().find(|l| l.contains("GATEHOUSE_BOOTSTRAP_EMAIL: plain@example.com already belongs")).expect("the warning");
    assert!(warning.contains("\"level\":\"WARN\""), "{warning}");
}

#[test]
fn a_listener_address_in_use_names_its_setting() {
    let dir = tempfile::tempdir().unwrap();
    // Held for the whole test, so the port is certainly taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    for (setting, variable) in
        [("server.listen", "GATEHOUSE_SERVER__LISTEN"), ("server.metrics_listen", "GATEHOUSE_SERVER__METRICS_LISTEN")]
    {
        let mut command = gatehouse(dir.path());
        command.env("GATEHOUSE_SERVER__LISTEN", "127.0.0.1:0").env("GATEHOUSE_SERVER__METRICS_LISTEN", "127.0.0.1:0");
        let output = command.env(variable, &address).arg("serve").output().unwrap();
        assert!(!output.status.success());
        let message = stderr(&output);
        assert!(
            message.contains(&format!("cannot listen on {address} ({setting})")) && message.contains("another process uses it"),
            "{message}"
        );
    }
}

/// A server on SQLite in its data directory with the key it generated there, as the README's
/// first command runs it.
fn default_environment(command: &mut Command) {
    command
        .env("GATEHOUSE_SERVER__LISTEN", "127.0.0.1:0")
        .env("GATEHOUSE_SERVER__METRICS_LISTEN", "127.0.0.1:0")
        .env("GATEHOUSE_LOG__FORMAT", "json")
        .env("GATEHOUSE_LOG__LEVEL", "info");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_taken_under_write_load_restores_every_committed_user_and_key() {
    let original = tempfile::tempdir().unwrap();
    let (server, base) = start_serve(original.path(), "original", default_environment).await;
    let admin = gatehouse(original.path())
        .args(["create-superuser", "--email", "admin@example.com"])
        .env("GATEHOUSE_BOOTSTRAP_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(admin.status.success(), "{}", stderr(&admin));
    let output =
        gatehouse(original.path()).args(["token", "create", "--user", "admin@example.com", "--identifier", "kept"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let key = stdout(&output).trim().to_owned();

    // An uploaded file is kept in the media directory, and comes back with the backup.
    let client = reqwest::Client::new();
    let logo = crate::support::png(2, 2);
    let form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(logo.clone()).file_name("logo.png"));
    let uploaded = client.post(format!("{base}/api/v3/admin/file/")).bearer_auth(&key).multipart(form).send().await.unwrap();
    assert_eq!(uploaded.status(), StatusCode::OK);

    // Accounts are created through the API while the backup runs.
    let stop_writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn({
        let (client, base, key, stop) = (client.clone(), base.clone(), key.clone(), stop_writing.clone());
        async move {
            let mut committed = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                n += 1;
                let username = format!("written-{n}");
                let body = json!({"username": username, "name": username, "email": format!("{username}@example.com")});
                let created = client.post(format!("{base}/api/v3/core/users/")).bearer_auth(&key).json(&body).send().await.unwrap();
                assert_eq!(created.status(), StatusCode::CREATED);
                committed.push((username, std::time::Instant::now()));
            }
            committed
        }
    });
    // Some accounts exist before the backup starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let archive = original.path().join("backups").join("gatehouse.tar");
    std::fs::create_dir_all(archive.parent().unwrap()).unwrap();
    let backup = gatehouse(original.path()).args(["backup", "--to", archive.to_str().unwrap()]).output().unwrap();
    stop_writing.store(true, std::sync::atomic::Ordering::Release);
    let committed = writer.await.unwrap();
    assert!(backup.status.success(), "{}", stderr(&backup));
    assert!(stdout(&backup).contains("holds the secret key"), "{}", stdout(&backup));
    assert!(stdout(&backup).contains("uploaded files: 1 in the backup"), "{}", stdout(&backup));
    let before: Vec<&String> = committed.iter().filter(|(_, at)| *at < started).map(|(name, _)| name).collect();
    assert!(!before.is_empty(), "accounts were written before the backup");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777, 0o600, "only its owner reads a backup");
    }
    let again = gatehouse(original.path()).args(["backup", "--to", archive.to_str().unwrap()]).output().unwrap();
    assert!(!again.status.success());
    assert!(stderr(&again).contains("exists already"), "{}", stderr(&again));
    stop(server);

    // A configured key that is not the backup's is refused, and nothing is left behind.
    let wrong = tempfile::tempdir().unwrap();
    let refused = gatehouse(wrong.path())
        .args(["restore", "--from", archive.to_str().unwrap()])
        .env("GATEHOUSE_SECRET_KEY", "a-different-secret-key-long-enough-0123456789")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("is not the one this backup was taken with"), "{}", stderr(&refused));
    assert_eq!(std::fs::read_dir(wrong.path()).unwrap().count(), 0, "a refused restore writes nothing");
    let not_a_backup = wrong.path().join("notes.txt");
    std::fs::write(&not_a_backup, "not an archive").unwrap();
    let refused = gatehouse(wrong.path()).args(["restore", "--from", not_a_backup.to_str().unwrap()]).output().unwrap();
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("is not a Gatehouse backup"), "{}", stderr(&refused));

    // A member that would land outside the media directory makes it no backup of ours.
    let hostile = wrong.path().join("hostile.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&hostile).unwrap());
    let mut header = tar::Header::new_gnu();
    header.set_size(4);
    header.set_mode(0o600);
    // Written into the header by hand: the tar crate itself refuses such names.
    let name = b"media/../../escaped.png";
    header.as_mut_bytes()[..name.len()].copy_from_slice(name);
    header.set_cksum();
    builder.append(&header, &b"oops"[..]).unwrap();
    builder.into_inner().unwrap();
    let refused = gatehouse(wrong.path()).args(["restore", "--from", hostile.to_str().unwrap()]).output().unwrap();
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("is not a Gatehouse backup"), "{}", stderr(&refused));
    assert!(!wrong.path().join("escaped.png").exists() && !wrong.path().parent().unwrap().join("escaped.png").exists());

    std::fs::write(wrong.path().join("gatehouse.sqlite3-wal"), "a stale log").unwrap();
    let refused = gatehouse(wrong.path()).args(["restore", "--from", archive.to_str().unwrap()]).output().unwrap();
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("is left from an earlier database"), "{}", stderr(&refused));
    let mut members = tar::Archive::new(std::fs::File::open(&archive).unwrap());
    for member in members.entries().unwrap() {
        let member = member.unwrap();
        assert_eq!(member.header().mode().unwrap(), 0o600, "{:?} unpacks for its owner only", member.path().unwrap());
    }

    let restored = tempfile::tempdir().unwrap();
    let output = gatehouse(restored.path()).args(["restore", "--from", archive.to_str().unwrap()]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("1 uploaded files"), "{}", stdout(&output));
    assert_eq!(
        std::fs::read(restored.path().join("secret_key")).unwrap(),
        std::fs::read(original.path().join("secret_key")).unwrap(),
        "the key comes back with the database"
    );
    let twice = gatehouse(restored.path()).args(["restore", "--from", archive.to_str().unwrap()]).output().unwrap();
    assert!(!twice.status.success());
    assert!(stderr(&twice).contains("holds a database already"), "{}", stderr(&twice));

    let (server, base) = start_serve(restored.path(), "restored", default_environment).await;
    let me = client.get(format!("{base}/api/v3/core/users/me/")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK, "the key still works");
    for username in before {
        let found = client.get(format!("{base}/api/v3/core/users/?username={username}")).bearer_auth(&key).send().await.unwrap();
        let found: serde_json::Value = found.json().await.unwrap();
        assert_eq!(found["pagination"]["count"], 1, "{username} was committed before the backup: {found}");
    }
    let signed_in = client
        .post(format!("{base}/api/v3/auth/sign_in/"))
        .json(&json!({"email": "admin@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::OK, "the password still works");
    let served = client.get(format!("{base}/files/media/logo.png")).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK, "the uploaded file came back");
    assert_eq!(served.bytes().await.unwrap().as_ref(), logo.as_slice());
    stop(server);
}

#[test]
fn backup_and_restore_point_postgresql_installations_to_pg_dump() {
    let dir = tempfile::tempdir().unwrap();
    for args in [["backup", "--to", "x.tar"], ["restore", "--from", "x.tar"]] {
        let output = gatehouse(dir.path())
            .args(args)
            .env("GATEHOUSE_DATABASE__URL", "postgres://postgres@127.0.0.1:5432/postgres")
            .env("GATEHOUSE_SECRET_KEY", "cli-test-secret-key-long-enough-0123456789")
            .output()
            .unwrap();
        assert!(!output.status.success());
        assert!(stderr(&output).contains("pg_dump"), "{}", stderr(&output));
    }
}

#[test]
fn migrate_check_lists_pending_migrations_and_applies_none() {
    let dir = tempfile::tempdir().unwrap();
    let pending = gatehouse(dir.path()).args(["migrate", "--check"]).output().unwrap();
    assert_eq!(pending.status.code(), Some(1), "{}", stderr(&pending));
    assert!(stdout(&pending).contains("migrations pending:"), "{}", stdout(&pending));
    assert!(stdout(&pending).contains("m0001"), "each is named: {}", stdout(&pending));
    let still = gatehouse(dir.path()).args(["migrate", "--check"]).output().unwrap();
    assert_eq!(still.status.code(), Some(1), "a check applies nothing");
    let applied = gatehouse(dir.path()).arg("migrate").output().unwrap();
    assert!(applied.status.success(), "{}", stderr(&applied));
    let current = gatehouse(dir.path()).args(["migrate", "--check"]).output().unwrap();
    assert_eq!(current.status.code(), Some(0), "{}", stderr(&current));
    assert_eq!(stdout(&current).trim(), "no migrations pending");
}

#[test]
fn rotate_signing_key_keeps_the_replaced_key_until_its_tokens_expire_or_retires_a_compromised_one() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        gatehouse(dir.path()).args(args).env("GATEHOUSE_SECRET_KEY", "cli-test-secret-key-long-enough-0123456789").output().unwrap()
    };
    // Without an installation there is nothing to rotate, and it says where it looked.
    let output = run(&["rotate-signing-key"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("there is no database at"), "{}", stderr(&output));
    assert!(run(&["migrate"]).status.success());

    let output = run(&["rotate-signing-key"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let shown = stdout(&output);
    let line_value = |text: &str, prefix: &str| text.lines().find_map(|l| l.strip_prefix(prefix)).map(str::to_owned);
    let first = line_value(&shown, "signing with the new managed key ").expect(&shown);
    let kept = line_value(&shown, "still published until its tokens expire: ").expect(&shown);
    assert_ne!(first, kept);

    // The replaced key may still verify live tokens: a second rotation is refused, plainly.
    let output = run(&["rotate-signing-key"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("may still verify live tokens until"), "{}", stderr(&output));

    // A compromised key is retired at once; the key it replaced stays published.
    let output = run(&["rotate-signing-key", "--compromised"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let shown = stdout(&output);
    assert_eq!(line_value(&shown, "retired (no longer published): ").as_deref(), Some(first.as_str()), "{shown}");
    assert_eq!(line_value(&shown, "still published until its tokens expire: ").as_deref(), Some(kept.as_str()), "{shown}");
    assert_ne!(line_value(&shown, "signing with the new managed key ").as_deref(), Some(first.as_str()));
}
