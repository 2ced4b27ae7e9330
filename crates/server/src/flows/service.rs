//! Storage and rules of flows, stages and bindings as administrators change them. Every change
//! has a `*_in` form that works inside the caller's transaction, so an import can make many of
//! them atomically.

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::sea_query::ExprTrait;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, IntoActiveModel, Order, QueryFilter, QueryOrder, Set,
};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::entities::{binding, flow, stage};
use super::model::{AuthenticationRequirement, DeniedAction, Designation, InvalidResponseAction, Layout, PolicyEngineMode};
use super::stage::{StageKind, StageReference};
use crate::accounts::service::Actor;
use crate::db::pagination::{ListParams, Paginated, fetch_page, ilike, parse_bool};
use crate::error::{Error, FieldErrors, NON_FIELD_ERRORS, Result};
use crate::events::{self, Action, ModelRef};
use crate::state::AppState;
use crate::tenants::TenantId;
use crate::tokens::api::UsedBy;

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

/// The "does not exist" message of a bad reference, as DRF words it.
pub fn missing_pk(pk: impl std::fmt::Display) -> String {
    format!("Invalid pk \"{pk}\" - object does not exist.")
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

fn stage_ref(state: &AppState, stage: &stage::Model) -> ModelRef {
    let (app, model_name) =
        state.stages.get(&stage.kind).and_then(|k| k.meta_model_name().split_once('.')).unwrap_or(("authentik_flows", "stage"));
    ModelRef { app, model_name, pk: json!(stage.id), name: stage.name.clone() }
}

fn stage_json(stage: &stage::Model) -> Value {
    let mut out = match &stage.settings {
        Value::Object(settings) => settings.clone(),
        _ => Map::new(),
    };
    out.insert("name".into(), json!(stage.name));
    Value::Object(out)
}

fn binding_ref(binding: &binding::Model) -> ModelRef {
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

async fn audit(
    db: &impl ConnectionTrait,
    state: &AppState,
    actor: &Actor,
    action: Action,
    about: ModelRef,
    before: Value,
    after: Value,
) -> Result<()> {
    let mut record = actor.event(action).about(&about);
    if action != Action::ModelDeleted {
        record = record.with("diff", events::service::diff(&before, &after));
    }
    events::service::record(db, state, record).await?;
    Ok(())
}

fn unique_violation(error: sea_orm::DbErr, field: &str, message: &str) -> Error {
    match error.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => Error::field(field, message),
        _ => error.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Flows

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

/// One page of the tenant's flows.
pub async fn list_flows(state: &AppState, filter: &FlowFilter, params: &ListParams) -> Result<Paginated<flow::Model>> {
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

/// Creates a flow inside `txn`.
pub async fn create_flow_in(txn: &DatabaseTransaction, state: &AppState, actor: &Actor, fields: FlowFields) -> Result<flow::Model> {
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
    txn.commit().await?;
    Ok(created)
}

/// Replaces a flow's values inside `txn`.
pub async fn update_flow_in(
    txn: &DatabaseTransaction,
    state: &AppState,
    actor: &Actor,
    before: &flow::Model,
    fields: FlowFields,
) -> Result<flow::Model> {
    check_slug_free(txn, state.tenant, &fields.slug, Some(before.id)).await?;
    let mut model = before.clone().into_active_model();
    apply_flow(&mut model, fields);
    let after = model.update(txn).await.map_err(|e| unique_violation(e, "slug", SLUG_TAKEN))?;
    audit(txn, state, actor, Action::ModelUpdated, flow_ref(&after), flow_json(before), flow_json(&after)).await?;
    Ok(after)
}

/// Replaces a flow's values.
pub async fn update_flow(state: &AppState, actor: &Actor, before: &flow::Model, fields: FlowFields) -> Result<flow::Model> {
    let txn = crate::db::begin_write(&state.db).await?;
    let after = update_flow_in(&txn, state, actor, before, fields).await?;
    txn.commit().await?;
    Ok(after)
}

/// Deletes a flow; its bindings and runs in progress go with it (foreign-key cascade).
pub async fn delete_flow(state: &AppState, actor: &Actor, flow: &flow::Model) -> Result<()> {
    let txn = crate::db::begin_write(&state.db).await?;
    flow::Entity::delete_many().filter(flow::Column::TenantId.eq(state.tenant.0)).filter(flow::Column::Id.eq(flow.id)).exec(&txn).await?;
    audit(&txn, state, actor, Action::ModelDeleted, flow_ref(flow), Value::Null, Value::Null).await?;
    txn.commit().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Stages

/// Filters of the stage lists.
#[derive(Debug, Default, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StageFilter {
    pub name: Option<String>,
    pub stage_uuid: Option<String>,
}

/// One page of the tenant's stages; `kind` restricts it to one kind.
pub async fn list_stages(
    state: &AppState,
    kind: Option<&str>,
    filter: &StageFilter,
    params: &ListParams,
) -> Result<Paginated<stage::Model>> {
    let page = params.page_request(&state.config.api)?;
    let mut select = stage::Entity::find().filter(stage::Column::TenantId.eq(state.tenant.0));
    if let Some(kind) = kind {
        select = select.filter(stage::Column::Kind.eq(kind));
    }
    if let Some(name) = filter.name.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(stage::Column::Name.eq(name));
    }
    if let Some(id) = filter.stage_uuid.as_deref().filter(|v| !v.is_empty()) {
        let id = Uuid::parse_str(id).map_err(|_| Error::field("stage_uuid", "Must be a valid UUID."))?;
        select = select.filter(stage::Column::Id.eq(id));
    }
    if let Some(pattern) = params.search_pattern() {
        select = select.filter(ilike(stage::Column::Name, &pattern));
    }
    let select = params.apply_ordering(select, &[("name", stage::Column::Name)], (stage::Column::Name, Order::Asc), stage::Column::Id)?;
    fetch_page(&state.db, select, page).await
}

/// A stage of the tenant by id; `kind` restricts it to one kind.
pub async fn find_stage(db: &impl ConnectionTrait, tenant: TenantId, id: Uuid, kind: Option<&str>) -> Result<Option<stage::Model>> {
    let mut select = stage::Entity::find().filter(stage::Column::TenantId.eq(tenant.0)).filter(stage::Column::Id.eq(id));
    if let Some(kind) = kind {
        select = select.filter(stage::Column::Kind.eq(kind));
    }
    Ok(select.one(db).await?)
}

/// A stage of the tenant by name.
pub async fn find_stage_by_name(db: &impl ConnectionTrait, tenant: TenantId, name: &str) -> Result<Option<stage::Model>> {
    Ok(stage::Entity::find().filter(stage::Column::TenantId.eq(tenant.0)).filter(stage::Column::Name.eq(name)).one(db).await?)
}

/// Stages of the tenant by id.
pub async fn stages_by_id(db: &impl ConnectionTrait, tenant: TenantId, ids: &[Uuid]) -> Result<HashMap<Uuid, stage::Model>> {
    Ok(stage::Entity::find()
        .filter(stage::Column::TenantId.eq(tenant.0))
        .filter(stage::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|s| (s.id, s))
        .collect())
}

/// The flows each of `stages` is bound to, by slug.
pub async fn flow_sets(db: &impl ConnectionTrait, tenant: TenantId, stages: &[Uuid]) -> Result<HashMap<Uuid, Vec<flow::Model>>> {
    let bindings = binding::Entity::find()
        .filter(binding::Column::TenantId.eq(tenant.0))
        .filter(binding::Column::StageId.is_in(stages.iter().copied()))
        .all(db)
        .await?;
    let mut flow_ids: Vec<Uuid> = bindings.iter().map(|b| b.flow_id).collect();
    flow_ids.sort_unstable();
    flow_ids.dedup();
    let flows = flows_by_id(db, tenant, &flow_ids).await?;
    let mut out: HashMap<Uuid, Vec<flow::Model>> = HashMap::new();
    for b in bindings {
        if let Some(flow) = flows.get(&b.flow_id) {
            let list = out.entry(b.stage_id).or_default();
            if !list.iter().any(|f| f.id == flow.id) {
                list.push(flow.clone());
            }
        }
    }
    for list in out.values_mut() {
        list.sort_by(|a, b| a.slug.cmp(&b.slug));
    }
    Ok(out)
}

const NAME_TAKEN: &str = "A stage with this name already exists.";

fn parse_name(name: Option<String>, current: Option<&str>, full: bool, errors: &mut FieldErrors) -> String {
    match name {
        Some(name) if name.trim().is_empty() => {
            errors.add("name", "This field may not be blank.");
            String::new()
        }
        Some(name) => name,
        None => match current {
            Some(current) if !full => current.to_owned(),
            _ => {
                errors.add("name", "This field is required.");
                String::new()
            }
        },
    }
}

/// Parses `settings` with `kind`'s rules and checks that the stages they name exist, are of the
/// right kind and belong to the tenant.
pub async fn parse_stage_settings(
    db: &impl ConnectionTrait,
    tenant: TenantId,
    kind: &dyn StageKind,
    settings: Map<String, Value>,
    errors: &mut FieldErrors,
) -> Result<Value> {
    let parsed = match kind.parse_settings(settings) {
        Ok(parsed) => parsed,
        Err(settings_errors) => {
            for (field, messages) in settings_errors.fields() {
                for message in messages {
                    errors.add(field.clone(), message.clone());
                }
            }
            return Ok(Value::Null);
        }
    };
    for reference in kind.references() {
        let Some(value) = parsed.get(reference.field).filter(|v| !v.is_null()) else { continue };
        let target = value.as_str().and_then(|v| Uuid::parse_str(v).ok());
        let exists = match target {
            Some(id) => find_stage(db, tenant, id, Some(reference.target_kind)).await?.is_some(),
            None => false,
        };
        if !exists {
            let shown = value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
            errors.add(reference.field, missing_pk(shown));
        }
    }
    Ok(parsed)
}

async fn check_name_free(
    db: &impl ConnectionTrait,
    tenant: TenantId,
    name: &str,
    except: Option<Uuid>,
    errors: &mut FieldErrors,
) -> Result<()> {
    if let Some(existing) = find_stage_by_name(db, tenant, name).await?
        && Some(existing.id) != except
    {
        errors.add("name", NAME_TAKEN);
    }
    Ok(())
}

/// Creates a stage of `kind` inside `txn`.
pub async fn create_stage_in(
    txn: &DatabaseTransaction,
    state: &AppState,
    actor: &Actor,
    kind: &dyn StageKind,
    name: Option<String>,
    settings: Map<String, Value>,
) -> Result<stage::Model> {
    let mut errors = FieldErrors::new();
    let name = parse_name(name, None, true, &mut errors);
    let settings = parse_stage_settings(txn, state.tenant, kind, settings, &mut errors).await?;
    if !name.is_empty() {
        check_name_free(txn, state.tenant, &name, None, &mut errors).await?;
    }
    errors.into_result()?;
    let now = Utc::now();
    let created = stage::ActiveModel {
        id: Set(Uuid::new_v4()),
        tenant_id: Set(state.tenant.0),
        name: Set(name),
        kind: Set(kind.kind().to_owned()),
        settings: Set(settings),
        created: Set(now),
        last_updated: Set(now),
    }
    .insert(txn)
    .await
    .map_err(|e| unique_violation(e, "name", NAME_TAKEN))?;
    audit(txn, state, actor, Action::ModelCreated, stage_ref(state, &created), json!({}), stage_json(&created)).await?;
    Ok(created)
}

/// Creates a stage of `kind`.
pub async fn create_stage(
    state: &AppState,
    actor: &Actor,
    kind: &dyn StageKind,
    name: Option<String>,
    settings: Map<String, Value>,
) -> Result<stage::Model> {
    let txn = crate::db::begin_write(&state.db).await?;
    let created = create_stage_in(&txn, state, actor, kind, name, settings).await?;
    txn.commit().await?;
    Ok(created)
}

/// A change to a stage: its name and settings as sent. A full change (PUT) replaces the
/// settings, defaults filling in what is not sent; a partial one merges them into the stored
/// settings.
#[derive(Debug, Clone, Default)]
pub struct StageChange {
    pub name: Option<String>,
    pub settings: Map<String, Value>,
    pub full: bool,
}

/// Updates a stage of `kind` inside `txn`.
pub async fn update_stage_in(
    txn: &DatabaseTransaction,
    state: &AppState,
    actor: &Actor,
    kind: &dyn StageKind,
    before: &stage::Model,
    change: StageChange,
) -> Result<stage::Model> {
    let mut errors = FieldErrors::new();
    let name = parse_name(change.name, Some(&before.name), change.full, &mut errors);
    let settings = if change.full {
        change.settings
    } else {
        let mut merged = match &before.settings {
            Value::Object(stored) => stored.clone(),
            _ => Map::new(),
        };
        merged.extend(change.settings);
        merged
    };
    let settings = parse_stage_settings(txn, state.tenant, kind, settings, &mut errors).await?;
    if !name.is_empty() {
        check_name_free(txn, state.tenant, &name, Some(before.id), &mut errors).await?;
    }
    errors.into_result()?;
    let mut model = before.clone().into_active_model();
    model.name = Set(name);
    model.settings = Set(settings);
    model.last_updated = Set(Utc::now());
    let after = model.update(txn).await.map_err(|e| unique_violation(e, "name", NAME_TAKEN))?;
    audit(txn, state, actor, Action::ModelUpdated, stage_ref(state, &after), stage_json(before), stage_json(&after)).await?;
    Ok(after)
}

/// Updates a stage of `kind`.
pub async fn update_stage(
    state: &AppState,
    actor: &Actor,
    kind: &dyn StageKind,
    before: &stage::Model,
    change: StageChange,
) -> Result<stage::Model> {
    let txn = crate::db::begin_write(&state.db).await?;
    let after = update_stage_in(&txn, state, actor, kind, before, change).await?;
    txn.commit().await?;
    Ok(after)
}

/// Deletes a stage. Its bindings go with it (foreign-key cascade), and other stages' settings
/// that named it are cleared, each change recorded.
pub async fn delete_stage(state: &AppState, actor: &Actor, stage: &stage::Model) -> Result<()> {
    let txn = crate::db::begin_write(&state.db).await?;
    for (holder, reference) in stages_naming(&txn, state, stage).await? {
        let mut settings = holder.settings.clone();
        if let Some(map) = settings.as_object_mut() {
            map.insert(reference.field.to_owned(), Value::Null);
        }
        let mut model = holder.clone().into_active_model();
        model.settings = Set(settings);
        model.last_updated = Set(Utc::now());
        let after = model.update(&txn).await?;
        audit(&txn, state, actor, Action::ModelUpdated, stage_ref(state, &after), stage_json(&holder), stage_json(&after)).await?;
    }
    stage::Entity::delete_many()
        .filter(stage::Column::TenantId.eq(state.tenant.0))
        .filter(stage::Column::Id.eq(stage.id))
        .exec(&txn)
        .await?;
    audit(&txn, state, actor, Action::ModelDeleted, stage_ref(state, stage), Value::Null, Value::Null).await?;
    txn.commit().await?;
    Ok(())
}

/// What uses a stage: the bindings that go with it when it is deleted, and the stages whose
/// settings name it (cleared then), as authentik's `used_by` lists them.
pub async fn stage_used_by(state: &AppState, stage: &stage::Model) -> Result<Vec<UsedBy>> {
    let mut out = Vec::new();
    let bindings = binding::Entity::find()
        .filter(binding::Column::TenantId.eq(state.tenant.0))
        .filter(binding::Column::StageId.eq(stage.id))
        .order_by_asc(binding::Column::BindingOrder)
        .all(&state.db)
        .await?;
    for binding in &bindings {
        let about = binding_ref(binding);
        out.push(UsedBy {
            app: about.app.into(),
            model_name: about.model_name.into(),
            pk: binding.id.to_string(),
            name: about.name,
            action: "cascade".into(),
        });
    }
    for (holder, _) in stages_naming(&state.db, state, stage).await? {
        let about = stage_ref(state, &holder);
        out.push(UsedBy {
            app: about.app.into(),
            model_name: about.model_name.into(),
            pk: holder.id.to_string(),
            name: holder.name,
            action: "set_null".into(),
        });
    }
    Ok(out)
}

/// The stages whose settings name `stage`, by name, with the field that names it.
async fn stages_naming(
    db: &impl ConnectionTrait,
    state: &AppState,
    stage: &stage::Model,
) -> Result<Vec<(stage::Model, &'static StageReference)>> {
    let target = json!(stage.id.to_string());
    let mut out = Vec::new();
    for (holder_kind, reference) in state.stages.references_to(&stage.kind) {
        // Settings are JSON whose querying differs between the databases; the referring kinds
        // have few stages, so they are read and filtered here.
        let holders = stage::Entity::find()
            .filter(stage::Column::TenantId.eq(state.tenant.0))
            .filter(stage::Column::Kind.eq(holder_kind))
            .order_by_asc(stage::Column::Name)
            .all(db)
            .await?;
        out.extend(holders.into_iter().filter(|h| h.settings.get(reference.field) == Some(&target)).map(|h| (h, reference)));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Bindings

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

/// One page of the tenant's bindings.
pub async fn list_bindings(state: &AppState, filter: &BindingFilter, params: &ListParams) -> Result<Paginated<binding::Model>> {
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

/// Creates a binding inside `txn`.
pub async fn create_binding_in(
    txn: &DatabaseTransaction,
    state: &AppState,
    actor: &Actor,
    fields: BindingFields,
) -> Result<binding::Model> {
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
    txn.commit().await?;
    Ok(created)
}

/// Replaces a binding's values inside `txn`.
pub async fn update_binding_in(
    txn: &DatabaseTransaction,
    state: &AppState,
    actor: &Actor,
    before: &binding::Model,
    fields: BindingFields,
) -> Result<binding::Model> {
    check_binding(txn, state.tenant, &fields, Some(before.id)).await?;
    let mut model = before.clone().into_active_model();
    apply_binding(&mut model, fields);
    let after = model.update(txn).await.map_err(|e| unique_violation(e, NON_FIELD_ERRORS, BINDING_TAKEN))?;
    audit(txn, state, actor, Action::ModelUpdated, binding_ref(&after), binding_json(before), binding_json(&after)).await?;
    Ok(after)
}

/// Replaces a binding's values.
pub async fn update_binding(state: &AppState, actor: &Actor, before: &binding::Model, fields: BindingFields) -> Result<binding::Model> {
    let txn = crate::db::begin_write(&state.db).await?;
    let after = update_binding_in(&txn, state, actor, before, fields).await?;
    txn.commit().await?;
    Ok(after)
}

/// Deletes a binding inside `txn`.
pub async fn delete_binding_in(txn: &DatabaseTransaction, state: &AppState, actor: &Actor, binding: &binding::Model) -> Result<()> {
    binding::Entity::delete_many()
        .filter(binding::Column::TenantId.eq(state.tenant.0))
        .filter(binding::Column::Id.eq(binding.id))
        .exec(txn)
        .await?;
    audit(txn, state, actor, Action::ModelDeleted, binding_ref(binding), Value::Null, Value::Null).await
}

/// Deletes a binding.
pub async fn delete_binding(state: &AppState, actor: &Actor, binding: &binding::Model) -> Result<()> {
    let txn = crate::db::begin_write(&state.db).await?;
    delete_binding_in(&txn, state, actor, binding).await?;
    txn.commit().await?;
    Ok(())
}
