//! `/api/v3/authenticators/`: a person's devices, everyone's for administrators, and the list of
//! all of one's devices.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::api::{DeviceOut, DeviceWrite, EmailDeviceOut, OtpDeviceOut, SmsDeviceOut, StaticDeviceOut, TotpDeviceOut};
use super::devices::{self, DeviceFilter, View};
use super::entities::{otp_device, sms_device};
use super::otp_devices::{self, OtpKind};
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
        .merge(totp::router())
        .merge(recovery::router())
        .merge(mail::router())
}

/// The owners of devices, as their representations show them.
async fn owners(state: &AppState, mut owner_ids: Vec<i64>) -> Result<HashMap<i64, PartialUser>> {
    owner_ids.sort_unstable();
    owner_ids.dedup();
    Ok(crate::accounts::users::find_users(&state.db, state.tenant, &owner_ids)
        .await?
        .iter()
        .map(|user| (user.id, PartialUser::new(user, &state.secret)))
        .collect())
}

fn owner_of(owners: &HashMap<i64, PartialUser>, user: i64) -> Result<PartialUser> {
    owners.get(&user).cloned().ok_or_else(|| Error::internal("device without owner"))
}

async fn render(state: &AppState, devices: Vec<sms_device::Model>) -> Result<Vec<SmsDeviceOut>> {
    let owners = owners(state, devices.iter().map(|d| d.user_id).collect()).await?;
    devices
        .into_iter()
        .map(|device| {
            let owner = owner_of(&owners, device.user_id)?;
            Ok(SmsDeviceOut::new(device, owner))
        })
        .collect()
}

async fn render_otp<T: OtpDeviceOut>(state: &AppState, devices: Vec<otp_device::Model>) -> Result<Vec<T>> {
    let owners = owners(state, devices.iter().map(|d| d.user_id).collect()).await?;
    devices
        .into_iter()
        .map(|device| {
            let owner = owner_of(&owners, device.user_id)?;
            Ok(T::new(device, owner))
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
    let (phones, others) = devices::own_devices(&state, &principal.actor()).await?;
    let mut all: Vec<DeviceOut> = phones.into_iter().map(DeviceOut::from).chain(others.into_iter().map(DeviceOut::from)).collect();
    all.sort_by_key(|device| device.created);
    Ok(Json(all))
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

async fn write(state: AppState, principal: Principal, view: View, id: String, body: DeviceWrite, full: bool) -> Result<Json<SmsDeviceOut>> {
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
    request_body = DeviceWrite, responses((status = 200, body = SmsDeviceOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn update_sms_device(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DeviceWrite>,
) -> Result<Json<SmsDeviceOut>> {
    write(state, principal, View::Own, id, body, true).await
}

#[utoipa::path(patch, path = "/api/v3/authenticators/sms/{id}/", tag = "authenticators", params(("id" = i64, Path, description = "Device id")),
    request_body = DeviceWrite, responses((status = 200, body = SmsDeviceOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn partial_update_sms_device(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DeviceWrite>,
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

#[utoipa::path(post, path = "/api/v3/authenticators/admin/sms/", tag = "authenticators", request_body = DeviceWrite,
    responses((status = 400, description = "Always: a phone is enrolled by its owner through an SMS authenticator stage, which confirms the number")))]
async fn admin_create_sms_device(_principal: Principal, ApiJson(_body): ApiJson<DeviceWrite>) -> Result<StatusCode> {
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
    request_body = DeviceWrite, responses((status = 200, body = SmsDeviceOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn admin_update_sms_device(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DeviceWrite>,
) -> Result<Json<SmsDeviceOut>> {
    write(state, principal, View::Admin, id, body, true).await
}

#[utoipa::path(patch, path = "/api/v3/authenticators/admin/sms/{id}/", tag = "authenticators", params(("id" = i64, Path, description = "Device id")),
    request_body = DeviceWrite, responses((status = 200, body = SmsDeviceOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn admin_partial_update_sms_device(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DeviceWrite>,
) -> Result<Json<SmsDeviceOut>> {
    write(state, principal, View::Admin, id, body, false).await
}

#[utoipa::path(delete, path = "/api/v3/authenticators/admin/sms/{id}/", tag = "authenticators", params(("id" = i64, Path, description = "Device id")),
    responses((status = 204, description = "Removed"), (status = 403, description = "Permission denied"), (status = 404, description = "Not found")))]
async fn admin_delete_sms_device(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    delete(state, principal, View::Admin, id).await
}

/// The handlers of one kind of authenticator app or recovery-code device: the caller's own under
/// `/authenticators/{kind}/`, everyone's under `/authenticators/admin/{kind}/`.
macro_rules! otp_device_routes {
    ($module:ident, $kind:expr, $out:ident, $name:literal, $own:literal, $own_one:literal, $used_by:literal, $admin:literal, $admin_one:literal) => {
        mod $module {
            use super::*;

            pub fn router() -> OpenApiRouter<AppState> {
                OpenApiRouter::new()
                    .routes(routes!(list))
                    .routes(routes!(retrieve, update, partial_update, destroy))
                    .routes(routes!(used_by))
                    .routes(routes!(admin_list, admin_create))
                    .routes(routes!(admin_retrieve, admin_update, admin_partial_update, admin_destroy))
            }

            async fn list_in(state: AppState, principal: Principal, view: View, params: ListParams, filter: DeviceFilter) -> Result<Json<Paginated<$out>>> {
                let page = otp_devices::list(&state, &principal.actor(), $kind, view, &filter, &params).await?;
                let results = render_otp(&state, page.results).await?;
                Ok(Json(Paginated { pagination: page.pagination, results, autocomplete: page.autocomplete }))
            }

            async fn one(state: &AppState, device: otp_device::Model) -> Result<Json<$out>> {
                render_otp(state, vec![device]).await?.pop().map(Json).ok_or_else(|| Error::internal("rendering lost a device"))
            }

            async fn retrieve_in(state: AppState, principal: Principal, view: View, id: String) -> Result<Json<$out>> {
                let device = otp_devices::get(&state, &principal.actor(), $kind, view, device_id(&id)?).await?;
                one(&state, device).await
            }

            async fn write_in(state: AppState, principal: Principal, view: View, id: String, body: DeviceWrite, full: bool) -> Result<Json<$out>> {
                if full && body.name.is_none() {
                    return Err(Error::field("name", "This field is required."));
                }
                let device = otp_devices::rename(&state, &principal.actor(), $kind, view, device_id(&id)?, body.name).await?;
                one(&state, device).await
            }

            async fn destroy_in(state: AppState, principal: Principal, view: View, id: String) -> Result<StatusCode> {
                otp_devices::delete(&state, &principal.actor(), $kind, view, device_id(&id)?).await?;
                Ok(StatusCode::NO_CONTENT)
            }

            #[utoipa::path(get, path = $own, tag = "authenticators", operation_id = concat!("authenticators_", $name, "_list"), params(ListParams, DeviceFilter),
                responses((status = 200, description = "The caller's devices (everyone's with the kind's view permission)", body = Paginated<$out>)))]
            async fn list(State(state): State<AppState>, principal: Principal, ApiQuery(params): ApiQuery<ListParams>, ApiQuery(filter): ApiQuery<DeviceFilter>) -> Result<Json<Paginated<$out>>> {
                list_in(state, principal, View::Own, params, filter).await
            }

            #[utoipa::path(get, path = $own_one, tag = "authenticators", operation_id = concat!("authenticators_", $name, "_retrieve"), params(("id" = i64, Path, description = "Device id")),
                responses((status = 200, body = $out), (status = 404, description = "Not found")))]
            async fn retrieve(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<$out>> {
                retrieve_in(state, principal, View::Own, id).await
            }

            #[utoipa::path(put, path = $own_one, tag = "authenticators", operation_id = concat!("authenticators_", $name, "_update"), params(("id" = i64, Path, description = "Device id")),
                request_body = DeviceWrite, responses((status = 200, body = $out), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
            async fn update(State(state): State<AppState>, principal: Principal, Path(id): Path<String>, ApiJson(body): ApiJson<DeviceWrite>) -> Result<Json<$out>> {
                write_in(state, principal, View::Own, id, body, true).await
            }

            #[utoipa::path(patch, path = $own_one, tag = "authenticators", operation_id = concat!("authenticators_", $name, "_partial_update"), params(("id" = i64, Path, description = "Device id")),
                request_body = DeviceWrite, responses((status = 200, body = $out), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
            async fn partial_update(State(state): State<AppState>, principal: Principal, Path(id): Path<String>, ApiJson(body): ApiJson<DeviceWrite>) -> Result<Json<$out>> {
                write_in(state, principal, View::Own, id, body, false).await
            }

            #[utoipa::path(delete, path = $own_one, tag = "authenticators", operation_id = concat!("authenticators_", $name, "_destroy"), params(("id" = i64, Path, description = "Device id")),
                responses((status = 204, description = "Removed"), (status = 404, description = "Not found")))]
            async fn destroy(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
                destroy_in(state, principal, View::Own, id).await
            }

            #[utoipa::path(get, path = $used_by, tag = "authenticators", operation_id = concat!("authenticators_", $name, "_used_by_list"), params(("id" = i64, Path, description = "Device id")),
                responses((status = 200, body = [UsedBy]), (status = 404, description = "Not found")))]
            async fn used_by(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<Vec<UsedBy>>> {
                otp_devices::get(&state, &principal.actor(), $kind, View::Own, device_id(&id)?).await?;
                // Nothing refers to a device.
                Ok(Json(Vec::new()))
            }

            #[utoipa::path(get, path = $admin, tag = "authenticators", operation_id = concat!("authenticators_admin_", $name, "_list"), params(ListParams, DeviceFilter),
                responses((status = 200, description = "Everyone's devices (the kind's view permission)", body = Paginated<$out>), (status = 403, description = "Permission denied")))]
            async fn admin_list(State(state): State<AppState>, principal: Principal, ApiQuery(params): ApiQuery<ListParams>, ApiQuery(filter): ApiQuery<DeviceFilter>) -> Result<Json<Paginated<$out>>> {
                list_in(state, principal, View::Admin, params, filter).await
            }

            #[utoipa::path(post, path = $admin, tag = "authenticators", operation_id = concat!("authenticators_admin_", $name, "_create"), request_body = DeviceWrite,
                responses((status = 400, description = "Always: devices are set up by their owners through a setup stage")))]
            async fn admin_create(_principal: Principal, ApiJson(_body): ApiJson<DeviceWrite>) -> Result<StatusCode> {
                Err(Error::field(
                    NON_FIELD_ERRORS,
                    "Authenticators are set up by their owners through a setup stage, which shows the secret or codes to them alone; they cannot be created here.",
                ))
            }

            #[utoipa::path(get, path = $admin_one, tag = "authenticators", operation_id = concat!("authenticators_admin_", $name, "_retrieve"), params(("id" = i64, Path, description = "Device id")),
                responses((status = 200, body = $out), (status = 403, description = "Permission denied"), (status = 404, description = "Not found")))]
            async fn admin_retrieve(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<$out>> {
                retrieve_in(state, principal, View::Admin, id).await
            }

            #[utoipa::path(put, path = $admin_one, tag = "authenticators", operation_id = concat!("authenticators_admin_", $name, "_update"), params(("id" = i64, Path, description = "Device id")),
                request_body = DeviceWrite, responses((status = 200, body = $out), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
            async fn admin_update(State(state): State<AppState>, principal: Principal, Path(id): Path<String>, ApiJson(body): ApiJson<DeviceWrite>) -> Result<Json<$out>> {
                write_in(state, principal, View::Admin, id, body, true).await
            }

            #[utoipa::path(patch, path = $admin_one, tag = "authenticators", operation_id = concat!("authenticators_admin_", $name, "_partial_update"), params(("id" = i64, Path, description = "Device id")),
                request_body = DeviceWrite, responses((status = 200, body = $out), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
            async fn admin_partial_update(State(state): State<AppState>, principal: Principal, Path(id): Path<String>, ApiJson(body): ApiJson<DeviceWrite>) -> Result<Json<$out>> {
                write_in(state, principal, View::Admin, id, body, false).await
            }

            #[utoipa::path(delete, path = $admin_one, tag = "authenticators", operation_id = concat!("authenticators_admin_", $name, "_destroy"), params(("id" = i64, Path, description = "Device id")),
                responses((status = 204, description = "Removed"), (status = 403, description = "Permission denied"), (status = 404, description = "Not found")))]
            async fn admin_destroy(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
                destroy_in(state, principal, View::Admin, id).await
            }
        }
    };
}

otp_device_routes!(
    totp,
    OtpKind::Totp,
    TotpDeviceOut,
    "totp",
    "/api/v3/authenticators/totp/",
    "/api/v3/authenticators/totp/{id}/",
    "/api/v3/authenticators/totp/{id}/used_by/",
    "/api/v3/authenticators/admin/totp/",
    "/api/v3/authenticators/admin/totp/{id}/"
);

otp_device_routes!(
    recovery,
    OtpKind::Static,
    StaticDeviceOut,
    "static",
    "/api/v3/authenticators/static/",
    "/api/v3/authenticators/static/{id}/",
    "/api/v3/authenticators/static/{id}/used_by/",
    "/api/v3/authenticators/admin/static/",
    "/api/v3/authenticators/admin/static/{id}/"
);

otp_device_routes!(
    mail,
    OtpKind::Email,
    EmailDeviceOut,
    "email",
    "/api/v3/authenticators/email/",
    "/api/v3/authenticators/email/{id}/",
    "/api/v3/authenticators/email/{id}/used_by/",
    "/api/v3/authenticators/admin/email/",
    "/api/v3/authenticators/admin/email/{id}/"
);
