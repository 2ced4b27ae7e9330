//! `/api/v3/core/applications/` and `/api/v3/providers/oauth2/` in authentik's shapes
//! (`Application`, `ApplicationRequest`, `Provider`, `OAuth2Provider`, `OAuth2ProviderRequest`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::applications::{self, ApplicationFilter, ApplicationRequest, ApplicationView};
use super::entities::{application, provider};
use super::model::{ClientType, GrantType, IssuerMode, LogoutMethod, RedirectUri, SubMode};
use super::providers::{self, ProviderFilter, ProviderRequest, ProviderView};
use crate::db::pagination::{ListParams, Paginated};
use crate::error::{Error, Result};
use crate::flows::model::PolicyEngineMode;
use crate::http::auth::Principal;
use crate::http::json::ApiJson;
use crate::http::query::ApiQuery;
use crate::state::AppState;
use crate::tokens::api::UsedBy;

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_applications, create_application))
        .routes(routes!(retrieve_application, update_application, partial_update_application, delete_application))
        .routes(routes!(application_used_by))
        .routes(routes!(list_providers, create_provider))
        .routes(routes!(retrieve_provider, update_provider, partial_update_provider, delete_provider))
        .routes(routes!(provider_used_by))
        .routes(routes!(rotate_client_secret))
}

/// authentik's `Provider`: what every kind of provider shows.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderSummary {
    pub pk: i64,
    pub name: String,
    pub authentication_flow: Option<Uuid>,
    pub authorization_flow: Uuid,
    pub invalidation_flow: Uuid,
    pub property_mappings: Vec<Uuid>,
    /// The admin interface's form for this kind of provider.
    pub component: &'static str,
    pub assigned_application_slug: Option<String>,
    pub assigned_application_name: Option<String>,
    pub assigned_backchannel_application_slug: Option<String>,
    pub assigned_backchannel_application_name: Option<String>,
    pub verbose_name: &'static str,
    pub verbose_name_plural: &'static str,
    pub meta_model_name: &'static str,
}

impl ProviderSummary {
    fn new(provider: &provider::Model, application: Option<&application::Model>) -> Self {
        Self {
            pk: provider.id,
            name: provider.name.clone(),
            authentication_flow: provider.authentication_flow_id,
            authorization_flow: provider.authorization_flow_id,
            invalidation_flow: provider.invalidation_flow_id,
            property_mappings: serde_json::from_value(provider.property_mappings.clone()).unwrap_or_default(),
            component: "ak-provider-oauth2-form",
            assigned_application_slug: application.map(|a| a.slug.clone()),
            assigned_application_name: application.map(|a| a.name.clone()),
            assigned_backchannel_application_slug: None,
            assigned_backchannel_application_name: None,
            verbose_name: "OAuth2/OpenID Provider",
            verbose_name_plural: "OAuth2/OpenID Providers",
            meta_model_name: "authentik_providers_oauth2.oauth2provider",
        }
    }
}

/// authentik's `OAuth2Provider`. `client_secret` is shown only in the answer that set it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderOut {
    #[serde(flatten)]
    pub summary: ProviderSummary,
    pub client_type: ClientType,
    pub grant_types: Vec<GrantType>,
    pub client_id: String,
    /// Shown once: in the answer to the request that set it, `null` afterwards.
    pub client_secret: Option<String>,
    pub access_code_validity: String,
    pub access_token_validity: String,
    pub refresh_token_validity: String,
    pub refresh_token_threshold: String,
    pub include_claims_in_id_token: bool,
    pub signing_key: Option<Uuid>,
    pub encryption_key: Option<Uuid>,
    pub redirect_uris: Vec<RedirectUri>,
    pub logout_uri: String,
    pub logout_method: LogoutMethod,
    pub sub_mode: SubMode,
    pub issuer_mode: IssuerMode,
    pub jwt_federation_sources: Vec<Uuid>,
    pub jwt_federation_providers: Vec<i64>,
}

impl From<ProviderView> for ProviderOut {
    fn from(view: ProviderView) -> Self {
        let redirect_uris = view.redirect_uris();
        let grant_types = view.grant_types();
        let p = &view.provider;
        Self {
            summary: ProviderSummary::new(p, view.application.as_ref()),
            client_type: ClientType::parse(&p.client_type).unwrap_or(ClientType::Confidential),
            grant_types,
            client_id: p.client_id.clone(),
            client_secret: view.new_client_secret.clone(),
            access_code_validity: p.access_code_validity.clone(),
            access_token_validity: p.access_token_validity.clone(),
            refresh_token_validity: p.refresh_token_validity.clone(),
            refresh_token_threshold: p.refresh_token_threshold.clone(),
            include_claims_in_id_token: p.include_claims_in_id_token,
            signing_key: p.signing_key_id,
            encryption_key: p.encryption_key_id,
            redirect_uris,
            logout_uri: p.logout_uri.clone(),
            logout_method: LogoutMethod::parse(&p.logout_method).unwrap_or(LogoutMethod::Backchannel),
            sub_mode: SubMode::parse(&p.sub_mode).unwrap_or(SubMode::HashedUserId),
            issuer_mode: IssuerMode::parse(&p.issuer_mode).unwrap_or(IssuerMode::PerProvider),
            jwt_federation_sources: vec![],
            jwt_federation_providers: vec![],
        }
    }
}

/// authentik's `Application`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApplicationOut {
    pub pk: Uuid,
    pub pbm_uuid: Uuid,
    pub name: String,
    pub slug: String,
    pub provider: Option<i64>,
    pub provider_obj: Option<ProviderSummary>,
    pub backchannel_providers: Vec<i64>,
    pub backchannel_providers_obj: Vec<ProviderSummary>,
    /// Where people are sent when they launch the application.
    pub launch_url: Option<String>,
    pub open_in_new_tab: bool,
    pub meta_launch_url: String,
    pub meta_icon: String,
    pub meta_icon_url: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub meta_icon_themed_urls: Option<serde_json::Value>,
    pub meta_description: String,
    pub meta_publisher: String,
    pub policy_engine_mode: PolicyEngineMode,
    pub group: String,
    pub meta_hide: bool,
}

impl From<ApplicationView> for ApplicationOut {
    fn from(view: ApplicationView) -> Self {
        let app = view.application;
        let non_empty = |text: &str| (!text.is_empty()).then(|| text.to_owned());
        Self {
            pk: app.id,
            pbm_uuid: app.id,
            provider: app.provider_id,
            provider_obj: view.provider.as_ref().map(|p| ProviderSummary::new(p, Some(&app))),
            backchannel_providers: vec![],
            backchannel_providers_obj: vec![],
            launch_url: non_empty(&app.meta_launch_url),
            open_in_new_tab: app.open_in_new_tab,
            meta_icon_url: non_empty(&app.meta_icon),
            meta_icon_themed_urls: None,
            policy_engine_mode: PolicyEngineMode::parse(&app.policy_engine_mode).unwrap_or(PolicyEngineMode::Any),
            meta_hide: app.meta_hide,
            name: app.name,
            slug: app.slug,
            meta_launch_url: app.meta_launch_url,
            meta_icon: app.meta_icon,
            meta_description: app.meta_description,
            meta_publisher: app.meta_publisher,
            group: app.group_name,
        }
    }
}

fn provider_id(text: &str) -> Result<i64> {
    text.parse().map_err(|_| Error::NotFound)
}

#[utoipa::path(get, path = "/api/v3/core/applications/", tag = "core", params(ListParams, ApplicationFilter),
    responses((status = 200, description = "A page of applications", body = Paginated<ApplicationOut>)))]
async fn list_applications(
    State(state): State<AppState>,
    _principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(filter): ApiQuery<ApplicationFilter>,
) -> Result<Json<Paginated<ApplicationOut>>> {
    Ok(Json(applications::list(&state, &filter, &params).await?.map(ApplicationOut::from)))
}

#[utoipa::path(post, path = "/api/v3/core/applications/", tag = "core", request_body = ApplicationRequest,
    responses((status = 201, body = ApplicationOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn create_application(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<ApplicationRequest>,
) -> Result<(StatusCode, Json<ApplicationOut>)> {
    Ok((StatusCode::CREATED, Json(applications::create(&state, &principal.actor(), &body).await?.into())))
}

#[utoipa::path(get, path = "/api/v3/core/applications/{slug}/", tag = "core", params(("slug" = String, Path)),
    responses((status = 200, body = ApplicationOut), (status = 404, description = "Not found")))]
async fn retrieve_application(
    State(state): State<AppState>,
    _principal: Principal,
    Path(slug): Path<String>,
) -> Result<Json<ApplicationOut>> {
    Ok(Json(applications::get(&state, &slug).await?.into()))
}

#[utoipa::path(put, path = "/api/v3/core/applications/{slug}/", tag = "core", params(("slug" = String, Path)), request_body = ApplicationRequest,
    responses((status = 200, body = ApplicationOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn update_application(
    State(state): State<AppState>,
    principal: Principal,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<ApplicationRequest>,
) -> Result<Json<ApplicationOut>> {
    Ok(Json(applications::update(&state, &principal.actor(), &slug, &body, true).await?.into()))
}

#[utoipa::path(patch, path = "/api/v3/core/applications/{slug}/", tag = "core", params(("slug" = String, Path)), request_body = ApplicationRequest,
    responses((status = 200, body = ApplicationOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn partial_update_application(
    State(state): State<AppState>,
    principal: Principal,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<ApplicationRequest>,
) -> Result<Json<ApplicationOut>> {
    Ok(Json(applications::update(&state, &principal.actor(), &slug, &body, false).await?.into()))
}

#[utoipa::path(delete, path = "/api/v3/core/applications/{slug}/", tag = "core", params(("slug" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, description = "Not found")))]
async fn delete_application(State(state): State<AppState>, principal: Principal, Path(slug): Path<String>) -> Result<StatusCode> {
    applications::delete(&state, &principal.actor(), &slug).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v3/core/applications/{slug}/used_by/", tag = "core", params(("slug" = String, Path)),
    responses((status = 200, body = [UsedBy]), (status = 404, description = "Not found")))]
async fn application_used_by(State(state): State<AppState>, _principal: Principal, Path(slug): Path<String>) -> Result<Json<Vec<UsedBy>>> {
    applications::get(&state, &slug).await?;
    Ok(Json(vec![]))
}

#[utoipa::path(get, path = "/api/v3/providers/oauth2/", tag = "providers", params(ListParams, ProviderFilter),
    responses((status = 200, description = "A page of OAuth2/OpenID providers", body = Paginated<ProviderOut>), (status = 403, description = "Permission denied")))]
async fn list_providers(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(filter): ApiQuery<ProviderFilter>,
) -> Result<Json<Paginated<ProviderOut>>> {
    Ok(Json(providers::list(&state, &principal.actor(), &filter, &params).await?.map(ProviderOut::from)))
}

#[utoipa::path(post, path = "/api/v3/providers/oauth2/", tag = "providers", request_body = ProviderRequest,
    responses((status = 201, body = ProviderOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn create_provider(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<ProviderRequest>,
) -> Result<(StatusCode, Json<ProviderOut>)> {
    Ok((StatusCode::CREATED, Json(providers::create(&state, &principal.actor(), &body).await?.into())))
}

#[utoipa::path(get, path = "/api/v3/providers/oauth2/{id}/", tag = "providers", params(("id" = i64, Path)),
    responses((status = 200, body = ProviderOut), (status = 404, description = "Not found")))]
async fn retrieve_provider(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<ProviderOut>> {
    Ok(Json(providers::get(&state, &principal.actor(), provider_id(&id)?).await?.into()))
}

#[utoipa::path(put, path = "/api/v3/providers/oauth2/{id}/", tag = "providers", params(("id" = i64, Path)), request_body = ProviderRequest,
    responses((status = 200, body = ProviderOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn update_provider(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ProviderRequest>,
) -> Result<Json<ProviderOut>> {
    Ok(Json(providers::update(&state, &principal.actor(), provider_id(&id)?, &body, true).await?.into()))
}

#[utoipa::path(patch, path = "/api/v3/providers/oauth2/{id}/", tag = "providers", params(("id" = i64, Path)), request_body = ProviderRequest,
    responses((status = 200, body = ProviderOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn partial_update_provider(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ProviderRequest>,
) -> Result<Json<ProviderOut>> {
    Ok(Json(providers::update(&state, &principal.actor(), provider_id(&id)?, &body, false).await?.into()))
}

#[utoipa::path(delete, path = "/api/v3/providers/oauth2/{id}/", tag = "providers", params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, description = "Not found")))]
async fn delete_provider(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    providers::delete(&state, &principal.actor(), provider_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v3/providers/oauth2/{id}/used_by/", tag = "providers", params(("id" = i64, Path)),
    responses((status = 200, body = [UsedBy]), (status = 404, description = "Not found")))]
async fn provider_used_by(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<Vec<UsedBy>>> {
    let view = providers::get(&state, &principal.actor(), provider_id(&id)?).await?;
    Ok(Json(
        view.application
            .map(|app| UsedBy {
                app: "authentik_core".into(),
                model_name: "application".into(),
                pk: app.id.to_string(),
                name: app.name,
                action: "set_null".into(),
            })
            .into_iter()
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v3/providers/oauth2/{id}/rotate_client_secret/", tag = "providers", params(("id" = i64, Path)),
    responses((status = 200, description = "The provider with its new client secret, shown this once", body = ProviderOut),
        (status = 400, description = "A public client has no secret"), (status = 404, description = "Not found")))]
async fn rotate_client_secret(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<ProviderOut>> {
    Ok(Json(providers::rotate_client_secret(&state, &principal.actor(), provider_id(&id)?).await?.into()))
}
