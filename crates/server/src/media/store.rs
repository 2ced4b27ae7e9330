//! Where the bytes of uploaded files live: a local directory or an S3-compatible bucket, behind
//! `object_store`'s one interface. Objects are written whole or not at all (a local write goes
//! to a temporary file renamed into place; an S3 PUT is atomic), under keys the service chooses.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

use crate::config::{Config, MediaBackend};

/// What went wrong in the store, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No object under the key.
    #[error("no such object")]
    Missing,
    /// The bucket does not exist (and the configuration does not allow creating it).
    #[error("the bucket {0} does not exist")]
    BucketMissing(String),
    /// The store cannot be reached or refused the request.
    #[error("{0}")]
    Unavailable(String),
}

/// The configured store.
#[derive(Clone)]
pub struct MediaStore {
    objects: Objects,
    /// The bucket, for S3: to create it and to name it in messages.
    bucket: Option<Bucket>,
    description: String,
}

#[derive(Clone)]
struct Bucket {
    name: String,
    region: String,
    client: Arc<AmazonS3>,
    create: bool,
    timeout: Duration,
}

impl std::fmt::Debug for MediaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

/// The object store, or for a local directory the directory and the store made on first use:
/// nothing is created on disk until a file is uploaded (a server on PostgreSQL may never need
/// its data directory).
#[derive(Clone)]
enum Objects {
    Ready(Arc<dyn ObjectStore>),
    Local { directory: PathBuf, store: Arc<OnceLock<Arc<dyn ObjectStore>>> },
}

/// Longest text of a store error kept in a message (provider bodies can be long).
const MAX_ERROR_CHARS: usize = 300;

fn unavailable(error: &object_store::Error) -> StoreError {
    let text = error.to_string();
    let shortened: String = text.chars().take(MAX_ERROR_CHARS).collect();
    StoreError::Unavailable(shortened)
}

impl MediaStore {
    /// Opens the store the configuration names; creates the local directory. Nothing is asked
    /// of a bucket here: [`MediaStore::prepare`] does that once the server runs.
    pub fn open(config: &Config) -> Result<Self, String> {
        match config.media.backend {
            MediaBackend::File => {
                let directory = config.media.directory(&config.data_dir);
                let description = format!("directory {}", directory.display());
                Ok(Self { objects: Objects::Local { directory, store: Arc::default() }, bucket: None, description })
            }
            MediaBackend::S3 => {
                let s3 = &config.media.s3;
                let timeout = s3.timeout.to_std();
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(&s3.bucket);
                if !s3.region.is_empty() {
                    builder = builder.with_region(&s3.region);
                }
                let endpoint = Some(s3.endpoint.clone())
                    .filter(|e| !e.is_empty())
                    .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok().filter(|e| !e.is_empty()))
                    .or_else(|| std::env::var("AWS_ENDPOINT").ok().filter(|e| !e.is_empty()));
                if let Some(endpoint) = &endpoint {
                    builder = builder.with_endpoint(service_url(endpoint, &s3.bucket, s3.path_style)?);
                }
                if !s3.access_key_id.is_empty() {
                    builder = builder.with_access_key_id(&s3.access_key_id);
                }
                if !s3.secret_access_key.is_empty() {
                    builder = builder.with_secret_access_key(&s3.secret_access_key);
                }
                let options = ClientOptions::new()
                    .with_timeout(timeout)
                    .with_connect_timeout(timeout)
                    .with_allow_http(endpoint.as_deref().is_some_and(|e| e.starts_with("http://")));
                // One quick retry at most: a person waits on every request, and a store that
                // is down should be told at once rather than after the default three minutes.
                let retry = RetryConfig { max_retries: 1, retry_timeout: timeout, ..RetryConfig::default() };
                let client = builder
                    .with_virtual_hosted_style_request(!s3.path_style)
                    .with_client_options(options)
                    .with_retry(retry)
                    .build()
                    .map_err(|e| format!("media.s3: {e}"))?;
                let client = Arc::new(client);
                let region = if s3.region.is_empty() {
                    std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into())
                } else {
                    s3.region.clone()
                };
                let endpoint = endpoint.unwrap_or_else(|| "AWS".to_owned());
                Ok(Self {
                    objects: Objects::Ready(client.clone()),
                    bucket: Some(Bucket { name: s3.bucket.clone(), region, client, create: s3.create_bucket, timeout }),
                    description: format!("bucket {} at {endpoint}", s3.bucket),
                })
            }
        }
    }

    /// What this store is, for logs and messages.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Checks at start that the bucket exists, creating it when allowed. A store that is down
    /// or a bucket that is missing is reported; the server runs on and uploads answer 503.
    pub async fn prepare(&self) -> Result<(), StoreError> {
        let Some(bucket) = &self.bucket else { return Ok(()) };
        let Some(objects) = self.objects(false)? else { return Ok(()) };
        match objects.list_with_delimiter(None).await {
            Ok(_) => Ok(()),
            Err(error) if is_missing_bucket(&error) && bucket.create => self.create_bucket(bucket).await,
            Err(error) if is_missing_bucket(&error) => Err(StoreError::BucketMissing(bucket.name.clone())),
            Err(error) => Err(unavailable(&error)),
        }
    }

    /// Creates the bucket with a signed `PUT` on its root (S3's CreateBucket), outside the
    /// region `us-east-1` with the location constraint S3 then requires.
    async fn create_bucket(&self, bucket: &Bucket) -> Result<(), StoreError> {
        let url = bucket
            .client
            .signed_url(reqwest::Method::PUT, &ObjectPath::from(""), Duration::from_secs(60))
            .await
            .map_err(|e| unavailable(&e))?;
        let body = if bucket.region == "us-east-1" {
            String::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                bucket.region
            )
        };
        let client = reqwest::Client::builder().timeout(bucket.timeout).build().map_err(|e| StoreError::Unavailable(e.to_string()))?;
        // S3 wants a length even on an empty body, which reqwest would send without one.
        let response = client
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, body.len())
            .body(body)
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(e.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() {
            tracing::info!(bucket = %bucket.name, "created the media bucket");
            return Ok(());
        }
        let text: String = response.text().await.unwrap_or_default().chars().take(MAX_ERROR_CHARS).collect();
        // Another process created it at the same moment.
        if text.contains("BucketAlreadyOwnedByYou") {
            return Ok(());
        }
        Err(StoreError::Unavailable(format!("creating the bucket {} failed with {status}: {text}", bucket.name)))
    }

    /// Writes `bytes` under `key`, whole or not at all.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let objects = self.objects(true)?.ok_or(StoreError::Missing)?;
        match objects.put(&ObjectPath::from(key), bytes.into()).await {
            Ok(_) => Ok(()),
            Err(error) => Err(self.classify(&error)),
        }
    }

    /// Reads the object under `key`.
    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let objects = self.objects(false)?.ok_or(StoreError::Missing)?;
        let result = objects.get(&ObjectPath::from(key)).await.map_err(|error| self.classify(&error))?;
        result.bytes().await.map_err(|error| self.classify(&error))
    }

    /// Removes the object under `key`; a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let Some(objects) = self.objects(false)? else { return Ok(()) };
        match objects.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(self.classify(&error)),
        }
    }

    /// The keys of every object under `prefix`, sorted: what the store holds, listed or not.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        use futures_util::TryStreamExt;
        let Some(objects) = self.objects(false)? else { return Ok(Vec::new()) };
        let listed: Vec<_> = objects.list(Some(&ObjectPath::from(prefix))).try_collect().await.map_err(|error| self.classify(&error))?;
        let mut keys: Vec<String> = listed.into_iter().map(|meta| meta.location.to_string()).collect();
        keys.sort();
        Ok(keys)
    }

    /// The object store; for a local directory that does not exist yet, `None`, unless
    /// `create` (an upload) asks for the directory to be made.
    fn objects(&self, create: bool) -> Result<Option<Arc<dyn ObjectStore>>, StoreError> {
        let (directory, store) = match &self.objects {
            Objects::Ready(objects) => return Ok(Some(objects.clone())),
            Objects::Local { directory, store } => (directory, store),
        };
        if let Some(objects) = store.get() {
            return Ok(Some(objects.clone()));
        }
        let cannot = |e: &dyn std::fmt::Display| StoreError::Unavailable(format!("cannot use {}: {e}", directory.display()));
        if !directory.exists() {
            if !create {
                return Ok(None);
            }
            std::fs::create_dir_all(directory).map_err(|e| cannot(&e))?;
        }
        let objects: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(directory).map_err(|e| cannot(&e))?);
        Ok(Some(store.get_or_init(|| objects).clone()))
    }

    fn classify(&self, error: &object_store::Error) -> StoreError {
        match (&self.bucket, error) {
            (Some(bucket), error) if is_missing_bucket(error) => StoreError::BucketMissing(bucket.name.clone()),
            (_, object_store::Error::NotFound { .. }) => StoreError::Missing,
            (_, error) => unavailable(error),
        }
    }
}

/// The URL requests go to for a service at `endpoint`: as it is for path-style requests, with the
/// bucket in the host name otherwise (`https://bucket.host`), which the client takes as written.
fn service_url(endpoint: &str, bucket: &str, path_style: bool) -> Result<String, String> {
    if path_style {
        return Ok(endpoint.to_owned());
    }
    let mut url = reqwest::Url::parse(endpoint).map_err(|e| format!("media.s3.endpoint: {e}"))?;
    let host = url.host_str().ok_or("media.s3.endpoint: the URL names no host")?.to_owned();
    if !host.starts_with(&format!("{bucket}.")) {
        url.set_host(Some(&format!("{bucket}.{host}"))).map_err(|e| format!("media.s3.endpoint: {e}"))?;
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Whether S3 answered that the bucket does not exist.
fn is_missing_bucket(error: &object_store::Error) -> bool {
    error.to_string().contains("NoSuchBucket")
}

#[cfg(test)]
mod tests {
    use super::service_url;

    #[test]
    fn virtual_hosted_requests_carry_the_bucket_in_the_host() {
        assert_eq!(service_url("https://minio.example.com", "media", false).unwrap(), "https://media.minio.example.com");
        assert_eq!(service_url("https://media.minio.example.com/", "media", false).unwrap(), "https://media.minio.example.com");
        assert_eq!(service_url("http://127.0.0.1:9000", "media", true).unwrap(), "http://127.0.0.1:9000");
        assert!(service_url("not a url", "media", false).is_err());
    }
}
