//! What the server says about itself to clients: authentik's `/root/config/` (what the front end
//! may offer) and `/admin/version/`.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::Result;
use crate::http::auth::Principal;
use crate::state::AppState;

/// The API routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(root_config)).routes(routes!(version))
}

/// authentik's `ErrorReportingConfig`: Gatehouse reports errors to nobody.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorReportingConfig {
    pub enabled: bool,
    pub sentry_dsn: String,
    pub environment: String,
    pub send_pii: bool,
    pub traces_sample_rate: f64,
}

/// authentik's `Config`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RootConfig {
    pub error_reporting: ErrorReportingConfig,
    /// What this server can do, in authentik's vocabulary; only what Gatehouse really does.
    pub capabilities: Vec<String>,
    /// Seconds a session or key check may be answered from memory.
    pub cache_timeout: i64,
    /// Gatehouse does not cache flow plans.
    pub cache_timeout_flows: i64,
    /// Gatehouse has no policies to cache.
    pub cache_timeout_policies: i64,
}

#[utoipa::path(get, path = "/api/v3/root/config/", tag = "root",
    responses((status = 200, description = "What clients may offer; anyone may ask", body = RootConfig)))]
async fn root_config(State(state): State<AppState>) -> Json<RootConfig> {
    Json(root_config_of(&state))
}

/// What `/api/v3/root/config/` answers; agents are given it with their configuration too.
pub fn root_config_of(state: &AppState) -> RootConfig {
    let mut capabilities = Vec::new();
    if state.geoip.is_some() {
        capabilities.push("can_geo_ip".to_owned());
    }
    let cache_timeout = i64::try_from(state.config.sessions.cache_ttl.to_std().as_secs()).unwrap_or(i64::MAX);
    RootConfig {
        error_reporting: ErrorReportingConfig {
            enabled: false,
            sentry_dsn: String::new(),
            environment: String::new(),
            send_pii: false,
            traces_sample_rate: 0.0,
        },
        capabilities,
        cache_timeout,
        cache_timeout_flows: 0,
        cache_timeout_policies: 0,
    }
}

/// authentik's `Version`, with Gatehouse's own version.
#[derive(Debug, Serialize, ToSchema)]
pub struct Version {
    pub version_current: String,
    /// Gatehouse does not look for releases: the latest it knows is itself.
    pub version_latest: String,
    /// Always false: no release feed was consulted.
    pub version_latest_valid: bool,
    /// The commit the binary was built from, when the build said (`GATEHOUSE_BUILD_HASH`).
    pub build_hash: String,
    pub outdated: bool,
    pub outpost_outdated: bool,
}

#[utoipa::path(get, path = "/api/v3/admin/version/", tag = "admin",
    responses((status = 200, body = Version), (status = 401, description = "Not signed in")))]
async fn version(_principal: Principal) -> Result<Json<Version>> {
    let current = env!("CARGO_PKG_VERSION").to_owned();
    Ok(Json(Version {
        version_latest: current.clone(),
        version_current: current,
        version_latest_valid: false,
        build_hash: option_env!("GATEHOUSE_BUILD_HASH").unwrap_or_default().to_owned(),
        outdated: false,
        outpost_outdated: false,
    }))
}
