//! `/api/v3/propertymappings/provider/scope/`: scope mappings in authentik's shapes
//! (`ScopeMapping`, `ScopeMappingRequest`; the expression here is CEL).

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::scopes::{self, ScopeMappingFilter, ScopeMappingRequest};
use crate::db::pagination::{ListParams, Paginated};
use crate::error::{Error, Result};
use crate::http::auth::Principal;
use crate::http::json::ApiJson;
use crate::mappings::entities::property_mapping;
use crate::state::AppState;
use crate::tokens::api::UsedBy;

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_scope_mappings, create_scope_mapping))
        .routes(routes!(retrieve_scope_mapping, update_scope_mapping, partial_update_scope_mapping, delete_scope_mapping))
        .routes(routes!(scope_mapping_used_by))
}

/// authentik's `ScopeMapping`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScopeMappingOut {
    pub pk: Uuid,
    /// Set on the mappings the server ships.
    pub managed: Option<String>,
    pub name: String,
    /// A CEL expression giving an object of claims; it sees `user`, `application`, `provider`
    /// and `scopes`.
    pub expression: String,
    pub component: &'static str,
    pub verbose_name: &'static str,
    pub verbose_name_plural: &'static str,
    pub meta_model_name: &'static str,
    pub scope_name: String,
    /// What a consent page says about the scope; empty for scopes nobody is asked about.
    pub description: String,
}

impl From<property_mapping::Model> for ScopeMappingOut {
    fn from(mapping: property_mapping::Model) -> Self {
        Self {
            pk: mapping.id,
            managed: mapping.managed,
            name: mapping.name,
            expression: mapping.expression,
            component: "ak-property-mapping-provider-scope-form",
            verbose_name: "Scope Mapping",
            verbose_name_plural: "Scope Mappings",
            meta_model_name: "authentik_providers_oauth2.scopemapping",
            scope_name: mapping.scope_name.unwrap_or_default(),
            description: mapping.description,
        }
    }
}

fn mapping_id(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|_| Error::NotFound)
}

#[utoipa::path(get, path = "/api/v3/propertymappings/provider/scope/", tag = "propertymappings",
    params(ListParams, ScopeMappingFilter, ("managed" = Option<Vec<String>>, Query, explode = true, description = "Any of these managed names; repeat the parameter for several")),
    responses((status = 200, description = "A page of scope mappings", body = Paginated<ScopeMappingOut>), (status = 403, description = "Permission denied")))]
async fn list_scope_mappings(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Json<Paginated<ScopeMappingOut>>> {
    // `managed` may be repeated, which the query reader refuses: it is taken out first.
    let pairs = crate::flows::redirect::url_params(raw.as_deref().unwrap_or_default());
    let (managed, rest): (Vec<_>, Vec<_>) = pairs.into_iter().partition(|(name, _)| name == "managed");
    let rest = form_urlencoded::Serializer::new(String::new()).extend_pairs(rest).finish();
    let params: ListParams = crate::http::query::parse_query(&rest)?;
    let mut filter: ScopeMappingFilter = crate::http::query::parse_query(&rest)?;
    filter.managed = managed.into_iter().map(|(_, value)| value).collect();
    Ok(Json(scopes::list(&state, &principal.actor(), &filter, &params).await?.map(ScopeMappingOut::from)))
}

#[utoipa::path(post, path = "/api/v3/propertymappings/provider/scope/", tag = "propertymappings", request_body = ScopeMappingRequest,
    responses((status = 201, body = ScopeMappingOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn create_scope_mapping(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<ScopeMappingRequest>,
) -> Result<(StatusCode, Json<ScopeMappingOut>)> {
    Ok((StatusCode::CREATED, Json(scopes::create(&state, &principal.actor(), &body).await?.into())))
}

#[utoipa::path(get, path = "/api/v3/propertymappings/provider/scope/{pm_uuid}/", tag = "propertymappings",
    params(("pm_uuid" = Uuid, Path, description = "Mapping uuid")),
    responses((status = 200, body = ScopeMappingOut), (status = 404, description = "Not found")))]
async fn retrieve_scope_mapping(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<ScopeMappingOut>> {
    Ok(Json(scopes::get(&state, &principal.actor(), mapping_id(&id)?).await?.into()))
}

#[utoipa::path(put, path = "/api/v3/propertymappings/provider/scope/{pm_uuid}/", tag = "propertymappings", request_body = ScopeMappingRequest,
    params(("pm_uuid" = Uuid, Path, description = "Mapping uuid")),
    responses((status = 200, body = ScopeMappingOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn update_scope_mapping(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ScopeMappingRequest>,
) -> Result<Json<ScopeMappingOut>> {
    Ok(Json(scopes::update(&state, &principal.actor(), mapping_id(&id)?, &body, true).await?.into()))
}

#[utoipa::path(patch, path = "/api/v3/propertymappings/provider/scope/{pm_uuid}/", tag = "propertymappings", request_body = ScopeMappingRequest,
    params(("pm_uuid" = Uuid, Path, description = "Mapping uuid")),
    responses((status = 200, body = ScopeMappingOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn partial_update_scope_mapping(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ScopeMappingRequest>,
) -> Result<Json<ScopeMappingOut>> {
    Ok(Json(scopes::update(&state, &principal.actor(), mapping_id(&id)?, &body, false).await?.into()))
}

#[utoipa::path(delete, path = "/api/v3/propertymappings/provider/scope/{pm_uuid}/", tag = "propertymappings",
    params(("pm_uuid" = Uuid, Path, description = "Mapping uuid")),
    responses((status = 204, description = "Deleted, and taken off every provider"), (status = 404, description = "Not found")))]
async fn delete_scope_mapping(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    scopes::delete(&state, &principal.actor(), mapping_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v3/propertymappings/provider/scope/{pm_uuid}/used_by/", tag = "propertymappings",
    params(("pm_uuid" = Uuid, Path, description = "Mapping uuid")),
    responses((status = 200, body = [UsedBy]), (status = 404, description = "Not found")))]
async fn scope_mapping_used_by(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<Vec<UsedBy>>> {
    let mapping = scopes::get(&state, &principal.actor(), mapping_id(&id)?).await?;
    let providers = scopes::providers_offering(&state.db, state.tenant, mapping.id).await?;
    // Deleting the mapping takes it off each provider, which stays (a many-to-many link).
    let used_by = providers
        .into_iter()
        .map(|p| UsedBy {
            app: "authentik_providers_oauth2".into(),
            model_name: "oauth2provider".into(),
            pk: p.id.to_string(),
            name: p.name,
            action: "cascade_many".into(),
        })
        .collect();
    Ok(Json(used_by))
}
