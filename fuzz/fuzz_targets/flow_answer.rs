//! The body of a flow executor answer: any bytes are either refused with a field error or read
//! into an object of scalars.
#![no_main]

use gatehouse::flows::executor_api::parse_response;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
    if let Ok(answer) = parse_response(&headers, body) {
        assert!(answer.values().all(|v| !v.is_array() && !v.is_object()));
    }
});
