//! Storage and rules of the bindings that put stages in flows, as administrators change them.
//! Every change has a `*_in` form that works inside the caller's transaction, so an import can
//! make many of them atomically.

use std::collections::HashMap;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, IntoActiveModel, Order, QueryFilter, QueryOrder, Set,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::changes::{audit, missing_pk, unique_violation};
use super::entities::{binding, flow};
use super::model::{InvalidResponseAction, PolicyEngineMode};
use super::stage_service::find_stage;
use crate::accounts::access::Actor;
use crate::accounts::permissions::names;
use crate::db::pagination::{ListParams, Paginated, fetch_page, parse_bool};
use crate::error::{Error, FieldErrors, NON_FIELD_ERRORS, Result};
use crate::events::{Action, ModelRef};
use crate::state::AppState;
use crate::tenants::TenantId;

/// A binding's values, parsed; the flow and stage are checked when written.
#[derive(Debug, Clone)]
pub struct BindingFields {
    pub flow_id: Uuid,
    pub stage_id: Uuid,
    pub order: i32,
    pub evaluate_on_plan: bool,
    pub re_evaluate_policies: bool,
    pub policy_engine_mode: PolicyEngineMode,
    pub invalid_response_action: InvalidResponseAction,
}

/// How the audit trail and `used_by` name a binding.
pub(super) fn binding_ref(binding: &binding::Model) -> ModelRef {
    ModelRef {
        app: "authentik_flows",
        model_name: "flowstagebinding",
        pk: json!(binding.id),
        name: format!("Flow-stage binding #{} to {}", binding.binding_order, binding.flow_id),
    }
}

fn binding_json(binding: &binding::Model) -> Value {
    json!({
        "target": binding.flow_id,
        "stage": binding.stage_id,
        "order": binding.binding_order,
        "evaluate_on_plan": binding.evaluate_on_plan,
        "re_evaluate_policies": binding.re_evaluate_policies,
        "policy_engine_mode": binding.policy_engine_mode,
        "invalid_response_action": binding.invalid_response_action,
    })
}

/// The stages bound to each of `flows`, in the order they run.
pub async fn bound_stages(db: &impl ConnectionTrait, tenant: TenantId, flows: &[Uuid]) -> Result<HashMap<Uuid, Vec<Uuid>>> {
    let mut out: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for row in bindings_of(db, tenant, flows).await? {
        out.entry(row.flow_id).or_default().push(row.stage_id);
    }
    Ok(out)
}

/// The bindings of `flows`, by flow, then order.
pub async fn bindings_of(db: &impl ConnectionTrait, tenant: TenantId, flows: &[Uuid]) -> Result<Vec<binding::Model>> {
    Ok(binding::Entity::find()
        .filter(binding::Column::TenantId.eq(tenant.0))
        .filter(binding::Column::FlowId.is_in(flows.iter().copied()))
        .order_by_asc(binding::Column::FlowId)
        .order_by_asc(binding::Column::BindingOrder)
        .order_by_asc(binding::Column::Id)
        .all(db)
        .await?)
}

/// Filters of the binding list.
#[derive(Debug, Default, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BindingFilter {
    /// The flow's uuid.
    pub target: Option<String>,
    pub stage: Option<String>,
    pub order: Option<String>,
    pub evaluate_on_plan: Option<String>,
    pub re_evaluate_policies: Option<String>,
    pub policy_engine_mode: Option<String>,
    pub invalid_response_action: Option<String>,
    pub fsb_uuid: Option<String>,
}

fn uuid_param(field: &str, value: &str) -> Result<Uuid> {
    Uuid::parse_str(value).map_err(|_| Error::field(field, "Must be a valid UUID."))
}

/// One page of the tenant's bindings; needs `authentik_flows.view_flowstagebinding`.
pub async fn list_bindings(
    state: &AppState,
    actor: &Actor,
    filter: &BindingFilter,
    params: &ListParams,
) -> Result<Paginated<binding::Model>> {
    actor.require(names::VIEW_FLOW_STAGE_BINDING)?;
    let page = params.page_request(&state.config.api)?;
    let mut select = binding::Entity::find().filter(binding::Column::TenantId.eq(state.tenant.0));
    let nonempty = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
    if let Some(target) = nonempty(&filter.target) {
        select = select.filter(binding::Column::FlowId.eq(uuid_param("target", &target)?));
    }
    if let Some(stage) = nonempty(&filter.stage) {
        select = select.filter(binding::Column::StageId.eq(uuid_param("stage", &stage)?));
    }
    if let Some(id) = nonempty(&filter.fsb_uuid) {
        select = select.filter(binding::Column::Id.eq(uuid_param("fsb_uuid", &id)?));
    }
    if let Some(order) = nonempty(&filter.order) {
        let order: i32 = order.parse().map_err(|_| Error::field("order", "A valid integer is required."))?;
        select = select.filter(binding::Column::BindingOrder.eq(order));
    }
    if let Some(value) = nonempty(&filter.evaluate_on_plan) {
        select = select.filter(binding::Column::EvaluateOnPlan.eq(parse_bool("evaluate_on_plan", &value)?));
    }
    if let Some(value) = nonempty(&filter.re_evaluate_policies) {
        select = select.filter(binding::Column::ReEvaluatePolicies.eq(parse_bool("re_evaluate_policies", &value)?));
    }
    if let Some(value) = nonempty(&filter.policy_engine_mode) {
        let mode = PolicyEngineMode::parse(&value)
            .ok_or_else(|| Error::field("policy_engine_mode", super::api::invalid_choice(&value, &PolicyEngineMode::choices())))?;
        select = select.filter(binding::Column::PolicyEngineMode.eq(mode.as_str()));
    }
    if let Some(value) = nonempty(&filter.invalid_response_action) {
        let action = InvalidResponseAction::parse(&value).ok_or_else(|| {
            Error::field("invalid_response_action", super::api::invalid_choice(&value, &InvalidResponseAction::choices()))
        })?;
        select = select.filter(binding::Column::InvalidResponseAction.eq(action.as_str()));
    }
    // authentik orders bindings by target, then order, unless asked otherwise.
    if params.ordering.as_deref().is_none_or(|o| o.trim().is_empty()) {
        select = select.order_by_asc(binding::Column::FlowId);
    }
    let select = params.apply_ordering(
        select,
        &[
            ("target", binding::Column::FlowId),
            ("stage", binding::Column::StageId),
            ("order", binding::Column::BindingOrder),
            ("pk", binding::Column::Id),
        ],
        (binding::Column::BindingOrder, Order::Asc),
        binding::Column::Id,
    )?;
    fetch_page(&state.db, select, page).await
}

/// A binding of the tenant by id.
pub async fn find_binding(db: &impl ConnectionTrait, tenant: TenantId, id: Uuid) -> Result<Option<binding::Model>> {
    Ok(binding::Entity::find().filter(binding::Column::TenantId.eq(tenant.0)).filter(binding::Column::Id.eq(id)).one(db).await?)
}

const BINDING_TAKEN: &str = "This stage is already bound to this flow at this order.";

async fn check_binding(db: &impl ConnectionTrait, tenant: TenantId, fields: &BindingFields, except: Option<Uuid>) -> Result<()> {
    let mut errors = FieldErrors::new();
    let flow_exists = flow::Entity::find()
        .filter(flow::Column::TenantId.eq(tenant.0))
        .filter(flow::Column::Id.eq(fields.flow_id))
        .one(db)
        .await?
        .is_some();
    if !flow_exists {
        errors.add("target", missing_pk(fields.flow_id));
    }
    if find_stage(db, tenant, fields.stage_id, None).await?.is_none() {
        errors.add("stage", missing_pk(fields.stage_id));
    }
    errors.into_result()?;
    let mut taken = binding::Entity::find()
        .filter(binding::Column::TenantId.eq(tenant.0))
        .filter(binding::Column::FlowId.eq(fields.flow_id))
        .filter(binding::Column::StageId.eq(fields.stage_id))
        .filter(binding::Column::BindingOrder.eq(fields.order));
    if let Some(except) = except {
        taken = taken.filter(binding::Column::Id.ne(except));
    }
    if taken.one(db).await?.is_some() {
        return Err(Error::field(NON_FIELD_ERRORS, BINDING_TAKEN));
    }
    Ok(())
}

fn apply_binding(model: &mut binding::ActiveModel, fields: BindingFields) {
    model.flow_id = Set(fields.flow_id);
    model.stage_id = Set(fields.stage_id);
    model.binding_order = Set(fields.order);
    model.evaluate_on_plan = Set(fields.evaluate_on_plan);
    model.re_evaluate_policies = Set(fields.re_evaluate_policies);
    model.policy_engine_mode = Set(fields.policy_engine_mode.as_str().into());
    model.invalid_response_action = Set(fields.invalid_response_action.as_str().into());
}

/// The binding `id`; needs `authentik_flows.view_flowstagebinding`.
pub async fn get_binding(state: &AppState, actor: &Actor, id: Uuid) -> Result<binding::Model> {
    actor.require(names::VIEW_FLOW_STAGE_BINDING)?;
    find_binding(&state.db, state.tenant, id).await?.ok_or(Error::NotFound)
}

/// What uses the binding `id` (nothing refers to a binding); needs
/// `authentik_flows.view_flowstagebinding`.
pub async fn binding_used_by(state: &AppState, actor: &Actor, id: Uuid) -> Result<Vec<crate::tokens::api::UsedBy>> {
    get_binding(state, actor, id).await?;
    Ok(Vec::new())
}

/// Creates a binding inside `txn`; needs `authentik_flows.add_flowstagebinding`.
pub async fn create_binding_in(
    txn: &DatabaseTransaction,
    state: &AppState,
    actor: &Actor,
    fields: BindingFields,
) -> Result<binding::Model> {
    actor.require(names::ADD_FLOW_STAGE_BINDING)?;
    check_binding(txn, state.tenant, &fields, None).await?;
    let mut model = binding::ActiveModel { id: Set(Uuid::new_v4()), tenant_id: Set(state.tenant.0), ..Default::default() };
    apply_binding(&mut model, fields);
    let created = model.insert(txn).await.map_err(|e| unique_violation(e, NON_FIELD_ERRORS, BINDING_TAKEN))?;
    audit(txn, state, actor, Action::ModelCreated, binding_ref(&created), json!({}), binding_json(&created)).await?;
    Ok(created)
}

/// Creates a binding.
pub async fn create_binding(state: &AppState, actor: &Actor, fields: BindingFields) -> Result<binding::Model> {
    let txn = crate::db::begin_write(&state.db).await?;
    let created = create_binding_in(&txn, state, actor, fields).await?;
    super::plans::commit_change(state, txn).await?;
    Ok(created)
}

/// Replaces a binding's values inside `txn`; needs `authentik_flows.change_flowstagebinding`.
pub async fn update_binding_in(
    txn: &DatabaseTransaction,
    state: &AppState,
    actor: &Actor,
    before: &binding::Model,
    fields: BindingFields,
) -> Result<binding::Model> {
    actor.require(names::CHANGE_FLOW_STAGE_BINDING)?;
    check_binding(txn, state.tenant, &fields, Some(before.id)).await?;
    let mut model = before.clone().into_active_model();
    apply_binding(&mut model, fields);
    let after = model.update(txn).await.map_err(|e| unique_violation(e, NON_FIELD_ERRORS, BINDING_TAKEN))?;
    audit(txn, state, actor, Action::ModelUpdated, binding_ref(&after), binding_json(before), binding_json(&after)).await?;
    Ok(after)
}

/// Replaces the values of the binding `id` with what `change` makes of the stored binding;
/// needs `authentik_flows.change_flowstagebinding`, checked before the binding is looked up.
pub async fn update_binding(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    change: impl FnOnce(&binding::Model) -> Result<BindingFields>,
) -> Result<binding::Model> {
    actor.require(names::CHANGE_FLOW_STAGE_BINDING)?;
    let before = find_binding(&state.db, state.tenant, id).await?.ok_or(Error::NotFound)?;
    let fields = change(&before)?;
    let txn = crate::db::begin_write(&state.db).await?;
    let after = update_binding_in(&txn, state, actor, &before, fields).await?;
    super::plans::commit_change(state, txn).await?;
    Ok(after)
}

/// Deletes a binding inside `txn`; needs `authentik_flows.delete_flowstagebinding`.
pub async fn delete_binding_in(txn: &DatabaseTransaction, state: &AppState, actor: &Actor, binding: &binding::Model) -> Result<()> {
    actor.require(names::DELETE_FLOW_STAGE_BINDING)?;
    binding::Entity::delete_many()
        .filter(binding::Column::TenantId.eq(state.tenant.0))
        .filter(binding::Column::Id.eq(binding.id))
        .exec(txn)
        .await?;
    audit(txn, state, actor, Action::ModelDeleted, binding_ref(binding), Value::Null, Value::Null).await
}

/// Deletes the binding `id`; needs `authentik_flows.delete_flowstagebinding`.
pub async fn delete_binding(state: &AppState, actor: &Actor, id: Uuid) -> Result<()> {
    actor.require(names::DELETE_FLOW_STAGE_BINDING)?;
    let binding = find_binding(&state.db, state.tenant, id).await?.ok_or(Error::NotFound)?;
    let txn = crate::db::begin_write(&state.db).await?;
    delete_binding_in(&txn, state, actor, &binding).await?;
    super::plans::commit_change(state, txn).await?;
    Ok(())
}
