//! Signing out from an application (OpenID Connect RP-Initiated Logout 1.0): the application
//! sends the person to its provider's end-session endpoint, they sign out of Gatehouse through
//! the provider's invalidation flow, and they are sent back only to an address the provider
//! registered for that.

use super::grants::{Parameters, issuer};
use super::model::RedirectUriType;
use crate::error::{Error, Result};
use crate::state::AppState;

/// What the end-session endpoint does with a request.
#[derive(Debug)]
pub enum EndSession {
    /// Sign out through the flow `flow_slug`, then go on to `then`, a path on this server.
    SignOut { flow_slug: String, then: String },
    /// The request cannot be trusted: say why on a page and send the browser nowhere.
    Refused(String),
}

/// The path the signed-out person passes through on the way back to `slug`'s application.
fn return_path(slug: &str) -> String {
    format!("/application/o/{slug}/end-session/return/")
}

/// Whether `uri` is registered as a place `provider` sends people after signing out.
fn registered_for_logout(provider: &super::entities::provider::Model, uri: &str) -> bool {
    provider.redirect_uris().iter().any(|r| r.redirect_uri_type == Some(RedirectUriType::Logout) && r.accepts(uri))
        && super::model::check_requested_redirect(uri).is_ok()
}

/// Answers an end-session request to the application `slug`'s provider (`query` is its query
/// string or form body).
pub async fn end_session(state: &AppState, base: &str, slug: &str, query: &str) -> Result<EndSession> {
    let (app, provider) = super::applications::with_provider(&state.db, state.tenant, slug).await?.ok_or(Error::NotFound)?;
    let parameters = Parameters::parse(query);
    if parameters.repeated.is_some() {
        return Ok(EndSession::Refused("A parameter is given more than once.".into()));
    }
    let mut client_known = false;
    if let Some(hint) = parameters.get("id_token_hint") {
        // An ID token this provider issued, expired or not (people sign out of old sessions),
        // under any key it publishes; never an access token or a logout token, which the same
        // key signs for the same audience (their `typ` says so, and a logout token has events).
        let typed_otherwise =
            jsonwebtoken::decode_header(hint).is_ok_and(|header| header.typ.as_deref().is_some_and(|typ| !typ.eq_ignore_ascii_case("JWT")));
        let issuer = issuer(base, &provider, &app);
        let mut issued_here = false;
        for pair in super::discovery::published_pairs(state, &provider).await? {
            if let Some(claims) = crate::crypto::jwt::verify(&pair, hint, &[provider.client_id.as_str()], &issuer, true)? {
                issued_here = claims.get("events").is_none();
                break;
            }
        }
        if typed_otherwise || !issued_here {
            return Ok(EndSession::Refused("The id_token_hint was not issued by this application's provider.".into()));
        }
        client_known = true;
    }
    if let Some(client_id) = parameters.get("client_id") {
        if client_id != provider.client_id {
            return Ok(EndSession::Refused("The client_id is not this application's.".into()));
        }
        client_known = true;
    }
    let then = match parameters.get("post_logout_redirect_uri") {
        None => "/".to_owned(),
        Some(_) if !client_known => {
            return Ok(EndSession::Refused(
                "A post_logout_redirect_uri needs an id_token_hint or client_id naming the application.".into(),
            ));
        }
        Some(uri) if !registered_for_logout(&provider, uri) => {
            return Ok(EndSession::Refused("The post_logout_redirect_uri is not registered for this application.".into()));
        }
        Some(uri) => {
            let mut onward = form_urlencoded::Serializer::new(String::new());
            onward.append_pair("to", uri);
            if let Some(value) = parameters.get("state") {
                onward.append_pair("state", value);
            }
            format!("{}?{}", return_path(slug), onward.finish())
        }
    };
    let flow = crate::flows::flow_service::flows_by_id(&state.db, state.tenant, &[provider.invalidation_flow_id])
        .await?
        .remove(&provider.invalidation_flow_id)
        .ok_or_else(|| Error::internal("a provider's invalidation flow is missing"))?;
    Ok(EndSession::SignOut { flow_slug: flow.slug, then })
}

/// Where a person who signed out goes back to: the registered address in `query` with the
/// application's `state`, checked again (the query came through the browser).
pub async fn return_address(state: &AppState, slug: &str, query: &str) -> Result<std::result::Result<String, String>> {
    let (_, provider) = super::applications::with_provider(&state.db, state.tenant, slug).await?.ok_or(Error::NotFound)?;
    let parameters = Parameters::parse(query);
    let Some(to) = parameters.get("to").filter(|to| registered_for_logout(&provider, to)) else {
        return Ok(Err("This address is not registered for this application.".into()));
    };
    let Ok(mut target) = url::Url::parse(to) else { return Ok(Err("This address is not registered for this application.".into())) };
    if let Some(value) = parameters.get("state") {
        target.query_pairs_mut().append_pair("state", value);
    }
    Ok(Ok(target.into()))
}
