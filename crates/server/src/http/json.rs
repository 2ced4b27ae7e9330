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
        parse(&bytes).map(ApiJson)
    }
}
