//! Certificate-key pairs: importing, generating, listing, renaming, replacing and deleting them
//! under their permissions, reading their certificates and keys (each read recorded), and the
//! managed internal JWT key.

use std::sync::LazyLock;

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, Order, QueryFilter, Set};
use serde_json::json;
use uuid::Uuid;

use super::entities::key_pair;
use super::material::{Algorithm, Certificate, Generation, KeyType, PrivateKey};
use crate::accounts::access::{Actor, is_superuser_now};
use crate::accounts::permissions::names;
use crate::db::pagination::{ListParams, Paginated, fetch_page, ilike};
use crate::error::{Error, FieldErrors, NON_FIELD_ERRORS, Result};
use crate::events::{self, Action, ModelRef};
use crate::secret::ServerSecret;
use crate::state::AppState;
use crate::tenants::TenantId;

/// The `managed` value of the key the server signs its own tokens with, as authentik names it.
pub const MANAGED_JWT_KEY: &str = "goauthentik.io/crypto/jwt-managed";
/// The `managed` value of the key the managed key replaced at its last rotation: still
/// published, so that tokens it signed verify until they expire, and never used to sign.
pub const PREVIOUS_MANAGED_JWT_KEY: &str = "gatehouse/crypto/jwt-managed-previous";
const MANAGED_JWT_KEY_NAME: &str = "Gatehouse Internal JWT Certificate";

const SEALING_PURPOSE: &str = "certificate-private-key";
const LONGEST_NAME: usize = 255;
const LONGEST_VALIDITY_DAYS: u32 = 36_500;

/// One generation at a time per process: an RSA key takes seconds of a core.
static GENERATING: LazyLock<tokio::sync::Semaphore> = LazyLock::new(|| tokio::sync::Semaphore::new(1));

/// Filters of the pair list.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyPairFilter {
    /// Exact name.
    pub name: Option<String>,
    /// Only pairs with (`true`) or without (`false`) a private key.
    pub has_key: Option<bool>,
    /// Only pairs whose certificate holds a key of one of these algorithms; repeat the parameter
    /// for several (`?key_type=rsa&key_type=ec`).
    #[serde(skip)]
    #[param(value_type = Option<Vec<KeyType>>)]
    pub key_type: Vec<KeyType>,
    /// Only pairs the server manages under this name.
    pub managed: Option<String>,
}

/// A new self-signed pair as asked for; authentik's `CertificateGenerationRequest`, plus the
/// size of an RSA key.
#[derive(Debug, Default, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerationRequest {
    pub common_name: Option<String>,
    /// Further names, separated by commas: DNS names or IP addresses.
    pub subject_alt_name: Option<String>,
    pub validity_days: Option<i64>,
    /// `rsa` (the default), `ecdsa` (P-256) or `ed25519`; authentik's `ed448` is refused.
    pub alg: Option<Algorithm>,
    /// Bits of an RSA key: 2048 (the default, as Keycloak's), 3072 or 4096.
    pub key_size: Option<u32>,
}

impl GenerationRequest {
    fn parse(&self) -> Result<Generation> {
        let mut errors = FieldErrors::new();
        let common_name = match self.common_name.as_deref().map(str::trim) {
            None | Some("") => {
                errors.add("common_name", "This field is required.");
                String::new()
            }
            Some(name) if name.chars().count() > 64 => {
                errors.add("common_name", "Ensure this field has no more than 64 characters.");
                String::new()
            }
            Some(name) => name.to_owned(),
        };
        let subject_alt_names: Vec<String> = self
            .subject_alt_name
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        if subject_alt_names.len() > 100 {
            errors.add("subject_alt_name", "Give at most 100 names.");
        }
        for name in &subject_alt_names {
            if let Err(message) = super::material::subject_alt_name(name) {
                errors.add("subject_alt_name", message);
            }
        }
        let validity_days = match self.validity_days {
            None => {
                errors.add("validity_days", "This field is required.");
                0
            }
            Some(days) => match u32::try_from(days) {
                Ok(days @ 1..=LONGEST_VALIDITY_DAYS) => days,
                _ => {
                    errors.add("validity_days", format!("Give a number of days from 1 to {LONGEST_VALIDITY_DAYS}."));
                    0
                }
            },
        };
        let algorithm = self.alg.unwrap_or(Algorithm::Rsa);
        if algorithm == Algorithm::Ed448 {
            errors.add("alg", "Ed448 keys are not supported by this server; choose rsa, ecdsa or ed25519.");
        }
        let rsa_bits = match self.key_size {
            None => 2048,
            Some(bits @ (2048 | 3072 | 4096)) if algorithm == Algorithm::Rsa => bits as usize,
            Some(_) if algorithm != Algorithm::Rsa => {
                errors.add("key_size", "Only an RSA key has a size to choose.");
                0
            }
            Some(_) => {
                errors.add("key_size", "Choose 2048, 3072 or 4096.");
                0
            }
        };
        errors.into_result()?;
        Ok(Generation { common_name, subject_alt_names, validity_days, algorithm, rsa_bits })
    }
}

/// A pair as the API shows it: the stored row and whether it holds a key.
#[derive(Debug, Clone)]
pub struct KeyPairView {
    pub pair: key_pair::Model,
}

impl KeyPairView {
    /// Whether the pair has a private key.
    pub fn private_key_available(&self) -> bool {
        self.pair.private_key_sealed.is_some()
    }
}

fn pair_ref(pair: &key_pair::Model) -> ModelRef {
    ModelRef { app: "authentik_crypto", model_name: "certificatekeypair", pk: json!(pair.id.to_string()), name: pair.name.clone() }
}

/// A unique name clash as an error on `field` (the name, or the common name a new pair is
/// named after).
fn name_taken(field: &'static str) -> impl FnOnce(sea_orm::DbErr) -> Error {
    move |error| match error.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => Error::field(field, "certificate-key pair with this name already exists."),
        _ => error.into(),
    }
}

fn parse_name(name: Option<&str>, errors: &mut FieldErrors) -> Option<String> {
    match name.map(str::trim) {
        None | Some("") => {
            errors.add("name", "This field is required.");
            None
        }
        Some(name) if name.chars().count() > LONGEST_NAME => {
            errors.add("name", format!("Ensure this field has no more than {LONGEST_NAME} characters."));
            None
        }
        Some(name) => Some(name.to_owned()),
    }
}

/// A certificate and an optional key, parsed and checked to belong together.
fn parse_material(certificate: &str, key: Option<&str>, errors: &mut FieldErrors) -> Option<(Certificate, Option<PrivateKey>)> {
    let certificate = Certificate::parse_pem(certificate).map_err(|message| errors.add("certificate_data", message)).ok();
    let key = match key.filter(|k| !k.trim().is_empty()) {
        None => Some(None),
        Some(text) => PrivateKey::parse_pem(text).map(Some).map_err(|message| errors.add("key_data", message)).ok(),
    };
    let (certificate, key) = (certificate?, key?);
    if let Some(key) = &key
        && !key.matches(&certificate)
    {
        errors.add("key_data", "This private key does not belong to the certificate.");
        return None;
    }
    Some((certificate, key))
}

pub(crate) fn seal(secret: &ServerSecret, id: Uuid, key: &PrivateKey) -> Result<String> {
    secret.seal(SEALING_PURPOSE, id.as_bytes(), key.expose_pem().as_bytes())
}

pub(crate) fn open(secret: &ServerSecret, pair: &key_pair::Model) -> Result<Option<String>> {
    let Some(sealed) = pair.private_key_sealed.as_deref() else { return Ok(None) };
    let plain = secret.open(SEALING_PURPOSE, pair.id.as_bytes(), sealed)?;
    String::from_utf8(plain).map(Some).map_err(|_| Error::internal("a sealed private key is not text"))
}

/// A new row for `certificate` and `key`.
fn new_row(
    secret: &ServerSecret,
    tenant: TenantId,
    name: String,
    certificate: &Certificate,
    key: Option<&PrivateKey>,
) -> Result<key_pair::ActiveModel> {
    let id = Uuid::new_v4();
    let now = Utc::now();
    let mut row = key_pair::ActiveModel {
        id: Set(id),
        tenant_id: Set(tenant.0),
        name: Set(name),
        private_key_sealed: Set(key.map(|key| seal(secret, id, key)).transpose()?),
        managed: Set(None),
        created: Set(now),
        last_updated: Set(now),
        ..Default::default()
    };
    set_certificate(&mut row, certificate);
    Ok(row)
}

/// Writes `certificate` and what is shown of it into `row`.
fn set_certificate(row: &mut key_pair::ActiveModel, certificate: &Certificate) {
    row.certificate_pem = Set(certificate.pem.clone());
    row.key_type = Set(certificate.key_type.map(|t| t.as_str().to_owned()));
    row.fingerprint_sha256 = Set(certificate.fingerprint_sha256.clone());
    row.fingerprint_sha1 = Set(certificate.fingerprint_sha1.clone());
    row.cert_expiry = Set(certificate.expiry);
    row.cert_subject = Set(certificate.subject.clone());
}

async fn find(db: &impl ConnectionTrait, tenant: TenantId, id: Uuid) -> Result<key_pair::Model> {
    key_pair::Entity::find_by_id(id).filter(key_pair::Column::TenantId.eq(tenant.0)).one(db).await?.ok_or(Error::NotFound)
}

/// The pairs of the tenant among `ids` (those that exist), in one query.
pub async fn pairs_by_ids(db: &impl ConnectionTrait, tenant: TenantId, ids: &[Uuid]) -> Result<Vec<key_pair::Model>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(key_pair::Entity::find()
        .filter(key_pair::Column::TenantId.eq(tenant.0))
        .filter(key_pair::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?)
}

/// The pair `id` of `tenant`, read for the server's own use (no permission asked).
pub async fn pair_by_id(db: &impl ConnectionTrait, tenant: TenantId, id: Uuid) -> Result<Option<key_pair::Model>> {
    Ok(key_pair::Entity::find_by_id(id).filter(key_pair::Column::TenantId.eq(tenant.0)).one(db).await?)
}

/// One page of pairs; needs the view permission.
pub async fn list(state: &AppState, actor: &Actor, filter: &KeyPairFilter, params: &ListParams) -> Result<Paginated<KeyPairView>> {
    actor.require(names::VIEW_CERTIFICATE_KEY_PAIR)?;
    let page = params.page_request(&state.config.api)?;
    let mut select = key_pair::Entity::find().filter(key_pair::Column::TenantId.eq(state.tenant.0));
    if let Some(name) = filter.name.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(key_pair::Column::Name.eq(name));
    }
    if let Some(has_key) = filter.has_key {
        select = select.filter(if has_key {
            key_pair::Column::PrivateKeySealed.is_not_null()
        } else {
            key_pair::Column::PrivateKeySealed.is_null()
        });
    }
    if !filter.key_type.is_empty() {
        select = select.filter(key_pair::Column::KeyType.is_in(filter.key_type.iter().map(|t| t.as_str())));
    }
    if let Some(managed) = filter.managed.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(key_pair::Column::Managed.eq(managed));
    }
    if let Some(pattern) = params.search_pattern() {
        select = select.filter(ilike(key_pair::Column::Name, &pattern));
    }
    let select = params.apply_ordering(
        select,
        &[("name", key_pair::Column::Name), ("cert_expiry", key_pair::Column::CertExpiry)],
        (key_pair::Column::Name, Order::Asc),
        key_pair::Column::Id,
    )?;
    Ok(fetch_page(&state.db, select, page).await?.map(|pair| KeyPairView { pair }))
}

/// The pair `id`; needs the view permission.
pub async fn get(state: &AppState, actor: &Actor, id: Uuid) -> Result<KeyPairView> {
    actor.require(names::VIEW_CERTIFICATE_KEY_PAIR)?;
    Ok(KeyPairView { pair: find(&state.db, state.tenant, id).await? })
}

/// Imports a certificate and an optional private key that must belong to it; needs the add
/// permission (checked before anything is parsed).
pub async fn import(
    state: &AppState,
    actor: &Actor,
    name: Option<&str>,
    certificate: Option<&str>,
    key: Option<&str>,
) -> Result<KeyPairView> {
    actor.require(names::ADD_CERTIFICATE_KEY_PAIR)?;
    let mut errors = FieldErrors::new();
    let name = parse_name(name, &mut errors);
    let material = match certificate {
        Some(text) if !text.trim().is_empty() => parse_material(text, key, &mut errors),
        _ => {
            errors.add("certificate_data", "This field is required.");
            None
        }
    };
    let (Some(name), Some((certificate, key))) = (name, material) else {
        return Err(Error::Validation(errors));
    };
    insert(state, actor, new_row(&state.secret, state.tenant, name, &certificate, key.as_ref())?, "name").await
}

/// Generates a key and a self-signed certificate, named after the common name; needs the add
/// permission.
pub async fn generate(state: &AppState, actor: &Actor, request: &GenerationRequest) -> Result<KeyPairView> {
    actor.require(names::ADD_CERTIFICATE_KEY_PAIR)?;
    let generation = request.parse()?;
    let name = generation.common_name.clone();
    // Refused before seconds of work; the insert still refuses one taken meanwhile.
    if name_in_use(&state.db, state.tenant, &name).await? {
        return Err(Error::field("common_name", "certificate-key pair with this name already exists."));
    }
    let (certificate, key) = generate_off_the_runtime(generation).await?;
    insert(state, actor, new_row(&state.secret, state.tenant, name, &certificate, Some(&key))?, "common_name").await
}

async fn name_in_use(db: &impl ConnectionTrait, tenant: TenantId, name: &str) -> Result<bool> {
    let found =
        key_pair::Entity::find().filter(key_pair::Column::TenantId.eq(tenant.0)).filter(key_pair::Column::Name.eq(name)).one(db).await?;
    Ok(found.is_some())
}

async fn generate_off_the_runtime(generation: Generation) -> Result<(Certificate, PrivateKey)> {
    let turn = GENERATING.acquire().await.map_err(|_| Error::internal("the key generation queue closed"))?;
    // The turn ends with the generation, not with the request: a client that goes away does not
    // free it while the key is still being made.
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        super::material::generate(&generation)
    })
    .await
    .map_err(|e| Error::internal(format!("key generation stopped: {e}")))?
    .map_err(|message| Error::field(NON_FIELD_ERRORS, message))
}

/// The channel that carries changes to key pairs between server processes.
pub const CHANGES_CHANNEL: &str = "gatehouse_key_pair_changes";

/// Commits a change to key pairs and drops every opened key read before it, here and (on
/// PostgreSQL, when the transaction commits) in every other process.
async fn commit_change(state: &AppState, txn: sea_orm::DatabaseTransaction) -> Result<()> {
    Ok(state.key_pair_changes.commit(txn).await?)
}

async fn insert(state: &AppState, actor: &Actor, row: key_pair::ActiveModel, name_field: &'static str) -> Result<KeyPairView> {
    let txn = crate::db::begin_write(&state.db).await?;
    let pair = row.insert(&txn).await.map_err(name_taken(name_field))?;
    events::service::record(&txn, state, actor.event(Action::ModelCreated).about(&pair_ref(&pair))).await?;
    commit_change(state, txn).await?;
    Ok(KeyPairView { pair })
}

/// What a change may give; `None` keeps the current value (unless `full`, where the name and
/// certificate are required). A new certificate or key is a superuser's to give.
#[derive(Debug, Default)]
pub struct KeyPairChange<'a> {
    pub name: Option<&'a str>,
    pub certificate_data: Option<&'a str>,
    pub key_data: Option<&'a str>,
}

/// Renames the pair `id`, or replaces its certificate or key; needs the change permission, and
/// replacing material needs a superuser.
pub async fn update(state: &AppState, actor: &Actor, id: Uuid, change: KeyPairChange<'_>, full: bool) -> Result<KeyPairView> {
    actor.require(names::VIEW_CERTIFICATE_KEY_PAIR)?;
    let txn = crate::db::begin_write(&state.db).await?;
    let before = find(&txn, state.tenant, id).await?;
    actor.require(names::CHANGE_CERTIFICATE_KEY_PAIR)?;
    let mut errors = FieldErrors::new();
    let name = parse_name(if full { change.name } else { Some(change.name.unwrap_or(&before.name)) }, &mut errors);
    // Empty text gives nothing: the certificate and key stay.
    let given_certificate = change.certificate_data.filter(|text| !text.trim().is_empty());
    let given_key = change.key_data.filter(|text| !text.trim().is_empty());
    if full && given_certificate.is_none() {
        errors.add("certificate_data", "This field is required.");
    }
    // The certificate the pair has, sent back whole (as clients that PUT every field do), is no
    // change.
    let new_certificate = match given_certificate.map(Certificate::parse_pem) {
        Some(Ok(certificate)) if certificate.fingerprint_sha256 == before.fingerprint_sha256 => None,
        Some(Ok(certificate)) => Some(certificate),
        Some(Err(message)) => {
            errors.add("certificate_data", message);
            None
        }
        None => None,
    };
    let new_key = match given_key.map(PrivateKey::parse_pem) {
        Some(Ok(key)) => Some(key),
        Some(Err(message)) => {
            errors.add("key_data", message);
            None
        }
        None => None,
    };
    // A signing key speaks for every account: only a superuser may put one in place.
    if (new_certificate.is_some() || new_key.is_some()) && !is_superuser_now(&txn, state, actor).await? {
        return Err(Error::PermissionDenied);
    }
    let mut model = before.clone().into_active_model();
    let mut key_replaced = false;
    if new_certificate.is_some() || new_key.is_some() {
        // The stored key is opened only when material changes: a rename reads no secret.
        let current_key = open(&state.secret, &before)?;
        key_replaced = new_key.as_ref().is_some_and(|key| current_key.as_deref() != Some(key.expose_pem()));
        let certificate = match new_certificate {
            Some(certificate) => certificate,
            None => Certificate::parse_pem(&before.certificate_pem)
                .map_err(|e| Error::internal(format!("a stored certificate does not parse: {e}")))?,
        };
        let key = match new_key {
            Some(key) => Some(key),
            None => current_key
                .as_deref()
                .map(PrivateKey::parse_pem)
                .transpose()
                .map_err(|e| Error::internal(format!("a stored key does not parse: {e}")))?,
        };
        if let Some(key) = &key
            && !key.matches(&certificate)
        {
            if key_replaced {
                errors.add("key_data", "This private key does not belong to the certificate.");
            } else {
                errors.add("certificate_data", "This certificate does not carry the pair's private key; give its key in key_data too.");
            }
        }
        if key_replaced {
            model.private_key_sealed = Set(key.as_ref().map(|key| seal(&state.secret, before.id, key)).transpose()?);
        }
        set_certificate(&mut model, &certificate);
    }
    let Some(name) = name else { return Err(Error::Validation(errors)) };
    errors.into_result()?;
    model.name = Set(name);
    model.last_updated = Set(Utc::now());
    let after = model.update(&txn).await.map_err(name_taken("name"))?;
    let shown = |pair: &key_pair::Model| json!({"name": pair.name, "fingerprint_sha256": pair.fingerprint_sha256});
    let mut event =
        actor.event(Action::ModelUpdated).about(&pair_ref(&after)).with("diff", events::service::diff(&shown(&before), &shown(&after)));
    if key_replaced {
        event = event.with("private_key", json!("replaced"));
    }
    events::service::record(&txn, state, event).await?;
    commit_change(state, txn).await?;
    Ok(KeyPairView { pair: after })
}

/// Deletes the pair `id`; needs the delete permission. The managed key stays: the server signs
/// with it.
pub async fn delete(state: &AppState, actor: &Actor, id: Uuid) -> Result<()> {
    actor.require(names::VIEW_CERTIFICATE_KEY_PAIR)?;
    let txn = crate::db::begin_write(&state.db).await?;
    let pair = find(&txn, state.tenant, id).await?;
    actor.require(names::DELETE_CERTIFICATE_KEY_PAIR)?;
    if pair.managed.is_some() {
        return Err(Error::field(NON_FIELD_ERRORS, "This key pair is managed by the server, which signs with it; it cannot be deleted."));
    }
    key_pair::Entity::delete_by_id(pair.id).exec(&txn).await?;
    events::service::record(&txn, state, actor.event(Action::ModelDeleted).about(&pair_ref(&pair))).await?;
    commit_change(state, txn).await?;
    Ok(())
}

/// The certificate of the pair `id` as PEM, with its name; needs the certificate permission and
/// records `secret_view`, as authentik does.
pub async fn view_certificate(state: &AppState, actor: &Actor, id: Uuid) -> Result<(String, String)> {
    actor.require(names::VIEW_CERTIFICATE_KEY_PAIR_CERTIFICATE)?;
    let pair = find(&state.db, state.tenant, id).await?;
    events::service::record(&state.db, state, actor.event(Action::SecretView).about(&pair_ref(&pair)).with("viewed", json!("certificate")))
        .await?;
    Ok((pair.name, pair.certificate_pem))
}

/// The private key of the pair `id` as PKCS#8 PEM (`None` when it has none), with its name;
/// needs the key permission and a superuser, and records `secret_view`.
pub async fn view_private_key(state: &AppState, actor: &Actor, id: Uuid) -> Result<(String, Option<String>)> {
    actor.require(names::VIEW_CERTIFICATE_KEY_PAIR_KEY)?;
    // Whatever permissions say: a signing key speaks for every account, superusers included.
    // Asked before looking, so the answer tells nothing of which pairs exist.
    if !is_superuser_now(&state.db, state, actor).await? {
        return Err(Error::PermissionDenied);
    }
    let pair = find(&state.db, state.tenant, id).await?;
    let key = open(&state.secret, &pair)?;
    if key.is_some() {
        events::service::record(
            &state.db,
            state,
            actor.event(Action::SecretView).about(&pair_ref(&pair)).with("viewed", json!("private_key")),
        )
        .await?;
    }
    Ok((pair.name, key))
}

/// What the managed key is made as: EC P-256, self-signed, ten years.
fn managed_key_generation() -> Generation {
    Generation {
        common_name: "gatehouse-jwt".into(),
        subject_alt_names: vec![],
        validity_days: 3650,
        algorithm: Algorithm::Ecdsa,
        rsa_bits: 0,
    }
}

async fn managed_pair(db: &impl ConnectionTrait, tenant: TenantId, marker: &str) -> Result<Option<key_pair::Model>> {
    Ok(key_pair::Entity::find()
        .filter(key_pair::Column::TenantId.eq(tenant.0))
        .filter(key_pair::Column::Managed.eq(marker))
        .one(db)
        .await?)
}

/// The managed key the server signs its own tokens with, created when the tenant has none;
/// several processes starting at once create one between them.
pub async fn ensure_managed_jwt_key(state: &AppState, tenant: TenantId) -> Result<key_pair::Model> {
    if let Some(pair) = managed_pair(&state.db, tenant, MANAGED_JWT_KEY).await? {
        return Ok(pair);
    }
    let (certificate, key) = generate_off_the_runtime(managed_key_generation()).await?;
    // A pair someone named so keeps its name; the managed one takes another.
    let name = if name_in_use(&state.db, tenant, MANAGED_JWT_KEY_NAME).await? {
        format!("{MANAGED_JWT_KEY_NAME} ({})", &Uuid::new_v4().simple().to_string()[..8])
    } else {
        MANAGED_JWT_KEY_NAME.to_owned()
    };
    let mut row = new_row(&state.secret, tenant, name, &certificate, Some(&key))?;
    row.managed = Set(Some(MANAGED_JWT_KEY.into()));
    let txn = crate::db::begin_write(&state.db).await?;
    match row.insert(&txn).await {
        Ok(pair) => {
            events::service::record(&txn, state, Actor::system().event(Action::ModelCreated).about(&pair_ref(&pair))).await?;
            commit_change(state, txn).await?;
            Ok(pair)
        }
        // Another process created it at the same moment: use that one.
        Err(error) if matches!(error.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))) => {
            drop(txn);
            managed_pair(&state.db, tenant, MANAGED_JWT_KEY)
                .await?
                .ok_or_else(|| Error::internal(format!("the managed JWT key could not be created: {error}")))
        }
        Err(error) => Err(error.into()),
    }
}

/// The managed key, and the one it replaced while that one is still published.
pub async fn managed_jwt_keys(state: &AppState, tenant: TenantId) -> Result<(key_pair::Model, Option<key_pair::Model>)> {
    let active = ensure_managed_jwt_key(state, tenant).await?;
    let previous = managed_pair(&state.db, tenant, PREVIOUS_MANAGED_JWT_KEY).await?;
    Ok((active, previous))
}

/// What a rotation of the managed key did.
#[derive(Debug)]
pub struct Rotation {
    /// The new managed key, signing from now on.
    pub active: key_pair::Model,
    /// The key still published beside it: the one it replaced, or after retiring a compromised
    /// key the one replaced before, if any.
    pub previous: Option<key_pair::Model>,
    /// Keys no longer published: ordinary pairs now, which administrators may delete.
    pub retired: Vec<key_pair::Model>,
}

/// How a rotation treats the key it replaces.
#[derive(Debug, Clone, Copy)]
pub enum Replaced {
    /// Kept published as the previous key, so that what it signed verifies until it expires;
    /// the key it itself replaced (`previous`, as the caller found it) is retired, which is
    /// refused before `previous_needed_until` (when the last token it signed may expire).
    Kept { previous: Option<Uuid>, previous_needed_until: Option<chrono::DateTime<Utc>> },
    /// Retired at once (it is compromised): tokens it signed stop verifying. The previous key,
    /// if any, stays.
    RetiredNow,
}

/// Replaces the managed key with a new one, as `replaced` says. Two processes rotating at once
/// cannot both succeed: the second finds the previous key just made and is refused.
pub async fn rotate_managed_jwt_key(state: &AppState, tenant: TenantId, replaced: Replaced) -> Result<Rotation> {
    ensure_managed_jwt_key(state, tenant).await?;
    let (certificate, key) = generate_off_the_runtime(managed_key_generation()).await?;
    let now = Utc::now();
    let txn = crate::db::begin_write(&state.db).await?;
    let current = managed_pair(&txn, tenant, MANAGED_JWT_KEY).await?.ok_or_else(|| Error::internal("the managed JWT key went"))?;
    let previous = managed_pair(&txn, tenant, PREVIOUS_MANAGED_JWT_KEY).await?;
    let mut retired = Vec::new();
    let kept = match replaced {
        Replaced::Kept { previous: expected, previous_needed_until } => {
            if previous.as_ref().map(|p| p.id) != expected {
                return Err(Error::field(
                    NON_FIELD_ERRORS,
                    "The managed key was rotated by another process at the same moment; nothing was changed.",
                ));
            }
            if let Some(previous) = previous {
                let needed_until = previous_needed_until.unwrap_or(now);
                if needed_until > now {
                    return Err(Error::field(
                        NON_FIELD_ERRORS,
                        format!(
                            "The previous signing key may still verify live tokens until {}; rotate after that, or retire the current key at once if it is compromised.",
                            needed_until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        ),
                    ));
                }
                retired.push(demote(&txn, previous, None, now).await?);
            }
            Some(demote(&txn, current, Some(PREVIOUS_MANAGED_JWT_KEY), now).await?)
        }
        Replaced::RetiredNow => {
            retired.push(demote(&txn, current, None, now).await?);
            previous
        }
    };
    let name = if name_in_use(&txn, tenant, MANAGED_JWT_KEY_NAME).await? {
        format!("{MANAGED_JWT_KEY_NAME} ({})", &Uuid::new_v4().simple().to_string()[..8])
    } else {
        MANAGED_JWT_KEY_NAME.to_owned()
    };
    let mut row = new_row(&state.secret, tenant, name, &certificate, Some(&key))?;
    row.managed = Set(Some(MANAGED_JWT_KEY.into()));
    let active = row.insert(&txn).await.map_err(|error| match error.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => {
            Error::field(NON_FIELD_ERRORS, "The managed key was rotated by another process at the same moment; nothing was changed.")
        }
        _ => error.into(),
    })?;
    let event = Actor::system()
        .event(Action::SecretRotate)
        .about(&pair_ref(&active))
        .with("previous", json!(kept.as_ref().map(|p| p.id)))
        .with("retired", json!(retired.iter().map(|p| p.id).collect::<Vec<_>>()));
    events::service::record(&txn, state, event).await?;
    commit_change(state, txn).await?;
    Ok(Rotation { active, previous: kept, retired })
}

/// `pair` marked `managed` (`None`: an ordinary pair), renamed so that the managed key's name is
/// free, as of `now`.
async fn demote(
    txn: &impl ConnectionTrait,
    pair: key_pair::Model,
    managed: Option<&str>,
    now: chrono::DateTime<Utc>,
) -> Result<key_pair::Model> {
    let mut row = pair.clone().into_active_model();
    let state = if managed.is_some() { "replaced" } else { "retired" };
    row.name = Set(format!("{MANAGED_JWT_KEY_NAME} ({state} {}, {})", now.format("%Y-%m-%d %H:%M"), &pair.id.simple().to_string()[..8]));
    row.managed = Set(managed.map(str::to_owned));
    row.last_updated = Set(now);
    Ok(row.update(txn).await?)
}
