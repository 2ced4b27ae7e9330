//! `/api/v3/flows/instances/`, `/api/v3/flows/bindings/` and `/api/v3/stages/`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::api::{BindingOut, BindingWrite, FlowImportResult, FlowOut, FlowWrite, KindStageOut, StageOut, StageWrite, TypeCreate};
use super::binding_service::{self, BindingFilter};
use super::entities::{binding, flow, stage};
use super::flow_service::{self, FlowFilter};
use super::stage::StageKind;
use super::stage_service::{self, StageChange, StageFilter};
use super::transfer::{self, Format};
use crate::db::pagination::{ListParams, Paginated, parse_bool};
use crate::error::{Error, Result};
use crate::http::auth::Principal;
use crate::http::json::ApiJson;
use crate::http::query::ApiQuery;
use crate::state::AppState;
use crate::tokens::api::UsedBy;

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_flows, create_flow))
        .routes(routes!(retrieve_flow, update_flow, partial_update_flow, delete_flow))
        .routes(routes!(flow_used_by))
        .routes(routes!(export_flow))
        .routes(routes!(import_flow))
        .routes(routes!(list_bindings, create_binding))
        .routes(routes!(retrieve_binding, update_binding, partial_update_binding, delete_binding))
        .routes(routes!(binding_used_by))
        .routes(routes!(list_all_stages))
        .routes(routes!(stage_types))
        .routes(routes!(retrieve_any_stage, delete_any_stage))
        .routes(routes!(any_stage_used_by))
        .routes(routes!(list_stages, create_stage))
        .routes(routes!(retrieve_stage, update_stage, partial_update_stage, delete_stage))
        .routes(routes!(stage_used_by))
        // authentik's authenticator stages live one level down (`/stages/authenticator/sms/`);
        // the document lists them through each kind's `api_path`.
        .route("/api/v3/stages/authenticator/{kind}/", axum::routing::get(list_authenticator_stages).post(create_authenticator_stage))
        .route(
            "/api/v3/stages/authenticator/{kind}/{stage_uuid}/",
            axum::routing::get(retrieve_authenticator_stage)
                .put(update_authenticator_stage)
                .patch(partial_update_authenticator_stage)
                .delete(delete_authenticator_stage),
        )
        .route("/api/v3/stages/authenticator/{kind}/{stage_uuid}/used_by/", axum::routing::get(authenticator_stage_used_by))
}

/// The registered kind an `/api/v3/stages/authenticator/{kind}/` path names.
fn authenticator_kind(kind: String) -> Path<String> {
    Path(format!("authenticator_{kind}"))
}

async fn list_authenticator_stages(
    state: State<AppState>,
    principal: Principal,
    Path(kind): Path<String>,
    params: ApiQuery<ListParams>,
    filter: ApiQuery<StageFilter>,
) -> Result<Json<Paginated<KindStageOut>>> {
    list_stages(state, principal, authenticator_kind(kind), params, filter).await
}

async fn create_authenticator_stage(
    state: State<AppState>,
    principal: Principal,
    Path(kind): Path<String>,
    body: ApiJson<StageWrite>,
) -> Result<(StatusCode, Json<KindStageOut>)> {
    create_stage(state, principal, authenticator_kind(kind), body).await
}

async fn retrieve_authenticator_stage(
    state: State<AppState>,
    principal: Principal,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Json<KindStageOut>> {
    retrieve_stage(state, principal, Path((format!("authenticator_{kind}"), id))).await
}

async fn update_authenticator_stage(
    State(state): State<AppState>,
    principal: Principal,
    Path((kind, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<StageWrite>,
) -> Result<Json<KindStageOut>> {
    write_stage(state, principal, format!("authenticator_{kind}"), id, body, true).await
}

async fn partial_update_authenticator_stage(
    State(state): State<AppState>,
    principal: Principal,
    Path((kind, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<StageWrite>,
) -> Result<Json<KindStageOut>> {
    write_stage(state, principal, format!("authenticator_{kind}"), id, body, false).await
}

async fn delete_authenticator_stage(
    state: State<AppState>,
    principal: Principal,
    Path((kind, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    delete_stage(state, principal, Path((format!("authenticator_{kind}"), id))).await
}

async fn authenticator_stage_used_by(
    state: State<AppState>,
    principal: Principal,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Json<Vec<UsedBy>>> {
    stage_used_by(state, principal, Path((format!("authenticator_{kind}"), id))).await
}

/// The generic paths of the per-kind stage API, documented once per registered kind instead.
const KIND_PATHS: [&str; 3] =
    ["/api/v3/stages/{kind}/", "/api/v3/stages/{kind}/{stage_uuid}/", "/api/v3/stages/{kind}/{stage_uuid}/used_by/"];

/// The OpenAPI document as served, with every registered kind given its own paths
/// (`/api/v3/stages/identification/` and so on) and schemas (`IdentificationStage`,
/// `IdentificationStageRequest`) in place of the generic `{kind}` paths, as authentik documents
/// them. The settings' schema is read from each kind's defaults, so a kind registered later is
/// documented without more code.
pub fn document_stage_kinds(document: &utoipa::openapi::OpenApi, registry: &super::StageRegistry) -> serde_json::Value {
    match serde_json::to_value(document) {
        Ok(mut value) => {
            expand_kind_paths(&mut value, registry);
            value
        }
        Err(error) => {
            tracing::error!(%error, "the OpenAPI document cannot be written as JSON");
            serde_json::Value::Null
        }
    }
}

fn schema_of_default(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::{Value, json};
    match value {
        Value::Bool(_) => json!({"type": "boolean"}),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({"type": "integer"}),
        Value::Number(_) => json!({"type": "number"}),
        Value::String(_) => json!({"type": "string"}),
        // Empty settings of the shipped kinds are references to other objects, by uuid.
        Value::Null => json!({"type": ["string", "null"], "format": "uuid"}),
        Value::Array(items) => json!({"type": "array", "items": items.first().map(schema_of_default).unwrap_or(json!({"type": "string"}))}),
        Value::Object(_) => json!({"type": "object"}),
    }
}

fn expand_kind_paths(document: &mut serde_json::Value, registry: &super::StageRegistry) {
    use serde_json::{Value, json};
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else { return };
    let generic: Vec<(String, Value)> = KIND_PATHS.iter().filter_map(|p| paths.remove(*p).map(|item| (p.to_string(), item))).collect();
    let mut schemas = Vec::new();
    for kind in registry.all() {
        let title: String = kind
            .kind()
            .split('_')
            .map(|word| {
                let mut chars = word.chars();
                chars.next().map(|c| c.to_uppercase().chain(chars).collect::<String>()).unwrap_or_default()
            })
            .collect();
        let (out_name, request_name) = (format!("{title}Stage"), format!("{title}StageRequest"));
        for (path, item) in &generic {
            let text = item
                .to_string()
                .replace("#/components/schemas/KindStageOut", &format!("#/components/schemas/{out_name}"))
                .replace("#/components/schemas/StageWrite", &format!("#/components/schemas/{request_name}"));
            let Ok(mut item) = serde_json::from_str::<Value>(&text) else { continue };
            if let Some(operations) = item.as_object_mut() {
                for operation in operations.values_mut().filter_map(Value::as_object_mut) {
                    if let Some(id) = operation.get("operationId").and_then(Value::as_str) {
                        let id = format!("stages_{}_{id}", kind.kind());
                        operation.insert("operationId".into(), json!(id));
                    }
                    if let Some(parameters) = operation.get_mut("parameters").and_then(Value::as_array_mut) {
                        parameters.retain(|p| p.get("name").and_then(Value::as_str) != Some("kind"));
                    }
                }
            }
            paths.insert(path.replace("{kind}", kind.api_path()), item);
        }
        let defaults = kind.example_settings();
        let request_properties_of_kind: serde_json::Map<String, Value> =
            defaults.as_object().map(|d| d.iter().map(|(k, v)| (k.clone(), schema_of_default(v))).collect()).unwrap_or_default();
        let mut properties = request_properties_of_kind.clone();
        for field in kind.write_only() {
            properties.remove(*field);
        }
        let mut request_properties = request_properties_of_kind;
        request_properties.insert("name".into(), json!({"type": "string", "minLength": 1}));
        schemas.push((
            out_name,
            json!({
                "description": format!("{}: the common stage fields and its settings.", kind.verbose_name()),
                "allOf": [{"$ref": "#/components/schemas/StageOut"}, {"type": "object", "properties": properties}],
            }),
        ));
        schemas.push((
            request_name,
            json!({"type": "object", "description": kind.verbose_name(), "required": ["name"], "properties": request_properties}),
        ));
    }
    let components = document.as_object_mut().map(|d| d.entry("components").or_insert_with(|| json!({})));
    if let Some(target) =
        components.and_then(|c| c.as_object_mut()).map(|c| c.entry("schemas").or_insert_with(|| json!({}))).and_then(Value::as_object_mut)
    {
        for (name, schema) in schemas {
            target.insert(name, schema);
        }
    }
}

fn parse_id(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|_| Error::NotFound)
}

// ---------------------------------------------------------------------------------------------
// Flows

async fn render_flows(state: &AppState, flows: Vec<flow::Model>) -> Result<Vec<FlowOut>> {
    let ids: Vec<Uuid> = flows.iter().map(|f| f.id).collect();
    let mut stages = binding_service::bound_stages(&state.db, state.tenant, &ids).await?;
    Ok(flows
        .into_iter()
        .map(|f| {
            let bound = stages.remove(&f.id).unwrap_or_default();
            FlowOut::new(f, bound)
        })
        .collect())
}

async fn render_flow(state: &AppState, flow: flow::Model) -> Result<FlowOut> {
    render_flows(state, vec![flow]).await?.pop().ok_or_else(|| Error::internal("rendering lost a flow"))
}

#[utoipa::path(get, path = "/api/v3/flows/instances/", tag = "flows", params(ListParams, FlowFilter),
    responses((status = 200, description = "A page of flows (authentik_flows.view_flow)", body = Paginated<FlowOut>), (status = 403, description = "Permission denied")))]
async fn list_flows(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(filter): ApiQuery<FlowFilter>,
) -> Result<Json<Paginated<FlowOut>>> {
    let page = flow_service::list_flows(&state, &principal.actor(), &filter, &params).await?;
    let results = render_flows(&state, page.results).await?;
    Ok(Json(Paginated { pagination: page.pagination, results, autocomplete: page.autocomplete }))
}

#[utoipa::path(post, path = "/api/v3/flows/instances/", tag = "flows", request_body = FlowWrite,
    responses((status = 201, body = FlowOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn create_flow(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<FlowWrite>,
) -> Result<(StatusCode, Json<FlowOut>)> {
    let fields = body.into_fields(None, true)?;
    let created = flow_service::create_flow(&state, &principal.actor(), fields).await?;
    Ok((StatusCode::CREATED, Json(render_flow(&state, created).await?)))
}

#[utoipa::path(get, path = "/api/v3/flows/instances/{slug}/", tag = "flows", params(("slug" = String, Path, description = "The flow's slug")),
    responses((status = 200, body = FlowOut), (status = 403, description = "Permission denied"), (status = 404, description = "Not found")))]
async fn retrieve_flow(State(state): State<AppState>, principal: Principal, Path(slug): Path<String>) -> Result<Json<FlowOut>> {
    let flow = flow_service::get_flow(&state, &principal.actor(), &slug).await?;
    Ok(Json(render_flow(&state, flow).await?))
}

async fn write_flow(state: AppState, principal: Principal, slug: String, body: FlowWrite, full: bool) -> Result<Json<FlowOut>> {
    let updated = flow_service::update_flow(&state, &principal.actor(), &slug, |flow| body.into_fields(Some(flow), full)).await?;
    Ok(Json(render_flow(&state, updated).await?))
}

#[utoipa::path(put, path = "/api/v3/flows/instances/{slug}/", tag = "flows", params(("slug" = String, Path, description = "The flow's slug")),
    request_body = FlowWrite, responses((status = 200, body = FlowOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn update_flow(
    State(state): State<AppState>,
    principal: Principal,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<FlowWrite>,
) -> Result<Json<FlowOut>> {
    write_flow(state, principal, slug, body, true).await
}

#[utoipa::path(patch, path = "/api/v3/flows/instances/{slug}/", tag = "flows", params(("slug" = String, Path, description = "The flow's slug")),
    request_body = FlowWrite, responses((status = 200, body = FlowOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn partial_update_flow(
    State(state): State<AppState>,
    principal: Principal,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<FlowWrite>,
) -> Result<Json<FlowOut>> {
    write_flow(state, principal, slug, body, false).await
}

#[utoipa::path(delete, path = "/api/v3/flows/instances/{slug}/", tag = "flows", params(("slug" = String, Path, description = "The flow's slug")),
    responses((status = 204, description = "Deleted, with its bindings"), (status = 403, description = "Permission denied"), (status = 404, description = "Not found")))]
async fn delete_flow(State(state): State<AppState>, principal: Principal, Path(slug): Path<String>) -> Result<StatusCode> {
    flow_service::delete_flow(&state, &principal.actor(), &slug).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v3/flows/instances/{slug}/used_by/", tag = "flows", params(("slug" = String, Path, description = "The flow's slug")),
    responses((status = 200, body = [UsedBy]), (status = 404, description = "Not found")))]
async fn flow_used_by(State(state): State<AppState>, principal: Principal, Path(slug): Path<String>) -> Result<Json<Vec<UsedBy>>> {
    Ok(Json(flow_service::flow_used_by(&state, &principal.actor(), &slug).await?))
}

/// Query of the export.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ExportQuery {
    /// `yaml` (the default) or `json`.
    format: Option<String>,
}

#[utoipa::path(get, path = "/api/v3/flows/instances/{slug}/export/", tag = "flows",
    params(("slug" = String, Path, description = "The flow's slug"), ExportQuery),
    responses((status = 200, description = "The flow, its stages and bindings as a blueprint document (YAML, or JSON on request); needs authentik_flows.view_flow and authentik_flows.export_flow",
            content((Object = "application/yaml"), (Object = "application/json"))),
        (status = 403, description = "Permission denied"), (status = 404, description = "Not found")))]
async fn export_flow(
    State(state): State<AppState>,
    principal: Principal,
    Path(slug): Path<String>,
    ApiQuery(query): ApiQuery<ExportQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    let format = match query.format.as_deref() {
        Some("json") => Format::Json,
        Some("yaml") => Format::Yaml,
        Some(other) => return Err(Error::field("format", super::api::invalid_choice(other, "yaml, json"))),
        None => {
            let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
            if accept.split(',').any(|m| m.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))) {
                Format::Json
            } else {
                Format::Yaml
            }
        }
    };
    let (flow, document) = transfer::export(&state, &principal.actor(), &slug).await?;
    let body = transfer::render(&document, format)?;
    // Slugs are letters, digits, `-` and `_` only, so the file name needs no quoting.
    let disposition =
        HeaderValue::from_str(&format!("attachment; filename=\"{}.{}\"", flow.slug, format.extension())).map_err(Error::internal)?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type())), (header::CONTENT_DISPOSITION, disposition)], body)
        .into_response())
}

/// Query of the import, for bodies sent without a form.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ImportQuery {
    /// Remove the existing bindings of the document's flows first (a form sends it as a field).
    clear: Option<String>,
}

/// The uploaded document and the `clear` flag: a multipart form (`file`, `clear`) as authentik's
/// `FlowUploadRequest`, or the document itself as the body.
async fn read_upload(state: &AppState, query: ImportQuery, request: Request) -> Result<(Vec<u8>, bool)> {
    let mut clear = match query.clear.as_deref() {
        Some(value) => parse_bool("clear", value)?,
        None => false,
    };
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_form {
        let bytes = axum::body::Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::PayloadTooLarge
            } else {
                Error::field("file", "The request body could not be read.")
            }
        })?;
        return Ok((bytes.to_vec(), clear));
    }
    let mut form = Multipart::from_request(request, state).await.map_err(|e| Error::field("file", e.body_text()))?;
    let mut file = None;
    while let Some(field) = form.next_field().await.map_err(|e| multipart_error(&e))? {
        match field.name() {
            Some("file") => file = Some(field.bytes().await.map_err(|e| multipart_error(&e))?.to_vec()),
            Some("clear") => clear = parse_bool("clear", field.text().await.map_err(|e| multipart_error(&e))?.trim())?,
            _ => {}
        }
    }
    let file = file.ok_or_else(|| Error::field("file", "No file was submitted."))?;
    Ok((file, clear))
}

fn multipart_error(error: &axum::extract::multipart::MultipartError) -> Error {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE { Error::PayloadTooLarge } else { Error::field("file", error.body_text()) }
}

#[utoipa::path(post, path = "/api/v3/flows/instances/import/", tag = "flows", params(ImportQuery),
    request_body(content = inline(super::api::FlowUploadRequest), content_type = "multipart/form-data",
        description = "A form with `file` (and `clear`), or the YAML or JSON document as the body"),
    responses((status = 200, description = "Imported, all or nothing (authentik documents 204 with this body; a 204 cannot carry one)", body = FlowImportResult),
        (status = 400, description = "Nothing was written; the logs say why", body = FlowImportResult),
        (status = 403, description = "Permission denied")))]
async fn import_flow(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ImportQuery>,
    request: Request,
) -> Result<Response> {
    // Uploads are read only for callers who may import at all.
    transfer::require_import_rights(&principal.actor(), false)?;
    let (document, clear) = read_upload(&state, query, request).await?;
    let result = transfer::import(&state, &principal.actor(), &document, clear).await?;
    let status = if result.success { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    Ok((status, Json(result)).into_response())
}

// ---------------------------------------------------------------------------------------------
// Stages

async fn render_stages(state: &AppState, stages: &[stage::Model]) -> Result<Vec<StageOut>> {
    let ids: Vec<Uuid> = stages.iter().map(|s| s.id).collect();
    let flow_sets = stage_service::flow_sets(&state.db, state.tenant, &ids).await?;
    Ok(stages
        .iter()
        .map(|s| {
            let kind = state.stages.get(&s.kind).map(|k| k.as_ref());
            StageOut::new(s, kind, flow_sets.get(&s.id).map(Vec::as_slice).unwrap_or_default())
        })
        .collect())
}

async fn render_kind_stages(state: &AppState, stages: Vec<stage::Model>) -> Result<Vec<KindStageOut>> {
    let bases = render_stages(state, &stages).await?;
    let mut rendered = Vec::with_capacity(stages.len());
    for (stage, base) in stages.into_iter().zip(bases) {
        let mut settings = match stage.settings {
            serde_json::Value::Object(settings) => settings,
            _ => serde_json::Map::new(),
        };
        if let Some(kind) = state.stages.get(&stage.kind) {
            for field in kind.write_only() {
                settings.remove(*field);
            }
            kind.add_read_only_settings(&mut settings);
            kind.expand_settings(state, &mut settings).await?;
        }
        rendered.push(KindStageOut { base, settings });
    }
    Ok(rendered)
}

async fn render_kind_stage(state: &AppState, stage: stage::Model) -> Result<KindStageOut> {
    render_kind_stages(state, vec![stage]).await?.pop().ok_or_else(|| Error::internal("rendering lost a stage"))
}

fn kind_of(state: &AppState, kind: &str) -> Result<Arc<dyn StageKind>> {
    state.stages.get(kind).cloned().ok_or(Error::NotFound)
}

#[utoipa::path(get, path = "/api/v3/stages/all/", tag = "stages", params(ListParams, StageFilter),
    responses((status = 200, description = "A page of stages of every kind (authentik_flows.view_stage)", body = Paginated<StageOut>), (status = 403, description = "Permission denied")))]
async fn list_all_stages(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(filter): ApiQuery<StageFilter>,
) -> Result<Json<Paginated<StageOut>>> {
    let page = stage_service::list_stages(&state, &principal.actor(), None, &filter, &params).await?;
    let results = render_stages(&state, &page.results).await?;
    Ok(Json(Paginated { pagination: page.pagination, results, autocomplete: page.autocomplete }))
}

#[utoipa::path(get, path = "/api/v3/stages/all/types/", tag = "stages",
    responses((status = 200, description = "The kinds of stage this server can create", body = [TypeCreate])))]
async fn stage_types(State(state): State<AppState>, _principal: Principal) -> Json<Vec<TypeCreate>> {
    Json(state.stages.all().map(|k| TypeCreate::new(k.as_ref())).collect())
}

#[utoipa::path(get, path = "/api/v3/stages/all/{stage_uuid}/", tag = "stages", params(("stage_uuid" = Uuid, Path, description = "The stage's uuid")),
    responses((status = 200, body = StageOut), (status = 403, description = "Permission denied"), (status = 404, description = "Not found")))]
async fn retrieve_any_stage(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<StageOut>> {
    let stage = stage_service::get_stage(&state, &principal.actor(), parse_id(&id)?, None).await?;
    render_stages(&state, &[stage]).await?.pop().map(Json).ok_or_else(|| Error::internal("rendering lost a stage"))
}

#[utoipa::path(delete, path = "/api/v3/stages/all/{stage_uuid}/", tag = "stages", params(("stage_uuid" = Uuid, Path, description = "The stage's uuid")),
    responses((status = 204, description = "Deleted, with its bindings; other stages' references to it are cleared"), (status = 403, description = "Permission denied"), (status = 404, description = "Not found")))]
async fn delete_any_stage(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    stage_service::delete_stage(&state, &principal.actor(), parse_id(&id)?, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v3/stages/all/{stage_uuid}/used_by/", tag = "stages", params(("stage_uuid" = Uuid, Path, description = "The stage's uuid")),
    responses((status = 200, body = [UsedBy]), (status = 404, description = "Not found")))]
async fn any_stage_used_by(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<Vec<UsedBy>>> {
    Ok(Json(stage_service::stage_used_by(&state, &principal.actor(), parse_id(&id)?, None).await?))
}

#[utoipa::path(get, path = "/api/v3/stages/{kind}/", tag = "stages",
    params(("kind" = String, Path, description = "The kind of stage: identification, password, user_login, user_logout, deny, or another registered kind"), ListParams, StageFilter),
    responses((status = 200, description = "A page of stages of this kind, each with its settings (authentik_flows.view_stage)", body = Paginated<KindStageOut>),
        (status = 403, description = "Permission denied"), (status = 404, description = "Unknown kind")))]
async fn list_stages(
    State(state): State<AppState>,
    principal: Principal,
    Path(kind): Path<String>,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(filter): ApiQuery<StageFilter>,
) -> Result<Json<Paginated<KindStageOut>>> {
    let kind = kind_of(&state, &kind)?;
    let page = stage_service::list_stages(&state, &principal.actor(), Some(kind.kind()), &filter, &params).await?;
    let results = render_kind_stages(&state, page.results).await?;
    Ok(Json(Paginated { pagination: page.pagination, results, autocomplete: page.autocomplete }))
}

#[utoipa::path(post, path = "/api/v3/stages/{kind}/", tag = "stages",
    params(("kind" = String, Path, description = "The kind of stage")), request_body = StageWrite,
    responses((status = 201, body = KindStageOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied"), (status = 404, description = "Unknown kind")))]
async fn create_stage(
    State(state): State<AppState>,
    principal: Principal,
    Path(kind): Path<String>,
    ApiJson(body): ApiJson<StageWrite>,
) -> Result<(StatusCode, Json<KindStageOut>)> {
    let kind = kind_of(&state, &kind)?;
    let created = stage_service::create_stage(&state, &principal.actor(), kind.as_ref(), body.name, body.settings).await?;
    Ok((StatusCode::CREATED, Json(render_kind_stage(&state, created).await?)))
}

#[utoipa::path(get, path = "/api/v3/stages/{kind}/{stage_uuid}/", tag = "stages",
    params(("kind" = String, Path, description = "The kind of stage"), ("stage_uuid" = Uuid, Path, description = "The stage's uuid")),
    responses((status = 200, body = KindStageOut), (status = 403, description = "Permission denied"), (status = 404, description = "Not found")))]
async fn retrieve_stage(
    State(state): State<AppState>,
    principal: Principal,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Json<KindStageOut>> {
    let kind = kind_of(&state, &kind)?;
    let stage = stage_service::get_stage(&state, &principal.actor(), parse_id(&id)?, Some(kind.kind())).await?;
    Ok(Json(render_kind_stage(&state, stage).await?))
}

async fn write_stage(
    state: AppState,
    principal: Principal,
    kind: String,
    id: String,
    body: StageWrite,
    full: bool,
) -> Result<Json<KindStageOut>> {
    let kind = kind_of(&state, &kind)?;
    let updated = stage_service::update_stage(
        &state,
        &principal.actor(),
        kind.as_ref(),
        parse_id(&id)?,
        StageChange { name: body.name, settings: body.settings, full },
    )
    .await?;
    Ok(Json(render_kind_stage(&state, updated).await?))
}

#[utoipa::path(put, path = "/api/v3/stages/{kind}/{stage_uuid}/", tag = "stages",
    params(("kind" = String, Path, description = "The kind of stage"), ("stage_uuid" = Uuid, Path, description = "The stage's uuid")),
    request_body = StageWrite,
    responses((status = 200, description = "Replaced: settings not sent take their defaults", body = KindStageOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn update_stage(
    State(state): State<AppState>,
    principal: Principal,
    Path((kind, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<StageWrite>,
) -> Result<Json<KindStageOut>> {
    write_stage(state, principal, kind, id, body, true).await
}

#[utoipa::path(patch, path = "/api/v3/stages/{kind}/{stage_uuid}/", tag = "stages",
    params(("kind" = String, Path, description = "The kind of stage"), ("stage_uuid" = Uuid, Path, description = "The stage's uuid")),
    request_body = StageWrite,
    responses((status = 200, description = "Updated: settings sent are merged into the stored ones", body = KindStageOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn partial_update_stage(
    State(state): State<AppState>,
    principal: Principal,
    Path((kind, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<StageWrite>,
) -> Result<Json<KindStageOut>> {
    write_stage(state, principal, kind, id, body, false).await
}

#[utoipa::path(delete, path = "/api/v3/stages/{kind}/{stage_uuid}/", tag = "stages",
    params(("kind" = String, Path, description = "The kind of stage"), ("stage_uuid" = Uuid, Path, description = "The stage's uuid")),
    responses((status = 204, description = "Deleted, with its bindings"), (status = 403, description = "Permission denied"), (status = 404, description = "Not found")))]
async fn delete_stage(State(state): State<AppState>, principal: Principal, Path((kind, id)): Path<(String, String)>) -> Result<StatusCode> {
    let kind = kind_of(&state, &kind)?;
    stage_service::delete_stage(&state, &principal.actor(), parse_id(&id)?, Some(kind.kind())).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v3/stages/{kind}/{stage_uuid}/used_by/", tag = "stages",
    params(("kind" = String, Path, description = "The kind of stage"), ("stage_uuid" = Uuid, Path, description = "The stage's uuid")),
    responses((status = 200, body = [UsedBy]), (status = 404, description = "Not found")))]
async fn stage_used_by(
    State(state): State<AppState>,
    principal: Principal,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Json<Vec<UsedBy>>> {
    let kind = kind_of(&state, &kind)?;
    Ok(Json(stage_service::stage_used_by(&state, &principal.actor(), parse_id(&id)?, Some(kind.kind())).await?))
}

// ---------------------------------------------------------------------------------------------
// Bindings

async fn render_bindings(state: &AppState, bindings: Vec<binding::Model>) -> Result<Vec<BindingOut>> {
    let mut stage_ids: Vec<Uuid> = bindings.iter().map(|b| b.stage_id).collect();
    stage_ids.sort_unstable();
    stage_ids.dedup();
    let stages: Vec<stage::Model> = stage_service::stages_by_id(&state.db, state.tenant, &stage_ids).await?.into_values().collect();
    let rendered: std::collections::HashMap<Uuid, StageOut> = render_stages(state, &stages).await?.into_iter().map(|s| (s.pk, s)).collect();
    bindings
        .into_iter()
        .map(|b| {
            let stage_obj = rendered.get(&b.stage_id).cloned().ok_or_else(|| Error::internal("binding without stage"))?;
            Ok(BindingOut::new(b, stage_obj))
        })
        .collect()
}

async fn render_binding(state: &AppState, binding: binding::Model) -> Result<BindingOut> {
    render_bindings(state, vec![binding]).await?.pop().ok_or_else(|| Error::internal("rendering lost a binding"))
}

#[utoipa::path(get, path = "/api/v3/flows/bindings/", tag = "flows", params(ListParams, BindingFilter),
    responses((status = 200, description = "A page of bindings, by flow then order (authentik_flows.view_flowstagebinding)", body = Paginated<BindingOut>), (status = 403, description = "Permission denied")))]
async fn list_bindings(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(filter): ApiQuery<BindingFilter>,
) -> Result<Json<Paginated<BindingOut>>> {
    let page = binding_service::list_bindings(&state, &principal.actor(), &filter, &params).await?;
    let results = render_bindings(&state, page.results).await?;
    Ok(Json(Paginated { pagination: page.pagination, results, autocomplete: page.autocomplete }))
}

#[utoipa::path(post, path = "/api/v3/flows/bindings/", tag = "flows", request_body = BindingWrite,
    responses((status = 201, body = BindingOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn create_binding(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<BindingWrite>,
) -> Result<(StatusCode, Json<BindingOut>)> {
    let fields = body.into_fields(None, true)?;
    let created = binding_service::create_binding(&state, &principal.actor(), fields).await?;
    Ok((StatusCode::CREATED, Json(render_binding(&state, created).await?)))
}

#[utoipa::path(get, path = "/api/v3/flows/bindings/{fsb_uuid}/", tag = "flows", params(("fsb_uuid" = Uuid, Path, description = "The binding's uuid")),
    responses((status = 200, body = BindingOut), (status = 403, description = "Permission denied"), (status = 404, description = "Not found")))]
async fn retrieve_binding(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<BindingOut>> {
    let binding = binding_service::get_binding(&state, &principal.actor(), parse_id(&id)?).await?;
    Ok(Json(render_binding(&state, binding).await?))
}

async fn write_binding(state: AppState, principal: Principal, id: String, body: BindingWrite, full: bool) -> Result<Json<BindingOut>> {
    let updated =
        binding_service::update_binding(&state, &principal.actor(), parse_id(&id)?, |binding| body.into_fields(Some(binding), full))
            .await?;
    Ok(Json(render_binding(&state, updated).await?))
}

#[utoipa::path(put, path = "/api/v3/flows/bindings/{fsb_uuid}/", tag = "flows", params(("fsb_uuid" = Uuid, Path, description = "The binding's uuid")),
    request_body = BindingWrite, responses((status = 200, body = BindingOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn update_binding(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<BindingWrite>,
) -> Result<Json<BindingOut>> {
    write_binding(state, principal, id, body, true).await
}

#[utoipa::path(patch, path = "/api/v3/flows/bindings/{fsb_uuid}/", tag = "flows", params(("fsb_uuid" = Uuid, Path, description = "The binding's uuid")),
    request_body = BindingWrite, responses((status = 200, body = BindingOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn partial_update_binding(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<BindingWrite>,
) -> Result<Json<BindingOut>> {
    write_binding(state, principal, id, body, false).await
}

#[utoipa::path(delete, path = "/api/v3/flows/bindings/{fsb_uuid}/", tag = "flows", params(("fsb_uuid" = Uuid, Path, description = "The binding's uuid")),
    responses((status = 204, description = "Deleted"), (status = 403, description = "Permission denied"), (status = 404, description = "Not found")))]
async fn delete_binding(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    binding_service::delete_binding(&state, &principal.actor(), parse_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v3/flows/bindings/{fsb_uuid}/used_by/", tag = "flows", params(("fsb_uuid" = Uuid, Path, description = "The binding's uuid")),
    responses((status = 200, body = [UsedBy]), (status = 404, description = "Not found")))]
async fn binding_used_by(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<Vec<UsedBy>>> {
    Ok(Json(binding_service::binding_used_by(&state, &principal.actor(), parse_id(&id)?).await?))
}
