//! `/api/v3/admin/file/`: authentik's file API (list, upload, delete, `used_by/`), and
//! `/files/media/<name>`, where uploaded files are served.
//!
//! Files are served by this server from whichever store holds them (proxied, not presigned):
//! their URLs stay the same whatever the store, every answer carries the same headers (the type
//! found at upload, `nosniff`, a policy under which an SVG runs no script), and the bucket stays
//! private. They are small images, cached by browsers and validated by `ETag`.

use axum::Json;
use axum::body::Body;
use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::service::{self, FileFilter, FilePart, StoredFile, Upload};
use crate::error::{Error, NON_FIELD_ERRORS, Result};
use crate::http::auth::Principal;
use crate::http::query::ApiQuery;
use crate::state::AppState;
use crate::tokens::api::UsedBy;

/// Room for the multipart framing and the other fields around the file.
const MULTIPART_OVERHEAD: usize = 64 * 1024;

/// Routes of the file API; bodies may be as large as an upload may be.
pub fn router(max_upload_bytes: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_files, upload_file, delete_file))
        .routes(routes!(file_used_by))
        .layer(DefaultBodyLimit::max(max_upload_bytes + MULTIPART_OVERHEAD))
}

/// Where uploaded files are served (not part of the API document).
pub fn files_router() -> axum::Router<AppState> {
    axum::Router::new().route("/files/media/{*name}", axum::routing::get(serve_file))
}

/// authentik's `FileList`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileOut {
    pub name: String,
    pub mime_type: String,
    pub url: String,
}

impl From<StoredFile> for FileOut {
    fn from(file: StoredFile) -> Self {
        Self { url: file.url(), name: file.name.as_str().to_owned(), mime_type: file.kind.as_str().to_owned() }
    }
}

/// authentik's upload form (`multipart/form-data`).
#[derive(ToSchema)]
#[allow(dead_code)]
struct FileUploadForm {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// The name to keep the file under; the file's own name when empty.
    name: Option<String>,
    /// `media`.
    usage: Option<String>,
}

/// Query parameters naming one file.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FileQuery {
    pub name: Option<String>,
    /// `media`.
    pub usage: Option<String>,
}

#[utoipa::path(get, path = "/api/v3/admin/file/", tag = "admin", params(FileFilter),
    responses((status = 200, body = [FileOut]), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn list_files(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(filter): ApiQuery<FileFilter>,
) -> Result<Json<Vec<FileOut>>> {
    Ok(Json(service::list(&state, &principal.actor(), &filter).await?.into_iter().map(FileOut::from).collect()))
}

/// Reads a text field of the form.
async fn text_field(field: Field<'_>) -> Result<String> {
    let name = field.name().unwrap_or_default().to_owned();
    field.text().await.map_err(|error| {
        if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::PayloadTooLarge
        } else {
            Error::field(name, "This field could not be read as text.")
        }
    })
}

/// Reads the file part up to `max` bytes; past that, reads no further.
async fn file_field(mut field: Field<'_>, max: usize) -> Result<FilePart> {
    let mut content = Vec::new();
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) if content.len() + chunk.len() > max => return Ok(FilePart::TooLarge),
            Ok(Some(chunk)) => content.extend_from_slice(&chunk),
            Ok(None) => return Ok(FilePart::Content(content.into())),
            Err(error) if error.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(Error::PayloadTooLarge),
            Err(_) => return Err(Error::field("file", "The file could not be read.")),
        }
    }
}

#[utoipa::path(post, path = "/api/v3/admin/file/", tag = "admin", request_body(content = FileUploadForm, content_type = "multipart/form-data"),
    responses((status = 200, body = FileOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied"),
        (status = 503, description = "File storage is unavailable")))]
async fn upload_file(
    State(state): State<AppState>,
    principal: Principal,
    multipart: std::result::Result<Multipart, MultipartRejection>,
) -> Result<Json<FileOut>> {
    let actor = principal.actor();
    // The permission comes before reading anything the caller sent.
    service::may_manage(&actor)?;
    let mut multipart = multipart.map_err(|_| Error::field(NON_FIELD_ERRORS, "Unsupported media type; send multipart/form-data."))?;
    let mut upload = Upload::default();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(error) if error.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(Error::PayloadTooLarge),
            Err(_) => return Err(Error::field(NON_FIELD_ERRORS, "The multipart body could not be read.")),
        };
        match field.name() {
            Some("file") if !matches!(upload.file, FilePart::Missing) => {
                return Err(Error::field("file", "Send one file at a time."));
            }
            Some("file") => {
                upload.file_name = field.file_name().map(str::to_owned);
                upload.file = file_field(field, state.config.media.max_upload_bytes).await?;
                if matches!(upload.file, FilePart::TooLarge) {
                    break;
                }
            }
            Some("name") => upload.name = Some(text_field(field).await?),
            Some("usage") => upload.usage = Some(text_field(field).await?),
            _ => {}
        }
    }
    Ok(Json(service::upload(&state, &actor, upload).await?.into()))
}

#[utoipa::path(delete, path = "/api/v3/admin/file/", tag = "admin", params(FileQuery),
    responses((status = 200, description = "Deleted"), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied"),
        (status = 404, description = "No such file")))]
async fn delete_file(State(state): State<AppState>, principal: Principal, ApiQuery(query): ApiQuery<FileQuery>) -> Result<StatusCode> {
    service::delete(&state, &principal.actor(), query.name.as_deref(), query.usage.as_deref()).await?;
    Ok(StatusCode::OK)
}

#[utoipa::path(get, path = "/api/v3/admin/file/used_by/", tag = "admin", params(FileQuery),
    responses((status = 200, body = [UsedBy]), (status = 400, description = "Invalid input"), (status = 404, description = "No such file")))]
async fn file_used_by(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<FileQuery>,
) -> Result<Json<Vec<UsedBy>>> {
    Ok(Json(crate::flows::flow_service::flows_using_file(&state, &principal.actor(), query.name.as_deref()).await?))
}

/// Uploaded files are served to anyone, with the type found at upload, an `ETag` and headers
/// under which nothing in them runs.
async fn serve_file(State(state): State<AppState>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let (file, bytes) = match service::open(&state, &name).await {
        Ok(found) => found,
        Err(Error::NotFound) => return (StatusCode::NOT_FOUND, "Not found.").into_response(),
        Err(error) => return error.into_response(),
    };
    let etag = format!("\"{}\"", file.sha256);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    let mut response = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { Body::from(bytes).into_response() };
    let out = response.headers_mut();
    let header_value = |text: &str| HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static(""));
    out.insert(header::ETAG, header_value(&etag));
    // A name can be deleted and uploaded again: caches check back after five minutes.
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    out.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // An SVG opened by itself runs no script, loads nothing and cannot be framed elsewhere.
    out.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox; frame-ancestors 'none'"),
    );
    if !fresh {
        out.insert(header::CONTENT_TYPE, HeaderValue::from_static(file.kind.as_str()));
        out.insert(header::CONTENT_DISPOSITION, header_value(&format!("inline; filename=\"{}\"", file.name.base_name())));
    }
    response
}
