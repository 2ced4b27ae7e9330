//! `/api/v3/authenticators/`: a person's devices, everyone's for administrators, and the list of
//! all of one's devices.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::api::{DeviceOut, SmsDeviceOut, SmsDeviceWrite};
use super::devices::{self, DeviceFilter, View};
use super::entities::sms_device;
use crate::accounts::api::PartialUser;
use crate::db::pagination::{ListParams, Paginated};
use crate::error::{Error, NON_FIELD_ERRORS, Result};
use crate::http::auth::Principal;
use crate::http::json::ApiJson;
use crate::http::query::ApiQuery;
use crate::state::AppState;
use crate::tokens::api::UsedBy;

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_all_devices))
        .routes(routes!(list_sms_devices))
        .routes(routes!(retrieve_sms_device, update_sms_device, partial_update_sms_device, delete_sms_device))
        .routes(routes!(sms_device_used_by))
        .routes(routes!(admin_list_sms_devices, admin_create_sms_device))
        .routes(routes!(admin_retrieve_sms_device, admin_update_sms_device, admin_partial_update_sms_device, admin_delete_sms_device))
}

async fn render(state: &AppState, devices: Vec<sms_device::Model>) -> Result<Vec<SmsDeviceOut>> {
    let mut owner_ids: Vec<i64> = devices.iter().map(|d| d.user_id).collect();
    owner_ids.sort_unstable();
    owner_ids.dedup();
    let owners: HashMap<i64, PartialUser> = crate::accounts::users::find_users(&state.db, state.tenant, &owner_ids)
        .await?
        .iter()
        .map(|user| (user.id, PartialUser::new(user, &state.secret)))
        .collect();
    devices
        .into_iter()
        .map(|device| {
            let user = owners.get(&device.user_id).cloned().ok_or_else(|| Error::internal("device without owner"))?;
            Ok(SmsDeviceOut::new(device, user))
        })
        .collect()
}

/// A device id from the path; one that is not a number names no device.
fn device_id(text: &str) -> Result<i64> {
    text.parse().map_err(|_| Error::NotFound)
}

#[utoipa::path(get, path = "/api/v3/authenticators/all/", tag = "authenticators",
    responses((status = 200, description = "Every device of the caller", body = [DeviceOut]), (status = 401, description = "Not signed in")))]
async fn list_all_devices(State(state): State<AppState>, principal: Principal) -> Result<Json<Vec<DeviceOut>>> {
    let devices = devices::own_devices(&state, &principal.actor()).await?;
    Ok(Json(devices.into_iter().map(DeviceOut::from).collect()))
}

async fn list(
    state: AppState,
    principal: Principal,
    view: View,
    params: ListParams,
    filter: DeviceFilter,
) -> Result<Json<Paginated<SmsDeviceOut>>> {
    let page = devices::list_sms(&state, &principal.actor(), view, &filter, &params).await?;
    let results = render(&state, page.results).await?;
    Ok(Json(Paginated { pagination: page.pagination, results, autocomplete: page.autocomplete }))
}

async fn retrieve(state: AppState, principal: Principal, view: View, id: String) -> Result<Json<SmsDeviceOut>> {
    let device = devices::get_sms(&state, &principal.actor(), view, device_id(&id)?).await?;
    render(&state, vec![device]).await?.pop().map(Json).ok_or_else(|| Error::internal("rendering lost a device"))
}

async fn write(
    state: AppState,
    principal: Principal,
    view: View,
    id: String,
    body: SmsDeviceWrite,
    full: bool,
) -> Result<Json<SmsDeviceOut>> {
    if full && body.name.is_none() {
        return Err(Error::field("name", "This field is required."));
    }
    let device = devices::rename_sms(&state, &principal.actor(), view, device_id(&id)?, body.name).await?;
    render(&state, vec![device]).await?.pop().map(Json).ok_or_else(|| Error::internal("rendering lost a device"))
}

async fn delete(state: AppState, principal: Principal, view: View, id: String) -> Result<StatusCode> {
    devices::delete_sms(&state, &principal.actor(), view, device_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v3/authenticators/sms/", tag = "authenticators", params(ListParams, DeviceFilter),
    responses((status = 200, description = "The caller's SMS devices (everyone's with authentik_stages_authenticator_sms.view_smsdevice)", body = Paginated<SmsDeviceOut>)))]
async fn list_sms_devices(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(filter): ApiQuery<DeviceFilter>,
) -> Result<Json<Paginated<SmsDeviceOut>>> {
    list(state, principal, View::Own, params, filter).await
}

#[utoipa::path(get, path = "/api/v3/authenticators/sms/{id}/", tag = "authenticators", params(("id" = i64, Path, description = "Device id")),
    responses((status = 200, body = SmsDeviceOut), (status = 404, description = "Not found")))]
async fn retrieve_sms_device(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<SmsDeviceOut>> {
    retrieve(state, principal, View::Own, id).await
}

#[utoipa::path(put, path = "/api/v3/authenticators/sms/{id}/", tag = "authenticators", params(("id" = i64, Path, description = "Device id")),
    request_body = SmsDeviceWrite, responses((status = 200, body = SmsDeviceOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn update_sms_device(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SmsDeviceWrite>,
) -> Result<Json<SmsDeviceOut>> {
    write(state, principal, View::Own, id, body, true).await
}

#[utoipa::path(patch, path = "/api/v3/authenticators/sms/{id}/", tag = "authenticators", params(("id" = i64, Path, description = "Device id")),
    request_body = SmsDeviceWrite, responses((status = 200, body = SmsDeviceOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn partial_update_sms_device(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SmsDeviceWrite>,
) -> Result<Json<SmsDeviceOut>> {
    write(state, principal, View::Own, id, body, false).await
}

#[utoipa::path(delete, path = "/api/v3/authenticators/sms/{id}/", tag = "authenticators", params(("id" = i64, Path, description = "Device id")),
    responses((status = 204, description = "Removed"), (status = 404, description = "Not found")))]
async fn delete_sms_device(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    delete(state, principal, View::Own, id).await
}

#[utoipa::path(get, path = "/api/v3/authenticators/sms/{id}/used_by/", tag = "authenticators", params(("id" = i64, Path, description = "Device id")),
    responses((status = 200, body = [UsedBy]), (status = 404, description = "Not found")))]
async fn sms_device_used_by(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<Vec<UsedBy>>> {
    devices::get_sms(&state, &principal.actor(), View::Own, device_id(&id)?).await?;
    // Nothing refers to a device.
    Ok(Json(Vec::new()))
}

#[utoipa::path(get, path = "/api/v3/authenticators/admin/sms/", tag = "authenticators", params(ListParams, DeviceFilter),
    responses((status = 200, description = "Everyone's SMS devices (authentik_stages_authenticator_sms.view_smsdevice)", body = Paginated<SmsDeviceOut>),
        (status = 403, description = "Permission denied")))]
async fn admin_list_sms_devices(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(filter): ApiQuery<DeviceFilter>,
) -> Result<Json<Paginated<SmsDeviceOut>>> {
    list(state, principal, View::Admin, params, filter).await
}

#[utoipa::path(post, path = "/api/v3/authenticators/admin/sms/", tag = "authenticators", request_body = SmsDeviceWrite,
    responses((status = 400, description = "Always: a phone is enrolled by its owner through an SMS authenticator stage, which confirms the number")))]
async fn admin_create_sms_device(_principal: Principal, ApiJson(_body): ApiJson<SmsDeviceWrite>) -> Result<StatusCode> {
    Err(Error::field(
        NON_FIELD_ERRORS,
        "SMS devices are enrolled by their owners through an SMS authenticator stage, which confirms the number; they cannot be created here.",
    ))
}

#[utoipa::path(get, path = "/api/v3/authenticators/admin/sms/{id}/", tag = "authenticators", params(("id" = i64, Path, description = "Device id")),
    responses((status = 200, body = SmsDeviceOut), (status = 403, description = "Permission denied"), (status = 404, description = "Not found")))]
async fn admin_retrieve_sms_device(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<SmsDeviceOut>> {
    retrieve(state, principal, View::Admin, id).await
}

#[utoipa::path(put, path = "/api/v3/authenticators/admin/sms/{id}/", tag = "authenticators", params(("id" = i64, Path, description = "Device id")),
    request_body = SmsDeviceWrite, responses((status = 200, body = SmsDeviceOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn admin_update_sms_device(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SmsDeviceWrite>,
) -> Result<Json<SmsDeviceOut>> {
    write(state, principal, View::Admin, id, body, true).await
}

#[utoipa::path(patch, path = "/api/v3/authenticators/admin/sms/{id}/", tag = "authenticators", params(("id" = i64, Path, description = "Device id")),
    request_body = SmsDeviceWrite, responses((status = 200, body = SmsDeviceOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn admin_partial_update_sms_device(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SmsDeviceWrite>,
) -> Result<Json<SmsDeviceOut>> {
    write(state, principal, View::Admin, id, body, false).await
}

#[utoipa::path(delete, path = "/api/v3/authenticators/admin/sms/{id}/", tag = "authenticators", params(("id" = i64, Path, description = "Device id")),
    responses((status = 204, description = "Removed"), (status = 403, description = "Permission denied"), (status = 404, description = "Not found")))]
async fn admin_delete_sms_device(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    delete(state, principal, View::Admin, id).await
}
