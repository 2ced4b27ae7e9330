//! The tokens and codes providers issued to people, as authentik's API shows them
//! (`/oauth2/access_tokens/`, `/oauth2/refresh_tokens/`, `/oauth2/authorization_codes/`):
//! never their text, which is kept only as a keyed digest. Everyone sees and deletes their own.
//! Other people's are seen with the kind's view permission together with the permission to view
//! users (each shows its user as authentik's `User`), and deleted with the kind's delete
//! permission and the right to act on that account. Tokens a client holds for itself (client
//! credentials) belong to no person and are not listed.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Order;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Select};
use serde_json::{Value, json};

use super::entities::{code, token};
use super::providers::ProviderView;
use crate::accounts::access::{Actor, may_act_on};
use crate::accounts::entities::user;
use crate::accounts::permissions::names;
use crate::db::pagination::{ListParams, Paginated, fetch_page};
use crate::error::{Error, Result};
use crate::events::{self, Action, ModelRef};
use crate::state::AppState;

/// The largest number a grant's key may be: JavaScript reads integers up to 2^53 exactly.
const LARGEST_NUMBER: i64 = (1 << 53) - 1;

/// A new grant's key: random, so that it says nothing about how many were issued.
pub fn new_number() -> i64 {
    use rand::Rng;
    rand::thread_rng().gen_range(1..=LARGEST_NUMBER)
}

/// What was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuedKind {
    AccessToken,
    RefreshToken,
    AuthorizationCode,
}

impl IssuedKind {
    fn view_permission(self) -> &'static str {
        match self {
            Self::AccessToken => names::VIEW_ACCESS_TOKEN,
            Self::RefreshToken => names::VIEW_REFRESH_TOKEN,
            Self::AuthorizationCode => names::VIEW_AUTHORIZATION_CODE,
        }
    }

    fn delete_permission(self) -> &'static str {
        match self {
            Self::AccessToken => names::DELETE_ACCESS_TOKEN,
            Self::RefreshToken => names::DELETE_REFRESH_TOKEN,
            Self::AuthorizationCode => names::DELETE_AUTHORIZATION_CODE,
        }
    }

    /// authentik's model name, for the audit trail.
    fn model_name(self) -> &'static str {
        match self {
            Self::AccessToken => "accesstoken",
            Self::RefreshToken => "refreshtoken",
            Self::AuthorizationCode => "authorizationcode",
        }
    }

    /// The `kind` of its rows in the token table (codes have their own table).
    fn token_kind(self) -> Option<&'static str> {
        match self {
            Self::AccessToken => Some(super::grants::ACCESS),
            Self::RefreshToken => Some(super::grants::REFRESH),
            Self::AuthorizationCode => None,
        }
    }
}

/// Filters of the lists.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IssuedFilter {
    /// The provider's pk.
    pub provider: Option<i64>,
    /// The person's pk.
    pub user: Option<i64>,
}

/// One token or code, with its provider and person.
#[derive(Debug, Clone)]
pub struct IssuedView {
    pub number: i64,
    pub provider: ProviderView,
    pub user: user::Model,
    pub expires: DateTime<Utc>,
    pub scope: Vec<String>,
    /// Whether a token was revoked or (a refresh token) used; `None` for a code.
    pub revoked: Option<bool>,
    /// The identity claims of a token's ID tokens, unsigned; `None` for a code.
    pub id_token_claims: Option<Value>,
}

impl IssuedView {
    /// Whether it has expired.
    pub fn is_expired(&self) -> bool {
        self.expires <= Utc::now()
    }
}

/// A row of either table, reduced to what the views show.
struct Grant {
    number: i64,
    provider_id: i64,
    user_id: i64,
    expires: DateTime<Utc>,
    scope: String,
    created: DateTime<Utc>,
    auth_time: DateTime<Utc>,
    /// A token's: revoked, issuer, and whether its grant came through a session (its family).
    token: Option<(bool, Option<String>, Option<uuid::Uuid>)>,
}

impl From<token::Model> for Grant {
    fn from(t: token::Model) -> Self {
        let family = t.session_id.map(|_| t.family_id);
        Self {
            number: t.number.unwrap_or_default(),
            provider_id: t.provider_id,
            user_id: t.user_id.unwrap_or_default(),
            expires: t.expires,
            scope: t.scope,
            created: t.created,
            auth_time: t.auth_time,
            token: Some((t.revoked, t.issuer, family)),
        }
    }
}

impl From<code::Model> for Grant {
    fn from(c: code::Model) -> Self {
        Self {
            number: c.number.unwrap_or_default(),
            provider_id: c.provider_id,
            user_id: c.user_id,
            expires: c.expires,
            scope: c.scope,
            created: c.created,
            auth_time: c.auth_time,
            token: None,
        }
    }
}

/// Whether `actor` may see other people's grants of `kind` (and the accounts they show).
fn sees_others(actor: &Actor, kind: IssuedKind) -> bool {
    actor.rights.has(kind.view_permission()) && actor.rights.has(names::VIEW_USER)
}

/// The person `actor` is, for lists of their own.
fn signed_in(actor: &Actor) -> Result<&user::Model> {
    actor.user.as_ref().ok_or(Error::PermissionDenied)
}

/// The people whose grants `actor` may list with `filter`: `None` for anyone; an empty list when
/// the filter names someone else the caller may not see.
fn visible_user(actor: &Actor, kind: IssuedKind, filter: &IssuedFilter) -> Result<Option<Option<i64>>> {
    let me = signed_in(actor)?;
    if sees_others(actor, kind) {
        return Ok(Some(filter.user));
    }
    Ok(match filter.user {
        Some(other) if other != me.id => None,
        _ => Some(Some(me.id)),
    })
}

fn tokens(state: &AppState, kind: &'static str, provider: Option<i64>, person: Option<i64>) -> Select<token::Entity> {
    let mut select = token::Entity::find()
        .filter(token::Column::TenantId.eq(state.tenant.0))
        .filter(token::Column::Kind.eq(kind))
        .filter(token::Column::UserId.is_not_null())
        .filter(token::Column::Number.is_not_null());
    if let Some(provider) = provider {
        select = select.filter(token::Column::ProviderId.eq(provider));
    }
    if let Some(person) = person {
        select = select.filter(token::Column::UserId.eq(person));
    }
    select
}

fn codes(state: &AppState, provider: Option<i64>, person: Option<i64>) -> Select<code::Entity> {
    // A code is spent once exchanged; its row stays only to catch a replay.
    let mut select = code::Entity::find()
        .filter(code::Column::TenantId.eq(state.tenant.0))
        .filter(code::Column::UsedAt.is_null())
        .filter(code::Column::Number.is_not_null());
    if let Some(provider) = provider {
        select = select.filter(code::Column::ProviderId.eq(provider));
    }
    if let Some(person) = person {
        select = select.filter(code::Column::UserId.eq(person));
    }
    select
}

/// One page of the grants of `kind` the caller may see, by provider unless `ordering` names
/// `expires` or `provider` (rows without a number, written by an older process, are not shown).
pub async fn list(
    state: &AppState,
    actor: &Actor,
    kind: IssuedKind,
    filter: &IssuedFilter,
    params: &ListParams,
) -> Result<Paginated<IssuedView>> {
    let request = params.page_request(&state.config.api)?;
    let Some(person) = visible_user(actor, kind, filter)? else {
        return Ok(Paginated::new(request, 0, Vec::new()));
    };
    let page: Paginated<Grant> = match kind.token_kind() {
        Some(token_kind) => {
            let select = tokens(state, token_kind, filter.provider, person);
            let allowed = [("expires", token::Column::Expires), ("provider", token::Column::ProviderId)];
            let select = params.apply_ordering(select, &allowed, (token::Column::ProviderId, Order::Asc), token::Column::Number)?;
            fetch_page(&state.db, select, request).await?.map(Grant::from)
        }
        None => {
            let select = codes(state, filter.provider, person);
            let allowed = [("expires", code::Column::Expires), ("provider", code::Column::ProviderId)];
            let select = params.apply_ordering(select, &allowed, (code::Column::ProviderId, Order::Asc), code::Column::Number)?;
            fetch_page(&state.db, select, request).await?.map(Grant::from)
        }
    };
    let Paginated { pagination, results, autocomplete } = page;
    Ok(Paginated { pagination, results: render(state, results).await?, autocomplete })
}

async fn find(state: &AppState, kind: IssuedKind, number: i64) -> Result<Option<Grant>> {
    Ok(match kind.token_kind() {
        Some(token_kind) => {
            tokens(state, token_kind, None, None).filter(token::Column::Number.eq(number)).one(&state.db).await?.map(Grant::from)
        }
        None => codes(state, None, None).filter(code::Column::Number.eq(number)).one(&state.db).await?.map(Grant::from),
    })
}

/// The grant of `kind` numbered `number`, if the caller may see it.
pub async fn get(state: &AppState, actor: &Actor, kind: IssuedKind, number: i64) -> Result<IssuedView> {
    let me = signed_in(actor)?;
    let grant = find(state, kind, number).await?.ok_or(Error::NotFound)?;
    if grant.user_id != me.id && !sees_others(actor, kind) {
        return Err(Error::NotFound);
    }
    render(state, vec![grant]).await?.pop().ok_or(Error::NotFound)
}

/// Deletes the grant of `kind` numbered `number`: the caller's own, or another account's with
/// the delete permission and the right to act on that account. A deleted token stops working at
/// once, in every process.
pub async fn delete(state: &AppState, actor: &Actor, kind: IssuedKind, number: i64) -> Result<()> {
    let view = get(state, actor, kind, number).await?;
    if !actor.is(view.user.id) {
        actor.require(kind.delete_permission())?;
        may_act_on(&state.db, state, actor, view.user.id).await?;
    }
    let txn = crate::db::begin_write(&state.db).await?;
    let deleted = match kind.token_kind() {
        Some(token_kind) => {
            token::Entity::delete_many()
                .filter(token::Column::TenantId.eq(state.tenant.0))
                .filter(token::Column::Kind.eq(token_kind))
                .filter(token::Column::Number.eq(number))
                .exec(&txn)
                .await?
                .rows_affected
        }
        None => {
            code::Entity::delete_many()
                .filter(code::Column::TenantId.eq(state.tenant.0))
                .filter(code::Column::Number.eq(number))
                .filter(code::Column::UsedAt.is_null())
                .exec(&txn)
                .await?
                .rows_affected
        }
    };
    if deleted == 0 {
        return Err(Error::NotFound);
    }
    let about = ModelRef {
        app: "authentik_providers_oauth2",
        model_name: kind.model_name(),
        pk: json!(number),
        name: view.provider.provider.name.clone(),
    };
    let event = actor.event(Action::ModelDeleted).about(&about).with("user", json!({"pk": view.user.id, "username": view.user.username}));
    events::service::record(&txn, state, event).await?;
    super::cache::commit_change(state, txn).await?;
    Ok(())
}

/// `grants` with their providers and people, in the same order (a grant whose provider or
/// person went meanwhile is left out).
async fn render(state: &AppState, grants: Vec<Grant>) -> Result<Vec<IssuedView>> {
    let provider_ids: Vec<i64> = grants.iter().map(|g| g.provider_id).collect();
    let user_ids: Vec<i64> = grants.iter().map(|g| g.user_id).collect();
    let providers = super::providers::views_by_ids(&state.db, state.tenant, &provider_ids).await?;
    let users: HashMap<i64, user::Model> =
        crate::accounts::users::find_users(&state.db, state.tenant, &user_ids).await?.into_iter().map(|u| (u.id, u)).collect();
    Ok(grants
        .into_iter()
        .filter_map(|grant| {
            let provider = providers.get(&grant.provider_id)?.clone();
            let user = users.get(&grant.user_id)?.clone();
            let id_token_claims = grant.token.as_ref().map(|(_, issuer, family)| {
                let mut claims = json!({
                    "iss": issuer,
                    "sub": super::claims::subject(state, &provider.provider, &user),
                    "aud": provider.provider.client_id,
                    "exp": grant.expires.timestamp(),
                    "iat": grant.created.timestamp(),
                    "auth_time": grant.auth_time.timestamp(),
                });
                if let Some(family) = family {
                    claims["sid"] = json!(super::backchannel::session_claim(state, *family));
                }
                claims
            });
            Some(IssuedView {
                number: grant.number,
                expires: grant.expires,
                scope: grant.scope.split_whitespace().map(str::to_owned).collect(),
                revoked: grant.token.as_ref().map(|(revoked, _, _)| *revoked),
                id_token_claims,
                provider,
                user,
            })
        })
        .collect())
}
