//! Storage and rules of the accounts domain. Every function is scoped to a tenant, and every
//! change runs in one transaction together with its audit event.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use gatehouse_types::{Email, PhoneNumber};
use sea_orm::sea_query::ExprTrait;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, IntoActiveModel, Order, QueryFilter, QuerySelect, Set,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::entities::{group, group_member, group_parent, group_permission, user, user_permission};
use super::password::{self, Password};
use super::permissions::Permission;
use crate::db::pagination::{ListParams, Paginated, fetch_page, ilike};
use crate::error::{Error, FieldErrors, Result};
use crate::events::client::ClientInfo;
use crate::events::{self, Action, EventRecord, ModelRef};
use crate::state::AppState;
use crate::tenants::TenantId;

/// authentik's user types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserType {
    Internal,
    External,
    ServiceAccount,
    InternalServiceAccount,
}

impl UserType {
    /// Parses authentik's name for the type.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "internal" => Ok(Self::Internal),
            "external" => Ok(Self::External),
            "service_account" => Ok(Self::ServiceAccount),
            "internal_service_account" => Ok(Self::InternalServiceAccount),
            other => {
                Err(format!("\"{other}\" is not a valid choice; choose internal, external, service_account or internal_service_account."))
            }
        }
    }

    /// authentik's name for the type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Internal => "internal",
            Self::External => "external",
            Self::ServiceAccount => "service_account",
            Self::InternalServiceAccount => "internal_service_account",
        }
    }
}

/// A username: 1 to 150 letters, digits and `@ . + - _`.
pub fn parse_username(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    let valid =
        !trimmed.is_empty() && trimmed.chars().count() <= 150 && trimmed.chars().all(|c| c.is_alphanumeric() || "@.+-_".contains(c));
    if valid {
        Ok(trimmed.to_owned())
    } else {
        Err("Enter a valid username: at most 150 letters, digits and @/./+/-/_ characters.".to_owned())
    }
}

/// Who is making a change, for the audit trail.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user: Option<user::Model>,
    pub client: Option<ClientInfo>,
}

impl Actor {
    /// A change made from the command line or by the server itself.
    pub fn system() -> Self {
        Self { user: None, client: None }
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

/// Everything a user can be created with; all values already parsed.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: Option<Email>,
    pub username: Option<String>,
    pub name: String,
    pub password: Option<Password>,
    pub is_active: bool,
    pub is_superuser: bool,
    pub is_staff: bool,
    pub phone_number: Option<PhoneNumber>,
    pub user_type: UserType,
    pub path: String,
    pub attributes: Value,
    pub groups: Vec<Uuid>,
    pub permissions: Vec<Permission>,
}

impl NewUser {
    /// An active internal user with just an e-mail address.
    pub fn with_email(email: Email) -> Self {
        Self { email: Some(email), ..Self::without_email() }
    }

    /// An active internal user with nothing set; internal users still need an e-mail address.
    pub fn without_email() -> Self {
        Self {
            email: None,
            username: None,
            name: String::new(),
            password: None,
            is_active: true,
            is_superuser: false,
            is_staff: false,
            phone_number: None,
            user_type: UserType::Internal,
            path: "users".into(),
            attributes: json!({}),
            groups: Vec::new(),
            permissions: Vec::new(),
        }
    }
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub email: Option<Option<Email>>,
    pub username: Option<String>,
    pub name: Option<String>,
    pub is_active: Option<bool>,
    pub is_superuser: Option<bool>,
    pub is_staff: Option<bool>,
    pub phone_number: Option<Option<PhoneNumber>>,
    pub user_type: Option<UserType>,
    pub path: Option<String>,
    pub attributes: Option<Value>,
    pub groups: Option<Vec<Uuid>>,
    pub permissions: Option<Vec<Permission>>,
}

/// The audit view of a user: what changes are diffed on. Never holds the password hash.
pub fn audit_json(user: &user::Model) -> Value {
    json!({
        "email": user.email,
        "username": user.username,
        "name": user.name,
        "is_active": user.is_active,
        "is_superuser": user.is_superuser,
        "is_staff": user.is_staff,
        "phone_number": user.phone_number,
        "type": user.user_type,
        "path": user.path,
        "attributes": user.attributes,
    })
}

fn user_ref(user: &user::Model) -> ModelRef {
    ModelRef { app: "authentik_core", model_name: "user", pk: json!(user.id), name: user.username.clone() }
}

fn group_ref(group: &group::Model) -> ModelRef {
    ModelRef { app: "authentik_core", model_name: "group", pk: json!(group.group_uuid), name: group.name.clone() }
}

async fn check_user_unique(
    db: &impl ConnectionTrait,
    tenant: TenantId,
    email_key: Option<&str>,
    username_key: Option<&str>,
    except: Option<i64>,
    errors: &mut FieldErrors,
) -> Result<()> {
    if let Some(email_key) = email_key {
        let mut query = user::Entity::find().filter(user::Column::TenantId.eq(tenant.0)).filter(user::Column::EmailKey.eq(email_key));
        if let Some(id) = except {
            query = query.filter(user::Column::Id.ne(id));
        }
        if query.one(db).await?.is_some() {
            errors.add("email", "A user with this email address already exists.");
        }
    }
    if let Some(username_key) = username_key {
        let mut query = user::Entity::find().filter(user::Column::TenantId.eq(tenant.0)).filter(user::Column::UsernameKey.eq(username_key));
        if let Some(id) = except {
            query = query.filter(user::Column::Id.ne(id));
        }
        if query.one(db).await?.is_some() {
            errors.add("username", "A user with that username already exists.");
        }
    }
    Ok(())
}

/// Adds DRF's "does not exist" message for every wanted key that was not found.
fn report_missing<T: Eq + std::hash::Hash + std::fmt::Display>(field: &str, wanted: &[T], found: &HashSet<T>, errors: &mut FieldErrors) {
    for id in wanted.iter().filter(|id| !found.contains(id)) {
        errors.add(field, format!("Invalid pk \"{id}\" - object does not exist."));
    }
}

/// Fails unless every group exists in the tenant.
async fn check_groups_exist(
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

/// Creates a user with its groups and permissions and records `model_created`.
pub async fn create_user(state: &AppState, actor: &Actor, new: NewUser) -> Result<user::Model> {
    let tenant = state.tenant;
    let mut errors = FieldErrors::new();
    if new.email.is_none() && matches!(new.user_type, UserType::Internal | UserType::External) {
        errors.add("email", "This field is required.");
    }
    let username = match (&new.username, &new.email) {
        (Some(username), _) => username.clone(),
        (None, Some(email)) => email.as_str().to_owned(),
        (None, None) => {
            errors.add("username", "This field is required.");
            String::new()
        }
    };
    if let Some(password) = &new.password {
        let context: Vec<&str> = [username.as_str(), new.name.as_str()].into_iter().chain(new.email.as_ref().map(Email::as_str)).collect();
        if let Err(problems) = password::check_policy(&state.config.passwords, password, &context) {
            for problem in problems {
                errors.add("password", problem);
            }
        }
    }
    let password_hash = match &new.password {
        Some(password) if errors.is_empty() => Some(password::hash_blocking(password.clone()).await?),
        _ => None,
    };
    let now = Utc::now();
    let txn = crate::db::begin_write(&state.db).await?;
    let email_key = new.email.as_ref().map(Email::normalized);
    check_user_unique(&txn, tenant, email_key.as_deref(), Some(&username.to_lowercase()), None, &mut errors).await?;
    check_groups_exist(&txn, tenant, "groups", &new.groups, &mut errors).await?;
    errors.into_result()?;
    let created = user::ActiveModel {
        uuid: Set(Uuid::new_v4()),
        tenant_id: Set(tenant.0),
        username_key: Set(username.to_lowercase()),
        username: Set(username),
        email: Set(new.email.as_ref().map(|e| e.as_str().to_owned()).unwrap_or_default()),
        email_key: Set(email_key),
        name: Set(new.name),
        password: Set(password_hash),
        password_change_date: Set(now),
        is_active: Set(new.is_active),
        is_superuser: Set(new.is_superuser),
        is_staff: Set(new.is_staff),
        phone_number: Set(new.phone_number.map(|p| p.as_str().to_owned())),
        user_type: Set(new.user_type.as_str().to_owned()),
        path: Set(new.path),
        attributes: Set(new.attributes),
        date_joined: Set(now),
        last_login: Set(None),
        last_updated: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .map_err(unique_violation_to_field)?;
    set_user_groups(&txn, tenant, created.id, &new.groups).await?;
    set_user_permissions(&txn, tenant, created.id, &new.permissions).await?;
    let event =
        actor.event(Action::ModelCreated).about(&user_ref(&created)).with("diff", events::service::diff(&json!({}), &audit_json(&created)));
    events::service::record(&txn, state, event).await?;
    txn.commit().await?;
    Ok(created)
}

/// A unique index caught a race that the checks before the insert missed.
fn unique_violation_to_field(error: sea_orm::DbErr) -> Error {
    match error.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(message)) => {
            let field = if message.contains("username") {
                "username"
            } else if message.contains("name_key") {
                "name"
            } else {
                "email"
            };
            Error::field(field, "An object with this value already exists.")
        }
        _ => error.into(),
    }
}

async fn set_user_groups(txn: &DatabaseTransaction, tenant: TenantId, user_id: i64, groups: &[Uuid]) -> Result<()> {
    group_member::Entity::delete_many()
        .filter(group_member::Column::TenantId.eq(tenant.0))
        .filter(group_member::Column::UserId.eq(user_id))
        .exec(txn)
        .await?;
    let unique: BTreeSet<Uuid> = groups.iter().copied().collect();
    if !unique.is_empty() {
        let rows =
            unique.into_iter().map(|g| group_member::ActiveModel { tenant_id: Set(tenant.0), group_uuid: Set(g), user_id: Set(user_id) });
        group_member::Entity::insert_many(rows).exec_without_returning(txn).await?;
    }
    Ok(())
}

async fn set_user_permissions(txn: &DatabaseTransaction, tenant: TenantId, user_id: i64, permissions: &[Permission]) -> Result<()> {
    user_permission::Entity::delete_many()
        .filter(user_permission::Column::TenantId.eq(tenant.0))
        .filter(user_permission::Column::UserId.eq(user_id))
        .exec(txn)
        .await?;
    let unique: BTreeSet<&str> = permissions.iter().map(Permission::as_str).collect();
    if !unique.is_empty() {
        let rows = unique.into_iter().map(|p| user_permission::ActiveModel {
            tenant_id: Set(tenant.0),
            user_id: Set(user_id),
            permission: Set(p.to_owned()),
        });
        user_permission::Entity::insert_many(rows).exec_without_returning(txn).await?;
    }
    Ok(())
}

/// A user of the tenant by primary key.
pub async fn find_user(db: &impl ConnectionTrait, tenant: TenantId, id: i64) -> Result<Option<user::Model>> {
    Ok(user::Entity::find_by_id(id).filter(user::Column::TenantId.eq(tenant.0)).one(db).await?)
}

/// Users of the tenant by primary key.
pub async fn find_users(db: &impl ConnectionTrait, tenant: TenantId, ids: &[i64]) -> Result<Vec<user::Model>> {
    Ok(user::Entity::find().filter(user::Column::TenantId.eq(tenant.0)).filter(user::Column::Id.is_in(ids.iter().copied())).all(db).await?)
}

/// A user of the tenant by e-mail, compared case-insensitively.
pub async fn find_user_by_email(db: &impl ConnectionTrait, tenant: TenantId, email: &Email) -> Result<Option<user::Model>> {
    Ok(user::Entity::find()
        .filter(user::Column::TenantId.eq(tenant.0))
        .filter(user::Column::EmailKey.eq(email.normalized()))
        .one(db)
        .await?)
}

/// The user whose e-mail (when `by_email`) or username (when `by_username`) is `identifier`,
/// compared case-insensitively, or exactly when `exact`. E-mail wins when both match different
/// accounts.
pub async fn find_user_by_identifier(
    db: &impl ConnectionTrait,
    tenant: TenantId,
    identifier: &str,
    by_email: bool,
    by_username: bool,
    exact: bool,
) -> Result<Option<user::Model>> {
    let key = identifier.trim().to_lowercase();
    if key.is_empty() || key.len() > 254 || !(by_email || by_username) {
        return Ok(None);
    }
    let mut condition = sea_orm::Condition::any();
    if by_email {
        condition = condition.add(user::Column::EmailKey.eq(key.clone()));
    }
    if by_username {
        condition = condition.add(user::Column::UsernameKey.eq(key.clone()));
    }
    let matches = user::Entity::find().filter(user::Column::TenantId.eq(tenant.0)).filter(condition).limit(2).all(db).await?;
    let identifier = identifier.trim();
    let found = matches
        .iter()
        .find(|u| by_email && u.email_key.as_deref() == Some(key.as_str()))
        .or_else(|| matches.iter().find(|u| by_username && u.username_key == key))
        .filter(|u| !exact || u.email == identifier || u.username == identifier);
    Ok(found.cloned())
}

/// Whether the tenant has any active superuser.
pub async fn superuser_exists(db: &impl ConnectionTrait, tenant: TenantId) -> Result<bool> {
    Ok(user::Entity::find()
        .filter(user::Column::TenantId.eq(tenant.0))
        .filter(user::Column::IsSuperuser.eq(true))
        .filter(user::Column::IsActive.eq(true))
        .one(db)
        .await?
        .is_some())
}

/// Applies changes to a user, ends its sessions when it is disabled, records `model_updated`.
pub async fn update_user(state: &AppState, actor: &Actor, id: i64, changes: UserChanges) -> Result<user::Model> {
    let tenant = state.tenant;
    let txn = crate::db::begin_write(&state.db).await?;
    let before = find_user(&txn, tenant, id).await?.ok_or(Error::NotFound)?;
    let mut errors = FieldErrors::new();
    let email_key = changes.email.as_ref().map(|e| e.as_ref().map(Email::normalized));
    if let Some(Some(key)) = &email_key {
        check_user_unique(&txn, tenant, Some(key), None, Some(id), &mut errors).await?;
    }
    if let Some(username) = &changes.username {
        check_user_unique(&txn, tenant, None, Some(&username.to_lowercase()), Some(id), &mut errors).await?;
    }
    if let Some(groups) = &changes.groups {
        check_groups_exist(&txn, tenant, "groups", groups, &mut errors).await?;
    }
    let resulting_type = changes.user_type.map(UserType::as_str).unwrap_or(&before.user_type);
    let resulting_email_missing = match &changes.email {
        Some(email) => email.is_none(),
        None => before.email_key.is_none(),
    };
    if resulting_email_missing && (resulting_type == "internal" || resulting_type == "external") {
        errors.add("email", "This field is required.");
    }
    errors.into_result()?;

    let mut model = before.clone().into_active_model();
    if let Some(email) = changes.email {
        model.email = Set(email.as_ref().map(|e| e.as_str().to_owned()).unwrap_or_default());
        model.email_key = Set(email.as_ref().map(Email::normalized));
    }
    if let Some(username) = changes.username {
        model.username_key = Set(username.to_lowercase());
        model.username = Set(username);
    }
    if let Some(name) = changes.name {
        model.name = Set(name);
    }
    if let Some(is_active) = changes.is_active {
        model.is_active = Set(is_active);
    }
    if let Some(is_superuser) = changes.is_superuser {
        model.is_superuser = Set(is_superuser);
    }
    if let Some(is_staff) = changes.is_staff {
        model.is_staff = Set(is_staff);
    }
    if let Some(phone) = changes.phone_number {
        model.phone_number = Set(phone.map(|p| p.as_str().to_owned()));
    }
    if let Some(user_type) = changes.user_type {
        model.user_type = Set(user_type.as_str().to_owned());
    }
    if let Some(path) = changes.path {
        model.path = Set(path);
    }
    if let Some(attributes) = changes.attributes {
        model.attributes = Set(attributes);
    }
    model.last_updated = Set(Utc::now());
    let after = model.update(&txn).await.map_err(unique_violation_to_field)?;
    if let Some(groups) = &changes.groups {
        set_user_groups(&txn, tenant, id, groups).await?;
    }
    if let Some(permissions) = &changes.permissions {
        set_user_permissions(&txn, tenant, id, permissions).await?;
    }
    if !after.is_active {
        crate::sessions::service::revoke_all(&txn, tenant, id, None).await?;
    }
    let mut diff = events::service::diff(&audit_json(&before), &audit_json(&after));
    if let (Some(groups), Value::Object(map)) = (&changes.groups, &mut diff) {
        map.insert("groups".into(), json!({ "new_value": groups }));
    }
    if let (Some(permissions), Value::Object(map)) = (&changes.permissions, &mut diff) {
        map.insert("permissions".into(), json!({ "new_value": permissions }));
    }
    events::service::record(&txn, state, actor.event(Action::ModelUpdated).about(&user_ref(&after)).with("diff", diff)).await?;
    crate::sessions::service::commit_invalidating(state, txn).await?;
    Ok(after)
}

/// Deletes a user (its sessions, memberships and permissions go with it) and records it.
pub async fn delete_user(state: &AppState, actor: &Actor, id: i64) -> Result<()> {
    let txn = crate::db::begin_write(&state.db).await?;
    let user = find_user(&txn, state.tenant, id).await?.ok_or(Error::NotFound)?;
    user::Entity::delete_by_id(id).exec(&txn).await?;
    events::service::record(&txn, state, actor.event(Action::ModelDeleted).about(&user_ref(&user))).await?;
    crate::sessions::service::commit_invalidating(state, txn).await?;
    Ok(())
}

/// Checks a new password against the rules, stores its hash and records `password_set`.
pub async fn set_password(state: &AppState, actor: &Actor, id: i64, password: Password) -> Result<()> {
    let user = find_user(&state.db, state.tenant, id).await?.ok_or(Error::NotFound)?;
    let context = [user.email.as_str(), user.username.as_str(), user.name.as_str()];
    if let Err(problems) = password::check_policy(&state.config.passwords, &password, &context) {
        let mut errors = FieldErrors::new();
        for problem in problems {
            errors.add("password", problem);
        }
        return Err(Error::Validation(errors));
    }
    let hash = password::hash_blocking(password).await?;
    let txn = crate::db::begin_write(&state.db).await?;
    let now = Utc::now();
    let mut model = user.clone().into_active_model();
    model.password = Set(Some(hash));
    model.password_change_date = Set(now);
    model.last_updated = Set(now);
    model.update(&txn).await?;
    events::service::record(&txn, state, actor.event(Action::PasswordSet).about(&user_ref(&user))).await?;
    txn.commit().await?;
    Ok(())
}

/// Filters of the user list.
#[derive(Debug, Default, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserFilter {
    pub email: Option<String>,
    pub username: Option<String>,
    pub name: Option<String>,
    pub is_active: Option<String>,
    pub is_superuser: Option<String>,
    /// internal, external, service_account or internal_service_account.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub user_type: Option<String>,
    pub path: Option<String>,
    pub uuid: Option<String>,
    /// Only users in the group with this uuid.
    pub groups_by_pk: Option<String>,
}

/// One page of the tenant's users.
pub async fn list_users(state: &AppState, filter: &UserFilter, params: &ListParams) -> Result<Paginated<user::Model>> {
    let tenant = state.tenant;
    let page = params.page_request(&state.config.api)?;
    let mut select = user::Entity::find().filter(user::Column::TenantId.eq(tenant.0));
    if let Some(email) = filter.email.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(user::Column::EmailKey.eq(email.trim().to_lowercase()));
    }
    if let Some(username) = filter.username.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(user::Column::UsernameKey.eq(username.trim().to_lowercase()));
    }
    if let Some(name) = filter.name.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(user::Column::Name.eq(name));
    }
    if let Some(value) = filter.is_active.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(user::Column::IsActive.eq(crate::db::pagination::parse_bool("is_active", value)?));
    }
    if let Some(value) = filter.is_superuser.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(user::Column::IsSuperuser.eq(crate::db::pagination::parse_bool("is_superuser", value)?));
    }
    if let Some(value) = filter.user_type.as_deref().filter(|v| !v.is_empty()) {
        let user_type = UserType::parse(value).map_err(|m| Error::field("type", m))?;
        select = select.filter(user::Column::UserType.eq(user_type.as_str()));
    }
    if let Some(path) = filter.path.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(user::Column::Path.eq(path));
    }
    if let Some(uuid) = filter.uuid.as_deref().filter(|v| !v.is_empty()) {
        let uuid = Uuid::parse_str(uuid).map_err(|_| Error::field("uuid", "Must be a valid UUID."))?;
        select = select.filter(user::Column::Uuid.eq(uuid));
    }
    if let Some(group) = filter.groups_by_pk.as_deref().filter(|v| !v.is_empty()) {
        let group = Uuid::parse_str(group).map_err(|_| Error::field("groups_by_pk", "Must be a valid UUID."))?;
        let members: Vec<i64> = group_member::Entity::find()
            .filter(group_member::Column::TenantId.eq(tenant.0))
            .filter(group_member::Column::GroupUuid.eq(group))
            .all(&state.db)
            .await?
            .into_iter()
            .map(|m| m.user_id)
            .collect();
        select = select.filter(user::Column::Id.is_in(members));
    }
    if let Some(pattern) = params.search_pattern() {
        select = select.filter(
            ilike(user::Column::Username, &pattern).or(ilike(user::Column::Email, &pattern)).or(ilike(user::Column::Name, &pattern)),
        );
    }
    let select = params.apply_ordering(
        select,
        &[
            ("pk", user::Column::Id),
            ("username", user::Column::Username),
            ("email", user::Column::Email),
            ("name", user::Column::Name),
            ("date_joined", user::Column::DateJoined),
            ("last_login", user::Column::LastLogin),
            ("last_updated", user::Column::LastUpdated),
            ("is_active", user::Column::IsActive),
        ],
        (user::Column::Username, Order::Asc),
        user::Column::Id,
    )?;
    fetch_page(&state.db, select, page).await
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

/// Permissions granted directly to each user, by user id.
pub async fn direct_permissions(db: &impl ConnectionTrait, tenant: TenantId, user_ids: &[i64]) -> Result<HashMap<i64, Vec<String>>> {
    let mut by_user: HashMap<i64, Vec<String>> = HashMap::new();
    for row in user_permission::Entity::find()
        .filter(user_permission::Column::TenantId.eq(tenant.0))
        .filter(user_permission::Column::UserId.is_in(user_ids.iter().copied()))
        .all(db)
        .await?
    {
        by_user.entry(row.user_id).or_default().push(row.permission);
    }
    Ok(by_user)
}

/// What a user may do: superuser (directly or through a group, including inherited groups) and
/// the union of its own and its groups' permissions.
#[derive(Debug, Clone, Default)]
pub struct EffectivePermissions {
    pub is_superuser: bool,
    pub permissions: BTreeSet<String>,
}

impl EffectivePermissions {
    /// Whether the user holds `permission` (superusers hold all).
    pub fn has(&self, permission: &str) -> bool {
        self.is_superuser || self.permissions.contains(permission)
    }
}

/// What a request needs to know about its caller's rights: effective permissions and groups.
pub async fn access_of(db: &impl ConnectionTrait, user: &user::Model) -> Result<(EffectivePermissions, Vec<group::Model>)> {
    let permissions = effective_permissions(db, user).await?;
    let groups = groups_of_users(db, TenantId(user.tenant_id), &[user.id]).await?.remove(&user.id).unwrap_or_default();
    Ok((permissions, groups))
}

/// Computes a user's effective permissions.
pub async fn effective_permissions(db: &impl ConnectionTrait, user: &user::Model) -> Result<EffectivePermissions> {
    let tenant = TenantId(user.tenant_id);
    let mut result = EffectivePermissions { is_superuser: user.is_superuser, permissions: BTreeSet::new() };
    result.permissions.extend(direct_permissions(db, tenant, &[user.id]).await?.remove(&user.id).unwrap_or_default());
    // The user's groups and all their ancestors.
    let mut frontier: Vec<Uuid> = group_member::Entity::find()
        .filter(group_member::Column::TenantId.eq(tenant.0))
        .filter(group_member::Column::UserId.eq(user.id))
        .all(db)
        .await?
        .into_iter()
        .map(|m| m.group_uuid)
        .collect();
    let mut seen: HashSet<Uuid> = HashSet::new();
    while !frontier.is_empty() {
        frontier.retain(|g| seen.insert(*g));
        if frontier.is_empty() {
            break;
        }
        let groups = group::Entity::find().filter(group::Column::GroupUuid.is_in(frontier.clone())).all(db).await?;
        result.is_superuser |= groups.iter().any(|g| g.is_superuser);
        let granted = group_permission::Entity::find()
            .filter(group_permission::Column::TenantId.eq(tenant.0))
            .filter(group_permission::Column::GroupUuid.is_in(frontier.clone()))
            .all(db)
            .await?;
        result.permissions.extend(granted.into_iter().map(|p| p.permission));
        frontier = group_parent::Entity::find()
            .filter(group_parent::Column::TenantId.eq(tenant.0))
            .filter(group_parent::Column::GroupUuid.is_in(frontier))
            .all(db)
            .await?
            .into_iter()
            .map(|p| p.parent_uuid)
            .collect();
    }
    Ok(result)
}

// ---------------------------------------------------------------------------------------------
// Groups

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

/// Creates a group with its parents, members and permissions.
pub async fn create_group(state: &AppState, actor: &Actor, new: NewGroup) -> Result<group::Model> {
    let tenant = state.tenant;
    let txn = crate::db::begin_write(&state.db).await?;
    let mut errors = FieldErrors::new();
    check_group_name_unique(&txn, tenant, &new.name, None, &mut errors).await?;
    check_groups_exist(&txn, tenant, "parents", &new.parents, &mut errors).await?;
    check_users_exist(&txn, tenant, &new.users, &mut errors).await?;
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
    .insert(&txn)
    .await
    .map_err(unique_violation_to_field)?;
    replace_group_relations(&txn, tenant, created.group_uuid, Some(&new.parents), Some(&new.users), Some(&new.permissions)).await?;
    let diff = events::service::diff(&json!({}), &group_audit_json(&created));
    events::service::record(&txn, state, actor.event(Action::ModelCreated).about(&group_ref(&created)).with("diff", diff)).await?;
    crate::sessions::service::commit_invalidating(state, txn).await?;
    Ok(created)
}

/// A group of the tenant.
pub async fn find_group(db: &impl ConnectionTrait, tenant: TenantId, id: Uuid) -> Result<Option<group::Model>> {
    Ok(group::Entity::find_by_id(id).filter(group::Column::TenantId.eq(tenant.0)).one(db).await?)
}

/// Applies changes to a group.
pub async fn update_group(state: &AppState, actor: &Actor, id: Uuid, changes: GroupChanges) -> Result<group::Model> {
    let tenant = state.tenant;
    let txn = crate::db::begin_write(&state.db).await?;
    let before = find_group(&txn, tenant, id).await?.ok_or(Error::NotFound)?;
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
    let diff = events::service::diff(&group_audit_json(&before), &group_audit_json(&after));
    events::service::record(&txn, state, actor.event(Action::ModelUpdated).about(&group_ref(&after)).with("diff", diff)).await?;
    crate::sessions::service::commit_invalidating(state, txn).await?;
    Ok(after)
}

/// Deletes a group.
pub async fn delete_group(state: &AppState, actor: &Actor, id: Uuid) -> Result<()> {
    let txn = crate::db::begin_write(&state.db).await?;
    let group = find_group(&txn, state.tenant, id).await?.ok_or(Error::NotFound)?;
    group::Entity::delete_by_id(id).exec(&txn).await?;
    events::service::record(&txn, state, actor.event(Action::ModelDeleted).about(&group_ref(&group))).await?;
    crate::sessions::service::commit_invalidating(state, txn).await?;
    Ok(())
}

/// Adds or removes one member; `NotFound` when the user does not exist.
pub async fn change_membership(state: &AppState, actor: &Actor, group_id: Uuid, user_id: i64, add: bool) -> Result<()> {
    let tenant = state.tenant;
    let txn = crate::db::begin_write(&state.db).await?;
    let group = find_group(&txn, tenant, group_id).await?.ok_or(Error::NotFound)?;
    let user = find_user(&txn, tenant, user_id).await?.ok_or(Error::NotFound)?;
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
    let change = if add { "added" } else { "removed" };
    let diff = json!({ "users": { change: [user.id] } });
    events::service::record(&txn, state, actor.event(Action::ModelUpdated).about(&group_ref(&group)).with("diff", diff)).await?;
    crate::sessions::service::commit_invalidating(state, txn).await?;
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
pub async fn list_groups(state: &AppState, filter: &GroupFilter, params: &ListParams) -> Result<Paginated<group::Model>> {
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
            .filter(user::Column::UsernameKey.eq(username.to_lowercase()))
            .one(&state.db)
            .await?;
        member_ids.get_or_insert_with(Vec::new).extend(found.map(|u| u.id).into_iter().chain(std::iter::once(-1)));
    }
    if let Some(ids) = member_ids {
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
        user::Entity::find().filter(user::Column::Id.is_in(user_ids)).all(db).await?.into_iter().map(|u| (u.id, u)).collect()
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

/// Time helper for API parsing.
pub fn parse_datetime(field: &str, value: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value).map(|t| t.with_timezone(&Utc)).map_err(|_| Error::field(field, "Enter a valid date/time."))
}

/// A new service account, its group when one was asked for, and its key (shown once).
pub struct ServiceAccount {
    pub user: user::Model,
    pub group: Option<group::Model>,
    pub key: String,
}

/// Creates a service account as authentik does: a `service_account` user named `username`,
/// optionally a group of the same name, and an app password valid for 360 days unless told
/// otherwise.
pub async fn create_service_account(
    state: &AppState,
    actor: &Actor,
    username: String,
    create_group: bool,
    expiring: bool,
    expires: Option<DateTime<Utc>>,
) -> Result<ServiceAccount> {
    let identifier: String = format!("service-account-{username}-password")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .collect();
    if crate::tokens::service::find(&state.db, state.tenant, &identifier).await?.is_some() {
        return Err(Error::field("name", "A service account with this name existed before; its token identifier is taken."));
    }
    let mut new = NewUser::without_email();
    new.username = Some(username.clone());
    new.name = username.clone();
    new.user_type = UserType::ServiceAccount;
    new.path = "goauthentik.io/service-accounts".into();
    let user = create_user(state, actor, new).await.map_err(|e| match e {
        Error::Validation(errors) if errors.fields().contains_key("username") => {
            Error::field("name", "A user with that username already exists.")
        }
        other => other,
    })?;
    // The account, its group and its key are written by three services; should a later step
    // fail, the earlier ones are undone so the request leaves nothing behind.
    match finish_service_account(state, actor, &user, &username, identifier, create_group, expiring, expires).await {
        Ok((group, key)) => Ok(ServiceAccount { user, group, key }),
        Err(error) => {
            if let Err(cleanup) = delete_user(state, actor, user.id).await {
                tracing::error!(%cleanup, "could not undo a half-created service account");
            }
            Err(error)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn finish_service_account(
    state: &AppState,
    actor: &Actor,
    user: &user::Model,
    username: &str,
    identifier: String,
    with_group: bool,
    expiring: bool,
    expires: Option<DateTime<Utc>>,
) -> Result<(Option<group::Model>, String)> {
    let group = if with_group {
        let new = NewGroup { name: username.to_owned(), users: vec![user.id], attributes: json!({}), ..Default::default() };
        Some(create_group(state, actor, new).await.map_err(|e| match e {
            Error::Validation(errors) if errors.fields().contains_key("name") => {
                Error::field("name", "A group with this name already exists.")
            }
            other => other,
        })?)
    } else {
        None
    };
    let token = crate::tokens::service::NewToken {
        identifier,
        intent: crate::tokens::service::Intent::AppPassword,
        user_id: user.id,
        name: String::new(),
        description: format!("App password of the service account {username}"),
        managed: None,
        expiring,
        expires: expires.or_else(|| expiring.then(|| Utc::now() + chrono::TimeDelta::days(360))),
        tags: Vec::new(),
    };
    let created = crate::tokens::service::create(state, actor, token).await;
    match created {
        Ok((_, key)) => Ok((group, key.expose().to_owned())),
        Err(error) => {
            if let Some(group) = &group
                && let Err(cleanup) = delete_group(state, actor, group.group_uuid).await
            {
                tracing::error!(%cleanup, "could not undo the group of a half-created service account");
            }
            Err(error)
        }
    }
}
