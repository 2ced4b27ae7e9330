//! The device authorization grant (RFC 8628), for a TV or a command line without a browser: the
//! device asks for a pair of codes, shows the short user code, and polls the token endpoint with
//! the long device code while a person enters the user code on their own signed-in browser and
//! allows or denies. Both codes are kept as keyed digests; wrong user codes are counted per
//! person like one-time codes.

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::claims::Scopes;
use super::entities::{application, device_code, provider};
use super::grants::{Issue, IssuedTokens, Mint, OAuthError, Parameters};
use super::model::GrantType;
use super::scopes::ScopeOffer;
use crate::credentials::attempts::{self, Bucket};
use crate::credentials::cache::AuthContext;
use crate::db::text_enum::text_enum;
use crate::error::{Error, Result};
use crate::events::client::ClientInfo;
use crate::events::{self, Action, EventRecord};
use crate::secret::random_token;
use crate::state::AppState;

const DEVICE_PURPOSE: &str = "oauth2-device-code";
const USER_CODE_PURPOSE: &str = "oauth2-user-code";
/// How long a device has to be allowed: ten minutes, long enough to find a browser.
const LIFETIME_SECONDS: i64 = 600;
/// How often a device may poll (RFC 8628 §3.2's default).
const INTERVAL_SECONDS: i64 = 5;
/// The user code's letters: consonants only, so no word is spelled and nothing is mistaken for a
/// digit (RFC 8628 §6.1); eight of them give about 34 bits.
const ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
const USER_CODE_LENGTH: usize = 8;
/// Where a device asks for its codes.
pub const DEVICE_PATH: &str = "/application/o/device/";
/// Where people enter a user code.
pub const VERIFICATION_PATH: &str = "/if/device/";
/// What a person is told when the application's authorization flow asks more than a device
/// sign-in can.
pub const FLOW_NEEDS_BROWSER: &str =
    "This application's authorization flow has steps that cannot be taken for a device; sign in to it from a browser instead.";
/// What a person is told for a code that is wrong, used or past its time.
pub const UNKNOWN_CODE: &str = "This code is not valid or has expired. Check it and try again.";

text_enum!(
    /// Where a device's request stands.
    DeviceStatus {
        Pending => "pending",
        Approved => "approved",
        Denied => "denied",
        Used => "used",
    }
);

/// The device authorization response (RFC 8628 §3.2).
#[derive(Debug, Serialize)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub expires_in: i64,
    pub interval: i64,
}

fn new_user_code() -> String {
    let mut rng = rand::rngs::OsRng;
    let letters: String = (0..USER_CODE_LENGTH).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect();
    format!("{}-{}", &letters[..4], &letters[4..])
}

/// A user code as typed, in its stored form: upper case, without dashes or spaces; `None` for
/// anything that cannot be one.
pub fn normalized(typed: &str) -> Option<String> {
    let letters: String = typed.chars().filter(|c| *c != '-' && !c.is_whitespace()).map(|c| c.to_ascii_uppercase()).collect();
    (letters.len() == USER_CODE_LENGTH && letters.bytes().all(|b| ALPHABET.contains(&b))).then_some(letters)
}

/// Answers a device's request for codes (`body` is its form body; `basic` the client's HTTP
/// basic credentials).
pub async fn start(
    state: &AppState,
    base: &str,
    body: &str,
    basic: Option<(String, String)>,
    client: &ClientInfo,
) -> Result<DeviceAuthorization, OAuthError> {
    // Each request writes a row and gives out a user code: counted per client address, and
    // never given back.
    let _counted = attempts::reserve(&state.db, state.tenant, state.clock.now(), vec![Bucket::device_requests_from(client.ip)]).await?;
    let parameters = Parameters::parse_once(body)?;
    let client = super::grants::authenticate_client(state, base, &parameters, basic).await?;
    let provider = &client.provider;
    if !provider.grant_types().contains(&GrantType::DeviceCode) {
        return Err(OAuthError::UnauthorizedClient("This client may not use the device authorization grant.".into()));
    }
    let offer = ScopeOffer::of(&state.db, state.tenant, provider).await?;
    let scopes = Scopes::parse(parameters.get("scope").unwrap_or_default()).offered_by(&offer);
    let device_code = random_token(32);
    let now = Utc::now();
    // A clash of user codes is one in billions while both live; the unique index refuses it, and
    // a fresh code is drawn.
    for _ in 0..3 {
        let user_code = new_user_code();
        let digest = state.secret.digest(USER_CODE_PURPOSE, normalized(&user_code).unwrap_or_default().as_bytes());
        let row = device_code::ActiveModel {
            id: Set(Uuid::new_v4()),
            tenant_id: Set(state.tenant.0),
            provider_id: Set(provider.id),
            device_code_digest: Set(state.secret.digest(DEVICE_PURPOSE, device_code.as_bytes())),
            user_code_digest: Set(digest),
            scope: Set(scopes.as_text()),
            status: Set(DeviceStatus::Pending.as_str().to_owned()),
            user_id: Set(None),
            session_id: Set(None),
            auth_time: Set(None),
            last_poll: Set(None),
            expires: Set(now + TimeDelta::seconds(LIFETIME_SECONDS)),
            created: Set(now),
        };
        match row.insert(&state.db).await {
            Ok(_) => {
                let verification_uri = format!("{base}{VERIFICATION_PATH}");
                let verification_uri_complete = format!("{verification_uri}?code={user_code}");
                return Ok(DeviceAuthorization {
                    device_code,
                    user_code,
                    verification_uri,
                    verification_uri_complete,
                    expires_in: LIFETIME_SECONDS,
                    interval: INTERVAL_SECONDS,
                });
            }
            Err(error) if matches!(error.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(OAuthError::Internal(Error::internal("no free user code")))
}

/// A device's request as the person who entered its code sees it.
#[derive(Debug, Clone)]
pub struct DeviceRequest {
    /// The user code as shown, `XXXX-XXXX`.
    pub user_code: String,
    pub application: application::Model,
    /// What the scopes let the application see, as the consent page says it.
    pub permissions: Vec<String>,
}

/// The pending, live request whose user code is `typed`, if any.
async fn pending(db: &impl ConnectionTrait, state: &AppState, typed: &str) -> Result<Option<(device_code::Model, String)>> {
    let Some(code) = normalized(typed) else { return Ok(None) };
    let row = device_code::Entity::find()
        .filter(device_code::Column::TenantId.eq(state.tenant.0))
        .filter(device_code::Column::UserCodeDigest.eq(state.secret.digest(USER_CODE_PURPOSE, code.as_bytes())))
        .filter(device_code::Column::Status.eq(DeviceStatus::Pending.as_str()))
        .filter(device_code::Column::Expires.gt(Utc::now()))
        .one(db)
        .await?;
    Ok(row.map(|row| (row, format!("{}-{}", &code[..4], &code[4..]))))
}

/// Looks up the user code `typed` for the signed-in person `current`: the request it names, or
/// why not. Every lookup counts toward the person's limit on wrong codes; a right one gives its
/// own attempt back.
pub async fn look_up(state: &AppState, current: &AuthContext, typed: &str) -> Result<std::result::Result<DeviceRequest, String>> {
    Ok(found(state, current, typed).await?.map(|found| found.request))
}

/// A pending request with its row and provider.
struct Found {
    request: DeviceRequest,
    row: device_code::Model,
    provider: provider::Model,
}

async fn found(state: &AppState, current: &AuthContext, typed: &str) -> Result<std::result::Result<Found, String>> {
    let (checking, typed) = (state.clone(), typed.to_owned());
    let guesses = vec![Bucket::user_code_guesses(current.user.id)];
    let looked_up =
        attempts::look_up(
            &state.db,
            state.tenant,
            state.clock.now(),
            guesses,
            async move { pending(&checking.db, &checking, &typed).await },
        )
        .await?;
    let Some((row, user_code)) = looked_up else { return Ok(Err(UNKNOWN_CODE.to_owned())) };
    let provider = provider::Entity::find_by_id(row.provider_id).one(&state.db).await?.ok_or(Error::NotFound)?;
    let application = application::Entity::find()
        .filter(application::Column::TenantId.eq(state.tenant.0))
        .filter(application::Column::ProviderId.eq(provider.id))
        .one(&state.db)
        .await?;
    let Some(application) = application else { return Ok(Err(UNKNOWN_CODE.to_owned())) };
    let offer = ScopeOffer::of(&state.db, state.tenant, &provider).await?;
    let permissions = Scopes::parse(&row.scope).iter().filter_map(|scope| offer.description(scope).map(str::to_owned)).collect();
    Ok(Ok(Found { request: DeviceRequest { user_code, application, permissions }, row, provider }))
}

/// The person `current` allows (`allow`) or denies the device whose user code is `typed`: the
/// application's name, or why not. The answer is taken once, by compare-and-set.
pub async fn decide(
    state: &AppState,
    current: &AuthContext,
    typed: &str,
    allow: bool,
    client: &ClientInfo,
) -> Result<std::result::Result<String, String>> {
    let Found { request, row, provider } = match found(state, current, typed).await? {
        Ok(found) => found,
        Err(reason) => return Ok(Err(reason)),
    };
    let session = current.session.as_ref().ok_or(Error::Unauthenticated)?;
    let flow = crate::flows::flow_service::flows_by_id(&state.db, state.tenant, &[provider.authorization_flow_id])
        .await?
        .remove(&provider.authorization_flow_id)
        .ok_or_else(|| Error::internal("a provider's authorization flow is missing"))?;
    if allow && let Some(reason) = crate::flows::executor::requirement_unmet(&flow, Some(current)) {
        return Ok(Err(reason.to_owned()));
    }
    // This page is the consent; any other stage of the authorization flow (a second factor, a
    // deny stage) is not run here, so a device of such an application is not allowed here.
    let stages = crate::flows::executor::planned_stages(state, &flow.slug).await?;
    if allow && stages.iter().any(|stage| stage.kind != "consent") {
        return Ok(Err(FLOW_NEEDS_BROWSER.to_owned()));
    }
    let status = if allow { DeviceStatus::Approved } else { DeviceStatus::Denied };
    let txn = crate::db::begin_write(&state.db).await?;
    let taken = device_code::Entity::update_many()
        .col_expr(device_code::Column::Status, Expr::value(status.as_str()))
        .col_expr(device_code::Column::UserId, Expr::value(current.user.id))
        .col_expr(device_code::Column::SessionId, Expr::value(session.id))
        .col_expr(device_code::Column::AuthTime, Expr::value(session.created))
        .filter(device_code::Column::Id.eq(row.id))
        .filter(device_code::Column::Status.eq(DeviceStatus::Pending.as_str()))
        .exec(&txn)
        .await?;
    if taken.rows_affected != 1 {
        return Ok(Err(UNKNOWN_CODE.to_owned()));
    }
    if allow {
        let app = &request.application;
        let event = EventRecord::new(Action::AuthorizeApplication)
            .by(&current.user)
            .from_client(client)
            .with("authorized_application", json!({"pk": app.id.to_string(), "name": app.name, "slug": app.slug}))
            .with("scopes", json!(row.scope))
            .with("device", json!(true));
        events::service::record(&txn, state, event).await?;
    }
    txn.commit().await?;
    Ok(Ok(request.application.name))
}

/// Answers a device's poll at the token endpoint (`grant_type` of [`GrantType::DeviceCode`]).
pub(super) async fn exchange(mint: &Mint<'_>, parameters: &Parameters) -> Result<IssuedTokens, OAuthError> {
    let state = mint.state;
    let given = parameters.get("device_code").ok_or_else(|| OAuthError::InvalidRequest("device_code is missing.".into()))?;
    let txn = crate::db::begin_write(&state.db).await?;
    let row = device_code::Entity::find()
        .filter(device_code::Column::DeviceCodeDigest.eq(state.secret.digest(DEVICE_PURPOSE, given.as_bytes())))
        .filter(device_code::Column::ProviderId.eq(mint.provider.id))
        .one(&txn)
        .await?
        .ok_or_else(|| OAuthError::InvalidGrant("The device code is invalid.".into()))?;
    let now = Utc::now();
    match DeviceStatus::parse(&row.status) {
        Some(DeviceStatus::Used) | None => Err(OAuthError::InvalidGrant("The device code was already used.".into())),
        Some(DeviceStatus::Denied) => Err(OAuthError::AccessDenied),
        _ if row.expires <= now => Err(OAuthError::ExpiredToken),
        Some(DeviceStatus::Pending) => {
            // A second of slack, so a device polling at its interval is not slowed by jitter.
            let too_soon = row.last_poll.is_some_and(|last: DateTime<Utc>| now - last < TimeDelta::seconds(INTERVAL_SECONDS - 1));
            device_code::Entity::update_many()
                .col_expr(device_code::Column::LastPoll, Expr::value(now))
                .filter(device_code::Column::Id.eq(row.id))
                .exec(&txn)
                .await?;
            txn.commit().await?;
            Err(if too_soon { OAuthError::SlowDown } else { OAuthError::AuthorizationPending })
        }
        Some(DeviceStatus::Approved) => {
            let taken = device_code::Entity::update_many()
                .col_expr(device_code::Column::Status, Expr::value(DeviceStatus::Used.as_str()))
                .filter(device_code::Column::Id.eq(row.id))
                .filter(device_code::Column::Status.eq(DeviceStatus::Approved.as_str()))
                .exec(&txn)
                .await?;
            if taken.rows_affected != 1 {
                return Err(OAuthError::InvalidGrant("The device code was already used.".into()));
            }
            let invalid = || OAuthError::InvalidGrant("The person who allowed this device is no longer signed in.".into());
            if !super::grants::session_live(&txn, row.session_id).await? {
                return Err(invalid());
            }
            let (Some(user_id), Some(auth_time)) = (row.user_id, row.auth_time) else { return Err(invalid()) };
            let user = super::grants::active_user(&txn, state, user_id).await?;
            let scopes = Scopes::parse(&row.scope);
            let from = Issue { family: row.id, session_id: row.session_id, auth_time, nonce: None };
            let unsigned = super::grants::issue(&txn, mint, &user, &scopes, from).await?;
            txn.commit().await?;
            unsigned.signed(mint).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_eight_consonants_and_read_back_however_they_are_typed() {
        for _ in 0..100 {
            let code = new_user_code();
            assert_eq!(code.len(), 9);
            let stored = normalized(&code).expect("a code of our own reads back");
            assert_eq!(normalized(&code.to_lowercase()), Some(stored.clone()));
            assert_eq!(normalized(&format!(" {} ", stored.replace("", " "))), Some(stored));
        }
        for wrong in ["", "BCDF-GHJ", "BCDF-GHJKL", "ABCD-EFGH", "BCDF-GHJ1", "BCDF_GHJK"] {
            assert_eq!(normalized(wrong), None, "{wrong}");
        }
    }
}
