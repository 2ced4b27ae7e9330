//! Device access groups: named groups of devices that enrollment tokens put new devices into and
//! that policies will name, under their permissions.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, Order, QueryFilter, Set};
use serde_json::{Value, json};
use uuid::Uuid;

use super::entities::access_group;
use crate::accounts::access::Actor;
use crate::accounts::permissions::names;
use crate::db::pagination::{ListParams, Paginated, fetch_page, ilike};
use crate::error::{Error, FieldErrors, Result};
use crate::events::{self, Action, ModelRef};
use crate::state::AppState;
use crate::tenants::TenantId;

const LONGEST_NAME: usize = 255;

/// Filters of the group list, as authentik names them.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccessGroupFilter {
    pub pbm_uuid: Option<Uuid>,
    /// Exact name.
    pub name: Option<String>,
}

/// authentik's `DeviceAccessGroupRequest` and its patched form: absent fields keep their value.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessGroupRequest {
    pub name: Option<String>,
    /// A JSON object of the operator's own.
    pub attributes: Option<Value>,
}

pub(super) fn group_ref(group: &access_group::Model) -> ModelRef {
    ModelRef { app: "authentik_endpoints", model_name: "deviceaccessgroup", pk: json!(group.id), name: group.name.clone() }
}

fn shown(group: &access_group::Model) -> Value {
    json!({"name": group.name, "attributes": group.attributes})
}

/// A trimmed, non-blank name of at most 255 characters, or the field's error.
pub(super) fn parse_name(name: Option<&str>, required: bool, errors: &mut FieldErrors) -> Option<String> {
    parse_text("name", name, required, errors)
}

/// Trimmed, non-blank text of at most 255 characters for `field`, or the field's error; absent
/// text is an error only when `required`.
pub(super) fn parse_text(field: &'static str, text: Option<&str>, required: bool, errors: &mut FieldErrors) -> Option<String> {
    match text.map(str::trim) {
        None if required => {
            errors.add(field, "This field is required.");
            None
        }
        None => None,
        Some("") => {
            errors.add(field, "This field may not be blank.");
            None
        }
        Some(text) if text.chars().count() > LONGEST_NAME => {
            errors.add(field, format!("Ensure this field has no more than {LONGEST_NAME} characters."));
            None
        }
        Some(text) => Some(text.to_owned()),
    }
}

fn name_taken(error: sea_orm::DbErr) -> Error {
    match error.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => Error::field("name", "device access group with this name already exists."),
        _ => error.into(),
    }
}

pub(super) async fn find(db: &impl ConnectionTrait, tenant: TenantId, id: Uuid) -> Result<access_group::Model> {
    access_group::Entity::find_by_id(id).filter(access_group::Column::TenantId.eq(tenant.0)).one(db).await?.ok_or(Error::NotFound)
}

/// The groups of the tenant among `ids` (those that exist), in one query, read for the server's
/// own use.
pub async fn groups_by_ids(db: &impl ConnectionTrait, tenant: TenantId, ids: &[Uuid]) -> Result<Vec<access_group::Model>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(access_group::Entity::find()
        .filter(access_group::Column::TenantId.eq(tenant.0))
        .filter(access_group::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?)
}

/// One page of groups; needs the view permission.
pub async fn list(
    state: &AppState,
    actor: &Actor,
    filter: &AccessGroupFilter,
    params: &ListParams,
) -> Result<Paginated<access_group::Model>> {
    actor.require(names::VIEW_DEVICE_ACCESS_GROUP)?;
    let page = params.page_request(&state.config.api)?;
    let mut select = access_group::Entity::find().filter(access_group::Column::TenantId.eq(state.tenant.0));
    if let Some(id) = filter.pbm_uuid {
        select = select.filter(access_group::Column::Id.eq(id));
    }
    if let Some(name) = filter.name.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(access_group::Column::Name.eq(name));
    }
    if let Some(pattern) = params.search_pattern() {
        select = select.filter(ilike(access_group::Column::Name, &pattern));
    }
    let select = params.apply_ordering(
        select,
        &[("name", access_group::Column::Name), ("pbm_uuid", access_group::Column::Id)],
        (access_group::Column::Name, Order::Asc),
        access_group::Column::Id,
    )?;
    fetch_page(&state.db, select, page).await
}

/// The group `id`; needs the view permission.
pub async fn get(state: &AppState, actor: &Actor, id: Uuid) -> Result<access_group::Model> {
    actor.require(names::VIEW_DEVICE_ACCESS_GROUP)?;
    find(&state.db, state.tenant, id).await
}

fn parse_attributes(attributes: Option<&Value>, errors: &mut FieldErrors) -> Option<Value> {
    match attributes {
        None => None,
        Some(value @ Value::Object(_)) => Some(value.clone()),
        Some(_) => {
            errors.add("attributes", "Give a JSON object.");
            None
        }
    }
}

/// Creates a group; needs the add permission.
pub async fn create(state: &AppState, actor: &Actor, request: &AccessGroupRequest) -> Result<access_group::Model> {
    actor.require(names::ADD_DEVICE_ACCESS_GROUP)?;
    let mut errors = FieldErrors::new();
    let name = parse_name(request.name.as_deref(), true, &mut errors);
    let attributes = parse_attributes(request.attributes.as_ref(), &mut errors);
    let Some(name) = name else { return Err(Error::Validation(errors)) };
    errors.into_result()?;
    let now = Utc::now();
    let txn = crate::db::begin_write(&state.db).await?;
    let group = access_group::ActiveModel {
        id: Set(Uuid::new_v4()),
        tenant_id: Set(state.tenant.0),
        name: Set(name),
        attributes: Set(attributes.unwrap_or_else(|| json!({}))),
        created: Set(now),
        last_updated: Set(now),
    }
    .insert(&txn)
    .await
    .map_err(name_taken)?;
    let diff = events::service::diff(&json!({}), &shown(&group));
    events::service::record(&txn, state, actor.event(Action::ModelCreated).about(&group_ref(&group)).with("diff", diff)).await?;
    txn.commit().await?;
    Ok(group)
}

/// Renames the group `id` or replaces its attributes; needs the change permission. `full`
/// (PUT) requires the name.
pub async fn update(state: &AppState, actor: &Actor, id: Uuid, request: &AccessGroupRequest, full: bool) -> Result<access_group::Model> {
    actor.require(names::VIEW_DEVICE_ACCESS_GROUP)?;
    let txn = crate::db::begin_write(&state.db).await?;
    let before = find(&txn, state.tenant, id).await?;
    actor.require(names::CHANGE_DEVICE_ACCESS_GROUP)?;
    let mut errors = FieldErrors::new();
    let name = parse_name(request.name.as_deref(), full, &mut errors);
    let attributes = parse_attributes(request.attributes.as_ref(), &mut errors);
    errors.into_result()?;
    let mut model = before.clone().into_active_model();
    if let Some(name) = name {
        model.name = Set(name);
    }
    if let Some(attributes) = attributes {
        model.attributes = Set(attributes);
    }
    model.last_updated = Set(Utc::now());
    let after = model.update(&txn).await.map_err(name_taken)?;
    let diff = events::service::diff(&shown(&before), &shown(&after));
    events::service::record(&txn, state, actor.event(Action::ModelUpdated).about(&group_ref(&after)).with("diff", diff)).await?;
    txn.commit().await?;
    Ok(after)
}

/// Deletes the group `id`; needs the delete permission. Its devices, and the devices enrollment
/// tokens that named it enrol from then on, are in no group.
pub async fn delete(state: &AppState, actor: &Actor, id: Uuid) -> Result<()> {
    actor.require(names::VIEW_DEVICE_ACCESS_GROUP)?;
    let txn = crate::db::begin_write(&state.db).await?;
    let group = find(&txn, state.tenant, id).await?;
    actor.require(names::DELETE_DEVICE_ACCESS_GROUP)?;
    access_group::Entity::delete_by_id(group.id).exec(&txn).await?;
    events::service::record(&txn, state, actor.event(Action::ModelDeleted).about(&group_ref(&group))).await?;
    super::cache::commit_change(state, txn).await?;
    Ok(())
}

/// What refers to the group `id`: the enrollment tokens that put devices into it and the devices
/// in it, all left without a group when it goes.
pub async fn used_by(state: &AppState, actor: &Actor, id: Uuid) -> Result<Vec<crate::tokens::api::UsedBy>> {
    let group = get(state, actor, id).await?;
    let mut used = super::enrollment::naming_group(&state.db, state.tenant, group.id).await?;
    used.extend(super::devices::in_group(&state.db, state.tenant, group.id).await?);
    Ok(used)
}
