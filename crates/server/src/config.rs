//! Configuration: built-in defaults, then an optional TOML file, then `GATEHOUSE_*`
//! environment variables with `__` for nesting (`GATEHOUSE_DATABASE__URL`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use gatehouse_types::DurationString;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Environment variables under the `GATEHOUSE_` prefix that are not configuration keys.
const NON_CONFIG_ENV: [&str; 5] = ["CONFIG", "BOOTSTRAP_EMAIL", "BOOTSTRAP_PASSWORD", "BOOTSTRAP_PASSWORD_FILE", "TEST_DATABASE_URL"];

/// The effective configuration of a Gatehouse process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for the embedded database and the generated secret key.
    pub data_dir: PathBuf,
    /// Key for signing and keyed hashing; generated into `data_dir` on SQLite when absent.
    pub secret_key: Option<String>,
    /// A file holding `secret_key` (the container convention for secrets), read at start.
    pub secret_key_file: Option<PathBuf>,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub sessions: SessionConfig,
    pub passwords: PasswordConfig,
    pub sign_in: SignInConfig,
    pub events: EventConfig,
    pub api: ApiConfig,
    pub tokens: TokenConfig,
    pub sms: SmsConfig,
    pub email: EmailConfig,
    pub tasks: TaskConfig,
    pub flows: FlowConfig,
    pub identifiers: IdentifierConfig,
    pub media: MediaConfig,
}

/// Where uploaded files (application icons, flow backgrounds, logos, avatars) are kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// `file` (a local directory) or `s3` (S3-compatible object storage).
    pub backend: MediaBackend,
    /// The directory of the `file` backend; unset means `media` in `data_dir`.
    pub path: Option<PathBuf>,
    /// Largest accepted upload, in bytes.
    pub max_upload_bytes: usize,
    pub s3: S3Config,
}

/// The storage behind uploaded files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaBackend {
    File,
    S3,
}

/// An S3-compatible bucket. Credentials and region left empty come from the usual AWS
/// environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
/// `AWS_REGION`, `AWS_ENDPOINT_URL`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    pub region: String,
    /// The service's URL, for anything but AWS (MinIO, Ceph, Garage, ...); empty means AWS.
    pub endpoint: String,
    /// Address the bucket in the path (`endpoint/bucket/key`) instead of the host name.
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// A file holding `secret_access_key`, read at start.
    pub secret_access_key_file: Option<PathBuf>,
    /// Create the bucket at start when it does not exist.
    pub create_bucket: bool,
    /// How long one request to the service may take, connecting included.
    pub timeout: DurationString,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            backend: MediaBackend::File,
            path: None,
            max_upload_bytes: 5 * 1024 * 1024,
            s3: S3Config {
                bucket: String::new(),
                region: String::new(),
                endpoint: String::new(),
                path_style: false,
                access_key_id: String::new(),
                secret_access_key: String::new(),
                secret_access_key_file: None,
                create_bucket: false,
                timeout: DurationString::from_secs(10),
            },
        }
    }
}

/// Account identifiers (e-mail addresses and usernames).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentifierConfig {
    /// Accept only ASCII in new e-mail addresses and usernames.
    pub ascii_only: bool,
}

/// Slug of the sign-in flow a fresh server creates, and the one configured unless told otherwise.
pub const DEFAULT_AUTHENTICATION_FLOW: &str = "default-authentication-flow";
/// Slug of the sign-out flow a fresh server creates, and the one configured unless told otherwise.
pub const DEFAULT_INVALIDATION_FLOW: &str = "default-invalidation-flow";

/// Flows and the pages that run them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    /// How long a flow run may take from its first question to its end.
    pub run_lifetime: DurationString,
    /// How long a process may keep a flow's plan in memory; changes drop plans at once (in
    /// other processes through PostgreSQL's `NOTIFY`), so this bounds only a missed message.
    /// Zero reads the plan for every request.
    pub plan_cache_ttl: DurationString,
    /// Slug of the flow people are sent to for signing in.
    pub authentication_flow: String,
    /// Slug of the flow that signs people out.
    pub invalidation_flow: String,
}

/// Listeners and HTTP behaviour.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the public HTTP listener.
    pub listen: SocketAddr,
    /// Address of the Prometheus metrics listener; kept separate so it is not public by accident.
    pub metrics_listen: Option<SocketAddr>,
    /// Peers whose `X-Forwarded-For` header is trusted for the client address.
    pub trusted_proxies: Vec<IpNet>,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Whether cookies carry the `Secure` flag; turn off only for plain-HTTP development.
    pub secure_cookies: bool,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_grace: DurationString,
    /// The address people and applications reach this server at (`https://id.example.com`),
    /// from which OpenID issuers and endpoint URLs are made. Without it they follow each
    /// request's `Host`, which suits development only.
    pub public_url: Option<String>,
}

/// Storage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path` or `postgres://user@host/db`; empty means `data_dir/gatehouse.sqlite3`.
    pub url: String,
    /// A file holding `url` (which may contain a password), read at start.
    pub url_file: Option<PathBuf>,
    /// Connections in the pool; unset means [`DatabaseConfig::SQLITE_CONNECTIONS`] on SQLite and
    /// [`DatabaseConfig::POSTGRES_CONNECTIONS`] on PostgreSQL.
    pub max_connections: Option<u32>,
}

/// The smallest PostgreSQL pool that works: the process's notification listener and its task
/// worker's each hold a connection for as long as they run, and requests need one more.
const MIN_POSTGRES_CONNECTIONS: u32 = 3;

impl DatabaseConfig {
    /// SQLite's default pool: one connection. SQLite runs one writer at a time whatever the pool,
    /// and a connection empties its page cache whenever another connection wrote, so with several
    /// connections taken in turn nearly every statement after a write read its pages back from
    /// the file; one connection keeps them.
    pub const SQLITE_CONNECTIONS: u32 = 1;
    /// PostgreSQL's default pool.
    pub const POSTGRES_CONNECTIONS: u32 = 10;
}

/// Log output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `auto` (human on a terminal, JSON otherwise), `human` or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `gatehouse=debug,info`.
    pub level: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Human,
    Json,
}

/// Browser and API sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Lifetime of a session from sign-in.
    pub duration: DurationString,
    /// Name of the session cookie.
    pub cookie_name: String,
    /// How long a session check may be answered from memory; changes invalidate it at once
    /// (on PostgreSQL in every process). `seconds=0` turns the cache off.
    pub cache_ttl: DurationString,
}

/// Password rules (NIST 800-63B): a minimum length, a generous maximum, no composition rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordConfig {
    pub min_length: usize,
    /// Reject passwords a strength estimator finds common or easy to guess.
    pub reject_common: bool,
    /// Password checks that may wait for a free password thread; when that many wait, further
    /// ones are refused at once with 503 and `Retry-After` instead of queueing without end.
    pub hash_queue: usize,
}

/// Sign-in throttling.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInConfig {
    /// Failures one client address (or one known browser) may make at one account without
    /// delay.
    pub free_failures_per_account_address: u32,
    /// Most failures one client address can make at one account in an hour: the delay between
    /// its attempts grows to 3600 / this many seconds and stays there. At most one less than
    /// `max_failures_per_account_hour` takes effect, so one address cannot use up the ceiling.
    pub max_failures_per_account_address_hour: u32,
    /// Most failures at one account from all addresses together in an hour; past it, only
    /// browsers that signed in to the account before get through until the hour ends.
    pub max_failures_per_account_hour: u32,
    pub free_failures_per_ip: u32,
    pub max_failures_per_ip_hour: u32,
}

/// Audit trail.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventConfig {
    /// How long events are kept.
    pub retention: DurationString,
    /// Record the pages signed-in users visit.
    pub record_visits: bool,
    /// A MaxMind-format city database for locating sign-ins.
    pub geoip_path: Option<PathBuf>,
}

/// API keys and other tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Lifetime of an expiring token created without `expires` (authentik's tenant default).
    pub default_duration: DurationString,
    /// Most live (active, unexpired) tokens one user may hold.
    pub max_live_per_user: u32,
    /// Longest lifetime a token may get from anyone but a superuser; their tokens always expire.
    pub max_lifetime: DurationString,
    /// How often the recorded uses of keys are written to the database.
    pub last_used_flush: DurationString,
    /// How old the managed signing key (for providers without their own) gets before a daily
    /// task replaces it. The key it replaces stays published while tokens it signed may live.
    pub signing_key_rotation: DurationString,
    /// How long OAuth clients, opened signing keys and live access tokens may be answered from
    /// memory; changes drop them at once (on PostgreSQL in every process). `seconds=0` turns
    /// the cache off.
    pub oauth_cache_ttl: DurationString,
}

/// Text messages with one-time codes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    /// Where Twilio's API is: `{twilio_base_url}/2010-04-01/Accounts/{sid}/Messages.json`.
    pub twilio_base_url: String,
    /// How long one message to a provider may take, connecting included.
    pub send_timeout: DurationString,
}

impl Default for SmsConfig {
    fn default() -> Self {
        Self { twilio_base_url: "https://api.twilio.com".into(), send_timeout: DurationString::from_secs(10) }
    }
}

/// The mail relay e-mail authenticator stages use when they say `use_global_settings`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// The relay's host name; empty means no relay is configured.
    pub host: String,
    pub port: u16,
    /// Credentials, when the relay asks for them.
    pub username: String,
    pub password: String,
    /// Upgrade the connection with STARTTLS (refusing a relay that cannot).
    pub use_tls: bool,
    /// Speak TLS from the first byte (usually port 465).
    pub use_ssl: bool,
    /// How long one message may take, connecting included.
    pub timeout: DurationString,
    /// The sender of every message.
    pub from: String,
}

impl MediaConfig {
    /// The directory of the `file` backend.
    pub fn directory(&self, data_dir: &Path) -> PathBuf {
        self.path.clone().unwrap_or_else(|| data_dir.join("media"))
    }
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: 25,
            username: String::new(),
            password: String::new(),
            use_tls: false,
            use_ssl: false,
            timeout: DurationString::from_secs(10),
            from: "gatehouse@localhost".into(),
        }
    }
}

/// Background tasks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// Run a worker pool inside `serve` (turn off when dedicated `gatehouse worker`s run).
    pub run_in_server: bool,
    /// Tasks one worker runs at a time.
    pub concurrency: usize,
    /// How often an idle worker looks for due tasks (it is also woken on PostgreSQL).
    pub poll_interval: DurationString,
    /// How often a worker reports that it is alive, rescues tasks and sends due schedules.
    pub heartbeat: DurationString,
    /// A worker not seen for this long is dead; its tasks go back to the queue.
    pub worker_timeout: DurationString,
    /// First retry delay; it doubles per retry up to `retry_max_backoff`, jittered.
    pub retry_min_backoff: DurationString,
    pub retry_max_backoff: DurationString,
    /// How long in-flight tasks may finish after SIGTERM before they go back to the queue.
    pub shutdown_deadline: DurationString,
    /// Finished tasks older than this are removed by the built-in purge.
    pub finished_retention: DurationString,
}

/// API conventions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    pub default_page_size: u64,
    pub max_page_size: u64,
    /// Largest `attributes` of a user or group, as JSON bytes.
    pub max_attributes_bytes: usize,
    /// Deepest nesting of lists and objects in `attributes`.
    pub max_attributes_depth: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self { default_page_size: 20, max_page_size: 100, max_attributes_bytes: 64 * 1024, max_attributes_depth: 16 }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            secret_key: None,
            secret_key_file: None,
            identifiers: IdentifierConfig::default(),
            media: MediaConfig::default(),
            server: ServerConfig::default(),
            database: DatabaseConfig { url: String::new(), url_file: None, max_connections: None },
            log: LogConfig { format: LogFormat::Auto, level: "info".into() },
            sessions: SessionConfig {
                duration: DurationString::from_secs(24 * 3600),
                cookie_name: "gatehouse_session".into(),
                cache_ttl: DurationString::from_secs(10),
            },
            passwords: PasswordConfig { min_length: 8, reject_common: true, hash_queue: 64 },
            sign_in: SignInConfig {
                free_failures_per_account_address: 5,
                max_failures_per_account_address_hour: 30,
                max_failures_per_account_hour: 100,
                free_failures_per_ip: 20,
                max_failures_per_ip_hour: 600,
            },
            events: EventConfig { retention: DurationString::from_secs(365 * 24 * 3600), record_visits: false, geoip_path: None },
            api: ApiConfig::default(),
            tasks: TaskConfig {
                run_in_server: true,
                concurrency: 4,
                poll_interval: DurationString::from_secs(1),
                heartbeat: DurationString::from_secs(30),
                worker_timeout: DurationString::from_secs(120),
                retry_min_backoff: DurationString::from_secs(15),
                retry_max_backoff: DurationString::from_secs(3600),
                shutdown_deadline: DurationString::from_secs(10),
                finished_retention: DurationString::from_secs(30 * 24 * 3600),
            },
            flows: FlowConfig {
                run_lifetime: DurationString::from_secs(30 * 60),
                plan_cache_ttl: DurationString::from_secs(60),
                authentication_flow: DEFAULT_AUTHENTICATION_FLOW.into(),
                invalidation_flow: DEFAULT_INVALIDATION_FLOW.into(),
            },
            sms: SmsConfig::default(),
            email: EmailConfig::default(),
            tokens: TokenConfig {
                default_duration: DurationString::from_secs(24 * 3600),
                max_live_per_user: 100,
                max_lifetime: DurationString::from_secs(365 * 24 * 3600),
                last_used_flush: DurationString::from_secs(5),
                signing_key_rotation: DurationString::from_secs(90 * 24 * 3600),
                oauth_cache_ttl: DurationString::from_secs(10),
            },
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9300))),
            trusted_proxies: Vec::new(),
            max_body_bytes: 1024 * 1024,
            secure_cookies: true,
            shutdown_grace: DurationString::from_secs(10),
            public_url: None,
        }
    }
}

/// A configuration that could not be loaded; the message names the key and the problem.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// The database engines Gatehouse runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Config {
    /// Loads defaults, then `file` (or `GATEHOUSE_CONFIG`), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        let file = file.map(Path::to_path_buf).or_else(|| std::env::var_os("GATEHOUSE_CONFIG").map(PathBuf::from));
        let file_directory =
            file.as_ref().and_then(|path| std::path::absolute(path).ok()).and_then(|path| path.parent().map(Path::to_path_buf));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!("config file {} does not exist", path.display())));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("GATEHOUSE_").split("__").ignore(&NON_CONFIG_ENV));
        let mut config: Config = figment.extract().map_err(|e| ConfigError(describe_figment_error(e)))?;
        // A relative path written in the configuration file is relative to that file, so that
        // every command pointed at the same file finds the same database and secrets, whatever
        // its working directory. Defaults and environment variables stay relative to the working
        // directory, as they always were.
        let relative_to = |key: &str, path: &Path| {
            let from_file = figment.find_metadata(key).is_some_and(|m| matches!(m.source, Some(figment::Source::File(_))));
            match &file_directory {
                Some(directory) if from_file && path.is_relative() => directory.join(path),
                _ => path.to_path_buf(),
            }
        };
        config.data_dir = relative_to("data_dir", &config.data_dir);
        if let Some(path) = config.media.path.clone() {
            config.media.path = Some(relative_to("media.path", &path));
        }
        if let Some(path) = config.media.s3.secret_access_key_file.clone() {
            let path = relative_to("media.s3.secret_access_key_file", &path);
            config.media.s3.secret_access_key =
                read_secret_file("media.s3.secret_access_key", !config.media.s3.secret_access_key.is_empty(), &path)?;
            config.media.s3.secret_access_key_file = Some(path);
        }
        if let Some(path) = config.secret_key_file.clone() {
            let path = relative_to("secret_key_file", &path);
            config.secret_key = Some(read_secret_file("secret_key", config.secret_key.is_some(), &path)?);
            config.secret_key_file = Some(path);
        }
        if let Some(path) = config.database.url_file.clone() {
            config.database.url =
                read_secret_file("database.url", !config.database.url.is_empty(), &relative_to("database.url_file", &path))?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks the rules serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, problem: &str| Err(ConfigError(format!("{key}: {problem}")));
        if !self.database_url().starts_with("sqlite:") && self.backend() != Backend::Postgres {
            return fail("database.url", "must start with sqlite:// or postgres://");
        }
        if self.database.max_connections == Some(0) {
            return fail("database.max_connections", "must be at least 1");
        }
        if self.backend() == Backend::Postgres && self.pool_size() < MIN_POSTGRES_CONNECTIONS {
            let problem = format!(
                "must be at least {MIN_POSTGRES_CONNECTIONS} on PostgreSQL: a serve process keeps one listening for notifications and its task worker another"
            );
            return fail("database.max_connections", &problem);
        }
        if let Some(public_url) = &self.server.public_url {
            let parsed = url::Url::parse(public_url).ok().filter(|url| {
                matches!(url.scheme(), "http" | "https") && url.host_str().is_some() && url.query().is_none() && url.fragment().is_none()
            });
            if parsed.is_none() {
                return fail("server.public_url", "must be an http or https URL without query or fragment, such as https://id.example.com");
            }
        }
        if let Some(key) = &self.secret_key
            && key.len() < 32
        {
            return fail("secret_key", "must be at least 32 characters long");
        }
        if self.secret_key.is_none() && self.backend() == Backend::Postgres {
            return fail("secret_key", "is required with PostgreSQL, so every server process shares it (set GATEHOUSE_SECRET_KEY)");
        }
        if !(8..=64).contains(&self.passwords.min_length) {
            return fail("passwords.min_length", "must be between 8 and 64");
        }
        let limits = &self.sign_in;
        if limits.max_failures_per_account_hour == 0
            || limits.max_failures_per_account_address_hour == 0
            || limits.max_failures_per_ip_hour == 0
        {
            return fail("sign_in", "the hourly failure limits must be at least 1");
        }
        if self.sessions.duration.as_micros() < 60_000_000 {
            return fail("sessions.duration", "must be at least one minute");
        }
        if self.sessions.cookie_name.is_empty() || !self.sessions.cookie_name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return fail("sessions.cookie_name", "must be letters, digits and underscores");
        }
        if self.api.default_page_size == 0 || self.api.max_page_size < self.api.default_page_size {
            return fail("api", "default_page_size must be at least 1 and at most max_page_size");
        }
        if self.tasks.concurrency == 0 || self.tasks.concurrency > 256 {
            return fail("tasks.concurrency", "must be between 1 and 256");
        }
        for (key, value) in [
            ("tasks.poll_interval", self.tasks.poll_interval),
            ("tasks.heartbeat", self.tasks.heartbeat),
            ("tasks.worker_timeout", self.tasks.worker_timeout),
        ] {
            if value.as_micros() < 10_000 {
                return fail(key, "must be at least milliseconds=10");
            }
        }
        if self.tasks.worker_timeout <= self.tasks.heartbeat {
            return fail("tasks.worker_timeout", "must be longer than tasks.heartbeat, or live workers would be declared dead");
        }
        if self.tokens.max_lifetime.to_chrono() <= chrono::TimeDelta::zero() {
            return fail("tokens.max_lifetime", "must be longer than zero");
        }
        if self.tokens.max_live_per_user == 0 {
            return fail("tokens.max_live_per_user", "must be at least 1");
        }
        if self.tokens.last_used_flush.as_micros() < 100_000 || self.tokens.last_used_flush.as_micros() > 60_000_000 {
            return fail("tokens.last_used_flush", "must be between milliseconds=100 and minutes=1");
        }
        if self.tokens.signing_key_rotation.to_chrono() <= chrono::TimeDelta::zero() {
            return fail("tokens.signing_key_rotation", "must be longer than zero");
        }
        if self.server.max_body_bytes < 1024 {
            return fail("server.max_body_bytes", "must be at least 1024");
        }
        if !(self.sms.twilio_base_url.starts_with("https://") || self.sms.twilio_base_url.starts_with("http://")) {
            return fail("sms.twilio_base_url", "must be an http:// or https:// URL");
        }
        if !(1024..=100 * 1024 * 1024).contains(&self.media.max_upload_bytes) {
            return fail("media.max_upload_bytes", "must be between 1024 and 104857600 (100 MiB)");
        }
        if self.media.backend == MediaBackend::S3 && self.media.s3.bucket.trim().is_empty() {
            return fail("media.s3.bucket", "is required with media.backend = \"s3\"");
        }
        let endpoint = &self.media.s3.endpoint;
        if !(endpoint.is_empty() || endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return fail("media.s3.endpoint", "must be an http:// or https:// URL");
        }
        if self.media.s3.timeout.as_micros() < 100_000 || self.media.s3.timeout.as_micros() > 300_000_000 {
            return fail("media.s3.timeout", "must be between milliseconds=100 and minutes=5");
        }
        if self.email.use_tls && self.email.use_ssl {
            return fail("email.use_tls", "use_tls (STARTTLS) and use_ssl (TLS from the start) exclude each other");
        }
        if self.email.timeout.as_micros() < 100_000 || self.email.timeout.as_micros() > 60_000_000 {
            return fail("email.timeout", "must be between milliseconds=100 and minutes=1");
        }
        if lettre::message::Mailbox::from_str(&self.email.from).is_err() {
            return fail("email.from", "must be an e-mail address, optionally with a name: Gatehouse <gatehouse@example.com>");
        }
        if self.sms.send_timeout.as_micros() < 100_000 || self.sms.send_timeout.as_micros() > 60_000_000 {
            return fail("sms.send_timeout", "must be between milliseconds=100 and minutes=1");
        }
        check_log_level(&self.log.level).map_err(|problem| ConfigError(format!("log.level: {problem}")))?;
        Ok(())
    }

    /// The SQLite file in effect (meaningful on SQLite only).
    pub fn sqlite_path(&self) -> PathBuf {
        let url = self.database_url();
        let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
        PathBuf::from(path.split_once('?').map_or(path, |(path, _)| path))
    }

    /// The database in effect, as a person should read it: the SQLite file's absolute path, or
    /// the PostgreSQL URL without its password.
    pub fn database_description(&self) -> String {
        match self.backend() {
            Backend::Sqlite => {
                let path = self.sqlite_path();
                format!("SQLite {}", std::path::absolute(&path).unwrap_or(path).display())
            }
            Backend::Postgres => format!("PostgreSQL {}", redact_url_password(&self.database_url())),
        }
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("gatehouse.sqlite3").display())
        } else {
            self.database.url.clone()
        }
    }

    /// Which database engine the URL names.
    pub fn backend(&self) -> Backend {
        let url = self.database_url();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") { Backend::Postgres } else { Backend::Sqlite }
    }

    /// How many connections the database pool holds: the configured number, or the engine's
    /// default.
    pub fn pool_size(&self) -> u32 {
        self.database.max_connections.unwrap_or(match self.backend() {
            Backend::Sqlite => DatabaseConfig::SQLITE_CONNECTIONS,
            Backend::Postgres => DatabaseConfig::POSTGRES_CONNECTIONS,
        })
    }

    /// The configuration as TOML with secrets replaced, for `config show`.
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database.max_connections = Some(self.pool_size());
        if shown.secret_key.is_some() {
            shown.secret_key = Some("********".into());
        }
        shown.database.url = redact_url_password(&self.database_url());
        if !shown.email.password.is_empty() {
            shown.email.password = "********".into();
        }
        if !shown.media.s3.secret_access_key.is_empty() {
            shown.media.s3.secret_access_key = "********".into();
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# could not render configuration: {e}\n"))
    }
}

/// The value of the setting `key` from the file its `key_file` setting names.
fn read_secret_file(key: &str, also_set: bool, path: &Path) -> Result<String, ConfigError> {
    if also_set {
        return Err(ConfigError(format!("{key} and {key}_file are both set: keep one")));
    }
    secret_from_file(path).map_err(|problem| ConfigError(format!("{key}_file: {problem}")))
}

/// A secret kept in a file (the container convention): the whole file but one trailing line
/// break, which editors and `echo` add. An unreadable or empty file is an error saying which.
pub fn secret_from_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    if value.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(value.to_owned())
}

/// Replaces the passwords of a `scheme://user:password@host/path?password=…` URL: the one in
/// the authority (which may itself contain `@`) and `password` / `passfile` query parameters.
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{user}:********@{host}"),
            None => format!("{credentials}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if name.eq_ignore_ascii_case("password") || name.eq_ignore_ascii_case("passfile") => {
                        format!("{name}=********")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// The levels `log.level` accepts, alone or after `target=`.
const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// A log filter of levels and `target=level` directives; tracing would take any word as a target
/// name, so that a misspelt level silently logs nothing.
fn check_log_level(filter: &str) -> Result<(), String> {
    let directives: Vec<&str> = filter.split(',').map(str::trim).filter(|d| !d.is_empty()).collect();
    if directives.is_empty() {
        return Err("is empty: use one of off, error, warn, info, debug, trace".into());
    }
    for directive in directives {
        let level = directive.rsplit_once('=').map_or(directive, |(_, level)| level);
        if !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "'{directive}' names no level: use one of off, error, warn, info, debug, trace, or target=level directives \
                 such as 'info,gatehouse=debug'"
            ));
        }
    }
    Ok(())
}

/// The environment variable that sets the setting at `path`.
fn env_name(path: &[String]) -> String {
    format!("GATEHOUSE_{}", path.iter().map(|p| p.to_ascii_uppercase()).collect::<Vec<_>>().join("__"))
}

/// Every setting's dotted name, tables included (`server`, `server.listen`, …).
fn known_keys() -> Vec<String> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
        if let serde_json::Value::Object(map) = value {
            for (key, child) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                walk(&path, child, out);
                out.push(path);
            }
        }
    }
    let mut keys = Vec::new();
    if let Ok(defaults) = serde_json::to_value(Config::default()) {
        walk("", &defaults, &mut keys);
    }
    keys
}

/// The setting an unknown `key` most likely meant: the same words with other separators
/// (`server_listen`), a setting of that name in a table (`listen` → `server.listen`), or the
/// nearest name within a few typos.
fn nearest_key(key: &str, known: &[String]) -> Option<String> {
    let squash = |text: &str| text.to_ascii_lowercase().replace(['.', '_'], "");
    if let Some(same) = known.iter().find(|k| squash(k) == squash(key)) {
        return Some(same.clone());
    }
    if !key.contains('.') {
        let mut in_tables = known.iter().filter(|k| k.rsplit('.').next() == Some(key));
        if let (Some(only), None) = (in_tables.next(), in_tables.next()) {
            return Some(only.clone());
        }
    }
    let (distance, nearest) = known.iter().map(|k| (strsim::levenshtein(&squash(key), &squash(k)), k)).min()?;
    (distance <= std::cmp::max(2, key.len() / 4)).then(|| nearest.clone())
}

fn describe_figment_error(error: figment::Error) -> String {
    let known = known_keys();
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let from_environment = e.metadata.as_ref().is_some_and(|m| m.name.contains("environment"));
            let origin = match e.metadata.as_ref().and_then(|m| m.source.as_ref()) {
                _ if from_environment => format!(" (from the environment variable {})", env_name(&e.path)),
                Some(figment::Source::File(path)) => format!(" (in {})", path.display()),
                _ => String::new(),
            };
            if let figment::error::Kind::UnknownField(..) = e.kind {
                let hint = match nearest_key(&key, &known) {
                    Some(nearest) if from_environment => {
                        let path: Vec<String> = nearest.split('.').map(str::to_owned).collect();
                        format!("; did you mean {nearest} ({})?", env_name(&path))
                    }
                    Some(nearest) => format!("; did you mean {nearest}?"),
                    None => String::new(),
                };
                return format!("unknown setting {key}{origin}{hint}");
            }
            let kind = e.kind.to_string().replace('`', "");
            // A message about a secret could quote it.
            // A message about a secret or the database URL could quote it.
            let kind = if kind.contains("secret") || key.contains("secret") || key.starts_with("database") {
                "invalid value".to_owned()
            } else {
                kind
            };
            let hint = if key.ends_with("listen") && kind.contains("socket address") {
                ": use an IP address and a port, such as 127.0.0.1:9000 or 0.0.0.0:9000 (not a host name)"
            } else {
                ""
            };
            if key.is_empty() { format!("{kind}{origin}") } else { format!("{key}: {kind}{hint}{origin}") }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_never_show() {
        for (url, shown) in [
            ("postgres://gh:pw@db/gatehouse", "postgres://gh:********@db/gatehouse"),
            ("postgres://gh:p@ss@db/gatehouse", "postgres://gh:********@db/gatehouse"),
            ("postgres://gh@db/gatehouse?password=pw&sslmode=require", "postgres://gh@db/gatehouse?password=********&sslmode=require"),
            ("postgres://gh@db/gatehouse?passfile=/run/pw", "postgres://gh@db/gatehouse?passfile=********"),
            ("postgres://db/gatehouse", "postgres://db/gatehouse"),
            ("sqlite://data/gatehouse.sqlite3", "sqlite://data/gatehouse.sqlite3"),
        ] {
            assert_eq!(redact_url_password(url), shown);
        }
    }

    #[test]
    fn defaults_are_valid() {
        let config = Config::default();
        config.validate().unwrap();
        assert_eq!(config.backend(), Backend::Sqlite);
        assert_eq!(config.database_url(), "sqlite://data/gatehouse.sqlite3");
    }

    #[test]
    fn each_engine_has_its_own_pool_size_and_postgres_keeps_room_beside_its_listeners() {
        let mut config = Config::default();
        assert_eq!(config.pool_size(), 1, "SQLite keeps one connection and its page cache");
        config.database.url = "postgres://gatehouse@127.0.0.1/gatehouse".into();
        config.secret_key = Some("x".repeat(40));
        assert_eq!(config.pool_size(), 10);
        config.database.max_connections = Some(2);
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("database.max_connections: must be at least 3"), "{err}");
        config.database.max_connections = Some(3);
        config.validate().unwrap();
        assert!(config.redacted_toml().contains("max_connections = 3"));
    }

    #[test]
    fn postgres_requires_a_secret_key() {
        let mut config = Config::default();
        config.database.url = "postgres://gatehouse:pw@127.0.0.1/gatehouse".into();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("secret_key"), "{err}");
        config.secret_key = Some("x".repeat(40));
        config.validate().unwrap();
    }

    #[test]
    fn redaction_hides_password_and_key() {
        let mut config = Config::default();
        config.database.url = "postgres://gatehouse:hunter2hunter2@db/gatehouse".into();
        config.secret_key = Some("s".repeat(40));
        config.email.password = "relay-password-7".into();
        let shown = config.redacted_toml();
        assert!(!shown.contains("relay-password-7"), "the mail relay's password is shown: {shown}");
        assert!(!shown.contains("hunter2"));
        assert!(!shown.contains(&"s".repeat(40)));
        assert!(shown.contains("postgres://gatehouse:********@db/gatehouse"));
    }
}
