//! `/api/v3/core/applications/` and `/api/v3/providers/oauth2/` in authentik's shapes
//! (`Application`, `ApplicationRequest`, `Provider`, `OAuth2Provider`, `OAuth2ProviderRequest`),
//! the tokens and codes providers issued (`/api/v3/oauth2/*`: `TokenModel`,
//! `ExpiringBaseGrantModel`), and the OpenID Connect endpoints relying parties call: token, userinfo, introspection,
//! revocation, the key set and the discovery document.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::applications::{self, ApplicationFilter, ApplicationRequest, ApplicationView};
use super::consents::{self, ConsentFilter, ConsentView};
use super::entities::{application, provider};
use super::grants::{self, BearerError, OAuthError};
use super::issued::{self, IssuedFilter, IssuedKind, IssuedView};
use super::model::{ClientType, GrantType, IssuerMode, LogoutMethod, RedirectUri, SubMode};
use super::providers::{self, ProviderFilter, ProviderRequest, ProviderView};
use crate::db::pagination::{ListParams, Paginated};
use crate::error::{Error, Result};
use crate::flows::model::PolicyEngineMode;
use crate::http::auth::Principal;
use crate::http::client::PublicBase;
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
        .routes(routes!(list_consents))
        .routes(routes!(retrieve_consent, delete_consent))
        .routes(routes!(consent_used_by))
        .routes(routes!(list_access_tokens))
        .routes(routes!(retrieve_access_token, delete_access_token))
        .routes(routes!(access_token_used_by))
        .routes(routes!(list_refresh_tokens))
        .routes(routes!(retrieve_refresh_token, delete_refresh_token))
        .routes(routes!(refresh_token_used_by))
        .routes(routes!(list_authorization_codes))
        .routes(routes!(retrieve_authorization_code, delete_authorization_code))
        .routes(routes!(authorization_code_used_by))
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
            property_mappings: provider.property_mappings(),
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
    /// Gatehouse's own: the key pairs whose public keys verify the client's assertions
    /// (`private_key_jwt`).
    pub client_keys: Vec<Uuid>,
}

impl From<ProviderView> for ProviderOut {
    fn from(view: ProviderView) -> Self {
        let redirect_uris = view.provider.redirect_uris();
        let grant_types = view.provider.grant_types();
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
            client_keys: p.client_keys(),
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

/// authentik's `UserConsent`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserConsentOut {
    pub pk: i64,
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
    pub expiring: bool,
    pub user: crate::accounts::api::UserOut,
    pub application: ApplicationOut,
    /// The permissions (scopes) consented to, separated by spaces.
    pub permissions: String,
}

async fn render_consents(state: &AppState, views: Vec<ConsentView>) -> Result<Vec<UserConsentOut>> {
    let users = crate::accounts::api::render_users(state, views.iter().map(|v| v.user.clone()).collect()).await?;
    Ok(views
        .into_iter()
        .zip(users)
        .map(|(view, user)| UserConsentOut {
            pk: view.consent.id,
            expires: view.consent.expires,
            expiring: view.consent.expires.is_some(),
            user,
            application: view.application.into(),
            permissions: view.consent.permissions,
        })
        .collect())
}

fn consent_id(text: &str) -> Result<i64> {
    text.parse().map_err(|_| Error::NotFound)
}

#[utoipa::path(get, path = "/api/v3/core/user_consent/", tag = "core", params(ListParams, ConsentFilter),
    responses((status = 200, description = "The caller's consents, or everyone's with the view permission", body = Paginated<UserConsentOut>)))]
async fn list_consents(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(filter): ApiQuery<ConsentFilter>,
) -> Result<Json<Paginated<UserConsentOut>>> {
    let page = consents::list(&state, &principal.actor(), &filter, &params).await?;
    let results = render_consents(&state, page.results).await?;
    Ok(Json(Paginated { pagination: page.pagination, results, autocomplete: page.autocomplete }))
}

#[utoipa::path(get, path = "/api/v3/core/user_consent/{id}/", tag = "core", params(("id" = i64, Path)),
    responses((status = 200, body = UserConsentOut), (status = 404, description = "Not found")))]
async fn retrieve_consent(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<UserConsentOut>> {
    let view = consents::get(&state, &principal.actor(), consent_id(&id)?).await?;
    render_consents(&state, vec![view]).await?.pop().map(Json).ok_or(Error::NotFound)
}

#[utoipa::path(delete, path = "/api/v3/core/user_consent/{id}/", tag = "core", params(("id" = i64, Path)),
    responses((status = 204, description = "Revoked: the application asks again"), (status = 403, description = "Permission denied"), (status = 404, description = "Not found")))]
async fn delete_consent(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    consents::revoke(&state, &principal.actor(), consent_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v3/core/user_consent/{id}/used_by/", tag = "core", params(("id" = i64, Path)),
    responses((status = 200, body = [UsedBy]), (status = 404, description = "Not found")))]
async fn consent_used_by(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<Vec<UsedBy>>> {
    consents::get(&state, &principal.actor(), consent_id(&id)?).await?;
    Ok(Json(Vec::new()))
}

/// authentik's `TokenModel`: an access or refresh token, never its text.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenModelOut {
    pub pk: i64,
    pub provider: ProviderSummary,
    pub user: crate::accounts::api::UserOut,
    pub is_expired: bool,
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
    pub scope: Vec<String>,
    /// The identity claims of the token's ID tokens as a JSON string (unsigned).
    pub id_token: String,
    /// Revoked, or (a refresh token) used.
    pub revoked: bool,
}

/// authentik's `ExpiringBaseGrantModel`: an authorization code not yet exchanged.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExpiringBaseGrantModelOut {
    pub pk: i64,
    pub provider: ProviderSummary,
    pub user: crate::accounts::api::UserOut,
    pub is_expired: bool,
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
    pub scope: Vec<String>,
}

async fn render_tokens(state: &AppState, views: Vec<IssuedView>) -> Result<Vec<TokenModelOut>> {
    let users = crate::accounts::api::render_users(state, views.iter().map(|v| v.user.clone()).collect()).await?;
    Ok(views
        .into_iter()
        .zip(users)
        .map(|(view, user)| TokenModelOut {
            pk: view.number,
            is_expired: view.is_expired(),
            provider: ProviderSummary::new(&view.provider.provider, view.provider.application.as_ref()),
            user,
            expires: Some(view.expires),
            id_token: view.id_token_claims.as_ref().map(|claims| claims.to_string()).unwrap_or_default(),
            revoked: view.revoked.unwrap_or_default(),
            scope: view.scope,
        })
        .collect())
}

async fn render_codes(state: &AppState, views: Vec<IssuedView>) -> Result<Vec<ExpiringBaseGrantModelOut>> {
    let users = crate::accounts::api::render_users(state, views.iter().map(|v| v.user.clone()).collect()).await?;
    Ok(views
        .into_iter()
        .zip(users)
        .map(|(view, user)| ExpiringBaseGrantModelOut {
            pk: view.number,
            is_expired: view.is_expired(),
            provider: ProviderSummary::new(&view.provider.provider, view.provider.application.as_ref()),
            user,
            expires: Some(view.expires),
            scope: view.scope,
        })
        .collect())
}

/// The number in a grant's path; anything else names nothing.
fn grant_number(text: &str) -> Result<i64> {
    text.parse().map_err(|_| Error::NotFound)
}

async fn list_tokens(
    state: &AppState,
    principal: &Principal,
    kind: IssuedKind,
    filter: &IssuedFilter,
    params: &ListParams,
) -> Result<Json<Paginated<TokenModelOut>>> {
    let page = issued::list(state, &principal.actor(), kind, filter, params).await?;
    let results = render_tokens(state, page.results).await?;
    Ok(Json(Paginated { pagination: page.pagination, results, autocomplete: page.autocomplete }))
}

async fn retrieve_token(state: &AppState, principal: &Principal, kind: IssuedKind, id: &str) -> Result<Json<TokenModelOut>> {
    let view = issued::get(state, &principal.actor(), kind, grant_number(id)?).await?;
    render_tokens(state, vec![view]).await?.pop().map(Json).ok_or(Error::NotFound)
}

async fn delete_grant(state: &AppState, principal: &Principal, kind: IssuedKind, id: &str) -> Result<StatusCode> {
    issued::delete(state, &principal.actor(), kind, grant_number(id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn grant_used_by(state: &AppState, principal: &Principal, kind: IssuedKind, id: &str) -> Result<Json<Vec<UsedBy>>> {
    issued::get(state, &principal.actor(), kind, grant_number(id)?).await?;
    Ok(Json(Vec::new()))
}

#[utoipa::path(get, path = "/api/v3/oauth2/access_tokens/", tag = "oauth2", params(ListParams, IssuedFilter),
    responses((status = 200, description = "The caller's access tokens, or everyone's with the view permission", body = Paginated<TokenModelOut>)))]
async fn list_access_tokens(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(filter): ApiQuery<IssuedFilter>,
) -> Result<Json<Paginated<TokenModelOut>>> {
    list_tokens(&state, &principal, IssuedKind::AccessToken, &filter, &params).await
}

#[utoipa::path(get, path = "/api/v3/oauth2/access_tokens/{id}/", tag = "oauth2", params(("id" = i64, Path)),
    responses((status = 200, body = TokenModelOut), (status = 404, description = "Not found")))]
async fn retrieve_access_token(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<TokenModelOut>> {
    retrieve_token(&state, &principal, IssuedKind::AccessToken, &id).await
}

#[utoipa::path(delete, path = "/api/v3/oauth2/access_tokens/{id}/", tag = "oauth2", params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted: the token no longer works"), (status = 403, description = "Permission denied"), (status = 404, description = "Not found")))]
async fn delete_access_token(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    delete_grant(&state, &principal, IssuedKind::AccessToken, &id).await
}

#[utoipa::path(get, path = "/api/v3/oauth2/access_tokens/{id}/used_by/", tag = "oauth2", params(("id" = i64, Path)),
    responses((status = 200, body = [UsedBy]), (status = 404, description = "Not found")))]
async fn access_token_used_by(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<Vec<UsedBy>>> {
    grant_used_by(&state, &principal, IssuedKind::AccessToken, &id).await
}

#[utoipa::path(get, path = "/api/v3/oauth2/refresh_tokens/", tag = "oauth2", params(ListParams, IssuedFilter),
    responses((status = 200, description = "The caller's refresh tokens, or everyone's with the view permission", body = Paginated<TokenModelOut>)))]
async fn list_refresh_tokens(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(filter): ApiQuery<IssuedFilter>,
) -> Result<Json<Paginated<TokenModelOut>>> {
    list_tokens(&state, &principal, IssuedKind::RefreshToken, &filter, &params).await
}

#[utoipa::path(get, path = "/api/v3/oauth2/refresh_tokens/{id}/", tag = "oauth2", params(("id" = i64, Path)),
    responses((status = 200, body = TokenModelOut), (status = 404, description = "Not found")))]
async fn retrieve_refresh_token(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<TokenModelOut>> {
    retrieve_token(&state, &principal, IssuedKind::RefreshToken, &id).await
}

#[utoipa::path(delete, path = "/api/v3/oauth2/refresh_tokens/{id}/", tag = "oauth2", params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted: the token no longer works"), (status = 403, description = "Permission denied"), (status = 404, description = "Not found")))]
async fn delete_refresh_token(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    delete_grant(&state, &principal, IssuedKind::RefreshToken, &id).await
}

#[utoipa::path(get, path = "/api/v3/oauth2/refresh_tokens/{id}/used_by/", tag = "oauth2", params(("id" = i64, Path)),
    responses((status = 200, body = [UsedBy]), (status = 404, description = "Not found")))]
async fn refresh_token_used_by(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<Vec<UsedBy>>> {
    grant_used_by(&state, &principal, IssuedKind::RefreshToken, &id).await
}

#[utoipa::path(get, path = "/api/v3/oauth2/authorization_codes/", tag = "oauth2", params(ListParams, IssuedFilter),
    responses((status = 200, description = "The caller's unexchanged codes, or everyone's with the view permission", body = Paginated<ExpiringBaseGrantModelOut>)))]
async fn list_authorization_codes(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(filter): ApiQuery<IssuedFilter>,
) -> Result<Json<Paginated<ExpiringBaseGrantModelOut>>> {
    let page = issued::list(&state, &principal.actor(), IssuedKind::AuthorizationCode, &filter, &params).await?;
    let results = render_codes(&state, page.results).await?;
    Ok(Json(Paginated { pagination: page.pagination, results, autocomplete: page.autocomplete }))
}

#[utoipa::path(get, path = "/api/v3/oauth2/authorization_codes/{id}/", tag = "oauth2", params(("id" = i64, Path)),
    responses((status = 200, body = ExpiringBaseGrantModelOut), (status = 404, description = "Not found")))]
async fn retrieve_authorization_code(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<ExpiringBaseGrantModelOut>> {
    let view = issued::get(&state, &principal.actor(), IssuedKind::AuthorizationCode, grant_number(&id)?).await?;
    render_codes(&state, vec![view]).await?.pop().map(Json).ok_or(Error::NotFound)
}

#[utoipa::path(delete, path = "/api/v3/oauth2/authorization_codes/{id}/", tag = "oauth2", params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted: the code can no longer be exchanged"), (status = 403, description = "Permission denied"), (status = 404, description = "Not found")))]
async fn delete_authorization_code(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    delete_grant(&state, &principal, IssuedKind::AuthorizationCode, &id).await
}

#[utoipa::path(get, path = "/api/v3/oauth2/authorization_codes/{id}/used_by/", tag = "oauth2", params(("id" = i64, Path)),
    responses((status = 200, body = [UsedBy]), (status = 404, description = "Not found")))]
async fn authorization_code_used_by(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Vec<UsedBy>>> {
    grant_used_by(&state, &principal, IssuedKind::AuthorizationCode, &id).await
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

/// The OpenID Connect endpoints relying parties call under `/application/o/`: outside the API
/// document, answering in OAuth 2.0's and OpenID Connect's shapes rather than authentik's API
/// errors.
pub fn protocol_router() -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/application/o/token/", post(token).options(preflight))
        .route(super::device::DEVICE_PATH, post(device_authorization))
        .route("/application/o/userinfo/", get(userinfo).post(userinfo).options(preflight))
        .route("/application/o/introspect/", post(introspect))
        .route("/application/o/revoke/", post(revoke).options(preflight))
        .route("/application/o/{slug}/jwks/", get(key_set))
        .route("/application/o/{slug}/.well-known/openid-configuration", get(configuration))
}

/// Public documents are meant to be fetched by scripts on relying parties' pages.
fn readable_anywhere(mut response: Response) -> Response {
    response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

/// Browsers ask before a script on a relying party's page sends a token or a form: any origin may,
/// since these endpoints take no cookie and prove nothing by where a request comes from.
async fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Content-Type"));
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    response
}

/// What carries codes and tokens is never stored by a cache.
pub(super) fn not_stored(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

async fn key_set(State(state): State<AppState>, Path(slug): Path<String>) -> Result<Response> {
    let keys = super::discovery::key_set(&state, &slug).await?;
    Ok(readable_anywhere(Json(keys).into_response()))
}

async fn configuration(State(state): State<AppState>, PublicBase(base): PublicBase, Path(slug): Path<String>) -> Result<Response> {
    let document = super::discovery::configuration(&state, &base, &slug).await?;
    let mut response = readable_anywhere(Json(document).into_response());
    // Without a configured address the document follows the Host it was asked with.
    response.headers_mut().insert(header::VARY, HeaderValue::from_static("Host"));
    Ok(response)
}

/// HTTP basic credentials, each half form-decoded (RFC 6749 §2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Option<std::result::Result<(String, String), ()>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decode = || -> Option<(String, String)> {
        let raw = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (id, secret) = text.split_once(':')?;
        let unescape = |part: &str| form_urlencoded::parse(format!("v={part}").as_bytes()).next().map(|(_, v)| v.into_owned());
        Some((unescape(id)?, unescape(secret)?))
    };
    Some(decode().ok_or(()))
}

fn oauth_error(error: OAuthError) -> Response {
    let error = match error {
        OAuthError::Internal(cause) => return not_stored(cause.into_response()),
        other => other,
    };
    let status = if matches!(error, OAuthError::InvalidClient) { StatusCode::UNAUTHORIZED } else { StatusCode::BAD_REQUEST };
    let mut response = (status, Json(json!({"error": error.code(), "error_description": error.description()}))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"gatehouse\""));
    }
    not_stored(response)
}

/// A client's form request: its body as text and its HTTP basic credentials.
struct ClientRequest<'a> {
    body: &'a str,
    basic: Option<(String, String)>,
}

/// Reads a client's form request, or the error to answer it with.
fn client_request<'a>(headers: &HeaderMap, body: &'a Bytes) -> std::result::Result<ClientRequest<'a>, OAuthError> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|media| media.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")));
    let Some(text) = std::str::from_utf8(body).ok().filter(|_| form) else {
        return Err(OAuthError::InvalidRequest("Send the parameters as application/x-www-form-urlencoded.".into()));
    };
    match basic_credentials(headers) {
        Some(Ok(credentials)) => Ok(ClientRequest { body: text, basic: Some(credentials) }),
        Some(Err(())) => Err(OAuthError::InvalidClient),
        None => Ok(ClientRequest { body: text, basic: None }),
    }
}

async fn introspect(State(state): State<AppState>, PublicBase(base): PublicBase, headers: HeaderMap, body: Bytes) -> Response {
    let request = match client_request(&headers, &body) {
        Ok(request) => request,
        Err(error) => return oauth_error(error),
    };
    match grants::introspect(&state, &base, request.body, request.basic).await {
        Ok(answer) => not_stored(Json(answer).into_response()),
        Err(error) => oauth_error(error),
    }
}

async fn revoke(State(state): State<AppState>, PublicBase(base): PublicBase, headers: HeaderMap, body: Bytes) -> Response {
    let request = match client_request(&headers, &body) {
        Ok(request) => request,
        Err(error) => return readable_anywhere(oauth_error(error)),
    };
    let response = match grants::revoke(&state, &base, request.body, request.basic).await {
        Ok(()) => not_stored(StatusCode::OK.into_response()),
        Err(error) => oauth_error(error),
    };
    readable_anywhere(response)
}

async fn token(State(state): State<AppState>, PublicBase(base): PublicBase, headers: HeaderMap, body: Bytes) -> Response {
    let request = match client_request(&headers, &body) {
        Ok(request) => request,
        Err(error) => return readable_anywhere(oauth_error(error)),
    };
    let response = match grants::token(&state, &base, request.body, request.basic).await {
        Ok(issued) => not_stored(Json(issued).into_response()),
        Err(error) => oauth_error(error),
    };
    readable_anywhere(response)
}

async fn device_authorization(
    State(state): State<AppState>,
    PublicBase(base): PublicBase,
    client: crate::events::client::ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = match client_request(&headers, &body) {
        Ok(request) => request,
        Err(error) => return oauth_error(error),
    };
    match super::device::start(&state, &base, request.body, request.basic, &client).await {
        Ok(codes) => not_stored(Json(codes).into_response()),
        Err(error) => oauth_error(error),
    }
}

async fn userinfo(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let challenge = match grants::userinfo(&state, bearer).await {
        Ok(claims) => return readable_anywhere(not_stored(Json(claims).into_response())),
        Err(BearerError::Internal(error)) => return not_stored(error.into_response()),
        Err(BearerError::Missing) => "Bearer realm=\"gatehouse\"",
        Err(BearerError::Invalid) => "Bearer realm=\"gatehouse\", error=\"invalid_token\"",
    };
    let mut response = (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_token"}))).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    readable_anywhere(not_stored(response))
}
