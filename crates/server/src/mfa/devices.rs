//! Enrolled devices: enrolment, and who may see, rename and remove which. A person manages
//! their own devices; anyone else needs the permission and, through the access rule, every
//! right the device's owner holds (a device is its owner's power).

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, Order, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    Set,
};
use serde_json::json;
use uuid::Uuid;

use super::entities::sms_device;
use crate::accounts::access::{self, Actor};
use crate::accounts::permissions::names;
use crate::db::pagination::{ListParams, Paginated, fetch_page, ilike};
use crate::error::{Error, Result};
use crate::events::{self, Action, ModelRef};
use crate::state::AppState;

/// What an enrolment is told when the number cannot be used on the stage (enrolled already, by
/// this account or another: which is not said).
pub const NUMBER_UNAVAILABLE: &str = "This phone number cannot be used here.";

/// Through which endpoint a device is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// `/authenticators/sms/`: one's own devices (everyone's with the view permission).
    Own,
    /// `/authenticators/admin/sms/`: everyone's, with the permissions, one's own included.
    Admin,
}

/// Filters of the device lists.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceFilter {
    /// Exact name.
    pub name: Option<String>,
}

fn device_ref(device: &sms_device::Model) -> ModelRef {
    ModelRef { app: "authentik_stages_authenticator_sms", model_name: "smsdevice", pk: json!(device.id), name: device.name.clone() }
}

/// Whether `number`, in any of the `forms` it may be kept in, is enrolled on `stage` already.
pub async fn number_taken(db: &impl ConnectionTrait, state: &AppState, stage: Uuid, forms: &[String]) -> Result<bool> {
    let found = sms_device::Entity::find()
        .filter(sms_device::Column::TenantId.eq(state.tenant.0))
        .filter(sms_device::Column::StageId.eq(stage))
        .filter(sms_device::Column::PhoneNumber.is_in(forms.iter().map(String::as_str)))
        .one(db)
        .await?;
    Ok(found.is_some())
}

/// Keeps a confirmed phone of `actor`'s account, enrolled through `stage`, and records it.
pub async fn enrol_sms(state: &AppState, actor: &Actor, stage: Uuid, phone_number: String, name: String) -> Result<sms_device::Model> {
    let Some(user) = &actor.user else { return Err(Error::PermissionDenied) };
    let now = Utc::now();
    let txn = crate::db::begin_write(&state.db).await?;
    let created = sms_device::ActiveModel {
        tenant_id: Set(state.tenant.0),
        user_id: Set(user.id),
        stage_id: Set(stage),
        name: Set(name),
        phone_number: Set(phone_number),
        confirmed: Set(true),
        created: Set(now),
        last_updated: Set(now),
        last_used: Set(None),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .map_err(|error| match error.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => Error::field("phone_number", NUMBER_UNAVAILABLE),
        _ => error.into(),
    })?;
    events::service::record(&txn, state, actor.event(Action::ModelCreated).about(&device_ref(&created))).await?;
    txn.commit().await?;
    Ok(created)
}

/// Refuses unless `actor` may do what `permission` allows to a device of `owner` through `view`,
/// where `view_permission` lets one see every device of its kind. Through [`View::Own`], someone
/// else's device that `actor` may not even see is not found.
pub(super) async fn authorize(
    state: &AppState,
    actor: &Actor,
    view: View,
    owner: i64,
    view_permission: &str,
    permission: &str,
) -> Result<()> {
    if view == View::Own && actor.is(owner) {
        return Ok(());
    }
    if view == View::Own && !actor.rights.has(view_permission) {
        return Err(Error::NotFound);
    }
    actor.require(view_permission)?;
    actor.require(permission)?;
    access::may_act_on(&state.db, state, actor, owner).await
}

async fn find(state: &AppState, id: i64) -> Result<sms_device::Model> {
    sms_device::Entity::find_by_id(id).filter(sms_device::Column::TenantId.eq(state.tenant.0)).one(&state.db).await?.ok_or(Error::NotFound)
}

/// One page of SMS devices: through [`View::Own`] the caller's own (everyone's with the view
/// permission), through [`View::Admin`] everyone's, which needs the view permission.
pub async fn list_sms(
    state: &AppState,
    actor: &Actor,
    view: View,
    filter: &DeviceFilter,
    params: &ListParams,
) -> Result<Paginated<sms_device::Model>> {
    let sees_all = actor.rights.has(names::VIEW_SMS_DEVICE);
    if view == View::Admin && !sees_all {
        return Err(Error::PermissionDenied);
    }
    let page = params.page_request(&state.config.api)?;
    let mut select = sms_device::Entity::find().filter(sms_device::Column::TenantId.eq(state.tenant.0));
    if !sees_all {
        let Some(user) = &actor.user else { return Err(Error::PermissionDenied) };
        select = select.filter(sms_device::Column::UserId.eq(user.id));
    }
    if let Some(name) = filter.name.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(sms_device::Column::Name.eq(name));
    }
    if let Some(pattern) = params.search_pattern() {
        select = select.filter(ilike(sms_device::Column::Name, &pattern));
    }
    let select = params.apply_ordering(
        select,
        &[("name", sms_device::Column::Name), ("created", sms_device::Column::Created)],
        (sms_device::Column::Name, Order::Asc),
        sms_device::Column::Id,
    )?;
    let mut page = fetch_page(&state.db, select, page).await?;
    mask_numbers_beyond(state, actor, &mut page.results).await?;
    Ok(page)
}

/// Masks the numbers of devices whose owners hold rights `actor` lacks: seeing every device
/// does not extend to the phone numbers of more powerful accounts.
async fn mask_numbers_beyond(state: &AppState, actor: &Actor, devices: &mut [sms_device::Model]) -> Result<()> {
    let beyond = owners_beyond(state, actor, devices.iter().map(|d| d.user_id)).await?;
    for device in devices.iter_mut().filter(|d| beyond.contains(&d.user_id)) {
        device.phone_number = super::sms::masked(&device.phone_number);
    }
    Ok(())
}

/// Which of `owners` (other than `actor` itself) hold rights `actor` lacks: their devices'
/// numbers and addresses are shown to `actor` masked.
pub(super) async fn owners_beyond(
    state: &AppState,
    actor: &Actor,
    owners: impl Iterator<Item = i64>,
) -> Result<std::collections::HashSet<i64>> {
    if actor.rights.superuser {
        return Ok(Default::default());
    }
    let mut owners: Vec<i64> = owners.filter(|owner| !actor.is(*owner)).collect();
    owners.sort_unstable();
    owners.dedup();
    let rights = access::account_rights(&state.db, state.tenant, &owners).await?;
    Ok(owners.into_iter().filter(|owner| rights.get(owner).is_some_and(|held| !actor.rights.covers(&held.held))).collect())
}

/// The SMS device `id`, if `actor` may see it through `view`.
pub async fn get_sms(state: &AppState, actor: &Actor, view: View, id: i64) -> Result<sms_device::Model> {
    let device = find(state, id).await?;
    authorize(state, actor, view, device.user_id, names::VIEW_SMS_DEVICE, names::VIEW_SMS_DEVICE).await?;
    Ok(device)
}

/// Renames the SMS device `id` (the only thing about a device that can change).
pub async fn rename_sms(state: &AppState, actor: &Actor, view: View, id: i64, name: Option<String>) -> Result<sms_device::Model> {
    let before = find(state, id).await?;
    authorize(state, actor, view, before.user_id, names::VIEW_SMS_DEVICE, names::CHANGE_SMS_DEVICE).await?;
    let Some(name) = name else { return Ok(before) };
    let name = parse_device_name(&name)?;
    let txn = crate::db::begin_write(&state.db).await?;
    let mut model = before.clone().into_active_model();
    model.name = Set(name);
    model.last_updated = Set(Utc::now());
    let after = model.update(&txn).await?;
    let diff = events::service::diff(&json!({"name": before.name}), &json!({"name": after.name}));
    events::service::record(&txn, state, actor.event(Action::ModelUpdated).about(&device_ref(&after)).with("diff", diff)).await?;
    txn.commit().await?;
    Ok(after)
}

/// Removes the SMS device `id`.
pub async fn delete_sms(state: &AppState, actor: &Actor, view: View, id: i64) -> Result<()> {
    let device = find(state, id).await?;
    authorize(state, actor, view, device.user_id, names::VIEW_SMS_DEVICE, names::DELETE_SMS_DEVICE).await?;
    let txn = crate::db::begin_write(&state.db).await?;
    sms_device::Entity::delete_by_id(device.id).exec(&txn).await?;
    events::service::record(&txn, state, actor.event(Action::ModelDeleted).about(&device_ref(&device))).await?;
    txn.commit().await?;
    Ok(())
}

/// Every device of the caller (`/authenticators/all/`): the phones, then the authenticator
/// apps and recovery-code sets, each oldest first.
pub async fn own_devices(state: &AppState, actor: &Actor) -> Result<(Vec<sms_device::Model>, Vec<super::entities::otp_device::Model>)> {
    let Some(user) = &actor.user else { return Err(Error::PermissionDenied) };
    let phones = sms_device::Entity::find()
        .filter(sms_device::Column::TenantId.eq(state.tenant.0))
        .filter(sms_device::Column::UserId.eq(user.id))
        .order_by_asc(sms_device::Column::Id)
        .all(&state.db)
        .await?;
    Ok((phones, super::otp_devices::of_user(state, user.id).await?))
}

/// A device name: 1 to 64 characters after trimming.
pub fn parse_device_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::field("name", "This field may not be blank."));
    }
    if name.chars().count() > 64 {
        return Err(Error::field("name", "Ensure this field has no more than 64 characters."));
    }
    Ok(name.to_owned())
}

/// The phones `user_id` can sign in with: confirmed, and not a verify-only stage's digest.
pub async fn sign_in_devices(state: &AppState, user_id: i64) -> Result<Vec<sms_device::Model>> {
    Ok(sign_in_phones_query(state, user_id).order_by_asc(sms_device::Column::Id).all(&state.db).await?)
}

fn sign_in_phones_query(state: &AppState, user_id: i64) -> sea_orm::Select<sms_device::Entity> {
    sms_device::Entity::find()
        .filter(sms_device::Column::TenantId.eq(state.tenant.0))
        .filter(sms_device::Column::UserId.eq(user_id))
        .filter(sms_device::Column::Confirmed.eq(true))
        .filter(sms_device::Column::PhoneNumber.not_like("hash:%"))
}

/// Notes that `device` was just used to sign in.
pub async fn mark_used(state: &AppState, device: &sms_device::Model) -> Result<()> {
    let mut model = device.clone().into_active_model();
    model.last_used = Set(Some(Utc::now()));
    model.update(&state.db).await?;
    Ok(())
}

/// Where the devices `user` can sign in with are kept, as far as one statement tells.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignInDeviceKinds {
    /// A confirmed phone that is not only a proven number.
    pub phones: bool,
    /// An e-mail authenticator, an authenticator app, or recovery codes with a code left.
    pub others: bool,
}

impl SignInDeviceKinds {
    /// Whether there is any device at all.
    pub fn any(self) -> bool {
        self.phones || self.others
    }
}

/// Which kinds of device `user` can sign in with: a phone, or an e-mail authenticator, an
/// authenticator app or recovery codes with a code left. One statement: every sign-in asks, and
/// a caller that lists the devices then reads only the tables that hold some.
pub async fn sign_in_device_kinds(state: &AppState, user: i64) -> Result<SignInDeviceKinds> {
    use super::otp_devices::{OtpKind, sign_in_devices_query};
    use sea_orm::sea_query::{Alias, Expr, Query};
    let phones = sign_in_phones_query(state, user).select_only().expr(Expr::value(1)).into_query();
    let kinds = [OtpKind::Totp, OtpKind::Static, OtpKind::Email];
    let others = sign_in_devices_query(state, user, &kinds).select_only().expr(Expr::value(1)).into_query();
    let statement =
        Query::select().expr_as(Expr::exists(phones), Alias::new("phones")).expr_as(Expr::exists(others), Alias::new("others")).to_owned();
    let Some(row) = state.db.query_one(&statement).await? else { return Ok(SignInDeviceKinds::default()) };
    Ok(SignInDeviceKinds { phones: row.try_get("", "phones")?, others: row.try_get("", "others")? })
}

/// Whether `user` has any device it can sign in with (see [`sign_in_device_kinds`]).
pub async fn has_sign_in_device(state: &AppState, user: i64) -> Result<bool> {
    Ok(sign_in_device_kinds(state, user).await?.any())
}
