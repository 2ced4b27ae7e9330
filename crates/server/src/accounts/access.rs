//! Access control: what an account may do, and the one guard that every change to who holds
//! what passes through.
//!
//! The rule, enforced here and nowhere else: a caller who is not a superuser
//! - can never cause any account or group to gain a right the caller does not hold, nor any
//!   superuser-equivalent permission at all (superuser itself is granted only by superusers);
//! - can never act on an account or group that holds rights the caller lacks: read or change its
//!   secrets, credentials, sessions, keys or memberships.
//!
//! Rights are computed by one function, [`account_rights`], which the request path uses too
//! (through [`access_of`]), so the check and the grant cannot disagree. The guard compares the
//! rights of every account and group a change can reach before and after the change, inside the
//! change's transaction: whatever road a right travels (own permissions, a group, an ancestor of
//! a group, a new parent, a flag, reactivation), the comparison sees it arrive.

use chrono::{DateTime, Utc};
use std::collections::{BTreeSet, HashMap, HashSet};

use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

use super::entities::{group, group_member, group_parent, group_permission, user, user_permission};
use super::permissions::names;
use crate::error::{Error, Result};
use crate::events::client::ClientInfo;
use crate::events::{Action, EventRecord};
use crate::state::AppState;
use crate::tenants::TenantId;

/// Permissions that let their holder take over any account (editing the flows people sign in
/// through, or the webhook mappings that decide where sign-in codes go), so only superusers may
/// grant them.
pub const SUPERUSER_EQUIVALENT: &[&str] = &[
    names::ADD_FLOW,
    names::CHANGE_FLOW,
    names::DELETE_FLOW,
    names::ADD_STAGE,
    names::CHANGE_STAGE,
    names::DELETE_STAGE,
    names::ADD_FLOW_STAGE_BINDING,
    names::CHANGE_FLOW_STAGE_BINDING,
    names::DELETE_FLOW_STAGE_BINDING,
    names::ADD_WEBHOOK_MAPPING,
    names::CHANGE_WEBHOOK_MAPPING,
    names::DELETE_WEBHOOK_MAPPING,
];

/// Whether `permission` is one of the [`SUPERUSER_EQUIVALENT`] permissions.
pub fn is_superuser_equivalent(permission: &str) -> bool {
    SUPERUSER_EQUIVALENT.contains(&permission)
}

/// What an account (or the members of a group) may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rights {
    /// Superuser, directly or through any group or ancestor group: holds every right.
    pub superuser: bool,
    /// May hold API keys: staff, and service accounts.
    pub staff: bool,
    /// Own permissions and those of every group and ancestor group.
    pub permissions: BTreeSet<String>,
}

impl Rights {
    /// Every right.
    pub fn all() -> Self {
        Self { superuser: true, staff: true, permissions: BTreeSet::new() }
    }

    /// Whether these rights include `permission` (superusers hold all).
    pub fn has(&self, permission: &str) -> bool {
        self.superuser || self.permissions.contains(permission)
    }

    /// Fails with 403 unless these rights include `permission`.
    pub fn require(&self, permission: &str) -> Result<()> {
        if self.has(permission) { Ok(()) } else { Err(Error::PermissionDenied) }
    }

    /// Whether these rights include all of `other`.
    pub fn covers(&self, other: &Rights) -> bool {
        self.superuser || (!other.superuser && (self.staff || !other.staff) && other.permissions.is_subset(&self.permissions))
    }

    /// Whether a holder of these rights may hand out `gained`: only what it holds itself, and
    /// nothing superuser-equivalent unless it is a superuser.
    pub fn may_grant(&self, gained: &Rights) -> bool {
        self.superuser || (self.covers(gained) && !gained.permissions.iter().any(|p| is_superuser_equivalent(p)))
    }

    /// What `after` holds that `self` does not.
    pub fn gained_by(&self, after: &Rights) -> Rights {
        Rights {
            superuser: after.superuser && !self.superuser,
            staff: after.staff && !self.staff && !self.superuser,
            permissions: if self.superuser { BTreeSet::new() } else { after.permissions.difference(&self.permissions).cloned().collect() },
        }
    }

    /// Whether there is no right at all.
    pub fn is_empty(&self) -> bool {
        !self.superuser && !self.staff && self.permissions.is_empty()
    }

    /// The rights as JSON, for the audit trail.
    pub fn describe(&self) -> Value {
        json!({ "superuser": self.superuser, "staff": self.staff, "permissions": self.permissions })
    }

    fn absorb(&mut self, other: &Rights) {
        self.superuser |= other.superuser;
        self.staff |= other.staff;
        self.permissions.extend(other.permissions.iter().cloned());
    }
}

/// An account's rights and whether it can use them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountRights {
    pub active: bool,
    /// What the account holds, active or not: what a caller must cover to act on it.
    pub held: Rights,
    /// The grants of superuser level the account carries itself (its flag, superuser-equivalent
    /// permissions of its own, memberships of groups that confer superuser level). Only
    /// superusers add to them, even where the account already holds the same right another way:
    /// a second grant would outlive the first.
    pub grants: BTreeSet<String>,
}

impl AccountRights {
    /// What the account can use now: nothing while it is inactive.
    pub fn effective(&self) -> Rights {
        if self.active { self.held.clone() } else { Rights::default() }
    }
}

/// Who is making a change: the user, their rights as the request saw them, and their client for
/// the audit trail. The command line and the server itself act with every right.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user: Option<user::Model>,
    pub client: Option<ClientInfo>,
    pub rights: Rights,
    /// When the user last proved who they are: the start of the session the request came with
    /// (every sign-in starts a new one). `None` for API keys and the system.
    pub signed_in_at: Option<DateTime<Utc>>,
}

impl Actor {
    /// A change made from the command line or by the server itself.
    pub fn system() -> Self {
        Self { user: None, client: None, rights: Rights::all(), signed_in_at: None }
    }

    /// A change made by `user`, who holds `rights`, from `client`, in a session that started at
    /// `signed_in_at` (`None` with an API key).
    pub fn user(user: user::Model, rights: Rights, client: ClientInfo, signed_in_at: Option<DateTime<Utc>>) -> Self {
        Self { user: Some(user), client: Some(client), rights, signed_in_at }
    }

    /// Whether the actor signed in within `window` of now.
    pub fn signed_in_within(&self, window: chrono::TimeDelta) -> bool {
        self.signed_in_at.is_some_and(|at| Utc::now() - at <= window)
    }

    /// Fails with 403 unless the actor holds `permission`.
    pub fn require(&self, permission: &str) -> Result<()> {
        self.rights.require(permission)
    }

    /// Whether the actor is `user_id`.
    pub fn is(&self, user_id: i64) -> bool {
        self.user.as_ref().is_some_and(|u| u.id == user_id)
    }

    /// An event of `action` by this actor.
    pub fn event(&self, action: Action) -> EventRecord {
        let mut record = EventRecord::new(action);
        if let Some(user) = &self.user {
            record = record.by(user);
        }
        if let Some(client) = &self.client {
            record = record.from_client(client);
        }
        record
    }
}

/// Whether `rights` reach superuser level: superuser itself or a superuser-equivalent permission.
fn superuser_level(rights: &Rights) -> bool {
    rights.superuser || rights.permissions.iter().any(|p| is_superuser_equivalent(p))
}

/// Groups and all their ancestors, as read in one walk up the hierarchy.
struct GroupGraph {
    /// Each group's own flag and permissions.
    own: HashMap<Uuid, Rights>,
    parents: HashMap<Uuid, Vec<Uuid>>,
    /// The rows read, so callers that also show groups need not read them again.
    rows: HashMap<Uuid, group::Model>,
}

impl GroupGraph {
    /// Reads `groups` and every ancestor, level by level.
    async fn load(db: &impl ConnectionTrait, tenant: TenantId, groups: &[Uuid]) -> Result<Self> {
        let mut graph = Self { own: HashMap::new(), parents: HashMap::new(), rows: HashMap::new() };
        let mut frontier: Vec<Uuid> = groups.to_vec();
        while !frontier.is_empty() {
            frontier.retain(|g| !graph.own.contains_key(g));
            frontier.sort_unstable();
            frontier.dedup();
            if frontier.is_empty() {
                break;
            }
            let found = group::Entity::find()
                .filter(group::Column::TenantId.eq(tenant.0))
                .filter(group::Column::GroupUuid.is_in(frontier.clone()))
                .all(db)
                .await?;
            for g in &found {
                graph.own.insert(g.group_uuid, Rights { superuser: g.is_superuser, ..Rights::default() });
                graph.rows.insert(g.group_uuid, g.clone());
            }
            let ids: Vec<Uuid> = found.iter().map(|g| g.group_uuid).collect();
            for row in group_permission::Entity::find()
                .filter(group_permission::Column::TenantId.eq(tenant.0))
                .filter(group_permission::Column::GroupUuid.is_in(ids.clone()))
                .all(db)
                .await?
            {
                if let Some(rights) = graph.own.get_mut(&row.group_uuid) {
                    rights.permissions.insert(row.permission);
                }
            }
            frontier = Vec::new();
            for link in group_parent::Entity::find()
                .filter(group_parent::Column::TenantId.eq(tenant.0))
                .filter(group_parent::Column::GroupUuid.is_in(ids))
                .all(db)
                .await?
            {
                graph.parents.entry(link.group_uuid).or_default().push(link.parent_uuid);
                frontier.push(link.parent_uuid);
            }
        }
        Ok(graph)
    }

    /// What membership of `group` confers; `None` for a group that does not exist.
    fn conferred(&self, group: Uuid) -> Option<Rights> {
        self.own.get(&group)?;
        let mut rights = Rights::default();
        let mut seen = HashSet::new();
        let mut stack = vec![group];
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            if let Some(own) = self.own.get(&id) {
                rights.absorb(own);
            }
            stack.extend(self.parents.get(&id).into_iter().flatten().copied());
        }
        Some(rights)
    }

    /// The grants of superuser level `group` carries itself: its flag, its superuser-equivalent
    /// permissions, and its links to parents that confer superuser level.
    fn grants(&self, group: Uuid) -> BTreeSet<String> {
        let mut grants = BTreeSet::new();
        if let Some(own) = self.own.get(&group) {
            if own.superuser {
                grants.insert("superuser".to_owned());
            }
            grants.extend(own.permissions.iter().filter(|p| is_superuser_equivalent(p)).map(|p| format!("permission:{p}")));
        }
        for parent in self.parents.get(&group).into_iter().flatten() {
            if self.conferred(*parent).is_some_and(|r| superuser_level(&r)) {
                grants.insert(format!("parent:{parent}"));
            }
        }
        grants
    }
}

/// What a group confers, and the superuser-level grants it carries itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupRights {
    pub confers: Rights,
    pub grants: BTreeSet<String>,
}

/// The rights each of `groups` confers on its members: its own flag and permissions and those
/// of every ancestor. Groups not in the tenant are left out.
pub async fn group_rights(db: &impl ConnectionTrait, tenant: TenantId, groups: &[Uuid]) -> Result<HashMap<Uuid, GroupRights>> {
    let graph = GroupGraph::load(db, tenant, groups).await?;
    Ok(groups.iter().filter_map(|g| Some((*g, GroupRights { confers: graph.conferred(*g)?, grants: graph.grants(*g) }))).collect())
}

/// The rights of each of `users` (users not in the tenant are left out): own flags and
/// permissions, and what every group they belong to confers.
pub async fn account_rights(db: &impl ConnectionTrait, tenant: TenantId, users: &[i64]) -> Result<HashMap<i64, AccountRights>> {
    let found = user::Entity::find()
        .filter(user::Column::TenantId.eq(tenant.0))
        .filter(user::Column::Id.is_in(users.iter().copied()))
        .all(db)
        .await?;
    Ok(rights_of_users(db, tenant, &found).await?.0)
}

/// What an account's own flags give it: superuser, and staff for staff, superusers (who may hold
/// API keys like staff) and service accounts.
fn flags_of(user: &user::Model) -> Rights {
    Rights {
        superuser: user.is_superuser,
        staff: user.is_staff || user.is_superuser || user.user_type.is_service_account(),
        ..Rights::default()
    }
}

/// The rights of `users`, and the groups each belongs to directly.
async fn rights_of_users(
    db: &impl ConnectionTrait,
    tenant: TenantId,
    users: &[user::Model],
) -> Result<(HashMap<i64, AccountRights>, HashMap<i64, Vec<group::Model>>)> {
    let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let mut result: HashMap<i64, AccountRights> = users
        .iter()
        .map(|u| {
            let held = flags_of(u);
            let grants = if u.is_superuser { BTreeSet::from(["superuser".to_owned()]) } else { BTreeSet::new() };
            (u.id, AccountRights { active: u.is_active, held, grants })
        })
        .collect();
    for row in user_permission::Entity::find()
        .filter(user_permission::Column::TenantId.eq(tenant.0))
        .filter(user_permission::Column::UserId.is_in(ids.clone()))
        .all(db)
        .await?
    {
        if let Some(rights) = result.get_mut(&row.user_id) {
            if is_superuser_equivalent(&row.permission) {
                rights.grants.insert(format!("permission:{}", row.permission));
            }
            rights.held.permissions.insert(row.permission);
        }
    }
    let memberships = group_member::Entity::find()
        .filter(group_member::Column::TenantId.eq(tenant.0))
        .filter(group_member::Column::UserId.is_in(ids))
        .all(db)
        .await?;
    let group_ids: Vec<Uuid> = memberships.iter().map(|m| m.group_uuid).collect::<BTreeSet<_>>().into_iter().collect();
    let graph = GroupGraph::load(db, tenant, &group_ids).await?;
    let conferred: HashMap<Uuid, Rights> = group_ids.iter().filter_map(|g| Some((*g, graph.conferred(*g)?))).collect();
    let mut groups: HashMap<i64, Vec<group::Model>> = HashMap::new();
    for membership in memberships {
        if let (Some(rights), Some(from_group)) = (result.get_mut(&membership.user_id), conferred.get(&membership.group_uuid)) {
            rights.held.absorb(from_group);
            if superuser_level(from_group) {
                rights.grants.insert(format!("member:{}", membership.group_uuid));
            }
        }
        if let Some(row) = graph.rows.get(&membership.group_uuid) {
            groups.entry(membership.user_id).or_default().push(row.clone());
        }
    }
    for rights in result.values_mut() {
        rights.held.staff |= rights.held.superuser;
    }
    Ok((result, groups))
}

/// Every right `user` holds and every group it belongs to, in one statement: its own permissions,
/// then each group it reaches (its groups and, walking up, their parents) with that group's
/// permissions, `direct` telling its own groups from the ones above them. The walk keeps each
/// (group, direct) pair once, so it ends even should a cycle slip in.
const ACCESS_OF: &str = "\
WITH RECURSIVE reach(group_uuid, direct) AS (
    SELECT group_uuid, 1 FROM group_members WHERE tenant_id = $1 AND user_id = $2
    UNION
    SELECT p.parent_uuid, 0 FROM group_parents p JOIN reach r ON p.group_uuid = r.group_uuid WHERE p.tenant_id = $1
)
SELECT 'user' AS kind, NULL AS group_uuid, NULL AS tenant_id, NULL AS name, NULL AS name_key, NULL AS is_superuser,
       NULL AS attributes, NULL AS created, 0 AS direct, up.permission AS permission
  FROM user_permissions up WHERE up.tenant_id = $1 AND up.user_id = $2
UNION ALL
SELECT 'group', g.group_uuid, g.tenant_id, g.name, g.name_key, g.is_superuser, g.attributes, g.created, r.direct, gp.permission
  FROM reach r
  JOIN groups g ON g.group_uuid = r.group_uuid AND g.tenant_id = $1
  LEFT JOIN group_permissions gp ON gp.group_uuid = r.group_uuid AND gp.tenant_id = $1";

/// What a request needs to know about its (active) caller: its rights and its groups (those it
/// is a member of, by name), read in one statement.
pub async fn access_of(db: &impl ConnectionTrait, user: &user::Model) -> Result<(Rights, Vec<group::Model>)> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => ACCESS_OF.to_owned(),
        _ => ACCESS_OF.replace('$', "?"),
    };
    let statement = Statement::from_sql_and_values(backend, sql, [user.tenant_id.into(), user.id.into()]);
    let mut held = flags_of(user);
    let mut groups: HashMap<Uuid, group::Model> = HashMap::new();
    for row in db.query_all_raw(statement).await? {
        if row.try_get::<String>("", "kind")? == "group" {
            let group = group::Model::from_query_result(&row, "")?;
            held.superuser |= group.is_superuser;
            if row.try_get::<i32>("", "direct")? == 1 {
                groups.entry(group.group_uuid).or_insert(group);
            }
        }
        if let Some(permission) = row.try_get::<Option<String>>("", "permission")? {
            held.permissions.insert(permission);
        }
    }
    // Superuser through a group: staff too, as in `flags_of`.
    held.staff |= held.superuser;
    let mut groups: Vec<group::Model> = groups.into_values().collect();
    groups.sort_by(|a, b| a.name_key.cmp(&b.name_key).then(a.group_uuid.cmp(&b.group_uuid)));
    Ok((held, groups))
}

/// The accounts and groups a change can reach: these users, these groups, every descendant of
/// these groups, and every member of any of them.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub users: Vec<i64>,
    pub groups: Vec<Uuid>,
}

impl Scope {
    /// A change to one user.
    pub fn user(id: i64) -> Self {
        Self { users: vec![id], groups: Vec::new() }
    }

    /// A change to one group (and so to its descendants and their members), plus `users`.
    pub fn group(id: Uuid, users: &[i64]) -> Self {
        Self { users: users.to_vec(), groups: vec![id] }
    }
}

/// The members of `groups` and of every group below them: everyone a binding of those groups
/// reaches.
pub async fn members_of_groups(db: &impl ConnectionTrait, tenant: TenantId, groups: &[Uuid]) -> Result<Vec<i64>> {
    Ok(expand(db, tenant, &Scope { users: Vec::new(), groups: groups.to_vec() }).await?.1)
}

/// The groups `user_id` belongs to, directly or through a group below them: the groups a
/// binding of a group counts the user in.
pub async fn groups_reaching(db: &impl ConnectionTrait, tenant: TenantId, user_id: i64) -> Result<HashSet<Uuid>> {
    let direct: Vec<Uuid> = group_member::Entity::find()
        .filter(group_member::Column::TenantId.eq(tenant.0))
        .filter(group_member::Column::UserId.eq(user_id))
        .all(db)
        .await?
        .into_iter()
        .map(|m| m.group_uuid)
        .collect();
    let graph = GroupGraph::load(db, tenant, &direct).await?;
    Ok(graph.rows.into_keys().collect())
}

/// Expands a scope to (groups with their descendants, users with the members of those groups).
async fn expand(db: &impl ConnectionTrait, tenant: TenantId, scope: &Scope) -> Result<(Vec<Uuid>, Vec<i64>)> {
    let mut groups: BTreeSet<Uuid> = BTreeSet::new();
    let mut frontier: Vec<Uuid> = scope.groups.clone();
    while !frontier.is_empty() {
        frontier.retain(|g| groups.insert(*g));
        if frontier.is_empty() {
            break;
        }
        frontier = group_parent::Entity::find()
            .filter(group_parent::Column::TenantId.eq(tenant.0))
            .filter(group_parent::Column::ParentUuid.is_in(frontier))
            .all(db)
            .await?
            .into_iter()
            .map(|link| link.group_uuid)
            .collect();
    }
    let mut users: BTreeSet<i64> = scope.users.iter().copied().collect();
    if !groups.is_empty() {
        users.extend(
            group_member::Entity::find()
                .filter(group_member::Column::TenantId.eq(tenant.0))
                .filter(group_member::Column::GroupUuid.is_in(groups.iter().copied()))
                .all(db)
                .await?
                .into_iter()
                .map(|m| m.user_id),
        );
    }
    Ok((groups.into_iter().collect(), users.into_iter().collect()))
}

/// The guard of one change: opened in the change's transaction before anything is written,
/// asked about the accounts and groups the change acts on, and finished after the writes; an
/// error from any of them means the transaction must be dropped (rolled back).
pub struct Guard {
    state: AppState,
    actor: Actor,
    /// `None` when the actor is a superuser or the system: nothing to check.
    caller: Option<Rights>,
    scope: Scope,
    users_before: HashMap<i64, AccountRights>,
    groups_before: HashMap<Uuid, GroupRights>,
}

impl Guard {
    /// Serialises the tenant's changes to who holds what, then reads the caller's rights and
    /// those of everything `scope` reaches, inside `txn`. Call it before reading what the change
    /// starts from, so no concurrent change slips between the reading and the writing.
    pub async fn begin(txn: &impl ConnectionTrait, state: &AppState, actor: &Actor, scope: Scope) -> Result<Self> {
        let tenant = state.tenant;
        crate::db::lock_for_update(txn, "access", tenant.0).await?;
        let caller = current_rights(txn, state, actor).await?.filter(|rights| !rights.superuser);
        let mut guard =
            Self { state: state.clone(), actor: actor.clone(), caller, scope, users_before: HashMap::new(), groups_before: HashMap::new() };
        if guard.caller.is_some() {
            let (groups, users) = expand(txn, tenant, &guard.scope).await?;
            guard.users_before = account_rights(txn, tenant, &users).await?;
            guard.groups_before = group_rights(txn, tenant, &groups).await?;
        }
        Ok(guard)
    }

    /// Refuses unless the caller holds every right `user_id` holds (active or not): needed to
    /// change its credentials, keys, sessions, memberships or anything else about it.
    pub fn may_act_on_user(&self, user_id: i64) -> Result<()> {
        match (&self.caller, self.users_before.get(&user_id)) {
            (None, _) | (Some(_), None) => Ok(()),
            (Some(caller), Some(target)) if caller.covers(&target.held) => Ok(()),
            (Some(_), Some(_)) => Err(self.refuse("the account holds rights the caller lacks", json!({ "user": user_id }))),
        }
    }

    /// Refuses unless the caller holds every right of every account and group the guard's scope
    /// reaches (a group, the groups below it and all their members): for changes that reach
    /// each of them, such as admitting a group's members to a device.
    pub fn may_act_on_everyone_reached(&self) -> Result<()> {
        let mut users: Vec<i64> = self.users_before.keys().copied().collect();
        users.sort_unstable();
        for user in users {
            self.may_act_on_user(user)?;
        }
        let mut groups: Vec<Uuid> = self.groups_before.keys().copied().collect();
        groups.sort_unstable();
        for group in groups {
            self.may_act_on_group(group)?;
        }
        Ok(())
    }

    /// Refuses, for `reason`, unless the caller is a superuser (or the system) as the guard read
    /// it: for changes that reach accounts nobody can list in advance.
    pub fn only_superusers(&self, reason: &str) -> Result<()> {
        match self.caller {
            None => Ok(()),
            Some(_) => Err(self.refuse(reason, json!({}))),
        }
    }

    /// Refuses unless the caller holds every right membership of `group_id` confers.
    pub fn may_act_on_group(&self, group_id: Uuid) -> Result<()> {
        match (&self.caller, self.groups_before.get(&group_id)) {
            (None, _) | (Some(_), None) => Ok(()),
            (Some(caller), Some(target)) if caller.covers(&target.confers) => Ok(()),
            (Some(_), Some(_)) => Err(self.refuse("the group confers rights the caller lacks", json!({ "group": group_id }))),
        }
    }

    /// Recomputes the rights of everything the change reached, before and after, and refuses
    /// when any account or group gained a right the caller may not grant. `also` names accounts
    /// and groups the change created or joined to the scope.
    pub async fn finish(self, txn: &impl ConnectionTrait, also: Scope) -> Result<()> {
        let Some(caller) = &self.caller else { return Ok(()) };
        let mut scope = self.scope.clone();
        scope.users.extend(also.users);
        scope.groups.extend(also.groups);
        let tenant = self.state.tenant;
        let (groups, users) = expand(txn, tenant, &scope).await?;
        let nothing = AccountRights::default();
        for (id, after) in account_rights(txn, tenant, &users).await? {
            // Accounts the scope did not reach before count as holding nothing before.
            let before = self.users_before.get(&id).unwrap_or(&nothing);
            // What the account holds counts even while it is inactive (a later re-activation
            // would hand it over), and so does what it can use (re-activation itself).
            let gains = [before.held.gained_by(&after.held), before.effective().gained_by(&after.effective())];
            self.judge(caller, json!({ "user": id }), &gains, &before.grants, &after.grants)?;
        }
        let nothing = GroupRights::default();
        for (id, after) in group_rights(txn, tenant, &groups).await? {
            let before = self.groups_before.get(&id).unwrap_or(&nothing);
            let gains = [before.confers.gained_by(&after.confers)];
            self.judge(caller, json!({ "group": id }), &gains, &before.grants, &after.grants)?;
        }
        Ok(())
    }

    /// Refuses a change that gave `who` (an account or a group) rights the caller may not grant
    /// or any new superuser-level grant.
    fn judge(
        &self,
        caller: &Rights,
        who: Value,
        gains: &[Rights],
        grants_before: &BTreeSet<String>,
        grants_after: &BTreeSet<String>,
    ) -> Result<()> {
        if let Some(gained) = gains.iter().find(|gained| !gained.is_empty() && !caller.may_grant(gained)) {
            return Err(
                self.refuse("the change would grant rights the caller may not grant", json!({ "to": who, "gained": gained.describe() }))
            );
        }
        let new_grants: Vec<&String> = grants_after.difference(grants_before).collect();
        if !new_grants.is_empty() {
            return Err(self.refuse("the change would add a superuser-level grant", json!({ "to": who, "grants": new_grants })));
        }
        Ok(())
    }

    /// Records why a change was refused as a `suspicious_request` event (the response says only
    /// 403) and gives the error to return. The event is written on its own connection, outside
    /// the refused change's transaction, which is rolled back.
    fn refuse(&self, reason: &str, details: Value) -> Error {
        tracing::info!(reason, %details, "refused by the access rule");
        let event = self.actor.event(Action::SuspiciousRequest).with("reason", json!(reason)).with("refused", details);
        let state = self.state.clone();
        tokio::spawn(async move {
            if let Err(error) = crate::events::service::record(&state.db, &state, event).await {
                tracing::warn!(%error, "could not record a refused change");
            }
        });
        Error::PermissionDenied
    }
}

/// The rights `actor` can use as the transaction on `db` sees them, rather than as the request's
/// cached check saw them; `None` for the system, which holds every right.
async fn current_rights(db: &impl ConnectionTrait, state: &AppState, actor: &Actor) -> Result<Option<Rights>> {
    match &actor.user {
        None => Ok(None),
        Some(user) => {
            Ok(Some(account_rights(db, state.tenant, &[user.id]).await?.remove(&user.id).map(|r| r.effective()).unwrap_or_default()))
        }
    }
}

/// Whether `actor` is a superuser as the transaction on `db` sees it (the system is).
pub async fn is_superuser_now(db: &impl ConnectionTrait, state: &AppState, actor: &Actor) -> Result<bool> {
    Ok(current_rights(db, state, actor).await?.is_none_or(|rights| rights.superuser))
}

/// Refuses unless `actor` may act on the account `user_id` (its keys, sessions, credentials):
/// for changes that affect nobody's rights, only whom they touch.
pub async fn may_act_on(db: &impl ConnectionTrait, state: &AppState, actor: &Actor, user_id: i64) -> Result<()> {
    if actor.is(user_id) {
        return Ok(());
    }
    Guard::begin(db, state, actor, Scope::user(user_id)).await?.may_act_on_user(user_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rights(superuser: bool, staff: bool, permissions: &[&str]) -> Rights {
        Rights { superuser, staff, permissions: permissions.iter().map(|p| p.to_string()).collect() }
    }

    #[test]
    fn superusers_cover_everything_and_others_only_subsets() {
        let su = rights(true, false, &[]);
        let editor = rights(false, false, &["a.b", "a.c"]);
        assert!(su.covers(&rights(true, true, &["x.y"])));
        assert!(editor.covers(&rights(false, false, &["a.b"])));
        assert!(!editor.covers(&rights(false, false, &["a.d"])));
        assert!(!editor.covers(&rights(true, false, &[])));
        assert!(!editor.covers(&rights(false, true, &[])));
    }

    #[test]
    fn superuser_equivalent_permissions_are_granted_only_by_superusers() {
        let holder = rights(false, false, &[names::CHANGE_FLOW]);
        let gained = rights(false, false, &[names::CHANGE_FLOW]);
        assert!(holder.covers(&gained));
        assert!(!holder.may_grant(&gained));
        assert!(rights(true, false, &[]).may_grant(&gained));
    }

    #[test]
    fn gains_are_what_after_holds_beyond_before() {
        let before = rights(false, false, &["a.b"]);
        let after = rights(true, true, &["a.b", "a.c"]);
        assert_eq!(before.gained_by(&after), rights(true, true, &["a.c"]));
        assert!(after.gained_by(&before).is_empty());
        assert!(rights(true, false, &[]).gained_by(&after).is_empty());
    }

    #[test]
    fn inactive_accounts_use_nothing_but_still_hold_their_rights() {
        let account = AccountRights { active: false, held: rights(true, true, &[]), ..Default::default() };
        assert!(account.effective().is_empty());
        assert!(!rights(false, false, &[]).covers(&account.held));
    }
}
