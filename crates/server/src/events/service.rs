//! Recording and querying events.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::ExprTrait;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, Order, QueryFilter, Set};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::entities::event;
use crate::accounts::access::Actor;
use crate::accounts::entities::user;
use crate::accounts::permissions::names;
use crate::db::pagination::{ListParams, Paginated, contains_pattern, fetch_page, ilike};
use crate::error::Result;
use crate::events::client::ClientInfo;
use crate::state::AppState;

/// The kinds of event Gatehouse records (a subset of authentik's `EventActions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Login,
    LoginFailed,
    Logout,
    ModelCreated,
    ModelUpdated,
    ModelDeleted,
    PasswordSet,
    SecretView,
    SecretRotate,
    ConfigurationError,
    /// Someone tried something the access rule refused, such as granting rights they lack.
    SuspiciousRequest,
    /// A user let an application sign them in (an authorization code was issued).
    AuthorizeApplication,
}

impl Action {
    /// authentik's name for the action.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Login => "login",
            Action::LoginFailed => "login_failed",
            Action::Logout => "logout",
            Action::ModelCreated => "model_created",
            Action::ModelUpdated => "model_updated",
            Action::ModelDeleted => "model_deleted",
            Action::PasswordSet => "password_set",
            Action::SecretView => "secret_view",
            Action::SecretRotate => "secret_rotate",
            Action::ConfigurationError => "configuration_error",
            Action::SuspiciousRequest => "suspicious_request",
            Action::AuthorizeApplication => "authorize_application",
        }
    }
}

/// The model an event is about, in authentik's `context.model` shape.
#[derive(Debug, Clone)]
pub struct ModelRef {
    pub app: &'static str,
    pub model_name: &'static str,
    pub pk: Value,
    pub name: String,
}

impl ModelRef {
    fn to_json(&self) -> Value {
        json!({ "app": self.app, "model_name": self.model_name, "pk": self.pk, "name": self.name })
    }
}

/// An event about to be written.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub action: Action,
    pub user: Option<user::Model>,
    pub client: Option<ClientInfo>,
    pub context: Map<String, Value>,
}

impl EventRecord {
    /// An event of `action` with no user, client or context yet.
    pub fn new(action: Action) -> Self {
        Self { action, user: None, client: None, context: Map::new() }
    }

    /// Who acted.
    pub fn by(mut self, user: &user::Model) -> Self {
        self.user = Some(user.clone());
        self
    }

    /// From where.
    pub fn from_client(mut self, client: &ClientInfo) -> Self {
        self.client = Some(client.clone());
        self
    }

    /// Adds a context entry.
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.context.insert(key.to_owned(), value);
        self
    }

    /// Adds the `model` context entry.
    pub fn about(self, model: &ModelRef) -> Self {
        self.with("model", model.to_json())
    }
}

/// Fields whose values never appear in an event, only the fact that they changed.
const SECRET_FIELDS: [&str; 4] = ["password", "key", "token", "secret"];

/// A `{"field": {"previous_value": .., "new_value": ..}}` diff of two JSON objects, with secret
/// fields masked.
pub fn diff(before: &Value, after: &Value) -> Value {
    let empty = Map::new();
    let before = before.as_object().unwrap_or(&empty);
    let after = after.as_object().unwrap_or(&empty);
    let mut changes = Map::new();
    let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for key in keys {
        let old = before.get(key).unwrap_or(&Value::Null);
        let new = after.get(key).unwrap_or(&Value::Null);
        if old != new {
            let show = |v: &Value| if names_a_secret(key) { masked() } else { mask_secrets(v) };
            changes.insert(key.clone(), json!({ "previous_value": show(old), "new_value": show(new) }));
        }
    }
    Value::Object(changes)
}

fn masked() -> Value {
    Value::String("********".into())
}

/// Whether a field's name says it holds a secret (`password`, `api_key`, `Token`, …).
fn names_a_secret(key: &str) -> bool {
    let key = key.to_lowercase();
    SECRET_FIELDS.iter().any(|s| key.contains(s))
}

/// `value` with every field at any depth whose name says it holds a secret masked: attributes
/// are free-form, so a secret may sit anywhere in them.
fn mask_secrets(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), if names_a_secret(k) { masked() } else { mask_secrets(v) })).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(mask_secrets).collect()),
        other => other.clone(),
    }
}

/// Writes an event on `db` (a connection or the caller's transaction).
pub async fn record(db: &impl ConnectionTrait, state: &AppState, record: EventRecord) -> Result<event::Model> {
    let now = Utc::now();
    let mut context = record.context;
    if let Some(client) = &record.client
        && !context.contains_key("http_request")
    {
        context.insert("http_request".into(), json!({ "user_agent": client.user_agent }));
    }
    let user_json =
        record.user.as_ref().map(|u| json!({ "pk": u.id, "email": u.email, "username": u.username })).unwrap_or_else(|| json!({}));
    let model = event::ActiveModel {
        event_uuid: Set(Uuid::new_v4()),
        tenant_id: Set(state.tenant.0),
        action: Set(record.action.as_str().to_owned()),
        app: Set("gatehouse".to_owned()),
        user_id: Set(record.user.as_ref().map(|u| u.id)),
        user: Set(user_json),
        // Context may quote the outside (a provider's answer): PostgreSQL refuses U+0000.
        context: Set({
            let mut context = Value::Object(context);
            crate::json::replace_controls(&mut context);
            context
        }),
        client_ip: Set(record.client.as_ref().and_then(ClientInfo::ip_text)),
        created: Set(now),
        expires: Set(now + state.config.events.retention.to_chrono()),
        brand: Set(json!({})),
    };
    Ok(model.insert(db).await?)
}

/// Filters of the event list.
#[derive(Debug, Default, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventFilter {
    /// Exact action, e.g. `login_failed`.
    pub action: Option<String>,
    /// Comma-separated actions.
    pub actions: Option<String>,
    /// Username of the acting user (case-insensitive substring, as authentik).
    pub username: Option<String>,
    /// Primary key of the acting user.
    pub user: Option<String>,
    /// Exact client address.
    pub client_ip: Option<String>,
    /// Only events created after this time (ISO 8601).
    #[serde(rename = "created__gt")]
    #[param(rename = "created__gt")]
    pub created_after: Option<String>,
    /// Only events created before this time (ISO 8601).
    #[serde(rename = "created__lt")]
    #[param(rename = "created__lt")]
    pub created_before: Option<String>,
}

fn parse_time(field: &str, value: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| crate::error::Error::field(field, "Enter a valid date/time in ISO 8601 form, e.g. 2026-01-31T12:00:00Z."))
}

/// One page of a tenant's events, newest first by default.
/// Needs `authentik_events.view_event`.
pub async fn list(state: &AppState, actor: &Actor, filter: &EventFilter, params: &ListParams) -> Result<Paginated<event::Model>> {
    actor.require(names::VIEW_EVENT)?;
    let tenant = state.tenant;
    let page = params.page_request(&state.config.api)?;
    let mut select = event::Entity::find().filter(event::Column::TenantId.eq(tenant.0));
    if let Some(action) = filter.action.as_deref().filter(|a| !a.is_empty()) {
        select = select.filter(event::Column::Action.eq(action));
    }
    if let Some(actions) = filter.actions.as_deref().filter(|a| !a.is_empty()) {
        select = select.filter(event::Column::Action.is_in(actions.split(',').map(str::trim)));
    }
    if let Some(user) = filter.user.as_deref().filter(|u| !u.is_empty()) {
        let pk: i64 = user.parse().map_err(|_| crate::error::Error::field("user", "A valid integer is required."))?;
        select = select.filter(event::Column::UserId.eq(pk));
    }
    if let Some(pattern) = filter.username.as_deref().and_then(contains_pattern) {
        let users = user::Entity::find().filter(user::Column::TenantId.eq(tenant.0)).filter(ilike(user::Column::Username, &pattern));
        let ids: Vec<i64> = users.all(&state.db).await?.into_iter().map(|u| u.id).collect();
        select = select.filter(event::Column::UserId.is_in(ids));
    }
    if let Some(ip) = filter.client_ip.as_deref().filter(|i| !i.is_empty()) {
        let ip: std::net::IpAddr =
            ip.parse().map_err(|_| crate::error::Error::field("client_ip", "Enter a valid IPv4 or IPv6 address."))?;
        select = select.filter(event::Column::ClientIp.eq(ip.to_string()));
    }
    if let Some(after) = filter.created_after.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(event::Column::Created.gt(parse_time("created__gt", after)?));
    }
    if let Some(before) = filter.created_before.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(event::Column::Created.lt(parse_time("created__lt", before)?));
    }
    if let Some(pattern) = params.search_pattern() {
        select = select.filter(ilike(event::Column::Action, &pattern).or(ilike(event::Column::ClientIp, &pattern)));
    }
    let select = params.apply_ordering(
        select,
        &[("created", event::Column::Created), ("action", event::Column::Action), ("client_ip", event::Column::ClientIp)],
        (event::Column::Created, Order::Desc),
        event::Column::EventUuid,
    )?;
    fetch_page(&state.db, select, page).await
}

/// One event of a tenant.
/// One event of the tenant; needs `authentik_events.view_event`.
pub async fn get(state: &AppState, actor: &Actor, id: Uuid) -> Result<event::Model> {
    actor.require(names::VIEW_EVENT)?;
    event::Entity::find_by_id(id)
        .filter(event::Column::TenantId.eq(state.tenant.0))
        .one(&state.db)
        .await?
        .ok_or(crate::error::Error::NotFound)
}

/// Deletes events past their expiry; returns how many.
pub async fn purge_expired(db: &impl ConnectionTrait) -> Result<u64> {
    let result = event::Entity::delete_many().filter(event::Column::Expires.lt(Utc::now())).exec(db).await?;
    Ok(result.rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_lists_changes_and_masks_secrets() {
        let before = json!({"name": "A", "password": "old-hash", "same": 1});
        let after = json!({"name": "B", "password": "new-hash", "same": 1});
        let changes = diff(&before, &after);
        assert_eq!(changes["name"], json!({"previous_value": "A", "new_value": "B"}));
        assert_eq!(changes["password"]["new_value"], "********");
        assert!(changes.get("same").is_none());
        assert!(!changes.to_string().contains("hash"));
    }

    #[test]
    fn nested_attributes_that_name_secrets_are_masked_at_any_depth() {
        let before = json!({"attributes": {}});
        let after = json!({"attributes": {"ldap": {"bind_Password": "p1", "servers": [{"API_KEY": "k1", "host": "ldap.example.com"}]}, "Token": "t1"}});
        let changes = diff(&before, &after);
        let text = changes.to_string();
        for secret in ["p1", "k1", "t1"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(changes["attributes"]["new_value"]["ldap"]["servers"][0]["host"], "ldap.example.com");
        assert_eq!(changes["attributes"]["new_value"]["ldap"]["bind_Password"], "********");
    }
}
