//! `/api/v3/endpoints/`: agent connectors, enrollment tokens, device access groups and devices
//! in authentik's shapes (`AgentConnector`, `EnrollmentToken`, `DeviceAccessGroup`, `TokenView`,
//! `EndpointDevice`), and what agents call: `enroll/` (with `Authorization: Bearer
//! <enrollment key>`), `agent_config/` and `check_in/` (with `Authorization: Bearer+agent
//! <device key>`).

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::access_groups::{self, AccessGroupFilter, AccessGroupRequest};
use super::bindings::{self, BindingFilter, BindingRequest, BindingView};
use super::connectors::{self, ConnectorFilter, ConnectorRequest};
use super::device_auth;
use super::devices::{self, AgentCaller, DeviceFilter, DeviceRequest, DeviceSummary, DeviceView, EnrollRequest, SnapshotView};
use super::enrollment::{self, TokenFilter, TokenRequest, TokenView};
use super::entities::{access_group, connector};
use super::facts::DeviceFacts;
use crate::accounts::api::{PartialGroup, PartialUser};
use crate::db::pagination::{ListParams, Paginated};
use crate::error::{Error, Result};
use crate::events::client::ClientInfo;
use crate::flows::api::TypeCreate;
use crate::http::auth::Principal;
use crate::http::client::PublicBase;
use crate::http::json::{ApiJson, ReportJson};
use crate::http::query::ApiQuery;
use crate::state::AppState;
use crate::tokens::api::UsedBy;

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_connectors, create_connector))
        .routes(routes!(retrieve_connector, update_connector, partial_update_connector, delete_connector))
        .routes(routes!(connector_used_by))
        .routes(routes!(list_any_connectors))
        .routes(routes!(connector_types))
        .routes(routes!(retrieve_any_connector, delete_any_connector))
        .routes(routes!(any_connector_used_by))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(retrieve_token, update_token, partial_update_token, delete_token))
        .routes(routes!(token_used_by))
        .routes(routes!(view_token_key))
        .routes(routes!(list_groups, create_group))
        .routes(routes!(retrieve_group, update_group, partial_update_group, delete_group))
        .routes(routes!(group_used_by))
        .routes(routes!(enroll))
        .routes(routes!(agent_config))
        .routes(routes!(check_in))
        .routes(routes!(auth_ia))
        .routes(routes!(list_devices))
        .routes(routes!(device_summary))
        .routes(routes!(retrieve_device, update_device, partial_update_device, delete_device))
        .routes(routes!(device_used_by))
        .routes(routes!(list_bindings, create_binding))
        .routes(routes!(retrieve_binding, update_binding, partial_update_binding, delete_binding))
        .routes(routes!(binding_used_by))
}

/// The credential after `scheme` in the `Authorization` header (scheme case-insensitive).
fn credential<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .split_once(' ')
        .filter(|(given, _)| given.eq_ignore_ascii_case(scheme))
        .map(|(_, credential)| credential.trim())
        .filter(|credential| !credential.is_empty())
}

/// An agent that called with `Authorization: Bearer+agent <device key>` for a live device under
/// an enabled connector. Every failure answers alike.
pub struct Agent(pub AgentCaller);

impl FromRequestParts<AppState> for Agent {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Ok(client) = ClientInfo::from_request_parts(parts, state).await;
        let caller = match credential(&parts.headers, "bearer+agent") {
            Some(key) => devices::authenticate(state, key, client.ip).await?,
            None => None,
        };
        // 403, as authentik answers: agents written for it expect that status.
        caller.map(Agent).ok_or_else(|| {
            metrics::counter!("gatehouse_auth_failures_total", "kind" => "device").increment(1);
            Error::PermissionDenied
        })
    }
}

/// Who reads the directory (`/core/users/`, `/core/groups/`): a person or an API key, or an
/// enrolled device's agent (`Authorization: Bearer+agent <device key>`), which sees only the
/// accounts its device admits.
pub enum DirectoryReader {
    Principal(Principal),
    Agent(Box<AgentCaller>),
}

impl FromRequestParts<AppState> for DirectoryReader {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let scheme = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.split_once(' ')).map(|(s, _)| s);
        if scheme.is_some_and(|s| s.eq_ignore_ascii_case("bearer+agent")) {
            let Agent(caller) = Agent::from_request_parts(parts, state).await?;
            return Ok(Self::Agent(Box::new(caller)));
        }
        Ok(Self::Principal(Principal::from_request_parts(parts, state).await?))
    }
}

fn id_of(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|_| Error::NotFound)
}

/// authentik's `AgentConnector`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentConnectorOut {
    pub connector_uuid: Uuid,
    pub name: String,
    pub enabled: bool,
    pub component: &'static str,
    pub verbose_name: &'static str,
    pub verbose_name_plural: &'static str,
    pub meta_model_name: &'static str,
    pub snapshot_expiry: String,
    pub auth_session_duration: String,
    pub auth_terminate_session_on_expiry: bool,
    pub refresh_interval: String,
    pub authorization_flow: Option<Uuid>,
    pub nss_uid_offset: i64,
    pub nss_gid_offset: i64,
    pub challenge_key: Option<Uuid>,
    pub challenge_idle_timeout: String,
    pub challenge_trigger_check_in: bool,
    /// Federation from OAuth2 providers is not offered: always empty.
    pub jwt_federation_providers: Vec<i64>,
}

impl From<connector::Model> for AgentConnectorOut {
    fn from(connector: connector::Model) -> Self {
        Self {
            connector_uuid: connector.id,
            name: connector.name,
            enabled: connector.enabled,
            component: connectors::AGENT_CONNECTOR_COMPONENT,
            verbose_name: connectors::AGENT_CONNECTOR_NAME,
            verbose_name_plural: connectors::AGENT_CONNECTOR_NAME_PLURAL,
            meta_model_name: connectors::AGENT_CONNECTOR_MODEL,
            snapshot_expiry: connector.snapshot_expiry,
            auth_session_duration: connector.auth_session_duration,
            auth_terminate_session_on_expiry: connector.auth_terminate_session_on_expiry,
            refresh_interval: connector.refresh_interval,
            authorization_flow: connector.authorization_flow_id,
            nss_uid_offset: connector.nss_uid_offset,
            nss_gid_offset: connector.nss_gid_offset,
            challenge_key: connector.challenge_key_id,
            challenge_idle_timeout: connector.challenge_idle_timeout,
            challenge_trigger_check_in: connector.challenge_trigger_check_in,
            jwt_federation_providers: Vec::new(),
        }
    }
}

/// authentik's `DeviceAccessGroup`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceAccessGroupOut {
    pub pbm_uuid: Uuid,
    pub name: String,
    #[schema(value_type = Object)]
    pub attributes: Value,
}

impl From<access_group::Model> for DeviceAccessGroupOut {
    fn from(group: access_group::Model) -> Self {
        Self { pbm_uuid: group.id, name: group.name, attributes: group.attributes }
    }
}

/// authentik's `EnrollmentToken`; the key is shown only by `view_key/`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnrollmentTokenOut {
    pub token_uuid: Uuid,
    pub device_group: Option<Uuid>,
    pub device_group_obj: Option<DeviceAccessGroupOut>,
    pub connector: Uuid,
    pub name: String,
    pub expiring: bool,
    pub expires: Option<DateTime<Utc>>,
}

impl From<TokenView> for EnrollmentTokenOut {
    fn from(view: TokenView) -> Self {
        let token = view.token;
        Self {
            token_uuid: token.id,
            device_group: token.device_group_id,
            device_group_obj: view.device_group.map(DeviceAccessGroupOut::from),
            connector: token.connector_id,
            name: token.name,
            expiring: token.expiring,
            expires: token.expires,
        }
    }
}

/// authentik's `TokenView`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenKey {
    pub key: String,
}

// --- connectors of every kind (only agent connectors exist) -------------------------------------

#[utoipa::path(get, path = "/api/v3/endpoints/connectors/", tag = "endpoints", params(ListParams),
    responses((status = 200, description = "A page of connectors of every kind", body = Paginated<ConnectorOut>), (status = 403, description = "Permission denied")))]
async fn list_any_connectors(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Paginated<ConnectorOut>>> {
    Ok(Json(connectors::list(&state, &principal.actor(), &ConnectorFilter::default(), &params).await?.map(ConnectorOut::from)))
}

#[utoipa::path(get, path = "/api/v3/endpoints/connectors/types/", tag = "endpoints",
    responses((status = 200, description = "The kinds of connector this server can create", body = [TypeCreate])))]
async fn connector_types(_principal: Principal) -> Json<Vec<TypeCreate>> {
    Json(vec![TypeCreate {
        name: connectors::AGENT_CONNECTOR_NAME.to_owned(),
        description: "Devices enrol with an agent, report their facts and prove themselves at sign-in.".to_owned(),
        component: connectors::AGENT_CONNECTOR_COMPONENT.to_owned(),
        model_name: "agentconnector".to_owned(),
        requires_enterprise: false,
        deprecated: false,
    }])
}

#[utoipa::path(get, path = "/api/v3/endpoints/connectors/{connector_uuid}/", tag = "endpoints",
    params(("connector_uuid" = Uuid, Path, description = "Connector uuid")),
    responses((status = 200, body = ConnectorOut), (status = 404, description = "Not found")))]
async fn retrieve_any_connector(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<ConnectorOut>> {
    Ok(Json(connectors::get(&state, &principal.actor(), id_of(&id)?).await?.into()))
}

#[utoipa::path(delete, path = "/api/v3/endpoints/connectors/{connector_uuid}/", tag = "endpoints",
    params(("connector_uuid" = Uuid, Path, description = "Connector uuid")),
    responses((status = 204, description = "Deleted, with its enrollment tokens"), (status = 404, description = "Not found")))]
async fn delete_any_connector(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    connectors::delete(&state, &principal.actor(), id_of(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v3/endpoints/connectors/{connector_uuid}/used_by/", tag = "endpoints",
    params(("connector_uuid" = Uuid, Path, description = "Connector uuid")),
    responses((status = 200, body = [UsedBy]), (status = 404, description = "Not found")))]
async fn any_connector_used_by(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<Vec<UsedBy>>> {
    Ok(Json(connectors::used_by(&state, &principal.actor(), id_of(&id)?).await?))
}

// --- agent connectors ----------------------------------------------------------------------------

#[utoipa::path(get, path = "/api/v3/endpoints/agents/connectors/", tag = "endpoints", params(ListParams, ConnectorFilter),
    responses((status = 200, description = "A page of agent connectors", body = Paginated<AgentConnectorOut>), (status = 403, description = "Permission denied")))]
async fn list_connectors(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(filter): ApiQuery<ConnectorFilter>,
) -> Result<Json<Paginated<AgentConnectorOut>>> {
    Ok(Json(connectors::list(&state, &principal.actor(), &filter, &params).await?.map(AgentConnectorOut::from)))
}

#[utoipa::path(post, path = "/api/v3/endpoints/agents/connectors/", tag = "endpoints", request_body = ConnectorRequest,
    responses((status = 201, body = AgentConnectorOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn create_connector(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<ConnectorRequest>,
) -> Result<(StatusCode, Json<AgentConnectorOut>)> {
    Ok((StatusCode::CREATED, Json(connectors::create(&state, &principal.actor(), &body).await?.into())))
}

#[utoipa::path(get, path = "/api/v3/endpoints/agents/connectors/{connector_uuid}/", tag = "endpoints",
    params(("connector_uuid" = Uuid, Path, description = "Connector uuid")),
    responses((status = 200, body = AgentConnectorOut), (status = 404, description = "Not found")))]
async fn retrieve_connector(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<AgentConnectorOut>> {
    Ok(Json(connectors::get(&state, &principal.actor(), id_of(&id)?).await?.into()))
}

#[utoipa::path(put, path = "/api/v3/endpoints/agents/connectors/{connector_uuid}/", tag = "endpoints", request_body = ConnectorRequest,
    params(("connector_uuid" = Uuid, Path, description = "Connector uuid")),
    responses((status = 200, body = AgentConnectorOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn update_connector(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ConnectorRequest>,
) -> Result<Json<AgentConnectorOut>> {
    Ok(Json(connectors::update(&state, &principal.actor(), id_of(&id)?, &body, true).await?.into()))
}

#[utoipa::path(patch, path = "/api/v3/endpoints/agents/connectors/{connector_uuid}/", tag = "endpoints", request_body = ConnectorRequest,
    params(("connector_uuid" = Uuid, Path, description = "Connector uuid")),
    responses((status = 200, body = AgentConnectorOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn partial_update_connector(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ConnectorRequest>,
) -> Result<Json<AgentConnectorOut>> {
    Ok(Json(connectors::update(&state, &principal.actor(), id_of(&id)?, &body, false).await?.into()))
}

#[utoipa::path(delete, path = "/api/v3/endpoints/agents/connectors/{connector_uuid}/", tag = "endpoints",
    params(("connector_uuid" = Uuid, Path, description = "Connector uuid")),
    responses((status = 204, description = "Deleted, with its enrollment tokens"), (status = 404, description = "Not found")))]
async fn delete_connector(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    connectors::delete(&state, &principal.actor(), id_of(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v3/endpoints/agents/connectors/{connector_uuid}/used_by/", tag = "endpoints",
    params(("connector_uuid" = Uuid, Path, description = "Connector uuid")),
    responses((status = 200, body = [UsedBy]), (status = 404, description = "Not found")))]
async fn connector_used_by(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<Vec<UsedBy>>> {
    Ok(Json(connectors::used_by(&state, &principal.actor(), id_of(&id)?).await?))
}

// --- enrollment tokens ---------------------------------------------------------------------------

#[utoipa::path(get, path = "/api/v3/endpoints/agents/enrollment_tokens/", tag = "endpoints", params(ListParams, TokenFilter),
    responses((status = 200, description = "A page of enrollment tokens", body = Paginated<EnrollmentTokenOut>), (status = 403, description = "Permission denied")))]
async fn list_tokens(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(filter): ApiQuery<TokenFilter>,
) -> Result<Json<Paginated<EnrollmentTokenOut>>> {
    Ok(Json(enrollment::list(&state, &principal.actor(), &filter, &params).await?.map(EnrollmentTokenOut::from)))
}

#[utoipa::path(post, path = "/api/v3/endpoints/agents/enrollment_tokens/", tag = "endpoints", request_body = TokenRequest,
    responses((status = 201, body = EnrollmentTokenOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn create_token(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<TokenRequest>,
) -> Result<(StatusCode, Json<EnrollmentTokenOut>)> {
    Ok((StatusCode::CREATED, Json(enrollment::create(&state, &principal.actor(), &body).await?.into())))
}

#[utoipa::path(get, path = "/api/v3/endpoints/agents/enrollment_tokens/{token_uuid}/", tag = "endpoints",
    params(("token_uuid" = Uuid, Path, description = "Token uuid")),
    responses((status = 200, body = EnrollmentTokenOut), (status = 404, description = "Not found")))]
async fn retrieve_token(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<EnrollmentTokenOut>> {
    Ok(Json(enrollment::get(&state, &principal.actor(), id_of(&id)?).await?.into()))
}

#[utoipa::path(put, path = "/api/v3/endpoints/agents/enrollment_tokens/{token_uuid}/", tag = "endpoints", request_body = TokenRequest,
    params(("token_uuid" = Uuid, Path, description = "Token uuid")),
    responses((status = 200, body = EnrollmentTokenOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn update_token(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TokenRequest>,
) -> Result<Json<EnrollmentTokenOut>> {
    Ok(Json(enrollment::update(&state, &principal.actor(), id_of(&id)?, &body, true).await?.into()))
}

#[utoipa::path(patch, path = "/api/v3/endpoints/agents/enrollment_tokens/{token_uuid}/", tag = "endpoints", request_body = TokenRequest,
    params(("token_uuid" = Uuid, Path, description = "Token uuid")),
    responses((status = 200, body = EnrollmentTokenOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn partial_update_token(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TokenRequest>,
) -> Result<Json<EnrollmentTokenOut>> {
    Ok(Json(enrollment::update(&state, &principal.actor(), id_of(&id)?, &body, false).await?.into()))
}

#[utoipa::path(delete, path = "/api/v3/endpoints/agents/enrollment_tokens/{token_uuid}/", tag = "endpoints",
    params(("token_uuid" = Uuid, Path, description = "Token uuid")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "Not found")))]
async fn delete_token(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    enrollment::delete(&state, &principal.actor(), id_of(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v3/endpoints/agents/enrollment_tokens/{token_uuid}/used_by/", tag = "endpoints",
    params(("token_uuid" = Uuid, Path, description = "Token uuid")),
    responses((status = 200, body = [UsedBy]), (status = 404, description = "Not found")))]
async fn token_used_by(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<Vec<UsedBy>>> {
    // Nothing refers to an enrollment token; asking still needs the permission to see it.
    enrollment::get(&state, &principal.actor(), id_of(&id)?).await?;
    Ok(Json(Vec::new()))
}

#[utoipa::path(get, path = "/api/v3/endpoints/agents/enrollment_tokens/{token_uuid}/view_key/", tag = "endpoints",
    params(("token_uuid" = Uuid, Path, description = "Token uuid")),
    responses((status = 200, body = TokenKey), (status = 403, description = "Permission denied"), (status = 404, description = "Not found")))]
async fn view_token_key(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<TokenKey>> {
    Ok(Json(TokenKey { key: enrollment::view_key(&state, &principal.actor(), id_of(&id)?).await? }))
}

// --- device access groups ------------------------------------------------------------------------

#[utoipa::path(get, path = "/api/v3/endpoints/device_access_groups/", tag = "endpoints", params(ListParams, AccessGroupFilter),
    responses((status = 200, description = "A page of device access groups", body = Paginated<DeviceAccessGroupOut>), (status = 403, description = "Permission denied")))]
async fn list_groups(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(filter): ApiQuery<AccessGroupFilter>,
) -> Result<Json<Paginated<DeviceAccessGroupOut>>> {
    Ok(Json(access_groups::list(&state, &principal.actor(), &filter, &params).await?.map(DeviceAccessGroupOut::from)))
}

#[utoipa::path(post, path = "/api/v3/endpoints/device_access_groups/", tag = "endpoints", request_body = AccessGroupRequest,
    responses((status = 201, body = DeviceAccessGroupOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn create_group(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<AccessGroupRequest>,
) -> Result<(StatusCode, Json<DeviceAccessGroupOut>)> {
    Ok((StatusCode::CREATED, Json(access_groups::create(&state, &principal.actor(), &body).await?.into())))
}

#[utoipa::path(get, path = "/api/v3/endpoints/device_access_groups/{pbm_uuid}/", tag = "endpoints",
    params(("pbm_uuid" = Uuid, Path, description = "Device access group uuid")),
    responses((status = 200, body = DeviceAccessGroupOut), (status = 404, description = "Not found")))]
async fn retrieve_group(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<DeviceAccessGroupOut>> {
    Ok(Json(access_groups::get(&state, &principal.actor(), id_of(&id)?).await?.into()))
}

#[utoipa::path(put, path = "/api/v3/endpoints/device_access_groups/{pbm_uuid}/", tag = "endpoints", request_body = AccessGroupRequest,
    params(("pbm_uuid" = Uuid, Path, description = "Device access group uuid")),
    responses((status = 200, body = DeviceAccessGroupOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn update_group(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AccessGroupRequest>,
) -> Result<Json<DeviceAccessGroupOut>> {
    Ok(Json(access_groups::update(&state, &principal.actor(), id_of(&id)?, &body, true).await?.into()))
}

#[utoipa::path(patch, path = "/api/v3/endpoints/device_access_groups/{pbm_uuid}/", tag = "endpoints", request_body = AccessGroupRequest,
    params(("pbm_uuid" = Uuid, Path, description = "Device access group uuid")),
    responses((status = 200, body = DeviceAccessGroupOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn partial_update_group(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AccessGroupRequest>,
) -> Result<Json<DeviceAccessGroupOut>> {
    Ok(Json(access_groups::update(&state, &principal.actor(), id_of(&id)?, &body, false).await?.into()))
}

#[utoipa::path(delete, path = "/api/v3/endpoints/device_access_groups/{pbm_uuid}/", tag = "endpoints",
    params(("pbm_uuid" = Uuid, Path, description = "Device access group uuid")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "Not found")))]
async fn delete_group(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    access_groups::delete(&state, &principal.actor(), id_of(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v3/endpoints/device_access_groups/{pbm_uuid}/used_by/", tag = "endpoints",
    params(("pbm_uuid" = Uuid, Path, description = "Device access group uuid")),
    responses((status = 200, body = [UsedBy]), (status = 404, description = "Not found")))]
async fn group_used_by(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<Vec<UsedBy>>> {
    Ok(Json(access_groups::used_by(&state, &principal.actor(), id_of(&id)?).await?))
}

// --- what agents call ----------------------------------------------------------------------------

/// authentik's `AgentTokenResponse`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentTokenResponse {
    pub token: String,
    /// Seconds the token lives; 0: until the device enrols again or is deleted.
    pub expires_in: i64,
}

#[utoipa::path(post, path = "/api/v3/endpoints/agents/connectors/enroll/", tag = "endpoints", request_body = EnrollRequest,
    responses((status = 200, description = "The device's token, shown once", body = AgentTokenResponse),
        (status = 400, description = "Invalid input"), (status = 403, description = "Not a live enrollment token of an enabled connector"),
        (status = 429, description = "Too many failures from this address")))]
async fn enroll(
    State(state): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    ApiJson(body): ApiJson<EnrollRequest>,
) -> Result<Json<AgentTokenResponse>> {
    let key = credential(&headers, "bearer").ok_or(Error::PermissionDenied)?;
    let token = devices::enroll(&state, key, client.ip, &body).await?.ok_or_else(|| {
        metrics::counter!("gatehouse_auth_failures_total", "kind" => "enrollment").increment(1);
        Error::PermissionDenied
    })?;
    Ok(Json(AgentTokenResponse { token: token.expose().to_owned(), expires_in: 0 }))
}

/// authentik's `AgentConfig`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentConfigOut {
    pub device_id: String,
    /// Seconds between check-ins.
    pub refresh_interval: i64,
    /// The slug of the flow a device's user authorises through.
    pub authorization_flow: Option<String>,
    #[schema(value_type = Object)]
    pub jwks_auth: Value,
    #[schema(value_type = Option<Object>)]
    pub jwks_challenge: Option<Value>,
    pub nss_uid_offset: i64,
    pub nss_gid_offset: i64,
    pub auth_terminate_session_on_expiry: bool,
    pub system_config: crate::http::system::RootConfig,
    /// Gatehouse has no licences.
    pub license_status: Option<String>,
}

#[utoipa::path(get, path = "/api/v3/endpoints/agents/connectors/agent_config/", tag = "endpoints",
    responses((status = 200, body = AgentConfigOut), (status = 403, description = "Not a live device token")))]
async fn agent_config(State(state): State<AppState>, Agent(caller): Agent) -> Result<Json<AgentConfigOut>> {
    let settings = devices::agent_settings(&state, &caller).await?;
    Ok(Json(AgentConfigOut {
        device_id: settings.device_id.to_string(),
        refresh_interval: settings.refresh_interval_secs,
        authorization_flow: settings.authorization_flow,
        jwks_auth: settings.jwks_auth,
        jwks_challenge: settings.jwks_challenge,
        nss_uid_offset: settings.nss_uid_offset,
        nss_gid_offset: settings.nss_gid_offset,
        auth_terminate_session_on_expiry: settings.auth_terminate_session_on_expiry,
        system_config: crate::http::system::root_config_of(&state),
        license_status: None,
    }))
}

#[utoipa::path(post, path = "/api/v3/endpoints/agents/connectors/check_in/", tag = "endpoints", request_body = DeviceFacts,
    responses((status = 204, description = "Kept until the connector's snapshot_expiry"), (status = 400, description = "Invalid facts, naming the field"),
        (status = 403, description = "Not a live device token"), (status = 413, description = "Larger than the server takes")))]
async fn check_in(State(state): State<AppState>, Agent(caller): Agent, ReportJson(facts): ReportJson<DeviceFacts>) -> Result<StatusCode> {
    devices::check_in(&state, &caller, &facts).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// authentik's `AgentAuthenticationResponse`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentAuthenticationResponse {
    /// Where the agent's browser window signs the device's user in.
    pub url: String,
}

#[utoipa::path(post, path = "/api/v3/endpoints/agents/connectors/auth_ia/", tag = "endpoints",
    responses((status = 200, body = AgentAuthenticationResponse), (status = 403, description = "Not a live device token")))]
async fn auth_ia(
    State(state): State<AppState>,
    PublicBase(base): PublicBase,
    Agent(caller): Agent,
    headers: HeaderMap,
) -> Result<Json<AgentAuthenticationResponse>> {
    let key = credential(&headers, "bearer+agent").ok_or(Error::PermissionDenied)?;
    let id = device_auth::begin(&state, &caller, key).await?;
    Ok(Json(AgentAuthenticationResponse { url: format!("{base}{}", device_auth::path_of(id)) }))
}

// --- devices -------------------------------------------------------------------------------------

/// authentik's `DeviceFactSnapshot`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotOut {
    #[schema(value_type = DeviceFacts)]
    pub data: Value,
    pub connection: Uuid,
    pub created: DateTime<Utc>,
    pub expires: Option<DateTime<Utc>>,
    pub vendor: &'static str,
}

impl From<SnapshotView> for SnapshotOut {
    fn from(view: SnapshotView) -> Self {
        Self { data: view.data, connection: view.connection, created: view.created, expires: view.expires, vendor: view.vendor }
    }
}

/// authentik's `Connector`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectorOut {
    pub connector_uuid: Uuid,
    pub name: String,
    pub enabled: bool,
    pub component: &'static str,
    pub verbose_name: &'static str,
    pub verbose_name_plural: &'static str,
    pub meta_model_name: &'static str,
}

impl From<connector::Model> for ConnectorOut {
    fn from(connector: connector::Model) -> Self {
        let full = AgentConnectorOut::from(connector);
        Self {
            connector_uuid: full.connector_uuid,
            name: full.name,
            enabled: full.enabled,
            component: full.component,
            verbose_name: full.verbose_name,
            verbose_name_plural: full.verbose_name_plural,
            meta_model_name: full.meta_model_name,
        }
    }
}

/// authentik's `DeviceConnection`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceConnectionOut {
    pub device: Uuid,
    pub connector: Uuid,
    pub connector_obj: ConnectorOut,
    pub latest_snapshot: Option<SnapshotOut>,
}

/// authentik's `EndpointDevice`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceOut {
    pub device_uuid: Uuid,
    /// The device as a target of policy bindings: its own id.
    pub pbm_uuid: Uuid,
    pub name: String,
    /// The serial the device enrolled with.
    pub identifier: String,
    pub access_group: Option<Uuid>,
    pub access_group_obj: Option<DeviceAccessGroupOut>,
    pub expiring: bool,
    pub expires: Option<DateTime<Utc>>,
    /// What its agents reported, merged: the newest live report of each connection.
    pub facts: Option<SnapshotOut>,
    #[schema(value_type = Object)]
    pub attributes: Value,
}

/// authentik's `EndpointDeviceDetails`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceDetailsOut {
    #[serde(flatten)]
    pub device: DeviceOut,
    pub connections_obj: Vec<DeviceConnectionOut>,
    /// Policies are not offered yet: always empty.
    pub policies: Vec<Uuid>,
    pub connections: Vec<Uuid>,
}

impl From<DeviceView> for DeviceDetailsOut {
    fn from(view: DeviceView) -> Self {
        let connections: Vec<Uuid> = view.connections.iter().map(|c| c.connection.connector_id).collect();
        let connections_obj = view
            .connections
            .iter()
            .cloned()
            .map(|c| DeviceConnectionOut {
                device: c.connection.device_id,
                connector: c.connection.connector_id,
                connector_obj: c.connector.into(),
                latest_snapshot: c.latest.map(SnapshotOut::from),
            })
            .collect();
        Self { device: view.into(), connections_obj, policies: Vec::new(), connections }
    }
}

impl From<DeviceView> for DeviceOut {
    fn from(view: DeviceView) -> Self {
        let device = view.device;
        Self {
            device_uuid: device.id,
            pbm_uuid: device.id,
            name: device.name,
            identifier: device.identifier,
            access_group: device.access_group_id,
            access_group_obj: view.access_group.map(DeviceAccessGroupOut::from),
            expiring: device.expiring,
            expires: device.expires,
            facts: view.facts.map(SnapshotOut::from),
            attributes: device.attributes,
        }
    }
}

#[utoipa::path(get, path = "/api/v3/endpoints/devices/", tag = "endpoints", params(ListParams, DeviceFilter),
    responses((status = 200, description = "A page of devices with their merged facts", body = Paginated<DeviceOut>), (status = 403, description = "Permission denied")))]
async fn list_devices(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(filter): ApiQuery<DeviceFilter>,
) -> Result<Json<Paginated<DeviceOut>>> {
    Ok(Json(devices::list(&state, &principal.actor(), &filter, &params).await?.map(DeviceOut::from)))
}

#[utoipa::path(get, path = "/api/v3/endpoints/devices/summary/", tag = "endpoints",
    responses((status = 200, body = DeviceSummary), (status = 403, description = "Permission denied")))]
async fn device_summary(State(state): State<AppState>, principal: Principal) -> Result<Json<DeviceSummary>> {
    Ok(Json(devices::summary(&state, &principal.actor()).await?))
}

#[utoipa::path(get, path = "/api/v3/endpoints/devices/{device_uuid}/", tag = "endpoints",
    params(("device_uuid" = Uuid, Path, description = "Device uuid")),
    responses((status = 200, body = DeviceDetailsOut), (status = 404, description = "Not found")))]
async fn retrieve_device(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<DeviceDetailsOut>> {
    Ok(Json(devices::get(&state, &principal.actor(), id_of(&id)?).await?.into()))
}

#[utoipa::path(put, path = "/api/v3/endpoints/devices/{device_uuid}/", tag = "endpoints", request_body = DeviceRequest,
    params(("device_uuid" = Uuid, Path, description = "Device uuid")),
    responses((status = 200, body = DeviceDetailsOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn update_device(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DeviceRequest>,
) -> Result<Json<DeviceDetailsOut>> {
    Ok(Json(devices::update(&state, &principal.actor(), id_of(&id)?, &body, true).await?.into()))
}

#[utoipa::path(patch, path = "/api/v3/endpoints/devices/{device_uuid}/", tag = "endpoints", request_body = DeviceRequest,
    params(("device_uuid" = Uuid, Path, description = "Device uuid")),
    responses((status = 200, body = DeviceDetailsOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn partial_update_device(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DeviceRequest>,
) -> Result<Json<DeviceDetailsOut>> {
    Ok(Json(devices::update(&state, &principal.actor(), id_of(&id)?, &body, false).await?.into()))
}

#[utoipa::path(delete, path = "/api/v3/endpoints/devices/{device_uuid}/", tag = "endpoints",
    params(("device_uuid" = Uuid, Path, description = "Device uuid")),
    responses((status = 204, description = "Deleted, with its tokens and facts"), (status = 404, description = "Not found")))]
async fn delete_device(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    devices::delete(&state, &principal.actor(), id_of(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v3/endpoints/devices/{device_uuid}/used_by/", tag = "endpoints",
    params(("device_uuid" = Uuid, Path, description = "Device uuid")),
    responses((status = 200, body = [UsedBy]), (status = 404, description = "Not found")))]
async fn device_used_by(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<Vec<UsedBy>>> {
    devices::get(&state, &principal.actor(), id_of(&id)?).await?;
    Ok(Json(Vec::new()))
}

// --- device bindings -----------------------------------------------------------------------------

/// authentik's `DeviceUserBinding`: a user or a group admitted to a device or to every device
/// of an access group.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceBindingOut {
    pub pk: Uuid,
    /// Policies are not offered: always null.
    pub policy: Option<Uuid>,
    pub group: Option<Uuid>,
    pub user: Option<i64>,
    /// Policies are not offered: always null.
    #[schema(value_type = Option<Object>)]
    pub policy_obj: Option<Value>,
    pub group_obj: Option<PartialGroup>,
    pub user_obj: Option<PartialUser>,
    /// The device or device access group (its `pbm_uuid`).
    pub target: Uuid,
    pub negate: bool,
    pub enabled: bool,
    pub order: i32,
    pub timeout: i32,
    pub failure_result: bool,
    pub expires: Option<DateTime<Utc>>,
    pub expiring: bool,
    pub is_primary: bool,
    /// The connector that made the binding; null for bindings made through this API.
    pub connector: Option<Uuid>,
    pub connector_obj: Option<ConnectorOut>,
}

impl DeviceBindingOut {
    fn new(view: BindingView, state: &AppState) -> Self {
        let target = view.target();
        let row = view.binding;
        Self {
            pk: row.id,
            policy: None,
            group: row.group_id,
            user: row.user_id,
            policy_obj: None,
            group_obj: view.group.as_ref().map(PartialGroup::from),
            user_obj: view.user.as_ref().map(|user| PartialUser::new(user, &state.secret)),
            target,
            negate: row.negate,
            enabled: row.enabled,
            order: row.binding_order,
            timeout: row.timeout,
            failure_result: row.failure_result,
            expires: row.expires,
            expiring: row.expiring,
            is_primary: row.is_primary,
            connector: row.connector_id,
            connector_obj: view.connector.map(ConnectorOut::from),
        }
    }
}

#[utoipa::path(get, path = "/api/v3/endpoints/device_bindings/", tag = "endpoints", params(ListParams, BindingFilter),
    responses((status = 200, description = "A page of device bindings", body = Paginated<DeviceBindingOut>), (status = 403, description = "Permission denied")))]
async fn list_bindings(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(filter): ApiQuery<BindingFilter>,
) -> Result<Json<Paginated<DeviceBindingOut>>> {
    let page = bindings::list(&state, &principal.actor(), &filter, &params).await?;
    Ok(Json(page.map(|view| DeviceBindingOut::new(view, &state))))
}

#[utoipa::path(post, path = "/api/v3/endpoints/device_bindings/", tag = "endpoints", request_body = BindingRequest,
    responses((status = 201, body = DeviceBindingOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn create_binding(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<BindingRequest>,
) -> Result<(StatusCode, Json<DeviceBindingOut>)> {
    let view = bindings::create(&state, &principal.actor(), &body).await?;
    Ok((StatusCode::CREATED, Json(DeviceBindingOut::new(view, &state))))
}

#[utoipa::path(get, path = "/api/v3/endpoints/device_bindings/{policy_binding_uuid}/", tag = "endpoints",
    params(("policy_binding_uuid" = Uuid, Path, description = "Binding uuid")),
    responses((status = 200, body = DeviceBindingOut), (status = 404, description = "Not found")))]
async fn retrieve_binding(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<DeviceBindingOut>> {
    let view = bindings::get(&state, &principal.actor(), id_of(&id)?).await?;
    Ok(Json(DeviceBindingOut::new(view, &state)))
}

#[utoipa::path(put, path = "/api/v3/endpoints/device_bindings/{policy_binding_uuid}/", tag = "endpoints", request_body = BindingRequest,
    params(("policy_binding_uuid" = Uuid, Path, description = "Binding uuid")),
    responses((status = 200, body = DeviceBindingOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn update_binding(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<BindingRequest>,
) -> Result<Json<DeviceBindingOut>> {
    let view = bindings::update(&state, &principal.actor(), id_of(&id)?, &body, true).await?;
    Ok(Json(DeviceBindingOut::new(view, &state)))
}

#[utoipa::path(patch, path = "/api/v3/endpoints/device_bindings/{policy_binding_uuid}/", tag = "endpoints", request_body = BindingRequest,
    params(("policy_binding_uuid" = Uuid, Path, description = "Binding uuid")),
    responses((status = 200, body = DeviceBindingOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn partial_update_binding(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<BindingRequest>,
) -> Result<Json<DeviceBindingOut>> {
    let view = bindings::update(&state, &principal.actor(), id_of(&id)?, &body, false).await?;
    Ok(Json(DeviceBindingOut::new(view, &state)))
}

#[utoipa::path(delete, path = "/api/v3/endpoints/device_bindings/{policy_binding_uuid}/", tag = "endpoints",
    params(("policy_binding_uuid" = Uuid, Path, description = "Binding uuid")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "Not found")))]
async fn delete_binding(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    bindings::delete(&state, &principal.actor(), id_of(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v3/endpoints/device_bindings/{policy_binding_uuid}/used_by/", tag = "endpoints",
    params(("policy_binding_uuid" = Uuid, Path, description = "Binding uuid")),
    responses((status = 200, body = [UsedBy]), (status = 404, description = "Not found")))]
async fn binding_used_by(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<Vec<UsedBy>>> {
    bindings::get(&state, &principal.actor(), id_of(&id)?).await?;
    Ok(Json(Vec::new()))
}
