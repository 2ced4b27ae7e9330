//! The authorization code grant with PKCE and refresh tokens, by OAuth 2.1's rules: codes are
//! single use, short-lived and bound to their client, redirect URI and PKCE challenge; a replayed
//! code or refresh token revokes every token issued from the same code; refresh tokens rotate on
//! use; every code and token is stored only as a keyed digest.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use gatehouse_types::DurationString;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, Set};
use serde_json::{Value, json};
use sha2::Digest;
use uuid::Uuid;

use super::cache::Client;
use super::claims::{self, Scopes};
use super::entities::{application, code, provider, token};
use super::model::{ClientType, GrantType, RedirectUri, RedirectUriType};
use super::scopes::ScopeOffer;
use crate::accounts::entities::user;
use crate::credentials::cache::AuthContext;
use crate::crypto::jwt::Signer;
use crate::error::Error;
use crate::events::client::ClientInfo;
use crate::events::{self, Action, EventRecord};
use crate::flows::handoff::{self, Handoff};
use crate::secret::{constant_time_eq, random_token};
use crate::state::AppState;
use std::sync::Arc;

const CODE_PURPOSE: &str = "oauth2-code";
const TOKEN_PURPOSE: &str = "oauth2-token";
pub(super) const ACCESS: &str = "access";
pub(super) const REFRESH: &str = "refresh";
/// The longest `state` or `nonce` kept; both come back to the client unchanged.
const LONGEST_ECHO: usize = 1024;

/// The parameters of a request, each at most once (RFC 6749 §3.1, §3.2).
#[derive(Debug, Default, Clone)]
pub struct Parameters {
    pairs: Vec<(String, String)>,
    /// The first parameter given more than once, if any.
    pub(super) repeated: Option<String>,
}

impl Parameters {
    /// Reads `application/x-www-form-urlencoded` text; an empty value counts as absent.
    pub fn parse(text: &str) -> Self {
        let mut parameters = Self::default();
        for (name, value) in form_urlencoded::parse(text.as_bytes()) {
            if value.is_empty() {
                continue;
            }
            if parameters.pairs.iter().any(|(n, _)| *n == name) {
                parameters.repeated.get_or_insert_with(|| name.clone().into_owned());
                continue;
            }
            parameters.pairs.push((name.into_owned(), value.into_owned()));
        }
        parameters
    }

    /// Reads a client's request to the token, introspection or revocation endpoint, where a
    /// repeated parameter is an `invalid_request`.
    pub(super) fn parse_once(text: &str) -> Result<Self, OAuthError> {
        let parameters = Self::parse(text);
        match &parameters.repeated {
            Some(name) => Err(OAuthError::InvalidRequest(format!("The parameter {name} is given more than once."))),
            None => Ok(parameters),
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The parameters but `names`, with `extra` after them, form-encoded.
    fn without(&self, names: &[&str], extra: (&str, &str)) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (name, value) in self.pairs.iter().filter(|(n, _)| !names.contains(&n.as_str())) {
            out.append_pair(name, value);
        }
        out.append_pair(extra.0, extra.1);
        out.finish()
    }
}

/// What the authorization endpoint does with a request.
#[derive(Debug)]
pub enum Authorization {
    /// The client or its redirect URI cannot be trusted: say why on a page and send the browser
    /// nowhere.
    Refused(String),
    /// The person signs in through the flow `flow_slug` first, then comes back with the
    /// authorization request `query`.
    SignIn { flow_slug: String, query: String },
    /// Send the browser back to the client with a code or an error.
    Redirect(String),
    /// Have the browser post `fields` to the client's `action` (`response_mode=form_post`).
    FormPost { action: String, fields: Vec<(String, String)> },
    /// The person goes through the application's authorization flow `flow_slug` (which asks
    /// for consent, say), handed `handoff`, and comes back to `next` with proof.
    Authorize { flow_slug: String, next: String, handoff: Handoff },
}

/// How recent a sign-in `prompt=login` and `max_age` below this ask for: a minute, long enough to
/// come back from the sign-in flow.
const FRESH_SIGN_IN_SECONDS: i64 = 60;

/// The flow people sign in through for `provider`: its own, or the server's.
async fn authentication_flow_slug(state: &AppState, provider: &provider::Model) -> crate::error::Result<String> {
    let own = match provider.authentication_flow_id {
        Some(id) => crate::flows::flow_service::flows_by_id(&state.db, state.tenant, &[id]).await?.remove(&id).map(|f| f.slug),
        None => None,
    };
    Ok(own.unwrap_or_else(|| state.config.flows.authentication_flow.clone()))
}

/// A client named by `client_id`, with its application.
async fn client_by_id(state: &AppState, client_id: &str) -> crate::error::Result<Option<Arc<Client>>> {
    super::cache::client(state, client_id).await
}

/// The issuer of `provider`'s tokens: its own (`<base>/application/o/<slug>/`) or the server's.
pub fn issuer(base: &str, provider: &provider::Model, app: &application::Model) -> String {
    match super::model::IssuerMode::parse(&provider.issuer_mode) {
        Some(super::model::IssuerMode::Global) => format!("{base}/"),
        _ => format!("{base}/application/o/{}/", app.slug),
    }
}

/// `target` with `parameters` added to its query.
fn with_query(target: &url::Url, parameters: &[(&str, &str)]) -> String {
    let mut url = target.clone();
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in parameters {
            query.append_pair(name, value);
        }
    }
    url.into()
}

/// Whether `text` is a PKCE verifier or S256 challenge: 43 to 128 unreserved characters
/// (RFC 7636 §4.1, §4.2).
fn pkce_shaped(text: &str) -> bool {
    (43..=128).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Answers an authorization request (`query` is its query string or form body) for the person
/// signed in with `current`, if anyone is.
pub async fn authorize(
    state: &AppState,
    base: &str,
    query: &str,
    current: Option<&AuthContext>,
    client: &ClientInfo,
) -> crate::error::Result<Authorization> {
    answer(state, base, query, current, client, false).await
}

/// Answers an authorization request the person declined at its consent stage: back to the
/// client with `access_denied`, once the request itself is checked as [`authorize`] checks it.
pub async fn decline(state: &AppState, base: &str, query: &str, client: &ClientInfo) -> crate::error::Result<Authorization> {
    answer(state, base, query, None, client, true).await
}

async fn answer(
    state: &AppState,
    base: &str,
    query: &str,
    current: Option<&AuthContext>,
    client: &ClientInfo,
    declined: bool,
) -> crate::error::Result<Authorization> {
    // A request coming back from its authorization flow carries the proof last.
    let (query, proof) = handoff::split_proof(query);
    let parameters = Parameters::parse(query);
    let Some(client_id) = parameters.get("client_id") else {
        return Ok(Authorization::Refused("The request names no client (client_id is missing).".into()));
    };
    let Some(registered) = client_by_id(state, client_id).await? else {
        return Ok(Authorization::Refused("No application is registered for this client.".into()));
    };
    let (provider, app) = (&registered.provider, &registered.app);
    let registered: Vec<RedirectUri> =
        provider.redirect_uris().into_iter().filter(|uri| uri.redirect_uri_type != Some(RedirectUriType::Logout)).collect();
    let (redirect_uri, redirect_uri_given) = match parameters.get("redirect_uri") {
        Some(given) if registered.iter().any(|uri| uri.accepts(given)) => (given.to_owned(), true),
        Some(_) => return Ok(Authorization::Refused("The redirect URI is not registered for this client.".into())),
        None => match registered.as_slice() {
            [only] if only.matching_mode == super::model::MatchingMode::Strict => (only.url.clone(), false),
            _ => return Ok(Authorization::Refused("The request names no redirect URI (redirect_uri is missing).".into())),
        },
    };
    if matches!(parameters.repeated.as_deref(), Some("client_id" | "redirect_uri")) {
        return Ok(Authorization::Refused("The client or redirect URI is given more than once.".into()));
    }
    // What a loose pattern let through is still only a safe place to send people.
    if let Err(reason) = super::model::check_requested_redirect(&redirect_uri) {
        return Ok(Authorization::Refused(reason));
    }
    let Ok(target) = url::Url::parse(&redirect_uri) else {
        return Ok(Authorization::Refused("The redirect URI is not an absolute URL.".into()));
    };
    let issuer = issuer(base, provider, app);
    let state_param = parameters.get("state").filter(|s| s.len() <= LONGEST_ECHO);
    // form_post only to a web address: a form cannot be posted to a native app's scheme.
    let form_post = parameters.get("response_mode") == Some("form_post") && matches!(target.scheme(), "http" | "https");
    let deliver = |answer: &[(&str, &str)]| {
        if form_post {
            let fields = answer.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
            Authorization::FormPost { action: target.to_string(), fields }
        } else {
            Authorization::Redirect(with_query(&target, answer))
        }
    };
    let fail = |error: &str, description: &str| {
        let mut answer = vec![("error", error), ("error_description", description)];
        if let Some(value) = state_param {
            answer.push(("state", value));
        }
        answer.push(("iss", issuer.as_str()));
        Ok(deliver(&answer))
    };
    if let Some(name) = &parameters.repeated {
        return fail("invalid_request", &format!("The parameter {name} is given more than once."));
    }
    if parameters.get("state").is_some_and(|s| s.len() > LONGEST_ECHO) {
        return fail("invalid_request", "state is too long.");
    }
    if parameters.get("request").is_some() || parameters.get("request_uri").is_some() {
        return fail("request_not_supported", "Request objects are not supported.");
    }
    match parameters.get("response_type") {
        Some("code") => {}
        None => return fail("invalid_request", "response_type is missing."),
        Some(_) => return fail("unsupported_response_type", "Only the authorization code flow (response_type=code) is offered."),
    }
    match parameters.get("response_mode") {
        None | Some("query") => {}
        Some("form_post") if form_post => {}
        Some(_) => return fail("invalid_request", "Only response_mode=query, and form_post to a web address, are offered."),
    }
    if !provider.grant_types().contains(&GrantType::AuthorizationCode) {
        return fail("unauthorized_client", "This client may not use the authorization code grant.");
    }
    let challenge = parameters.get("code_challenge");
    match (challenge, parameters.get("code_challenge_method")) {
        (Some(_), Some("S256")) => {}
        (Some(_), None | Some("plain")) => return fail("invalid_request", "Only the S256 code challenge method is accepted."),
        (Some(_), Some(_)) => return fail("invalid_request", "Unknown code_challenge_method; use S256."),
        (None, Some(_)) => return fail("invalid_request", "code_challenge_method without code_challenge."),
        (None, None) if provider.client_type == ClientType::Public.as_str() => {
            return fail("invalid_request", "A public client must use PKCE (code_challenge with S256).");
        }
        // Without PKCE only an OpenID nonce protects against an injected code (RFC 9700 §2.1.1).
        (None, None)
            if !(parameters.get("nonce").is_some() && Scopes::parse(parameters.get("scope").unwrap_or_default()).has("openid")) =>
        {
            return fail("invalid_request", "Use PKCE (code_challenge with S256), or the openid scope with a nonce.");
        }
        (None, None) => {}
    }
    if challenge.is_some_and(|c| !pkce_shaped(c)) {
        return fail("invalid_request", "code_challenge must be 43 to 128 characters of A-Z, a-z, 0-9, -, ., _ and ~.");
    }
    let nonce = parameters.get("nonce");
    if nonce.is_some_and(|n| n.len() > LONGEST_ECHO) {
        return fail("invalid_request", "nonce is too long.");
    }
    let prompts: Vec<&str> = parameters.get("prompt").unwrap_or_default().split(' ').filter(|p| !p.is_empty()).collect();
    if prompts.contains(&"none") && prompts.len() > 1 {
        return fail("invalid_request", "prompt=none cannot be combined with other prompts.");
    }
    if declined {
        return fail("access_denied", "The user declined to authorize the application.");
    }
    let offer = ScopeOffer::of(&state.db, state.tenant, provider).await?;
    let scopes = Scopes::parse(parameters.get("scope").unwrap_or_default()).offered_by(&offer);

    let Some(current) = current else {
        if prompts.contains(&"none") {
            return fail("login_required", "The user is not signed in.");
        }
        return Ok(Authorization::SignIn { flow_slug: authentication_flow_slug(state, provider).await?, query: query.to_owned() });
    };
    let Some(session) = current.session.as_ref() else {
        return Ok(Authorization::Refused("Sign in through the browser to authorize an application.".into()));
    };
    // A sign-in older than the client accepts means signing in again, then this request once
    // more; `prompt=login` comes back as a sign-in within the last minute, so it cannot loop.
    let prompt_login = prompts.contains(&"login");
    let max_age = match parameters.get("max_age").map(str::parse::<i64>) {
        None => None,
        Some(Ok(seconds)) if seconds >= 0 => Some(seconds),
        Some(_) => return fail("invalid_request", "max_age must be a number of seconds."),
    };
    let age = (Utc::now() - session.created).num_seconds();
    if prompt_login || max_age.is_some_and(|limit| age > limit) {
        if prompts.contains(&"none") {
            return fail("login_required", "The client asks for a fresh sign-in without prompting.");
        }
        // The sign-in that comes back is seconds old: the client's max_age holds it unless it is
        // under a minute, and prompt=login becomes a minute, so coming back cannot loop.
        let fresh = max_age.map_or(FRESH_SIGN_IN_SECONDS, |limit| limit.max(FRESH_SIGN_IN_SECONDS));
        let again = parameters.without(&["prompt", "max_age"], ("max_age", &fresh.to_string()));
        let flow_slug = authentication_flow_slug(state, provider).await?;
        return Ok(Authorization::SignIn { flow_slug, query: again });
    }
    let flow = crate::flows::flow_service::flows_by_id(&state.db, state.tenant, &[provider.authorization_flow_id])
        .await?
        .remove(&provider.authorization_flow_id)
        .ok_or_else(|| Error::internal("a provider's authorization flow is missing"))?;
    if let Some(reason) = crate::flows::executor::requirement_unmet(&flow, Some(current)) {
        return Ok(Authorization::Refused(reason.into()));
    }
    let stages = crate::flows::executor::planned_stages(state, &flow.slug).await?;
    let ask_again = prompts.contains(&"consent");
    if ask_again && !stages.iter().any(|stage| stage.kind == CONSENT_KIND) {
        return fail("consent_required", "This application's authorization flow does not ask for consent.");
    }
    if !stages.is_empty() {
        let destination = format!("{AUTHORIZE_PATH}?{query}");
        if crate::flows::redirect::safe_next(&destination).is_none() {
            return fail(
                "invalid_request",
                "The request cannot pass through the authorization flow: it is longer than 2,000 characters or holds a backslash or control character.",
            );
        }
        let proven = match proof {
            Some(proof) => handoff::redeem(state, proof, flow.id, session.id, &destination).await?,
            None => false,
        };
        let handoff = authorization_handoff(app, &scopes, &offer, query, ask_again);
        let silent = !ask_again && passes_without_asking(state, &stages, current.user.id, &handoff).await?;
        if !proven && !silent {
            if prompts.contains(&"none") {
                let consent_only = stages.iter().all(|stage| stage.kind == CONSENT_KIND);
                return if consent_only {
                    fail("consent_required", "The user has not consented to this application.")
                } else {
                    fail("interaction_required", "The application's authorization flow needs the user.")
                };
            }
            return Ok(Authorization::Authorize { flow_slug: flow.slug, next: destination, handoff });
        }
    }

    let code_text = random_token(32);
    let now = Utc::now();
    let validity = DurationString::parse(&provider.access_code_validity).map(DurationString::to_chrono).unwrap_or(TimeDelta::minutes(1));
    let row = code::ActiveModel {
        id: Set(Uuid::new_v4()),
        tenant_id: Set(state.tenant.0),
        provider_id: Set(provider.id),
        user_id: Set(current.user.id),
        session_id: Set(Some(session.id)),
        code_digest: Set(state.secret.digest(CODE_PURPOSE, code_text.as_bytes())),
        redirect_uri: Set(redirect_uri.clone()),
        redirect_uri_given: Set(redirect_uri_given),
        scope: Set(scopes.as_text()),
        nonce: Set(nonce.map(str::to_owned)),
        code_challenge: Set(challenge.map(str::to_owned)),
        auth_time: Set(session.created),
        expires: Set(now + validity),
        used_at: Set(None),
        created: Set(now),
        number: Set(Some(super::issued::new_number())),
    };
    let txn = crate::db::begin_write(&state.db).await?;
    row.insert(&txn).await?;
    let event = EventRecord::new(Action::AuthorizeApplication)
        .by(&current.user)
        .from_client(client)
        .with("authorized_application", json!({"pk": app.id.to_string(), "name": app.name, "slug": app.slug}))
        .with("scopes", json!(scopes.as_text()));
    events::service::record(&txn, state, event).await?;
    txn.commit().await?;
    let mut answer = vec![("code", code_text.as_str())];
    if let Some(value) = state_param {
        answer.push(("state", value));
    }
    answer.push(("iss", issuer.as_str()));
    Ok(deliver(&answer))
}

/// The path of the authorization endpoint.
pub const AUTHORIZE_PATH: &str = "/application/o/authorize/";
/// Where the consent stage's "Deny" sends people: back to the client with `access_denied`.
pub const DECLINE_PATH: &str = "/application/o/authorize/decline/";
const CONSENT_KIND: &str = "consent";

/// What an authorization flow is told: the application, and the permissions its granted scopes
/// stand for.
fn authorization_handoff(app: &application::Model, scopes: &Scopes, offer: &ScopeOffer, query: &str, ask_again: bool) -> Handoff {
    use crate::flows::stages::consent::{APPLICATION, ASK_AGAIN, DECLINE, PERMISSIONS};
    // Scopes without a description are not asked about, as in authentik.
    let permissions: Vec<Value> =
        scopes.iter().filter_map(|scope| offer.description(scope).map(|name| json!({"id": scope, "name": name}))).collect();
    let mut facts = serde_json::Map::new();
    facts.insert(APPLICATION.into(), json!({"pk": app.id, "name": app.name, "slug": app.slug}));
    facts.insert(PERMISSIONS.into(), Value::Array(permissions));
    facts.insert(DECLINE.into(), json!(format!("{DECLINE_PATH}?{query}")));
    if ask_again {
        facts.insert(ASK_AGAIN.into(), json!(true));
    }
    Handoff::new(facts)
}

/// Whether every stage of an authorization flow would let `person` through without asking: all
/// consent stages whose remembered consent covers what is asked.
async fn passes_without_asking(
    state: &AppState,
    stages: &[crate::flows::run::PlannedStage],
    person: i64,
    handoff: &Handoff,
) -> crate::error::Result<bool> {
    for stage in stages {
        if stage.kind != CONSENT_KIND || !crate::flows::stages::consent::passes_without_asking(state, stage, person, handoff).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A refusal of the token endpoint, in RFC 6749 §5.2's words.
#[derive(Debug)]
pub enum OAuthError {
    InvalidRequest(String),
    /// The client could not be authenticated (answered with 401).
    InvalidClient,
    InvalidGrant(String),
    UnauthorizedClient(String),
    UnsupportedGrantType,
    InvalidScope(String),
    /// The device's user has not answered yet (RFC 8628 §3.5).
    AuthorizationPending,
    /// The device asks more often than its interval allows.
    SlowDown,
    /// The device code lapsed before anyone answered.
    ExpiredToken,
    /// The person denied the device.
    AccessDenied,
    /// Not the client's fault.
    Internal(Error),
}

impl From<Error> for OAuthError {
    fn from(error: Error) -> Self {
        OAuthError::Internal(error)
    }
}

impl From<sea_orm::DbErr> for OAuthError {
    fn from(error: sea_orm::DbErr) -> Self {
        OAuthError::Internal(error.into())
    }
}

impl OAuthError {
    /// The `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::AuthorizationPending => "authorization_pending",
            OAuthError::SlowDown => "slow_down",
            OAuthError::ExpiredToken => "expired_token",
            OAuthError::AccessDenied => "access_denied",
            OAuthError::Internal(_) => "server_error",
        }
    }

    /// The `error_description`.
    pub fn description(&self) -> String {
        match self {
            OAuthError::InvalidRequest(text)
            | OAuthError::InvalidGrant(text)
            | OAuthError::UnauthorizedClient(text)
            | OAuthError::InvalidScope(text) => text.clone(),
            OAuthError::InvalidClient => "Client authentication failed.".into(),
            OAuthError::UnsupportedGrantType => "This grant type is not offered.".into(),
            OAuthError::AuthorizationPending => "The user has not answered yet.".into(),
            OAuthError::SlowDown => "Poll less often: wait the interval between requests, plus five seconds.".into(),
            OAuthError::ExpiredToken => "The device code expired; start again.".into(),
            OAuthError::AccessDenied => "The user denied the request.".into(),
            OAuthError::Internal(_) => "The server could not answer; try again later.".into(),
        }
    }
}

/// What the token endpoint hands out.
#[derive(Debug, serde::Serialize)]
pub struct IssuedTokens {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

/// Who is asking at the token, introspection, revocation or device endpoint: a client with its
/// secret (HTTP basic or `client_secret` in the form), with a signed assertion
/// (`private_key_jwt`), or a public client naming itself. One way only.
pub(super) async fn authenticate_client(
    state: &AppState,
    base: &str,
    parameters: &Parameters,
    basic: Option<(String, String)>,
) -> Result<Arc<Client>, OAuthError> {
    if let Some(assertion) = parameters.get("client_assertion") {
        return authenticate_by_assertion(state, base, parameters, basic.is_some(), assertion).await;
    }
    if parameters.get("client_assertion_type").is_some() {
        return Err(OAuthError::InvalidRequest("client_assertion_type came without a client_assertion.".into()));
    }
    let (client_id, secret) = match (&basic, parameters.get("client_secret")) {
        (Some(_), Some(_)) => return Err(OAuthError::InvalidRequest("Use one way of client authentication, not two.".into())),
        (Some((id, secret)), None) => {
            if parameters.get("client_id").is_some_and(|given| given != id) {
                return Err(OAuthError::InvalidRequest("client_id differs from the authenticated client.".into()));
            }
            (id.as_str(), Some(secret.as_str()))
        }
        (None, secret) => (parameters.get("client_id").ok_or(OAuthError::InvalidClient)?, secret),
    };
    let client = client_by_id(state, client_id).await?.ok_or(OAuthError::InvalidClient)?;
    if client.provider.client_type == ClientType::Confidential.as_str() {
        let proven = secret.is_some_and(|secret| super::providers::client_secret_matches(&state.secret, &client.provider, secret));
        if !proven {
            return Err(OAuthError::InvalidClient);
        }
    }
    Ok(client)
}

/// [`authenticate_client`] with a `client_assertion` (RFC 7523 §2.2): its audience is this
/// server (the token endpoint, the endpoint called, or the provider's issuer).
async fn authenticate_by_assertion(
    state: &AppState,
    base: &str,
    parameters: &Parameters,
    with_basic: bool,
    assertion: &str,
) -> Result<Arc<Client>, OAuthError> {
    if with_basic || parameters.get("client_secret").is_some() {
        return Err(OAuthError::InvalidRequest("Use one way of client authentication, not two.".into()));
    }
    if parameters.get("client_assertion_type") != Some(super::assertions::ASSERTION_TYPE) {
        return Err(OAuthError::InvalidRequest(format!("client_assertion_type must be {}.", super::assertions::ASSERTION_TYPE)));
    }
    let claimed = super::assertions::claimed_client(assertion).ok_or(OAuthError::InvalidClient)?;
    if parameters.get("client_id").is_some_and(|given| given != claimed) {
        return Err(OAuthError::InvalidRequest("client_id differs from the client the assertion is from.".into()));
    }
    let client = client_by_id(state, &claimed).await?.ok_or(OAuthError::InvalidClient)?;
    if client.provider.client_type != ClientType::Confidential.as_str() {
        return Err(OAuthError::InvalidClient);
    }
    let endpoints = ["token/", "introspect/", "revoke/", "device/"].map(|path| format!("{base}/application/o/{path}"));
    let issuer = issuer(base, &client.provider, &client.app);
    let mut audiences: Vec<&str> = endpoints.iter().map(String::as_str).collect();
    audiences.push(&issuer);
    if !super::assertions::proves(state, &client.provider, assertion, &audiences).await? {
        return Err(OAuthError::InvalidClient);
    }
    Ok(client)
}

/// Answers a token request (`body` is its form body; `basic` the HTTP basic credentials).
pub async fn token(state: &AppState, base: &str, body: &str, basic: Option<(String, String)>) -> Result<IssuedTokens, OAuthError> {
    let parameters = Parameters::parse_once(body)?;
    let grant = parameters.get("grant_type").ok_or_else(|| OAuthError::InvalidRequest("grant_type is missing.".into()))?;
    let grant = match GrantType::parse(grant) {
        Some(grant @ (GrantType::AuthorizationCode | GrantType::RefreshToken | GrantType::ClientCredentials | GrantType::DeviceCode)) => {
            grant
        }
        _ => return Err(OAuthError::UnsupportedGrantType),
    };
    let client = authenticate_client(state, base, &parameters, basic).await?;
    let (provider, app) = (&client.provider, &client.app);
    if !provider.grant_types().contains(&grant) {
        return Err(OAuthError::UnauthorizedClient("This client may not use this grant type.".into()));
    }
    // The key is opened before any transaction: finding it may create the managed key.
    let key = super::cache::signing_key(state, provider).await?;
    let issuer = issuer(base, provider, app);
    let mint = Mint { state, issuer: &issuer, provider, signer: &key.signer };
    match grant {
        GrantType::AuthorizationCode => exchange_code(&mint, &parameters).await,
        GrantType::RefreshToken => refresh(&mint, &parameters).await,
        GrantType::DeviceCode => super::device::exchange(&mint, &parameters).await,
        _ => client_credentials(&mint, &parameters).await,
    }
}

/// What tokens of one provider are made with.
pub(super) struct Mint<'a> {
    pub(super) state: &'a AppState,
    pub(super) issuer: &'a str,
    pub(super) provider: &'a provider::Model,
    pub(super) signer: &'a Signer,
}

/// A token for the client itself (RFC 6749 §4.4): `sub` is the client id, no user is named, no
/// refresh or ID token is issued, and no user scope is granted.
async fn client_credentials(mint: &Mint<'_>, parameters: &Parameters) -> Result<IssuedTokens, OAuthError> {
    // Only a client that proved itself with a secret speaks for itself.
    if mint.provider.client_type != ClientType::Confidential.as_str() {
        return Err(OAuthError::UnauthorizedClient("A public client cannot use client_credentials.".into()));
    }
    let asked = Scopes::parse(parameters.get("scope").unwrap_or_default());
    // The offer is read only when scopes are asked for, which service clients rarely do.
    if !asked.is_empty() && !asked.offered_by(&ScopeOffer::of(&mint.state.db, mint.state.tenant, mint.provider).await?).is_empty() {
        return Err(OAuthError::InvalidScope("The client credentials grant speaks for no user: ask for no user scope.".into()));
    }
    let now = Utc::now();
    let access_validity = validity(&mint.provider.access_token_validity, TimeDelta::hours(1));
    let expires = now + access_validity;
    let id = Uuid::new_v4();
    let claims = json!({
        "iss": mint.issuer,
        "sub": mint.provider.client_id,
        "aud": mint.provider.client_id,
        "azp": mint.provider.client_id,
        "client_id": mint.provider.client_id,
        "exp": expires.timestamp(),
        "iat": now.timestamp(),
        "jti": id.to_string(),
        "scope": "",
    });
    let access_token = mint.signer.sign(&claims, "at+jwt")?;
    let from = Issue { family: id, session_id: None, auth_time: now, nonce: None };
    let to =
        Recipient { state: mint.state, issuer: mint.issuer, provider: mint.provider, user: None, scopes: &Scopes::default(), from: &from };
    // Written with the other grants of the moment in one statement: services ask in bursts.
    mint.state.issued_tokens.insert(token_row(&to, ACCESS, &access_token, expires, id)).await?;
    Ok(IssuedTokens {
        access_token,
        token_type: "Bearer",
        expires_in: access_validity.num_seconds(),
        scope: String::new(),
        refresh_token: None,
        id_token: None,
    })
}

/// Revokes every token of `family` (after a replay) on the caller's transaction, which then
/// commits with [`super::cache::commit_change`]: cached answers about them go.
async fn revoke_family(state: &AppState, txn: &DatabaseTransaction, family: Uuid) -> Result<(), OAuthError> {
    token::Entity::update_many()
        .col_expr(token::Column::Revoked, Expr::value(true))
        .filter(token::Column::FamilyId.eq(family))
        .exec(txn)
        .await?;
    super::cache::announce(state, txn).await?;
    Ok(())
}

pub(super) async fn active_user(db: &impl ConnectionTrait, state: &AppState, id: i64) -> Result<user::Model, OAuthError> {
    let found = user::Entity::find_by_id(id).filter(user::Column::TenantId.eq(state.tenant.0)).one(db).await?;
    found.filter(|u| u.is_active).ok_or_else(|| OAuthError::InvalidGrant("The user cannot sign in.".into()))
}

async fn exchange_code(mint: &Mint<'_>, parameters: &Parameters) -> Result<IssuedTokens, OAuthError> {
    let (state, provider) = (mint.state, mint.provider);
    let given = parameters.get("code").ok_or_else(|| OAuthError::InvalidRequest("code is missing.".into()))?;
    let digest = state.secret.digest(CODE_PURPOSE, given.as_bytes());
    let invalid = || OAuthError::InvalidGrant("The code is invalid, expired or already used.".into());
    let txn = crate::db::begin_write(&state.db).await?;
    let found = code::Entity::find()
        .filter(code::Column::TenantId.eq(state.tenant.0))
        .filter(code::Column::CodeDigest.eq(&digest))
        .one(&txn)
        .await?;
    let Some(grant) = found.filter(|c| c.provider_id == provider.id) else { return Err(invalid()) };
    let now = Utc::now();
    // Taken once: the update that marks it used is what decides, so two requests racing with one
    // code cannot both win.
    let taken = code::Entity::update_many()
        .col_expr(code::Column::UsedAt, Expr::value(now))
        .filter(code::Column::Id.eq(grant.id))
        .filter(code::Column::UsedAt.is_null())
        .exec(&txn)
        .await?;
    if taken.rows_affected == 0 {
        // A replayed code may be in an attacker's hands: what it gave is withdrawn (RFC 6749
        // §4.1.2).
        revoke_family(mint.state, &txn, grant.id).await?;
        super::cache::commit_change(mint.state, txn).await?;
        return Err(OAuthError::InvalidGrant("The code was already used; the tokens issued from it are revoked.".into()));
    }
    if grant.expires <= now {
        txn.commit().await?;
        return Err(invalid());
    }
    let redirect_uri = parameters.get("redirect_uri");
    if (grant.redirect_uri_given || redirect_uri.is_some()) && redirect_uri != Some(grant.redirect_uri.as_str()) {
        txn.commit().await?;
        return Err(OAuthError::InvalidGrant("redirect_uri differs from the authorization request's.".into()));
    }
    let verifier = parameters.get("code_verifier");
    let pkce_passed = match (&grant.code_challenge, verifier) {
        (Some(challenge), Some(verifier)) => {
            pkce_shaped(verifier)
                && constant_time_eq(URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes())).as_bytes(), challenge.as_bytes())
        }
        // A client that became public since cannot prove it is the one the code was for.
        (None, None) => provider.client_type != ClientType::Public.as_str(),
        // A verifier for a code that had no challenge: a downgrade (RFC 9700 §2.1.1).
        _ => false,
    };
    if !pkce_passed {
        txn.commit().await?;
        return Err(OAuthError::InvalidGrant("The PKCE code verifier does not match the challenge.".into()));
    }
    let user = active_user(&txn, state, grant.user_id).await?;
    let scopes = Scopes::parse(&grant.scope);
    let session = Issue { family: grant.id, session_id: grant.session_id, auth_time: grant.auth_time, nonce: grant.nonce.as_deref() };
    let unsigned = issue(&txn, mint, &user, &scopes, session).await?;
    txn.commit().await?;
    unsigned.signed(mint).await
}

async fn refresh(mint: &Mint<'_>, parameters: &Parameters) -> Result<IssuedTokens, OAuthError> {
    let (state, provider) = (mint.state, mint.provider);
    let given = parameters.get("refresh_token").ok_or_else(|| OAuthError::InvalidRequest("refresh_token is missing.".into()))?;
    let invalid = || OAuthError::InvalidGrant("The refresh token is invalid, expired or revoked.".into());
    let txn = crate::db::begin_write(&state.db).await?;
    let found = token_by_text(&txn, state, given).await?;
    let Some(old) = found.filter(|t| t.kind == REFRESH && t.provider_id == provider.id) else { return Err(invalid()) };
    let taken = token::Entity::update_many()
        .col_expr(token::Column::Revoked, Expr::value(true))
        .filter(token::Column::Id.eq(old.id))
        .filter(token::Column::Revoked.eq(false))
        .exec(&txn)
        .await?;
    if taken.rows_affected == 0 {
        // A used refresh token came back: someone holds a copy. The whole family goes.
        revoke_family(state, &txn, old.family_id).await?;
        super::cache::commit_change(state, txn).await?;
        return Err(OAuthError::InvalidGrant("The refresh token was already used; every token issued with it is revoked.".into()));
    }
    if old.expires <= Utc::now() || !session_live(&txn, old.session_id).await? {
        txn.commit().await?;
        return Err(invalid());
    }
    // What the provider stopped offering since is not granted again.
    let granted = Scopes::parse(&old.scope).offered_by(&ScopeOffer::of(&txn, state.tenant, provider).await?);
    let scopes = match parameters.get("scope") {
        Some(asked) => {
            let asked = Scopes::parse(asked);
            if !asked.within(&granted) {
                return Err(OAuthError::InvalidScope("A refresh may not ask for more than was granted.".into()));
            }
            asked
        }
        None => granted,
    };
    let Some(user_id) = old.user_id else { return Err(invalid()) };
    let user = active_user(&txn, state, user_id).await?;
    let session = Issue { family: old.family_id, session_id: old.session_id, auth_time: old.auth_time, nonce: None };
    let unsigned = issue(&txn, mint, &user, &scopes, session).await?;
    txn.commit().await?;
    unsigned.signed(mint).await
}

/// Where issued tokens come from.
pub(super) struct Issue<'a> {
    pub(super) family: Uuid,
    pub(super) session_id: Option<Uuid>,
    pub(super) auth_time: DateTime<Utc>,
    pub(super) nonce: Option<&'a str>,
}

fn validity(text: &str, fallback: TimeDelta) -> TimeDelta {
    DurationString::parse(text).map(DurationString::to_chrono).unwrap_or(fallback)
}

/// The left half of the token's hash, as `at_hash` carries it (OIDC Core §3.1.3.6).
fn access_token_hash(algorithm: jsonwebtoken::Algorithm, access_token: &str) -> String {
    let digest: Vec<u8> = match algorithm {
        jsonwebtoken::Algorithm::ES384 => sha2::Sha384::digest(access_token.as_bytes()).to_vec(),
        jsonwebtoken::Algorithm::EdDSA => sha2::Sha512::digest(access_token.as_bytes()).to_vec(),
        _ => sha2::Sha256::digest(access_token.as_bytes()).to_vec(),
    };
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

/// Who tokens are issued to, for whom, and from what.
struct Recipient<'a> {
    state: &'a AppState,
    issuer: &'a str,
    provider: &'a provider::Model,
    /// `None` for a token the client holds for itself.
    user: Option<&'a user::Model>,
    scopes: &'a Scopes,
    from: &'a Issue<'a>,
}

async fn store_token(
    db: &impl ConnectionTrait,
    to: &Recipient<'_>,
    kind: &str,
    text: &str,
    expires: DateTime<Utc>,
    id: Uuid,
) -> Result<(), OAuthError> {
    token_row(to, kind, text, expires, id).insert(db).await?;
    Ok(())
}

/// The row of a token `text` of `kind`, kept as its keyed digest.
fn token_row(to: &Recipient<'_>, kind: &str, text: &str, expires: DateTime<Utc>, id: Uuid) -> token::ActiveModel {
    token::ActiveModel {
        id: Set(id),
        tenant_id: Set(to.state.tenant.0),
        provider_id: Set(to.provider.id),
        user_id: Set(to.user.map(|u| u.id)),
        kind: Set(kind.to_owned()),
        token_digest: Set(to.state.secret.digest(TOKEN_PURPOSE, text.as_bytes())),
        family_id: Set(to.from.family),
        scope: Set(to.scopes.as_text()),
        session_id: Set(to.from.session_id),
        auth_time: Set(to.from.auth_time),
        expires: Set(expires),
        revoked: Set(false),
        created: Set(Utc::now()),
        issuer: Set(Some(to.issuer.to_owned())),
        number: Set(Some(super::issued::new_number())),
    }
}

pub(super) async fn issue(
    db: &impl ConnectionTrait,
    mint: &Mint<'_>,
    user: &user::Model,
    scopes: &Scopes,
    from: Issue<'_>,
) -> Result<Unsigned, OAuthError> {
    let (state, issuer, provider, signer) = (mint.state, mint.issuer, mint.provider, mint.signer);
    let now = Utc::now();
    let access_validity = validity(&provider.access_token_validity, TimeDelta::hours(1));
    let expires = now + access_validity;
    let subject = claims::subject(state, provider, user);
    let access_id = Uuid::new_v4();
    let access_claims = json!({
        "iss": issuer,
        "sub": subject,
        "aud": provider.client_id,
        "azp": provider.client_id,
        "client_id": provider.client_id,
        "exp": expires.timestamp(),
        "iat": now.timestamp(),
        "auth_time": from.auth_time.timestamp(),
        "jti": access_id.to_string(),
        "scope": scopes.as_text(),
    });
    let access_token = signer.sign(&access_claims, "at+jwt")?;
    let to = Recipient { state, issuer, provider, user: Some(user), scopes, from: &from };
    store_token(db, &to, ACCESS, &access_token, expires, access_id).await?;
    if let Some(session_id) = from.session_id {
        super::backchannel::remember_grant(db, state, provider, user, session_id, from.family, issuer).await?;
    }

    let refresh_token = if scopes.has("offline_access") && provider.grant_types().contains(&GrantType::RefreshToken) {
        let text = random_token(48);
        let refresh_expires = now + validity(&provider.refresh_token_validity, TimeDelta::days(30));
        store_token(db, &to, REFRESH, &text, refresh_expires, Uuid::new_v4()).await?;
        Some(text)
    } else {
        None
    };

    // The ID token is signed once the transaction is committed: its claims come from scope
    // mappings, which are not evaluated while the write is held.
    let id_token = if scopes.has("openid") {
        let fixed = json!({
            "iss": issuer,
            "sub": subject,
            "aud": provider.client_id,
            "azp": provider.client_id,
            "exp": expires.timestamp(),
            "iat": now.timestamp(),
            "auth_time": from.auth_time.timestamp(),
            "at_hash": access_token_hash(signer.algorithm(), &access_token),
        });
        let Value::Object(mut fixed) = fixed else { return Err(Error::internal("ID token claims").into()) };
        if let Some(nonce) = from.nonce {
            fixed.insert("nonce".into(), json!(nonce));
        }
        if from.session_id.is_some() {
            fixed.insert("sid".into(), json!(super::backchannel::session_claim(state, from.family)));
        }
        Some(IdTokenToSign { fixed, user: user.clone(), scopes: scopes.clone() })
    } else {
        None
    };
    let tokens = IssuedTokens {
        access_token,
        token_type: "Bearer",
        expires_in: access_validity.num_seconds(),
        scope: scopes.as_text(),
        refresh_token,
        id_token: None,
    };
    Ok(Unsigned { tokens, id_token })
}

/// An ID token's claims before the scope mappings' are added.
struct IdTokenToSign {
    fixed: serde_json::Map<String, Value>,
    user: user::Model,
    scopes: Scopes,
}

/// Tokens stored by [`issue`], the ID token still to be signed with [`Unsigned::signed`] once
/// their transaction is committed.
pub(super) struct Unsigned {
    tokens: IssuedTokens,
    id_token: Option<IdTokenToSign>,
}

impl Unsigned {
    /// The tokens with the ID token signed, its claims those of the scope mappings (when the
    /// provider includes them) under the fixed ones.
    pub(super) async fn signed(self, mint: &Mint<'_>) -> Result<IssuedTokens, OAuthError> {
        let mut tokens = self.tokens;
        if let Some(to_sign) = self.id_token {
            let mut claims = if mint.provider.include_claims_in_id_token {
                claims::user_claims(&mint.state.db, mint.state, mint.provider, &to_sign.user, &to_sign.scopes).await?
            } else {
                serde_json::Map::new()
            };
            claims.extend(to_sign.fixed);
            tokens.id_token = Some(mint.signer.sign(&Value::Object(claims), "JWT")?);
        }
        Ok(tokens)
    }
}

/// Why a bearer token was not accepted at the userinfo endpoint.
#[derive(Debug)]
pub enum BearerError {
    /// No token came with the request.
    Missing,
    /// The token is unknown, expired or revoked, or its user cannot sign in.
    Invalid,
    Internal(Error),
}

impl From<sea_orm::DbErr> for BearerError {
    fn from(error: sea_orm::DbErr) -> Self {
        BearerError::Internal(error.into())
    }
}

impl From<Error> for BearerError {
    fn from(error: Error) -> Self {
        BearerError::Internal(error)
    }
}

/// The claims the access token `bearer` gives about its user (OIDC Core §5.3).
pub async fn userinfo(state: &AppState, bearer: Option<&str>) -> Result<Value, BearerError> {
    let bearer = bearer.ok_or(BearerError::Missing)?;
    let digest = state.secret.digest(TOKEN_PURPOSE, bearer.as_bytes());
    let access = super::cache::live_access_token(state, &digest).await?.ok_or(BearerError::Invalid)?;
    let user = access.user.as_ref().ok_or(BearerError::Invalid)?;
    let provider = provider::Entity::find_by_id(access.token.provider_id).one(&state.db).await?.ok_or(BearerError::Invalid)?;
    let scopes = Scopes::parse(&access.token.scope);
    Ok(Value::Object(claims::user_claims(&state.db, state, &provider, user, &scopes).await?))
}

/// Whether the session a token was given through, if any, is still live: tokens end with it, and
/// an expired session may not have been purged yet.
pub(super) async fn session_live(db: &impl ConnectionTrait, session_id: Option<Uuid>) -> Result<bool, sea_orm::DbErr> {
    let Some(id) = session_id else { return Ok(true) };
    Ok(super::cache::session_end(db, id).await?.is_some_and(|end| end > Utc::now()))
}

/// The token of the tenant whose text is `text`, found by its keyed digest, whatever its kind.
async fn token_by_text(db: &impl ConnectionTrait, state: &AppState, text: &str) -> Result<Option<token::Model>, sea_orm::DbErr> {
    let digest = state.secret.digest(TOKEN_PURPOSE, text.as_bytes());
    token::Entity::find().filter(token::Column::TenantId.eq(state.tenant.0)).filter(token::Column::TokenDigest.eq(&digest)).one(db).await
}

/// A token of `provider` found by its text, whatever its kind.
async fn own_token(state: &AppState, provider: &provider::Model, text: &str) -> Result<Option<token::Model>, OAuthError> {
    Ok(token_by_text(&state.db, state, text).await?.filter(|t| t.provider_id == provider.id))
}

/// Answers an introspection request (RFC 7662) of an authenticated confidential client: what its
/// own live token says, or `{"active": false}` for anything else, another client's tokens
/// included.
pub async fn introspect(state: &AppState, base: &str, body: &str, basic: Option<(String, String)>) -> Result<Introspection, OAuthError> {
    let parameters = Parameters::parse_once(body)?;
    let client = authenticate_client(state, base, &parameters, basic).await?;
    let (provider, app) = (&client.provider, &client.app);
    if provider.client_type != ClientType::Confidential.as_str() {
        return Err(OAuthError::InvalidClient);
    }
    let text = parameters.get("token").ok_or_else(|| OAuthError::InvalidRequest("token is missing.".into()))?;
    let inactive = || Ok(Introspection::default());
    let digest = state.secret.digest(TOKEN_PURPOSE, text.as_bytes());
    // Access tokens, which resource servers ask about on every call, come from memory.
    if let Some(live) = super::cache::live_access_token(state, &digest).await? {
        if live.token.provider_id != provider.id {
            return inactive();
        }
        return Ok(introspection(state, base, provider, app, &live.token, live.user.as_ref()));
    }
    let Some(found) = own_token(state, provider, text).await?.filter(|t| t.kind == REFRESH && !t.revoked && t.expires > Utc::now()) else {
        return inactive();
    };
    if !session_live(&state.db, found.session_id).await? {
        return inactive();
    }
    let user = match found.user_id {
        Some(id) => match user::Entity::find_by_id(id).one(&state.db).await?.filter(|u| u.is_active) {
            Some(user) => Some(user),
            None => return inactive(),
        },
        None => None,
    };
    Ok(introspection(state, base, provider, app, &found, user.as_ref()))
}

/// An introspection answer (RFC 7662 §2.2): `active` alone for anything but a live token of
/// the asking client.
#[derive(Debug, Default, serde::Serialize)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// RFC 6749's token type: access tokens are bearer tokens; refresh tokens have none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// What introspection says of the live token `found` of `provider`, held for `user` (`None`:
/// the client's own).
fn introspection(
    state: &AppState,
    base: &str,
    provider: &provider::Model,
    app: &application::Model,
    found: &token::Model,
    user: Option<&user::Model>,
) -> Introspection {
    let access = found.kind == ACCESS;
    Introspection {
        active: true,
        scope: Some(found.scope.clone()),
        client_id: Some(provider.client_id.clone()),
        username: user.map(|u| u.username.clone()),
        token_type: access.then_some("Bearer"),
        exp: Some(found.expires.timestamp()),
        iat: Some(found.created.timestamp()),
        sub: Some(match user {
            Some(user) => claims::subject(state, provider, user),
            None => provider.client_id.clone(),
        }),
        aud: Some(provider.client_id.clone()),
        iss: Some(issuer(base, provider, app)),
        jti: access.then(|| found.id.to_string()),
    }
}

/// Answers a revocation request (RFC 7009): the client's own token is revoked, a refresh token
/// with every token issued alongside it; an unknown token or another client's is left alone and
/// answered the same, so the answer tells nothing.
pub async fn revoke(state: &AppState, base: &str, body: &str, basic: Option<(String, String)>) -> Result<(), OAuthError> {
    let parameters = Parameters::parse_once(body)?;
    let client = authenticate_client(state, base, &parameters, basic).await?;
    let provider = &client.provider;
    let text = parameters.get("token").ok_or_else(|| OAuthError::InvalidRequest("token is missing.".into()))?;
    let Some(found) = own_token(state, provider, text).await? else { return Ok(()) };
    let txn = crate::db::begin_write(&state.db).await?;
    if found.kind == REFRESH {
        revoke_family(state, &txn, found.family_id).await?;
    } else {
        token::Entity::update_many()
            .col_expr(token::Column::Revoked, Expr::value(true))
            .filter(token::Column::Id.eq(found.id))
            .exec(&txn)
            .await?;
    }
    super::cache::commit_change(state, txn).await?;
    Ok(())
}

/// Deletes codes and tokens past their expiry; returns how many.
pub async fn purge_expired(db: &impl ConnectionTrait) -> crate::error::Result<u64> {
    let now = Utc::now();
    let codes = code::Entity::delete_many().filter(code::Column::Expires.lt(now)).exec(db).await?.rows_affected;
    let tokens = token::Entity::delete_many().filter(token::Column::Expires.lt(now)).exec(db).await?.rows_affected;
    // Device codes stay an hour past their time, so a device still polling hears expired_token.
    let devices = super::entities::device_code::Entity::delete_many()
        .filter(super::entities::device_code::Column::Expires.lt(now - TimeDelta::hours(1)))
        .exec(db)
        .await?
        .rows_affected;
    Ok(codes + tokens + devices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_noticed_and_empty_ones_ignored() {
        let parameters = Parameters::parse("client_id=a&scope=openid&state=&client_id=b");
        assert_eq!(parameters.get("client_id"), Some("a"));
        assert_eq!(parameters.get("state"), None);
        assert_eq!(parameters.repeated.as_deref(), Some("client_id"));
    }

    #[test]
    fn pkce_values_have_rfc_7636_shape() {
        assert!(pkce_shaped(&"a".repeat(43)));
        assert!(!pkce_shaped(&"a".repeat(42)));
        assert!(!pkce_shaped(&"a".repeat(129)));
        assert!(!pkce_shaped(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn the_access_token_hash_is_the_left_half_of_the_digest() {
        // SHA-256("abc") begins with these 16 bytes (FIPS 180-2's example).
        let expected = URL_SAFE_NO_PAD.encode(hex::decode("ba7816bf8f01cfea414140de5dae2223").unwrap());
        assert_eq!(access_token_hash(jsonwebtoken::Algorithm::ES256, "abc"), expected);
        assert_eq!(access_token_hash(jsonwebtoken::Algorithm::EdDSA, "abc").len(), URL_SAFE_NO_PAD.encode([0u8; 32]).len());
    }
}
