//! Authenticator apps and recovery-code sets of accounts: enrolment, use, and who may see,
//! rename and remove which, by the same rule as phones (see [`super::devices`]).

use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, IntoActiveModel, Order, QueryFilter, QueryOrder, Set,
};
use serde_json::json;
use uuid::Uuid;

use super::devices::{DeviceFilter, View, authorize, parse_device_name};
use super::entities::{otp_device, static_token};
use super::recovery;
use super::totp::{Digits, TotpSecret};
use crate::accounts::access::Actor;
use crate::accounts::permissions::names;
use crate::db::pagination::{ListParams, Paginated, fetch_page, ilike};
use crate::db::text_enum::text_enum;
use crate::error::{Error, Result};
use crate::events::{self, Action, ModelRef};
use crate::secret::ServerSecret;
use crate::state::AppState;

text_enum!(
    /// The kinds of device kept in `otp_devices`.
    OtpKind {
        Totp => "totp",
        Static => "static",
        Email => "email",
    }
);

impl OtpKind {
    fn view_permission(self) -> &'static str {
        match self {
            OtpKind::Totp => names::VIEW_TOTP_DEVICE,
            OtpKind::Static => names::VIEW_STATIC_DEVICE,
            OtpKind::Email => names::VIEW_EMAIL_DEVICE,
        }
    }
    fn change_permission(self) -> &'static str {
        match self {
            OtpKind::Totp => names::CHANGE_TOTP_DEVICE,
            OtpKind::Static => names::CHANGE_STATIC_DEVICE,
            OtpKind::Email => names::CHANGE_EMAIL_DEVICE,
        }
    }
    fn delete_permission(self) -> &'static str {
        match self {
            OtpKind::Totp => names::DELETE_TOTP_DEVICE,
            OtpKind::Static => names::DELETE_STATIC_DEVICE,
            OtpKind::Email => names::DELETE_EMAIL_DEVICE,
        }
    }
    /// authentik's app label and model name of this kind of device.
    pub fn model(self) -> (&'static str, &'static str) {
        match self {
            OtpKind::Totp => ("authentik_stages_authenticator_totp", "totpdevice"),
            OtpKind::Static => ("authentik_stages_authenticator_static", "staticdevice"),
            OtpKind::Email => ("authentik_stages_authenticator_email", "emaildevice"),
        }
    }
}

fn device_ref(kind: OtpKind, device: &otp_device::Model) -> ModelRef {
    let (app, model_name) = kind.model();
    ModelRef { app, model_name, pk: json!(device.id), name: device.name.clone() }
}

/// What a setup answered twice is told the second time.
pub const ALREADY_SET_UP: &str = "This authenticator was set up already.";

fn new_device(state: &AppState, user: i64, stage: Uuid, offer: &str, kind: OtpKind, name: &str) -> otp_device::ActiveModel {
    let now = Utc::now();
    otp_device::ActiveModel {
        tenant_id: Set(state.tenant.0),
        user_id: Set(user),
        stage_id: Set(Some(stage)),
        kind: Set(kind.as_str().to_owned()),
        offer: Set(offer.to_owned()),
        name: Set(name.to_owned()),
        secret_sealed: Set(None),
        email: Set(None),
        digits: Set(0),
        last_step: Set(0),
        confirmed: Set(true),
        created: Set(now),
        last_updated: Set(now),
        last_used: Set(None),
        ..Default::default()
    }
}

/// Whether `error` is the unique index on offers: the same setup answered twice.
fn is_same_offer(error: &sea_orm::DbErr) -> bool {
    matches!(error.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
}

/// Inserts `device` of `kind`, made for `user` from `offer`, and records it; a setup answered
/// twice gets the device the first answer made.
async fn insert_offered(
    state: &AppState,
    actor: &Actor,
    user: i64,
    offer: &str,
    kind: OtpKind,
    device: otp_device::ActiveModel,
) -> Result<otp_device::Model> {
    let txn = crate::db::begin_write(&state.db).await?;
    let created = match device.insert(&txn).await {
        Ok(created) => created,
        Err(error) if is_same_offer(&error) => {
            txn.rollback().await?;
            return made_from(state, user, offer).await;
        }
        Err(error) => return Err(error.into()),
    };
    events::service::record(&txn, state, actor.event(Action::ModelCreated).about(&device_ref(kind, &created))).await?;
    txn.commit().await?;
    Ok(created)
}

/// The device `user` made from `offer` already: a setup answered twice (a double click) makes
/// one device, and both answers go on as set up.
async fn made_from(state: &AppState, user: i64, offer: &str) -> Result<otp_device::Model> {
    otp_device::Entity::find()
        .filter(otp_device::Column::TenantId.eq(state.tenant.0))
        .filter(otp_device::Column::Offer.eq(offer))
        .filter(otp_device::Column::UserId.eq(user))
        .one(&state.db)
        .await?
        .ok_or_else(|| Error::field(crate::error::NON_FIELD_ERRORS, ALREADY_SET_UP))
}

/// Keeps an authenticator app of `actor`'s account, set up through `stage` from the secret it
/// offered as `offer`, and confirmed with the code of time step `confirmed_step` (which cannot
/// be used again to sign in).
pub async fn enrol_totp(
    state: &AppState,
    actor: &Actor,
    stage: Uuid,
    offer: &str,
    secret: &TotpSecret,
    digits: Digits,
    confirmed_step: u64,
) -> Result<otp_device::Model> {
    let Some(user) = &actor.user else { return Err(Error::PermissionDenied) };
    let mut device = new_device(state, user.id, stage, offer, OtpKind::Totp, "TOTP Device");
    device.secret_sealed = Set(Some(secret.seal(&state.secret, user.id)?));
    device.digits = Set(digits.count() as i32);
    device.last_step = Set(i64::try_from(confirmed_step).map_err(|_| Error::internal("time step out of range"))?);
    insert_offered(state, actor, user.id, offer, OtpKind::Totp, device).await
}

/// Keeps an e-mail authenticator of `actor`'s account for `address`, set up through `stage` (the
/// code it sent as `offer` proved the address).
pub async fn enrol_email(
    state: &AppState,
    actor: &Actor,
    stage: Uuid,
    offer: &str,
    address: &gatehouse_types::Email,
) -> Result<otp_device::Model> {
    let Some(user) = &actor.user else { return Err(Error::PermissionDenied) };
    let mut device = new_device(state, user.id, stage, offer, OtpKind::Email, "Email Device");
    device.email = Set(Some(address.as_str().to_owned()));
    insert_offered(state, actor, user.id, offer, OtpKind::Email, device).await
}

/// Keeps a new set of recovery codes of `actor`'s account from `stage` (the set it offered as
/// `offer`), replacing the account's earlier sets (so that codes written down earlier stop
/// working, whichever stage made them).
pub async fn enrol_static(state: &AppState, actor: &Actor, stage: Uuid, offer: &str, codes: &[String]) -> Result<otp_device::Model> {
    let Some(user) = &actor.user else { return Err(Error::PermissionDenied) };
    let txn = crate::db::begin_write(&state.db).await?;
    let replaced = otp_device::Entity::find()
        .filter(otp_device::Column::TenantId.eq(state.tenant.0))
        .filter(otp_device::Column::UserId.eq(user.id))
        .filter(otp_device::Column::Kind.eq(OtpKind::Static))
        .filter(otp_device::Column::Offer.ne(offer))
        .all(&txn)
        .await?;
    for old in &replaced {
        otp_device::Entity::delete_by_id(old.id).exec(&txn).await?;
        events::service::record(&txn, state, actor.event(Action::ModelDeleted).about(&device_ref(OtpKind::Static, old))).await?;
    }
    let created = match new_device(state, user.id, stage, offer, OtpKind::Static, "Static Token").insert(&txn).await {
        Ok(created) => created,
        Err(error) if is_same_offer(&error) => {
            txn.rollback().await?;
            return made_from(state, user.id, offer).await;
        }
        Err(error) => return Err(error.into()),
    };
    let tokens = codes.iter().map(|code| static_token::ActiveModel {
        device_id: Set(created.id),
        digest: Set(recovery::digest(&state.secret, user.id, code)),
        ..Default::default()
    });
    static_token::Entity::insert_many(tokens).exec(&txn).await?;
    events::service::record(&txn, state, actor.event(Action::ModelCreated).about(&device_ref(OtpKind::Static, &created))).await?;
    txn.commit().await?;
    Ok(created)
}

async fn find(state: &AppState, kind: OtpKind, id: i64) -> Result<otp_device::Model> {
    otp_device::Entity::find_by_id(id)
        .filter(otp_device::Column::TenantId.eq(state.tenant.0))
        .filter(otp_device::Column::Kind.eq(kind))
        .one(&state.db)
        .await?
        .ok_or(Error::NotFound)
}

/// One page of `kind` devices: through [`View::Own`] the caller's own (everyone's with the view
/// permission), through [`View::Admin`] everyone's, which needs the view permission.
pub async fn list(
    state: &AppState,
    actor: &Actor,
    kind: OtpKind,
    view: View,
    filter: &DeviceFilter,
    params: &ListParams,
) -> Result<Paginated<otp_device::Model>> {
    let sees_all = actor.rights.has(kind.view_permission());
    if view == View::Admin && !sees_all {
        return Err(Error::PermissionDenied);
    }
    let page = params.page_request(&state.config.api)?;
    let mut select =
        otp_device::Entity::find().filter(otp_device::Column::TenantId.eq(state.tenant.0)).filter(otp_device::Column::Kind.eq(kind));
    if !sees_all {
        let Some(user) = &actor.user else { return Err(Error::PermissionDenied) };
        select = select.filter(otp_device::Column::UserId.eq(user.id));
    }
    if let Some(name) = filter.name.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(otp_device::Column::Name.eq(name));
    }
    if let Some(pattern) = params.search_pattern() {
        select = select.filter(ilike(otp_device::Column::Name, &pattern));
    }
    let select = params.apply_ordering(
        select,
        &[("name", otp_device::Column::Name), ("created", otp_device::Column::Created)],
        (otp_device::Column::Name, Order::Asc),
        otp_device::Column::Id,
    )?;
    let mut page = fetch_page(&state.db, select, page).await?;
    let beyond = super::devices::owners_beyond(state, actor, page.results.iter().map(|d| d.user_id)).await?;
    for device in page.results.iter_mut().filter(|d| beyond.contains(&d.user_id)) {
        device.email = device.email.as_deref().map(super::email::masked);
    }
    Ok(page)
}

/// The `kind` device `id`, if `actor` may see it through `view`.
pub async fn get(state: &AppState, actor: &Actor, kind: OtpKind, view: View, id: i64) -> Result<otp_device::Model> {
    let device = find(state, kind, id).await?;
    authorize(state, actor, view, device.user_id, kind.view_permission(), kind.view_permission()).await?;
    Ok(device)
}

/// Renames the `kind` device `id` (the only thing about a device that can change).
pub async fn rename(
    state: &AppState,
    actor: &Actor,
    kind: OtpKind,
    view: View,
    id: i64,
    name: Option<String>,
) -> Result<otp_device::Model> {
    let before = find(state, kind, id).await?;
    authorize(state, actor, view, before.user_id, kind.view_permission(), kind.change_permission()).await?;
    let Some(name) = name else { return Ok(before) };
    let name = parse_device_name(&name)?;
    let txn = crate::db::begin_write(&state.db).await?;
    let mut model = before.clone().into_active_model();
    model.name = Set(name);
    model.last_updated = Set(Utc::now());
    let after = model.update(&txn).await?;
    let diff = events::service::diff(&json!({"name": before.name}), &json!({"name": after.name}));
    events::service::record(&txn, state, actor.event(Action::ModelUpdated).about(&device_ref(kind, &after)).with("diff", diff)).await?;
    txn.commit().await?;
    Ok(after)
}

/// Removes the `kind` device `id` (a recovery-code set with its codes).
pub async fn delete(state: &AppState, actor: &Actor, kind: OtpKind, view: View, id: i64) -> Result<()> {
    let device = find(state, kind, id).await?;
    authorize(state, actor, view, device.user_id, kind.view_permission(), kind.delete_permission()).await?;
    let txn = crate::db::begin_write(&state.db).await?;
    static_token::Entity::delete_many().filter(static_token::Column::DeviceId.eq(device.id)).exec(&txn).await?;
    otp_device::Entity::delete_by_id(device.id).exec(&txn).await?;
    events::service::record(&txn, state, actor.event(Action::ModelDeleted).about(&device_ref(kind, &device))).await?;
    txn.commit().await?;
    Ok(())
}

/// Every authenticator app and recovery-code set of `user`, oldest first.
pub async fn of_user(state: &AppState, user: i64) -> Result<Vec<otp_device::Model>> {
    Ok(otp_device::Entity::find()
        .filter(otp_device::Column::TenantId.eq(state.tenant.0))
        .filter(otp_device::Column::UserId.eq(user))
        .order_by_asc(otp_device::Column::Id)
        .all(&state.db)
        .await?)
}

/// The devices of any of `kinds` `user` can sign in with (confirmed ones, and for recovery codes
/// only sets with a code left), oldest first, in one query whatever the kinds.
pub async fn sign_in_devices_of_kinds(state: &AppState, user: i64, kinds: &[OtpKind]) -> Result<Vec<otp_device::Model>> {
    if kinds.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sign_in_devices_query(state, user, kinds).order_by_asc(otp_device::Column::Id).all(&state.db).await?)
}

/// The query behind [`sign_in_devices_of_kinds`], for callers that only ask whether any exists.
pub fn sign_in_devices_query(state: &AppState, user: i64, kinds: &[OtpKind]) -> sea_orm::Select<otp_device::Entity> {
    let code_left = Query::select()
        .expr(Expr::value(1))
        .from(static_token::Entity)
        .and_where(Expr::col((static_token::Entity, static_token::Column::DeviceId)).equals((otp_device::Entity, otp_device::Column::Id)))
        .to_owned();
    otp_device::Entity::find()
        .filter(otp_device::Column::TenantId.eq(state.tenant.0))
        .filter(otp_device::Column::UserId.eq(user))
        .filter(otp_device::Column::Kind.is_in(kinds.iter().map(|kind| kind.as_str())))
        .filter(otp_device::Column::Confirmed.eq(true))
        .filter(Condition::any().add(otp_device::Column::Kind.ne(OtpKind::Static.as_str())).add(Expr::exists(code_left)))
}

/// Takes the step `step` of the authenticator app `device` as used, unless a code of that step
/// or a later one was accepted already (by this or another process): whether it was taken.
pub async fn take_totp_step(db: &impl ConnectionTrait, device: &otp_device::Model, step: u64) -> Result<bool> {
    let step = i64::try_from(step).map_err(|_| Error::internal("time step out of range"))?;
    let result = otp_device::Entity::update_many()
        .col_expr(otp_device::Column::LastStep, Expr::value(step))
        .col_expr(otp_device::Column::LastUsed, Expr::value(Utc::now()))
        .filter(otp_device::Column::Id.eq(device.id))
        .filter(otp_device::Column::LastStep.lt(step))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Uses up the recovery code `code` of `user` if one of `devices` holds it: the device it
/// belonged to, or `None` when no unused code matches (or another request took it first).
pub async fn take_recovery_code(
    db: &impl ConnectionTrait,
    secret: &ServerSecret,
    user: i64,
    devices: &[otp_device::Model],
    code: &str,
) -> Result<Option<i64>> {
    let digest = recovery::digest(secret, user, code);
    let Some(token) = static_token::Entity::find()
        .filter(static_token::Column::DeviceId.is_in(devices.iter().map(|d| d.id)))
        .filter(static_token::Column::Digest.eq(digest))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    // Deleting the row is what uses the code: of two requests with the same code, one deletes it.
    let deleted = static_token::Entity::delete_by_id(token.id).exec(db).await?;
    if deleted.rows_affected != 1 {
        return Ok(None);
    }
    otp_device::Entity::update_many()
        .col_expr(otp_device::Column::LastUsed, Expr::value(Utc::now()))
        .filter(otp_device::Column::Id.eq(token.device_id))
        .exec(db)
        .await?;
    Ok(Some(token.device_id))
}

/// Notes that the device `id` (an e-mail authenticator) was just used to sign in.
pub async fn mark_used(state: &AppState, id: i64) -> Result<()> {
    otp_device::Entity::update_many()
        .col_expr(otp_device::Column::LastUsed, Expr::value(Utc::now()))
        .filter(otp_device::Column::Id.eq(id))
        .filter(otp_device::Column::TenantId.eq(state.tenant.0))
        .exec(&state.db)
        .await?;
    Ok(())
}
