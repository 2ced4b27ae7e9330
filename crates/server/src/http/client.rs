//! Extracts who is on the other end of a request from its connection and headers.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::events::client::{ClientInfo, client_ip};
use crate::state::AppState;

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        // A value that is not visible ASCII holds no address: it stops the walk like any entry
        // that does not parse.
        let forwarded_for = parts.headers.get_all("x-forwarded-for").iter().map(|v| v.to_str().unwrap_or("invalid"));
        let ip = client_ip(peer, forwarded_for, &state.config.server.trusted_proxies);
        let user_agent =
            parts.headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default().chars().take(512).collect();
        let known_browser =
            crate::http::cookies::read_cookie(state, &parts.headers, crate::credentials::known_browser::COOKIE).map(str::to_owned);
        Ok(Self { ip, user_agent, known_browser })
    }
}

/// This server's address, without a trailing slash, for what names the server's own URLs: an
/// OpenID issuer, its endpoints. `server.public_url` when set; otherwise as the caller reached it
/// (`http://host:port`, or `https://` when a trusted proxy says the caller came over HTTPS), and
/// a missing or malformed `Host` is refused.
pub struct PublicBase(pub String);

/// Whether `host` is a host name or address with an optional port, and nothing else.
fn plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

impl FromRequestParts<AppState> for PublicBase {
    type Rejection = crate::error::Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(configured) = &state.config.server.public_url {
            return Ok(Self(configured.trim_end_matches('/').to_owned()));
        }
        let host = parts
            .headers
            .get(axum::http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .filter(|host| plain_host(host))
            .ok_or_else(|| crate::error::Error::field("Host", "The Host header is missing or not a host name."))?;
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let https = super::middleware::forwarded_https_from(peer, &parts.headers, &state.config.server.trusted_proxies);
        Ok(Self(format!("{}://{host}", if https { "https" } else { "http" })))
    }
}
