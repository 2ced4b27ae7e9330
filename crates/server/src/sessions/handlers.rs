//! Sign-in, sign-out and `/api/v3/core/authenticated_sessions/`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::entities::session;
use super::service;
use crate::accounts::password::Password;
use crate::db::pagination::Paginated;
use crate::error::{Error, Result};
use crate::events::client::ClientInfo;
use crate::http::auth::{MaybeSignedIn, Principal};
use crate::http::json::ApiJson;
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_in))
        .routes(routes!(sign_out))
        .routes(routes!(list_sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(revoke_other_sessions))
}

/// Credentials for signing in.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    pub email: String,
    pub password: String,
}

/// The signed-in user, the CSRF token for unsafe requests, and the session.
#[derive(Serialize, ToSchema)]
pub struct SignInResponse {
    pub user: SignedInUser,
    /// Send as `X-CSRFToken` with every cookie-authenticated unsafe request.
    pub csrf_token: String,
    pub session: AuthenticatedSession,
}

/// Who signed in.
#[derive(Serialize, ToSchema)]
pub struct SignedInUser {
    pub pk: i64,
    pub username: String,
    pub email: String,
    pub name: String,
}

/// authentik's `AuthenticatedSession`, as far as Gatehouse keeps it.
#[derive(Serialize, ToSchema)]
pub struct AuthenticatedSession {
    pub uuid: Uuid,
    pub current: bool,
    pub user: i64,
    pub user_agent: SessionUserAgent,
    /// Where the session was started, when a GeoIP database is configured and knows the address.
    pub geo_ip: Option<SessionGeoIp>,
    /// Gatehouse reads no ASN database.
    #[schema(value_type = Option<Object>)]
    pub asn: Option<Value>,
    /// The address the session was last used from (empty when it came through no network).
    pub last_ip: String,
    pub last_user_agent: String,
    pub last_used: DateTime<Utc>,
    pub created: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

/// authentik's parsed user agent of a session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionUserAgent {
    pub device: SessionDevice,
    pub os: SessionOs,
    pub user_agent: SessionBrowser,
    /// The user agent as sent.
    pub string: String,
}

/// The device class of a user agent.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionDevice {
    pub brand: Option<String>,
    pub family: String,
    pub model: Option<String>,
}

/// The operating system of a user agent.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionOs {
    pub family: String,
    pub major: Option<String>,
    pub minor: Option<String>,
    pub patch: Option<String>,
    pub patch_minor: Option<String>,
}

/// The browser of a user agent.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionBrowser {
    pub family: String,
    pub major: String,
    pub minor: String,
    pub patch: String,
}

/// Where a session was started.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionGeoIp {
    pub continent: Option<String>,
    pub country: Option<String>,
    pub lat: Option<f64>,
    pub long: Option<f64>,
    pub city: String,
}

/// The parts of a dotted version ("120.0.1" → 120, 0, 1); parsers say "UNKNOWN" when they do not
/// know, which is no version at all.
fn version_parts(version: Option<&str>) -> [Option<String>; 4] {
    let mut parts = [None, None, None, None];
    if let Some(version) = version.filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("unknown")) {
        for (slot, part) in parts.iter_mut().zip(version.split(['.', '_'])) {
            *slot = Some(part.to_owned());
        }
    }
    parts
}

impl SessionUserAgent {
    /// Reads the client data recorded when the session started.
    fn from_client(client: &Value, raw: &str) -> Self {
        let text = |path: &[&str]| {
            let mut value = client;
            for key in path {
                value = &value[*key];
            }
            value.as_str().filter(|s| !s.is_empty() && !s.eq_ignore_ascii_case("unknown")).map(str::to_owned)
        };
        let [major, minor, patch, _] = version_parts(text(&["browser", "version"]).as_deref());
        let [os_major, os_minor, os_patch, os_patch_minor] = version_parts(text(&["os", "version"]).as_deref());
        Self {
            device: SessionDevice {
                brand: text(&["device", "vendor"]),
                family: text(&["device", "category"]).unwrap_or_else(|| "Other".to_owned()),
                model: None,
            },
            os: SessionOs {
                family: text(&["os", "family"]).unwrap_or_else(|| "Other".to_owned()),
                major: os_major,
                minor: os_minor,
                patch: os_patch,
                patch_minor: os_patch_minor,
            },
            user_agent: SessionBrowser {
                family: text(&["browser", "family"]).unwrap_or_else(|| "Other".to_owned()),
                major: major.unwrap_or_default(),
                minor: minor.unwrap_or_default(),
                patch: patch.unwrap_or_default(),
            },
            string: raw.to_owned(),
        }
    }
}

impl SessionGeoIp {
    fn from_client(client: &Value) -> Option<Self> {
        let geo = client.get("geo")?;
        Some(Self {
            continent: geo["continent"].as_str().map(str::to_owned),
            country: geo["country"].as_str().map(str::to_owned),
            lat: geo["lat"].as_f64(),
            long: geo["long"].as_f64(),
            city: geo["city"].as_str().unwrap_or_default().to_owned(),
        })
    }
}

impl AuthenticatedSession {
    fn new(session: session::Model, current: Option<Uuid>) -> Self {
        Self {
            uuid: session.id,
            current: current == Some(session.id),
            user: session.user_id,
            user_agent: SessionUserAgent::from_client(&session.client, &session.user_agent),
            geo_ip: SessionGeoIp::from_client(&session.client),
            asn: None,
            last_ip: session.last_ip.unwrap_or_default(),
            last_user_agent: session.user_agent,
            last_used: session.last_used,
            created: session.created,
            expires: session.expires,
        }
    }
}

#[utoipa::path(post, path = "/api/v3/auth/sign_in/", tag = "auth", request_body = SignInRequest,
    responses((status = 200, body = SignInResponse), (status = 400, description = "Invalid e-mail or password"),
        (status = 429, description = "Too many failed attempts")))]
async fn sign_in(
    State(state): State<AppState>,
    client: ClientInfo,
    MaybeSignedIn(current): MaybeSignedIn,
    ApiJson(body): ApiJson<SignInRequest>,
) -> Result<(HeaderMap, Json<SignInResponse>)> {
    let replacing = current.as_ref().and_then(|c| c.session.as_ref());
    let rule = crate::flows::second_factor::SignInFlowRule;
    let (user, new) = service::sign_in(&state, &body.email, Password::new(body.password), &client, replacing, &rule).await?;
    let max_age = state.config.sessions.duration.to_chrono().num_seconds();
    let mut headers = HeaderMap::new();
    crate::http::cookies::sign_in_cookies(&state, &mut headers, &new, Some(max_age))?;
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let current = Some(new.session.id);
    Ok((
        headers,
        Json(SignInResponse {
            user: SignedInUser { pk: user.id, username: user.username, email: user.email, name: user.name },
            csrf_token: new.csrf_token,
            session: AuthenticatedSession::new(new.session, current),
        }),
    ))
}

#[utoipa::path(post, path = "/api/v3/auth/sign_out/", tag = "auth",
    responses((status = 204, description = "Signed out"), (status = 401, description = "Not signed in")))]
async fn sign_out(State(state): State<AppState>, principal: Principal) -> Result<(StatusCode, HeaderMap)> {
    let session = principal.session().ok_or_else(|| Error::field(crate::error::NON_FIELD_ERRORS, "Only a session can sign out."))?;
    service::sign_out(&state, session, principal.user(), &principal.client).await?;
    let mut headers = HeaderMap::new();
    crate::http::cookies::sign_out_cookies(&state, &mut headers)?;
    Ok((StatusCode::NO_CONTENT, headers))
}

#[utoipa::path(get, path = "/api/v3/core/authenticated_sessions/", tag = "core",
    responses((status = 200, description = "The caller's sessions, on one page: a user has few", body = Paginated<AuthenticatedSession>),
        (status = 401, description = "Not signed in")))]
async fn list_sessions(State(state): State<AppState>, principal: Principal) -> Result<Json<Paginated<AuthenticatedSession>>> {
    let sessions = service::list_for_user(&state, state.tenant, principal.user().id).await?;
    let current = principal.session().map(|s| s.id);
    let count = sessions.len() as u64;
    let results: Vec<AuthenticatedSession> = sessions.into_iter().map(|s| AuthenticatedSession::new(s, current)).collect();
    Ok(Json(Paginated::new(crate::db::pagination::PageRequest { page: 1, page_size: count.max(1) }, count, results)))
}

#[utoipa::path(delete, path = "/api/v3/core/authenticated_sessions/{uuid}/", tag = "core", params(("uuid" = Uuid, Path, description = "Session uuid")),
    responses((status = 204, description = "Session ended"), (status = 404, description = "Not found")))]
async fn revoke_session(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    let id = Uuid::parse_str(&id).map_err(|_| Error::NotFound)?;
    if service::revoke(&state, state.tenant, principal.user().id, id).await? { Ok(StatusCode::NO_CONTENT) } else { Err(Error::NotFound) }
}

/// How many sessions were ended.
#[derive(Serialize, ToSchema)]
pub struct RevokedCount {
    pub revoked: u64,
}

#[utoipa::path(post, path = "/api/v3/core/authenticated_sessions/revoke_others/", tag = "core",
    responses((status = 200, body = RevokedCount), (status = 401, description = "Not signed in")))]
async fn revoke_other_sessions(State(state): State<AppState>, principal: Principal) -> Result<Json<RevokedCount>> {
    let revoked = service::revoke_others(&state, principal.user().id, principal.session().map(|s| s.id)).await?;
    Ok(Json(RevokedCount { revoked }))
}
