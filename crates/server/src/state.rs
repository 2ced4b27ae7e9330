//! What every request handler shares. Nothing here is per-process state that another server
//! process would need: sessions, throttles and events all live in the database.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use sea_orm::DatabaseConnection;

use crate::config::Config;
use crate::events::client::GeoIp;
use crate::events::visits::VisitRecorder;
use crate::secret::ServerSecret;
use crate::tenants::TenantId;

/// What every handler shares, behind one reference count: a request clones its state several
/// times (extractors, middleware), and one atomic increment costs less than one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// The state holding `shared`.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }

    /// A copy of this state with `change` made to it; this one is left as it is.
    pub fn modified(&self, change: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = self.0.as_ref().clone();
        change(&mut shared);
        Self::new(shared)
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The application state's parts.
#[derive(Clone)]
pub struct Shared {
    pub db: DatabaseConnection,
    pub config: Arc<Config>,
    pub secret: Arc<ServerSecret>,
    /// The tenant requests are served for; hosts map to tenants once there are several.
    pub tenant: TenantId,
    pub metrics: PrometheusHandle,
    pub geoip: Option<Arc<GeoIp>>,
    pub visits: Option<VisitRecorder>,
    /// The statements the pool ran, for the metrics page.
    pub statements: Arc<crate::db::StatementCount>,
    /// Session checks answered from memory until a change invalidates them.
    pub auth_cache: Arc<crate::credentials::cache::AuthCache>,
    /// The plans flows make, until a change to flows, stages or bindings drops them.
    pub flow_plans: Arc<crate::flows::plans::PlanCache>,
    /// Clients, opened signing keys and live access tokens of the OAuth endpoints, until a change
    /// drops them.
    pub oauth: Arc<crate::oauth::cache::OAuthCache>,
    /// Writes the tokens of client-credentials grants, many requests' in one statement.
    pub issued_tokens: Arc<crate::db::batch::InsertBatcher<crate::oauth::entities::token::Entity>>,
    /// Device keys known to be good, and the changes that end them.
    pub devices: Arc<crate::endpoints::cache::DeviceCache>,
    /// Changes to key pairs, which drop the keys opened from them.
    pub key_pair_changes: Arc<crate::db::generation::Generation>,
    /// Admission to the password threads.
    pub passwords: Arc<crate::accounts::password::PasswordWork>,
    /// Wakes this process's workers when it queued a task (PostgreSQL also wakes other
    /// processes' workers through `NOTIFY`; SQLite has only this and polling).
    pub task_wake: Arc<tokio::sync::Notify>,
    /// The actors tasks can run.
    pub actors: Arc<crate::tasks::Registry>,
    /// The stage kinds flows can use.
    pub stages: Arc<crate::flows::StageRegistry>,
    /// Key uses waiting to be written.
    pub token_usage: crate::tokens::usage::UsageRecorder,
    /// The time limits on guessing are measured by.
    pub clock: crate::clock::Clock,
    /// What is done before sessions end (relying parties told of the sign-out).
    pub sessions_ending: Arc<dyn crate::credentials::revoke::SessionsEnding>,
    /// Where uploaded files live (shared: the state is cloned for every request).
    pub media: Arc<crate::media::store::MediaStore>,
}
