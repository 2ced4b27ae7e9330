//! Rotating the managed signing key of providers without their own: a daily task replaces it
//! once it is older than `tokens.signing_key_rotation`, and operators rotate it at will
//! (`gatehouse rotate-signing-key`, with `--compromised` to retire it at once). The replaced key
//! stays in every key set as long as an ID token or access token it signed may be live, so that
//! relying parties and resource servers never see a valid token they cannot verify.

use chrono::{TimeDelta, Utc};
use gatehouse_types::DurationString;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use serde_json::{Value, json};

use super::entities::provider;
use crate::crypto::service::{Replaced, Rotation};
use crate::error::Result;
use crate::state::AppState;
use crate::tasks::actors::{Actor, ActorResult, TaskContext};

/// The actor that rotates the managed key when it is due.
pub const ACTOR: &str = "gatehouse.rotate_signing_key";
/// Added to the longest token lifetime: clocks differ, and relying parties cache key sets.
const MARGIN: TimeDelta = TimeDelta::minutes(10);
/// A provider's access tokens live this long when its validity does not parse (as at issue).
const DEFAULT_ACCESS_VALIDITY: TimeDelta = TimeDelta::hours(1);

/// How long after it stopped signing the replaced managed key must stay published: the longest
/// access-token lifetime among providers signing with the managed key (their ID tokens live as
/// long; logout tokens two minutes), and a margin.
pub async fn previous_needed_for(state: &AppState) -> Result<TimeDelta> {
    let validities: Vec<String> = provider::Entity::find()
        .select_only()
        .column(provider::Column::AccessTokenValidity)
        .filter(provider::Column::TenantId.eq(state.tenant.0))
        .filter(provider::Column::SigningKeyId.is_null())
        .into_tuple()
        .all(&state.db)
        .await?;
    let longest = validities
        .iter()
        .map(|text| DurationString::parse(text).map(DurationString::to_chrono).unwrap_or(DEFAULT_ACCESS_VALIDITY))
        .max()
        .unwrap_or(TimeDelta::zero());
    Ok(longest + MARGIN)
}

/// Replaces the managed key now. Kept published unless `compromised`; refused while the key it
/// replaced last time may still verify live tokens (the message says until when).
pub async fn rotate(state: &AppState, compromised: bool) -> Result<Rotation> {
    let replaced =
        if compromised { Replaced::RetiredNow } else { Replaced::Kept { previous_needed_for: previous_needed_for(state).await? } };
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
    if let Some(previous) = previous {
        let needed_until = previous.last_updated + previous_needed_for(state).await?;
        if needed_until > Utc::now() {
            context.info("The managed signing key is due, but the key it replaced may still verify live tokens").await?;
            return Ok(Some(json!({"rotated": false, "due": due_at, "previous_needed_until": needed_until})));
        }
    }
    let rotation = rotate(state, false).await?;
    context.info("The managed signing key was replaced").await?;
    Ok(Some(json!({
        "rotated": true,
        "kid": crate::crypto::jwt::key_id(&rotation.active),
        "previous": rotation.previous.as_ref().map(crate::crypto::jwt::key_id),
        "retired": rotation.retired.iter().map(crate::crypto::jwt::key_id).collect::<Vec<_>>(),
    })))
}
