//! `/if/flow/{slug}/`: flows for people. One form per challenge, rendered on the server, working
//! without JavaScript; answers are posted back and followed by a redirect.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::executor::{self, Challenge, FlowRequest, FormAnswer, Outcome};
use super::redirect::safe_next;
use super::run::{self, FLOW_COOKIE};
use crate::error::{Error, Result};
use crate::events::client::ClientInfo;
use crate::http::auth::MaybeSignedIn;
use crate::http::pages::{error_page, form_fields, html, message, see_other};
use crate::state::AppState;

/// Sends the browser through the flow `flow_slug`, handed `handoff`, to come back to `next`
/// with a proof that it finished: the run starts here, so the flow page finds it in the cookie.
/// For other parts of the server that need a flow run on their behalf (an application's
/// authorization, a device's sign-in).
pub async fn through_flow(
    state: &AppState,
    client: &ClientInfo,
    current: Option<std::sync::Arc<crate::credentials::cache::AuthContext>>,
    flow_slug: &str,
    next: &str,
    handoff: &super::handoff::Handoff,
) -> Response {
    let request = FlowRequest::new(flow_slug, None, client, current, Some(next)).handing_off(handoff);
    let ticket = match executor::hand_off(state, request).await {
        Ok(Ok(ticket)) => ticket,
        Ok(Err(reason)) => return error_page(Error::field(crate::error::NON_FIELD_ERRORS, reason)),
        Err(error) => return error_page(error),
    };
    let cookie = match crate::http::cookies::flow_cookie(state, &ticket) {
        Ok(cookie) => cookie,
        Err(error) => return error_page(error),
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::SET_COOKIE, cookie);
    headers.insert(header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    (StatusCode::FOUND, [(header::LOCATION, format!("/if/flow/{flow_slug}/"))], headers).into_response()
}

/// The `next` a flow page was opened with.
#[derive(Deserialize)]
pub struct PageQuery {
    pub next: Option<String>,
}

/// One input as the template shows it.
pub struct InputView {
    pub name: &'static str,
    pub label: String,
    pub html_type: &'static str,
    pub autocomplete: &'static str,
    pub value: String,
    pub required: bool,
    pub autofocus: bool,
    pub checkbox: bool,
    pub hidden: bool,
    pub numeric: bool,
    pub errors: Vec<String>,
}

#[derive(Template)]
#[template(path = "flow.html")]
struct FlowPage {
    title: String,
    intro: Option<String>,
    general_errors: Vec<String>,
    action: String,
    csrf: String,
    step: i64,
    inputs: Vec<InputView>,
    /// Whether any input shows; otherwise the button takes the focus.
    has_visible_input: bool,
    submit: String,
    links: Vec<(String, String)>,
    /// A QR code as inline SVG, drawn here from the stage's text.
    qr_svg: Option<String>,
    listing: Vec<String>,
}

/// `text` as a QR code in inline SVG: drawn on the server, so the page needs no script.
fn qr_svg(text: &str) -> Result<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|e| Error::internal(format!("cannot draw a QR code: {e}")))?;
    let svg = code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).quiet_zone(true).build();
    // Inline in HTML, the XML declaration is not wanted.
    let start = svg.find("<svg").ok_or_else(|| Error::internal("the QR code has no svg element"))?;
    Ok(svg[start..].replacen("<svg", r#"<svg role="img" aria-label="Scan with your authenticator app""#, 1))
}

fn action(slug: &str, next: Option<&str>) -> String {
    match next.and_then(safe_next) {
        Some(next) => format!("/if/flow/{slug}/?next={}", form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()),
        None => format!("/if/flow/{slug}/"),
    }
}

fn render(state: &AppState, outcome: Outcome, slug: &str, next: Option<&str>) -> Result<Response> {
    let headers = crate::http::cookies::flow_cookies(state, &outcome)?;
    let response = match outcome.challenge {
        // On to an application on another origin: from a page, not a redirect (see continue_to).
        Challenge::Redirect { to } if to.starts_with("/application/o/") => {
            let mut response = crate::http::pages::continue_to(&to);
            response.headers_mut().extend(headers);
            return Ok(response);
        }
        Challenge::Redirect { to } => return see_other(headers, &to),
        Challenge::AccessDenied { message: text } => message(StatusCode::FORBIDDEN, "Access denied", &text),
        Challenge::Stage { prompt, errors, .. } => {
            let (run_id, step) = outcome.run.ok_or_else(|| Error::internal("a question without a run"))?;
            let form = prompt.form;
            let mut fields = errors.fields().clone();
            let inputs: Vec<InputView> = form
                .inputs
                .into_iter()
                .map(|input| InputView {
                    name: input.name,
                    label: input.label,
                    html_type: input.kind.html_type(),
                    autocomplete: input.autocomplete,
                    value: input.value,
                    required: input.required,
                    autofocus: input.autofocus,
                    checkbox: input.kind == super::stage::InputKind::Checkbox,
                    hidden: input.kind == super::stage::InputKind::Hidden,
                    numeric: input.kind == super::stage::InputKind::Code,
                    // A hidden input shows nothing: its complaints are shown above the form.
                    errors: if input.kind == super::stage::InputKind::Hidden {
                        Vec::new()
                    } else {
                        fields.remove(input.name).unwrap_or_default()
                    },
                })
                .collect();
            let has_visible_input = inputs.iter().any(|input: &InputView| !input.hidden);
            let page = FlowPage {
                title: outcome.flow.title.clone(),
                intro: form.intro,
                general_errors: fields.into_values().flatten().collect(),
                action: action(slug, next),
                csrf: run::form_token(&state.secret, run_id),
                step,
                inputs,
                has_visible_input,
                submit: form.submit,
                links: form.links,
                qr_svg: form.qr_code.as_deref().map(qr_svg).transpose()?,
                listing: form.listing,
            };
            html(StatusCode::OK, &page)
        }
    };
    Ok((headers, response).into_response())
}

/// `GET /if/flow/{slug}/`.
pub async fn show(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    Query(query): Query<PageQuery>,
    client: ClientInfo,
    MaybeSignedIn(current): MaybeSignedIn,
    headers: HeaderMap,
) -> Response {
    let next = query.next.as_deref();
    let request = FlowRequest::new(&slug, crate::http::cookies::read_cookie(&state, &headers, FLOW_COOKIE), &client, current, next)
        .remembering(crate::http::cookies::read_cookie(&state, &headers, crate::mfa::remembered::COOKIE));
    match executor::get(&state, request).await.and_then(|outcome| render(&state, outcome, &slug, next)) {
        Ok(response) => response,
        Err(error) => error_page(error),
    }
}

/// `POST /if/flow/{slug}/`: the answer to the question on the page.
pub async fn answer(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    Query(query): Query<PageQuery>,
    client: ClientInfo,
    MaybeSignedIn(current): MaybeSignedIn,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let next = query.next.as_deref();
    let result = async {
        let fields = form_fields(&headers, &body)?;
        let mut response = Map::new();
        let mut token = None;
        let mut step = None;
        for (name, value) in fields {
            match name.as_str() {
                "csrf" => token = Some(value),
                "step" => step = value.parse::<i64>().ok(),
                _ => {
                    response.insert(name, Value::String(value));
                }
            }
        }
        // The form must come from this browser's run; without a run there is nothing to apply
        // the answer to, and the executor starts over without applying it.
        let form = FormAnswer { token: token.as_deref().unwrap_or_default(), step: step.unwrap_or(-1) };
        let request = FlowRequest::new(&slug, crate::http::cookies::read_cookie(&state, &headers, FLOW_COOKIE), &client, current, next)
            .remembering(crate::http::cookies::read_cookie(&state, &headers, crate::mfa::remembered::COOKIE));
        let outcome = executor::solve(&state, request, response, Some(form)).await?;
        // A question without complaints is shown by a fresh GET, so reloading never re-posts.
        if let Challenge::Stage { errors, .. } = &outcome.challenge
            && errors.is_empty()
        {
            return see_other(crate::http::cookies::flow_cookies(&state, &outcome)?, &action(&slug, next));
        }
        render(&state, outcome, &slug, next)
    }
    .await;
    result.unwrap_or_else(error_page)
}

/// `/flows/-/cancel/`: abandons the browser's flow run and goes back to the start.
pub async fn cancel(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let result: Result<Response> = async {
        if let Some(key) = crate::http::cookies::read_cookie(&state, &headers, FLOW_COOKIE) {
            run::cancel(&state.db, &state.secret, state.tenant, key).await?;
        }
        let mut out = HeaderMap::new();
        out.append(header::SET_COOKIE, crate::http::cookies::set_cookie(&state, FLOW_COOKIE, "", true, Some(0))?);
        see_other(out, "/")
    }
    .await;
    result.unwrap_or_else(error_page)
}
