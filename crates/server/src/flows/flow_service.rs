//! Storage and rules of flows as administrators change them. Every change has a `*_in` form
//! that works inside the caller's transaction, so an import can make many of them atomically.

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::sea_query::ExprTrait;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, IntoActiveModel, Order, QueryFilter, QueryOrder, Set,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::changes::{audit, unique_violation};
use super::entities::flow;
use super::model::{AuthenticationRequirement, DeniedAction, Designation, Layout, PolicyEngineMode};
use crate::accounts::access::Actor;
use crate::accounts::permissions::names;
use crate::db::pagination::{ListParams, Paginated, fetch_page, ilike};
use crate::error::{Error, Result};
use crate::events::{Action, ModelRef};
use crate::state::AppState;
use crate::tenants::TenantId;

/// A flow's values, parsed.
#[derive(Debug, Clone)]
pub struct FlowFields {
    pub name: String,
    pub slug: String,
    pub title: String,
    pub designation: Designation,
    pub background: String,
    pub policy_engine_mode: PolicyEngineMode,
    pub compatibility_mode: bool,
    pub layout: Layout,
    pub denied_action: DeniedAction,
    pub authentication: AuthenticationRequirement,
}

fn flow_ref(flow: &flow::Model) -> ModelRef {
    ModelRef { app: "authentik_flows", model_name: "flow", pk: json!(flow.id), name: flow.name.clone() }
}

/// A flow's values, as recorded in the audit trail and exported.
pub(crate) fn flow_json(flow: &flow::Model) -> Value {
    json!({
        "name": flow.name,
        "slug": flow.slug,
        "title": flow.title,
        "designation": flow.designation,
        "background": flow.background,
        "policy_engine_mode": flow.policy_engine_mode,
        "compatibility_mode": flow.compatibility_mode,
        "layout": flow.layout,
        "denied_action": flow.denied_action,
        "authentication": flow.authentication,
    })
}

/// Filters of the flow list.
#[derive(Debug, Default, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FlowFilter {
    pub designation: Option<String>,
    pub slug: Option<String>,
    pub name: Option<String>,
    pub denied_action: Option<String>,
    pub flow_uuid: Option<String>,
}

/// One page of the tenant's flows; needs `authentik_flows.view_flow`.
pub async fn list_flows(state: &AppState, actor: &Actor, filter: &FlowFilter, params: &ListParams) -> Result<Paginated<flow::Model>> {
    actor.require(names::VIEW_FLOW)?;
    let page = params.page_request(&state.config.api)?;
    let mut select = flow::Entity::find().filter(flow::Column::TenantId.eq(state.tenant.0));
    if let Some(designation) = filter.designation.as_deref().filter(|v| !v.is_empty()) {
        let designation = Designation::parse(designation)
            .ok_or_else(|| Error::field("designation", super::api::invalid_choice(designation, &Designation::choices())))?;
        select = select.filter(flow::Column::Designation.eq(designation.as_str()));
    }
    if let Some(denied_action) = filter.denied_action.as_deref().filter(|v| !v.is_empty()) {
        let action = DeniedAction::parse(denied_action)
            .ok_or_else(|| Error::field("denied_action", super::api::invalid_choice(denied_action, &DeniedAction::choices())))?;
        select = select.filter(flow::Column::DeniedAction.eq(action.as_str()));
    }
    if let Some(slug) = filter.slug.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(flow::Column::Slug.eq(slug));
    }
    if let Some(name) = filter.name.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(flow::Column::Name.eq(name));
    }
    if let Some(id) = filter.flow_uuid.as_deref().filter(|v| !v.is_empty()) {
        let id = Uuid::parse_str(id).map_err(|_| Error::field("flow_uuid", "Must be a valid UUID."))?;
        select = select.filter(flow::Column::Id.eq(id));
    }
    if let Some(pattern) = params.search_pattern() {
        select = select.filter(
            ilike(flow::Column::Name, &pattern)
                .or(ilike(flow::Column::Slug, &pattern))
                .or(ilike(flow::Column::Title, &pattern))
                .or(ilike(flow::Column::Designation, &pattern)),
        );
    }
    let select = params.apply_ordering(
        select,
        &[
            ("slug", flow::Column::Slug),
            ("name", flow::Column::Name),
            ("title", flow::Column::Title),
            ("designation", flow::Column::Designation),
        ],
        (flow::Column::Slug, Order::Asc),
        flow::Column::Id,
    )?;
    fetch_page(&state.db, select, page).await
}

/// A flow of the tenant by slug.
pub async fn find_flow(db: &impl ConnectionTrait, tenant: TenantId, slug: &str) -> Result<Option<flow::Model>> {
    Ok(flow::Entity::find().filter(flow::Column::TenantId.eq(tenant.0)).filter(flow::Column::Slug.eq(slug)).one(db).await?)
}

/// Flows of the tenant by id.
pub async fn flows_by_id(db: &impl ConnectionTrait, tenant: TenantId, ids: &[Uuid]) -> Result<HashMap<Uuid, flow::Model>> {
    Ok(flow::Entity::find()
        .filter(flow::Column::TenantId.eq(tenant.0))
        .filter(flow::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|f| (f.id, f))
        .collect())
}

const SLUG_TAKEN: &str = "A flow with this slug already exists.";

async fn check_slug_free(db: &impl ConnectionTrait, tenant: TenantId, slug: &str, except: Option<Uuid>) -> Result<()> {
    match find_flow(db, tenant, slug).await? {
        Some(existing) if Some(existing.id) != except => Err(Error::field("slug", SLUG_TAKEN)),
        _ => Ok(()),
    }
}

fn apply_flow(model: &mut flow::ActiveModel, fields: FlowFields) {
    model.name = Set(fields.name);
    model.slug = Set(fields.slug);
    model.title = Set(fields.title);
    model.designation = Set(fields.designation.as_str().into());
    model.background = Set(fields.background);
    model.policy_engine_mode = Set(fields.policy_engine_mode.as_str().into());
    model.compatibility_mode = Set(fields.compatibility_mode);
    model.layout = Set(fields.layout.as_str().into());
    model.denied_action = Set(fields.denied_action.as_str().into());
    model.authentication = Set(fields.authentication.as_str().into());
    model.last_updated = Set(Utc::now());
}

/// The flow `slug`; needs `authentik_flows.view_flow`.
pub async fn get_flow(state: &AppState, actor: &Actor, slug: &str) -> Result<flow::Model> {
    actor.require(names::VIEW_FLOW)?;
    find_flow(&state.db, state.tenant, slug).await?.ok_or(Error::NotFound)
}

/// What uses the flow `slug`; needs `authentik_flows.view_flow`.
pub async fn flow_used_by(state: &AppState, actor: &Actor, slug: &str) -> Result<Vec<crate::tokens::api::UsedBy>> {
    get_flow(state, actor, slug).await?;
    // Nothing in Gatehouse refers to a flow yet (bindings belong to it rather than use it).
    Ok(Vec::new())
}

/// The flows that show the uploaded file `name` as their background; needs
/// `authentik_rbac.view_media_files` and, as it names flows, `authentik_flows.view_flow`.
/// Deleting the file leaves them pointing at nothing.
pub async fn flows_using_file(state: &AppState, actor: &Actor, name: Option<&str>) -> Result<Vec<crate::tokens::api::UsedBy>> {
    actor.require(names::VIEW_MEDIA_FILES)?;
    actor.require(names::VIEW_FLOW)?;
    let name = &crate::media::service::parse_name(name)?;
    crate::media::service::find(&state.db, state.tenant, name).await?.ok_or(Error::NotFound)?;
    let flows = flow::Entity::find()
        .filter(flow::Column::TenantId.eq(state.tenant.0))
        .filter(flow::Column::Background.eq(name.as_str()))
        .order_by(flow::Column::Slug, Order::Asc)
        .all(&state.db)
        .await?;
    Ok(flows
        .into_iter()
        .map(|flow| crate::tokens::api::UsedBy {
            app: "authentik_flows".into(),
            model_name: "flow".into(),
            pk: flow.id.to_string(),
            name: flow.name,
            action: "left_dangling".into(),
        })
        .collect())
}

/// Creates a flow inside `txn`; needs `authentik_flows.add_flow`.
pub async fn create_flow_in(txn: &DatabaseTransaction, state: &AppState, actor: &Actor, fields: FlowFields) -> Result<flow::Model> {
    actor.require(names::ADD_FLOW)?;
    check_slug_free(txn, state.tenant, &fields.slug, None).await?;
    let now = Utc::now();
    let mut model = flow::ActiveModel { id: Set(Uuid::new_v4()), tenant_id: Set(state.tenant.0), created: Set(now), ..Default::default() };
    apply_flow(&mut model, fields);
    let created = model.insert(txn).await.map_err(|e| unique_violation(e, "slug", SLUG_TAKEN))?;
    audit(txn, state, actor, Action::ModelCreated, flow_ref(&created), json!({}), flow_json(&created)).await?;
    Ok(created)
}

/// Creates a flow.
pub async fn create_flow(state: &AppState, actor: &Actor, fields: FlowFields) -> Result<flow::Model> {
    let txn = crate::db::begin_write(&state.db).await?;
    let created = create_flow_in(&txn, state, actor, fields).await?;
    super::plans::commit_change(state, txn).await?;
    Ok(created)
}

/// Replaces a flow's values inside `txn`; needs `authentik_flows.change_flow`.
pub async fn update_flow_in(
    txn: &DatabaseTransaction,
    state: &AppState,
    actor: &Actor,
    before: &flow::Model,
    fields: FlowFields,
) -> Result<flow::Model> {
    actor.require(names::CHANGE_FLOW)?;
    check_slug_free(txn, state.tenant, &fields.slug, Some(before.id)).await?;
    let mut model = before.clone().into_active_model();
    apply_flow(&mut model, fields);
    let after = model.update(txn).await.map_err(|e| unique_violation(e, "slug", SLUG_TAKEN))?;
    audit(txn, state, actor, Action::ModelUpdated, flow_ref(&after), flow_json(before), flow_json(&after)).await?;
    Ok(after)
}

/// Replaces the values of the flow `slug` with what `change` makes of the stored flow; needs
/// `authentik_flows.change_flow`, checked before the flow is looked up.
pub async fn update_flow(
    state: &AppState,
    actor: &Actor,
    slug: &str,
    change: impl FnOnce(&flow::Model) -> Result<FlowFields>,
) -> Result<flow::Model> {
    actor.require(names::CHANGE_FLOW)?;
    let before = find_flow(&state.db, state.tenant, slug).await?.ok_or(Error::NotFound)?;
    let fields = change(&before)?;
    let txn = crate::db::begin_write(&state.db).await?;
    let after = update_flow_in(&txn, state, actor, &before, fields).await?;
    super::plans::commit_change(state, txn).await?;
    Ok(after)
}

/// Deletes the flow `slug`; its bindings and runs in progress go with it (foreign-key cascade).
/// Needs `authentik_flows.delete_flow`.
pub async fn delete_flow(state: &AppState, actor: &Actor, slug: &str) -> Result<()> {
    actor.require(names::DELETE_FLOW)?;
    let flow = &find_flow(&state.db, state.tenant, slug).await?.ok_or(Error::NotFound)?;
    let txn = crate::db::begin_write(&state.db).await?;
    flow::Entity::delete_many()
        .filter(flow::Column::TenantId.eq(state.tenant.0))
        .filter(flow::Column::Id.eq(flow.id))
        .exec(&txn)
        .await
        .map_err(|error| {
            if crate::db::is_foreign_key_violation(&error) {
                Error::field(crate::error::NON_FIELD_ERRORS, "This flow is still used by a provider; choose another flow there first.")
            } else {
                error.into()
            }
        })?;
    audit(&txn, state, actor, Action::ModelDeleted, flow_ref(flow), Value::Null, Value::Null).await?;
    super::plans::commit_change(state, txn).await?;
    Ok(())
}
