//! Agent connectors: how agents on devices talk to this server (how often they check in, how
//! long the tokens issued to them live, which key signs the endpoint stage's challenges, the
//! offsets of Unix ids), under their permissions.

use chrono::Utc;
use gatehouse_types::DurationString;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, Order, QueryFilter, Set};
use serde_json::{Value, json};
use uuid::Uuid;

use super::access_groups::parse_name;
use super::entities::connector;
use crate::accounts::access::Actor;
use crate::accounts::permissions::names;
use crate::db::pagination::{ListParams, Paginated, fetch_page, ilike, parse_bool};
use crate::error::{Error, FieldErrors, Result};
use crate::events::{self, Action, ModelRef};
use crate::state::AppState;
use crate::tenants::TenantId;

/// The largest uid or gid offset: Unix ids are 32-bit and authentik caps the offsets at
/// `i32::MAX`.
pub const LONGEST_OFFSET: i64 = 2_147_483_647;

/// The durations a connector holds, their defaults (authentik's) and whether zero is allowed.
const DURATIONS: [(&str, &str, bool); 4] = [
    ("snapshot_expiry", "hours=24", false),
    ("auth_session_duration", "hours=8", false),
    ("refresh_interval", "minutes=30", false),
    ("challenge_idle_timeout", "seconds=5", true),
];

/// Filters of the connector list, as authentik names them.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConnectorFilter {
    /// Exact name.
    pub name: Option<String>,
    /// `true` or `false`.
    pub enabled: Option<String>,
}

/// authentik's `AgentConnectorRequest` and its patched form: absent fields keep their value (or
/// take their default on creation).
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectorRequest {
    /// The connector's id; may be chosen on creation only.
    pub connector_uuid: Option<Uuid>,
    pub name: Option<String>,
    pub enabled: Option<bool>,
    /// How long a device's reported facts are kept (`hours=24`).
    pub snapshot_expiry: Option<String>,
    /// How long tokens issued to a device's user live (`hours=8`).
    pub auth_session_duration: Option<String>,
    pub auth_terminate_session_on_expiry: Option<bool>,
    /// How often agents check in and refresh their configuration (`minutes=30`).
    pub refresh_interval: Option<String>,
    /// The flow a device's user authorises through.
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<Uuid>)]
    pub authorization_flow: Option<Option<Uuid>>,
    pub nss_uid_offset: Option<i64>,
    pub nss_gid_offset: Option<i64>,
    /// The certificate-key pair whose key signs the endpoint stage's challenges.
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<Uuid>)]
    pub challenge_key: Option<Option<Uuid>>,
    /// How long the sign-in page waits for the agent's answer (`seconds=5`).
    pub challenge_idle_timeout: Option<String>,
    pub challenge_trigger_check_in: Option<bool>,
    /// Not offered: only an empty list is accepted.
    pub jwt_federation_providers: Option<Vec<i64>>,
}

pub(super) fn connector_ref(connector: &connector::Model) -> ModelRef {
    ModelRef {
        app: "authentik_endpoints_connectors_agent",
        model_name: "agentconnector",
        pk: json!(connector.id),
        name: connector.name.clone(),
    }
}

fn shown(connector: &connector::Model) -> Value {
    json!({
        "name": connector.name,
        "enabled": connector.enabled,
        "snapshot_expiry": connector.snapshot_expiry,
        "auth_session_duration": connector.auth_session_duration,
        "auth_terminate_session_on_expiry": connector.auth_terminate_session_on_expiry,
        "refresh_interval": connector.refresh_interval,
        "authorization_flow": connector.authorization_flow_id,
        "nss_uid_offset": connector.nss_uid_offset,
        "nss_gid_offset": connector.nss_gid_offset,
        "challenge_key": connector.challenge_key_id,
        "challenge_idle_timeout": connector.challenge_idle_timeout,
        "challenge_trigger_check_in": connector.challenge_trigger_check_in,
    })
}

/// The web form authentik edits agent connectors with.
pub const AGENT_CONNECTOR_COMPONENT: &str = "ak-endpoints-connector-agent-form";
/// What authentik calls an agent connector, one and several.
pub const AGENT_CONNECTOR_NAME: &str = "Agent Connector";
pub const AGENT_CONNECTOR_NAME_PLURAL: &str = "Agent Connectors";
/// authentik's model name of agent connectors.
pub const AGENT_CONNECTOR_MODEL: &str = "authentik_endpoints_connectors_agent.agentconnector";

/// authentik's generic `Connector` shape of `connector`, as the stage API embeds it.
pub fn generic_shape(connector: &connector::Model) -> Value {
    json!({
        "connector_uuid": connector.id,
        "name": connector.name,
        "enabled": connector.enabled,
        "component": AGENT_CONNECTOR_COMPONENT,
        "verbose_name": AGENT_CONNECTOR_NAME,
        "verbose_name_plural": AGENT_CONNECTOR_NAME_PLURAL,
        "meta_model_name": AGENT_CONNECTOR_MODEL,
    })
}

pub(super) async fn find(db: &impl ConnectionTrait, tenant: TenantId, id: Uuid) -> Result<connector::Model> {
    connector::Entity::find_by_id(id).filter(connector::Column::TenantId.eq(tenant.0)).one(db).await?.ok_or(Error::NotFound)
}

/// The connectors of the tenant among `ids` (those that exist), read for the server's own use.
pub async fn connectors_by_ids(db: &impl ConnectionTrait, tenant: TenantId, ids: &[Uuid]) -> Result<Vec<connector::Model>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(connector::Entity::find()
        .filter(connector::Column::TenantId.eq(tenant.0))
        .filter(connector::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?)
}

/// One page of connectors; needs the view permission.
pub async fn list(state: &AppState, actor: &Actor, filter: &ConnectorFilter, params: &ListParams) -> Result<Paginated<connector::Model>> {
    actor.require(names::VIEW_AGENT_CONNECTOR)?;
    let page = params.page_request(&state.config.api)?;
    let mut select = connector::Entity::find().filter(connector::Column::TenantId.eq(state.tenant.0));
    if let Some(name) = filter.name.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(connector::Column::Name.eq(name));
    }
    if let Some(enabled) = filter.enabled.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(connector::Column::Enabled.eq(parse_bool("enabled", enabled)?));
    }
    if let Some(pattern) = params.search_pattern() {
        select = select.filter(ilike(connector::Column::Name, &pattern));
    }
    let select = params.apply_ordering(
        select,
        &[("name", connector::Column::Name), ("connector_uuid", connector::Column::Id)],
        (connector::Column::Name, Order::Asc),
        connector::Column::Id,
    )?;
    fetch_page(&state.db, select, page).await
}

/// The connector `id`; needs the view permission.
pub async fn get(state: &AppState, actor: &Actor, id: Uuid) -> Result<connector::Model> {
    actor.require(names::VIEW_AGENT_CONNECTOR)?;
    find(&state.db, state.tenant, id).await
}

/// Applies `request` to `row` (a new connector's defaults or the current one), checking every
/// field.
async fn apply(
    state: &AppState,
    actor: &Actor,
    row: &mut connector::ActiveModel,
    creating: bool,
    request: &ConnectorRequest,
    full: bool,
) -> Result<()> {
    let mut errors = FieldErrors::new();
    if let Some(name) = parse_name(request.name.as_deref(), full || creating, &mut errors) {
        row.name = Set(name);
    }
    if let Some(enabled) = request.enabled {
        row.enabled = Set(enabled);
    }
    if let Some(terminate) = request.auth_terminate_session_on_expiry {
        row.auth_terminate_session_on_expiry = Set(terminate);
    }
    if let Some(trigger) = request.challenge_trigger_check_in {
        row.challenge_trigger_check_in = Set(trigger);
    }
    let given = [&request.snapshot_expiry, &request.auth_session_duration, &request.refresh_interval, &request.challenge_idle_timeout];
    for ((field, default, zero_allowed), given) in DURATIONS.into_iter().zip(given) {
        let text = match given {
            Some(text) => text.as_str(),
            None if creating => default,
            None => continue,
        };
        let duration = match DurationString::parse(text) {
            Ok(duration) => duration,
            Err(error) => {
                errors.add(field, format!("Invalid duration: {error}."));
                continue;
            }
        };
        // Agents count these in whole seconds: less than one would reach them as zero.
        if !zero_allowed && duration.as_micros() < 1_000_000 {
            errors.add(field, "Give a duration of at least one second.");
            continue;
        }
        let value = Set(duration.to_string());
        match field {
            "snapshot_expiry" => row.snapshot_expiry = value,
            "auth_session_duration" => row.auth_session_duration = value,
            "refresh_interval" => row.refresh_interval = value,
            _ => row.challenge_idle_timeout = value,
        }
    }
    for (field, given, column) in [
        ("nss_uid_offset", request.nss_uid_offset, &mut row.nss_uid_offset),
        ("nss_gid_offset", request.nss_gid_offset, &mut row.nss_gid_offset),
    ] {
        match given {
            Some(offset) if !(0..=LONGEST_OFFSET).contains(&offset) => {
                errors.add(field, format!("Give a number from 0 to {LONGEST_OFFSET}."));
            }
            Some(offset) => *column = Set(offset),
            None => {}
        }
    }
    if let Some(choice) = request.authorization_flow {
        match choice {
            Some(id) if crate::flows::flow_service::flows_by_id(&state.db, state.tenant, &[id]).await?.is_empty() => {
                errors.add("authorization_flow", format!("Invalid pk \"{id}\" - object does not exist."));
            }
            choice => row.authorization_flow_id = Set(choice),
        }
    }
    if let Some(choice) = request.challenge_key {
        match choice {
            None => row.challenge_key_id = Set(None),
            Some(id) => {
                // The key signs what agents trust: only one the actor may see.
                actor.require(names::VIEW_CERTIFICATE_KEY_PAIR)?;
                match challenge_key_problem(&state.db, state.tenant, id).await? {
                    Some(problem) => errors.add("challenge_key", problem),
                    None => row.challenge_key_id = Set(Some(id)),
                }
            }
        }
    }
    if request.jwt_federation_providers.as_ref().is_some_and(|v| !v.is_empty()) {
        errors.add("jwt_federation_providers", "Federation from OAuth2 providers is not offered; leave this empty.");
    }
    errors.into_result()
}

/// Why the pair `id` cannot sign challenges, if it cannot.
async fn challenge_key_problem(db: &impl ConnectionTrait, tenant: TenantId, id: Uuid) -> Result<Option<String>> {
    let Some(pair) = crate::crypto::service::pair_by_id(db, tenant, id).await? else {
        return Ok(Some(format!("Invalid pk \"{id}\" - object does not exist.")));
    };
    if pair.private_key_sealed.is_none() {
        return Ok(Some("This certificate has no private key to sign with.".into()));
    }
    if crate::crypto::jwt::algorithm_of(&pair)?.is_none() {
        return Ok(Some("This key cannot sign tokens; use RSA, EC P-256 or P-384, or Ed25519.".into()));
    }
    Ok(None)
}

/// Creates a connector, with authentik's defaults for what the request leaves out; needs the add
/// permission.
pub async fn create(state: &AppState, actor: &Actor, request: &ConnectorRequest) -> Result<connector::Model> {
    actor.require(names::ADD_AGENT_CONNECTOR)?;
    let now = Utc::now();
    let mut row = connector::ActiveModel {
        id: Set(request.connector_uuid.unwrap_or_else(Uuid::new_v4)),
        tenant_id: Set(state.tenant.0),
        enabled: Set(true),
        auth_terminate_session_on_expiry: Set(false),
        authorization_flow_id: Set(None),
        nss_uid_offset: Set(1000),
        nss_gid_offset: Set(1000),
        challenge_key_id: Set(None),
        challenge_trigger_check_in: Set(false),
        created: Set(now),
        last_updated: Set(now),
        ..Default::default()
    };
    apply(state, actor, &mut row, true, request, true).await?;
    let txn = crate::db::begin_write(&state.db).await?;
    let created = row.insert(&txn).await.map_err(|error| match error.sql_err() {
        // Ids are unique across tenants: the answer must not tell whether another has it.
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => {
            Error::field("connector_uuid", "This id cannot be used; leave it out for a new one.")
        }
        _ => error.into(),
    })?;
    let diff = events::service::diff(&json!({}), &shown(&created));
    events::service::record(&txn, state, actor.event(Action::ModelCreated).about(&connector_ref(&created)).with("diff", diff)).await?;
    txn.commit().await?;
    Ok(created)
}

/// Changes the connector `id`; needs the change permission. `full` (PUT) requires the name.
pub async fn update(state: &AppState, actor: &Actor, id: Uuid, request: &ConnectorRequest, full: bool) -> Result<connector::Model> {
    actor.require(names::VIEW_AGENT_CONNECTOR)?;
    let before = find(&state.db, state.tenant, id).await?;
    actor.require(names::CHANGE_AGENT_CONNECTOR)?;
    if request.connector_uuid.is_some_and(|given| given != before.id) {
        return Err(Error::field("connector_uuid", "A connector's id cannot change."));
    }
    let mut row = before.clone().into_active_model();
    apply(state, actor, &mut row, false, request, full).await?;
    row.last_updated = Set(Utc::now());
    let txn = crate::db::begin_write(&state.db).await?;
    // Still there: a deletion that came meanwhile wins.
    find(&txn, state.tenant, id).await?;
    let after = row.update(&txn).await?;
    let diff = events::service::diff(&shown(&before), &shown(&after));
    events::service::record(&txn, state, actor.event(Action::ModelUpdated).about(&connector_ref(&after)).with("diff", diff)).await?;
    super::cache::commit_change(state, txn).await?;
    Ok(after)
}

/// Deletes the connector `id` and its enrollment tokens; needs the delete permission.
pub async fn delete(state: &AppState, actor: &Actor, id: Uuid) -> Result<()> {
    actor.require(names::VIEW_AGENT_CONNECTOR)?;
    let txn = crate::db::begin_write(&state.db).await?;
    let connector = find(&txn, state.tenant, id).await?;
    actor.require(names::DELETE_AGENT_CONNECTOR)?;
    connector::Entity::delete_by_id(connector.id).exec(&txn).await?;
    events::service::record(&txn, state, actor.event(Action::ModelDeleted).about(&connector_ref(&connector))).await?;
    super::cache::commit_change(state, txn).await?;
    Ok(())
}

/// What refers to the connector `id`: its enrollment tokens and the devices enrolled through
/// it, whose connections (with their tokens and facts) go with it.
pub async fn used_by(state: &AppState, actor: &Actor, id: Uuid) -> Result<Vec<crate::tokens::api::UsedBy>> {
    let connector = get(state, actor, id).await?;
    let mut used = super::enrollment::of_connector(&state.db, state.tenant, connector.id).await?;
    used.extend(super::devices::connected_to(&state.db, state.tenant, connector.id).await?);
    Ok(used)
}
