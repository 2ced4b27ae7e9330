//! What the token, introspection and userinfo endpoints read on every call, kept in memory:
//! clients by id, each provider's signing key (opened and parsed, which costs more than a
//! signature), and live access tokens with their user and session.
//!
//! Entries are dropped by invalidation, never trusted for their lifetime alone: a change to a
//! provider or application, and every revocation or deletion of issued tokens, advances
//! [`OAuthCache::changes`] (and through `NOTIFY` the counter of every other process); a change
//! to a key pair advances the key pairs' counter, which clients depend on too (deleting a pair
//! changes the providers that named it); a change to a user or the end of a session advances the
//! session checks' counter. An entry lives while the counters it was read under
//! do, and at most `tokens.oauth_cache_ttl`, which bounds what a process that missed a
//! notification can serve. Rotating a refresh token changes no access token, so it drops
//! nothing: refresh tokens are never kept here.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::entities::{application, provider, token};
use crate::accounts::entities::user;
use crate::crypto::entities::key_pair;
use crate::crypto::jwt::Signer;
use crate::db::generation::{Generation, GenerationCache, stamp};
use crate::error::{Error, Result};
use crate::state::AppState;

/// The channel that carries changes to providers, applications and issued tokens.
pub const CHANNEL: &str = "gatehouse_oauth_changes";

/// More clients, signing keys or live tokens than this and a cache starts over.
const CAPACITY: usize = 50_000;

/// A client: a provider with its application.
#[derive(Debug)]
pub struct Client {
    pub provider: provider::Model,
    pub app: application::Model,
}

/// A provider's signing key, opened.
pub struct SigningKey {
    pub pair: key_pair::Model,
    pub signer: Signer,
}

/// A live access token with what decides whether it still is: its user and its session's end.
#[derive(Debug)]
pub struct LiveToken {
    pub token: token::Model,
    pub user: Option<user::Model>,
    pub session_expires: Option<DateTime<Utc>>,
}

impl LiveToken {
    /// Whether the token is live at `now`: not revoked, not expired, its session (if any) not
    /// over and its user (if any) active.
    pub fn live_at(&self, now: DateTime<Utc>) -> bool {
        !self.token.revoked
            && self.token.expires > now
            && self.session_expires.is_none_or(|end| end > now)
            && self.user.as_ref().is_none_or(|u| u.is_active)
    }
}

/// The caches of the OAuth endpoints, with the counter of changes they depend on.
pub struct OAuthCache {
    pub changes: Arc<Generation>,
    /// By tenant and client id.
    clients: GenerationCache<(Uuid, String), Client>,
    /// By provider and the pair it names (none: the managed key), so that a provider read
    /// before a change of its key never finds the key stored after it, nor the other way round.
    signing_keys: GenerationCache<(i64, Option<Uuid>), SigningKey>,
    access_tokens: GenerationCache<String, LiveToken>,
}

impl OAuthCache {
    /// Caches whose entries live at most `ttl` (zero keeps nothing).
    pub fn new(ttl: std::time::Duration) -> Self {
        Self {
            changes: Arc::new(Generation::new(CHANNEL)),
            clients: GenerationCache::new(ttl, CAPACITY),
            signing_keys: GenerationCache::new(ttl, CAPACITY),
            access_tokens: GenerationCache::new(ttl, CAPACITY),
        }
    }

    /// Drops these caches whenever another process announces a change (and whenever the
    /// listener (re)connects).
    pub fn subscription(self: &Arc<Self>) -> crate::db::notify::Subscription {
        let cache = self.clone();
        crate::db::notify::Subscription::new(CHANNEL, move || cache.changed())
    }

    /// Counts a committed change in this process and frees what it made stale.
    fn changed(&self) {
        self.changes.advance();
        self.clear();
    }

    /// Frees every entry (a moved counter already keeps them from being served).
    fn clear(&self) {
        self.clients.clear();
        self.signing_keys.clear();
        self.access_tokens.clear();
    }
}

/// Makes the transaction on `txn` drop the other processes' OAuth caches when it commits; the
/// caller then commits with [`commit_change`].
pub async fn announce(state: &AppState, txn: &impl ConnectionTrait) -> Result<()> {
    state.oauth.changes.announce(txn).await?;
    Ok(())
}

/// Commits a change to providers, applications or issued tokens and drops what the OAuth caches
/// hold, here and (on PostgreSQL, when the transaction commits) in every other process.
pub async fn commit_change(state: &AppState, txn: DatabaseTransaction) -> Result<()> {
    state.oauth.changes.commit(txn).await?;
    state.oauth.clear();
    Ok(())
}

/// The client named `client_id`, with its application.
pub async fn client(state: &AppState, client_id: &str) -> Result<Option<Arc<Client>>> {
    // Deleting a key pair changes the providers that named it (their key becomes the managed one).
    let now = || stamp(&[state.oauth.changes.current(), state.key_pair_changes.current()]);
    let read_under = now();
    let key = (state.tenant.0, client_id.to_owned());
    if let Some(found) = state.oauth.clients.get(&key, read_under) {
        return Ok(Some(found));
    }
    let found = provider::Entity::find()
        .filter(provider::Column::TenantId.eq(state.tenant.0))
        .filter(provider::Column::ClientId.eq(client_id))
        .one(&state.db)
        .await?;
    let Some(provider) = found else { return Ok(None) };
    let app = application::Entity::find()
        .filter(application::Column::TenantId.eq(state.tenant.0))
        .filter(application::Column::ProviderId.eq(provider.id))
        .one(&state.db)
        .await?;
    let Some(app) = app else { return Ok(None) };
    let entry = Arc::new(Client { provider, app });
    state.oauth.clients.put(key, read_under, now(), entry.clone());
    Ok(Some(entry))
}

/// The key `provider` signs with, opened: its own pair, or the server's managed key.
pub async fn signing_key(state: &AppState, provider: &provider::Model) -> Result<Arc<SigningKey>> {
    let now = || stamp(&[state.oauth.changes.current(), state.key_pair_changes.current()]);
    let read_under = now();
    let key = (provider.id, provider.signing_key_id);
    if let Some(found) = state.oauth.signing_keys.get(&key, read_under) {
        return Ok(found);
    }
    let pair = super::discovery::signing_pair(state, provider).await?;
    let signer = Signer::for_pair(&state.secret, &pair)?.ok_or_else(|| Error::internal("a provider's signing key cannot sign"))?;
    let entry = Arc::new(SigningKey { pair, signer });
    state.oauth.signing_keys.put(key, read_under, now(), entry.clone());
    Ok(entry)
}

/// The access token whose keyed digest is `digest`, with its user and session, if it is live.
/// Only live access tokens are kept and only a live answer is served from memory: a revoked,
/// expired or unknown one is read every time.
pub async fn live_access_token(state: &AppState, digest: &str) -> Result<Option<Arc<LiveToken>>> {
    let now = || stamp(&[state.oauth.changes.current(), state.auth_cache.generation()]);
    let read_under = now();
    // A remembered token that looks over is read again: its session may have been renewed.
    if let Some(found) = state.oauth.access_tokens.get(digest, read_under)
        && found.token.tenant_id == state.tenant.0
        && found.live_at(Utc::now())
    {
        return Ok(Some(found));
    }
    let found = token::Entity::find()
        .filter(token::Column::TenantId.eq(state.tenant.0))
        .filter(token::Column::TokenDigest.eq(digest))
        .filter(token::Column::Kind.eq(super::grants::ACCESS))
        .one(&state.db)
        .await?;
    let Some(token) = found else { return Ok(None) };
    let session_expires = match token.session_id {
        Some(id) => match session_end(&state.db, id).await? {
            Some(end) => Some(end),
            None => return Ok(None),
        },
        None => None,
    };
    let user = match token.user_id {
        Some(id) => match user::Entity::find_by_id(id).one(&state.db).await? {
            Some(user) => Some(user),
            None => return Ok(None),
        },
        None => None,
    };
    let live = LiveToken { token, user, session_expires };
    if !live.live_at(Utc::now()) {
        return Ok(None);
    }
    let entry = Arc::new(live);
    state.oauth.access_tokens.put(digest.to_owned(), read_under, now(), entry.clone());
    Ok(Some(entry))
}

/// When the session `id` ends, if it exists.
pub(super) async fn session_end(db: &impl ConnectionTrait, id: Uuid) -> std::result::Result<Option<DateTime<Utc>>, sea_orm::DbErr> {
    Ok(crate::sessions::entities::session::Entity::find_by_id(id).one(db).await?.map(|s| s.expires))
}
