//! Users: creating, changing, listing and deleting accounts. Every change runs in one
//! transaction with its audit event, and passes the access guard before it commits.

use std::collections::{BTreeSet, HashMap};

use chrono::Utc;
use gatehouse_types::{Email, PhoneNumber};
use sea_orm::sea_query::ExprTrait;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, IntoActiveModel, Order, QueryFilter, QuerySelect, Set,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::access::{Actor, Guard, Scope};
use super::entities::{group_member, user, user_permission};
use super::groups::check_groups_exist;
use super::password::{self, Password};
use super::permissions::{Permission, names};
use super::{UserType, unique_violation_to_field, user_ref};
use crate::credentials::cache::Affected;
use crate::db::pagination::{ListParams, Paginated, fetch_page, ilike};
use crate::error::{Error, FieldErrors, Result};
use crate::events::{self, Action};
use crate::state::AppState;
use crate::tenants::TenantId;

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
        "type": user.user_type.as_str(),
        "path": user.path,
        "attributes": user.attributes,
    })
}

/// The stored forms of an identifier: its key (unique per tenant) and its look-alike skeleton.
struct IdentifierForms {
    key: String,
    skeleton: String,
}

impl IdentifierForms {
    fn of(text: &str) -> Self {
        Self { key: gatehouse_types::identifier_key(text), skeleton: gatehouse_types::identifier_skeleton(text) }
    }
}

/// The two identifiers of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdentifierField {
    Email,
    Username,
}

impl IdentifierField {
    /// The request field it comes from.
    fn name(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Username => "username",
        }
    }

    fn key_column(self) -> user::Column {
        match self {
            Self::Email => user::Column::EmailKey,
            Self::Username => user::Column::UsernameKey,
        }
    }

    fn skeleton_column(self) -> user::Column {
        match self {
            Self::Email => user::Column::EmailSkeleton,
            Self::Username => user::Column::UsernameSkeleton,
        }
    }

    /// Whether `account` already holds `key` in this field.
    fn holds(self, account: &user::Model, key: &str) -> bool {
        match self {
            Self::Email => account.email_key.as_deref() == Some(key),
            Self::Username => account.username_key == key,
        }
    }

    fn taken(self) -> &'static str {
        match self {
            Self::Email => "A user with this email address already exists.",
            Self::Username => "A user with that username already exists.",
        }
    }

    fn look_alike(self) -> &'static str {
        match self {
            Self::Email => "A user with a look-alike email address already exists; choose one that reads differently.",
            Self::Username => "A user with a look-alike username already exists; choose one that reads differently.",
        }
    }
}

/// Checks a new e-mail address or username of account `except` (none for a new account): its
/// scripts and characters (ASCII only when configured), then that no other account of the
/// tenant has the same key or a look-alike skeleton. Problems go to `errors` under the field.
async fn check_identifier_free(
    db: &impl ConnectionTrait,
    state: &AppState,
    field: IdentifierField,
    text: &str,
    except: Option<i64>,
    errors: &mut FieldErrors,
) -> Result<IdentifierForms> {
    let forms = IdentifierForms::of(text);
    if let Err(problem) = gatehouse_types::check_identifier(text, state.config.identifiers.ascii_only) {
        errors.add(field.name(), problem.to_string());
        return Ok(forms);
    }
    let mut query = user::Entity::find().filter(user::Column::TenantId.eq(state.tenant.0)).filter(
        sea_orm::Condition::any().add(field.key_column().eq(forms.key.clone())).add(field.skeleton_column().eq(forms.skeleton.clone())),
    );
    if let Some(id) = except {
        query = query.filter(user::Column::Id.ne(id));
    }
    let clashes = query.limit(2).all(db).await?;
    if clashes.iter().any(|account| field.holds(account, &forms.key)) {
        errors.add(field.name(), field.taken());
    } else if !clashes.is_empty() {
        errors.add(field.name(), field.look_alike());
    }
    Ok(forms)
}

/// Creates a user with its groups and permissions and records `model_created`. Needs
/// `add_user`; the new account may hold nothing the actor may not grant.
pub async fn create_user(state: &AppState, actor: &Actor, new: NewUser) -> Result<user::Model> {
    actor.require(names::ADD_USER)?;
    super::attributes::check(&new.attributes, &state.config.api)?;
    let mut errors = FieldErrors::new();
    let username = username_of(&new, &mut errors);
    if let Some(password) = &new.password {
        let context: Vec<&str> = [username.as_str(), new.name.as_str()].into_iter().chain(new.email.as_ref().map(Email::as_str)).collect();
        if let Err(problems) = password::check_policy(&state.config.passwords, password, &context) {
            for problem in problems {
                errors.add("password", problem);
            }
        }
    }
    let password_hash = match &new.password {
        Some(password) if errors.is_empty() => Some(state.passwords.hash(password.clone()).await?),
        _ => None,
    };
    let txn = crate::db::begin_write(&state.db).await?;
    let created = insert_user(&txn, state, actor, new, username, password_hash, errors).await?;
    txn.commit().await?;
    Ok(created)
}

/// Creates a user without a password inside `txn`, for changes that create more than a user
/// and must leave nothing behind when a later step fails.
pub async fn create_user_in(txn: &DatabaseTransaction, state: &AppState, actor: &Actor, new: NewUser) -> Result<user::Model> {
    actor.require(names::ADD_USER)?;
    super::attributes::check(&new.attributes, &state.config.api)?;
    if new.password.is_some() {
        return Err(Error::internal("passwords are hashed outside transactions: use create_user"));
    }
    let mut errors = FieldErrors::new();
    let username = username_of(&new, &mut errors);
    insert_user(txn, state, actor, new, username, None, errors).await
}

/// The username a new user gets: the one given, else the e-mail address.
fn username_of(new: &NewUser, errors: &mut FieldErrors) -> String {
    if new.email.is_none() && new.user_type.needs_email() {
        errors.add("email", "This field is required.");
    }
    match (&new.username, &new.email) {
        (Some(username), _) => username.clone(),
        (None, Some(email)) => email.as_str().to_owned(),
        (None, None) => {
            errors.add("username", "This field is required.");
            String::new()
        }
    }
}

async fn insert_user(
    txn: &DatabaseTransaction,
    state: &AppState,
    actor: &Actor,
    new: NewUser,
    username: String,
    password_hash: Option<String>,
    mut errors: FieldErrors,
) -> Result<user::Model> {
    let tenant = state.tenant;
    let now = Utc::now();
    let guard = Guard::begin(txn, state, actor, Scope::default()).await?;
    let email = match &new.email {
        Some(email) => Some(check_identifier_free(txn, state, IdentifierField::Email, email.as_str(), None, &mut errors).await?),
        None => None,
    };
    let username_forms = check_identifier_free(txn, state, IdentifierField::Username, &username, None, &mut errors).await?;
    check_groups_exist(txn, tenant, "groups", &new.groups, &mut errors).await?;
    errors.into_result()?;
    let created = user::ActiveModel {
        uuid: Set(Uuid::new_v4()),
        tenant_id: Set(tenant.0),
        username_key: Set(username_forms.key),
        username_skeleton: Set(Some(username_forms.skeleton)),
        username: Set(username),
        email: Set(new.email.as_ref().map(|e| e.as_str().to_owned()).unwrap_or_default()),
        email_key: Set(email.as_ref().map(|f| f.key.clone())),
        email_skeleton: Set(email.map(|f| f.skeleton)),
        name: Set(new.name),
        password: Set(password_hash),
        password_change_date: Set(now),
        is_active: Set(new.is_active),
        is_superuser: Set(new.is_superuser),
        is_staff: Set(new.is_staff),
        phone_number: Set(new.phone_number.map(|p| p.as_str().to_owned())),
        user_type: Set(new.user_type),
        path: Set(new.path),
        attributes: Set(new.attributes),
        date_joined: Set(now),
        last_login: Set(None),
        last_updated: Set(now),
        ..Default::default()
    }
    .insert(txn)
    .await
    .map_err(unique_violation_to_field)?;
    set_user_groups(txn, tenant, created.id, &new.groups).await?;
    set_user_permissions(txn, tenant, created.id, &new.permissions).await?;
    guard.finish(txn, Scope::user(created.id)).await?;
    let event =
        actor.event(Action::ModelCreated).about(&user_ref(&created)).with("diff", events::service::diff(&json!({}), &audit_json(&created)));
    events::service::record(txn, state, event).await?;
    Ok(created)
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

/// The user `id`, as `actor` may see it: themselves, or anyone with `view_user`.
pub async fn get_user(state: &AppState, actor: &Actor, id: i64) -> Result<user::Model> {
    if !actor.is(id) {
        actor.require(names::VIEW_USER)?;
    }
    find_user(&state.db, state.tenant, id).await?.ok_or(Error::NotFound)
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
    let key = gatehouse_types::identifier_key(identifier);
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

/// Creates the tenant's first superuser, for an unattended install: nothing happens (`None`)
/// while an active superuser exists, including one that another server process starting at the
/// same moment has just created.
pub async fn bootstrap_superuser(state: &AppState, email: Email, password: Password) -> Result<Option<user::Model>> {
    if superuser_exists(&state.db, state.tenant).await? {
        return Ok(None);
    }
    if let Some(existing) = find_user_by_email(&state.db, state.tenant, &email).await? {
        return Err(Error::Conflict(format!(
            "{} already belongs to an account that is not an active superuser (pk {})",
            existing.email, existing.id
        )));
    }
    let mut new = NewUser::with_email(email);
    new.password = Some(password);
    new.is_superuser = true;
    new.is_staff = true;
    match create_user(state, &Actor::system(), new).await {
        Ok(user) => Ok(Some(user)),
        Err(error) if superuser_exists(&state.db, state.tenant).await? => {
            tracing::debug!(%error, "another process created the first superuser");
            Ok(None)
        }
        Err(error) => Err(error),
    }
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
/// Needs `change_user` and rights covering the user's; the user may gain nothing the actor may
/// not grant.
pub async fn update_user(state: &AppState, actor: &Actor, id: i64, changes: UserChanges) -> Result<user::Model> {
    actor.require(names::CHANGE_USER)?;
    if let Some(attributes) = &changes.attributes {
        super::attributes::check(attributes, &state.config.api)?;
    }
    let tenant = state.tenant;
    let txn = crate::db::begin_write(&state.db).await?;
    let guard = Guard::begin(&txn, state, actor, Scope::user(id)).await?;
    guard.may_act_on_user(id)?;
    let before = find_user(&txn, tenant, id).await?.ok_or(Error::NotFound)?;
    let mut errors = FieldErrors::new();
    let email_forms = match &changes.email {
        Some(Some(email)) => Some(check_identifier_free(&txn, state, IdentifierField::Email, email.as_str(), Some(id), &mut errors).await?),
        _ => None,
    };
    let username_forms = match &changes.username {
        Some(username) => Some(check_identifier_free(&txn, state, IdentifierField::Username, username, Some(id), &mut errors).await?),
        None => None,
    };
    if let Some(groups) = &changes.groups {
        check_groups_exist(&txn, tenant, "groups", groups, &mut errors).await?;
    }
    let resulting_type = changes.user_type.unwrap_or(before.user_type);
    let resulting_email_missing = match &changes.email {
        Some(email) => email.is_none(),
        None => before.email_key.is_none(),
    };
    if resulting_email_missing && resulting_type.needs_email() {
        errors.add("email", "This field is required.");
    }
    errors.into_result()?;

    let mut model = before.clone().into_active_model();
    if let Some(email) = changes.email {
        model.email = Set(email.as_ref().map(|e| e.as_str().to_owned()).unwrap_or_default());
        model.email_key = Set(email_forms.as_ref().map(|f| f.key.clone()));
        model.email_skeleton = Set(email_forms.map(|f| f.skeleton));
    }
    if let (Some(username), Some(forms)) = (changes.username, username_forms) {
        model.username_key = Set(forms.key);
        model.username_skeleton = Set(Some(forms.skeleton));
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
        model.user_type = Set(user_type);
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
        crate::credentials::revoke::end_sessions(&txn, state, id, None).await?;
    }
    guard.finish(&txn, Scope::default()).await?;
    let mut diff = events::service::diff(&audit_json(&before), &audit_json(&after));
    if let (Some(groups), Value::Object(map)) = (&changes.groups, &mut diff) {
        map.insert("groups".into(), json!({ "new_value": groups }));
    }
    if let (Some(permissions), Value::Object(map)) = (&changes.permissions, &mut diff) {
        map.insert("permissions".into(), json!({ "new_value": permissions }));
    }
    events::service::record(&txn, state, actor.event(Action::ModelUpdated).about(&user_ref(&after)).with("diff", diff)).await?;
    crate::credentials::revoke::commit_invalidating(state, txn, Affected::user(id)).await?;
    Ok(after)
}

/// Deletes a user (its sessions, memberships and permissions go with it) and records it.
/// Needs `delete_user` and rights covering the user's.
pub async fn delete_user(state: &AppState, actor: &Actor, id: i64) -> Result<()> {
    actor.require(names::DELETE_USER)?;
    let txn = crate::db::begin_write(&state.db).await?;
    Guard::begin(&txn, state, actor, Scope::user(id)).await?.may_act_on_user(id)?;
    let user = find_user(&txn, state.tenant, id).await?.ok_or(Error::NotFound)?;
    // Ended first, so that applications hear of it; the rows would go with the user anyway.
    crate::credentials::revoke::end_sessions(&txn, state, id, None).await?;
    user::Entity::delete_by_id(id).exec(&txn).await?;
    events::service::record(&txn, state, actor.event(Action::ModelDeleted).about(&user_ref(&user))).await?;
    crate::credentials::revoke::commit_invalidating(state, txn, Affected::user(id)).await?;
    Ok(())
}

/// Checks a new password against the rules, stores its hash, ends every other session and every
/// app password of the user in every process (neither a stolen session nor an app password made
/// with it survives a reset) and records `password_set`.
/// `current` is the session the request came with: kept when users change their own password.
/// Needs `reset_user_password` and rights covering the user's.
pub async fn set_password(state: &AppState, actor: &Actor, id: i64, password: Password, current: Option<Uuid>) -> Result<()> {
    actor.require(names::RESET_USER_PASSWORD)?;
    let user = find_user(&state.db, state.tenant, id).await?.ok_or(Error::NotFound)?;
    super::access::may_act_on(&state.db, state, actor, id).await?;
    let context = [user.email.as_str(), user.username.as_str(), user.name.as_str()];
    if let Err(problems) = password::check_policy(&state.config.passwords, &password, &context) {
        let mut errors = FieldErrors::new();
        for problem in problems {
            errors.add("password", problem);
        }
        return Err(Error::Validation(errors));
    }
    let hash = state.passwords.hash(password).await?;
    let txn = crate::db::begin_write(&state.db).await?;
    // Checked again in the transaction: the user's rights may have grown while hashing.
    super::access::may_act_on(&txn, state, actor, id).await?;
    let now = Utc::now();
    let mut model = user.clone().into_active_model();
    model.password = Set(Some(hash));
    model.password_change_date = Set(now);
    model.last_updated = Set(now);
    model.update(&txn).await?;
    let keep = current.filter(|_| actor.is(id));
    crate::credentials::revoke::end_sessions(&txn, state, id, keep).await?;
    let app_passwords = crate::credentials::revoke::end_app_passwords(&txn, state.tenant, id).await?;
    let event = actor.event(Action::PasswordSet).about(&user_ref(&user)).with("app_passwords_ended", json!(app_passwords));
    events::service::record(&txn, state, event).await?;
    crate::credentials::revoke::commit_invalidating(state, txn, Affected::user(id)).await?;
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
pub async fn list_users(state: &AppState, actor: &Actor, filter: &UserFilter, params: &ListParams) -> Result<Paginated<user::Model>> {
    actor.require(names::VIEW_USER)?;
    page_of_users(state, filter, params, None).await
}

/// One page of the users among `ids`, for a reader that may see only those accounts (a
/// device's agent): no permission is asked.
pub async fn list_users_among(
    state: &AppState,
    filter: &UserFilter,
    params: &ListParams,
    ids: &BTreeSet<i64>,
) -> Result<Paginated<user::Model>> {
    page_of_users(state, filter, params, Some(ids)).await
}

async fn page_of_users(
    state: &AppState,
    filter: &UserFilter,
    params: &ListParams,
    among: Option<&BTreeSet<i64>>,
) -> Result<Paginated<user::Model>> {
    let tenant = state.tenant;
    let page = params.page_request(&state.config.api)?;
    let mut select = user::Entity::find().filter(user::Column::TenantId.eq(tenant.0));
    if let Some(ids) = among {
        select = select.filter(user::Column::Id.is_in(ids.iter().copied()));
    }
    if let Some(email) = filter.email.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(user::Column::EmailKey.eq(gatehouse_types::identifier_key(email)));
    }
    if let Some(username) = filter.username.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(user::Column::UsernameKey.eq(gatehouse_types::identifier_key(username)));
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
        select = select.filter(user::Column::UserType.eq(user_type));
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
