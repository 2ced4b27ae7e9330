//! `/if/user/`: the signed-in person's page: who they are, their sessions, each of which they
//! can end, their authenticators, each of which they can remove, with links to set more up, the
//! applications they can launch and the consents they gave applications, each revocable.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::Value;

use super::service;
use crate::accounts::access::{Actor, Rights};
use crate::credentials::cache::AuthContext;
use crate::error::{Error, Result};
use crate::events::client::ClientInfo;
use crate::http::auth::MaybeSignedIn;
use crate::http::pages::{error_page, form_fields, html, see_other, sign_in_url};
use crate::mfa::devices::View;
use crate::mfa::otp_devices::OtpKind;
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

/// One authenticator as the page shows it.
pub struct DeviceView {
    /// `sms`, `totp` or `static`: the path segment of its removal form.
    pub kind: &'static str,
    pub id: i64,
    pub name: String,
    pub description: String,
    pub created: String,
    pub last_used: String,
}

/// An application the person can launch.
pub struct LaunchView {
    pub name: String,
    pub href: String,
    pub new_tab: bool,
}

/// A consent the person gave, as the page shows it.
pub struct ConsentView {
    pub id: i64,
    pub application: String,
    pub permissions: String,
    pub until: String,
}

#[derive(Template)]
#[template(path = "user.html")]
struct UserPage {
    applications: Vec<LaunchView>,
    consents: Vec<ConsentView>,
    title: &'static str,
    name: String,
    email: String,
    username: String,
    sessions: Vec<SessionView>,
    devices: Vec<DeviceView>,
    setup_links: Vec<(String, String)>,
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
    let (phones, others) = crate::mfa::devices::own_devices(state, &actor_of(current, ClientInfo::default())).await?;
    let last_used = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(format).unwrap_or_else(|| "never".into());
    let mut devices: Vec<DeviceView> = phones
        .into_iter()
        .map(|d| DeviceView {
            kind: "sms",
            id: d.id,
            description: format!("Text messages to {}", crate::mfa::sms::masked(&d.phone_number)),
            name: d.name,
            created: format(d.created),
            last_used: last_used(d.last_used),
        })
        .collect();
    devices.extend(others.into_iter().map(|d| {
        let kind = OtpKind::parse(&d.kind).unwrap_or(OtpKind::Static);
        DeviceView {
            kind: kind.as_str(),
            id: d.id,
            description: match kind {
                OtpKind::Totp => "Authenticator app".into(),
                OtpKind::Static => "Recovery codes".into(),
                OtpKind::Email => format!("Codes by e-mail to {}", crate::mfa::email::masked(d.email.as_deref().unwrap_or_default())),
            },
            name: d.name,
            created: format(d.created),
            last_used: last_used(d.last_used),
        }
    }));
    let setup_links = crate::flows::stage_service::authenticator_setup_links(state)
        .await?
        .into_iter()
        .map(|link| (link.label, format!("/if/flow/{}/", link.flow_slug)))
        .collect();
    let applications = crate::oauth::applications::launchable(state)
        .await?
        .into_iter()
        .map(|app| LaunchView { name: app.name, href: app.meta_launch_url, new_tab: app.open_in_new_tab })
        .collect();
    let consents = crate::oauth::consents::own(state, &actor_of(current, ClientInfo::default()))
        .await?
        .into_iter()
        .map(|view| ConsentView {
            id: view.consent.id,
            application: view.application.application.name,
            permissions: if view.consent.permissions.is_empty() {
                "sign-in only".into()
            } else {
                view.consent.permissions.replace(' ', ", ")
            },
            until: view.consent.expires.map(|t| format!("until {}", format(t))).unwrap_or_else(|| "until you revoke it".into()),
        })
        .collect();
    let csrf = current_id.map(|id| service::csrf_token(&state.secret, id)).unwrap_or_default();
    let page = UserPage {
        applications,
        consents,
        title: "Your account",
        name: current.user.name.clone(),
        email: current.user.email.clone(),
        username: current.user.username.clone(),
        sessions,
        devices,
        setup_links,
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

/// `POST /if/user/consents/{id}/revoke/`: revokes one of the caller's consents; the application
/// asks again next time.
pub async fn revoke_consent(
    State(state): State<AppState>,
    MaybeSignedIn(current): MaybeSignedIn,
    client: ClientInfo,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(current) = current.filter(|c| c.session.is_some()) else { return sign_in_redirect(&state) };
    let result: Result<Response> = async {
        check_form(&state, &current, &headers, &body)?;
        let id = id.parse::<i64>().map_err(|_| Error::NotFound)?;
        crate::oauth::consents::revoke(&state, &actor_of(&current, client), id).await?;
        see_other(HeaderMap::new(), "/if/user/")
    }
    .await;
    result.unwrap_or_else(error_page)
}

/// The signed-in person acting on their own account from this page: with no rights beyond it,
/// whatever their permissions, so the page's forms only ever reach their own devices.
fn actor_of(current: &AuthContext, client: ClientInfo) -> Actor {
    Actor::user(current.user.clone(), Rights::default(), client, current.session.as_ref().map(|s| s.created))
}

/// What a device form does.
#[derive(Clone, Copy)]
enum DeviceAction {
    Rename,
    Remove,
}

/// `POST /if/user/devices/{kind}/{id}/remove/`: removes one of the caller's authenticators.
pub async fn remove_device(
    State(state): State<AppState>,
    MaybeSignedIn(current): MaybeSignedIn,
    client: ClientInfo,
    Path((kind, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    device_form(state, current, client, kind, id, headers, body, DeviceAction::Remove).await
}

/// `POST /if/user/devices/{kind}/{id}/rename/`: renames one of the caller's authenticators
/// (field `name`).
pub async fn rename_device(
    State(state): State<AppState>,
    MaybeSignedIn(current): MaybeSignedIn,
    client: ClientInfo,
    Path((kind, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    device_form(state, current, client, kind, id, headers, body, DeviceAction::Rename).await
}

#[allow(clippy::too_many_arguments)]
async fn device_form(
    state: AppState,
    current: Option<std::sync::Arc<AuthContext>>,
    client: ClientInfo,
    kind: String,
    id: String,
    headers: HeaderMap,
    body: Bytes,
    action: DeviceAction,
) -> Response {
    let Some(current) = current.filter(|c| c.session.is_some()) else { return sign_in_redirect(&state) };
    let result: Result<Response> = async {
        check_form(&state, &current, &headers, &body)?;
        let name = form_fields(&headers, &body)?.into_iter().find(|(k, _)| k == "name").map(|(_, v)| v);
        let id: i64 = id.parse().map_err(|_| Error::NotFound)?;
        let actor = actor_of(&current, client);
        let otp_kind = match kind.as_str() {
            "sms" => None,
            other => Some(OtpKind::parse(other).ok_or(Error::NotFound)?),
        };
        match (action, otp_kind) {
            (DeviceAction::Remove, None) => crate::mfa::devices::delete_sms(&state, &actor, View::Own, id).await?,
            (DeviceAction::Remove, Some(kind)) => crate::mfa::otp_devices::delete(&state, &actor, kind, View::Own, id).await?,
            (DeviceAction::Rename, None) => {
                crate::mfa::devices::rename_sms(&state, &actor, View::Own, id, Some(name.unwrap_or_default())).await?;
            }
            (DeviceAction::Rename, Some(kind)) => {
                crate::mfa::otp_devices::rename(&state, &actor, kind, View::Own, id, Some(name.unwrap_or_default())).await?;
            }
        }
        see_other(HeaderMap::new(), "/if/user/")
    }
    .await;
    result.unwrap_or_else(error_page)
}
