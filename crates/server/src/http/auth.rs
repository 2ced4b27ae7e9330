//! Who is calling: the session cookie (with CSRF protection on unsafe methods), or a bearer
//! credential. Permission checks hang off the resulting [`Principal`].

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};
use std::sync::Arc;

use chrono::Utc;

use crate::accounts::access::{Actor, Rights};
use crate::accounts::entities::user;
use crate::credentials::cache::AuthContext;
use crate::error::{Error, Result};
use crate::events::client::ClientInfo;
use crate::events::visits::Visit;
use crate::sessions::entities::session;
use crate::sessions::service;
use crate::state::AppState;

/// Header carrying the CSRF token on cookie-authenticated unsafe requests.
pub const CSRF_HEADER: &str = "x-csrftoken";
/// Cookie carrying the CSRF token for browser scripts (`__Host-` prefixed when secure).
pub const CSRF_COOKIE: &str = "gatehouse_csrf";

/// An authenticated caller.
#[derive(Debug)]
pub struct Principal {
    pub context: Arc<AuthContext>,
    pub client: ClientInfo,
}

impl Principal {
    /// The calling user.
    pub fn user(&self) -> &user::Model {
        &self.context.user
    }

    /// The session the call came with, when it came with one (not with an API key).
    pub fn session(&self) -> Option<&session::Model> {
        self.context.session.as_ref()
    }

    /// What the caller may do.
    pub fn permissions(&self) -> &Rights {
        &self.context.permissions
    }

    /// The caller as the actor of a change.
    pub fn actor(&self) -> Actor {
        Actor::user(self.context.user.clone(), self.context.permissions.clone(), self.client.clone(), self.session().map(|s| s.created))
    }
}

/// The value of cookie `name` in `headers`, if any.
pub fn cookie_in<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Checks `Authorization: Bearer <key>` (scheme case-insensitive). Every failure looks the same
/// to the client; every key not already known good counts toward the client address's failure
/// limit before it is looked up.
async fn bearer(state: &AppState, value: &axum::http::HeaderValue, client: &ClientInfo) -> Result<Arc<AuthContext>> {
    let credential = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, credential)| credential.trim())
        .filter(|credential| !credential.is_empty());
    let context = match credential {
        Some(credential) => crate::tokens::service::authenticate(state, credential, client.ip).await?,
        None => None,
    };
    context.ok_or_else(|| {
        metrics::counter!("gatehouse_auth_failures_total", "kind" => "bearer").increment(1);
        Error::Unauthenticated
    })
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Ok(client) = ClientInfo::from_request_parts(parts, state).await;
        let context = match parts.headers.get(header::AUTHORIZATION) {
            Some(value) => bearer(state, value, &client).await?,
            None => {
                let key = crate::http::cookies::read_cookie(state, &parts.headers, &state.config.sessions.cookie_name)
                    .ok_or(Error::Unauthenticated)?;
                let context = service::authenticate(state, key, &client).await?.ok_or_else(|| {
                    metrics::counter!("gatehouse_auth_failures_total", "kind" => "session").increment(1);
                    Error::Unauthenticated
                })?;
                // Cookies ride along on cross-site requests; bearer keys do not, so only
                // cookie-authenticated unsafe requests need the CSRF token.
                let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
                if !safe && let Some(session) = &context.session {
                    let presented = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
                    if !service::csrf_valid(&state.secret, session.id, presented) {
                        return Err(Error::Csrf);
                    }
                }
                context
            }
        };
        if let Some(identity) = parts.extensions.get::<crate::http::middleware::RequestIdentity>() {
            identity.set(context.user.id, context.token.as_ref().map(|t| t.key_id));
        }
        if let Some(visits) = &state.visits {
            visits.record(Visit {
                tenant_id: state.tenant.0,
                user_id: context.user.id,
                method: parts.method.to_string(),
                url: parts.uri.path().chars().take(2048).collect(),
                referrer: parts.headers.get(header::REFERER).and_then(|v| v.to_str().ok()).map(|r| r.chars().take(2048).collect()),
                user_agent: client.user_agent.clone(),
                client_ip: client.ip_text(),
                created: Utc::now(),
            });
        }
        Ok(Principal { context, client })
    }
}

/// The caller's session, if the request carries a valid session cookie; never a rejection. For
/// routes anyone may call (flows, pages) that behave differently for signed-in people. It does
/// not check CSRF tokens: routes that change state with it protect themselves.
#[derive(Debug, Clone)]
pub struct MaybeSignedIn(pub Option<Arc<AuthContext>>);

impl FromRequestParts<AppState> for MaybeSignedIn {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(key) = crate::http::cookies::read_cookie(state, &parts.headers, &state.config.sessions.cookie_name).map(str::to_owned)
        else {
            return Ok(Self(None));
        };
        let Ok(client) = ClientInfo::from_request_parts(parts, state).await;
        let context = service::authenticate(state, &key, &client).await?;
        if let (Some(context), Some(identity)) = (&context, parts.extensions.get::<crate::http::middleware::RequestIdentity>()) {
            identity.set(context.user.id, None);
        }
        Ok(Self(context))
    }
}
