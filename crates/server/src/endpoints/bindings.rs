//! Device bindings: which users and groups may use a device, bound to the device itself or to
//! its access group, and the decision made from them (authentik's `check_device_policies`):
//! bindings of the device's group decide first, then the device's own; a device without any
//! binding admits nobody.

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::ExprTrait;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, Order, QueryFilter, QuerySelect, Set};
use serde_json::{Value, json};
use uuid::Uuid;

use super::entities::{binding, connector, device};
use crate::accounts::access::{self, Actor, Guard, Scope};
use crate::accounts::entities::{group, user};
use crate::accounts::permissions::names;
use crate::db::pagination::{ListParams, Paginated, fetch_page, parse_bool};
use crate::error::{Error, FieldErrors, Result};
use crate::events::{self, Action, ModelRef};
use crate::state::AppState;
use crate::tenants::TenantId;

/// What a binding is attached to: a device, or a device access group (and so every device in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Device(Uuid),
    AccessGroup(Uuid),
}

impl Target {
    /// The id clients know the target by (authentik's `pbm_uuid`).
    pub fn id(self) -> Uuid {
        match self {
            Self::Device(id) | Self::AccessGroup(id) => id,
        }
    }

    fn of(row: &binding::Model) -> Option<Self> {
        match (row.device_id, row.access_group_id) {
            (Some(id), None) => Some(Self::Device(id)),
            (None, Some(id)) => Some(Self::AccessGroup(id)),
            _ => None,
        }
    }
}

/// Who a binding admits: one user, or the members of a group and of every group below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    User(i64),
    Group(Uuid),
}

impl Subject {
    /// Whom `row` binds.
    pub fn of(row: &binding::Model) -> Option<Self> {
        match (row.user_id, row.group_id) {
            (Some(id), None) => Some(Self::User(id)),
            (None, Some(id)) => Some(Self::Group(id)),
            _ => None,
        }
    }
}

/// Filters of the binding list, as authentik names them.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BindingFilter {
    /// The device or device access group bound to.
    pub target: Option<String>,
    pub enabled: Option<String>,
    pub order: Option<String>,
    pub timeout: Option<String>,
    /// Policies are not offered: only bindings without one exist.
    pub policy: Option<String>,
    #[serde(rename = "policy__isnull")]
    #[param(rename = "policy__isnull")]
    pub policy_isnull: Option<String>,
}

/// authentik's `DeviceUserBindingRequest` and its patched form: absent fields keep their value.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BindingRequest {
    /// Policies are not offered: leave this out or null.
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<Uuid>)]
    pub policy: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<Uuid>)]
    pub group: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<i64>)]
    pub user: Option<Option<i64>>,
    /// The device or device access group (its `pbm_uuid`).
    pub target: Option<Uuid>,
    pub negate: Option<bool>,
    pub enabled: Option<bool>,
    pub order: Option<i64>,
    pub timeout: Option<i64>,
    pub failure_result: Option<bool>,
    pub is_primary: Option<bool>,
    pub expiring: Option<bool>,
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires: Option<Option<DateTime<Utc>>>,
}

/// A binding with what it names, for its API representation.
#[derive(Debug, Clone)]
pub struct BindingView {
    pub binding: binding::Model,
    pub user: Option<user::Model>,
    pub group: Option<group::Model>,
    pub connector: Option<connector::Model>,
}

impl BindingView {
    /// The device or access group bound to.
    pub fn target(&self) -> Uuid {
        Target::of(&self.binding).map(Target::id).unwrap_or_default()
    }
}

fn binding_ref(row: &binding::Model) -> ModelRef {
    ModelRef { app: "authentik_endpoints", model_name: "deviceuserbinding", pk: json!(row.id), name: format!("Binding {}", row.id) }
}

fn shown(row: &binding::Model) -> Value {
    json!({
        "target": Target::of(row).map(Target::id),
        "user": row.user_id,
        "group": row.group_id,
        "negate": row.negate,
        "enabled": row.enabled,
        "order": row.binding_order,
        "timeout": row.timeout,
        "failure_result": row.failure_result,
        "is_primary": row.is_primary,
        "expiring": row.expiring,
        "expires": row.expires,
    })
}

async fn find(db: &impl ConnectionTrait, tenant: TenantId, id: Uuid) -> Result<binding::Model> {
    binding::Entity::find_by_id(id).filter(binding::Column::TenantId.eq(tenant.0)).one(db).await?.ok_or(Error::NotFound)
}

/// Views of `rows`, in a fixed number of queries whatever their number.
async fn views(db: &impl ConnectionTrait, tenant: TenantId, rows: Vec<binding::Model>) -> Result<Vec<BindingView>> {
    let user_ids: Vec<i64> = rows.iter().filter_map(|r| r.user_id).collect();
    let group_ids: Vec<Uuid> = rows.iter().filter_map(|r| r.group_id).collect();
    let connector_ids: Vec<Uuid> = rows.iter().filter_map(|r| r.connector_id).collect();
    let users = crate::accounts::users::find_users(db, tenant, &user_ids).await?;
    let groups = if group_ids.is_empty() {
        Vec::new()
    } else {
        group::Entity::find().filter(group::Column::TenantId.eq(tenant.0)).filter(group::Column::GroupUuid.is_in(group_ids)).all(db).await?
    };
    let connectors = super::connectors::connectors_by_ids(db, tenant, &connector_ids).await?;
    Ok(rows
        .into_iter()
        .map(|binding| BindingView {
            user: binding.user_id.and_then(|id| users.iter().find(|u| u.id == id).cloned()),
            group: binding.group_id.and_then(|id| groups.iter().find(|g| g.group_uuid == id).cloned()),
            connector: binding.connector_id.and_then(|id| connectors.iter().find(|c| c.id == id).cloned()),
            binding,
        })
        .collect())
}

fn parse_int(field: &str, value: &str) -> Result<i32> {
    value.parse().map_err(|_| Error::field(field, "A valid integer is required."))
}

/// One page of bindings; needs the view permission.
pub async fn list(state: &AppState, actor: &Actor, filter: &BindingFilter, params: &ListParams) -> Result<Paginated<BindingView>> {
    actor.require(names::VIEW_DEVICE_BINDING)?;
    let page = params.page_request(&state.config.api)?;
    let mut select = binding::Entity::find().filter(binding::Column::TenantId.eq(state.tenant.0));
    if let Some(target) = filter.target.as_deref().filter(|v| !v.is_empty()) {
        let target = Uuid::parse_str(target).map_err(|_| Error::field("target", "Must be a valid UUID."))?;
        select = select.filter(binding::Column::DeviceId.eq(target).or(binding::Column::AccessGroupId.eq(target)));
    }
    if let Some(enabled) = filter.enabled.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(binding::Column::Enabled.eq(parse_bool("enabled", enabled)?));
    }
    if let Some(order) = filter.order.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(binding::Column::BindingOrder.eq(parse_int("order", order)?));
    }
    if let Some(timeout) = filter.timeout.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(binding::Column::Timeout.eq(parse_int("timeout", timeout)?));
    }
    if let Some(policy) = filter.policy.as_deref().filter(|v| !v.is_empty()) {
        Uuid::parse_str(policy).map_err(|_| Error::field("policy", "Must be a valid UUID."))?;
        // No binding names a policy.
        select = select.filter(binding::Column::Id.is_null());
    }
    if let Some(isnull) = filter.policy_isnull.as_deref().filter(|v| !v.is_empty())
        && !parse_bool("policy__isnull", isnull)?
    {
        select = select.filter(binding::Column::Id.is_null());
    }
    let select = params.apply_ordering(
        select,
        &[("order", binding::Column::BindingOrder), ("pk", binding::Column::Id), ("target", binding::Column::DeviceId)],
        (binding::Column::BindingOrder, Order::Asc),
        binding::Column::Id,
    )?;
    let Paginated { pagination, results, autocomplete } = fetch_page(&state.db, select, page).await?;
    Ok(Paginated { pagination, results: views(&state.db, state.tenant, results).await?, autocomplete })
}

/// The binding `id`; needs the view permission.
pub async fn get(state: &AppState, actor: &Actor, id: Uuid) -> Result<BindingView> {
    actor.require(names::VIEW_DEVICE_BINDING)?;
    let row = find(&state.db, state.tenant, id).await?;
    views(&state.db, state.tenant, vec![row]).await?.pop().ok_or(Error::NotFound)
}

/// Applies `request` to `row`, checking every field; `full` (create, PUT) requires the target
/// and the order.
async fn apply(state: &AppState, row: &mut binding::ActiveModel, request: &BindingRequest, full: bool) -> Result<()> {
    let db = &state.db;
    let tenant = state.tenant;
    let mut errors = FieldErrors::new();
    if matches!(request.policy, Some(Some(_))) {
        errors.add("policy", "Policies are not offered; bind a user or a group.");
    }
    match request.target {
        None if full => errors.add("target", "This field is required."),
        None => {}
        Some(id) => {
            if super::devices::find(db, tenant, id).await.is_ok() {
                row.device_id = Set(Some(id));
                row.access_group_id = Set(None);
            } else if super::access_groups::find(db, tenant, id).await.is_ok() {
                row.device_id = Set(None);
                row.access_group_id = Set(Some(id));
            } else {
                errors.add("target", format!("Invalid pk \"{id}\" - no device or device access group has it."));
            }
        }
    }
    if let Some(choice) = request.user {
        match choice {
            Some(id) if crate::accounts::users::find_user(db, tenant, id).await?.is_none() => {
                errors.add("user", format!("Invalid pk \"{id}\" - object does not exist."));
            }
            choice => row.user_id = Set(choice),
        }
    }
    if let Some(choice) = request.group {
        match choice {
            Some(id) if crate::accounts::groups::find_group(db, tenant, id).await?.is_none() => {
                errors.add("group", format!("Invalid pk \"{id}\" - object does not exist."));
            }
            choice => row.group_id = Set(choice),
        }
    }
    match request.order {
        None if full => errors.add("order", "This field is required."),
        None => {}
        Some(order) => match i32::try_from(order) {
            Ok(order) => row.binding_order = Set(order),
            Err(_) => errors.add("order", "Give a number from -2147483648 to 2147483647."),
        },
    }
    match request.timeout {
        None => {}
        Some(timeout) => match i32::try_from(timeout).ok().filter(|t| *t >= 0) {
            Some(timeout) => row.timeout = Set(timeout),
            None => errors.add("timeout", "Give a number from 0 to 2147483647."),
        },
    }
    for (given, column) in [
        (request.negate, &mut row.negate),
        (request.enabled, &mut row.enabled),
        (request.failure_result, &mut row.failure_result),
        (request.is_primary, &mut row.is_primary),
        (request.expiring, &mut row.expiring),
    ] {
        if let Some(value) = given {
            *column = Set(value);
        }
    }
    if let Some(expires) = request.expires {
        row.expires = Set(expires);
    }
    errors.into_result()?;
    // Exactly one subject: what a binding of nobody (or of two) would mean is not obvious.
    let subjects = [row.user_id.as_ref().is_some(), row.group_id.as_ref().is_some()];
    match subjects {
        [true, true] => Err(Error::field("user", "Bind a user or a group, not both.")),
        [false, false] => Err(Error::field("user", "Bind a user or a group.")),
        _ => Ok(()),
    }
}

/// Refuses unless `actor` may admit everyone a binding of `subject` admits: a binding is part
/// of the accounts it reaches, so it may name a user, or a group whose members (and the groups
/// below it, with theirs) are all within the actor's rights. A negated binding admits everyone
/// else, so only a superuser makes one. Call it before writing (it serialises with other changes
/// to who holds what).
pub(super) async fn check_reach(
    txn: &impl ConnectionTrait,
    state: &AppState,
    actor: &Actor,
    subject: Option<Subject>,
    negate: bool,
) -> Result<()> {
    let scope = match subject {
        Some(Subject::User(id)) => Scope::user(id),
        Some(Subject::Group(id)) => Scope::group(id, &[]),
        None => return Err(Error::field("user", "Bind a user or a group.")),
    };
    let guard = Guard::begin(txn, state, actor, scope).await?;
    if negate {
        guard.only_superusers("a negated device binding admits every other account")?;
    }
    guard.may_act_on_everyone_reached()
}

/// Whom the binding being written names, and whether it is negated.
fn reach_of(row: &binding::ActiveModel) -> (Option<Subject>, bool) {
    let user = row.user_id.try_as_ref().copied().flatten();
    let group = row.group_id.try_as_ref().copied().flatten();
    let subject = match (user, group) {
        (Some(id), None) => Some(Subject::User(id)),
        (None, Some(id)) => Some(Subject::Group(id)),
        _ => None,
    };
    (subject, row.negate.try_as_ref().copied().unwrap_or(false))
}

/// Creates a binding; needs the add permission, and the rights of whom it binds.
pub async fn create(state: &AppState, actor: &Actor, request: &BindingRequest) -> Result<BindingView> {
    actor.require(names::ADD_DEVICE_BINDING)?;
    let now = Utc::now();
    let mut row = binding::ActiveModel {
        id: Set(Uuid::new_v4()),
        tenant_id: Set(state.tenant.0),
        device_id: Set(None),
        access_group_id: Set(None),
        user_id: Set(None),
        group_id: Set(None),
        connector_id: Set(None),
        negate: Set(false),
        enabled: Set(true),
        binding_order: Set(0),
        timeout: Set(30),
        failure_result: Set(false),
        is_primary: Set(false),
        expiring: Set(false),
        expires: Set(None),
        created: Set(now),
        last_updated: Set(now),
    };
    apply(state, &mut row, request, true).await?;
    let txn = crate::db::begin_write(&state.db).await?;
    let (subject, negate) = reach_of(&row);
    check_reach(&txn, state, actor, subject, negate).await?;
    let created = row.insert(&txn).await?;
    let diff = events::service::diff(&json!({}), &shown(&created));
    events::service::record(&txn, state, actor.event(Action::ModelCreated).about(&binding_ref(&created)).with("diff", diff)).await?;
    txn.commit().await?;
    views(&state.db, state.tenant, vec![created]).await?.pop().ok_or(Error::NotFound)
}

/// Changes the binding `id`; needs the change permission, and the rights of whom it bound and
/// of whom it binds.
pub async fn update(state: &AppState, actor: &Actor, id: Uuid, request: &BindingRequest, full: bool) -> Result<BindingView> {
    actor.require(names::VIEW_DEVICE_BINDING)?;
    let before = find(&state.db, state.tenant, id).await?;
    actor.require(names::CHANGE_DEVICE_BINDING)?;
    let mut row = before.clone().into_active_model();
    apply(state, &mut row, request, full).await?;
    row.last_updated = Set(Utc::now());
    let txn = crate::db::begin_write(&state.db).await?;
    let current = find(&txn, state.tenant, id).await?;
    check_reach(&txn, state, actor, Subject::of(&current), current.negate).await?;
    let (subject, negate) = reach_of(&row);
    check_reach(&txn, state, actor, subject, negate).await?;
    let after = row.update(&txn).await?;
    let diff = events::service::diff(&shown(&before), &shown(&after));
    events::service::record(&txn, state, actor.event(Action::ModelUpdated).about(&binding_ref(&after)).with("diff", diff)).await?;
    txn.commit().await?;
    views(&state.db, state.tenant, vec![after]).await?.pop().ok_or(Error::NotFound)
}

/// Deletes the binding `id`; needs the delete permission, and the rights of whom it binds.
pub async fn delete(state: &AppState, actor: &Actor, id: Uuid) -> Result<()> {
    actor.require(names::VIEW_DEVICE_BINDING)?;
    let txn = crate::db::begin_write(&state.db).await?;
    let row = find(&txn, state.tenant, id).await?;
    actor.require(names::DELETE_DEVICE_BINDING)?;
    check_reach(&txn, state, actor, Subject::of(&row), row.negate).await?;
    binding::Entity::delete_by_id(row.id).exec(&txn).await?;
    events::service::record(&txn, state, actor.event(Action::ModelDeleted).about(&binding_ref(&row))).await?;
    txn.commit().await?;
    Ok(())
}

/// Every binding of the device or access group `target`, enabled or not.
pub(super) async fn bindings_of(db: &impl ConnectionTrait, tenant: TenantId, target: Uuid) -> Result<Vec<binding::Model>> {
    Ok(binding::Entity::find()
        .filter(binding::Column::TenantId.eq(tenant.0))
        .filter(binding::Column::DeviceId.eq(target).or(binding::Column::AccessGroupId.eq(target)))
        .all(db)
        .await?)
}

/// The bindings of `targets` that take part in decisions now: enabled and not expired.
async fn live_bindings(db: &impl ConnectionTrait, tenant: TenantId, targets: &[Uuid]) -> Result<Vec<binding::Model>> {
    let now = Utc::now();
    let rows = binding::Entity::find()
        .filter(binding::Column::TenantId.eq(tenant.0))
        .filter(binding::Column::Enabled.eq(true))
        .filter(binding::Column::DeviceId.is_in(targets.iter().copied()).or(binding::Column::AccessGroupId.is_in(targets.iter().copied())))
        .all(db)
        .await?;
    Ok(rows.into_iter().filter(|row| super::devices::live(row.expiring, row.expires, now)).collect())
}

/// Splits `bindings` into those of the device's access group and the device's own.
fn by_target(bindings: &[binding::Model], device: &device::Model) -> [Vec<binding::Model>; 2] {
    let of_group =
        bindings.iter().filter(|b| b.access_group_id.is_some() && b.access_group_id == device.access_group_id).cloned().collect();
    let own = bindings.iter().filter(|b| b.device_id == Some(device.id)).cloned().collect();
    [of_group, own]
}

/// Whether one set of bindings admits someone, given whether each binding's subject matches
/// them: any binding that matches (or, negated, does not) admits; no binding admits nobody.
fn admits(bindings: &[binding::Model], matches: impl Fn(&binding::Model) -> bool) -> bool {
    bindings.iter().any(|b| matches(b) != b.negate)
}

/// Whether `user` may use `device`: an inactive account never; otherwise the bindings of the
/// device's access group, then the device's own (authentik's `check_device_policies`).
pub async fn device_admits(db: &impl ConnectionTrait, tenant: TenantId, device: &device::Model, user: &user::Model) -> Result<bool> {
    if !user.is_active {
        return Ok(false);
    }
    let targets: Vec<Uuid> = std::iter::once(device.id).chain(device.access_group_id).collect();
    let bindings = live_bindings(db, tenant, &targets).await?;
    if bindings.is_empty() {
        return Ok(false);
    }
    let groups =
        if bindings.iter().any(|b| b.group_id.is_some()) { access::groups_reaching(db, tenant, user.id).await? } else { HashSet::new() };
    let matches = |b: &binding::Model| match Subject::of(b) {
        Some(Subject::User(id)) => id == user.id,
        Some(Subject::Group(id)) => groups.contains(&id),
        None => false,
    };
    Ok(by_target(&bindings, device).iter().any(|set| admits(set, matches)))
}

/// The active accounts `device` admits (see [`device_admits`]): the users its agent may list.
/// Reads every active account's id only when a negated binding asks for everyone else.
pub async fn admitted_users(db: &impl ConnectionTrait, tenant: TenantId, device: &device::Model) -> Result<BTreeSet<i64>> {
    let targets: Vec<Uuid> = std::iter::once(device.id).chain(device.access_group_id).collect();
    let bindings = live_bindings(db, tenant, &targets).await?;
    let mut matched_by_positive = BTreeSet::new();
    let mut matched_by_negated: Vec<BTreeSet<i64>> = Vec::new();
    for binding in by_target(&bindings, device).iter().flatten() {
        let matched: BTreeSet<i64> = match Subject::of(binding) {
            Some(Subject::User(id)) => BTreeSet::from([id]),
            Some(Subject::Group(id)) => access::members_of_groups(db, tenant, &[id]).await?.into_iter().collect(),
            None => BTreeSet::new(),
        };
        if binding.negate {
            matched_by_negated.push(matched);
        } else {
            matched_by_positive.extend(matched);
        }
    }
    if matched_by_positive.is_empty() && matched_by_negated.is_empty() {
        return Ok(BTreeSet::new());
    }
    let mut active = user::Entity::find()
        .select_only()
        .column(user::Column::Id)
        .filter(user::Column::TenantId.eq(tenant.0))
        .filter(user::Column::IsActive.eq(true));
    if matched_by_negated.is_empty() {
        active = active.filter(user::Column::Id.is_in(matched_by_positive.iter().copied()));
    }
    let active: Vec<i64> = active.into_tuple().all(db).await?;
    Ok(active
        .into_iter()
        .filter(|id| matched_by_positive.contains(id) || matched_by_negated.iter().any(|matched| !matched.contains(id)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(user: Option<i64>, negate: bool) -> binding::Model {
        let now = Utc::now();
        binding::Model {
            id: Uuid::new_v4(),
            tenant_id: Uuid::nil(),
            device_id: Some(Uuid::nil()),
            access_group_id: None,
            user_id: user,
            group_id: None,
            connector_id: None,
            negate,
            enabled: true,
            binding_order: 0,
            timeout: 30,
            failure_result: false,
            is_primary: false,
            expiring: false,
            expires: None,
            created: now,
            last_updated: now,
        }
    }

    #[test]
    fn no_binding_admits_nobody() {
        assert!(!admits(&[], |_| true));
    }

    #[test]
    fn a_matching_binding_admits_and_a_negated_one_admits_everyone_else() {
        let for_one = [bound(Some(1), false)];
        assert!(admits(&for_one, |b| b.user_id == Some(1)));
        assert!(!admits(&for_one, |b| b.user_id == Some(2)));
        let all_but_one = [bound(Some(1), true)];
        assert!(!admits(&all_but_one, |b| b.user_id == Some(1)));
        assert!(admits(&all_but_one, |b| b.user_id == Some(2)));
    }
}
