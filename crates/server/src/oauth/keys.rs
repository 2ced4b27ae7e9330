//! Rotating the managed signing key of providers without their own: a daily task replaces it
//! once it is older than `tokens.signing_key_rotation`, and operators rotate it at will
//! (`gatehouse rotate-signing-key`, with `--compromised` to retire it at once). The replaced key
//! stays in every key set as long as an ID token or access token it signed may be live, so that
//! relying parties and resource servers never see a valid token they cannot verify.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use serde_json::{Value, json};

use super::entities::token;
use crate::crypto::entities::key_pair;
use crate::crypto::service::{Replaced, Rotation};
use crate::error::Result;
use crate::state::AppState;
use crate::tasks::actors::{Actor, ActorResult, TaskContext};

/// The actor that rotates the managed key when it is due.
pub const ACTOR: &str = "gatehouse.rotate_signing_key";
/// Added to the last expiry: clocks differ, and relying parties cache key sets.
const MARGIN: TimeDelta = TimeDelta::minutes(10);
/// How long a logout token lives.
const LOGOUT_TOKEN_LIFETIME: TimeDelta = super::backchannel::NOTICE_LIFETIME;

/// Until when the key the managed key replaced (`previous`) must stay published: until the last
/// access token or device authentication token issued while it signed expires (ID tokens expire
/// with their access token), and at least as long as a logout token it signed lives, then a
/// margin. Read from the tokens themselves, so that shortening a provider's validity afterwards
/// cannot retire it early.
pub async fn previous_needed_until(state: &AppState, previous: &key_pair::Model) -> Result<DateTime<Utc>> {
    let signed_until = previous.last_updated;
    let latest: Option<DateTime<Utc>> = token::Entity::find()
        .select_only()
        .expr(token::Column::Expires.max())
        .filter(token::Column::TenantId.eq(state.tenant.0))
        .filter(token::Column::Kind.eq(super::grants::ACCESS))
        .filter(token::Column::Created.lte(signed_until))
        .into_tuple::<Option<DateTime<Utc>>>()
        .one(&state.db)
        .await?
        .flatten();
    // Devices' authentication tokens are signed with the same key.
    let devices = crate::endpoints::device_auth::latest_token_expiry(&state.db, state.tenant, signed_until).await?;
    Ok(needed_until(signed_until, latest.max(devices)))
}

/// [`previous_needed_until`] for a key that stopped signing at `signed_until`, whose tokens
/// expire by `latest_token_expiry`.
fn needed_until(signed_until: DateTime<Utc>, latest_token_expiry: Option<DateTime<Utc>>) -> DateTime<Utc> {
    let logout_tokens = signed_until + LOGOUT_TOKEN_LIFETIME;
    latest_token_expiry.map_or(logout_tokens, |latest| latest.max(logout_tokens)) + MARGIN
}

/// Replaces the managed key now. Kept published unless `compromised`; refused while the key it
/// replaced last time may still verify live tokens (the message says until when).
pub async fn rotate(state: &AppState, compromised: bool) -> Result<Rotation> {
    if compromised {
        return crate::crypto::service::rotate_managed_jwt_key(state, state.tenant, Replaced::RetiredNow).await;
    }
    let (_, previous) = crate::crypto::service::managed_jwt_keys(state, state.tenant).await?;
    let previous = match previous {
        Some(previous) => Some((previous_needed_until(state, &previous).await?, previous)),
        None => None,
    };
    keep_replaced(state, previous).await
}

/// Rotates, keeping the replaced key published; `previous` is the key replaced last time with
/// the time it is needed until, as the caller found them.
async fn keep_replaced(state: &AppState, previous: Option<(DateTime<Utc>, key_pair::Model)>) -> Result<Rotation> {
    let replaced = Replaced::Kept {
        previous: previous.as_ref().map(|(_, p)| p.id),
        previous_needed_until: previous.as_ref().map(|(until, _)| *until),
    };
    crate::crypto::service::rotate_managed_jwt_key(state, state.tenant, replaced).await
}

/// [`ACTOR`], sent daily by a built-in schedule: rotates when the managed key is older than
/// `tokens.signing_key_rotation` and the key it replaced last time is no longer needed;
/// otherwise it does nothing and says why.
pub fn actor() -> Actor {
    Actor::new(ACTOR, rotate_when_due).retries(2).keep_results(std::time::Duration::from_secs(30 * 24 * 3600))
}

async fn rotate_when_due(context: TaskContext, _args: Value) -> ActorResult {
    let state = &context.state;
    let (active, previous) = crate::crypto::service::managed_jwt_keys(state, context.tenant).await?;
    let due_at = active.created + state.config.tokens.signing_key_rotation.to_chrono();
    if due_at > Utc::now() {
        return Ok(Some(json!({"rotated": false, "due": due_at})));
    }
    let previous = match previous {
        Some(previous) => Some((previous_needed_until(state, &previous).await?, previous)),
        None => None,
    };
    if let Some((needed_until, _)) = previous.as_ref().filter(|(until, _)| *until > Utc::now()) {
        context.info("The managed signing key is due, but the key it replaced may still verify live tokens").await?;
        return Ok(Some(json!({"rotated": false, "due": due_at, "previous_needed_until": needed_until})));
    }
    let rotation = keep_replaced(state, previous).await?;
    context.info("The managed signing key was replaced").await?;
    Ok(Some(json!({
        "rotated": true,
        "kid": crate::crypto::jwt::key_id(&rotation.active),
        "previous": rotation.previous.as_ref().map(crate::crypto::jwt::key_id),
        "retired": rotation.retired.iter().map(crate::crypto::jwt::key_id).collect::<Vec<_>>(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replaced_key_is_needed_until_its_last_token_or_logout_token_expires_and_a_margin() {
        let stopped = Utc::now();
        // No tokens: only logout tokens it may have signed.
        assert_eq!(needed_until(stopped, None), stopped + LOGOUT_TOKEN_LIFETIME + MARGIN);
        // A token living longer than that holds it.
        let late = stopped + TimeDelta::hours(8);
        assert_eq!(needed_until(stopped, Some(late)), late + MARGIN);
        // A token expiring sooner does not shorten it below the logout tokens' lifetime.
        assert_eq!(needed_until(stopped, Some(stopped)), stopped + LOGOUT_TOKEN_LIFETIME + MARGIN);
    }
}
