//! The escalation oracle: a property test of the one access rule.
//!
//! Each case builds a random world (users, nested groups of which some are superuser groups and
//! some carry permissions, tokens, sessions) and a caller who is not a superuser and holds a
//! random set of permissions, then makes 20 to 50 random write calls over HTTP as that caller.
//! After every call it reads the tables back and recomputes everyone's rights with its own naive
//! implementation (plain loops over the rows, nothing shared with the server) and asserts:
//! - no account and no group gained a right the caller does not hold, nor any
//!   superuser-equivalent permission; nobody became superuser;
//! - nothing about an account holding rights the caller lacks changed (its row, memberships,
//!   permissions, tokens, sessions), and no key of such an account was returned;
//! - a refused call changed nothing, and no call answered 500.
//!
//! Cases run against one server and database (each world is told apart by its ids), 256 of them
//! by default; set `GATEHOUSE_ORACLE_CASES` for a longer run. Failing cases are kept in
//! `escalation.regressions` beside this file and replayed first.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, LazyLock, OnceLock};

use chrono::{DateTime, Utc};
use gatehouse::accounts::UserType;
use gatehouse::accounts::access::Actor;
use gatehouse::accounts::entities::{group, group_member, group_parent, group_permission, user, user_permission};
use gatehouse::accounts::groups::{self, NewGroup};
use gatehouse::accounts::permissions::Permission;
use gatehouse::accounts::users::{self, NewUser};
use gatehouse::sessions::entities::session;
use gatehouse::tokens::entities::token;
use gatehouse::tokens::key::SecretKey;
use gatehouse::tokens::service::{Intent, NewToken};
use gatehouse_types::Email;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use reqwest::{Method, StatusCode};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::*;

/// The permissions worlds and callers are made of: everything the account and token routes
/// check, one the caller is unlikely to hold, and one superuser-equivalent permission.
const PERMISSIONS: &[&str] = &[
    "authentik_core.view_user",
    "authentik_core.add_user",
    "authentik_core.change_user",
    "authentik_core.delete_user",
    "authentik_core.reset_user_password",
    "authentik_core.view_group",
    "authentik_core.add_group",
    "authentik_core.change_group",
    "authentik_core.delete_group",
    "authentik_core.view_token",
    "authentik_core.change_token",
    "authentik_core.delete_token",
    "authentik_core.view_token_key",
    "authentik_core.set_token_key",
    "authentik_events.view_event",
    "authentik_flows.change_flowstagebinding",
];

/// The last of [`PERMISSIONS`].
const SUPERUSER_EQUIVALENT: &[&str] = &["authentik_flows.change_flowstagebinding"];

// ---------------------------------------------------------------------------------------------
// What a case is made of

#[derive(Debug, Clone)]
struct UserSpec {
    superuser: bool,
    staff: bool,
    active: bool,
    service: bool,
    permissions: Vec<usize>,
}

#[derive(Debug, Clone)]
struct GroupSpec {
    superuser: bool,
    permissions: Vec<usize>,
    /// Indices of earlier groups (so the hierarchy has no cycle).
    parents: Vec<usize>,
    /// Indices of world users.
    members: Vec<usize>,
}

#[derive(Debug, Clone)]
struct WorldSpec {
    users: Vec<UserSpec>,
    groups: Vec<GroupSpec>,
    caller_permissions: Vec<usize>,
    caller_staff: bool,
    /// Groups the caller joins unless they would make it a superuser.
    caller_groups: Vec<usize>,
}

/// One write call; `usize` fields pick a user, group, token or session of the world as it
/// stands when the call is made (modulo its size), so every sequence stays meaningful as the
/// world changes.
#[derive(Debug, Clone)]
enum Call {
    CreateUser {
        groups: Vec<usize>,
        permissions: Vec<usize>,
        superuser: Option<bool>,
        staff: Option<bool>,
        service: bool,
    },
    PatchUser {
        user: usize,
        groups: Option<Vec<usize>>,
        permissions: Option<Vec<usize>>,
        superuser: Option<bool>,
        staff: Option<bool>,
        active: Option<bool>,
        service: Option<bool>,
    },
    DeleteUser(usize),
    SetPassword(usize),
    CreateGroup {
        parents: Vec<usize>,
        users: Vec<usize>,
        permissions: Vec<usize>,
        superuser: bool,
    },
    PatchGroup {
        group: usize,
        parents: Option<Vec<usize>>,
        users: Option<Vec<usize>>,
        permissions: Option<Vec<usize>>,
        superuser: Option<bool>,
    },
    DeleteGroup(usize),
    Membership {
        group: usize,
        user: usize,
        add: bool,
    },
    ViewKey(usize),
    RotateKey(usize),
    SetKey(usize),
    NeverExpire(usize),
    DeleteToken(usize),
    CreateToken {
        user: usize,
        expiring: bool,
    },
    ServiceAccount {
        create_group: bool,
    },
    EndSession(usize),
}

fn indices(max: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..max, 0..3)
}

/// A few permissions, with a superuser-equivalent one more often than chance would pick it: it is
/// what a caller who holds it through a group must not pin anywhere.
fn permission_set() -> impl Strategy<Value = Vec<usize>> {
    (indices(PERMISSIONS.len()), prop::bool::weighted(0.25)).prop_map(|(mut picks, superuser_equivalent)| {
        if superuser_equivalent {
            picks.push(PERMISSIONS.len() - 1);
        }
        picks
    })
}

fn world_spec() -> impl Strategy<Value = WorldSpec> {
    let user =
        (prop::bool::weighted(0.25), prop::bool::weighted(0.3), prop::bool::weighted(0.85), prop::bool::weighted(0.1), permission_set())
            .prop_map(|(superuser, staff, active, service, permissions)| UserSpec { superuser, staff, active, service, permissions });
    let group = (prop::bool::weighted(0.25), permission_set(), indices(8), indices(8))
        .prop_map(|(superuser, permissions, parents, members)| GroupSpec { superuser, permissions, parents, members });
    (
        prop::collection::vec(user, 2..6),
        prop::collection::vec(group, 1..6),
        prop::collection::vec(0..PERMISSIONS.len(), 1..8),
        prop::bool::weighted(0.5),
        indices(6),
    )
        .prop_map(|(users, groups, caller_permissions, caller_staff, caller_groups)| WorldSpec {
            users,
            groups,
            caller_permissions,
            caller_staff,
            caller_groups,
        })
}

fn call() -> impl Strategy<Value = Call> {
    let n = 64usize;
    let maybe_bool = || prop::option::of(any::<bool>());
    prop_oneof![
        3 => (indices(n), permission_set(), maybe_bool(), maybe_bool(), prop::bool::weighted(0.2)).prop_map(
            |(groups, permissions, superuser, staff, service)| Call::CreateUser { groups, permissions, superuser, staff, service }
        ),
        6 => (0..n, prop::option::of(indices(n)), prop::option::of(permission_set()), maybe_bool(), maybe_bool(), maybe_bool(), maybe_bool())
            .prop_map(|(user, groups, permissions, superuser, staff, active, service)| Call::PatchUser {
                user,
                groups,
                permissions,
                superuser,
                staff,
                active,
                service
            }),
        1 => (0..n).prop_map(Call::DeleteUser),
        1 => (0..n).prop_map(Call::SetPassword),
        3 => (indices(n), indices(n), permission_set(), prop::bool::weighted(0.2))
            .prop_map(|(parents, users, permissions, superuser)| Call::CreateGroup { parents, users, permissions, superuser }),
        6 => (0..n, prop::option::of(indices(n)), prop::option::of(indices(n)), prop::option::of(permission_set()), maybe_bool())
            .prop_map(|(group, parents, users, permissions, superuser)| Call::PatchGroup { group, parents, users, permissions, superuser }),
        1 => (0..n).prop_map(Call::DeleteGroup),
        5 => (0..n, 0..n, any::<bool>()).prop_map(|(group, user, add)| Call::Membership { group, user, add }),
        2 => (0..n).prop_map(Call::ViewKey),
        1 => (0..n).prop_map(Call::RotateKey),
        1 => (0..n).prop_map(Call::SetKey),
        1 => (0..n).prop_map(Call::NeverExpire),
        1 => (0..n).prop_map(Call::DeleteToken),
        1 => (0..n, any::<bool>()).prop_map(|(user, expiring)| Call::CreateToken { user, expiring }),
        1 => any::<bool>().prop_map(|create_group| Call::ServiceAccount { create_group }),
        1 => (0..n).prop_map(Call::EndSession),
    ]
}

// ---------------------------------------------------------------------------------------------
// The naive model of rights

/// An account's row, memberships, permissions, tokens and sessions.
type About<'a> = (Option<&'a user::Model>, Vec<&'a (Uuid, i64)>, Vec<&'a (i64, String)>, Vec<&'a token::Model>, Vec<&'a session::Model>);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct NaiveRights {
    superuser: bool,
    staff: bool,
    permissions: BTreeSet<String>,
}

impl NaiveRights {
    fn add(&mut self, other: &NaiveRights) {
        self.superuser = self.superuser || other.superuser;
        self.staff = self.staff || other.staff;
        for p in &other.permissions {
            self.permissions.insert(p.clone());
        }
    }

    /// Whether a caller with these rights holds everything in `other`.
    fn covers(&self, other: &NaiveRights) -> bool {
        if self.superuser {
            return true;
        }
        if other.superuser {
            return false;
        }
        if other.staff && !self.staff {
            return false;
        }
        other.permissions.iter().all(|p| self.permissions.contains(p))
    }

    /// What `after` has beyond `self`.
    fn gained(&self, after: &NaiveRights) -> NaiveRights {
        if self.superuser {
            return NaiveRights::default();
        }
        NaiveRights {
            superuser: after.superuser,
            staff: after.staff && !self.staff,
            permissions: after.permissions.iter().filter(|p| !self.permissions.contains(*p)).cloned().collect(),
        }
    }
}

/// Everything a case's world holds, read straight from the tables.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    users: BTreeMap<i64, user::Model>,
    groups: BTreeMap<Uuid, group::Model>,
    parents: BTreeSet<(Uuid, Uuid)>,
    members: BTreeSet<(Uuid, i64)>,
    user_permissions: BTreeSet<(i64, String)>,
    group_permissions: BTreeSet<(Uuid, String)>,
    tokens: BTreeMap<i64, token::Model>,
    sessions: BTreeMap<Uuid, session::Model>,
}

impl Snapshot {
    /// The world of a case: users from `first_user` on, groups created since `since`.
    async fn read(app: &TestApp, first_user: i64, since: DateTime<Utc>) -> Snapshot {
        let db = &app.state.db;
        let users: BTreeMap<i64, user::Model> =
            user::Entity::find().filter(user::Column::Id.gte(first_user)).all(db).await.unwrap().into_iter().map(|u| (u.id, u)).collect();
        let groups: BTreeMap<Uuid, group::Model> = group::Entity::find()
            .filter(group::Column::Created.gte(since))
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|g| (g.group_uuid, g))
            .collect();
        let parents = group_parent::Entity::find()
            .filter(group_parent::Column::GroupUuid.is_in(groups.keys().copied()))
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|l| (l.group_uuid, l.parent_uuid))
            .collect();
        let members = group_member::Entity::find()
            .filter(group_member::Column::UserId.gte(first_user))
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.group_uuid, m.user_id))
            .collect();
        let user_permissions = user_permission::Entity::find()
            .filter(user_permission::Column::UserId.gte(first_user))
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.user_id, p.permission))
            .collect();
        let group_permissions = group_permission::Entity::find()
            .filter(group_permission::Column::GroupUuid.is_in(groups.keys().copied()))
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.group_uuid, p.permission))
            .collect();
        let tokens = token::Entity::find()
            .filter(token::Column::UserId.gte(first_user))
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|mut t| {
                // Recording a key's use is not a change anyone made.
                t.last_used_at = None;
                (t.id, t)
            })
            .collect();
        let sessions = session::Entity::find()
            .filter(session::Column::UserId.gte(first_user))
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|mut s| {
                s.last_used = s.created;
                s.last_ip = None;
                (s.id, s)
            })
            .collect();
        Snapshot { users, groups, parents, members, user_permissions, group_permissions, tokens, sessions }
    }

    /// What membership of `group` confers: its own rights and those of every ancestor.
    fn conferred(&self, group: Uuid) -> NaiveRights {
        let mut rights = NaiveRights::default();
        let mut visited = BTreeSet::new();
        let mut pending = vec![group];
        while let Some(g) = pending.pop() {
            if !visited.insert(g) {
                continue;
            }
            if let Some(row) = self.groups.get(&g) {
                rights.superuser = rights.superuser || row.is_superuser;
            }
            for (holder, permission) in &self.group_permissions {
                if *holder == g {
                    rights.permissions.insert(permission.clone());
                }
            }
            for (child, parent) in &self.parents {
                if *child == g {
                    pending.push(*parent);
                }
            }
        }
        rights
    }

    /// What an account holds, whether or not it is active.
    fn held(&self, user_id: i64) -> NaiveRights {
        let Some(row) = self.users.get(&user_id) else { return NaiveRights::default() };
        let mut rights = NaiveRights {
            superuser: row.is_superuser,
            staff: row.is_staff || row.is_superuser || matches!(row.user_type, UserType::ServiceAccount | UserType::InternalServiceAccount),
            permissions: BTreeSet::new(),
        };
        for (holder, permission) in &self.user_permissions {
            if *holder == user_id {
                rights.permissions.insert(permission.clone());
            }
        }
        for (group, member) in &self.members {
            if *member == user_id {
                rights.add(&self.conferred(*group));
            }
        }
        if rights.superuser {
            rights.staff = true;
        }
        rights
    }

    /// What an account can use: nothing while inactive.
    fn effective(&self, user_id: i64) -> NaiveRights {
        match self.users.get(&user_id) {
            Some(row) if row.is_active => self.held(user_id),
            _ => NaiveRights::default(),
        }
    }

    /// Everything stored about one account that only someone covering it may change.
    fn about(&self, user_id: i64) -> About<'_> {
        (
            self.users.get(&user_id),
            self.members.iter().filter(|(_, u)| *u == user_id).collect(),
            self.user_permissions.iter().filter(|(u, _)| *u == user_id).collect(),
            self.tokens.values().filter(|t| t.user_id == user_id).collect(),
            self.sessions.values().filter(|s| s.user_id == user_id).collect(),
        )
    }

    /// Whether membership of `group` gives superuser or a superuser-equivalent permission.
    fn superuser_level(&self, group: Uuid) -> bool {
        let rights = self.conferred(group);
        rights.superuser || rights.permissions.iter().any(|p| SUPERUSER_EQUIVALENT.contains(&p.as_str()))
    }

    /// The superuser-level grants an account carries itself: its flag, its own
    /// superuser-equivalent permissions, its memberships of superuser-level groups.
    fn user_grants(&self, user_id: i64) -> BTreeSet<String> {
        let mut grants = BTreeSet::new();
        if self.users.get(&user_id).is_some_and(|u| u.is_superuser) {
            grants.insert("superuser".to_owned());
        }
        for (holder, permission) in &self.user_permissions {
            if *holder == user_id && SUPERUSER_EQUIVALENT.contains(&permission.as_str()) {
                grants.insert(format!("permission {permission}"));
            }
        }
        for (group, member) in &self.members {
            if *member == user_id && self.superuser_level(*group) {
                grants.insert(format!("member of {group}"));
            }
        }
        grants
    }

    /// The superuser-level grants a group carries itself: its flag, its own superuser-equivalent
    /// permissions, its links to superuser-level parents.
    fn group_grants(&self, group: Uuid) -> BTreeSet<String> {
        let mut grants = BTreeSet::new();
        if self.groups.get(&group).is_some_and(|g| g.is_superuser) {
            grants.insert("superuser".to_owned());
        }
        for (holder, permission) in &self.group_permissions {
            if *holder == group && SUPERUSER_EQUIVALENT.contains(&permission.as_str()) {
                grants.insert(format!("permission {permission}"));
            }
        }
        for (child, parent) in &self.parents {
            if *child == group && self.superuser_level(*parent) {
                grants.insert(format!("child of {parent}"));
            }
        }
        grants
    }
}

// ---------------------------------------------------------------------------------------------
// Running a case

static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap());
static APP: OnceLock<Arc<TestApp>> = OnceLock::new();

fn app() -> Arc<TestApp> {
    APP.get_or_init(|| Arc::new(RUNTIME.block_on(TestApp::spawn()))).clone()
}

/// A case's world as it stands: what the `usize` of a call picks from.
struct World {
    caller: i64,
    caller_session: Session,
    first_user: i64,
    since: DateTime<Utc>,
    case: u64,
    created: u64,
}

fn permissions(picks: &[usize]) -> Vec<Permission> {
    picks.iter().map(|i| Permission::parse(PERMISSIONS[*i]).unwrap()).collect::<BTreeSet<_>>().into_iter().collect()
}

fn permission_names(picks: &[usize]) -> Vec<&'static str> {
    picks.iter().map(|i| PERMISSIONS[*i]).collect::<BTreeSet<_>>().into_iter().collect()
}

fn pick<T: Clone>(items: &[T], index: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[index % items.len()].clone())
}

async fn build(app: &TestApp, spec: &WorldSpec, case: u64) -> World {
    let since = Utc::now() - chrono::TimeDelta::milliseconds(1);
    let system = Actor::system();
    let mut user_ids = Vec::new();
    for (i, u) in spec.users.iter().enumerate() {
        let mut new = NewUser::with_email(Email::parse(&format!("u{i}.c{case}@oracle.test")).unwrap());
        new.is_superuser = u.superuser;
        new.is_staff = u.staff;
        new.is_active = u.active;
        new.permissions = permissions(&u.permissions);
        if u.service {
            new.user_type = UserType::ServiceAccount;
        }
        user_ids.push(users::create_user(&app.state, &system, new).await.unwrap().id);
    }
    let mut group_ids: Vec<Uuid> = Vec::new();
    for (i, g) in spec.groups.iter().enumerate() {
        let parents: BTreeSet<Uuid> = g.parents.iter().filter(|_| i > 0).map(|p| group_ids[p % i]).collect();
        let members: BTreeSet<i64> = g.members.iter().map(|m| user_ids[m % user_ids.len()]).collect();
        let new = NewGroup {
            name: format!("g{i}-c{case}"),
            is_superuser: g.superuser,
            parents: parents.into_iter().collect(),
            users: members.into_iter().collect(),
            attributes: json!({}),
            permissions: permissions(&g.permissions),
        };
        group_ids.push(groups::create_group(&app.state, &system, new).await.unwrap().group_uuid);
    }
    let mut new = NewUser::with_email(Email::parse(&format!("caller.c{case}@oracle.test")).unwrap());
    new.is_staff = spec.caller_staff;
    new.permissions = permissions(&spec.caller_permissions);
    let caller = users::create_user(&app.state, &system, new).await.unwrap();
    // The caller joins the groups it picked, as long as none makes it a superuser.
    let snapshot = Snapshot::read(app, user_ids[0], since).await;
    let caller_groups: BTreeSet<Uuid> = spec.caller_groups.iter().map(|g| group_ids[g % group_ids.len()]).collect();
    for group in caller_groups {
        if !snapshot.conferred(group).superuser {
            groups::change_membership(&app.state, &system, group, caller.id, true).await.unwrap();
        }
    }
    // Every account gets a token (an API key where it may hold one) and a session.
    let snapshot = Snapshot::read(app, user_ids[0], since).await;
    for id in user_ids.iter().copied().chain(std::iter::once(caller.id)) {
        let intent = if snapshot.held(id).staff { Intent::Api } else { Intent::AppPassword };
        let token = NewToken {
            identifier: format!("t{id}"),
            intent,
            user_id: id,
            name: String::new(),
            description: String::new(),
            managed: None,
            expiring: true,
            expires: None,
            tags: Vec::new(),
        };
        gatehouse::tokens::service::create(&app.state, &system, token).await.unwrap();
    }
    let client = gatehouse::events::client::ClientInfo { ip: None, user_agent: "oracle".into(), known_browser: None };
    let mut caller_session = None;
    for id in user_ids.iter().copied().chain(std::iter::once(caller.id)) {
        let row = users::find_user(&app.state.db, app.state.tenant, id).await.unwrap().unwrap();
        let new =
            gatehouse::sessions::service::create(&app.state.db, &app.state, &row, &client, chrono::TimeDelta::hours(1)).await.unwrap();
        if id == caller.id {
            let cookie = format!("{}={}", app.state.config.sessions.cookie_name, new.key);
            caller_session = Some(Session { cookie, csrf: new.csrf_token, body: Value::Null });
        }
    }
    World { caller: caller.id, caller_session: caller_session.unwrap(), first_user: user_ids[0], since, case, created: 0 }
}

/// Sends `call` as the caller; returns the status, the body, and for a key view the token viewed.
async fn send(app: &TestApp, world: &mut World, snapshot: &Snapshot, call: &Call) -> Option<(StatusCode, Value, Option<i64>)> {
    let users: Vec<i64> = snapshot.users.keys().copied().collect();
    let groups: Vec<Uuid> = snapshot.groups.keys().copied().collect();
    let tokens: Vec<&token::Model> = snapshot.tokens.values().collect();
    let sessions: Vec<Uuid> = snapshot.sessions.keys().copied().collect();
    let user_list = |picks: &[usize]| -> Vec<i64> { picks.iter().filter_map(|i| pick(&users, *i)).collect() };
    let group_list = |picks: &[usize]| -> Vec<String> { picks.iter().filter_map(|i| pick(&groups, *i)).map(|g| g.to_string()).collect() };
    world.created += 1;
    let fresh = format!("n{}.c{}", world.created, world.case);
    let session = &world.caller_session;
    let (method, path, body, viewed) = match call {
        Call::CreateUser { groups, permissions, superuser, staff, service } => {
            let mut body = json!({"username": fresh, "groups": group_list(groups), "permissions": permission_names(permissions)});
            if *service {
                body["type"] = json!("service_account");
            } else {
                body["email"] = json!(format!("{fresh}@oracle.test"));
            }
            if let Some(v) = superuser {
                body["is_superuser"] = json!(v);
            }
            if let Some(v) = staff {
                body["is_staff"] = json!(v);
            }
            (Method::POST, "/api/v3/core/users/".to_owned(), Some(body), None)
        }
        Call::PatchUser { user, groups, permissions, superuser, staff, active, service } => {
            let target = pick(&users, *user)?;
            let mut body = json!({"name": fresh});
            if let Some(g) = groups {
                body["groups"] = json!(group_list(g));
            }
            if let Some(p) = permissions {
                body["permissions"] = json!(permission_names(p));
            }
            for (field, value) in [("is_superuser", superuser), ("is_staff", staff), ("is_active", active)] {
                if let Some(v) = value {
                    body[field] = json!(v);
                }
            }
            if let Some(service) = service {
                body["type"] = json!(if *service { "service_account" } else { "internal" });
            }
            (Method::PATCH, format!("/api/v3/core/users/{target}/"), Some(body), None)
        }
        Call::DeleteUser(user) => (Method::DELETE, format!("/api/v3/core/users/{}/", pick(&users, *user)?), None, None),
        Call::SetPassword(user) => {
            (Method::POST, format!("/api/v3/core/users/{}/set_password/", pick(&users, *user)?), Some(json!({"password": PASSWORD})), None)
        }
        Call::CreateGroup { parents, users: members, permissions, superuser } => {
            let body = json!({"name": fresh, "parents": group_list(parents), "users": user_list(members), "permissions": permission_names(permissions), "is_superuser": superuser});
            (Method::POST, "/api/v3/core/groups/".to_owned(), Some(body), None)
        }
        Call::PatchGroup { group, parents, users: members, permissions, superuser } => {
            let target = pick(&groups, *group)?;
            let mut body = json!({});
            if let Some(p) = parents {
                body["parents"] = json!(group_list(p));
            }
            if let Some(m) = members {
                body["users"] = json!(user_list(m));
            }
            if let Some(p) = permissions {
                body["permissions"] = json!(permission_names(p));
            }
            if let Some(v) = superuser {
                body["is_superuser"] = json!(v);
            }
            (Method::PATCH, format!("/api/v3/core/groups/{target}/"), Some(body), None)
        }
        Call::DeleteGroup(group) => (Method::DELETE, format!("/api/v3/core/groups/{}/", pick(&groups, *group)?), None, None),
        Call::Membership { group, user, add } => {
            let action = if *add { "add_user" } else { "remove_user" };
            let body = json!({"pk": pick(&users, *user)?});
            (Method::POST, format!("/api/v3/core/groups/{}/{action}/", pick(&groups, *group)?), Some(body), None)
        }
        Call::ViewKey(t) => {
            let token = pick(&tokens, *t)?;
            (Method::GET, format!("/api/v3/core/tokens/{}/view_key/", token.identifier), None, Some(token.user_id))
        }
        Call::RotateKey(t) => {
            (Method::POST, format!("/api/v3/core/tokens/{}/rotate/", pick(&tokens, *t)?.identifier), Some(json!({})), None)
        }
        Call::SetKey(t) => {
            let token = pick(&tokens, *t)?;
            let key = SecretKey::generate(token.intent.key_kind());
            (Method::POST, format!("/api/v3/core/tokens/{}/set_key/", token.identifier), Some(json!({"key": key.expose()})), None)
        }
        Call::NeverExpire(t) => {
            let body = json!({"expiring": false, "expires": null});
            (Method::PATCH, format!("/api/v3/core/tokens/{}/", pick(&tokens, *t)?.identifier), Some(body), None)
        }
        Call::DeleteToken(t) => (Method::DELETE, format!("/api/v3/core/tokens/{}/", pick(&tokens, *t)?.identifier), None, None),
        Call::CreateToken { user, expiring } => {
            let body = json!({"identifier": fresh.replace('.', "-"), "user": pick(&users, *user)?, "expiring": expiring, "intent": "app_password"});
            (Method::POST, "/api/v3/core/tokens/".to_owned(), Some(body), None)
        }
        Call::ServiceAccount { create_group } => {
            let body = json!({"name": fresh, "create_group": create_group});
            (Method::POST, "/api/v3/core/users/service_account/".to_owned(), Some(body), None)
        }
        Call::EndSession(s) => (Method::DELETE, format!("/api/v3/core/authenticated_sessions/{}/", pick(&sessions, *s)?), None, None),
    };
    let (status, body) = json(app.call(Some(session), method, &path, body).await).await;
    Some((status, body, viewed))
}

/// The rule, checked on the state before and after one call.
fn check(
    world: &World,
    before: &Snapshot,
    after: &Snapshot,
    call: &Call,
    status: StatusCode,
    body: &Value,
    viewed: Option<i64>,
) -> Result<(), String> {
    let caller = before.effective(world.caller);
    if caller.superuser {
        return Err("the caller became a superuser".into());
    }
    if status.is_server_error() {
        return Err(format!("{call:?} answered {status}: {body}"));
    }
    if !status.is_success() && before != after {
        return Err(format!("{call:?} was refused ({status}: {body}) but changed the world"));
    }
    for id in after.users.keys() {
        // What an account holds counts even while it is inactive; what it can use counts too.
        for gained in [before.held(*id).gained(&after.held(*id)), before.effective(*id).gained(&after.effective(*id))] {
            if !caller.covers(&gained) || gained.permissions.iter().any(|p| SUPERUSER_EQUIVALENT.contains(&p.as_str())) {
                return Err(format!("{call:?} ({status}) let user {id} gain {gained:?}; the caller holds {caller:?}"));
            }
        }
        let pinned: Vec<String> = after.user_grants(*id).difference(&before.user_grants(*id)).cloned().collect();
        if !pinned.is_empty() {
            return Err(format!("{call:?} ({status}) gave user {id} the superuser-level grants {pinned:?}"));
        }
    }
    for id in after.groups.keys() {
        let was = if before.groups.contains_key(id) { before.conferred(*id) } else { NaiveRights::default() };
        let gained = was.gained(&after.conferred(*id));
        if !caller.covers(&gained) || gained.permissions.iter().any(|p| SUPERUSER_EQUIVALENT.contains(&p.as_str())) {
            return Err(format!("{call:?} ({status}) made group {id} confer {gained:?}; the caller holds {caller:?}"));
        }
        let pinned: Vec<String> = after.group_grants(*id).difference(&before.group_grants(*id)).cloned().collect();
        if !pinned.is_empty() {
            return Err(format!("{call:?} ({status}) gave group {id} the superuser-level grants {pinned:?}"));
        }
    }
    for id in before.users.keys().filter(|id| **id != world.caller) {
        if !caller.covers(&before.held(*id)) && before.about(*id) != after.about(*id) {
            return Err(format!("{call:?} ({status}) changed user {id}, who holds rights the caller lacks"));
        }
    }
    if let (Some(owner), true) = (viewed, status.is_success())
        && owner != world.caller
        && !caller.covers(&before.held(owner))
    {
        return Err(format!("{call:?} returned the key of user {owner}, who holds rights the caller lacks"));
    }
    Ok(())
}

async fn run_case(spec: WorldSpec, calls: Vec<Call>, case: u64) -> Result<(), TestCaseError> {
    let app = app();
    let mut world = build(&app, &spec, case).await;
    let mut before = Snapshot::read(&app, world.first_user, world.since).await;
    for call in &calls {
        let Some((status, body, viewed)) = send(&app, &mut world, &before, call).await else { continue };
        let after = Snapshot::read(&app, world.first_user, world.since).await;
        check(&world, &before, &after, call, status, &body, viewed).map_err(TestCaseError::fail)?;
        before = after;
    }
    Ok(())
}

#[test]
fn no_caller_climbs_above_its_own_rights() {
    let mut runner = oracle_runner("GATEHOUSE_ORACLE_CASES", 256, file!());
    app();
    let counter = std::sync::atomic::AtomicU64::new(0);
    let result = runner.run(&(world_spec(), prop::collection::vec(call(), 20..50)), |(spec, calls)| {
        let case = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if case > 0 && case.is_multiple_of(100) {
            eprintln!("escalation oracle: {case} cases run");
        }
        RUNTIME.block_on(run_case(spec, calls, case))
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}
