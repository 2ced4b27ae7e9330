//! Groups: creating, changing, listing and deleting groups, their parents, members and
//! permissions. Every change passes the access guard before it commits.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::Utc;
use sea_orm::sea_query::ExprTrait;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, IntoActiveModel, Order, QueryFilter, Set};
use serde_json::{Value, json};
use uuid::Uuid;

use super::access::{Actor, Guard, Scope};
use super::entities::{group, group_member, group_parent, group_permission, user};
use super::permissions::{Permission, names};
use super::{group_ref, report_missing, unique_violation_to_field};
use crate::credentials::cache::Affected;
use crate::db::pagination::{ListParams, Paginated, fetch_page, ilike};
use crate::error::{Error, FieldErrors, Result};
use crate::events::{self, Action};
use crate::state::AppState;
use crate::tenants::TenantId;

/// Fails unless every group exists in the tenant.
pub(super) async fn check_groups_exist(
    db: &impl ConnectionTrait,
    tenant: TenantId,
    field: &str,
    ids: &[Uuid],
    errors: &mut FieldErrors,
) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let found: HashSet<Uuid> = group::Entity::find()
        .filter(group::Column::TenantId.eq(tenant.0))
        .filter(group::Column::GroupUuid.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|g| g.group_uuid)
        .collect();
    report_missing(field, ids, &found, errors);
    Ok(())
}

/// Groups of each user, by user id.
pub async fn groups_of_users(db: &impl ConnectionTrait, tenant: TenantId, user_ids: &[i64]) -> Result<HashMap<i64, Vec<group::Model>>> {
    let memberships = group_member::Entity::find()
        .filter(group_member::Column::TenantId.eq(tenant.0))
        .filter(group_member::Column::UserId.is_in(user_ids.iter().copied()))
        .all(db)
        .await?;
    let group_ids: BTreeSet<Uuid> = memberships.iter().map(|m| m.group_uuid).collect();
    let groups: HashMap<Uuid, group::Model> = group::Entity::find()
        .filter(group::Column::TenantId.eq(tenant.0))
        .filter(group::Column::GroupUuid.is_in(group_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|g| (g.group_uuid, g))
        .collect();
    let mut by_user: HashMap<i64, Vec<group::Model>> = HashMap::new();
    for membership in memberships {
        if let Some(group) = groups.get(&membership.group_uuid) {
            by_user.entry(membership.user_id).or_default().push(group.clone());
        }
    }
    Ok(by_user)
}

/// Everything a group can be created with.
#[derive(Debug, Clone, Default)]
pub struct NewGroup {
    pub name: String,
    pub is_superuser: bool,
    pub parents: Vec<Uuid>,
    pub users: Vec<i64>,
    pub attributes: Value,
    pub permissions: Vec<Permission>,
}

/// Changes to a group; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct GroupChanges {
    pub name: Option<String>,
    pub is_superuser: Option<bool>,
    pub parents: Option<Vec<Uuid>>,
    pub users: Option<Vec<i64>>,
    pub attributes: Option<Value>,
    pub permissions: Option<Vec<Permission>>,
}

fn group_audit_json(group: &group::Model) -> Value {
    json!({ "name": group.name, "is_superuser": group.is_superuser, "attributes": group.attributes })
}

async fn check_users_exist(db: &impl ConnectionTrait, tenant: TenantId, ids: &[i64], errors: &mut FieldErrors) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let found: HashSet<i64> = user::Entity::find()
        .filter(user::Column::TenantId.eq(tenant.0))
        .filter(user::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|u| u.id)
        .collect();
    report_missing("users", ids, &found, errors);
    Ok(())
}

/// Fails when making `group` a child of `parents` would create a cycle.
async fn check_no_cycle(
    db: &impl ConnectionTrait,
    tenant: TenantId,
    group: Uuid,
    parents: &[Uuid],
    errors: &mut FieldErrors,
) -> Result<()> {
    let mut frontier: Vec<Uuid> = parents.to_vec();
    let mut seen = HashSet::new();
    while !frontier.is_empty() {
        if frontier.contains(&group) {
            errors.add("parents", "A group cannot be its own ancestor.");
            return Ok(());
        }
        frontier.retain(|g| seen.insert(*g));
        if frontier.is_empty() {
            break;
        }
        frontier = group_parent::Entity::find()
            .filter(group_parent::Column::TenantId.eq(tenant.0))
            .filter(group_parent::Column::GroupUuid.is_in(frontier))
            .all(db)
            .await?
            .into_iter()
            .map(|p| p.parent_uuid)
            .collect();
    }
    Ok(())
}

async fn check_group_name_unique(
    db: &impl ConnectionTrait,
    tenant: TenantId,
    name: &str,
    except: Option<Uuid>,
    errors: &mut FieldErrors,
) -> Result<()> {
    let mut query =
        group::Entity::find().filter(group::Column::TenantId.eq(tenant.0)).filter(group::Column::NameKey.eq(name.to_lowercase()));
    if let Some(id) = except {
        query = query.filter(group::Column::GroupUuid.ne(id));
    }
    if query.one(db).await?.is_some() {
        errors.add("name", "A group with this name already exists.");
    }
    Ok(())
}

async fn replace_group_relations(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    group_uuid: Uuid,
    parents: Option<&[Uuid]>,
    users: Option<&[i64]>,
    permissions: Option<&[Permission]>,
) -> Result<()> {
    if let Some(parents) = parents {
        group_parent::Entity::delete_many()
            .filter(group_parent::Column::TenantId.eq(tenant.0))
            .filter(group_parent::Column::GroupUuid.eq(group_uuid))
            .exec(txn)
            .await?;
        let unique: BTreeSet<Uuid> = parents.iter().copied().collect();
        if !unique.is_empty() {
            let rows = unique.into_iter().map(|p| group_parent::ActiveModel {
                tenant_id: Set(tenant.0),
                group_uuid: Set(group_uuid),
                parent_uuid: Set(p),
            });
            group_parent::Entity::insert_many(rows).exec_without_returning(txn).await?;
        }
    }
    if let Some(users) = users {
        group_member::Entity::delete_many()
            .filter(group_member::Column::TenantId.eq(tenant.0))
            .filter(group_member::Column::GroupUuid.eq(group_uuid))
            .exec(txn)
            .await?;
        let unique: BTreeSet<i64> = users.iter().copied().collect();
        if !unique.is_empty() {
            let rows = unique.into_iter().map(|u| group_member::ActiveModel {
                tenant_id: Set(tenant.0),
                group_uuid: Set(group_uuid),
                user_id: Set(u),
            });
            group_member::Entity::insert_many(rows).exec_without_returning(txn).await?;
        }
    }
    if let Some(permissions) = permissions {
        group_permission::Entity::delete_many()
            .filter(group_permission::Column::TenantId.eq(tenant.0))
            .filter(group_permission::Column::GroupUuid.eq(group_uuid))
            .exec(txn)
            .await?;
        let unique: BTreeSet<&str> = permissions.iter().map(Permission::as_str).collect();
        if !unique.is_empty() {
            let rows = unique.into_iter().map(|p| group_permission::ActiveModel {
                tenant_id: Set(tenant.0),
                group_uuid: Set(group_uuid),
                permission: Set(p.to_owned()),
            });
            group_permission::Entity::insert_many(rows).exec_without_returning(txn).await?;
        }
    }
    Ok(())
}

/// Creates a group with its parents, members and permissions. Needs `add_group` and rights
/// covering every member's; no member and not the group may gain what the actor may not grant.
pub async fn create_group(state: &AppState, actor: &Actor, new: NewGroup) -> Result<group::Model> {
    let txn = crate::db::begin_write(&state.db).await?;
    let created = create_group_in(&txn, state, actor, new).await?;
    let reached = reached_by(&txn, state.tenant, created.group_uuid).await?;
    crate::credentials::revoke::commit_invalidating(state, txn, reached).await?;
    Ok(created)
}

/// [`create_group`] inside `txn`, for changes that create more than a group; the caller commits
/// with [`crate::credentials::revoke::commit_invalidating`], naming the new members.
pub async fn create_group_in(txn: &DatabaseTransaction, state: &AppState, actor: &Actor, new: NewGroup) -> Result<group::Model> {
    actor.require(names::ADD_GROUP)?;
    super::attributes::check(&new.attributes, &state.config.api)?;
    let tenant = state.tenant;
    let guard = Guard::begin(txn, state, actor, Scope { users: new.users.clone(), groups: Vec::new() }).await?;
    for member in &new.users {
        guard.may_act_on_user(*member)?;
    }
    let mut errors = FieldErrors::new();
    check_group_name_unique(txn, tenant, &new.name, None, &mut errors).await?;
    check_groups_exist(txn, tenant, "parents", &new.parents, &mut errors).await?;
    check_users_exist(txn, tenant, &new.users, &mut errors).await?;
    errors.into_result()?;
    let created = group::ActiveModel {
        group_uuid: Set(Uuid::new_v4()),
        tenant_id: Set(tenant.0),
        name_key: Set(new.name.to_lowercase()),
        name: Set(new.name),
        is_superuser: Set(new.is_superuser),
        attributes: Set(new.attributes),
        created: Set(Utc::now()),
    }
    .insert(txn)
    .await
    .map_err(unique_violation_to_field)?;
    replace_group_relations(txn, tenant, created.group_uuid, Some(&new.parents), Some(&new.users), Some(&new.permissions)).await?;
    guard.finish(txn, Scope::group(created.group_uuid, &[])).await?;
    let diff = events::service::diff(&json!({}), &group_audit_json(&created));
    events::service::record(txn, state, actor.event(Action::ModelCreated).about(&group_ref(&created)).with("diff", diff)).await?;
    Ok(created)
}

/// The checks a change to `group` reaches: those of its members and of the members of every group
/// below it, who hold what it confers.
async fn reached_by(db: &impl ConnectionTrait, tenant: TenantId, group: Uuid) -> Result<Affected> {
    Ok(Affected::users(super::access::members_of_groups(db, tenant, &[group]).await?))
}

/// The members of a group.
async fn members_of(db: &impl ConnectionTrait, tenant: TenantId, group: Uuid) -> Result<BTreeSet<i64>> {
    Ok(group_member::Entity::find()
        .filter(group_member::Column::TenantId.eq(tenant.0))
        .filter(group_member::Column::GroupUuid.eq(group))
        .all(db)
        .await?
        .into_iter()
        .map(|m| m.user_id)
        .collect())
}

/// The group `id`, for a holder of `view_group`.
pub async fn get_group(state: &AppState, actor: &Actor, id: Uuid) -> Result<group::Model> {
    actor.require(names::VIEW_GROUP)?;
    find_group(&state.db, state.tenant, id).await?.ok_or(Error::NotFound)
}

/// A group of the tenant.
pub async fn find_group(db: &impl ConnectionTrait, tenant: TenantId, id: Uuid) -> Result<Option<group::Model>> {
    Ok(group::Entity::find_by_id(id).filter(group::Column::TenantId.eq(tenant.0)).one(db).await?)
}

/// Applies changes to a group. Needs `change_group`, rights covering what the group confers and
/// those of every member added or removed; nobody the group reaches may gain what the actor may
/// not grant.
pub async fn update_group(state: &AppState, actor: &Actor, id: Uuid, changes: GroupChanges) -> Result<group::Model> {
    actor.require(names::CHANGE_GROUP)?;
    if let Some(attributes) = &changes.attributes {
        super::attributes::check(attributes, &state.config.api)?;
    }
    let tenant = state.tenant;
    let txn = crate::db::begin_write(&state.db).await?;
    let guard = Guard::begin(&txn, state, actor, Scope::group(id, changes.users.as_deref().unwrap_or_default())).await?;
    guard.may_act_on_group(id)?;
    let before = find_group(&txn, tenant, id).await?.ok_or(Error::NotFound)?;
    let reached_before = reached_by(&txn, tenant, id).await?;
    if let Some(users) = &changes.users {
        let current: BTreeSet<i64> = members_of(&txn, tenant, id).await?;
        let wanted: BTreeSet<i64> = users.iter().copied().collect();
        for member in current.symmetric_difference(&wanted) {
            guard.may_act_on_user(*member)?;
        }
    }
    let mut errors = FieldErrors::new();
    if let Some(name) = &changes.name {
        check_group_name_unique(&txn, tenant, name, Some(id), &mut errors).await?;
    }
    if let Some(parents) = &changes.parents {
        check_groups_exist(&txn, tenant, "parents", parents, &mut errors).await?;
        check_no_cycle(&txn, tenant, id, parents, &mut errors).await?;
    }
    if let Some(users) = &changes.users {
        check_users_exist(&txn, tenant, users, &mut errors).await?;
    }
    errors.into_result()?;
    let mut model = before.clone().into_active_model();
    if let Some(name) = changes.name {
        model.name_key = Set(name.to_lowercase());
        model.name = Set(name);
    }
    if let Some(is_superuser) = changes.is_superuser {
        model.is_superuser = Set(is_superuser);
    }
    if let Some(attributes) = changes.attributes {
        model.attributes = Set(attributes);
    }
    let after = model.update(&txn).await.map_err(unique_violation_to_field)?;
    replace_group_relations(&txn, tenant, id, changes.parents.as_deref(), changes.users.as_deref(), changes.permissions.as_deref()).await?;
    guard.finish(&txn, Scope::default()).await?;
    let diff = events::service::diff(&group_audit_json(&before), &group_audit_json(&after));
    events::service::record(&txn, state, actor.event(Action::ModelUpdated).about(&group_ref(&after)).with("diff", diff)).await?;
    let reached = reached_before.and(reached_by(&txn, tenant, id).await?);
    crate::credentials::revoke::commit_invalidating(state, txn, reached).await?;
    Ok(after)
}

/// Deletes a group. Needs `delete_group` and rights covering what the group confers and every
/// member's.
pub async fn delete_group(state: &AppState, actor: &Actor, id: Uuid) -> Result<()> {
    actor.require(names::DELETE_GROUP)?;
    let txn = crate::db::begin_write(&state.db).await?;
    let guard = Guard::begin(&txn, state, actor, Scope::group(id, &[])).await?;
    guard.may_act_on_group(id)?;
    let group = find_group(&txn, state.tenant, id).await?.ok_or(Error::NotFound)?;
    for member in members_of(&txn, state.tenant, id).await? {
        guard.may_act_on_user(member)?;
    }
    let reached = reached_by(&txn, state.tenant, id).await?;
    group::Entity::delete_by_id(id).exec(&txn).await?;
    events::service::record(&txn, state, actor.event(Action::ModelDeleted).about(&group_ref(&group))).await?;
    crate::credentials::revoke::commit_invalidating(state, txn, reached).await?;
    Ok(())
}

/// Adds or removes one member; `NotFound` when the user does not exist. Needs `change_group` and
/// rights covering the group's and the user's; the user may gain nothing the actor may not grant.
pub async fn change_membership(state: &AppState, actor: &Actor, group_id: Uuid, user_id: i64, add: bool) -> Result<()> {
    actor.require(names::CHANGE_GROUP)?;
    let tenant = state.tenant;
    let txn = crate::db::begin_write(&state.db).await?;
    let guard = Guard::begin(&txn, state, actor, Scope::group(group_id, &[user_id])).await?;
    guard.may_act_on_group(group_id)?;
    guard.may_act_on_user(user_id)?;
    let group = find_group(&txn, tenant, group_id).await?.ok_or(Error::NotFound)?;
    let user = super::users::find_user(&txn, tenant, user_id).await?.ok_or(Error::NotFound)?;
    let existing = group_member::Entity::find_by_id((group_id, user_id)).one(&txn).await?;
    match (add, existing) {
        (true, None) => {
            group_member::ActiveModel { tenant_id: Set(tenant.0), group_uuid: Set(group_id), user_id: Set(user_id) }.insert(&txn).await?;
        }
        (false, Some(_)) => {
            group_member::Entity::delete_by_id((group_id, user_id)).exec(&txn).await?;
        }
        _ => {}
    }
    guard.finish(&txn, Scope::default()).await?;
    let change = if add { "added" } else { "removed" };
    let diff = json!({ "users": { change: [user.id] } });
    events::service::record(&txn, state, actor.event(Action::ModelUpdated).about(&group_ref(&group)).with("diff", diff)).await?;
    crate::credentials::revoke::commit_invalidating(state, txn, Affected::user(user_id)).await?;
    Ok(())
}

/// Filters of the group list.
#[derive(Debug, Default, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GroupFilter {
    pub name: Option<String>,
    pub is_superuser: Option<String>,
    /// Only groups with the user of this primary key as a member.
    pub members_by_pk: Option<String>,
    /// Only groups with the user of this username as a member.
    pub members_by_username: Option<String>,
    /// Include `users_obj` (default true).
    pub include_users: Option<String>,
}

/// One page of the tenant's groups.
pub async fn list_groups(state: &AppState, actor: &Actor, filter: &GroupFilter, params: &ListParams) -> Result<Paginated<group::Model>> {
    actor.require(names::VIEW_GROUP)?;
    page_of_groups(state, filter, params, None).await
}

/// One page of the groups with a direct member among `members`, for a reader that may see only
/// those accounts (a device's agent): no permission is asked.
pub async fn list_groups_of_members(
    state: &AppState,
    filter: &GroupFilter,
    params: &ListParams,
    members: &BTreeSet<i64>,
) -> Result<Paginated<group::Model>> {
    page_of_groups(state, filter, params, Some(members)).await
}

async fn page_of_groups(
    state: &AppState,
    filter: &GroupFilter,
    params: &ListParams,
    among_members: Option<&BTreeSet<i64>>,
) -> Result<Paginated<group::Model>> {
    let tenant = state.tenant;
    let page = params.page_request(&state.config.api)?;
    let mut select = group::Entity::find().filter(group::Column::TenantId.eq(tenant.0));
    if let Some(name) = filter.name.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(group::Column::Name.eq(name));
    }
    if let Some(value) = filter.is_superuser.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(group::Column::IsSuperuser.eq(crate::db::pagination::parse_bool("is_superuser", value)?));
    }
    let mut member_ids: Option<Vec<i64>> = None;
    if let Some(pk) = filter.members_by_pk.as_deref().filter(|v| !v.is_empty()) {
        member_ids = Some(vec![pk.parse().map_err(|_| Error::field("members_by_pk", "A valid integer is required."))?]);
    }
    if let Some(username) = filter.members_by_username.as_deref().filter(|v| !v.is_empty()) {
        let found = user::Entity::find()
            .filter(user::Column::TenantId.eq(tenant.0))
            .filter(user::Column::UsernameKey.eq(gatehouse_types::identifier_key(username)))
            .one(&state.db)
            .await?;
        member_ids.get_or_insert_with(Vec::new).extend(found.map(|u| u.id).into_iter().chain(std::iter::once(-1)));
    }
    // Groups with a direct member among the accounts a limited reader may see, and among those
    // the filters name (so that it learns nothing of the others' memberships).
    let members: Option<Vec<i64>> = match (among_members, member_ids) {
        (None, named) => named,
        (Some(among), None) => Some(among.iter().copied().collect()),
        (Some(among), Some(named)) => Some(named.into_iter().filter(|id| among.contains(id)).collect()),
    };
    if let Some(ids) = members {
        let groups: Vec<Uuid> = group_member::Entity::find()
            .filter(group_member::Column::TenantId.eq(tenant.0))
            .filter(group_member::Column::UserId.is_in(ids))
            .all(&state.db)
            .await?
            .into_iter()
            .map(|m| m.group_uuid)
            .collect();
        select = select.filter(group::Column::GroupUuid.is_in(groups));
    }
    if let Some(pattern) = params.search_pattern() {
        select = select.filter(ilike(group::Column::Name, &pattern));
    }
    let select = params.apply_ordering(
        select,
        &[("name", group::Column::Name), ("is_superuser", group::Column::IsSuperuser), ("created", group::Column::Created)],
        (group::Column::Name, Order::Asc),
        group::Column::GroupUuid,
    )?;
    fetch_page(&state.db, select, page).await
}

/// Parents, children, members and permissions of groups, for their API representation.
#[derive(Debug, Default)]
pub struct GroupRelations {
    pub parents: HashMap<Uuid, Vec<group::Model>>,
    pub children: HashMap<Uuid, Vec<group::Model>>,
    pub members: HashMap<Uuid, Vec<user::Model>>,
    pub permissions: HashMap<Uuid, Vec<String>>,
}

/// Loads the relations of `groups` in a fixed number of queries.
pub async fn group_relations(db: &impl ConnectionTrait, tenant: TenantId, groups: &[Uuid], with_members: bool) -> Result<GroupRelations> {
    let mut relations = GroupRelations::default();
    let links = group_parent::Entity::find()
        .filter(group_parent::Column::TenantId.eq(tenant.0))
        .filter(
            group_parent::Column::GroupUuid
                .is_in(groups.iter().copied())
                .or(group_parent::Column::ParentUuid.is_in(groups.iter().copied())),
        )
        .all(db)
        .await?;
    let related_ids: BTreeSet<Uuid> = links.iter().flat_map(|l| [l.group_uuid, l.parent_uuid]).collect();
    let related: HashMap<Uuid, group::Model> = group::Entity::find()
        .filter(group::Column::TenantId.eq(tenant.0))
        .filter(group::Column::GroupUuid.is_in(related_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|g| (g.group_uuid, g))
        .collect();
    for link in links {
        if let (Some(parent), Some(child)) = (related.get(&link.parent_uuid), related.get(&link.group_uuid)) {
            relations.parents.entry(link.group_uuid).or_default().push(parent.clone());
            relations.children.entry(link.parent_uuid).or_default().push(child.clone());
        }
    }
    let memberships = group_member::Entity::find()
        .filter(group_member::Column::TenantId.eq(tenant.0))
        .filter(group_member::Column::GroupUuid.is_in(groups.iter().copied()))
        .all(db)
        .await?;
    let user_ids: BTreeSet<i64> = memberships.iter().map(|m| m.user_id).collect();
    let users: HashMap<i64, user::Model> = if with_members || !user_ids.is_empty() {
        user::Entity::find()
            .filter(user::Column::TenantId.eq(tenant.0))
            .filter(user::Column::Id.is_in(user_ids))
            .all(db)
            .await?
            .into_iter()
            .map(|u| (u.id, u))
            .collect()
    } else {
        HashMap::new()
    };
    for membership in memberships {
        if let Some(user) = users.get(&membership.user_id) {
            relations.members.entry(membership.group_uuid).or_default().push(user.clone());
        }
    }
    for row in group_permission::Entity::find()
        .filter(group_permission::Column::TenantId.eq(tenant.0))
        .filter(group_permission::Column::GroupUuid.is_in(groups.iter().copied()))
        .all(db)
        .await?
    {
        relations.permissions.entry(row.group_uuid).or_default().push(row.permission);
    }
    Ok(relations)
}
