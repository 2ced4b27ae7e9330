//! Webhook mapping expressions in the Common Expression Language (CEL), through the `cel`
//! crate. CEL has no loops and no side effects; the comprehension macros (`map`, `filter`,
//! `all`, `exists`, `exists_one`) are left out, so evaluation is linear in the expression's size,
//! and the size is bounded. Evaluation also runs off the async workers under a deadline, and its
//! result is bounded too.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use cel::{Context, Env, Program};
use serde_json::Value;

/// The longest expression accepted.
pub const LONGEST_EXPRESSION: usize = 4096;
/// The largest result accepted, as JSON.
pub const LARGEST_RESULT: usize = 16 * 1024;
/// How long one evaluation may take.
pub const DEADLINE: Duration = Duration::from_millis(250);

/// The standard functions without the macros.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::default().with_stdlib()));

/// A CEL expression that parses, within the size bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expression(String);

impl Expression {
    /// Parses `source`; the error says what is wrong, for the `expression` field.
    pub fn parse(source: &str) -> Result<Self, String> {
        if source.trim().is_empty() {
            return Err("This field may not be blank.".into());
        }
        if source.len() > LONGEST_EXPRESSION {
            return Err(format!("Ensure this field has no more than {LONGEST_EXPRESSION} characters."));
        }
        compile(source)?;
        Ok(Self(source.to_owned()))
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Evaluates the expression with `variables` (a JSON object: each key becomes a variable),
    /// under [`DEADLINE`]; the result as JSON, or why there is none.
    pub async fn evaluate(&self, variables: Value) -> Result<Value, String> {
        let source = self.0.clone();
        let task = tokio::task::spawn_blocking(move || evaluate_now(&source, variables));
        match tokio::time::timeout(DEADLINE, task).await {
            Err(_) => Err("the mapping took too long".into()),
            Ok(Err(_)) => Err("the mapping could not be evaluated".into()),
            Ok(Ok(result)) => result,
        }
    }
}

fn compile(source: &str) -> Result<Program, String> {
    ENV.compile(source).map_err(|errors| {
        let text = errors.to_string();
        format!("Not a valid CEL expression: {}", text.chars().take(300).collect::<String>())
    })
}

fn evaluate_now(source: &str, variables: Value) -> Result<Value, String> {
    let program = compile(source)?;
    let mut context = Context::with_env(ENV.clone());
    if let Value::Object(variables) = variables {
        for (name, value) in variables {
            let value = cel::to_value(value).map_err(|e| format!("variable {name}: {e}"))?;
            context.add_variable_from_value(name, value);
        }
    }
    let result = program.execute(&context).map_err(|e| format!("the mapping failed: {e}"))?;
    let json = result.json().map_err(|e| format!("the mapping's result is not JSON: {e}"))?;
    if serde_json::to_vec(&json).map(|bytes| bytes.len()).unwrap_or(usize::MAX) > LARGEST_RESULT {
        return Err(format!("the mapping's result is larger than {LARGEST_RESULT} bytes"));
    }
    Ok(json)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn an_expression_sees_its_variables_and_gives_json() {
        let expression = Expression::parse(r#"{"to": device.phone_number, "text": "Code " + code, "who": user.username}"#).unwrap();
        let result = expression
            .evaluate(json!({"device": {"phone_number": "+41446681800"}, "code": "123456", "user": {"username": "olga"}}))
            .await
            .unwrap();
        assert_eq!(result, json!({"to": "+41446681800", "text": "Code 123456", "who": "olga"}));
    }

    #[tokio::test]
    async fn what_does_not_parse_loops_or_grows_too_large_is_refused() {
        assert!(Expression::parse("1 +").unwrap_err().contains("Not a valid CEL expression"));
        assert!(Expression::parse(" ").is_err());
        assert!(Expression::parse(&"1 + ".repeat(2000)).unwrap_err().contains("no more than"));
        // Without the comprehension macros, `map` is an unknown function: no loops.
        let looping = Expression::parse("[1, 2, 3].map(x, [1, 2, 3].map(y, x * y))");
        match looping {
            Err(message) => assert!(message.contains("CEL"), "{message}"),
            Ok(expression) => assert!(expression.evaluate(json!({})).await.is_err()),
        }
        let unknown = Expression::parse("nobody.knows").unwrap();
        assert!(unknown.evaluate(json!({})).await.is_err());
        let large = Expression::parse("text + text + text + text + text").unwrap();
        let outcome = large.evaluate(json!({"text": "x".repeat(4000)})).await;
        assert!(outcome.unwrap_err().contains("larger than"));
    }
}
