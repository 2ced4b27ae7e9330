//! Enrollment tokens: what a device enrols with under an agent connector. Keys are in Gatehouse's
//! key format (`gatehouse_enr_…`, checksummed) and are found only by a keyed digest; the sealed
//! copy is opened only for `view_key`, which needs its own permission and is recorded.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, Order, QueryFilter, QueryOrder, Set};
use serde_json::{Value, json};
use uuid::Uuid;

use super::access_groups::{groups_by_ids, parse_name};
use super::connectors::connectors_by_ids;
use super::entities::{access_group, connector, enrollment_token};
use crate::accounts::access::Actor;
use crate::accounts::permissions::names;
use crate::db::pagination::{ListParams, Paginated, fetch_page, ilike};
use crate::error::{Error, FieldErrors, Result};
use crate::events::{self, Action, ModelRef};
use crate::secret::ServerSecret;
use crate::state::AppState;
use crate::tenants::TenantId;
use crate::tokens::api::UsedBy;
use crate::tokens::key::{KeyKind, SecretKey};

/// What the digest of an enrollment key is bound to.
const DIGEST_PURPOSE: &str = "enrollment-token";

/// A token with the connector and group it names, as the API shows it.
#[derive(Debug, Clone)]
pub struct TokenView {
    pub token: enrollment_token::Model,
    pub device_group: Option<access_group::Model>,
}

/// Filters of the token list, as authentik names them.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenFilter {
    pub token_uuid: Option<Uuid>,
    /// The connector's id.
    pub connector: Option<Uuid>,
}

/// authentik's `EnrollmentTokenRequest` and its patched form: absent fields keep their value.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The group enrolled devices join.
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<Uuid>)]
    pub device_group: Option<Option<Uuid>>,
    pub connector: Option<Uuid>,
    pub name: Option<String>,
    /// Whether the token expires (`true` unless given).
    pub expiring: Option<bool>,
    /// When it expires; without it an expiring token lasts `tokens.default_duration`.
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires: Option<Option<DateTime<Utc>>>,
}

fn token_ref(token: &enrollment_token::Model) -> ModelRef {
    ModelRef { app: "authentik_endpoints_connectors_agent", model_name: "enrollmenttoken", pk: json!(token.id), name: token.name.clone() }
}

fn shown(token: &enrollment_token::Model) -> Value {
    json!({
        "name": token.name,
        "connector": token.connector_id,
        "device_group": token.device_group_id,
        "expiring": token.expiring,
        "expires": token.expires,
    })
}

/// The keyed digest an enrollment key is found by.
pub fn key_digest(secret: &ServerSecret, key: &str) -> String {
    secret.digest(DIGEST_PURPOSE, key.as_bytes())
}

async fn find(db: &impl ConnectionTrait, tenant: TenantId, id: Uuid) -> Result<enrollment_token::Model> {
    enrollment_token::Entity::find_by_id(id).filter(enrollment_token::Column::TenantId.eq(tenant.0)).one(db).await?.ok_or(Error::NotFound)
}

/// The tokens with their device groups, in two queries whatever their number.
async fn with_groups(db: &impl ConnectionTrait, tenant: TenantId, tokens: Vec<enrollment_token::Model>) -> Result<Vec<TokenView>> {
    let ids: Vec<Uuid> = tokens.iter().filter_map(|t| t.device_group_id).collect();
    let groups = groups_by_ids(db, tenant, &ids).await?;
    Ok(tokens
        .into_iter()
        .map(|token| {
            let device_group = token.device_group_id.and_then(|id| groups.iter().find(|g| g.id == id).cloned());
            TokenView { token, device_group }
        })
        .collect())
}

/// One page of tokens; needs the view permission. `search` matches the token's name and its
/// connector's name.
pub async fn list(state: &AppState, actor: &Actor, filter: &TokenFilter, params: &ListParams) -> Result<Paginated<TokenView>> {
    actor.require(names::VIEW_ENROLLMENT_TOKEN)?;
    let page = params.page_request(&state.config.api)?;
    let mut select = enrollment_token::Entity::find().filter(enrollment_token::Column::TenantId.eq(state.tenant.0));
    if let Some(id) = filter.token_uuid {
        select = select.filter(enrollment_token::Column::Id.eq(id));
    }
    if let Some(id) = filter.connector {
        select = select.filter(enrollment_token::Column::ConnectorId.eq(id));
    }
    if let Some(pattern) = params.search_pattern() {
        let connectors = connector::Entity::find()
            .filter(connector::Column::TenantId.eq(state.tenant.0))
            .filter(ilike(connector::Column::Name, &pattern))
            .all(&state.db)
            .await?;
        select = select.filter(
            sea_orm::Condition::any()
                .add(ilike(enrollment_token::Column::Name, &pattern))
                .add(enrollment_token::Column::ConnectorId.is_in(connectors.into_iter().map(|c| c.id))),
        );
    }
    let select = params.apply_ordering(
        select,
        &[
            ("token_uuid", enrollment_token::Column::Id),
            ("name", enrollment_token::Column::Name),
            ("expires", enrollment_token::Column::Expires),
        ],
        (enrollment_token::Column::Id, Order::Asc),
        enrollment_token::Column::Id,
    )?;
    let Paginated { pagination, results, autocomplete } = fetch_page(&state.db, select, page).await?;
    Ok(Paginated { pagination, results: with_groups(&state.db, state.tenant, results).await?, autocomplete })
}

/// The token `id`; needs the view permission.
pub async fn get(state: &AppState, actor: &Actor, id: Uuid) -> Result<TokenView> {
    actor.require(names::VIEW_ENROLLMENT_TOKEN)?;
    let token = find(&state.db, state.tenant, id).await?;
    let mut views = with_groups(&state.db, state.tenant, vec![token]).await?;
    views.pop().ok_or(Error::NotFound)
}

/// Applies `request` to `row`, checking every field.
async fn apply(
    state: &AppState,
    row: &mut enrollment_token::ActiveModel,
    current: Option<&enrollment_token::Model>,
    request: &TokenRequest,
    full: bool,
) -> Result<()> {
    let mut errors = FieldErrors::new();
    let required = full || current.is_none();
    if let Some(name) = parse_name(request.name.as_deref(), required, &mut errors) {
        row.name = Set(name);
    }
    match request.connector {
        None if required => errors.add("connector", "This field is required."),
        None => {}
        Some(id) if connectors_by_ids(&state.db, state.tenant, &[id]).await?.is_empty() => {
            errors.add("connector", format!("Invalid pk \"{id}\" - object does not exist."));
        }
        Some(id) => row.connector_id = Set(id),
    }
    match request.device_group {
        None => {}
        Some(Some(id)) if groups_by_ids(&state.db, state.tenant, &[id]).await?.is_empty() => {
            errors.add("device_group", format!("Invalid pk \"{id}\" - object does not exist."));
        }
        Some(choice) => row.device_group_id = Set(choice),
    }
    // The expiry is written only when the request names it: a rename racing a revocation (an
    // expiry set in the past) must not put the old expiry back.
    if current.is_none() || request.expiring.is_some() || request.expires.is_some() {
        let expiring = request.expiring.or(current.map(|c| c.expiring)).unwrap_or(true);
        row.expiring = Set(expiring);
        let expires = match request.expires {
            Some(given) => given,
            None => current.and_then(|c| c.expires),
        };
        row.expires = Set(match (expiring, expires) {
            (false, _) => None,
            (true, Some(at)) => Some(at),
            (true, None) => Some(Utc::now() + state.config.tokens.default_duration.to_chrono()),
        });
    }
    errors.into_result()
}

/// Creates a token with a new key (read it through [`view_key`]); needs the add permission.
pub async fn create(state: &AppState, actor: &Actor, request: &TokenRequest) -> Result<TokenView> {
    actor.require(names::ADD_ENROLLMENT_TOKEN)?;
    let id = Uuid::new_v4();
    let key = SecretKey::generate(KeyKind::Enrollment);
    let now = Utc::now();
    let mut row = enrollment_token::ActiveModel {
        id: Set(id),
        tenant_id: Set(state.tenant.0),
        device_group_id: Set(None),
        key_digest: Set(key_digest(&state.secret, key.expose())),
        key_sealed: Set(crate::tokens::seal::seal(&state.secret, id, key.expose())?),
        created: Set(now),
        last_updated: Set(now),
        ..Default::default()
    };
    apply(state, &mut row, None, request, true).await?;
    let txn = crate::db::begin_write(&state.db).await?;
    // The insert fails on its foreign keys if the connector or group went meanwhile.
    let created = row.insert(&txn).await?;
    let diff = events::service::diff(&json!({}), &shown(&created));
    events::service::record(&txn, state, actor.event(Action::ModelCreated).about(&token_ref(&created)).with("diff", diff)).await?;
    txn.commit().await?;
    let mut views = with_groups(&state.db, state.tenant, vec![created]).await?;
    views.pop().ok_or(Error::NotFound)
}

/// Changes the token `id` (never its key); needs the change permission.
pub async fn update(state: &AppState, actor: &Actor, id: Uuid, request: &TokenRequest, full: bool) -> Result<TokenView> {
    actor.require(names::VIEW_ENROLLMENT_TOKEN)?;
    let before = find(&state.db, state.tenant, id).await?;
    actor.require(names::CHANGE_ENROLLMENT_TOKEN)?;
    let mut row = before.clone().into_active_model();
    apply(state, &mut row, Some(&before), request, full).await?;
    row.last_updated = Set(Utc::now());
    let txn = crate::db::begin_write(&state.db).await?;
    find(&txn, state.tenant, id).await?;
    let after = row.update(&txn).await?;
    let diff = events::service::diff(&shown(&before), &shown(&after));
    events::service::record(&txn, state, actor.event(Action::ModelUpdated).about(&token_ref(&after)).with("diff", diff)).await?;
    txn.commit().await?;
    let mut views = with_groups(&state.db, state.tenant, vec![after]).await?;
    views.pop().ok_or(Error::NotFound)
}

/// Deletes the token `id`: devices can no longer enrol with it; needs the delete permission.
pub async fn delete(state: &AppState, actor: &Actor, id: Uuid) -> Result<()> {
    actor.require(names::VIEW_ENROLLMENT_TOKEN)?;
    let txn = crate::db::begin_write(&state.db).await?;
    let token = find(&txn, state.tenant, id).await?;
    actor.require(names::DELETE_ENROLLMENT_TOKEN)?;
    enrollment_token::Entity::delete_by_id(token.id).exec(&txn).await?;
    events::service::record(&txn, state, actor.event(Action::ModelDeleted).about(&token_ref(&token))).await?;
    txn.commit().await?;
    Ok(())
}

/// The key of the token `id`; needs the key permission (asked before looking, so the answer
/// tells nothing of which tokens exist) and records `secret_view`, as authentik does.
pub async fn view_key(state: &AppState, actor: &Actor, id: Uuid) -> Result<String> {
    actor.require(names::VIEW_ENROLLMENT_TOKEN_KEY)?;
    let token = find(&state.db, state.tenant, id).await?;
    let key = crate::tokens::seal::open(&state.secret, token.id, &token.key_sealed)?;
    events::service::record(&state.db, state, actor.event(Action::SecretView).about(&token_ref(&token))).await?;
    Ok(key)
}

fn used_by_row(token: enrollment_token::Model, action: &str) -> UsedBy {
    UsedBy {
        app: "authentik_endpoints_connectors_agent".into(),
        model_name: "enrollmenttoken".into(),
        pk: token.id.to_string(),
        name: token.name,
        action: action.into(),
    }
}

/// The tokens of the connector `id`, as `used_by` lists them (deleted with it).
pub(super) async fn of_connector(db: &impl ConnectionTrait, tenant: TenantId, id: Uuid) -> Result<Vec<UsedBy>> {
    let tokens = enrollment_token::Entity::find()
        .filter(enrollment_token::Column::TenantId.eq(tenant.0))
        .filter(enrollment_token::Column::ConnectorId.eq(id))
        .order_by_asc(enrollment_token::Column::Name)
        .all(db)
        .await?;
    Ok(tokens.into_iter().map(|token| used_by_row(token, "cascade")).collect())
}

/// The tokens that put devices into the group `id`, as `used_by` lists them (left without a
/// group when it goes).
pub(super) async fn naming_group(db: &impl ConnectionTrait, tenant: TenantId, id: Uuid) -> Result<Vec<UsedBy>> {
    let tokens = enrollment_token::Entity::find()
        .filter(enrollment_token::Column::TenantId.eq(tenant.0))
        .filter(enrollment_token::Column::DeviceGroupId.eq(id))
        .order_by_asc(enrollment_token::Column::Name)
        .all(db)
        .await?;
    Ok(tokens.into_iter().map(|token| used_by_row(token, "set_null")).collect())
}
