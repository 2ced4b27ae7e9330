//! OAuth 2.0 / OpenID Connect providers: creating, listing, changing and deleting them under
//! their permissions, each change recorded; the client secret, shown once and kept only as a
//! keyed digest; and finding the provider of an application.

use std::collections::HashMap;

use chrono::Utc;
use gatehouse_types::DurationString;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, Order, QueryFilter, QueryOrder, Set};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::entities::{application, provider};
use super::model::{ClientType, GrantType, IssuerMode, LogoutMethod, MOST_REDIRECT_URIS, RedirectUri, SubMode};
use crate::accounts::access::Actor;
use crate::accounts::permissions::names;
use crate::db::pagination::{ListParams, Paginated, fetch_page, ilike};
use crate::error::{Error, FieldErrors, Result};
use crate::events::{self, Action, ModelRef};
use crate::secret::{ServerSecret, constant_time_eq, random_token};
use crate::state::AppState;
use crate::tenants::TenantId;

const SECRET_PURPOSE: &str = "oauth2-client-secret";
const LONGEST_NAME: usize = 255;
/// A secret an administrator chooses must be at least this long: it is checked by digest, not
/// by a slow password hash, so it has to be hard to guess on its own.
const SHORTEST_CHOSEN_SECRET: usize = 32;
/// RFC 6749 §4.1.2: an authorization code lives ten minutes at most.
const LONGEST_CODE_VALIDITY: DurationString = DurationString::from_secs(600);

/// authentik's `OAuth2ProviderRequest` and `PatchedOAuth2ProviderRequest`: absent fields keep
/// their value (or take their default on creation).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderRequest {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<Uuid>)]
    pub authentication_flow: Option<Option<Uuid>>,
    pub authorization_flow: Option<Uuid>,
    pub invalidation_flow: Option<Uuid>,
    /// Scope mappings.
    pub property_mappings: Option<Vec<Uuid>>,
    pub client_type: Option<ClientType>,
    /// `authorization_code`, `refresh_token`, `client_credentials`; the implicit and hybrid
    /// grants are refused.
    pub grant_types: Option<Vec<GrantType>>,
    pub client_id: Option<String>,
    /// A secret of your own, 32 to 255 visible ASCII characters; without one a confidential
    /// client gets a generated secret. Shown only in the answer that sets it.
    pub client_secret: Option<String>,
    /// How long an authorization code lasts (`minutes=1`); ten minutes at most.
    pub access_code_validity: Option<String>,
    pub access_token_validity: Option<String>,
    pub refresh_token_validity: Option<String>,
    pub refresh_token_threshold: Option<String>,
    pub include_claims_in_id_token: Option<bool>,
    /// The pair whose key signs tokens; without one, the server's managed key does.
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<Uuid>)]
    pub signing_key: Option<Option<Uuid>>,
    /// Encrypted tokens are not offered: only `null` is accepted.
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<Uuid>)]
    pub encryption_key: Option<Option<Uuid>>,
    pub redirect_uris: Option<Vec<RedirectUri>>,
    pub logout_uri: Option<String>,
    pub logout_method: Option<LogoutMethod>,
    pub sub_mode: Option<SubMode>,
    pub issuer_mode: Option<IssuerMode>,
    /// Not offered: only an empty list is accepted.
    pub jwt_federation_sources: Option<Vec<Uuid>>,
    /// Not offered: only an empty list is accepted.
    pub jwt_federation_providers: Option<Vec<i64>>,
    /// Gatehouse's own: certificate-key pairs (the certificate is enough) whose public keys the
    /// client signs assertions with to authenticate as `private_key_jwt` (RFC 7523); confidential
    /// clients only. Choosing them needs `authentik_crypto.view_certificatekeypair`.
    pub client_keys: Option<Vec<Uuid>>,
}

/// Filters of the provider list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProviderFilter {
    pub name: Option<String>,
    pub client_id: Option<String>,
    pub client_type: Option<ClientType>,
    pub authorization_flow: Option<Uuid>,
    /// The application the provider signs people in to.
    pub application: Option<Uuid>,
    pub signing_key: Option<Uuid>,
}

/// A provider as the API shows it: its row, the application it serves, and the client secret
/// when this answer set it.
#[derive(Debug, Clone)]
pub struct ProviderView {
    pub provider: provider::Model,
    pub application: Option<application::Model>,
    pub new_client_secret: Option<String>,
}

pub(super) fn provider_ref(provider: &provider::Model) -> ModelRef {
    ModelRef { app: "authentik_providers_oauth2", model_name: "oauth2provider", pk: json!(provider.id), name: provider.name.clone() }
}

/// What an event shows of a provider: everything but the secret's digest.
fn shown(provider: &provider::Model) -> Value {
    json!({
        "name": provider.name,
        "authentication_flow": provider.authentication_flow_id,
        "authorization_flow": provider.authorization_flow_id,
        "invalidation_flow": provider.invalidation_flow_id,
        "property_mappings": provider.property_mappings,
        "client_type": provider.client_type,
        "grant_types": provider.grant_types,
        "client_id": provider.client_id,
        "access_code_validity": provider.access_code_validity,
        "access_token_validity": provider.access_token_validity,
        "refresh_token_validity": provider.refresh_token_validity,
        "refresh_token_threshold": provider.refresh_token_threshold,
        "include_claims_in_id_token": provider.include_claims_in_id_token,
        "signing_key": provider.signing_key_id,
        "redirect_uris": provider.redirect_uris,
        "logout_uri": provider.logout_uri,
        "logout_method": provider.logout_method,
        "sub_mode": provider.sub_mode,
        "issuer_mode": provider.issuer_mode,
        "client_keys": provider.client_keys,
    })
}

/// The keyed digest a client secret is kept as.
fn secret_digest(secret: &ServerSecret, client_secret: &str) -> String {
    secret.digest(SECRET_PURPOSE, client_secret.as_bytes())
}

/// Whether `offered` is the client secret of `provider`, compared in constant time.
pub fn client_secret_matches(secret: &ServerSecret, provider: &provider::Model, offered: &str) -> bool {
    provider
        .client_secret_digest
        .as_deref()
        .is_some_and(|digest| constant_time_eq(digest.as_bytes(), secret_digest(secret, offered).as_bytes()))
}

fn parse_validity(field: &'static str, text: &str, errors: &mut FieldErrors) -> Option<DurationString> {
    match DurationString::parse(text) {
        Ok(duration) => Some(duration),
        Err(error) => {
            errors.add(field, format!("Invalid duration: {error}."));
            None
        }
    }
}

fn visible_ascii(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_graphic())
}

/// Applies `request` to `row` (a new provider's defaults or the current one), checking every
/// field; returns the new client secret when one is set.
async fn apply(
    state: &AppState,
    actor: &Actor,
    row: &mut provider::ActiveModel,
    current: Option<&provider::Model>,
    request: &ProviderRequest,
    full: bool,
) -> Result<Option<String>> {
    let mut errors = FieldErrors::new();
    let required = |present: bool, field: &'static str, errors: &mut FieldErrors| {
        if !present && (full || current.is_none()) {
            errors.add(field, "This field is required.");
        }
    };
    required(request.name.is_some(), "name", &mut errors);
    required(request.authorization_flow.is_some(), "authorization_flow", &mut errors);
    required(request.invalidation_flow.is_some(), "invalidation_flow", &mut errors);
    required(request.redirect_uris.is_some(), "redirect_uris", &mut errors);

    if let Some(name) = &request.name {
        match name.trim() {
            "" => errors.add("name", "This field may not be blank."),
            name if name.chars().count() > LONGEST_NAME => {
                errors.add("name", format!("Ensure this field has no more than {LONGEST_NAME} characters."))
            }
            name => row.name = Set(name.to_owned()),
        }
    }

    // Flows: each named one must be a flow of this tenant.
    let named_flows: Vec<Uuid> =
        [request.authentication_flow.flatten(), request.authorization_flow, request.invalidation_flow].into_iter().flatten().collect();
    let flows = crate::flows::flow_service::flows_by_id(&state.db, state.tenant, &named_flows).await?;
    let flow = |field: &'static str, id: Uuid, errors: &mut FieldErrors| {
        let exists = flows.contains_key(&id);
        if !exists {
            errors.add(field, format!("Invalid pk \"{id}\" - object does not exist."));
        }
        exists
    };
    if let Some(choice) = request.authentication_flow {
        match choice {
            Some(id) if !flow("authentication_flow", id, &mut errors) => {}
            choice => row.authentication_flow_id = Set(choice),
        }
    }
    if let Some(id) = request.authorization_flow
        && flow("authorization_flow", id, &mut errors)
    {
        row.authorization_flow_id = Set(id);
    }
    if let Some(id) = request.invalidation_flow
        && flow("invalidation_flow", id, &mut errors)
    {
        row.invalidation_flow_id = Set(id);
    }

    // Scope mappings decide what the application learns about people: choosing them means
    // seeing them. Without a choice, a new provider offers the shipped defaults.
    match &request.property_mappings {
        Some(mappings) => {
            if !mappings.is_empty() && !actor.rights.has(names::VIEW_SCOPE_MAPPING) {
                errors.add("property_mappings", "You may not view scope mappings.");
            } else {
                let unknown = super::scopes::unknown_ids(&state.db, state.tenant, mappings).await?;
                for id in &unknown {
                    errors.add("property_mappings", format!("Invalid pk \"{id}\" - object does not exist."));
                }
                let mut chosen: Vec<Uuid> = Vec::new();
                for id in mappings {
                    if !chosen.contains(id) {
                        chosen.push(*id);
                    }
                }
                row.property_mappings = Set(json!(chosen));
            }
        }
        None if current.is_none() => row.property_mappings = Set(json!(super::scopes::default_ids(&state.db, state.tenant).await?)),
        None => {}
    }

    let client_type = request.client_type.or(current.and_then(|c| ClientType::parse(&c.client_type))).unwrap_or(ClientType::Confidential);
    row.client_type = Set(client_type.as_str().to_owned());

    let current_grants: Option<Vec<GrantType>> = current.and_then(|c| serde_json::from_value(c.grant_types.clone()).ok());
    let grants =
        request.grant_types.clone().or(current_grants).unwrap_or_else(|| vec![GrantType::AuthorizationCode, GrantType::RefreshToken]);
    if grants.iter().any(|g| matches!(g, GrantType::Implicit | GrantType::Hybrid)) {
        errors.add(
            "grant_types",
            "The implicit and hybrid grants are not offered (OAuth 2.1 removes them); use authorization_code with PKCE.",
        );
    }
    if client_type == ClientType::Public && grants.contains(&GrantType::ClientCredentials) {
        errors.add("grant_types", "A public client cannot use client_credentials: it has no secret to prove itself with.");
    }
    let mut unique_grants: Vec<GrantType> = Vec::new();
    for grant in grants {
        if !unique_grants.contains(&grant) {
            unique_grants.push(grant);
        }
    }
    row.grant_types = Set(json!(unique_grants.iter().map(|g| g.as_str()).collect::<Vec<_>>()));

    match request.client_id.as_deref() {
        Some("") => errors.add("client_id", "This field may not be blank."),
        Some(id) if id.len() > 255 => errors.add("client_id", "Ensure this field has no more than 255 characters."),
        Some(id) if !visible_ascii(id) => errors.add("client_id", "Use visible ASCII characters only, without spaces."),
        Some(id) => row.client_id = Set(id.to_owned()),
        None if current.is_none() => row.client_id = Set(random_token(30)),
        None => {}
    }

    let mut new_secret = None;
    match (client_type, request.client_secret.as_deref()) {
        (ClientType::Public, Some(given)) if !given.is_empty() => {
            errors.add("client_secret", "A public client has no secret.");
        }
        (ClientType::Public, _) => row.client_secret_digest = Set(None),
        (ClientType::Confidential, Some(given)) if !given.is_empty() => {
            if given.len() < SHORTEST_CHOSEN_SECRET || given.len() > 255 || !visible_ascii(given) {
                errors.add(
                    "client_secret",
                    format!("Choose {SHORTEST_CHOSEN_SECRET} to 255 visible ASCII characters, or leave it out for a generated secret."),
                );
            } else {
                new_secret = Some(given.to_owned());
            }
        }
        (ClientType::Confidential, _) => {
            if current.and_then(|c| c.client_secret_digest.as_ref()).is_none() {
                new_secret = Some(random_token(48));
            }
        }
    }
    if let Some(secret) = &new_secret {
        row.client_secret_digest = Set(Some(secret_digest(&state.secret, secret)));
    }

    let validities: [(&'static str, &Option<String>, &str); 4] = [
        ("access_code_validity", &request.access_code_validity, "minutes=1"),
        ("access_token_validity", &request.access_token_validity, "hours=1"),
        ("refresh_token_validity", &request.refresh_token_validity, "days=30"),
        ("refresh_token_threshold", &request.refresh_token_threshold, "seconds=0"),
    ];
    for (field, given, default) in validities {
        let text = match (given, current) {
            (Some(text), _) => text.as_str(),
            (None, Some(_)) => continue,
            (None, None) => default,
        };
        let Some(duration) = parse_validity(field, text, &mut errors) else { continue };
        let positive = field == "refresh_token_threshold" || duration.as_micros() > 0;
        if !positive {
            errors.add(field, "Give a duration longer than zero.");
            continue;
        }
        if field == "access_code_validity" && duration > LONGEST_CODE_VALIDITY {
            errors.add(field, "An authorization code may last ten minutes at most (RFC 6749 §4.1.2).");
            continue;
        }
        let value = Set(duration.to_string());
        match field {
            "access_code_validity" => row.access_code_validity = value,
            "access_token_validity" => row.access_token_validity = value,
            "refresh_token_validity" => row.refresh_token_validity = value,
            _ => row.refresh_token_threshold = value,
        }
    }

    if let Some(include) = request.include_claims_in_id_token {
        row.include_claims_in_id_token = Set(include);
    }

    if let Some(choice) = request.signing_key {
        match choice {
            None => row.signing_key_id = Set(None),
            Some(id) => {
                // A key signs for whoever holds the provider: only one the actor may see.
                actor.require(names::VIEW_CERTIFICATE_KEY_PAIR)?;
                match signing_key_problem(&state.db, state.tenant, id).await? {
                    Some(problem) => errors.add("signing_key", problem),
                    None => row.signing_key_id = Set(Some(id)),
                }
            }
        }
    }
    if let Some(keys) = &request.client_keys {
        if keys.len() > MOST_CLIENT_KEYS {
            errors.add("client_keys", format!("Name at most {MOST_CLIENT_KEYS} keys."));
        }
        if !keys.is_empty() {
            actor.require(names::VIEW_CERTIFICATE_KEY_PAIR)?;
        }
        let mut chosen: Vec<Uuid> = Vec::new();
        for id in keys.iter().take(MOST_CLIENT_KEYS) {
            match crate::crypto::service::pair_by_id(&state.db, state.tenant, *id).await? {
                None => errors.add("client_keys", format!("Invalid pk \"{id}\" - object does not exist.")),
                Some(pair) if crate::crypto::jwt::algorithm_of(&pair)?.is_none() => errors.add(
                    "client_keys",
                    format!("The key of \"{}\" cannot sign tokens; use RSA, EC P-256 or P-384, or Ed25519.", pair.name),
                ),
                Some(_) if !chosen.contains(id) => chosen.push(*id),
                Some(_) => {}
            }
        }
        row.client_keys = Set(json!(chosen));
    }
    let has_client_keys = match &request.client_keys {
        Some(keys) => !keys.is_empty(),
        None => current.is_some_and(|c| !c.client_keys().is_empty()),
    };
    if client_type == ClientType::Public && has_client_keys {
        errors.add("client_keys", "A public client does not authenticate; make it confidential to use private_key_jwt.");
    }
    if let Some(Some(_)) = request.encryption_key {
        errors.add("encryption_key", "Encrypted tokens are not offered; leave this empty.");
    }
    if request.jwt_federation_sources.as_ref().is_some_and(|v| !v.is_empty()) {
        errors.add("jwt_federation_sources", "Federation from other sources is not offered; leave this empty.");
    }
    if request.jwt_federation_providers.as_ref().is_some_and(|v| !v.is_empty()) {
        errors.add("jwt_federation_providers", "Federation from other providers is not offered; leave this empty.");
    }

    if let Some(uris) = &request.redirect_uris {
        if uris.len() > MOST_REDIRECT_URIS {
            errors.add("redirect_uris", format!("Register at most {MOST_REDIRECT_URIS} redirect URIs."));
        }
        for uri in uris {
            if let Err(message) = uri.check() {
                errors.add("redirect_uris", message);
            }
        }
        row.redirect_uris = Set(json!(uris));
    }

    if let Some(uri) = &request.logout_uri {
        let uri = uri.trim();
        match uri {
            "" => row.logout_uri = Set(String::new()),
            uri if !(uri.starts_with("https://") || uri.starts_with("http://")) => {
                errors.add("logout_uri", "Enter an http or https URL.");
            }
            uri => match super::model::check_redirect_target(uri) {
                Ok(()) => row.logout_uri = Set(uri.to_owned()),
                Err(message) => errors.add("logout_uri", message),
            },
        }
    }
    if let Some(method) = request.logout_method {
        row.logout_method = Set(method.as_str().to_owned());
    }
    // Front-channel logout loads the application in a hidden frame that needs its cookies, which
    // browsers no longer send to frames of another site: a notice that would silently not
    // arrive is refused rather than stored. (Rows stored so are left as they are.)
    let front_channel = row.logout_method.try_as_ref().is_some_and(|m| m == LogoutMethod::Frontchannel.as_str());
    let listening = row.logout_uri.try_as_ref().is_some_and(|uri| !uri.is_empty());
    if front_channel && listening && (request.logout_method.is_some() || request.logout_uri.is_some()) {
        errors.add("logout_method", "Front-channel logout is not offered: use \"backchannel\" (the application is told server to server).");
    }
    if let Some(mode) = request.sub_mode {
        row.sub_mode = Set(mode.as_str().to_owned());
    }
    if let Some(mode) = request.issuer_mode {
        row.issuer_mode = Set(mode.as_str().to_owned());
    }
    errors.into_result()?;
    Ok(new_secret)
}

/// Why the pair `id` cannot sign a provider's tokens, if it cannot.
async fn signing_key_problem(db: &impl ConnectionTrait, tenant: TenantId, id: Uuid) -> Result<Option<String>> {
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

/// The most keys one client may sign its assertions with.
const MOST_CLIENT_KEYS: usize = 10;

/// The defaults of a new provider, before the request is applied.
fn new_row(tenant: TenantId) -> provider::ActiveModel {
    let now = Utc::now();
    provider::ActiveModel {
        tenant_id: Set(tenant.0),
        authentication_flow_id: Set(None),
        property_mappings: Set(json!([])),
        client_secret_digest: Set(None),
        include_claims_in_id_token: Set(true),
        signing_key_id: Set(None),
        encryption_key_id: Set(None),
        redirect_uris: Set(json!([])),
        client_keys: Set(json!([])),
        logout_uri: Set(String::new()),
        logout_method: Set(LogoutMethod::Backchannel.as_str().to_owned()),
        sub_mode: Set(SubMode::HashedUserId.as_str().to_owned()),
        issuer_mode: Set(IssuerMode::PerProvider.as_str().to_owned()),
        created: Set(now),
        last_updated: Set(now),
        ..Default::default()
    }
}

fn client_id_taken(error: sea_orm::DbErr) -> Error {
    match error.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => {
            Error::field("client_id", "OAuth2/OpenID Provider with this Client ID already exists.")
        }
        _ => error.into(),
    }
}

async fn find(db: &impl ConnectionTrait, tenant: TenantId, id: i64) -> Result<provider::Model> {
    provider::Entity::find_by_id(id).filter(provider::Column::TenantId.eq(tenant.0)).one(db).await?.ok_or(Error::NotFound)
}

/// The applications served by `providers`, by provider.
async fn applications_of(db: &impl ConnectionTrait, tenant: TenantId, providers: &[i64]) -> Result<HashMap<i64, application::Model>> {
    if providers.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(application::Entity::find()
        .filter(application::Column::TenantId.eq(tenant.0))
        .filter(application::Column::ProviderId.is_in(providers.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .filter_map(|app| app.provider_id.map(|id| (id, app)))
        .collect())
}

async fn view(
    db: &impl ConnectionTrait,
    tenant: TenantId,
    provider: provider::Model,
    new_client_secret: Option<String>,
) -> Result<ProviderView> {
    let application = applications_of(db, tenant, &[provider.id]).await?.remove(&provider.id);
    Ok(ProviderView { provider, application, new_client_secret })
}

/// One page of providers; needs the view permission.
pub async fn list(state: &AppState, actor: &Actor, filter: &ProviderFilter, params: &ListParams) -> Result<Paginated<ProviderView>> {
    actor.require(names::VIEW_OAUTH2_PROVIDER)?;
    let page = params.page_request(&state.config.api)?;
    let mut select = provider::Entity::find().filter(provider::Column::TenantId.eq(state.tenant.0));
    if let Some(name) = filter.name.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(provider::Column::Name.eq(name));
    }
    if let Some(client_id) = filter.client_id.as_deref().filter(|v| !v.is_empty()) {
        select = select.filter(provider::Column::ClientId.eq(client_id));
    }
    if let Some(client_type) = filter.client_type {
        select = select.filter(provider::Column::ClientType.eq(client_type));
    }
    if let Some(flow) = filter.authorization_flow {
        select = select.filter(provider::Column::AuthorizationFlowId.eq(flow));
    }
    if let Some(key) = filter.signing_key {
        select = select.filter(provider::Column::SigningKeyId.eq(key));
    }
    if let Some(application) = filter.application {
        let app =
            application::Entity::find_by_id(application).filter(application::Column::TenantId.eq(state.tenant.0)).one(&state.db).await?;
        select = select.filter(provider::Column::Id.eq(app.and_then(|a| a.provider_id).unwrap_or(-1)));
    }
    if let Some(pattern) = params.search_pattern() {
        select = select.filter(ilike(provider::Column::Name, &pattern));
    }
    let select =
        params.apply_ordering(select, &[("name", provider::Column::Name)], (provider::Column::Name, Order::Asc), provider::Column::Id)?;
    let page = fetch_page(&state.db, select, page).await?;
    let ids: Vec<i64> = page.results.iter().map(|p| p.id).collect();
    let mut applications = applications_of(&state.db, state.tenant, &ids).await?;
    Ok(page.map(|provider| ProviderView { application: applications.remove(&provider.id), provider, new_client_secret: None }))
}

/// The provider `id`; needs the view permission.
pub async fn get(state: &AppState, actor: &Actor, id: i64) -> Result<ProviderView> {
    actor.require(names::VIEW_OAUTH2_PROVIDER)?;
    view(&state.db, state.tenant, find(&state.db, state.tenant, id).await?, None).await
}

/// Creates a provider; needs the add permission. A confidential client without a chosen secret
/// gets a generated one, returned in this answer only.
pub async fn create(state: &AppState, actor: &Actor, request: &ProviderRequest) -> Result<ProviderView> {
    actor.require(names::ADD_OAUTH2_PROVIDER)?;
    let mut row = new_row(state.tenant);
    let new_secret = apply(state, actor, &mut row, None, request, true).await?;
    let txn = crate::db::begin_write(&state.db).await?;
    let created = row.insert(&txn).await.map_err(client_id_taken)?;
    let mut event = actor.event(Action::ModelCreated).about(&provider_ref(&created));
    if new_secret.is_some() {
        event = event.with("client_secret", json!("set"));
    }
    events::service::record(&txn, state, event).await?;
    super::cache::commit_change(state, txn).await?;
    Ok(ProviderView { provider: created, application: None, new_client_secret: new_secret })
}

/// Changes the provider `id` (all required fields when `full`); needs the change permission.
pub async fn update(state: &AppState, actor: &Actor, id: i64, request: &ProviderRequest, full: bool) -> Result<ProviderView> {
    actor.require(names::VIEW_OAUTH2_PROVIDER)?;
    let before = find(&state.db, state.tenant, id).await?;
    actor.require(names::CHANGE_OAUTH2_PROVIDER)?;
    let mut row = before.clone().into_active_model();
    let new_secret = apply(state, actor, &mut row, Some(&before), request, full).await?;
    row.last_updated = Set(Utc::now());
    let txn = crate::db::begin_write(&state.db).await?;
    let after = row.update(&txn).await.map_err(client_id_taken)?;
    let mut event =
        actor.event(Action::ModelUpdated).about(&provider_ref(&after)).with("diff", events::service::diff(&shown(&before), &shown(&after)));
    if new_secret.is_some() {
        event = event.with("client_secret", json!("replaced"));
    }
    events::service::record(&txn, state, event).await?;
    super::cache::commit_change(state, txn).await?;
    view(&state.db, state.tenant, after, new_secret).await
}

/// Gives the confidential provider `id` a new generated client secret, returned in this answer
/// only; the old one stops working at once. Needs the change permission.
pub async fn rotate_client_secret(state: &AppState, actor: &Actor, id: i64) -> Result<ProviderView> {
    actor.require(names::VIEW_OAUTH2_PROVIDER)?;
    let before = find(&state.db, state.tenant, id).await?;
    actor.require(names::CHANGE_OAUTH2_PROVIDER)?;
    if before.client_type != ClientType::Confidential.as_str() {
        return Err(Error::field("client_type", "A public client has no secret."));
    }
    let secret = random_token(48);
    let mut row = before.into_active_model();
    row.client_secret_digest = Set(Some(secret_digest(&state.secret, &secret)));
    row.last_updated = Set(Utc::now());
    let txn = crate::db::begin_write(&state.db).await?;
    let after = row.update(&txn).await?;
    events::service::record(
        &txn,
        state,
        actor.event(Action::ModelUpdated).about(&provider_ref(&after)).with("client_secret", json!("replaced")),
    )
    .await?;
    super::cache::commit_change(state, txn).await?;
    view(&state.db, state.tenant, after, Some(secret)).await
}

/// Deletes the provider `id`; its application stays, without a provider. Needs the delete
/// permission.
pub async fn delete(state: &AppState, actor: &Actor, id: i64) -> Result<()> {
    actor.require(names::VIEW_OAUTH2_PROVIDER)?;
    let txn = crate::db::begin_write(&state.db).await?;
    let provider = find(&txn, state.tenant, id).await?;
    actor.require(names::DELETE_OAUTH2_PROVIDER)?;
    provider::Entity::delete_by_id(provider.id).exec(&txn).await?;
    events::service::record(&txn, state, actor.event(Action::ModelDeleted).about(&provider_ref(&provider))).await?;
    super::cache::commit_change(state, txn).await?;
    Ok(())
}

/// Providers of the tenant by id, for showing them beside applications.
pub(super) async fn by_ids(db: &impl ConnectionTrait, tenant: TenantId, ids: &[i64]) -> Result<HashMap<i64, provider::Model>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(provider::Entity::find()
        .filter(provider::Column::TenantId.eq(tenant.0))
        .filter(provider::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|p| (p.id, p))
        .collect())
}

/// Providers of the tenant by id with the applications they serve, for showing them beside what
/// they issued.
pub(super) async fn views_by_ids(db: &impl ConnectionTrait, tenant: TenantId, ids: &[i64]) -> Result<HashMap<i64, ProviderView>> {
    let providers = by_ids(db, tenant, ids).await?;
    let found: Vec<i64> = providers.keys().copied().collect();
    let mut applications = applications_of(db, tenant, &found).await?;
    Ok(providers
        .into_iter()
        .map(|(id, provider)| (id, ProviderView { application: applications.remove(&id), provider, new_client_secret: None }))
        .collect())
}

/// The provider `id` of the tenant, if it exists.
pub(super) async fn exists(db: &impl ConnectionTrait, tenant: TenantId, id: i64) -> Result<bool> {
    Ok(provider::Entity::find_by_id(id).filter(provider::Column::TenantId.eq(tenant.0)).one(db).await?.is_some())
}

/// What uses the certificate-key pair `id`: the providers whose tokens it signs (deleting the
/// pair leaves them signing with the server's managed key). Needs the right to see the pair.
pub async fn key_pair_used_by(state: &AppState, actor: &Actor, id: Uuid) -> Result<Vec<crate::tokens::api::UsedBy>> {
    let pair = crate::crypto::service::get(state, actor, id).await?.pair;
    let providers = provider::Entity::find()
        .filter(provider::Column::TenantId.eq(state.tenant.0))
        .filter(provider::Column::SigningKeyId.eq(pair.id))
        .order_by_asc(provider::Column::Id)
        .all(&state.db)
        .await?;
    Ok(providers
        .into_iter()
        .map(|p| crate::tokens::api::UsedBy {
            app: "authentik_providers_oauth2".into(),
            model_name: "oauth2provider".into(),
            pk: p.id.to_string(),
            name: p.name,
            action: "set_null".into(),
        })
        .collect())
}
