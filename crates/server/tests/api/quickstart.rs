//! The README's quick start, run as written, so that it cannot drift from what works.
//!
//! Every fenced `sh` block that follows a `<!-- quickstart: STORE -->` comment runs, in README
//! order, in its own `bash -euo pipefail`, started in an empty home directory with the built
//! `gatehouse` first on `PATH` and an administrator's password on standard input (what a person
//! types at the prompts). The block marked `<!-- quickstart: STORE serve -->` is the server: it
//! runs in the background while the later blocks run and is then stopped the way Ctrl-C stops
//! it. Only addresses differ from the README: the server listens on a port of its own choosing
//! (`GATEHOUSE_SERVER__LISTEN=127.0.0.1:0`), and the README's `127.0.0.1:9000` in later blocks
//! becomes the address it reports. SQLite's quick start runs in the suite's SQLite pass;
//! PostgreSQL's runs in its PostgreSQL pass against a private cluster started for the test, so
//! the README's `psql` and `createdb` never touch a developer's own databases, and the README's
//! `127.0.0.1:5432` becomes that cluster's port.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");
const README: &str = include_str!("../../../../README.md");
/// What the person following the quick start types at every password prompt.
const ADMIN_PASSWORD: &str = "quick start passphrase 31 maple";
/// How long one block may take; more means it waits for something that never comes.
const BLOCK_DEADLINE: Duration = Duration::from_secs(120);

/// One marked block of the README.
#[derive(Debug)]
struct Block {
    line: usize,
    script: String,
    serves: bool,
}

/// The blocks marked for `store`, in README order. A marker must be followed by an `sh` fence.
fn quickstart_blocks(readme: &str, store: &str) -> Vec<Block> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut blocks = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let Some(marker) = line.trim().strip_prefix("<!-- quickstart:").and_then(|rest| rest.strip_suffix("-->")) else {
            continue;
        };
        let words: Vec<&str> = marker.split_whitespace().collect();
        let (marked_store, serves) = match words.as_slice() {
            [marked] => (*marked, false),
            [marked, "serve"] => (*marked, true),
            _ => panic!("README.md line {}: a quick-start marker is `<!-- quickstart: STORE [serve] -->`", index + 1),
        };
        assert_eq!(
            lines.get(index + 1).map(|l| l.trim()),
            Some("```sh"),
            "README.md line {}: a quick-start marker must be followed by a ```sh block",
            index + 1
        );
        let body: Vec<&str> = lines[index + 2..].iter().take_while(|l| l.trim() != "```").copied().collect();
        assert!(index + 2 + body.len() < lines.len(), "README.md line {}: the quick-start block is never closed", index + 1);
        if marked_store == store {
            blocks.push(Block { line: index + 1, script: body.join("\n"), serves });
        }
    }
    blocks
}

/// The e-mail address the quick start makes a superuser.
fn superuser_email(blocks: &[Block]) -> String {
    blocks
        .iter()
        .flat_map(|block| block.script.lines())
        .filter(|line| line.contains("gatehouse create-superuser"))
        .find_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|word| *word == "--email").and_then(|_| words.next()).map(str::to_owned)
        })
        .expect("the quick start creates a superuser with `gatehouse create-superuser ... --email ADDRESS`")
}

/// The environment a block runs in: nothing of the suite's, only what an operator's shell has.
struct Shell {
    home: tempfile::TempDir,
    work: tempfile::TempDir,
    environment: Vec<(String, String)>,
    replacements: Vec<(String, String)>,
}

impl Shell {
    fn new() -> Self {
        let bin_dir = Path::new(BIN).parent().expect("the binary lies in a directory");
        let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
        let home = tempfile::tempdir().unwrap();
        let environment = vec![
            ("PATH".to_owned(), path),
            ("HOME".to_owned(), home.path().display().to_string()),
            ("GATEHOUSE_SERVER__LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
            ("GATEHOUSE_SERVER__METRICS_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ];
        let work = tempfile::tempdir().unwrap();
        std::fs::write(work.path().join("typed"), format!("{ADMIN_PASSWORD}\n").repeat(4)).unwrap();
        Shell { home, work, environment, replacements: Vec::new() }
    }

    fn start(&self, block: &Block) -> Child {
        let mut script = block.script.clone();
        for (from, to) in &self.replacements {
            script = script.replace(from, to);
        }
        let output = |suffix: &str| File::create(self.work.path().join(format!("{}.{suffix}", block.line))).unwrap();
        let stdin = if block.serves { Stdio::null() } else { Stdio::from(File::open(self.work.path().join("typed")).unwrap()) };
        let mut command = Command::new("bash");
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        command
            .args(["-euo", "pipefail", "-c", &script])
            .env_clear()
            .envs(self.environment.iter().map(|(k, v)| (k, v)))
            .current_dir(self.home.path())
            .stdin(stdin)
            .stdout(output("out"))
            .stderr(output("err"))
            .spawn()
            .unwrap()
    }

    fn output_of(&self, block: &Block, suffix: &str) -> String {
        std::fs::read_to_string(self.work.path().join(format!("{}.{suffix}", block.line))).unwrap_or_default()
    }

    fn run(&self, block: &Block) {
        let status = wait_for(self.start(block), BLOCK_DEADLINE);
        assert!(
            status.is_some_and(|s| s.success()),
            "the quick-start block at README.md line {} failed ({status:?}):\n{}\nstdout:\n{}\nstderr:\n{}",
            block.line,
            block.script,
            self.output_of(block, "out"),
            self.output_of(block, "err")
        );
    }
}

/// A block left running, killed with its process group if the test ends before stopping it.
struct Background(Option<Child>);

impl Background {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("the block is still running")
    }

    /// Ctrl-C: the terminal sends SIGINT to the foreground process group.
    fn interrupt(mut self) -> Option<ExitStatus> {
        let child = self.0.take().expect("the block is still running");
        assert!(signal_group(&child, "INT"), "the server's process group is gone before Ctrl-C");
        wait_for(child, Duration::from_secs(30))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            signal_group(&child, "KILL");
            let _ = child.wait();
        }
    }
}

/// Waits up to `deadline` for `child`; kills its process group and answers `None` past it.
fn wait_for(mut child: Child, deadline: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > until {
            signal_group(&child, "KILL");
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `signal` to `child`'s process group; false when no process of it is left.
fn signal_group(child: &Child, signal: &str) -> bool {
    Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Runs `store`'s quick start and checks what it promises: a server, an administrator who signs
/// in with the typed password, and nothing kept outside the one directory.
async fn run_quickstart(store: &str, mut shell: Shell) -> Shell {
    let blocks = quickstart_blocks(README, store);
    assert_eq!(blocks.iter().filter(|b| b.serves).count(), 1, "the {store} quick start has exactly one serve block");
    let email = superuser_email(&blocks);
    let mut server = None;
    let mut base = String::new();
    for block in &blocks {
        if block.serves {
            let mut child = Background(Some(shell.start(block)));
            let work = shell.work.path();
            let address =
                bound_address(child.child(), &work.join(format!("{}.out", block.line)), &work.join(format!("{}.err", block.line))).await;
            shell.replacements.push(("127.0.0.1:9000".to_owned(), address.clone()));
            base = format!("http://{address}");
            server = Some((child, block));
        } else {
            assert!(
                server.is_some() || !block.script.contains("127.0.0.1:9000"),
                "README.md line {}: this block needs the server, started later",
                block.line
            );
            shell.run(block);
        }
    }
    let (server, serve_block) = server.expect("a serve block");

    let client = reqwest::Client::new();
    let response = client
        .post(format!("{base}/api/v3/auth/sign_in/"))
        .json(&json!({"email": email, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the quick start's administrator cannot sign in with the typed password");
    let session = session_from(response).await;
    let me = client.get(format!("{base}/api/v3/core/users/me/")).header("cookie", &session.cookie).send().await.unwrap();
    let (status, me) = json(me).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["user"]["email"], email.as_str(), "{me}");
    assert_eq!(me["user"]["is_superuser"], true, "{me}");

    let status = server.interrupt();
    assert!(
        status.is_some_and(|s| s.success()),
        "the server did not stop cleanly on Ctrl-C ({status:?}): {}",
        shell.output_of(serve_block, "err")
    );
    let kept: Vec<PathBuf> = std::fs::read_dir(shell.home.path()).unwrap().map(|entry| entry.unwrap().path()).collect();
    assert_eq!(kept, vec![shell.home.path().join("gatehouse")], "the quick start keeps everything in one directory");
    shell
}

/// A PostgreSQL cluster of the test's own, playing the operator's server: local connections
/// are trusted (the operator's superuser), TCP ones need a password, as on a stock Debian host.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin_dir: PathBuf,
    port: u16,
    as_postgres_user: bool,
}

impl PrivatePostgres {
    fn start() -> Self {
        let bin_dir = postgres_bin_dir()
            .expect("the PostgreSQL quick start needs PostgreSQL's server programs initdb and pg_ctl (Debian's postgresql package)");
        // initdb refuses to run as root; the cluster then belongs to the postgres account.
        let uid = Command::new("id").arg("-u").output().unwrap();
        let as_postgres_user = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("superuser-password"), "a superuser password nobody uses\n").unwrap();
        if as_postgres_user {
            let status = Command::new("chown").args(["-R", "postgres"]).arg(dir.path()).status().unwrap();
            assert!(status.success(), "chown of the cluster's directory to postgres failed");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cluster = PrivatePostgres { dir, bin_dir, port, as_postgres_user };
        let data = cluster.dir.path().join("data");
        let pwfile = cluster.dir.path().join("superuser-password");
        cluster.succeed(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-locale",
                "-E",
                "UTF8",
                "-N",
            ],
            &[format!("--pwfile={}", pwfile.display())],
        );
        let options = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", cluster.dir.path().display());
        let log = cluster.dir.path().join("server.log");
        cluster.succeed(
            "pg_ctl",
            &["-D", &data.display().to_string(), "-l", &log.display().to_string(), "-w", "-t", "60", "-o", &options, "start"],
            &[],
        );
        cluster
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin_dir.join(program);
        let mut command = if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        command.current_dir(self.dir.path());
        command
    }

    fn succeed(&self, program: &str, args: &[&str], more: &[String]) {
        let output = self.command(program).args(args).args(more).output().unwrap();
        assert!(
            output.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The environment of an operator's shell that reaches this cluster as its superuser.
    fn environment(&self) -> Vec<(String, String)> {
        vec![
            ("PGHOST".to_owned(), self.dir.path().display().to_string()),
            ("PGPORT".to_owned(), self.port.to_string()),
            ("PGUSER".to_owned(), "postgres".to_owned()),
        ]
    }
}

/// Where initdb and pg_ctl are: `pg_config --bindir`, else Debian's newest
/// `/usr/lib/postgresql/VERSION/bin`.
fn postgres_bin_dir() -> Option<PathBuf> {
    let has_programs = |dir: &PathBuf| dir.join("initdb").exists() && dir.join("pg_ctl").exists();
    let configured = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
        .filter(has_programs);
    configured.or_else(|| {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let version = entry.file_name().to_str()?.parse().ok()?;
                Some((version, entry.path().join("bin")))
            })
            .filter(|(_, dir)| has_programs(dir))
            .collect();
        versions.sort();
        versions.pop().map(|(_, dir)| dir)
    })
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self.command("pg_ctl").args(["-D", &data.display().to_string(), "-m", "immediate", "stop"]).output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_quick_start_works_as_written() {
    let on_postgres = std::env::var("GATEHOUSE_TEST_DATABASE_URL").is_ok_and(|url| !url.is_empty());
    if on_postgres {
        let cluster = PrivatePostgres::start();
        let mut shell = Shell::new();
        shell.environment.extend(cluster.environment());
        shell.replacements.push(("127.0.0.1:5432".to_owned(), format!("127.0.0.1:{}", cluster.port)));
        let shell = run_quickstart("postgres", shell).await;
        let directory = shell.home.path().join("gatehouse");
        for file in ["secret_key", "database_url", "gatehouse.toml"] {
            let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(directory.join(file)).unwrap().permissions());
            assert_eq!(mode & 0o077, 0, "{file} is readable by others");
        }
    } else {
        let shell = run_quickstart("sqlite", Shell::new()).await;
        let data = shell.home.path().join("gatehouse/data");
        assert!(data.join("gatehouse.sqlite3").is_file(), "the database is not in the quick start's directory");
        assert!(data.join("secret_key").is_file(), "the secret key is not in the quick start's directory");
    }
}

#[test]
fn quick_start_markers_that_are_not_followed_by_a_block_are_reported() {
    let readme = "text\n<!-- quickstart: sqlite -->\n\n```sh\necho\n```\n";
    let refused = std::panic::catch_unwind(|| quickstart_blocks(readme, "sqlite"));
    assert!(refused.is_err(), "a marker separated from its block was accepted");
    let readme = "<!-- quickstart: sqlite serve -->\n```sh\ngatehouse serve\n```\n<!-- quickstart: postgres -->\n```sh\npsql\n```\n";
    let blocks = quickstart_blocks(readme, "sqlite");
    assert_eq!(blocks.len(), 1);
    assert!(blocks[0].serves);
    assert_eq!(blocks[0].script, "gatehouse serve");
    assert_eq!(blocks[0].line, 1);
}
