//! Building and running a server process.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::{Config, ConfigError};
use crate::events::client::GeoIp;
use crate::events::visits::VisitRecorder;
use crate::events::{Action, EventRecord};
use crate::secret::ServerSecret;
use crate::state::AppState;

/// Most client-credentials tokens written in one statement: a burst of that many concurrent
/// grants costs one insert.
const ISSUED_TOKENS_BATCH: usize = 64;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Connect(#[from] crate::db::ConnectError),
    #[error("database migration failed: {0}")]
    Migrate(sea_orm::DbErr),
    #[error("cannot listen on {addr} ({setting}): {cause}{hint}", hint = bind_hint(cause))]
    Bind { setting: &'static str, addr: SocketAddr, cause: std::io::Error },
    #[error("{0}")]
    Other(String),
}

/// Opens the database (applying migrations) and builds the shared state.
pub async fn build_state(config: Config) -> Result<AppState, StartError> {
    build_state_with(config, crate::tasks::Registry::builtin()).await
}

/// [`build_state`] for a command that works on an installation a server already set up: on
/// SQLite the database file must exist, so that a command run with another working directory or
/// configuration says which file it looked for instead of quietly creating a second database.
pub async fn build_state_existing(config: Config) -> Result<AppState, StartError> {
    if config.backend() == crate::config::Backend::Sqlite {
        let path = config.sqlite_path();
        if !path.exists() {
            let shown = std::path::absolute(&path).unwrap_or(path);
            return Err(StartError::Other(format!(
                "there is no database at {}: start `gatehouse serve` (or run `gatehouse migrate`) with the same configuration \
                 first, or point this command at the server's data_dir (an absolute path, or --config with the server's file)",
                shown.display()
            )));
        }
    }
    build_state(config).await
}

/// [`build_state`] with the actors tasks may run (the built-in ones plus any added).
pub async fn build_state_with(config: Config, mut actors: crate::tasks::Registry) -> Result<AppState, StartError> {
    // Every process may be asked to send a code, whatever else it runs.
    if actors.get(crate::mfa::outbox::ACTOR).is_none() {
        actors.add(crate::mfa::outbox::actor());
    }
    // Any process may end a session, so any may be asked to tell relying parties.
    if actors.get(crate::oauth::backchannel::ACTOR).is_none() {
        actors.add(crate::oauth::backchannel::actor());
    }
    if actors.get(crate::oauth::keys::ACTOR).is_none() {
        actors.add(crate::oauth::keys::actor());
    }
    let secret = ServerSecret::load(&config)?;
    let mut db = crate::db::connect(&config).await?;
    let statements = Arc::new(crate::db::StatementCount::default());
    statements.attach(&mut db);
    crate::db::migrate(&db).await.map_err(StartError::Migrate)?;
    crate::secret::check_fingerprint(&db, &secret, &config, true).await.map_err(StartError::Other)?;
    let tenant = crate::tenants::ensure_default(&db).await.map_err(|e| StartError::Other(e.to_string()))?;
    let config_ttl = config.sessions.cache_ttl.to_std();
    let plan_ttl = config.flows.plan_cache_ttl.to_std();
    let oauth_ttl = config.tokens.oauth_cache_ttl.to_std();
    let password_work = Arc::new(crate::accounts::password::PasswordWork::new(config.passwords.hash_queue));
    let media = Arc::new(crate::media::store::MediaStore::open(&config).map_err(StartError::Other)?);
    let token_writer = crate::db::dedicated_writer(&config, &db).await.map_err(|e| StartError::Other(e.to_string()))?;
    let issued_tokens = Arc::new(crate::db::batch::InsertBatcher::spawn(token_writer, ISSUED_TOKENS_BATCH));
    let state = AppState::new(crate::state::Shared {
        db,
        config: Arc::new(config),
        secret: Arc::new(secret),
        tenant,
        metrics: crate::ops::metrics_handle(),
        geoip: None,
        visits: None,
        statements,
        auth_cache: Arc::new(crate::credentials::cache::AuthCache::new(config_ttl)),
        flow_plans: Arc::new(crate::flows::plans::PlanCache::new(plan_ttl)),
        oauth: Arc::new(crate::oauth::cache::OAuthCache::new(oauth_ttl)),
        devices: Arc::new(crate::endpoints::cache::DeviceCache::new(config_ttl)),
        issued_tokens,
        key_pair_changes: Arc::new(crate::db::generation::Generation::new(crate::crypto::service::CHANGES_CHANNEL)),
        passwords: password_work,
        token_usage: crate::tokens::usage::UsageRecorder::default(),
        actors: Arc::new(actors),
        stages: Arc::new(stage_kinds()),
        task_wake: Arc::new(tokio::sync::Notify::new()),
        clock: crate::clock::Clock::default(),
        media,
        sessions_ending: Arc::new(crate::oauth::backchannel::NoticesOfSignOut),
    });
    crate::tasks::schedules::ensure_builtin(&state, state.tenant).await.map_err(|e| StartError::Other(e.to_string()))?;
    crate::flows::defaults::ensure(&state, state.tenant).await.map_err(|e| StartError::Other(e.to_string()))?;
    crate::crypto::service::ensure_managed_jwt_key(&state, state.tenant).await.map_err(|e| StartError::Other(e.to_string()))?;
    crate::oauth::scopes::ensure_shipped(&state, state.tenant).await.map_err(|e| StartError::Other(e.to_string()))?;
    state.token_usage.spawn_flusher(state.db.clone(), state.config.tokens.last_used_flush.to_std());
    // One connection carries every cache's change messages; it lives as long as the process.
    let _ = crate::db::notify::spawn_subscriptions(
        &state.db,
        vec![
            crate::credentials::cache::subscription(state.auth_cache.clone()),
            crate::flows::plans::subscription(state.flow_plans.clone()),
            state.oauth.subscription(),
            state.devices.subscription(),
            state.key_pair_changes.subscription(),
        ],
    );
    let mut state = state;
    if let Some(path) = state.config.events.geoip_path.clone() {
        match GeoIp::open(&path) {
            Ok(geoip) => state = state.modified(|s| s.geoip = Some(Arc::new(geoip))),
            Err(message) => {
                // A missing location database should not take sign-in down: run without it and
                // leave a trace operators see in the events.
                tracing::warn!(%message, "running without GeoIP");
                let event = EventRecord::new(Action::ConfigurationError).with("message", serde_json::json!(message));
                crate::events::service::record(&state.db, &state, event).await.map_err(|e| StartError::Other(e.to_string()))?;
            }
        }
    }
    if state.config.events.record_visits {
        let (recorder, _writer) = VisitRecorder::start(state.db.clone());
        state = state.modified(|s| s.visits = Some(recorder));
    }
    Ok(state)
}

/// What to do about a listener that cannot be bound.
fn bind_hint(cause: &std::io::Error) -> &'static str {
    match cause.kind() {
        std::io::ErrorKind::AddrInUse => " (another process uses it: stop that one, or choose another port)",
        std::io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges: choose a port above 1024)",
        std::io::ErrorKind::AddrNotAvailable => " (no interface of this machine has that address)",
        _ => "",
    }
}

/// A server whose listeners are bound, ready to run.
pub struct Server {
    pub state: AppState,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
}

impl Server {
    /// Builds the state and binds the listeners.
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        Self::bind_with(config, crate::tasks::Registry::builtin()).await
    }

    /// [`Server::bind`] with the actors tasks may run.
    pub async fn bind_with(config: Config, actors: crate::tasks::Registry) -> Result<Self, StartError> {
        let listen = config.server.listen;
        let metrics_listen = config.server.metrics_listen;
        let state = build_state_with(config, actors).await?;
        crate::media::service::prepare_store(&state).await.map_err(|e| StartError::Other(e.to_string()))?;
        let listener =
            TcpListener::bind(listen).await.map_err(|cause| StartError::Bind { setting: "server.listen", addr: listen, cause })?;
        let metrics_listener = match metrics_listen {
            Some(addr) => {
                Some(TcpListener::bind(addr).await.map_err(|cause| StartError::Bind { setting: "server.metrics_listen", addr, cause })?)
            }
            None => None,
        };
        Ok(Self { state, listener, metrics_listener })
    }

    /// The address of the public listener.
    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| self.state.config.server.listen)
    }

    /// The address of the metrics listener.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish within the grace
    /// period and closes the database pool.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let state = self.state;
        let grace = state.config.server.shutdown_grace.to_std();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        if let Some(listener) = self.metrics_listener {
            let app = crate::ops::metrics_router(state.clone());
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop.changed().await;
                    })
                    .await;
            });
        }
        let app = crate::http::router::app(state.clone());
        let mut stop = stop_rx.clone();
        let server = tokio::spawn(async move {
            axum::serve(self.listener, app.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await
        });
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stop_tx.send(true);
        match tokio::time::timeout(grace, server).await {
            Ok(Ok(result)) => result?,
            Ok(Err(join_error)) => tracing::error!(%join_error, "server task failed"),
            Err(_) => tracing::warn!("in-flight requests did not finish within the grace period"),
        }
        if let Err(error) = state.token_usage.flush(&state.db).await {
            tracing::warn!(%error, "could not record key uses at shutdown");
        }
        let _ = state.db.clone().close().await;
        Ok(())
    }
}

/// Completes on SIGTERM or Ctrl-C. The handlers are installed when this is called, not when the
/// future is first polled, so a process that announced it is ready already stops gracefully on
/// a signal sent right after. Call it inside the runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    #[cfg(unix)]
    let interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    async move {
        #[cfg(unix)]
        {
            let wait = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(terminate) => {}
                _ = wait(interrupt) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Every stage kind: the flows' own and those other parts of the server add (the endpoint stage).
fn stage_kinds() -> crate::flows::StageRegistry {
    let mut kinds = crate::flows::StageRegistry::builtin();
    kinds.add(crate::endpoints::stage::EndpointStage);
    kinds
}
