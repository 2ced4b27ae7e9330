//! What a provider publishes for relying parties: the keys its tokens are signed with.

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

/// The JSON Web Key Set of the application `slug`'s provider (RFC 7517 §5); 404 when the
/// application does not exist or has no provider.
pub async fn key_set(state: &AppState, slug: &str) -> Result<Value> {
    let (_, provider) = super::applications::with_provider(&state.db, state.tenant, slug).await?.ok_or(Error::NotFound)?;
    let pair = signing_pair(state, &provider).await?;
    let keys: Vec<Value> = crate::crypto::jwt::public_jwk(&pair)?.into_iter().collect();
    Ok(json!({ "keys": keys }))
}
