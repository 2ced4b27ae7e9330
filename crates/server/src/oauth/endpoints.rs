//! The provider endpoints relying parties call, under `/application/o/`: outside the API
//! document, open to anyone, readable from any origin.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::Result;
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/application/o/{slug}/jwks/", get(key_set))
}

/// Public documents are meant to be fetched by scripts on relying parties' pages.
fn readable_anywhere(mut response: Response) -> Response {
    response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

async fn key_set(State(state): State<AppState>, Path(slug): Path<String>) -> Result<Response> {
    let keys = crate::oauth::discovery::key_set(&state, &slug).await?;
    Ok(readable_anywhere(Json(keys).into_response()))
}
