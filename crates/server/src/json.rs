//! JSON documents read into typed values, with errors named by the field that failed, as the API
//! reports them.

use serde::de::DeserializeOwned;

use crate::error::{Error, FieldErrors, NON_FIELD_ERRORS};

/// Deserialises a JSON document, reporting errors by field path.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let message = inner.to_string();
        let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
        if inner.is_syntax() || inner.is_eof() {
            return Error::field(NON_FIELD_ERRORS, format!("JSON parse error: {message}"));
        }
        if let Some(missing) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
            let field = if path == "." { missing.to_owned() } else { format!("{path}.{missing}") };
            return Error::Validation(FieldErrors::single(field, "This field is required."));
        }
        if let Some(unknown) = message.strip_prefix("unknown field `").and_then(|m| m.split('`').next()) {
            // The path already ends with the unknown field's name.
            let field = if path == "." { unknown.to_owned() } else { path };
            return Error::Validation(FieldErrors::single(field, "Unknown field."));
        }
        let field = if path == "." { NON_FIELD_ERRORS.to_owned() } else { path };
        Error::Validation(FieldErrors::single(field, message))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    #[serde(deny_unknown_fields)]
    struct Body {
        name: String,
        count: Option<u32>,
    }

    fn fields(error: Error) -> Vec<(String, Vec<String>)> {
        match error {
            Error::Validation(errors) => errors.fields().clone().into_iter().collect(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn names_the_failing_field() {
        assert_eq!(fields(parse::<Body>(b"{}").unwrap_err())[0].0, "name");
        let wrong_type = fields(parse::<Body>(br#"{"name": "x", "count": "many"}"#).unwrap_err());
        assert_eq!(wrong_type[0].0, "count");
        assert_eq!(fields(parse::<Body>(br#"{"name": "x", "extra": 1}"#).unwrap_err())[0].0, "extra");
        assert_eq!(fields(parse::<Body>(b"{not json").unwrap_err())[0].0, NON_FIELD_ERRORS);
    }
}
