//! `/api/v3/crypto/certificatekeypairs/`: certificate-key pairs in authentik's shapes
//! (`CertificateKeyPair`, `CertificateKeyPairRequest`, `CertificateGenerationRequest`,
//! `CertificateData`).

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::material::KeyType;
use super::service::{self, GenerationRequest, KeyPairChange, KeyPairFilter, KeyPairView};
use crate::db::pagination::{ListParams, Paginated};
use crate::error::{Error, Result};
use crate::http::auth::Principal;
use crate::http::json::ApiJson;
use crate::http::query::ApiQuery;
use crate::state::AppState;
use crate::tokens::api::UsedBy;

const BASE: &str = "/api/v3/crypto/certificatekeypairs/";

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_pairs, import_pair))
        .routes(routes!(generate_pair))
        .routes(routes!(retrieve_pair, update_pair, partial_update_pair, delete_pair))
        .routes(routes!(pair_used_by))
        .routes(routes!(view_certificate))
        .routes(routes!(view_private_key))
}

/// authentik's `CertificateKeyPair`.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyPairOut {
    pub pk: Uuid,
    pub name: String,
    /// SHA-256 fingerprint of the certificate, lower-case hex pairs joined by colons.
    pub fingerprint_sha256: Option<String>,
    pub fingerprint_sha1: Option<String>,
    pub cert_expiry: Option<DateTime<Utc>>,
    /// The certificate's subject as an RFC 4514 string.
    pub cert_subject: Option<String>,
    pub private_key_available: bool,
    /// The algorithm of the certificate's public key.
    pub key_type: Option<KeyType>,
    pub certificate_download_url: String,
    pub private_key_download_url: String,
    /// Set on pairs the server manages (`goauthentik.io/crypto/jwt-managed`).
    pub managed: Option<String>,
}

impl From<KeyPairView> for KeyPairOut {
    fn from(view: KeyPairView) -> Self {
        let private_key_available = view.private_key_available();
        let pair = view.pair;
        Self {
            pk: pair.id,
            certificate_download_url: format!("{BASE}{}/view_certificate/?download", pair.id),
            private_key_download_url: format!("{BASE}{}/view_private_key/?download", pair.id),
            name: pair.name,
            fingerprint_sha256: Some(pair.fingerprint_sha256),
            fingerprint_sha1: Some(pair.fingerprint_sha1),
            cert_expiry: Some(pair.cert_expiry),
            cert_subject: Some(pair.cert_subject),
            private_key_available,
            key_type: pair.key_type.as_deref().and_then(KeyType::parse),
            managed: pair.managed,
        }
    }
}

/// authentik's `CertificateKeyPairRequest`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyPairWrite {
    pub name: Option<String>,
    /// The certificate, PEM-encoded.
    pub certificate_data: Option<String>,
    /// The private key, PEM-encoded (PKCS#8, or PKCS#1 for RSA), unencrypted; optional.
    pub key_data: Option<String>,
}

/// authentik's `CertificateData`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateData {
    pub data: String,
}

/// `?download`: present (with any value but `false`) for a file instead of JSON.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DownloadQuery {
    pub download: Option<String>,
}

impl DownloadQuery {
    fn wanted(&self) -> bool {
        self.download.as_deref().is_some_and(|value| !value.eq_ignore_ascii_case("false"))
    }
}

fn pair_id(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|_| Error::NotFound)
}

/// `data` as JSON, or as a PEM file named after the pair.
fn data_response(query: &DownloadQuery, name: &str, suffix: &str, data: String) -> Response {
    if !query.wanted() {
        return Json(CertificateData { data }).into_response();
    }
    // Only characters that need no quoting in a header or a file system.
    let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect();
    let disposition = format!("attachment; filename=\"{safe}_{suffix}.pem\"");
    let mut response = data.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-pem-file"));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

#[utoipa::path(get, path = "/api/v3/crypto/certificatekeypairs/", tag = "crypto", params(ListParams, KeyPairFilter),
    responses((status = 200, description = "A page of certificate-key pairs", body = Paginated<KeyPairOut>), (status = 403, description = "Permission denied")))]
async fn list_pairs(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(mut filter): ApiQuery<KeyPairFilter>,
    RawQuery(query): RawQuery,
) -> Result<Json<Paginated<KeyPairOut>>> {
    filter.key_type = key_types(query.as_deref().unwrap_or_default())?;
    Ok(Json(service::list(&state, &principal.actor(), &filter, &params).await?.map(KeyPairOut::from)))
}

/// Every `key_type` of a query string: authentik's clients repeat the parameter for several.
fn key_types(query: &str) -> Result<Vec<KeyType>> {
    form_urlencoded::parse(query.as_bytes())
        .filter(|(name, _)| name == "key_type")
        .map(|(_, value)| {
            KeyType::parse(&value).ok_or_else(|| Error::field("key_type", format!("Select a valid choice: {}.", KeyType::choices())))
        })
        .collect()
}

#[utoipa::path(post, path = "/api/v3/crypto/certificatekeypairs/", tag = "crypto", request_body = KeyPairWrite,
    responses((status = 201, body = KeyPairOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn import_pair(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<KeyPairWrite>,
) -> Result<(StatusCode, Json<KeyPairOut>)> {
    let actor = principal.actor();
    let created = service::import(&state, &actor, body.name.as_deref(), body.certificate_data.as_deref(), body.key_data.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

#[utoipa::path(post, path = "/api/v3/crypto/certificatekeypairs/generate/", tag = "crypto", request_body = GenerationRequest,
    responses((status = 200, body = KeyPairOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn generate_pair(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<GenerationRequest>,
) -> Result<Json<KeyPairOut>> {
    Ok(Json(service::generate(&state, &principal.actor(), &body).await?.into()))
}

#[utoipa::path(get, path = "/api/v3/crypto/certificatekeypairs/{kp_uuid}/", tag = "crypto",
    params(("kp_uuid" = Uuid, Path, description = "Certificate-key pair uuid")),
    responses((status = 200, body = KeyPairOut), (status = 404, description = "Not found")))]
async fn retrieve_pair(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<KeyPairOut>> {
    Ok(Json(service::get(&state, &principal.actor(), pair_id(&id)?).await?.into()))
}

async fn write(state: AppState, principal: Principal, id: String, body: KeyPairWrite, full: bool) -> Result<Json<KeyPairOut>> {
    let id = pair_id(&id)?;
    let change = KeyPairChange {
        name: body.name.as_deref(),
        certificate_data: body.certificate_data.as_deref(),
        key_data: body.key_data.as_deref(),
    };
    Ok(Json(service::update(&state, &principal.actor(), id, change, full).await?.into()))
}

#[utoipa::path(put, path = "/api/v3/crypto/certificatekeypairs/{kp_uuid}/", tag = "crypto", request_body = KeyPairWrite,
    params(("kp_uuid" = Uuid, Path, description = "Certificate-key pair uuid")),
    responses((status = 200, body = KeyPairOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn update_pair(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<KeyPairWrite>,
) -> Result<Json<KeyPairOut>> {
    write(state, principal, id, body, true).await
}

#[utoipa::path(patch, path = "/api/v3/crypto/certificatekeypairs/{kp_uuid}/", tag = "crypto", request_body = KeyPairWrite,
    params(("kp_uuid" = Uuid, Path, description = "Certificate-key pair uuid")),
    responses((status = 200, body = KeyPairOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn partial_update_pair(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<KeyPairWrite>,
) -> Result<Json<KeyPairOut>> {
    write(state, principal, id, body, false).await
}

#[utoipa::path(delete, path = "/api/v3/crypto/certificatekeypairs/{kp_uuid}/", tag = "crypto",
    params(("kp_uuid" = Uuid, Path, description = "Certificate-key pair uuid")),
    responses((status = 204, description = "Deleted"), (status = 400, description = "A managed pair"), (status = 404, description = "Not found")))]
async fn delete_pair(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    service::delete(&state, &principal.actor(), pair_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v3/crypto/certificatekeypairs/{kp_uuid}/used_by/", tag = "crypto",
    params(("kp_uuid" = Uuid, Path, description = "Certificate-key pair uuid")),
    responses((status = 200, body = [UsedBy]), (status = 404, description = "Not found")))]
async fn pair_used_by(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<Vec<UsedBy>>> {
    Ok(Json(crate::oauth::providers::key_pair_used_by(&state, &principal.actor(), pair_id(&id)?).await?))
}

#[utoipa::path(get, path = "/api/v3/crypto/certificatekeypairs/{kp_uuid}/view_certificate/", tag = "crypto",
    params(("kp_uuid" = Uuid, Path, description = "Certificate-key pair uuid"), DownloadQuery),
    responses((status = 200, body = CertificateData), (status = 403, description = "Permission denied"), (status = 404, description = "Not found")))]
async fn view_certificate(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<DownloadQuery>,
) -> Result<Response> {
    let (name, pem) = service::view_certificate(&state, &principal.actor(), pair_id(&id)?).await?;
    Ok(data_response(&query, &name, "certificate", pem))
}

#[utoipa::path(get, path = "/api/v3/crypto/certificatekeypairs/{kp_uuid}/view_private_key/", tag = "crypto",
    params(("kp_uuid" = Uuid, Path, description = "Certificate-key pair uuid"), DownloadQuery),
    responses((status = 200, body = CertificateData), (status = 403, description = "Permission denied (superusers only)"), (status = 404, description = "Not found")))]
async fn view_private_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<DownloadQuery>,
) -> Result<Response> {
    let (name, key) = service::view_private_key(&state, &principal.actor(), pair_id(&id)?).await?;
    Ok(data_response(&query, &name, "private_key", key.unwrap_or_default()))
}
