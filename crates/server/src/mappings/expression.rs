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

/// The deepest nesting of brackets accepted: the parser recurses on each level.
pub const DEEPEST_NESTING: usize = 16;

/// How deep the brackets of `source` nest (quotes are not told apart: a bracket inside a string
/// counts too, which only errs on the safe side).
fn nesting(source: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for c in source.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The most operators, dots and brackets accepted: the parser recurses on chains of them.
pub const MOST_OPERATORS: usize = 256;

/// How many characters of `source` make the parser go one level deeper.
fn operators(source: &str) -> usize {
    source.chars().filter(|c| ".+-*/%!?:<>=&|([{".contains(*c)).count()
}

/// The stack a parse or an evaluation runs on: far more than the bounded expressions need.
const PARSER_STACK: usize = 16 * 1024 * 1024;

/// Runs `work` on a thread of its own with [`PARSER_STACK`], without blocking the caller's
/// async worker while it runs.
async fn on_parser_stack<T: Send + 'static>(work: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T, String> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("cel".into())
        .stack_size(PARSER_STACK)
        .spawn(move || {
            let _ = done.send(work());
        })
        .map_err(|_| "the mapping could not be evaluated".to_owned())?;
    result.await.map_err(|_| "the mapping could not be evaluated".to_owned())?
}

/// The standard functions without the macros.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::default().with_stdlib()));

/// A CEL expression that parses, within the size bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expression(String);

impl Expression {
    /// Parses `source`; the error says what is wrong, for the `expression` field.
    pub async fn parse(source: &str) -> Result<Self, String> {
        if source.trim().is_empty() {
            return Err("This field may not be blank.".into());
        }
        if source.len() > LONGEST_EXPRESSION {
            return Err(format!("Ensure this field has no more than {LONGEST_EXPRESSION} characters."));
        }
        if nesting(source) > DEEPEST_NESTING {
            return Err(format!("Ensure brackets nest no more than {DEEPEST_NESTING} deep."));
        }
        if operators(source) > MOST_OPERATORS {
            return Err(format!("Ensure the expression has no more than {MOST_OPERATORS} operators, dots and brackets."));
        }
        let owned = source.to_owned();
        on_parser_stack(move || compile(&owned).map(|_| ())).await?;
        Ok(Self(source.to_owned()))
    }

    /// An expression saved earlier, after [`Expression::parse`] accepted it. (Evaluation
    /// compiles it again, on its own thread, so a stored text that no longer parses only fails.)
    pub fn stored(source: &str) -> Self {
        Self(source.to_owned())
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Evaluates the expression with `variables` (a JSON object: each key becomes a variable),
    /// under [`DEADLINE`]; the result as JSON, or why there is none.
    pub async fn evaluate(&self, variables: Value) -> Result<Value, String> {
        let source = self.0.clone();
        match tokio::time::timeout(DEADLINE, on_parser_stack(move || evaluate_now(&source, variables))).await {
            Err(_) => Err("the mapping took too long".into()),
            Ok(result) => result,
        }
    }
}

/// Evaluates each of `expressions` with the same `variables`, all on one thread and under one
/// [`DEADLINE`]: a result for each, in order (`Err` for all when the deadline passes).
pub async fn evaluate_all(expressions: &[Expression], variables: Value) -> Result<Vec<Result<Value, String>>, String> {
    let sources: Vec<String> = expressions.iter().map(|e| e.0.clone()).collect();
    let work = move || {
        let context = context_of(variables)?;
        Ok(sources.iter().map(|source| run(source, &context)).collect())
    };
    match tokio::time::timeout(DEADLINE, on_parser_stack(work)).await {
        Err(_) => Err("the mappings took too long".into()),
        Ok(result) => result,
    }
}

fn compile(source: &str) -> Result<Program, String> {
    ENV.compile(source).map_err(|errors| {
        let text = errors.to_string();
        format!("Not a valid CEL expression: {}", text.chars().take(300).collect::<String>())
    })
}

fn context_of(variables: Value) -> Result<Context<'static, 'static>, String> {
    let mut context = Context::with_env(ENV.clone());
    if let Value::Object(variables) = variables {
        for (name, value) in variables {
            let value = cel::to_value(value).map_err(|e| format!("variable {name}: {e}"))?;
            context.add_variable_from_value(name, value);
        }
    }
    Ok(context)
}

fn evaluate_now(source: &str, variables: Value) -> Result<Value, String> {
    run(source, &context_of(variables)?)
}

fn run(source: &str, context: &Context<'_, '_>) -> Result<Value, String> {
    let program = compile(source)?;
    let result = program.execute(context).map_err(|e| format!("the mapping failed: {e}"))?;
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

    #[test]
    fn hostile_shapes_are_refused_and_the_largest_accepted_parse_on_half_the_parser_stack() {
        let too_large = [
            format!("{}1{}", "(".repeat(2000), ")".repeat(2000)),
            format!("{}true", "!".repeat(4000)),
            format!("a{}", ".b".repeat(2000)),
            format!("1{}", " + 1".repeat(1000)),
        ];
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for shape in &too_large {
            assert!(runtime.block_on(Expression::parse(shape)).is_err(), "{}", &shape[..20]);
        }
        let largest = [
            format!("{}true", "!".repeat(MOST_OPERATORS)),
            format!("{}1", "-".repeat(MOST_OPERATORS)),
            format!("a{}", ".b".repeat(MOST_OPERATORS - 1)),
            format!("1{}", " + 1".repeat(MOST_OPERATORS)),
            format!("{}1", "x ? 1 : ".repeat(MOST_OPERATORS / 2)),
            format!("{}1{}", "(".repeat(DEEPEST_NESTING), ")".repeat(DEEPEST_NESTING)),
            format!("{}a{}{}", "(".repeat(DEEPEST_NESTING), ".b".repeat(MOST_OPERATORS - 2 * DEEPEST_NESTING), ")".repeat(DEEPEST_NESTING)),
            format!(
                "{}1{}{}",
                "(".repeat(DEEPEST_NESTING),
                " + -1".repeat((MOST_OPERATORS - 2 * DEEPEST_NESTING) / 2),
                ")".repeat(DEEPEST_NESTING)
            ),
        ];
        // On half the stack parsing gets, nothing accepted overflows (a debug build's frames are
        // the largest).
        std::thread::Builder::new()
            .stack_size(PARSER_STACK / 2)
            .spawn(move || {
                for shape in &largest {
                    let _ = compile(shape);
                }
            })
            .unwrap()
            .join()
            .expect("parsing stays within the stack");
    }

    #[tokio::test]
    async fn an_expression_sees_its_variables_and_gives_json() {
        let expression = Expression::parse(r#"{"to": device.phone_number, "text": "Code " + code, "who": user.username}"#).await.unwrap();
        let result = expression
            .evaluate(json!({"device": {"phone_number": "+41446681800"}, "code": "123456", "user": {"username": "olga"}}))
            .await
            .unwrap();
        assert_eq!(result, json!({"to": "+41446681800", "text": "Code 123456", "who": "olga"}));
    }

    #[tokio::test]
    async fn what_does_not_parse_loops_or_grows_too_large_is_refused() {
        assert!(Expression::parse("1 +").await.unwrap_err().contains("Not a valid CEL expression"));
        assert!(Expression::parse(" ").await.is_err());
        assert!(Expression::parse(&"1 + ".repeat(2000)).await.unwrap_err().contains("no more than"));
        // Without the comprehension macros, `map` is an unknown function: no loops.
        let looping = Expression::parse("[1, 2, 3].map(x, [1, 2, 3].map(y, x * y))").await;
        match looping {
            Err(message) => assert!(message.contains("CEL"), "{message}"),
            Ok(expression) => assert!(expression.evaluate(json!({})).await.is_err()),
        }
        let unknown = Expression::parse("nobody.knows").await.unwrap();
        assert!(unknown.evaluate(json!({})).await.is_err());
        let large = Expression::parse("text + text + text + text + text").await.unwrap();
        let outcome = large.evaluate(json!({"text": "x".repeat(4000)})).await;
        assert!(outcome.unwrap_err().contains("larger than"));
    }
}
