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

fn name_taken(error: sea_orm::DbErr) -> Error {
    match error.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => Error::field("name", "certificate-key pair with this name already exists."),
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

fn seal(secret: &ServerSecret, id: Uuid, key: &PrivateKey) -> Result<String> {
    secret.seal(SEALING_PURPOSE, id.as_bytes(), key.expose_pem().as_bytes())
}

fn open(secret: &ServerSecret, pair: &key_pair::Model) -> Result<Option<String>> {
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
    Ok(key_pair::ActiveModel {
        id: Set(id),
        tenant_id: Set(tenant.0),
        name: Set(name),
        certificate_pem: Set(certificate.pem.clone()),
        private_key_sealed: Set(key.map(|key| seal(secret, id, key)).transpose()?),
        key_type: Set(certificate.key_type.map(|t| t.as_str().to_owned())),
        fingerprint_sha256: Set(certificate.fingerprint_sha256.clone()),
        fingerprint_sha1: Set(certificate.fingerprint_sha1.clone()),
        cert_expiry: Set(certificate.expiry),
        cert_subject: Set(certificate.subject.clone()),
        managed: Set(None),
        created: Set(now),
        last_updated: Set(now),
    })
}

async fn find(db: &impl ConnectionTrait, tenant: TenantId, id: Uuid) -> Result<key_pair::Model> {
    key_pair::Entity::find_by_id(id).filter(key_pair::Column::TenantId.eq(tenant.0)).one(db).await?.ok_or(Error::NotFound)
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
    insert(state, actor, new_row(&state.secret, state.tenant, name, &certificate, key.as_ref())?).await
}

/// Generates a key and a self-signed certificate, named after the common name; needs the add
/// permission.
pub async fn generate(state: &AppState, actor: &Actor, request: &GenerationRequest) -> Result<KeyPairView> {
    actor.require(names::ADD_CERTIFICATE_KEY_PAIR)?;
    let generation = request.parse()?;
    let name = generation.common_name.clone();
    let (certificate, key) = generate_off_the_runtime(generation).await?;
    insert(state, actor, new_row(&state.secret, state.tenant, name, &certificate, Some(&key))?).await
}

async fn generate_off_the_runtime(generation: Generation) -> Result<(Certificate, PrivateKey)> {
    let _turn = GENERATING.acquire().await.map_err(|_| Error::internal("the key generation queue closed"))?;
    tokio::task::spawn_blocking(move || super::material::generate(&generation))
        .await
        .map_err(|e| Error::internal(format!("key generation stopped: {e}")))?
        .map_err(|message| Error::field(NON_FIELD_ERRORS, message))
}

async fn insert(state: &AppState, actor: &Actor, row: key_pair::ActiveModel) -> Result<KeyPairView> {
    let txn = crate::db::begin_write(&state.db).await?;
    let pair = row.insert(&txn).await.map_err(name_taken)?;
    events::service::record(&txn, state, actor.event(Action::ModelCreated).about(&pair_ref(&pair))).await?;
    txn.commit().await?;
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
    if full && change.certificate_data.is_none_or(|text| text.trim().is_empty()) {
        errors.add("certificate_data", "This field is required.");
    }
    let replacing = change.certificate_data.is_some() || change.key_data.is_some_and(|k| !k.trim().is_empty());
    // A signing key speaks for every account: only a superuser may put one in place.
    if replacing && !is_superuser_now(&txn, state, actor).await? {
        return Err(Error::PermissionDenied);
    }
    let mut model = before.clone().into_active_model();
    if replacing {
        let current_key = open(&state.secret, &before)?;
        let certificate = change.certificate_data.unwrap_or(&before.certificate_pem);
        let key = change.key_data.filter(|k| !k.trim().is_empty()).or(current_key.as_deref());
        if let Some((certificate, key)) = parse_material(certificate, key, &mut errors) {
            model.certificate_pem = Set(certificate.pem.clone());
            model.private_key_sealed = Set(key.as_ref().map(|key| seal(&state.secret, before.id, key)).transpose()?);
            model.key_type = Set(certificate.key_type.map(|t| t.as_str().to_owned()));
            model.fingerprint_sha256 = Set(certificate.fingerprint_sha256.clone());
            model.fingerprint_sha1 = Set(certificate.fingerprint_sha1.clone());
            model.cert_expiry = Set(certificate.expiry);
            model.cert_subject = Set(certificate.subject.clone());
        }
    }
    let Some(name) = name else { return Err(Error::Validation(errors)) };
    errors.into_result()?;
    model.name = Set(name);
    model.last_updated = Set(Utc::now());
    let after = model.update(&txn).await.map_err(name_taken)?;
    let shown = |pair: &key_pair::Model| json!({"name": pair.name, "fingerprint_sha256": pair.fingerprint_sha256});
    let mut event =
        actor.event(Action::ModelUpdated).about(&pair_ref(&after)).with("diff", events::service::diff(&shown(&before), &shown(&after)));
    if before.private_key_sealed != after.private_key_sealed {
        event = event.with("private_key", json!("replaced"));
    }
    events::service::record(&txn, state, event).await?;
    txn.commit().await?;
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
    txn.commit().await?;
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
    let pair = find(&state.db, state.tenant, id).await?;
    // Whatever permissions say: a signing key speaks for every account, superusers included.
    if !is_superuser_now(&state.db, state, actor).await? {
        return Err(Error::PermissionDenied);
    }
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

/// The managed key the server signs its own tokens with, created (EC P-256, self-signed) when
/// the tenant has none; several processes starting at once create one between them.
pub async fn ensure_managed_jwt_key(state: &AppState, tenant: TenantId) -> Result<key_pair::Model> {
    let existing = || {
        key_pair::Entity::find()
            .filter(key_pair::Column::TenantId.eq(tenant.0))
            .filter(key_pair::Column::Managed.eq(MANAGED_JWT_KEY))
            .one(&state.db)
    };
    if let Some(pair) = existing().await? {
        return Ok(pair);
    }
    let generation = Generation {
        common_name: "gatehouse-jwt".into(),
        subject_alt_names: vec![],
        validity_days: 3650,
        algorithm: Algorithm::Ecdsa,
        rsa_bits: 0,
    };
    let (certificate, key) = generate_off_the_runtime(generation).await?;
    let mut row = new_row(&state.secret, tenant, MANAGED_JWT_KEY_NAME.into(), &certificate, Some(&key))?;
    row.managed = Set(Some(MANAGED_JWT_KEY.into()));
    let txn = crate::db::begin_write(&state.db).await?;
    match row.insert(&txn).await {
        Ok(pair) => {
            events::service::record(&txn, state, Actor::system().event(Action::ModelCreated).about(&pair_ref(&pair))).await?;
            txn.commit().await?;
            Ok(pair)
        }
        // Another process created it (or a pair already carries the name): use what is there.
        Err(error) if matches!(error.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))) => {
            drop(txn);
            existing().await?.ok_or_else(|| {
                Error::internal(format!("the managed JWT key could not be created: a pair is named {MANAGED_JWT_KEY_NAME:?}"))
            })
        }
        Err(error) => Err(error.into()),
    }
}
