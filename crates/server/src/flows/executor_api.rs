//! `/api/v3/flows/executor/{flow_slug}/`: authentik's flow executor for JSON clients. The run
//! lives server-side; the client keeps only the flow cookie.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::executor::{self, FlowRequest};
use super::redirect::next_from_query;
use super::run::FLOW_COOKIE;
use crate::error::{Error, NON_FIELD_ERRORS, Result};
use crate::events::client::ClientInfo;
use crate::http::auth::MaybeSignedIn;
use crate::http::query::ApiQuery;
use crate::state::AppState;

/// Largest challenge response accepted; the biggest legitimate one is a few hundred bytes.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024;

/// Routes of the executor.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(executor_get, executor_solve))
}

/// The query string the flow was opened with, as authentik's clients pass it.
#[derive(Deserialize, IntoParams)]
pub struct ExecutorQuery {
    /// Querystring as received, such as `next=%2Fif%2Fuser%2F`.
    pub query: Option<String>,
}

#[utoipa::path(get, path = "/api/v3/flows/executor/{flow_slug}/", tag = "flows",
    params(("flow_slug" = String, Path, description = "Flow slug"), ExecutorQuery),
    responses((status = 200, description = "The current challenge (ChallengeTypes)"), (status = 404, description = "No such flow")))]
async fn executor_get(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    ApiQuery(query): ApiQuery<ExecutorQuery>,
    client: ClientInfo,
    MaybeSignedIn(current): MaybeSignedIn,
    headers: HeaderMap,
) -> Result<(HeaderMap, Json<Value>)> {
    let next = query.query.as_deref().and_then(next_from_query);
    let request =
        FlowRequest::new(&slug, crate::http::cookies::read_cookie(&state, &headers, FLOW_COOKIE), &client, current, next.as_deref())
            .remembering(crate::http::cookies::read_cookie(&state, &headers, crate::mfa::remembered::COOKIE));
    let outcome = executor::get(&state, request).await?;
    Ok((crate::http::cookies::flow_cookies(&state, &outcome)?, Json(outcome.to_json())))
}

/// Parses a challenge response: a JSON object of at most [`MAX_RESPONSE_BYTES`].
pub fn parse_response(headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
    if !is_json {
        return Err(Error::field(NON_FIELD_ERRORS, "Unsupported media type; send application/json."));
    }
    if body.len() > MAX_RESPONSE_BYTES {
        return Err(Error::field(NON_FIELD_ERRORS, format!("The response is larger than {MAX_RESPONSE_BYTES} bytes.")));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::field(NON_FIELD_ERRORS, "The response is empty; send the challenge response as a JSON object."));
    }
    match crate::json::parse::<Value>(body)? {
        Value::Object(map) => {
            for (field, value) in &map {
                if !plain(value, 3) {
                    return Err(Error::field(
                        field.clone(),
                        "Expected a string, number, boolean, null, or an object of those (such as selected_challenge).",
                    ));
                }
            }
            Ok(map)
        }
        _ => Err(Error::field(NON_FIELD_ERRORS, "Expected a JSON object.")),
    }
}

/// Whether `value` is a scalar, or an object of at most `depth` levels with scalar leaves (as
/// authentik's `selected_challenge`); lists are never part of an answer.
fn plain(value: &Value, depth: usize) -> bool {
    match value {
        Value::String(_) | Value::Bool(_) | Value::Null | Value::Number(_) => true,
        Value::Object(map) => depth > 1 && map.values().all(|inner| plain(inner, depth - 1)),
        Value::Array(_) => false,
    }
}

#[utoipa::path(post, path = "/api/v3/flows/executor/{flow_slug}/", tag = "flows",
    params(("flow_slug" = String, Path, description = "Flow slug"), ExecutorQuery),
    request_body(content = Object, description = "FlowChallengeResponseRequest: the answer to the current challenge"),
    responses((status = 200, description = "The next challenge (ChallengeTypes)"), (status = 400, description = "Malformed response"),
        (status = 404, description = "No such flow")))]
async fn executor_solve(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    ApiQuery(query): ApiQuery<ExecutorQuery>,
    client: ClientInfo,
    MaybeSignedIn(current): MaybeSignedIn,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(HeaderMap, Json<Value>)> {
    let response = parse_response(&headers, &body)?;
    let next = query.query.as_deref().and_then(next_from_query);
    let request =
        FlowRequest::new(&slug, crate::http::cookies::read_cookie(&state, &headers, FLOW_COOKIE), &client, current, next.as_deref())
            .remembering(crate::http::cookies::read_cookie(&state, &headers, crate::mfa::remembered::COOKIE));
    let outcome = executor::solve(&state, request, response, None).await?;
    Ok((crate::http::cookies::flow_cookies(&state, &outcome)?, Json(outcome.to_json())))
}
