//! The authorization endpoint, `/application/o/authorize/`: where browsers arrive from a relying
//! party, are sent to sign in, and are sent back with a code, or shown why not.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
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

const AUTHORIZE: &str = "/application/o/authorize/";

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route(AUTHORIZE, get(authorize_by_query).post(authorize_by_form))
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
