//! Scope mappings (authentik's `ScopeMapping`): for each scope a provider offers, a CEL
//! expression that gives the claims a token or userinfo answer carries, and the words a consent
//! page uses for it. authentik's defaults (`openid`, `email`, `profile`, `offline_access`,
//! `entitlements`) are shipped as managed mappings; administrators write their own under the
//! scope mapping permissions, each change recorded.

use chrono::Utc;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, Order, QueryFilter, QueryOrder, Set};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::claims::Scopes;
use super::entities::provider;
use crate::accounts::access::Actor;
use crate::accounts::entities::user;
use crate::accounts::permissions::names;
use crate::db::pagination::{ListParams, Paginated, fetch_page, ilike};
use crate::error::{Error, FieldErrors, Result};
use crate::events::{self, Action, ModelRef};
use crate::mappings::entities::property_mapping;
use crate::mappings::expression::{self, Expression};
use crate::mappings::service::name_taken;
use crate::state::AppState;
use crate::tenants::TenantId;

/// The kind of property mapping that maps a scope.
const SCOPE: &str = "scope";
const LONGEST_NAME: usize = 200;
const LONGEST_SCOPE: usize = 255;
const LONGEST_DESCRIPTION: usize = 1000;

/// Claims no mapping may set: those that say who issued the token, to whom, about whom and when.
const RESERVED_CLAIMS: [&str; 22] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "at_hash",
    "c_hash",
    "s_hash",
    "sid",
    "scope",
    "client_id",
    "typ",
    "cnf",
    "events",
    "act",
];

/// A mapping the server ships.
struct Shipped {
    managed: &'static str,
    name: &'static str,
    scope_name: &'static str,
    description: &'static str,
    expression: &'static str,
    /// Whether a new provider offers it when the administrator names no mappings.
    by_default: bool,
}

const SHIPPED: [Shipped; 5] = [
    Shipped {
        managed: "goauthentik.io/providers/oauth2/scope-openid",
        name: "authentik default OAuth Mapping: OpenID 'openid'",
        scope_name: "openid",
        description: "",
        expression: "{}",
        by_default: true,
    },
    Shipped {
        managed: "goauthentik.io/providers/oauth2/scope-email",
        name: "authentik default OAuth Mapping: OpenID 'email'",
        scope_name: "email",
        description: "Email address",
        // Addresses are entered by administrators or proven at enrolment, as authentik's
        // default mapping assumes.
        expression: r#"{"email": user.email, "email_verified": true}"#,
        by_default: true,
    },
    Shipped {
        managed: "goauthentik.io/providers/oauth2/scope-profile",
        name: "authentik default OAuth Mapping: OpenID 'profile'",
        scope_name: "profile",
        description: "General Profile Information",
        expression: r#"{"name": user.name, "given_name": user.name, "preferred_username": user.username, "nickname": user.username, "groups": user.groups}"#,
        by_default: true,
    },
    Shipped {
        managed: "goauthentik.io/providers/oauth2/scope-offline_access",
        name: "authentik default OAuth Mapping: OpenID 'offline_access'",
        scope_name: "offline_access",
        description: "Access to request new tokens without interaction",
        expression: "{}",
        by_default: true,
    },
    Shipped {
        managed: "goauthentik.io/providers/oauth2/scope-entitlements",
        name: "authentik default OAuth Mapping: Application Entitlements",
        scope_name: "entitlements",
        description: "Application entitlements",
        expression: r#"{"entitlements": application.entitlements}"#,
        by_default: false,
    },
];

fn mapping_ref(mapping: &property_mapping::Model) -> ModelRef {
    ModelRef {
        app: "authentik_providers_oauth2",
        model_name: "scopemapping",
        pk: json!(mapping.id.to_string()),
        name: mapping.name.clone(),
    }
}

/// Creates the shipped mappings that are missing. The first time they are made, providers made
/// before scope mappings existed (which could not choose any) get the default ones, so they keep
/// giving the claims they gave; a provider an administrator left without mappings since is not
/// touched.
pub async fn ensure_shipped(state: &AppState, tenant: TenantId) -> Result<()> {
    let existing: Vec<String> = property_mapping::Entity::find()
        .filter(property_mapping::Column::TenantId.eq(tenant.0))
        .filter(property_mapping::Column::Managed.is_not_null())
        .all(&state.db)
        .await?
        .into_iter()
        .filter_map(|m| m.managed)
        .collect();
    let missing: Vec<&Shipped> = SHIPPED.iter().filter(|s| !existing.iter().any(|e| e == s.managed)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let first_time = !SHIPPED.iter().any(|s| existing.iter().any(|e| e == s.managed));
    for shipped in missing {
        insert_shipped(state, tenant, shipped).await?;
    }
    if first_time {
        backfill(state, tenant).await?;
    }
    Ok(())
}

/// Inserts one shipped mapping; another process making it at the same moment is no error, and a
/// mapping of an administrator's that holds its name already makes it take a name of its own.
async fn insert_shipped(state: &AppState, tenant: TenantId, shipped: &Shipped) -> Result<()> {
    for name in [shipped.name.to_owned(), format!("{} (shipped)", shipped.name)] {
        let now = Utc::now();
        let row = property_mapping::ActiveModel {
            id: Set(Uuid::new_v4()),
            tenant_id: Set(tenant.0),
            kind: Set(SCOPE.to_owned()),
            name: Set(name),
            expression: Set(shipped.expression.to_owned()),
            scope_name: Set(Some(shipped.scope_name.to_owned())),
            description: Set(shipped.description.to_owned()),
            managed: Set(Some(shipped.managed.to_owned())),
            created: Set(now),
            last_updated: Set(now),
        };
        let inserted = property_mapping::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([property_mapping::Column::TenantId, property_mapping::Column::Managed]).do_nothing().to_owned(),
            )
            .exec_without_returning(&state.db)
            .await;
        match inserted {
            Ok(_) => return Ok(()),
            Err(error) if matches!(error.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))) => {
                tracing::warn!(mapping = shipped.name, "a property mapping holds the shipped mapping's name; it is made under another");
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(Error::internal(format!("the shipped mapping {} could not be made", shipped.managed)))
}

/// Gives the default mappings to the providers made before scope mappings existed that still
/// offer none: those made before the migration that brought scope mappings was applied.
async fn backfill(state: &AppState, tenant: TenantId) -> Result<()> {
    use sea_orm::FromQueryResult;

    #[derive(FromQueryResult)]
    struct Applied {
        applied_at: i64,
    }
    let backend = state.db.get_database_backend();
    let statement = sea_orm::Statement::from_sql_and_values(
        backend,
        match backend {
            sea_orm::DatabaseBackend::Postgres => "SELECT applied_at FROM seaql_migrations WHERE version = $1",
            _ => "SELECT applied_at FROM seaql_migrations WHERE version = ?",
        },
        ["m0016_scope_mappings".into()],
    );
    let Some(applied) = Applied::find_by_statement(statement).one(&state.db).await? else { return Ok(()) };
    // `applied_at` is in whole seconds: anything made within that second came before.
    let Some(cutoff) = chrono::DateTime::from_timestamp(applied.applied_at + 1, 0) else { return Ok(()) };
    let defaults = Value::from(default_ids(&state.db, tenant).await?.into_iter().map(|id| id.to_string()).collect::<Vec<_>>());
    let txn = crate::db::begin_write(&state.db).await?;
    let older = provider::Entity::find()
        .filter(provider::Column::TenantId.eq(tenant.0))
        .filter(provider::Column::Created.lt(cutoff))
        .all(&txn)
        .await?;
    for provider in older.into_iter().filter(|p| p.property_mappings().is_empty()) {
        let mut row = provider.into_active_model();
        row.property_mappings = Set(defaults.clone());
        row.update(&txn).await?;
    }
    txn.commit().await?;
    Ok(())
}

/// The shipped mappings a new provider offers when the administrator names none.
pub async fn default_ids(db: &impl ConnectionTrait, tenant: TenantId) -> Result<Vec<Uuid>> {
    let managed: Vec<&str> = SHIPPED.iter().filter(|s| s.by_default).map(|s| s.managed).collect();
    Ok(property_mapping::Entity::find()
        .filter(property_mapping::Column::TenantId.eq(tenant.0))
        .filter(property_mapping::Column::Managed.is_in(managed))
        .all(db)
        .await?
        .into_iter()
        .map(|m| m.id)
        .collect())
}

/// Which of `ids` are not scope mappings of `tenant`.
pub async fn unknown_ids(db: &impl ConnectionTrait, tenant: TenantId, ids: &[Uuid]) -> Result<Vec<Uuid>> {
    let found: Vec<Uuid> = scope_mappings(db, tenant, ids).await?.into_iter().map(|m| m.id).collect();
    Ok(ids.iter().filter(|id| !found.contains(id)).copied().collect())
}

async fn scope_mappings(db: &impl ConnectionTrait, tenant: TenantId, ids: &[Uuid]) -> Result<Vec<property_mapping::Model>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(property_mapping::Entity::find()
        .filter(property_mapping::Column::TenantId.eq(tenant.0))
        .filter(property_mapping::Column::Kind.eq(SCOPE))
        .filter(property_mapping::Column::Id.is_in(ids.iter().copied()))
        .order_by_asc(property_mapping::Column::Name)
        .all(db)
        .await?)
}

/// What a provider offers: its scope mappings.
#[derive(Debug, Clone, Default)]
pub struct ScopeOffer {
    mappings: Vec<property_mapping::Model>,
}

impl ScopeOffer {
    /// The scope mappings `provider` names.
    pub async fn of(db: &impl ConnectionTrait, tenant: TenantId, provider: &provider::Model) -> Result<Self> {
        Ok(Self { mappings: scope_mappings(db, tenant, &provider.property_mappings()).await? })
    }

    /// Whether `scope` is offered: `openid` always, others when a mapping answers them.
    pub fn offers(&self, scope: &str) -> bool {
        scope == "openid" || self.mappings.iter().any(|m| m.scope_name.as_deref() == Some(scope))
    }

    /// The scopes offered, `openid` first, then in the order of their mappings' names, each once.
    pub fn scope_names(&self) -> Vec<String> {
        let mut names = vec!["openid".to_owned()];
        for name in self.mappings.iter().filter_map(|m| m.scope_name.clone()) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    /// What a consent page says about `scope`: the first non-empty description of its mappings.
    pub fn description(&self, scope: &str) -> Option<&str> {
        self.mappings.iter().filter(|m| m.scope_name.as_deref() == Some(scope)).map(|m| m.description.as_str()).find(|d| !d.is_empty())
    }

    /// The claims the mappings of the `granted` scopes give with `variables`, merged in mapping
    /// name order. A mapping that fails or gives anything but an object is left out and logged;
    /// claims that say who issued the token, to whom and when are never taken from a mapping.
    pub async fn claims(&self, granted: &Scopes, variables: Value) -> Map<String, Value> {
        let mut chosen: Vec<&property_mapping::Model> =
            self.mappings.iter().filter(|m| m.scope_name.as_deref().is_some_and(|s| granted.has(s))).collect();
        chosen.sort_by(|a, b| a.name.cmp(&b.name));
        let mut claims = Map::new();
        if chosen.is_empty() {
            return claims;
        }
        let expressions: Vec<Expression> = chosen.iter().map(|m| Expression::stored(&m.expression)).collect();
        let results = match expression::evaluate_all(&expressions, variables).await {
            Ok(results) => results,
            Err(reason) => {
                tracing::warn!(%reason, "scope mappings were not evaluated");
                return claims;
            }
        };
        for (mapping, result) in chosen.iter().zip(results) {
            match result {
                Ok(Value::Object(given)) => {
                    claims.extend(given.into_iter().filter(|(name, _)| !RESERVED_CLAIMS.contains(&name.as_str())));
                }
                Ok(_) => tracing::warn!(mapping = %mapping.name, "a scope mapping gave something other than an object"),
                Err(reason) => tracing::warn!(mapping = %mapping.name, %reason, "a scope mapping failed"),
            }
        }
        claims
    }
}

/// The variables a scope mapping sees: `user`, `application`, `provider` and `scopes`.
pub fn variables(
    provider: &provider::Model,
    application: Option<&super::entities::application::Model>,
    user: &user::Model,
    groups: &[String],
    scopes: &Scopes,
) -> Value {
    json!({
        "user": {
            "pk": user.id,
            "uuid": user.uuid,
            "username": user.username,
            "name": user.name,
            "email": user.email,
            "is_active": user.is_active,
            "attributes": user.attributes,
            "groups": groups,
        },
        "application": application.map(|a| json!({"pk": a.id, "slug": a.slug, "name": a.name, "entitlements": []})).unwrap_or_else(|| json!({"entitlements": []})),
        "provider": {"pk": provider.id, "name": provider.name, "client_id": provider.client_id},
        "scopes": scopes.iter().collect::<Vec<_>>(),
    })
}

/// A scope mapping as written: authentik's `ScopeMappingRequest`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScopeMappingRequest {
    /// Accepted for authentik's clients and ignored: only the server marks its own mappings.
    pub managed: Option<String>,
    pub name: Option<String>,
    /// A CEL expression giving an object of claims; it sees `user`, `application`, `provider`
    /// and `scopes`.
    pub expression: Option<String>,
    pub scope_name: Option<String>,
    pub description: Option<String>,
}

/// Filters of the scope mapping list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScopeMappingFilter {
    pub name: Option<String>,
    pub scope_name: Option<String>,
    /// Any of these managed names; authentik's clients repeat the parameter, which the query
    /// reader does not take, so the handler fills this from the raw query.
    #[serde(skip)]
    #[param(ignore)]
    pub managed: Vec<String>,
    /// `true` for the shipped mappings only, `false` for the administrators' own.
    #[serde(rename = "managed__isnull")]
    #[param(rename = "managed__isnull")]
    pub managed_isnull: Option<bool>,
}

/// A scope mapping's fields, checked.
struct Checked {
    name: String,
    expression: Expression,
    scope_name: String,
    description: String,
}

fn text_field(value: Option<&str>, field: &'static str, longest: usize, errors: &mut FieldErrors) -> Option<String> {
    match value.map(str::trim) {
        None => {
            errors.add(field, "This field is required.");
            None
        }
        Some("") => {
            errors.add(field, "This field may not be blank.");
            None
        }
        Some(text) if text.chars().count() > longest => {
            errors.add(field, format!("Ensure this field has no more than {longest} characters."));
            None
        }
        Some(text) => Some(text.to_owned()),
    }
}

async fn check(request: &ScopeMappingRequest, current: Option<&property_mapping::Model>, full: bool) -> Result<Checked> {
    let mut errors = FieldErrors::new();
    let keep = |given: &Option<String>, kept: Option<&str>| given.as_deref().or(if full { None } else { kept }).map(str::to_owned);
    let name = text_field(keep(&request.name, current.map(|c| c.name.as_str())).as_deref(), "name", LONGEST_NAME, &mut errors);
    let scope_name = text_field(
        keep(&request.scope_name, current.and_then(|c| c.scope_name.as_deref())).as_deref(),
        "scope_name",
        LONGEST_SCOPE,
        &mut errors,
    );
    if scope_name.as_deref().is_some_and(|s| s.chars().any(|c| c == ' ' || c == '"' || c == '\\' || c.is_control())) {
        errors.add("scope_name", "A scope is one word of visible characters other than \" and \\.");
    }
    let description = keep(&request.description, current.map(|c| c.description.as_str())).unwrap_or_default();
    if description.chars().count() > LONGEST_DESCRIPTION {
        errors.add("description", format!("Ensure this field has no more than {LONGEST_DESCRIPTION} characters."));
    }
    let expression = match keep(&request.expression, current.map(|c| c.expression.as_str())) {
        None => {
            errors.add("expression", "This field is required.");
            None
        }
        Some(source) => Expression::parse(&source).await.map_err(|message| errors.add("expression", message)).ok(),
    };
    match (name, expression, scope_name) {
        (Some(name), Some(expression), Some(scope_name)) if errors.is_empty() => Ok(Checked { name, expression, scope_name, description }),
        _ => Err(Error::Validation(errors)),
    }
}

async fn find(db: &impl ConnectionTrait, tenant: TenantId, id: Uuid) -> Result<property_mapping::Model> {
    scope_mappings(db, tenant, &[id]).await?.pop().ok_or(Error::NotFound)
}

/// One page of scope mappings; needs the view permission.
pub async fn list(
    state: &AppState,
    actor: &Actor,
    filter: &ScopeMappingFilter,
    params: &ListParams,
) -> Result<Paginated<property_mapping::Model>> {
    actor.require(names::VIEW_SCOPE_MAPPING)?;
    let page = params.page_request(&state.config.api)?;
    let mut select = property_mapping::Entity::find()
        .filter(property_mapping::Column::TenantId.eq(state.tenant.0))
        .filter(property_mapping::Column::Kind.eq(SCOPE));
    for (value, column) in [(&filter.name, property_mapping::Column::Name), (&filter.scope_name, property_mapping::Column::ScopeName)] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            select = select.filter(column.eq(value));
        }
    }
    let managed: Vec<&str> = filter.managed.iter().map(String::as_str).filter(|v| !v.is_empty()).collect();
    if !managed.is_empty() {
        select = select.filter(property_mapping::Column::Managed.is_in(managed));
    }
    match filter.managed_isnull {
        Some(true) => select = select.filter(property_mapping::Column::Managed.is_null()),
        Some(false) => select = select.filter(property_mapping::Column::Managed.is_not_null()),
        None => {}
    }
    if let Some(pattern) = params.search_pattern() {
        select = select.filter(
            sea_orm::Condition::any()
                .add(ilike(property_mapping::Column::Name, &pattern))
                .add(ilike(property_mapping::Column::ScopeName, &pattern)),
        );
    }
    let select = params.apply_ordering(
        select,
        &[("name", property_mapping::Column::Name), ("scope_name", property_mapping::Column::ScopeName)],
        (property_mapping::Column::Name, Order::Asc),
        property_mapping::Column::Id,
    )?;
    fetch_page(&state.db, select, page).await
}

/// The scope mapping `id`; needs the view permission.
pub async fn get(state: &AppState, actor: &Actor, id: Uuid) -> Result<property_mapping::Model> {
    actor.require(names::VIEW_SCOPE_MAPPING)?;
    find(&state.db, state.tenant, id).await
}

/// Creates a scope mapping; needs the add permission (checked before anything is parsed).
pub async fn create(state: &AppState, actor: &Actor, request: &ScopeMappingRequest) -> Result<property_mapping::Model> {
    actor.require(names::ADD_SCOPE_MAPPING)?;
    let checked = check(request, None, true).await?;
    let now = Utc::now();
    let txn = crate::db::begin_write(&state.db).await?;
    let created = property_mapping::ActiveModel {
        id: Set(Uuid::new_v4()),
        tenant_id: Set(state.tenant.0),
        kind: Set(SCOPE.to_owned()),
        name: Set(checked.name),
        expression: Set(checked.expression.as_str().to_owned()),
        scope_name: Set(Some(checked.scope_name)),
        description: Set(checked.description),
        managed: Set(None),
        created: Set(now),
        last_updated: Set(now),
    }
    .insert(&txn)
    .await
    .map_err(name_taken)?;
    events::service::record(&txn, state, actor.event(Action::ModelCreated).about(&mapping_ref(&created))).await?;
    txn.commit().await?;
    Ok(created)
}

fn shown(mapping: &property_mapping::Model) -> Value {
    json!({"name": mapping.name, "expression": mapping.expression, "scope_name": mapping.scope_name, "description": mapping.description})
}

/// Changes the scope mapping `id` (every field required when `full`); needs the change
/// permission. Shipped mappings may be changed too, as in authentik.
pub async fn update(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    request: &ScopeMappingRequest,
    full: bool,
) -> Result<property_mapping::Model> {
    actor.require(names::VIEW_SCOPE_MAPPING)?;
    let before = find(&state.db, state.tenant, id).await?;
    actor.require(names::CHANGE_SCOPE_MAPPING)?;
    let checked = check(request, Some(&before), full).await?;
    let txn = crate::db::begin_write(&state.db).await?;
    let mut row = before.clone().into_active_model();
    row.name = Set(checked.name);
    row.expression = Set(checked.expression.as_str().to_owned());
    row.scope_name = Set(Some(checked.scope_name));
    row.description = Set(checked.description);
    row.last_updated = Set(Utc::now());
    let after = row.update(&txn).await.map_err(name_taken)?;
    let diff = events::service::diff(&shown(&before), &shown(&after));
    events::service::record(&txn, state, actor.event(Action::ModelUpdated).about(&mapping_ref(&after)).with("diff", diff)).await?;
    txn.commit().await?;
    Ok(after)
}

/// Deletes the scope mapping `id` and takes it off every provider that offered it; needs the
/// delete permission.
pub async fn delete(state: &AppState, actor: &Actor, id: Uuid) -> Result<()> {
    actor.require(names::VIEW_SCOPE_MAPPING)?;
    let txn = crate::db::begin_write(&state.db).await?;
    let mapping = find(&txn, state.tenant, id).await?;
    actor.require(names::DELETE_SCOPE_MAPPING)?;
    for provider in providers_offering(&txn, state.tenant, id).await? {
        let kept: Vec<String> = provider.property_mappings().into_iter().filter(|m| *m != id).map(|m| m.to_string()).collect();
        let mut row = provider.into_active_model();
        row.property_mappings = Set(Value::from(kept));
        row.update(&txn).await?;
    }
    property_mapping::Entity::delete_by_id(mapping.id).exec(&txn).await?;
    events::service::record(&txn, state, actor.event(Action::ModelDeleted).about(&mapping_ref(&mapping))).await?;
    // Providers changed: remembered clients go.
    super::cache::commit_change(state, txn).await?;
    Ok(())
}

/// The providers that offer the mapping `id`.
pub async fn providers_offering(db: &impl ConnectionTrait, tenant: TenantId, id: Uuid) -> Result<Vec<provider::Model>> {
    // Few providers per server: their mapping lists are read rather than searched in JSON, which
    // SQLite and PostgreSQL would each do their own way.
    Ok(provider::Entity::find()
        .filter(provider::Column::TenantId.eq(tenant.0))
        .all(db)
        .await?
        .into_iter()
        .filter(|p| p.property_mappings().contains(&id))
        .collect())
}
