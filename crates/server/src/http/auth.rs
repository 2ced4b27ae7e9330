//! Who is calling: the session cookie (with CSRF protection on unsafe methods), or a bearer
//! credential. Permission checks hang off the resulting [`Principal`].

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};
use chrono::Utc;
use tokio::sync::OnceCell;

use crate::accounts::entities::user;
use crate::accounts::service::{Actor, EffectivePermissions, effective_permissions};
use crate::error::{Error, Result};
use crate::events::visits::Visit;
use crate::http::client::ClientInfo;
use crate::sessions::entities::session;
use crate::sessions::service;
use crate::state::AppState;

/// Header carrying the CSRF token on cookie-authenticated unsafe requests.
pub const CSRF_HEADER: &str = "x-csrftoken";
/// Cookie carrying the CSRF token for browser scripts.
pub const CSRF_COOKIE: &str = "gatehouse_csrf";

/// An authenticated caller.
#[derive(Debug)]
pub struct Principal {
    pub user: user::Model,
    pub session: Option<session::Model>,
    pub client: ClientInfo,
    permissions: OnceCell<EffectivePermissions>,
}

impl Principal {
    /// The permissions, loaded on first use.
    pub async fn permissions(&self, state: &AppState) -> Result<&EffectivePermissions> {
        self.permissions.get_or_try_init(|| effective_permissions(&state.db, &self.user)).await
    }

    /// Fails with 403 unless the caller holds `permission`.
    pub async fn require(&self, state: &AppState, permission: &str) -> Result<()> {
        if self.permissions(state).await?.has(permission) { Ok(()) } else { Err(Error::PermissionDenied) }
    }

    /// Fails with 403 unless the caller is a superuser.
    pub async fn require_superuser(&self, state: &AppState) -> Result<()> {
        if self.permissions(state).await?.is_superuser { Ok(()) } else { Err(Error::PermissionDenied) }
    }

    /// The caller as the actor of a change.
    pub fn actor(&self) -> Actor {
        Actor { user: Some(self.user.clone()), client: Some(self.client.clone()) }
    }
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Ok(client) = ClientInfo::from_request_parts(parts, state).await;
        if parts.headers.contains_key(header::AUTHORIZATION) {
            // No bearer credential kinds are issued yet: any is invalid.
            metrics::counter!("gatehouse_auth_failures_total", "kind" => "bearer").increment(1);
            return Err(Error::Unauthenticated);
        }
        let key = cookie(parts, &state.config.sessions.cookie_name).ok_or(Error::Unauthenticated)?;
        let authenticated = service::authenticate(state, key, &client).await?.ok_or_else(|| {
            metrics::counter!("gatehouse_auth_failures_total", "kind" => "session").increment(1);
            Error::Unauthenticated
        })?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let presented = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
            if !service::csrf_valid(&state.secret, authenticated.session.id, presented) {
                return Err(Error::Csrf);
            }
        }
        if let Some(visits) = &state.visits {
            visits.record(Visit {
                tenant_id: state.tenant.0,
                user_id: authenticated.user.id,
                method: parts.method.to_string(),
                url: parts.uri.path().chars().take(2048).collect(),
                referrer: parts.headers.get(header::REFERER).and_then(|v| v.to_str().ok()).map(|r| r.chars().take(2048).collect()),
                user_agent: client.user_agent.clone(),
                client_ip: client.ip_text(),
                created: Utc::now(),
            });
        }
        Ok(Principal { user: authenticated.user, session: Some(authenticated.session), client, permissions: OnceCell::new() })
    }
}
