//! Webhook mapping expressions: any text either is refused with a message or parses, and an
//! accepted expression evaluates to a result or an error within its bounds; nothing panics or
//! overflows a stack.
#![no_main]

use std::sync::LazyLock;

use gatehouse::mappings::expression::{Expression, LARGEST_RESULT};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a runtime"));

fuzz_target!(|text: &str| {
    let Ok(expression) = RUNTIME.block_on(Expression::parse(text)) else { return };
    let variables = json!({"code": "123456", "user": {"username": "olga", "pk": 7}, "payload": {"To": "+41446681800"}});
    if let Ok(result) = RUNTIME.block_on(expression.evaluate(variables)) {
        assert!(serde_json::to_vec(&result).unwrap().len() <= LARGEST_RESULT);
    }
});
