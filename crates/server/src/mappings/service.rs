//! Webhook mappings: listing, creating, changing and deleting them, under their permissions, each
//! change recorded in the audit trail; and finding one to evaluate.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, IntoActiveModel, Order, QueryFilter, Set};
use serde_json::json;
use uuid::Uuid;

use super::entities::property_mapping;
use super::expression::Expression;
use crate::accounts::access::Actor;
use crate::accounts::permissions::names;
use crate::db::pagination::{ListParams, Paginated, fetch_page, ilike};
use crate::error::{Error, FieldErrors, Result};
use crate::events::{self, Action, ModelRef};
use crate::state::AppState;
use crate::tenants::TenantId;

/// The kind of mapping an SMS stage's `mapping` names.
const WEBHOOK: &str = "notification";

/// Filters of the mapping list.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MappingFilter {
    /// Exact name.
    pub name: Option<String>,
}

/// A webhook mapping as written: a name and a parsed expression.
#[derive(Debug, Clone)]
pub struct WebhookMapping {
    pub name: String,
    pub expression: Expression,
}

impl WebhookMapping {
    /// Parses a name and an expression, naming the fields that are wrong.
    pub async fn parse(name: Option<&str>, expression: Option<&str>) -> Result<Self> {
        let mut errors = FieldErrors::new();
        let name = match name.map(str::trim) {
            None | Some("") => {
                errors.add("name", "This field is required.");
                None
            }
            Some(name) if name.chars().count() > 200 => {
                errors.add("name", "Ensure this field has no more than 200 characters.");
                None
            }
            Some(name) => Some(name.to_owned()),
        };
        let expression = match expression {
            None => {
                errors.add("expression", "This field is required.");
                None
            }
            Some(source) => Expression::parse(source).await.map_err(|message| errors.add("expression", message)).ok(),
        };
        match (name, expression) {
            (Some(name), Some(expression)) if errors.is_empty() => Ok(Self { name, expression }),
            _ => Err(Error::Validation(errors)),
        }
    }
}

fn mapping_ref(mapping: &property_mapping::Model) -> ModelRef {
    ModelRef {
        app: "authentik_events",
        model_name: "notificationwebhookmapping",
        pk: json!(mapping.id.to_string()),
        name: mapping.name.clone(),
    }
}

/// The error of a write that clashed with another mapping's name (names are unique across kinds),
/// on `name`; other database errors as they are.
pub fn name_taken(error: sea_orm::DbErr) -> Error {
    match error.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => Error::field("name", "property mapping with this name already exists."),
        _ => error.into(),
    }
}

/// The webhook mapping `id` of `tenant`, whoever asks (for evaluating it).
pub async fn find_webhook_mapping(db: &impl ConnectionTrait, tenant: TenantId, id: Uuid) -> Result<Option<property_mapping::Model>> {
    Ok(property_mapping::Entity::find_by_id(id)
        .filter(property_mapping::Column::TenantId.eq(tenant.0))
        .filter(property_mapping::Column::Kind.eq(WEBHOOK))
        .one(db)
        .await?)
}

async fn find(state: &AppState, id: Uuid) -> Result<property_mapping::Model> {
    find_webhook_mapping(&state.db, state.tenant, id).await?.ok_or(Error::NotFound)
}

/// One page of webhook mappings; needs the view permission.
pub async fn list(
    state: &AppState,
    actor: &Actor,
    filter: &MappingFilter,
    params: &ListParams,
) -> Result<Paginated<property_mapping::Model>> {
    actor.require(names::VIEW_WEBHOOK_MAPPING)?;
    let page = params.page_request(&state.config.api)?;
    let mut select = property_mapping::Entity::find()
        .filter(property_mapping::Column::TenantId.eq(state.tenant.0))
        .filter(property_mapping::Column::Kind.eq(WEBHOOK));
    if let Some(name) = filter.name.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(property_mapping::Column::Name.eq(name));
    }
    if let Some(pattern) = params.search_pattern() {
        select = select.filter(ilike(property_mapping::Column::Name, &pattern));
    }
    let select = params.apply_ordering(
        select,
        &[("name", property_mapping::Column::Name)],
        (property_mapping::Column::Name, Order::Asc),
        property_mapping::Column::Id,
    )?;
    fetch_page(&state.db, select, page).await
}

/// The webhook mapping `id`; needs the view permission.
pub async fn get(state: &AppState, actor: &Actor, id: Uuid) -> Result<property_mapping::Model> {
    actor.require(names::VIEW_WEBHOOK_MAPPING)?;
    find(state, id).await
}

/// Creates a webhook mapping from a name and an expression; needs the add permission (checked
/// before anything is parsed).
pub async fn create(state: &AppState, actor: &Actor, name: Option<&str>, expression: Option<&str>) -> Result<property_mapping::Model> {
    actor.require(names::ADD_WEBHOOK_MAPPING)?;
    let new = WebhookMapping::parse(name, expression).await?;
    let now = Utc::now();
    let txn = crate::db::begin_write(&state.db).await?;
    let created = property_mapping::ActiveModel {
        id: Set(Uuid::new_v4()),
        tenant_id: Set(state.tenant.0),
        kind: Set(WEBHOOK.to_owned()),
        name: Set(new.name),
        expression: Set(new.expression.as_str().to_owned()),
        scope_name: Set(None),
        description: Set(String::new()),
        managed: Set(None),
        created: Set(now),
        last_updated: Set(now),
    }
    .insert(&txn)
    .await
    .map_err(name_taken)?;
    events::service::record(&txn, state, actor.event(Action::ModelCreated).about(&mapping_ref(&created))).await?;
    txn.commit().await?;
    Ok(created)
}

/// Changes the name and expression of the webhook mapping `id` (each kept when `None`, unless
/// `full`, where both are required); needs the change permission.
pub async fn update(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    name: Option<&str>,
    expression: Option<&str>,
    full: bool,
) -> Result<property_mapping::Model> {
    actor.require(names::VIEW_WEBHOOK_MAPPING)?;
    let before = find(state, id).await?;
    actor.require(names::CHANGE_WEBHOOK_MAPPING)?;
    let changed = if full {
        WebhookMapping::parse(name, expression).await?
    } else {
        WebhookMapping::parse(Some(name.unwrap_or(&before.name)), Some(expression.unwrap_or(&before.expression))).await?
    };
    let txn = crate::db::begin_write(&state.db).await?;
    let mut model = before.clone().into_active_model();
    model.name = Set(changed.name);
    model.expression = Set(changed.expression.as_str().to_owned());
    model.last_updated = Set(Utc::now());
    let after = model.update(&txn).await.map_err(name_taken)?;
    let diff = events::service::diff(
        &json!({"name": before.name, "expression": before.expression}),
        &json!({"name": after.name, "expression": after.expression}),
    );
    events::service::record(&txn, state, actor.event(Action::ModelUpdated).about(&mapping_ref(&after)).with("diff", diff)).await?;
    txn.commit().await?;
    Ok(after)
}

/// Deletes the webhook mapping `id` inside `txn` (where the caller also clears what names it);
/// needs the delete permission.
pub async fn delete_in(txn: &DatabaseTransaction, state: &AppState, actor: &Actor, id: Uuid) -> Result<()> {
    actor.require(names::VIEW_WEBHOOK_MAPPING)?;
    let mapping = find_webhook_mapping(txn, state.tenant, id).await?.ok_or(Error::NotFound)?;
    actor.require(names::DELETE_WEBHOOK_MAPPING)?;
    property_mapping::Entity::delete_by_id(mapping.id).exec(txn).await?;
    events::service::record(txn, state, actor.event(Action::ModelDeleted).about(&mapping_ref(&mapping))).await?;
    Ok(())
}
