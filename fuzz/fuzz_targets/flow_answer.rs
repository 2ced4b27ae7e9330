//! The body of a flow executor answer: any bytes are either refused with a field error or read
//! into an object whose values are scalars or small objects of scalars (authentik's
//! `selected_challenge`), never lists and never deeper than three levels.
#![no_main]

use gatehouse::flows::executor_api::parse_response;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn plain(value: &Value, depth: usize) -> bool {
    match value {
        Value::Array(_) => false,
        Value::Object(map) => depth > 1 && map.values().all(|inner| plain(inner, depth - 1)),
        _ => true,
    }
}

fuzz_target!(|body: &[u8]| {
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
    if let Ok(answer) = parse_response(&headers, body) {
        assert!(answer.values().all(|v| plain(v, 3)), "{answer:?}");
    }
});
