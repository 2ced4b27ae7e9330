//! The pages browsers pass through between an application and Gatehouse: the authorization
//! endpoint (`/application/o/authorize/`), where they are sent to sign in and back with a code,
//! and the end-session endpoint (`/application/o/<slug>/end-session/`), where they sign out and
//! go back; or are shown why not.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::grants::{self, Authorization};
use super::handlers::not_stored;
use crate::error::{Error, NON_FIELD_ERRORS};
use crate::events::client::ClientInfo;
use crate::http::auth::MaybeSignedIn;
use crate::http::client::PublicBase;
use crate::state::AppState;

use super::grants::AUTHORIZE_PATH as AUTHORIZE;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(AUTHORIZE, get(authorize_by_query).post(authorize_by_form))
        .route(super::grants::DECLINE_PATH, get(decline))
        .route(super::device::VERIFICATION_PATH, get(device_entry).post(device_lookup))
        .route("/if/device/confirm/", axum::routing::post(device_decision))
        .route("/application/o/{slug}/end-session/", get(end_session_by_query).post(end_session_by_form))
        .route("/application/o/{slug}/end-session/return/", get(return_after_sign_out))
}

/// A redirect to `location`, a path here or an address the provider registered.
fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => not_stored((StatusCode::FOUND, [(header::LOCATION, value)]).into_response()),
        Err(_) => crate::http::pages::error_page(Error::field(NON_FIELD_ERRORS, "The address cannot be sent in a header.")),
    }
}

async fn end_session_by_query(
    State(state): State<AppState>,
    PublicBase(base): PublicBase,
    Path(slug): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    answer_end_session(&state, &base, &slug, &query.unwrap_or_default()).await
}

async fn end_session_by_form(
    State(state): State<AppState>,
    PublicBase(base): PublicBase,
    Path(slug): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(form) = std::str::from_utf8(&body) else {
        return crate::http::pages::error_page(Error::field(NON_FIELD_ERRORS, "The request is not form-encoded text."));
    };
    answer_end_session(&state, &base, &slug, form).await
}

async fn answer_end_session(state: &AppState, base: &str, slug: &str, query: &str) -> Response {
    match crate::oauth::logout::end_session(state, base, slug, query).await {
        Ok(crate::oauth::logout::EndSession::SignOut { flow_slug, then }) => {
            let next: String = form_urlencoded::byte_serialize(then.as_bytes()).collect();
            redirect(&format!("/if/flow/{flow_slug}/?next={next}"))
        }
        Ok(crate::oauth::logout::EndSession::Refused(reason)) => crate::http::pages::error_page(Error::field(NON_FIELD_ERRORS, reason)),
        Err(error) => crate::http::pages::error_page(error),
    }
}

async fn return_after_sign_out(State(state): State<AppState>, Path(slug): Path<String>, RawQuery(query): RawQuery) -> Response {
    match crate::oauth::logout::return_address(&state, &slug, &query.unwrap_or_default()).await {
        Ok(Ok(to)) => redirect(&to),
        Ok(Err(reason)) => crate::http::pages::error_page(Error::field(NON_FIELD_ERRORS, reason)),
        Err(error) => crate::http::pages::error_page(error),
    }
}

async fn authorize_by_query(
    State(state): State<AppState>,
    PublicBase(base): PublicBase,
    MaybeSignedIn(current): MaybeSignedIn,
    client: ClientInfo,
    RawQuery(query): RawQuery,
) -> Response {
    answer_authorization(&state, &base, &query.unwrap_or_default(), current, &client).await
}

async fn decline(State(state): State<AppState>, PublicBase(base): PublicBase, client: ClientInfo, RawQuery(query): RawQuery) -> Response {
    match grants::decline(&state, &base, &query.unwrap_or_default(), &client).await {
        Ok(Authorization::Redirect(to)) => redirect(&to),
        Ok(Authorization::FormPost { action, fields }) => not_stored(crate::http::pages::post_to(&action, &fields)),
        Ok(Authorization::Refused(reason)) => crate::http::pages::error_page(Error::field(NON_FIELD_ERRORS, reason)),
        Ok(_) => crate::http::pages::error_page(Error::internal("a declined request asked for more")),
        Err(error) => crate::http::pages::error_page(error),
    }
}

async fn authorize_by_form(
    State(state): State<AppState>,
    PublicBase(base): PublicBase,
    MaybeSignedIn(current): MaybeSignedIn,
    client: ClientInfo,
    body: Bytes,
) -> Response {
    let Ok(form) = std::str::from_utf8(&body) else {
        return crate::http::pages::error_page(Error::field(NON_FIELD_ERRORS, "The request is not form-encoded text."));
    };
    answer_authorization(&state, &base, form, current, &client).await
}

async fn answer_authorization(
    state: &AppState,
    base: &str,
    query: &str,
    current: Option<std::sync::Arc<crate::credentials::cache::AuthContext>>,
    client: &ClientInfo,
) -> Response {
    let outcome = match grants::authorize(state, base, query, current.as_deref(), client).await {
        Ok(outcome) => outcome,
        Err(error) => return crate::http::pages::error_page(error),
    };
    let location = match outcome {
        Authorization::Refused(reason) => return crate::http::pages::error_page(Error::field(NON_FIELD_ERRORS, reason)),
        Authorization::FormPost { action, fields } => return not_stored(crate::http::pages::post_to(&action, &fields)),
        Authorization::Redirect(uri) => uri,
        // Back to this very request once signed in.
        Authorization::SignIn { flow_slug, query } => sign_in_then(&flow_slug, &query),
        Authorization::Authorize { flow_slug, next, handoff } => {
            return crate::flows::pages::through_flow(state, client, current, &flow_slug, &next, &handoff).await;
        }
    };
    redirect(&location)
}

/// A device's request as its page shows it.
struct DeviceRequestView {
    application: String,
    user_code: String,
    permissions: Vec<String>,
}

#[derive(askama::Template)]
#[template(path = "device.html")]
struct DevicePage {
    title: &'static str,
    csrf: String,
    typed: String,
    errors: Vec<String>,
    request: Option<DeviceRequestView>,
}

/// The signed-in person behind a device page, with the CSRF token of their session.
fn signed_in_for_device(
    current: Option<std::sync::Arc<crate::credentials::cache::AuthContext>>,
    state: &AppState,
) -> Option<(std::sync::Arc<crate::credentials::cache::AuthContext>, String)> {
    let current = current.filter(|c| c.session.is_some())?;
    let csrf = current.session.as_ref().map(|s| crate::sessions::service::csrf_token(&state.secret, s.id)).unwrap_or_default();
    Some((current, csrf))
}

/// The sign-in that brings a stranger back to the device page `back`.
fn sign_in_for_device(state: &AppState, back: &str) -> Response {
    let next: String = form_urlencoded::byte_serialize(back.as_bytes()).collect();
    redirect(&format!("/if/flow/{}/?next={next}", state.config.flows.authentication_flow))
}

/// The form's fields, once its CSRF token matched the caller's session.
fn device_form(
    state: &AppState,
    current: &crate::credentials::cache::AuthContext,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> crate::error::Result<Vec<(String, String)>> {
    let fields = crate::http::pages::form_fields(headers, body)?;
    let token = fields.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str()).unwrap_or_default();
    let session = current.session.as_ref().ok_or(Error::Unauthenticated)?;
    if !crate::sessions::service::csrf_valid(&state.secret, session.id, token) {
        return Err(Error::Csrf);
    }
    Ok(fields)
}

fn device_page(status: StatusCode, csrf: String, typed: String, errors: Vec<String>, request: Option<DeviceRequestView>) -> Response {
    let title = if request.is_some() { "Allow this device?" } else { "Sign in on a device" };
    not_stored(crate::http::pages::html(status, &DevicePage { title, csrf, typed, errors, request }))
}

/// `GET /if/device/`: the form for the code a device shows (filled in from `?code=`).
async fn device_entry(State(state): State<AppState>, MaybeSignedIn(current): MaybeSignedIn, RawQuery(query): RawQuery) -> Response {
    let typed = crate::flows::redirect::url_params(&query.unwrap_or_default())
        .into_iter()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.chars().take(32).collect())
        .unwrap_or_default();
    let back = format!(
        "{}?code={}",
        super::device::VERIFICATION_PATH,
        form_urlencoded::byte_serialize(String::as_bytes(&typed)).collect::<String>()
    );
    let Some((_, csrf)) = signed_in_for_device(current, &state) else { return sign_in_for_device(&state, &back) };
    device_page(StatusCode::OK, csrf, typed, Vec::new(), None)
}

/// `POST /if/device/`: the code typed; the request it names, to allow or deny.
async fn device_lookup(
    State(state): State<AppState>,
    MaybeSignedIn(current): MaybeSignedIn,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let Some((current, csrf)) = signed_in_for_device(current, &state) else {
        return sign_in_for_device(&state, super::device::VERIFICATION_PATH);
    };
    let result = async {
        let fields = device_form(&state, &current, &headers, &body)?;
        let typed: String =
            fields.into_iter().find(|(k, _)| k == "user_code").map(|(_, v)| v.chars().take(32).collect()).unwrap_or_default();
        Ok::<_, Error>(match super::device::look_up(&state, &current, &typed).await? {
            Ok(request) => {
                let view = DeviceRequestView {
                    application: request.application.name,
                    user_code: request.user_code,
                    permissions: request.permissions,
                };
                device_page(StatusCode::OK, csrf, String::new(), Vec::new(), Some(view))
            }
            Err(reason) => device_page(StatusCode::BAD_REQUEST, csrf, typed, vec![reason], None),
        })
    }
    .await;
    result.unwrap_or_else(crate::http::pages::error_page)
}

/// `POST /if/device/confirm/`: the person allows or denies the device.
async fn device_decision(
    State(state): State<AppState>,
    MaybeSignedIn(current): MaybeSignedIn,
    client: ClientInfo,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let Some((current, csrf)) = signed_in_for_device(current, &state) else {
        return sign_in_for_device(&state, super::device::VERIFICATION_PATH);
    };
    let result = async {
        let fields = device_form(&state, &current, &headers, &body)?;
        let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
        let allow = match field("decision").as_str() {
            "allow" => true,
            "deny" => false,
            _ => return Err(Error::field("decision", "Choose allow or deny.")),
        };
        Ok(match super::device::decide(&state, &current, &field("user_code"), allow, &client).await? {
            Ok(application) if allow => crate::http::pages::message(
                StatusCode::OK,
                "Device allowed",
                &format!("{application} is signed in on your device. You can close this page."),
            ),
            Ok(application) => {
                crate::http::pages::message(StatusCode::OK, "Device denied", &format!("{application} was not signed in on the device."))
            }
            Err(reason) => device_page(StatusCode::BAD_REQUEST, csrf, String::new(), vec![reason], None),
        })
    }
    .await;
    result.map(not_stored).unwrap_or_else(crate::http::pages::error_page)
}

/// The sign-in flow `flow_slug`'s page, sending people on to the authorization request `query`.
fn sign_in_then(flow_slug: &str, query: &str) -> String {
    let next = format!("{AUTHORIZE}?{query}");
    let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
    format!("/if/flow/{flow_slug}/?next={next}")
}
