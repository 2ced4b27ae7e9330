//! Backups of an installation on SQLite: one archive (tar) holding a consistent copy of the
//! database, taken while the server runs, the secret key that opens what the database keeps
//! sealed, and the uploaded files the copy lists when they live in a local directory. Restoring
//! fills an empty data directory and checks that the key opens the copy.
//! PostgreSQL installations are backed up with `pg_dump`, the secret key kept beside the dump.

use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use std::str::FromStr;

use sea_orm::sqlx::sqlite::SqliteConnectOptions;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde::{Deserialize, Serialize};

use crate::config::{Backend, Config, MediaBackend};
use crate::secret::{ServerSecret, constant_time_eq};

/// What the archive holds, under these names.
const MANIFEST: &str = "gatehouse-backup.json";
const DATABASE: &str = "gatehouse.sqlite3";
const SECRET_KEY: &str = "secret_key";
/// Uploaded files are members named by their storage key, which starts with this folder.
const MEDIA: &str = "media";
/// The archive layout this version writes and reads.
const FORMAT: u32 = 1;
/// Bounds on the small members, so a damaged or hostile archive cannot make restore read
/// without end.
const MAX_MANIFEST: u64 = 64 * 1024;
const MAX_SECRET_KEY: u64 = 4 * 1024;

/// Said when asked to copy a PostgreSQL installation.
const USE_PG_DUMP: &str = "backup and restore copy SQLite installations; on PostgreSQL use pg_dump and pg_restore, and keep \
     the secret key beside the dump (README, Backups)";

/// The archive's description of itself.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    created: DateTime<Utc>,
    /// The version of Gatehouse that took the backup.
    version: String,
    /// The secret key's public fingerprint, to tell backups of different installations apart.
    secret_key_fingerprint: String,
    /// How many uploaded files the archive holds (absent in archives from before uploads).
    #[serde(default)]
    media_files: u64,
}

/// What a backup wrote.
#[derive(Debug)]
pub struct Written {
    pub path: PathBuf,
    pub bytes: u64,
    pub secret_key_fingerprint: String,
    /// Uploaded files copied into the archive.
    pub media_files: u64,
    /// Files the copy lists that were deleted before they could be copied.
    pub media_gone: u64,
    /// Where uploaded files live when they are not in the archive (an S3 bucket).
    pub media_elsewhere: Option<String>,
}

/// The storage keys of the uploaded files the database at `path` lists (none when it predates
/// uploads).
async fn listed_media(config: &Config, path: &Path) -> Result<Vec<String>, String> {
    let mut copy = config.clone();
    copy.database.url = format!("sqlite://{}", path.display());
    copy.database.max_connections = Some(1);
    let db = crate::db::connect(&copy).await.map_err(|e| e.to_string())?;
    let tables = db
        .query_all_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'media_files'",
        ))
        .await
        .map_err(|e| format!("cannot read the copy: {e}"))?;
    let mut keys = Vec::new();
    if !tables.is_empty() {
        for row in db
            .query_all_raw(Statement::from_string(DbBackend::Sqlite, "SELECT storage_key FROM media_files ORDER BY storage_key"))
            .await
            .map_err(|e| format!("cannot read the copy's uploaded files: {e}"))?
        {
            keys.push(row.try_get::<String>("", "storage_key").map_err(|e| e.to_string())?);
        }
    }
    db.close().await.map_err(|e| e.to_string())?;
    Ok(keys)
}

/// Whether `name` is a storage key as uploads make them: `media/<tenant uuid>/<file uuid>`.
fn is_media_key(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    matches!(parts.as_slice(), [MEDIA, tenant, file] if uuid::Uuid::parse_str(tenant).is_ok() && uuid::Uuid::parse_str(file).is_ok())
}

/// The path of the configured SQLite database file, as the driver reads it from the URL.
fn database_path(config: &Config) -> Result<PathBuf, String> {
    if config.backend() == Backend::Postgres {
        return Err(USE_PG_DUMP.into());
    }
    let url = config.database_url();
    let options = SqliteConnectOptions::from_str(&url).map_err(|e| format!("database.url: {e}"))?;
    let path = options.get_filename();
    if path.as_os_str().is_empty() || path == Path::new(":memory:") || url.contains("mode=memory") {
        return Err(format!("the database {} is not a file that can be copied", crate::config::redact_url_password(&url)));
    }
    Ok(path.to_owned())
}

/// The files SQLite keeps beside a database: a restore must not find stale ones, which SQLite
/// would replay into the restored copy.
fn companions(database: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [with("-wal"), with("-shm"), with("-journal")]
}

/// Writes a backup of the running installation to `to`, which must not exist: the database
/// copied in one read transaction (`VACUUM INTO`), so every write committed before it is in and
/// none that committed later, and the secret key. The archive appears only when complete.
pub async fn backup(config: &Config, to: &Path) -> Result<Written, String> {
    let database = database_path(config)?;
    if !database.exists() {
        return Err(format!("there is no database at {} to back up", database.display()));
    }
    if to.exists() {
        return Err(format!("{} exists already; a backup never replaces a file", to.display()));
    }
    if config.secret_key.is_none() && !config.data_dir.join(SECRET_KEY).exists() {
        return Err(format!("there is no secret key: neither configured nor at {}", config.data_dir.join(SECRET_KEY).display()));
    }
    let secret = ServerSecret::load(config).map_err(|e| e.to_string())?;
    let db = crate::db::connect(config).await.map_err(|e| e.to_string())?;
    // A key that does not open this database would make a backup that cannot be restored.
    crate::secret::check_fingerprint(&db, &secret, config, false).await?;
    let folder = to.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // The copy holds password hashes and sealed secrets: only the owner may enter its folder.
    let mut private = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        private.permissions(std::fs::Permissions::from_mode(0o700));
    }
    let work = private.tempdir_in(folder).map_err(|e| format!("cannot write next to {}: {e}", to.display()))?;
    let copy = work.path().join(DATABASE);
    let copy_text = copy.to_str().ok_or("the backup's folder has a name that is not UTF-8")?;
    db.execute_raw(Statement::from_sql_and_values(DbBackend::Sqlite, "VACUUM INTO ?", [copy_text.into()]))
        .await
        .map_err(|e| format!("cannot copy the database: {e}"))?;
    db.close().await.map_err(|e| e.to_string())?;
    // Uploaded files are only ever added and removed, never changed: copying those the copy
    // lists, after it was taken, gives every one of them but any deleted since.
    let media_directory = config.media.directory(&config.data_dir);
    let (media, media_elsewhere) = match config.media.backend {
        MediaBackend::File => (listed_media(config, &copy).await?, None),
        MediaBackend::S3 => (Vec::new(), Some(format!("the bucket {}", config.media.s3.bucket))),
    };
    let mut media_files = Vec::new();
    let mut media_gone = 0;
    for key in media {
        match std::fs::File::open(media_directory.join(&key)) {
            Ok(file) => media_files.push((key, file)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => media_gone += 1,
            Err(e) => return Err(format!("cannot read the uploaded file {}: {e}", media_directory.join(&key).display())),
        }
    }

    let manifest = Manifest {
        format: FORMAT,
        created: Utc::now(),
        version: env!("CARGO_PKG_VERSION").into(),
        secret_key_fingerprint: secret.fingerprint(),
        media_files: media_files.len() as u64,
    };
    let manifest = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
    let archive = tempfile::NamedTempFile::new_in(folder).map_err(|e| format!("cannot write next to {}: {e}", to.display()))?;
    owner_only(archive.path())?;
    let mut builder = tar::Builder::new(archive);
    let now = u64::try_from(Utc::now().timestamp()).unwrap_or(0);
    // Every member owner-only, so an archive unpacked with `tar x` keeps them private too.
    let mut add = |name: &str, size: u64, bytes: &mut dyn Read| -> std::io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o600);
        header.set_mtime(now);
        header.set_cksum();
        builder.append_data(&mut header, name, bytes)
    };
    let failed = |e: std::io::Error| format!("cannot write the backup: {e}");
    add(MANIFEST, manifest.len() as u64, &mut manifest.as_slice()).map_err(failed)?;
    let key = secret.expose_for_backup();
    add(SECRET_KEY, key.len() as u64, &mut &key[..]).map_err(failed)?;
    let mut copied = std::fs::File::open(&copy).map_err(failed)?;
    let size = copied.metadata().map_err(failed)?.len();
    add(DATABASE, size, &mut copied).map_err(failed)?;
    let media_count = media_files.len() as u64;
    for (key, mut file) in media_files {
        let size = file.metadata().map_err(failed)?.len();
        add(&key, size, &mut file).map_err(failed)?;
    }
    let archive = builder.into_inner().map_err(failed)?;
    archive.as_file().sync_all().map_err(failed)?;
    let bytes = archive.as_file().metadata().map_err(failed)?.len();
    archive.persist_noclobber(to).map_err(|e| format!("cannot put the backup at {}: {}", to.display(), e.error))?;
    Ok(Written {
        path: to.to_owned(),
        bytes,
        secret_key_fingerprint: secret.fingerprint(),
        media_files: media_count,
        media_gone,
        media_elsewhere,
    })
}

/// What a restore put in place.
#[derive(Debug)]
pub struct Restored {
    pub database: PathBuf,
    /// Where the secret key was written; `None` when the configuration names the key.
    pub secret_key: Option<PathBuf>,
    pub taken: DateTime<Utc>,
    /// Uploaded files put back into the media directory.
    pub media_files: u64,
}

/// Restores the archive `from` into the configured data directory, which must hold no database
/// and no secret key. The database appears last, after the key was checked against it, so a
/// failed restore leaves the directory as it was.
pub async fn restore(config: &Config, from: &Path) -> Result<Restored, String> {
    let database = database_path(config)?;
    if database.exists() {
        return Err(format!("{} holds a database already; restore into an empty data directory", database.display()));
    }
    if let Some(stale) = companions(&database).into_iter().find(|path| path.exists()) {
        return Err(format!("{} is left from an earlier database; remove it and restore into an empty data directory", stale.display()));
    }
    let key_file = config.data_dir.join(SECRET_KEY);
    let writes_key = config.secret_key.is_none();
    if writes_key && key_file.exists() {
        return Err(format!("{} exists already; restore into an empty data directory", key_file.display()));
    }
    let media_directory = config.media.directory(&config.data_dir);
    if std::fs::read_dir(&media_directory).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(format!("{} holds files already; restore into an empty data directory", media_directory.display()));
    }
    let folder = database.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned();
    std::fs::create_dir_all(&folder).map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
    // Uploaded files are unpacked into a folder inside their directory (one file system, so
    // the move is a rename) and moved into place just before the database; the folder goes
    // with any failure.
    // A media directory this restore creates goes again if the restore fails (declared before
    // the staging folder, so it is dropped after it, once empty).
    let mut created_media_directory = RemovedUnlessKept { path: media_directory.clone(), keep: media_directory.exists() };
    let mut staged_media: Option<tempfile::TempDir> = None;
    let mut media_files = 0;
    let file = std::fs::File::open(from).map_err(|e| format!("cannot open {}: {e}", from.display()))?;
    let unreadable = |e: std::io::Error| format!("{} is not a Gatehouse backup: {e}", from.display());
    let mut archive = tar::Archive::new(file);
    let mut manifest: Option<Manifest> = None;
    let mut key: Option<Vec<u8>> = None;
    let mut copy: Option<tempfile::NamedTempFile> = None;
    for entry in archive.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let name = entry.path().map_err(unreadable)?.to_string_lossy().into_owned();
        match name.as_str() {
            MANIFEST => {
                let text = read_bounded(&mut entry, MAX_MANIFEST).map_err(unreadable)?;
                manifest = Some(serde_json::from_slice(&text).map_err(|e| format!("{}: its manifest is damaged: {e}", from.display()))?);
            }
            SECRET_KEY => key = Some(read_bounded(&mut entry, MAX_SECRET_KEY).map_err(unreadable)?),
            DATABASE => {
                let mut file =
                    tempfile::NamedTempFile::new_in(&folder).map_err(|e| format!("cannot write in {}: {e}", folder.display()))?;
                owner_only(file.path())?;
                std::io::copy(&mut entry, file.as_file_mut()).map_err(unreadable)?;
                file.as_file().sync_all().map_err(unreadable)?;
                copy = Some(file);
            }
            key if is_media_key(key) => {
                if config.media.backend != MediaBackend::File {
                    return Err(format!(
                        "{} holds uploaded files, and this configuration keeps them in S3: restore with media.backend = \"file\", \
                         then copy {} to the bucket",
                        from.display(),
                        media_directory.display()
                    ));
                }
                if staged_media.is_none() {
                    let cannot = |e: std::io::Error| format!("cannot write in {}: {e}", media_directory.display());
                    std::fs::create_dir_all(&media_directory).map_err(cannot)?;
                    staged_media = Some(tempfile::Builder::new().prefix(".restoring-").tempdir_in(&media_directory).map_err(cannot)?);
                }
                let staging = staged_media.as_ref().map(|dir| dir.path().join(key)).ok_or("no staging folder")?;
                if let Some(parent) = staging.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| format!("cannot write in {}: {e}", parent.display()))?;
                }
                let mut file = std::fs::File::create(&staging).map_err(|e| format!("cannot write {}: {e}", staging.display()))?;
                std::io::copy(&mut entry, &mut file).map_err(unreadable)?;
                media_files += 1;
            }
            other => return Err(format!("{} is not a Gatehouse backup: it holds {other}", from.display())),
        }
    }
    let manifest = manifest.ok_or_else(|| format!("{} is not a Gatehouse backup: it has no {MANIFEST}", from.display()))?;
    if manifest.format != FORMAT {
        return Err(format!("{} is a backup of format {}; this version reads format {FORMAT}", from.display(), manifest.format));
    }
    let (Some(key), Some(copy)) = (key, copy) else {
        return Err(format!("{} is incomplete: it needs {SECRET_KEY} and {DATABASE}", from.display()));
    };
    let archived = ServerSecret::from_bytes(&key);
    if archived.fingerprint() != manifest.secret_key_fingerprint {
        return Err(format!("{}: its secret key is not the one its manifest names", from.display()));
    }
    if let Some(configured) = &config.secret_key
        && !constant_time_eq(configured.as_bytes(), &key)
    {
        return Err(format!(
            "the configured secret key (fingerprint {}) is not the one this backup was taken with (fingerprint {}); \
             remove it from the configuration to use the backup's, or use the right one",
            ServerSecret::from_bytes(configured.as_bytes()).fingerprint(),
            archived.fingerprint()
        ));
    }
    let mut checked = config.clone();
    checked.database.url = format!("sqlite://{}", copy.path().display());
    checked.secret_key = Some(String::from_utf8(key.clone()).map_err(|_| format!("{}: its secret key is not text", from.display()))?);
    let db = crate::db::connect(&checked).await.map_err(|e| e.to_string())?;
    let fits = crate::secret::check_fingerprint(&db, &archived, &checked, false).await;
    db.close().await.map_err(|e| e.to_string())?;
    fits.map_err(|e| format!("{}: the archived key does not open the archived database: {e}", from.display()))?;

    if manifest.media_files != media_files {
        return Err(format!(
            "{} is incomplete: its manifest lists {} uploaded files, it holds {media_files}",
            from.display(),
            manifest.media_files
        ));
    }

    if writes_key {
        crate::secret::create_owner_only(&key_file, &key).map_err(|e| format!("cannot write {}: {e}", key_file.display()))?;
    }
    let undo_key = || {
        if writes_key {
            let _ = std::fs::remove_file(&key_file);
        }
    };
    let mut placed_media = false;
    if let Some(staged) = &staged_media {
        // The directory held nothing else (checked above): the staged files move in whole.
        if let Err(e) = std::fs::rename(staged.path().join(MEDIA), media_directory.join(MEDIA)) {
            undo_key();
            return Err(format!("cannot put the uploaded files in {}: {e}", media_directory.display()));
        }
        placed_media = true;
    }
    drop(staged_media);
    if let Err(e) = copy.persist_noclobber(&database) {
        undo_key();
        if placed_media {
            let _ = std::fs::remove_dir_all(media_directory.join(MEDIA));
        }
        return Err(format!("cannot put the database at {}: {}", database.display(), e.error));
    }
    created_media_directory.keep = true;
    Ok(Restored { database, secret_key: writes_key.then_some(key_file), taken: manifest.created, media_files })
}

/// A directory removed, when empty, as this is dropped, unless it is to be kept.
struct RemovedUnlessKept {
    path: PathBuf,
    keep: bool,
}

impl Drop for RemovedUnlessKept {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}

fn read_bounded(entry: &mut impl Read, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    entry.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("a member is larger than {limit} bytes")));
    }
    Ok(bytes)
}

/// Makes `path` readable by its owner only: a backup holds the secret key.
fn owner_only(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot protect {}: {e}", path.display()))?;
    }
    Ok(())
}
