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
