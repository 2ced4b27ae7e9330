//! How an [`Error`] answers a request: authentik's error shapes and status codes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::Error;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let detail = |status: StatusCode, text: &str| (status, axum::Json(json!({ "detail": text }))).into_response();
        match self {
            Error::Validation(errors) => (StatusCode::BAD_REQUEST, axum::Json(errors.fields())).into_response(),
            Error::Unauthenticated => {
                let mut response = detail(StatusCode::UNAUTHORIZED, "Authentication credentials were not provided or are not valid.");
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"gatehouse\""));
                response
            }
            Error::Csrf => detail(StatusCode::FORBIDDEN, "CSRF Failed: CSRF token missing or incorrect."),
            Error::PermissionDenied => detail(StatusCode::FORBIDDEN, "You do not have permission to perform this action."),
            Error::NotFound => detail(StatusCode::NOT_FOUND, "The requested resource does not exist."),
            Error::InvalidPage => detail(StatusCode::NOT_FOUND, "Invalid page."),
            Error::Conflict(message) => detail(StatusCode::CONFLICT, &message),
            Error::RateLimited { retry_after_secs } => {
                let mut response = detail(
                    StatusCode::TOO_MANY_REQUESTS,
                    &format!("Too many failed attempts. {}", crate::error::try_again_in(retry_after_secs)),
                );
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                response
            }
            Error::Overloaded { retry_after_secs } => {
                let mut response = detail(StatusCode::SERVICE_UNAVAILABLE, "The server is busy. Try again shortly.");
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                response
            }
            Error::Unavailable(message) => {
                tracing::warn!(%message, "a service the request needs is unavailable");
                let mut response = detail(StatusCode::SERVICE_UNAVAILABLE, &message);
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(30));
                response
            }
            Error::PayloadTooLarge => detail(StatusCode::PAYLOAD_TOO_LARGE, "Request body is too large."),
            Error::Internal(cause) => {
                tracing::error!(error = %cause, "internal error");
                detail(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error occurred.")
            }
        }
    }
}
