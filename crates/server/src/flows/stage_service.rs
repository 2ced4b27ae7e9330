//! Storage and rules of stages as administrators change them. Every change has a `*_in` form
//! that works inside the caller's transaction, so an import can make many of them atomically.

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, IntoActiveModel, Order, QueryFilter, QueryOrder, Set,
};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::binding_service::binding_ref;
use super::changes::{audit, missing_pk, unique_violation};
use super::entities::{binding, flow, stage};
use super::flow_service::flows_by_id;
use super::stage::{StageKind, StageReference};
use crate::accounts::access::Actor;
use crate::accounts::permissions::names;
use crate::db::pagination::{ListParams, Paginated, fetch_page, ilike};
use crate::error::{Error, FieldErrors, Result};
use crate::events::{Action, ModelRef};
use crate::state::AppState;
use crate::tenants::TenantId;
use crate::tokens::api::UsedBy;

fn stage_ref(state: &AppState, stage: &stage::Model) -> ModelRef {
    let (app, model_name) =
        state.stages.get(&stage.kind).and_then(|k| k.meta_model_name().split_once('.')).unwrap_or(("authentik_flows", "stage"));
    ModelRef { app, model_name, pk: json!(stage.id), name: stage.name.clone() }
}

/// A stage as the audit trail records it: the write-only settings (provider credentials) masked.
fn stage_json(state: &AppState, stage: &stage::Model) -> Value {
    let mut out = match &stage.settings {
        Value::Object(settings) => settings.clone(),
        _ => Map::new(),
    };
    for field in state.stages.get(&stage.kind).map(|kind| kind.write_only()).unwrap_or_default() {
        if let Some(value) = out.get_mut(*field) {
            *value = json!("********");
        }
    }
    out.insert("name".into(), json!(stage.name));
    Value::Object(out)
}

/// Filters of the stage lists.
#[derive(Debug, Default, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StageFilter {
    pub name: Option<String>,
    pub stage_uuid: Option<String>,
}

/// One page of the tenant's stages; `kind` restricts it to one kind. Needs
/// `authentik_flows.view_stage`.
pub async fn list_stages(
    state: &AppState,
    actor: &Actor,
    kind: Option<&str>,
    filter: &StageFilter,
    params: &ListParams,
) -> Result<Paginated<stage::Model>> {
    actor.require(names::VIEW_STAGE)?;
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
        check_reference(db, tenant, reference, value, errors).await?;
    }
    for reference in kind.list_references() {
        for value in parsed.get(reference.field).and_then(Value::as_array).into_iter().flatten() {
            check_reference(db, tenant, reference, value, errors).await?;
        }
    }
    for field in kind.mapping_references() {
        let Some(value) = parsed.get(*field).filter(|v| !v.is_null()) else { continue };
        let id = value.as_str().and_then(|v| Uuid::parse_str(v).ok());
        let exists = match id {
            Some(id) => crate::mappings::service::find_webhook_mapping(db, tenant, id).await?.is_some(),
            None => false,
        };
        if !exists {
            errors.add(*field, missing_pk(value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string())));
        }
    }
    Ok(parsed)
}

/// The stages whose settings name the property mapping `mapping`, with the field naming it.
async fn stages_naming_mapping_in(db: &impl ConnectionTrait, state: &AppState, mapping: Uuid) -> Result<Vec<(stage::Model, &'static str)>> {
    let target = mapping.to_string();
    let mut out = Vec::new();
    for kind in state.stages.all() {
        if kind.mapping_references().is_empty() {
            continue;
        }
        // Settings are JSON whose querying differs between the databases; the kinds that name
        // mappings have few stages, so they are read and filtered here.
        let stages = stage::Entity::find()
            .filter(stage::Column::TenantId.eq(state.tenant.0))
            .filter(stage::Column::Kind.eq(kind.kind()))
            .order_by_asc(stage::Column::Name)
            .all(db)
            .await?;
        for holder in stages {
            let named = kind
                .mapping_references()
                .iter()
                .find(|field| holder.settings.get(**field).and_then(Value::as_str) == Some(target.as_str()));
            if let Some(field) = named {
                out.push((holder, *field));
            }
        }
    }
    Ok(out)
}

/// The stages whose settings name the property mapping `mapping`, as `used_by` lists them
/// (deleting the mapping clears it from them).
pub async fn stages_naming_mapping(state: &AppState, mapping: Uuid) -> Result<Vec<UsedBy>> {
    let holders = stages_naming_mapping_in(&state.db, state, mapping).await?;
    Ok(holders
        .into_iter()
        .map(|(holder, _)| {
            let about = stage_ref(state, &holder);
            UsedBy {
                app: about.app.into(),
                model_name: about.model_name.into(),
                pk: holder.id.to_string(),
                name: holder.name,
                action: "set_null".into(),
            }
        })
        .collect())
}

/// Deletes the webhook mapping `id` and, in the same transaction, clears it from the stages that
/// name it (as authentik's `SET_NULL`), so that no stage is left naming a mapping that is gone.
pub async fn delete_webhook_mapping(state: &AppState, actor: &Actor, id: Uuid) -> Result<()> {
    let txn = crate::db::begin_write(&state.db).await?;
    crate::mappings::service::delete_in(&txn, state, actor, id).await?;
    for (holder, field) in stages_naming_mapping_in(&txn, state, id).await? {
        let mut settings = holder.settings.clone();
        if let Some(map) = settings.as_object_mut() {
            map.insert(field.to_owned(), Value::Null);
        }
        let mut model = holder.into_active_model();
        model.settings = Set(settings);
        model.update(&txn).await?;
    }
    super::plans::commit_change(state, txn).await?;
    Ok(())
}

/// Adds an error on the reference's field unless `value` names a stage of its target kind.
async fn check_reference(
    db: &impl ConnectionTrait,
    tenant: TenantId,
    reference: &StageReference,
    value: &Value,
    errors: &mut FieldErrors,
) -> Result<()> {
    let exists = match value.as_str().and_then(|v| Uuid::parse_str(v).ok()) {
        Some(id) => find_stage(db, tenant, id, None).await?.is_some_and(|stage| reference.target_kinds.contains(&stage.kind.as_str())),
        None => false,
    };
    if !exists {
        let shown = value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
        errors.add(reference.field, missing_pk(shown));
    }
    Ok(())
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

/// The stage `id` (of `kind`, when given); needs `authentik_flows.view_stage`.
pub async fn get_stage(state: &AppState, actor: &Actor, id: Uuid, kind: Option<&str>) -> Result<stage::Model> {
    actor.require(names::VIEW_STAGE)?;
    find_stage(&state.db, state.tenant, id, kind).await?.ok_or(Error::NotFound)
}

/// Creates a stage of `kind` inside `txn`; needs `authentik_flows.add_stage`.
pub async fn create_stage_in(
    txn: &DatabaseTransaction,
    state: &AppState,
    actor: &Actor,
    kind: &dyn StageKind,
    name: Option<String>,
    settings: Map<String, Value>,
) -> Result<stage::Model> {
    actor.require(names::ADD_STAGE)?;
    let mut errors = FieldErrors::new();
    let name = parse_name(name, None, true, &mut errors);
    let settings = parse_stage_settings(txn, state.tenant, kind, settings, &mut errors).await?;
    if !settings.is_null() {
        kind.check_settings(txn, state, &settings, &mut errors).await?;
    }
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
    audit(txn, state, actor, Action::ModelCreated, stage_ref(state, &created), json!({}), stage_json(state, &created)).await?;
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
    super::plans::commit_change(state, txn).await?;
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

/// Updates a stage of `kind` inside `txn`; needs `authentik_flows.change_stage`.
pub async fn update_stage_in(
    txn: &DatabaseTransaction,
    state: &AppState,
    actor: &Actor,
    kind: &dyn StageKind,
    before: &stage::Model,
    change: StageChange,
) -> Result<stage::Model> {
    actor.require(names::CHANGE_STAGE)?;
    let mut errors = FieldErrors::new();
    let name = parse_name(change.name, Some(&before.name), change.full, &mut errors);
    let settings = if change.full {
        // A full update replaces the settings, but secrets the API never shows are kept unless
        // sent: a client cannot send back what it was never given.
        let mut replaced = change.settings;
        for field in kind.write_only() {
            if !replaced.contains_key(*field)
                && let Some(stored) = before.settings.get(*field)
            {
                replaced.insert((*field).to_owned(), stored.clone());
            }
        }
        replaced
    } else {
        let mut merged = match &before.settings {
            Value::Object(stored) => stored.clone(),
            _ => Map::new(),
        };
        merged.extend(change.settings);
        merged
    };
    let settings = parse_stage_settings(txn, state.tenant, kind, settings, &mut errors).await?;
    if !settings.is_null() {
        kind.check_settings(txn, state, &settings, &mut errors).await?;
    }
    if !name.is_empty() {
        check_name_free(txn, state.tenant, &name, Some(before.id), &mut errors).await?;
    }
    errors.into_result()?;
    let mut model = before.clone().into_active_model();
    model.name = Set(name);
    model.settings = Set(settings);
    model.last_updated = Set(Utc::now());
    let after = model.update(txn).await.map_err(|e| unique_violation(e, "name", NAME_TAKEN))?;
    audit(txn, state, actor, Action::ModelUpdated, stage_ref(state, &after), stage_json(state, before), stage_json(state, &after)).await?;
    Ok(after)
}

/// Updates the stage `id` of `kind`; needs `authentik_flows.change_stage`, checked before the
/// stage is looked up.
pub async fn update_stage(state: &AppState, actor: &Actor, kind: &dyn StageKind, id: Uuid, change: StageChange) -> Result<stage::Model> {
    actor.require(names::CHANGE_STAGE)?;
    let before = find_stage(&state.db, state.tenant, id, Some(kind.kind())).await?.ok_or(Error::NotFound)?;
    let txn = crate::db::begin_write(&state.db).await?;
    let after = update_stage_in(&txn, state, actor, kind, &before, change).await?;
    super::plans::commit_change(state, txn).await?;
    Ok(after)
}

/// Deletes the stage `id` (of `kind`, when given). Its bindings go with it (foreign-key
/// cascade), and other stages' settings that named it are cleared, each change recorded. Needs
/// `authentik_flows.delete_stage`.
pub async fn delete_stage(state: &AppState, actor: &Actor, id: Uuid, kind: Option<&str>) -> Result<()> {
    actor.require(names::DELETE_STAGE)?;
    let stage = &find_stage(&state.db, state.tenant, id, kind).await?.ok_or(Error::NotFound)?;
    let txn = crate::db::begin_write(&state.db).await?;
    for (holder, reference, listed) in stages_naming(&txn, state, stage).await? {
        let mut settings = holder.settings.clone();
        if let Some(map) = settings.as_object_mut() {
            if listed {
                let target = json!(stage.id.to_string());
                if let Some(Value::Array(ids)) = map.get_mut(reference.field) {
                    ids.retain(|id| *id != target);
                }
            } else {
                map.insert(reference.field.to_owned(), Value::Null);
            }
        }
        let mut model = holder.clone().into_active_model();
        model.settings = Set(settings);
        model.last_updated = Set(Utc::now());
        let after = model.update(&txn).await?;
        audit(&txn, state, actor, Action::ModelUpdated, stage_ref(state, &after), stage_json(state, &holder), stage_json(state, &after))
            .await?;
    }
    stage::Entity::delete_many()
        .filter(stage::Column::TenantId.eq(state.tenant.0))
        .filter(stage::Column::Id.eq(stage.id))
        .exec(&txn)
        .await?;
    audit(&txn, state, actor, Action::ModelDeleted, stage_ref(state, stage), Value::Null, Value::Null).await?;
    super::plans::commit_change(state, txn).await?;
    Ok(())
}

/// What uses a stage: the bindings that go with it when it is deleted, and the stages whose
/// settings name it (cleared then), as authentik's `used_by` lists them. Needs
/// `authentik_flows.view_stage`.
pub async fn stage_used_by(state: &AppState, actor: &Actor, id: Uuid, kind: Option<&str>) -> Result<Vec<UsedBy>> {
    let stage = &get_stage(state, actor, id, kind).await?;
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
    for (holder, _, _) in stages_naming(&state.db, state, stage).await? {
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
/// The stages whose settings name `stage`, with the field, and whether it is a list field.
async fn stages_naming(
    db: &impl ConnectionTrait,
    state: &AppState,
    stage: &stage::Model,
) -> Result<Vec<(stage::Model, &'static StageReference, bool)>> {
    let target = json!(stage.id.to_string());
    let mut out = Vec::new();
    for (holder_kind, reference) in state.stages.list_references_to(&stage.kind) {
        let holders = stage::Entity::find()
            .filter(stage::Column::TenantId.eq(state.tenant.0))
            .filter(stage::Column::Kind.eq(holder_kind))
            .order_by_asc(stage::Column::Name)
            .all(db)
            .await?;
        let lists = |h: &stage::Model| h.settings.get(reference.field).and_then(Value::as_array).is_some_and(|ids| ids.contains(&target));
        out.extend(holders.into_iter().filter(|h| lists(h)).map(|h| (h, reference, true)));
    }
    for (holder_kind, reference) in state.stages.references_to(&stage.kind) {
        // Settings are JSON whose querying differs between the databases; the referring kinds
        // have few stages, so they are read and filtered here.
        let holders = stage::Entity::find()
            .filter(stage::Column::TenantId.eq(state.tenant.0))
            .filter(stage::Column::Kind.eq(holder_kind))
            .order_by_asc(stage::Column::Name)
            .all(db)
            .await?;
        out.extend(holders.into_iter().filter(|h| h.settings.get(reference.field) == Some(&target)).map(|h| (h, reference, false)));
    }
    Ok(out)
}

/// A way for a signed-in person to set up an authenticator: a setup stage's configuration flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupLink {
    /// The stage's friendly name, or its kind's name.
    pub label: String,
    /// The configuration flow's slug.
    pub flow_slug: String,
}

/// Every authenticator setup stage of the tenant that names a configuration flow, with that flow,
/// by label. (authentik's user settings offer the same.)
pub async fn authenticator_setup_links(state: &AppState) -> Result<Vec<SetupLink>> {
    let stages = stage::Entity::find()
        .filter(stage::Column::TenantId.eq(state.tenant.0))
        .filter(stage::Column::Kind.is_in(super::stages::AUTHENTICATOR_SETUP_KINDS.iter().copied()))
        .all(&state.db)
        .await?;
    let configured: Vec<(stage::Model, Uuid)> = stages
        .into_iter()
        .filter_map(|s| {
            let flow = s.settings.get("configure_flow").and_then(Value::as_str).and_then(|id| Uuid::parse_str(id).ok())?;
            Some((s, flow))
        })
        .collect();
    let flow_ids: Vec<Uuid> = configured.iter().map(|(_, flow)| *flow).collect();
    let flows = flows_by_id(&state.db, state.tenant, &flow_ids).await?;
    let mut links: Vec<SetupLink> = configured
        .into_iter()
        .filter_map(|(stage, flow)| {
            let flow = flows.get(&flow)?;
            let friendly = stage.settings.get("friendly_name").and_then(Value::as_str).filter(|n| !n.trim().is_empty());
            let label = friendly
                .map(str::to_owned)
                .or_else(|| state.stages.get(&stage.kind).map(|k| k.verbose_name().replace(" Setup Stage", "")))?;
            Some(SetupLink { label: format!("Set up: {label}"), flow_slug: flow.slug.clone() })
        })
        .collect();
    links.sort_by(|a, b| a.label.cmp(&b.label));
    links.dedup();
    Ok(links)
}
