//! A query-string extractor whose rejections use the API's error shapes, naming the parameter.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::{Error, NON_FIELD_ERRORS};

/// Like `axum::extract::Query`, but a bad query string (a parameter given twice, a value of the
/// wrong type) answers 400 `{"parameter": ["message"]}` instead of plain text.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::try_from_uri(&parts.uri) {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(describe(&rejection.body_text())),
        }
    }
}

/// Reads `query` (a query string) as `T`, with the same errors as [`ApiQuery`]: for handlers that
/// take some parameters out of the query first.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, Error> {
    let uri: axum::http::Uri =
        format!("/?{query}").parse().map_err(|_| Error::field(NON_FIELD_ERRORS, "The query string could not be read."))?;
    match Query::<T>::try_from_uri(&uri) {
        Ok(Query(value)) => Ok(value),
        Err(rejection) => Err(describe(&rejection.body_text())),
    }
}

/// The parameter a deserialisation message names in backticks (`duplicate field `page``), or
/// none; the message without axum's prefix.
fn describe(text: &str) -> Error {
    let message = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(text);
    // A value that did not parse is named before a colon (`page: invalid digit`); a duplicate
    // or missing parameter in backticks.
    let named = message
        .split_once(": ")
        .map(|(name, _)| name)
        .filter(|name| !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    if let Some(name) = named {
        return Error::field(name, message.to_owned());
    }
    let parameter = message.split('`').nth(1).filter(|name| !name.is_empty() && name.len() <= 64);
    match parameter {
        Some(name) if message.starts_with("duplicate field") => Error::field(name, "Give this parameter once."),
        Some(name) => Error::field(name, message.to_owned()),
        None => Error::field(NON_FIELD_ERRORS, format!("The query string could not be read: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_name_the_parameter() {
        let Error::Validation(errors) = describe("Failed to deserialize query string: duplicate field `page`") else { panic!() };
        assert_eq!(errors.fields()["page"], ["Give this parameter once."]);
        let Error::Validation(errors) = describe("Failed to deserialize query string: invalid type") else { panic!() };
        assert!(errors.fields().contains_key(NON_FIELD_ERRORS));
        let text = "Failed to deserialize query string: managed__isnull: provided string was not `true` or `false`";
        let Error::Validation(errors) = describe(text) else { panic!() };
        assert!(errors.fields().contains_key("managed__isnull"), "{errors:?}");
    }
}
