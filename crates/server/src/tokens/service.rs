//! Storage and rules of tokens, and the API-key check on every bearer request.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, IntoActiveModel, JoinType, Order, PaginatorTrait,
    QueryFilter, QuerySelect, Set,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::entities::{token, token_tag};
use super::key::{KeyKind, SecretKey};
use super::seal;
use crate::accounts::access::{self, Actor};
use crate::accounts::entities::user;
use crate::accounts::permissions::names;
use crate::credentials::attempts::{self, Bucket};
use crate::credentials::cache::{Affected, AuthContext};
use crate::credentials::limits::Limits;
use crate::db::pagination::{ListParams, Paginated, fetch_page, ilike};
use crate::error::{Error, FieldErrors, NON_FIELD_ERRORS, Result};
use crate::events::{self, Action, ModelRef};
use crate::secret::ServerSecret;
use crate::state::AppState;
use crate::tenants::TenantId;

/// Uses are recorded at most this often per key.
const LAST_USED_RESOLUTION: TimeDelta = TimeDelta::seconds(60);

pub use super::entities::Intent;

/// An identifier: 1 to 255 letters, digits, `-` and `_`.
pub fn parse_identifier(text: &str) -> Result<String, String> {
    if !text.is_empty() && text.len() <= 255 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        Ok(text.to_owned())
    } else {
        Err("Enter a valid identifier: 1 to 255 letters, digits, hyphens or underscores.".into())
    }
}

/// Token identifiers that start with this belong to service accounts (their app passwords are
/// `service-account-<name>-password`) and are made only with the service account.
pub const SERVICE_ACCOUNT_PREFIX: &str = "service-account-";

/// What someone choosing an identifier in the service accounts' namespace is told.
pub const RESERVED_IDENTIFIER: &str = "Identifiers starting with service-account- are reserved for service accounts.";

fn is_reserved(identifier: &str) -> bool {
    identifier.to_ascii_lowercase().starts_with(SERVICE_ACCOUNT_PREFIX)
}

/// A tag: 1 to 64 lower-case letters, digits and `-_.:`.
pub fn parse_tag(text: &str) -> Result<String, String> {
    let tag = text.trim().to_lowercase();
    if !tag.is_empty() && tag.len() <= 64 && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) {
        Ok(tag)
    } else {
        Err(format!("\"{text}\" is not a valid tag: 1 to 64 letters, digits and - _ . : characters."))
    }
}

/// Everything a token is created with; values parsed.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub identifier: String,
    pub intent: Intent,
    pub user_id: i64,
    pub name: String,
    pub description: String,
    pub managed: Option<String>,
    pub expiring: bool,
    pub expires: Option<DateTime<Utc>>,
    pub tags: Vec<String>,
}

/// Changes to a token; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct TokenChanges {
    pub identifier: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub managed: Option<Option<String>>,
    pub expiring: Option<bool>,
    pub expires: Option<Option<DateTime<Utc>>>,
    pub is_active: Option<bool>,
    pub tags: Option<Vec<String>>,
}

fn key_digest(secret: &ServerSecret, key: &str) -> String {
    secret.digest("token-key", key.as_bytes())
}

fn token_ref(token: &token::Model) -> ModelRef {
    ModelRef { app: "authentik_core", model_name: "token", pk: json!(token.token_uuid), name: token.identifier.clone() }
}

fn audit_json(token: &token::Model) -> Value {
    json!({
        "identifier": token.identifier,
        "intent": token.intent.as_str(),
        "user": token.user_id,
        "name": token.name,
        "description": token.description,
        "expiring": token.expiring,
        "expires": token.expires,
        "is_active": token.is_active,
        "managed": token.managed,
    })
}

/// The expiry a token gets: none when not expiring, the default lifetime when none is given.
/// Only superusers make tokens that never expire or outlive `tokens.max_lifetime`: a key that
/// leaks from anyone else stops working on its own.
/// The bound holds from the token's creation, so no edit stretches a key's life beyond it.
fn resolve_expiry(
    state: &AppState,
    superuser: bool,
    created: DateTime<Utc>,
    expiring: bool,
    expires: Option<DateTime<Utc>>,
    errors: &mut FieldErrors,
) -> Option<DateTime<Utc>> {
    let bounded = !superuser;
    if !expiring {
        if bounded {
            errors.add("expiring", "Only superusers may create tokens that never expire.");
        }
        return None;
    }
    let now = Utc::now();
    let longest = created + state.config.tokens.max_lifetime.to_chrono();
    match expires {
        Some(at) if at <= now => {
            errors.add("expires", "The expiry must be in the future.");
            None
        }
        Some(at) if bounded && at > longest => {
            errors.add("expires", format!("The expiry may be at most {} after the token was created.", state.config.tokens.max_lifetime));
            None
        }
        Some(at) => Some(at),
        None if bounded => Some(std::cmp::min(now + state.config.tokens.default_duration.to_chrono(), longest)),
        None => Some(now + state.config.tokens.default_duration.to_chrono()),
    }
}

/// Refuses unless `actor` may do what `permission` allows to `token`: owners may act on their
/// own tokens; anyone else needs the permission and rights covering the owner's (a key is its
/// owner's power).
pub async fn authorize(db: &impl ConnectionTrait, state: &AppState, actor: &Actor, token: &token::Model, permission: &str) -> Result<()> {
    if actor.is(token.user_id) {
        return Ok(());
    }
    actor.require(permission)?;
    access::may_act_on(db, state, actor, token.user_id).await
}

async fn replace_tags(txn: &DatabaseTransaction, tenant: TenantId, token_id: i64, tags: &[String]) -> Result<()> {
    token_tag::Entity::delete_many()
        .filter(token_tag::Column::TenantId.eq(tenant.0))
        .filter(token_tag::Column::TokenId.eq(token_id))
        .exec(txn)
        .await?;
    let unique: BTreeSet<&String> = tags.iter().collect();
    if !unique.is_empty() {
        let rows = unique.into_iter().map(|tag| token_tag::ActiveModel {
            tenant_id: Set(tenant.0),
            token_id: Set(token_id),
            tag: Set(tag.clone()),
        });
        token_tag::Entity::insert_many(rows).exec_without_returning(txn).await?;
    }
    Ok(())
}

/// How recently someone must have signed in to create, read or replace one of their app
/// passwords: a stolen session must not become a password that outlives it.
pub const APP_PASSWORD_SIGN_IN_WINDOW: TimeDelta = TimeDelta::minutes(5);

/// What a stale session is told when it asks for an app password.
pub const APP_PASSWORD_NEEDS_FRESH_SIGN_IN: &str =
    "App passwords can only be created, shown or replaced within 5 minutes of signing in; sign in again and retry.";

/// Refuses to hand out an app password's key (new, shown or replaced) unless `actor` signed in
/// within [`APP_PASSWORD_SIGN_IN_WINDOW`] or is a superuser.
async fn require_fresh_sign_in(db: &impl ConnectionTrait, state: &AppState, actor: &Actor, intent: Intent, field: &str) -> Result<()> {
    if intent != Intent::AppPassword || actor.signed_in_within(APP_PASSWORD_SIGN_IN_WINDOW) {
        return Ok(());
    }
    if access::is_superuser_now(db, state, actor).await? {
        return Ok(());
    }
    Err(Error::field(field, APP_PASSWORD_NEEDS_FRESH_SIGN_IN))
}

/// Creates a token with a fresh key for the actor, or for anyone when the actor is a superuser
/// (authentik gives everyone else their own tokens only).
pub async fn create(state: &AppState, actor: &Actor, new: NewToken) -> Result<(token::Model, SecretKey)> {
    let txn = crate::db::begin_write(&state.db).await?;
    let superuser = access::is_superuser_now(&txn, state, actor).await?;
    if !actor.is(new.user_id) && !superuser {
        return Err(Error::PermissionDenied);
    }
    if is_reserved(&new.identifier) {
        // Said before any lookup, so probing the namespace shows nothing about who holds what.
        return Err(Error::field("identifier", RESERVED_IDENTIFIER));
    }
    require_fresh_sign_in(&txn, state, actor, new.intent, "intent").await?;
    let created = insert_in(&txn, state, superuser, actor, new).await?;
    txn.commit().await?;
    Ok(created)
}

/// Creates a token with a fresh key inside `txn`, enforcing the per-user limit of live keys
/// atomically. The caller has decided that `actor` may give `new.user_id` a token, and read in
/// `txn` whether `actor` is a `superuser` (who alone makes tokens without the lifetime bound).
pub(super) async fn insert_in(
    txn: &DatabaseTransaction,
    state: &AppState,
    superuser: bool,
    actor: &Actor,
    new: NewToken,
) -> Result<(token::Model, SecretKey)> {
    let tenant = state.tenant;
    let mut errors = FieldErrors::new();
    let expires = resolve_expiry(state, superuser, Utc::now(), new.expiring, new.expires, &mut errors);
    // Writing the owner's row first serialises concurrent creations for that user on both
    // databases (a row lock on PostgreSQL, the write lock on SQLite), so the count below cannot
    // race with another insert.
    let locked = user::Entity::update_many()
        .col_expr(user::Column::LastUpdated, Expr::col(user::Column::LastUpdated))
        .filter(user::Column::Id.eq(new.user_id))
        .filter(user::Column::TenantId.eq(tenant.0))
        .exec(txn)
        .await?;
    let owner = if locked.rows_affected == 1 { user::Entity::find_by_id(new.user_id).one(txn).await? } else { None };
    let Some(owner) = owner else {
        errors.add("user", format!("Invalid pk \"{}\" - object does not exist.", new.user_id));
        return Err(Error::Validation(errors));
    };
    // Staff (superusers and service accounts count) may hold API keys: the `staff` right.
    let may_hold_api_keys = access::account_rights(txn, tenant, &[owner.id]).await?.remove(&owner.id).is_some_and(|r| r.held.staff);
    if new.intent == Intent::Api && !may_hold_api_keys {
        errors.add("intent", "Only staff users and service accounts may hold API keys.");
    }
    let taken = token::Entity::find()
        .filter(token::Column::TenantId.eq(tenant.0))
        .filter(token::Column::Identifier.eq(new.identifier.clone()))
        .one(txn)
        .await?;
    if taken.is_some() {
        errors.add("identifier", "A token with this identifier already exists.");
    }
    let live = token::Entity::find()
        .filter(token::Column::UserId.eq(owner.id))
        .filter(token::Column::IsActive.eq(true))
        .filter(token::Column::Expires.is_null().or(token::Column::Expires.gt(Utc::now())))
        .count(txn)
        .await?;
    let limit = u64::from(state.config.tokens.max_live_per_user);
    if live >= limit {
        errors.add(NON_FIELD_ERRORS, format!("This user already holds the maximum of {limit} live keys."));
    }
    errors.into_result()?;

    let key = SecretKey::generate(new.intent.key_kind());
    let token_uuid = Uuid::new_v4();
    let now = Utc::now();
    let created = token::ActiveModel {
        token_uuid: Set(token_uuid),
        key_id: Set(Uuid::new_v4()),
        tenant_id: Set(tenant.0),
        identifier: Set(new.identifier),
        intent: Set(new.intent),
        user_id: Set(owner.id),
        name: Set(new.name),
        description: Set(new.description),
        managed: Set(new.managed),
        key_digest: Set(key_digest(&state.secret, key.expose())),
        key_sealed: Set(seal::seal(&state.secret, token_uuid, key.expose())?),
        expiring: Set(new.expiring),
        expires: Set(expires),
        is_active: Set(true),
        last_used_at: Set(None),
        created: Set(now),
        last_updated: Set(now),
        ..Default::default()
    }
    .insert(txn)
    .await
    .map_err(|e| match e.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => Error::field("identifier", "A token with this identifier already exists."),
        _ => e.into(),
    })?;
    replace_tags(txn, tenant, created.id, &new.tags).await?;
    let diff = events::service::diff(&json!({}), &audit_json(&created));
    events::service::record(txn, state, actor.event(Action::ModelCreated).about(&token_ref(&created)).with("diff", diff)).await?;
    Ok((created, key))
}

/// The token `identifier`, if `actor` may see it: its owner, or a holder of `view_token`. Others
/// get 404, which does not tell them the identifier exists.
pub async fn get_visible(state: &AppState, actor: &Actor, identifier: &str) -> Result<token::Model> {
    let token = find(&state.db, state.tenant, identifier).await?.ok_or(Error::NotFound)?;
    if actor.is(token.user_id) || actor.rights.has(names::VIEW_TOKEN) { Ok(token) } else { Err(Error::NotFound) }
}

/// A token of the tenant by identifier.
pub async fn find(db: &impl ConnectionTrait, tenant: TenantId, identifier: &str) -> Result<Option<token::Model>> {
    Ok(token::Entity::find().filter(token::Column::TenantId.eq(tenant.0)).filter(token::Column::Identifier.eq(identifier)).one(db).await?)
}

/// Filters of the token list.
#[derive(Debug, Default, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenFilter {
    pub identifier: Option<String>,
    pub intent: Option<String>,
    #[serde(rename = "user__username")]
    #[param(rename = "user__username")]
    pub user_username: Option<String>,
    pub description: Option<String>,
    /// Exact expiry (ISO 8601).
    pub expires: Option<String>,
    pub expiring: Option<String>,
    pub managed: Option<String>,
    /// Gatehouse: only tokens carrying this tag.
    pub tag: Option<String>,
    /// Gatehouse: `true` or `false`.
    pub is_active: Option<String>,
}

/// One page of the tokens `actor` may see: its own, or everyone's with `view_token`.
pub async fn list(state: &AppState, actor: &Actor, filter: &TokenFilter, params: &ListParams) -> Result<Paginated<token::Model>> {
    let owner = match &actor.user {
        Some(user) if !actor.rights.has(names::VIEW_TOKEN) => Some(user.id),
        _ => None,
    };
    let tenant = state.tenant;
    let page = params.page_request(&state.config.api)?;
    let mut select = token::Entity::find().filter(token::Column::TenantId.eq(tenant.0));
    if let Some(owner) = owner {
        select = select.filter(token::Column::UserId.eq(owner));
    }
    if let Some(identifier) = filter.identifier.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(token::Column::Identifier.eq(identifier));
    }
    if let Some(intent) = filter.intent.as_deref().filter(|v| !v.is_empty()) {
        let intent = Intent::parse(intent).map_err(|m| Error::field("intent", m))?;
        select = select.filter(token::Column::Intent.eq(intent));
    }
    if let Some(username) = filter.user_username.as_deref().filter(|v| !v.is_empty()) {
        let ids: Vec<i64> = user::Entity::find()
            .filter(user::Column::TenantId.eq(tenant.0))
            .filter(user::Column::UsernameKey.eq(gatehouse_types::identifier_key(username)))
            .all(&state.db)
            .await?
            .into_iter()
            .map(|u| u.id)
            .collect();
        select = select.filter(token::Column::UserId.is_in(ids));
    }
    if let Some(description) = filter.description.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(token::Column::Description.eq(description));
    }
    if let Some(expires) = filter.expires.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(token::Column::Expires.eq(crate::accounts::parse_datetime("expires", expires)?));
    }
    if let Some(expiring) = filter.expiring.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(token::Column::Expiring.eq(crate::db::pagination::parse_bool("expiring", expiring)?));
    }
    if let Some(active) = filter.is_active.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(token::Column::IsActive.eq(crate::db::pagination::parse_bool("is_active", active)?));
    }
    if let Some(managed) = filter.managed.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(token::Column::Managed.eq(managed));
    }
    if let Some(tag) = filter.tag.as_deref().filter(|v| !v.is_empty()) {
        let tag = parse_tag(tag).map_err(|m| Error::field("tag", m))?;
        let ids: Vec<i64> = token_tag::Entity::find()
            .filter(token_tag::Column::TenantId.eq(tenant.0))
            .filter(token_tag::Column::Tag.eq(tag))
            .all(&state.db)
            .await?
            .into_iter()
            .map(|t| t.token_id)
            .collect();
        select = select.filter(token::Column::Id.is_in(ids));
    }
    if let Some(pattern) = params.search_pattern() {
        select = select.filter(
            ilike(token::Column::Identifier, &pattern)
                .or(ilike(token::Column::Description, &pattern))
                .or(ilike(token::Column::Name, &pattern)),
        );
    }
    let select = params.apply_ordering(
        select,
        &[
            ("identifier", token::Column::Identifier),
            ("expires", token::Column::Expires),
            ("created", token::Column::Created),
            ("last_used_at", token::Column::LastUsedAt),
            ("name", token::Column::Name),
        ],
        (token::Column::Identifier, Order::Asc),
        token::Column::Id,
    )?;
    fetch_page(&state.db, select, page).await
}

/// Tags of tokens, by token id.
pub async fn tags_of(db: &impl ConnectionTrait, tenant: TenantId, ids: &[i64]) -> Result<HashMap<i64, Vec<String>>> {
    let mut tags: HashMap<i64, Vec<String>> = HashMap::new();
    for row in token_tag::Entity::find()
        .filter(token_tag::Column::TenantId.eq(tenant.0))
        .filter(token_tag::Column::TokenId.is_in(ids.iter().copied()))
        .all(db)
        .await?
    {
        tags.entry(row.token_id).or_default().push(row.tag);
    }
    for list in tags.values_mut() {
        list.sort();
    }
    Ok(tags)
}

/// Applies changes, and drops cached key checks everywhere.
pub async fn update(state: &AppState, actor: &Actor, before: &token::Model, changes: TokenChanges) -> Result<token::Model> {
    let mut errors = FieldErrors::new();
    let txn = crate::db::begin_write(&state.db).await?;
    authorize(&txn, state, actor, before, names::CHANGE_TOKEN).await?;
    let superuser = access::is_superuser_now(&txn, state, actor).await?;
    if let Some(identifier) = &changes.identifier
        && identifier != &before.identifier
    {
        if is_reserved(identifier) {
            errors.add("identifier", RESERVED_IDENTIFIER);
        } else if find(&txn, state.tenant, identifier).await?.is_some() {
            errors.add("identifier", "A token with this identifier already exists.");
        }
    }
    let expiring = changes.expiring.unwrap_or(before.expiring);
    let expires = match (changes.expiring, changes.expires) {
        (_, Some(expires)) => resolve_expiry(state, superuser, before.created, expiring, expires, &mut errors),
        (Some(_), None) => resolve_expiry(state, superuser, before.created, expiring, before.expires, &mut errors),
        (None, None) => before.expires,
    };
    errors.into_result()?;
    let mut model = before.clone().into_active_model();
    if let Some(identifier) = changes.identifier {
        model.identifier = Set(identifier);
    }
    if let Some(name) = changes.name {
        model.name = Set(name);
    }
    if let Some(description) = changes.description {
        model.description = Set(description);
    }
    if let Some(managed) = changes.managed {
        model.managed = Set(managed);
    }
    if let Some(is_active) = changes.is_active {
        model.is_active = Set(is_active);
    }
    model.expiring = Set(expiring);
    model.expires = Set(expires);
    model.last_updated = Set(Utc::now());
    let after = model.update(&txn).await?;
    if let Some(tags) = &changes.tags {
        replace_tags(&txn, state.tenant, after.id, tags).await?;
    }
    let diff = events::service::diff(&audit_json(before), &audit_json(&after));
    events::service::record(&txn, state, actor.event(Action::ModelUpdated).about(&token_ref(&after)).with("diff", diff)).await?;
    crate::credentials::revoke::commit_invalidating(state, txn, Affected::token(after.id)).await?;
    Ok(after)
}

/// Deletes a token; its key stops working at once.
pub async fn delete(state: &AppState, actor: &Actor, token: &token::Model) -> Result<()> {
    let txn = crate::db::begin_write(&state.db).await?;
    authorize(&txn, state, actor, token, names::DELETE_TOKEN).await?;
    token::Entity::delete_by_id(token.id).exec(&txn).await?;
    events::service::record(&txn, state, actor.event(Action::ModelDeleted).about(&token_ref(token))).await?;
    crate::credentials::revoke::commit_invalidating(state, txn, Affected::token(token.id)).await?;
    Ok(())
}

/// Opens the sealed key and records who looked (`secret_view`).
pub async fn view_key(state: &AppState, actor: &Actor, token: &token::Model) -> Result<String> {
    authorize(&state.db, state, actor, token, names::VIEW_TOKEN_KEY).await?;
    require_fresh_sign_in(&state.db, state, actor, token.intent, NON_FIELD_ERRORS).await?;
    let key = seal::open(&state.secret, token.token_uuid, &token.key_sealed)?;
    events::service::record(&state.db, state, actor.event(Action::SecretView).about(&token_ref(token))).await?;
    Ok(key)
}

/// Replaces the key (with one the caller supplies, or a new one) and drops cached checks of the
/// old key everywhere. Records `secret_rotate`.
pub async fn replace_key(state: &AppState, actor: &Actor, token: &token::Model, key: Option<SecretKey>) -> Result<()> {
    let txn = crate::db::begin_write(&state.db).await?;
    authorize(&txn, state, actor, token, names::SET_TOKEN_KEY).await?;
    let intent = token.intent;
    require_fresh_sign_in(&txn, state, actor, intent, NON_FIELD_ERRORS).await?;
    let key = match key {
        Some(key) if key.kind() != intent.key_kind() => {
            return Err(Error::field("key", format!("This token's keys start with gatehouse_{}_.", intent.key_kind().code())));
        }
        Some(key) if !key.looks_random() => {
            return Err(Error::field("key", "This key is not random enough; let Gatehouse generate one with rotate/."));
        }
        Some(key) => key,
        None => SecretKey::generate(intent.key_kind()),
    };
    let digest = key_digest(&state.secret, key.expose());
    let clash = token::Entity::find()
        .filter(token::Column::TenantId.eq(state.tenant.0))
        .filter(token::Column::KeyDigest.eq(digest.clone()))
        .filter(token::Column::Id.ne(token.id))
        .one(&txn)
        .await?;
    if clash.is_some() {
        return Err(Error::field("key", "This key is already in use."));
    }
    let mut model = token.clone().into_active_model();
    model.key_digest = Set(digest);
    model.key_sealed = Set(seal::seal(&state.secret, token.token_uuid, key.expose())?);
    model.last_updated = Set(Utc::now());
    model.update(&txn).await?;
    events::service::record(&txn, state, actor.event(Action::SecretRotate).about(&token_ref(token))).await?;
    crate::credentials::revoke::commit_invalidating(state, txn, Affected::token(token.id)).await?;
    Ok(())
}

/// The buckets a key that is not known good counts toward as a guess before it is looked up:
/// keys with its prefix from the caller's address, and the address's ceiling. Every kind of key
/// (API keys, enrollment and device keys) counts toward the same allowance.
fn key_guess_buckets(state: &AppState, key: &SecretKey, from: Option<std::net::IpAddr>) -> Vec<Bucket> {
    match from {
        Some(ip) => {
            let prefix_digest = state.secret.digest("key-prefix", key.prefix().as_bytes());
            vec![
                Bucket::address_and_key_prefix(ip, &prefix_digest[..16], Limits::per_address(&state.config.sign_in)),
                Bucket::address_key_ceiling(ip, state.config.sign_in.max_failures_per_ip_hour),
            ]
        }
        None => Vec::new(),
    }
}

/// Reserves a key as a guess ([`key_guess_buckets`]); the caller settles it as a success once
/// the key turns out to exist.
async fn reserve_key_guess(state: &AppState, key: &SecretKey, from: Option<std::net::IpAddr>) -> Result<attempts::Reservation> {
    attempts::reserve(&state.db, state.tenant, state.clock.now(), key_guess_buckets(state, key, from)).await
}

/// Looks `key` up with `lookup` under the guessing limits ([`attempts::look_up`]). Found means
/// issued, live or not: a client retrying with a retired key must not use up its address's
/// allowance for the others.
pub async fn look_up_key<T: Send + 'static>(
    state: &AppState,
    key: &SecretKey,
    from: Option<std::net::IpAddr>,
    lookup: impl Future<Output = Result<Option<T>>> + Send + 'static,
) -> Result<Option<T>> {
    attempts::look_up(&state.db, state.tenant, state.clock.now(), key_guess_buckets(state, key, from), lookup).await
}

/// Checks an API key: format and checksum first (no database), then the in-process cache,
/// then the database. Expiry is enforced here, on every check.
pub async fn authenticate(state: &AppState, text: &str, from: Option<std::net::IpAddr>) -> Result<Option<Arc<AuthContext>>> {
    let Ok(key) = SecretKey::parse(text) else { return Ok(None) };
    if key.kind() != KeyKind::Api {
        return Ok(None);
    }
    let digest = key_digest(&state.secret, key.expose());
    let now = Utc::now();
    if let Some(context) = state.auth_cache.get(&digest) {
        return Ok(from_cache(state, digest, context, now));
    }
    // On a task of its own, from the wait for the key's turn to the cache's update, so that the
    // reservation is settled even when the request goes away (and the queries' large futures
    // stay off every request's future, cached or not).
    attempts::run_to_end(authenticate_uncached(state.clone(), key, digest, from, now)).await
}

/// The rest of [`authenticate`] for a key the cache does not hold: one check at a time per key.
async fn authenticate_uncached(
    state: AppState,
    key: SecretKey,
    digest: String,
    from: Option<std::net::IpAddr>,
    now: DateTime<Utc>,
) -> Result<Option<Arc<AuthContext>>> {
    let _turn = state.auth_cache.turn(&digest).await;
    if let Some(context) = state.auth_cache.get(&digest) {
        return Ok(from_cache(&state, digest, context, now));
    }
    state.auth_cache.missed();
    let reservation = reserve_key_guess(&state, &key, from).await?;
    let generation = state.auth_cache.generation();
    // One statement for the key and its (active) user, one for the user's rights and groups.
    let found = token::Entity::find()
        .select_also(user::Entity)
        .join(JoinType::InnerJoin, token::Entity::belongs_to(user::Entity).from(token::Column::UserId).to(user::Column::Id).into())
        .filter(token::Column::KeyDigest.eq(digest.as_str()))
        .filter(token::Column::TenantId.eq(state.tenant.0))
        .filter(user::Column::TenantId.eq(state.tenant.0))
        .filter(user::Column::IsActive.eq(true))
        .one(&state.db)
        .await?;
    let Some((token, Some(user))) = found else { return Ok(None) };
    let Some(mut token) = live(token, &digest, Intent::Api, now) else { return Ok(None) };
    let (permissions, groups) = access::access_of(&state.db, &user).await?;
    // A user who is no longer staff keeps their keys but cannot use them.
    if !permissions.staff {
        return Ok(None);
    }
    reservation.settle_success(&state.db).await?;
    if token.last_used_at.is_none_or(|at| now - at > LAST_USED_RESOLUTION) {
        state.token_usage.record(token.id, now);
        token.last_used_at = Some(now);
    }
    let context = Arc::new(AuthContext { session: None, token: Some(token), user, permissions, groups, own_view: Default::default() });
    state.auth_cache.put(digest, generation, context.clone());
    Ok(Some(context))
}

/// The answer for a key found in the cache, recording its use when due.
fn from_cache(state: &AppState, digest: String, context: Arc<AuthContext>, now: DateTime<Utc>) -> Option<Arc<AuthContext>> {
    let token = context.token.as_ref()?;
    if context.expires().is_some_and(|at| at <= now) {
        return None;
    }
    if token.last_used_at.is_none_or(|at| now - at > LAST_USED_RESOLUTION) {
        state.token_usage.record(token.id, now);
        let mut refreshed = (*context).clone();
        if let Some(token) = refreshed.token.as_mut() {
            token.last_used_at = Some(now);
        }
        state.auth_cache.refresh(&digest, &context, Arc::new(refreshed));
    }
    Some(context)
}

/// Whether `text` is a live app password of `user_id`; used by sign-in in place of the password.
pub async fn verify_app_password(state: &AppState, user_id: i64, text: &str) -> Result<bool> {
    let Ok(key) = SecretKey::parse(text) else { return Ok(false) };
    if key.kind() != KeyKind::AppPassword {
        return Ok(false);
    }
    let digest = key_digest(&state.secret, key.expose());
    let now = Utc::now();
    match find_live(state, &digest, Intent::AppPassword, now).await? {
        Some(token) if token.user_id == user_id => {
            state.token_usage.record(token.id, now);
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// The active, unexpired token of `intent` whose key has `digest`.
async fn find_live(state: &AppState, digest: &str, intent: Intent, now: DateTime<Utc>) -> Result<Option<token::Model>> {
    let token = token::Entity::find()
        .filter(token::Column::KeyDigest.eq(digest))
        .filter(token::Column::TenantId.eq(state.tenant.0))
        .one(&state.db)
        .await?;
    Ok(token.and_then(|token| live(token, digest, intent, now)))
}

/// `token` when it is the live token of `intent` whose key has `digest`.
fn live(token: token::Model, digest: &str, intent: Intent, now: DateTime<Utc>) -> Option<token::Model> {
    // The digest lookup already matched; the constant-time comparison keeps it so should the
    // lookup ever become a prefix or range match.
    let live = crate::secret::constant_time_eq(token.key_digest.as_bytes(), digest.as_bytes())
        && token.intent == intent
        && token.is_active
        && !(token.expiring && token.expires.is_some_and(|at| at <= now));
    live.then_some(token)
}

/// Deletes expired single-use tokens (recovery, verification, app passwords); expired API keys
/// stay, switched off by their expiry, so their owners can see and rotate them.
pub async fn purge_expired(db: &impl ConnectionTrait) -> Result<u64> {
    Ok(token::Entity::delete_many()
        .filter(token::Column::Expiring.eq(true))
        .filter(token::Column::Expires.lt(Utc::now()))
        .filter(token::Column::Intent.ne(Intent::Api))
        .exec(db)
        .await?
        .rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_tags_are_parsed() {
        assert!(parse_identifier("deploy-key_1").is_ok());
        for bad in ["", "has space", "slash/", &"x".repeat(256)] {
            assert!(parse_identifier(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_tag(" CI ").unwrap(), "ci");
        assert!(parse_tag("").is_err());
        assert!(parse_tag("no spaces").is_err());
        for intent in ["api", "app_password", "recovery", "verification"] {
            assert_eq!(Intent::parse(intent).unwrap().as_str(), intent);
        }
        assert!(Intent::parse("admin").is_err());
    }
}
