//! `/endpoints/agent/authenticate/{token_uuid}/`: where an agent's browser window signs a person
//! in for its device (see [`super::device_auth`]).

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::device_auth::{self, Interactive};
use crate::error::{Error, NON_FIELD_ERRORS};
use crate::events::client::ClientInfo;
use crate::http::auth::MaybeSignedIn;
use crate::http::pages::error_page;
use crate::state::AppState;

/// The header the agent's browser window sends the SHA-256 of its device key in.
const DEVICE_KEY_HASH_HEADER: &str = "x-authentik-platform-auth-dth";

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/endpoints/agent/authenticate/{token_uuid}/", get(authenticate))
}

/// A 302 to `location`, never cached.
fn found(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => {
            (StatusCode::FOUND, [(header::LOCATION, value), (header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]).into_response()
        }
        Err(_) => error_page(Error::field(NON_FIELD_ERRORS, "The address cannot be sent in a header.")),
    }
}

async fn authenticate(
    State(state): State<AppState>,
    MaybeSignedIn(current): MaybeSignedIn,
    client: ClientInfo,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Ok(id) = uuid::Uuid::parse_str(&id) else { return error_page(Error::NotFound) };
    let presented = headers.get(DEVICE_KEY_HASH_HEADER).and_then(|v| v.to_str().ok());
    let query = query.unwrap_or_default();
    match device_auth::step(&state, id, presented, &query, current.as_deref(), &client).await {
        Ok(Interactive::SignIn { flow_slug, back }) => {
            let next: String = form_urlencoded::byte_serialize(back.as_bytes()).collect();
            found(&format!("/if/flow/{flow_slug}/?next={next}"))
        }
        Ok(Interactive::Authorize { flow_slug, back, handoff }) => {
            crate::flows::pages::through_flow(&state, &client, current, &flow_slug, &back, &handoff).await
        }
        Ok(Interactive::Finished(to)) => found(&to),
        Err(Error::PermissionDenied) => {
            crate::http::pages::message(StatusCode::FORBIDDEN, "Not allowed", "You may not sign in on this device.")
        }
        Err(error) => error_page(error),
    }
}
