//! Device authentication tokens (authentik's interactive authentication): an agent asks for one
//! with its device key and opens the address it gets in a browser window that sends the SHA-256
//! of that key in `X-Authentik-Platform-Auth-DTH` with every request. The person signs in, the
//! device's bindings must admit them, the connector's authorization flow (if it has one) runs,
//! and the window is sent to `goauthentik.io://platform/finished?ak-auth-ia-token=<JWT>`: a token
//! for that person on that device, signed with the server's managed key, good for the
//! connector's `auth_session_duration`. Each request is redeemed once.

use chrono::{DateTime, Utc};
use gatehouse_types::DurationString;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Set};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::devices::AgentCaller;
use super::entities::{authentication_token, connector, device};
use crate::credentials::cache::AuthContext;
use crate::error::{Error, Result};
use crate::events::client::ClientInfo;
use crate::events::{self, Action, EventRecord};
use crate::flows::handoff::{self, Handoff};
use crate::secret::constant_time_eq;
use crate::state::AppState;
use crate::tenants::TenantId;

/// Where the agent's browser window goes for a request `id`.
pub fn path_of(id: Uuid) -> String {
    format!("/endpoints/agent/authenticate/{id}/")
}

/// The issuer of device authentication tokens, as authentik's agents expect it.
pub const ISSUER: &str = "goauthentik.io/platform";
/// Where the browser window is sent when done; the agent watches for this address.
pub const FINISHED: &str = "goauthentik.io://platform/finished";
/// The query parameter the token travels in.
pub const TOKEN_PARAMETER: &str = "ak-auth-ia-token";
/// The handoff fact naming the device the flow runs for.
pub const DEVICE_FACT: &str = "device";

/// The SHA-256 of a device key in hex: what the agent's browser window sends.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// What is stored of the hash a window must send: a keyed digest, so that reading the database
/// is not enough to finish someone's pending request.
fn stored_hash(state: &AppState, hash: &str) -> String {
    state.secret.digest(WINDOW_HASH_PURPOSE, hash.as_bytes())
}

const WINDOW_HASH_PURPOSE: &str = "device-authentication-window";

/// Starts a device authentication for `caller`, which called with `key`: the request's id,
/// valid for `tokens.default_duration` (authentik's tenant default).
pub async fn begin(state: &AppState, caller: &AgentCaller, key: &str) -> Result<Uuid> {
    let now = Utc::now();
    let row = authentication_token::ActiveModel {
        id: Set(Uuid::new_v4()),
        tenant_id: Set(state.tenant.0),
        device_id: Set(caller.device.id),
        device_token_id: Set(caller.token_id),
        connector_id: Set(caller.connector.id),
        key_hash: Set(stored_hash(state, &key_hash(key))),
        user_id: Set(None),
        expires: Set(now + state.config.tokens.default_duration.to_chrono()),
        issued_at: Set(None),
        token_expires: Set(None),
        created: Set(now),
    }
    .insert(&state.db)
    .await?;
    Ok(row.id)
}

/// What the browser window is to do next.
#[derive(Debug)]
pub enum Interactive {
    /// Sign in through `flow_slug`, then come back.
    SignIn { flow_slug: String, back: String },
    /// Run the connector's authorization flow, handed `handoff`, then come back to `back`.
    Authorize { flow_slug: String, back: String, handoff: Handoff },
    /// Done: go to this address, which carries the token.
    Finished(String),
}

/// The claims of a device authentication token (authentik's `agent_auth_issue_token`).
#[derive(Debug, Serialize)]
struct Claims<'a> {
    iss: &'static str,
    aud: String,
    iat: i64,
    exp: i64,
    jti: String,
    preferred_username: &'a str,
}

async fn live_request(db: &impl ConnectionTrait, tenant: TenantId, id: Uuid) -> Result<authentication_token::Model> {
    authentication_token::Entity::find_by_id(id)
        .filter(authentication_token::Column::TenantId.eq(tenant.0))
        .filter(authentication_token::Column::IssuedAt.is_null())
        .filter(authentication_token::Column::Expires.gt(Utc::now()))
        .one(db)
        .await?
        .ok_or(Error::NotFound)
}

/// The next step of the device authentication `id` for a browser window that sent `key_hash`
/// (its `X-Authentik-Platform-Auth-DTH`), signed in as `current`, with `query` (which carries
/// the proof of the authorization flow on the way back). Unknown, expired and redeemed requests
/// are not found; a wrong or missing hash, a disabled connector or a device gone is refused
/// alike; a person the device's bindings do not admit is refused.
pub async fn step(
    state: &AppState,
    id: Uuid,
    presented_hash: Option<&str>,
    query: &str,
    current: Option<&AuthContext>,
    client: &ClientInfo,
) -> Result<Interactive> {
    let request = live_request(&state.db, state.tenant, id).await?;
    let invalid = || Error::field("non_field_errors", "Invalid device token.");
    let presented = stored_hash(state, &presented_hash.ok_or_else(invalid)?.trim().to_ascii_lowercase());
    if !constant_time_eq(presented.as_bytes(), request.key_hash.as_bytes()) {
        return Err(invalid());
    }
    let now = Utc::now();
    let device = super::devices::find(&state.db, state.tenant, request.device_id)
        .await
        .ok()
        .filter(|d| super::devices::live(d.expiring, d.expires, now))
        .ok_or_else(invalid)?;
    let connector = super::connectors::connectors_by_ids(&state.db, state.tenant, &[request.connector_id])
        .await?
        .pop()
        .filter(|c| c.enabled)
        .ok_or_else(invalid)?;
    let back = path_of(id);
    let (Some(current), Some(session)) = (current, current.and_then(|c| c.session.as_ref())) else {
        return Ok(Interactive::SignIn { flow_slug: state.config.flows.authentication_flow.clone(), back });
    };
    if !super::bindings::device_admits(&state.db, state.tenant, &device, &current.user).await? {
        return Err(Error::PermissionDenied);
    }
    if let Some(flow_id) = connector.authorization_flow_id {
        let flow = crate::flows::flow_service::flows_by_id(&state.db, state.tenant, &[flow_id])
            .await?
            .remove(&flow_id)
            .ok_or_else(|| Error::internal("a connector's authorization flow is missing"))?;
        if let Some(reason) = crate::flows::executor::requirement_unmet(&flow, Some(current)) {
            return Err(Error::field("non_field_errors", reason));
        }
        if !crate::flows::executor::planned_stages(state, &flow.slug).await?.is_empty() {
            // The way back is this path with the proof as its only parameter; the proof is
            // looked for as the last parameter after something else, so put something first.
            let proven = match handoff::split_proof(&format!("_=&{query}")).1 {
                Some(proof) => handoff::redeem(state, proof, flow.id, session.id, &back).await?,
                None => false,
            };
            if !proven {
                let mut facts = serde_json::Map::new();
                facts.insert(DEVICE_FACT.into(), json!({"pk": device.id, "name": device.name, "connector": connector.id}));
                return Ok(Interactive::Authorize { flow_slug: flow.slug, back, handoff: Handoff::new(facts) });
            }
        }
    }
    issue(state, &request, &device, &connector, current, client).await.map(Interactive::Finished)
}

/// Signs the token for `current` on `device`, marks the request redeemed (once, whatever
/// windows race) and records the sign-in; the address the window finishes at.
async fn issue(
    state: &AppState,
    request: &authentication_token::Model,
    device: &device::Model,
    connector: &connector::Model,
    current: &AuthContext,
    client: &ClientInfo,
) -> Result<String> {
    let lifetime =
        DurationString::parse(&connector.auth_session_duration).map_err(|e| Error::internal(format!("a stored duration: {e}")))?;
    let now = Utc::now();
    let expires = now + lifetime.to_chrono();
    let (pair, _) = crate::crypto::service::managed_jwt_keys(state, state.tenant).await?;
    let signer =
        crate::crypto::jwt::Signer::for_pair(&state.secret, &pair)?.ok_or_else(|| Error::internal("the managed key cannot sign tokens"))?;
    let claims = Claims {
        iss: ISSUER,
        aud: device.id.to_string(),
        iat: now.timestamp(),
        exp: expires.timestamp(),
        jti: request.id.to_string(),
        preferred_username: &current.user.username,
    };
    let token = signer.sign(&claims, "JWT")?;
    let txn = crate::db::begin_write(&state.db).await?;
    let redeemed = authentication_token::Entity::update_many()
        .col_expr(authentication_token::Column::UserId, Expr::value(current.user.id))
        .col_expr(authentication_token::Column::IssuedAt, Expr::value(now))
        .col_expr(authentication_token::Column::TokenExpires, Expr::value(expires))
        .filter(authentication_token::Column::Id.eq(request.id))
        .filter(authentication_token::Column::IssuedAt.is_null())
        .exec(&txn)
        .await?;
    if redeemed.rows_affected != 1 {
        return Err(Error::NotFound);
    }
    let event = EventRecord::new(Action::Login)
        .by(&current.user)
        .from_client(client)
        .with("auth_method", json!("device_interactive"))
        .with("device", json!({"pk": device.id, "name": device.name}));
    events::service::record(&txn, state, event).await?;
    txn.commit().await?;
    metrics::counter!("gatehouse_device_authentications_total").increment(1);
    let query: String = form_urlencoded::Serializer::new(String::new()).append_pair(TOKEN_PARAMETER, &token).finish();
    Ok(format!("{FINISHED}?{query}"))
}

/// The latest expiry of the device authentication tokens signed up to `signed_until`: how long
/// a managed key that stopped signing then must stay published for them.
pub async fn latest_token_expiry(
    db: &impl ConnectionTrait,
    tenant: TenantId,
    signed_until: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    Ok(authentication_token::Entity::find()
        .select_only()
        .expr(authentication_token::Column::TokenExpires.max())
        .filter(authentication_token::Column::TenantId.eq(tenant.0))
        .filter(authentication_token::Column::IssuedAt.lte(signed_until))
        .into_tuple::<Option<DateTime<Utc>>>()
        .one(db)
        .await?
        .flatten())
}

/// Deletes requests past their expiry that were never redeemed, and redeemed ones whose token
/// has expired.
pub async fn purge_expired(db: &impl ConnectionTrait) -> Result<u64> {
    let now = Utc::now();
    let unused = authentication_token::Entity::delete_many()
        .filter(authentication_token::Column::IssuedAt.is_null())
        .filter(authentication_token::Column::Expires.lt(now))
        .exec(db)
        .await?
        .rows_affected;
    let spent = authentication_token::Entity::delete_many()
        .filter(authentication_token::Column::TokenExpires.lt(now))
        .exec(db)
        .await?
        .rows_affected;
    Ok(unused + spent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_hash_is_sha256_in_lowercase_hex() {
        assert_eq!(key_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
