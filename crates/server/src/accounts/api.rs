//! The API shapes of users and groups: authentik's serializers, plus Gatehouse's extra fields
//! (`is_staff`, `phone_number`, `permissions`).

use chrono::{DateTime, Utc};
use gatehouse_types::{Email, PhoneNumber};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::entities::{group, user};
use super::groups::{GroupChanges, NewGroup};
use super::password::Password;
use super::permissions::Permission;
use super::users::{NewUser, UserChanges};
use super::{UserType, parse_username};
use crate::error::{FieldErrors, Result};
use crate::secret::ServerSecret;

/// A group as embedded in a user.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PartialGroup {
    pub pk: Uuid,
    pub num_pk: i64,
    pub name: String,
    pub is_superuser: bool,
    pub attributes: Value,
}

/// authentik's int32 view of a group's uuid.
pub fn num_pk(id: Uuid) -> i64 {
    let bytes = id.as_bytes();
    i64::from(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) >> 1)
}

impl From<&group::Model> for PartialGroup {
    fn from(g: &group::Model) -> Self {
        Self {
            pk: g.group_uuid,
            num_pk: num_pk(g.group_uuid),
            name: g.name.clone(),
            is_superuser: g.is_superuser,
            attributes: g.attributes.clone(),
        }
    }
}

/// A role (roles are not implemented yet; lists are always empty).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Role {
    pub pk: Uuid,
    pub name: String,
}

/// authentik's `User`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserOut {
    pub pk: i64,
    pub username: String,
    pub name: String,
    pub is_active: bool,
    pub last_login: Option<DateTime<Utc>>,
    pub date_joined: DateTime<Utc>,
    pub is_superuser: bool,
    pub groups: Vec<Uuid>,
    pub groups_obj: Vec<PartialGroup>,
    pub roles: Vec<Uuid>,
    pub roles_obj: Vec<Role>,
    pub email: String,
    pub avatar: String,
    pub attributes: Value,
    pub uid: String,
    pub path: String,
    #[serde(rename = "type")]
    pub user_type: String,
    pub uuid: Uuid,
    pub password_change_date: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
    /// Gatehouse: staff users may hold API keys.
    pub is_staff: bool,
    /// Gatehouse: phone number in E.164 form.
    pub phone_number: Option<String>,
    /// Gatehouse: permissions granted to the user directly.
    pub permissions: Vec<String>,
}

/// A stable, non-guessable identifier of a user for other systems.
pub fn uid(secret: &ServerSecret, user: &user::Model) -> String {
    secret.digest("user-uid", user.uuid.as_bytes())
}

impl UserOut {
    /// Builds the representation from a row and its relations; `is_superuser` is the user's
    /// effective status, through groups and their ancestors.
    pub fn new(user: user::Model, groups: &[group::Model], permissions: Vec<String>, is_superuser: bool, secret: &ServerSecret) -> Self {
        Self {
            pk: user.id,
            uid: uid(secret, &user),
            username: user.username,
            name: user.name,
            is_active: user.is_active,
            last_login: user.last_login,
            date_joined: user.date_joined,
            is_superuser,
            groups: groups.iter().map(|g| g.group_uuid).collect(),
            groups_obj: groups.iter().map(PartialGroup::from).collect(),
            roles: Vec::new(),
            roles_obj: Vec::new(),
            email: user.email,
            avatar: String::new(),
            attributes: user.attributes,
            path: user.path,
            user_type: user.user_type.as_str().to_owned(),
            uuid: user.uuid,
            password_change_date: user.password_change_date,
            last_updated: user.last_updated,
            is_staff: user.is_staff,
            phone_number: user.phone_number,
            permissions,
        }
    }
}

/// A group as shown in `/core/users/me/`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserSelfGroup {
    pub pk: String,
    pub name: String,
}

/// authentik's `UserSelf`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserSelf {
    pub pk: i64,
    pub username: String,
    pub name: String,
    pub is_active: bool,
    pub is_superuser: bool,
    /// Whether this user is the one the credential belongs to (false only for an impersonating
    /// `original`, which Gatehouse does not have).
    pub is_current: bool,
    pub groups: Vec<UserSelfGroup>,
    pub roles: Vec<UserSelfGroup>,
    pub email: String,
    pub avatar: String,
    pub uid: String,
    pub settings: Value,
    #[serde(rename = "type")]
    pub user_type: String,
    pub system_permissions: Vec<String>,
    /// Gatehouse: staff flag.
    pub is_staff: bool,
}

/// authentik's `SessionUser`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionUser {
    pub user: UserSelf,
    /// Every account signed in in this browser: Gatehouse has one per session.
    pub users: Vec<UserSelf>,
}

/// The `SessionUser` JSON of `user`, who holds `permissions` and belongs to `groups` directly.
pub fn render_self(
    secret: &ServerSecret,
    user: &user::Model,
    permissions: &super::access::Rights,
    groups: &[group::Model],
) -> Result<bytes::Bytes> {
    let me = UserSelf {
        pk: user.id,
        username: user.username.clone(),
        name: user.name.clone(),
        is_active: user.is_active,
        is_superuser: permissions.superuser,
        is_current: true,
        groups: groups.iter().map(|g| UserSelfGroup { pk: g.group_uuid.to_string(), name: g.name.clone() }).collect(),
        roles: Vec::new(),
        email: user.email.clone(),
        avatar: String::new(),
        uid: uid(secret, user),
        settings: serde_json::json!({}),
        user_type: user.user_type.as_str().to_owned(),
        system_permissions: permissions.permissions.iter().cloned().collect(),
        is_staff: user.is_staff,
    };
    let body = serde_json::to_vec(&SessionUser { users: vec![me.clone()], user: me }).map_err(crate::error::Error::internal)?;
    Ok(body.into())
}

/// authentik's `PartialUser`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PartialUser {
    pub pk: i64,
    pub username: String,
    pub name: String,
    pub is_active: bool,
    pub last_login: Option<DateTime<Utc>>,
    pub email: String,
    pub attributes: Value,
    pub uid: String,
}

impl PartialUser {
    /// The partial representation of `user`.
    pub fn new(user: &user::Model, secret: &ServerSecret) -> Self {
        Self {
            pk: user.id,
            username: user.username.clone(),
            name: user.name.clone(),
            is_active: user.is_active,
            last_login: user.last_login,
            email: user.email.clone(),
            attributes: user.attributes.clone(),
            uid: uid(secret, user),
        }
    }
}

/// authentik's `RelatedGroup`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RelatedGroup {
    pub pk: Uuid,
    pub group_uuid: Uuid,
    pub name: String,
    pub is_superuser: bool,
    pub attributes: Value,
}

impl From<&group::Model> for RelatedGroup {
    fn from(g: &group::Model) -> Self {
        Self {
            pk: g.group_uuid,
            group_uuid: g.group_uuid,
            name: g.name.clone(),
            is_superuser: g.is_superuser,
            attributes: g.attributes.clone(),
        }
    }
}

impl UserOut {
    /// What a reader that may see only `visible_groups` (and no rights) is shown: a device's
    /// agent reading the directory.
    pub fn within(mut self, visible_groups: &std::collections::BTreeSet<Uuid>) -> Self {
        self.groups.retain(|id| visible_groups.contains(id));
        self.groups_obj.retain(|g| visible_groups.contains(&g.pk));
        self.permissions.clear();
        self
    }
}

/// authentik's `Group`.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupOut {
    pub pk: Uuid,
    pub num_pk: i64,
    pub name: String,
    pub is_superuser: bool,
    pub parents: Vec<Uuid>,
    pub parents_obj: Vec<RelatedGroup>,
    pub users: Vec<i64>,
    pub users_obj: Option<Vec<PartialUser>>,
    pub attributes: Value,
    pub roles: Vec<Uuid>,
    pub roles_obj: Vec<Role>,
    pub inherited_roles_obj: Vec<Role>,
    pub children: Vec<Uuid>,
    pub children_obj: Vec<RelatedGroup>,
    /// Gatehouse: permissions granted to the group's members.
    pub permissions: Vec<String>,
}

impl GroupOut {
    /// Builds the representation of a group from its relations.
    pub fn new(g: group::Model, relations: &super::groups::GroupRelations, include_users: bool, secret: &ServerSecret) -> Self {
        let parents = relations.parents.get(&g.group_uuid).map(Vec::as_slice).unwrap_or_default();
        let children = relations.children.get(&g.group_uuid).map(Vec::as_slice).unwrap_or_default();
        let members = relations.members.get(&g.group_uuid).map(Vec::as_slice).unwrap_or_default();
        Self {
            pk: g.group_uuid,
            num_pk: num_pk(g.group_uuid),
            parents: parents.iter().map(|p| p.group_uuid).collect(),
            parents_obj: parents.iter().map(RelatedGroup::from).collect(),
            users: members.iter().map(|u| u.id).collect(),
            users_obj: include_users.then(|| members.iter().map(|u| PartialUser::new(u, secret)).collect()),
            roles: Vec::new(),
            roles_obj: Vec::new(),
            inherited_roles_obj: Vec::new(),
            children: children.iter().map(|c| c.group_uuid).collect(),
            children_obj: children.iter().map(RelatedGroup::from).collect(),
            permissions: relations.permissions.get(&g.group_uuid).cloned().unwrap_or_default(),
            name: g.name,
            is_superuser: g.is_superuser,
            attributes: g.attributes,
        }
    }
}

/// authentik's `UserRequest` / `PatchedUserRequest`, plus Gatehouse's extra fields.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserWrite {
    pub username: Option<String>,
    pub name: Option<String>,
    pub is_active: Option<bool>,
    /// Accepted for compatibility and ignored: the server records sign-ins itself.
    pub last_login: Option<Option<String>>,
    pub groups: Option<Vec<Uuid>>,
    /// Roles are not implemented; only an empty list is accepted.
    pub roles: Option<Vec<Uuid>>,
    pub email: Option<String>,
    pub attributes: Option<Map<String, Value>>,
    pub path: Option<String>,
    #[serde(rename = "type")]
    pub user_type: Option<String>,
    /// Gatehouse: superuser flag (granted by superusers only).
    pub is_superuser: Option<bool>,
    /// Gatehouse: staff flag.
    pub is_staff: Option<bool>,
    /// Gatehouse: phone number in international form.
    pub phone_number: Option<Option<String>>,
    /// Gatehouse: permissions granted directly (only what the caller holds; superuser-equivalent ones by superusers only).
    pub permissions: Option<Vec<String>>,
    /// Gatehouse: an initial password (create only).
    pub password: Option<String>,
}

fn parse_permissions(field: &str, values: &[String], errors: &mut FieldErrors) -> Vec<Permission> {
    values
        .iter()
        .filter_map(|v| match Permission::parse(v) {
            Ok(p) => Some(p),
            Err(message) => {
                errors.add(field, message);
                None
            }
        })
        .collect()
}

fn parse_path(value: &str, errors: &mut FieldErrors) -> String {
    let trimmed = value.trim().trim_matches('/');
    if trimmed.is_empty() || trimmed.len() > 200 || trimmed.split('/').any(str::is_empty) {
        errors.add("path", "Enter a path such as users or users/imported.");
    }
    trimmed.to_owned()
}

impl UserWrite {
    fn check_roles(&self, errors: &mut FieldErrors) {
        if self.roles.as_ref().is_some_and(|r| !r.is_empty()) {
            errors.add("roles", "Roles are not supported by this server; send an empty list.");
        }
    }

    /// Parses a create request.
    pub fn into_new_user(self) -> Result<NewUser> {
        let mut errors = FieldErrors::new();
        self.check_roles(&mut errors);
        let user_type = match self.user_type.as_deref() {
            None => UserType::Internal,
            Some(t) => UserType::parse(t).unwrap_or_else(|m| {
                errors.add("type", m);
                UserType::Internal
            }),
        };
        let email = match self.email.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(e) => Email::parse(e).map_err(|m| errors.add("email", m.to_string())).ok(),
        };
        let username = self.username.as_deref().and_then(|u| parse_username(u).map_err(|m| errors.add("username", m)).ok());
        let name = self.name.unwrap_or_default();
        if name.chars().count() > 300 {
            errors.add("name", "Ensure this field has no more than 300 characters.");
        }
        let phone_number = match self.phone_number.flatten().as_deref().map(str::trim) {
            None | Some("") => None,
            Some(p) => PhoneNumber::parse(p).map_err(|m| errors.add("phone_number", m.to_string())).ok(),
        };
        let path = self.path.as_deref().map(|p| parse_path(p, &mut errors)).unwrap_or_else(|| "users".into());
        let permissions = parse_permissions("permissions", self.permissions.as_deref().unwrap_or_default(), &mut errors);
        if self.password.as_deref() == Some("") {
            errors.add("password", "This field may not be blank.");
        }
        errors.into_result()?;
        Ok(NewUser {
            email,
            username,
            name,
            password: self.password.map(Password::new),
            is_active: self.is_active.unwrap_or(true),
            is_superuser: self.is_superuser.unwrap_or(false),
            is_staff: self.is_staff.unwrap_or(false),
            phone_number,
            user_type,
            path,
            attributes: Value::Object(self.attributes.unwrap_or_default()),
            groups: self.groups.unwrap_or_default(),
            permissions,
        })
    }

    /// Parses an update; `full` (PUT) requires `username` and `name` as authentik does.
    pub fn into_changes(self, full: bool) -> Result<UserChanges> {
        let mut errors = FieldErrors::new();
        self.check_roles(&mut errors);
        if full {
            if self.username.is_none() {
                errors.add("username", "This field is required.");
            }
            if self.name.is_none() {
                errors.add("name", "This field is required.");
            }
        }
        if self.password.is_some() {
            errors.add("password", "Use set_password/ to change a password.");
        }
        let email = self
            .email
            .as_deref()
            .map(str::trim)
            .map(|e| if e.is_empty() { None } else { Email::parse(e).map_err(|m| errors.add("email", m.to_string())).ok() });
        let username = self.username.as_deref().and_then(|u| parse_username(u).map_err(|m| errors.add("username", m)).ok());
        let user_type = self.user_type.as_deref().and_then(|t| UserType::parse(t).map_err(|m| errors.add("type", m)).ok());
        let phone_number = self.phone_number.as_ref().map(|p| match p.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(p) => PhoneNumber::parse(p).map_err(|m| errors.add("phone_number", m.to_string())).ok(),
        });
        let path = self.path.as_deref().map(|p| parse_path(p, &mut errors));
        let permissions = self.permissions.as_deref().map(|p| parse_permissions("permissions", p, &mut errors));
        if self.name.as_ref().is_some_and(|n| n.chars().count() > 300) {
            errors.add("name", "Ensure this field has no more than 300 characters.");
        }
        errors.into_result()?;
        Ok(UserChanges {
            email,
            username,
            name: self.name,
            is_active: self.is_active,
            is_superuser: self.is_superuser,
            is_staff: self.is_staff,
            phone_number,
            user_type,
            path,
            attributes: self.attributes.map(Value::Object),
            groups: self.groups,
            permissions,
        })
    }
}

/// authentik's `GroupRequest` / `PatchedGroupRequest`, plus `permissions`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupWrite {
    pub name: Option<String>,
    pub is_superuser: Option<bool>,
    pub parents: Option<Vec<Uuid>>,
    pub users: Option<Vec<i64>>,
    pub attributes: Option<Map<String, Value>>,
    /// Roles are not implemented; only an empty list is accepted.
    pub roles: Option<Vec<Uuid>>,
    /// Gatehouse: permissions granted to members (only what the caller holds; superuser-equivalent ones by superusers only).
    pub permissions: Option<Vec<String>>,
}

impl GroupWrite {
    fn parse_name(&self, required: bool, errors: &mut FieldErrors) -> Option<String> {
        match self.name.as_deref().map(str::trim) {
            None if required => {
                errors.add("name", "This field is required.");
                None
            }
            None => None,
            Some("") => {
                errors.add("name", "This field may not be blank.");
                None
            }
            Some(n) if n.chars().count() > 150 => {
                errors.add("name", "Ensure this field has no more than 150 characters.");
                None
            }
            Some(n) => Some(n.to_owned()),
        }
    }

    fn check_roles(&self, errors: &mut FieldErrors) {
        if self.roles.as_ref().is_some_and(|r| !r.is_empty()) {
            errors.add("roles", "Roles are not supported by this server; send an empty list.");
        }
    }

    /// Parses a create request.
    pub fn into_new_group(self) -> Result<NewGroup> {
        let mut errors = FieldErrors::new();
        let name = self.parse_name(true, &mut errors);
        self.check_roles(&mut errors);
        let permissions = parse_permissions("permissions", self.permissions.as_deref().unwrap_or_default(), &mut errors);
        errors.into_result()?;
        Ok(NewGroup {
            name: name.unwrap_or_default(),
            is_superuser: self.is_superuser.unwrap_or(false),
            parents: self.parents.unwrap_or_default(),
            users: self.users.unwrap_or_default(),
            attributes: Value::Object(self.attributes.unwrap_or_default()),
            permissions,
        })
    }

    /// Parses an update; `full` (PUT) requires `name`.
    pub fn into_changes(self, full: bool) -> Result<GroupChanges> {
        let mut errors = FieldErrors::new();
        let name = self.parse_name(full, &mut errors);
        self.check_roles(&mut errors);
        let permissions = self.permissions.as_deref().map(|p| parse_permissions("permissions", p, &mut errors));
        errors.into_result()?;
        Ok(GroupChanges {
            name,
            is_superuser: self.is_superuser,
            parents: self.parents,
            users: self.users,
            attributes: self.attributes.map(Value::Object),
            permissions,
        })
    }
}

/// authentik's `UserAccountRequest`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UserAccountRequest {
    pub pk: i64,
}

/// authentik's `UserPasswordSetRequest`.
#[derive(Deserialize, ToSchema)]
pub struct UserPasswordSetRequest {
    pub password: String,
}

/// Renders users with their groups and direct permissions in a fixed number of queries.
pub async fn render_users(state: &crate::state::AppState, users: Vec<user::Model>) -> Result<Vec<UserOut>> {
    let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let mut groups = super::groups::groups_of_users(&state.db, state.tenant, &ids).await?;
    let mut permissions = super::users::direct_permissions(&state.db, state.tenant, &ids).await?;
    let rights = super::access::account_rights(&state.db, state.tenant, &ids).await?;
    Ok(users
        .into_iter()
        .map(|u| {
            let g = groups.remove(&u.id).unwrap_or_default();
            let p = permissions.remove(&u.id).unwrap_or_default();
            let is_superuser = rights.get(&u.id).is_some_and(|r| r.held.superuser);
            UserOut::new(u, &g, p, is_superuser, &state.secret)
        })
        .collect())
}

/// Renders one user.
pub async fn render_user(state: &crate::state::AppState, user: user::Model) -> Result<UserOut> {
    render_users(state, vec![user]).await?.pop().ok_or_else(|| crate::error::Error::internal("rendering lost a user"))
}

impl GroupOut {
    /// What a reader that may see only `visible_users` and `visible_groups` (and no rights) is
    /// shown: a device's agent reading the directory.
    pub fn within(mut self, visible_users: &std::collections::BTreeSet<i64>, visible_groups: &std::collections::BTreeSet<Uuid>) -> Self {
        self.users.retain(|id| visible_users.contains(id));
        if let Some(members) = &mut self.users_obj {
            members.retain(|u| visible_users.contains(&u.pk));
        }
        self.parents.retain(|id| visible_groups.contains(id));
        self.parents_obj.retain(|g| visible_groups.contains(&g.pk));
        self.children.retain(|id| visible_groups.contains(id));
        self.children_obj.retain(|g| visible_groups.contains(&g.pk));
        self.permissions.clear();
        self
    }
}

/// authentik's `UserServiceAccountRequest`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserServiceAccountRequest {
    pub name: String,
    #[serde(default)]
    pub create_group: bool,
    #[serde(default = "default_true")]
    pub expiring: bool,
    /// If not provided, valid for 360 days.
    pub expires: Option<DateTime<Utc>>,
}

fn default_true() -> bool {
    true
}

/// authentik's `UserServiceAccountResponse`: the account and its app password, shown once.
#[derive(Serialize, ToSchema)]
pub struct UserServiceAccountResponse {
    pub username: String,
    pub token: String,
    pub user_uid: String,
    pub user_pk: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_pk: Option<String>,
}

/// authentik's `Permission`.
#[derive(Serialize, ToSchema)]
pub struct PermissionOut {
    pub id: u32,
    pub name: String,
    pub codename: String,
    pub model: String,
    pub app_label: String,
    pub app_label_verbose: String,
    pub model_verbose: String,
}

impl From<super::permissions::KnownPermission> for PermissionOut {
    fn from(p: super::permissions::KnownPermission) -> Self {
        Self {
            id: p.id,
            name: p.name.to_owned(),
            codename: p.codename().to_owned(),
            model: p.model.to_owned(),
            app_label: p.app_label().to_owned(),
            app_label_verbose: p.app_label_verbose.to_owned(),
            model_verbose: p.model_verbose.to_owned(),
        }
    }
}
