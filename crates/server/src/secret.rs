//! The server secret: the key behind every keyed digest and derived token.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::config::{Backend, Config, ConfigError};

type HmacSha256 = Hmac<Sha256>;

/// The secret key, never printed (its `Debug` is redacted).
#[derive(Clone)]
pub struct ServerSecret {
    key: Vec<u8>,
}

impl std::fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSecret(********)")
    }
}

impl ServerSecret {
    /// The configured key, or on SQLite the key kept in `data_dir/secret_key`, generated once.
    pub fn load(config: &Config) -> Result<Self, ConfigError> {
        if let Some(key) = &config.secret_key {
            return Ok(Self { key: key.as_bytes().to_vec() });
        }
        if config.backend() == Backend::Postgres {
            return Err(ConfigError("secret_key: is required with PostgreSQL".into()));
        }
        let path = config.data_dir.join("secret_key");
        Self::load_or_create_file(&path).map_err(|e| ConfigError(format!("secret_key: cannot read or create {}: {e}", path.display())))
    }

    fn load_or_create_file(path: &Path) -> std::io::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) if text.trim().len() >= 32 => return Ok(Self { key: text.trim().as_bytes().to_vec() }),
            Ok(_) => {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "the file holds fewer than 32 characters"));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let key = random_token(48);
        match create_owner_only(path, key.as_bytes()) {
            Ok(()) => Ok(Self { key: key.into_bytes() }),
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load_or_create_file(path),
            Err(e) => Err(e),
        }
    }

    /// A short public name for this key: a keyed digest of a constant, so it reveals nothing of
    /// the key but differs between keys.
    pub fn fingerprint(&self) -> String {
        self.digest("secret-key-fingerprint", b"gatehouse")[..16].to_owned()
    }

    /// The key itself, for a backup archive and nothing else: whoever holds it opens every
    /// sealed value and forges every signed one.
    pub fn expose_for_backup(&self) -> &[u8] {
        &self.key
    }

    /// A key built from raw bytes, for tests and benchmarks.
    pub fn from_bytes(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    /// HMAC-SHA-256 of `data` under this key, bound to `purpose` so that digests made for one
    /// purpose never match another, as lower-case hex.
    pub fn digest(&self, purpose: &str, data: &[u8]) -> String {
        // `hex::encode` builds its string a character at a time; every authenticated request
        // takes a digest, so it is written into a buffer instead.
        let mut text = [0u8; 64];
        hex::encode_to_slice(self.mac(purpose, data), &mut text).expect("64 bytes hold 32 in hex");
        String::from_utf8(text.to_vec()).expect("hex is ASCII")
    }

    /// Encrypts `plain` with AES-256-GCM under a key derived from this secret for `purpose`,
    /// bound to `bound_to` (a row's identity): base64 of a fresh nonce and the ciphertext. A
    /// copied database without the secret reveals nothing, and a sealed value moved to another
    /// row or purpose does not open.
    pub fn seal(&self, purpose: &str, bound_to: &[u8], plain: &[u8]) -> crate::error::Result<String> {
        use aes_gcm::aead::{Aead, Payload};
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher(purpose)
            .encrypt(aes_gcm::Nonce::from_slice(&nonce), Payload { msg: plain, aad: bound_to })
            .map_err(|_| crate::error::Error::internal("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend(sealed);
        Ok(STANDARD_NO_PAD.encode(out))
    }

    /// Decrypts what [`ServerSecret::seal`] produced for the same purpose and row.
    pub fn open(&self, purpose: &str, bound_to: &[u8], sealed: &str) -> crate::error::Result<Vec<u8>> {
        use aes_gcm::aead::{Aead, Payload};
        let bytes = STANDARD_NO_PAD.decode(sealed).map_err(|_| crate::error::Error::internal("a sealed value is not base64"))?;
        if bytes.len() < 12 + 16 {
            return Err(crate::error::Error::internal("a sealed value is too short"));
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        self.cipher(purpose)
            .decrypt(aes_gcm::Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: bound_to })
            .map_err(|_| crate::error::Error::internal("a sealed value does not open with this server secret"))
    }

    fn cipher(&self, purpose: &str) -> aes_gcm::Aes256Gcm {
        use aes_gcm::KeyInit;
        aes_gcm::Aes256Gcm::new(&self.mac(purpose, b"").into())
    }

    /// Raw HMAC bytes, see [`ServerSecret::digest`].
    pub fn mac(&self, purpose: &str, data: &[u8]) -> [u8; 32] {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

/// Checks that `secret` is the key the database was set up with. With `record`, the first
/// process to use the key (a server, a worker, a command that writes with it) records its
/// fingerprint; `migrate` only checks, so that a migration job started with a stray key cannot
/// pin it. Another key would end every session, break every keyed digest and leave stored API
/// keys unreadable, so the start stops instead.
pub async fn check_fingerprint(db: &DatabaseConnection, secret: &ServerSecret, config: &Config, record: bool) -> Result<(), String> {
    let fingerprint = secret.fingerprint();
    if !record {
        return compare_fingerprint(db, &fingerprint, config).await;
    }
    let insert = Query::insert()
        .into_table("installation")
        .columns(["id", "secret_key_fingerprint", "created"])
        .values_panic([1.into(), fingerprint.clone().into(), chrono::Utc::now().into()])
        .on_conflict(OnConflict::column("id").do_nothing().to_owned())
        .to_owned();
    db.execute(&insert).await.map_err(|e| format!("cannot record the secret key's fingerprint: {e}"))?;
    compare_fingerprint(db, &fingerprint, config).await
}

/// Compares `fingerprint` with the recorded one; fine when none is recorded yet.
async fn compare_fingerprint(db: &DatabaseConnection, fingerprint: &str, config: &Config) -> Result<(), String> {
    let select = Query::select().column("secret_key_fingerprint").from("installation").and_where(Expr::col("id").eq(1)).to_owned();
    let row = db.query_one(&select).await.map_err(|e| format!("cannot read the secret key's fingerprint: {e}"))?;
    let Some(row) = row else { return Ok(()) };
    let expected: String = row.try_get("", "secret_key_fingerprint").map_err(|e| e.to_string())?;
    if constant_time_eq(expected.as_bytes(), fingerprint.as_bytes()) {
        return Ok(());
    }
    let source = match (&config.secret_key_file, &config.secret_key) {
        (Some(path), _) => format!("the file {} (secret_key_file)", path.display()),
        (None, Some(_)) => "the secret_key setting (in the configuration file or GATEHOUSE_SECRET_KEY)".to_owned(),
        (None, None) => config.data_dir.join("secret_key").display().to_string(),
    };
    Err(format!(
        "the secret key from {source} (fingerprint {fingerprint}) is not the one this database was set up with (fingerprint \
         {expected}). Start every server and command with the original key. Another key would end every session and leave \
         stored API keys unreadable, so Gatehouse does not switch keys by itself."
    ))
}

/// Creates the file `path` holding `bytes`, readable by its owner only, and syncs it; fails with
/// `AlreadyExists` when the file exists (a key file is never overwritten).
pub fn create_owner_only(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// `bytes` random bytes from the operating system's CSPRNG, URL-safe base64 without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config { data_dir: dir.path().to_path_buf(), ..Default::default() };
        let first = ServerSecret::load(&config).unwrap();
        let second = ServerSecret::load(&config).unwrap();
        assert_eq!(first.digest("t", b"x"), second.digest("t", b"x"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secret_key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn digests_depend_on_purpose_and_key() {
        let a = ServerSecret::from_bytes(b"a");
        let b = ServerSecret::from_bytes(b"b");
        assert_ne!(a.digest("session", b"x"), a.digest("csrf", b"x"));
        assert_ne!(a.digest("session", b"x"), b.digest("session", b"x"));
        assert_eq!(format!("{a:?}"), "ServerSecret(********)");
    }

    #[test]
    fn a_digest_is_the_lower_case_hex_of_its_mac() {
        // Stored digests of keys and sessions must keep matching whatever builds the text.
        let secret = ServerSecret::from_bytes(b"key");
        let digest = secret.digest("session", b"x");
        assert_eq!(digest, hex::encode(secret.mac("session", b"x")));
        assert_eq!(digest.len(), 64);
        assert!(digest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
