//! What a provider publishes for relying parties: its OpenID Connect discovery document and the
//! keys its tokens are signed with.

use serde_json::{Value, json};

use super::entities::provider;
use crate::crypto::entities::key_pair;
use crate::error::{Error, Result};
use crate::state::AppState;

/// The pair that signs the tokens of `provider`: its own signing key, or the server's managed
/// key when it has none.
pub async fn signing_pair(state: &AppState, provider: &provider::Model) -> Result<key_pair::Model> {
    match provider.signing_key_id {
        Some(id) => crate::crypto::service::pair_by_id(&state.db, state.tenant, id)
            .await?
            .ok_or_else(|| Error::internal("a provider's signing key is missing")),
        None => crate::crypto::service::ensure_managed_jwt_key(state, state.tenant).await,
    }
}

/// The keys tokens of `provider` verify against: its own signing key, or the managed key and,
/// after a rotation, the one it replaced (what that one signed verifies until it expires).
pub async fn published_pairs(state: &AppState, provider: &provider::Model) -> Result<Vec<key_pair::Model>> {
    if provider.signing_key_id.is_some() {
        return Ok(vec![signing_pair(state, provider).await?]);
    }
    let (active, previous) = crate::crypto::service::managed_jwt_keys(state, state.tenant).await?;
    Ok(std::iter::once(active).chain(previous).collect())
}

/// The JSON Web Key Set of the application `slug`'s provider (RFC 7517 §5), the signing key
/// first; 404 when the application does not exist or has no provider.
pub async fn key_set(state: &AppState, slug: &str) -> Result<Value> {
    let (_, provider) = super::applications::with_provider(&state.db, state.tenant, slug).await?.ok_or(Error::NotFound)?;
    let mut keys = Vec::new();
    for pair in published_pairs(state, &provider).await? {
        keys.extend(crate::crypto::jwt::public_jwk(&pair)?);
    }
    Ok(json!({ "keys": keys }))
}

/// The OpenID Provider Metadata of the application `slug`'s provider (OpenID Connect Discovery
/// §3), naming only what is offered; `base` is this server's address as the caller reached it.
pub async fn configuration(state: &AppState, base: &str, slug: &str) -> Result<Value> {
    let (app, provider) = super::applications::with_provider(&state.db, state.tenant, slug).await?.ok_or(Error::NotFound)?;
    let pair = signing_pair(state, &provider).await?;
    let algorithm = crate::crypto::jwt::algorithm_of(&pair)?.ok_or_else(|| Error::internal("a provider's signing key cannot sign"))?;
    let grants: Vec<&str> = provider.grant_types().into_iter().map(|g| g.as_str()).collect();
    let offer = super::scopes::ScopeOffer::of(&state.db, state.tenant, &provider).await?;
    let public = provider.client_type == super::model::ClientType::Public.as_str();
    let auth_methods: &[&str] = match (public, provider.client_keys().is_empty()) {
        (true, _) => &["none"],
        (false, true) => &["client_secret_basic", "client_secret_post"],
        (false, false) => &["client_secret_basic", "client_secret_post", "private_key_jwt"],
    };
    let mut document = json!({
        "issuer": super::grants::issuer(base, &provider, &app),
        "authorization_endpoint": format!("{base}/application/o/authorize/"),
        "token_endpoint": format!("{base}/application/o/token/"),
        "userinfo_endpoint": format!("{base}/application/o/userinfo/"),
        "introspection_endpoint": format!("{base}/application/o/introspect/"),
        "revocation_endpoint": format!("{base}/application/o/revoke/"),
        "end_session_endpoint": format!("{base}/application/o/{}/end-session/", app.slug),
        "jwks_uri": format!("{base}/application/o/{}/jwks/", app.slug),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": grants,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [crate::crypto::jwt::algorithm_name(algorithm)],
        "scopes_supported": offer.scope_names(),
        "claims_supported": super::claims::SUPPORTED_CLAIMS,
        "token_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": if public { &["client_secret_basic", "client_secret_post"] } else { auth_methods },
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "claims_parameter_supported": false,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
    });
    if !provider.client_keys().is_empty() {
        let algorithms = ["RS256", "ES256", "ES384", "EdDSA"];
        document["token_endpoint_auth_signing_alg_values_supported"] = json!(algorithms);
        document["introspection_endpoint_auth_signing_alg_values_supported"] = json!(algorithms);
        document["revocation_endpoint_auth_signing_alg_values_supported"] = json!(algorithms);
    }
    if provider.grant_types().contains(&super::model::GrantType::DeviceCode) {
        document["device_authorization_endpoint"] = json!(format!("{base}{}", super::device::DEVICE_PATH));
    }
    Ok(document)
}
