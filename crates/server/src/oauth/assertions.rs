//! Client authentication with a signed assertion (`private_key_jwt`: OpenID Connect Core §9,
//! RFC 7523 §2.2 and §3): the client signs a short-lived JWT about itself with a private key
//! whose certificate the provider names in `client_keys`, and sends it as `client_assertion`.
//! Gatehouse never holds that private key. Each assertion is accepted once.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::Value;

use super::entities::{client_assertion, provider};
use crate::error::Result;
use crate::state::AppState;

/// The only `client_assertion_type` there is (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The longest an assertion may be good for: each is remembered until it expires.
const LONGEST_LIFETIME: TimeDelta = TimeDelta::hours(1);
/// Clock difference allowed on `exp` (as on every token Gatehouse checks).
const LEEWAY: TimeDelta = TimeDelta::seconds(60);
/// The largest assertion read, and the longest `jti` kept.
const MOST_ASSERTION_BYTES: usize = 16 * 1024;
const LONGEST_JTI: usize = 256;
/// What a used assertion's `jti` is digested for.
const JTI_PURPOSE: &str = "client-assertion-jti";

/// The client an assertion says it comes from (`iss`), read without checking anything: only to
/// find the client whose keys then check it.
pub fn claimed_client(assertion: &str) -> Option<String> {
    if assertion.len() > MOST_ASSERTION_BYTES {
        return None;
    }
    let payload = assertion.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

/// Whether `assertion` proves the client of `provider`: signed with one of its `client_keys`
/// (the algorithm fixed by the key), `iss` and `sub` its client id, `aud` one of `audiences`
/// (this server), not expired and good for at most an hour, with a `jti` never accepted before.
/// Accepting it uses it up, whatever the request goes on to do.
pub async fn proves(state: &AppState, provider: &provider::Model, assertion: &str, audiences: &[&str]) -> Result<bool> {
    if assertion.len() > MOST_ASSERTION_BYTES {
        return Ok(false);
    }
    let keys = crate::crypto::service::pairs_by_ids(&state.db, state.tenant, &provider.client_keys()).await?;
    let header_kid = jsonwebtoken::decode_header(assertion).ok().and_then(|header| header.kid);
    let mut claims = None;
    for pair in keys {
        // A key id in the header narrows the search; without one every key is tried.
        if header_kid.as_deref().is_some_and(|kid| kid != crate::crypto::jwt::key_id(&pair)) {
            continue;
        }
        if let Some(found) = crate::crypto::jwt::verify(&pair, assertion, audiences, &provider.client_id, false)? {
            claims = Some(found);
            break;
        }
    }
    let Some(claims) = claims else { return Ok(false) };
    if claims.get("sub").and_then(Value::as_str) != Some(provider.client_id.as_str()) {
        return Ok(false);
    }
    let Some(jti) = claims.get("jti").and_then(Value::as_str).filter(|jti| !jti.is_empty() && jti.len() <= LONGEST_JTI) else {
        return Ok(false);
    };
    let Some(expires) = claims.get("exp").and_then(Value::as_i64).and_then(|exp| DateTime::<Utc>::from_timestamp(exp, 0)) else {
        return Ok(false);
    };
    if expires > Utc::now() + LONGEST_LIFETIME + LEEWAY {
        return Ok(false);
    }
    // Remembered by its digest until it expires: a second use finds it and is refused, in this
    // process or any other (the primary key decides between two at once).
    let used = client_assertion::ActiveModel {
        provider_id: Set(provider.id),
        jti_digest: Set(state.secret.digest(JTI_PURPOSE, jti.as_bytes())),
        expires: Set(expires + LEEWAY),
    };
    match used.insert(&state.db).await {
        Ok(_) => Ok(true),
        Err(error) if matches!(error.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// Forgets used assertions past their expiry; returns how many.
pub async fn purge_expired(db: &impl sea_orm::ConnectionTrait) -> Result<u64> {
    Ok(client_assertion::Entity::delete_many().filter(client_assertion::Column::Expires.lt(Utc::now())).exec(db).await?.rows_affected)
}
