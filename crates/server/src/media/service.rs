//! Uploading, listing, serving and deleting files, under their permissions, each change
//! recorded in the audit trail.
//!
//! The index in the database is the list of files: a name appears only once its bytes are
//! stored, and bytes are stored under a fresh random key, so a failed upload or a refused name
//! never replaces anything and leaves nothing listed.

use bytes::Bytes;
use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::entities::media_file;
use super::kind::ImageKind;
use super::name::FileName;
use super::store::StoreError;
use crate::accounts::access::Actor;
use crate::accounts::permissions::names;
use crate::db::pagination::{contains_pattern, ilike};
use crate::db::text_enum::text_enum;
use crate::error::{Error, FieldErrors, Result};
use crate::events::{self, Action, EventRecord, ModelRef};
use crate::state::AppState;
use crate::tenants::TenantId;

/// Where files are served: `/files/media/<name>`.
pub const SERVED_PREFIX: &str = "/files/media/";

text_enum!(
    /// What a file is for; authentik's API knows one usage for uploads.
    FileUsage {
        Media => "media",
    }
);

const NAME_TAKEN: &str = "A file with this name already exists.";
/// What anyone is told when the store fails them; the cause goes to the log.
const STORE_UNAVAILABLE: &str = "File storage is unavailable. Try again later.";

/// The file part of an upload.
#[derive(Debug, Default)]
pub enum FilePart {
    /// No file was sent.
    #[default]
    Missing,
    /// The content went past `media.max_upload_bytes` (and was not read further).
    TooLarge,
    /// The content, no larger than the limit.
    Content(Bytes),
}

/// An upload as it arrived: each part the client sent, not yet checked.
#[derive(Debug, Default)]
pub struct Upload {
    /// The `name` field; when empty, the file's own name is used.
    pub name: Option<String>,
    /// The `usage` field.
    pub usage: Option<String>,
    /// The file's name as the client sent it with the content.
    pub file_name: Option<String>,
    pub file: FilePart,
}

/// A file the index lists.
#[derive(Debug, Clone)]
pub struct StoredFile {
    pub name: FileName,
    pub kind: ImageKind,
    pub size: i64,
    pub sha256: String,
    pub storage_key: String,
}

impl StoredFile {
    fn from_row(row: media_file::Model) -> Result<Self> {
        let name = FileName::parse(&row.name).map_err(|_| Error::internal(format!("stored file name {:?} is not valid", row.name)))?;
        let kind = ImageKind::parse(&row.mime_type).ok_or_else(|| Error::internal(format!("stored file type {:?}", row.mime_type)))?;
        Ok(Self { name, kind, size: row.size, sha256: row.sha256, storage_key: row.storage_key })
    }

    /// Where the file is served.
    pub fn url(&self) -> String {
        super::url_of(&self.name)
    }
}

/// Filters of the file list.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FileFilter {
    /// Only `media` is known.
    pub usage: Option<String>,
    /// Part of the name, in any case.
    pub search: Option<String>,
    /// Only files this server may delete (all uploaded files are).
    pub manageable_only: Option<bool>,
}

fn file_ref(name: &FileName) -> ModelRef {
    ModelRef { app: "authentik_admin_files", model_name: "File", pk: json!(name.as_str()), name: name.as_str().to_owned() }
}

/// What is wrong with a `usage` value, if anything (absent or empty means `media`).
fn usage_problem(usage: Option<&str>) -> Option<String> {
    let usage = usage.filter(|u| !u.is_empty())?;
    FileUsage::parse(usage).is_none().then(|| format!("\"{usage}\" is not a valid choice. Choose from: {}.", FileUsage::choices()))
}

/// Fails with 400 naming `usage` when it is not a known usage.
fn check_usage(usage: Option<&str>) -> Result<()> {
    usage_problem(usage).map_or(Ok(()), |problem| Err(Error::field("usage", problem)))
}

/// What a client is told when the store fails; the cause goes to the log.
fn store_failed(error: StoreError) -> Error {
    match error {
        StoreError::BucketMissing(bucket) => {
            Error::Unavailable(format!("File storage is unavailable: the bucket {bucket} does not exist. Try again later."))
        }
        StoreError::Unavailable(cause) => {
            tracing::warn!(%cause, "the media store failed");
            Error::Unavailable(STORE_UNAVAILABLE.into())
        }
        StoreError::Missing => Error::NotFound,
    }
}

/// Checks the store when the server starts: creates a missing bucket when the configuration
/// allows it; otherwise a missing bucket or a store that cannot be reached is logged and recorded
/// as a `configuration_error` event, and the server runs on (uploads answer 503 until it is fixed).
pub async fn prepare_store(state: &AppState) -> Result<()> {
    if let Err(error) = state.media.prepare().await {
        let message = format!("media store {}: {error}", state.media.description());
        tracing::warn!(%message, "uploaded files are unavailable");
        let event = EventRecord::new(Action::ConfigurationError).with("message", json!(message));
        events::service::record(&state.db, state, event).await?;
    }
    Ok(())
}

async fn find_row(db: &impl ConnectionTrait, tenant: TenantId, name: &FileName) -> Result<Option<media_file::Model>> {
    Ok(media_file::Entity::find()
        .filter(media_file::Column::TenantId.eq(tenant.0))
        .filter(media_file::Column::Name.eq(name.as_str()))
        .one(db)
        .await?)
}

/// The file `name` of `tenant`, whoever asks.
pub async fn find(db: &impl ConnectionTrait, tenant: TenantId, name: &FileName) -> Result<Option<StoredFile>> {
    find_row(db, tenant, name).await?.map(StoredFile::from_row).transpose()
}

/// Fails with 403 unless `actor` may upload and delete files (`manage_media_files`): asked
/// before an upload's body is read.
pub fn may_manage(actor: &Actor) -> Result<()> {
    actor.require(names::MANAGE_MEDIA_FILES)
}

/// Stores an uploaded file; needs `manage_media_files`. The name (or the file's own name) must
/// be free and end in the extension of the image type the content holds.
pub async fn upload(state: &AppState, actor: &Actor, upload: Upload) -> Result<StoredFile> {
    actor.require(names::MANAGE_MEDIA_FILES)?;
    let mut errors = FieldErrors::new();
    if let Some(problem) = usage_problem(upload.usage.as_deref()) {
        errors.add("usage", problem);
    }
    let max = state.config.media.max_upload_bytes;
    let kind = match &upload.file {
        FilePart::TooLarge => {
            errors.add("file", format!("File size exceeds maximum allowed size ({max} bytes)."));
            None
        }
        FilePart::Missing => {
            errors.add("file", "No file was submitted.");
            None
        }
        FilePart::Content(content) if content.is_empty() => {
            errors.add("file", "The submitted file is empty.");
            None
        }
        FilePart::Content(content) => {
            let kind = ImageKind::sniff(content);
            if kind.is_none() {
                errors.add("file", "The file is not an image of an accepted type (PNG, JPEG, GIF, WebP, AVIF, ICO or SVG).");
            }
            kind
        }
    };
    let wanted = upload.name.as_deref().map(str::trim).filter(|n| !n.is_empty()).or(upload.file_name.as_deref());
    let name = match wanted.map(FileName::parse) {
        None => {
            errors.add("name", "This field is required when the file has no name.");
            None
        }
        Some(Err(message)) => {
            errors.add("name", message);
            None
        }
        Some(Ok(name)) => Some(name),
    };
    if let (Some(name), Some(kind)) = (&name, kind)
        && name.kind() != kind
    {
        errors.add("name", format!("The file holds a {} image: its name must end in .{}.", kind.as_str(), kind.extension()));
    }
    let (Some(name), Some(kind), FilePart::Content(content), true) = (name, kind, upload.file, errors.is_empty()) else {
        return Err(Error::Validation(errors));
    };
    if find_row(&state.db, state.tenant, &name).await?.is_some() {
        return Err(Error::field("name", NAME_TAKEN));
    }

    let id = Uuid::new_v4();
    let storage_key = format!("media/{}/{id}", state.tenant.0);
    let stored = StoredFile {
        name,
        kind,
        size: i64::try_from(content.len()).unwrap_or(i64::MAX),
        sha256: hex::encode(Sha256::digest(&content)),
        storage_key,
    };
    // Storing, listing and taking back run to their end even when the client goes away
    // meanwhile (which drops this request's future), so no bytes are left that nothing lists.
    let (state, actor) = (state.clone(), actor.clone());
    tokio::spawn(async move {
        state.media.put(&stored.storage_key, content).await.map_err(store_failed)?;
        match index(&state, &actor, id, &stored).await {
            Ok(()) => Ok(stored),
            Err(error) => {
                if let Err(cleanup) = state.media.delete(&stored.storage_key).await {
                    tracing::warn!(key = %stored.storage_key, %cleanup, "an unlisted upload is left in the media store");
                }
                Err(error)
            }
        }
    })
    .await
    .map_err(|e| Error::internal(format!("the upload stopped: {e}")))?
}

/// Lists a stored file in the index and records the upload.
async fn index(state: &AppState, actor: &Actor, id: Uuid, file: &StoredFile) -> Result<()> {
    let txn = crate::db::begin_write(&state.db).await?;
    media_file::ActiveModel {
        id: Set(id),
        tenant_id: Set(state.tenant.0),
        name: Set(file.name.as_str().to_owned()),
        mime_type: Set(file.kind.as_str().to_owned()),
        size: Set(file.size),
        sha256: Set(file.sha256.clone()),
        storage_key: Set(file.storage_key.clone()),
        created_by: Set(actor.user.as_ref().map(|u| u.id)),
        created: Set(Utc::now()),
    }
    .insert(&txn)
    .await
    .map_err(|error| match error.sql_err() {
        // Another upload took the name since it was checked.
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => Error::field("name", NAME_TAKEN),
        _ => error.into(),
    })?;
    let event = actor.event(Action::ModelCreated).about(&file_ref(&file.name)).with("mime_type", json!(file.kind.as_str()));
    events::service::record(&txn, state, event.with("size", json!(file.size))).await?;
    txn.commit().await?;
    Ok(())
}

/// Every file whose name contains `filter.search`, by name; needs `view_media_files`.
pub async fn list(state: &AppState, actor: &Actor, filter: &FileFilter) -> Result<Vec<StoredFile>> {
    actor.require(names::VIEW_MEDIA_FILES)?;
    check_usage(filter.usage.as_deref())?;
    let mut select = media_file::Entity::find().filter(media_file::Column::TenantId.eq(state.tenant.0));
    if let Some(pattern) = filter.search.as_deref().and_then(contains_pattern) {
        select = select.filter(ilike(media_file::Column::Name, &pattern));
    }
    select.order_by_asc(media_file::Column::Name).all(&state.db).await?.into_iter().map(StoredFile::from_row).collect()
}

/// Parses a name given as a query parameter, naming the parameter when it is wrong.
pub fn parse_name(name: Option<&str>) -> Result<FileName> {
    match name.filter(|n| !n.is_empty()) {
        None => Err(Error::field("name", "This field is required.")),
        Some(name) => FileName::parse(name).map_err(|message| Error::field("name", message)),
    }
}

/// Deletes the file `name`; needs `manage_media_files`. It leaves the index at once; its bytes
/// are removed from the store after (a store that fails then leaves unlisted bytes, logged).
pub async fn delete(state: &AppState, actor: &Actor, name: Option<&str>, usage: Option<&str>) -> Result<()> {
    actor.require(names::MANAGE_MEDIA_FILES)?;
    let name = parse_name(name)?;
    check_usage(usage)?;
    let (state, actor) = (state.clone(), actor.clone());
    // Runs to its end even when the client goes away meanwhile, like an upload.
    tokio::spawn(async move {
        let txn = crate::db::begin_write(&state.db).await?;
        let row = find_row(&txn, state.tenant, &name).await?.ok_or(Error::NotFound)?;
        media_file::Entity::delete_by_id(row.id).exec(&txn).await?;
        events::service::record(&txn, &state, actor.event(Action::ModelDeleted).about(&file_ref(&name))).await?;
        txn.commit().await?;
        if let Err(error) = state.media.delete(&row.storage_key).await {
            tracing::warn!(key = %row.storage_key, %error, "a deleted file's bytes are left in the media store");
        }
        Ok(())
    })
    .await
    .map_err(|e| Error::internal(format!("the deletion stopped: {e}")))?
}

/// The file `name` and its bytes, for serving to anyone: uploaded files are public (they are
/// shown on sign-in pages before anyone signs in).
pub async fn open(state: &AppState, name: &str) -> Result<(StoredFile, Bytes)> {
    let name = FileName::parse(name).map_err(|_| Error::NotFound)?;
    let file = find(&state.db, state.tenant, &name).await?.ok_or(Error::NotFound)?;
    let bytes = state.media.get(&file.storage_key).await.map_err(|error| {
        // Anyone may ask: the cause, a lost object or a missing bucket included, goes to the log.
        tracing::warn!(name = %file.name, key = %file.storage_key, %error, "a listed file cannot be read from the media store");
        Error::Unavailable(STORE_UNAVAILABLE.into())
    })?;
    Ok((file, bytes))
}

/// The URL a stored reference to a file resolves to: a name of an uploaded file becomes its
/// served URL; an absolute URL or path is kept as it is; an empty reference stays empty.
pub fn resolve_url(reference: &str) -> String {
    if reference.is_empty() || reference.starts_with('/') || reference.starts_with("https://") || reference.starts_with("http://") {
        return reference.to_owned();
    }
    match FileName::parse(reference) {
        Ok(name) => super::url_of(&name),
        Err(_) => reference.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_to_served_urls_only_for_file_names() {
        assert_eq!(resolve_url("flows/bg.png"), "/files/media/flows/bg.png");
        assert_eq!(resolve_url("https://cdn.example.com/bg.png"), "https://cdn.example.com/bg.png");
        assert_eq!(resolve_url("/static/bg.png"), "/static/bg.png");
        assert_eq!(resolve_url(""), "");
        assert_eq!(resolve_url("not a file"), "not a file");
    }
}
