//! Applications: what people launch, each signed in by at most one provider. Everyone signed in
//! may list them (no application has access policies yet, so each is open to all, as in
//! authentik without bindings); creating, changing and deleting need their permissions, and
//! attaching a provider needs the right to see providers.

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, Order, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::entities::{application, provider};
use crate::accounts::access::Actor;
use crate::accounts::permissions::names;
use crate::db::pagination::{ListParams, Paginated, fetch_page, ilike};
use crate::error::{Error, FieldErrors, Result};
use crate::events::{self, Action, ModelRef};
use crate::flows::model::PolicyEngineMode;
use crate::state::AppState;
use crate::tenants::TenantId;

const LONGEST_SLUG: usize = 50;
/// Slugs that would make an issuer (`/application/o/<slug>/`) one of the provider endpoints.
const RESERVED_SLUGS: [&str; 8] = ["authorize", "token", "userinfo", "introspect", "revoke", "device", "end-session", "jwks"];
const LONGEST_TEXT: usize = 255;
const LONGEST_URL: usize = 2000;
const LONGEST_DESCRIPTION: usize = 10_000;

/// authentik's `ApplicationRequest` and `PatchedApplicationRequest`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplicationRequest {
    pub name: Option<String>,
    /// Letters, digits, `-` and `_`; used in URLs.
    pub slug: Option<String>,
    /// The provider that signs people in to this application.
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<i64>)]
    pub provider: Option<Option<i64>>,
    /// Not offered: only an empty list is accepted.
    pub backchannel_providers: Option<Vec<i64>>,
    pub open_in_new_tab: Option<bool>,
    /// An http or https URL.
    pub meta_launch_url: Option<String>,
    /// An http or https URL, or a path on this server.
    pub meta_icon: Option<String>,
    pub meta_description: Option<String>,
    pub meta_publisher: Option<String>,
    pub policy_engine_mode: Option<PolicyEngineMode>,
    pub group: Option<String>,
    pub meta_hide: Option<bool>,
}

/// Filters of the application list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApplicationFilter {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub group: Option<String>,
    pub meta_description: Option<String>,
    pub meta_launch_url: Option<String>,
    pub meta_publisher: Option<String>,
    /// Only applications with a launch URL.
    pub only_with_launch_url: Option<bool>,
    /// Accepted for authentik's clients; every application is listed to everyone signed in.
    pub superuser_full_list: Option<bool>,
    /// Accepted for authentik's clients; every application is open to every user.
    pub for_user: Option<i64>,
}

/// An application as the API shows it, with its provider.
#[derive(Debug, Clone)]
pub struct ApplicationView {
    pub application: application::Model,
    pub provider: Option<provider::Model>,
}

fn application_ref(app: &application::Model) -> ModelRef {
    ModelRef { app: "authentik_core", model_name: "application", pk: json!(app.id.to_string()), name: app.name.clone() }
}

fn shown(app: &application::Model) -> Value {
    json!({
        "name": app.name,
        "slug": app.slug,
        "provider": app.provider_id,
        "open_in_new_tab": app.open_in_new_tab,
        "meta_launch_url": app.meta_launch_url,
        "meta_icon": app.meta_icon,
        "meta_description": app.meta_description,
        "meta_publisher": app.meta_publisher,
        "policy_engine_mode": app.policy_engine_mode,
        "group": app.group_name,
        "meta_hide": app.meta_hide,
    })
}

fn bounded(field: &'static str, text: &str, longest: usize, errors: &mut FieldErrors) -> Option<String> {
    if text.chars().count() > longest {
        errors.add(field, format!("Ensure this field has no more than {longest} characters."));
        return None;
    }
    Some(text.to_owned())
}

/// A launch URL or icon people's browsers will follow: http or https only, never a script.
fn web_url(field: &'static str, text: &str, allow_path: bool, errors: &mut FieldErrors) -> Option<String> {
    let text = text.trim();
    if text.is_empty() {
        return Some(String::new());
    }
    let text = bounded(field, text, LONGEST_URL, errors)?;
    let is_path = allow_path && text.starts_with('/') && !text.starts_with("//");
    let is_web = url::Url::parse(&text).is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some());
    if !(is_path || is_web) {
        errors.add(field, if allow_path { "Enter an http or https URL, or a path on this server." } else { "Enter an http or https URL." });
        return None;
    }
    Some(text)
}

/// Applies `request` to `row`, checking every field.
async fn apply(
    state: &AppState,
    actor: &Actor,
    row: &mut application::ActiveModel,
    current: Option<&application::Model>,
    request: &ApplicationRequest,
    full: bool,
) -> Result<()> {
    let mut errors = FieldErrors::new();
    let creating = current.is_none();
    for (present, field) in [(request.name.is_some(), "name"), (request.slug.is_some(), "slug")] {
        if !present && (full || creating) {
            errors.add(field, "This field is required.");
        }
    }
    if let Some(name) = &request.name {
        match name.trim() {
            "" => errors.add("name", "This field may not be blank."),
            name => {
                if let Some(name) = bounded("name", name, LONGEST_TEXT, &mut errors) {
                    row.name = Set(name);
                }
            }
        }
    }
    if let Some(slug) = &request.slug {
        if slug.is_empty() || !slug.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            errors.add("slug", "Enter a valid \"slug\" consisting of letters, numbers, underscores or hyphens.");
        } else if RESERVED_SLUGS.contains(&slug.to_ascii_lowercase().as_str()) {
            errors.add("slug", "This slug names one of the server's own endpoints; choose another.");
        } else if let Some(slug) = bounded("slug", slug, LONGEST_SLUG, &mut errors) {
            row.slug = Set(slug);
        }
    }
    if let Some(choice) = request.provider {
        match choice {
            None => row.provider_id = Set(None),
            Some(id) => {
                actor.require(names::VIEW_OAUTH2_PROVIDER)?;
                if super::providers::exists(&state.db, state.tenant, id).await? {
                    row.provider_id = Set(Some(id));
                } else {
                    errors.add("provider", format!("Invalid pk \"{id}\" - object does not exist."));
                }
            }
        }
    }
    if request.backchannel_providers.as_ref().is_some_and(|v| !v.is_empty()) {
        errors.add("backchannel_providers", "Backchannel providers are not offered; leave this empty.");
    }
    if let Some(open) = request.open_in_new_tab {
        row.open_in_new_tab = Set(open);
    }
    if let Some(url) = &request.meta_launch_url
        && let Some(url) = web_url("meta_launch_url", url, false, &mut errors)
    {
        row.meta_launch_url = Set(url);
    }
    if let Some(icon) = &request.meta_icon
        && let Some(icon) = web_url("meta_icon", icon, true, &mut errors)
    {
        row.meta_icon = Set(icon);
    }
    if let Some(text) = &request.meta_description
        && let Some(text) = bounded("meta_description", text, LONGEST_DESCRIPTION, &mut errors)
    {
        row.meta_description = Set(text);
    }
    if let Some(text) = &request.meta_publisher
        && let Some(text) = bounded("meta_publisher", text, LONGEST_TEXT, &mut errors)
    {
        row.meta_publisher = Set(text);
    }
    if let Some(mode) = request.policy_engine_mode {
        row.policy_engine_mode = Set(mode.as_str().to_owned());
    }
    if let Some(group) = &request.group
        && let Some(group) = bounded("group", group, LONGEST_TEXT, &mut errors)
    {
        row.group_name = Set(group);
    }
    if let Some(hide) = request.meta_hide {
        row.meta_hide = Set(hide);
    }
    errors.into_result()
}

fn unique_clash(error: sea_orm::DbErr) -> Error {
    match error.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(message)) if message.contains("provider") => {
            Error::field("provider", "application with this provider already exists.")
        }
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => Error::field("slug", "Application with this slug already exists."),
        _ => error.into(),
    }
}

async fn find(db: &impl ConnectionTrait, tenant: TenantId, slug: &str) -> Result<application::Model> {
    application::Entity::find()
        .filter(application::Column::TenantId.eq(tenant.0))
        .filter(application::Column::Slug.eq(slug))
        .one(db)
        .await?
        .ok_or(Error::NotFound)
}

async fn view(db: &impl ConnectionTrait, tenant: TenantId, application: application::Model) -> Result<ApplicationView> {
    let ids: Vec<i64> = application.provider_id.into_iter().collect();
    let provider = super::providers::by_ids(db, tenant, &ids).await?.into_values().next();
    Ok(ApplicationView { application, provider })
}

/// The most applications a person's page lists.
const MOST_ON_A_PAGE: u64 = 200;

/// The applications people can launch from their page: those with a launch address that are not
/// hidden, by name.
pub async fn launchable(state: &AppState) -> Result<Vec<application::Model>> {
    Ok(application::Entity::find()
        .filter(application::Column::TenantId.eq(state.tenant.0))
        .filter(application::Column::MetaLaunchUrl.ne(""))
        .filter(application::Column::MetaHide.eq(false))
        .order_by_asc(application::Column::Name)
        .limit(MOST_ON_A_PAGE)
        .all(&state.db)
        .await?)
}

/// The applications `ids` with their providers, by id.
pub async fn views_by_ids(db: &impl ConnectionTrait, tenant: TenantId, ids: &[Uuid]) -> Result<HashMap<Uuid, ApplicationView>> {
    let applications = application::Entity::find()
        .filter(application::Column::TenantId.eq(tenant.0))
        .filter(application::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?;
    let provider_ids: Vec<i64> = applications.iter().filter_map(|a| a.provider_id).collect();
    let providers = super::providers::by_ids(db, tenant, &provider_ids).await?;
    Ok(applications
        .into_iter()
        .map(|application| {
            let provider = application.provider_id.and_then(|id| providers.get(&id).cloned());
            (application.id, ApplicationView { application, provider })
        })
        .collect())
}

/// One page of applications; open to everyone signed in.
pub async fn list(state: &AppState, filter: &ApplicationFilter, params: &ListParams) -> Result<Paginated<ApplicationView>> {
    let page = params.page_request(&state.config.api)?;
    let mut select = application::Entity::find().filter(application::Column::TenantId.eq(state.tenant.0));
    for (value, column) in [
        (&filter.name, application::Column::Name),
        (&filter.slug, application::Column::Slug),
        (&filter.group, application::Column::GroupName),
        (&filter.meta_description, application::Column::MetaDescription),
        (&filter.meta_launch_url, application::Column::MetaLaunchUrl),
        (&filter.meta_publisher, application::Column::MetaPublisher),
    ] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            select = select.filter(column.eq(value));
        }
    }
    if filter.only_with_launch_url == Some(true) {
        select = select.filter(application::Column::MetaLaunchUrl.ne(""));
    }
    if let Some(pattern) = params.search_pattern() {
        select = select.filter(
            sea_orm::Condition::any().add(ilike(application::Column::Name, &pattern)).add(ilike(application::Column::Slug, &pattern)),
        );
    }
    let select = params.apply_ordering(
        select,
        &[("name", application::Column::Name), ("slug", application::Column::Slug), ("group", application::Column::GroupName)],
        (application::Column::Name, Order::Asc),
        application::Column::Id,
    )?;
    let page = fetch_page(&state.db, select, page).await?;
    let ids: Vec<i64> = page.results.iter().filter_map(|a| a.provider_id).collect();
    let providers: HashMap<i64, provider::Model> = super::providers::by_ids(&state.db, state.tenant, &ids).await?;
    Ok(page
        .map(|application| ApplicationView { provider: application.provider_id.and_then(|id| providers.get(&id).cloned()), application }))
}

/// The application `slug`; open to everyone signed in.
pub async fn get(state: &AppState, slug: &str) -> Result<ApplicationView> {
    view(&state.db, state.tenant, find(&state.db, state.tenant, slug).await?).await
}

/// Creates an application; needs the add permission.
pub async fn create(state: &AppState, actor: &Actor, request: &ApplicationRequest) -> Result<ApplicationView> {
    actor.require(names::ADD_APPLICATION)?;
    let mut row = application::ActiveModel {
        id: Set(Uuid::new_v4()),
        tenant_id: Set(state.tenant.0),
        provider_id: Set(None),
        open_in_new_tab: Set(false),
        meta_launch_url: Set(String::new()),
        meta_icon: Set(String::new()),
        meta_description: Set(String::new()),
        meta_publisher: Set(String::new()),
        policy_engine_mode: Set(PolicyEngineMode::Any.as_str().to_owned()),
        group_name: Set(String::new()),
        meta_hide: Set(false),
        created: Set(Utc::now()),
        ..Default::default()
    };
    apply(state, actor, &mut row, None, request, true).await?;
    let txn = crate::db::begin_write(&state.db).await?;
    let created = row.insert(&txn).await.map_err(unique_clash)?;
    events::service::record(&txn, state, actor.event(Action::ModelCreated).about(&application_ref(&created))).await?;
    super::cache::commit_change(state, txn).await?;
    view(&state.db, state.tenant, created).await
}

/// Changes the application `slug` (name and slug required when `full`); needs the change
/// permission.
pub async fn update(state: &AppState, actor: &Actor, slug: &str, request: &ApplicationRequest, full: bool) -> Result<ApplicationView> {
    actor.require(names::CHANGE_APPLICATION)?;
    let before = find(&state.db, state.tenant, slug).await?;
    let mut row = before.clone().into_active_model();
    apply(state, actor, &mut row, Some(&before), request, full).await?;
    let txn = crate::db::begin_write(&state.db).await?;
    let after = row.update(&txn).await.map_err(unique_clash)?;
    let event = actor
        .event(Action::ModelUpdated)
        .about(&application_ref(&after))
        .with("diff", events::service::diff(&shown(&before), &shown(&after)));
    events::service::record(&txn, state, event).await?;
    super::cache::commit_change(state, txn).await?;
    view(&state.db, state.tenant, after).await
}

/// Deletes the application `slug`; its provider stays. Needs the delete permission.
pub async fn delete(state: &AppState, actor: &Actor, slug: &str) -> Result<()> {
    actor.require(names::DELETE_APPLICATION)?;
    let txn = crate::db::begin_write(&state.db).await?;
    let app = find(&txn, state.tenant, slug).await?;
    application::Entity::delete_by_id(app.id).exec(&txn).await?;
    events::service::record(&txn, state, actor.event(Action::ModelDeleted).about(&application_ref(&app))).await?;
    super::cache::commit_change(state, txn).await?;
    Ok(())
}

/// The application `slug` and its provider, for the provider's public endpoints.
pub async fn with_provider(
    db: &impl ConnectionTrait,
    tenant: TenantId,
    slug: &str,
) -> Result<Option<(application::Model, provider::Model)>> {
    let application = match find(db, tenant, slug).await {
        Ok(application) => application,
        Err(Error::NotFound) => return Ok(None),
        Err(error) => return Err(error),
    };
    let Some(provider_id) = application.provider_id else { return Ok(None) };
    let provider = super::providers::by_ids(db, tenant, &[provider_id]).await?.remove(&provider_id);
    Ok(provider.map(|provider| (application, provider)))
}
