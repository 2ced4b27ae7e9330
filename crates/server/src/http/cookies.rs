//! The cookies Gatehouse sets: the session, its CSRF token, the flow run and the known-browser
//! mark. All are `Path=/`,
//! `SameSite=Lax` (so cross-site posts carry none of them), without `Domain`, and `Secure` unless
//! configured off; secure cookies are named with the `__Host-` prefix, which browsers accept only
//! from this very host over HTTPS, so a sibling subdomain cannot plant one.

use axum::http::{HeaderMap, HeaderValue, header};

use crate::credentials::known_browser;
use crate::error::{Error, Result};
use crate::flows::executor::{FlowCookie, Outcome};
use crate::flows::run::FLOW_COOKIE;
use crate::flows::stage::Effect;
use crate::http::auth::CSRF_COOKIE;
use crate::sessions::service::NewSession;
use crate::state::AppState;

/// The name cookie `base` goes by: `__Host-<base>` when cookies are secure.
pub fn cookie_name(state: &AppState, base: &str) -> String {
    if state.config.server.secure_cookies { format!("__Host-{base}") } else { base.to_owned() }
}

/// The value of cookie `base` (under its configured name) in `headers`.
pub fn read_cookie<'a>(state: &AppState, headers: &'a HeaderMap, base: &str) -> Option<&'a str> {
    crate::http::auth::cookie_in(headers, &cookie_name(state, base))
}

/// A `Set-Cookie` value for cookie `base` (named by [`cookie_name`]). `max_age` `None` makes a cookie that ends with the browser; `Some(0)`
/// removes it.
pub fn set_cookie(state: &AppState, base: &str, value: &str, http_only: bool, max_age: Option<i64>) -> Result<HeaderValue> {
    let name = cookie_name(state, base);
    let mut cookie = format!("{name}={value}; Path=/; SameSite=Lax");
    if let Some(max_age) = max_age {
        cookie.push_str(&format!("; Max-Age={max_age}"));
    }
    if http_only {
        cookie.push_str("; HttpOnly");
    }
    if state.config.server.secure_cookies {
        cookie.push_str("; Secure");
    }
    HeaderValue::from_str(&cookie).map_err(Error::internal)
}

/// Sets the session and CSRF cookies, and the known-browser mark (which outlives the session).
pub fn sign_in_cookies(state: &AppState, headers: &mut HeaderMap, new: &NewSession, max_age: Option<i64>) -> Result<()> {
    headers.append(header::SET_COOKIE, set_cookie(state, &state.config.sessions.cookie_name, &new.key, true, max_age)?);
    headers.append(header::SET_COOKIE, set_cookie(state, CSRF_COOKIE, &new.csrf_token, false, max_age)?);
    let remembered = known_browser::LIFETIME.num_seconds();
    headers.append(header::SET_COOKIE, set_cookie(state, known_browser::COOKIE, &new.known_browser, true, Some(remembered))?);
    Ok(())
}

/// Removes the session and CSRF cookies.
pub fn sign_out_cookies(state: &AppState, headers: &mut HeaderMap) -> Result<()> {
    headers.append(header::SET_COOKIE, set_cookie(state, &state.config.sessions.cookie_name, "", true, Some(0))?);
    headers.append(header::SET_COOKIE, set_cookie(state, CSRF_COOKIE, "", false, Some(0))?);
    Ok(())
}

/// The cookie that finds the flow run `key`, for as long as a run lasts.
pub fn flow_cookie(state: &AppState, key: &str) -> Result<HeaderValue> {
    // Rounded up: a lifetime under a second must not become `Max-Age=0`, which deletes.
    let lifetime = (state.config.flows.run_lifetime.to_chrono().num_milliseconds() + 999) / 1000;
    set_cookie(state, FLOW_COOKIE, key, true, Some(lifetime))
}

/// The cookies a flow step changes: the flow run's, and the session's when a stage signed someone
/// in or out. Only the final state of each is sent.
pub fn flow_cookies(state: &AppState, outcome: &Outcome) -> Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    match &outcome.cookie {
        FlowCookie::Keep => {}
        FlowCookie::Set(key) => {
            headers.append(header::SET_COOKIE, flow_cookie(state, key)?);
        }
        FlowCookie::Clear => {
            headers.append(header::SET_COOKIE, set_cookie(state, FLOW_COOKIE, "", true, Some(0))?);
        }
    }
    let session_change = outcome.effects.iter().rev().find(|effect| matches!(effect, Effect::SignedIn { .. } | Effect::SignedOut));
    match session_change {
        Some(Effect::SignedIn { session, persistent }) => {
            let max_age = persistent.then(|| (session.session.expires - chrono::Utc::now()).num_seconds().max(0));
            sign_in_cookies(state, &mut headers, session, max_age)?;
        }
        Some(Effect::SignedOut) => sign_out_cookies(state, &mut headers)?,
        _ => {}
    }
    if let Some(Effect::RememberDevice { token, max_age_secs }) =
        outcome.effects.iter().rev().find(|effect| matches!(effect, Effect::RememberDevice { .. }))
    {
        headers.append(header::SET_COOKIE, set_cookie(state, crate::mfa::remembered::COOKIE, token, true, Some(*max_age_secs))?);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(headers)
}
