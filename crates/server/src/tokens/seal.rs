//! Sealing keys for `view_key/`: AES-256-GCM under a key derived from the server secret, bound
//! to the token's uuid, so a copied database without the secret reveals no key and a sealed
//! key moved to another row does not open.

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::secret::ServerSecret;

const PURPOSE: &str = "token-sealing-key";

/// Encrypts `key` for the token `token_uuid`.
pub fn seal(secret: &ServerSecret, token_uuid: Uuid, key: &str) -> Result<String> {
    secret.seal(PURPOSE, token_uuid.as_bytes(), key.as_bytes())
}

/// Decrypts what [`seal`] produced for the same token.
pub fn open(secret: &ServerSecret, token_uuid: Uuid, sealed: &str) -> Result<String> {
    let plain = secret.open(PURPOSE, token_uuid.as_bytes(), sealed)?;
    String::from_utf8(plain).map_err(|_| Error::internal("a sealed key is not text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_for_the_same_secret_and_token() {
        let secret = ServerSecret::from_bytes(b"one secret that is long enough for tests");
        let token = Uuid::new_v4();
        let sealed = seal(&secret, token, "gatehouse_api_key").unwrap();
        assert!(!sealed.contains("gatehouse"));
        assert_eq!(open(&secret, token, &sealed).unwrap(), "gatehouse_api_key");
        assert!(open(&secret, Uuid::new_v4(), &sealed).is_err(), "bound to the token");
        let other = ServerSecret::from_bytes(b"another secret that is long enough too");
        assert!(open(&other, token, &sealed).is_err(), "bound to the server secret");
        assert_ne!(seal(&secret, token, "x").unwrap(), seal(&secret, token, "x").unwrap(), "fresh nonce each time");
    }
}
