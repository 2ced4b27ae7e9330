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
use crate::http::auth::Principal;
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
    pub user_agent: Value,
    pub last_ip: Option<String>,
    pub last_user_agent: String,
    pub last_used: DateTime<Utc>,
    pub created: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

impl AuthenticatedSession {
    fn new(session: session::Model, current: Option<Uuid>) -> Self {
        Self {
            uuid: session.id,
            current: current == Some(session.id),
            user: session.user_id,
            user_agent: session.client,
            last_ip: session.last_ip,
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
    ApiJson(body): ApiJson<SignInRequest>,
) -> Result<(HeaderMap, Json<SignInResponse>)> {
    let (user, new) = service::sign_in(&state, &body.email, Password::new(body.password), &client).await?;
    let max_age = state.config.sessions.duration.to_chrono().num_seconds();
    let mut headers = HeaderMap::new();
    crate::http::cookies::sign_in_cookies(&state, &mut headers, &new.key, &new.csrf_token, Some(max_age))?;
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
