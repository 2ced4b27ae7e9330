//! The one error type of Gatehouse.
//!
//! Domains return [`Error`]; the HTTP layer (`http::error`) turns it into authentik's error
//! shapes. Internal causes are logged with the request's context and never reach a response body.

use std::collections::BTreeMap;

/// Field name under which errors that concern no single field are reported.
pub const NON_FIELD_ERRORS: &str = "non_field_errors";

/// Validation messages by field, as DRF reports them: `{"field": ["message"]}`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldErrors(BTreeMap<String, Vec<String>>);

impl FieldErrors {
    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a message for a field.
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.entry(field.into()).or_default().push(message.into());
    }

    /// A single message for a single field.
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut errors = Self::new();
        errors.add(field, message);
        errors
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when empty, the validation error otherwise.
    pub fn into_result(self) -> Result<(), Error> {
        if self.is_empty() { Ok(()) } else { Err(Error::Validation(self)) }
    }

    /// Messages by field.
    pub fn fields(&self) -> &BTreeMap<String, Vec<String>> {
        &self.0
    }
}

/// Everything that can go wrong while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input was invalid: 400 with messages by field.
    #[error("validation failed: {0:?}")]
    Validation(FieldErrors),
    /// No credentials, or credentials that are not valid: 401.
    #[error("not authenticated")]
    Unauthenticated,
    /// A cookie-authenticated unsafe request without a valid CSRF token: 403.
    #[error("CSRF check failed")]
    Csrf,
    /// The caller may not do this: 403.
    #[error("permission denied")]
    PermissionDenied,
    /// Nothing there, or nothing the caller may see: 404.
    #[error("not found")]
    NotFound,
    /// A page number past the end: 404 as DRF answers it.
    #[error("invalid page")]
    InvalidPage,
    /// The request clashes with the resource's current state: 409 with this message.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Too many attempts: 429 with `Retry-After`.
    #[error("rate limited for {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// The server is too busy to take this on now: 503 with `Retry-After`.
    #[error("overloaded, retry in {retry_after_secs} s")]
    Overloaded { retry_after_secs: u64 },
    /// A service the request needs (such as the media store) cannot be used now: 503 with this
    /// message, which names the service and never carries its credentials.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A body larger than allowed: 413.
    #[error("payload too large")]
    PayloadTooLarge,
    /// Anything else: 500, logged, never detailed in the response.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A validation error on one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(FieldErrors::single(field, message))
    }

    /// An internal error with a cause for the log.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(error: sea_orm::DbErr) -> Self {
        Self::Internal(format!("database: {error}"))
    }
}

impl From<sea_orm::TransactionError<Error>> for Error {
    fn from(error: sea_orm::TransactionError<Error>) -> Self {
        match error {
            sea_orm::TransactionError::Connection(e) => e.into(),
            sea_orm::TransactionError::Transaction(e) => e,
        }
    }
}

/// "Try again in 1 second." or "Try again in N seconds.": the wait a rate limit asks for, in
/// words.
pub fn try_again_in(seconds: u64) -> String {
    match seconds {
        1 => "Try again in 1 second.".to_owned(),
        n => format!("Try again in {n} seconds."),
    }
}

#[cfg(test)]
mod wording_tests {
    use super::*;

    #[test]
    fn one_second_is_singular() {
        assert_eq!(try_again_in(1), "Try again in 1 second.");
        assert_eq!(try_again_in(2), "Try again in 2 seconds.");
        assert_eq!(try_again_in(0), "Try again in 0 seconds.");
    }
}
