//! Enrolled devices: enrolment with an enrollment token, the device tokens agents call with,
//! check-ins (facts kept as expiring snapshots and merged per device) and the administration of
//! devices under their permissions.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use gatehouse_types::DurationString;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, Order, PaginatorTrait, QueryFilter, QueryOrder, Set,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::access_groups::{groups_by_ids, parse_name, parse_text};
use super::cache::KnownKey;
use super::connectors::connectors_by_ids;
use super::entities::{access_group, connection, connector, device, device_token, enrollment_token, snapshot};
use super::facts::{self, DeviceFacts};
use crate::accounts::access::Actor;
use crate::accounts::permissions::names;
use crate::db::pagination::{ListParams, Paginated, fetch_page, ilike};
use crate::error::{Error, FieldErrors, Result};
use crate::events::{self, Action, ModelRef};
use crate::secret::ServerSecret;
use crate::state::AppState;
use crate::tenants::TenantId;
use crate::tokens::key::{KeyKind, SecretKey};

/// What the digest of a device key is bound to.
const DIGEST_PURPOSE: &str = "device-token";
/// The vendor of facts this server's agent connector receives, as authentik names it.
pub const AGENT_VENDOR: &str = "goauthentik.io/platform";
/// The vendor of facts merged from every connection.
pub const MERGED_VENDOR: &str = "goauthentik.io/@merged";
/// A device whose newest report is older than this is counted unreachable.
const UNREACHABLE_AFTER: TimeDelta = TimeDelta::hours(24);

/// authentik's `EnrollRequest`.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The device's hardware serial: what it is known by.
    pub device_serial: Option<String>,
    /// Its host name: the name a new device gets.
    pub device_name: Option<String>,
}

/// An agent that proved itself with its device token.
#[derive(Debug, Clone)]
pub struct AgentCaller {
    /// The device token the agent called with.
    pub token_id: Uuid,
    pub device: device::Model,
    pub connection: connection::Model,
    pub connector: connector::Model,
}

/// The keyed digest a device key is found by.
fn key_digest(secret: &ServerSecret, key: &str) -> String {
    secret.digest(DIGEST_PURPOSE, key.as_bytes())
}

fn device_ref(device: &device::Model) -> ModelRef {
    ModelRef { app: "authentik_endpoints", model_name: "device", pk: json!(device.id), name: device.name.clone() }
}

fn shown(device: &device::Model) -> Value {
    json!({"name": device.name, "identifier": device.identifier, "access_group": device.access_group_id, "expiring": device.expiring, "expires": device.expires, "attributes": device.attributes})
}

/// Whether something that may expire (`expiring`, at `expires`) is still live at `now`.
pub(super) fn live(expiring: bool, expires: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    !expiring || expires.is_none_or(|at| at > now)
}

/// The enrollment token `text` names, if it is live and its connector enabled.
async fn enrollment_token_for(
    state: &AppState,
    text: &str,
    from: Option<std::net::IpAddr>,
) -> Result<Option<(enrollment_token::Model, connector::Model)>> {
    let Ok(key) = SecretKey::parse(text) else { return Ok(None) };
    if key.kind() != KeyKind::Enrollment {
        return Ok(None);
    }
    let digest = super::enrollment::key_digest(&state.secret, key.expose());
    // A retired enrollment key is no guess either: devices retrying with it must not use up
    // their address's allowance for API keys.
    let (db, tenant) = (state.db.clone(), state.tenant.0);
    let found = crate::tokens::service::look_up_key(state, &key, from, async move {
        Ok(enrollment_token::Entity::find()
            .filter(enrollment_token::Column::TenantId.eq(tenant))
            .filter(enrollment_token::Column::KeyDigest.eq(digest))
            .one(&db)
            .await?)
    })
    .await?;
    let Some(token) = found else { return Ok(None) };
    if !live(token.expiring, token.expires, Utc::now()) {
        return Ok(None);
    }
    let Some(connector) = connectors_by_ids(&state.db, state.tenant, &[token.connector_id]).await?.pop().filter(|c| c.enabled) else {
        return Ok(None);
    };
    Ok(Some((token, connector)))
}

/// Required text of an enrolment, without control characters.
fn enrolment_text(field: &'static str, value: Option<&str>, errors: &mut FieldErrors) -> Option<String> {
    let text = parse_text(field, value, true, errors)?;
    if text.chars().any(char::is_control) {
        errors.add(field, crate::json::CONTROL_CHARACTER);
        return None;
    }
    Some(text)
}

/// Enrols the device `request` names with the enrollment key `key_text` and returns its new
/// device key, shown this once. A device is known by its serial: a new one is created with the
/// name and the token's group; one already known keeps its name and group. Its earlier tokens
/// under this connector end in the same transaction. `None` when the key does not enrol.
pub async fn enroll(
    state: &AppState,
    key_text: &str,
    from: Option<std::net::IpAddr>,
    request: &EnrollRequest,
) -> Result<Option<SecretKey>> {
    let Some((token, connector)) = enrollment_token_for(state, key_text, from).await? else { return Ok(None) };
    let mut errors = FieldErrors::new();
    let serial = enrolment_text("device_serial", request.device_serial.as_deref(), &mut errors);
    let name = enrolment_text("device_name", request.device_name.as_deref(), &mut errors);
    let (Some(serial), Some(name)) = (serial, name) else { return Err(Error::Validation(errors)) };

    let tenant = state.tenant;
    let now = Utc::now();
    let txn = crate::db::begin_write(&state.db).await?;
    // Agents enrolling the same serial at once take turns: one creates the device, the other
    // finds it; neither makes a second.
    crate::db::lock_for_update(&txn, &format!("device-serial:{serial}"), tenant.0).await?;
    let found = device::Entity::find()
        .filter(device::Column::TenantId.eq(tenant.0))
        .filter(device::Column::Identifier.eq(serial.as_str()))
        .one(&txn)
        .await?;
    let device = match found {
        Some(device) if !live(device.expiring, device.expires, now) => return Ok(None),
        Some(device) => device,
        None => {
            let created = device::ActiveModel {
                id: Set(Uuid::new_v4()),
                tenant_id: Set(tenant.0),
                name: Set(name),
                identifier: Set(serial),
                access_group_id: Set(token.device_group_id),
                expiring: Set(false),
                expires: Set(None),
                attributes: Set(json!({})),
                created: Set(now),
                last_updated: Set(now),
            }
            .insert(&txn)
            .await
            .map_err(|error| match error.sql_err() {
                // authentik answers 500 here; the name is the field to change.
                Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => {
                    Error::field("device_name", "Another device already has this name; enrol this one under another.")
                }
                _ => error.into(),
            })?;
            let diff = events::service::diff(&json!({}), &shown(&created));
            let event = Actor::system()
                .event(Action::ModelCreated)
                .about(&device_ref(&created))
                .with("diff", diff)
                .with("enrollment_token", json!(token.id));
            events::service::record(&txn, state, event).await?;
            created
        }
    };
    let existing = connection::Entity::find()
        .filter(connection::Column::DeviceId.eq(device.id))
        .filter(connection::Column::ConnectorId.eq(connector.id))
        .one(&txn)
        .await?;
    let connection = match existing {
        Some(connection) => connection,
        None => {
            connection::ActiveModel {
                id: Set(Uuid::new_v4()),
                tenant_id: Set(tenant.0),
                device_id: Set(device.id),
                connector_id: Set(connector.id),
                created: Set(now),
            }
            .insert(&txn)
            .await?
        }
    };
    device_token::Entity::delete_many().filter(device_token::Column::ConnectionId.eq(connection.id)).exec(&txn).await?;
    let key = SecretKey::generate(KeyKind::Device);
    let token_id = Uuid::new_v4();
    device_token::ActiveModel {
        id: Set(token_id),
        tenant_id: Set(tenant.0),
        connection_id: Set(connection.id),
        key_digest: Set(key_digest(&state.secret, key.expose())),
        key_sealed: Set(Some(crate::tokens::seal::seal(&state.secret, token_id, key.expose())?)),
        expiring: Set(false),
        expires: Set(None),
        created: Set(now),
    }
    .insert(&txn)
    .await?;
    super::cache::commit_change(state, txn).await?;
    metrics::counter!("gatehouse_device_enrolments_total").increment(1);
    Ok(Some(key))
}

/// The agent `key_text` names: a live device token of a live device under an enabled
/// connector. `None` for anything else, all alike.
pub async fn authenticate(state: &AppState, key_text: &str, from: Option<std::net::IpAddr>) -> Result<Option<AgentCaller>> {
    let Ok(key) = SecretKey::parse(key_text) else { return Ok(None) };
    if key.kind() != KeyKind::Device {
        return Ok(None);
    }
    let digest = key_digest(&state.secret, key.expose());
    let now = Utc::now();
    // A key known to be good is no guess: it costs neither a reservation nor a read.
    let read_under = state.devices.changes.current();
    if let Some(known) = state.devices.keys.get(&digest, read_under) {
        return Ok(known.live_at(now).then(|| known.caller.clone()));
    }
    // Issued, so no guess: a replaced or expired token, or one of a deleted device, is refused
    // without counting against the address.
    let (db, tenant, looked_up) = (state.db.clone(), state.tenant.0, digest.clone());
    let found = crate::tokens::service::look_up_key(state, &key, from, async move {
        Ok(device_token::Entity::find()
            .filter(device_token::Column::TenantId.eq(tenant))
            .filter(device_token::Column::KeyDigest.eq(looked_up))
            .one(&db)
            .await?)
    })
    .await?;
    let Some(token) = found else { return Ok(None) };
    if !live(token.expiring, token.expires, now) {
        return Ok(None);
    }
    let Some(connection) = connection::Entity::find_by_id(token.connection_id).one(&state.db).await? else { return Ok(None) };
    let Some(device) = device::Entity::find_by_id(connection.device_id).one(&state.db).await?.filter(|d| live(d.expiring, d.expires, now))
    else {
        return Ok(None);
    };
    let Some(connector) = connectors_by_ids(&state.db, state.tenant, &[connection.connector_id]).await?.pop().filter(|c| c.enabled) else {
        return Ok(None);
    };
    let caller = AgentCaller { token_id: token.id, device, connection, connector };
    let known = KnownKey { caller: caller.clone(), key_expires: if token.expiring { token.expires } else { None } };
    state.devices.keys.put(digest, read_under, state.devices.changes.current(), std::sync::Arc::new(known));
    Ok(Some(caller))
}

/// The live device known by `serial`, and the keys of its live tokens under the connector
/// `connector_id` (opened from their sealed copies): what an answer from its agent may be keyed
/// by. `None` when there is no such device.
pub async fn live_keys_for(
    state: &AppState,
    connector_id: Uuid,
    serial: &str,
) -> Result<Option<(device::Model, Vec<zeroize::Zeroizing<String>>)>> {
    let now = Utc::now();
    let Some(device) = device::Entity::find()
        .filter(device::Column::TenantId.eq(state.tenant.0))
        .filter(device::Column::Identifier.eq(serial))
        .one(&state.db)
        .await?
        .filter(|d| live(d.expiring, d.expires, now))
    else {
        return Ok(None);
    };
    let Some(connection) = connection::Entity::find()
        .filter(connection::Column::DeviceId.eq(device.id))
        .filter(connection::Column::ConnectorId.eq(connector_id))
        .one(&state.db)
        .await?
    else {
        return Ok(None);
    };
    let tokens = device_token::Entity::find().filter(device_token::Column::ConnectionId.eq(connection.id)).all(&state.db).await?;
    let mut keys = Vec::new();
    for token in tokens.into_iter().filter(|t| live(t.expiring, t.expires, now)) {
        if let Some(sealed) = &token.key_sealed {
            keys.push(zeroize::Zeroizing::new(crate::tokens::seal::open(&state.secret, token.id, sealed)?));
        }
    }
    Ok(Some((device, keys)))
}

/// Keeps what the agent reported as its connection's snapshot, replacing the one before, until
/// the connector's `snapshot_expiry` has passed. Nothing is stored unless every fact is within
/// bounds; one statement either stores all of it or nothing.
pub async fn check_in(state: &AppState, caller: &AgentCaller, reported: &DeviceFacts) -> Result<()> {
    reported.check()?;
    let lifetime =
        DurationString::parse(&caller.connector.snapshot_expiry).map_err(|e| Error::internal(format!("a stored duration: {e}")))?;
    let now = Utc::now();
    let data = serde_json::to_value(reported).map_err(Error::internal)?;
    let row = snapshot::ActiveModel {
        id: Set(Uuid::new_v4()),
        tenant_id: Set(state.tenant.0),
        connection_id: Set(caller.connection.id),
        data: Set(data),
        created: Set(now),
        expires: Set(now + lifetime.to_chrono()),
    };
    snapshot::Entity::insert(row)
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(snapshot::Column::ConnectionId)
                .update_columns([snapshot::Column::Id, snapshot::Column::Data, snapshot::Column::Created, snapshot::Column::Expires])
                .to_owned(),
        )
        .exec(&state.db)
        .await?;
    metrics::counter!("gatehouse_device_check_ins_total").increment(1);
    Ok(())
}

/// The newest live snapshot of a connection, as the API shows it.
#[derive(Debug, Clone)]
pub struct SnapshotView {
    pub data: Value,
    pub connection: Uuid,
    pub created: DateTime<Utc>,
    pub expires: Option<DateTime<Utc>>,
    pub vendor: &'static str,
}

/// A connection with its connector and newest snapshot.
#[derive(Debug, Clone)]
pub struct ConnectionView {
    pub connection: connection::Model,
    pub connector: connector::Model,
    pub latest: Option<SnapshotView>,
}

/// A device as the API shows it: its group, its connections and its merged facts.
#[derive(Debug, Clone)]
pub struct DeviceView {
    pub device: device::Model,
    pub access_group: Option<access_group::Model>,
    pub connections: Vec<ConnectionView>,
    pub facts: Option<SnapshotView>,
}

/// The live snapshot of each of `connections` that has one.
async fn latest_snapshots(db: &impl ConnectionTrait, connections: &[Uuid], now: DateTime<Utc>) -> Result<HashMap<Uuid, snapshot::Model>> {
    if connections.is_empty() {
        return Ok(HashMap::new());
    }
    // At most one per connection: each check-in replaces the one before.
    let rows = snapshot::Entity::find()
        .filter(snapshot::Column::ConnectionId.is_in(connections.iter().copied()))
        .filter(snapshot::Column::Expires.gt(now))
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|row| (row.connection_id, row)).collect())
}

/// Views of `devices`, in a fixed number of queries whatever their number.
async fn views(db: &impl ConnectionTrait, tenant: TenantId, devices: Vec<device::Model>) -> Result<Vec<DeviceView>> {
    let now = Utc::now();
    let device_ids: Vec<Uuid> = devices.iter().map(|d| d.id).collect();
    let connections = if device_ids.is_empty() {
        Vec::new()
    } else {
        connection::Entity::find()
            .filter(connection::Column::DeviceId.is_in(device_ids))
            .order_by_asc(connection::Column::Created)
            .all(db)
            .await?
    };
    let connector_ids: Vec<Uuid> = connections.iter().map(|c| c.connector_id).collect();
    let connectors = connectors_by_ids(db, tenant, &connector_ids).await?;
    let latest = latest_snapshots(db, &connections.iter().map(|c| c.id).collect::<Vec<_>>(), now).await?;
    let group_ids: Vec<Uuid> = devices.iter().filter_map(|d| d.access_group_id).collect();
    let groups = groups_by_ids(db, tenant, &group_ids).await?;
    Ok(devices
        .into_iter()
        .map(|device| {
            let mut own: Vec<ConnectionView> = connections
                .iter()
                .filter(|c| c.device_id == device.id)
                .filter_map(|c| {
                    let connector = connectors.iter().find(|k| k.id == c.connector_id)?.clone();
                    let latest = latest.get(&c.id).map(|row| SnapshotView {
                        data: row.data.clone(),
                        connection: row.connection_id,
                        created: row.created,
                        expires: Some(row.expires),
                        vendor: AGENT_VENDOR,
                    });
                    Some(ConnectionView { connection: c.clone(), connector, latest })
                })
                .collect();
            own.sort_by_key(|c| c.latest.as_ref().map(|s| s.created));
            let reports: Vec<&SnapshotView> = own.iter().filter_map(|c| c.latest.as_ref()).collect();
            let facts = reports.last().map(|newest| SnapshotView {
                data: facts::merge(reports.iter().map(|s| s.data.clone())),
                connection: newest.connection,
                created: newest.created,
                expires: None,
                vendor: MERGED_VENDOR,
            });
            let access_group = device.access_group_id.and_then(|id| groups.iter().find(|g| g.id == id).cloned());
            DeviceView { device, access_group, connections: own, facts }
        })
        .collect())
}

/// Filters of the device list, as authentik names them.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceFilter {
    /// Exact name.
    pub name: Option<String>,
    /// Exact serial.
    pub identifier: Option<String>,
}

/// One page of devices with their merged facts; needs the view permission.
pub async fn list(state: &AppState, actor: &Actor, filter: &DeviceFilter, params: &ListParams) -> Result<Paginated<DeviceView>> {
    actor.require(names::VIEW_DEVICE)?;
    let page = params.page_request(&state.config.api)?;
    let mut select = device::Entity::find().filter(device::Column::TenantId.eq(state.tenant.0));
    if let Some(name) = filter.name.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(device::Column::Name.eq(name));
    }
    if let Some(identifier) = filter.identifier.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(device::Column::Identifier.eq(identifier));
    }
    if let Some(pattern) = params.search_pattern() {
        select = select
            .filter(sea_orm::Condition::any().add(ilike(device::Column::Name, &pattern)).add(ilike(device::Column::Identifier, &pattern)));
    }
    let select = params.apply_ordering(
        select,
        &[("identifier", device::Column::Identifier), ("name", device::Column::Name)],
        (device::Column::Identifier, Order::Asc),
        device::Column::Id,
    )?;
    let Paginated { pagination, results, autocomplete } = fetch_page(&state.db, select, page).await?;
    Ok(Paginated { pagination, results: views(&state.db, state.tenant, results).await?, autocomplete })
}

pub(super) async fn find(db: &impl ConnectionTrait, tenant: TenantId, id: Uuid) -> Result<device::Model> {
    device::Entity::find_by_id(id).filter(device::Column::TenantId.eq(tenant.0)).one(db).await?.ok_or(Error::NotFound)
}

/// The device `id` with its connections and facts; needs the view permission.
pub async fn get(state: &AppState, actor: &Actor, id: Uuid) -> Result<DeviceView> {
    actor.require(names::VIEW_DEVICE)?;
    let device = find(&state.db, state.tenant, id).await?;
    views(&state.db, state.tenant, vec![device]).await?.pop().ok_or(Error::NotFound)
}

/// authentik's `EndpointDeviceRequest` and its patched form: absent fields keep their value.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceRequest {
    /// The device's id, as clients that send the whole object back give it; it cannot change.
    pub device_uuid: Option<Uuid>,
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<Uuid>)]
    pub access_group: Option<Option<Uuid>>,
    pub expiring: Option<bool>,
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires: Option<Option<DateTime<Utc>>>,
    /// A JSON object of the operator's own.
    pub attributes: Option<Value>,
    /// The group as an object, as clients that send the whole object back give it; ignored
    /// (`access_group` chooses the group).
    #[schema(value_type = Option<Object>)]
    pub access_group_obj: Option<Value>,
}

/// Renames the device `id`, moves it to another group, sets when it expires or replaces its
/// attributes; needs the change permission.
pub async fn update(state: &AppState, actor: &Actor, id: Uuid, request: &DeviceRequest, full: bool) -> Result<DeviceView> {
    actor.require(names::VIEW_DEVICE)?;
    let before = find(&state.db, state.tenant, id).await?;
    actor.require(names::CHANGE_DEVICE)?;
    if request.device_uuid.is_some_and(|given| given != before.id) {
        return Err(Error::field("device_uuid", "A device's id cannot change."));
    }
    let mut errors = FieldErrors::new();
    let mut row = before.clone().into_active_model();
    if let Some(name) = parse_name(request.name.as_deref(), full, &mut errors) {
        row.name = Set(name);
    }
    match request.access_group {
        Some(Some(group)) if groups_by_ids(&state.db, state.tenant, &[group]).await?.is_empty() => {
            errors.add("access_group", format!("Invalid pk \"{group}\" - object does not exist."));
        }
        Some(choice) => row.access_group_id = Set(choice),
        None => {}
    }
    if let Some(expiring) = request.expiring {
        row.expiring = Set(expiring);
    }
    if let Some(expires) = request.expires {
        row.expires = Set(expires);
    }
    match &request.attributes {
        Some(value @ Value::Object(_)) => row.attributes = Set(value.clone()),
        Some(_) => errors.add("attributes", "Give a JSON object."),
        None => {}
    }
    errors.into_result()?;
    row.last_updated = Set(Utc::now());
    let txn = crate::db::begin_write(&state.db).await?;
    find(&txn, state.tenant, id).await?;
    // Moving a device into a group admits whom the group's bindings admit: only for an actor
    // who may admit each of them.
    if let Some(Some(group)) = request.access_group.filter(|choice| *choice != before.access_group_id) {
        for binding in super::bindings::bindings_of(&txn, state.tenant, group).await? {
            super::bindings::check_reach(&txn, state, actor, super::bindings::Subject::of(&binding), binding.negate).await?;
        }
    }
    let after = row.update(&txn).await.map_err(|error| match error.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => Error::field("name", "device with this name already exists."),
        _ => error.into(),
    })?;
    let diff = events::service::diff(&shown(&before), &shown(&after));
    events::service::record(&txn, state, actor.event(Action::ModelUpdated).about(&device_ref(&after)).with("diff", diff)).await?;
    super::cache::commit_change(state, txn).await?;
    views(&state.db, state.tenant, vec![after]).await?.pop().ok_or(Error::NotFound)
}

/// Deletes the device `id` with its connections, tokens and facts: its agents are refused from
/// the next request, in every process (device tokens are looked up on every call). Needs the
/// delete permission.
pub async fn delete(state: &AppState, actor: &Actor, id: Uuid) -> Result<()> {
    actor.require(names::VIEW_DEVICE)?;
    let txn = crate::db::begin_write(&state.db).await?;
    let device = find(&txn, state.tenant, id).await?;
    actor.require(names::DELETE_DEVICE)?;
    device::Entity::delete_by_id(device.id).exec(&txn).await?;
    events::service::record(&txn, state, actor.event(Action::ModelDeleted).about(&device_ref(&device))).await?;
    super::cache::commit_change(state, txn).await?;
    Ok(())
}

/// authentik's `DeviceSummary`.
#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
pub struct DeviceSummary {
    pub total_count: u64,
    /// Devices with no live report from the last day.
    pub unreachable_count: u64,
    /// Gatehouse does not track agent releases: always 0.
    pub outdated_agent_count: u64,
}

/// How many devices there are and how many have no live report from the last day; needs the
/// view permission.
pub async fn summary(state: &AppState, actor: &Actor) -> Result<DeviceSummary> {
    actor.require(names::VIEW_DEVICE)?;
    let tenant_devices = || device::Entity::find().filter(device::Column::TenantId.eq(state.tenant.0));
    let total = tenant_devices().count(&state.db).await?;
    let now = Utc::now();
    let recently_reported = sea_orm::sea_query::Query::select()
        .column(snapshot::Column::ConnectionId)
        .from(snapshot::Entity)
        .and_where(snapshot::Column::Created.gt(now - UNREACHABLE_AFTER))
        .and_where(snapshot::Column::Expires.gt(now))
        .to_owned();
    let reachable_devices = sea_orm::sea_query::Query::select()
        .column(connection::Column::DeviceId)
        .from(connection::Entity)
        .and_where(connection::Column::Id.in_subquery(recently_reported))
        .to_owned();
    let reachable = tenant_devices().filter(device::Column::Id.in_subquery(reachable_devices)).count(&state.db).await?;
    Ok(DeviceSummary { total_count: total, unreachable_count: total.saturating_sub(reachable), outdated_agent_count: 0 })
}

/// Removes fact snapshots past their expiry.
pub async fn purge_expired(db: &impl ConnectionTrait) -> Result<u64> {
    Ok(snapshot::Entity::delete_many().filter(snapshot::Column::Expires.lt(Utc::now())).exec(db).await?.rows_affected)
}

/// What an agent is told of its connector (authentik's `AgentConfig`, less the server's own
/// configuration, which the HTTP layer adds).
#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub device_id: Uuid,
    pub refresh_interval_secs: i64,
    /// The slug of the flow the device's user authorises through.
    pub authorization_flow: Option<String>,
    /// The keys the server signs device users' tokens with (the managed key, and the one it
    /// replaced while tokens it signed may live).
    pub jwks_auth: Value,
    /// The key the endpoint stage's challenges are signed with.
    pub jwks_challenge: Option<Value>,
    pub nss_uid_offset: i64,
    pub nss_gid_offset: i64,
    pub auth_terminate_session_on_expiry: bool,
}

/// The settings the agent `caller` works by.
pub async fn agent_settings(state: &AppState, caller: &AgentCaller) -> Result<AgentSettings> {
    let connector = &caller.connector;
    let refresh = DurationString::parse(&connector.refresh_interval).map_err(|e| Error::internal(format!("a stored duration: {e}")))?;
    let authorization_flow = match connector.authorization_flow_id {
        Some(id) => crate::flows::flow_service::flows_by_id(&state.db, state.tenant, &[id]).await?.remove(&id).map(|flow| flow.slug),
        None => None,
    };
    let (current, previous) = crate::crypto::service::managed_jwt_keys(state, state.tenant).await?;
    let mut keys = Vec::new();
    for pair in std::iter::once(&current).chain(previous.as_ref()) {
        keys.extend(crate::crypto::jwt::public_jwk(pair)?);
    }
    let jwks_challenge = match connector.challenge_key_id {
        Some(id) => match crate::crypto::service::pair_by_id(&state.db, state.tenant, id).await? {
            Some(pair) => crate::crypto::jwt::public_jwk(&pair)?.map(|jwk| json!({"keys": [jwk]})),
            None => None,
        },
        None => None,
    };
    Ok(AgentSettings {
        device_id: caller.device.id,
        refresh_interval_secs: refresh.as_micros() / 1_000_000,
        authorization_flow,
        jwks_auth: json!({"keys": keys}),
        jwks_challenge,
        nss_uid_offset: connector.nss_uid_offset,
        nss_gid_offset: connector.nss_gid_offset,
        auth_terminate_session_on_expiry: connector.auth_terminate_session_on_expiry,
    })
}

fn used_by_row(model_name: &str, pk: Uuid, name: String, action: &str) -> crate::tokens::api::UsedBy {
    crate::tokens::api::UsedBy {
        app: "authentik_endpoints".into(),
        model_name: model_name.into(),
        pk: pk.to_string(),
        name,
        action: action.into(),
    }
}

/// The devices enrolled through the connector `id`, as its `used_by` lists them: their
/// connections (with tokens and facts) are deleted with it.
pub(super) async fn connected_to(db: &impl ConnectionTrait, tenant: TenantId, id: Uuid) -> Result<Vec<crate::tokens::api::UsedBy>> {
    let connected = sea_orm::sea_query::Query::select()
        .column(connection::Column::DeviceId)
        .from(connection::Entity)
        .and_where(connection::Column::ConnectorId.eq(id))
        .to_owned();
    let devices = device::Entity::find()
        .filter(device::Column::TenantId.eq(tenant.0))
        .filter(device::Column::Id.in_subquery(connected))
        .order_by_asc(device::Column::Name)
        .all(db)
        .await?;
    Ok(devices.into_iter().map(|d| used_by_row("deviceconnection", d.id, d.name, "cascade")).collect())
}

/// The devices in the group `id`, as its `used_by` lists them: left without a group when it goes.
pub(super) async fn in_group(db: &impl ConnectionTrait, tenant: TenantId, id: Uuid) -> Result<Vec<crate::tokens::api::UsedBy>> {
    let devices = device::Entity::find()
        .filter(device::Column::TenantId.eq(tenant.0))
        .filter(device::Column::AccessGroupId.eq(id))
        .order_by_asc(device::Column::Name)
        .all(db)
        .await?;
    Ok(devices.into_iter().map(|d| used_by_row("device", d.id, d.name, "set_null")).collect())
}
