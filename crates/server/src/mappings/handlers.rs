//! `/api/v3/propertymappings/notification/`: webhook mappings, as authentik's
//! `NotificationWebhookMapping` (`pk`, `name`, `expression`; the expression here is CEL).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::entities::property_mapping;
use super::service::{self, MappingFilter};
use crate::db::pagination::{ListParams, Paginated};
use crate::error::{Error, Result};
use crate::http::auth::Principal;
use crate::http::json::ApiJson;
use crate::http::query::ApiQuery;
use crate::state::AppState;
use crate::tokens::api::UsedBy;

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_mappings, create_mapping))
        .routes(routes!(retrieve_mapping, update_mapping, partial_update_mapping, delete_mapping))
        .routes(routes!(mapping_used_by))
}

/// authentik's `NotificationWebhookMapping`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MappingOut {
    pub pk: Uuid,
    pub name: String,
    /// A CEL expression; its variables are `user`, `device`, `code`, `stage`, `client` and
    /// `payload` (what would be sent without the mapping).
    pub expression: String,
}

impl From<property_mapping::Model> for MappingOut {
    fn from(mapping: property_mapping::Model) -> Self {
        Self { pk: mapping.id, name: mapping.name, expression: mapping.expression }
    }
}

/// authentik's `NotificationWebhookMappingRequest`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MappingWrite {
    pub name: Option<String>,
    pub expression: Option<String>,
}

fn mapping_id(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|_| Error::NotFound)
}

#[utoipa::path(get, path = "/api/v3/propertymappings/notification/", tag = "propertymappings", params(ListParams, MappingFilter),
    responses((status = 200, description = "A page of webhook mappings", body = Paginated<MappingOut>), (status = 403, description = "Permission denied")))]
async fn list_mappings(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(filter): ApiQuery<MappingFilter>,
) -> Result<Json<Paginated<MappingOut>>> {
    Ok(Json(service::list(&state, &principal.actor(), &filter, &params).await?.map(MappingOut::from)))
}

#[utoipa::path(post, path = "/api/v3/propertymappings/notification/", tag = "propertymappings", request_body = MappingWrite,
    responses((status = 201, body = MappingOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn create_mapping(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<MappingWrite>,
) -> Result<(StatusCode, Json<MappingOut>)> {
    let created = service::create(&state, &principal.actor(), body.name.as_deref(), body.expression.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

#[utoipa::path(get, path = "/api/v3/propertymappings/notification/{pm_uuid}/", tag = "propertymappings",
    params(("pm_uuid" = Uuid, Path, description = "Mapping uuid")),
    responses((status = 200, body = MappingOut), (status = 404, description = "Not found")))]
async fn retrieve_mapping(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<MappingOut>> {
    Ok(Json(service::get(&state, &principal.actor(), mapping_id(&id)?).await?.into()))
}

async fn write(state: AppState, principal: Principal, id: String, body: MappingWrite, full: bool) -> Result<Json<MappingOut>> {
    let id = mapping_id(&id)?;
    let updated = service::update(&state, &principal.actor(), id, body.name.as_deref(), body.expression.as_deref(), full).await?;
    Ok(Json(updated.into()))
}

#[utoipa::path(put, path = "/api/v3/propertymappings/notification/{pm_uuid}/", tag = "propertymappings", request_body = MappingWrite,
    params(("pm_uuid" = Uuid, Path, description = "Mapping uuid")),
    responses((status = 200, body = MappingOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn update_mapping(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<MappingWrite>,
) -> Result<Json<MappingOut>> {
    write(state, principal, id, body, true).await
}

#[utoipa::path(patch, path = "/api/v3/propertymappings/notification/{pm_uuid}/", tag = "propertymappings", request_body = MappingWrite,
    params(("pm_uuid" = Uuid, Path, description = "Mapping uuid")),
    responses((status = 200, body = MappingOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn partial_update_mapping(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<MappingWrite>,
) -> Result<Json<MappingOut>> {
    write(state, principal, id, body, false).await
}

#[utoipa::path(delete, path = "/api/v3/propertymappings/notification/{pm_uuid}/", tag = "propertymappings",
    params(("pm_uuid" = Uuid, Path, description = "Mapping uuid")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "Not found")))]
async fn delete_mapping(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    crate::flows::stage_service::delete_webhook_mapping(&state, &principal.actor(), mapping_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v3/propertymappings/notification/{pm_uuid}/used_by/", tag = "propertymappings",
    params(("pm_uuid" = Uuid, Path, description = "Mapping uuid")),
    responses((status = 200, body = [UsedBy]), (status = 404, description = "Not found")))]
async fn mapping_used_by(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<Vec<UsedBy>>> {
    let mapping = service::get(&state, &principal.actor(), mapping_id(&id)?).await?;
    Ok(Json(crate::flows::stage_service::stages_naming_mapping(&state, mapping.id).await?))
}
