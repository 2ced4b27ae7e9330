//! Request middleware: request ids, one log line and metrics per request, security headers.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::Error;

/// Who a request was authenticated as, filled in by the authentication extractor and logged with
/// the request: the user's pk and, for API keys, the key's id (never the key).
#[derive(Debug, Clone, Default)]
pub struct RequestIdentity(std::sync::Arc<std::sync::Mutex<Option<Caller>>>);

/// A user's pk and, for API keys, the key's id.
type Caller = (i64, Option<uuid::Uuid>);

impl RequestIdentity {
    /// Records the caller.
    pub fn set(&self, user: i64, key_id: Option<uuid::Uuid>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some((user, key_id));
        }
    }

    fn get(&self) -> Option<Caller> {
        self.0.lock().ok().and_then(|slot| *slot)
    }
}

/// Header carrying the request id, taken from the client when it sends one.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Logs one line per request (method, route, status, latency, request id) and records the
/// request metrics. Only the route template is logged, never the query string or body.
pub async fn observe(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let identity = RequestIdentity::default();
    request.extensions_mut().insert(identity.clone());
    let method = request.method().clone();
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let mut response = next.run(request).await;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json(&response) {
        response = Error::PayloadTooLarge.into_response();
    }
    let latency = started.elapsed();
    let route = response.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".to_owned());
    let status = response.status().as_u16();
    let (user, key_id) = match identity.get() {
        Some((user, key_id)) => (Some(user), key_id),
        None => (None, None),
    };
    tracing::info!(
        target: "gatehouse::http",
        method = %method,
        route = %route,
        status,
        latency_ms = latency.as_secs_f64() * 1000.0,
        request_id = %request_id,
        user,
        key_id = key_id.map(|k| k.to_string()),
        "request"
    );
    let labels = [("method", method.to_string()), ("route", route), ("status", status.to_string())];
    metrics::counter!("gatehouse_http_requests_total", &labels).increment(1);
    metrics::histogram!("gatehouse_http_request_duration_seconds", &labels).record(latency.as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// Runs inside routing, where the matched route is known, and hands it to [`observe`].
pub async fn record_route(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(request).await;
    if let Some(route) = route {
        response.extensions_mut().insert(route);
    }
    response
}

fn is_json(response: &Response) -> bool {
    response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
}

/// Security headers on every response. Pages get a policy that allows their stylesheet and
/// nothing else; the API allows nothing and is never cached; Swagger UI gets what its bundle needs. HSTS is sent
/// when the request reached a trusted proxy over HTTPS (the only way this server sees HTTPS).
pub async fn security_headers(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let is_docs = path == "/api/v3/" || path.starts_with("/api/v3/swagger-ui");
    let is_api = path.starts_with("/api/") || path.starts_with("/-/");
    let over_https = forwarded_https(&request, &state.config.server.trusted_proxies);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    let csp = if is_docs {
        // Swagger UI's bundle injects styles; scripts still come only from this server.
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'"
    } else if is_api {
        "default-src 'none'; frame-ancestors 'none'"
    } else {
        super::pages::PAGE_CSP
    };
    headers.entry(header::CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static(csp));
    if is_api && !is_docs {
        // API answers carry people's data, keys and tokens: no cache, shared or private, keeps
        // them (pages set the same themselves).
        headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    }
    if over_https {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    }
    response
}

/// Whether the percent-decoded `path` holds a control character.
fn path_holds_control(path: &str) -> bool {
    // Without an escape the path decodes to itself: check it as it is, with nothing allocated.
    if !path.contains('%') {
        return crate::json::refused_control(path, crate::json::TextRole::Name).is_some();
    }
    // Decoded as one form value: `+`, `&` and `=` are kept as themselves, not read as syntax.
    let escaped = path.replace('+', "%2B").replace('&', "%26").replace('=', "%3D");
    form_urlencoded::parse(format!("p={escaped}").as_bytes())
        .next()
        .is_some_and(|(_, decoded)| crate::json::refused_control(&decoded, crate::json::TextRole::Name).is_some())
}

/// Whether a trusted proxy says the client connected over HTTPS.
fn forwarded_https(request: &Request, trusted: &[ipnet::IpNet]) -> bool {
    let peer = request.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    forwarded_https_from(peer, request.headers(), trusted)
}

/// Whether `peer` is a trusted proxy that says, in `headers`, the client connected over HTTPS.
pub fn forwarded_https_from(peer: Option<std::net::IpAddr>, headers: &axum::http::HeaderMap, trusted: &[ipnet::IpNet]) -> bool {
    let from_proxy = peer.is_some_and(|ip| trusted.iter().any(|net| net.contains(&ip)));
    from_proxy
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|proto| proto.split(',').next().is_some_and(|p| p.trim().eq_ignore_ascii_case("https")))
}

/// Refuses control characters in the address before any handler sees them: in the path nothing
/// can be found (404), in a query parameter the parameter is named (400). No store keeps such
/// text, and no name or search needs it.
pub async fn refuse_control_characters(request: Request, next: Next) -> Response {
    use crate::json::{TextRole, refused_control};
    let uri = request.uri();
    let error = if path_holds_control(uri.path()) {
        Some(Error::NotFound)
    } else {
        uri.query().and_then(|query| {
            form_urlencoded::parse(query.as_bytes()).find_map(|(name, value)| {
                let refusal = refused_control(&name, TextRole::Name).or_else(|| refused_control(&value, TextRole::Name))?;
                Some(Error::field(crate::json::printable(&name), refusal))
            })
        })
    };
    match error {
        Some(error) if uri.path().starts_with("/api/") => error.into_response(),
        Some(error) => super::pages::error_page(error),
        None => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_anywhere_in_the_path_are_found() {
        for path in ["/a%00b/", "/tokens/a&%01/", "/tokens/a=b%1B/", "/tokens/a+%7F/", "/x/%C2%85/", "/raw\u{1}/", "/raw\u{85}/"] {
            assert!(super::path_holds_control(path), "{path}");
        }
        for path in ["/api/v3/core/tokens/a&b=c+d/", "/caf%C3%A9/", "/café/", "/api/v3/core/users/me/"] {
            assert!(!super::path_holds_control(path), "{path}");
        }
    }
}
