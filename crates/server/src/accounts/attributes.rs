//! The free-form `attributes` of users and groups: any JSON object, within bounds, so one
//! account cannot make every list that shows it heavy.

use serde_json::Value;

use crate::config::ApiConfig;
use crate::error::{Error, Result};

/// Refuses `attributes` that are not an object, nest deeper than `api.max_attributes_depth` or
/// take more than `api.max_attributes_bytes` as JSON, naming the field.
pub fn check(attributes: &Value, limits: &ApiConfig) -> Result<()> {
    if !attributes.is_object() {
        return Err(Error::field("attributes", "Must be a JSON object."));
    }
    if depth(attributes) > limits.max_attributes_depth {
        return Err(Error::field("attributes", format!("Nest at most {} levels deep.", limits.max_attributes_depth)));
    }
    let size = serde_json::to_vec(attributes).map_err(Error::internal)?.len();
    if size > limits.max_attributes_bytes {
        return Err(Error::field(
            "attributes",
            format!("Ensure this value takes at most {} bytes as JSON (it takes {size}).", limits.max_attributes_bytes),
        ));
    }
    Ok(())
}

/// Levels of lists and objects in `value`: 0 for a scalar, 1 for `{}`.
fn depth(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn attributes_are_bounded_in_size_and_depth() {
        let limits = ApiConfig { max_attributes_bytes: 64, max_attributes_depth: 3, ..ApiConfig::default() };
        assert!(check(&json!({"team": "ops", "tags": ["a", "b"]}), &limits).is_ok());
        assert!(check(&json!({"a": {"b": {"c": 1}}}), &limits).is_ok(), "three levels");
        assert!(check(&json!({"a": {"b": {"c": [1]}}}), &limits).is_err(), "four levels");
        assert!(check(&json!({"note": "x".repeat(64)}), &limits).is_err(), "too large");
        assert!(check(&json!(["not", "an", "object"]), &limits).is_err());
    }
}
