//! Signing in and out, and the session check on every cookie-authenticated request.

use chrono::{TimeDelta, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, JoinType, QueryFilter, QueryOrder, QuerySelect, Set};
use serde_json::json;
use uuid::Uuid;

use std::sync::Arc;

use super::entities::session;
use crate::accounts::entities::user;
use crate::accounts::password::{self, Password, Verification};
use crate::credentials::attempts::{self, Bucket, Reservation};
use crate::credentials::cache::Affected;
use crate::credentials::cache::AuthContext;
use crate::credentials::known_browser;
use crate::credentials::limits::Limits;
use crate::credentials::revoke::{commit_invalidating, end_sessions, end_these};
use crate::error::{Error, Result};
use crate::events::client::ClientInfo;
use crate::events::{self, Action, EventRecord};
use crate::secret::{ServerSecret, constant_time_eq, random_token};
use crate::state::AppState;
use crate::tenants::TenantId;

/// `last_used` is written at most this often per session, to keep writes off the hot path.
const LAST_USED_RESOLUTION: TimeDelta = TimeDelta::seconds(60);

/// The message for every failed sign-in, whatever the reason.
pub const SIGN_IN_FAILED: &str = "Invalid e-mail or password.";

/// A new session: the cookie key (shown once) and the stored row, and the browser's new
/// known-browser mark.
pub struct NewSession {
    pub key: String,
    pub csrf_token: String,
    pub known_browser: String,
    pub session: session::Model,
}

impl std::fmt::Debug for NewSession {
    // The key and CSRF token are secrets: never in logs or debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession").field("session", &self.session.id).finish_non_exhaustive()
    }
}

fn key_digest(secret: &ServerSecret, key: &str) -> String {
    secret.digest("session", key.as_bytes())
}

/// The CSRF token bound to a session; derived, so nothing more is stored.
pub fn csrf_token(secret: &ServerSecret, session_id: Uuid) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret.mac("csrf", session_id.as_bytes()))
}

/// Whether `presented` is the session's CSRF token, compared in constant time.
pub fn csrf_valid(secret: &ServerSecret, session_id: Uuid, presented: &str) -> bool {
    constant_time_eq(csrf_token(secret, session_id).as_bytes(), presented.as_bytes())
}

/// Looks up the session a cookie key names; `None` for unknown, expired or inactive. Answers
/// from the in-process cache when it can, so the common case costs no database round trip.
pub async fn authenticate(state: &AppState, key: &str, client: &ClientInfo) -> Result<Option<Arc<AuthContext>>> {
    if key.is_empty() || key.len() > 128 {
        return Ok(None);
    }
    let digest = key_digest(&state.secret, key);
    let now = Utc::now();
    if let Some(context) = state.auth_cache.get(&digest)
        && let Some(session) = &context.session
        && session.expires > now
    {
        if now - session.last_used > LAST_USED_RESOLUTION {
            record_use(state, session, client, now);
            let mut refreshed = (*context).clone();
            if let Some(session) = refreshed.session.as_mut() {
                session.last_used = now;
            }
            state.auth_cache.refresh(&digest, &context, Arc::new(refreshed));
        }
        return Ok(Some(context));
    }
    // Boxed: the database path holds large futures (its queries), and every request's future would
    // otherwise carry (and copy) it, cached or not.
    Box::pin(authenticate_uncached(state, digest, client, now)).await
}

/// The rest of [`authenticate`] for a session the cache does not hold.
async fn authenticate_uncached(
    state: &AppState,
    digest: String,
    client: &ClientInfo,
    now: chrono::DateTime<Utc>,
) -> Result<Option<Arc<AuthContext>>> {
    state.auth_cache.missed();
    let generation = state.auth_cache.generation();
    // One statement for the session and its (active) user, one for the user's rights and groups.
    let found = session::Entity::find()
        .select_also(user::Entity)
        .join(JoinType::InnerJoin, session::Entity::belongs_to(user::Entity).from(session::Column::UserId).to(user::Column::Id).into())
        .filter(session::Column::KeyDigest.eq(digest.clone()))
        .filter(session::Column::TenantId.eq(state.tenant.0))
        .filter(user::Column::TenantId.eq(state.tenant.0))
        .filter(user::Column::IsActive.eq(true))
        .one(&state.db)
        .await?;
    let Some((session, Some(user))) = found else { return Ok(None) };
    if session.expires <= now {
        return Ok(None);
    }
    let (permissions, groups) = crate::accounts::access::access_of(&state.db, &user).await?;
    if now - session.last_used > LAST_USED_RESOLUTION {
        record_use(state, &session, client, now);
    }
    let context = Arc::new(AuthContext { session: Some(session), token: None, user, permissions, groups, own_view: Default::default() });
    state.auth_cache.put(digest, generation, context.clone());
    Ok(Some(context))
}

/// Writes `last_used` and the address off the request path.
fn record_use(state: &AppState, session: &session::Model, client: &ClientInfo, now: chrono::DateTime<Utc>) {
    let db = state.db.clone();
    let id = session.id;
    let ip = client.ip_text();
    tokio::spawn(async move {
        let update = session::ActiveModel { id: sea_orm::Unchanged(id), last_used: Set(now), last_ip: Set(ip), ..Default::default() };
        if let Err(error) = update.update(&db).await {
            tracing::debug!(%error, "could not record session use");
        }
    });
}

/// A new session for `user` that lasts `lifetime`, not yet stored, with its key.
fn fresh_session(state: &AppState, user: &user::Model, client: &ClientInfo, lifetime: TimeDelta) -> (String, session::Model) {
    let key = random_token(32);
    let now = Utc::now();
    let session = session::Model {
        id: Uuid::new_v4(),
        key_digest: key_digest(&state.secret, &key),
        tenant_id: state.tenant.0,
        user_id: user.id,
        created: now,
        expires: now + lifetime,
        last_used: now,
        last_ip: client.ip_text(),
        user_agent: client.user_agent.clone(),
        client: events::client::describe(&client.user_agent, client.ip, state.geoip.as_deref()),
    };
    (key, session)
}

/// What the browser is handed for a stored `session` with `key`.
fn handed_out(state: &AppState, user: &user::Model, key: String, session: session::Model) -> NewSession {
    let csrf_token = csrf_token(&state.secret, session.id);
    let known_browser = known_browser::issue(&state.secret, state.tenant, user, session.created);
    NewSession { key, csrf_token, known_browser, session }
}

/// Starts a session for `user` that lasts `lifetime`.
pub async fn create(
    db: &impl sea_orm::ConnectionTrait,
    state: &AppState,
    user: &user::Model,
    client: &ClientInfo,
    lifetime: TimeDelta,
) -> Result<NewSession> {
    let (key, session) = fresh_session(state, user, client, lifetime);
    let session = session.into_active_model().insert(db).await?;
    Ok(handed_out(state, user, key, session))
}

/// Gives the session `previous` of `user` a new id, key and lifetime, as a new sign-in: rows that
/// refer to it follow the id (their foreign keys cascade on update). When the row is already gone
/// (a sign-out at the same moment), a new session is started instead.
async fn renew(
    db: &impl sea_orm::ConnectionTrait,
    state: &AppState,
    previous: &session::Model,
    user: &user::Model,
    client: &ClientInfo,
    lifetime: TimeDelta,
) -> Result<NewSession> {
    use sea_orm::sea_query::Expr;
    let (key, session) = fresh_session(state, user, client, lifetime);
    let renewed = session::Entity::update_many()
        .col_expr(session::Column::Id, Expr::value(session.id))
        .col_expr(session::Column::KeyDigest, Expr::value(session.key_digest.clone()))
        .col_expr(session::Column::Created, Expr::value(session.created))
        .col_expr(session::Column::Expires, Expr::value(session.expires))
        .col_expr(session::Column::LastUsed, Expr::value(session.last_used))
        .col_expr(session::Column::LastIp, Expr::value(session.last_ip.clone()))
        .col_expr(session::Column::UserAgent, Expr::value(session.user_agent.clone()))
        .col_expr(session::Column::Client, Expr::value(session.client.clone()))
        .filter(session::Column::TenantId.eq(state.tenant.0))
        .filter(session::Column::Id.eq(previous.id))
        .filter(session::Column::UserId.eq(user.id))
        .exec(db)
        .await?;
    if renewed.rows_affected == 0 {
        return create(db, state, user, client, lifetime).await;
    }
    Ok(handed_out(state, user, key, session))
}

/// A password attempt that passed the rate limits and is already counted as a failure.
struct Attempt {
    /// What the person typed to identify themselves, trimmed.
    identifier: String,
    reservation: Reservation,
}

/// Starts a password attempt from `client` by someone who typed `identifier`, against
/// `candidate` if that names an account: reserves the attempt before anything is checked, or
/// fails with 429 while it must wait. From a browser that signed in to the account before, the
/// attempt counts toward that browser's bucket and the account's ceiling for known browsers;
/// otherwise toward the
/// account at the client's address, the account's hourly ceiling and the address (see
/// [`crate::credentials::attempts`]). The account's failures are counted under its e-mail (or
/// username) whatever the person typed, so switching between e-mail and username gains no extra
/// guesses.
async fn begin_attempt(state: &AppState, identifier: &str, candidate: Option<&user::Model>, client: &ClientInfo) -> Result<Attempt> {
    let identifier: String = identifier.trim().chars().take(254).collect();
    let account_key = match candidate {
        Some(user) => user.email_key.clone().unwrap_or_else(|| user.username_key.clone()),
        None => gatehouse_types::identifier_key(&identifier),
    };
    // Buckets are named by a keyed digest: whatever was typed (a password in the wrong box, text
    // shaped like another bucket's name) is neither stored nor able to name another bucket.
    let account_key = state.secret.digest("sign-in-account", account_key.as_bytes());
    let account_key = &account_key[..32];
    let limits = &state.config.sign_in;
    let browser = match (candidate, client.known_browser.as_deref()) {
        (Some(user), Some(mark)) => known_browser::recognise(&state.secret, state.tenant, mark, user, Utc::now()),
        _ => None,
    };
    let buckets = match browser {
        Some(browser) => vec![
            Bucket::account_in_browser(account_key, &browser, Limits::per_account_address(limits)),
            Bucket::account_browsers_ceiling(account_key, limits.max_failures_per_account_hour),
        ],
        None => {
            let mut buckets = vec![
                Bucket::account_at_address(account_key, client.ip, Limits::per_account_address(limits)),
                Bucket::account_ceiling(account_key, limits.max_failures_per_account_hour),
            ];
            if let Some(ip) = client.ip {
                buckets.push(Bucket::address(ip, Limits::per_address(limits)));
            }
            buckets
        }
    };
    match attempts::reserve(&state.db, state.tenant, state.clock.now(), buckets).await {
        Ok(reservation) => Ok(Attempt { identifier, reservation }),
        Err(error) => {
            if matches!(error, Error::RateLimited { .. }) {
                metrics::counter!("gatehouse_sign_ins_total", "outcome" => "throttled").increment(1);
            }
            Err(error)
        }
    }
}

/// Which secret a password check matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// The account's own password.
    Password,
    /// One of the account's app passwords.
    AppPassword,
}

/// A password that matched an account that may sign in interactively.
pub struct Verified {
    pub user: user::Model,
    pub credential: Credential,
    /// The password again when its stored hash uses weaker parameters and must be redone.
    rehash: Option<Password>,
}

/// The outcome of a reserved password check.
enum Checked {
    /// The password matched: settle the attempt with [`pass_attempt`].
    Passed(Attempt, Box<Verified>),
    /// It did not: record it with [`fail_attempt`].
    Failed(Attempt),
}

/// Checks `password` against `candidate`'s own password (`own`) and/or its app passwords
/// (`app_passwords`). Unknown, inactive and non-interactive accounts do the same hashing work and
/// fail the same way. When the password threads are too busy to take the check, the attempt is
/// given back and the error is [`Error::Overloaded`].
async fn verify_password_with(
    state: &AppState,
    attempt: Attempt,
    candidate: Option<user::Model>,
    password: Password,
    own: bool,
    app_passwords: bool,
) -> Result<Checked> {
    let mut verification = Verification::Mismatch;
    let mut credential = Credential::Password;
    if own {
        let stored_hash = candidate.as_ref().and_then(|u| u.password.clone()).unwrap_or_else(|| password::DUMMY_HASH.to_owned());
        verification = match state.passwords.verify(password.clone(), stored_hash).await {
            Ok(verification) => verification,
            Err(error) => {
                attempt.reservation.release(&state.db).await?;
                return Err(error);
            }
        };
    }
    if app_passwords
        && verification == Verification::Mismatch
        && let Some(user) = &candidate
        && crate::tokens::service::verify_app_password(state, user.id, password.expose()).await?
    {
        verification = Verification::Match;
        credential = Credential::AppPassword;
    }
    Ok(match (candidate, verification) {
        (Some(user), Verification::Match | Verification::MatchNeedsRehash) if may_sign_in(&user) => {
            let rehash = (verification == Verification::MatchNeedsRehash).then_some(password);
            Checked::Passed(attempt, Box::new(Verified { user, credential, rehash }))
        }
        _ => Checked::Failed(attempt),
    })
}

/// Whether an account may sign in interactively at all.
pub fn may_sign_in(user: &user::Model) -> bool {
    user.is_active && !user.user_type.is_service_account()
}

/// How a password check ended, once its outcome is recorded.
pub enum PasswordCheck {
    /// The password matched an account that may sign in; the attempt was given back.
    Passed { user: Box<user::Model>, credential: Credential },
    /// It did not (or the account is unknown or may not sign in); the failure was recorded.
    Failed,
}

/// Checks `password` typed by someone who gave `identifier`, against `candidate`, under the
/// sign-in limits: reserves the attempt ([`begin_attempt`]), checks it ([`verify_password_with`])
/// and records the outcome ([`pass_attempt`] or [`fail_attempt`]).
///
/// The check runs to its end even when the caller stops waiting for it
/// ([`crate::credentials::attempts::run_to_end`]).
pub async fn check_password(
    state: &AppState,
    identifier: &str,
    candidate: Option<user::Model>,
    password: Password,
    client: &ClientInfo,
    own: bool,
    app_passwords: bool,
) -> Result<PasswordCheck> {
    let (state, identifier, client) = (state.clone(), identifier.to_owned(), client.clone());
    crate::credentials::attempts::run_to_end(async move {
        let attempt = begin_attempt(&state, &identifier, candidate.as_ref(), &client).await?;
        match verify_password_with(&state, attempt, candidate.clone(), password, own, app_passwords).await? {
            Checked::Passed(attempt, verified) => {
                let credential = verified.credential;
                let user = pass_attempt(&state, &attempt, verified).await?;
                Ok(PasswordCheck::Passed { user: Box::new(user), credential })
            }
            Checked::Failed(attempt) => {
                fail_attempt(&state, &attempt, candidate.as_ref(), &client).await?;
                Ok(PasswordCheck::Failed)
            }
        }
    })
    .await
}

/// Records a failed attempt (already counted toward the limits when it was reserved): a
/// `login_failed` event with the client's data (the account, when there is one, as the event's
/// user).
async fn fail_attempt(state: &AppState, attempt: &Attempt, candidate: Option<&user::Model>, client: &ClientInfo) -> Result<()> {
    let mut event = EventRecord::new(Action::LoginFailed)
        .from_client(client)
        .with("username", json!(attempt.identifier))
        .with("client", events::client::describe(&client.user_agent, client.ip, state.geoip.as_deref()));
    if let Some(user) = candidate {
        event = event.by(user);
    }
    events::service::record(&state.db, state, event).await?;
    metrics::counter!("gatehouse_sign_ins_total", "outcome" => "failed").increment(1);
    Ok(())
}

/// Records a successful password check: clears the account's failures, gives the attempt back to
/// the address, and upgrades a weak hash. Returns the account as stored afterwards.
async fn pass_attempt(state: &AppState, attempt: &Attempt, verified: Box<Verified>) -> Result<user::Model> {
    let mut update = verified.user.clone().into_active_model();
    if let Some(password) = verified.rehash {
        // A busy server keeps the old hash this time; it is redone at a later sign-in.
        if let Ok(hash) = state.passwords.hash(password).await {
            update.password = Set(Some(hash));
        }
    }
    if !update.is_changed() {
        attempt.reservation.settle_success(&state.db).await?;
        return Ok(verified.user);
    }
    let txn = crate::db::begin_write(&state.db).await?;
    attempt.reservation.settle_success(&txn).await?;
    let user = update.update(&txn).await?;
    txn.commit().await?;
    Ok(user)
}

/// Signs `user` in: records the sign-in time and the `login` event, ends `replacing` (the session
/// the request came with) and starts a session that lasts `lifetime`, all in one transaction. A
/// sign-in never keeps the session id or key the browser came with. When `replacing` is the same
/// user's, its row is renewed under the new id instead of deleted, so that what hangs off it
/// (what applications were given through it) follows to the new session rather than ending.
pub async fn start_session(
    state: &AppState,
    user: &user::Model,
    client: &ClientInfo,
    lifetime: TimeDelta,
    replacing: Option<&session::Model>,
) -> Result<(user::Model, NewSession)> {
    let mut update = user.clone().into_active_model();
    update.last_login = Set(Some(Utc::now()));
    let txn = crate::db::begin_write(&state.db).await?;
    let renewing = replacing.filter(|previous| previous.user_id == user.id);
    if let Some(previous) = replacing.filter(|previous| previous.user_id != user.id) {
        end_these(&txn, state, &[previous.id]).await?;
    }
    let user = update.update(&txn).await?;
    let new_session = match renewing {
        Some(previous) => renew(&txn, state, previous, &user, client, lifetime).await?,
        None => create(&txn, state, &user, client, lifetime).await?,
    };
    let event = EventRecord::new(Action::Login)
        .by(&user)
        .from_client(client)
        .with("client", new_session.session.client.clone())
        .with("session", json!(new_session.session.id));
    events::service::record(&txn, state, event).await?;
    if let Some(previous) = replacing {
        commit_invalidating(state, txn, Affected::sessions([previous.id])).await?;
    } else {
        txn.commit().await?;
    }
    metrics::counter!("gatehouse_sign_ins_total", "outcome" => "success").increment(1);
    Ok((user, new_session))
}

/// Signs in with e-mail and password in one call, ending `replacing` (the session the request
/// came with) on success. Only the account's own password signs in here: app passwords are for
/// clients that cannot run a flow, and work in a flow only where its password stage allows them.
/// Unknown accounts, wrong passwords, inactive accounts and accounts that may not sign in
/// interactively all fail the same way, after the same work.
/// Whether an account may start a session with its password alone. The rule belongs to what
/// asks for second factors (the sign-in flow's validation stage and the account's devices), so
/// the caller supplies it.
#[async_trait::async_trait]
pub trait PasswordAlone: Send + Sync {
    /// Whether `user`'s password, just verified, is all it takes.
    async fn suffices(&self, state: &AppState, user: &user::Model) -> Result<bool>;
}

/// What the JSON sign-in says to an account that must prove a second factor: where the sign-in
/// flow that asks for it is.
fn second_factor_needed(state: &AppState) -> String {
    format!(
        "This account signs in with a second factor: use the sign-in flow (/api/v3/flows/executor/{}/).",
        state.config.flows.authentication_flow
    )
}

/// Signs in with an e-mail address and password alone, when `password_alone` says that suffices
/// for the account (checked only once the password is right, so that the answer says nothing
/// about an account to someone who does not know its password).
pub async fn sign_in(
    state: &AppState,
    email: &str,
    password: Password,
    client: &ClientInfo,
    replacing: Option<&session::Model>,
    password_alone: &dyn PasswordAlone,
) -> Result<(user::Model, NewSession)> {
    let email_key = gatehouse_types::identifier_key(email);
    let candidate = if email_key.is_empty() || email_key.len() > 254 {
        None
    } else {
        user::Entity::find()
            .filter(user::Column::TenantId.eq(state.tenant.0))
            .filter(user::Column::EmailKey.eq(email_key))
            .one(&state.db)
            .await?
    };
    match check_password(state, email, candidate, password, client, true, false).await? {
        PasswordCheck::Passed { user, .. } => {
            if !password_alone.suffices(state, &user).await? {
                return Err(Error::field(crate::error::NON_FIELD_ERRORS, second_factor_needed(state)));
            }
            start_session(state, &user, client, state.config.sessions.duration.to_chrono(), replacing).await
        }
        PasswordCheck::Failed => Err(Error::field(crate::error::NON_FIELD_ERRORS, SIGN_IN_FAILED)),
    }
}

/// Ends one session and records the sign-out.
pub async fn sign_out(state: &AppState, current: &session::Model, user: &user::Model, client: &ClientInfo) -> Result<()> {
    let txn = crate::db::begin_write(&state.db).await?;
    end_these(&txn, state, &[current.id]).await?;
    events::service::record(&txn, state, EventRecord::new(Action::Logout).by(user).from_client(client)).await?;
    commit_invalidating(state, txn, Affected::sessions([current.id])).await?;
    Ok(())
}

/// A user's live sessions, newest first.
pub async fn list_for_user(state: &AppState, tenant: TenantId, user_id: i64) -> Result<Vec<session::Model>> {
    Ok(session::Entity::find()
        .filter(session::Column::TenantId.eq(tenant.0))
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::Expires.gt(Utc::now()))
        .order_by_desc(session::Column::Created)
        .all(&state.db)
        .await?)
}

/// Ends one of a user's sessions; `false` when there was no such session.
pub async fn revoke(state: &AppState, tenant: TenantId, user_id: i64, session_id: Uuid) -> Result<bool> {
    let txn = crate::db::begin_write(&state.db).await?;
    let own = session::Entity::find()
        .filter(session::Column::TenantId.eq(tenant.0))
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::Id.eq(session_id))
        .one(&txn)
        .await?;
    let ended = match own {
        Some(own) => end_these(&txn, state, &[own.id]).await?,
        None => 0,
    };
    let affected = if ended > 0 { Affected::sessions([session_id]) } else { Affected::default() };
    commit_invalidating(state, txn, affected).await?;
    Ok(ended > 0)
}

/// Ends every session of a user but `keep`; returns how many ended.
pub async fn revoke_others(state: &AppState, user_id: i64, keep: Option<Uuid>) -> Result<u64> {
    let txn = crate::db::begin_write(&state.db).await?;
    let ended = end_sessions(&txn, state, user_id, keep).await?;
    commit_invalidating(state, txn, Affected::user(user_id)).await?;
    Ok(ended)
}

/// Deletes expired sessions; returns how many.
pub async fn purge_expired(db: &impl sea_orm::ConnectionTrait) -> Result<u64> {
    Ok(session::Entity::delete_many().filter(session::Column::Expires.lt(Utc::now())).exec(db).await?.rows_affected)
}
