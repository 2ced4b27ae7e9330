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
            return through_flow(state, client, current, &flow_slug, &next, &handoff).await;
        }
    };
    redirect(&location)
}

/// Sends the browser through the authorization flow `flow_slug`, handed `handoff`, to come
/// back to `next`: the run starts here, so the flow page finds it in the cookie.
async fn through_flow(
    state: &AppState,
    client: &ClientInfo,
    current: Option<std::sync::Arc<crate::credentials::cache::AuthContext>>,
    flow_slug: &str,
    next: &str,
    handoff: &crate::flows::handoff::Handoff,
) -> Response {
    let request = crate::flows::executor::FlowRequest::new(flow_slug, None, client, current, Some(next)).handing_off(handoff);
    let ticket = match crate::flows::executor::hand_off(state, request).await {
        Ok(Ok(ticket)) => ticket,
        Ok(Err(reason)) => return crate::http::pages::error_page(Error::field(NON_FIELD_ERRORS, reason)),
        Err(error) => return crate::http::pages::error_page(error),
    };
    let cookie = match crate::http::cookies::flow_cookie(state, &ticket) {
        Ok(cookie) => cookie,
        Err(error) => return crate::http::pages::error_page(error),
    };
    let mut response = redirect(&format!("/if/flow/{flow_slug}/"));
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

/// The sign-in flow `flow_slug`'s page, sending people on to the authorization request `query`.
fn sign_in_then(flow_slug: &str, query: &str) -> String {
    let next = format!("{AUTHORIZE}?{query}");
    let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
    format!("/if/flow/{flow_slug}/?next={next}")
}
