//! A JSON body extractor whose rejections use the API's error shapes, naming the field.

use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use crate::error::{Error, NON_FIELD_ERRORS};
use crate::json::parse;

/// Like `axum::Json`, but a bad body answers 400 `{"field": ["message"]}`.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        json_body(request, state).await.and_then(|bytes| parse(&bytes)).map(ApiJson)
    }
}

/// Like [`ApiJson`], but control characters in text are replaced with U+FFFD instead of refused:
/// for what a device reports of itself (a process name may hold any byte), where one odd value
/// must not cost the whole report.
pub struct ReportJson<T>(pub T);

impl<S, T> FromRequest<S> for ReportJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        json_body(request, state).await.and_then(|bytes| crate::json::parse_replacing_controls(&bytes)).map(ReportJson)
    }
}

/// The body of a request that says it is JSON, within the body limit.
async fn json_body<S: Send + Sync>(request: Request, state: &S) -> Result<axum::body::Bytes, Error> {
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
    if !is_json {
        return Err(Error::field(NON_FIELD_ERRORS, "Unsupported media type; send application/json."));
    }
    let bytes = axum::body::Bytes::from_request(request, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            Error::PayloadTooLarge
        } else {
            Error::field(NON_FIELD_ERRORS, "The request body could not be read.")
        }
    })?;
    Ok(bytes)
}
