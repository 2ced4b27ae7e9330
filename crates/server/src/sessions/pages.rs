//! `/if/user/`: the signed-in person's page: who they are and their sessions, each of which they
//! can end.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::Value;

use super::service;
use crate::credentials::cache::AuthContext;
use crate::error::{Error, Result};
use crate::http::auth::MaybeSignedIn;
use crate::http::pages::{error_page, form_fields, html, see_other, sign_in_url};
use crate::state::AppState;

/// One session as the page shows it.
pub struct SessionView {
    pub id: uuid::Uuid,
    pub device: String,
    pub address: String,
    pub created: String,
    pub last_used: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "user.html")]
struct UserPage {
    title: &'static str,
    name: String,
    email: String,
    username: String,
    sessions: Vec<SessionView>,
    csrf: String,
    sign_out_href: String,
}

/// "Chrome on Linux", from the parsed user agent.
fn device(client: &Value) -> String {
    let family =
        |key: &str| client.get(key).and_then(|v| v.get("family")).and_then(Value::as_str).filter(|f| !f.is_empty() && *f != "UNKNOWN");
    match (family("browser"), family("os")) {
        (Some(browser), Some(os)) => format!("{browser} on {os}"),
        (Some(browser), None) => browser.to_owned(),
        (None, Some(os)) => os.to_owned(),
        (None, None) => "Unknown device".to_owned(),
    }
}

fn sign_in_redirect(state: &AppState) -> Response {
    Redirect::to(&sign_in_url(state)).into_response()
}

/// `GET /if/user/`.
pub async fn show(State(state): State<AppState>, MaybeSignedIn(current): MaybeSignedIn) -> Response {
    let Some(current) = current.filter(|c| c.session.is_some()) else { return sign_in_redirect(&state) };
    render(&state, &current).await.unwrap_or_else(error_page)
}

async fn render(state: &AppState, current: &AuthContext) -> Result<Response> {
    let current_id = current.session.as_ref().map(|s| s.id);
    let sessions = service::list_for_user(state, state.tenant, current.user.id).await?;
    let format = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    let sessions = sessions
        .into_iter()
        .map(|s| SessionView {
            id: s.id,
            device: device(&s.client),
            address: s.last_ip.clone().unwrap_or_else(|| "unknown address".into()),
            created: format(s.created),
            last_used: format(s.last_used),
            current: Some(s.id) == current_id,
        })
        .collect();
    let csrf = current_id.map(|id| service::csrf_token(&state.secret, id)).unwrap_or_default();
    let page = UserPage {
        title: "Your account",
        name: current.user.name.clone(),
        email: current.user.email.clone(),
        username: current.user.username.clone(),
        sessions,
        csrf,
        sign_out_href: format!("/if/flow/{}/", state.config.flows.invalidation_flow),
    };
    Ok(html(StatusCode::OK, &page))
}

/// Checks the form's CSRF token against the caller's session.
fn check_form(state: &AppState, current: &AuthContext, headers: &HeaderMap, body: &[u8]) -> Result<()> {
    let fields = form_fields(headers, body)?;
    let token = fields.into_iter().find(|(k, _)| k == "csrf").map(|(_, v)| v).unwrap_or_default();
    let session = current.session.as_ref().ok_or(Error::Unauthenticated)?;
    if service::csrf_valid(&state.secret, session.id, &token) { Ok(()) } else { Err(Error::Csrf) }
}

/// `POST /if/user/sessions/{id}/end/`: ends one of the caller's sessions (their current one
/// signs them out).
pub async fn end_session(
    State(state): State<AppState>,
    MaybeSignedIn(current): MaybeSignedIn,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(current) = current.filter(|c| c.session.is_some()) else { return sign_in_redirect(&state) };
    let result: Result<Response> = async {
        check_form(&state, &current, &headers, &body)?;
        let id = uuid::Uuid::parse_str(&id).map_err(|_| Error::NotFound)?;
        if !service::revoke(&state, state.tenant, current.user.id, id).await? {
            return Err(Error::NotFound);
        }
        let mut out = HeaderMap::new();
        if current.session.as_ref().is_some_and(|s| s.id == id) {
            crate::http::cookies::sign_out_cookies(&state, &mut out)?;
            return see_other(out, "/");
        }
        see_other(out, "/if/user/")
    }
    .await;
    result.unwrap_or_else(error_page)
}

/// `POST /if/user/sessions/end-others/`: ends every session of the caller but this one.
pub async fn end_other_sessions(
    State(state): State<AppState>,
    MaybeSignedIn(current): MaybeSignedIn,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(current) = current.filter(|c| c.session.is_some()) else { return sign_in_redirect(&state) };
    let result: Result<Response> = async {
        check_form(&state, &current, &headers, &body)?;
        service::revoke_others(&state, current.user.id, current.session.as_ref().map(|s| s.id)).await?;
        see_other(HeaderMap::new(), "/if/user/")
    }
    .await;
    result.unwrap_or_else(error_page)
}
