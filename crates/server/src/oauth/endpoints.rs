//! The provider endpoints relying parties and browsers call, under `/application/o/`: outside
//! the API document, in OAuth 2.0's and OpenID Connect's shapes rather than authentik's API
//! errors.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde_json::json;

use super::grants::{self, Authorization, BearerError, OAuthError};
use crate::error::{Error, NON_FIELD_ERRORS, Result};
use crate::events::client::ClientInfo;
use crate::http::auth::MaybeSignedIn;
use crate::http::client::PublicBase;
use crate::state::AppState;

const AUTHORIZE: &str = "/application/o/authorize/";

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(AUTHORIZE, get(authorize_by_query).post(authorize_by_form))
        .route("/application/o/token/", axum::routing::post(token).options(preflight))
        .route("/application/o/userinfo/", get(userinfo).post(userinfo).options(preflight))
        .route("/application/o/introspect/", axum::routing::post(introspect))
        .route("/application/o/revoke/", axum::routing::post(revoke).options(preflight))
        .route("/application/o/{slug}/jwks/", get(key_set))
        .route("/application/o/{slug}/.well-known/openid-configuration", get(configuration))
}

/// Public documents are meant to be fetched by scripts on relying parties' pages.
fn readable_anywhere(mut response: Response) -> Response {
    response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

/// Browsers ask before a script on a relying party's page sends a token or a form: any origin may,
/// since these endpoints take no cookie and prove nothing by where a request comes from.
async fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Content-Type"));
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    response
}

/// What carries codes and tokens is never stored by a cache.
fn not_stored(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

async fn key_set(State(state): State<AppState>, Path(slug): Path<String>) -> Result<Response> {
    let keys = super::discovery::key_set(&state, &slug).await?;
    Ok(readable_anywhere(Json(keys).into_response()))
}

async fn configuration(State(state): State<AppState>, PublicBase(base): PublicBase, Path(slug): Path<String>) -> Result<Response> {
    let document = super::discovery::configuration(&state, &base, &slug).await?;
    let mut response = readable_anywhere(Json(document).into_response());
    // Without a configured address the document follows the Host it was asked with.
    response.headers_mut().insert(header::VARY, HeaderValue::from_static("Host"));
    Ok(response)
}

async fn authorize_by_query(
    State(state): State<AppState>,
    PublicBase(base): PublicBase,
    MaybeSignedIn(current): MaybeSignedIn,
    client: ClientInfo,
    RawQuery(query): RawQuery,
) -> Response {
    answer_authorization(&state, &base, &query.unwrap_or_default(), current.as_deref(), &client).await
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
    answer_authorization(&state, &base, form, current.as_deref(), &client).await
}

async fn answer_authorization(
    state: &AppState,
    base: &str,
    query: &str,
    current: Option<&crate::credentials::cache::AuthContext>,
    client: &ClientInfo,
) -> Response {
    let outcome = match grants::authorize(state, base, query, current, client).await {
        Ok(outcome) => outcome,
        Err(error) => return crate::http::pages::error_page(error),
    };
    let location = match outcome {
        Authorization::Refused(reason) => return crate::http::pages::error_page(Error::field(NON_FIELD_ERRORS, reason)),
        Authorization::Redirect(uri) => uri,
        // Back to this very request once signed in.
        Authorization::SignIn { flow_slug } => sign_in_then(&flow_slug, query),
        Authorization::SignInAgain { flow_slug, query } => sign_in_then(&flow_slug, &query),
    };
    match HeaderValue::from_str(&location) {
        Ok(value) => not_stored((StatusCode::FOUND, [(header::LOCATION, value)]).into_response()),
        Err(_) => crate::http::pages::error_page(Error::field(NON_FIELD_ERRORS, "The redirect URI cannot be sent in a header.")),
    }
}

/// The sign-in flow `flow_slug`'s page, sending people on to the authorization request `query`.
fn sign_in_then(flow_slug: &str, query: &str) -> String {
    let next = format!("{AUTHORIZE}?{query}");
    let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
    format!("/if/flow/{flow_slug}/?next={next}")
}

/// HTTP basic credentials, each half form-decoded (RFC 6749 §2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Option<std::result::Result<(String, String), ()>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decode = || -> Option<(String, String)> {
        let raw = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (id, secret) = text.split_once(':')?;
        let unescape = |part: &str| form_urlencoded::parse(format!("v={part}").as_bytes()).next().map(|(_, v)| v.into_owned());
        Some((unescape(id)?, unescape(secret)?))
    };
    Some(decode().ok_or(()))
}

fn oauth_error(error: OAuthError) -> Response {
    let error = match error {
        OAuthError::Internal(cause) => return not_stored(cause.into_response()),
        other => other,
    };
    let status = if matches!(error, OAuthError::InvalidClient) { StatusCode::UNAUTHORIZED } else { StatusCode::BAD_REQUEST };
    let mut response = (status, Json(json!({"error": error.code(), "error_description": error.description()}))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"gatehouse\""));
    }
    not_stored(response)
}

/// A client's form request: its body as text and its HTTP basic credentials.
struct ClientRequest<'a> {
    body: &'a str,
    basic: Option<(String, String)>,
}

/// Reads a client's form request, or the error to answer it with.
fn client_request<'a>(headers: &HeaderMap, body: &'a Bytes) -> std::result::Result<ClientRequest<'a>, OAuthError> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|media| media.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")));
    let Some(text) = std::str::from_utf8(body).ok().filter(|_| form) else {
        return Err(OAuthError::InvalidRequest("Send the parameters as application/x-www-form-urlencoded.".into()));
    };
    match basic_credentials(headers) {
        Some(Ok(credentials)) => Ok(ClientRequest { body: text, basic: Some(credentials) }),
        Some(Err(())) => Err(OAuthError::InvalidClient),
        None => Ok(ClientRequest { body: text, basic: None }),
    }
}

async fn introspect(State(state): State<AppState>, PublicBase(base): PublicBase, headers: HeaderMap, body: Bytes) -> Response {
    let request = match client_request(&headers, &body) {
        Ok(request) => request,
        Err(error) => return oauth_error(error),
    };
    match grants::introspect(&state, &base, request.body, request.basic).await {
        Ok(answer) => not_stored(Json(answer).into_response()),
        Err(error) => oauth_error(error),
    }
}

async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let request = match client_request(&headers, &body) {
        Ok(request) => request,
        Err(error) => return readable_anywhere(oauth_error(error)),
    };
    let response = match grants::revoke(&state, request.body, request.basic).await {
        Ok(()) => not_stored(StatusCode::OK.into_response()),
        Err(error) => oauth_error(error),
    };
    readable_anywhere(response)
}

async fn token(State(state): State<AppState>, PublicBase(base): PublicBase, headers: HeaderMap, body: Bytes) -> Response {
    let request = match client_request(&headers, &body) {
        Ok(request) => request,
        Err(error) => return readable_anywhere(oauth_error(error)),
    };
    let response = match grants::token(&state, &base, request.body, request.basic).await {
        Ok(issued) => not_stored(Json(issued).into_response()),
        Err(error) => oauth_error(error),
    };
    readable_anywhere(response)
}

async fn userinfo(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let challenge = match grants::userinfo(&state, bearer).await {
        Ok(claims) => return readable_anywhere(not_stored(Json(claims).into_response())),
        Err(BearerError::Internal(error)) => return not_stored(error.into_response()),
        Err(BearerError::Missing) => "Bearer realm=\"gatehouse\"",
        Err(BearerError::Invalid) => "Bearer realm=\"gatehouse\", error=\"invalid_token\"",
    };
    let mut response = (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_token"}))).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    readable_anywhere(not_stored(response))
}
