//! Pages for people: rendering, the stylesheet, the front door, and errors as pages rather than
//! JSON. The pages themselves live in their domains (`flows::pages`, `sessions::pages`).

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::error::Error;
use crate::http::auth::MaybeSignedIn;
use crate::state::AppState;

/// Content-Security-Policy of every page: no script at all, styles and images from here only,
/// forms post only here, never framed.
pub const PAGE_CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Largest form body a page accepts.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// Renders `template` as an HTML response with `status`.
pub fn html(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(body) => {
            let mut response = (status, body).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) => {
            tracing::error!(%error, "page template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal server error occurred.").into_response()
        }
    }
}

/// A page with a title, a message and one link onwards.
#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage<'a> {
    pub title: &'a str,
    pub message: &'a str,
    pub link_href: &'a str,
    pub link_label: &'a str,
}

/// A page that sends the browser on to `to` (a path on this server) by itself, with a link for
/// the rare browser that does not follow `refresh`.
#[derive(Template)]
#[template(path = "continue.html")]
pub struct ContinuePage<'a> {
    pub title: &'a str,
    pub to: &'a str,
}

/// Sends the browser on to the path `to` from a page rather than with a redirect. After a form's
/// POST, a redirect chain that ends on another origin (an application's callback) breaks the
/// pages' `form-action 'self'` policy; a navigation the page starts is not a form submission.
pub fn continue_to(to: &str) -> Response {
    html(StatusCode::OK, &ContinuePage { title: "Signed in", to })
}

/// A form that hands `fields` to an application at `action` (OAuth 2.0 Form Post Response Mode).
#[derive(Template)]
#[template(path = "post_to.html")]
pub struct PostToPage<'a> {
    pub title: &'a str,
    pub action: &'a str,
    pub fields: &'a [(String, String)],
}

/// The page that posts `fields` to `action`, a web address. The person presses Continue (pages
/// run no script); the page's policy lets its form post to that address's origin alone.
pub fn post_to(action: &str, fields: &[(String, String)]) -> Response {
    let origin = url::Url::parse(action).map(|url| url.origin().ascii_serialization()).unwrap_or_else(|_| "'none'".into());
    let mut response = html(StatusCode::OK, &PostToPage { title: "Continue to the application", action, fields });
    let policy = format!(
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action {origin}; frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(value) = HeaderValue::from_str(&policy) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

/// A message page.
pub fn message(status: StatusCode, title: &str, text: &str) -> Response {
    html(status, &MessagePage { title, message: text, link_href: "/", link_label: "Continue" })
}

/// An error as a page: the same statuses and messages as the API, never internal detail.
pub fn error_page(error: Error) -> Response {
    match error {
        Error::NotFound => message(StatusCode::NOT_FOUND, "Not found", "There is nothing at this address."),
        Error::Validation(errors) => {
            let text = errors.fields().values().flatten().cloned().collect::<Vec<_>>().join(" ");
            message(StatusCode::BAD_REQUEST, "Something was not right", &text)
        }
        Error::Csrf => message(StatusCode::FORBIDDEN, "Form expired", "This form expired. Go back, reload the page and try again."),
        Error::RateLimited { retry_after_secs } => {
            let text = format!("Too many attempts. {}", crate::error::try_again_in(retry_after_secs));
            message(StatusCode::TOO_MANY_REQUESTS, "Slow down", &text)
        }
        Error::Overloaded { retry_after_secs } => {
            let mut page = message(StatusCode::SERVICE_UNAVAILABLE, "Busy", "The server is busy. Try again in a moment.");
            page.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from(retry_after_secs));
            page
        }
        Error::PayloadTooLarge => message(StatusCode::PAYLOAD_TOO_LARGE, "Too large", "The form sent too much data."),
        Error::Unavailable(text) => {
            tracing::warn!(message = %text, "a service the page needs is unavailable");
            message(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", "Something this page needs is unavailable. Try again later.")
        }
        Error::Conflict(text) => message(StatusCode::CONFLICT, "Not now", &text),
        Error::Unauthenticated | Error::PermissionDenied | Error::InvalidPage => {
            message(StatusCode::FORBIDDEN, "Not allowed", "You may not open this page.")
        }
        Error::Internal(cause) => {
            tracing::error!(error = %cause, "internal error");
            message(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "Something went wrong on our side. Please try again.")
        }
    }
}

/// Reads an `application/x-www-form-urlencoded` body of at most [`MAX_FORM_BYTES`].
pub fn form_fields(headers: &HeaderMap, body: &[u8]) -> Result<Vec<(String, String)>, Error> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")));
    if !is_form {
        return Err(Error::field(crate::error::NON_FIELD_ERRORS, "Unsupported media type; send a form."));
    }
    if body.len() > MAX_FORM_BYTES {
        return Err(Error::PayloadTooLarge);
    }
    let text = std::str::from_utf8(body).map_err(|_| Error::field(crate::error::NON_FIELD_ERRORS, "The form is not valid UTF-8."))?;
    let fields = crate::flows::redirect::url_params(text);
    for (name, value) in &fields {
        use crate::json::{TextRole, field_role, printable, refused_control};
        if let Some(refusal) = refused_control(name, TextRole::Name).or_else(|| refused_control(value, field_role(name))) {
            return Err(Error::field(printable(name), refusal));
        }
    }
    Ok(fields)
}

/// A 303 to `location` with `headers` (cookies, usually) added.
pub fn see_other(mut headers: HeaderMap, location: &str) -> Result<Response, Error> {
    headers.insert(header::LOCATION, HeaderValue::from_str(location).map_err(Error::internal)?);
    Ok((StatusCode::SEE_OTHER, headers).into_response())
}

/// The sign-in flow's page, returning to the user page afterwards.
pub fn sign_in_url(state: &AppState) -> String {
    format!("/if/flow/{}/?next=%2Fif%2Fuser%2F", state.config.flows.authentication_flow)
}

/// `/`: the user page for people who are signed in, the sign-in flow for everyone else.
pub async fn front_door(State(state): State<AppState>, MaybeSignedIn(current): MaybeSignedIn) -> Redirect {
    if current.is_some() { Redirect::to("/if/user/") } else { Redirect::to(&sign_in_url(&state)) }
}

/// The stylesheet, compiled in.
pub async fn stylesheet() -> Response {
    let mut response = include_str!("../../static/gatehouse.css").into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    response
}
