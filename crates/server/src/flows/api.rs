//! The API shapes of flows, stages and their bindings, as authentik names them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::binding_service::BindingFields;
use super::entities::{binding, flow, stage};
use super::flow_service::FlowFields;
use super::model::{AuthenticationRequirement, DeniedAction, Designation, InvalidResponseAction, Layout, PolicyEngineMode};
use super::stage::StageKind;
use crate::error::{FieldErrors, Result};

/// Where a flow's export is served.
pub fn export_url(slug: &str) -> String {
    format!("/api/v3/flows/instances/{slug}/export/")
}

/// authentik's `Flow`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FlowOut {
    pub pk: Uuid,
    pub policybindingmodel_ptr_id: Uuid,
    pub name: String,
    pub slug: String,
    pub title: String,
    pub designation: String,
    pub background: String,
    pub background_url: String,
    /// Always null: Gatehouse has no themed backgrounds.
    #[schema(value_type = Option<Object>)]
    pub background_themed_urls: Option<Value>,
    /// The bound stages, in the order they run.
    pub stages: Vec<Uuid>,
    /// Always empty: Gatehouse has no policies yet.
    pub policies: Vec<Uuid>,
    pub cache_count: u32,
    pub policy_engine_mode: String,
    pub compatibility_mode: bool,
    pub export_url: String,
    pub layout: String,
    pub denied_action: String,
    pub authentication: String,
}

impl FlowOut {
    /// Builds the representation from the row and its bound stages.
    pub fn new(flow: flow::Model, stages: Vec<Uuid>) -> Self {
        Self {
            pk: flow.id,
            policybindingmodel_ptr_id: flow.id,
            export_url: export_url(&flow.slug),
            name: flow.name,
            slug: flow.slug,
            title: flow.title,
            designation: flow.designation,
            background_url: crate::media::service::resolve_url(&flow.background),
            background: flow.background,
            background_themed_urls: None,
            stages,
            policies: Vec::new(),
            cache_count: 0,
            policy_engine_mode: flow.policy_engine_mode,
            compatibility_mode: flow.compatibility_mode,
            layout: flow.layout,
            denied_action: flow.denied_action,
            authentication: flow.authentication,
        }
    }
}

/// authentik's `FlowSet`: a flow as a stage lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FlowSet {
    pub pk: Uuid,
    pub policybindingmodel_ptr_id: Uuid,
    pub name: String,
    pub slug: String,
    pub title: String,
    pub designation: String,
    pub background_url: String,
    pub policy_engine_mode: String,
    pub compatibility_mode: bool,
    pub export_url: String,
    pub layout: String,
    pub denied_action: String,
}

impl From<&flow::Model> for FlowSet {
    fn from(flow: &flow::Model) -> Self {
        Self {
            pk: flow.id,
            policybindingmodel_ptr_id: flow.id,
            name: flow.name.clone(),
            slug: flow.slug.clone(),
            title: flow.title.clone(),
            designation: flow.designation.clone(),
            background_url: crate::media::service::resolve_url(&flow.background),
            policy_engine_mode: flow.policy_engine_mode.clone(),
            compatibility_mode: flow.compatibility_mode,
            export_url: export_url(&flow.slug),
            layout: flow.layout.clone(),
            denied_action: flow.denied_action.clone(),
        }
    }
}

/// The error message for a value outside a closed set.
pub fn invalid_choice(value: &str, choices: &str) -> String {
    format!("\"{value}\" is not a valid choice; choose one of: {choices}.")
}

/// Parses an optional enum field into `errors`, keeping `fallback` when absent or invalid.
fn choice<T: Copy>(
    errors: &mut FieldErrors,
    field: &str,
    value: Option<&str>,
    fallback: T,
    parse: fn(&str) -> Option<T>,
    choices: fn() -> String,
) -> T {
    match value {
        None => fallback,
        Some(text) => parse(text).unwrap_or_else(|| {
            errors.add(field, invalid_choice(text, &choices()));
            fallback
        }),
    }
}

/// A slug: 1 to 50 letters, digits, hyphens and underscores.
pub fn parse_slug(text: &str) -> Result<String, String> {
    if !text.is_empty() && text.len() <= 50 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        Ok(text.to_owned())
    } else {
        Err("Enter a valid slug: 1 to 50 letters, numbers, underscores or hyphens.".into())
    }
}

fn required_text(errors: &mut FieldErrors, field: &str, value: Option<String>, current: Option<&str>, full: bool) -> String {
    match value {
        Some(text) if text.trim().is_empty() => {
            errors.add(field, "This field may not be blank.");
            String::new()
        }
        Some(text) => text,
        None if full || current.is_none() => {
            errors.add(field, "This field is required.");
            String::new()
        }
        None => current.unwrap_or_default().to_owned(),
    }
}

/// authentik's `FlowRequest` / `PatchedFlowRequest`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowWrite {
    pub name: Option<String>,
    /// Visible in the URL: letters, numbers, `-` and `_`, at most 50.
    pub slug: Option<String>,
    pub title: Option<String>,
    pub designation: Option<String>,
    pub background: Option<String>,
    pub policy_engine_mode: Option<String>,
    pub compatibility_mode: Option<bool>,
    pub layout: Option<String>,
    pub denied_action: Option<String>,
    pub authentication: Option<String>,
}

impl FlowWrite {
    /// Parses a creation (`current` is `None`) or an update of `current`. A creation or a full
    /// update (PUT) needs `name`, `slug`, `title` and `designation`; other fields absent from
    /// an update keep their values, and absent from a creation take authentik's defaults.
    pub fn into_fields(self, current: Option<&flow::Model>, full: bool) -> Result<FlowFields> {
        let mut errors = FieldErrors::new();
        let name = required_text(&mut errors, "name", self.name, current.map(|c| c.name.as_str()), full);
        let title = required_text(&mut errors, "title", self.title, current.map(|c| c.title.as_str()), full);
        let slug = match (self.slug, current) {
            (Some(text), _) => parse_slug(&text).unwrap_or_else(|m| {
                errors.add("slug", m);
                String::new()
            }),
            (None, Some(current)) if !full => current.slug.clone(),
            (None, _) => {
                errors.add("slug", "This field is required.");
                String::new()
            }
        };
        let designation = match (self.designation.as_deref(), current) {
            (None, Some(current)) if !full => Designation::parse(&current.designation).unwrap_or(Designation::Authentication),
            (None, _) => {
                errors.add("designation", "This field is required.");
                Designation::Authentication
            }
            (Some(text), _) => {
                choice(&mut errors, "designation", Some(text), Designation::Authentication, Designation::parse, Designation::choices)
            }
        };
        // Stored values were validated on the way in; the fallbacks only cover rows changed
        // behind the API's back.
        let policy_engine_mode = choice(
            &mut errors,
            "policy_engine_mode",
            self.policy_engine_mode.as_deref(),
            current.and_then(|c| PolicyEngineMode::parse(&c.policy_engine_mode)).unwrap_or(PolicyEngineMode::Any),
            PolicyEngineMode::parse,
            PolicyEngineMode::choices,
        );
        let layout = choice(
            &mut errors,
            "layout",
            self.layout.as_deref(),
            current.and_then(|c| Layout::parse(&c.layout)).unwrap_or(Layout::Stacked),
            Layout::parse,
            Layout::choices,
        );
        let denied_action = choice(
            &mut errors,
            "denied_action",
            self.denied_action.as_deref(),
            current.and_then(|c| DeniedAction::parse(&c.denied_action)).unwrap_or(DeniedAction::MessageContinue),
            DeniedAction::parse,
            DeniedAction::choices,
        );
        let authentication = choice(
            &mut errors,
            "authentication",
            self.authentication.as_deref(),
            current.and_then(|c| AuthenticationRequirement::parse(&c.authentication)).unwrap_or(AuthenticationRequirement::None),
            AuthenticationRequirement::parse,
            AuthenticationRequirement::choices,
        );
        errors.into_result()?;
        Ok(FlowFields {
            name,
            slug,
            title,
            designation,
            background: self.background.unwrap_or_else(|| current.map(|c| c.background.clone()).unwrap_or_default()),
            policy_engine_mode,
            compatibility_mode: self.compatibility_mode.unwrap_or_else(|| current.is_some_and(|c| c.compatibility_mode)),
            layout,
            denied_action,
            authentication,
        })
    }
}

/// authentik's `Stage`: what every stage has, whatever its kind.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StageOut {
    pub pk: Uuid,
    pub name: String,
    /// The component that edits this kind of stage, such as `ak-stage-identification-form`.
    pub component: String,
    pub verbose_name: String,
    pub verbose_name_plural: String,
    pub meta_model_name: String,
    /// The flows this stage is bound to.
    pub flow_set: Vec<FlowSet>,
}

impl StageOut {
    /// Builds the representation; `kind` is the stage's kind, when this server knows it.
    pub fn new(stage: &stage::Model, kind: Option<&dyn StageKind>, flows: &[flow::Model]) -> Self {
        // A kind that is no longer registered still lists, under its stored name, so that it
        // can be found and deleted.
        let (component, verbose_name, meta_model_name) = match kind {
            Some(kind) => (form_component(kind), kind.verbose_name().to_owned(), kind.meta_model_name().to_owned()),
            None => (String::new(), stage.kind.clone(), stage.kind.clone()),
        };
        Self {
            pk: stage.id,
            name: stage.name.clone(),
            component,
            verbose_name_plural: format!("{verbose_name}s"),
            verbose_name,
            meta_model_name,
            flow_set: flows.iter().map(FlowSet::from).collect(),
        }
    }
}

/// authentik's `component` of a stage model names the form that edits it; the challenge
/// component is the same name without `-form`.
pub fn form_component(kind: &dyn StageKind) -> String {
    format!("{}-form", kind.component())
}

/// A stage of a known kind: the base fields with the kind's settings beside them, as
/// authentik's `IdentificationStage`, `PasswordStage` and so on.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KindStageOut {
    #[serde(flatten)]
    pub base: StageOut,
    /// The kind's settings, at the top level.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub settings: Map<String, Value>,
}

/// A stage create or update: `name` and the kind's settings, at the top level (as authentik's
/// `IdentificationStageRequest` and its siblings).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct StageWrite {
    pub name: Option<String>,
    /// The kind's settings.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub settings: Map<String, Value>,
}

/// authentik's `TypeCreate`: a kind of stage that can be created.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TypeCreate {
    pub name: String,
    pub description: String,
    pub component: String,
    pub model_name: String,
    pub requires_enterprise: bool,
    pub deprecated: bool,
}

impl TypeCreate {
    /// Describes `kind`.
    pub fn new(kind: &dyn StageKind) -> Self {
        let model_name = kind.meta_model_name().rsplit('.').next().unwrap_or_default().to_owned();
        Self {
            name: kind.verbose_name().to_owned(),
            description: format!("{} (kind `{}`).", kind.verbose_name(), kind.kind()),
            component: form_component(kind),
            model_name,
            requires_enterprise: false,
            deprecated: false,
        }
    }
}

/// authentik's `FlowStageBinding`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BindingOut {
    pub pk: Uuid,
    pub policybindingmodel_ptr_id: Uuid,
    /// The flow.
    pub target: Uuid,
    pub stage: Uuid,
    pub stage_obj: StageOut,
    pub evaluate_on_plan: bool,
    pub re_evaluate_policies: bool,
    pub order: i32,
    pub policy_engine_mode: String,
    pub invalid_response_action: String,
}

impl BindingOut {
    /// Builds the representation from the row and its stage's.
    pub fn new(binding: binding::Model, stage_obj: StageOut) -> Self {
        Self {
            pk: binding.id,
            policybindingmodel_ptr_id: binding.id,
            target: binding.flow_id,
            stage: binding.stage_id,
            stage_obj,
            evaluate_on_plan: binding.evaluate_on_plan,
            re_evaluate_policies: binding.re_evaluate_policies,
            order: binding.binding_order,
            policy_engine_mode: binding.policy_engine_mode,
            invalid_response_action: binding.invalid_response_action,
        }
    }
}

/// authentik's `FlowStageBindingRequest` / `PatchedFlowStageBindingRequest`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BindingWrite {
    /// The flow.
    pub target: Option<Uuid>,
    pub stage: Option<Uuid>,
    pub evaluate_on_plan: Option<bool>,
    pub re_evaluate_policies: Option<bool>,
    pub order: Option<i32>,
    pub policy_engine_mode: Option<String>,
    pub invalid_response_action: Option<String>,
}

impl BindingWrite {
    /// Parses a creation (`current` is `None`) or an update; a creation or a full update needs
    /// `target`, `stage` and `order`.
    pub fn into_fields(self, current: Option<&binding::Model>, full: bool) -> Result<BindingFields> {
        let mut errors = FieldErrors::new();
        let keep = current.filter(|_| !full);
        let mut required = |field: &str, value: Option<Uuid>, kept: Option<Uuid>| {
            value.or(kept).unwrap_or_else(|| {
                errors.add(field, "This field is required.");
                Uuid::nil()
            })
        };
        let target = required("target", self.target, keep.map(|c| c.flow_id));
        let stage = required("stage", self.stage, keep.map(|c| c.stage_id));
        let order = self.order.or(keep.map(|c| c.binding_order)).unwrap_or_else(|| {
            errors.add("order", "This field is required.");
            0
        });
        let policy_engine_mode = choice(
            &mut errors,
            "policy_engine_mode",
            self.policy_engine_mode.as_deref(),
            current.and_then(|c| PolicyEngineMode::parse(&c.policy_engine_mode)).unwrap_or(PolicyEngineMode::Any),
            PolicyEngineMode::parse,
            PolicyEngineMode::choices,
        );
        let invalid_response_action = choice(
            &mut errors,
            "invalid_response_action",
            self.invalid_response_action.as_deref(),
            current.and_then(|c| InvalidResponseAction::parse(&c.invalid_response_action)).unwrap_or(InvalidResponseAction::Retry),
            InvalidResponseAction::parse,
            InvalidResponseAction::choices,
        );
        errors.into_result()?;
        Ok(BindingFields {
            flow_id: target,
            stage_id: stage,
            order,
            evaluate_on_plan: self.evaluate_on_plan.unwrap_or_else(|| current.is_some_and(|c| c.evaluate_on_plan)),
            re_evaluate_policies: self.re_evaluate_policies.unwrap_or_else(|| current.is_none_or(|c| c.re_evaluate_policies)),
            policy_engine_mode,
            invalid_response_action,
        })
    }
}

/// authentik's `LogEvent`: one line of an import's log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LogEvent {
    pub timestamp: DateTime<Utc>,
    /// `info` or `error`.
    pub log_level: String,
    pub logger: String,
    pub event: String,
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
}

/// authentik's `FlowImportResult`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FlowImportResult {
    pub logs: Vec<LogEvent>,
    pub success: bool,
}

/// authentik's `FlowUploadRequest`, for the documentation of the multipart body.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct FlowUploadRequest {
    /// The document, YAML or JSON.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Remove the existing bindings of the document's flows first.
    clear: Option<bool>,
}
