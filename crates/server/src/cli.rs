//! The command line: `serve`, `migrate`, `worker`, `create-superuser`, `create-user`,
//! `set-password`, `token create`, `healthcheck`, `config show` and the benchmarks.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use gatehouse_types::Email;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::accounts::access::Actor;
use crate::accounts::password::Password;
use crate::accounts::users::{self as service, NewUser};
use crate::config::{Config, LogFormat};
use crate::error::Error;

/// Gatehouse, a self-hosted identity and access server.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version)]
pub struct Cli {
    /// A TOML configuration file (also GATEHOUSE_CONFIG).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply migrations and serve HTTP until SIGTERM or Ctrl-C.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate {
        /// Apply nothing: list the pending migrations and exit 1 when there are any, 0 when
        /// the database is up to date (for deploy scripts).
        #[arg(long)]
        check: bool,
    },
    /// Run task workers until SIGTERM or Ctrl-C.
    Worker {
        /// Tasks run at a time (defaults to tasks.concurrency).
        #[arg(long)]
        concurrency: Option<usize>,
    },
    /// Create a superuser. The password comes from GATEHOUSE_BOOTSTRAP_PASSWORD, the file named by
    /// GATEHOUSE_BOOTSTRAP_PASSWORD_FILE, the terminal, or one line of stdin.
    CreateSuperuser {
        #[command(flatten)]
        user: UserArgs,
        /// Succeed without change when a superuser with this e-mail address exists (for init scripts).
        #[arg(long)]
        if_missing: bool,
    },
    /// Create a user. The password comes from the same places as for create-superuser.
    CreateUser {
        #[command(flatten)]
        user: UserArgs,
        /// Mark the user as staff.
        #[arg(long)]
        staff: bool,
        /// Create the user without a password (it cannot sign in until one is set).
        #[arg(long)]
        no_password: bool,
    },
    /// Set a user's password (for example a locked-out administrator's); ends their sessions and
    /// app passwords. The password comes from the same places as for create-superuser.
    SetPassword {
        /// E-mail address of the user.
        #[arg(long)]
        email: String,
    },
    /// Exit 0 when the server at --url answers its readiness check, 1 otherwise (saying why).
    Healthcheck {
        /// Base URL of the server; defaults to the configured listen address.
        #[arg(long)]
        url: Option<String>,
    },
    /// Measure this machine's raw argon2id hash rate, the ceiling for sign-ins per second.
    BenchHash {
        /// How long to measure.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Threads hashing at once (defaults to the number of cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Measure the task queue on the configured database: enqueue rate, drain rate with
    /// in-process workers, and enqueue-to-start latency on an idle queue.
    BenchTasks {
        /// No-op tasks to enqueue and drain.
        #[arg(long, default_value_t = 5000)]
        count: u64,
        /// Workers (each with its own claim loop).
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Tasks each worker runs at a time.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// API keys and other tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Replace the managed signing key of providers without their own now. The replaced key
    /// stays published while tokens it signed may live; refused while the key replaced last
    /// time is still needed.
    RotateSigningKey {
        /// The current key is compromised: retire it at once, so that tokens it signed stop
        /// verifying (the key replaced last time, if still published, stays).
        #[arg(long)]
        compromised: bool,
    },
    /// Write a backup of an SQLite installation, running or not, to a new file: the database
    /// copied in one consistent read, and the secret key. The file is readable by its owner only.
    Backup {
        /// The file to write; it must not exist.
        #[arg(long)]
        to: PathBuf,
    },
    /// Restore a backup into an empty data directory (no database, no secret key file).
    Restore {
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
    },
}

/// Token commands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print its key once.
    Create {
        /// E-mail address of the owner.
        #[arg(long)]
        user: String,
        /// Unique identifier (letters, digits, - and _).
        #[arg(long)]
        identifier: String,
        /// api or app_password.
        #[arg(long, default_value = "api")]
        intent: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Lifetime as a duration string (e.g. days=90); defaults to tokens.default_duration (days=1).
        #[arg(long, conflicts_with = "no_expiry")]
        expires_in: Option<gatehouse_types::DurationString>,
        /// Create a key that never expires.
        #[arg(long)]
        no_expiry: bool,
    },
}

/// Configuration commands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration with secrets redacted.
    Show,
}

/// Who to create.
#[derive(Debug, clap::Args)]
pub struct UserArgs {
    /// E-mail address the user signs in with.
    #[arg(long)]
    pub email: String,
    /// Display name.
    #[arg(long, default_value = "")]
    pub name: String,
    /// Username (defaults to the e-mail address).
    #[arg(long)]
    pub username: Option<String>,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("gatehouse: {error}");
            return ExitCode::from(2);
        }
    };
    if let Command::Config { command: ConfigCommand::Show } = cli.command {
        print!("{}", config.redacted_toml());
        return ExitCode::SUCCESS;
    }
    // Commands that print a result (a key, a user) keep stdout for it; the server logs to stdout.
    let logs_to_stdout = matches!(cli.command, Command::Serve | Command::Migrate { check: false } | Command::Worker { .. });
    if matches!(
        cli.command,
        Command::Migrate { .. }
            | Command::CreateSuperuser { .. }
            | Command::CreateUser { .. }
            | Command::SetPassword { .. }
            | Command::Token { .. }
            | Command::RotateSigningKey { .. }
            | Command::BenchTasks { .. }
            | Command::Backup { .. }
            | Command::Restore { .. }
    ) {
        eprintln!("gatehouse: database: {}", config.database_description());
    }
    init_logging(&config, logs_to_stdout);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gatehouse: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("gatehouse: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config, to_stdout: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = match config.log.format {
        LogFormat::Json => true,
        LogFormat::Human => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let writer = tracing_subscriber::fmt::writer::BoxMakeWriter::new(move || -> Box<dyn std::io::Write> {
        if to_stdout { Box::new(std::io::stdout()) } else { Box::new(std::io::stderr()) }
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    if json {
        let _ = builder.json().flatten_event(true).with_current_span(false).try_init();
    } else {
        let _ = builder.try_init();
    }
}

async fn run(command: Command, config: Config) -> Result<ExitCode, String> {
    match command {
        Command::Serve => serve(config).await,
        Command::Migrate { check: true } => {
            let db = crate::db::connect(&config).await.map_err(|e| e.to_string())?;
            let pending = crate::db::pending_migrations(&db).await.map_err(|e| format!("cannot read the applied migrations: {e}"))?;
            if pending.is_empty() {
                println!("no migrations pending");
                return Ok(ExitCode::SUCCESS);
            }
            println!("{} migrations pending:", pending.len());
            pending.iter().for_each(|name| println!("  {name}"));
            Ok(ExitCode::FAILURE)
        }
        Command::Migrate { check: false } => {
            let secret = crate::secret::ServerSecret::load(&config).map_err(|e| e.to_string())?;
            let db = crate::db::connect(&config).await.map_err(|e| e.to_string())?;
            crate::db::migrate(&db).await.map_err(|e| format!("migration failed: {e}"))?;
            crate::secret::check_fingerprint(&db, &secret, &config, false).await?;
            crate::tenants::ensure_default(&db).await.map_err(|e| e.to_string())?;
            println!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker { concurrency } => {
            let state = crate::app::build_state_existing(config).await.map_err(|e| e.to_string())?;
            let concurrency = concurrency.unwrap_or(state.config.tasks.concurrency);
            let shutdown = crate::app::shutdown_signal();
            let worker = crate::tasks::worker::start(state.clone(), concurrency).await.map_err(|e| e.to_string())?;
            tracing::info!(worker_id = %worker.worker_id, "worker is ready");
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight tasks");
            worker.shutdown().await;
            let _ = state.db.clone().close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::CreateSuperuser { user, if_missing } => {
            let state = crate::app::build_state_existing(config).await.map_err(|e| e.to_string())?;
            if if_missing && let Some(message) = existing_superuser(&state, &user.email).await? {
                println!("{message}");
                return Ok(ExitCode::SUCCESS);
            }
            create_user(&state, user, true, false, false).await
        }
        Command::SetPassword { email } => set_password(config, &email).await,
        Command::CreateUser { user, staff, no_password } => {
            let state = crate::app::build_state_existing(config).await.map_err(|e| e.to_string())?;
            create_user(&state, user, false, staff, no_password).await
        }
        Command::Healthcheck { url } => {
            let url = url.unwrap_or_else(|| format!("http://{}", config.server.listen));
            match healthcheck(&url).await {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(reason) => {
                    eprintln!("gatehouse: healthcheck: {reason}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::BenchHash { seconds, threads } => {
            let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map(usize::from).unwrap_or(1));
            let rate = bench_hash(Duration::from_secs(seconds), threads);
            println!("argon2id (m=19456,t=2,p=1): {rate:.1} hashes/s on {threads} threads");
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchTasks { count, workers, concurrency } => {
            let mut config = config;
            config.tasks.poll_interval = gatehouse_types::DurationString::parse("milliseconds=50").map_err(|e| e.to_string())?;
            let state = crate::app::build_state(config).await.map_err(|e| e.to_string())?;
            crate::tasks::bench::run(&state, count, workers, concurrency).await.map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config { .. } => Ok(ExitCode::SUCCESS),
        Command::Backup { to } => {
            let written = crate::backup::backup(&config, &to).await?;
            println!(
                "backup written to {} ({} bytes, secret key fingerprint {}); it holds the secret key: keep it as safe as the key",
                written.path.display(),
                written.bytes,
                written.secret_key_fingerprint
            );
            println!("uploaded files: {} in the backup", written.media_files);
            if written.media_gone > 0 {
                println!("{} uploaded files were deleted while the backup ran and are not in it", written.media_gone);
            }
            if let Some(place) = &written.media_elsewhere {
                println!("uploaded files live in {place} and are not in this backup: back them up there");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore { from } => {
            let restored = crate::backup::restore(&config, &from).await?;
            let key = match &restored.secret_key {
                Some(path) => format!("the secret key to {}", path.display()),
                None => "the configured secret key checked".to_owned(),
            };
            println!(
                "restored the backup of {} into {}, {key}, {} uploaded files; start the server to apply any newer migrations",
                restored.taken,
                restored.database.display(),
                restored.media_files
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Token { command: TokenCommand::Create { user, identifier, intent, description, expires_in, no_expiry } } => {
            create_token(config, &user, identifier, &intent, description, expires_in, no_expiry).await
        }
        Command::RotateSigningKey { compromised } => rotate_signing_key(config, compromised).await,
    }
}

async fn rotate_signing_key(config: Config, compromised: bool) -> Result<ExitCode, String> {
    let state = crate::app::build_state_existing(config).await.map_err(|e| e.to_string())?;
    let rotation = crate::oauth::keys::rotate(&state, compromised).await.map_err(describe_validation)?;
    let kid = crate::crypto::jwt::key_id;
    println!("signing with the new managed key {}", kid(&rotation.active));
    if let Some(previous) = &rotation.previous {
        println!("still published until its tokens expire: {}", kid(previous));
    }
    for retired in &rotation.retired {
        println!("retired (no longer published): {}", kid(retired));
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: Config) -> Result<ExitCode, String> {
    let started = std::time::Instant::now();
    let server = crate::app::Server::bind(config).await.map_err(|e| e.to_string())?;
    let state = server.state.clone();
    bootstrap(&state).await?;
    let server_config = &state.config.server;
    if server_config.secure_cookies && !server_config.listen.ip().is_loopback() && server_config.trusted_proxies.is_empty() {
        tracing::warn!(
            listen = %server_config.listen,
            "cookies are Secure, so browsers send them back only over HTTPS, and this listener is reachable from other hosts \
             with no TLS proxy in server.trusted_proxies: put it behind one, or set server.secure_cookies = false for plain-HTTP \
             testing, or sign-in pages will start over at every step"
        );
    }
    if !service::superuser_exists(&state.db, state.tenant).await.map_err(|e| e.to_string())? {
        tracing::warn!(
            "no superuser exists yet; create one with: gatehouse create-superuser --email admin@example.com \
             (or start with GATEHOUSE_BOOTSTRAP_EMAIL and GATEHOUSE_BOOTSTRAP_PASSWORD set)"
        );
    }
    let shutdown = crate::app::shutdown_signal();
    tracing::info!(
        addr = %server.addr(),
        metrics = %server.metrics_addr().map_or_else(|| "off".to_owned(), |addr| addr.to_string()),
        database = %state.config.database_description(),
        startup_ms = started.elapsed().as_secs_f64() * 1000.0,
        "gatehouse is ready"
    );
    let worker = if state.config.tasks.run_in_server {
        Some(crate::tasks::worker::start(state.clone(), state.config.tasks.concurrency).await.map_err(|e| e.to_string())?)
    } else {
        None
    };
    server
        .run(async move {
            shutdown.await;
            if let Some(worker) = worker {
                worker.shutdown().await;
            }
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// Creates the first superuser from `GATEHOUSE_BOOTSTRAP_EMAIL` and the bootstrap password when
/// no superuser exists; does nothing once one does.
async fn bootstrap(state: &crate::state::AppState) -> Result<(), String> {
    let Some(email) = std::env::var("GATEHOUSE_BOOTSTRAP_EMAIL").ok().filter(|e| !e.is_empty()) else { return Ok(()) };
    let email = Email::parse(&email).map_err(|e| format!("GATEHOUSE_BOOTSTRAP_EMAIL: {e}"))?;
    let Some(password) = bootstrap_password()? else {
        return Err(
            "GATEHOUSE_BOOTSTRAP_EMAIL is set, but no password: set GATEHOUSE_BOOTSTRAP_PASSWORD or GATEHOUSE_BOOTSTRAP_PASSWORD_FILE"
                .into(),
        );
    };
    match service::bootstrap_superuser(state, email, password).await {
        Ok(Some(user)) => tracing::info!(email = %user.email, pk = user.id, "created the first superuser from GATEHOUSE_BOOTSTRAP_EMAIL"),
        Ok(None) => tracing::debug!("a superuser exists; GATEHOUSE_BOOTSTRAP_EMAIL is not used"),
        // A leftover variable naming someone else's account must not keep the server down.
        Err(Error::Conflict(message)) => {
            tracing::warn!(
                "GATEHOUSE_BOOTSTRAP_EMAIL: {message}; no superuser was created (use gatehouse create-superuser or set-password)"
            );
        }
        Err(error) => return Err(describe_validation(error)),
    }
    Ok(())
}

/// The password given for unattended use: `GATEHOUSE_BOOTSTRAP_PASSWORD`, or the file named by
/// `GATEHOUSE_BOOTSTRAP_PASSWORD_FILE` (the container convention for secrets; one trailing line
/// break is not part of the password).
fn bootstrap_password() -> Result<Option<Password>, String> {
    if let Ok(password) = std::env::var("GATEHOUSE_BOOTSTRAP_PASSWORD")
        && !password.is_empty()
    {
        return Ok(Some(Password::new(password)));
    }
    let Some(path) = std::env::var_os("GATEHOUSE_BOOTSTRAP_PASSWORD_FILE").filter(|p| !p.is_empty()) else { return Ok(None) };
    let password =
        crate::config::secret_from_file(&PathBuf::from(path)).map_err(|problem| format!("GATEHOUSE_BOOTSTRAP_PASSWORD_FILE: {problem}"))?;
    Ok(Some(Password::new(password)))
}

/// Reads a new password: the bootstrap variable or file, a terminal prompt (twice), or one stdin
/// line.
fn read_password() -> Result<Password, String> {
    if let Some(password) = bootstrap_password()? {
        return Ok(password);
    }
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
        let second = rpassword::prompt_password("Password (again): ").map_err(|e| e.to_string())?;
        if first != second {
            return Err("the passwords do not match".into());
        }
        return Ok(Password::new(first));
    }
    let mut line = String::new();
    std::io::stdin().lock().take(4096).read_line(&mut line).map_err(|e| e.to_string())?;
    let password = line.strip_suffix('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).unwrap_or(&line).to_owned();
    if password.is_empty() {
        return Err("no password given: set GATEHOUSE_BOOTSTRAP_PASSWORD or pass it on stdin".into());
    }
    Ok(Password::new(password))
}

async fn create_user(
    state: &crate::state::AppState,
    args: UserArgs,
    superuser: bool,
    staff: bool,
    no_password: bool,
) -> Result<ExitCode, String> {
    let email = Email::parse(&args.email).map_err(|e| format!("--email: {e}"))?;
    let password = if no_password { None } else { Some(read_password()?) };
    let mut new = NewUser::with_email(email);
    new.name = args.name;
    new.username = match args.username {
        Some(username) => Some(crate::accounts::parse_username(&username).map_err(|e| format!("--username: {e}"))?),
        None => None,
    };
    new.password = password;
    new.is_superuser = superuser;
    new.is_staff = superuser || staff;
    match service::create_user(state, &Actor::system(), new).await {
        Ok(user) => {
            let kind = if superuser { "superuser" } else { "user" };
            println!("created {kind} {} (pk {})", user.email, user.id);
            let _ = std::io::stdout().flush();
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => Err(describe_validation(error)),
    }
}

/// With `--if-missing`: the message to print when a superuser with `email` exists already, an
/// error when the address belongs to someone who is not one.
async fn existing_superuser(state: &crate::state::AppState, email: &str) -> Result<Option<String>, String> {
    let email = Email::parse(email).map_err(|e| format!("--email: {e}"))?;
    match service::find_user_by_email(&state.db, state.tenant, &email).await.map_err(|e| e.to_string())? {
        None => Ok(None),
        Some(user) if user.is_superuser => Ok(Some(format!("superuser {} exists (pk {}); nothing to do", user.email, user.id))),
        Some(user) => Err(format!("--email: {} belongs to a user who is not a superuser (pk {})", user.email, user.id)),
    }
}

/// Sets a user's password; the domain ends their sessions and app passwords with it.
async fn set_password(config: Config, email: &str) -> Result<ExitCode, String> {
    let email = Email::parse(email).map_err(|e| format!("--email: {e}"))?;
    let password = read_password()?;
    let state = crate::app::build_state_existing(config).await.map_err(|e| e.to_string())?;
    let user = service::find_user_by_email(&state.db, state.tenant, &email)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("--email: no user with the e-mail address {email}"))?;
    service::set_password(&state, &Actor::system(), user.id, password, None).await.map_err(describe_validation)?;
    println!("password set for {}; their sessions and app passwords have ended", user.email);
    Ok(ExitCode::SUCCESS)
}

fn describe_validation(error: Error) -> String {
    match error {
        Error::Validation(errors) => {
            errors.fields().iter().map(|(field, messages)| format!("{field}: {}", messages.join(" "))).collect::<Vec<_>>().join("; ")
        }
        other => other.to_string(),
    }
}

async fn create_token(
    config: Config,
    email: &str,
    identifier: String,
    intent: &str,
    description: String,
    expires_in: Option<gatehouse_types::DurationString>,
    no_expiry: bool,
) -> Result<ExitCode, String> {
    use crate::tokens::service::{Intent, NewToken, parse_identifier};
    let email = Email::parse(email).map_err(|e| format!("--user: {e}"))?;
    let identifier = parse_identifier(&identifier).map_err(|e| format!("--identifier: {e}"))?;
    let intent = match Intent::parse(intent) {
        Ok(intent @ (Intent::Api | Intent::AppPassword)) => intent,
        _ => return Err("--intent: choose api or app_password".into()),
    };
    let state = crate::app::build_state_existing(config).await.map_err(|e| e.to_string())?;
    let owner = service::find_user_by_email(&state.db, state.tenant, &email)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("--user: no user with the e-mail address {email}"))?;
    let new = NewToken {
        identifier,
        intent,
        user_id: owner.id,
        name: String::new(),
        description,
        managed: None,
        expiring: !no_expiry,
        expires: expires_in.map(|d| chrono::Utc::now() + d.to_chrono()),
        tags: Vec::new(),
    };
    let (token, key) = crate::tokens::service::create(&state, &Actor::system(), new).await.map_err(describe_validation)?;
    let expiry = match token.expires {
        Some(at) => format!("expires {}", at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        None => "never expires".to_owned(),
    };
    eprintln!("created {} token {} for {} ({expiry}); the key follows:", token.intent.as_str(), token.identifier, owner.email);
    println!("{}", key.expose());
    Ok(ExitCode::SUCCESS)
}

/// Hashes on `threads` threads for `duration` and returns hashes per second.
fn bench_hash(duration: Duration, threads: usize) -> f64 {
    let started = std::time::Instant::now();
    let handles: Vec<_> = (0..threads.max(1))
        .map(|_| {
            std::thread::spawn(move || {
                let password = Password::new("benchmark password, not a secret".into());
                let mut count = 0u64;
                while started.elapsed() < duration {
                    if crate::accounts::password::hash(&password).is_ok() {
                        count += 1;
                    }
                }
                count
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    total as f64 / started.elapsed().as_secs_f64()
}

/// The readiness check `healthcheck` asks for when the URL names no path of its own.
const READY_PATH: &str = "/-/health/ready/";

/// GETs the readiness check over plain HTTP and expects a 2xx answer; otherwise says why not.
/// A URL with a path of its own is asked as it is; a bare `http://host:port` gets the
/// readiness path.
async fn healthcheck(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url}: healthcheck needs an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(slash) if rest[slash..].len() > 1 => (&rest[..slash], &rest[slash..]),
        Some(slash) => (&rest[..slash], READY_PATH),
        None => (rest, READY_PATH),
    };
    let target = format!("http://{authority}{path}");
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(authority).await.map_err(|e| format!("cannot connect to {authority}: {e}"))?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.map_err(|e| format!("{target}: {e}"))?;
        let mut head = vec![0u8; 64];
        let read = stream.read(&mut head).await.map_err(|e| format!("{target}: {e}"))?;
        let status_line = String::from_utf8_lossy(&head[..read]).into_owned();
        let code = status_line.split_whitespace().nth(1).ok_or_else(|| format!("{target} did not answer HTTP"))?.to_owned();
        if code.starts_with('2') { Ok(()) } else { Err(format!("{target} answered {code}: not ready")) }
    };
    tokio::time::timeout(Duration::from_secs(5), attempt).await.map_err(|_| format!("{target} did not answer within 5 s"))?
}
