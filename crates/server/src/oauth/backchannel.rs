//! Back-channel logout (OpenID Connect Back-Channel Logout 1.0): when a session ends (signing
//! out, a revoked session, a new password, a deactivated or deleted account), every application
//! that was given tokens through it and registered a back-channel `logout_uri` is sent a signed
//! logout token, server to server, so that it ends its own session too.
//!
//! The notices are queued in the transaction that ends the session and sent by a worker: a
//! sign-out never waits on an application, a notice is never lost to a crash, and one that fails
//! is retried with backoff.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, Set};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::entities::{provider, session_grant};
use super::model::LogoutMethod;
use crate::accounts::entities::user;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::tasks::actors::{Actor, ActorResult, TaskContext, TaskError};
use crate::tasks::queue::{self, Enqueue};

/// The actor that delivers logout tokens.
pub const ACTOR: &str = "gatehouse.backchannel_logout";
/// What the `sid` claim is derived for.
const SESSION_CLAIM_PURPOSE: &str = "oidc-sid";
/// The event a logout token announces (§2.4).
const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// How long a logout token is good for: the specification recommends at most two minutes.
pub(super) const NOTICE_LIFETIME: TimeDelta = TimeDelta::minutes(2);
/// How long an application may take to answer a notice.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The `sid` claim of the tokens of one grant (`family`): the same in every ID token the grant
/// yields, refreshed ones included, and in the logout token that ends it. Keyed, so that it
/// says nothing about the session's row.
pub fn session_claim(state: &AppState, family: Uuid) -> String {
    let mut digest = state.secret.digest(SESSION_CLAIM_PURPOSE, family.as_bytes());
    digest.truncate(32);
    digest
}

/// Notes, on the transaction issuing tokens, that the grant `family` of `provider` was given to
/// `user` through `session` under `issuer` (once per grant: refreshes find it there).
pub(super) async fn remember_grant(
    db: &impl ConnectionTrait,
    state: &AppState,
    provider: &provider::Model,
    user: &user::Model,
    session: Uuid,
    family: Uuid,
    issuer: &str,
) -> std::result::Result<(), sea_orm::DbErr> {
    let grant = session_grant::ActiveModel {
        family_id: Set(family),
        tenant_id: Set(state.tenant.0),
        provider_id: Set(provider.id),
        user_id: Set(user.id),
        session_id: Set(session),
        issuer: Set(issuer.to_owned()),
        created: Set(Utc::now()),
    };
    session_grant::Entity::insert(grant)
        .on_conflict(OnConflict::column(session_grant::Column::FamilyId).do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// One logout token to deliver: to whom, and what it names.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Notice {
    provider: i64,
    /// The `iss` of the tokens the application holds.
    issuer: String,
    sub: String,
    sid: String,
}

/// Queues a notice for each grant given through the ending sessions to an application that
/// listens on a back channel.
pub struct NoticesOfSignOut;

#[async_trait::async_trait]
impl crate::credentials::revoke::SessionsEnding for NoticesOfSignOut {
    async fn ending(&self, txn: &DatabaseTransaction, state: &AppState, sessions: &[Uuid]) -> Result<()> {
        let given = session_grant::Entity::find()
            .filter(session_grant::Column::TenantId.eq(state.tenant.0))
            .filter(session_grant::Column::SessionId.is_in(sessions.iter().copied()))
            .all(txn)
            .await?;
        if given.is_empty() {
            return Ok(());
        }
        let grants: BTreeMap<(i64, Uuid), (i64, String)> =
            given.into_iter().map(|g| ((g.provider_id, g.family_id), (g.user_id, g.issuer))).collect();
        let provider_ids: Vec<i64> = grants.keys().map(|(provider, _)| *provider).collect();
        let listening: HashMap<i64, provider::Model> = provider::Entity::find()
            .filter(provider::Column::TenantId.eq(state.tenant.0))
            .filter(provider::Column::Id.is_in(provider_ids))
            .filter(provider::Column::LogoutMethod.eq(LogoutMethod::Backchannel.as_str()))
            .filter(provider::Column::LogoutUri.ne(""))
            .all(txn)
            .await?
            .into_iter()
            .map(|p| (p.id, p))
            .collect();
        let user_ids: Vec<i64> = grants.iter().filter(|((p, _), _)| listening.contains_key(p)).map(|(_, (user, _))| *user).collect();
        if user_ids.is_empty() {
            return Ok(());
        }
        let users: HashMap<i64, user::Model> =
            user::Entity::find().filter(user::Column::Id.is_in(user_ids)).all(txn).await?.into_iter().map(|u| (u.id, u)).collect();
        let mut notices = Vec::new();
        for ((provider_id, family), (user_id, issuer)) in grants {
            let (Some(provider), Some(user)) = (listening.get(&provider_id), users.get(&user_id)) else { continue };
            let notice = Notice {
                provider: provider_id,
                issuer,
                sub: super::claims::subject(state, provider, user),
                sid: session_claim(state, family),
            };
            notices.push(Enqueue {
                actor: ACTOR.to_owned(),
                args: serde_json::to_value(&notice).map_err(|e| Error::internal(format!("a logout notice: {e}")))?,
                delay: None,
                rel_obj: Some(("authentik_providers_oauth2.oauth2provider".to_owned(), provider_id.to_string())),
                uid: None,
            });
        }
        if !notices.is_empty() {
            queue::enqueue_many(txn, state, state.tenant, notices).await?;
        }
        Ok(())
    }
}

/// [`ACTOR`]: retried with backoff while the application cannot be reached or fails.
pub fn actor() -> Actor {
    Actor::new(ACTOR, deliver).retries(5).time_limit(Duration::from_secs(60))
}

/// Signs a logout token with the provider's key now and posts it to the provider's
/// `logout_uri` (§2.5). A provider deleted or no longer listening since is not told.
async fn deliver(context: TaskContext, notice: Notice) -> ActorResult {
    let state = &context.state;
    let found = provider::Entity::find_by_id(notice.provider)
        .filter(provider::Column::TenantId.eq(context.tenant.0))
        .one(&state.db)
        .await
        .map_err(Error::from)?;
    let Some(provider) = found.filter(|p| p.logout_method == LogoutMethod::Backchannel.as_str() && !p.logout_uri.is_empty()) else {
        context.info("The provider no longer takes back-channel logout notices; none sent").await?;
        return Ok(None);
    };
    let key = super::cache::signing_key(state, &provider).await?;
    let now = Utc::now();
    let claims = json!({
        "iss": notice.issuer,
        "sub": notice.sub,
        "aud": provider.client_id,
        "iat": now.timestamp(),
        "exp": (now + NOTICE_LIFETIME).timestamp(),
        "jti": Uuid::new_v4().to_string(),
        "sid": notice.sid,
        "events": { LOGOUT_EVENT: {} },
    });
    let logout_token = key.signer.sign(&claims, "logout+jwt")?;
    let client = reqwest::Client::builder()
        .connect_timeout(DELIVERY_TIMEOUT)
        .timeout(DELIVERY_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| TaskError::Failed(format!("no HTTP client: {e}")))?;
    let sent = client.post(&provider.logout_uri).form(&[("logout_token", logout_token.as_str())]).send().await;
    let status = match sent {
        Ok(response) => response.status(),
        // Transport errors name the address, never the token (it is in the body).
        Err(error) => return Err(TaskError::Failed(format!("the application could not be reached: {}", error.without_url()))),
    };
    if status.is_success() {
        context.info("Logout notice delivered").await?;
        return Ok(Some(json!({"status": status.as_u16()})));
    }
    let message = format!("the application answered the logout notice with HTTP {}", status.as_u16());
    if status.is_server_error() || matches!(status.as_u16(), 408 | 425 | 429) {
        Err(TaskError::Failed(message))
    } else {
        // The application read the notice and refused it (§2.8: 400 for a token it does not
        // accept): sending the same again cannot help.
        Err(TaskError::Fatal(message))
    }
}
