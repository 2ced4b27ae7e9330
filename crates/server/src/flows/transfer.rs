//! Export and import of flows as authentik-style blueprint documents: `version: 1`,
//! `metadata`, and `entries` of `{model, identifiers, attrs}` for the flow, its stages (and the
//! stages those name) and its bindings. Stages are identified by name and flows by slug, so a
//! document moves between servers; references between stages are written as names.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use sea_orm::DatabaseTransaction;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::api::{BindingWrite, FlowImportResult, FlowWrite, LogEvent};
use super::entities::{binding, flow, stage};
use super::stage::StageKind;
use super::stage::StageRegistry;
use super::{binding_service, flow_service, stage_service};
use crate::accounts::access::Actor;
use crate::accounts::permissions::names;
use crate::error::{Error, FieldErrors, NON_FIELD_ERRORS, Result};
use crate::state::AppState;

/// The model name of flows in documents.
pub const FLOW_MODEL: &str = "authentik_flows.flow";
/// The model name of bindings in documents.
pub const BINDING_MODEL: &str = "authentik_flows.flowstagebinding";

const LOGGER: &str = "gatehouse.flows.transfer";

/// The largest document an import reads; a flow with hundreds of stages stays far below it.
pub const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

/// What an imported document may expand to once read, whatever its size on the wire.
const DOCUMENT_BOUNDS: crate::json::Bounds = crate::json::Bounds { max_nodes: 100_000, max_depth: 32, max_text_bytes: 4 * 1024 * 1024 };

/// A blueprint document.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blueprint {
    pub version: u32,
    #[serde(default)]
    pub metadata: Metadata,
    /// authentik's blueprint context; accepted and not used.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub context: Map<String, Value>,
    pub entries: Vec<Entry>,
}

/// A document's metadata.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub labels: Map<String, Value>,
}

/// One object of a document.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub model: String,
    /// What finds the object: a flow's `slug`, a stage's `name`, a binding's `target` (flow
    /// slug), `stage` (stage name) and `order`.
    #[serde(default)]
    pub identifiers: Map<String, Value>,
    #[serde(default)]
    pub attrs: Map<String, Value>,
    /// `present` (the default: create or update) or `created` (create when missing, else leave).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// authentik's entry id; accepted and not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// The formats a document is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// The media type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Yaml => "application/yaml",
            Format::Json => "application/json",
        }
    }

    /// The file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Yaml => "yaml",
            Format::Json => "json",
        }
    }
}

/// Writes a document.
pub fn render(document: &Blueprint, format: Format) -> Result<String> {
    match format {
        Format::Yaml => serde_norway::to_string(document).map_err(Error::internal),
        Format::Json => serde_json::to_string_pretty(document).map_err(Error::internal),
    }
}

/// The flow's values as the audit trail records them, less the slug (an identifier here).
fn flow_attrs(flow: &flow::Model) -> Map<String, Value> {
    let Value::Object(mut attrs) = super::flow_service::flow_json(flow) else {
        return Map::new();
    };
    attrs.remove("slug");
    attrs
}

fn referenced_id(settings: &Value, field: &str) -> Option<Uuid> {
    settings.get(field).and_then(Value::as_str).and_then(|v| Uuid::parse_str(v).ok())
}

/// The flow `slug` and its document; needs `authentik_flows.view_flow` and
/// `authentik_flows.export_flow`.
pub async fn export(state: &AppState, actor: &Actor, slug: &str) -> Result<(flow::Model, Blueprint)> {
    actor.require(names::EXPORT_FLOW)?;
    let flow = flow_service::get_flow(state, actor, slug).await?;
    let document = document_of(state, &flow).await?;
    Ok((flow, document))
}

/// The document of `flow`: the flow, every stage bound to it and every stage those name
/// (named stages before the stages naming them), and the bindings.
async fn document_of(state: &AppState, flow: &flow::Model) -> Result<Blueprint> {
    let tenant = state.tenant;
    let bindings = binding_service::bindings_of(&state.db, tenant, &[flow.id]).await?;
    let mut stages: HashMap<Uuid, stage::Model> = HashMap::new();
    let mut wanted: Vec<Uuid> = bindings.iter().map(|b| b.stage_id).collect();
    while !wanted.is_empty() {
        wanted.retain(|id| !stages.contains_key(id));
        wanted.sort_unstable();
        wanted.dedup();
        let found = stage_service::stages_by_id(&state.db, tenant, &wanted).await?;
        wanted = found
            .values()
            .flat_map(|s| state.stages.references_of(&s.kind).iter().filter_map(|r| referenced_id(&s.settings, r.field)))
            .filter(|id| !stages.contains_key(id) && !found.contains_key(id))
            .collect();
        stages.extend(found);
    }

    // Stages in binding order, each after the stages it names.
    let mut ordered: Vec<Uuid> = Vec::new();
    fn visit(registry: &StageRegistry, id: Uuid, stages: &HashMap<Uuid, stage::Model>, ordered: &mut Vec<Uuid>, seen: &mut HashSet<Uuid>) {
        if !seen.insert(id) {
            return;
        }
        if let Some(stage) = stages.get(&id) {
            for reference in registry.references_of(&stage.kind) {
                if let Some(target) = referenced_id(&stage.settings, reference.field) {
                    visit(registry, target, stages, ordered, seen);
                }
            }
            ordered.push(id);
        }
    }
    let mut seen = HashSet::new();
    for b in &bindings {
        visit(&state.stages, b.stage_id, &stages, &mut ordered, &mut seen);
    }

    let mut entries = vec![Entry {
        model: FLOW_MODEL.into(),
        identifiers: single("slug", json!(flow.slug)),
        attrs: flow_attrs(flow),
        state: None,
        id: None,
    }];
    for id in &ordered {
        let Some(stage) = stages.get(id) else { continue };
        let kind = state.stages.get(&stage.kind).ok_or_else(|| {
            Error::field(
                NON_FIELD_ERRORS,
                format!("Stage \"{}\" is of kind \"{}\", which this server does not know.", stage.name, stage.kind),
            )
        })?;
        let mut attrs = match &stage.settings {
            Value::Object(settings) => settings.clone(),
            _ => Map::new(),
        };
        for field in state.stages.get(&stage.kind).map(|kind| kind.write_only()).unwrap_or_default() {
            attrs.remove(*field);
        }
        for reference in kind.references() {
            if let Some(target) = referenced_id(&stage.settings, reference.field) {
                let name = stages.get(&target).map(|s| json!(s.name)).unwrap_or(Value::Null);
                attrs.insert(reference.field.to_owned(), name);
            }
        }
        entries.push(Entry {
            model: kind.meta_model_name().into(),
            identifiers: single("name", json!(stage.name)),
            attrs,
            state: None,
            id: None,
        });
    }
    for b in &bindings {
        let Some(stage) = stages.get(&b.stage_id) else { continue };
        let mut identifiers = single("target", json!(flow.slug));
        identifiers.insert("stage".into(), json!(stage.name));
        identifiers.insert("order".into(), json!(b.binding_order));
        let Value::Object(attrs) = json!({
            "evaluate_on_plan": b.evaluate_on_plan,
            "re_evaluate_policies": b.re_evaluate_policies,
            "policy_engine_mode": b.policy_engine_mode,
            "invalid_response_action": b.invalid_response_action,
        }) else {
            continue;
        };
        entries.push(Entry { model: BINDING_MODEL.into(), identifiers, attrs, state: None, id: None });
    }
    Ok(Blueprint { version: 1, metadata: Metadata { name: flow.name.clone(), labels: Map::new() }, context: Map::new(), entries })
}

fn single(key: &str, value: Value) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert(key.to_owned(), value);
    map
}

/// The log an import answers with.
#[derive(Default)]
struct ImportLog {
    events: Vec<LogEvent>,
}

impl ImportLog {
    fn push(&mut self, level: &str, event: impl Into<String>, attributes: Map<String, Value>) {
        self.events.push(LogEvent {
            timestamp: Utc::now(),
            log_level: level.into(),
            logger: LOGGER.into(),
            event: event.into(),
            attributes,
        });
    }

    fn info(&mut self, event: impl Into<String>, attributes: Map<String, Value>) {
        self.push("info", event, attributes);
    }

    fn error(&mut self, event: impl Into<String>, attributes: Map<String, Value>) {
        self.push("error", event, attributes);
    }

    /// One line per message of `errors`, about entry `index`.
    fn invalid(&mut self, index: usize, entry: &Entry, errors: &FieldErrors) {
        for (field, messages) in errors.fields() {
            for message in messages {
                let mut attributes = entry_attributes(index, entry);
                attributes.insert("field".into(), json!(field));
                attributes.insert("message".into(), json!(message));
                self.error(format!("Entry {index} ({}) is invalid: {field}: {message}", entry.model), attributes);
            }
        }
    }

    fn finish(self, success: bool) -> FlowImportResult {
        FlowImportResult { logs: self.events, success }
    }
}

fn entry_attributes(index: usize, entry: &Entry) -> Map<String, Value> {
    let mut attributes = Map::new();
    attributes.insert("entry".into(), json!(index));
    attributes.insert("model".into(), json!(entry.model));
    attributes.insert("identifiers".into(), Value::Object(entry.identifiers.clone()));
    attributes
}

/// The refusal for a document using one of authentik's YAML tags (`!KeyOf`, `!Find`, `!Context`,
/// `!Env`, …), which compute values from the database and the environment when authentik
/// applies a blueprint; Gatehouse imports plain values only, and says which tag, where.
fn blueprint_tag(text: &str) -> Option<String> {
    text.lines().enumerate().find_map(|(index, line)| {
        let code = line.split_once(" #").map_or(line, |(code, _)| code);
        let tag = code
            .split(|c: char| c.is_whitespace() || c == '[' || c == ',' || c == '{')
            .find(|token| token.len() > 1 && token.starts_with('!') && token[1..].starts_with(|c: char| c.is_ascii_alphabetic()))?;
        Some(format!(
            "The document uses the YAML tag {tag} on line {}. Gatehouse imports plain values only and does not evaluate authentik's \
             blueprint tags (!KeyOf, !Find, !Context, !Env and the like): replace the tag with the value it stands for, such \
             as the stage's name or the flow's slug, and import again.",
            index + 1
        ))
    })
}

/// Reads a document: JSON when it looks like JSON, YAML otherwise, within the import's bounds.
/// Errors say where.
pub fn parse_document(document: &[u8]) -> std::result::Result<Blueprint, String> {
    if document.len() > MAX_DOCUMENT_BYTES {
        return Err(format!("The document is larger than {} KiB.", MAX_DOCUMENT_BYTES / 1024));
    }
    let text = std::str::from_utf8(document).map_err(|_| "The document is not UTF-8 text.".to_owned())?;
    if text.trim().is_empty() {
        return Err("The document is empty.".into());
    }
    let too_big = |message: &str| {
        let bounds = DOCUMENT_BOUNDS;
        if message.contains(crate::json::TOO_MANY_VALUES) {
            Some(format!(
                "The document expands to more than {} values (a YAML alias counts everything its anchor holds, each time it is used).",
                bounds.max_nodes
            ))
        } else if message.contains(crate::json::TOO_DEEP) {
            Some(format!("The document nests lists and maps more than {} levels deep.", bounds.max_depth))
        } else if message.contains(crate::json::TOO_MUCH_TEXT) {
            Some(format!("The document expands to more than {} KiB of text.", bounds.max_text_bytes / 1024))
        } else {
            None
        }
    };
    let value: Value = if text.trim_start().starts_with('{') {
        crate::json::bounded_value(&mut serde_json::Deserializer::from_str(text), DOCUMENT_BOUNDS).map_err(|e| {
            let message = e.to_string();
            too_big(&message).unwrap_or_else(|| format!("The document is not valid JSON: {message}"))
        })?
    } else {
        crate::json::bounded_value(serde_norway::Deserializer::from_str(text), DOCUMENT_BOUNDS).map_err(|e| {
            let message = e.to_string();
            too_big(&message).or_else(|| blueprint_tag(text)).unwrap_or_else(|| format!("The document is not valid YAML: {message}"))
        })?
    };
    let blueprint: Blueprint = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        format!("The document does not have the shape of a blueprint at {path}: {}", e.into_inner())
    })?;
    if blueprint.version != 1 {
        return Err(format!("Unsupported blueprint version {}; only version 1 is known.", blueprint.version));
    }
    Ok(blueprint)
}

/// What an entry is.
#[derive(Clone)]
enum EntryKind {
    Flow { slug: String },
    Stage { kind: std::sync::Arc<dyn StageKind>, name: String },
    Binding { target: String, stage: String, order: i32 },
}

fn text_identifier(entry: &Entry, key: &str, errors: &mut FieldErrors) -> String {
    match entry.identifiers.get(key).and_then(Value::as_str) {
        Some(text) if !text.is_empty() => text.to_owned(),
        _ => {
            errors.add(format!("identifiers.{key}"), "A non-empty string is required.");
            String::new()
        }
    }
}

/// Checks an entry's model, identifiers and state before anything is written.
fn classify(state: &AppState, entry: &Entry) -> std::result::Result<EntryKind, FieldErrors> {
    let mut errors = FieldErrors::new();
    match entry.state.as_deref() {
        None | Some("present") | Some("created") => {}
        Some(other) => errors.add("state", format!("\"{other}\" is not supported; use present or created.")),
    }
    let kind = if entry.model == FLOW_MODEL {
        EntryKind::Flow { slug: text_identifier(entry, "slug", &mut errors) }
    } else if entry.model == BINDING_MODEL {
        let target = text_identifier(entry, "target", &mut errors);
        let stage = text_identifier(entry, "stage", &mut errors);
        let order = match entry.identifiers.get("order").and_then(Value::as_i64).map(i32::try_from) {
            Some(Ok(order)) => order,
            _ => {
                errors.add("identifiers.order", "An integer is required.");
                0
            }
        };
        EntryKind::Binding { target, stage, order }
    } else if let Some(kind) = state.stages.all().find(|k| k.meta_model_name() == entry.model) {
        EntryKind::Stage { kind: kind.clone(), name: text_identifier(entry, "name", &mut errors) }
    } else {
        errors.add("model", format!("Unknown model \"{}\"; this server imports flows, bindings and its stage kinds.", entry.model));
        return Err(errors);
    };
    if errors.is_empty() { Ok(kind) } else { Err(errors) }
}

/// Parses `attrs` (with `extra` merged over them) as `T`, errors by field.
fn parse_attrs<T: serde::de::DeserializeOwned>(attrs: &Map<String, Value>, extra: Map<String, Value>) -> Result<T> {
    let mut merged = attrs.clone();
    merged.extend(extra);
    let bytes = serde_json::to_vec(&Value::Object(merged)).map_err(Error::internal)?;
    crate::json::parse(&bytes)
}

/// Refuses unless `actor` may import: create and change flows, stages and bindings, and with
/// `clear`, delete bindings.
pub fn require_import_rights(actor: &Actor, clear: bool) -> Result<()> {
    for permission in [
        names::ADD_FLOW,
        names::CHANGE_FLOW,
        names::ADD_STAGE,
        names::CHANGE_STAGE,
        names::ADD_FLOW_STAGE_BINDING,
        names::CHANGE_FLOW_STAGE_BINDING,
    ] {
        actor.require(permission)?;
    }
    if clear {
        actor.require(names::DELETE_FLOW_STAGE_BINDING)?;
    }
    Ok(())
}

/// Imports a document: creates or updates every entry by its identifiers, all in one
/// transaction. An invalid document or entry writes nothing; the log says why. Needs the
/// rights [`require_import_rights`] names.
pub async fn import(state: &AppState, actor: &Actor, document: &[u8], clear: bool) -> Result<FlowImportResult> {
    require_import_rights(actor, clear)?;
    let mut log = ImportLog::default();
    let blueprint = match parse_document(document) {
        Ok(blueprint) => blueprint,
        Err(message) => {
            log.error(message, Map::new());
            return Ok(log.finish(false));
        }
    };
    let mut classified = Vec::with_capacity(blueprint.entries.len());
    for (index, entry) in blueprint.entries.iter().enumerate() {
        match classify(state, entry) {
            Ok(kind) => classified.push(kind),
            Err(errors) => log.invalid(index, entry, &errors),
        }
    }
    if classified.len() != blueprint.entries.len() {
        return Ok(log.finish(false));
    }

    let txn = crate::db::begin_write(&state.db).await?;
    let mut import = Import { state, actor, txn: &txn, log: &mut log, flows: HashMap::new(), stages: HashMap::new() };
    match import.run(&blueprint, &classified, clear).await {
        Ok(()) => {
            super::plans::commit_change(state, txn).await?;
            log.info("Import finished.", Map::new());
            Ok(log.finish(true))
        }
        Err(Error::Validation(_)) => {
            txn.rollback().await?;
            log.error("Nothing was imported.", Map::new());
            Ok(log.finish(false))
        }
        Err(other) => Err(other),
    }
}

/// An import in progress: what the document created or found so far, by identifier.
struct Import<'a> {
    state: &'a AppState,
    actor: &'a Actor,
    txn: &'a DatabaseTransaction,
    log: &'a mut ImportLog,
    flows: HashMap<String, flow::Model>,
    stages: HashMap<String, stage::Model>,
}

impl Import<'_> {
    async fn run(&mut self, blueprint: &Blueprint, classified: &[EntryKind], clear: bool) -> Result<()> {
        let indexed = || blueprint.entries.iter().zip(classified).enumerate();
        for (index, (entry, kind)) in indexed() {
            if let EntryKind::Flow { slug } = kind {
                let result = self.flow(entry, slug).await;
                self.checked(index, entry, result)?;
            }
        }
        if clear {
            let ids: Vec<Uuid> = self.flows.values().map(|f| f.id).collect();
            for binding in binding_service::bindings_of(self.txn, self.state.tenant, &ids).await? {
                binding_service::delete_binding_in(self.txn, self.state, self.actor, &binding).await?;
            }
            self.log.info("Removed the existing bindings of the document's flows.", Map::new());
        }
        // Stages that name other stages of the document come after those.
        let mut pending: Vec<usize> = indexed().filter(|(_, (_, k))| matches!(k, EntryKind::Stage { .. })).map(|(i, _)| i).collect();
        let names_in_document: HashSet<String> = classified
            .iter()
            .filter_map(|k| match k {
                EntryKind::Stage { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect();
        while !pending.is_empty() {
            let ready = pending.iter().position(|&i| {
                let (entry, EntryKind::Stage { kind, .. }) = (&blueprint.entries[i], &classified[i]) else { return true };
                kind.references().iter().all(|r| {
                    entry
                        .attrs
                        .get(r.field)
                        .and_then(Value::as_str)
                        .is_none_or(|name| !names_in_document.contains(name) || self.stages.contains_key(name))
                })
            });
            let Some(position) = ready else {
                let index = pending[0];
                let errors = FieldErrors::single(NON_FIELD_ERRORS, "The stages of the document name each other in a circle.");
                self.log.invalid(index, &blueprint.entries[index], &errors);
                return Err(Error::Validation(errors));
            };
            let index = pending.remove(position);
            if let (entry, EntryKind::Stage { kind, name }) = (&blueprint.entries[index], &classified[index]) {
                let result = self.stage(entry, kind.as_ref(), name).await;
                self.checked(index, entry, result)?;
            }
        }
        for (index, (entry, kind)) in indexed() {
            if let EntryKind::Binding { target, stage, order } = kind {
                let result = self.binding(entry, target, stage, *order).await;
                self.checked(index, entry, result)?;
            }
        }
        Ok(())
    }

    /// Logs an entry's validation errors.
    fn checked<T>(&mut self, index: usize, entry: &Entry, result: Result<T>) -> Result<T> {
        if let Err(Error::Validation(errors)) = &result {
            self.log.invalid(index, entry, errors);
        }
        result
    }

    fn done(&mut self, action: &str, entry: &Entry) {
        let mut attributes = Map::new();
        attributes.insert("model".into(), json!(entry.model));
        attributes.insert("identifiers".into(), Value::Object(entry.identifiers.clone()));
        self.log.info(format!("{action} {}", entry.model), attributes);
    }

    async fn flow(&mut self, entry: &Entry, slug: &str) -> Result<()> {
        let existing = flow_service::find_flow(self.txn, self.state.tenant, slug).await?;
        let flow = match existing {
            Some(existing) if entry.state.as_deref() == Some("created") => existing,
            existing => {
                let write: FlowWrite = parse_attrs(&entry.attrs, single("slug", json!(slug)))?;
                let fields = write.into_fields(existing.as_ref(), false)?;
                match existing {
                    Some(existing) => {
                        let updated = flow_service::update_flow_in(self.txn, self.state, self.actor, &existing, fields).await?;
                        self.done("Updated", entry);
                        updated
                    }
                    None => {
                        let created = flow_service::create_flow_in(self.txn, self.state, self.actor, fields).await?;
                        self.done("Created", entry);
                        created
                    }
                }
            }
        };
        self.flows.insert(slug.to_owned(), flow);
        Ok(())
    }

    /// A stage by name: one the document wrote, or one already there.
    async fn stage_named(&self, name: &str) -> Result<Option<stage::Model>> {
        match self.stages.get(name) {
            Some(stage) => Ok(Some(stage.clone())),
            None => stage_service::find_stage_by_name(self.txn, self.state.tenant, name).await,
        }
    }

    async fn stage(&mut self, entry: &Entry, kind: &dyn StageKind, name: &str) -> Result<()> {
        let mut settings = entry.attrs.clone();
        // The identifier names the stage; a `name` among the attributes would rename it.
        settings.remove("name");
        let mut errors = FieldErrors::new();
        for reference in kind.references() {
            let Some(value) = settings.get(reference.field).filter(|v| !v.is_null()).cloned() else { continue };
            let Some(target_name) = value.as_str() else {
                errors.add(reference.field, "The name of a stage is required.");
                continue;
            };
            match self.stage_named(target_name).await? {
                Some(target) if reference.target_kinds.contains(&target.kind.as_str()) => {
                    settings.insert(reference.field.to_owned(), json!(target.id));
                }
                _ => errors
                    .add(reference.field, format!("There is no {} stage named \"{target_name}\".", reference.target_kinds.join(" or "))),
            }
        }
        errors.into_result()?;
        let existing = stage_service::find_stage_by_name(self.txn, self.state.tenant, name).await?;
        let stage = match existing {
            Some(existing) if existing.kind != kind.kind() => {
                return Err(Error::field(
                    "identifiers.name",
                    format!("A stage named \"{name}\" of kind \"{}\" already exists.", existing.kind),
                ));
            }
            Some(existing) if entry.state.as_deref() == Some("created") => existing,
            Some(existing) => {
                let updated = stage_service::update_stage_in(
                    self.txn,
                    self.state,
                    self.actor,
                    kind,
                    &existing,
                    stage_service::StageChange { name: Some(name.to_owned()), settings, full: false },
                )
                .await?;
                self.done("Updated", entry);
                updated
            }
            None => {
                let created =
                    stage_service::create_stage_in(self.txn, self.state, self.actor, kind, Some(name.to_owned()), settings).await?;
                self.done("Created", entry);
                created
            }
        };
        self.stages.insert(name.to_owned(), stage);
        Ok(())
    }

    async fn binding(&mut self, entry: &Entry, target: &str, stage_name: &str, order: i32) -> Result<()> {
        let flow = match self.flows.get(target) {
            Some(flow) => Some(flow.clone()),
            None => flow_service::find_flow(self.txn, self.state.tenant, target).await?,
        };
        let stage = self.stage_named(stage_name).await?;
        let mut errors = FieldErrors::new();
        if flow.is_none() {
            errors.add("identifiers.target", format!("There is no flow with slug \"{target}\"."));
        }
        if stage.is_none() {
            errors.add("identifiers.stage", format!("There is no stage named \"{stage_name}\"."));
        }
        let (Some(flow), Some(stage)) = (flow, stage) else { return Err(Error::Validation(errors)) };
        let existing: Option<binding::Model> = binding_service::bindings_of(self.txn, self.state.tenant, &[flow.id])
            .await?
            .into_iter()
            .find(|b| b.stage_id == stage.id && b.binding_order == order);
        if existing.is_some() && entry.state.as_deref() == Some("created") {
            return Ok(());
        }
        let mut identity = single("target", json!(flow.id));
        identity.insert("stage".into(), json!(stage.id));
        identity.insert("order".into(), json!(order));
        let write: BindingWrite = parse_attrs(&entry.attrs, identity)?;
        let fields = write.into_fields(existing.as_ref(), false)?;
        match existing {
            Some(existing) => {
                binding_service::update_binding_in(self.txn, self.state, self.actor, &existing, fields).await?;
                self.done("Updated", entry);
            }
            None => {
                binding_service::create_binding_in(self.txn, self.state, self.actor, fields).await?;
                self.done("Created", entry);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_read_as_yaml_or_json() {
        let yaml = b"version: 1\nmetadata:\n  name: x\nentries:\n- model: authentik_flows.flow\n  identifiers:\n    slug: x\n";
        let parsed = parse_document(yaml).unwrap();
        assert_eq!(parsed.entries[0].identifiers["slug"], "x");
        let json = br#"{"version": 1, "entries": [{"model": "authentik_flows.flow", "identifiers": {"slug": "y"}}]}"#;
        assert_eq!(parse_document(json).unwrap().entries[0].identifiers["slug"], "y");
    }

    #[test]
    fn malformed_documents_say_why() {
        assert!(parse_document(b"version: [").unwrap_err().contains("YAML"));
    }

    #[test]
    fn yaml_alias_bombs_are_refused_before_they_expand() {
        // Nine levels of ten aliases each: 10^9 values from a document of a few hundred bytes.
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..9u8 {
            let (name, previous) = ((b'a' + level) as char, (b'a' + level - 1) as char);
            bomb.push_str(&format!("{name}: &{name} [*{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}]\n"));
        }
        assert!(bomb.len() < 2048);
        let started = std::time::Instant::now();
        let error = parse_document(bomb.as_bytes()).unwrap_err();
        assert!(error.contains("more than 100000 values"), "{error}");
        // A few aliases in an ordinary document are fine.
        let modest = "version: 1\nmetadata: {name: x}\nentries:\n- &e {model: authentik_flows.flow, identifiers: {slug: x}}\n- *e\n";
        assert_eq!(parse_document(modest.as_bytes()).unwrap().entries.len(), 2);
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "bounded work");
    }

    #[test]
    fn import_documents_are_bounded_in_size_and_depth() {
        let large = format!("version: 1\nmetadata: {{name: '{}'}}\nentries: []\n", "x".repeat(MAX_DOCUMENT_BYTES));
        assert!(parse_document(large.as_bytes()).unwrap_err().contains("larger than 512 KiB"));
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        assert!(parse_document(format!("{{\"version\": {deep}}}").as_bytes()).unwrap_err().contains("levels deep"));
        assert!(parse_document(b"version: 2\nentries: []").unwrap_err().contains("version 2"));
        assert!(parse_document(b"version: 1\nentries:\n- model: x\n  colour: red\n").unwrap_err().contains("colour"));
        assert!(parse_document(b"").is_err());
    }
}
